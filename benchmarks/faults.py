"""Kill a real training run with SIGKILL at random moments, resume it each time, and check what survived.

    python benchmarks/faults.py [--kills 20] [--seed 0]

Prints one JSON object: ``kills``, ``resumes_ok`` (resumed runs that started from a checkpoint),
``corrupt_checkpoints`` (kills after which the newest checkpoint on disk did not load),
``steps_lost_beyond_checkpoint`` (steps between the newest complete checkpoint at each kill and
the step its resumed run started from, summed) and ``final_equals_uninterrupted`` (the final
weights equal an uninterrupted run's, bit for bit).
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqnlp.storage.folders import existing_directory  # noqa: E402

SENTENCES = [
    "Anna/B-PER Berg/I-PER visited/O Berlin/B-LOC ./O",
    "Acme/B-ORG Corp/I-ORG hired/O Tom/B-PER ./O",
    "The/O German/B-MISC team/O won/O in/O Oslo/B-LOC ./O",
    "Reuters/B-ORG said/O so/O ./O",
]
# Small enough that an epoch takes a fraction of a second, so kills land in training, evaluation and saves alike.
SETTINGS = [
    "--word-dim",
    "16",
    "--hidden",
    "16",
    "--char-dim",
    "8",
    "--char-out",
    "8",
    "--batch-size",
    "4",
    "--seed",
    "3",
    "--log-every",
    "1",
    "--quiet",
    "--threads",
    "1",
]


def write_data(folder: Path, copies: int) -> tuple[Path, Path]:
    lines = []
    for _ in range(copies):
        for sentence in SENTENCES:
            lines += [" ".join(pair.rsplit("/", 1)) for pair in sentence.split()] + [""]
    (folder / "train.txt").write_text("\n".join(lines), encoding="utf-8")
    (folder / "dev.txt").write_text("\n".join(lines[: len(lines) // copies]), encoding="utf-8")
    return folder / "train.txt", folder / "dev.txt"


def command(train: Path, dev: Path, out: Path, epochs: int, resume: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "seqnlp.cli",
        "train",
        "ner",
        "--train-file",
        str(train),
        "--dev-file",
        str(dev),
        "--output-dir",
        str(out),
        "--epochs",
        str(epochs),
        *SETTINGS,
        "--resume" if resume else "--overwrite",
    ]


def logged_step(out: Path) -> int:
    """The last training step ``train_log.jsonl`` records (0 before the first)."""
    try:
        lines = (out / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loss" in record:
            return int(record["step"])
    return 0


def checkpoint_step(out: Path) -> int | None:
    """The step of the newest complete checkpoint, or None if it is missing or does not load."""
    from safetensors.torch import load_file

    folder = existing_directory(out / "checkpoints" / "last")
    if folder is None:
        return None
    try:
        load_file(str(folder / "model.safetensors"))
        load_file(str(folder / "optimizer.safetensors"))
        return int(json.loads((folder / "trainer_state.json").read_text())["state"]["step"])
    except Exception:
        return -1


def reference_run(train, dev, out: Path, epochs: int) -> tuple[float, float]:
    """Train uninterrupted into ``out``; returns its seconds and those of a bare ``import seqnlp.training.run``."""
    started = time.perf_counter()
    subprocess.run(command(train, dev, out, epochs, False), check=True, capture_output=True)
    seconds = time.perf_counter() - started
    startup = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import seqnlp.training.run"], check=True)
    return seconds, time.perf_counter() - startup


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="seqnlp-faults-"))
    train, dev = write_data(work, copies=6)

    started = time.perf_counter()
    reference_seconds, startup = reference_run(train, dev, work / "reference", args.epochs)

    kills = resumes_ok = corrupt = lost = 0
    out = work / "interrupted"
    checkpoint = None  # the newest complete checkpoint's step after the last kill: where the next run must start
    total_steps = max(logged_step(work / "reference"), 4)
    epoch_seconds = max(0.05, reference_seconds - startup) / args.epochs
    # Kill moments: one in the first run (before its first checkpoint, or just after), then one each time a
    # resumed run passes a random step, plus a random fraction of an epoch, so kills fall in training steps,
    # evaluations and saves alike; the last is before 90% of the steps, so every planned kill happens.
    targets = sorted(rng.sample(range(1, int(total_steps * 0.9)), args.kills - 1)) if args.kills > 1 else []
    while True:
        run = Run(command(train, dev, out, args.epochs, resume=checkpoint is not None))
        if checkpoint is not None:
            started_at = run.resumed_from()
            if started_at is not None:
                resumes_ok += started_at == checkpoint
                lost += max(0, checkpoint - started_at)
        if kills < args.kills:
            if kills == 0:
                killed = run.kill_after(startup + rng.uniform(0.0, 1.5 * epoch_seconds))
            else:
                killed = run.kill_at_step(out, targets[kills - 1], extra_seconds=rng.uniform(0.0, 0.5 * epoch_seconds))
            if killed:
                kills += 1
                step = checkpoint_step(out)
                corrupt += step == -1
                checkpoint = step if step not in (None, -1) else checkpoint
                continue
        if run.wait() != 0:
            raise SystemExit(f"a run failed: {run.error()}")
        break
    final = (out / "checkpoints" / "last" / "model.safetensors").read_bytes()
    expected = (work / "reference" / "checkpoints" / "last" / "model.safetensors").read_bytes()
    best_equal = (out / "model" / "model.safetensors").read_bytes() == (
        work / "reference" / "model" / "model.safetensors"
    ).read_bytes()
    shutil.rmtree(work, ignore_errors=True)
    return {
        "kills": kills,
        "resumes_ok": resumes_ok,
        "corrupt_checkpoints": corrupt,
        "steps_lost_beyond_checkpoint": lost,
        "final_equals_uninterrupted": final == expected and best_equal,
        "seconds": round(time.perf_counter() - started, 1),
        "reference_run_seconds": round(reference_seconds, 1),
    }


class Run:
    """A training subprocess whose output is read as it comes, so a resumed run is killed only after it said where it
    resumed."""

    def __init__(self, argv: list[str]):
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _read(stream, sink) -> None:
        for line in stream:
            sink(line)
        sink(None)

    def resumed_from(self) -> int | None:
        """The step the run says it resumed from (None if it ended without saying)."""
        while (line := self.lines.get()) is not None:
            found = re.search(r"resuming from .*: epoch \d+, step (\d+)", line)
            if found:
                return int(found.group(1))
        return None

    def kill_after(self, seconds: float) -> bool:
        """SIGKILL after ``seconds``, unless the run ended first (False)."""
        try:
            self.process.wait(timeout=seconds)
            return False
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            return True

    def kill_at_step(self, out: Path, step: int, extra_seconds: float) -> bool:
        """SIGKILL ``extra_seconds`` after the run's log reaches ``step``, unless the run ends first (False)."""
        while logged_step(out) < step:
            if self.process.poll() is not None:
                return False
            time.sleep(0.005)
        return self.kill_after(extra_seconds)

    def wait(self) -> int:
        return self.process.wait()

    def error(self) -> str:
        self.process.wait()
        time.sleep(0.1)
        lines = [line for line in self.stderr if line]
        return lines[-1].strip() if lines else f"exit status {self.process.returncode}"


if __name__ == "__main__":
    print(json.dumps(main()))
