"""Named-entity recognition: CoNLL / HF token-classification data, BiRNN-CRF tagger, seqeval scores."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from seqnlp.config import MAX_WIDTH, RunConfig, calibrate_setting, setting, word_vectors_setting
from seqnlp.data import tags as tagging
from seqnlp.data.batching import pad
from seqnlp.data.conll import read_conll, read_tagged_rows
from seqnlp.data.tokenize import CASINGS, MAX_WORD_CHARS, casing, normalize_word
from seqnlp.errors import DataError
from seqnlp.evaluation.calibration import binary_log_loss, fit_temperature
from seqnlp.evaluation.evidence import attach_intervals
from seqnlp.evaluation.metrics import (
    calibration_before_after,
    entity_error_analysis,
    entity_errors,
    entity_f1,
    entity_scores,
    entity_statistics,
    token_accuracy,
)
from seqnlp.predictions import taggings
from seqnlp.tasks.base import Task, register
from seqnlp.tasks.ner import decoding, report
from seqnlp.tasks.ner.model import Tagger
from seqnlp.vocab import Vocab, label_vocab

MAX_CACHED_SPELLINGS = 200_000  # bounds the memo when tagging an endless stream


@dataclass
class Decoded:
    """One inference batch tagged: the sentences' indices, emissions ``[B, T, K]`` and lengths (arrays), best tag-id
    paths, their tags and entity spans ``(row, start, end, type)``: what every temperature's probabilities are
    computed from."""

    group: list[int]
    emissions: np.ndarray
    lengths: np.ndarray
    paths: list[list[int]]
    tags: list[list[str]]
    spans: list[tuple[int, int, int, str]]


@dataclass
class NERConfig(RunConfig):
    # data format
    token_column: int = setting(0, "CoNLL column of the token (negative: from the end)", low=-64, high=64)
    tag_column: int = setting(-1, "CoNLL column of the tag (negative: from the end)", low=-64, high=64)
    tokens_field: str = setting("tokens", "HF datasets: the column of token lists")
    tags_field: str = setting("ner_tags", "HF datasets: the column of tag lists (ClassLabel ids or strings)")
    tag_scheme: str = setting(
        "bioes", "the scheme the model predicts; scores always use IOB2", choices=("iob2", "bioes")
    )
    # model
    word_dim: int = setting(100, "word embedding size", low=1, high=MAX_WIDTH)
    min_freq: int = setting(1, "training words seen fewer times become <unk>", low=1)
    lowercase: bool = setting(True, "lowercase words before the word embedding (casing has its own feature)")
    char_dim: int = setting(30, "character embedding size; 0 turns character features off", low=0, high=MAX_WIDTH)
    char_out: int = setting(50, "size of each word's character feature", low=1, high=MAX_WIDTH)
    char_encoder: str = setting("cnn", "how characters make a word feature", choices=("cnn", "lstm"))
    casing_dim: int = setting(
        8, "embedding of each token's casing class (the word embeddings are lowercased); 0: none", low=0, high=MAX_WIDTH
    )
    word_dropout: float = setting(0.05, "probability that a training word becomes <unk>", low=0.0, high=0.95)
    rare_word_dropout: float = setting(
        0.0, "training words seen once become <unk> with this probability", low=0.0, high=1.0
    )
    crf: bool = setting(True, "a CRF output layer (else independent softmax per token)")
    constrained: bool = setting(True, "forbid invalid tag transitions in the CRF")
    pretrained_vectors: str | None = word_vectors_setting()
    calibrate: bool = calibrate_setting()
    eval_batch_size: int = setting(256, "sentences per inference batch", low=1, high=1_000_000)
    batch_size: int = 16  # better than 32 in the same budget, and less memory: docs/experiments.md
    batch_max_tokens: int = 800  # 16 x 50: only the ~50 training sentences over 50 tokens come in smaller batches
    epochs: int = 70
    patience: int = 0  # no early stopping: the schedule anneals to the end of the budget


@register
class NERTask(Task):
    name = "ner"
    config_class = NERConfig
    metric = "f1"
    settings_added_later = {"casing_dim": 0}
    predict_options = {"pretokenized": bool}
    token_list_inputs = True
    output_formats = ("text", "json", "conll")
    sample_files = ("train.txt", "dev.txt", "test.txt")
    pipeline_tag = "token-classification"
    usage_input = "Peter Blackburn visited Brussels."

    def description(self):
        return f"a named-entity tagger (embeddings, a recurrent encoder{' and a CRF' if self.config.crf else ''})"

    # -- data --------------------------------------------------------------------------
    def read_file(self, path):
        config = self.config
        return read_conll(path, config.token_column, config.tag_column, scheme=config.tag_scheme)

    def read_hf(self, dataset, source):
        config = self.config
        return read_tagged_rows(dataset, config.tokens_field, config.tags_field, config.tag_scheme, source)

    def num_tokens(self, example):
        return len(example.tokens)

    # -- vocabularies and model --------------------------------------------------------
    def normalize(self, token: str) -> str:
        return normalize_word(token, self.config.lowercase)

    def build_vocabularies(self, train):
        config = self.config
        normalized = [[self.normalize(t) for t in s.tokens] for s in train]
        self.words = Vocab.build(normalized, min_freq=config.min_freq, source=self.data_source())
        counts = Counter(t for tokens in normalized for t in tokens)
        self.rare_from = next((i for i, w in enumerate(self.words.itos) if counts[w] == 1), len(self.words))
        self.chars = (
            Vocab.build(("".join(s.tokens) for s in train), source=self.data_source()) if config.char_dim else None
        )  # characters, not tokens
        self.spellings = {}
        types = {tagging.split_tag(t)[1] for s in train for t in s.tags} - {None}
        self.tags = label_vocab(tagging.scheme_tags(types, config.tag_scheme))

    def entity_types(self) -> list[str]:
        """The entity types the model tags, in order: the columns of its evaluation statistics."""
        return sorted({tagging.split_tag(t)[1] for t in self.tags.itos} - {None})

    def adapt(self, train):
        """New entity types get fresh rows (and zero CRF transitions); known ones keep theirs; new words are added."""
        return adapt_tagger(self, train)

    def weight_axes(self):
        return {
            "embedding.words.weight": ("words", (0,)),
            "embedding.chars.embed.weight": ("chars", (0,)),
            "emit.weight": ("tags", (0,)),
            "emit.bias": ("tags", (0,)),
            "crf.transitions": ("tags", (0, 1)),
            "crf.start": ("tags", (0,)),
            "crf.end": ("tags", (0,)),
        }

    def build_model(self):
        config = self.config
        allowed = tagging.allowed_transitions(self.tags.itos, config.tag_scheme) if config.constrained else None
        model = Tagger(
            config,
            len(self.words),
            len(self.chars) if self.chars else 0,
            len(self.tags),
            rare_from=self.rare_from,
            allowed=allowed,
            num_casings=len(CASINGS) + 1,
        )
        return model

    def label_names(self):
        return tagging.entity_types(self.tags.itos)

    def save_assets(self, directory):
        return {
            "words": self.words.to_dict(),
            "rare_from": self.rare_from,
            "chars": self.chars.to_dict() if self.chars else None,
            "tags": self.tags.to_dict(),
        }

    def load_assets(self, directory, assets):
        self.words = Vocab.from_dict(assets["words"])
        self.rare_from = assets.get("rare_from", len(self.words))
        self.chars = Vocab.from_dict(assets["chars"]) if assets["chars"] else None
        self.spellings = {}
        self.tags = Vocab.from_dict(assets["tags"])

    # -- batches -----------------------------------------------------------------------
    def check_labels(self, examples):
        """Judge entity types, not tag strings: a known type in a tag form training never showed is fine."""
        known = {t.split("-", 1)[-1] for t in self.tags.itos if t != "O"}
        for sentence in examples:
            for offset, tag in enumerate(sentence.tags):
                entity = tagging.split_tag(tag)[1]
                if entity is not None and entity not in known:
                    where = _token_location(sentence.source, offset)
                    raise DataError(
                        f"{where}: entity type {entity!r} was not seen in training (known types: "
                        f"{', '.join(sorted(known))})"
                    )
                if tag not in self.tags:  # models saved before every tag form of a type was kept
                    where = _token_location(sentence.source, offset)
                    raise DataError(
                        f"{where}: tag {tag!r} is not among this model's tags ({', '.join(self.tags.itos)})"
                    )

    def encode(self, sentences: list[list[str]], tags: list[list[str]] | None = None) -> list[dict]:
        return [
            {
                "tokens": tokens,
                "words": self.words.encode(self.normalize(t) for t in tokens),
                "casing": [casing(t) for t in tokens] if self.config.casing_dim else None,
                "tags": self.tags.encode(tags[i]) if tags is not None else None,
            }
            for i, tokens in enumerate(sentences)
        ]

    def collate(self, items: list[dict]) -> dict:
        lengths = torch.tensor([len(item["words"]) for item in items])
        words = pad([item["words"] for item in items])
        mask = torch.arange(words.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
        batch = {"words": words, "lengths": lengths, "mask": mask, "num_tokens": int(lengths.sum())}
        if items[0]["tags"] is not None:
            batch["tags"] = pad([item["tags"] for item in items])
        if items[0]["casing"] is not None:
            batch["casing"] = pad([item["casing"] for item in items])
        if self.chars is not None:
            distinct: dict[str, int] = {}
            index = [[distinct.setdefault(tok, len(distinct)) for tok in item["tokens"]] for item in items]
            spelled = [self.spell(tok) for tok in distinct]
            batch["chars"] = pad(spelled)
            batch["char_lengths"] = torch.tensor([len(s) for s in spelled])
            batch["char_index"] = pad(index)
        return batch

    def spell(self, token: str) -> list[int]:
        """Character ids of ``token``, memoised: every epoch's collation spells the same words again."""
        ids = self.spellings.get(token)
        if ids is None:
            ids = self.chars.encode(token[:MAX_WORD_CHARS])
            if len(self.spellings) < MAX_CACHED_SPELLINGS:
                self.spellings[token] = ids
        return ids

    def prepare(self, examples):
        return self.encode([s.tokens for s in examples], [s.tags for s in examples])

    # -- evaluation and prediction -----------------------------------------------------
    def tag(self, model, sentences: list[list[str]]) -> list[list[str]]:
        """Predicted IOB2 tags for whitespace-tokenized sentences, in input order."""
        results: list = [None] * len(sentences)
        for group, batch in self.inference_batches(model, self.encode(sentences)):
            for i, ids in zip(group, model.predict(batch)):
                results[i] = tagging.convert(self.tags.decode(ids), "iob2")
        return results

    def evaluate(self, model, examples, selection=False):
        self.check_labels(examples)
        sentences = [s.tokens for s in examples]
        # a final evaluation keeps each entity's probability for predictions.jsonl (the same Viterbi tags), at the
        # model's temperature and, for the report's calibration before and after, at the trained one
        temperatures = (model.temperature,) if model.temperature == 1.0 else (model.temperature, 1.0)
        tagged = None if selection else self.tag_entities_at(model, sentences, temperatures)
        predicted = self.tag(model, sentences) if selection else [tags for tags, _ in tagged[0]]
        gold = [tagging.convert(s.tags, "iob2") for s in examples]
        scores = entity_f1(gold, predicted) if selection else entity_scores(gold, predicted)
        scores["token_accuracy"] = token_accuracy(gold, predicted)
        unknown = sum(
            w == self.words.unk_id for s in examples for w in self.words.encode(self.normalize(t) for t in s.tokens)
        )
        scores["unknown_word_rate"] = unknown / max(1, sum(len(s.tokens) for s in examples))
        if not selection:
            attach_evidence(scores, self, examples, gold, predicted, tagged)
        return scores

    def fit_temperature(self, model, examples):
        """The temperature that minimises the log loss of the predicted entities' probabilities against whether
        each is a gold entity: the entity scores users read. The Viterbi tags (and so the entities) are decoded
        once; each step of the search recomputes their probabilities only."""
        self.check_labels(examples)
        decoded = list(self.decoded_batches(model, [s.tokens for s in examples]))
        gold = [set(tagging.to_spans(tagging.convert(s.tags, "iob2"))) for s in examples]
        right = [(t, s, e) in gold[d.group[r]] for d in decoded for r, s, e, t in d.spans]

        def loss(temperature):
            chain = decoding.chain_of(model.crf, self.tags.itos, temperature)
            probabilities = [p for d in decoded for p in entity_probabilities(d, chain, temperature)]
            return binary_log_loss(probabilities, right)

        return {
            "temperature": fit_temperature(loss),
            "objective": "log loss of the predicted entities' probabilities",
            "items": len(right),
        }

    def decoded_batches(self, model, sentences: list[list[str]]):
        """Each inference batch of ``sentences`` with its emissions and best tag paths (``Decoded``), decoded once."""
        chain = decoding.chain_of(model.crf, self.tags.itos)
        for group, batch in self.inference_batches(model, self.encode(sentences)):
            with torch.inference_mode():
                emissions = model.emissions(batch).float().cpu().numpy()
            lengths = batch["lengths"].cpu().numpy()
            paths = decoding.best_paths(emissions, lengths, chain)
            tags = [self.tags.decode(path) for path in paths]
            yield Decoded(group, emissions, lengths, paths, tags, tagging.sentence_spans(tags))

    def tag_entities_at(self, model, sentences: list[list[str]], temperatures: tuple[float, ...]) -> list[list]:
        """``tag_entities`` at each of ``temperatures``: the same tags, their entities' probabilities at each."""
        results: list = [[None] * len(sentences) for _ in temperatures]
        chains = [decoding.chain_of(model.crf, self.tags.itos, temperature) for temperature in temperatures]
        for decoded in self.decoded_batches(model, sentences):
            for at, temperature, chain in zip(results, temperatures, chains):
                scores = entity_probabilities(decoded, chain, temperature)
                for i, tagged in zip(decoded.group, tagging.tagged_sentences(decoded.tags, decoded.spans, scores)):
                    at[i] = tagged
        return results

    def tag_entities(
        self, model, sentences: list[list[str]]
    ) -> list[tuple[list[str], list[tuple[str, int, int, float]]]]:
        """IOB2 tags and entities ``(type, start, end_exclusive, probability)`` of each tokenized sentence, the
        probabilities at the model's temperature (``entity_probabilities``)."""
        return self.tag_entities_at(model, sentences, (model.temperature,))[0]

    def predict(self, model, inputs, options):
        """Each input is a string (tokenized as CoNLL-2003 is, or at whitespace with ``pretokenized``) or a list of
        tokens."""
        pretokenized = options.get("pretokenized", False)
        return taggings(inputs, pretokenized, lambda sentences: self.tag_entities(model, sentences))

    report_sections = staticmethod(report.report_sections)


