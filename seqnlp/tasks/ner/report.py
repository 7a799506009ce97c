"""NER's sections of ``report.md``: entities by type, errors by kind, calibration."""

from __future__ import annotations

from seqnlp.evaluation.metrics import ERROR_KINDS
from seqnlp.evaluation.report import calibration_lines, markdown_table, precision_recall_row, table_section


def report_sections(results: dict, output_dir=None) -> list[str]:
    sections = []
    for split, scores in results.items():
        intervals = scores.get("intervals", {})
        rows = [
            precision_recall_row(name, r, intervals.get("per_type", {}).get(name))
            for name, r in scores["per_type"].items()
        ]
        micro = {**scores, "support": sum(r["support"] for r in scores["per_type"].values())}
        rows.append(precision_recall_row("**all (micro)**", micro, intervals))
        sections += table_section(
            f"{split}: entities by type", ["type", "precision", "recall", "F1", "support"], rows,
            f"Token accuracy {scores['token_accuracy']:.4f}; unknown-word rate {scores['unknown_word_rate']:.2%}.",
        )  # fmt: skip
        if "error_analysis" in scores:
            sections += error_analysis_lines(split, scores["error_analysis"])
        if "calibration" in scores:
            sections += calibration_lines(split, scores["calibration"], "entity probabilities", output_dir)
    return sections


def error_analysis_lines(split: str, analysis: dict) -> list[str]:
    """The report's entity errors: by kind and type, the most confused types, F1 by length and by seen words."""
    by_type = analysis["errors_by_type"]
    rows = [[name, *counts.values(), sum(counts.values())] for name, counts in by_type.items()]
    lines = [
        f"## {split}: entity errors by kind",
        "",
        "A gold entity not found exactly is of the wrong type (a prediction has its span), of the wrong boundary "
        "(an overlapping prediction has its type), wrong in both, or missed; a prediction overlapping no gold entity "
        "is spurious (counted under its own type).",
        "",
        markdown_table(["type", *ERROR_KINDS, "all"], rows) if rows else "No errors.",
        "",
    ]
    if analysis["confused_types"]:
        confused = [[c["gold"], c["predicted"], c["count"]] for c in analysis["confused_types"]]
        lines += ["Most confused types (gold → predicted): "
                  + ", ".join(f"{g} → {p} ({n})" for g, p, n in confused) + ".", ""]  # fmt: skip
    groups = [("length " + k, v) for k, v in analysis["f1_by_length"].items()]
    groups += [(f"words {k} in training", v) for k, v in analysis.get("f1_by_words", {}).items()]
    rows = [[name, v["f1"], v["gold"], v["predicted"]] for name, v in groups]
    lines += [f"## {split}: F1 by entity length and by seen words", "",
              markdown_table(["entities", "F1", "gold", "predicted"], rows), ""]  # fmt: skip
    return lines
