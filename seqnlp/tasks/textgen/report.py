"""The character LM's sections of ``report.md``: bits per character by character class, and samples."""

from __future__ import annotations

import math

from seqnlp.evaluation.report import markdown_table


def report_sections(results: dict, output_dir=None) -> list[str]:
    sections = []
    for split, scores in results.items():
        rows = [[scores["loss"], scores["bpc"], scores["perplexity"], f"{scores['unknown_char_rate']:.3%}"]]
        sections += [
            f"## {split}",
            "",
            markdown_table(["nats/char", "bits/char", "perplexity", "unknown chars"], rows),
            "",
        ]
        if scores.get("loss_by_character_class"):
            rows = [
                [name, c["characters"], f"{c['share']:.1%}", c["loss"], c["loss"] / math.log(2),
                 f"{c['share_of_loss']:.1%}"]
                for name, c in scores["loss_by_character_class"].items()
            ]  # fmt: skip
            sections += [
                f"## {split}: loss by character class (of the predicted character)",
                "",
                markdown_table(["class", "characters", "share", "nats/char", "bits/char", "share of the loss"], rows),
                "",
            ]
        if scores.get("_samples"):
            sections += [f"## {split}: samples (temperature 0.8, seed 0)", ""]
            for prompt, text in scores["_samples"].items():
                sections += ["```", prompt + text, "```", ""]
    return sections
