"""Beam search (and greedy search, its beam-1 case) over a batch, with batch x beam in one array: one code for
both runtimes, over PyTorch tensors for a trained model and over NumPy arrays for its ONNX export
(``seqnlp.nn.arrays``).

A search step is four named moves, as in OpenNMT-py's ``BeamSearch``: forbid endings that come too
early (``_forbid_early_ends``), list each hypothesis's candidate next tokens (``_candidates``), keep
the ``beam`` best of every sentence (``_Open.advance``), and retire the sentences whose hypotheses have all
finished (``_Finished.record``); at the end ``_History.backtrack`` reads the hypotheses back and
``GNMTScorer`` ranks them.

The model searched offers ``encode(src, lengths) -> state`` and ``next_log_probs(tokens, state) -> (log_probs[N, V],
state)`` (log-probabilities of the next token), and optionally ``output_ids``: the token id of each of the V
columns (default: column = token id). The state offers ``expand(beam)`` (``beam`` rows per sentence),
``select(sentences, rows)`` (drop finished sentences, keeping the given rows) and ``reorder(rows)`` (follow beams
within a sentence); with a coverage penalty, also ``attention`` (``[N, S]``, the weights of the step just taken),
which counts toward a hypothesis's coverage up to the step that emits its EOS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqnlp.nn.arrays import arrays_for

NEG_INF = float("-inf")


def max_target_lengths(src_lengths, ratio: float):
    """The most tokens (EOS included) a translation of a source of each length may have: ratio x length + 5, in
    float32 whichever the runtime (NumPy lengths in, NumPy lengths out)."""
    return (np.asarray(src_lengths, dtype=np.float32) * np.float32(ratio)).astype(np.int64) + 5


def length_penalty(lengths, alpha: float):
    """GNMT length penalty ``((5 + len) / 6) ** alpha``; ``alpha = 0`` leaves scores unnormalised, 1 is close to
    per-token averaging."""
    return ((5.0 + arrays_for(lengths).float32(lengths)) / 6.0) ** alpha


def coverage_penalty(coverage, real):
    """GNMT coverage penalty (unweighted): ``sum_i log min(attention paid to source i, 1)`` over real positions.

    ``coverage`` ``[A, beam, S]``, ``real`` ``[A, S]``.
    """
    xp = arrays_for(coverage)
    return xp.where(real[:, None, :], xp.log_clipped(coverage, 1e-6, 1.0), 0.0).sum(2)


@dataclass(frozen=True)
class GNMTScorer:
    """Ranks finished hypotheses by ``log P / length_penalty(len) + coverage_penalty * coverage`` (Wu et al. 2016).

    ``length_penalty`` is GNMT's alpha, ``coverage_penalty`` its beta; both 0 rank by log-probability.
    """

    length_penalty: float
    coverage_penalty: float

    @property
    def uses_attention(self) -> bool:
        """Whether the search must track how much attention each hypothesis paid to each source position."""
        return self.coverage_penalty > 0

    def final_scores(self, log_probs, lengths, coverage):
        """Scores of finished hypotheses ``[B, beam]`` from their log-probabilities, lengths and coverage terms."""
        return log_probs / length_penalty(lengths, self.length_penalty) + self.coverage_penalty * coverage


class _ActiveBounds:
    """Length bounds of the sentences still searched, gathered once each time that set changes rather than every step.

    ``last``: the step at which each must end; ``first_end``: the first step at which it may (or None);
    ``first_rows``: each sentence's first row in the ``[A * beam]`` hypotheses.
    """

    def __init__(self, xp, active, last_steps, first_end_steps, beam: int):
        self.last = last_steps[active]
        self.earliest_last = int(self.last.min())
        self.first_end = first_end_steps[active] if first_end_steps is not None else None
        self.latest_first_end = int(self.first_end.max()) if self.first_end is not None else 0
        self.first_rows = xp.arange(len(active))[:, None] * beam


class _History:
    """Every step's chosen token column and beam origin per sentence; a sentence that is done keeps EOS in place."""

    def __init__(self, xp, steps: int, batch: int, beam: int, eos_column: int):
        self.xp = xp
        self.columns = xp.ints((steps, batch, beam), eos_column)
        self.origins = xp.broadcast(xp.arange(beam), (steps, batch, beam)) + 0  # a copy, to be written
        self.eos_column = eos_column

    def record(self, step: int, sentences, columns, origins) -> None:
        self.columns[step, sentences] = columns
        self.origins[step, sentences] = origins

    def backtrack(self, steps: int):
        """Columns ``[batch, beam, steps]`` of every final hypothesis, and its length up to its first EOS (included)."""
        xp = self.xp
        batch, beam = self.columns.shape[1:]
        sequences = xp.ints((batch, beam, steps), 0)
        current = xp.broadcast(xp.arange(beam), (batch, beam))
        for step in range(steps - 1, -1, -1):
            sequences[:, :, step] = xp.take_along(self.columns[step], current, 1)
            current = xp.take_along(self.origins[step], current, 1)
        ended = sequences == self.eos_column
        lengths = xp.where(ended.any(2), xp.int32(ended).argmax(2) + 1, steps)
        return sequences, lengths


