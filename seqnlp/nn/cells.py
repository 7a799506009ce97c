"""Recurrent cells written from their equations, for reading, teaching and checking.

Each cell holds ``weight_ih [G*H, D]``, ``weight_hh [G*H, H]``, ``bias_ih`` and ``bias_hh`` laid
out exactly as PyTorch's fused ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (gate blocks stacked in
PyTorch's order), so weights copy across and the outputs match to float32 tolerance.
``ReferenceRNN`` unrolls a cell over time; any encoder runs it with ``cell_impl="reference"``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _Cell(nn.Module):
    gates = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows))
        self.bias_hh = nn.Parameter(torch.empty(rows))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)  # PyTorch's initialisation of its fused RNNs

    def initial_state(self, batch: int, like: torch.Tensor):
        return like.new_zeros(batch, self.hidden_size)

    def forward(self, x, state):
        """``(h_t, state_t)`` from ``x_t [B, D]`` and the previous state."""
        h = state[0] if isinstance(state, tuple) else state
        return self.update(x @ self.weight_ih.T + self.bias_ih, h @ self.weight_hh.T + self.bias_hh, state)

    @staticmethod
    def update(input_gates: torch.Tensor, hidden_gates: torch.Tensor, state):
        """The cell's equations on its gate pre-activations ``W_ih x_t + b_ih`` and ``W_hh h_{t-1} + b_hh``."""
        raise NotImplementedError


class RNNCell(_Cell):
    """Elman RNN: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``."""

    @staticmethod
    def update(input_gates, hidden_gates, h):
        return RNNCell.activate(input_gates + hidden_gates, h)

    @staticmethod
    def activate(gates, h):
        """The cell's equations on the summed pre-activations ``W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``."""
        h = torch.tanh(gates)
        return h, h


class LSTMCell(_Cell):
    """Long short-term memory (gate order i, f, g, o as in PyTorch)::

        i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
        f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)         candidate cell
        o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    The additive cell update is what lets gradients flow across many steps.
    """

    gates = 4

    def initial_state(self, batch, like):
        zeros = like.new_zeros(batch, self.hidden_size)
        return zeros, zeros

    @staticmethod
    def update(input_gates, hidden_gates, state):
        return LSTMCell.activate(input_gates + hidden_gates, state)

    @staticmethod
    def activate(gates, state):
        """The cell's equations on the summed pre-activations of its four gates."""
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class GRUCell(_Cell):
    """Gated recurrent unit (gate order r, z, n as in PyTorch)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn)) candidate state
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    """

    gates = 3

    @staticmethod
    def update(input_gates, hidden_gates, h):
        xr, xz, xn = input_gates.chunk(3, dim=1)
        hr, hz, hn = hidden_gates.chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, h


CELL_CLASSES = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


# LSTM and Elman cells add their input and recurrent products before any nonlinearity, so one product
# of ``[x; h]`` with ``[W_ih | W_hh]`` gives both. A GRU's reset gate scales the recurrent share of its
# candidate state: it keeps the two products apart.
JOINT_PRODUCT_CELLS = ("lstm", "rnn")


def cell_step(cell: str, x: torch.Tensor, state: tuple, products: tuple, gates: torch.Tensor | None = None) -> tuple:
    """The new state of a layer of ``cell`` from its step input ``x`` ``[N, I]`` (``I`` may be 0), given its products.

    ``gates`` ``[N, G]``: input gates from elsewhere (a decoder's embedding share), biases included; they
    replace the (input) bias. ``products`` (``seqnlp.nn.products``): ``(joint,)``, the product with
    ``[W_ih | W_hh]`` and bias ``b_ih + b_hh``, for LSTM and Elman cells, whose step is then one matrix
    product and the cell's equations (faster than ``torch.lstm_cell``: docs/experiments.md);
    ``(input, hidden)`` for a GRU, ``input`` None where the layer has no step input.
    """
    if cell in JOINT_PRODUCT_CELLS:
        (joint,) = products
        inputs = torch.cat([x, state[0]], dim=1) if x.size(1) else state[0]
        _, new_state = CELL_CLASSES[cell].activate(joint(inputs, gates), state if cell == "lstm" else state[0])
        return new_state if cell == "lstm" else (new_state,)
    input_product, hidden_product = products
    input_gates = gates if input_product is None else input_product(x, gates)
    _, new_state = CELL_CLASSES["gru"].update(input_gates, hidden_product(state[0]), state[0])
    return (new_state,)


class ReferenceRNN(nn.Module):
    """One layer, one direction, batch first: ``forward(x[B, T, D], state=None) -> (outputs[B, T, H], final_state)``.

    The same call signature as a one-layer ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with ``batch_first=True``
    (states without the leading layer dimension). ``keep_states=True`` keeps every ``h_t`` in
    ``self.states`` as a graph node, so ``dL/dh_t`` can be read after ``backward()``.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = CELL_CLASSES[cell](input_size, hidden_size)
        self.keep_states = False
        self.states: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, state=None):
        if state is None:
            state = self.cell.initial_state(x.size(0), x)
        outputs = []
        self.states = []
        for t in range(x.size(1)):
            h, state = self.cell(x[:, t], state)
            if self.keep_states:
                h.retain_grad()
                self.states.append(h)
            outputs.append(h)
        return torch.stack(outputs, dim=1), state
