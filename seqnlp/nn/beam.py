"""Beam search (and greedy search, its beam-1 case) over a batch, with batch x beam in one tensor.

A search step is four named moves, as in OpenNMT-py's ``BeamSearch``: forbid endings that come too
early (``_forbid_early_ends``), list each hypothesis's candidate next tokens (``_candidates``), keep
the ``beam`` best of every sentence (``_Open.advance``), and retire the sentences whose hypotheses have all
finished (``_Finished.record``); at the end ``_History.backtrack`` reads the hypotheses back and
``GNMTScorer`` ranks them.

The model searched offers ``encode(src, lengths) -> state`` and ``next_logits(tokens, state) -> (logits[N, V],
state)`` (unnormalised scores of the next token; log-probabilities work too), and optionally ``output_ids``: the
token id of each of the V columns (default: column = token id). The state offers ``expand(beam)`` (``beam`` rows
per sentence), ``select(sentences, rows)`` (drop finished sentences, keeping the given rows) and ``reorder(rows)``
(follow beams within a sentence); with a coverage penalty, also ``attention`` (``[N, S]``, the weights of the step
just taken), which counts toward a hypothesis's coverage up to the step that emits its EOS.
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


@dataclass
class _Open:
    """The sentences still searched: their rows in the batch, and their hypotheses' scores, finished flags and
    coverage (``[A, beam, S]``: the attention each has paid to each source position; None without a coverage penalty).
    """

    sentences: torch.Tensor
    scores: torch.Tensor
    finished: torch.Tensor
    coverage: torch.Tensor | None = None

    @staticmethod
    def start(batch: int, beam: int, device) -> _Open:
        """Every sentence, each with one live hypothesis: all beams start identical, so one is kept."""
        scores = torch.zeros(batch, beam, device=device)
        scores[:, 1:] = NEG_INF
        return _Open(
            torch.arange(batch, device=device), scores, torch.zeros(batch, beam, dtype=torch.bool, device=device)
        )

    def add_attention(self, attention: torch.Tensor) -> None:
        """Count a step's attention ``[A * beam, S]`` toward the coverage of the hypotheses still open."""
        attention = (attention * (~self.finished).view(-1, 1)).view(*self.finished.shape, -1)
        self.coverage = attention if self.coverage is None else self.coverage + attention

    def advance(self, candidates, candidate_columns, eos_column: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the ``beam`` best extensions of each sentence; returns their origins (hypotheses extended), columns."""
        beam, k = candidates.shape[1:]
        self.scores, top = (self.scores.unsqueeze(2) + candidates).view(-1, beam * k).topk(beam, dim=1)
        origins = torch.div(top, k, rounding_mode="floor")
        columns = candidate_columns.view(-1, beam * k).gather(1, top)
        self.finished = self.finished.gather(1, origins) | (columns == eos_column)
        if self.coverage is not None:
            self.coverage = self.coverage.gather(1, origins.unsqueeze(2).expand(-1, -1, self.coverage.size(2)))
        return origins, columns

    def done(self) -> torch.Tensor:
        """Sentences whose hypotheses have all finished (-inf scores: dead slots, a beam wider than the candidates)."""
        return (self.finished | self.scores.isneginf()).all(dim=1)

    def keep(self, rows: torch.Tensor) -> _Open:
        coverage = None if self.coverage is None else self.coverage[rows]
        return _Open(self.sentences[rows], self.scores[rows], self.finished[rows], coverage)


class _Finished:
    """The final scores of each sentence's hypotheses, recorded when the sentence leaves the search."""

    def __init__(self, src: torch.Tensor, src_lengths: torch.Tensor, beam: int):
        batch, device = src.size(0), src.device
        self.scores = torch.full((batch, beam), NEG_INF, device=device)
        self.finished = torch.zeros(batch, beam, dtype=torch.bool, device=device)
        self.coverage = torch.zeros(batch, beam, device=device)
        self.real_source = torch.arange(src.size(1), device=device) < src_lengths.to(device).unsqueeze(1)  # [batch, S]

    def record(self, leaving: _Open, scorer: GNMTScorer) -> None:
        """The scores of the sentences ``leaving`` the search."""
        sentences = leaving.sentences
        self.scores[sentences] = leaving.scores
        self.finished[sentences] = leaving.finished
        if scorer.uses_attention:
            self.coverage[sentences] = coverage_penalty(leaving.coverage, self.real_source[sentences])


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

    ``model``: see the module's docstring. A sentence is done once all its ``beam`` hypotheses are finished
    (stopping as soon as the best raw score is finished favours short translations under a length penalty:
    docs/experiments.md) and leaves the batch, so the remaining steps only pay for sentences still searched.
    Sentence ``b`` must end by ``max_lengths[b]`` tokens (EOS included) and, given ``min_lengths``, cannot end
    before ``min_lengths[b]``.
    """
    batch, device = src.size(0), src.device
    output_ids = getattr(model, "output_ids", None)
    eos_column = int((output_ids == eos).nonzero()[0, 0]) if output_ids is not None else eos
    state = model.encode(src, src_lengths)  # one row per sentence until the first step is taken
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)
    open_ = _Open.start(batch, beam, device)
    last_steps = max_lengths.to(device) - 1
    first_end_steps = min_lengths.to(device) - 1 if min_lengths is not None else None
    bounds = _ActiveBounds(open_.sentences, last_steps, first_end_steps, beam)
    history = _History(int(last_steps.max()) + 1, batch, beam, eos_column, device)
    final = _Finished(src, src_lengths, beam)
    for step in range(history.columns.size(0)):
        logits, state = model.next_logits(tokens, state)
        if step == 0 and beam > 1:  # every hypothesis takes the same first step: computed once, then copied
            logits, state = logits.repeat_interleave(beam, dim=0), state.expand(beam)
        if scorer.uses_attention:
            open_.add_attention(state.attention)
        log_probs = logits.log_softmax(dim=1).view(len(open_.sentences), beam, -1)
        end_log_prob = _forbid_early_ends(log_probs, step, bounds, eos_column)
        candidates, columns = _candidates(log_probs, end_log_prob, open_.finished, step, bounds, eos_column)
        origins, columns = open_.advance(candidates, columns, eos_column)
        history.record(step, open_.sentences, columns, origins)
        done = open_.done()
        if bool(done.any()):
            final.record(open_.keep(done), scorer)
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            open_, origins, columns = open_.keep(keep), origins[keep], columns[keep]
            state = state.select(keep, (keep.unsqueeze(1) * beam + origins).view(-1))
            bounds = _ActiveBounds(open_.sentences, last_steps, first_end_steps, beam)
        else:
            state = state.reorder((bounds.first_rows + origins).view(-1))
        tokens = output_ids.index_select(0, columns.view(-1)) if output_ids is not None else columns.view(-1)
    else:  # the last step ended every hypothesis; record sentences whose dead slots kept them in the loop
        final.record(open_, scorer)
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
