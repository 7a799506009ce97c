"""How far a score can be trusted: 95% bootstrap intervals over an evaluation's units, and paired tests between
two models scored on the same units.

Each task turns its evaluation into per-unit sufficient statistics (a row per sentence, example, sentence pair or
chunk of text) and functions from summed statistics to its scores, so that a resample is a weighted sum of rows
rather than a new evaluation: 1,000 resamples of a few thousand sentences take milliseconds to a second. Draws
follow sacreBLEU's own (NumPy's ``default_rng(12345)``; indices of shape ``[resamples, units]`` for the
bootstrap, a coin per unit and trial for approximate randomization), so translation intervals and p-values are
the ones sacreBLEU's paired tests give for the same outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SEED = 12345  # sacreBLEU's default seed (SACREBLEU_SEED): reproducible, and the same draws as its own tests
CONFIDENCE = 0.95
TRIALS = 10_000  # approximate randomization trials, sacreBLEU's default


@dataclass
class UnitStatistics:
    """An evaluation as ``rows[units, K]`` of sufficient statistics and the scores computed from their sums.

    ``scores`` maps a score's name (a metric, or ``(group, name, metric)`` for a per-type or per-class score) to a
    function from summed statistics ``[R, K]`` to ``R`` scores."""

    units: str
    rows: object
    scores: dict[object, Callable[[np.ndarray], np.ndarray]]

    def __post_init__(self):
        self.rows = np.asarray(self.rows, dtype=np.float64).reshape(len(self.rows), -1)

    def score(self, name, sums: np.ndarray) -> np.ndarray:
        return self.scores[name](sums)


def resample_counts(units: int, resamples: int, seed: int = SEED) -> np.ndarray:
    """``[resamples, units]``: how often each unit is drawn in each resample (draws with replacement)."""
    indices = np.random.default_rng(seed).choice(units, size=(resamples, units), replace=True)
    offsets = np.arange(resamples)[:, None] * units
    return np.bincount((indices + offsets).ravel(), minlength=resamples * units).reshape(resamples, units)


def interval(values) -> list[float]:
    """The central 95% of resampled scores, with sacreBLEU's order statistics (the ``n // 40``-th from each end)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    cut = len(ordered) // 40
    return [float(ordered[cut]), float(ordered[len(ordered) - cut - 1])]


def bootstrap_intervals(statistics: UnitStatistics, resamples: int, seed: int = SEED) -> dict:
    """Each score's interval: ``{metric: [low, high], group: {name: {metric: [low, high]}}}``."""
    if resamples <= 0 or len(statistics.rows) == 0:
        return {}
    sums = resample_counts(len(statistics.rows), resamples, seed) @ statistics.rows
    out: dict = {}
    for key in statistics.scores:
        bounds = interval(statistics.score(key, sums))
        if isinstance(key, tuple):
            group, name, metric = key
            out.setdefault(group, {}).setdefault(name, {})[metric] = bounds
        else:
            out[key] = bounds
    return out


def attach_intervals(scores: dict, statistics: UnitStatistics, resamples: int) -> dict:
    """``scores`` with ``intervals`` (of the scores it reports) and ``bootstrap`` (how they were drawn), and the
    statistics under ``_statistics`` for paired tests; no intervals when ``resamples`` is 0."""
    scores["_statistics"] = statistics
    if resamples > 0:
        intervals = bootstrap_intervals(statistics, resamples)
        for group in ("per_type", "per_class"):  # only the groups the scores list (those that occur)
            if group in intervals:
                intervals[group] = {k: v for k, v in intervals[group].items() if k in scores.get(group, {})}
        scores["intervals"] = intervals
        scores["bootstrap"] = description(statistics.units, resamples)
    return scores


def description(units: str, resamples: int) -> dict:
    """What ``metrics.json`` says of its intervals."""
    return {"resamples": resamples, "units": units, "confidence": CONFIDENCE, "seed": SEED, "method": "percentile"}


