"""Dropout from uniform random numbers: variational ("locked") and element-wise.

Locked dropout keeps one mask per sequence, shared by every time step: recommended for recurrent
taggers (Gal & Ghahramani 2016; Reimers & Gurevych 2017), and T times fewer random numbers.
Element-wise ``Dropout`` is ``nn.Dropout`` with the mask drawn by ``rand`` instead of ``bernoulli_``,
which is slower on CPU (docs/experiments.md, "Shared layers").
"""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(self.mask_shape(x), device=x.device, dtype=x.dtype).ge_(self.p).div_(1 - self.p)
        return x * keep


class LockedDropout(Dropout):
    """``x[B, T, D]`` (or ``[B, D]``) with whole feature channels dropped per sequence."""

    def mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (x.size(0), 1, x.size(2)) if x.dim() == 3 else tuple(x.shape)
