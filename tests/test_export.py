"""ONNX export: graphs that match PyTorch, predictions that equal PyTorch's, a runtime without torch, clear
refusals."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import seqnlp
from seqnlp.errors import TRAINING_PACKAGES
from seqnlp.serving.export import export
from seqnlp.serving.runtime import OnnxModel, load_runner
from seqnlp.tasks.base import load_model_dir
from tests.conftest import ROOT, run_cli
from tests.test_api import SAMPLES

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def trained_and_exported(tmp_path_factory):
    """``get(task)``: (task, model directory, export directory) of a model trained for one epoch on the bundled
    samples, trained once per module."""
    done = {}

    def get(task):
        if task not in done:
            train, dev, sizes = SAMPLES[task]
            out = tmp_path_factory.mktemp(task)
            seqnlp.train(
                task,
                train_file=str(ROOT / train),
                dev_file=str(ROOT / dev),
                output_dir=str(out),
                epochs=1,
                quiet=True,
                **sizes,
            )
            export(out / "model", out / "onnx")
            done[task] = (task, out / "model", out / "onnx")
        return done[task]

    return get


@pytest.fixture(params=sorted(SAMPLES))
def exported(request, trained_and_exported):
    return trained_and_exported(request.param)


def _random_feeds(task, runner, batch: int, steps: int, rng) -> dict:
    """Graph inputs of ``batch`` sequences of lengths up to ``steps`` (the first one exactly ``steps``)."""
    lengths = np.concatenate([[steps], rng.integers(1, steps + 1, batch - 1)]).astype(np.int64)
    if task == "ner":
        words = rng.integers(1, len(runner.words), (batch, steps))
        feeds = {"words": words, "lengths": lengths, "char_index": rng.integers(0, 5, (batch, steps))}
        feeds["chars"] = rng.integers(1, len(runner.chars), (5, 7))
        feeds["casing"] = rng.integers(1, 8, (batch, steps))
        return feeds
    if task == "sentiment":
        return {"words": rng.integers(1, len(runner.words), (batch, steps)), "lengths": lengths}
    if task == "translate":
        return {"src": rng.integers(4, len(runner.src_sp), (batch, steps)), "src_lengths": lengths}
    layers, hidden = runner.config.layers, runner.config.hidden
    state = rng.standard_normal((layers, batch, hidden)).astype(np.float32)
    return {"inputs": rng.integers(1, len(runner.chars), (batch, steps)), "hidden": state, "cell": state * 0.5}


def _torch_outputs(task, model, feeds: dict) -> list:
    t = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.no_grad():
        if task == "ner":  # the graph's emissions carry the model's temperature (1 when uncalibrated)
            return [model.emissions(t) / model.temperature]
        if task == "sentiment":
            t["mask"] = torch.arange(t["words"].size(1)).unsqueeze(0) < t["lengths"].unsqueeze(1)
            return [model.predict(t)]
        if task == "translate":
            hyps = model.encode(t["src"], t["src_lengths"])
            return [hyps.memory.keys, hyps.memory.values, torch.stack([layer[0] for layer in hyps.state.layers])]
        logits, (h, c) = model.step(t["inputs"], (t["hidden"], t["cell"]))
        return [logits, h, c]


@pytest.mark.parametrize(("batch", "steps"), [(1, 1), (3, 7), (8, 23)])
def test_graphs_match_pytorch_within_1e_4_at_any_batch_size_and_length(exported, batch, steps):
    task, model_dir, onnx_dir = exported
    runner = load_runner(onnx_dir)
    _, model = load_model_dir(model_dir)
    feeds = _random_feeds(task, runner, batch, steps, np.random.default_rng(batch * 100 + steps))
    graph = next(iter(runner.graphs.sessions))  # ner: emissions; sentiment: probabilities; translate: encode; lm: step
    names = {"translate": ["keys", "values", "hidden"], "textgen": ["logits", "next_hidden", "next_cell"]}
    outputs = runner.graphs.run(graph, feeds)
    got = [outputs[n] for n in names.get(task, runner.graphs.outputs[graph])]
    for ours, reference in zip(got, _torch_outputs(task, model, feeds)):
        assert ours.shape == tuple(reference.shape)
        np.testing.assert_allclose(ours, reference.numpy(), atol=TOLERANCE, rtol=0)


def test_a_translator_step_matches_pytorch_for_a_beam_of_hypotheses(trained_and_exported):
    task, model_dir, onnx_dir = trained_and_exported("translate")
    runner = load_runner(onnx_dir)
    _, model = load_model_dir(model_dir)
    src = np.array([[5, 9, 14, 7], [8, 6, 0, 0]], dtype=np.int64)
    lengths = np.array([4, 2], dtype=np.int64)
    tokens = np.array([2, 11, 12, 2, 13, 14], dtype=np.int64)
    log_probs, after_graph = runner.next_log_probs(tokens, runner.encode(src, lengths).expand(3))  # beam 3

    hyps = model.encode(torch.from_numpy(src), torch.from_numpy(lengths)).expand(3)
    with torch.no_grad():
        reference, after = model.next_logits(torch.from_numpy(tokens), hyps)
    np.testing.assert_allclose(log_probs, reference.log_softmax(dim=1).numpy(), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(after_graph.attention, after.state.attention.numpy(), atol=TOLERANCE, rtol=0)


def _answer(task, prediction) -> object:
    """What must be identical between the runtimes: tags and entity spans, labels, translations, text."""
    d = prediction.to_dict()
    if task == "ner":
        return [t["tag"] for t in d["tokens"]], [(e["start"], e["end"], e["type"]) for e in d["entities"]]
    return d[{"sentiment": "label", "translate": "translation", "textgen": "continuation"}[task]]


def _scores(task, prediction) -> list[float]:
    d = prediction.to_dict()
    if task == "ner":
        return [e["score"] for e in d["entities"]]
    if task == "sentiment":
        return list(d["probabilities"].values())
    return [d["score"]] if task == "translate" else []


def _sample_inputs(task) -> list[str]:
    path = ROOT / SAMPLES[task][1]
    if task == "ner":
        sentences, words = [], []
        for line in path.read_text().splitlines() + [""]:
            if line.strip() and not line.startswith("-DOCSTART-"):
                words.append(line.split()[0])
            elif words:
                sentences.append(" ".join(words))
                words = []
        return sentences[:60]
    if task == "sentiment":
        return [line.split("\t")[0] for line in path.read_text().splitlines()[1:61]]
    if task == "translate":
        return (ROOT / f"{SAMPLES[task][1]}.de").read_text().splitlines()[:40]
    return ["ROMEO:", "The king", "First Citizen:\nWe"]


def test_onnx_predictions_equal_pytorch_predictions_on_the_samples(exported):
    task, model_dir, onnx_dir = exported
    options = {"ner": {"pretokenized": True}, "textgen": {"top_k": 1, "max_chars": 60}}.get(task, {})
    # ONNX decodes in float32: the PyTorch model's int8 decoding products are turned off to compare like with like.
    reference = seqnlp.load(model_dir, device="cpu", **({"int8_decoding": False} if task == "translate" else {}))
    onnx_model = seqnlp.load(onnx_dir)
    assert isinstance(onnx_model, OnnxModel) and onnx_model.labels == reference.labels
    inputs = _sample_inputs(task)
    expected, got = reference.predict(inputs, **options), onnx_model.predict(inputs, **options)
    assert [_answer(task, p) for p in got] == [_answer(task, p) for p in expected]
    for ours, theirs in zip(got, expected):
        np.testing.assert_allclose(_scores(task, ours), _scores(task, theirs), atol=TOLERANCE, rtol=0)


def test_n_best_lists_and_decoding_settings_apply_to_an_exported_translator(trained_and_exported):
    task, model_dir, onnx_dir = trained_and_exported("translate")
    reference = seqnlp.load(model_dir, device="cpu", int8_decoding=False)
    onnx_model = seqnlp.load(onnx_dir)
    inputs = _sample_inputs(task)[:10]
    for options in ({"beam": 3, "n_best": 3}, {"beam": 1}, {"length_penalty": 0.0, "coverage_penalty": 0.2}):
        expected = [p.to_dict() for p in reference.predict(inputs, **options)]
        got = [p.to_dict() for p in onnx_model.predict(inputs, **options)]
        assert [[h["translation"] for h in p["n_best"]] for p in got] == [
            [h["translation"] for h in p["n_best"]] for p in expected
        ]
        assert [p["translation"] for p in got] == [p["translation"] for p in expected]


def test_the_onnx_runtime_runs_without_the_training_packages(exported, tmp_path):
    """As in the base install (``pip install 'seqnlp[runtime]'``): torch, datasets, matplotlib... cannot be imported."""
    task, _, onnx_dir = exported
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\n".join(text.replace("\n", "\\n") for text in _sample_inputs(task)[:3]) + "\n")
    script = (
        "import sys\n"
        f"sys.modules.update(dict.fromkeys({list(TRAINING_PACKAGES)!r}))\n"
        "from seqnlp.cli import main\n"
        f"code = main(['predict', {str(onnx_dir)!r}, {str(inputs)!r}, '--format', 'json', '--max-chars', '5'])\n"
        "import seqnlp\n"
        f"seqnlp.load({str(onnx_dir)!r}).predict(['a'])\n"
        "assert code == 0, code\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == 3 and all(json.loads(line) for line in result.stdout.splitlines())


def test_sampled_text_is_reproducible_from_its_seed(trained_and_exported):
    task, _, onnx_dir = trained_and_exported("textgen")
    model = seqnlp.load(onnx_dir)
    first = model.predict(["ROMEO:"], max_chars=30, seed=7, temperature=0.8)[0].continuation
    assert model.predict(["ROMEO:"], max_chars=30, seed=7, temperature=0.8)[0].continuation == first
    assert len(first) == 30


def test_the_export_continues_prompts_of_different_lengths_as_the_pytorch_model_does(trained_and_exported):
    _, model_dir, onnx_dir = trained_and_exported("textgen")
    prompts = ["ROMEO:", "a", "First Citizen"]
    greedy = dict(max_chars=25, top_k=1)  # one token left to draw: no randomness, the same ids in both runtimes
    expected = [g.continuation for g in seqnlp.load(model_dir).predict(prompts, **greedy)]
    assert [g.continuation for g in seqnlp.load(onnx_dir).predict(prompts, **greedy)] == expected


def test_predict_picks_the_runtime_by_the_folder_and_refuses_the_other(trained_and_exported, tmp_path):
    task, model_dir, onnx_dir = trained_and_exported("sentiment")
    inputs = tmp_path / "in.txt"
    inputs.write_text("a gorgeous , witty film\n")
    code, torch_out, _ = run_cli("predict", model_dir, inputs)
    assert code == 0
    code, onnx_out, _ = run_cli("predict", onnx_dir, inputs)
    assert code == 0 and onnx_out.split("\t")[0] == torch_out.split("\t")[0]
    code, _, err = run_cli("predict", model_dir, inputs, "--runtime", "onnx")
    assert code == 2 and "not a folder of `seqnlp export`" in err and err.count("\n") == 1
    code, _, err = run_cli("predict", onnx_dir, inputs, "--runtime", "torch")
    assert code == 2 and "runs with --runtime onnx" in err


def test_evaluating_an_export_is_one_error_line_that_names_the_model_folder_to_evaluate(trained_and_exported):
    _, model_dir, onnx_dir = trained_and_exported("sentiment")
    code, _, err = run_cli("evaluate", onnx_dir, "--test-file", ROOT / "data/sentiment/dev.tsv")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {onnx_dir} is an ONNX export, which predicts but is not evaluated here")
    code, _, err = run_cli("compare", model_dir, onnx_dir, "--test-file", ROOT / "data/sentiment/dev.tsv")
    assert (
        code == 2
        and err == f"error: compare: {onnx_dir} is an ONNX export: compare the model folders it was exported from\n"
    )


def test_export_refuses_what_it_cannot_export_before_loading_weights(trained_and_exported, tmp_path):
    task, model_dir, _ = trained_and_exported("ner")
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    saved = json.loads((copy / "config.json").read_text())
    saved["config"]["cell_impl"] = "reference"
    (copy / "config.json").write_text(json.dumps(saved))
    code, _, err = run_cli("export", copy, tmp_path / "out")
    assert code == 2 and "cell_impl=reference" in err and err.startswith(f"error: {copy}")
    assert not (tmp_path / "out").exists()


def test_a_tampered_export_is_one_clear_error(trained_and_exported, tmp_path):
    task, _, onnx_dir = trained_and_exported("sentiment")
    inputs = tmp_path / "in.txt"
    inputs.write_text("fine\n")
    escaped = tmp_path / "escaped"
    shutil.copytree(onnx_dir, escaped)
    manifest = json.loads((escaped / "onnx.json").read_text())
    manifest["graphs"]["probabilities"]["file"] = "../../etc/passwd"
    (escaped / "onnx.json").write_text(json.dumps(manifest))
    code, _, err = run_cli("predict", escaped, inputs)
    assert code == 2 and "must be a plain name inside the folder" in err and err.count("\n") == 1

    garbled = tmp_path / "garbled"
    shutil.copytree(onnx_dir, garbled)
    (garbled / "probabilities.onnx").write_bytes(b"\x08\x07not a graph")
    code, _, err = run_cli("predict", garbled, inputs)
    assert code == 2 and "not a valid ONNX graph" in err and err.count("\n") == 1
