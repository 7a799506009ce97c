"""Where a CoNLL tagger run's resident memory goes, phase by phase (one thread, a few training steps).

    python benchmarks/tagger_memory.py [--conll ../shared/data/conll2003]

Prints one JSON object: resident and peak memory (MiB) after each phase of a run with the
recipe's defaults: imports, reading data, building the model, constructing the optimizer, the
first steps, the longest training batch, dev evaluation, saving, trimming the heap, and the
final seqeval scoring. It shows one-off costs; it does not show the slow creep over many epochs
(the per-epoch ``rss_mib`` in a run's ``train_log.jsonl`` does).
"""

from __future__ import annotations

import common  # noqa: F401  (first: it puts the repository on the import path)

# isort: split

import argparse
import json
import tempfile
from pathlib import Path

import torch

from seqnlp.config import from_dict
from seqnlp.tasks.base import save_model_dir
from seqnlp.tasks.ner.task import NERConfig, NERTask
from seqnlp.training.heap import memory_mib, release_memory
from seqnlp.training.trainer import build_optimizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--conll", default=str(DEFAULT_DATA), help="folder with train.txt and dev.txt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    phases = {"imports": memory_mib()}
    task = NERTask(from_dict(NERConfig, {}))
    train, dev = task.read_file(f"{args.conll}/train.txt"), task.read_file(f"{args.conll}/dev.txt")
    phases["data read"] = memory_mib()
    task.build_vocabularies(train)
    model, items = task.build_model(), task.prepare(train)
    phases["model and encoded data"] = memory_mib()
    optimizer = build_optimizer(model, task.config)
    phases["optimizer constructed"] = memory_mib()
    batches = task.batches(items, shuffle=True)
    longest = max(range(len(batches)), key=lambda i: max(len(items[j]["words"]) for j in batches.groups[i]))
    for name, index in (("first steps", 0), ("first steps", 1), ("first steps", 2), ("longest batch", longest)):
        loss = model(batches[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        phases[name] = memory_mib()
    task.evaluate(model, dev, selection=True)
    phases["dev evaluation (span scorer)"] = memory_mib()
    with tempfile.TemporaryDirectory() as tmp:
        save_model_dir(task, model, Path(tmp) / "model")
        torch.save(optimizer.state_dict(), Path(tmp) / "optimizer.pt")
    phases["model and optimizer saved"] = memory_mib()
    release_memory()
    phases["heap trimmed"] = memory_mib()
    task.evaluate(model, dev)
    phases["dev evaluation (seqeval)"] = memory_mib()
    print(json.dumps({"phases_mib": phases, "threads": 1, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
