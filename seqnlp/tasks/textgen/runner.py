"""Generating from an export: the step graph inside NumPy's sampling."""

from __future__ import annotations

import numpy as np

from seqnlp.nn.arrays import NUMPY
from seqnlp.nn.sampling import continue_prompts
from seqnlp.predictions import GENERATION_DEFAULTS, GENERATION_OPTIONS, Generation
from seqnlp.serving.runtime import Runner
from seqnlp.vocab import Vocab


class CharLMRunner(Runner):
    name = "textgen"
    shares_batches = False
    predict_options = {**GENERATION_OPTIONS, "generator": np.random.Generator}

    def load_assets(self, assets):
        self.chars = Vocab.from_dict(assets["chars"])

    def input_from_line(self, line):
        return line.replace("\\n", "\n")

    def step(self, inputs: np.ndarray, state: dict | None) -> tuple[np.ndarray, dict]:
        if state is None:
            zeros = np.zeros((self.config.layers, len(inputs), self.config.hidden), dtype=np.float32)
            state = {name: zeros for name in ("hidden", "cell") if name in self.graphs.inputs["step"]}
        out = self.graphs.run("step", {"inputs": inputs, **state})
        return out["logits"], {name: out[f"next_{name}"] for name in state}

    def predict(self, inputs, options):
        rng = options.get("generator") or np.random.default_rng(options.get("seed", 0))
        encoded = [self.chars.encode(p) or [self.chars.unk_id] for p in inputs]
        settings = {name: options.get(name, default) for name, default in GENERATION_DEFAULTS.items()}
        length = settings.pop("max_chars")
        banned = (self.chars.pad_id, self.chars.unk_id)
        ids = continue_prompts(self.step, encoded, length, NUMPY, banned=banned, generator=rng, **settings)
        return [Generation(prompt, "".join(self.chars.decode(row))) for prompt, row in zip(inputs, ids)]


RUNNER = CharLMRunner
