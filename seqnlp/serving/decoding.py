"""The searches an exported model runs in NumPy over its graphs' outputs: the CRF's Viterbi path and span
probabilities (as ``seqnlp.nn.crf.CRF``), beam search with GNMT's penalties (as ``seqnlp.nn.beam.beam_search``),
and sampling (as ``seqnlp.tasks.textgen.model.sample``). The PyTorch versions are the reference; the parity tests hold
these to them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from seqnlp.data.tags import span_positions

NEG_INF = -np.inf


def logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(x, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(x - peak), axis=axis)) + np.squeeze(peak, axis=axis)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x - np.expand_dims(logsumexp(x, axis), axis)


# -- linear-chain CRF -------------------------------------------------------------------------------------------
def viterbi(emissions: np.ndarray, lengths: np.ndarray, start, transitions, end) -> list[list[int]]:
    """The best tag sequence of each sentence of ``emissions[B, T, K]``, trimmed to its length."""
    batch, steps, _ = emissions.shape
    mask = np.arange(steps)[None, :] < lengths[:, None]
    score = start + emissions[:, 0]
    backpointers = []
    for t in range(1, steps):
        candidates = score[:, :, None] + transitions
        index = candidates.argmax(axis=1)
        best = np.take_along_axis(candidates, index[:, None, :], axis=1)[:, 0]
        backpointers.append(index)
        score = np.where(mask[:, t, None], best + emissions[:, t], score)
    current = (score + end).argmax(axis=1)
    path = np.empty((batch, steps), dtype=np.int64)
    rows = np.arange(batch)
    for t in range(steps - 1, 0, -1):
        path[:, t] = current
        current = np.where(mask[:, t], backpointers[t - 1][rows, current], current)
    path[:, 0] = current
    return [row[:n].tolist() for row, n in zip(path, lengths)]


def forward_backward(emissions: np.ndarray, lengths: np.ndarray, start, transitions, end):
    """``alpha[B, T, K]``, ``beta[B, T, K]`` and ``log_z[B]`` in log space (``CRF.forward_backward``)."""
    batch, steps, tags = emissions.shape
    mask = np.arange(steps)[None, :] < lengths[:, None]
    exp_transitions = np.exp(transitions)
    alpha = np.empty_like(emissions)
    beta = np.empty_like(emissions)
    alpha[:, 0] = start + emissions[:, 0]
    for t in range(1, steps):
        step = _log_product(alpha[:, t - 1], exp_transitions) + emissions[:, t]
        alpha[:, t] = np.where(mask[:, t, None], step, alpha[:, t - 1])
    beta[:, steps - 1] = end
    for t in range(steps - 2, -1, -1):
        step = _log_product(emissions[:, t + 1] + beta[:, t + 1], exp_transitions.T)
        beta[:, t] = np.where(mask[:, t + 1, None], step, np.broadcast_to(end, (batch, tags)))
    last = np.maximum(lengths - 1, 0)
    log_z = logsumexp(alpha[np.arange(batch), last] + end, axis=1)
    return alpha, beta, log_z


def _log_product(log_vector: np.ndarray, exp_matrix: np.ndarray) -> np.ndarray:
    """``log(exp(log_vector) @ exp_matrix)`` row by row, rescaled by each row's maximum (``crf._log_product``)."""
    peak = log_vector.max(axis=1, keepdims=True)
    return np.log(np.maximum(np.exp(log_vector - peak) @ exp_matrix, 1e-30)) + peak


def span_log_probs(emissions, lengths, spans, start, transitions, end, continues) -> list[float]:
    """log P(exactly this entity) for each ``(row, first token, tag ids)`` of ``spans`` (``CRF.span_log_probs``)."""
    if not spans:
        return []
    alpha, beta, log_z = forward_backward(emissions, lengths, start, transitions, end)
    into = np.where(continues, NEG_INF, transitions)  # moves that do not extend an entity
    at = span_positions(spans, lengths.tolist())
    index = {
        name: np.asarray(value, dtype=bool if name == "ends_sentence" else np.int64) for name, value in vars(at).items()
    }
    rows, firsts, lasts = index["rows"], index["firsts"], index["lasts"]
    entered = logsumexp(alpha[rows, np.maximum(firsts - 1, 0)] + into[:, index["first_tags"]].T, axis=1)
    head = np.where(firsts == 0, start[index["first_tags"]], entered)
    body = np.zeros(len(spans), dtype=emissions.dtype)
    np.add.at(body, index["token_spans"], emissions[index["token_rows"], index["token_positions"], index["token_tags"]])
    np.add.at(body, index["move_spans"], transitions[index["move_from"], index["move_to"]])
    after = np.minimum(lasts + 1, emissions.shape[1] - 1)
    left = logsumexp(into[index["last_tags"]] + emissions[rows, after] + beta[rows, after], axis=1)
    tail = np.where(index["ends_sentence"], end[index["last_tags"]], left)
    return (head + body + tail - log_z[rows]).tolist()


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
