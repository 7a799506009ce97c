"""Recurrent encoder: rnn / lstm / gru, one or both directions, several layers, any padding.

Each layer and direction is a one-layer, one-direction recurrent module. The backward direction
runs on each sequence reversed *within its length* (padding stays at the end), so the fused
CPU kernels run on the padded batch directly (PyTorch's packed path is a slower per-step loop on
CPU: docs/experiments.md); with length-bucketed batches little padding is left.
"""

from __future__ import annotations

import torch
from torch import nn

from seqnlp.nn.dropout import LockedDropout

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def reverse_within_length(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Index ``[B, T]`` that reverses each row's first ``length`` positions and keeps the rest (an involution)."""
    positions = torch.arange(steps, device=lengths.device).expand(lengths.size(0), steps)
    lengths = lengths.to(positions.device).unsqueeze(1)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def _gather_time(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.size(2)))


def make_rnn(cell: str, input_size: int, hidden_size: int, cell_impl: str = "fused") -> nn.Module:
    """A one-layer, one-direction, batch-first recurrent module: PyTorch's fused kernel or the reference cells."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {cell!r}")
    if cell_impl == "fused":
        return CELLS[cell](input_size, hidden_size, batch_first=True)
    if cell_impl == "reference":
        from seqnlp.nn.cells import ReferenceRNN

        return ReferenceRNN(cell, input_size, hidden_size)
    raise ValueError(f"cell_impl must be 'fused' or 'reference', not {cell_impl!r}")


class RNNEncoder(nn.Module):
    """``forward(x[B, T, D], lengths[B])`` returns ``(outputs[B, T, out_dim], final[B, out_dim])``.

    ``outputs`` are zero past each length; ``final`` is the last layer's state after the last real
    token, forward and backward directions concatenated. Dropout between layers is variational
    (one mask per sequence, shared across time).
    """

    @classmethod
    def from_config(cls, input_size: int, config) -> RNNEncoder:
        """The encoder a task's config describes (``hidden``, ``layers``, ``cell``, ``bidirectional``, ``dropout``,
        ``cell_impl``: ``RunConfig``'s shared settings)."""
        return cls(
            input_size, config.hidden, config.layers, config.cell, config.bidirectional, config.dropout,
            config.cell_impl,
        )  # fmt: skip

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.0,
        cell_impl: str = "fused",
    ):
        super().__init__()
        self.cell = cell
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        directions = 2 if bidirectional else 1
        self.out_dim = hidden_size * directions
        self.forward_layers = nn.ModuleList(
            make_rnn(cell, input_size if i == 0 else self.out_dim, hidden_size, cell_impl) for i in range(num_layers)
        )
        self.backward_layers = (
            nn.ModuleList(
                make_rnn(cell, input_size if i == 0 else self.out_dim, hidden_size, cell_impl)
                for i in range(num_layers)
            )
            if bidirectional
            else None
        )
        self.between = LockedDropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        steps = x.size(1)
        lengths = lengths.to(x.device)
        mask = (torch.arange(steps, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2).to(x.dtype)
        reverse = reverse_within_length(lengths, steps) if self.bidirectional else None
        for layer in range(self.num_layers):
            if layer > 0:
                x = self.between(x)
            forward_out = self.forward_layers[layer](x)[0]
            if self.bidirectional:
                backward_out = self.backward_layers[layer](_gather_time(x, reverse))[0]
                x = torch.cat([forward_out, _gather_time(backward_out, reverse)], dim=2)
            else:
                x = forward_out
            x = x * mask
        last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, self.hidden_size)
        final = x[:, :, : self.hidden_size].gather(1, last).squeeze(1)
        if self.bidirectional:
            final = torch.cat([final, x[:, 0, self.hidden_size :]], dim=1)
        return x, final
