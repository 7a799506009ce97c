"""Every peer benchmark, then one JSON line of the ratios seqnlp / peer the README's results table quotes.

    python benchmarks/peers/all.py [--threads 2]      # also: make bench-peers

Each peer's own JSON object comes first (see its script); the last line holds the median ratios:
``translator_train_vs_onmt`` is the lower of the two training ratios (with input feeding on both sides, and off).
"""

from __future__ import annotations

import argparse
import json

import against_flair
import against_onmt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    flair = against_flair.main(["--threads", str(args.threads)])
    onmt = against_onmt.main(["--threads", str(args.threads)])
    measured = ("tagger_train", "tagger_infer", "classifier_train")
    summary = {f"{name}_vs_flair": flair[name]["ratio"] for name in measured}
    summary["translator_train_vs_onmt"] = onmt["train_vs_onmt"]
    summary["translator_beam5_vs_onmt"] = onmt["beam5"]["ratio"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
