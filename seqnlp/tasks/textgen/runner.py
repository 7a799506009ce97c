"""Generating from an export: the step graph inside NumPy's sampling."""

from __future__ import annotations

import numpy as np

from seqnlp.nn.sampling import sample
from seqnlp.predictions import GENERATION_OPTIONS, Generation
from seqnlp.serving.runtime import Runner, pad_ids
from seqnlp.vocab import Vocab


class CharLMRunner(Runner):
    name = "textgen"
    shares_batches = False
    predict_options = {**GENERATION_OPTIONS, "generator": np.random.Generator}

    def load_assets(self, assets):
        self.chars = Vocab.from_dict(assets["chars"])

    def input_from_line(self, line):
        return line.replace("\\n", "\n")

    def step(self, inputs: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
        out = self.graphs.run("step", {"inputs": inputs, **state})
        return out["logits"], {name: out[f"next_{name}"] for name in state}

    def generate(self, prompts: list[list[int]], length: int, temperature, top_k, top_p, rng) -> list[list[int]]:
        """``CharLM.generate``: prompts fed one position at a time, each row keeping its own last logits."""
        config = self.config
        zeros = np.zeros((config.layers, len(prompts), config.hidden), dtype=np.float32)
        state = {"hidden": zeros, **({"cell": zeros} if "cell" in self.graphs.inputs["step"] else {})}
        lengths = np.array([len(p) for p in prompts])
        padded = pad_ids([[p[min(t, len(p) - 1)] for t in range(lengths.max())] for p in prompts])
        last = np.zeros((len(prompts), len(self.chars)), dtype=np.float32)
        for t in range(padded.shape[1]):
            logits, new_state = self.step(padded[:, t : t + 1], state)
            active = t < lengths
            last = np.where(active[:, None], logits[:, 0], last)
            state = {name: np.where(active[None, :, None], new_state[name], state[name]) for name in state}
        out = []
        for _ in range(length):
            masked = last.astype(np.float64)
            masked[:, [0, 1]] = -np.inf  # padding and unknown are never drawn
            next_chars = sample(masked, temperature, top_k, top_p, rng)
            out.append(next_chars)
            logits, state = self.step(next_chars[:, None], state)
            last = logits[:, 0]
        return np.stack(out, axis=1).tolist() if out else [[] for _ in prompts]

    def predict(self, inputs, options):
        rng = options.get("generator") or np.random.default_rng(options.get("seed", 0))
        encoded = [self.chars.encode(p) or [self.chars.unk_id] for p in inputs]
        ids = self.generate(
            encoded,
            options.get("max_chars", 200),
            options.get("temperature", 1.0),
            options.get("top_k", 0),
            options.get("top_p", 1.0),
            rng,
        )
        return [Generation(prompt, "".join(self.chars.decode(row))) for prompt, row in zip(inputs, ids)]


RUNNER = CharLMRunner
