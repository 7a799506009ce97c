"""The searches an exported model runs in NumPy over its graphs' outputs: beam search with GNMT's penalties (as
``seqnlp.nn.beam.beam_search``) and sampling (as ``seqnlp.tasks.textgen.model.sample``); the parity tests hold these
to the PyTorch versions. The CRF's searches are one code for both runtimes, in ``seqnlp.nn.crf_decoding``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from seqnlp.nn.crf_decoding import NEG_INF, log_softmax


# -- beam search ------------------------------------------------------------------------------------------------
def max_target_lengths(src_lengths: np.ndarray, ratio: float) -> np.ndarray:
    """The most subwords (EOS included) a translation of a source of each length may have: ratio x length + 5, in
    float32 as both runtimes compute it."""
    return (np.asarray(src_lengths, dtype=np.float32) * np.float32(ratio)).astype(np.int64) + 5


def _top(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values along the last axis, best first, and their indices (``torch.topk``)."""
    if k < values.shape[-1]:
        index = np.argpartition(values, -k, axis=-1)[..., -k:]
    else:
        index = np.broadcast_to(np.arange(values.shape[-1]), values.shape).copy()
    picked = np.take_along_axis(values, index, axis=-1)
    order = np.argsort(-picked, axis=-1, kind="stable")
    return np.take_along_axis(picked, order, axis=-1), np.take_along_axis(index, order, axis=-1)


def beam_search(
    encode: Callable,
    step: Callable,
    src: np.ndarray,
    src_lengths: np.ndarray,
    *,
    beam: int,
    max_lengths: np.ndarray,
    bos: int,
    eos: int,
    output_ids: np.ndarray,
    length_penalty: float,
    coverage_penalty: float,
    n_best: int = 1,
) -> list[list[tuple[list[int], float]]]:
    """The ``n_best`` hypotheses ``(token ids without BOS/EOS, score)`` of every sentence, best first.

    ``encode(src, src_lengths) -> (memory, state)``; ``step(tokens, memory, state) -> (log-probabilities [N, V],
    state, attention [N, S])``, where ``memory`` is a dict of per-sentence arrays (axis 0) and ``state`` a dict of
    per-hypothesis arrays (hypothesis axis ``STATE_AXES[name]``). The moves are ``seqnlp.nn.beam``'s.
    """
    batch = src.shape[0]
    eos_column = int(np.flatnonzero(output_ids == eos)[0])
    memory, state = encode(src, src_lengths)
    tokens, beams = np.full(batch, bos, dtype=np.int64), _Beams.start(batch, beam)
    last_steps = max_lengths - 1
    history = _History(int(last_steps.max()) + 1, batch, beam, eos_column)
    ended = _Ended(batch, beam, np.arange(src.shape[1])[None, :] < src_lengths[:, None])
    for t in range(history.steps):
        log_probs, state, attention = step(tokens, memory, state)
        if t == 0 and beam > 1:  # every hypothesis takes the same first step: computed once, then copied
            rows = np.repeat(np.arange(log_probs.shape[0]), beam)
            log_probs, attention, state = log_probs[rows], attention[rows], take_state(state, rows)
        active, finished = len(beams.sentences), beams.finished
        if coverage_penalty > 0:
            beams.add_coverage(attention)
        closing = finished | (t >= last_steps[beams.sentences])[:, None]
        candidates, columns = _candidates(log_probs.reshape(active, beam, -1), finished, closing, beam, eos_column)
        k = candidates.shape[2]
        beams.scores, top = _top((beams.scores[:, :, None] + candidates).reshape(active, beam * k), beam)
        origins, columns = top // k, np.take_along_axis(columns.reshape(active, beam * k), top, axis=1)
        beams.finished = np.take_along_axis(finished, origins, axis=1) | (columns == eos_column)
        if beams.coverage is not None:
            beams.coverage = np.take_along_axis(beams.coverage, origins[:, :, None], axis=1)
        history.record(t, beams.sentences, columns, origins)
        done = (beams.finished | np.isneginf(beams.scores)).all(axis=1)
        kept = np.flatnonzero(~done) if done.any() else np.arange(active)
        if done.any():
            ended.record(beams.taken(done))
            if kept.size == 0:
                break
            beams, origins, columns = beams.taken(kept), origins[kept], columns[kept]
            memory = {name: value[kept] for name, value in memory.items()}
        state = take_state(state, (kept[:, None] * beam + origins).reshape(-1))
        tokens = output_ids[columns.reshape(-1)]
    else:  # the last step ended every hypothesis
        ended.record(beams)
    sequences = history.backtrack(t + 1)
    ranked = ended.ranked(sequences, eos_column, length_penalty, coverage_penalty)
    return _best_hypotheses(ranked, sequences, n_best, output_ids, eos)


@dataclass
class _Beams:
    """The sentences still searched, with their beams' scores, finished flags and attention coverage."""

    sentences: np.ndarray
    scores: np.ndarray
    finished: np.ndarray
    coverage: np.ndarray | None = None

    @staticmethod
    def start(batch: int, beam: int) -> _Beams:
        scores = np.zeros((batch, beam), dtype=np.float32)
        scores[:, 1:] = NEG_INF  # all beams start identical: one is kept
        return _Beams(np.arange(batch), scores, np.zeros((batch, beam), dtype=bool))

    def add_coverage(self, attention: np.ndarray) -> None:
        """Add this step's attention ``[active * beam, S]`` of the hypotheses not yet finished."""
        paid = (attention * (~self.finished).reshape(-1, 1)).reshape(*self.finished.shape, -1)
        self.coverage = paid if self.coverage is None else self.coverage + paid

    def taken(self, rows) -> _Beams:
        coverage = None if self.coverage is None else self.coverage[rows]
        return _Beams(self.sentences[rows], self.scores[rows], self.finished[rows], coverage)


