"""The sentiment recipe end to end on a tiny dataset, and its error contract."""

import io
import json
import sys

import pytest
import torch

import seqnlp
from seqnlp.nn.pooling import Pooling
from tests.conftest import run_cli

TINY = ["--word-dim", "16", "--hidden", "16", "--batch-size", "8", "--epochs", "3", "--quiet", "--seed", "2"]
POSITIVE = ["a joy to watch", "warm and clever", "truly wonderful film", "smart , funny and moving"]
NEGATIVE = ["dull and tedious", "a lifeless mess", "awful , just awful", "badly acted and flat"]


@pytest.fixture
def sentiment_files(tmp_path):
    def write(name, copies):
        path = tmp_path / name
        rows = [f"{t}\tpos" for t in POSITIVE] + [f"{t}\tneg" for t in NEGATIVE]
        path.write_text("sentence\tlabel\n" + "\n".join(rows * copies) + "\n", encoding="utf-8")
        return path

    return write("train.tsv", 8), write("dev.tsv", 1)


def train(tmp_path, train, dev, *extra):
    out = tmp_path / "run"
    code, _, err = run_cli(
        "train", "sentiment", "--train-file", train, "--dev-file", dev, "--output-dir", out, *TINY, *extra
    )
    assert code == 0, err
    return out


@pytest.mark.parametrize("tokenizer", ["word", "subword"])
def test_trains_reports_and_reproduces_its_dev_score(tmp_path, sentiment_files, tokenizer):
    train_file, dev_file = sentiment_files
    out = train(tmp_path, train_file, dev_file, "--tokenizer", tokenizer, "--subword-vocab-size", "60")
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["dev"]) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    assert set(metrics["dev"]["per_class"]) == {"pos", "neg"}
    report = (out / "report.md").read_text()
    assert "confusion matrix" in report and (out / "confusion_dev.png").exists()
    assert "## dev: accuracy by length" in report and "accuracy_by_length" in metrics["dev"]
    code, stdout, _ = run_cli("evaluate", out / "model", "--test-file", dev_file)
    assert code == 0 and json.loads(stdout)["test"] == metrics["dev"]


def test_model_learns_the_tiny_task(tmp_path, sentiment_files):
    train_file, dev_file = sentiment_files
    out = train(tmp_path, train_file, dev_file, "--epochs", "8", "--lr", "0.005")
    assert json.loads((out / "metrics.json").read_text())["dev"]["accuracy"] == 1.0


def test_predict_prints_label_and_probability(tmp_path, sentiment_files):
    out = train(tmp_path, *sentiment_files)
    inputs = tmp_path / "in.txt"
    inputs.write_text("a joy to watch\ndull and tedious\n", encoding="utf-8")
    code, stdout, err = run_cli("predict", out / "model", inputs)
    assert code == 0, err
    # each line is the model's label and its probability (the larger of the two classes'), to four places
    expected = [
        f"{p.label}\t{p.score:.4f}" for p in seqnlp.load(out / "model").predict(["a joy to watch", "dull and tedious"])
    ]
    assert stdout.splitlines() == expected
    assert all(p.score == max(p.probabilities.values()) for p in seqnlp.load(out / "model").predict(["a joy"]))


def test_unknown_label_at_evaluation_names_file_and_line(tmp_path, sentiment_files):
    out = train(tmp_path, *sentiment_files)
    test = tmp_path / "test.tsv"
    test.write_text("sentence\tlabel\ngood\tpos\nhmm\tneutral\n", encoding="utf-8")
    code, _, err = run_cli("evaluate", out / "model", "--test-file", test)
    assert code == 2 and err == f"error: {test}:3: label 'neutral' was not seen in training (labels: neg, pos)\n"


def test_empty_text_names_file_and_line(tmp_path, sentiment_files):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\ngood\tpos\n  \tneg\n", encoding="utf-8")
    code, _, err = run_cli("train", "sentiment", "--train-file", bad, "--output-dir", tmp_path / "o", *TINY)
    assert code == 2 and err == f"error: {bad}:3: empty text\n"


def test_missing_label_column_is_reported(tmp_path, sentiment_files):
    code, _, err = run_cli(
        "train",
        "sentiment",
        "--train-file",
        sentiment_files[0],
        "--label-column",
        "stars",
        "--output-dir",
        tmp_path / "o",
        *TINY,
    )
    assert code == 2 and "no column 'stars' in the header (columns: sentence, label)" in err


def test_hf_dataset_with_classlabel_names(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    rows = {"text": POSITIVE * 4 + NEGATIVE * 4, "label": [1] * 16 + [0] * 16}
    split = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "imdb-like"))
    out = tmp_path / "run"
    code, _, err = run_cli("train", "sentiment", "--dataset", tmp_path / "imdb-like", "--output-dir", out, *TINY)
    assert code == 0, err
    assert set(json.loads((out / "metrics.json").read_text())["dev"]["per_class"]) == {"neg", "pos"}


