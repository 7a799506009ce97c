"""The language model's ONNX graph: a step over characters, with its recurrent state."""

from __future__ import annotations

import torch

from seqnlp.serving.export import Graph, Named


def _lm_step(model, batch):
    state = (batch["hidden"], batch["cell"]) if "cell" in batch else batch["hidden"]
    logits, state = model.step(batch["inputs"], state)
    return (logits, *state) if isinstance(state, tuple) else (logits, state)


def graphs(task, model) -> tuple[list[Graph], dict]:
    rnn = model.rnn
    inputs = {
        "inputs": torch.randint(2, len(task.chars), (3, 5)),
        "hidden": torch.randn(rnn.num_layers, 3, rnn.hidden_size),
    }
    axes = {"inputs": {0: "batch", 1: "steps"}, "hidden": {1: "batch"}}
    outputs = ["logits", "next_hidden"]
    if task.config.cell == "lstm":
        inputs["cell"] = torch.randn(rnn.num_layers, 3, rnn.hidden_size)
        axes["cell"] = {1: "batch"}
        outputs.append("next_cell")
    return [Graph("step", Named(model, list(inputs), _lm_step), inputs, axes, outputs)], {}
