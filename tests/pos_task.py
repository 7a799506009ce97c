"""A fifth task, written against docs/architecture.md alone: part-of-speech tagging, one tag per token from a
softmax (no CRF), trained on files of ``token TAG`` lines (CoNLL-2003's first two columns).

Everything about it is this one module: its config and ``Task``, its model, its ONNX graph (``graphs``) and its
runner (``RUNNER``). seqnlp finds it through the ``seqnlp.tasks`` entry point that ``tests/test_fifth_task.py``
installs (``pos = tests.pos_task``); no file of seqnlp names it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from seqnlp.config import MAX_WIDTH, RunConfig, setting
from seqnlp.data.batching import pad
from seqnlp.data.text import read_text_lines
from seqnlp.errors import DataError
from seqnlp.nn.embedding import WordCharEmbedding
from seqnlp.nn.encoder import RNNEncoder
from seqnlp.nn.gemm import Linear
from seqnlp.predictions import taggings
from seqnlp.serving.export import Graph, Named
from seqnlp.serving.runtime import Runner, pad_ids
from seqnlp.tasks.base import Task, register
from seqnlp.vocab import Vocab, label_vocab


@dataclass(frozen=True)
class TaggedTokens:
    tokens: list[str]
    tags: list[str]
    source: str  # FILE:LINE of the first token


def read_tagged(path) -> list[TaggedTokens]:
    """Sentences of ``token TAG`` lines (further columns ignored), a blank line between sentences."""
    sentences, tokens, tags, first = [], [], [], 0
    for number, line in enumerate(read_text_lines(str(path)), start=1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if tokens:
                sentences.append(TaggedTokens(tokens, tags, f"{path}:{first}"))
            tokens, tags = [], []
            continue
        if len(columns) < 2:
            raise DataError(f"expected a token and its tag, found {line.strip()[:40]!r}", str(path), number)
        first = first if tokens else number
        tokens.append(columns[0])
        tags.append(columns[1])
    if tokens:
        sentences.append(TaggedTokens(tokens, tags, f"{path}:{first}"))
    return sentences


@dataclass
class POSConfig(RunConfig):
    word_dim: int = setting(32, "word embedding size", low=1, high=MAX_WIDTH)
    lowercase: bool = setting(False, "lowercase the words")
    eval_batch_size: int = setting(256, "sentences per inference batch", low=1, high=1_000_000)
    hidden: int = 64
    dropout: float = 0.2
    lr: float = 5e-3


class POSTagger(nn.Module):
    """Word embeddings, a recurrent encoder and a softmax over the tags of each token."""

    def __init__(self, config, num_words: int, num_tags: int):
        super().__init__()
        self.embedding = WordCharEmbedding(num_words, config.word_dim, dropout=config.dropout)
        self.encoder = RNNEncoder.from_config(self.embedding.out_dim, config)
        self.out = Linear(self.encoder.out_dim, num_tags)

    def scores(self, batch: dict) -> torch.Tensor:
        outputs, _ = self.encoder(self.embedding(batch["words"]), batch["lengths"])
        return self.out(outputs)

    def forward(self, batch: dict) -> torch.Tensor:
        """The mean cross-entropy over the batch's tokens (``POSTask.loss_units`` counts them)."""
        losses = F.cross_entropy(self.scores(batch).transpose(1, 2), batch["tags"], reduction="none")
        return (losses * batch["mask"]).sum() / batch["mask"].sum()


