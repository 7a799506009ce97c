"""Attention over encoder states: additive (Bahdanau), or multiplicative (Luong dot / general)."""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.nn.gemm import Linear

ATTENTION_KINDS = ("additive", "dot", "general")


class Attention(nn.Module):
    """``forward(query[B, Q], memory[B, S, M], mask[B, S], keys=None) -> (context[B, M], weights[B, S])``.

    A query of T steps at once, ``[B, T, Q]``, gives ``context[B, T, M]`` and ``weights[B, T, S]``.

    ``keys`` is ``precompute(memory)``: the part of the score that depends only on the memory,
    computed once per sentence instead of once per decoder step. Given ``keys``, the weights mix
    whatever per-position vectors come as ``memory`` (a decoder may pass a projection of it).
    """

    def __init__(self, kind: str, query_dim: int, memory_dim: int, attention_dim: int | None = None):
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, not {kind!r}")
        if kind == "dot" and query_dim != memory_dim:
            raise ValueError(
                f"dot attention needs equal query and memory sizes ({query_dim} != {memory_dim}); use general"
            )
        self.kind = kind
        if kind == "general":
            self.key_proj = Linear(memory_dim, query_dim, bias=False)
        elif kind == "additive":
            attention_dim = attention_dim or query_dim
            self.key_proj = Linear(memory_dim, attention_dim, bias=False)
            self.query_proj = Linear(query_dim, attention_dim)
            self.v = Linear(attention_dim, 1, bias=False)

    def precompute(self, memory: torch.Tensor) -> torch.Tensor:
        return memory if self.kind == "dot" else self.key_proj(memory)

    @staticmethod
    def mask_bias(mask: torch.Tensor) -> torch.Tensor:
        """``[B, 1, S]``: 0 at real positions, -inf at padding; added to the scores (a decoder computes it once per
        sentence)."""
        return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf")).unsqueeze(1)

    def forward(self, query, memory, mask, keys=None):
        """``mask``: ``[B, S]`` booleans (True at real positions), or its ``mask_bias``."""
        keys = self.precompute(memory) if keys is None else keys
        bias = self.mask_bias(mask) if mask.dtype == torch.bool else mask
        one_step = query.dim() == 2
        query = query.unsqueeze(1) if one_step else query  # [B, T, Q]
        if self.kind == "additive":
            scores = self.v(torch.tanh(keys.unsqueeze(1) + self.query_proj(query).unsqueeze(2))).squeeze(3) + bias
        else:
            scores = torch.baddbmm(bias, query, keys.transpose(1, 2))
        weights = scores.softmax(dim=2)  # [B, T, S]
        context = torch.bmm(weights, memory)
        return (context.squeeze(1), weights.squeeze(1)) if one_step else (context, weights)
