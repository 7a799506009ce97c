"""Training speed in bf16 autocast against fp32, side by side in one run, for every task's model.

    python benchmarks/precision.py [--seconds 8] [--device cpu|cuda] [--data ../shared/data/multi30k]

Prints one JSON object: per model, tokens/s of a full training step (forward, backward, clipping, Adam) in fp32
and under ``torch.autocast(dtype=torch.bfloat16)`` as ``--precision bf16`` runs it, their ratio (bf16 / fp32,
median of adjacent windows, with its range), and whether this device has bf16 matrix units (without them
seqnlp refuses ``--precision bf16``; the benchmark tries it anyway, and says so where it does not run at all).
Sizes are the recipes' defaults; data as in tagger_speed.py, classifier_speed.py, translate_speed.py (the first
6,400 Multi30k training pairs) and charlm_speed.py.
"""

from __future__ import annotations

from common import (  # first: it puts the repository on the import path
    side_by_side,
    timed,
    train_step_of,
)

# isort: split

import argparse
import json
import random

import torch
from charlm_speed import random_text
from classifier_speed import synthetic_texts
from tagger_speed import synthetic_sentences
from translate_speed import DEFAULT_DATA

from seqnlp.config import from_dict
from seqnlp.data.batching import to_device
from seqnlp.data.parallel import read_parallel_files
from seqnlp.tasks.ner.task import NERConfig, NERTask
from seqnlp.tasks.sentiment.task import SentimentConfig, SentimentTask
from seqnlp.tasks.textgen.task import Document, TextgenConfig, TextgenTask
from seqnlp.tasks.translate.task import TranslateConfig, TranslateTask
from seqnlp.training.trainer import build_optimizer, has_bf16_matrix_units


def compare(task, examples, device: torch.device, seconds: float) -> dict:
    task.build_vocabularies(examples)
    model = task.build_model().to(device)
    fp32 = train_step_of(model, build_optimizer(model, task.config), task.config.clip_norm)

    def bf16(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            fp32(batch)

    batches = [to_device(b, device) for b in task.batches(task.prepare(examples), shuffle=True)[:150]]
    try:
        bf16(batches[0])
    except RuntimeError as err:  # oneDNN has no bf16 LSTM without bf16 instructions: it does not run at all
        return {"fp32_tokens_per_s": round(timed(fp32, batches, seconds)), "bf16": f"fails: {str(err)[:120]}"}
    result = side_by_side(bf16, fp32, batches, seconds)
    return {
        "bf16_tokens_per_s": round(result["ours"]),
        "fp32_tokens_per_s": round(result["theirs"]),
        "ratio": round(result["ratio"], 3),
        "ratio_range": result["ratio_range"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0, help="time per model and precision")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder with Multi30k's train.de/en")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    tagger = compare(
        NERTask(from_dict(NERConfig, {})), synthetic_sentences(4000, random.Random(0)), device, args.seconds
    )
    classifier = compare(
        SentimentTask(from_dict(SentimentConfig, {})), synthetic_texts(8000, random.Random(0)), device, args.seconds
    )
    translator = compare(
        TranslateTask(from_dict(TranslateConfig, {})),
        read_parallel_files(f"{args.data}/train", "de", "en")[:6400],
        device,
        args.seconds,
    )
    charlm_config = from_dict(TextgenConfig, {})
    charlm = compare(TextgenTask(charlm_config), [Document(random_text(charlm_config, 12))], device, args.seconds)
    capability = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else torch.backends.cpu.get_cpu_capability()
    )
    print(
        json.dumps(
            {
                "device": capability,
                "bf16_matrix_units": has_bf16_matrix_units(device),
                "threads": torch.get_num_threads(),
                "tagger": tagger,
                "classifier": classifier,
                "translator": translator,
                "charlm": charlm,
            }
        )
    )


if __name__ == "__main__":
    main()
