"""``seqnlp export MODEL_DIR OUT_DIR --format onnx``: a model directory as ONNX graphs for onnxruntime.

Each task exports the part of its model that is tensor arithmetic, with dynamic batch and length axes; what is
search (the CRF's Viterbi and span marginals, beam search, sampling) runs in NumPy over the graphs' outputs
(``seqnlp.deploy.decoding``), so a graph never holds a loop over time steps of its own:

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

from seqnlp import __version__
from seqnlp.deploy import FORMAT, FORMAT_VERSION, MANIFEST
from seqnlp.errors import ConfigError
from seqnlp.io import atomic_directory, write_json
from seqnlp.models.seq2seq import DecoderState, Hypotheses, SourceMemory

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


class _Named(nn.Module):
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
    if task.name == "ner" and config.char_dim and config.char_encoder != "cnn":
        return (
            "char_encoder=lstm packs its sequences (pack_padded_sequence), which does not export: use char_encoder=cnn"
        )
    return None


def _tagger_graphs(task, model) -> tuple[list[Graph], dict]:
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
    graph = Graph("emissions", _Named(model, list(inputs), _emissions), inputs, axes, ["emissions"])
    arrays = {}
    if model.crf is not None:
        from seqnlp.data import tags as tagging

        start, transitions, end = (t.detach().float() for t in model.crf._scores(model.temperature))
        arrays = {
            "crf_start": start,
            "crf_transitions": transitions,
            "crf_end": end,
            "continues": tagging.continuation_mask(task.tags.itos).to(torch.uint8),
        }
    return [graph], arrays


def _emissions(model, batch):
    emissions = model.emissions(batch)
    return emissions if model.temperature == 1.0 else emissions / model.temperature


def _probabilities(model, batch):
    steps = batch["words"].size(1)
    batch["mask"] = torch.arange(steps).unsqueeze(0) < batch["lengths"].unsqueeze(1)
    logits = model.logits(batch)
    return (logits if model.temperature == 1.0 else logits / model.temperature).softmax(dim=-1)


def _classifier_graphs(task, model) -> tuple[list[Graph], dict]:
    vocabulary = len(task.words) if task.words is not None else len(task.subwords)
    inputs = {"words": torch.randint(2, vocabulary, (3, 5)), "lengths": torch.tensor([5, 4, 2])}
    axes = {"words": {0: "batch", 1: "steps"}, "lengths": {0: "batch"}}
    return [Graph("probabilities", _Named(model, list(inputs), _probabilities), inputs, axes, ["probabilities"])], {}


def _encode(model, batch):
    hyps = model.encode(batch["src"], batch["src_lengths"])
    first = torch.stack([layer[0] for layer in hyps.state.layers])  # [layers, B, H]
    return hyps.memory.keys, hyps.memory.values, hyps.memory.mask_bias, first


def _step(model, batch):
    """One decoder step of every hypothesis: ``hidden`` (and ``cell``) ``[layers, N, H]``, N = sentences x beam."""
    hidden, cell = batch["hidden"], batch.get("cell")
    layers = [(h, c) for h, c in zip(hidden, cell)] if cell is not None else [(h,) for h in hidden]
    feed = batch["feed"] if "feed" in batch else hidden.new_zeros(hidden.size(1), 0)
    memory = SourceMemory(batch["keys"], batch["values"], batch["mask_bias"])
    hyps = Hypotheses(memory, DecoderState(layers, feed), model.step_weights())
    logits, hyps = model.next_logits(batch["tokens"], hyps)
    state = hyps.state
    # the search's log-softmax in the graph: onnxruntime's kernel is several times NumPy's
    outputs = [logits.log_softmax(dim=1), torch.stack([layer[0] for layer in state.layers])]
    if cell is not None:
        outputs.append(torch.stack([layer[1] for layer in state.layers]))
    if "feed" in batch:
        outputs.append(state.feed)
    return (*outputs, state.attention)


def _translator_graphs(task, model) -> tuple[list[Graph], dict]:
    src = {"src": torch.randint(4, len(task.src_sp), (3, 5)), "src_lengths": torch.tensor([5, 4, 2])}
    encode = Graph(
        "encode",
        _Named(model, list(src), _encode),
        src,
        {"src": {0: "sentences", 1: "source_steps"}, "src_lengths": {0: "sentences"}},
        ["keys", "values", "mask_bias", "hidden"],
    )
    with torch.no_grad():
        keys, values, mask_bias, hidden = _encode(model, dict(src))
    beam = 2
    rows = torch.arange(3).repeat_interleave(beam)
    step_inputs = {
        "tokens": torch.randint(4, len(task.tgt_sp), (3 * beam,)),
        "keys": keys,
        "values": values,
        "mask_bias": mask_bias,
        "hidden": hidden[:, rows],
    }
    memory_axes = {0: "sentences", 1: "source_steps"}
    axes = {
        "tokens": {0: "hypotheses"},
        "keys": memory_axes,
        "values": memory_axes,
        "mask_bias": {0: "sentences", 2: "source_steps"},
        "hidden": {1: "hypotheses"},
    }
    outputs = ["log_probs", "next_hidden"]
    if task.config.cell == "lstm":
        step_inputs["cell"] = torch.randn_like(step_inputs["hidden"])
        axes["cell"] = {1: "hypotheses"}
        outputs.append("next_cell")
    if task.config.input_feed:
        step_inputs["feed"] = torch.randn(3 * beam, model.combine.out_features)
        axes["feed"] = {0: "hypotheses"}
        outputs.append("next_feed")
    step = Graph("step", _Named(model, list(step_inputs), _step), step_inputs, axes, [*outputs, "attention"])
    return [encode, step], {"output_ids": model.output_ids.clone()}


def _lm_step(model, batch):
    state = (batch["hidden"], batch["cell"]) if "cell" in batch else batch["hidden"]
    logits, state = model.step(batch["inputs"], state)
    return (logits, *state) if isinstance(state, tuple) else (logits, state)


def _charlm_graphs(task, model) -> tuple[list[Graph], dict]:
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
    return [Graph("step", _Named(model, list(inputs), _lm_step), inputs, axes, outputs)], {}


GRAPHS = {
    "ner": _tagger_graphs,
    "sentiment": _classifier_graphs,
    "translate": _translator_graphs,
    "textgen": _charlm_graphs,
}


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
        torch.onnx.export(
            graph.module,
            tuple(graph.inputs.values()),
            str(path),
            input_names=list(graph.inputs),
            output_names=graph.outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def export(model_dir, out_dir, overwrite: bool = False) -> dict:
    """Export ``model_dir`` (a model directory or ``hf://`` name) into ``out_dir``; returns the manifest."""
    from seqnlp.hub import model_directory
    from seqnlp.io import existing_directory, read_model_config
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
    graphs, arrays = GRAPHS[task.name](task, model)
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