def test_long_texts_are_truncated_to_max_length(tmp_path, sentiment_files):
    from seqnlp.config import from_dict
    from seqnlp.tasks.sentiment.task import SentimentConfig, SentimentTask

    task = SentimentTask(from_dict(SentimentConfig, {"max_length": 5}))
    assert task.tokenize("one two three four five six seven") == ["one", "two", "three", "four", "five"]


@pytest.mark.parametrize("kind", ["max", "mean", "attention", "final"])
def test_pooling_ignores_padding(kind):
    torch.manual_seed(0)
    pool = Pooling(kind, 3)
    outputs = torch.randn(1, 4, 3)
    final = torch.randn(1, 3)
    short = pool(outputs[:, :2], final, torch.tensor([[True, True]]))
    padded = pool(
        torch.cat([outputs[:, :2], torch.full((1, 2, 3), 100.0)], 1), final, torch.tensor([[True, True, False, False]])
    )
    assert torch.allclose(short, padded, atol=1e-6)


def test_non_utf8_bytes_are_reported_with_their_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"sentence\tlabel\ngood\tpos\ncaf\xe9 au lait\tneg\n")
    code, _, err = run_cli("train", "sentiment", "--train-file", bad, "--output-dir", tmp_path / "o", *TINY)
    assert code == 2 and err == f"error: {bad}:3: invalid UTF-8 byte 0xe9 (the file must be UTF-8)\n"


def test_predict_warns_when_texts_are_longer_than_max_length(tmp_path, sentiment_files):
    out = train(tmp_path, *sentiment_files, "--max-length", "3")
    inputs = tmp_path / "in.txt"
    inputs.write_text("a joy to watch\ndull and tedious\nsmart , funny and moving\n", encoding="utf-8")
    code, stdout, err = run_cli("predict", out / "model", inputs)
    assert code == 0, err
    assert len(stdout.splitlines()) == 3
    assert "warning: 2 of these 3 texts are longer than max_length (3 tokens)" in err
    code, _, err = run_cli("predict", out / "model", inputs, "--set", "max_length=5")
    assert code == 0 and "warning" not in err


def test_predict_reads_standard_input(tmp_path, sentiment_files, monkeypatch):
    out = train(tmp_path, *sentiment_files)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"a joy to watch\n")))
    code, stdout, err = run_cli("predict", out / "model", "-")
    assert code == 0, err
    assert stdout.splitlines() == [
        f"{p.label}\t{p.score:.4f}" for p in seqnlp.load(out / "model").predict(["a joy to watch"])
    ]


def test_predict_writes_each_buffer_of_outputs_before_reading_on(tmp_path, sentiment_files, monkeypatch):
    out = train(tmp_path, *sentiment_files)

    class Stdin:
        outputs_before_each_read: list[int] = []

        def isatty(self):
            return False

        @property
        def buffer(self):
            for line in (b"a joy to watch\n", b"dull and tedious\n", b"warm and clever\n"):
                self.outputs_before_each_read.append(sys.stdout.getvalue().count("\n"))
                yield line

    stdin = Stdin()
    monkeypatch.setattr("sys.stdin", stdin)
    code, stdout, err = run_cli("predict", out / "model", "--buffer-lines", "2")
    assert code == 0, err
    assert stdin.outputs_before_each_read == [0, 0, 2] and len(stdout.splitlines()) == 3


def test_predict_names_the_line_of_a_non_utf8_byte_and_keeps_the_outputs_before_it(
    tmp_path, sentiment_files, monkeypatch
):
    out = train(tmp_path, *sentiment_files)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"a joy to watch\ncaf\xe9 au lait\n")))
    code, stdout, err = run_cli("predict", out / "model", "-", "--buffer-lines", "1")
    assert code == 2 and err == "error: <stdin>:2: invalid UTF-8 byte 0xe9 (the file must be UTF-8)\n"
    assert len(stdout.splitlines()) == 1


def test_balanced_class_weights_follow_label_frequencies(tmp_path):
    from seqnlp.config import from_dict
    from seqnlp.tasks.sentiment.task import SentimentConfig, SentimentTask, TextExample

    task = SentimentTask(from_dict(SentimentConfig, {"class_weights": "balanced"}))
    task.build_vocabularies(
        [TextExample("a", "x"), TextExample("b", "x"), TextExample("c", "x"), TextExample("d", "y")]
    )
    assert task.weights == pytest.approx([4 / 6, 2.0])


