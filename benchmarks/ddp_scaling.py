"""Data-parallel overhead: 1 process x 2 threads against 2 processes x 1 thread (torchrun --standalone, gloo).

    python benchmarks/ddp_scaling.py [--data ../shared/data] [--seconds 60] [--rounds 2] [--tasks tagger,translator]

Prints one JSON object ``{"tagger": {...}, "translator": {...}}``, each with ``one_process_tokens_per_s``,
``two_processes_tokens_per_s`` and ``efficiency`` (the second over the first): the median training speed of the
windows of ``train_log.jsonl`` (every 50 steps; the global batch's tokens over the window's wall-clock), over
``--rounds`` runs of each layout that take turns, each ``--seconds`` long, the recipes' default sizes and
per-process batch. On a 2-core machine this measures the cost of the all-reduce and the sharding, not a
speed-up: both layouts use both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

JOBS = {
    "tagger": ("ner", "conll2003/train.txt", "conll2003/dev.txt"),
    "translator": ("translate", "multi30k/train", "multi30k/val"),
}


def window_speeds(log: Path) -> list[float]:
    """Tokens per second of every logged window but the first (warm-up)."""
    speeds = [r["tokens_per_s"] for r in map(json.loads, log.read_text().splitlines()) if "tokens_per_s" in r]
    return speeds[1:]


def run(task: str, train: Path, dev: Path, processes: int, seconds: float, out: Path) -> list[float]:
    argv = ["train", task, "--train-file", train, "--dev-file", dev, "--max-minutes", seconds / 60, "--quiet"]
    argv += ["--output-dir", out, "--overwrite"]
    if processes == 1:
        command = [sys.executable, "-m", "seqnlp.cli", *argv, "--threads", "2"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
        command += ["-m", "seqnlp.cli", *argv, "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([str(c) for c in command], check=True, env=env, cwd=ROOT, capture_output=True)
    return window_speeds(out / "train_log.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--seconds", type=float, default=60.0, help="training time of each run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each layout, taking turns")
    parser.add_argument("--tasks", default=",".join(JOBS), help="comma-separated: " + ", ".join(JOBS))
    args = parser.parse_args()
    data = Path(args.data)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks.split(","):
            task, train, dev = JOBS[name]
            speeds = {1: [], 2: []}
            for r in range(args.rounds):
                for processes in (1, 2) if r % 2 == 0 else (2, 1):
                    out = Path(tmp) / f"{name}-{processes}-{r}"
                    speeds[processes] += run(task, data / train, data / dev, processes, args.seconds, out)
            one, two = statistics.median(speeds[1]), statistics.median(speeds[2])
            results[name] = {
                "one_process_tokens_per_s": round(one),
                "two_processes_tokens_per_s": round(two),
                "efficiency": round(two / one, 3),
                "windows": [len(speeds[1]), len(speeds[2])],
            }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
