"""``seqnlp repeat``: one configuration trained once per seed, and what the seeds agree on.

    seqnlp repeat TASK --seeds 1,2,3,4,5 --output-dir OUT [any seqnlp train option]

Each seed is an ordinary run in ``OUT/seed-K/``, trained one after another. A seed already finished is skipped, an
interrupted one resumes from its checkpoint, and one that another process is training (another machine sharing
the folder) is left to it, so a killed repeat continues where it stopped and several machines can work through
the seeds together. Then ``OUT/summary.json`` and ``OUT/report.md`` gather every finished seed: each one's dev
(and test) scores, their mean, standard deviation, range and a 95% t-interval of the mean over seeds; ``OUT/model``
is a copy of the model of the seed whose dev score is the median, the run a user would ship.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

from seqnlp.errors import ConfigError
from seqnlp.storage.folders import (
    FolderBusy,
    OutputDirectory,
    atomic_directory,
    existing_directory,
    write_json,
    write_text_atomic,
)

# Student's t quantile at 0.975 for 1..30 degrees of freedom; beyond, the normal's 1.96 is within 2%.
T_975 = [
    float(t)
    for t in "12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110 "
    "2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042".split()
]
MANAGED = ("--seed", "--output-dir", "--resume", "--overwrite")  # what repeat sets for each seed's run


def parse_seeds(text: str) -> list[int]:
    """``1,2,3`` or ``1-5`` (or both: ``1-3,7``): distinct non-negative seeds in the order given."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, sep, high = part.strip().partition("-")
            seeds += range(int(low), int(high) + 1) if sep else [int(low)]
    except ValueError:
        raise ConfigError(f"--seeds: expected seeds such as 1,2,3 or 1-5, not {text[:60]!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds: expected distinct non-negative seeds, not {text[:60]!r}")
    return seeds


def seed_folders(out: Path) -> dict[int, Path]:
    """The seed runs in a repeat's folder, by seed."""
    found = {}
    for path in Path(out).glob("seed-*"):
        suffix = path.name[len("seed-") :]
        if path.is_dir() and suffix.isdigit():
            found[int(suffix)] = path
    return dict(sorted(found.items()))


def is_repeat_folder(path) -> bool:
    return bool(seed_folders(Path(path)))


def train_seed(task: str, argv: list[str], out: Path, seed: int) -> str:
    """Train one seed's run unless it is finished or another process holds it; returns what happened."""
    from seqnlp.training.run import train

    folder = out / f"seed-{seed}"
    if (folder / "metrics.json").is_file():
        return "finished before"
    flags = ["--seed", str(seed), "--output-dir", str(folder)]
    if existing_directory(folder / "checkpoints" / "last"):
        flags.append("--resume")
    elif OutputDirectory(folder).used():
        flags.append("--overwrite")  # a run that died before its first checkpoint
    try:
        train(task, [*argv, *flags])
    except FolderBusy:
        return "taken by another process"
    return "resumed" if "--resume" in flags else "trained"


def t_interval(values: list[float]) -> list[float] | None:
    """The 95% t-interval of the mean of ``values`` (None for fewer than two)."""
    if len(values) < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    t = T_975[len(values) - 2] if len(values) - 1 <= len(T_975) else 1.96
    half = t * sd / math.sqrt(len(values))
    return [mean - half, mean + half]


def describe(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "interval": t_interval(values),
        "seeds": len(values),
    }