@dataclass
class _Open:
    """The sentences still searched: their rows in the batch, and their hypotheses' scores, finished flags and
    coverage (``[A, beam, S]``: the attention each has paid to each source position; None without a coverage penalty).
    """

    sentences: object
    scores: object
    finished: object
    coverage: object = None

    @staticmethod
    def start(xp, batch: int, beam: int) -> _Open:
        """Every sentence, each with one live hypothesis: all beams start identical, so one is kept."""
        scores = xp.floats((batch, beam), 0.0)
        scores[:, 1:] = NEG_INF
        return _Open(xp.arange(batch), scores, xp.falses((batch, beam)))

    def add_attention(self, attention) -> None:
        """Count a step's attention ``[A * beam, S]`` toward the coverage of the hypotheses still open."""
        attention = (attention * (~self.finished).reshape(-1, 1)).reshape(*self.finished.shape, -1)
        self.coverage = attention if self.coverage is None else self.coverage + attention

    def advance(self, xp, candidates, candidate_columns, eos_column: int):
        """Keep the ``beam`` best extensions of each sentence; returns their origins (hypotheses extended), columns."""
        beam, k = candidates.shape[1:]
        self.scores, top = xp.topk((self.scores[:, :, None] + candidates).reshape(-1, beam * k), beam)
        origins = top // k
        columns = xp.take_along(candidate_columns.reshape(-1, beam * k), top, 1)
        self.finished = xp.take_along(self.finished, origins, 1) | (columns == eos_column)
        if self.coverage is not None:
            self.coverage = xp.take_along(self.coverage, origins[:, :, None], 1)
        return origins, columns

    def done(self, xp):
        """Sentences whose hypotheses have all finished (-inf scores: dead slots, a beam wider than the candidates)."""
        return (self.finished | xp.isneginf(self.scores)).all(1)

    def keep(self, rows) -> _Open:
        coverage = None if self.coverage is None else self.coverage[rows]
        return _Open(self.sentences[rows], self.scores[rows], self.finished[rows], coverage)


class _Finished:
    """The final scores of each sentence's hypotheses, recorded when the sentence leaves the search."""

    def __init__(self, xp, src, src_lengths, beam: int):
        batch = src.shape[0]
        self.scores = xp.floats((batch, beam), NEG_INF)
        self.finished = xp.falses((batch, beam))
        self.coverage = xp.floats((batch, beam), 0.0)
        self.real_source = xp.arange(src.shape[1]) < xp.asarray(src_lengths)[:, None]  # [batch, S]

    def record(self, leaving: _Open, scorer: GNMTScorer) -> None:
        """The scores of the sentences ``leaving`` the search."""
        sentences = leaving.sentences
        self.scores[sentences] = leaving.scores
        self.finished[sentences] = leaving.finished
        if scorer.uses_attention:
            self.coverage[sentences] = coverage_penalty(leaving.coverage, self.real_source[sentences])


def _forbid_early_ends(xp, log_probs, step: int, bounds: _ActiveBounds, eos_column: int):
    """EOS's log-probability ``[A, beam]`` before masking; EOS becomes impossible for sentences still below their
    minimum length."""
    end_log_prob = log_probs[:, :, eos_column]
    if step < bounds.latest_first_end:
        end_log_prob = end_log_prob + 0  # a copy: the column is overwritten below
        log_probs[:, :, eos_column] = xp.where((step < bounds.first_end)[:, None], NEG_INF, end_log_prob)
    return end_log_prob


def _candidates(xp, log_probs, end_log_prob, finished, step: int, bounds: _ActiveBounds, eos_column: int):
    """Each hypothesis's ``beam`` best next tokens ``[A, beam, k]`` (scores, columns): no other can reach the beam.

    A finished hypothesis extends only with EOS at no cost, so finished and open ones compete in one
    ``topk``; one at its length limit extends only with EOS, at EOS's log-probability.
    """
    candidates, columns = xp.topk(log_probs, min(finished.shape[1], log_probs.shape[2]))
    closing = finished | (step >= bounds.last)[:, None] if step >= bounds.earliest_last else finished
    if bool(closing.any()):
        candidates = xp.where(closing[:, :, None], NEG_INF, candidates)
        candidates[:, :, 0] = xp.where(closing, xp.where(finished, 0.0, end_log_prob), candidates[:, :, 0])
        columns = xp.where(closing[:, :, None], eos_column, columns)
    return candidates, columns


