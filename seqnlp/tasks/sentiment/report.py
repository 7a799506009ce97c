"""Sentiment's sections of ``report.md``: per class, the confusion matrix, accuracy by length, calibration and
the most confident errors."""

from __future__ import annotations

from pathlib import Path

from seqnlp.evaluation.report import calibration_lines, markdown_table, precision_recall_row, table_section


def report_sections(results: dict, output_dir=None) -> list[str]:
    sections = []
    for split, scores in results.items():
        labels = scores["confusion_matrix"]["labels"]
        matrix = scores["confusion_matrix"]["matrix"]
        per_class = scores.get("intervals", {}).get("per_class", {})
        rows = [precision_recall_row(label, r, per_class.get(label)) for label, r in scores["per_class"].items()]
        sections += table_section(f"{split}: per class", ["label", "precision", "recall", "F1", "support"], rows)
        sections += table_section(
            f"{split}: confusion matrix (rows: gold, columns: predicted)", ["gold \\ predicted", *labels],
            [[g, *row] for g, row in zip(labels, matrix)],
        )  # fmt: skip
        if output_dir is not None:
            picture = f"confusion_{split}.png"
            plot_confusion(labels, matrix, Path(output_dir) / picture)
            sections += [f"![{split} confusion matrix]({picture})", ""]
        if scores.get("accuracy_by_length"):
            rows = [[name, b["examples"], b["accuracy"]] for name, b in scores["accuracy_by_length"].items()]
            sections += [
                f"## {split}: accuracy by length (whitespace tokens)",
                "",
                markdown_table(["tokens", "examples", "accuracy"], rows),
                "",
            ]
        if "calibration" in scores:
            sections += calibration_lines(split, scores["calibration"], "the predicted class's probability", output_dir)
        mistakes = sorted(
            (r for r in scores.get("_predictions", []) if not r["correct"]), key=lambda r: -r["probability"]
        )
        if mistakes:
            sections += [
                f"## {split}: most confident errors",
                "",
                markdown_table(
                    ["text", "gold", "predicted", "probability"],
                    [[r["text"][:200], r["gold"], r["predicted"], r["probability"]] for r in mistakes[:10]],
                ),
                "",
            ]
    return sections


def plot_confusion(labels, matrix, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 2.5 + 0.5 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
