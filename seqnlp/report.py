"""The evaluation report: ``metrics.json``, ``report.md`` and ``curves.png``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from seqnlp.io import write_json, write_text_atomic


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def read_log(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(log: list[dict], metric: str, path) -> None:
    """Training loss (per logged step) and the dev metric (per epoch) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in log if "loss" in r]
    epochs = [r for r in log if "dev" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot([r["step"] for r in steps], [r["loss"] for r in steps], color="tab:blue", label="per logged step")
    left.plot(
        [r["step"] for r in epochs], [r["train_loss"] for r in epochs], "o-", color="tab:orange", label="epoch mean"
    )
    left.set_xlabel("step")
    left.set_ylabel("training loss")
    left.legend()
    left.grid(alpha=0.3)
    right.plot([r["epoch"] for r in epochs], [r["dev"].get(metric) for r in epochs], "o-", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel(f"dev {metric}")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    output_dir,
    task: str,
    metrics: dict,
    sections: Sequence[str],
    data_summary: dict,
    selection_metric: str,
) -> None:
    """Write ``metrics.json``, ``curves.png`` and ``report.md`` into ``output_dir``."""
    output_dir = Path(output_dir)
    write_json(output_dir / "metrics.json", metrics)
    log = read_log(output_dir / "train_log.jsonl")
    if log:
        plot_curves(log, selection_metric, output_dir / "curves.png")
    train = metrics.get("train", {})
    lines = [f"# seqnlp {task} report", ""]
    headline = [
        (split, k, v)
        for split in ("dev", "test")
        for k, v in metrics.get(split, {}).items()
        if isinstance(v, (int, float))
    ]
    lines += ["## Scores", "", markdown_table(["split", "metric", "value"], headline), ""]
    lines += sections
    lines += [
        "## Training",
        "",
        markdown_table(
            ["epochs", "steps", "seconds", "tokens/s", "best epoch", "ended by"],
            [
                [
                    train.get("epochs"),
                    train.get("steps"),
                    round(train.get("seconds", 0.0), 1),
                    round(train.get("tokens_per_second", 0.0)),
                    train.get("best_epoch"),
                    train.get("ended_by") or "-",
                ]
            ],
        ),
        "",
        f"The model in `model/` is the one with the best dev `{selection_metric}`.",
        "",
    ]
    if log:
        lines += ["![training curves](curves.png)", ""]
    lines += ["## Data", "", markdown_table(["item", "value"], [[k, v] for k, v in data_summary.items()]), ""]
    lines += ["## Configuration", "", "```json", json.dumps(metrics.get("config", {}), indent=2), "```", ""]
    write_text_atomic(output_dir / "report.md", "\n".join(lines))


# What a finished run writes beside model/ and checkpoints/: a new run into the folder replaces them.
RUN_FILES = ("metrics.json", "report.md", "curves.png", "confusion_*.png", "train_log.jsonl")


def remove_run_files(output_dir) -> None:
    for pattern in RUN_FILES:
        for path in Path(output_dir).glob(pattern):
            path.unlink(missing_ok=True)
    shutil.rmtree(Path(output_dir) / "tensorboard", ignore_errors=True)
