"""Temperature scaling (Guo et al., 2017): one scalar ``T`` divides a model's scores before they become
probabilities, fitted on held-out data so that a probability of 0.9 is right about nine times in ten.

Dividing every score by the same positive ``T`` keeps each argmax (a class, a Viterbi path) where it was, so a
temperature changes confidences and never a prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

# A temperature outside this range means the scores carry no usable confidence (or a bug): a fit stops at its edge.
LOWEST, HIGHEST = 0.05, 20.0
_GOLDEN = (math.sqrt(5) - 1) / 2


def fit_temperature(loss: Callable[[float], float], steps: int = 40) -> float:
    """The temperature in ``[LOWEST, HIGHEST]`` that minimises ``loss(T)``, by golden-section search over ``log T``.

    The losses fitted here (negative log-likelihoods) are convex in ``1/T``, hence unimodal in ``log T``: the
    search needs no gradient and 40 steps narrow the range to ~1e-8 of its width.
    """
    low, high = math.log(LOWEST), math.log(HIGHEST)
    a, b = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    loss_a, loss_b = loss(math.exp(a)), loss(math.exp(b))
    for _ in range(steps):
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - _GOLDEN * (high - low)
            loss_a = loss(math.exp(a))
        else:
            low, a, loss_a = a, b, loss_b
            b = low + _GOLDEN * (high - low)
            loss_b = loss(math.exp(b))
    return math.exp((low + high) / 2)


def binary_log_loss(probabilities: Sequence[float], correct: Sequence[bool]) -> float:
    """Mean negative log-likelihood of ``correct`` under ``probabilities`` (clipped away from 0 and 1)."""
    total = 0.0
    for p, right in zip(probabilities, correct):
        p = min(max(p, 1e-12), 1 - 1e-12)
        total -= math.log(p if right else 1 - p)
    return total / max(1, len(probabilities))


def check_calibration(saved, source: str) -> dict | None:
    """A model's ``config.json`` ``calibration`` entry, checked (it is untrusted input)."""
    from seqnlp.errors import SeqNLPError

    if saved is None:
        return None
    temperature = saved.get("temperature") if isinstance(saved, dict) else None
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not LOWEST <= temperature <= HIGHEST
    ):
        raise SeqNLPError(
            f"'calibration' must be an object whose 'temperature' is a number from {LOWEST} to {HIGHEST}", source
        )
    return saved
