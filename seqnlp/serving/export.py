"""``seqnlp export MODEL_DIR OUT_DIR --format onnx``: a model directory as ONNX graphs for onnxruntime.

Each task exports the part of its model that is tensor arithmetic, with dynamic batch and length axes; what is
search (the CRF's Viterbi and span marginals, beam search, sampling) runs in NumPy over the graphs' outputs
(``seqnlp.nn.crf_decoding``, ``beam``, ``sampling``: the PyTorch model's code), so a graph never holds a loop over
time steps of its own:

- ner: ``emissions`` (words, lengths[, chars, char_index][, casing] -> scores [B, T, K]); the CRF's scores beside
  it in ``arrays.safetensors``.
- sentiment: ``probabilities`` (words, lengths -> [B, C]).
- translate: ``encode`` (src, src_lengths -> attention keys, values, mask bias, first decoder state) and
  ``step`` (tokens, memory, state -> next-subword log-probabilities, next state, attention).
- textgen: ``step`` (characters [B, T], state -> logits [B, T, V], next state).

The folder also holds the model's ``config.json`` (settings resolved, vocabularies), its tokenizer files and its
card; ``onnx.json`` names the graphs with their inputs and outputs.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seqnlp import compat
from seqnlp.errors import ConfigError
from seqnlp.serving import FORMAT, FORMAT_VERSION, MANIFEST
from seqnlp.storage.folders import atomic_directory, write_json
from seqnlp.tasks import task_part
from seqnlp.version import __version__

OPSET = 18
ARRAYS = "arrays.safetensors"


@dataclass
class Graph:
    """One ONNX graph: a module whose ``forward`` takes ``inputs`` (in order) and returns ``outputs``."""

    name: str
    module: nn.Module
    inputs: dict[
        str, torch.Tensor
    ]  # example values, sized so that no dynamic axis is 0 or 1 (export specializes those)
    axes: dict[str, dict[int, str]]  # the dynamic axes of each input, by name
    outputs: list[str]


class Named(nn.Module):
    """``forward(*tensors)`` calls ``function(dict(zip(names, tensors)))``: one graph input per present tensor."""

    def __init__(self, model: nn.Module, names: list[str], function):
        super().__init__()
        self.model = model
        self.names = names
        self.function = function

    def forward(self, *tensors):
        return self.function(self.model, dict(zip(self.names, tensors)))


def refusal(task) -> str | None:
    """Why this model cannot be exported, or None."""
    config = task.config
    if config.cell_impl != "fused":
        return (
            f"cell_impl={config.cell_impl} unrolls a Python loop over the time steps, which an ONNX graph with a "
            "dynamic length cannot hold: export a model trained with cell_impl=fused"
        )
    part = task_part(task.name, "export")
    if part is None:
        return f"the {task.name} task has no ONNX graphs (its package has no export module)"
    return part.refusal(task) if hasattr(part, "refusal") else None


def _export_graph(graph: Graph, path: Path) -> None:
    """The TorchScript-based exporter: it writes PyTorch's fused RNNs as ONNX ``LSTM`` / ``GRU`` / ``RNN`` nodes, whose
    length is dynamic. (The ``torch.export`` one unrolls them into a fixed number of steps.)"""
    with torch.no_grad():
        results = graph.module.eval()(*graph.inputs.values())
    results = results if isinstance(results, tuple) else (results,)
    # Every output axis is dynamic: its sizes follow the inputs'.
    axes = {**graph.axes, **{n: {i: f"{n}_{i}" for i in range(r.dim())} for n, r in zip(graph.outputs, results)}}
    # The exporter warns about its own deprecation and internals, and about LSTMs without a given first state
    # (which start from zeros, as in PyTorch: the parity tests check every batch size).
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        compat.onnx_export(
            graph.module,
            tuple(graph.inputs.values()),
            str(path),
            input_names=list(graph.inputs),
            output_names=graph.outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
        )


def export(model_dir, out_dir, overwrite: bool = False) -> dict:
    """Export ``model_dir`` (a model directory or ``hf://`` name) into ``out_dir``; returns the manifest."""
    from seqnlp.storage.folders import existing_directory, read_model_config
    from seqnlp.storage.hub import model_directory
    from seqnlp.tasks.base import build_checked_model, task_from_model_config, write_task_config

    source = model_directory(model_dir)
    source = existing_directory(source) or Path(source)
    task = task_from_model_config(source, read_model_config(source))
    reason = refusal(task)  # before the weights: a model that cannot export need not load
    if reason:
        raise ConfigError(f"cannot export this {task.name} model to ONNX: {reason}", str(model_dir))
    model = build_checked_model(task, source / "model.safetensors").eval()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError("the output folder is not empty (--overwrite replaces it)", str(out_dir))
    try:
        import onnx  # noqa: F401  (torch's exporter writes through it)
    except ImportError:
        raise ConfigError("seqnlp export needs the onnx package: pip install 'seqnlp[onnx]'") from None
    graphs, arrays = task_part(task.name, "export").graphs(task, model)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": task.name,
        "seqnlp_version": __version__,
        "opset": OPSET,
        "graphs": {g.name: {"file": f"{g.name}.onnx", "inputs": list(g.inputs), "outputs": g.outputs} for g in graphs},
        "arrays": ARRAYS if arrays else None,
    }
    with atomic_directory(out_dir) as tmp, torch.no_grad():
        for graph in graphs:
            _export_graph(graph, tmp / f"{graph.name}.onnx")
        if arrays:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in arrays.items()}, str(tmp / ARRAYS))
        write_task_config(task, tmp)
        card = source / "README.md"
        if card.is_file():
            shutil.copyfile(card, tmp / "README.md")
        write_json(tmp / MANIFEST, manifest)
    return manifest
