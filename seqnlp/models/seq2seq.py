"""Encoder-decoder translator: bidirectional RNN encoder, attentional RNN decoder with input feeding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from seqnlp.nn.attention import Attention
from seqnlp.nn.dropout import LockedDropout
from seqnlp.nn.encoder import RNNEncoder

DECODER_CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


@dataclass
class Encoded:
    """Encoder results for a batch of N rows (sentences, or sentences x beam)."""

    memory: torch.Tensor   # [N, S, M]
    keys: torch.Tensor     # attention keys precomputed from memory
    mask: torch.Tensor     # [N, S] real source positions
    state: torch.Tensor    # decoder state [layers, parts, N, H] (parts: 2 for LSTM (h, c), else 1)
    feed: torch.Tensor     # input-feeding vector [N, H]
    projection: tuple[torch.Tensor, torch.Tensor]  # output layer rows of the target subwords (gathered once per batch)

    def select(self, index: torch.Tensor) -> "Encoded":
        """Rows ``index`` of everything (to expand sentences into beams, or drop finished sentences)."""
        return Encoded(self.memory[index], self.keys[index], self.mask[index], self.state[:, :, index], self.feed[index], self.projection)

    def reorder(self, index: torch.Tensor) -> "Encoded":
        """Rows ``index`` of the decoder state only: beams are reordered within their sentence, whose memory is the same."""
        return Encoded(self.memory, self.keys, self.mask, self.state[:, :, index], self.feed[index], self.projection)


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
        self.src_embed = nn.Embedding(src_vocab, embed_dim, padding_idx=pad_id)
        self.tgt_embed = self.src_embed if shared_vocab else nn.Embedding(tgt_vocab, embed_dim, padding_idx=pad_id)
        self.encoder = RNNEncoder(embed_dim, hidden, layers, cell, bidirectional, dropout, cell_impl)
        self.bridge = nn.Linear(self.encoder.out_dim, decoder_hidden * decoder_layers)
        step_input = embed_dim + (decoder_hidden if input_feed else 0)
        self.cells = nn.ModuleList(DECODER_CELLS[cell](step_input if i == 0 else decoder_hidden, decoder_hidden) for i in range(decoder_layers))
        self.attention = Attention(attention, decoder_hidden, self.encoder.out_dim)
        self.combine = nn.Linear(decoder_hidden + self.encoder.out_dim, embed_dim if tie_embeddings else decoder_hidden, bias=False)
        self.out = nn.Linear(self.combine.out_features, tgt_vocab)
        if tie_embeddings:
            self.out.weight = self.tgt_embed.weight
        self.drop = nn.Dropout(dropout)
        self.embed_drop = LockedDropout(dropout)

    # -- encoder -----------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> Encoded:
        memory, final = self.encoder(self.embed_drop(self.src_embed(src)), src_lengths)
        mask = src != self.pad_id
        layers, hidden = len(self.cells), self.cells[0].hidden_size
        h0 = torch.tanh(self.bridge(final)).view(-1, layers, hidden).transpose(0, 1)  # [layers, N, H]
        parts = [h0, torch.zeros_like(h0)] if self.cell == "lstm" else [h0]
        state = torch.stack(parts, dim=1)
        feed = memory.new_zeros(src.size(0), self.combine.out_features if self.input_feed else 0)
        return Encoded(memory, self.attention.precompute(memory), mask, state, feed, self.projection())

    def projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the output layer restricted to ``output_ids``."""
        return self.out.weight[self.output_ids], self.out.bias[self.output_ids]

    # -- decoder -----------------------------------------------------------------------
    def decode_step(self, tokens: torch.Tensor, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attentional hidden vectors ``[N, D]`` after feeding ``tokens[N]``, and the new state and feed."""
        x = self.drop(self.tgt_embed(tokens))
        if self.input_feed:
            x = torch.cat([x, enc.feed], dim=1)
        new_state = []
        for layer, cell in enumerate(self.cells):
            if self.cell == "lstm":
                h, c = cell(x, (enc.state[layer, 0], enc.state[layer, 1]))
                new_state.append(torch.stack([h, c]))
            else:
                h = cell(x, enc.state[layer, 0])
                new_state.append(h.unsqueeze(0))
            x = self.drop(h)
        context, _ = self.attention(h, enc.memory, enc.mask, enc.keys)
        attentional = torch.tanh(self.combine(torch.cat([h, context], dim=1)))
        return attentional, torch.stack(new_state), attentional

    def forward(self, batch: dict) -> torch.Tensor:
        enc = self.encode(batch["src"], batch["src_lengths"])
        tgt_in, tgt_out = batch["tgt_in"], batch["tgt_out"]
        outputs = []
        for t in range(tgt_in.size(1)):
            attentional, enc.state, feed = self.decode_step(tgt_in[:, t], enc)
            if self.input_feed:
                enc.feed = feed
            outputs.append(attentional)
        real = tgt_out != self.pad_id  # padding positions never reach the (expensive) output layer
        logits = F.linear(self.drop(torch.stack(outputs, dim=1)[real]), *enc.projection)
        return F.cross_entropy(logits, self.output_position[tgt_out[real]], label_smoothing=self.label_smoothing)

    def next_log_probs(self, tokens: torch.Tensor, enc: Encoded) -> tuple[torch.Tensor, Encoded]:
        """Log-probabilities ``[N, len(output_ids)]`` of the next subword, and the advanced state."""
        attentional, state, feed = self.decode_step(tokens, enc)
        enc = Encoded(enc.memory, enc.keys, enc.mask, state, feed if self.input_feed else enc.feed, enc.projection)
        return F.log_softmax(F.linear(attentional, *enc.projection), dim=-1), enc
