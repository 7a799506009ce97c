"""Beam search (and greedy search, its beam-1 case) over a batch, with batch x beam in one tensor."""

from __future__ import annotations

import torch


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT length penalty ``((5 + len) / 6) ** alpha``; ``alpha = 0`` leaves scores unnormalised, 1 is close to per-token averaging."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


@torch.inference_mode()
def beam_search(model, src, src_lengths, beam: int, max_lengths: torch.Tensor, bos: int, eos: int, pad: int,
                alpha: float = 0.6, n_best: int = 1) -> list[list[tuple[list[int], float]]]:
    """The ``n_best`` hypotheses ``(token ids without BOS/EOS, normalised score)`` of every sentence, best first.

    ``model`` offers ``encode(src, lengths) -> state`` and ``next_log_probs(tokens, state) -> (log_probs[N, V], state)``;
    the state offers ``select(rows)`` (expand sentences into beams) and ``reorder(rows)`` (follow beams within a sentence).
    A hypothesis that emitted EOS is finished: it keeps its score and only extends with padding, at no
    cost, so finished and open hypotheses compete in one ``topk``. Sentence ``b`` is forced to end
    by ``max_lengths[b]`` tokens. The search stops when every hypothesis of every sentence is finished.
    """
    batch = src.size(0)
    device = src.device
    enc = model.encode(src, src_lengths)
    enc = enc.select(torch.arange(batch, device=device).repeat_interleave(beam))
    tokens = torch.full((batch * beam,), bos, dtype=torch.long, device=device)
    scores = torch.zeros(batch, beam, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one
    finished = torch.zeros(batch, beam, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, beam, dtype=torch.long, device=device)
    max_lengths = max_lengths.to(device)
    steps_tokens, steps_origins = [], []
    rows = torch.arange(batch, device=device).unsqueeze(1) * beam
    for step in range(int(max_lengths.max())):
        log_probs, enc = model.next_log_probs(tokens, enc)
        vocab = log_probs.size(1)
        log_probs = log_probs.view(batch, beam, vocab)
        if finished.any():
            padding_only = torch.full_like(log_probs[0, 0], float("-inf"))
            padding_only[pad] = 0.0
            log_probs = torch.where(finished.unsqueeze(2), padding_only, log_probs)
        must_end = (step >= max_lengths - 1).view(batch, 1) & ~finished
        if must_end.any():
            eos_only = torch.full_like(log_probs[0, 0], float("-inf"))
            eos_only[eos] = 0.0
            log_probs = torch.where(must_end.unsqueeze(2), eos_only + log_probs[..., eos : eos + 1], log_probs)
        top_scores, top_index = (scores.unsqueeze(2) + log_probs).view(batch, beam * vocab).topk(beam, dim=1)
        origin = torch.div(top_index, vocab, rounding_mode="floor")
        token = top_index % vocab
        was_finished = finished.gather(1, origin)
        finished = was_finished | (token == eos)
        lengths = lengths.gather(1, origin) + (~was_finished).long()
        scores = top_scores
        flat_origin = (rows + origin).view(-1)
        enc = enc.reorder(flat_origin)
        tokens = token.view(-1)
        steps_tokens.append(token)
        steps_origins.append(origin)
        if bool(finished.all()):
            break
    normalised = scores / length_penalty(lengths, alpha)
    n_best = min(n_best, beam)
    best_scores, best = normalised.topk(n_best, dim=1)
    # Walk back through the origins to read each chosen hypothesis.
    sequences = torch.empty(batch, n_best, len(steps_tokens), dtype=torch.long, device=device)
    current = best
    for step in range(len(steps_tokens) - 1, -1, -1):
        sequences[:, :, step] = steps_tokens[step].gather(1, current)
        current = steps_origins[step].gather(1, current)
    results = []
    for b, (rows_b, scores_b) in enumerate(zip(sequences.tolist(), best_scores.tolist())):
        hyps = []
        for seq, score in zip(rows_b, scores_b):
            if eos in seq:
                seq = seq[: seq.index(eos)]
            hyps.append(([t for t in seq if t != pad], score))
        results.append(hyps)
    return results
