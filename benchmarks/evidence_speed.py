"""What the evaluation evidence costs: bootstrap intervals and a paired comparison on CoNLL-2003 dev's sentences.

    python benchmarks/evidence_speed.py [--conll ../shared/data/conll2003/dev.txt] [--resamples 1000] [--trials 10000]

Prints one JSON object. The predictions are the gold tags with one entity in ten of each system dropped or
retyped at random (two systems, independently), so the statistics are those of taggers at about 0.9 F1; the
times are of the statistics, the intervals (entity P/R/F1 and per type) and the comparison, not of tagging.
"""

from __future__ import annotations

import common  # noqa: F401  (first: it puts the repository on the import path)

# isort: split

import argparse
import json
import random
import time
from pathlib import Path

from seqnlp.data import tags as tagging
from seqnlp.data.conll import read_conll
from seqnlp.evaluation.evidence import bootstrap_intervals, paired_comparison
from seqnlp.evaluation.metrics import entity_error_analysis, entity_statistics


def degraded(gold: list[list[str]], rng: random.Random, types: list[str]) -> list[list[str]]:
    """``gold`` with one entity in ten dropped or given another type."""
    out = []
    for tags in gold:
        spans = []
        for entity_type, start, end in tagging.to_spans(tags):
            if rng.random() < 0.1:
                if rng.random() < 0.5:
                    continue
                entity_type = rng.choice([t for t in types if t != entity_type])
            spans.append((entity_type, start, end))
        out.append(tagging.from_spans(spans, len(tags), "iob2"))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--conll", default=str(Path(__file__).resolve().parents[2] / "shared/data/conll2003/dev.txt"))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=10_000)
    args = parser.parse_args()
    gold = [tagging.convert(s.tags, "iob2") for s in read_conll(args.conll)]
    types = sorted({t for tags in gold for t, _, _ in tagging.to_spans(tags)})
    rng = random.Random(0)
    a, b = degraded(gold, rng, types), degraded(gold, rng, types)

    started = time.perf_counter()
    statistics_a = entity_statistics(gold, a, types)
    counted = time.perf_counter()
    intervals = bootstrap_intervals(statistics_a, args.resamples)
    resampled = time.perf_counter()
    statistics_b = entity_statistics(gold, b, types)
    compared_at = time.perf_counter()
    comparison = paired_comparison(statistics_a, statistics_b, "f1", args.resamples, args.trials)
    finished = time.perf_counter()
    entity_error_analysis(gold, a)
    analysed = time.perf_counter()
    print(
        json.dumps(
            {
                "sentences": len(gold),
                "resamples": args.resamples,
                "trials": args.trials,
                "statistics_seconds": round(counted - started, 3),
                "intervals_seconds": round(resampled - counted, 3),
                "comparison_seconds": round(finished - compared_at, 3),
                "error_analysis_seconds": round(analysed - finished, 3),
                "f1_interval": [round(x, 4) for x in intervals["f1"]],
                "difference": round(comparison["difference"], 4),
                "difference_interval": [round(x, 4) for x in comparison["interval"]],
                "p_value": round(comparison["p_value"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