def gather(out: Path, wanted: list[int] | None = None) -> dict:
    """The summary of the finished seeds of ``out`` (what summary.json holds)."""
    out = Path(out)
    runs = {}
    for seed, folder in seed_folders(out).items():
        if (folder / "metrics.json").is_file():
            runs[seed] = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    if not runs:
        raise ConfigError(f"{out}: no seed has finished yet")
    from seqnlp.tasks.base import get_task

    task_names = {m["task"] for m in runs.values()}
    if len(task_names) > 1:
        raise ConfigError(f"{out}: the seeds are runs of different tasks ({', '.join(sorted(task_names))})")
    cls = get_task(task_names.pop())
    metric = cls.metric
    rows = [{"seed": seed, **{s: m[s][metric] for s in ("dev", "test") if s in m}} for seed, m in runs.items()]
    ranked = sorted(rows, key=lambda r: r["dev"], reverse=cls.higher_is_better)
    median = ranked[(len(ranked) - 1) // 2]["seed"]  # of an even count, the better of the two middle runs
    summary = {
        "task": cls.name,
        "metric": metric,
        "seeds": rows,
        **{split: describe([r[split] for r in rows]) for split in ("dev", "test") if all(split in r for r in rows)},
        "median_seed": median,
        "model": str(out / "model"),
        "pending": [s for s in (wanted or []) if s not in runs],
    }
    return summary


def summarize(out: Path, wanted: list[int] | None = None) -> dict:
    """Gather the finished seeds of ``out`` into summary.json and report.md; copy the median seed's model."""
    out = Path(out)
    summary = gather(out, wanted)
    median = summary["median_seed"]
    with atomic_directory(out / "model") as tmp:
        source = existing_directory(out / f"seed-{median}" / "model")
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    write_json(out / "summary.json", summary)
    write_text_atomic(out / "report.md", report(summary))
    return summary


def report(summary: dict) -> str:
    from seqnlp.evaluation.report import markdown_table, shown_interval

    metric, splits = summary["metric"], [s for s in ("dev", "test") if s in summary]
    lines = [f"# seqnlp {summary['task']} over {len(summary['seeds'])} seeds", ""]
    rows = [[split, s["mean"], s["sd"], s["min"], s["max"], shown_interval(s["interval"])]
            for split in splits for s in [summary[split]]]  # fmt: skip
    lines += [markdown_table(["split", f"mean {metric}", "sd", "min", "max", "95% t-interval of the mean"], rows), ""]
    seed_rows = [[r["seed"], *(r.get(split, "-") for split in splits)] for r in summary["seeds"]]
    lines += ["## Seeds", "", markdown_table(["seed", *splits], seed_rows), ""]
    lines += [f"`model/` is a copy of seed {summary['median_seed']}'s model, the run with the median dev {metric}.", ""]
    if summary["pending"]:
        lines += [f"Not finished: seeds {', '.join(map(str, summary['pending']))}.", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    from seqnlp.config import ArgumentParser
    from seqnlp.tasks import task_names

    parser = ArgumentParser(
        prog="seqnlp repeat",
        usage="%(prog)s TASK --seeds 1,2,3 --output-dir OUT [seqnlp train options]",
        description="Train one configuration once per seed into OUT/seed-K/ and summarize the seeds.",
        allow_abbrev=False,  # --seed (a train option repeat refuses) must not read as --seeds
    )
    parser.add_argument("task", choices=task_names())
    parser.add_argument("--seeds", required=True, help="1,2,3 or 1-5: the runs' --seed values")
    parser.add_argument("--output-dir", required=True, help="the repeat's folder (one seed-K/ run folder per seed)")
    args, rest = parser.parse_known_args(argv)
    seeds = parse_seeds(args.seeds)
    managed = [flag for flag in rest if flag.split("=")[0] in MANAGED]
    if managed:
        raise ConfigError(f"seqnlp repeat sets {managed[0].split('=')[0]} for each seed's run: leave it out")
    out = Path(args.output_dir)
    for seed in seeds:
        print(f"seed {seed}: {train_seed(args.task, rest, out, seed)}", flush=True)
    summary = summarize(out, seeds)
    metric = summary["metric"]
    dev = summary["dev"]
    print(
        f"{len(summary['seeds'])} seeds: dev {metric} {dev['mean']:.4f} ± {dev['sd']:.4f} (sd; min {dev['min']:.4f}, "
        f"max {dev['max']:.4f}); model: {summary['model']} (seed {summary['median_seed']}); "
        f"report: {out / 'report.md'}"
    )
