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
    lengths = torch.zeros(batch, beam, dtype=torch.long, device=device)
    max_lengths = max_lengths.to(device)
    min_lengths = min_lengths.to(device) if min_lengths is not None else None
    active = torch.arange(batch, device=device)  # sentences still searched, as rows of the full batch
    final_scores, final_lengths, final_finished = scores.clone(), lengths.clone(), finished.clone()
    steps_tokens, steps_origins = [], []  # per step, full-batch [batch, beam] columns and beam origins
    identity = torch.arange(beam, device=device).expand(batch, beam)
    real = torch.arange(src.size(1), device=device) < src_lengths.to(device).unsqueeze(1)  # [batch, S]
    coverage = None  # [A * beam, S]: attention each open hypothesis has paid to each source position
    final_coverage = torch.zeros(batch, beam, device=device)
    for step in range(int(max_lengths.max())):
        logits, enc = model.next_logits(tokens, enc)
        if step == 0 and beam > 1:  # every hypothesis takes the same first step: computed once per sentence, then copied
            logits, enc = logits.repeat_interleave(beam, dim=0), enc.expand(beam)
        if beta:
            attention = enc.attention * (~finished).view(-1, 1).to(enc.attention.dtype)
            coverage = attention if coverage is None else coverage + attention
        vocab = logits.size(1)
        log_probs = logits.log_softmax(dim=1).view(-1, beam, vocab)
        end_log_prob = log_probs[:, :, end]
        if min_lengths is not None:
            too_short = step < min_lengths[active] - 1
            if bool(too_short.any()):
                end_log_prob = end_log_prob.clone()
                log_probs[too_short, :, end] = float("-inf")
        candidates, candidate_columns = log_probs.topk(min(beam, vocab), dim=2)  # [A, beam, k]
        # Finished hypotheses extend only with EOS at no cost; those at their length limit only with EOS at its log-probability.
        closing = finished | (step >= max_lengths[active] - 1).unsqueeze(1)
        if bool(closing.any()):
            candidates.masked_fill_(closing.unsqueeze(2), float("-inf"))
            candidates[:, :, 0] = torch.where(closing, torch.where(finished, 0.0, end_log_prob), candidates[:, :, 0])
            candidate_columns.masked_fill_(closing.unsqueeze(2), end)
        k = candidates.size(2)
        scores, top_index = (scores.unsqueeze(2) + candidates).view(-1, beam * k).topk(beam, dim=1)
        origin = torch.div(top_index, k, rounding_mode="floor")
        column = candidate_columns.view(-1, beam * k).gather(1, top_index)
        was_finished = finished.gather(1, origin)
        finished = was_finished | (column == end)
        lengths = lengths.gather(1, origin) + (~was_finished).long()
        step_columns = torch.full((batch, beam), end, dtype=torch.long, device=device)
        step_columns[active] = column
        step_origins = identity.clone()
        step_origins[active] = origin
        steps_tokens.append(step_columns)
        steps_origins.append(step_origins)
        if beta:
            coverage = coverage.view(len(active), beam, -1).gather(1, origin.unsqueeze(2).expand(-1, -1, coverage.size(1)))
        done = (finished | scores.isneginf()).all(dim=1)  # -inf: dead slots (beam wider than the candidates)
        if bool(done.any()):
            final_scores[active[done]] = scores[done]
            final_lengths[active[done]] = lengths[done]
            final_finished[active[done]] = finished[done]
            if beta:
                final_coverage[active[done]] = coverage_penalty(coverage[done], real[active[done]])
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            active, scores, finished, lengths = active[keep], scores[keep], finished[keep], lengths[keep]
            origin, column = origin[keep], column[keep]
            if beta:
                coverage = coverage[keep]
            enc = enc.select(keep, (keep.unsqueeze(1) * beam + origin).view(-1))
        else:
            enc = enc.reorder((torch.arange(len(active), device=device).unsqueeze(1) * beam + origin).view(-1))
        if beta:
            coverage = coverage.reshape(-1, coverage.size(2))
        tokens = (output_ids[column] if output_ids is not None else column).view(-1)
    else:  # the last step ended every hypothesis; record sentences whose dead slots kept them in the loop
        final_scores[active], final_lengths[active], final_finished[active] = scores, lengths, finished
        if beta:
            final_coverage[active] = coverage_penalty(coverage.view(len(active), beam, -1), real[active])
    normalised = (final_scores / length_penalty(final_lengths, alpha) + beta * final_coverage).masked_fill(~final_finished, float("-inf"))
    n_best = min(n_best, beam)
    best_scores, best = normalised.topk(n_best, dim=1)
    # Walk back through the origins to read each chosen hypothesis.
    sequences = torch.empty(batch, n_best, len(steps_tokens), dtype=torch.long, device=device)
    current = best
    for step in range(len(steps_tokens) - 1, -1, -1):
        sequences[:, :, step] = steps_tokens[step].gather(1, current)
        current = steps_origins[step].gather(1, current)
    if output_ids is not None:
        sequences = output_ids[sequences]
    results = []
    for rows_b, scores_b in zip(sequences.tolist(), best_scores.tolist()):
        results.append([(seq[: seq.index(eos)] if eos in seq else seq, score) for seq, score in zip(rows_b, scores_b)])
    return results
