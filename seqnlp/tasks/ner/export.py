"""The tagger's ONNX graph: emissions; the CRF's scores go beside it as arrays."""

from __future__ import annotations

import torch

from seqnlp.data import tags as tagging
from seqnlp.serving.export import Graph, Named


def refusal(task) -> str | None:
    config = task.config
    if config.char_dim and config.char_encoder != "cnn":
        return (
            "char_encoder=lstm packs its sequences (pack_padded_sequence), which does not export: use char_encoder=cnn"
        )
    return None


def graphs(task, model) -> tuple[list[Graph], dict]:
    config = task.config
    inputs = {"words": torch.randint(2, len(task.words), (3, 5)), "lengths": torch.tensor([5, 4, 2])}
    axes = {"words": {0: "batch", 1: "steps"}, "lengths": {0: "batch"}}
    if task.chars is not None:
        inputs["chars"] = torch.randint(2, len(task.chars), (7, 6))
        inputs["char_index"] = torch.randint(0, 7, (3, 5))
        axes["chars"] = {0: "distinct_words", 1: "word_chars"}
        axes["char_index"] = {0: "batch", 1: "steps"}
    if config.casing_dim:
        inputs["casing"] = torch.randint(1, 8, (3, 5))
        axes["casing"] = {0: "batch", 1: "steps"}
    # a calibrated model's temperature divides every score here, so the runtime's probabilities are calibrated
    graph = Graph("emissions", Named(model, list(inputs), _emissions), inputs, axes, ["emissions"])
    arrays = {}
    if model.crf is not None:
        start, transitions, end = (t.detach().float() for t in model.crf._scores(model.temperature))
        arrays = {
            "crf_start": start,
            "crf_transitions": transitions,
            "crf_end": end,
            "continues": torch.from_numpy(tagging.continuation_mask(task.tags.itos)).to(torch.uint8),
        }
    return [graph], arrays


def _emissions(model, batch):
    emissions = model.emissions(batch)
    return emissions if model.temperature == 1.0 else emissions / model.temperature
