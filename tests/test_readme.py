"""The README's Python examples run as written (doctest), against small models trained here."""

import doctest

import seqnlp
from tests.conftest import ROOT


def test_the_readme_examples_run(tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(ROOT / "data")
    monkeypatch.chdir(tmp_path)
    seqnlp.train(
        "ner",
        train_file="data/ner/train.txt",
        dev_file="data/ner/dev.txt",
        output_dir="runs/ner",
        epochs=1,
        hidden=16,
        word_dim=16,
        char_dim=8,
        char_out=8,
        quiet=True,
    )
    seqnlp.train(
        "sentiment",
        train_file="data/sentiment/train.tsv",
        dev_file="data/sentiment/dev.tsv",
        output_dir="runs/sentiment",
        epochs=1,
        hidden=16,
        word_dim=16,
        quiet=True,
    )
    failures, tried = doctest.testfile(str(ROOT / "README.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert tried >= 10 and failures == 0
