"""Classifying from an export: the graph gives the class probabilities."""

from __future__ import annotations

import numpy as np

from seqnlp.data.tokenize import word_tokens
from seqnlp.predictions import classifications
from seqnlp.serving.runtime import Runner, member, pad_ids
from seqnlp.vocab import SubwordTokenizer, Vocab


class ClassifierRunner(Runner):
    name = "sentiment"

    def load_assets(self, assets):
        self.words = Vocab.from_dict(assets["words"]) if assets.get("words") else None
        self.subwords = (
            SubwordTokenizer.load(member(self.directory, "subwords.model", str(self.directory)))
            if self.config.tokenizer == "subword"
            else None
        )
        self.labels = Vocab.from_dict(assets["labels"])

    def label_names(self):
        return list(self.labels.itos)

    def whole_tokens(self, text: str) -> list:
        text = text.lower() if self.config.lowercase else text
        return self.subwords.encode(text) if self.subwords is not None else word_tokens(text)

    def probabilities(self, encoded: list[list[int]]) -> np.ndarray:
        out = np.empty((len(encoded), len(self.labels)), dtype=np.float32)
        for group in self.batches([{"words": ids} for ids in encoded]):
            rows = [encoded[i] for i in group]
            feeds = {"words": pad_ids(rows), "lengths": np.array([len(r) for r in rows], dtype=np.int64)}
            out[group] = self.graphs.run("probabilities", feeds)["probabilities"]
        return out

    def predict(self, inputs, options):
        limit = self.config.max_length
        tokens = [self.whole_tokens(text) if text.strip() else [] for text in inputs]
        ids = [(t[:limit] if self.subwords is not None else self.words.encode(t[:limit])) or [1] for t in tokens]
        return classifications(
            inputs, [len(t) for t in tokens], self.probabilities(ids).tolist(), self.labels.itos, limit
        )


RUNNER = ClassifierRunner
