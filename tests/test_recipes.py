"""Every recipe script runs on its bundled sample in data/ (tiny sizes here; `make demo` runs the defaults)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from seqnlp.config import UNBOUNDED_EPOCHS
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
    assert metrics["task"] == task and METRIC[task] in metrics["dev"] and METRIC[task] in metrics["test"]
    sample = (ROOT / "data" / task).resolve()  # data/<task> links to the sample inside the task's package
    assert Path(metrics["config"]["train_file"]).parent == sample
    assert Path(metrics["config"]["test_file"]).parent == sample  # the sample's held-out file
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


def _train(tmp_path, *flags, quiet=True):
    from tests.conftest import train_cli

    out = tmp_path / "run"
    code, printed, err = train_cli(
        "textgen", ROOT / "data/textgen/train.txt", ROOT / "data/textgen/val.txt", out, *(["--quiet"] if quiet else []),
        *SMALL["textgen"], "--sample-chars", "0", *flags,
    )  # fmt: skip
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text()), printed, (out / "report.md").read_text()


def test_a_time_budget_without_epochs_ends_the_run_not_the_epoch_cap(tmp_path):
    # with the progress bar on: it counts steps without a total here
    metrics, printed, report = _train(tmp_path, "--max-minutes", "0.1", "--log-every", "1", quiet=False)
    train = metrics["train"]
    assert train["ended_by"] == "time budget" and metrics["config"]["epochs"] == UNBOUNDED_EPOCHS
    # the budget was used up, and the run stopped at that step: it is the last step trained and logged
    assert train["seconds"] >= 6.0
    stopped_at = int(re.search(r"time budget of 0.1 minutes used up at step (\d+) ", printed).group(1))
    steps = [r["step"] for r in map(json.loads, (tmp_path / "run" / "train_log.jsonl").open()) if "loss" in r]
    assert steps[-1] == stopped_at == train["steps"]
    # the linear schedule anneals to the end of the budget, not of an epoch count: the last rates near 1% of the peak
    rates = [r["lr"] for r in map(json.loads, (tmp_path / "run" / "train_log.jsonl").open()) if "lr" in r]
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.25 * metrics["config"]["lr"]
    assert "the time budget ends the run: 0.1 minutes" in printed and "ended by time budget" in printed
    assert "| time budget |" in report


def test_given_epochs_cap_a_budgeted_run_and_the_report_says_so(tmp_path):
    metrics, printed, report = _train(tmp_path, "--max-minutes", "5", "--epochs", "2")
    assert metrics["train"]["ended_by"] == "epochs" and metrics["train"]["epochs"] == 2
    assert "the time budget ends the run" not in printed and "| epochs |" in report


def test_seqnlp_train_without_data_trains_on_the_sample_inside_the_package(tmp_path):
    from tests.conftest import run_cli

    code, out, err = run_cli(
        "train", "sentiment", "--output-dir", tmp_path / "run", "--epochs", "1", "--quiet", "--hidden", "8",
        "--word-dim", "8",
    )  # fmt: skip
    assert code == 0, err
    sample = ROOT / "seqnlp" / "tasks" / "sentiment" / "sample"
    assert f"no data given: training on the sentiment sample in {sample}" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["train_file"] == str(sample / "train.tsv") and "test" in metrics


def test_demo_trains_each_task_asked_for_on_its_sample(tmp_path):
    from tests.conftest import run_cli

    code, out, err = run_cli("demo", "--tasks", "textgen", "--max-minutes", "0.02", "--output-dir", tmp_path)
    assert code == 0, err
    assert (tmp_path / "textgen" / "report.md").is_file() and f"reports: {tmp_path / 'textgen' / 'report.md'}" in out
    code, _, err = run_cli("demo", "--tasks", "nosuchtask", "--output-dir", tmp_path)
    assert code == 2 and "unknown task" in err and err.count("\n") == 1
