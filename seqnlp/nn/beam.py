"""Beam search (and greedy search, its beam-1 case) over a batch, with batch x beam in one tensor."""

from __future__ import annotations

import torch


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT length penalty ``((5 + len) / 6) ** alpha``; ``alpha = 0`` leaves scores unnormalised, 1 is close to per-token averaging."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def coverage_penalty(coverage: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """GNMT coverage penalty (before its weight beta): ``sum_i log min(attention paid to source i, 1)`` over real positions, <= 0.

    ``coverage`` ``[A, beam, S]``, ``real`` ``[A, S]``.
    """
    return coverage.clamp(1e-6, 1.0).log().masked_fill(~real.unsqueeze(1), 0.0).sum(dim=2)


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


@torch.inference_mode()
def beam_search(model, src, src_lengths, beam: int, max_lengths: torch.Tensor, bos: int, eos: int,
                alpha: float = 0.6, n_best: int = 1, min_lengths: torch.Tensor | None = None,
                beta: float = 0.0) -> list[list[tuple[list[int], float]]]:
    """The ``n_best`` hypotheses ``(token ids without BOS/EOS, normalised score)`` of every sentence, best first.

    ``model`` offers ``encode(src, lengths) -> state`` and ``next_logits(tokens, state) -> (logits[N, V], state)``
    (unnormalised scores of the next token; log-probabilities work too), and optionally ``output_ids``: the
    token id of each of the V columns (default: column = token id).
    The state offers ``expand(beam)`` (``beam`` rows per sentence), ``select(sentences, rows)`` (drop
    finished sentences, keeping the given rows) and ``reorder(rows)`` (follow beams within a sentence).

    A hypothesis that emitted EOS is finished: it keeps its score and only extends with EOS at no
    cost, so finished and open hypotheses compete in one ``topk``. Each step ranks only every
    hypothesis's own ``beam`` best next tokens (no other token can reach the beam): a per-row
    ``topk`` of the ``[N, V]`` log-probabilities, then one over the ``beam x beam`` candidates.

    A sentence is done once all its ``beam`` hypotheses are finished (stopping as soon as the best raw score is finished favours
    short translations under a length penalty: 39.50 instead of 39.71 BLEU on Multi30k val), and
    leaves the batch, so the remaining steps only pay for sentences still being searched. Sentence ``b`` is forced to
    end by ``max_lengths[b]`` tokens (EOS included) and, given ``min_lengths``, cannot end before
    ``min_lengths[b]`` tokens.

    Finished hypotheses are ranked by ``log P / length_penalty(alpha) + beta * coverage_penalty`` (Wu et al.
    2016). With ``beta > 0`` the state must also offer ``attention`` (``[N, S]``, the weights of the step just
    taken); attention counts toward a hypothesis's coverage up to the step that emits its EOS.
    """
    batch, device = src.size(0), src.device
    output_ids = getattr(model, "output_ids", None)
    end = int((output_ids == eos).nonzero()[0, 0]) if output_ids is not None else eos  # EOS's column
    enc = model.encode(src, src_lengths)  # one row per sentence until the first step is taken (see below)
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)
    scores = torch.zeros(batch, beam, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one
    finished = torch.zeros(batch, beam, dtype=torch.bool, device=device)
    last_steps = max_lengths.to(device) - 1  # the step at which each sentence's hypotheses must end
    first_end_steps = min_lengths.to(device) - 1 if min_lengths is not None else None
    active = torch.arange(batch, device=device)  # sentences still searched, as rows of the full batch
    bounds = _ActiveBounds(active, last_steps, first_end_steps, beam)
    final_scores, final_finished = scores.clone(), finished.clone()
    # Per step, every sentence's token columns and beam origins; a sentence that is done keeps EOS in place.
    steps = int(last_steps.max()) + 1
    history_columns = torch.full((steps, batch, beam), end, dtype=torch.long, device=device)
    history_origins = torch.arange(beam, device=device).repeat(steps, batch, 1)
    real = torch.arange(src.size(1), device=device) < src_lengths.to(device).unsqueeze(1)  # [batch, S]
    coverage = None  # [A * beam, S]: attention each open hypothesis has paid to each source position
    final_coverage = torch.zeros(batch, beam, device=device)
    for step in range(steps):
        logits, enc = model.next_logits(tokens, enc)
        if step == 0 and beam > 1:  # every hypothesis takes the same first step: computed once per sentence, then copied
            logits, enc = logits.repeat_interleave(beam, dim=0), enc.expand(beam)
        if beta:
            attention = enc.attention * (~finished).view(-1, 1).to(enc.attention.dtype)
            coverage = attention if coverage is None else coverage + attention
        vocab = logits.size(1)
        log_probs = logits.log_softmax(dim=1).view(-1, beam, vocab)
        end_log_prob = log_probs[:, :, end]
        if step < bounds.latest_first_end:  # some sentence is still too short to end
            end_log_prob = end_log_prob.clone()
            log_probs[:, :, end].masked_fill_((step < bounds.first_end).unsqueeze(1), float("-inf"))
        candidates, candidate_columns = log_probs.topk(min(beam, vocab), dim=2)  # [A, beam, k]
        # Finished hypotheses extend only with EOS at no cost; those at their length limit only with EOS at its log-probability.
        closing = finished | (step >= bounds.last).unsqueeze(1) if step >= bounds.earliest_last else finished
        if bool(closing.any()):
            candidates.masked_fill_(closing.unsqueeze(2), float("-inf"))
            candidates[:, :, 0] = torch.where(closing, torch.where(finished, 0.0, end_log_prob), candidates[:, :, 0])
            candidate_columns.masked_fill_(closing.unsqueeze(2), end)
        k = candidates.size(2)
        scores, top_index = (scores.unsqueeze(2) + candidates).view(-1, beam * k).topk(beam, dim=1)
        origin = torch.div(top_index, k, rounding_mode="floor")
        column = candidate_columns.view(-1, beam * k).gather(1, top_index)
        finished = finished.gather(1, origin) | (column == end)
        history_columns[step].index_copy_(0, active, column)
        history_origins[step].index_copy_(0, active, origin)
        if beta:
            coverage = coverage.view(len(active), beam, -1).gather(1, origin.unsqueeze(2).expand(-1, -1, coverage.size(1)))
        done = (finished | scores.isneginf()).all(dim=1)  # -inf: dead slots (beam wider than the candidates)
        if bool(done.any()):
            final_scores[active[done]] = scores[done]
            final_finished[active[done]] = finished[done]
            if beta:
                final_coverage[active[done]] = coverage_penalty(coverage[done], real[active[done]])
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            active, scores, finished = active[keep], scores[keep], finished[keep]
            origin, column = origin[keep], column[keep]
            if beta:
                coverage = coverage[keep]
            enc = enc.select(keep, (keep.unsqueeze(1) * beam + origin).view(-1))
            bounds = _ActiveBounds(active, last_steps, first_end_steps, beam)
        else:
            enc = enc.reorder((bounds.first_rows + origin).view(-1))
        if beta:
            coverage = coverage.reshape(-1, coverage.size(2))
        tokens = output_ids.index_select(0, column.view(-1)) if output_ids is not None else column.view(-1)
    else:  # the last step ended every hypothesis; record sentences whose dead slots kept them in the loop
        final_scores[active], final_finished[active] = scores, finished
        if beta:
            final_coverage[active] = coverage_penalty(coverage.view(len(active), beam, -1), real[active])
    # Walk back through the origins to read every hypothesis; its length runs to its first EOS (included).
    steps = step + 1
    sequences = torch.empty(batch, beam, steps, dtype=torch.long, device=device)
    current = torch.arange(beam, device=device).expand(batch, beam)
    for s in range(steps - 1, -1, -1):
        sequences[:, :, s] = history_columns[s].gather(1, current)
        current = history_origins[s].gather(1, current)
    ended = sequences == end
    lengths = torch.where(ended.any(dim=2), ended.int().argmax(dim=2) + 1, steps)
    normalised = (final_scores / length_penalty(lengths, alpha) + beta * final_coverage).masked_fill(~final_finished, float("-inf"))
    best_scores, best = normalised.topk(min(n_best, beam), dim=1)
    sequences = sequences.gather(1, best.unsqueeze(2).expand(-1, -1, steps))
    if output_ids is not None:
        sequences = output_ids[sequences]
    results = []
    for rows_b, scores_b in zip(sequences.tolist(), best_scores.tolist()):
        results.append([(seq[: seq.index(eos)] if eos in seq else seq, score) for seq, score in zip(rows_b, scores_b)])
    return results
