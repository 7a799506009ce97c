"""Sentiment / text classification: TSV, CSV, JSONL or HF data, RNN + pooling classifier, accuracy and macro-F1."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from seqnlp.config import MAX_VOCAB, MAX_WIDTH, RunConfig, calibrate_setting, setting, word_vectors_setting
from seqnlp.data.batching import pad
from seqnlp.data.hf import label_names, require_columns
from seqnlp.data.table import pick_column, read_records
from seqnlp.data.tokenize import word_tokens
from seqnlp.errors import ConfigError, DataError, shorten
from seqnlp.evaluation.calibration import fit_temperature
from seqnlp.evaluation.evidence import attach_intervals
from seqnlp.evaluation.metrics import calibration_before_after, classification_scores, classification_statistics
from seqnlp.nn.pooling import POOLINGS
from seqnlp.predictions import classifications
from seqnlp.tasks.base import Task, register
from seqnlp.tasks.sentiment import report
from seqnlp.tasks.sentiment.model import Classifier, ClassifierEnsemble
from seqnlp.vocab import SubwordTokenizer, Vocab, label_vocab

SUBWORD_FILE = "subwords.model"


@dataclass(frozen=True)
class TextExample:
    text: str
    label: str | None
    source: str = ""  # "FILE:LINE" or "dataset[split]:row N"


@dataclass
class SentimentConfig(RunConfig):
    text_column: str = setting("auto", "column of the texts; auto: `sentence` or `text`")
    label_column: str = setting("label", "column of the labels")
    tokenizer: str = setting(
        "word", "word, or subword (SentencePiece trained on the training texts)", choices=("word", "subword")
    )
    subword_vocab_size: int = setting(8000, "SentencePiece vocabulary size (tokenizer: subword)", low=8, high=MAX_VOCAB)
    lowercase: bool = setting(True, "lowercase the texts")
    min_freq: int = setting(1, "training words seen fewer times become <unk>", low=1)
    max_length: int = setting(
        400, "tokens kept per text (long texts are truncated, with a warning at prediction)", low=1
    )
    word_dim: int = setting(300, "word embedding size", low=1, high=MAX_WIDTH)
    word_dropout: float = setting(0.05, "probability that a training word becomes <unk>", low=0.0, high=0.95)
    pooling: str = setting("max", "how the encoder's states become one vector", choices=POOLINGS)
    class_weights: str = setting(
        "none", "balanced: weight each class's loss by its inverse frequency", choices=("none", "balanced")
    )
    ensemble: int = setting(
        1,
        "classifiers trained side by side, each from its own random start, whose probabilities are averaged "
        "(each step and each prediction costs this many times one classifier's)",
        low=1,
        high=16,
    )
    eval_batch_size: int = setting(256, "texts per inference batch", low=1, high=1_000_000)
    pretrained_vectors: str | None = word_vectors_setting()
    calibrate: bool = calibrate_setting()
    dropout: float = 0.3  # 0.5 underfits SST-2: docs/experiments.md
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3

    def validate(self) -> None:
        super().validate()
        if self.pretrained_vectors and self.tokenizer == "subword":
            raise ConfigError("pretrained_vectors are word vectors: they need tokenizer word, not subword")


@register
class SentimentTask(Task):
    name = "sentiment"
    config_class = SentimentConfig
    bf16_pays = True  # docs/experiments.md, "Mixed precision": faster in bf16 on AVX512-BF16 and AMX
    metric = "accuracy"
    sample_files = ("train.tsv", "dev.tsv", "test.tsv")
    pipeline_tag = "text-classification"
    usage_input = "A gripping, beautifully acted film."

    def description(self):
        return f"a text classifier (embeddings, a recurrent encoder, {self.config.pooling} pooling)"

    # -- data --------------------------------------------------------------------------
    def read_file(self, path):
        config = self.config
        text_column = pick_column(path, ["sentence", "text"]) if config.text_column == "auto" else config.text_column
        examples = []
        for line, row in read_records(path, [text_column, config.label_column]):
            examples.append(self._example(row[text_column], row[config.label_column], f"{path}:{line}"))
        return examples

    def read_hf(self, dataset, source):
        config = self.config
        if config.text_column == "auto":
            text_column = next((n for n in ("sentence", "text") if n in dataset.column_names), "sentence")
        else:
            text_column = config.text_column
        require_columns(dataset, [text_column, config.label_column], source)
        names = label_names(dataset, config.label_column)
        examples = []
        for number, row in enumerate(dataset):
            label = row[config.label_column]
            if names is not None and isinstance(label, int) and label >= 0:
                label = names[label]
            examples.append(self._example(row[text_column], label, f"{source}:row {number}"))
        return examples

    @staticmethod
    def _example(text, label, where: str) -> TextExample:
        if text is not None and not isinstance(text, str):
            raise DataError(f"{where}: the text must be a string, not {type(text).__name__} {shorten(repr(text))}")
        if text is None or not text.strip():
            raise DataError(f"{where}: empty text")
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int))):
            raise DataError(
                f"{where}: a label must be a string or a whole number, not {type(label).__name__} "
                f"{shorten(repr(label))}"
            )
        if label is None or str(label).strip() == "" or label == -1:
            raise DataError(f"{where}: missing label")
        return TextExample(text, str(label).strip(), where)

    def num_tokens(self, example):
        return len(self.tokenize(example.text))

    # -- vocabularies and model --------------------------------------------------------
    def tokenize(self, text: str) -> list:
        """The text's first ``max_length`` tokens (subword ids, or words)."""
        return self.whole_tokens(text)[: self.config.max_length]

    def whole_tokens(self, text: str) -> list:
        text = text.lower() if self.config.lowercase else text
        if self.config.tokenizer == "subword":
            return self.subwords.encode(text)
        return word_tokens(text)

    def build_vocabularies(self, train):
        config = self.config
        if config.tokenizer == "subword":
            self.subwords = self.train_subwords(train)
            self.words = None
        else:
            self.words = Vocab.build(
                (self.tokenize(e.text) for e in train), min_freq=config.min_freq, source=self.data_source()
            )
        self.labels = label_vocab(e.label for e in train)
        if len(self.labels) < 2:
            raise DataError(
                f"the training data has only one label ({self.labels.itos[0]!r}): a classifier needs at least two"
            )
        counts = Counter(e.label for e in train)
        self.weights = None
        if config.class_weights == "balanced":
            self.weights = [len(train) / (len(self.labels) * counts[label]) for label in self.labels.itos]

    def subword_texts(self, examples) -> list[str]:
        """The texts a SentencePiece model is trained on and reads (lowercased when the config says so)."""
        return [e.text.lower() if self.config.lowercase else e.text for e in examples]

    def train_subwords(self, train) -> SubwordTokenizer:
        return SubwordTokenizer.train(self.subword_texts(train), self.config.subword_vocab_size)

    def uses_subwords(self):
        return self.config.tokenizer == "subword"

    @classmethod
    def fine_tuning_settings(cls, inherited):
        # A base model has often seen the new training texts (SST-5's sentences are in SST-2): at its own rate it
        # memorises them in an epoch and then loses to a model trained from scratch; a quarter of that rate and
        # more word dropout gain instead (docs/experiments.md, Fine-tuning).
        return {
            "lr": inherited.get("lr", SentimentConfig.lr) / 4,
            "word_dropout": max(inherited.get("word_dropout", SentimentConfig.word_dropout), 0.3),
        }

    def adapt(self, train):
        """New classes get fresh output rows, known ones keep theirs; new words are added (word tokenizer)."""
        return adapt_classifier(self, train)

    def weight_axes(self):
        axes = {"embedding.words.weight": ("words", (0,)), "out.weight": ("labels", (0,)), "out.bias": ("labels", (0,))}
        if self.config.ensemble == 1:
            return axes
        return {f"members.{i}.{name}": axis for i in range(self.config.ensemble) for name, axis in axes.items()}

    def vocab_size(self) -> int:
        return len(self.subwords) if self.config.tokenizer == "subword" else len(self.words)

    def build_model(self):
        config = self.config
        kind = Classifier if config.ensemble == 1 else ClassifierEnsemble
        return kind(config, self.vocab_size(), len(self.labels), self.weights)

    def label_names(self):
        return list(self.labels.itos)

    def save_assets(self, directory):
        if self.config.tokenizer == "subword":
            self.subwords.save(Path(directory) / SUBWORD_FILE)
        return {
            "words": self.words.to_dict() if self.words else None,
            "labels": self.labels.to_dict(),
            "class_weights": self.weights,
        }

    def load_assets(self, directory, assets):
        self.words = Vocab.from_dict(assets["words"]) if assets["words"] else None
        if self.config.tokenizer == "subword":
            self.subwords = SubwordTokenizer.load(Path(directory) / SUBWORD_FILE)
        self.labels = Vocab.from_dict(assets["labels"])
        self.weights = assets["class_weights"]

    # -- batches -----------------------------------------------------------------------
    def check_labels(self, examples):
        for example in examples:
            if example.label not in self.labels:
                raise DataError(
                    f"{example.source}: label {example.label!r} was not seen in training (labels: "
                    f"{', '.join(self.labels.itos)})"
                )

    def encode(self, text: str) -> list[int]:
        return self.ids(self.tokenize(text))

    def ids(self, tokens: list) -> list[int]:
        ids = tokens if self.config.tokenizer == "subword" else self.words.encode(tokens)
        return ids or [1]  # a text of only unknown characters still gets one (unknown) token

    def prepare(self, examples):
        return [
            {"words": self.encode(e.text), "label": self.labels[e.label] if e.label is not None else None}
            for e in examples
        ]

    def loss_units(self, batch):
        if self.weights:  # a class-weighted cross-entropy is a mean over the labels' weights
            return float(torch.tensor(self.weights)[batch["labels"]].sum())
        return super().loss_units(batch)

    def collate(self, items):
        lengths = torch.tensor([len(item["words"]) for item in items])
        words = pad([item["words"] for item in items])
        batch = {
            "words": words,
            "lengths": lengths,
            "num_tokens": int(lengths.sum()),
            "mask": torch.arange(words.size(1)).unsqueeze(0) < lengths.unsqueeze(1),
        }
        if items[0]["label"] is not None:
            batch["labels"] = torch.tensor([item["label"] for item in items])
        return batch

    # -- evaluation and prediction -----------------------------------------------------
    def logits(self, model, encoded: list[list[int]]) -> torch.Tensor:
        """``[N, C]`` class scores of ``encoded`` texts (``encode``), in input order, before any temperature."""
        items = [{"words": ids, "label": None} for ids in encoded]
        out = torch.empty(len(items), len(self.labels))
        with torch.inference_mode():
            for group, batch in self.inference_batches(model, items):
                out[group] = model.logits(batch).float().cpu()
        return out

    def probabilities(self, model, encoded: list[list[int]]) -> torch.Tensor:
        """``[N, C]`` class probabilities of ``encoded`` texts, in input order, at the model's temperature."""
        return (self.logits(model, encoded) / model.temperature).softmax(dim=1)

    def evaluate(self, model, examples, selection=False):
        self.check_labels(examples)
        encoded = [self.encode(e.text) for e in examples]
        logits = self.logits(model, encoded)
        probs = (logits / model.temperature).softmax(dim=1)
        confidence, best = probs.max(dim=1)
        predicted = self.labels.decode(best.tolist())
        gold = [e.label for e in examples]
        scores = classification_scores(gold, predicted, self.labels.itos)
        if self.words is not None:
            ids = [w for text_ids in encoded for w in text_ids]
            scores["unknown_word_rate"] = sum(i == self.words.unk_id for i in ids) / max(1, len(ids))
        if not selection:
            scores["accuracy_by_length"] = accuracy_by_length([len(e.text.split()) for e in examples], gold, predicted)
            statistics = classification_statistics(gold, predicted, self.labels.itos)
            attach_intervals(scores, statistics, self.config.bootstrap)
            correct = [g == p for g, p in zip(gold, predicted)]
            fitted = self.applied_calibration()  # the trained probabilities matter only beside a temperature
            trained = logits.softmax(dim=1).max(dim=1).values.tolist() if fitted else []
            scores["calibration"] = calibration_before_after(confidence.tolist(), trained, correct, fitted)
            scores["_predictions"] = [
                {"source": e.source, "text": e.text, "gold": g, "predicted": p, "probability": round(float(c), 6),
                 "probabilities": dict(zip(self.labels.itos, (round(x, 6) for x in row))), "correct": g == p}
                for e, g, p, c, row in zip(examples, gold, predicted, confidence, probs.tolist())
            ]  # fmt: skip
        return scores

    def fit_temperature(self, model, examples):
        """The temperature that minimises the cross-entropy of ``examples``' labels (Guo et al.'s objective)."""
        self.check_labels(examples)
        logits = self.logits(model, [self.encode(e.text) for e in examples]).double()
        labels = torch.tensor([self.labels[e.label] for e in examples])
        temperature = fit_temperature(lambda t: float(F.cross_entropy(logits / t, labels)))
        return {"temperature": temperature, "objective": "cross-entropy of the labels", "items": len(examples)}

    def predict(self, model, inputs, options):
        """The label of each text, its probability and every class's; a text longer than ``max_length`` tokens is
        labelled from its first ``max_length`` (as the model was trained) and marked ``truncated``."""
        limit = self.config.max_length
        tokens = [self.whole_tokens(text) if text.strip() else [] for text in inputs]
        probs = self.probabilities(model, [self.ids(t[:limit]) for t in tokens])
        return classifications(inputs, [len(t) for t in tokens], probs.tolist(), self.labels.itos, limit)

    report_sections = staticmethod(report.report_sections)


LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, None))  # phrases sit in the first buckets, whole sentences later


def accuracy_by_length(lengths: list[int], gold: list[str], predicted: list[str]) -> dict:
    """``{"1-5": {"examples", "accuracy"}, ...}`` over the buckets that hold examples."""
    buckets = {}
    for low, high in LENGTH_BUCKETS:
        chosen = [i for i, n in enumerate(lengths) if low <= n and (high is None or n <= high)]
        if chosen:
            correct = sum(gold[i] == predicted[i] for i in chosen)
            buckets[f"{low}-{high}" if high else f"{low}+"] = {
                "examples": len(chosen),
                "accuracy": correct / len(chosen),
            }
    return buckets


def adapt_classifier(task: SentimentTask, train):
    """``SentimentTask.adapt``: the classes relabelled, the words extended (or the subwords re-trained with
    ``--new-vocab``) with their row maps, and the class weights recomputed for the new classes."""
    from seqnlp.training import finetune

    config = task.config
    old_labels, old_words = task.labels, task.words
    names, source, account = finetune.relabel(
        old_labels.itos, (e.label for e in train), config.labels, finetune.parse_label_map(config.label_map)
    )
    task.labels = label_vocab(names)
    adaptation = finetune.head_adaptation(config, task.labels, old_labels, source, "labels", "classes", account)
    if config.extend_vocab and config.tokenizer == "word":
        words = (task.tokenize(e.text) for e in train)
        task.words = finetune.extend_vocabulary(
            adaptation, "words", old_words, words, config, task.data_source(), config.min_freq
        )
    elif config.tokenizer == "subword":
        old_subwords = task.subwords
        if config.new_vocab:
            task.subwords = task.train_subwords(train)
        mapping, adaptation.notes["subwords"] = finetune.subword_adaptation(
            old_subwords, task.subwords, "training", task.subword_texts(train)
        )
        if mapping is not None:
            adaptation.maps["words"] = mapping
    counts = Counter(e.label for e in train)
    if config.class_weights == "balanced":
        task.weights = [len(train) / (len(task.labels) * max(1, counts[label])) for label in task.labels.itos]
    elif task.weights is not None and len(task.weights) != len(task.labels):
        task.weights = None
    return adaptation
