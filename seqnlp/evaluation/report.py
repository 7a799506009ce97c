"""The evaluation report: ``metrics.json``, ``report.md`` and ``curves.png``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from seqnlp.storage.folders import write_json, write_text_atomic


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def table_section(title: str, header: Sequence[str], rows: Sequence[Sequence], *notes: str) -> list[str]:
    """A report section: its heading, a table, and any notes below it, as lines."""
    lines = [f"## {title}", "", markdown_table(header, rows), ""]
    for note in notes:
        lines += [note, ""]
    return lines


def shown_interval(bounds) -> str:
    """``[low, high]`` as the report prints it; ``-`` where there is none."""
    return f"{bounds[0]:.4f}–{bounds[1]:.4f}" if bounds else "-"


def with_interval(value: float, bounds) -> str:
    return f"{value:.4f} ({shown_interval(bounds)})" if bounds else f"{value:.4f}"


def precision_recall_row(name: str, scores: dict, bounds: dict | None) -> list:
    """A table row: precision, recall and F1, each with its interval where there is one, and the support."""
    bounds = bounds or {}
    return [name, *(with_interval(scores[k], bounds.get(k)) for k in ("precision", "recall", "f1")), scores["support"]]


def bootstrap_note(metrics: dict) -> list[str]:
    """The line under the scores that says how their intervals were drawn."""
    described = [metrics[split]["bootstrap"] for split in ("dev", "test") if "bootstrap" in metrics.get(split, {})]
    if not described:
        return []
    how = described[0]
    return [
        f"Intervals: {how['confidence']:.0%} percentile bootstrap over the evaluation's {how['units']}, "
        f"{how['resamples']:,} resamples (seed {how['seed']}); `--bootstrap N` sets the resamples, 0 none.",
        "",
    ]


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
    lines = [f"# seqnlp {task} report", "", *scores_lines(metrics), *sections]
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


def scores_lines(metrics: dict) -> list[str]:
    """The report's scores table: each split's headline scores with their intervals, and how those were drawn."""
    headline = [
        (split, k, v, shown_interval(metrics[split].get("intervals", {}).get(k)))
        for split in ("dev", "test")
        for k, v in metrics.get(split, {}).items()
        if isinstance(v, (int, float))
    ]
    return ["## Scores", "", markdown_table(["split", "metric", "value", "95% interval"], headline), "",
            *bootstrap_note(metrics)]  # fmt: skip


def write_evaluation_report(output_dir, task: str, metrics: dict, sections: Sequence[str], data_summary: dict) -> None:
    """``seqnlp evaluate --output-dir``: ``metrics.json`` and a ``report.md`` of what was scored and how it scored."""
    output_dir = Path(output_dir)
    write_json(output_dir / "metrics.json", metrics)
    evaluated = metrics["evaluated"]
    rows = [["model", f"`{evaluated['model']}`"], ["model config sha256", f"`{evaluated['config_sha256']}`"]]
    rows += [[f"data `{item['path']}`", f"sha256 `{item['sha256']}`"] for item in evaluated.get("data", [])]
    if "dataset" in evaluated:
        rows.append(["dataset", f"`{evaluated['dataset']['name']}`, split `{evaluated['dataset']['split']}`"])
    rows += [[f"setting `{k}`", f"`{json.dumps(v)}` (not the model's)"] for k, v in evaluated["settings"].items()]
    lines = [f"# seqnlp {task} evaluation", "", "## Evaluated", "", markdown_table(["item", "value"], rows), ""]
    lines += [*scores_lines(metrics), *sections]
    lines += ["## Data", "", markdown_table(["item", "value"], [[k, v] for k, v in data_summary.items()]), ""]
    write_text_atomic(output_dir / "report.md", "\n".join(lines))


def write_evaluation(output_dir, task, metrics: dict, scores: dict, examples: list, split: str = "test") -> dict:
    """An evaluation folder (metrics.json, report.md, predictions.jsonl) of ``task``'s ``scores`` on ``examples``,
    filed under ``split`` ("test" for ``seqnlp evaluate``, "dev" for a tuning trial); returns the metrics written."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    metrics = {**{k: v for k, v in metrics.items() if k != "test"}, split: metrics["test"]}
    sections = task.report_sections({split: scores}, output_dir)
    write_evaluation_report(output_dir, task.name, metrics, sections, task.data_summary({split: examples}))
    write_predictions(output_dir, {split: scores})
    return metrics