def adapt_tagger(task: NERTask, train):
    """``NERTask.adapt``: the tag set relabelled (new entity types fresh, known ones carried over) and the words and
    characters extended, with their row maps."""
    from seqnlp.training import finetune

    config = task.config
    old_tags, old_words, old_chars = task.tags, task.words, task.chars
    old_types = sorted({tagging.split_tag(t)[1] for t in old_tags.itos} - {None})
    seen = {tagging.split_tag(t)[1] for s in train for t in s.tags} - {None}
    types, source, account = finetune.relabel(
        old_types, seen, config.labels, finetune.parse_label_map(config.label_map)
    )
    task.tags = label_vocab(tagging.scheme_tags(types, config.tag_scheme))
    tag_source = {}
    for tag in task.tags.itos:
        prefix, entity = tagging.split_tag(tag)
        tag_source[tag] = "O" if entity is None else (f"{prefix}-{source[entity]}" if source.get(entity) else None)
    adaptation = finetune.head_adaptation(config, task.tags, old_tags, tag_source, "tags", "entity types", account)
    if config.extend_vocab:
        words = ([task.normalize(t) for t in s.tokens] for s in train)
        task.words = finetune.extend_vocabulary(
            adaptation, "words", old_words, words, config, task.data_source(), config.min_freq
        )
        if old_chars is not None:
            chars = ("".join(s.tokens) for s in train)
            task.chars = finetune.extend_vocabulary(
                adaptation, "chars", old_chars, chars, config, task.data_source(), noted="characters"
            )
    return adaptation


