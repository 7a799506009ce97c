"""``seqnlp repeat``: a run per seed, resumable and shareable, summarized over the seeds; groups compared by seeds."""

import fcntl
import json
import statistics

import pytest

from seqnlp.errors import ConfigError
from seqnlp.evaluation.evidence import group_comparison
from seqnlp.storage.folders import LOCK_FILE
from seqnlp.training.repeat import parse_seeds, t_interval
from tests.conftest import run_cli

TINY = ["--word-dim", "8", "--hidden", "8", "--epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("repeat")
    rows = "".join(f"{w} film\t1\n{b} film\t0\n" for w, b in [("good", "bad"), ("fine", "dull"), ("great", "poor")])
    (folder / "train.tsv").write_text("sentence\tlabel\n" + rows * 6)
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + rows + "good dull film\t1\nbad fine film\t0\n")
    return folder


def repeat(data, out, seeds, *extra):
    return run_cli("repeat", "sentiment", "--seeds", seeds, "--output-dir", out, "--train-file", data / "train.tsv",
                   "--dev-file", data / "dev.tsv", *TINY, *extra)  # fmt: skip


def test_seeds_are_read_as_lists_and_ranges():
    assert parse_seeds("1,2,3") == [1, 2, 3] and parse_seeds("1-3,7") == [1, 2, 3, 7]
    for bad in ("", "1,1", "a", "-1", "3-x"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_the_t_interval_of_the_mean_over_seeds():
    low, high = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.303
    assert (low, high) == pytest.approx((2 - 4.303 / 3**0.5, 2 + 4.303 / 3**0.5))
    assert t_interval([1.0]) is None


def test_a_repeat_trains_each_seed_summarizes_them_and_keeps_the_median_seeds_model(data, tmp_path):
    out = tmp_path / "out"
    code, printed, err = repeat(data, out, "1-3")
    assert code == 0, err
    assert [line for line in printed.splitlines() if line.startswith("seed ")] == [
        f"seed {s}: trained" for s in (1, 2, 3)
    ]
    runs = {s: json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in (1, 2, 3)}
    assert {s: m["config"]["seed"] for s, m in runs.items()} == {1: 1, 2: 2, 3: 3}
    summary = json.loads((out / "summary.json").read_text())
    scores = [runs[s]["dev"]["accuracy"] for s in (1, 2, 3)]
    assert [row["dev"] for row in summary["seeds"]] == scores
    assert summary["dev"]["mean"] == pytest.approx(statistics.fmean(scores))
    assert summary["dev"]["sd"] == pytest.approx(statistics.stdev(scores))
    assert summary["dev"]["interval"] == pytest.approx(t_interval(scores))
    median = summary["median_seed"]
    assert sorted(scores, reverse=True)[1] == runs[median]["dev"]["accuracy"]
    saved = json.loads((out / "model" / "config.json").read_text())["config"]
    assert saved["seed"] == median
    code, stdout, _ = run_cli("evaluate", out / "model", "--test-file", data / "dev.tsv")
    assert code == 0 and json.loads(stdout)["test"]["accuracy"] == runs[median]["dev"]["accuracy"]
    assert "over 3 seeds" in (out / "report.md").read_text() and "3 seeds: dev accuracy" in printed


def test_a_repeat_run_again_skips_finished_seeds_resumes_a_broken_one_and_leaves_a_busy_one(data, tmp_path):
    out = tmp_path / "out"
    assert repeat(data, out, "1,2")[0] == 0
    (out / "seed-2" / "metrics.json").unlink()  # killed after its checkpoint, before its metrics
    (out / "seed-9").mkdir()
    with open(out / "seed-9" / LOCK_FILE, "a+") as held:  # another machine is training seed 9
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, printed, err = repeat(data, out, "1,2,3,9")
    assert code == 0, err
    assert [line for line in printed.splitlines() if line.startswith("seed ")] == [
        "seed 1: finished before", "seed 2: resumed", "seed 3: trained", "seed 9: taken by another process"
    ]  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert [row["seed"] for row in summary["seeds"]] == [1, 2, 3] and summary["pending"] == [9]
    assert "Not finished: seeds 9." in (out / "report.md").read_text()


def test_a_repeat_sets_seed_and_output_folder_itself(data, tmp_path):
    code, _, err = repeat(data, tmp_path / "out", "1,2", "--seed", "5")
    assert code == 2 and err == "error: seqnlp repeat sets --seed for each seed's run: leave it out\n"


def test_an_exact_permutation_test_of_two_separate_groups():
    result = group_comparison([0.1, 0.2, 0.3, 0.4], [0.9, 1.0, 1.1, 1.2], resamples=500)
    # 70 ways to split 8 scores 4 and 4; only the observed split and its mirror are as extreme
    assert result["test"] == "permutation test over seeds (exact)" and result["permutations"] == 70
    assert result["p_value"] == pytest.approx(2 / 70) and result["difference"] == pytest.approx(0.8)
    assert 0.5 <= result["interval"][0] < 0.8 < result["interval"][1] <= 1.1  # the extremes of the resampled means


def test_groups_of_runs_are_compared_by_their_seeds(data, tmp_path):
    assert repeat(data, tmp_path / "slow", "1-3", "--lr", "0.0001")[0] == 0
    assert repeat(data, tmp_path / "fast", "1-3", "--lr", "0.01")[0] == 0
    code, stdout, err = run_cli("compare", tmp_path / "slow", tmp_path / "fast")
    assert code == 0, err
    result = json.loads(stdout)
    assert (result["task"], result["metric"], result["split"]) == ("sentiment", "accuracy", "dev")
    means = [group["mean"] for group in result["groups"]]
    (pair,) = result["comparisons"]
    assert pair["difference"] == pytest.approx(means[1] - means[0]) and pair["permutations"] == 20
    assert pair["p_value"] >= 0.1  # three seeds a side: 2 of 20 relabellings is the least p there is
    code, _, err = run_cli("compare", tmp_path / "slow", tmp_path / "fast", "--test-file", data / "dev.tsv")
    assert code == 2 and "folders of seqnlp repeat alone" in err
