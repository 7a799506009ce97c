"""The linear-chain CRF's searches over a batch's scores, in NumPy: the Viterbi path, forward-backward and the
probability of each entity span. One code for both runtimes: ``seqnlp.nn.crf.CRF`` hands them its scores as arrays,
an ONNX export (which runs without torch) its graphs' outputs."""

from __future__ import annotations

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