def paired_comparison(
    a: UnitStatistics, b: UnitStatistics, metric, resamples: int = 1000, trials: int = TRIALS, seed: int = SEED
) -> dict:
    """``b`` against ``a`` on the same units: the difference of ``metric`` (b - a), its 95% paired-bootstrap
    interval, and the p-value of paired approximate randomization (two-sided: how often swapping each unit's
    outputs between the two systems at random gives a difference at least as large)."""
    if a.rows.shape != b.rows.shape:
        raise ValueError(f"the two evaluations have different units ({a.rows.shape} and {b.rows.shape})")
    observed = float(
        b.score(metric, b.rows.sum(0, keepdims=True))[0] - a.score(metric, a.rows.sum(0, keepdims=True))[0]
    )
    counts = resample_counts(len(a.rows), resamples, seed)
    differences = b.score(metric, counts @ b.rows) - a.score(metric, counts @ a.rows)
    from_a = np.random.default_rng(seed).integers(2, size=(trials, len(a.rows)), dtype=bool)  # as sacreBLEU draws
    shuffled = np.concatenate(
        [
            np.abs(a.score(metric, take @ a.rows + ~take @ b.rows) - b.score(metric, ~take @ a.rows + take @ b.rows))
            for take in np.array_split(from_a, max(1, trials // 1000))  # a float copy of 1,000 trials at a time
        ]
    )
    # At least as large, plus one on both sides (Riezler and Maxwell, 2005): a tie of a discrete score such as
    # accuracy is no evidence of a difference. sacreBLEU counts strictly larger differences, which gives the same
    # p-value wherever no shuffled difference ties the observed one (BLEU's usual case) and p ~ 0 for two identical
    # systems.
    p_value = (int(np.sum(shuffled >= abs(observed) - 1e-12)) + 1) / (trials + 1)
    return {
        "difference": observed,
        "interval": interval(differences),
        "p_value": p_value,
        "test": "paired approximate randomization",
        "trials": trials,
        "interval_method": "paired percentile bootstrap",
        "resamples": resamples,
        "seed": seed,
    }


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, 0 where the denominator is 0 (seqeval's and scikit-learn's ``zero_division=0``)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=np.asarray(denominator) != 0)


def span_scores(correct: int, predicted: int, gold: int) -> dict[str, Callable]:
    """Precision, recall and F1 of summed ``[correct, predicted, gold]`` counts in the given columns."""
    return {
        "precision": lambda s: ratio(s[:, correct], s[:, predicted]),
        "recall": lambda s: ratio(s[:, correct], s[:, gold]),
        "f1": lambda s: ratio(2 * s[:, correct], s[:, predicted] + s[:, gold]),
    }


def group_comparison(a: list[float], b: list[float], resamples: int = 1000, trials: int = TRIALS, seed: int = SEED):
    """Two groups of runs (one score per seed): the difference of their means (b - a), a 95% bootstrap interval of
    it (each group resampled on its own) and the two-sided p-value of a permutation test of the seeds' scores
    (exact when the relabellings number at most ``trials``, else ``trials`` random ones)."""
    import itertools
    import math

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each group needs at least two runs")
    observed = float(b.mean() - a.mean())
    pooled, size = np.concatenate([a, b]), len(a)
    relabellings = math.comb(len(pooled), size)
    rng = np.random.default_rng(seed)
    if relabellings <= trials:
        chosen = np.zeros((relabellings, len(pooled)), dtype=bool)
        for row, members in enumerate(itertools.combinations(range(len(pooled)), size)):
            chosen[row, list(members)] = True
        exact = True
    else:
        chosen = np.argsort(rng.random((trials, len(pooled))), axis=1) < size
        exact = False
    differences = (~chosen @ pooled) / len(b) - (chosen @ pooled) / size
    p_value = float(np.mean(np.abs(differences) >= abs(observed) - 1e-12))
    if not exact:
        p_value = (p_value * trials + 1) / (trials + 1)
    resampled = [g[rng.integers(0, len(g), size=(resamples, len(g)))].mean(1) for g in (a, b)]
    return {
        "difference": observed,
        "interval": interval(resampled[1] - resampled[0]),
        "p_value": p_value,
        "test": "permutation test over seeds" + (" (exact)" if exact else ""),
        "permutations": int(min(relabellings, trials)),
        "interval_method": "percentile bootstrap of each group",
        "resamples": resamples,
        "seed": seed,
    }
