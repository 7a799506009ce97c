"""On a machine with a CUDA GPU: every recipe trains there, and the model directory it writes loads on the CPU.

Skipped where torch sees no GPU (CI has none). The rest of the suite also runs on the GPU there,
since ``device: auto`` picks it.
"""

import json
import subprocess
import sys

import pytest
import torch

from seqnlp.data.batching import to_device as move
from seqnlp.tasks.base import load_model_dir
from tests.conftest import ROOT
from tests.test_recipes import SMALL

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module", params=sorted(SMALL))
def cuda_run(request, tmp_path_factory):
    """A recipe trained for one epoch on the GPU: (task name, output directory)."""
    task = request.param
    out = tmp_path_factory.mktemp(task)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / f"{task}.py"),
            "--output-dir",
            str(out),
            "--epochs",
            "1",
            "--device",
            "cuda",
            "--quiet",
            *SMALL[task],
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return task, out


def test_the_recipe_trains_on_the_gpu_and_reports(cuda_run):
    task, out = cuda_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["config"]["device"] == "cuda"
    assert (out / "report.md").exists()


def test_a_gpu_trained_model_gives_the_same_loss_on_cpu_and_gpu(cuda_run):
    _, out = cuda_run
    losses = {}
    for device in ("cpu", "cuda"):
        task, model = load_model_dir(out / "model", device=device)
        batch = task.batches(task.prepare(task.read("dev")), shuffle=False)[0]
        with torch.no_grad():
            losses[device] = model(move(batch, torch.device(device))).item()
    assert losses["cpu"] == pytest.approx(losses["cuda"], rel=1e-4)


def test_a_gpu_trained_model_predicts_on_the_cpu_what_it_predicts_on_the_gpu(cuda_run):
    task_name, out = cuda_run
    lines = {
        "ner": ["Anna visited Berlin .", "Acme Corp hired Tom in Oslo ."],
        "sentiment": ["a fine film", "a dull , lifeless mess"],
        "translate": ["Ein Hund läuft im Park.", "Zwei Männer trinken Kaffee."],
        "textgen": ["The ", "Anna "],
    }[task_name]
    options = {"beam": 2, "max_chars": 10, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}  # greedy
    predictions = {}
    for device in ("cpu", "cuda"):
        task, model = load_model_dir(out / "model", device=device)
        assert all(p.device.type == device for p in model.parameters())
        # a sentiment line ends in its probability, whose last digits differ between devices
        predictions[device] = [line.split("\t")[0] for line in task.predict_lines(model, lines, options)]
    assert len(predictions["cpu"]) == len(lines) and all(predictions["cpu"])
    assert predictions["cpu"] == predictions["cuda"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_teacher_forcing_without_input_feeding_trains_on_the_gpu_without_warnings(cell):
    """cuDNN copies the decoder cells' separate weights into one buffer per call; the loss and gradients match the
    CPU's, silently."""
    import warnings

    from tests.test_translate import seq2seq

    torch.manual_seed(0)
    model = seq2seq(12, 12, embed_dim=6, hidden=5, decoder_hidden=4, decoder_layers=2, cell=cell, input_feed=False)
    batch = {
        "src": torch.tensor([[4, 6, 8], [6, 8, 0]]),
        "src_lengths": torch.tensor([3, 2]),
        "tgt_in": torch.tensor([[2, 5, 7, 9], [2, 9, 5, 0]]),
        "tgt_out": torch.tensor([[5, 7, 9, 3], [9, 5, 3, 0]]),
    }
    results = {}
    for device in ("cpu", "cuda"):
        model.to(device).zero_grad()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = model(move(batch, torch.device(device)))
            loss.backward()
        assert not [w for w in caught if "contiguous chunk" in str(w.message)]
        results[device] = (
            loss.item(),
            model.cells[0].weight_hh.grad.cpu().clone(),
        )  # clone: .to() moves a CPU grad in place
    assert results["cuda"][0] == pytest.approx(results["cpu"][0], rel=1e-4)
    assert torch.allclose(results["cuda"][1], results["cpu"][1], atol=1e-5)


@pytest.mark.parametrize("task", sorted(SMALL))
def test_every_recipe_trains_in_bf16_on_the_gpu(task, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / f"{task}.py"), "--output-dir", str(tmp_path), "--epochs", "1",
         "--device", "cuda", "--precision", "bf16", "--quiet", *SMALL[task]],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    epochs = [r for r in map(json.loads, (tmp_path / "train_log.jsonl").open()) if "train_loss" in r]
    assert len(epochs) == 1 and 0 < epochs[0]["train_loss"] < 1e4
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["precision"] == "bf16"
