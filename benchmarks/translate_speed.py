"""Translator speed: training step against bare encoder + decoder LSTMs of the same shapes, and decoding speed.

    python benchmarks/translate_speed.py [--data ../shared/data/multi30k] [--seconds 6] [--model runs/translate/model]
                                         [--set decoder_hidden=512 ...]

Prints one JSON object. Subwords are trained on the Multi30k training text and the model has the
recipe's default sizes. With ``--set input_feed=true`` the training step is also timed against itself with
the input-feeding decoder differentiated by autograd step by step instead of by hand
(``seqnlp.nn.input_feeding``); where oneDNN's products apply (``seqnlp.nn.gemm``), it is timed against itself
with PyTorch's products (MKL on CPU), and against itself with the output layer's rows as they come rather than
rounded up so that oneDNN's kernels for them are reused (``rounded_over_unrounded_rows``). The steps cycle over ten
epochs' batches of 6,400 training pairs. ``batch_fill`` is each side's share of real subwords in the padded
batches, beside the same pairs batched by source length alone. Decoding translates the first 256 Multi30k
validation sentences in batches of 64. With random weights (the default) each translation is forced to the
subword length of its reference, so the search does the work a trained model does; ``--model`` decodes with a
trained model instead, whose hypotheses end wherever it ends them.

This machine's speed drifts, so every comparison is taken in adjacent rounds and reported as
medians with the range of the per-round ratios: the training step against the bare LSTMs in
4 pairs of windows; greedy, beam 5 and (with int8 decoding, the default) beam 5 in float32 in
``--decode-rounds`` rounds of passes that take turns.
"""

from __future__ import annotations

from common import (  # first: it puts the repository on the import path
    comparison_fields,
    median_ratio,
    side_by_side,
    train_step_of,
)

# isort: split

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from seqnlp.config import from_dict
from seqnlp.data.batching import bucket_batches
from seqnlp.data.parallel import read_parallel_files
from seqnlp.nn import gemm, kernels
from seqnlp.tasks.base import load_model_dir
from seqnlp.tasks.translate.task import TranslateConfig, TranslateTask
from seqnlp.training.trainer import build_optimizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder with train.de/en and val.de/en")
    parser.add_argument("--seconds", type=float, default=6.0, help="time per training measurement")
    parser.add_argument(
        "--decode-rounds",
        type=int,
        default=5,
        help="alternating greedy / beam-5 passes over the sentences (medians reported)",
    )
    parser.add_argument("--model", help="decode with this trained model directory instead of random weights")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="override recipe settings (e.g. decoder_hidden=512)"
    )
    return parser.parse_args()


def bare_lstm_step(config, model):
    """A training step of bare encoder and decoder LSTMs of the model's shapes, on random inputs."""
    encoder = torch.nn.LSTM(
        config.embed_dim, config.hidden, num_layers=config.layers, batch_first=True, bidirectional=True
    )
    decoder_input = model.cells[0].input_size  # the embedding, and the attentional vector with input feeding
    decoder = torch.nn.LSTM(decoder_input, config.decoder_hidden, num_layers=config.decoder_layers, batch_first=True)
    bare_params = [*encoder.parameters(), *decoder.parameters()]

    def step(batch):
        src, tgt = batch["src"], batch["tgt_in"]
        memory, _ = encoder(torch.randn(*src.shape, config.embed_dim))
        states, _ = decoder(torch.randn(*tgt.shape, decoder_input))
        for p in bare_params:
            p.grad = None
        (memory.sum() + states.sum()).backward()

    return step


def step_within(step, context):
    """``step`` run inside ``context()``: the same step with one of its switches set otherwise."""

    def varied_step(batch):
        with context():
            step(batch)

    return varied_step


def autograd_loop():
    """The input-feeding decoder differentiated by autograd step by step, not by hand."""
    return kernels.use(input_feeding="autograd")


def torch_products():
    """Matrix products in PyTorch's kernels (MKL on CPU) instead of oneDNN's (``seqnlp.nn.gemm``)."""
    return kernels.use(products="torch")


def unrounded_rows():
    """The output layer's rows as they come instead of rounded up to ``Kernels.row_multiple``."""
    return kernels.use(row_multiple=1)


def batch_fill(items: list[dict], groups: list[list[int]]) -> dict:
    """Each side's share of real subwords among the padded positions of the batches ``groups`` make."""
    fill = {}
    for side in ("src", "tgt"):
        real = sum(len(items[i][side]) for group in groups for i in group)
        padded = sum(len(group) * max(len(items[i][side]) for i in group) for group in groups)
        fill[side] = round(real / padded, 3)
    return fill


def variant_fields(comparison: dict, ours: str, theirs: str, ratio: str) -> dict:
    """The JSON fields of the step timed against a variant of itself: both medians, their ratio and its range."""
    return {
        f"{ours}_tokens_per_s": round(comparison["ours"]),
        f"{theirs}_tokens_per_s": round(comparison["theirs"]),
        ratio: round(comparison["ratio"], 3),
        f"{ratio}_range": comparison["ratio_range"],
    }


