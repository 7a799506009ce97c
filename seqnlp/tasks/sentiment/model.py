"""Text classifier: embeddings -> RNN encoder -> pooling -> linear layer; an ensemble of them as one model."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from seqnlp.nn.embedding import WordCharEmbedding
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.gemm import Linear
from seqnlp.nn.pooling import Pooling


class Classifier(nn.Module):
    """``forward(batch)`` returns the mean cross-entropy; ``predict(batch)`` class probabilities ``[B, C]``, of the
    logits divided by ``temperature`` (1 until a calibration sets it: ``seqnlp.calibration``)."""

    temperature = 1.0

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
        self.out = Linear(self.encoder.out_dim, num_classes)
        self.register_buffer("class_weights", torch.tensor(class_weights) if class_weights else None, persistent=False)

    def logits(self, batch: dict) -> torch.Tensor:
        x = self.embedding(batch["words"])
        outputs, final = self.encoder(x, batch["lengths"])
        return self.out(self.dropout(self.pool(outputs, final, batch["mask"])))

    def forward(self, batch: dict) -> torch.Tensor:
        return F.cross_entropy(self.logits(batch), batch["labels"], weight=self.class_weights)

    @torch.inference_mode()
    def predict(self, batch: dict) -> torch.Tensor:
        return (self.logits(batch) / self.temperature).softmax(dim=-1)


class ClassifierEnsemble(nn.Module):
    """``members`` classifiers of one shape, each initialised on its own and trained side by side on the same
    batches (their dropout masks differ); they answer with their averaged probabilities.

    ``forward`` is the members' mean loss, so each member learns as it would alone; ``logits`` are the log of the
    averaged probabilities, so everything that reads a classifier's logits (prediction, export) reads the ensemble's.
    """

    temperature = 1.0

    def __init__(self, members: int, **classifier_settings):
        super().__init__()
        self.members = nn.ModuleList(Classifier(**classifier_settings) for _ in range(members))

    def logits(self, batch: dict) -> torch.Tensor:
        log_probs = torch.stack([member.logits(batch).log_softmax(dim=-1) for member in self.members])
        return log_probs.logsumexp(dim=0) - math.log(len(self.members))

    def forward(self, batch: dict) -> torch.Tensor:
        return torch.stack([member(batch) for member in self.members]).mean()

    predict = Classifier.predict  # the softmax of ``logits``: the averaged probabilities
