"""Length-bucketed batching: similar lengths together so packed RNNs waste little work."""

from __future__ import annotations

import random
from collections.abc import Sequence


def bucket_batches(
    lengths: Sequence[int],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    pool_factor: int = 50,
) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size`` examples of similar length.

    Training order (``shuffle=True``) is a pure function of ``(seed, epoch)`` so a resumed run
    replays exactly the batches it would have seen. Without shuffling, examples are sorted
    longest first (the caller restores the original order of the outputs).
    """
    indices = list(range(len(lengths)))
    if not shuffle:
        indices.sort(key=lambda i: -lengths[i])
        return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    rng = random.Random(seed * 1_000_003 + epoch)
    rng.shuffle(indices)
    pool = batch_size * pool_factor
    batches = []
    for start in range(0, len(indices), pool):
        chunk = sorted(indices[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def pad(sequences: Sequence[Sequence[int]], value: int = 0):
    """A ``(len(sequences), max_len)`` long tensor, right-padded with ``value``."""
    import torch

    longest = max((len(s) for s in sequences), default=0)
    out = torch.full((len(sequences), longest), value, dtype=torch.long)
    for i, seq in enumerate(sequences):
        if len(seq):
            out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out
