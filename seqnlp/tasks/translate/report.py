"""Translation's sections of ``report.md``: BLEU and chrF with their signatures, BLEU by source length, the worst
and some sample translations."""

from __future__ import annotations

from seqnlp.evaluation.report import markdown_table, table_section


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
            rows = [[k, v["sentences"], v["bleu"]] for k, v in scores["bleu_by_source_length"].items()]
            sections += table_section(f"{split}: BLEU by source length (words)", ["length", "sentences", "BLEU"], rows)
        if scores.get("_predictions"):
            worst = sorted(scores["_predictions"], key=lambda r: r["chrf"])[:10]
            rows = [[r["chrf"], r["src"], r["reference"], r["translation"]] for r in worst]
            sections += table_section(f"{split}: the sentences with the lowest chrF",
                                      ["chrF", "source", "reference", "translation"], rows)  # fmt: skip
        if scores.get("_samples"):
            rows = [[s["source"], s["reference"], s["translation"]] for s in scores["_samples"]]
            sections += table_section(f"{split}: sample translations", ["source", "reference", "translation"], rows)
    return sections
