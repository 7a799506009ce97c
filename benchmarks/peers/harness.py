"""What every peer benchmark shares: the peers' cached environments, workers, and windows that take turns.

A peer is installed in a virtual environment of its own under ``~/.cache/seqnlp-peers/`` (``SEQNLP_PEERS_CACHE``),
with the CPU build of the torch seqnlp is measured with (``pip install torch==2.13.0`` first, so no CUDA build is
pulled in); it is made once and reused while its package list is unchanged. Never part of CI or the tests.

seqnlp and the peer each run in a worker process (``protocol.py``) that builds its model, warms up, then runs one
window (a fixed number of steps, or one pass over the inference set) per request. The windows take turns, the
order alternating from round to round, so both sides see the same machine: this VM's speed drifts by up to ±25%
over minutes, and a ratio of adjacent windows does not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT.parent / "shared" / "data"
TORCH = "torch==2.13.0"
CACHE = Path(os.environ.get("SEQNLP_PEERS_CACHE", Path.home() / ".cache" / "seqnlp-peers"))


def environment(name: str, packages: list[str], without_dependencies: list[str] = ()) -> Path:
    """The Python of the peer's environment, made if needed: torch first, then ``packages``, then
    ``without_dependencies`` (packages whose declared requirements would replace that torch)."""
    venv = CACHE / name
    python = venv / "bin" / "python"
    wanted = json.dumps([TORCH, *packages, "--no-deps", *without_dependencies])
    marker = venv / "seqnlp-peer.json"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"making the {name} environment in {venv} (once)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, *packages], check=True)
    if without_dependencies:
        subprocess.run([*pip, "--no-deps", *without_dependencies], check=True)
    marker.write_text(wanted)
    return python


def window_arguments(description: str) -> argparse.ArgumentParser:
    """The options every peer benchmark takes: threads a side, rounds of windows, training steps per window."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each side")
    parser.add_argument("--rounds", type=int, default=5, help="pairs of windows per measurement")
    parser.add_argument("--steps", type=int, default=40, help="training steps per window")
    return parser


def version_of(python: Path, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


class Worker:
    """A worker process: ``python script`` with ``settings``, ready once its model is built and warm."""

    def __init__(self, python, script: str, settings: dict, threads: int, log: Path):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        # the peer's environment sees only the protocol; seqnlp's worker also the repository and benchmarks/
        paths = [HERE] if python != sys.executable else [HERE, ROOT / "benchmarks", ROOT]
        env["PYTHONPATH"] = os.pathsep.join(map(str, paths))
        self.log = log
        self.process = subprocess.Popen(
            [str(python), str(HERE / script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env=env,
        )
        self._send({**settings, "threads": threads})
        self._receive()

    def _send(self, value: dict) -> None:
        self.process.stdin.write(json.dumps(value) + "\n")
        self.process.stdin.flush()

    def _receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text()[-3000:]
            raise RuntimeError(f"{self.process.args[1]} stopped; the end of {self.log}:\n{tail}")
        return json.loads(line)

    def rate(self, op: str, **args) -> float:
        """Units per second of one window of ``op``."""
        self._send({"op": op, "args": args})
        answer = self._receive()
        return answer["units"] / answer["seconds"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def take_turns(ours: Worker, theirs: Worker, op: str, rounds: int, **args) -> dict:
    """Rates of ``rounds`` adjacent pairs of windows of ``op``; the ratio ours / theirs as median and range."""
    pairs = []
    for r in range(rounds):
        first, second = (ours, theirs) if r % 2 == 0 else (theirs, ours)
        rates = {first: first.rate(op, **args), second: second.rate(op, **args)}
        pairs.append((rates[ours], rates[theirs]))
    ratios = sorted(a / b for a, b in pairs)
    return {
        "seqnlp": round(statistics.median(a for a, _ in pairs), 1),
        "peer": round(statistics.median(b for _, b in pairs), 1),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
    }
