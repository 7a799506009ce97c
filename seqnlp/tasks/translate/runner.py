"""Translating from an export: the encoder and step graphs inside the beam search, over NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from seqnlp.errors import ConfigError
from seqnlp.nn.beam import GNMTScorer, beam_search, max_target_lengths
from seqnlp.predictions import translations
from seqnlp.serving.runtime import Runner, member, pad_ids
from seqnlp.vocab import SubwordTokenizer

# The hypothesis axis of each decoder-state array: hidden and cell states are [layers, N, H], the feed [N, D].
STATE_AXES = {"hidden": 1, "cell": 1, "feed": 0}


@dataclass
class GraphHypotheses:
    """What the search carries between calls of the step graph (``seqnlp.nn.beam``'s state): the sentences' memory
    (arrays with a sentence axis 0), the hypotheses' decoder state and the attention of the step just taken."""

    memory: dict
    state: dict
    attention: np.ndarray | None = None

    def expand(self, beam: int) -> GraphHypotheses:
        name, value = next(iter(self.state.items()))
        return self.reorder(np.repeat(np.arange(value.shape[STATE_AXES[name]]), beam))

    def select(self, sentences: np.ndarray, rows: np.ndarray) -> GraphHypotheses:
        """Keep ``sentences`` (drop finished ones) and the decoder-state ``rows`` of theirs, reordered."""
        return replace(self.reorder(rows), memory={name: value[sentences] for name, value in self.memory.items()})

    def reorder(self, rows: np.ndarray) -> GraphHypotheses:
        state = {name: np.take(value, rows, axis=STATE_AXES[name]) for name, value in self.state.items()}
        return GraphHypotheses(self.memory, state, None if self.attention is None else self.attention[rows])


class TranslatorRunner(Runner):
    name = "translate"
    predict_options = {"beam": int, "n_best": int}
    length_key = "src"

    def load_assets(self, assets):
        where = str(self.directory)
        self.src_sp = SubwordTokenizer.load(member(self.directory, "source.model", where))
        joint = assets.get("joint_vocab", True)
        self.tgt_sp = self.src_sp if joint else SubwordTokenizer.load(member(self.directory, "target.model", where))
        self.output_ids = self.arrays["output_ids"].astype(np.int64)

    def encode(self, src, src_lengths):
        out = self.graphs.run("encode", {"src": src, "src_lengths": src_lengths})
        memory = {name: out[name] for name in ("keys", "values", "mask_bias")}
        hidden = out["hidden"]
        state = {"hidden": hidden}
        if "cell" in self.graphs.inputs["step"]:
            state["cell"] = np.zeros_like(hidden)
        if "feed" in self.graphs.inputs["step"]:
            width = memory["values"].shape[2]
            state["feed"] = np.zeros((hidden.shape[1], width), dtype=hidden.dtype)
        return GraphHypotheses(memory, state)

    def next_log_probs(self, tokens, hyps: GraphHypotheses) -> tuple[np.ndarray, GraphHypotheses]:
        out = self.graphs.run("step", {"tokens": tokens, **hyps.memory, **hyps.state})
        next_state = {name: out[f"next_{name}"] for name in hyps.state}
        return out["log_probs"], GraphHypotheses(hyps.memory, next_state, out["attention"])

    def translate(self, sentences: list[str], beam: int, n_best: int) -> list[list[tuple[str, float]]]:
        config = self.config
        items = [{"src": self.src_sp.encode(s) or [self.src_sp.unk_id]} for s in sentences]
        results: list = [None] * len(sentences)
        for group in self.batches(items):
            rows = [items[i]["src"] for i in group]
            src_lengths = np.array([len(r) for r in rows], dtype=np.int64)
            hyps = beam_search(
                self,
                pad_ids(rows),
                src_lengths,
                beam=beam,
                max_lengths=max_target_lengths(src_lengths, config.max_len_ratio),
                bos=self.tgt_sp.bos_id,
                eos=self.tgt_sp.eos_id,
                scorer=GNMTScorer(config.length_penalty, config.coverage_penalty),
                n_best=n_best,
            )
            for i, nbest in zip(group, hyps):
                results[i] = [(self.tgt_sp.decode(ids), score) for ids, score in nbest]
        return results

    def predict(self, inputs, options):
        n_best = options.get("n_best") or self.config.n_best
        beam = options.get("beam") or self.config.beam
        if n_best > beam:
            raise ConfigError(f"n_best ({n_best}) must be at most the beam width ({beam})")
        return translations(inputs, lambda sentences: self.translate(sentences, beam, n_best), n_best)


RUNNER = TranslatorRunner
