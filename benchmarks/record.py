"""Run a benchmark and keep what it printed, with its command and the machine it ran on, in docs/results/.

    python benchmarks/record.py tagger_speed.py [its arguments...]

The benchmark's JSON (the last line it prints) goes to docs/results/<name>.json beside the command line, the
processor, its core count, torch's version, the date and the run's wall-clock seconds; `python
docs/make_results.py` turns every such file into docs/results.md, and a test checks that the two agree. Run it
with nothing else running: a second process on this 2-core machine wrecks a measurement.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "docs" / "results"


def processor() -> str:
    """The CPU's model name and its vector extensions that matter to oneDNN (AVX2, AVX-512, bf16, AMX)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    extensions = [label for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_bf16", "AVX512-BF16"),
                                            ("amx_bf16", "AMX")) if flag in flags]  # fmt: skip
    return ", ".join([name, *extensions])


def machine() -> dict:
    import torch

    return {
        "cpu": processor(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main(argv: list[str]) -> int:
    if not argv or not (HERE / argv[0]).is_file():
        print("usage: python benchmarks/record.py BENCHMARK.py [arguments...]", file=sys.stderr)
        return 2
    script, arguments = argv[0], argv[1:]
    started = time.perf_counter()
    ran = subprocess.run([sys.executable, str(HERE / script), *arguments], stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if ran.returncode != 0:
        return ran.returncode
    lines = [line for line in ran.stdout.splitlines() if line.strip()]
    result = json.loads(lines[-1])
    record = {
        "command": " ".join(["python", f"benchmarks/{script}", *arguments]),
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "seconds": round(seconds, 1),
        "result": result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{Path(script).stem}.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{path.relative_to(HERE.parent)}: {json.dumps(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
