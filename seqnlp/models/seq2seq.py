"""Encoder-decoder translator: bidirectional RNN encoder, attentional RNN decoder, input feeding optional."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from seqnlp.nn.attention import Attention
from seqnlp.nn.cells import CELL_CLASSES
from seqnlp.nn.dropout import Dropout, LockedDropout
from seqnlp.nn.embedding import scaled_embedding
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.products import DenseProduct, Product, decoding_product

DECODER_CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


State = list[tuple[torch.Tensor, ...]]  # per decoder layer: (h, c) for LSTM, (h,) otherwise; each [N, H]


@dataclass
class Encoded:
    """Encoder results (one row per sentence) and decoder state (``beam`` rows per sentence).

    The encoder states (memory, ``[B, S, M]``) enter the decoder twice, and both are projected once
    per sentence rather than once per step and hypothesis: as attention ``keys`` and as ``values``,
    the memory through the combine layer's context columns. The attention-weighted sum of the values
    is the combine layer's context share (``W_c sum_s a_s m_s = sum_s a_s W_c m_s``), so a step mixes
    D-dimensional vectors instead of M-dimensional ones and skips the M x D product.
    """

    keys: torch.Tensor     # [B, S, K] attention keys
    values: torch.Tensor   # [B, S, D] combine-layer projection of the memory
    mask_bias: torch.Tensor  # [B, 1, S] attention score bias: 0 at real source positions, -inf at padding
    state: State           # rows [B * beam, H]
    feed: torch.Tensor     # input-feeding vector [B * beam, D]
    weights: "StepWeights"
    beam: int = 1
    attention: torch.Tensor | None = None  # [B * beam, S]: the last step's attention weights

    def expand(self, beam: int) -> "Encoded":
        """Each sentence's decoder state repeated for ``beam`` hypotheses; keys and values are shared, not copied."""
        rows = torch.arange(self.feed.size(0), device=self.feed.device).repeat_interleave(beam)
        return replace(self.reorder(rows), beam=self.beam * beam)

    def select(self, sentences: torch.Tensor, rows: torch.Tensor) -> "Encoded":
        """Keep ``sentences`` (drop finished ones) and decoder-state ``rows`` (theirs, reordered)."""
        keys, values, mask_bias = (t.index_select(0, sentences) for t in (self.keys, self.values, self.mask_bias))
        return replace(self.reorder(rows), keys=keys, values=values, mask_bias=mask_bias)

    def reorder(self, rows: torch.Tensor) -> "Encoded":
        """Decoder-state ``rows`` only: beams are reordered within their sentence, whose keys and values are the same.

        ``index_select``: several times faster than ``t[rows]`` on CPU.
        """
        state = [tuple(t.index_select(0, rows) for t in layer) for layer in self.state]
        attention = None if self.attention is None else self.attention.index_select(0, rows)
        return replace(self, state=state, feed=self.feed.index_select(0, rows), attention=attention)


@dataclass
class StepWeights:
    """Weights that every decoder step uses, sliced, gathered or joined once per batch instead of once per step."""

    layers: list[tuple[Product | None, ...]]  # per decoder layer, the products ``cell_step`` takes (see ``Seq2Seq.step_weights``)
    combine: torch.Tensor            # the combine layer's decoder-state columns
    projection: Product              # output layer over the target subwords: [N, D] -> [N, V_out]


@dataclass
class DecodingTables:
    """What ``Seq2Seq.decoding()`` computes once from the current weights instead of once per step or batch."""

    gate_table: torch.Tensor  # [V, G]: every subword's embedding gates (at the recipe's sizes a fifth of a step's work)
    layers: list[tuple[Product | None, ...]]  # StepWeights.layers
    projection: Product  # StepWeights.projection


# LSTM and Elman cells add their input and recurrent products before any nonlinearity, so one product
# of ``[x; h]`` with ``[W_ih | W_hh]`` gives both. A GRU's reset gate scales the recurrent share of its
# candidate state: it keeps the two products apart.
JOINT_PRODUCT_CELLS = ("lstm", "rnn")


