"""Translation's sections of ``report.md``: BLEU and chrF with their signatures, BLEU by source length, the worst
and some sample translations."""

from __future__ import annotations

from seqnlp.evaluation.report import markdown_table


def report_sections(results: dict, output_dir=None) -> list[str]:
    sections = []
    for split, scores in results.items():
        sections += [
            f"## {split}: scores (beam {scores['beam']})",
            "",
            markdown_table(
                ["metric", "value", "signature"],
                [
                    ["BLEU", scores["bleu"], scores["signature"]["bleu"]],
                    ["chrF", scores["chrf"], scores["signature"]["chrf"]],
                ],
            ),
            "",
            f"Unknown subwords in the source: {scores.get('unknown_subword_rate', 0):.3%}.",
            "",
        ]
        if scores.get("bleu_by_source_length"):
            sections += [
                f"## {split}: BLEU by source length (words)",
                "",
                markdown_table(
                    ["length", "sentences", "BLEU"],
                    [[k, v["sentences"], v["bleu"]] for k, v in scores["bleu_by_source_length"].items()],
                ),
                "",
            ]
        if scores.get("_predictions"):
            worst = sorted(scores["_predictions"], key=lambda r: r["chrf"])[:10]
            sections += [
                f"## {split}: the sentences with the lowest chrF",
                "",
                markdown_table(["chrF", "source", "reference", "translation"],
                               [[r["chrf"], r["src"], r["reference"], r["translation"]] for r in worst]),
                "",
            ]  # fmt: skip
        if scores.get("_samples"):
            sections += [
                f"## {split}: sample translations",
                "",
                markdown_table(
                    ["source", "reference", "translation"],
                    [[s["source"], s["reference"], s["translation"]] for s in scores["_samples"]],
                ),
                "",
            ]
    return sections