def beam_search(
    model,
    src,
    src_lengths,
    *,
    beam: int,
    max_lengths,
    bos: int,
    eos: int,
    scorer: GNMTScorer,
    n_best: int = 1,
    min_lengths=None,
) -> list[list[tuple[list[int], float]]]:
    """The ``n_best`` hypotheses ``(token ids without BOS/EOS, scorer's score)`` of every sentence, best first.

    ``model``: see the module's docstring; ``src`` (``[batch, S]``) and the lengths are arrays of the runtime's kind.
    A sentence is done once all its ``beam`` hypotheses are finished (stopping as soon as the best raw score is
    finished favours short translations under a length penalty: docs/experiments.md) and leaves the batch, so the
    remaining steps only pay for sentences still searched. Sentence ``b`` must end by ``max_lengths[b]`` tokens (EOS
    included) and, given ``min_lengths``, cannot end before ``min_lengths[b]``.
    """
    xp = arrays_for(src)
    with xp.inference():
        return _search(xp, model, src, src_lengths, beam, max_lengths, min_lengths, bos, eos, scorer, n_best)


def _search(xp, model, src, src_lengths, beam, max_lengths, min_lengths, bos, eos, scorer, n_best):
    batch = src.shape[0]
    output_ids = getattr(model, "output_ids", None)
    eos_column = int(xp.nonzero(output_ids == eos)[0]) if output_ids is not None else eos
    state = model.encode(src, src_lengths)  # one row per sentence until the first step is taken
    tokens = xp.ints((batch,), bos)
    open_ = _Open.start(xp, batch, beam)
    last_steps = xp.asarray(max_lengths) - 1
    first_end_steps = xp.asarray(min_lengths) - 1 if min_lengths is not None else None
    bounds = _ActiveBounds(xp, open_.sentences, last_steps, first_end_steps, beam)
    history = _History(xp, int(last_steps.max()) + 1, batch, beam, eos_column)
    final = _Finished(xp, src, src_lengths, beam)
    for step in range(history.columns.shape[0]):
        log_probs, state = model.next_log_probs(tokens, state)
        if step == 0 and beam > 1:  # every hypothesis takes the same first step: computed once, then copied
            log_probs, state = xp.repeat_rows(log_probs, beam), state.expand(beam)
        if scorer.uses_attention:
            open_.add_attention(state.attention)
        log_probs = log_probs.reshape(len(open_.sentences), beam, -1)
        end_log_prob = _forbid_early_ends(xp, log_probs, step, bounds, eos_column)
        candidates, columns = _candidates(xp, log_probs, end_log_prob, open_.finished, step, bounds, eos_column)
        origins, columns = open_.advance(xp, candidates, columns, eos_column)
        history.record(step, open_.sentences, columns, origins)
        done = open_.done(xp)
        if bool(done.any()):
            final.record(open_.keep(done), scorer)
            keep = xp.nonzero(~done)
            if len(keep) == 0:
                break
            open_, origins, columns = open_.keep(keep), origins[keep], columns[keep]
            state = state.select(keep, (keep[:, None] * beam + origins).reshape(-1))
            bounds = _ActiveBounds(xp, open_.sentences, last_steps, first_end_steps, beam)
        else:
            state = state.reorder((bounds.first_rows + origins).reshape(-1))
        tokens = output_ids[columns.reshape(-1)] if output_ids is not None else columns.reshape(-1)
    else:  # the last step ended every hypothesis; record sentences whose dead slots kept them in the loop
        final.record(open_, scorer)
    sequences, lengths = history.backtrack(step + 1)
    ranked = xp.where(final.finished, scorer.final_scores(final.scores, lengths, final.coverage), NEG_INF)
    return _best_hypotheses(xp, sequences, ranked, n_best, output_ids, eos)


def _best_hypotheses(xp, sequences, ranked, n_best: int, output_ids, eos: int) -> list[list[tuple[list[int], float]]]:
    """The ``n_best`` highest-ranked sequences of each sentence as token ids, cut at EOS."""
    best_scores, best = xp.topk(ranked, min(n_best, ranked.shape[1]))
    sequences = xp.take_along(sequences, best[:, :, None], 1)
    if output_ids is not None:
        sequences = output_ids[sequences]
    return [
        [(ids[: ids.index(eos)] if eos in ids else ids, score) for ids, score in zip(rows, row_scores)]
        for rows, row_scores in zip(sequences.tolist(), best_scores.tolist())
    ]