def entity_probabilities(decoded: Decoded, chain, temperature: float) -> list[float]:
    """The probability of each entity of ``decoded.spans``, every score divided by ``temperature`` (``chain``: the
    CRF's scores divided by it already, or None)."""
    emissions = decoded.emissions if temperature == 1.0 else decoded.emissions / temperature
    return decoding.entity_probabilities(emissions, decoded.lengths, decoded.paths, decoded.spans, chain)


def attach_evidence(scores: dict, task: NERTask, examples, gold, predicted, tagged) -> None:
    """What a final evaluation adds to ``scores``: intervals, the error analysis, the entities' calibration (from
    ``tagged``, the tags and entities at the model's temperature and, when calibrated, at 1) and predictions.jsonl's
    records."""
    statistics = entity_statistics(gold, predicted, task.entity_types())
    attach_intervals(scores, statistics, task.config.bootstrap)
    words = [[task.normalize(t) for t in s.tokens] for s in examples]  # as the vocabulary holds them
    scores["error_analysis"] = entity_error_analysis(gold, predicted, words, task.words)
    # each predicted entity's probability (at each temperature), and whether it is a gold entity
    confidences = [[p for _, found in at for *_, p in found] for at in tagged]
    gold_spans = [set(tagging.to_spans(g)) for g in gold]
    right = [(t, s, e) in spans for spans, (_, found) in zip(gold_spans, tagged[0]) for t, s, e, _ in found]
    fitted = task.applied_calibration()
    scores["calibration"] = calibration_before_after(confidences[0], confidences[-1], right, fitted)
    scores["_predictions"] = [
        tagging_record(example, g, found) for example, g, (_, found) in zip(examples, gold, tagged[0])
    ]


def tagging_record(example, gold: list[str], entities: list[tuple]) -> dict:
    """A line of predictions.jsonl: the sentence, its gold and predicted entities (each with its probability and
    whether it is right) and its errors by kind."""
    gold_spans = set(tagging.to_spans(gold))
    predicted_spans = {(t, s, e) for t, s, e, _ in entities}
    return {
        "source": example.source,
        "tokens": example.tokens,
        "gold": [list(span) for span in sorted(gold_spans, key=lambda span: span[1:])],
        "predicted": [
            {"type": t, "start": s, "end": e, "score": round(p, 6), "correct": (t, s, e) in gold_spans}
            for t, s, e, p in entities
        ],  # fmt: skip
        "errors": [
            {"kind": kind, "gold": list(g) if g else None, "predicted": list(p) if p else None}
            for kind, g, p in entity_errors(gold_spans, predicted_spans)
        ],
    }


def _token_location(source: str, offset: int) -> str:
    """``FILE:LINE`` of the ``offset``-th token of a sentence that starts at ``source``."""
    path, sep, line = source.rpartition(":")
    if sep and line.isdigit():
        return f"{path}:{int(line) + offset}"
    return source
