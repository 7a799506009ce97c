"""The searches an exported model runs in NumPy over its graphs' outputs: the CRF's Viterbi path and span
probabilities (as ``seqnlp.nn.crf.CRF``), beam search with GNMT's penalties (as ``seqnlp.nn.beam.beam_search``),
and sampling (as ``seqnlp.tasks.textgen.model.sample``). The PyTorch versions are the reference; the parity tests hold
these to them."""

from __future__ import annotations

from collections.abc import Callable

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
    tokens = np.full(batch, bos, dtype=np.int64)
    sentences = np.arange(batch)  # the sentences still searched
    scores = np.zeros((batch, beam), dtype=np.float32)
    scores[:, 1:] = NEG_INF  # all beams start identical: one is kept
    finished = np.zeros((batch, beam), dtype=bool)
    coverage = None
    last_steps = max_lengths - 1
    steps = int(last_steps.max()) + 1
    columns_history = np.full((steps, batch, beam), eos_column, dtype=np.int64)
    origins_history = np.broadcast_to(np.arange(beam), (steps, batch, beam)).copy()
    final_scores = np.full((batch, beam), NEG_INF, dtype=np.float32)
    final_finished = np.zeros((batch, beam), dtype=bool)
    final_coverage = np.zeros((batch, beam), dtype=np.float32)
    real_source = np.arange(src.shape[1])[None, :] < src_lengths[:, None]

    def record(rows):
        final_scores[sentences[rows]] = scores[rows]
        final_finished[sentences[rows]] = finished[rows]
        if coverage_penalty > 0:
            attended = np.log(np.clip(coverage[rows], 1e-6, 1.0))
            attended = np.where(real_source[sentences[rows]][:, None, :], attended, 0.0)
            final_coverage[sentences[rows]] = attended.sum(axis=2)

    for t in range(steps):
        log_probs, state, attention = step(tokens, memory, state)
        if t == 0 and beam > 1:  # every hypothesis takes the same first step: computed once, then copied
            rows = np.repeat(np.arange(log_probs.shape[0]), beam)
            log_probs, attention = log_probs[rows], attention[rows]
            state = take_state(state, rows)
        active = len(sentences)
        if coverage_penalty > 0:
            paid = (attention * (~finished).reshape(-1, 1)).reshape(active, beam, -1)
            coverage = paid if coverage is None else coverage + paid
        log_probs = log_probs.reshape(active, beam, -1)
        end_log_prob = log_probs[:, :, eos_column]
        candidates, columns = _top(log_probs, min(beam, log_probs.shape[2]))
        closing = finished | (t >= last_steps[sentences])[:, None]
        if closing.any():
            candidates = np.where(closing[:, :, None], NEG_INF, candidates)
            candidates[:, :, 0] = np.where(closing, np.where(finished, 0.0, end_log_prob), candidates[:, :, 0])
            columns = np.where(closing[:, :, None], eos_column, columns)
        k = candidates.shape[2]
        scores, top = _top((scores[:, :, None] + candidates).reshape(active, beam * k), beam)
        origins = top // k
        columns = np.take_along_axis(columns.reshape(active, beam * k), top, axis=1)
        finished = np.take_along_axis(finished, origins, axis=1) | (columns == eos_column)
        if coverage is not None:
            coverage = np.take_along_axis(coverage, origins[:, :, None], axis=1)
        columns_history[t, sentences] = columns
        origins_history[t, sentences] = origins
        done = (finished | np.isneginf(scores)).all(axis=1)
        if done.any():
            record(done)
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                break
            sentences, scores, finished = sentences[keep], scores[keep], finished[keep]
            coverage = None if coverage is None else coverage[keep]
            origins, columns = origins[keep], columns[keep]
            memory = {name: value[keep] for name, value in memory.items()}
            state = take_state(state, (keep[:, None] * beam + origins).reshape(-1))
        else:
            state = take_state(state, (np.arange(active)[:, None] * beam + origins).reshape(-1))
        tokens = output_ids[columns.reshape(-1)]
    else:  # the last step ended every hypothesis
        record(np.arange(len(sentences)))
    taken = t + 1
    sequences = np.empty((batch, beam, taken), dtype=np.int64)
    current = np.broadcast_to(np.arange(beam), (batch, beam))
    for s in range(taken - 1, -1, -1):
        sequences[:, :, s] = np.take_along_axis(columns_history[s], current, axis=1)
        current = np.take_along_axis(origins_history[s], current, axis=1)
    ended = sequences == eos_column
    lengths = np.where(ended.any(axis=2), ended.argmax(axis=2) + 1, taken)
    penalty = ((5.0 + lengths) / 6.0) ** length_penalty
    ranked = np.where(final_finished, final_scores / penalty + coverage_penalty * final_coverage, NEG_INF)
    best_scores, best = _top(ranked, min(n_best, beam))
    results = []
    for b in range(batch):
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
