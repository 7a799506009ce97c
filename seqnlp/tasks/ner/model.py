"""Sequence tagger: word + char embeddings -> RNN encoder -> CRF (or per-token softmax)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from seqnlp.nn.crf import CRF
from seqnlp.nn.dropout import LockedDropout
from seqnlp.nn.embedding import WordCharEmbedding
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.gemm import Linear


class Tagger(nn.Module):
    """``forward(batch)`` returns the mean negative log-likelihood per sentence; ``predict(batch)`` the tag ids.

    ``temperature`` divides the scores where they become probabilities (entity and token probabilities), never in
    training or in the best path: 1 until a calibration sets it (``seqnlp.evaluation.calibration``).
    """

    temperature = 1.0

    def __init__(
        self,
        config,
        num_words: int,
        num_chars: int,
        num_tags: int,
        rare_from: int | None = None,
        allowed=None,
        num_casings: int = 0,
    ):
        """``config``: the task's settings (``NERConfig``); the sizes come from its vocabularies, ``allowed`` from
        its tag scheme (``CRF``)."""
        super().__init__()
        self.embedding = WordCharEmbedding(
            num_words,
            config.word_dim,
            num_chars,
            config.char_dim,
            config.char_out,
            config.char_encoder,
            config.dropout,
            config.word_dropout,
            config.rare_word_dropout,
            rare_from,
            num_casings=num_casings,
            casing_dim=config.casing_dim,
        )
        self.encoder = RNNEncoder.from_config(self.embedding.out_dim, config)
        self.dropout = LockedDropout(config.dropout)
        self.emit = Linear(self.encoder.out_dim, num_tags)
        self.crf = CRF(num_tags, allowed) if config.crf else None

    def emissions(self, batch: dict) -> torch.Tensor:
        x = self.embedding(
            batch["words"], batch.get("chars"), batch.get("char_lengths"), batch.get("char_index"), batch.get("casing")
        )
        h, _ = self.encoder(x, batch["lengths"])
        return self.emit(self.dropout(h))

    def forward(self, batch: dict) -> torch.Tensor:
        scores = self.emissions(batch)
        mask, tags = batch["mask"], batch["tags"]
        if self.crf is not None:
            return self.crf.nll(scores, tags, mask).mean()
        token_loss = F.cross_entropy(scores.transpose(1, 2), tags, reduction="none")
        return (token_loss * mask).sum() / mask.size(0)

    @torch.inference_mode()
    def predict(self, batch: dict) -> list[list[int]]:
        scores = self.emissions(batch)
        mask = batch["mask"]
        if self.crf is not None:
            return self.crf.decode(scores, mask)
        best = scores.argmax(-1).tolist()
        return [row[:n] for row, n in zip(best, mask.sum(1).tolist())]
