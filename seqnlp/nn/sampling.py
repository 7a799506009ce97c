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


def continue_prompts(
    step,
    prompts: list[list[int]],
    length: int,
    xp,
    *,
    banned: tuple[int, ...],
    temperature: float,
    top_k: int,
    top_p: float,
    generator,
) -> list[list[int]]:
    """``length`` ids drawn after each prompt, all prompts in one batch; ``banned`` ids (padding, unknown) are never
    drawn. ``step(inputs[B, 1], state)`` gives ``(logits[B, 1, V], state)``, the first state being None; a state is
    an array ``[layers, B, hidden]`` or a tuple or dict of them."""
    # Prompts differ in length: feed them one position at a time, each row keeping its own last logits and state.
    lengths = xp.asarray([len(p) for p in prompts])
    longest = max(len(p) for p in prompts)
    padded = xp.asarray([[p[min(t, len(p) - 1)] for t in range(longest)] for p in prompts])
    last, state = None, None
    for t in range(longest):
        logits, new_state = step(padded[:, t : t + 1], state)
        active = t < lengths
        last = logits[:, 0] if last is None else xp.where(active[:, None], logits[:, 0], last)
        state = new_state if state is None else _where_state(xp, active[None, :, None], new_state, state)
    rows = [[] for _ in prompts]
    for _ in range(length):
        next_ids = sample(xp.without_columns(last, banned), temperature, top_k, top_p, generator)
        for row, drawn in zip(rows, next_ids.tolist()):
            row.append(drawn)
        logits, state = step(next_ids[:, None], state)
        last = logits[:, 0]
    return rows


def _where_state(xp, active, new, old):
    if isinstance(new, tuple):
        return tuple(_where_state(xp, active, n, o) for n, o in zip(new, old))
    if isinstance(new, dict):
        return {name: _where_state(xp, active, new[name], old[name]) for name in new}
    return xp.where(active, new, old)


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
