"""The classifier's ONNX graph: class probabilities."""

from __future__ import annotations

import torch

from seqnlp.serving.export import Graph, Named


def _probabilities(model, batch):
    steps = batch["words"].size(1)
    batch["mask"] = torch.arange(steps).unsqueeze(0) < batch["lengths"].unsqueeze(1)
    logits = model.logits(batch)
    return (logits if model.temperature == 1.0 else logits / model.temperature).softmax(dim=-1)


def graphs(task, model) -> tuple[list[Graph], dict]:
    vocabulary = len(task.words) if task.words is not None else len(task.subwords)
    inputs = {"words": torch.randint(2, vocabulary, (3, 5)), "lengths": torch.tensor([5, 4, 2])}
    axes = {"words": {0: "batch", 1: "steps"}, "lengths": {0: "batch"}}
    return [Graph("probabilities", Named(model, list(inputs), _probabilities), inputs, axes, ["probabilities"])], {}