def decoding_speeds(task, model, sources: list[str], rounds: int, lengths=None) -> dict[str, list[float]]:
    """Sentences per second of greedy, beam-5 and (with int8 decoding) float32 beam-5 passes that take turns;
    ``lengths``: each translation's length, where the model's own would be arbitrary (random weights)."""
    int8 = task.config.int8_decoding
    passes = [("beam1", 1, int8), ("beam5", 5, int8)] + ([("beam5_float32", 5, False)] if int8 else [])
    for _, beam, _ in passes:
        task.translate(model, sources[:64], beam=beam, lengths=lengths)  # warm-up
    speeds = {name: [] for name, _, _ in passes}
    for r in range(rounds):  # each ratio compares adjacent runs
        for name, beam, pass_int8 in passes[r % len(passes) :] + passes[: r % len(passes)]:
            task.config.int8_decoding = pass_int8
            start = time.perf_counter()
            task.translate(model, sources, beam=beam, lengths=lengths)
            speeds[name].append(len(sources) / (time.perf_counter() - start))
    task.config.int8_decoding = int8
    return speeds


def decoding_fields(speeds: dict[str, list[float]]) -> dict:
    """Median speeds of the decoding passes and the ratios taken side by side (beam 5 / greedy, int8 / float32)."""
    beam_ratio, beam_ratio_range = median_ratio(zip(speeds["beam5"], speeds["beam1"]))
    fields = {
        "beam1_sents_per_s": round(statistics.median(speeds["beam1"]), 1),
        "beam5_sents_per_s": round(statistics.median(speeds["beam5"]), 1),
        "beam5_over_beam1": round(beam_ratio, 3),
        "beam5_over_beam1_range": beam_ratio_range,
    }
    if "beam5_float32" in speeds:
        int8_speedup, int8_speedup_range = median_ratio(zip(speeds["beam5"], speeds["beam5_float32"]))
        fields.update(
            beam5_float32_sents_per_s=round(statistics.median(speeds["beam5_float32"]), 1),
            int8_speedup=round(int8_speedup, 3),
            int8_speedup_range=int8_speedup_range,
        )
    return fields


def main():
    args = parse_args()
    torch.manual_seed(0)
    overrides = {
        key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)
    }  # 512 -> int, false -> bool
    config = from_dict(TranslateConfig, {"eval_batch_size": 64, **overrides}, source="--set")
    task = TranslateTask(config)
    train = read_parallel_files(f"{args.data}/train", "de", "en")
    val = read_parallel_files(f"{args.data}/val", "de", "en")[:256]
    task.build_vocabularies(train)
    model = task.build_model()
    items = task.prepare(train[:6400])
    # ten epochs' batches, so that the steps meet batch shapes in training's proportions rather than a cycle of 100
    epochs = [task.batches(items, shuffle=True, epoch=epoch) for epoch in range(10)]
    batches = [batch for epoch in epochs for batch in epoch]
    by_source = bucket_batches([len(item["src"]) for item in items], config.batch_size, True, config.seed)
    fill = {
        "batch_fill": batch_fill(items, epochs[0].groups),
        "batch_fill_by_source_alone": batch_fill(items, by_source),
    }
    step = train_step_of(model, build_optimizer(model, config), config.clip_norm)
    train = side_by_side(step, bare_lstm_step(config, model), batches, args.seconds)
    variants = {}
    if model.input_feed and model._hand_differentiated:
        loops = side_by_side(step, step_within(step, autograd_loop), batches, args.seconds)
        by_hand = ("input_feeding_by_hand", "input_feeding_autograd", "input_feeding_by_hand_over_autograd")
        variants.update(variant_fields(loops, *by_hand))
    if gemm.AVAILABLE:
        both = side_by_side(step, step_within(step, torch_products), batches, args.seconds)
        variants.update(variant_fields(both, "onednn_products", "torch_products", "onednn_over_torch_products"))
        rounded = side_by_side(step, step_within(step, unrounded_rows), batches, args.seconds)
        variants.update(variant_fields(rounded, "rounded_rows", "unrounded_rows", "rounded_over_unrounded_rows"))
    sources, lengths = [p.src for p in val], None
    if args.model:
        task, model = load_model_dir(args.model, overrides={"eval_batch_size": 64})
    else:  # random weights would end anywhere: each translation as long as its reference
        lengths = [len(task.tgt_sp.encode(p.tgt)) + 1 for p in val]
    int8 = task.config.int8_decoding
    speeds = decoding_speeds(task, model, sources, args.decode_rounds, lengths)
    print(
        json.dumps(
            {
                **comparison_fields("train", train),
                **variants,
                **fill,
                **decoding_fields(speeds),
                "decode": {
                    "sentences": len(sources),
                    "rounds": args.decode_rounds,
                    "batch": config.eval_batch_size,
                    "max_len_ratio": config.max_len_ratio,
                    "int8": int8,
                    "weights": args.model or "random",
                    "lengths": "as the model decides" if args.model else "reference subword lengths",
                },
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "shape": {
                    "embed": config.embed_dim,
                    "encoder_hidden": config.hidden,
                    "decoder_hidden": config.decoder_hidden,
                    "vocab": len(task.tgt_sp),
                    "output_subwords": len(task.output_ids),
                    "joint_vocab": config.joint_vocab,
                    "attention": config.attention,
                    "input_feed": config.input_feed,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