def cell_step(cell: str, x: torch.Tensor, state: tuple, products: tuple, gates: torch.Tensor | None = None) -> tuple:
    """The new state of a decoder layer's ``cell`` from its step input ``x`` ``[N, I]`` (``I`` may be 0).

    ``gates`` ``[N, G]``: input gates from elsewhere (the first layer's embedding share), biases included;
    they replace the (input) bias. ``products``: ``(joint,)``, the product with ``[W_ih | W_hh]`` and bias
    ``b_ih + b_hh``, for LSTM and Elman cells, whose step is then one matrix product and the cell's equations
    (an LSTM step of 320 rows, 512 inputs and 1024 gates: 3.5-3.9 ms on the 2-core CPU, against 4.3-5.9 ms
    for ``lstm_cell``); ``(input, hidden)`` for a GRU, ``input`` None where the layer has no step input.
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


# Without input feeding, teacher forcing runs the decoder cells' weights through the fused multi-step kernels.
FUSED_LAYERS = {"lstm": torch._VF.lstm, "gru": torch._VF.gru, "rnn": torch._VF.rnn_tanh}


def fused_layers(cell: str, x: torch.Tensor, hx, weights: list[torch.Tensor], dropout: float, training: bool) -> torch.Tensor:
    """Outputs ``[B, T, H]`` of the stacked cells over every step of ``x`` ``[B, T, E]`` in one fused kernel.

    cuDNN wants an RNN's weights in one flat buffer: given the cells' own tensors, it copies them into
    one per call (the decoder's few MB) and warns that it does. The copy is the price of one set of
    cell weights serving both this path and the step-by-step one, so the warning is silenced here.
    """
    layers = len(weights) // 4
    with warnings.catch_warnings():
        if x.is_cuda:
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")
        return FUSED_LAYERS[cell](x, hx, weights, True, layers, dropout, training, False, True)[0]


class Seq2Seq(nn.Module):
    """``forward(batch)`` returns the label-smoothed cross-entropy per target token (teacher forcing).

    ``decode_step`` advances every row by one token; ``seqnlp.nn.beam.beam_search`` drives it for
    greedy and beam decoding alike.

    ``output_ids`` are the subwords the decoder may emit (with a joint vocabulary, the target side's
    share of it: roughly half of the pieces never occur in the target language). The output layer
    scores only those, which is where most of the compute of a step goes; log-probabilities index
    into ``output_ids``. Training targets outside it count as ``unk_id``.
    """

    def __init__(
        self,
        src_vocab: int,
        tgt_vocab: int,
        embed_dim: int = 256,
        hidden: int = 256,
        decoder_hidden: int = 512,
        layers: int = 1,
        decoder_layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = True,
        attention: str = "general",
        input_feed: bool = True,
        dropout: float = 0.3,
        label_smoothing: float = 0.1,
        tie_embeddings: bool = False,
        shared_vocab: bool = False,
        pad_id: int = 0,
        unk_id: int = 1,
        output_ids: list[int] | None = None,
        cell_impl: str = "fused",
    ):
        super().__init__()
        self.pad_id = pad_id
        ids = sorted(set(range(tgt_vocab) if output_ids is None else output_ids) | {unk_id})
        position = torch.full((tgt_vocab,), ids.index(unk_id), dtype=torch.long)
        position[ids] = torch.arange(len(ids))
        self.register_buffer("output_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self.register_buffer("output_position", position, persistent=False)
        self.cell = cell
        self.input_feed = input_feed
        self.label_smoothing = label_smoothing
        self.src_embed = scaled_embedding(src_vocab, embed_dim, pad_id)
        self.tgt_embed = self.src_embed if shared_vocab else scaled_embedding(tgt_vocab, embed_dim, pad_id)
        self.encoder = RNNEncoder(embed_dim, hidden, layers, cell, bidirectional, dropout, cell_impl)
        self.bridge = nn.Linear(self.encoder.out_dim, decoder_hidden * decoder_layers)
        attentional_dim = embed_dim if tie_embeddings else decoder_hidden
        step_input = embed_dim + (attentional_dim if input_feed else 0)
        self.embed_dim = embed_dim
        self.cells = nn.ModuleList(DECODER_CELLS[cell](step_input if i == 0 else decoder_hidden, decoder_hidden) for i in range(decoder_layers))
        self.attention = Attention(attention, decoder_hidden, self.encoder.out_dim)
        self.combine = nn.Linear(decoder_hidden + self.encoder.out_dim, attentional_dim, bias=False)
        self.out = nn.Linear(attentional_dim, tgt_vocab)
        if tie_embeddings:
            self.out.weight = self.tgt_embed.weight
        self.drop = Dropout(dropout)
        self.embed_drop = LockedDropout(dropout)
        self._decoding: DecodingTables | None = None  # see decoding()

    # -- encoder -----------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Encoded:
        memory, final = self.encoder(self.embed_drop(self.src_embed(src)), src_lengths)
        mask_bias = Attention.mask_bias(src != self.pad_id)
        layers, hidden = len(self.cells), self.cells[0].hidden_size
        h0 = torch.tanh(self.bridge(final)).view(-1, layers, hidden).transpose(0, 1)  # [layers, N, H]
        state = [(h, torch.zeros_like(h)) if self.cell == "lstm" else (h,) for h in h0]
        feed = memory.new_zeros(src.size(0), self.combine.out_features if self.input_feed else 0)
        weights = StepWeights(self.step_weights(), self.combine.weight[:, :hidden], self.projection())
        values = F.linear(memory, self.combine.weight[:, hidden:])
        return Encoded(self.attention.precompute(memory), values, mask_bias, state, feed, weights)

    # -- decoder -----------------------------------------------------------------------
    def step_weights(self, make: Callable[..., Product] = DenseProduct) -> list[tuple[Product | None, ...]]:
        """Each decoder layer's products in ``cell_step``'s form, each ``make(weight, bias)``; the first layer's step input is the input-feeding vector (or nothing).

        Inside ``decoding()``, the products made on entry.
        """
        if self._decoding is not None and not self.training:
            return self._decoding.layers
        layers = []
        for i, cell in enumerate(self.cells):
            first = i == 0  # its biases come with its embedding gates
            weight_ih = cell.weight_ih[:, self.embed_dim :] if first else cell.weight_ih
            if self.cell in JOINT_PRODUCT_CELLS:
                layers.append((make(torch.cat([weight_ih, cell.weight_hh], dim=1), None if first else cell.bias_ih + cell.bias_hh),))
            else:
                input_product = make(weight_ih, None if first else cell.bias_ih) if weight_ih.size(1) else None
                layers.append((input_product, make(cell.weight_hh, cell.bias_hh)))
        return layers

    def projection(self, make: Callable[..., Product] = DenseProduct) -> Product:
        """The output layer over the target subwords (``output_ids``), ``[N, D] -> [N, V_out]``, as ``make(weight, bias)``.

        Inside ``decoding()``, the product made on entry.
        """
        if self._decoding is not None and not self.training:
            return self._decoding.projection
        return make(self.out.weight[self.output_ids], self.out.bias[self.output_ids])

    def embedding_gates(self, tokens: torch.Tensor) -> torch.Tensor:
        """The target embeddings' share of the first decoder layer's input gates, for any shape of ``tokens``.

        Biases included: the input bias, and for LSTM and Elman cells the recurrent bias too (see ``cell_step``).
        """
        return self.input_gates(self.drop(self.tgt_embed(tokens)))

    def input_gates(self, embedded: torch.Tensor) -> torch.Tensor:
        first = self.cells[0]
        bias = first.bias_ih + first.bias_hh if self.cell in JOINT_PRODUCT_CELLS else first.bias_ih
        return F.linear(embedded, first.weight_ih[:, : self.embed_dim], bias)

    @contextmanager
    def decoding(self, int8: bool = False):
        """Inside the block, an evaluation-mode model decodes with ``DecodingTables`` computed on entry.

        ``int8``: on CPU, the decoder cells' and output layer's products multiply in int8 (``seqnlp.nn.products``):
        those products are most of a step there. The tables are the current weights' (without dropout):
        the weights must not change inside the block.
        """
        with torch.no_grad():
            make = partial(decoding_product, int8=int8)
            self._decoding = DecodingTables(self.input_gates(self.tgt_embed.weight), self.step_weights(make), self.projection(make))
        try:
            yield self
        finally:
            self._decoding = None

    def decode_step(self, gates: torch.Tensor, enc: Encoded) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Attentional hidden vectors ``[N, D]`` from the embedding gates ``[N, G]`` of the fed tokens, the new state and the attention weights ``[N, S]``."""
        new_state: State = [cell_step(self.cell, enc.feed, enc.state[0], enc.weights.layers[0], gates)]
        for layer in range(1, len(self.cells)):
            new_state.append(cell_step(self.cell, self.drop(new_state[-1][0]), enc.state[layer], enc.weights.layers[layer]))
        h = new_state[-1][0]
        context, attention = self.attention(h.view(-1, enc.beam, h.size(1)), enc.values, enc.mask_bias, enc.keys)  # a sentence's hypotheses query together
        return torch.tanh(F.linear(h, enc.weights.combine) + context.view(h.size(0), -1)), new_state, attention.view(h.size(0), -1)

    def teacher_forced(self, tgt_in: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """Attentional vectors ``[B, T, D]`` for every target position, given the gold previous tokens."""
        if not self.input_feed:  # no step depends on the previous step's attention: all steps in fused kernels
            x = self.drop(self.tgt_embed(tgt_in))
            h0 = torch.stack([layer[0] for layer in enc.state])
            hx = (h0, torch.stack([layer[1] for layer in enc.state])) if self.cell == "lstm" else h0
            weights = [w for cell in self.cells for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
            h = fused_layers(self.cell, x, hx, weights, self.drop.p, self.training)
            context, _ = self.attention(h, enc.values, enc.mask_bias, enc.keys)
            return torch.tanh(F.linear(h, enc.weights.combine) + context)
        gates = self.embedding_gates(tgt_in)  # [B, T, G]: one product for every step
        outputs = []
        for step_gates in gates.unbind(1):  # unbind, not gates[:, t]: its backward is one stack, not T zero-filled copies
            attentional, enc.state, _ = self.decode_step(step_gates, enc)
            enc.feed = attentional
            outputs.append(attentional)
        return torch.stack(outputs, dim=1)

    def forward(self, batch: dict) -> torch.Tensor:
        enc = self.encode(batch["src"], batch["src_lengths"])
        tgt_out = batch["tgt_out"]
        real = tgt_out != self.pad_id  # padding positions never reach the (expensive) output layer
        logits = enc.weights.projection(self.drop(self.teacher_forced(batch["tgt_in"], enc)[real]))
        return F.cross_entropy(logits, self.output_position[tgt_out[real]], label_smoothing=self.label_smoothing)

    def next_logits(self, tokens: torch.Tensor, enc: Encoded) -> tuple[torch.Tensor, Encoded]:
        """Unnormalised scores ``[N, len(output_ids)]`` of the next subword, and the advanced state."""
        if self._decoding is not None and not self.training:
            gates = self._decoding.gate_table.index_select(0, tokens)
        else:
            gates = self.embedding_gates(tokens)
        attentional, state, attention = self.decode_step(gates, enc)
        enc = replace(enc, state=state, feed=attentional if self.input_feed else enc.feed, attention=attention)
        return enc.weights.projection(attentional), enc
