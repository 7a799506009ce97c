"""Drawing the next token from a model's scores with temperature, top-k and nucleus (top-p) filtering: one code for
both runtimes (``seqnlp.nn.arrays``); each draws from its own random stream (a ``torch.Generator``, NumPy's
``Generator``)."""

from __future__ import annotations

from seqnlp.nn.arrays import arrays_for

NEG_INF = float("-inf")


def sample(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, generator=None):
    """One id per row from ``logits[B, V]``; temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(-1)
    xp = arrays_for(logits)
    return xp.draw(xp.softmax(filtered_logits(xp, logits / temperature, top_k, top_p)), generator)


def filtered_logits(xp, logits, top_k: int, top_p: float):
    """``logits`` with every token outside the ``top_k`` best and outside the smallest best-first prefix whose
    probability reaches ``top_p`` set to -inf (0 and 1: no filter)."""
    if top_k and top_k < logits.shape[-1]:
        kth = xp.topk(logits, top_k)[0][:, -1:]
        logits = xp.where(logits < kth, NEG_INF, logits)
    if top_p < 1.0:
        ranked, order = xp.sort_descending(logits)
        probs = xp.softmax(ranked)
        drop = xp.cumsum(probs) - probs >= top_p  # keep the smallest prefix reaching top_p
        logits = xp.unsort(xp.where(drop, NEG_INF, ranked), order)
    return logits
