"""seqnlp tune: trials that are ordinary runs, a space checked before any trial, pruning, best.yaml that re-runs the
best trial exactly, a killed search that resumes, and workers sharing one study (SQLite, and a real PostgreSQL)."""

import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

optuna = pytest.importorskip("optuna")

# the sample's files named (its own settings would add a time budget, whose schedule follows the clock)
DATA = ["--train-file", str(ROOT / "data/ner/train.txt"), "--dev-file", str(ROOT / "data/ner/dev.txt")]
TINY = [*DATA, "--epochs", "2", "--word-dim", "8", "--char-dim", "4", "--char-out", "4", "--bootstrap", "0"]
SPACE = "hidden: {choices: [8, 16]}\nlr: {log: [0.002, 0.02]}\n"
CLI = "import sys; from seqnlp.cli import main; sys.exit(main(sys.argv[1:]))"


def space_file(tmp_path, text: str = SPACE) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def tune_argv(out, space, trials: int, *extra) -> list[str]:
    return ["tune", "ner", "--trials", str(trials), "--output-dir", str(out), "--space", str(space),
            "--pruner", "none", "--sampler-seed", "3", *TINY, *extra]  # fmt: skip


def trial_states(out, storage=None, study="seqnlp") -> dict[int, str]:
    url = storage or f"sqlite:///{Path(out) / 'study.db'}"
    loaded = optuna.load_study(study_name=study, storage=url)
    return {t.number: t.state.name.lower() for t in loaded.trials if not t.user_attrs.get("surplus")}


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "space, message",
    [
        ("dropout: {range: [0.1, 1.5]}\n", "search space: invalid value for dropout: 1.5 (must be >= 0.0 and <= 0.95)"),
        ("hidden: {log: [8, 64]}\n", "hidden is not a number with a fraction: use int or choices"),
        ("colour: {choices: [red]}\n", "'colour' is not a setting a search can vary"),
        ("lr: {range: [0.01, 0.001]}\n", "lr: the low bound must be below the high one"),
        ("lr: 0.01\n", "lr: give one of log, range, int, choices (e.g. {log: [1e-4, 1e-2]})"),
    ],
)
def test_a_space_that_does_not_fit_its_settings_is_one_error_line_before_any_trial(tmp_path, space, message):
    path = space_file(tmp_path, space)
    code, _, err = run_cli(*tune_argv(tmp_path / "out", path, 2))
    assert (code, err) == (2, f"error: {path}: {message}\n")
    assert not (tmp_path / "out").exists()


def test_a_setting_both_given_and_searched_is_refused(tmp_path):
    code, _, err = run_cli(*tune_argv(tmp_path / "out", space_file(tmp_path), 2, "--lr", "0.01"))
    assert (code, err) == (2, "error: lr is both given and searched: drop it from the options or from the space\n")


def test_a_search_writes_its_trials_as_runs_and_best_yaml_retrains_the_best_trial_exactly(tmp_path):
    out = tmp_path / "search"
    code, printed, err = run_cli(*tune_argv(out, space_file(tmp_path), 3))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["complete"] * 3
    for trial in summary["trials"]:  # each trial an ordinary run folder, its score that of its metrics.json
        metrics = json.loads((Path(trial["folder"]) / "metrics.json").read_text())
        assert metrics["dev"]["f1"] == trial["value"]
        assert metrics["config"]["hidden"] == trial["params"]["hidden"]
    best = summary["best"]
    assert best["value"] == max(t["value"] for t in summary["trials"])
    assert sha256(out / "best" / "model.safetensors") == sha256(Path(best["folder"]) / "model" / "model.safetensors")
    assert {"report.md", "history.png", "slices.png", "best.yaml"} <= {p.name for p in out.iterdir()}
    code, _, err = run_cli("train", "ner", "--config", out / "best.yaml", "--output-dir", tmp_path / "again")
    assert code == 0, err
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["dev"]["f1"] == best["value"]
    assert sha256(tmp_path / "again" / "model" / "model.safetensors") == sha256(out / "best" / "model.safetensors")


