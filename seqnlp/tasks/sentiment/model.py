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
    logits divided by ``temperature`` (1 until a calibration sets it: ``seqnlp.evaluation.calibration``)."""

    temperature = 1.0

    def __init__(self, config, num_words: int, num_classes: int, class_weights: list[float] | None = None):
        """``config``: the task's settings (``SentimentConfig``); the sizes come from its vocabularies."""
        super().__init__()
        self.embedding = WordCharEmbedding(
            num_words, config.word_dim, dropout=config.dropout, word_dropout=config.word_dropout
        )
        self.encoder = RNNEncoder.from_config(self.embedding.out_dim, config)
        self.pool = Pooling(config.pooling, self.encoder.out_dim)
        self.dropout = nn.Dropout(config.dropout)
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
    """``config.ensemble`` classifiers of one shape, each initialised on its own and trained side by side on the same
    batches (their dropout masks differ); they answer with their averaged probabilities.

    ``forward`` is the members' mean loss, so each member learns as it would alone; ``logits`` are the log of the
    averaged probabilities, so everything that reads a classifier's logits (prediction, export) reads the ensemble's.
    """

    temperature = 1.0

    def __init__(self, config, num_words: int, num_classes: int, class_weights: list[float] | None = None):
        """``config.ensemble`` members, each built as ``Classifier`` is."""
        super().__init__()
        self.members = nn.ModuleList(
            Classifier(config, num_words, num_classes, class_weights) for _ in range(config.ensemble)
        )

    def logits(self, batch: dict) -> torch.Tensor:
        log_probs = torch.stack([member.logits(batch).log_softmax(dim=-1) for member in self.members])
        return log_probs.logsumexp(dim=0) - math.log(len(self.members))

    def forward(self, batch: dict) -> torch.Tensor:
        return torch.stack([member(batch) for member in self.members]).mean()

    predict = Classifier.predict  # the softmax of ``logits``: the averaged probabilities
