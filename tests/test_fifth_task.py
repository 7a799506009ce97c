"""A task added from outside seqnlp (``tests/pos_task.py``, through the ``seqnlp.tasks`` entry point) trains,
evaluates, predicts through the command line and the API, serves, exports to ONNX and has a model card."""

import json

import pytest

from tests.conftest import ROOT, run_cli, train_cli

SENTENCES = [
    [("Peter", "NNP"), ("visited", "VBD"), ("Brussels", "NNP"), (".", ".")],
    [("The", "DT"), ("team", "NN"), ("won", "VBD"), ("the", "DT"), ("game", "NN"), (".", ".")],
    [("Anna", "NNP"), ("likes", "VBZ"), ("the", "DT"), ("city", "NN"), (".", ".")],
    [("A", "DT"), ("dog", "NN"), ("runs", "VBZ"), (".", ".")],
]


def write_pos(path, copies):
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(copies):
            for sentence in SENTENCES:
                out.writelines(f"{token} {tag}\n" for token, tag in sentence)
                out.write("\n")
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """An installed distribution (its ``.dist-info`` on ``sys.path``) whose entry point adds the ``pos`` task."""
    site = tmp_path_factory.mktemp("site")
    info = site / "seqnlp_pos_example-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: seqnlp-pos-example\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[seqnlp.tasks]\npos = tests.pos_task\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        patch.syspath_prepend(str(ROOT))
        yield site


@pytest.fixture(scope="module")
def trained(installed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pos")
    train, dev = write_pos(folder / "train.txt", 8), write_pos(folder / "dev.txt", 1)
    flags = ["--epochs", "10", "--batch-size", "4", "--quiet", "--seed", "2"]
    code, _, err = train_cli("pos", train, dev, folder / "run", *flags)
    assert code == 0, err
    return folder


def test_the_registry_lists_a_task_that_an_installed_distribution_adds(installed):
    from seqnlp.tasks import task_names

    assert "pos" in task_names() and {"ner", "sentiment", "translate", "textgen"} <= set(task_names())
    code, out, _ = run_cli("--help")
    listed = next(line for line in out.splitlines() if "seqnlp train TASK" in line)
    assert code == 0 and "pos" in listed


def test_it_trains_and_evaluate_reproduces_its_dev_score(trained):
    metrics = json.loads((trained / "run" / "metrics.json").read_text())
    assert metrics["task"] == "pos" and metrics["dev"]["accuracy"] == 1.0
    code, out, err = run_cli("evaluate", trained / "run" / "model", "--test-file", trained / "dev.txt")
    assert code == 0, err
    assert json.loads(out)["test"]["accuracy"] == metrics["dev"]["accuracy"]


def test_it_predicts_through_the_command_line_and_the_api(trained, tmp_path):
    import seqnlp

    model = seqnlp.load(trained / "run" / "model")
    assert model.labels == sorted({tag for s in SENTENCES for _, tag in s}, key=model.labels.index)
    tagging = model.predict("Anna visited the city .")
    assert [t.tag for t in tagging.tokens] == ["NNP", "VBD", "DT", "NN", "."]
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("Peter likes the game .\n", encoding="utf-8")
    code, out, err = run_cli("predict", trained / "run" / "model", inputs)
    assert code == 0, err
    assert out.strip() == model.predict("Peter likes the game .").to_text() == "Peter/NNP likes/VBZ the/DT game/NN ./."


def test_its_model_card_describes_it(trained):
    card = (trained / "run" / "model" / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "a part-of-speech tagger" in card
    assert "Labels: " in card and "'Peter Blackburn visited Brussels .'" in card


def test_it_exports_to_onnx_with_the_same_answers(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    import seqnlp

    code, _, err = run_cli("export", trained / "run" / "model", tmp_path / "onnx")
    assert code == 0, err
    texts = ["Anna visited the city .", "The dog won ."]
    ours, theirs = seqnlp.load(tmp_path / "onnx").predict(texts), seqnlp.load(trained / "run" / "model").predict(texts)
    assert [p.to_dict() for p in ours] == [p.to_dict() for p in theirs]


def test_it_serves(trained):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import seqnlp
    from seqnlp.serving.server import ServeConfig
    from tests.test_serve import call, serving

    model = seqnlp.load(trained / "run" / "model")
    with serving(model, ServeConfig()) as url:
        status, body = call(url, "/predict", {"inputs": ["Peter visited Brussels ."]})
        info = call(url, "/info")[1]
    assert status == 200 and [t["tag"] for t in body["predictions"][0]["tokens"]] == ["NNP", "VBD", "NNP", "."]
    assert info["task"] == "pos"