def _candidates(log_probs, finished, closing, beam: int, eos_column: int) -> tuple[np.ndarray, np.ndarray]:
    """Each hypothesis' best next moves ``(log-probabilities, columns)`` ``[active, beam, k]``; a finished one can
    only stay finished (at no cost), one at its last step only end."""
    end_log_prob = log_probs[:, :, eos_column]
    candidates, columns = _top(log_probs, min(beam, log_probs.shape[2]))
    if closing.any():
        candidates = np.where(closing[:, :, None], NEG_INF, candidates)
        candidates[:, :, 0] = np.where(closing, np.where(finished, 0.0, end_log_prob), candidates[:, :, 0])
        columns = np.where(closing[:, :, None], eos_column, columns)
    return candidates, columns


class _History:
    """Each step's chosen columns and the hypotheses they extend, per sentence and beam, to backtrack at the end."""

    def __init__(self, steps: int, batch: int, beam: int, eos_column: int):
        self.steps, self.beam = steps, beam
        self.columns = np.full((steps, batch, beam), eos_column, dtype=np.int64)
        self.origins = np.broadcast_to(np.arange(beam), (steps, batch, beam)).copy()

    def record(self, step: int, sentences, columns, origins) -> None:
        self.columns[step, sentences] = columns
        self.origins[step, sentences] = origins

    def backtrack(self, taken: int) -> np.ndarray:
        """The columns of every final hypothesis, ``[batch, beam, taken]``."""
        batch = self.columns.shape[1]
        sequences = np.empty((batch, self.beam, taken), dtype=np.int64)
        current = np.broadcast_to(np.arange(self.beam), (batch, self.beam))
        for s in range(taken - 1, -1, -1):
            sequences[:, :, s] = np.take_along_axis(self.columns[s], current, axis=1)
            current = np.take_along_axis(self.origins[s], current, axis=1)
        return sequences


class _Ended:
    """The scores, finished flags and attention coverage of each sentence's beam when its search ended."""

    def __init__(self, batch: int, beam: int, real_source: np.ndarray):
        self.scores = np.full((batch, beam), NEG_INF, dtype=np.float32)
        self.finished = np.zeros((batch, beam), dtype=bool)
        self.coverage = np.zeros((batch, beam), dtype=np.float32)
        self.real_source = real_source

    def record(self, beams: _Beams) -> None:
        sentences = beams.sentences
        self.scores[sentences] = beams.scores
        self.finished[sentences] = beams.finished
        if beams.coverage is not None:
            attended = np.log(np.clip(beams.coverage, 1e-6, 1.0))
            self.coverage[sentences] = np.where(self.real_source[sentences][:, None, :], attended, 0.0).sum(axis=2)

    def ranked(self, sequences, eos_column: int, length_penalty: float, coverage_penalty: float) -> np.ndarray:
        """GNMT's final score of each hypothesis (``seqnlp.nn.beam.GNMTScorer``); unfinished ones rank last."""
        ends = sequences == eos_column
        lengths = np.where(ends.any(axis=2), ends.argmax(axis=2) + 1, sequences.shape[2])
        penalty = ((5.0 + lengths) / 6.0) ** length_penalty
        return np.where(self.finished, self.scores / penalty + coverage_penalty * self.coverage, NEG_INF)


def _best_hypotheses(ranked, sequences, n_best: int, output_ids, eos: int) -> list[list[tuple[list[int], float]]]:
    best_scores, best = _top(ranked, min(n_best, ranked.shape[1]))
    results = []
    for b in range(ranked.shape[0]):
        hypotheses = []
        for score, index in zip(best_scores[b], best[b]):
            ids = output_ids[sequences[b, index]].tolist()
            hypotheses.append((ids[: ids.index(eos)] if eos in ids else ids, float(score)))
        results.append(hypotheses)
    return results


# The hypothesis axis of each decoder-state array: hidden and cell states are [layers, N, H], the feed [N, D].
STATE_AXES = {"hidden": 1, "cell": 1, "feed": 0}


def take_state(state: dict, rows: np.ndarray) -> dict:
    return {name: np.take(value, rows, axis=STATE_AXES[name]) for name, value in state.items()}


# -- sampling ---------------------------------------------------------------------------------------------------
def sample(logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> np.ndarray:
    """One id per row of ``logits[B, V]`` with temperature, top-k and nucleus filtering (``charlm.sample``)."""
    logits = logits.astype(np.float64) / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = np.sort(logits, axis=-1)[:, -top_k][:, None]
        logits = np.where(logits < kth, NEG_INF, logits)
    if top_p < 1.0:
        order = np.argsort(-logits, axis=-1, kind="stable")
        ranked = np.take_along_axis(logits, order, axis=-1)
        probs = np.exp(log_softmax(ranked))
        drop = np.cumsum(probs, axis=-1) - probs >= top_p  # keep the smallest prefix reaching top_p
        ranked = np.where(drop, NEG_INF, ranked)
        logits = np.full_like(logits, NEG_INF)
        np.put_along_axis(logits, order, ranked, axis=-1)
    probs = np.exp(log_softmax(logits))
    return np.array([rng.choice(len(row), p=row / row.sum()) for row in probs], dtype=np.int64)