def calibration_lines(split: str, calibration: dict, what: str, output_dir=None) -> list[str]:
    """A report section: the expected calibration error of ``what`` and its reliability diagram (a picture in
    ``output_dir``, and the bins as a table)."""
    rows = [
        [f"{b['low']:.1f}–{b['high']:.1f}", b["count"], b["confidence"], b["accuracy"]] for b in calibration["bins"]
    ]
    lines = [
        f"## {split}: calibration of {what}",
        "",
        f"Expected calibration error {calibration['ece']:.4f} over {calibration['items']:,} items (10 equal-width "
        "bins of confidence; 0 when each confidence is the share of items right at that confidence).",
        "",
    ]
    if "temperature" in calibration:
        lines += [
            f"The model divides its scores by a temperature of {calibration['temperature']:.3f}, fitted on "
            f"{_fitted_on(calibration.get('fitted_on'))}; at the trained temperature (1) the error is "
            f"{calibration['ece_before']:.4f}. On the data the temperature was fitted on, the error after it flatters "
            "the model; on other data it does not.",
            "",
        ]
    lines += [markdown_table(["confidence", "items", "mean confidence", "share right"], rows), ""]
    if output_dir is not None and calibration["bins"]:
        picture = f"calibration_{split}.png"
        plot_reliability(calibration, what, Path(output_dir) / picture)
        lines += [f"![{split} reliability diagram]({picture})", ""]
    return lines


def _fitted_on(where: str | None) -> str:
    if not where:
        return "held-out data"
    if where == "dev set":
        return "the dev set at the end of training"
    return f"`{where}`" if "held out" not in where else f"the dev set ({where})"


def plot_reliability(calibration: dict, what: str, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    if "bins_before" in calibration:
        before = calibration["bins_before"]
        ax.plot(
            [b["confidence"] for b in before], [b["accuracy"] for b in before], "s:", color="tab:orange",
            label=f"trained (ECE {calibration['ece_before']:.4f})",
        )  # fmt: skip
        what = f"{what} at T = {calibration['temperature']:.2f}"
    bins = calibration["bins"]
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="tab:blue", label=what)
    ax.set_xlabel("confidence")
    ax.set_ylabel("share right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"ECE {calibration['ece']:.4f}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_predictions(output_dir, results: dict) -> None:
    """``predictions.jsonl``: a line per evaluated example of each split (gold, prediction, confidence, errors), so
    errors can be read, filtered and re-scored without the model; nothing for a task without per-example output."""
    lines = [
        json.dumps({"split": split, **row}, ensure_ascii=False)
        for split, scores in results.items()
        for row in scores.get("_predictions", [])
    ]
    if lines:
        write_text_atomic(Path(output_dir) / "predictions.jsonl", "\n".join(lines) + "\n")


# What a finished run writes beside model/ and checkpoints/: a new run into the folder replaces them.
RUN_FILES = (
    "metrics.json", "report.md", "curves.png", "confusion_*.png", "calibration_*.png", "train_log.jsonl",
    "predictions.jsonl",
)  # fmt: skip


def remove_run_files(output_dir) -> None:
    for pattern in RUN_FILES:
        for path in Path(output_dir).glob(pattern):
            path.unlink(missing_ok=True)
    shutil.rmtree(Path(output_dir) / "tensorboard", ignore_errors=True)
