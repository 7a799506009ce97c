"""The translator's ONNX graphs: the encoder, and one decoder step of every hypothesis."""

from __future__ import annotations

import torch

from seqnlp.serving.export import Graph, Named
from seqnlp.tasks.translate.model import DecoderState, Hypotheses, SourceMemory


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


def graphs(task, model) -> tuple[list[Graph], dict]:
    src = {"src": torch.randint(4, len(task.src_sp), (3, 5)), "src_lengths": torch.tensor([5, 4, 2])}
    encode = Graph(
        "encode",
        Named(model, list(src), _encode),
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
    step = Graph("step", Named(model, list(step_inputs), _step), step_inputs, axes, [*outputs, "attention"])
    return [encode, step], {"output_ids": model.output_ids.clone()}