class PruneTrialOne(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return trial.number == 1


def test_a_pruned_trial_stops_after_its_first_evaluation_and_its_folder_says_so(tmp_path, capsys):
    from seqnlp.training.tune import main

    out = tmp_path / "search"
    summary = main(tune_argv(out, space_file(tmp_path), 2)[1:], pruner=PruneTrialOne())
    assert [(t["state"], t["pruned_at_epoch"]) for t in summary["trials"]] == [("complete", None), ("pruned", 1)]
    metrics = json.loads((out / "trials" / "0001" / "metrics.json").read_text())
    assert metrics["train"]["ended_by"] == "pruned" and metrics["train"]["epochs"] == 1
    assert "| pruned |" in (out / "trials" / "0001" / "report.md").read_text()
    assert "pruned at step" in capsys.readouterr().out


def start_worker(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *argv], cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def test_a_killed_search_resumes_and_runs_only_the_missing_trials(tmp_path):
    out = tmp_path / "search"
    argv = tune_argv(out, space_file(tmp_path), 3)
    worker = start_worker(argv, tmp_path / "first.log")
    deadline = time.time() + 120
    while not (out / "trials" / "0001" / "train_log.jsonl").exists():  # trial 0 done, trial 1 training
        assert worker.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()[-2000:]
        time.sleep(0.1)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    first_model = sha256(out / "trials" / "0000" / "model" / "model.safetensors")
    code, printed, err = run_cli(*argv)
    assert code == 0, err
    assert "trial 1: its process" in printed and "marked failed" in printed
    assert trial_states(out) == {0: "complete", 1: "fail", 2: "complete", 3: "complete"}
    assert sha256(out / "trials" / "0000" / "model" / "model.safetensors") == first_model  # not trained again
    trials = optuna.load_study(study_name="seqnlp", storage=f"sqlite:///{out / 'study.db'}").trials
    assert trials[2].params == trials[1].params and trials[2].user_attrs["rerun_of"] == 1  # the killed one first


def test_ctrl_c_stops_the_trial_with_a_checkpoint_and_the_same_command_resumes_it(tmp_path):
    out = tmp_path / "search"
    argv = tune_argv(out, space_file(tmp_path), 2, "--epochs", "12")
    worker = start_worker(argv, tmp_path / "first.log")
    deadline = time.time() + 120
    while not (out / "trials" / "0001" / "train_log.jsonl").exists():  # trial 1 training
        assert worker.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()[-2000:]
        time.sleep(0.05)
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=120) == 130
    printed = (tmp_path / "first.log").read_text()
    assert "interrupted with 1 of 2 trials finished: the stopped trial is marked failed" in printed, printed[-2000:]
    assert trial_states(out) == {0: "complete", 1: "fail"}  # the study intact
    code, printed, err = run_cli(*argv)
    assert code == 0, err
    assert "trial 2 (trial 1 again, resumed):" in printed and "resuming from" in printed
    assert trial_states(out) == {0: "complete", 1: "fail", 2: "complete"}
    metrics = json.loads((out / "trials" / "0001" / "metrics.json").read_text())
    assert metrics["train"]["epochs"] == 12  # the resumed run finished its epochs in its own folder


def test_a_diverging_trial_is_recorded_as_failed_with_its_reason_and_the_search_goes_on(tmp_path):
    out = tmp_path / "search"
    space = space_file(tmp_path, "lr: {choices: [0.01, 100.0]}\n")
    code, printed, err = run_cli(*tune_argv(out, space, 4, "--sampler-seed", "1"))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    by_lr = {t["params"]["lr"]: t for t in summary["trials"]}
    failed = by_lr[100.0]
    assert (failed["state"], failed["ended_by"]) == ("fail", "failed")
    assert failed["failure"].startswith(("training diverged", "loss became"))
    assert f"trial {failed['number']} failed: {failed['failure']}" in printed
    assert by_lr[0.01]["state"] == "complete" and summary["best"]["params"] == {"lr": 0.01}
    assert len(summary["trials"]) == 4  # a failed trial counts as one of the trials asked for


def test_bad_data_fails_the_search_once_with_one_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("EU B-ORG\nrejects\n")
    argv = tune_argv(tmp_path / "search", space_file(tmp_path), 3)
    argv[argv.index(str(ROOT / "data/ner/train.txt"))] = str(bad)
    code, printed, err = run_cli(*argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {bad}:2: ")
    assert trial_states(tmp_path / "search") == {0: "fail"}


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    out = tmp_path_factory.mktemp("translator")
    data = ["--train-file", str(ROOT / "data/translate/train"), "--dev-file", str(ROOT / "data/translate/val")]
    sizes = ["--hidden", "16", "--decoder-hidden", "16", "--embed-dim", "16"]
    code, _, err = run_cli("train", "translate", *data, *sizes, "--epochs", "1", "--bootstrap", "0", "--quiet",
                           "--output-dir", str(out))  # fmt: skip
    assert code == 0, err
    return out / "model"


def test_decoding_settings_are_searched_on_a_trained_model_without_retraining_it(tmp_path, translator):
    import seqnlp

    out = tmp_path / "search"
    code, printed, err = run_cli("tune", "translate", "--model", str(translator), "--trials", "3", "--output-dir",
                                 str(out), "--sampler-seed", "2")  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["space"]) == {"beam", "length_penalty", "coverage_penalty"}
    for trial in summary["trials"]:  # each trial an evaluation folder of the dev data with the trial's settings
        metrics = json.loads((Path(trial["folder"]) / "metrics.json").read_text())
        assert metrics["dev"]["bleu"] == trial["value"] and trial["steps"] is None
        assert metrics["evaluated"]["model"] == str(translator)
        assert {k: metrics["evaluated"]["settings"].get(k, v) for k, v in trial["params"].items()} == trial["params"]
    best = seqnlp.load(out / "best")
    assert {k: getattr(best.task.config, k) for k in summary["best"]["params"]} == summary["best"]["params"]
    assert best.evaluate(test_file=str(ROOT / "data/translate/val"))["test"]["bleu"] == summary["best"]["value"]
    assert sha256(out / "best" / "model.safetensors") == sha256(translator / "model.safetensors")


