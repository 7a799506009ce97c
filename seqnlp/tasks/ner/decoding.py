"""From a tagger's emissions to tag paths and entity probabilities, in NumPy: one code for the PyTorch model
(``NERTask``) and its ONNX export (``TaggerRunner``), which differ only in how they compute the emissions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seqnlp.data.tags import continuation_mask
from seqnlp.nn.crf_decoding import log_softmax, span_log_probs, viterbi


@dataclass(frozen=True)
class Chain:
    """A CRF's scores as arrays (``CRF.arrays``): ``start[K]``, ``transitions[K, K]``, ``end[K]``, and ``continues[K,
    K]``, the moves that extend an entity (``tags.continuation_mask``)."""

    start: np.ndarray
    transitions: np.ndarray
    end: np.ndarray
    continues: np.ndarray


def chain_of(crf, tag_names: list[str], temperature: float = 1.0) -> Chain | None:
    """A PyTorch CRF's scores (``CRF.arrays``) divided by ``temperature``; None without a CRF."""
    if crf is None:
        return None
    return Chain(*crf.arrays(temperature), continuation_mask(tag_names))


def best_paths(emissions: np.ndarray, lengths: np.ndarray, chain: Chain | None) -> list[list[int]]:
    """Each sentence's best tag ids: the Viterbi path with a CRF, each token's best tag without one."""
    if chain is not None:
        return viterbi(emissions, lengths, chain.start, chain.transitions, chain.end)
    return [row[:n].tolist() for row, n in zip(emissions.argmax(-1), lengths)]


def entity_probabilities(
    emissions: np.ndarray, lengths: np.ndarray, paths: list[list[int]], spans: list, chain: Chain | None
) -> list[float]:
    """The probability of each entity ``(row, start, end, type)`` of ``spans`` on its sentence's best path: with a
    CRF, that of exactly that span and type (forward-backward); without one, the product of its tokens' softmax
    probabilities. A temperature has divided ``emissions`` and ``chain``'s scores already."""
    if chain is not None:
        log_probs = span_log_probs(
            emissions, lengths, [(r, s, paths[r][s:e]) for r, s, e, _ in spans], chain.start, chain.transitions,
            chain.end, chain.continues,
        )  # fmt: skip
        return [math.exp(x) for x in log_probs]
    probabilities = np.exp(log_softmax(emissions))
    return [float(np.prod(probabilities[r, np.arange(s, e), paths[r][s:e]])) for r, s, e, _ in spans]
