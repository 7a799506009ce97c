"""Length-bucketed batching: similar lengths together, so a recurrent layer runs over little padding."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made: the ONNX runtime never imports it
    import torch


def bucket_batches(
    lengths: Sequence[int | tuple[int, ...]],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    pool_factor: int = 50,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Indices grouped into batches of at most ``batch_size`` examples of similar length.

    Training order (``shuffle=True``) is a pure function of ``(seed, epoch)`` so a resumed run
    replays exactly the batches it would have seen. Without shuffling, examples are sorted
    longest first (the caller restores the original order of the outputs). ``max_tokens`` caps a
    batch's padded size (examples x longest), so the few long inputs come in smaller batches
    instead of a memory spike: an RNN's training workspace grows with the padded size.

    An example of several sequences (a translation pair) has a tuple of lengths. It is sorted by its longest
    sequence, then by the others, so that every side of a batch is padded little: sorted by the source alone,
    a third of Multi30k's padded target positions are padding, which the decoder steps through.
    """
    keys = [tuple(sorted(n, reverse=True)) if isinstance(n, tuple) else (n,) for n in lengths]
    longest = [key[0] for key in keys]
    indices = list(range(len(lengths)))
    if not shuffle:
        indices.sort(key=keys.__getitem__, reverse=True)
        return _cap_tokens(indices, longest, batch_size, max_tokens)
    rng = random.Random(seed * 1_000_003 + epoch)
    rng.shuffle(indices)
    pool = batch_size * pool_factor
    batches = []
    for start in range(0, len(indices), pool):
        chunk = sorted(indices[start : start + pool], key=keys.__getitem__)
        batches.extend(_cap_tokens(chunk, longest, batch_size, max_tokens))
    rng.shuffle(batches)
    return batches


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch's tensors on ``device``; its other values as they are."""
    import torch

    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


class Batches(Sequence):
    """Batches built on demand from index groups: an epoch's padded tensors never all exist at once."""

    def __init__(self, groups: list[list[int]], items: Sequence, collate):
        self.groups = groups
        self.items = items
        self.collate = collate

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Batches(self.groups[index], self.items, self.collate)
        return self.collate([self.items[i] for i in self.groups[index]])


def _cap_tokens(indices: list[int], lengths: Sequence[int], batch_size: int, max_tokens: int | None) -> list[list[int]]:
    """Consecutive groups of at most ``batch_size`` indices and at most ``max_tokens`` padded tokens."""
    batches, current, longest = [], [], 0
    for i in indices:
        grown = max(longest, lengths[i])
        if current and (len(current) == batch_size or (max_tokens and (len(current) + 1) * grown > max_tokens)):
            batches.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    return batches


def pad(sequences: Sequence[Sequence[int]], value: int = 0):
    """A ``(len(sequences), max_len)`` long tensor, right-padded with ``value``.

    Built from one padded Python list in a single call: a tensor per row costs several times more,
    and collation runs once per batch in every epoch.
    """
    import torch

    longest = max((len(s) for s in sequences), default=0)
    rows = [list(s) + [value] * (longest - len(s)) for s in sequences]
    return torch.tensor(rows, dtype=torch.long).reshape(len(sequences), longest)
