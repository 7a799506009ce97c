"""Tagging from an export: emissions from the graph, Viterbi and span probabilities in NumPy."""

from __future__ import annotations

import numpy as np

from seqnlp.data import tags as tagging
from seqnlp.data.tokenize import MAX_WORD_CHARS, casing, normalize_word
from seqnlp.predictions import taggings
from seqnlp.serving.runtime import Runner, pad_ids
from seqnlp.tasks.ner.decoding import Chain, best_paths, entity_probabilities
from seqnlp.vocab import Vocab


class TaggerRunner(Runner):
    name = "ner"
    predict_options = {"pretokenized": bool}
    token_list_inputs = True
    output_formats = ("text", "json", "conll")

    def load_assets(self, assets):
        self.words = Vocab.from_dict(assets["words"])
        self.chars = Vocab.from_dict(assets["chars"]) if assets.get("chars") else None
        self.tags = Vocab.from_dict(assets["tags"])

    def label_names(self):
        return tagging.entity_types(self.tags.itos)

    def emissions(self, sentences: list[list[str]]) -> np.ndarray:
        config = self.config
        feeds = {
            "words": pad_ids([self.words.encode(normalize_word(t, config.lowercase) for t in s) for s in sentences]),
            "lengths": np.array([len(s) for s in sentences], dtype=np.int64),
        }
        if self.chars is not None:
            distinct: dict[str, int] = {}
            feeds["char_index"] = pad_ids([[distinct.setdefault(t, len(distinct)) for t in s] for s in sentences])
            feeds["chars"] = pad_ids([self.chars.encode(t[:MAX_WORD_CHARS]) for t in distinct])
        if config.casing_dim:
            feeds["casing"] = pad_ids([[casing(t) for t in s] for s in sentences])
        return self.graphs.run("emissions", feeds)["emissions"].astype(np.float32), feeds["lengths"]

    def tag_entities(self, sentences: list[list[str]]) -> list:
        """IOB2 tags and entities ``(type, start, end, probability)``, as ``NERTask.tag_entities``."""
        results: list = [None] * len(sentences)
        chain = None
        if self.arrays:  # the export's CRF scores, divided by the model's temperature already
            names = ("crf_start", "crf_transitions", "crf_end")
            chain = Chain(*(self.arrays[k] for k in names), self.arrays["continues"].astype(bool))
        for group in self.batches([{"words": s} for s in sentences]):
            emissions, lengths = self.emissions([sentences[i] for i in group])
            paths = best_paths(emissions, lengths, chain)
            tags = [self.tags.decode(path) for path in paths]
            spans = tagging.sentence_spans(tags)
            scores = entity_probabilities(emissions, lengths, paths, spans, chain)
            for i, tagged in zip(group, tagging.tagged_sentences(tags, spans, scores)):
                results[i] = tagged
        return results

    def predict(self, inputs, options):
        return taggings(inputs, options.get("pretokenized", False), self.tag_entities)


RUNNER = TaggerRunner
