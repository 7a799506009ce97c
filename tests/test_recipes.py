"""Every recipe script runs on its bundled sample in data/ (tiny sizes here; `make demo` runs the defaults)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SMALL = {
    "ner": ["--hidden", "16", "--word-dim", "16"],
    "sentiment": ["--hidden", "16", "--word-dim", "16"],
    "translate": ["--hidden", "16", "--decoder-hidden", "16", "--embed-dim", "16", "--beam", "2"],
    "textgen": ["--hidden", "32", "--layers", "1", "--sample-chars", "20"],
}
METRIC = {"ner": "f1", "sentiment": "accuracy", "translate": "bleu", "textgen": "loss"}


@pytest.mark.parametrize("task", sorted(SMALL))
def test_recipe_runs_on_its_bundled_sample(tmp_path, task):
    out = tmp_path / task
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / f"{task}.py"),
            "--output-dir",
            str(out),
            "--epochs",
            "1",
            "--quiet",
            *SMALL[task],
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and METRIC[task] in metrics["dev"]
    assert metrics["config"]["train_file"].startswith(str(ROOT / "data"))
    assert (out / "report.md").exists() and (out / "curves.png").exists()


def test_recipe_flag_runs_the_gradient_diagnosis(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "recipes" / "textgen.py"),
            "--diagnose-gradients",
            "--output-dir",
            str(tmp_path),
            "--length",
            "30",
            "--steps",
            "5",
            "--exploding-steps",
            "3",
            "--hidden",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "gradients.json").read_text())
    assert set(saved["vanishing"]) == {"rnn", "lstm", "gru"} and "lstm_clipped" in saved["exploding"]
