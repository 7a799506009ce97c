"""Every task's model learns: trained on its bundled sample, it beats on the held-out test file (data/*/test.*, no
example of train or dev) a baseline that a model which learned nothing cannot beat.

Each trains in seconds at small sizes; the baselines are computed here from the same files.
"""

import collections
import json
import math

import sacrebleu
from seqeval.metrics import f1_score

from seqnlp.data.conll import read_conll
from tests.conftest import ROOT, run_cli

DATA = ROOT / "data"
TRAINING = {
    "ner": ["--epochs", "4", "--lr", "0.01", "--hidden", "32", "--word-dim", "32", "--char-dim", "8", "--char-out",
            "16"],
    "sentiment": ["--epochs", "8", "--lr", "0.01", "--hidden", "32", "--word-dim", "32", "--batch-size", "8"],
    "translate": ["--epochs", "8", "--lr", "0.01", "--hidden", "64", "--decoder-hidden", "64", "--embed-dim", "32",
                  "--batch-size", "8", "--beam", "1"],
    "textgen": ["--epochs", "10", "--lr", "0.01", "--hidden", "64", "--layers", "1", "--batch-size", "16", "--seq-len",
                "64", "--sample-chars", "0"],
}  # fmt: skip
FILES = {
    "ner": ("ner/train.txt", "ner/dev.txt", "ner/test.txt"),
    "sentiment": ("sentiment/train.tsv", "sentiment/dev.tsv", "sentiment/test.tsv"),
    "translate": ("translate/train", "translate/val", "translate/test"),
    "textgen": ("textgen/train.txt", "textgen/val.txt", "textgen/test.txt"),
}


def held_out_scores(task: str, tmp_path) -> dict:
    """The test-file scores (``seqnlp evaluate``) of a model trained on the task's sample (``seqnlp train``)."""
    train, dev, test = (DATA / name for name in FILES[task])
    out = tmp_path / task
    code, _, err = run_cli(
        "train", task, "--train-file", train, "--dev-file", dev, "--output-dir", out, "--quiet", *TRAINING[task]
    )
    assert code == 0, err
    code, stdout, err = run_cli("evaluate", out / "model", "--test-file", test)
    assert code == 0, err
    return json.loads(stdout)["test"]


def test_the_tagger_finds_entities_that_a_majority_tag_tagger_cannot(tmp_path):
    gold = [sentence.tags for sentence in read_conll(DATA / "ner/test.txt")]
    majority = collections.Counter(tag for tags in gold for tag in tags).most_common(1)[0][0]
    baseline = f1_score(gold, [[majority] * len(tags) for tags in gold])
    assert majority == "O" and baseline == 0.0
    scores = held_out_scores("ner", tmp_path)
    assert scores["f1"] >= 0.9 and scores["precision"] >= 0.9 and scores["recall"] >= 0.9, scores


def test_the_classifier_beats_the_majority_class(tmp_path):
    def labels(name):
        return [line.rsplit("\t", 1)[1] for line in (DATA / name).read_text().splitlines()[1:]]

    majority = collections.Counter(labels("sentiment/train.tsv")).most_common(1)[0][0]
    test_labels = labels("sentiment/test.tsv")
    baseline = test_labels.count(majority) / len(test_labels)
    assert 0.4 < baseline < 0.6
    scores = held_out_scores("sentiment", tmp_path)
    assert scores["accuracy"] >= baseline + 0.3 and scores["macro_f1"] >= 0.8, scores


def test_the_translator_beats_copying_the_source(tmp_path):
    sources = (DATA / "translate/test.de").read_text(encoding="utf-8").splitlines()
    references = (DATA / "translate/test.en").read_text(encoding="utf-8").splitlines()
    copying = sacrebleu.corpus_bleu(sources, [references]).score
    assert copying < 10
    scores = held_out_scores("translate", tmp_path)
    assert scores["bleu"] >= copying + 50, scores


def test_the_character_model_predicts_better_than_the_training_texts_character_frequencies(tmp_path):
    text = (DATA / "textgen/train.txt").read_text(encoding="utf-8")
    counts = collections.Counter(text)
    unigram_entropy = -sum(n / len(text) * math.log(n / len(text)) for n in counts.values())  # nats per char
    assert 2.5 < unigram_entropy < 3.5
    scores = held_out_scores("textgen", tmp_path)
    assert scores["loss"] <= unigram_entropy - 1.0, scores
