"""OpenNMT-py's side of ``against_onmt.py`` (runs in the OpenNMT-py environment): an RNN encoder-decoder built from
the options ``onmt_train`` would read, trained by OpenNMT-py's own ``Trainer`` and data iterator window by window,
and translated by its ``InferenceEnginePY`` as ``onmt_translate`` does.

The data are the files ``against_onmt.py`` wrote into ``work``: ``train.src``/``train.tgt``/``val.src`` already
segmented by seqnlp's SentencePiece model (so both sides read the same subwords), and ``vocab.txt``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from protocol import serve


def parsed(add_options, values: dict, work: Path, name: str):
    """The options ``add_options`` declares, read from a YAML file holding ``values`` (as ``-config`` reads it)."""
    from onmt.utils.parse import ArgumentParser

    path = work / f"{name}.yaml"
    path.write_text(json.dumps(values))  # JSON is YAML
    parser = ArgumentParser(description=name)
    add_options(parser)
    return parser.parse_args(["-config", str(path)])


class CountedBatches:
    """OpenNMT-py's training batches, counting the source and target subwords (EOS included, BOS not) handed out."""

    def __init__(self, batches, pad: int):
        self.batches, self.pad, self.subwords = iter(batches), pad, 0

    def __iter__(self):
        return self

    def __next__(self):
        batch, bucket = next(self.batches)
        self.subwords += int(batch["srclen"].sum()) + int((batch["tgt"][:, 1:, 0] != self.pad).sum())
        return batch, bucket


def setup(settings: dict) -> dict:
    from onmt.constants import CorpusTask, DefaultTokens
    from onmt.inputters.dynamic_iterator import build_dynamic_dataset_iter
    from onmt.model_builder import build_model
    from onmt.models import build_model_saver
    from onmt.opts import train_opts, translate_opts
    from onmt.train_single import _init_train
    from onmt.trainer import build_trainer
    from onmt.utils.logging import init_logger
    from onmt.utils.misc import set_random_seed
    from onmt.utils.optimizers import Optimizer
    from onmt.utils.parse import ArgumentParser

    torch.set_num_threads(settings["threads"])
    # its checkpoints hold its options, which torch >= 2.6's torch.load (weights only) refuses unless allowed
    torch.serialization.add_safe_globals([argparse.Namespace])
    init_logger()
    work = Path(settings["work"])
    (work / "onmt").mkdir(exist_ok=True)
    size = settings["sizes"]
    opt = parsed(
        train_opts,
        {
            "data": {"corpus_1": {"path_src": str(work / "train.src"), "path_tgt": str(work / "train.tgt")}},
            "src_vocab": str(work / "vocab.txt"),
            "share_vocab": True,
            "src_vocab_size": 100_000,
            "tgt_vocab_size": 100_000,
            "save_data": str(work / "onmt"),
            "save_model": str(work / "onmt" / "model"),
            "encoder_type": "brnn",
            "decoder_type": "rnn",
            "rnn_type": "LSTM",
            "enc_layers": 1,
            "dec_layers": 1,
            # a bidirectional encoder's size is both directions together; the decoder starts from both final states
            "enc_hid_size": 2 * size["hidden"],
            "dec_hid_size": size["decoder_hidden"],
            "word_vec_size": size["embed_dim"],
            "global_attention": "general",
            "input_feed": int(settings["input_feed"]),
            "share_embeddings": True,
            "share_decoder_embeddings": True,
            "dropout": [size["dropout"]],
            "label_smoothing": size["label_smoothing"],
            "optim": "adam",
            "learning_rate": size["lr"],
            "max_grad_norm": size["clip_norm"],
            "batch_type": "sents",
            "batch_size": size["batch_size"],
            "num_workers": 0,  # its default of 2 loader processes would take cores the model needs
            "train_steps": 10**9,
            "valid_steps": 10**9,
            "report_every": 10**9,
            "save_checkpoint_steps": 0,
            "seed": 1,
        },
        work,
        "onmt-train",
    )
    ArgumentParser.validate_train_opts(opt)
    ArgumentParser.update_model_opts(opt)
    ArgumentParser.validate_model_opts(opt)
    set_random_seed(opt.seed, False)
    _, vocabs, transforms_cls = _init_train(opt)
    model = build_model(opt, opt, vocabs, None, -1)
    optim = Optimizer.from_opt(model, opt)
    trainer = build_trainer(opt, -1, model, vocabs, optim, model_saver=None)
    pad = vocabs["tgt"][DefaultTokens.PAD]
    batches = CountedBatches(build_dynamic_dataset_iter(opt, transforms_cls, vocabs, task=CorpusTask.TRAIN), pad)
    sources = (work / "val.src").read_text(encoding="utf-8").splitlines()
    engines = {}

    def train(steps: int) -> int:
        before = batches.subwords
        # Trainer.train stops after the step numbered train_steps; optim.training_step is the next step's number
        trainer.train(batches, train_steps=optim.training_step + steps - 1)
        return batches.subwords - before

    def engine(beam: int):
        """A translator of the model as trained so far (saved as ``onmt_train`` saves it, then loaded)."""
        from onmt.inference_engine import InferenceEnginePY

        if beam not in engines:
            step = optim.training_step
            build_model_saver(opt, opt, model, vocabs, optim, -1).save(step)
            translate = parsed(
                translate_opts,
                {
                    "model": [f"{opt.save_model}_step_{step}.pt"],
                    "src": str(work / "val.src"),
                    "output": str(work / f"onmt-pred-{beam}.txt"),  # it also writes its predictions here
                    "beam_size": beam,
                    "batch_type": "sents",
                    "batch_size": settings["infer_batch_size"],
                    "length_penalty": "wu",  # GNMT's, as seqnlp's beam search scores
                    "alpha": settings["length_penalty"],
                    "precision": settings["precision"],
                    "gpu": -1,
                    "seed": 1,
                },
                work,
                f"onmt-translate-{beam}",
            )
            ArgumentParser.validate_translate_opts(translate)
            ArgumentParser._get_all_transform_translate(translate)
            ArgumentParser._validate_transforms_opts(translate)
            ArgumentParser.validate_translate_opts_dynamic(translate)
            engines[beam] = InferenceEnginePY(translate)
        return engines[beam]

    def translate(beam: int) -> int:
        _, predictions = engine(beam).infer_list(sources)
        with open(f"{settings['hypotheses']}-beam{beam}.txt", "w", encoding="utf-8") as out:
            for nbest in predictions:  # subwords joined back into words, as SentencePiece decodes them
                out.write("".join(nbest[0].split()).replace("\u2581", " ").strip() + "\n")
        return len(sources)

    train(settings["warmup_steps"])
    return {"train": train, "translate": translate}


if __name__ == "__main__":
    serve(setup)