@pytest.mark.parametrize(
    "task, extra, message",
    [
        ("translate", ["--lr", "0.1"], "with --model the trials only decode: --lr does not apply"),
        ("translate", ["--trial-minutes", "1"], "with --model the trials only decode: --trial-minutes and --seeds"),
        ("ner", [], "a ner model has no decoding settings to search: leave out --model"),
    ],
)
def test_a_decoding_search_refuses_what_needs_training(tmp_path, translator, task, extra, message):
    code, _, err = run_cli("tune", task, "--model", str(translator), "--trials", "2", "--output-dir",
                           str(tmp_path / "out"), *extra)  # fmt: skip
    assert code == 2 and err.startswith(f"error: {message}"), err


def run_two_workers(tmp_path, outs: list[Path], trials: int, *extra) -> None:
    workers = [
        start_worker(tune_argv(out, space_file(tmp_path), trials, *extra), tmp_path / f"worker{i}.log")
        for i, out in enumerate(outs)
    ]
    for i, worker in enumerate(workers):
        assert worker.wait(timeout=300) == 0, (tmp_path / f"worker{i}.log").read_text()[-3000:]


def test_two_processes_on_one_machine_share_the_output_folders_study_and_run_each_trial_once(tmp_path):
    out = tmp_path / "search"
    run_two_workers(tmp_path, [out, out], 3)
    assert sorted(trial_states(out).values()) == ["complete"] * 3
    trained = [json.loads(p.read_text())["config"]["output_dir"] for p in out.glob("trials/*/metrics.json")]
    assert len(trained) == len(set(trained)) == 3


OPEN_AT = """
import sys, time
from pathlib import Path
from seqnlp.training.tune import storage_for
while time.time() < float(sys.argv[2]):
    pass
storage_for(None, Path(sys.argv[1]))
"""


def test_processes_that_open_a_new_study_at_the_same_moment_all_open_it(tmp_path):
    """They race to create Optuna's tables (without the retry, the first round failed in each of two tries here)."""
    for round in range(4):
        folder = tmp_path / str(round)
        folder.mkdir()
        at = str(time.time() + 2)
        openers = [subprocess.Popen([sys.executable, "-c", OPEN_AT, str(folder), at], cwd=ROOT,
                                    stderr=subprocess.PIPE, text=True) for _ in range(4)]  # fmt: skip
        for opener in openers:
            assert opener.wait(timeout=60) == 0, opener.stderr.read()[-1000:]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own in a temporary folder, started as an unprivileged user; its database URL."""
    found = shutil.which("initdb") or next(iter(glob.glob("/usr/lib/postgresql/*/bin/initdb")), None)
    if found is None:
        pytest.skip("PostgreSQL's server (initdb, pg_ctl) is not installed")
    bindir = Path(found).resolve().parent
    folder = Path(tempfile.mkdtemp(prefix="seqnlp-pg-"))
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*command):
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=60)

    run(str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "seqnlp", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    run(str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "seqnlp", "tune")
        yield f"postgresql://seqnlp@127.0.0.1:{port}/tune"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_on_a_postgresql_server_share_six_trials_and_run_each_once(tmp_path, postgres):
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    run_two_workers(tmp_path, outs, 6, "--storage", postgres, "--study", "shared")
    assert sorted(trial_states(None, postgres, "shared").values()) == ["complete"] * 6
    ran = [sorted(p.parent.name for p in out.glob("trials/*/metrics.json")) for out in outs]
    assert not set(ran[0]) & set(ran[1]) and len(ran[0]) + len(ran[1]) == 6
    assert all(ran), "each worker ran trials of its own"


def test_with_seeds_the_best_trials_are_retrained_per_seed_and_chosen_by_their_mean(tmp_path):
    out = tmp_path / "search"
    code, printed, err = run_cli(*tune_argv(out, space_file(tmp_path), 2, "--seeds", "2"))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    means = {int(n): f["mean"] for n, f in summary["finalists"].items()}
    assert sorted(means) == [0, 1] and summary["best"]["number"] == max(means, key=means.get)
    for number in means:  # each finalist an ordinary repeat folder of two seeds
        seeds = json.loads((out / "seeds" / f"{number:04d}" / "summary.json").read_text())["seeds"]
        assert [s["seed"] for s in seeds] == [1, 2]
    chosen = json.loads((out / "seeds" / f"{summary['best']['number']:04d}" / "summary.json").read_text())
    assert sha256(out / "best" / "model.safetensors") == sha256(
        out
        / "seeds"
        / f"{summary['best']['number']:04d}"
        / f"seed-{chosen['median_seed']}"
        / "model"
        / "model.safetensors"
    )
