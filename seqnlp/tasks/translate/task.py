"""Translation: parallel files / tables / HF datasets, SentencePiece subwords, attentional seq2seq, sacreBLEU."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from seqnlp.config import MAX_LAYERS, MAX_VOCAB, MAX_WIDTH, ConfigError, RunConfig, setting
from seqnlp.data.batching import pad
from seqnlp.data.hf import require_columns
from seqnlp.data.parallel import SentencePair, read_parallel
from seqnlp.errors import DataError
from seqnlp.evaluation.evidence import attach_intervals
from seqnlp.evaluation.metrics import translation_scores, translation_statistics
from seqnlp.nn.attention import ATTENTION_KINDS
from seqnlp.nn.beam import GNMTScorer, beam_search, max_target_lengths
from seqnlp.predictions import translations
from seqnlp.tasks.base import Task, register
from seqnlp.tasks.translate import report
from seqnlp.tasks.translate.model import Seq2Seq
from seqnlp.vocab import SubwordTokenizer

LENGTH_BUCKETS = ((1, 10), (11, 20), (21, 30), (31, None))


@dataclass
class TranslateConfig(RunConfig):
    src_lang: str = setting("de", "source language code (file suffixes, HF translation dicts)")
    tgt_lang: str = setting("en", "target language code")
    src_column: str = setting(
        "auto", "tables / plain HF columns: the source column; auto: the language code, then source / src"
    )
    tgt_column: str = setting("auto", "the target column; auto: the language code, then target / tgt")
    translation_field: str = setting("translation", "HF column holding {lang: text} dicts (wmt16 / iwslt schema)")
    vocab_size: int = setting(4000, "SentencePiece vocabulary size", low=8, high=MAX_VOCAB)
    joint_vocab: bool = setting(True, "one SentencePiece model (and embedding) for both languages")
    max_tokens: int = setting(100, "training sentences are cut to this many subwords", low=1)
    subword_sampling: float = setting(
        0.0,
        "> 0: every epoch segments the training sentences anew at random, with this alpha (subword regularization)",
        low=0.0,
        high=1.0,
    )
    embed_dim: int = setting(256, "subword embedding size", low=1, high=MAX_WIDTH)
    decoder_hidden: int = setting(256, "decoder hidden units", low=1, high=MAX_WIDTH)
    decoder_layers: int = setting(1, "decoder layers", low=1, high=MAX_LAYERS)
    attention: str = setting("general", "attention score", choices=ATTENTION_KINDS)
    input_feed: bool = setting(
        False, "feed the previous attentional state to the decoder (Luong et al.); off: fused kernels, faster"
    )
    tie_embeddings: bool = setting(
        True, "output layer shares the target embedding (with joint_vocab: one matrix for all three)"
    )
    label_smoothing: float = setting(0.1, "label smoothing of the training loss", low=0.0, high=0.99)
    beam: int = setting(5, "beam width (1: greedy)", low=1, high=1000)
    selection_beam: int = setting(0, "beam width of the dev BLEU that picks checkpoints; 0: `beam`", low=0, high=1000)
    length_penalty: float = setting(1.0, "GNMT length penalty alpha", low=0.0, high=10.0)
    coverage_penalty: float = setting(0.0, "GNMT coverage penalty beta; 0: off", low=0.0, high=10.0)
    max_len_ratio: float = setting(1.5, "hypotheses end by ratio * source length + 5 subwords", above=0.0, high=100.0)
    n_best: int = setting(1, "translations returned per input (at most beam)", low=1, high=1000)
    eval_batch_size: int = setting(128, "sentences per inference batch", low=1, high=1_000_000)
    int8_decoding: bool = setting(
        True, "on CPU, the decoder cells' and output layer's products run in int8 (seqnlp/nn/products.py)"
    )
    dropout: float = 0.3  # docs/experiments.md: the dropout runs behind this default
    batch_size: int = 64
    lr: float = 2e-3
    epochs: int = 40
    patience: int = 0  # no early stopping: the schedule anneals to the end of the budget
    average_decay: float = 0.999

    def validate(self) -> None:
        super().validate()
        if self.n_best > self.beam:
            raise ConfigError(f"n_best ({self.n_best}) must be at most beam ({self.beam})")


@register
class TranslateTask(Task):
    name = "translate"
    config_class = TranslateConfig
    bf16_pays = True  # docs/experiments.md, "Mixed precision": faster in bf16 on AVX512-BF16 and AMX
    metric = "bleu"
    length_key = "src"
    settings_added_later = {"coverage_penalty": 0.0}  # older models decode as they did
    predict_options = {"beam": int, "n_best": int}
    decoding_space = {
        "beam": {"choices": [1, 2, 3, 4, 5, 6, 8, 10, 12]},
        "length_penalty": {"range": [0.0, 2.0]},
        "coverage_penalty": {"range": [0.0, 1.0]},
    }
    sample_files = ("train", "val", "test")
    pipeline_tag = "translation"
    usage_input = "Ein Hund läuft über die Wiese."

    def description(self):
        languages = f"{self.config.src_lang} → {self.config.tgt_lang}"
        return f"an attentional encoder-decoder translator ({languages}, SentencePiece subwords, beam search)"

    def languages(self):
        return [self.config.src_lang, self.config.tgt_lang]

    # -- data --------------------------------------------------------------------------
    def columns(self) -> tuple[str, str]:
        config = self.config
        return (
            config.src_lang if config.src_column == "auto" else config.src_column,
            config.tgt_lang if config.tgt_column == "auto" else config.tgt_column,
        )

    def read_file(self, path):
        config = self.config
        src_column, tgt_column = self.columns()
        if Path(path).is_file() and config.src_column == "auto":
            from seqnlp.data.table import pick_column

            src_column = pick_column(path, [config.src_lang, "source", "src"])
            tgt_column = pick_column(path, [config.tgt_lang, "target", "tgt"])
        return read_parallel(path, config.src_lang, config.tgt_lang, src_column, tgt_column)

    def read_hf(self, dataset, source):
        config = self.config
        pairs = []
        if config.translation_field in dataset.column_names:
            for number, row in enumerate(dataset):
                pair = row[config.translation_field]
                missing = [lang for lang in (config.src_lang, config.tgt_lang) if lang not in pair]
                if missing:
                    raise DataError(
                        f"{source}:row {number}: {config.translation_field!r} has no language {missing[0]!r} (has: "
                        f"{', '.join(pair)})"
                    )
                pairs.append(self._pair(pair[config.src_lang], pair[config.tgt_lang], f"{source}:row {number}"))
            return pairs
        src_column, tgt_column = self.columns()
        require_columns(dataset, [src_column, tgt_column], source)
        return [self._pair(row[src_column], row[tgt_column], f"{source}:row {n}") for n, row in enumerate(dataset)]

    @staticmethod
    def _pair(src, tgt, where) -> SentencePair:
        src, tgt = str(src or "").strip(), str(tgt or "").strip()
        if not src or not tgt:
            raise DataError(f"{where}: empty {'source' if not src else 'target'} sentence")
        return SentencePair(src, tgt, where)

    def data_exists(self, path):
        return os.path.exists(path) or os.path.exists(f"{path}.{self.config.src_lang}")  # a file prefix

    def num_tokens(self, example):
        return len(example.src.split()) + len(example.tgt.split())

    # -- subwords and model --------------------------------------------------------------
    def build_vocabularies(self, train):
        config = self.config
        if config.joint_vocab:
            self.src_sp = self.tgt_sp = SubwordTokenizer.train(
                [p.src for p in train] + [p.tgt for p in train], config.vocab_size
            )
        else:
            self.src_sp = SubwordTokenizer.train([p.src for p in train], config.vocab_size)
            self.tgt_sp = SubwordTokenizer.train([p.tgt for p in train], config.vocab_size)
        self.output_ids = sorted(
            {t for p in train for t in self.tgt_sp.encode(p.tgt)} | {self.tgt_sp.eos_id, self.tgt_sp.unk_id}
        )

    def uses_subwords(self):
        return True

    def adapt(self, train):
        """The model's SentencePiece model kept (the output layer also scores the new data's target subwords),
        or a new one trained on the new data (``--new-vocab``), whose pieces the model knows keep their rows."""
        return adapt_translator(self, train)

    def weight_axes(self):
        return {
            "src_embed.weight": ("source", (0,)),
            "tgt_embed.weight": ("target", (0,)),
            "out.weight": ("target", (0,)),
            "out.bias": ("target", (0,)),
        }

    def build_model(self):
        sizes = (len(self.src_sp), len(self.tgt_sp))
        return Seq2Seq(self.config, *sizes, self.tgt_sp.pad_id, self.tgt_sp.unk_id, self.output_ids)

    def save_assets(self, directory):
        self.src_sp.save(Path(directory) / "source.model")
        if not self.config.joint_vocab:
            self.tgt_sp.save(Path(directory) / "target.model")
        return {"joint_vocab": self.config.joint_vocab, "output_subwords": self.output_ids}

    def load_assets(self, directory, assets):
        self.src_sp = SubwordTokenizer.load(Path(directory) / "source.model")
        self.tgt_sp = self.src_sp if assets["joint_vocab"] else SubwordTokenizer.load(Path(directory) / "target.model")
        self.output_ids = assets.get("output_subwords") or list(range(len(self.tgt_sp)))

    # -- batches -----------------------------------------------------------------------
    def prepare(self, examples):
        n = self.config.max_tokens
        return [
            {"src": self.src_sp.encode(p.src)[:n], "tgt": self.tgt_sp.encode(p.tgt)[:n], "pair": p} for p in examples
        ]

    def batch_length(self, item):
        # both sides: sorted by the source alone, the decoder steps through a third of padding
        return len(item["src"]), len(item["tgt"])

    def resegment(self, items, epoch):
        """``items`` with both sides segmented at random (Kudo 2018), a pure function of ``(seed, epoch)``.

        Each epoch shows the model other subword splits of the same words, which regularises it on
        small corpora. A sampled target that uses a subword the output layer does not score keeps its
        usual segmentation.
        """
        config, n = self.config, self.config.max_tokens
        seed = (config.seed * 1_000_003 + epoch) % 2**31
        sources = self.src_sp.sample([item["pair"].src for item in items], config.subword_sampling, seed)
        targets = self.tgt_sp.sample([item["pair"].tgt for item in items], config.subword_sampling, seed + 1)
        scored = set(self.output_ids)
        return [
            {"src": src[:n], "tgt": tgt[:n] if scored.issuperset(tgt) else it["tgt"], "pair": it["pair"]}
            for it, src, tgt in zip(items, sources, targets)
        ]

    def collate(self, items):
        bos, eos = self.tgt_sp.bos_id, self.tgt_sp.eos_id
        src_lengths = torch.tensor([len(item["src"]) for item in items])
        batch = {"src": pad([item["src"] for item in items]), "src_lengths": src_lengths}
        if "tgt" in items[0]:
            batch["tgt_in"] = pad([[bos] + item["tgt"] for item in items])
            batch["tgt_out"] = pad([item["tgt"] + [eos] for item in items])
            batch["num_tokens"] = int(src_lengths.sum()) + sum(len(item["tgt"]) + 1 for item in items)
        return batch

    def loss_units(self, batch):
        return float((batch["tgt_out"] != self.tgt_sp.pad_id).sum())  # the loss is a mean over target subwords

    def batches(self, items, shuffle, epoch=0):
        if shuffle and self.config.subword_sampling > 0:
            items = self.resegment(items, epoch)
        return super().batches(items, shuffle, epoch)

    # -- decoding, evaluation, prediction ----------------------------------------------
    def translate(
        self, model, sentences: list[str], beam: int | None = None, n_best: int = 1, lengths: list[int] | None = None
    ) -> list[list[tuple[str, float]]]:
        """``n_best`` detokenized translations with their scores for each sentence, in input order. ``lengths``:
        the exact number of subwords (EOS included) to translate each sentence into, for timing a model whose own
        ends are arbitrary (``benchmarks/translate_speed.py`` with random weights); None: the model decides."""
        config = self.config
        beam = beam or config.beam
        model.eval()
        # Whole sentences, however long (a recurrent encoder has no length limit, and a long one comes in a
        # batch of its own, eval_max_tokens): cutting them would drop the end of the translation unannounced.
        items = [{"src": self.src_sp.encode(s) or [self.src_sp.unk_id]} for s in sentences]
        scorer = GNMTScorer(config.length_penalty, config.coverage_penalty)
        decoder = model.decoder(int8=config.int8_decoding)
        results: list = [None] * len(sentences)
        for group, batch in self.inference_batches(model, items):
            if lengths is None:
                limits = max_target_lengths(batch["src_lengths"].cpu().numpy(), config.max_len_ratio)
                max_lengths, min_lengths = torch.from_numpy(limits).to(batch["src_lengths"].device), None
            else:
                max_lengths = min_lengths = torch.tensor([lengths[i] for i in group])
            hyps = beam_search(
                decoder,
                batch["src"],
                batch["src_lengths"],
                beam=beam,
                max_lengths=max_lengths,
                min_lengths=min_lengths,
                bos=self.tgt_sp.bos_id,
                eos=self.tgt_sp.eos_id,
                scorer=scorer,
                n_best=n_best,
            )
            for i, nbest in zip(group, hyps):
                results[i] = [(self.tgt_sp.decode(ids), score) for ids, score in nbest]
        return results

    def evaluate(self, model, examples, selection=False):
        beam = (self.config.selection_beam or self.config.beam) if selection else self.config.beam
        best = [nbest[0] for nbest in self.translate(model, [p.src for p in examples], beam)]
        hypotheses = [text for text, _ in best]
        references = [p.tgt for p in examples]
        scores = translation_scores(hypotheses, references)
        scores["beam"] = beam
        if selection:
            return scores
        scores["bleu_by_source_length"] = bleu_by_source_length(examples, hypotheses, references)
        src_ids = [t for p in examples for t in self.src_sp.encode(p.src)]
        scores["unknown_subword_rate"] = sum(t == self.src_sp.unk_id for t in src_ids) / max(1, len(src_ids))
        scores["_samples"] = [
            {"source": examples[i].src, "reference": references[i], "translation": hypotheses[i]}
            for i in range(min(10, len(examples)))
        ]
        statistics = translation_statistics(hypotheses, references)
        attach_intervals(scores, statistics, self.config.bootstrap)
        sentence_chrf = statistics.score("chrf", statistics.rows)  # each pair's own statistics
        scores["_predictions"] = [
            {"source": p.source, "src": p.src, "reference": p.tgt, "translation": text, "score": round(score, 6),
             "chrf": round(float(chrf), 4)}
            for p, (text, score), chrf in zip(examples, best, sentence_chrf)
        ]  # fmt: skip
        return scores

    def data_files(self, path: str) -> list[str]:
        if os.path.isfile(path):
            return [path]
        return [f"{path}.{self.config.src_lang}", f"{path}.{self.config.tgt_lang}"]

    def predict(self, model, inputs, options):
        """The best translation of each input with its score, and the ``n_best`` list when ``n_best`` > 1."""
        n_best = options.get("n_best") or self.config.n_best
        beam = options.get("beam") or self.config.beam
        if n_best > beam:
            raise ConfigError(f"n_best ({n_best}) must be at most the beam width ({beam})")
        return translations(inputs, lambda sentences: self.translate(model, sentences, beam, n_best), n_best)

    report_sections = staticmethod(report.report_sections)


def bleu_by_source_length(examples, hypotheses: list[str], references: list[str]) -> dict:
    """BLEU of the sentences in each of ``LENGTH_BUCKETS`` (source words), with their number."""
    buckets = {}
    for low, high in LENGTH_BUCKETS:
        chosen = [
            i
            for i, p in enumerate(examples)
            if low <= len(p.src.split()) and (high is None or len(p.src.split()) <= high)
        ]
        if chosen:
            bleu = translation_scores([hypotheses[i] for i in chosen], [references[i] for i in chosen])["bleu"]
            buckets[f"{low}-{high}" if high else f"{low}+"] = {"sentences": len(chosen), "bleu": bleu}
    return buckets


def adapt_translator(task: TranslateTask, train):
    """``TranslateTask.adapt``: the subword row maps from the model's SentencePiece models to the run's."""
    from seqnlp.training import finetune

    old_src, old_tgt = task.src_sp, task.tgt_sp
    if task.config.new_vocab:
        task.build_vocabularies(train)
    else:
        task.output_ids = sorted(set(task.output_ids) | {t for p in train for t in task.tgt_sp.encode(p.tgt)})
    adaptation = finetune.Adaptation()
    if task.config.joint_vocab:
        texts = [p.src for p in train] + [p.tgt for p in train]
        mapping, adaptation.notes["subwords"] = finetune.subword_adaptation(old_src, task.src_sp, "training", texts)
        maps = {"source": mapping, "target": mapping}
    else:
        maps = {}
        maps["source"], adaptation.notes["source subwords"] = finetune.subword_adaptation(
            old_src, task.src_sp, "source", [p.src for p in train]
        )
        maps["target"], adaptation.notes["target subwords"] = finetune.subword_adaptation(
            old_tgt, task.tgt_sp, "target", [p.tgt for p in train]
        )
    adaptation.maps.update({name: mapping for name, mapping in maps.items() if mapping is not None})
    return adaptation