def test_accuracy_is_reported_by_input_length():
    from seqnlp.tasks.sentiment.task import accuracy_by_length

    lengths = [1, 5, 6, 12, 30, 3]
    gold = ["pos", "neg", "pos", "pos", "neg", "neg"]
    predicted = ["pos", "pos", "pos", "neg", "neg", "neg"]
    assert accuracy_by_length(lengths, gold, predicted) == {
        "1-5": {"examples": 3, "accuracy": 2 / 3},
        "6-10": {"examples": 1, "accuracy": 1.0},
        "11-20": {"examples": 1, "accuracy": 0.0},
        "21+": {"examples": 1, "accuracy": 1.0},
    }


def test_an_ensemble_predicts_its_members_mean_probabilities_and_trains_on_their_mean_loss():
    from seqnlp.config import from_dict
    from seqnlp.tasks.sentiment.model import ClassifierEnsemble
    from seqnlp.tasks.sentiment.task import SentimentConfig

    torch.manual_seed(0)
    config = from_dict(SentimentConfig, {"ensemble": 3, "word_dim": 8, "hidden": 8, "dropout": 0.0})
    ensemble = ClassifierEnsemble(config, num_words=20, num_classes=4).eval()
    words = torch.tensor([[2, 5, 7], [3, 9, 0]])
    batch = {"words": words, "lengths": torch.tensor([3, 2]), "mask": words != 0, "labels": torch.tensor([1, 3])}
    members = [member.predict(batch) for member in ensemble.members]
    assert not torch.allclose(members[0], members[1])  # each member starts from its own random weights
    assert torch.allclose(ensemble.predict(batch), torch.stack(members).mean(dim=0), atol=1e-6)
    assert torch.allclose(ensemble(batch), torch.stack([member(batch) for member in ensemble.members]).mean())


def test_an_ensemble_run_saves_a_model_that_evaluates_exports_and_fine_tunes_at_its_own_size(tmp_path, sentiment_files):
    import seqnlp
    from seqnlp.serving.export import export

    train_file, dev_file = sentiment_files
    out = train(tmp_path, train_file, dev_file, "--ensemble", "2")
    metrics = json.loads((out / "metrics.json").read_text())
    code, stdout, _ = run_cli("evaluate", out / "model", "--test-file", dev_file)
    assert code == 0 and json.loads(stdout)["test"] == metrics["dev"]
    export(out / "model", tmp_path / "onnx")
    texts = ["warm and clever", "a lifeless mess"]
    for ours, theirs in zip(seqnlp.load(out / "model").predict(texts), seqnlp.load(tmp_path / "onnx").predict(texts)):
        assert ours.label == theirs.label
        assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-4)
    tuned = tmp_path / "tuned"
    code, _, err = run_cli(
        "train", "sentiment", "--init-from", out / "model", "--train-file", train_file, "--dev-file", dev_file,
        "--output-dir", tuned, "--epochs", "1", "--freeze", "embeddings", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(
        "train", "sentiment", "--init-from", out / "model", "--train-file", train_file, "--dev-file", dev_file,
        "--output-dir", tmp_path / "single", "--epochs", "1", "--ensemble", "1", "--quiet",
    )  # fmt: skip
    assert code == 2 and "weights do not match" in err and "members.0." in err  # the base's size is kept


def test_pretrained_vectors_start_the_word_embeddings_of_every_member(tmp_path, sentiment_files):
    from seqnlp.config import from_dict
    from seqnlp.tasks.sentiment.task import SentimentConfig, SentimentTask

    vectors = tmp_path / "vectors.txt"
    vectors.write_text("2 4\njoy 0.5 0.5 0.5 0.5\ndull -1 0 1 0\n", encoding="utf-8")
    settings = {"word_dim": 4, "hidden": 4, "ensemble": 2, "pretrained_vectors": str(vectors)}
    task = SentimentTask(from_dict(SentimentConfig, settings))
    task.build_vocabularies(task.read_file(str(sentiment_files[0])))
    model = task.build_model()
    report = task.init_model(model)
    assert report["found"] == 2 and report["vocab_size"] == len(task.words)
    for member in model.members:
        rows = member.embedding.words.weight[[task.words.stoi["joy"], task.words.stoi["dull"]]]
        assert rows.tolist() == [[0.5] * 4, [-1, 0, 1, 0]]


def test_pretrained_vectors_are_run_and_reported_and_need_word_tokens(tmp_path, sentiment_files):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("joy " + " ".join(["0.5"] * 16) + "\n", encoding="utf-8")
    out = train(tmp_path, *sentiment_files, "--pretrained-vectors", vectors)
    assert "| pretrained vectors | the file `vectors.txt`; 1 of " in (out / "report.md").read_text()
    code, _, err = run_cli(
        "train", "sentiment", "--train-file", sentiment_files[0], "--output-dir", tmp_path / "sub",
        "--pretrained-vectors", vectors, "--tokenizer", "subword", *TINY,
    )  # fmt: skip
    assert code == 2 and "need tokenizer word" in err
