"""Opt-in (SEQNLP_SLOW=1): short real runs on ../shared/data, checking each recipe learns its task.

These are smoke tests of quality, not the targets: the targets' full runs are in the closing notes.
"""

import json

import pytest

from tests.conftest import SHARED_DATA, run_cli, slow

pytestmark = [slow, pytest.mark.skipif(not SHARED_DATA.exists(), reason="no ../shared/data")]


def train(tmp_path, task, *args):
    out = tmp_path / task
    code, _, err = run_cli("train", task, "--output-dir", out, "--quiet", *args)
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text())["dev"]


def test_ner_on_conll2003_for_two_minutes(tmp_path):
    dev = train(
        tmp_path,
        "ner",
        "--train-file",
        SHARED_DATA / "conll2003/train.txt",
        "--dev-file",
        SHARED_DATA / "conll2003/dev.txt",
        "--max-minutes",
        "2",
    )
    assert dev["f1"] > 0.75


def test_sentiment_on_sst2_for_two_minutes(tmp_path):
    dev = train(
        tmp_path,
        "sentiment",
        "--train-file",
        SHARED_DATA / "sst2/train.tsv",
        "--dev-file",
        SHARED_DATA / "sst2/dev.tsv",
        "--max-minutes",
        "2",
    )
    assert dev["accuracy"] > 0.85


def test_textgen_on_tinyshakespeare_for_two_minutes(tmp_path):
    dev = train(
        tmp_path,
        "textgen",
        "--train-file",
        SHARED_DATA / "tinyshakespeare/train.txt",
        "--dev-file",
        SHARED_DATA / "tinyshakespeare/val.txt",
        "--max-minutes",
        "2",
    )
    assert dev["loss"] < 2.0


def test_translate_on_multi30k_for_three_minutes(tmp_path):
    dev = train(
        tmp_path,
        "translate",
        "--train-file",
        SHARED_DATA / "multi30k/train",
        "--dev-file",
        SHARED_DATA / "multi30k/val",
        "--max-minutes",
        "3",
        "--beam",
        "2",
    )
    assert dev["bleu"] > 10
