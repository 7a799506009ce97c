"""Character language model: stateful TBPTT batches, sampling, the recipe end to end."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from seqnlp.config import from_dict
from seqnlp.nn.sampling import sample
from seqnlp.tasks.textgen.model import CharLM
from seqnlp.tasks.textgen.task import Document, TextgenConfig, TextgenTask
from tests.conftest import run_cli, train_cli

TINY = [
    "--hidden",
    "24",
    "--layers",
    "1",
    "--embed-dim",
    "8",
    "--seq-len",
    "16",
    "--batch-size",
    "4",
    "--epochs",
    "2",
    "--quiet",
    "--sample-chars",
    "20",
]


def LM_SHAPE(cell):  # noqa: N802  (a tiny language model's settings, as TextgenConfig holds them)
    return SimpleNamespace(embed_dim=4, hidden=6, layers=1, cell=cell, dropout=0.0)


def task_with(text, **settings):
    task = TextgenTask(from_dict(TextgenConfig, {"batch_size": 2, "seq_len": 3, **settings}))
    task.build_vocabularies([Document(text)])
    return task


def test_batches_are_consecutive_segments_of_parallel_streams():
    task = task_with("abcdefghijklmnopq")
    ids = task.prepare([Document("abcdefghijklmnopq")])
    batches = task.batches(ids, shuffle=False)
    decode = lambda t: "".join(task.chars.decode(t.tolist()))  # noqa: E731
    assert [decode(b["inputs"][0]) for b in batches] == ["abc", "def", "gh"]
    assert [decode(b["inputs"][1]) for b in batches] == ["ijk", "lmn", "op"]
    assert decode(batches[0]["targets"][0]) == "bcd"
    assert [b["reset"] for b in batches] == [True, False, False]


def test_hidden_state_is_carried_across_segments_until_reset():
    torch.manual_seed(0)
    model = CharLM(LM_SHAPE("lstm"), 5)
    tokens = torch.randint(0, 5, (2, 8))
    whole, _ = model.step(tokens)
    model({"inputs": tokens[:, :4], "targets": tokens[:, :4], "reset": True})
    carried = model.carried
    second, _ = model.step(tokens[:, 4:], carried)
    assert torch.allclose(second, whole[:, 4:], atol=1e-6)
    model({"inputs": tokens[:, :4], "targets": tokens[:, :4], "reset": True})
    assert torch.allclose(model.carried[0], carried[0])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_carried_state_stays_float32_when_a_step_returns_bf16(cell, monkeypatch):
    # what bf16 autocast does; oneDNN's LSTM refuses a bf16 start state beside float32 weights
    model = CharLM(LM_SHAPE(cell), 5)
    plain_step = model.step

    def bf16_step(inputs, state=None):
        logits, state = plain_step(inputs, state)
        return logits, tuple(s.bfloat16() for s in state) if isinstance(state, tuple) else state.bfloat16()

    monkeypatch.setattr(model, "step", bf16_step)
    model({"inputs": torch.zeros(2, 3, dtype=torch.long), "targets": torch.zeros(2, 3, dtype=torch.long)})
    carried = model.carried if isinstance(model.carried, tuple) else (model.carried,)
    assert all(s.dtype == torch.float32 for s in carried)


def test_carried_state_survives_a_state_dict_round_trip():
    model = CharLM(LM_SHAPE("gru"), 5)
    model(
        {"inputs": torch.zeros(2, 3, dtype=torch.long), "targets": torch.zeros(2, 3, dtype=torch.long), "reset": True}
    )
    clone = CharLM(LM_SHAPE("gru"), 5)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.carried, model.carried)


def test_top_k_one_and_zero_temperature_are_greedy():
    logits = torch.tensor([[0.1, 3.0, 0.2], [2.0, 0.0, 1.0]])
    assert sample(logits, temperature=0).tolist() == [1, 0]
    assert sample(logits, top_k=1, generator=torch.Generator().manual_seed(0)).tolist() == [1, 0]


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    draws = {int(sample(logits, top_p=0.7, generator=torch.Generator().manual_seed(s))) for s in range(200)}
    assert draws == {0, 1}


@pytest.mark.parametrize(("top_k", "top_p"), [(2, 1.0), (0, 0.7), (3, 0.9)])
def test_filtering_keeps_the_same_tokens_over_numpy_arrays_and_tensors(top_k, top_p):
    from seqnlp.nn.arrays import NUMPY
    from seqnlp.nn.sampling import filtered_logits
    from seqnlp.nn.torch_arrays import TorchArrays

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]]))
    over_tensors = filtered_logits(TorchArrays("cpu"), logits, top_k, top_p)
    over_arrays = filtered_logits(NUMPY, logits.double().numpy(), top_k, top_p)
    assert over_tensors.isfinite().tolist() == np.isfinite(over_arrays).tolist()
    assert over_tensors.isfinite().sum() < logits.numel()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_prompts_of_different_lengths_each_continue_from_their_own_state(backend):
    from seqnlp.nn.arrays import NUMPY
    from seqnlp.nn.sampling import continue_prompts
    from seqnlp.nn.torch_arrays import TorchArrays

    lib, arrays = (np, NUMPY) if backend == "numpy" else (torch, TorchArrays("cpu"))

    def step(inputs, state):  # the state sums the ids fed; the best next id is that sum modulo 7, then the one below
        total = inputs[:, 0] + (0 if state is None else state[0, :, 0])
        logits = -((total[:, None] - lib.arange(7)[None, :]) % 7) * 1.0
        return logits[:, None, :], total[None, :, None]

    greedy = dict(temperature=0, top_k=0, top_p=1.0, generator=None)
    rows = continue_prompts(step, [[2, 3], [4], [1, 1, 1]], 3, arrays, banned=(5,), **greedy)
    # [4] is fed alone: its row's state must not count the padding fed while the longer prompts are read
    assert rows == [[4, 2, 4], [4, 1, 2], [3, 6, 4]]


def test_generation_is_reproducible_with_a_seed():
    task = task_with("hello world, hello there")
    model = task.build_model()
    first = task.generate(model, ["he", "w"], 12, seed=3)
    assert first == task.generate(model, ["he", "w"], 12, seed=3)
    assert [len(t) for t in first] == [12, 12]


def test_a_generator_as_seed_goes_on_from_call_to_call():
    # seqnlp predict passes one generator to every buffer of prompts, so equal prompts in two buffers differ
    task = task_with("hello world, hello there")
    model = task.build_model()
    generator = torch.Generator().manual_seed(3)
    first = task.generate(model, ["he"], 12, seed=generator)
    assert first == task.generate(model, ["he"], 12, seed=3)
    assert task.generate(model, ["he"], 12, seed=generator) != first


def test_recipe_trains_reports_and_predicts(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 40
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    (tmp_path / "val.txt").write_text(text[:400], encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = train_cli(
        "textgen",
        tmp_path / "train.txt",
        tmp_path / "val.txt",
        out,
        "--sample-prompts",
        "the |a",
        *TINY,
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["dev"]) >= {"loss", "bpc", "perplexity"}
    assert metrics["dev"]["bpc"] == pytest.approx(metrics["dev"]["loss"] / 0.6931471805599453)
    classes = metrics["dev"]["loss_by_character_class"]
    assert set(classes) == {"letters", "spaces", "punctuation"}  # the text's characters: no digits, no newline
    assert sum(c["share"] * c["loss"] for c in classes.values()) == pytest.approx(metrics["dev"]["loss"])
    assert sum(c["share_of_loss"] for c in classes.values()) == pytest.approx(1.0)
    report = (out / "report.md").read_text()
    assert "```\nthe " in report and "loss by character class" in report
    code, stdout, _ = run_cli("evaluate", out / "model", "--test-file", tmp_path / "val.txt")
    assert json.loads(stdout)["test"] == metrics["dev"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the\nfox\n", encoding="utf-8")
    code, stdout, _ = run_cli("predict", out / "model", prompts, "--max-chars", "30", "--seed", "1")
    assert code == 0 and len(stdout.splitlines()) == 2
    assert stdout == run_cli("predict", out / "model", prompts, "--max-chars", "30", "--seed", "1")[1]


def test_empty_text_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    code, _, err = run_cli(
        "train", "textgen", "--train-file", tmp_path / "empty.txt", "--output-dir", tmp_path / "o", *TINY
    )
    assert code == 2 and err.startswith(f"error: {tmp_path / 'empty.txt'}: the text is empty")


def test_bidirectional_language_model_is_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("bidirectional: true\n", encoding="utf-8")
    code, _, err = run_cli(
        "train", "textgen", "--config", config, "--train-file", "x.txt", "--output-dir", tmp_path / "out"
    )
    assert code == 2 and "reads left to right" in err
