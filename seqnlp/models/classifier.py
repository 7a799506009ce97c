"""Text classifier: embeddings -> RNN encoder -> pooling -> linear layer."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from seqnlp.nn.embedding import WordCharEmbedding
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.pooling import Pooling


class Classifier(nn.Module):
    """``forward(batch)`` returns the mean cross-entropy; ``predict(batch)`` class probabilities ``[B, C]``."""

    def __init__(
        self,
        num_words: int,
        num_classes: int,
        word_dim: int = 300,
        hidden: int = 256,
        layers: int = 1,
        cell: str = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.5,
        word_dropout: float = 0.0,
        pooling: str = "max",
        class_weights: list[float] | None = None,
        cell_impl: str = "fused",
    ):
        super().__init__()
        self.embedding = WordCharEmbedding(num_words, word_dim, dropout=dropout, word_dropout=word_dropout)
        self.encoder = RNNEncoder(self.embedding.out_dim, hidden, layers, cell, bidirectional, dropout, cell_impl)
        self.pool = Pooling(pooling, self.encoder.out_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(self.encoder.out_dim, num_classes)
        self.register_buffer("class_weights", torch.tensor(class_weights) if class_weights else None, persistent=False)

    def logits(self, batch: dict) -> torch.Tensor:
        x = self.embedding(batch["words"])
        outputs, final = self.encoder(x, batch["lengths"])
        return self.out(self.dropout(self.pool(outputs, final, batch["mask"])))

    def forward(self, batch: dict) -> torch.Tensor:
        return F.cross_entropy(self.logits(batch), batch["labels"], weight=self.class_weights)

    @torch.inference_mode()
    def predict(self, batch: dict) -> torch.Tensor:
        return self.logits(batch).softmax(dim=-1)
