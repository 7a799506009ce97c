"""Beam search (and greedy search, its beam-1 case) over a batch, with batch x beam in one tensor.

A search step is four named moves, as in OpenNMT-py's ``BeamSearch``: forbid endings that come too
early (``_forbid_early_ends``), list each hypothesis's candidate next tokens (``_candidates``), keep
the ``beam`` best of every sentence (``_pick``), and retire the sentences whose hypotheses have all
finished (``_Finished.record``); at the end ``_History.backtrack`` reads the hypotheses back and
``GNMTScorer`` ranks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = float("-inf")


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT length penalty ``((5 + len) / 6) ** alpha``; ``alpha = 0`` leaves scores unnormalised, 1 is close to
    per-token averaging."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def coverage_penalty(coverage: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """GNMT coverage penalty (unweighted): ``sum_i log min(attention paid to source i, 1)`` over real positions.

    ``coverage`` ``[A, beam, S]``, ``real`` ``[A, S]``.
    """
    return coverage.clamp(1e-6, 1.0).log().masked_fill(~real.unsqueeze(1), 0.0).sum(dim=2)


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

    def coverage_scores(self, coverage: torch.Tensor | None, real: torch.Tensor) -> torch.Tensor | None:
        """The unweighted coverage term of hypotheses ``[A, beam]`` (None when the scorer ignores attention)."""
        return coverage_penalty(coverage, real) if self.uses_attention else None

    def final_scores(self, log_probs: torch.Tensor, lengths: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        """Scores of finished hypotheses ``[B, beam]`` from their log-probabilities, lengths and coverage terms."""
        return log_probs / length_penalty(lengths, self.length_penalty) + self.coverage_penalty * coverage


class _ActiveBounds:
    """Length bounds of the sentences still searched, gathered once each time that set changes rather than every step.

    ``last``: the step at which each must end; ``first_end``: the first step at which it may (or None);
    ``first_rows``: each sentence's first row in the ``[A * beam]`` hypotheses.
    """

    def __init__(self, active: torch.Tensor, last_steps: torch.Tensor, first_end_steps: torch.Tensor | None, beam: int):
        self.last = last_steps[active]
        self.earliest_last = int(self.last.min())
        self.first_end = first_end_steps[active] if first_end_steps is not None else None
        self.latest_first_end = int(self.first_end.max()) if self.first_end is not None else 0
        self.first_rows = torch.arange(len(active), device=active.device).unsqueeze(1) * beam


class _History:
    """Every step's chosen token column and beam origin per sentence; a sentence that is done keeps EOS in place."""

    def __init__(self, steps: int, batch: int, beam: int, eos_column: int, device):
        self.columns = torch.full((steps, batch, beam), eos_column, dtype=torch.long, device=device)
        self.origins = torch.arange(beam, device=device).repeat(steps, batch, 1)
        self.eos_column = eos_column

    def record(self, step: int, sentences: torch.Tensor, columns: torch.Tensor, origins: torch.Tensor) -> None:
        self.columns[step].index_copy_(0, sentences, columns)
        self.origins[step].index_copy_(0, sentences, origins)

    def backtrack(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Columns ``[batch, beam, steps]`` of every final hypothesis, and its length up to its first EOS (included)."""
        batch, beam = self.columns.shape[1:]
        sequences = torch.empty(batch, beam, steps, dtype=torch.long, device=self.columns.device)
        current = torch.arange(beam, device=self.columns.device).expand(batch, beam)
        for step in range(steps - 1, -1, -1):
            sequences[:, :, step] = self.columns[step].gather(1, current)
            current = self.origins[step].gather(1, current)
        ended = sequences == self.eos_column
        lengths = torch.where(ended.any(dim=2), ended.int().argmax(dim=2) + 1, steps)
        return sequences, lengths


class _Finished:
    """The final scores of each sentence's hypotheses, recorded when the sentence leaves the search."""

    def __init__(self, batch: int, beam: int, device):
        self.scores = torch.full((batch, beam), NEG_INF, device=device)
        self.finished = torch.zeros(batch, beam, dtype=torch.bool, device=device)
        self.coverage = torch.zeros(batch, beam, device=device)

    def record(self, sentences, scores, finished, coverage) -> None:
        self.scores[sentences] = scores
        self.finished[sentences] = finished
        if coverage is not None:
            self.coverage[sentences] = coverage


def _forbid_early_ends(log_probs: torch.Tensor, step: int, bounds: _ActiveBounds, eos_column: int) -> torch.Tensor:
    """EOS's log-probability ``[A, beam]`` before masking; EOS becomes impossible for sentences still below their
    minimum length."""
    end_log_prob = log_probs[:, :, eos_column]
    if step < bounds.latest_first_end:
        end_log_prob = end_log_prob.clone()
        log_probs[:, :, eos_column].masked_fill_((step < bounds.first_end).unsqueeze(1), NEG_INF)
    return end_log_prob


def _candidates(log_probs, end_log_prob, finished, step: int, bounds: _ActiveBounds, eos_column: int):
    """Each hypothesis's ``beam`` best next tokens ``[A, beam, k]`` (scores, columns): no other can reach the beam.

    A finished hypothesis extends only with EOS at no cost, so finished and open ones compete in one
    ``topk``; one at its length limit extends only with EOS, at EOS's log-probability.
    """
    candidates, columns = log_probs.topk(min(finished.size(1), log_probs.size(2)), dim=2)
    closing = finished | (step >= bounds.last).unsqueeze(1) if step >= bounds.earliest_last else finished
    if bool(closing.any()):
        candidates.masked_fill_(closing.unsqueeze(2), NEG_INF)
        candidates[:, :, 0] = torch.where(closing, torch.where(finished, 0.0, end_log_prob), candidates[:, :, 0])
        columns.masked_fill_(closing.unsqueeze(2), eos_column)
    return candidates, columns


def _pick(scores, candidates, candidate_columns, finished, eos_column: int):
    """The ``beam`` best extensions of each sentence: their scores, origins (hypotheses extended), columns and finished
    flags."""
    beam, k = candidates.shape[1:]
    scores, top = (scores.unsqueeze(2) + candidates).view(-1, beam * k).topk(beam, dim=1)
    origins = torch.div(top, k, rounding_mode="floor")
    columns = candidate_columns.view(-1, beam * k).gather(1, top)
    return scores, origins, columns, finished.gather(1, origins) | (columns == eos_column)


@torch.inference_mode()
def beam_search(
    model,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    *,
    beam: int,
    max_lengths: torch.Tensor,
    bos: int,
    eos: int,
    scorer: GNMTScorer,
    n_best: int = 1,
    min_lengths: torch.Tensor | None = None,
) -> list[list[tuple[list[int], float]]]:
    """The ``n_best`` hypotheses ``(token ids without BOS/EOS, scorer's score)`` of every sentence, best first.

    ``model`` offers ``encode(src, lengths) -> state`` and ``next_logits(tokens, state) -> (logits[N, V], state)``
    (unnormalised scores of the next token; log-probabilities work too), and optionally ``output_ids``: the
    token id of each of the V columns (default: column = token id). The state offers ``expand(beam)``
    (``beam`` rows per sentence), ``select(sentences, rows)`` (drop finished sentences, keeping the given
    rows) and ``reorder(rows)`` (follow beams within a sentence); with a coverage penalty, also
    ``attention`` (``[N, S]``, the weights of the step just taken), which counts toward a hypothesis's
    coverage up to the step that emits its EOS.

    A sentence is done once all its ``beam`` hypotheses are finished (stopping as soon as the best raw
    score is finished favours short translations under a length penalty: docs/experiments.md) and leaves
    the batch, so the remaining steps only pay for sentences still searched. Sentence ``b`` must end by
    ``max_lengths[b]`` tokens (EOS included) and, given ``min_lengths``, cannot end before ``min_lengths[b]``.
    """
    batch, device = src.size(0), src.device
    output_ids = getattr(model, "output_ids", None)
    eos_column = int((output_ids == eos).nonzero()[0, 0]) if output_ids is not None else eos
    state = model.encode(src, src_lengths)  # one row per sentence until the first step is taken
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)
    scores = torch.zeros(batch, beam, device=device)
    scores[:, 1:] = NEG_INF  # all beams start identical: keep one
    finished = torch.zeros(batch, beam, dtype=torch.bool, device=device)
    last_steps = max_lengths.to(device) - 1
    first_end_steps = min_lengths.to(device) - 1 if min_lengths is not None else None
    active = torch.arange(batch, device=device)  # sentences still searched, as rows of the full batch
    bounds = _ActiveBounds(active, last_steps, first_end_steps, beam)
    real_source = torch.arange(src.size(1), device=device) < src_lengths.to(device).unsqueeze(1)  # [batch, S]
    coverage = None  # [A, beam, S]: attention each open hypothesis has paid to each source position
    history = _History(int(last_steps.max()) + 1, batch, beam, eos_column, device)
    final = _Finished(batch, beam, device)
    for step in range(history.columns.size(0)):
        logits, state = model.next_logits(tokens, state)
        if (
            step == 0 and beam > 1
        ):  # every hypothesis takes the same first step: computed once per sentence, then copied
            logits, state = logits.repeat_interleave(beam, dim=0), state.expand(beam)
        if scorer.uses_attention:
            attention = (state.attention * (~finished).view(-1, 1)).view(len(active), beam, -1)
            coverage = attention if coverage is None else coverage + attention
        log_probs = logits.log_softmax(dim=1).view(len(active), beam, -1)
        end_log_prob = _forbid_early_ends(log_probs, step, bounds, eos_column)
        candidates, candidate_columns = _candidates(log_probs, end_log_prob, finished, step, bounds, eos_column)
        scores, origins, columns, finished = _pick(scores, candidates, candidate_columns, finished, eos_column)
        history.record(step, active, columns, origins)
        if coverage is not None:
            coverage = coverage.gather(1, origins.unsqueeze(2).expand(-1, -1, coverage.size(2)))
        done = (finished | scores.isneginf()).all(dim=1)  # -inf: dead slots (beam wider than the candidates)
        if bool(done.any()):
            final.record(
                active[done],
                scores[done],
                finished[done],
                scorer.coverage_scores(coverage[done] if coverage is not None else None, real_source[active[done]]),
            )
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            active, scores, finished, origins, columns = (t[keep] for t in (active, scores, finished, origins, columns))
            coverage = coverage[keep] if coverage is not None else None
            state = state.select(keep, (keep.unsqueeze(1) * beam + origins).view(-1))
            bounds = _ActiveBounds(active, last_steps, first_end_steps, beam)
        else:
            state = state.reorder((bounds.first_rows + origins).view(-1))
        tokens = output_ids.index_select(0, columns.view(-1)) if output_ids is not None else columns.view(-1)
    else:  # the last step ended every hypothesis; record sentences whose dead slots kept them in the loop
        final.record(active, scores, finished, scorer.coverage_scores(coverage, real_source[active]))
    sequences, lengths = history.backtrack(step + 1)
    ranked = scorer.final_scores(final.scores, lengths, final.coverage).masked_fill(~final.finished, NEG_INF)
    return _best_hypotheses(sequences, ranked, n_best, output_ids, eos)


def _best_hypotheses(sequences, ranked, n_best: int, output_ids, eos: int) -> list[list[tuple[list[int], float]]]:
    """The ``n_best`` highest-ranked sequences of each sentence as token ids, cut at EOS."""
    best_scores, best = ranked.topk(min(n_best, ranked.size(1)), dim=1)
    sequences = sequences.gather(1, best.unsqueeze(2).expand(-1, -1, sequences.size(2)))
    if output_ids is not None:
        sequences = output_ids[sequences]
    return [
        [(ids[: ids.index(eos)] if eos in ids else ids, score) for ids, score in zip(rows, row_scores)]
        for rows, row_scores in zip(sequences.tolist(), best_scores.tolist())
    ]