@register
class POSTask(Task):
    name = "pos"
    config_class = POSConfig
    metric = "accuracy"
    predict_options = {"pretokenized": bool}
    token_list_inputs = True
    pipeline_tag = "token-classification"
    usage_input = "Peter Blackburn visited Brussels ."

    def description(self):
        return "a part-of-speech tagger (word embeddings, a recurrent encoder, a softmax per token)"

    def read_file(self, path):
        return read_tagged(path)

    def num_tokens(self, example):
        return len(example.tokens)

    def normalize(self, token: str) -> str:
        return token.lower() if self.config.lowercase else token

    def build_vocabularies(self, train):
        self.words = Vocab.build(([self.normalize(t) for t in s.tokens] for s in train), source=self.data_source())
        self.tags = label_vocab(t for s in train for t in s.tags)

    def build_model(self):
        return POSTagger(self.config, len(self.words), len(self.tags))

    def label_names(self):
        return list(self.tags.itos)

    def save_assets(self, directory):
        return {"words": self.words.to_dict(), "tags": self.tags.to_dict()}

    def load_assets(self, directory, assets):
        self.words, self.tags = Vocab.from_dict(assets["words"]), Vocab.from_dict(assets["tags"])

    def check_labels(self, examples):
        for sentence in examples:
            unknown = [t for t in sentence.tags if t not in self.tags]
            if unknown:
                raise DataError(f"{sentence.source}: tag {unknown[0]!r} was not seen in training")

    def encode(self, sentences: list[list[str]]) -> list[dict]:
        return [{"words": self.words.encode(self.normalize(t) for t in tokens), "tags": None} for tokens in sentences]

    def prepare(self, examples):
        items = self.encode([s.tokens for s in examples])
        for item, sentence in zip(items, examples):
            item["tags"] = self.tags.encode(sentence.tags)
        return items

    def collate(self, items):
        lengths = torch.tensor([len(item["words"]) for item in items])
        words = pad([item["words"] for item in items])
        batch = {"words": words, "lengths": lengths, "num_tokens": int(lengths.sum()),
                 "mask": torch.arange(words.size(1)).unsqueeze(0) < lengths.unsqueeze(1)}  # fmt: skip
        if items[0]["tags"] is not None:
            batch["tags"] = pad([item["tags"] for item in items])
        return batch

    def loss_units(self, batch):
        return float(batch["mask"].sum())  # the loss is a mean over tokens

    def tag(self, model, sentences: list[list[str]]) -> list[list[str]]:
        results: list = [None] * len(sentences)
        for group, batch in self.inference_batches(model, self.encode(sentences)):
            with torch.inference_mode():
                best = model.scores(batch).argmax(-1).tolist()
            for i, row, n in zip(group, best, batch["lengths"].tolist()):
                results[i] = self.tags.decode(row[:n])
        return results

    def evaluate(self, model, examples, selection=False):
        self.check_labels(examples)
        predicted = self.tag(model, [s.tokens for s in examples])
        pairs = [(g, p) for s, tags in zip(examples, predicted) for g, p in zip(s.tags, tags)]
        return {"accuracy": sum(g == p for g, p in pairs) / max(1, len(pairs))}

    def predict(self, model, inputs, options):
        return taggings(
            inputs, options.get("pretokenized", False), lambda sentences: [(t, []) for t in self.tag(model, sentences)]
        )


def graphs(task, model) -> tuple[list[Graph], dict]:
    """One graph: the tag scores of every token."""
    inputs = {"words": torch.randint(2, len(task.words), (3, 5)), "lengths": torch.tensor([5, 4, 2])}
    axes = {"words": {0: "batch", 1: "steps"}, "lengths": {0: "batch"}}
    return [Graph("scores", Named(model, list(inputs), lambda m, b: m.scores(b)), inputs, axes, ["scores"])], {}


class POSRunner(Runner):
    name = "pos"
    predict_options = {"pretokenized": bool}
    token_list_inputs = True

    def load_assets(self, assets):
        self.words, self.tags = Vocab.from_dict(assets["words"]), Vocab.from_dict(assets["tags"])

    def label_names(self):
        return list(self.tags.itos)

    def tag(self, sentences: list[list[str]]) -> list[list[str]]:
        normalize = (lambda t: t.lower()) if self.config.lowercase else (lambda t: t)
        results: list = [None] * len(sentences)
        for group in self.batches([{"words": sentences[i]} for i in range(len(sentences))]):
            rows = [self.words.encode(normalize(t) for t in sentences[i]) for i in group]
            feeds = {"words": pad_ids(rows), "lengths": np.array([len(r) for r in rows], dtype=np.int64)}
            best = self.graphs.run("scores", feeds)["scores"].argmax(-1)
            for i, row, n in zip(group, best, feeds["lengths"]):
                results[i] = self.tags.decode(row[:n].tolist())
        return results

    def predict(self, inputs, options):
        return taggings(
            inputs, options.get("pretokenized", False), lambda sentences: [(t, []) for t in self.tag(sentences)]
        )


RUNNER = POSRunner
