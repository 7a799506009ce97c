"""Encoder-decoder translator: bidirectional RNN encoder, attentional RNN decoder, input feeding optional.

Training runs ``forward`` (teacher forcing). Decoding asks ``Seq2Seq.decoder()`` for a ``Decoder``: the
same steps with the weights prepared once for the whole search (``StepWeights`` with a gate table,
int8 products on CPU), handed to every step explicitly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from seqnlp import compat
from seqnlp.nn import kernels
from seqnlp.nn.attention import Attention
from seqnlp.nn.cells import JOINT_PRODUCT_CELLS, cell_step
from seqnlp.nn.dropout import Dropout, LockedDropout
from seqnlp.nn.embedding import scaled_embedding
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.gemm import Linear, linear, row_multiple
from seqnlp.nn.input_feeding import input_fed_lstm
from seqnlp.nn.loss import IGNORED, cross_entropy
from seqnlp.nn.products import DenseProduct, Product, decoding_product

DECODER_CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}

State = list[tuple[torch.Tensor, ...]]  # per decoder layer: (h, c) for LSTM, (h,) otherwise; each [N, H]


@dataclass
class SourceMemory:
    """The encoder states of each sentence, projected once per sentence rather than once per step and hypothesis.

    The memory ``[B, S, M]`` enters the decoder twice: as attention ``keys`` and as ``values``, through
    the combine layer's context columns. The attention-weighted sum of the values is the combine layer's
    context share (``W_c sum_s a_s m_s = sum_s a_s W_c m_s``), so a step mixes D-dimensional vectors
    instead of M-dimensional ones and skips the M x D product.
    """

    keys: torch.Tensor  # [B, S, K] attention keys
    values: torch.Tensor  # [B, S, D] combine-layer projection of the memory
    mask_bias: torch.Tensor  # [B, 1, S] attention score bias: 0 at real source positions, -inf at padding

    def select(self, sentences: torch.Tensor) -> SourceMemory:
        return SourceMemory(*(t.index_select(0, sentences) for t in (self.keys, self.values, self.mask_bias)))


@dataclass
class DecoderState:
    """Each hypothesis's decoder state: one row per hypothesis, a sentence's hypotheses in consecutive rows."""

    layers: State
    feed: torch.Tensor  # input-feeding vector [N, D] ([N, 0] without input feeding)
    attention: torch.Tensor | None = None  # [N, S]: the last step's attention weights

    def rows(self, rows: torch.Tensor) -> DecoderState:
        """The state of ``rows`` (``index_select``: several times faster than ``t[rows]`` on CPU)."""
        layers = [tuple(t.index_select(0, rows) for t in layer) for layer in self.layers]
        attention = None if self.attention is None else self.attention.index_select(0, rows)
        return DecoderState(layers, self.feed.index_select(0, rows), attention)


@dataclass
class StepWeights:
    """Weights every decoder step uses, sliced, gathered or joined once per batch instead of once per step.

    ``gate_table``: every target subword's share of the first layer's input gates, for decoding (no
    dropout applies there; at the recipe's sizes the lookup saves a fifth of a step); None in training.
    """

    layers: list[tuple[Product | None, ...]]  # per decoder layer, the products ``cell_step`` takes
    combine: torch.Tensor  # the combine layer's decoder-state columns
    projection: Product  # output layer over the target subwords: [N, D] -> [N, V_out]
    gate_table: torch.Tensor | None = None  # [V, G]


@dataclass
class Hypotheses:
    """What a search carries from step to step: the sentences' memory, the hypotheses' states, the step weights.

    It offers what ``seqnlp.nn.beam.beam_search`` asks of a state: ``expand``, ``select``, ``reorder``, ``attention``.
    """

    memory: SourceMemory
    state: DecoderState
    weights: StepWeights

    @property
    def beam(self) -> int:
        """Hypotheses per sentence."""
        return self.state.feed.size(0) // self.memory.keys.size(0)

    @property
    def attention(self) -> torch.Tensor | None:
        return self.state.attention

    def expand(self, beam: int) -> Hypotheses:
        """Each sentence's decoder state repeated for ``beam`` hypotheses; the memory is shared, not copied."""
        rows = torch.arange(self.state.feed.size(0), device=self.state.feed.device).repeat_interleave(beam)
        return self.reorder(rows)

    def select(self, sentences: torch.Tensor, rows: torch.Tensor) -> Hypotheses:
        """Keep ``sentences`` (drop finished ones) and the decoder-state ``rows`` of theirs, reordered."""
        return Hypotheses(self.memory.select(sentences), self.state.rows(rows), self.weights)

    def reorder(self, rows: torch.Tensor) -> Hypotheses:
        """Decoder-state ``rows`` only: beams are reordered within their sentence, whose memory stays."""
        return replace(self, state=self.state.rows(rows))


def fused_layers(
    cell: str, x: torch.Tensor, hx, weights: list[torch.Tensor], dropout: float, training: bool
) -> torch.Tensor:
    """Outputs ``[B, T, H]`` of the stacked cells over every step of ``x`` ``[B, T, E]`` in one fused kernel.

    cuDNN wants an RNN's weights in one flat buffer: given the cells' own tensors, it copies them into
    one per call (the decoder's few MB) and warns that it does. The copy is the price of one set of
    cell weights serving both this path and the step-by-step one, so the warning is silenced here.
    """
    with warnings.catch_warnings():
        if x.is_cuda:
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")
        return compat.fused_rnn(cell, x, hx, weights, dropout, training)


class Seq2Seq(nn.Module):
    """``forward(batch)`` returns the label-smoothed cross-entropy per target token (teacher forcing).

    ``output_ids`` are the subwords the decoder may emit (with a joint vocabulary, the target side's
    share of it: roughly half of the pieces never occur in the target language). The output layer
    scores only those, which is where most of the compute of a step goes; log-probabilities index
    into ``output_ids``. Training targets outside it count as ``unk_id``.
    """

    def __init__(
        self,
        config,
        src_vocab: int,
        tgt_vocab: int,
        pad_id: int = 0,
        unk_id: int = 1,
        output_ids: list[int] | None = None,
    ):
        """``config``: the task's settings (``TranslateConfig``: the sizes and switches); the vocabulary sizes and
        ids come from its SentencePiece models."""
        super().__init__()
        embed_dim, decoder_hidden, cell = config.embed_dim, config.decoder_hidden, config.cell
        input_feed, dropout, decoder_layers = config.input_feed, config.dropout, config.decoder_layers
        self.pad_id = pad_id
        ids = sorted(set(range(tgt_vocab) if output_ids is None else output_ids) | {unk_id})
        position = torch.full((tgt_vocab,), ids.index(unk_id), dtype=torch.long)
        position[ids] = torch.arange(len(ids))
        self.register_buffer("output_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        self.register_buffer("output_position", position, persistent=False)
        self.cell = cell
        self.input_feed = input_feed
        self.label_smoothing = config.label_smoothing
        self.src_embed = scaled_embedding(src_vocab, embed_dim, pad_id)
        self.tgt_embed = self.src_embed if config.joint_vocab else scaled_embedding(tgt_vocab, embed_dim, pad_id)
        self.encoder = RNNEncoder.from_config(embed_dim, config)
        self.bridge = Linear(self.encoder.out_dim, decoder_hidden * decoder_layers)
        attentional_dim = embed_dim if config.tie_embeddings else decoder_hidden
        step_input = embed_dim + (attentional_dim if input_feed else 0)
        self.embed_dim = embed_dim
        self.cells = nn.ModuleList(
            DECODER_CELLS[cell](step_input if i == 0 else decoder_hidden, decoder_hidden) for i in range(decoder_layers)
        )
        self.attention = Attention(config.attention, decoder_hidden, self.encoder.out_dim)
        self.combine = Linear(decoder_hidden + self.encoder.out_dim, attentional_dim, bias=False)
        self.out = Linear(attentional_dim, tgt_vocab)
        if config.tie_embeddings:
            self.out.weight = self.tgt_embed.weight
        self.drop = Dropout(dropout)
        self.embed_drop = LockedDropout(dropout)

    # -- weights a step uses -------------------------------------------------------------
    def step_weights(self) -> StepWeights:
        """The current weights in step form, differentiable (training and plain evaluation)."""
        hidden = self.cells[0].hidden_size
        return StepWeights(
            self._layer_products(DenseProduct), self.combine.weight[:, :hidden], self._projection(DenseProduct)
        )

    @torch.no_grad()
    def decoding_weights(self, int8: bool = False) -> StepWeights:
        """The current weights prepared for a search: products made once, the embedding gates as a table.

        ``int8``: on CPU, the decoder cells' and output layer's products multiply in int8
        (``seqnlp.nn.products``): those products are most of a step there.
        """
        make_product = partial(decoding_product, int8=int8)
        hidden = self.cells[0].hidden_size
        return StepWeights(
            self._layer_products(make_product),
            self.combine.weight[:, :hidden],
            self._projection(make_product),
            gate_table=self.input_gates(self.tgt_embed.weight),
        )

    def _layer_products(self, make_product: Callable[..., Product]) -> list[tuple[Product | None, ...]]:
        """Each decoder layer's products in ``cell_step``'s form, each ``make_product(weight, bias)``.

        The first layer's step input is the input-feeding vector (or nothing): its embedding share and
        biases come with the embedding gates (``input_gates``).
        """
        layers = []
        for i, cell in enumerate(self.cells):
            first = i == 0
            weight_ih = cell.weight_ih[:, self.embed_dim :] if first else cell.weight_ih
            if self.cell in JOINT_PRODUCT_CELLS:
                joint_bias = None if first else cell.bias_ih + cell.bias_hh
                layers.append((make_product(torch.cat([weight_ih, cell.weight_hh], dim=1), joint_bias),))
            else:
                input_product = make_product(weight_ih, None if first else cell.bias_ih) if weight_ih.size(1) else None
                layers.append((input_product, make_product(cell.weight_hh, cell.bias_hh)))
        return layers

    def _projection(self, make_product: Callable[..., Product]) -> Product:
        """The output layer over the target subwords (``output_ids``), ``[N, D] -> [N, V_out]``."""
        ids = self.output_ids  # index_select: cheaper to differentiate than indexing (see ``forward``)
        return make_product(self.out.weight.index_select(0, ids), self.out.bias.index_select(0, ids))

    def embedding_gates(self, tokens: torch.Tensor) -> torch.Tensor:
        """The target embeddings' share of the first decoder layer's input gates, for any shape of ``tokens``.

        Biases included: the input bias, and for LSTM and Elman cells the recurrent bias too (see ``cell_step``).
        """
        return self.input_gates(self.drop(self.tgt_embed(tokens)))

    def input_gates(self, embedded: torch.Tensor) -> torch.Tensor:
        first = self.cells[0]
        bias = first.bias_ih + first.bias_hh if self.cell in JOINT_PRODUCT_CELLS else first.bias_ih
        return linear(embedded, first.weight_ih[:, : self.embed_dim], bias)

    # -- encoder -----------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor, weights: StepWeights | None = None) -> Hypotheses:
        """The memory of each sentence and the decoder's first state (one row per sentence) from the bridge.

        ``weights``: the step weights the decoder will use; None: ``step_weights()``, the current ones.
        """
        memory, final = self.encoder(self.embed_drop(self.src_embed(src)), src_lengths)
        layers, hidden = len(self.cells), self.cells[0].hidden_size
        h0 = torch.tanh(self.bridge(final)).view(-1, layers, hidden).transpose(0, 1)  # [layers, N, H]
        state = [(h, torch.zeros_like(h)) if self.cell == "lstm" else (h,) for h in h0]
        feed = memory.new_zeros(src.size(0), self.combine.out_features if self.input_feed else 0)
        weights = self.step_weights() if weights is None else weights
        values = linear(memory, self.combine.weight[:, hidden:])
        source = SourceMemory(self.attention.precompute(memory), values, Attention.mask_bias(src != self.pad_id))
        return Hypotheses(source, DecoderState(state, feed), weights)

    # -- decoder -----------------------------------------------------------------------
    def decode_step(self, gates: torch.Tensor, hyps: Hypotheses) -> tuple[torch.Tensor, DecoderState]:
        """Attentional vectors ``[N, D]`` from the embedding gates ``[N, G]`` of the fed tokens, and the next state.

        The next state holds the step's attention weights ``[N, S]`` and, with input feeding, feeds the
        attentional vectors to the following step.
        """
        weights, state = hyps.weights, hyps.state
        new_layers: State = [cell_step(self.cell, state.feed, state.layers[0], weights.layers[0], gates)]
        for layer in range(1, len(self.cells)):
            new_layers.append(
                cell_step(self.cell, self.drop(new_layers[-1][0]), state.layers[layer], weights.layers[layer])
            )
        h = new_layers[-1][0]
        memory = hyps.memory
        # A sentence's hypotheses query its memory together.
        context, attention = self.attention(
            h.view(-1, hyps.beam, h.size(1)), memory.values, memory.mask_bias, memory.keys
        )
        attentional = torch.tanh(linear(h, weights.combine) + context.view(h.size(0), -1))
        feed = attentional if self.input_feed else state.feed
        return attentional, DecoderState(new_layers, feed, attention.view(h.size(0), -1))

    def teacher_forced(self, tgt_in: torch.Tensor, hyps: Hypotheses) -> torch.Tensor:
        """Attentional vectors ``[B, T, D]`` for every target position, given the gold previous tokens."""
        if not self.input_feed:  # no step depends on the previous step's attention: all steps in fused kernels
            return self._teacher_forced_fused(tgt_in, hyps)
        gates = self.embedding_gates(tgt_in)  # [B, T, G]: one product for every step
        if self._hand_differentiated:
            (h0, c0), memory, first = hyps.state.layers[0], hyps.memory, self.cells[0]
            weight = torch.cat([first.weight_ih[:, self.embed_dim :], first.weight_hh], dim=1)
            combine = hyps.weights.combine
            return input_fed_lstm(gates, weight, h0, c0, memory.keys, memory.values, memory.mask_bias, combine)
        outputs = []
        # unbind, not gates[:, t]: its backward is one stack, not T zero-filled copies
        for step_gates in gates.unbind(1):
            attentional, state = self.decode_step(step_gates, hyps)
            hyps = replace(hyps, state=state)
            outputs.append(attentional)
        return torch.stack(outputs, dim=1)

    @property
    def _hand_differentiated(self) -> bool:
        """Whether teacher forcing with input feeding takes ``input_fed_lstm``: a one-layer LSTM decoder with
        multiplicative attention (no dropout inside its loop), outside autocast (its buffers take one dtype)."""
        return (
            kernels.current().input_feeding == "hand"
            and self.cell == "lstm"
            and len(self.cells) == 1
            and self.attention.kind != "additive"
            and not torch.is_autocast_enabled(self.combine.weight.device.type)
        )

    def _teacher_forced_fused(self, tgt_in: torch.Tensor, hyps: Hypotheses) -> torch.Tensor:
        x = self.drop(self.tgt_embed(tgt_in))
        layers = hyps.state.layers
        h0 = torch.stack([layer[0] for layer in layers])
        hx = (h0, torch.stack([layer[1] for layer in layers])) if self.cell == "lstm" else h0
        weights = [w for cell in self.cells for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
        h = fused_layers(self.cell, x, hx, weights, self.drop.p, self.training)
        memory = hyps.memory
        context, _ = self.attention(h, memory.values, memory.mask_bias, memory.keys)
        return torch.tanh(linear(h, hyps.weights.combine) + context)

    def forward(self, batch: dict) -> torch.Tensor:
        hyps = self.encode(batch["src"], batch["src_lengths"])
        # Padding positions never reach the (expensive) output layer. index_select, not a boolean mask: on CPU its
        # backward (an index_add) is far cheaper than the mask's index_put.
        tgt_out = batch["tgt_out"].reshape(-1)
        positions = (tgt_out != self.pad_id).nonzero().squeeze(1)
        targets = self.output_position[tgt_out.index_select(0, positions)]
        projection = hyps.weights.projection
        extra = -len(positions) % row_multiple(len(positions), projection.weight_t)
        if extra:  # rows whose loss is ignored, so that the output layer's products take shapes that recur
            positions = torch.cat([positions, positions.new_zeros(extra)])
            targets = torch.cat([targets, targets.new_full((extra,), IGNORED)])
        states = self.teacher_forced(batch["tgt_in"], hyps).flatten(0, 1).index_select(0, positions)
        logits = projection(self.drop(states))
        return cross_entropy(logits, targets, self.label_smoothing)

    def next_logits(self, tokens: torch.Tensor, hyps: Hypotheses) -> tuple[torch.Tensor, Hypotheses]:
        """Unnormalised scores ``[N, len(output_ids)]`` of the next subword, and the advanced hypotheses."""
        table = hyps.weights.gate_table
        gates = self.embedding_gates(tokens) if table is None else table.index_select(0, tokens)
        attentional, state = self.decode_step(gates, hyps)
        return hyps.weights.projection(attentional), replace(hyps, state=state)

    def decoder(self, int8: bool = False) -> Decoder:
        """What a search drives: this evaluation-mode model with ``decoding_weights(int8)``.

        Preparing the weights costs more than translating one short sentence (int8 packing, the gate table), so
        the decoder is kept and given again until the weights change: ``weights_changed`` drops it, and so do
        training mode (every optimizer step runs in it), loading a state dict and a move to another device or
        dtype. A write into a parameter in evaluation mode must call ``weights_changed`` itself.
        """
        if self.training:
            raise ValueError("decoder() needs an evaluation-mode model (call .eval() first)")
        cached = self.__dict__.get("_decoder")
        if cached is None or cached[0] != int8:
            cached = (int8, Decoder(self, self.decoding_weights(int8)))
            self.__dict__["_decoder"] = cached
        return cached[1]

    def weights_changed(self) -> None:
        """Drop the prepared decoder: its products were made from weights that are no longer the model's."""
        self.__dict__.pop("_decoder", None)

    def train(self, mode: bool = True):
        if mode:
            self.weights_changed()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self.weights_changed()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self.weights_changed()
        return super()._load_from_state_dict(*args, **kwargs)


@dataclass(frozen=True)
class Decoder:
    """The ``encode`` / ``next_log_probs`` / ``output_ids`` that ``seqnlp.nn.beam.beam_search`` drives, with fixed
    step weights."""

    model: Seq2Seq
    weights: StepWeights

    @property
    def output_ids(self) -> torch.Tensor:
        return self.model.output_ids

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Hypotheses:
        return self.model.encode(src, src_lengths, self.weights)

    def next_log_probs(self, tokens: torch.Tensor, hyps: Hypotheses) -> tuple[torch.Tensor, Hypotheses]:
        logits, hyps = self.model.next_logits(tokens, hyps)
        return logits.log_softmax(dim=1), hyps
