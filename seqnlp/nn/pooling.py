"""Pooling of encoder outputs into one vector per sequence: final state, max, mean or attention."""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.nn.gemm import Linear

POOLINGS = ("final", "max", "mean", "attention")


class Pooling(nn.Module):
    """``forward(outputs[B, T, D], final[B, D], mask[B, T]) -> [B, D]``; padding never contributes."""

    def __init__(self, kind: str, dim: int):
        super().__init__()
        if kind not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {kind!r}")
        self.kind = kind
        if kind == "attention":
            self.project = Linear(dim, dim)
            self.query = Linear(dim, 1, bias=False)

    def forward(self, outputs: torch.Tensor, final: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "final":
            return final
        mask3 = mask.unsqueeze(2)
        if self.kind == "max":
            return outputs.masked_fill(~mask3, float("-inf")).amax(dim=1)
        if self.kind == "mean":
            return (outputs * mask3).sum(1) / mask3.sum(1).clamp(min=1)
        scores = self.query(torch.tanh(self.project(outputs))).squeeze(2).masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=1)
        return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1)
