"""The NER recipe end to end on a tiny dataset: train -> evaluate -> report -> predict, and its errors."""

import json

import pytest

from seqnlp.storage.folders import COMPLETE_MARKER
from tests.conftest import TINY_NER, run_cli, train_cli


@pytest.fixture
def trained(tmp_path, conll_files):
    train, dev = conll_files
    out = tmp_path / "run"
    code, _, err = run_cli(
        "train",
        "ner",
        "--train-file",
        train,
        "--dev-file",
        dev,
        "--test-file",
        dev,
        "--output-dir",
        out,
        "--epochs",
        "3",
        *TINY_NER,
    )
    assert code == 0, err
    return out, train, dev


def test_run_writes_the_contract_outputs(trained):
    out, _, _ = trained
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "ner"
    assert set(metrics["dev"]) >= {"precision", "recall", "f1", "per_type"}
    assert set(metrics["dev"]["per_type"]) == {"PER", "LOC", "ORG", "MISC"}
    assert metrics["train"]["epochs"] == 3 and metrics["train"]["tokens_per_second"] > 0
    assert metrics["config"]["hidden"] == 16
    assert "sha256" in metrics["protocol"]["data"]["train_file"]
    for name in (
        "report.md",
        "curves.png",
        "train_log.jsonl",
        "model/config.json",
        "model/model.safetensors",
        "checkpoints/last/trainer_state.json",
    ):
        assert (out / name).exists(), name
    assert "| PER |" in (out / "report.md").read_text()


def test_evaluate_reproduces_the_dev_metrics_exactly(trained):
    out, _, dev = trained
    code, stdout, err = run_cli("evaluate", out / "model", "--test-file", dev)
    assert code == 0, err
    assert json.loads(stdout)["test"] == json.loads((out / "metrics.json").read_text())["dev"]


def test_predict_prints_token_tag_pairs_in_input_order(trained, tmp_path):
    out, _, _ = trained
    inputs = tmp_path / "in.txt"
    inputs.write_text("Anna Berg visited Berlin .\n\nReuters said so .\n", encoding="utf-8")
    code, stdout, err = run_cli("predict", out / "model", inputs)
    assert code == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 3 and lines[1] == ""
    assert [pair.rsplit("/", 1)[0] for pair in lines[0].split()] == ["Anna", "Berg", "visited", "Berlin", "."]
    assert all(
        pair.rsplit("/", 1)[1] in {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"}
        for line in lines
        for pair in line.split()
    )


def test_unknown_label_at_evaluation_time_names_file_and_line(trained, tmp_path):
    out, _, _ = trained
    test = tmp_path / "test.txt"
    test.write_text("Anna B-PER\n\nSomething B-EVENT\n", encoding="utf-8")
    code, _, err = run_cli("evaluate", out / "model", "--test-file", test)
    assert code == 2
    assert err == f"error: {test}:3: entity type 'EVENT' was not seen in training (known types: LOC, MISC, ORG, PER)\n"
    assert err.count("\n") == 1


def test_bad_training_file_fails_with_one_line_and_keeps_the_earlier_model(trained, tmp_path):
    out, _, dev = trained
    before = (out / "model" / "model.safetensors").read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_text("Anna B-PER\nBerg\n", encoding="utf-8")
    code, _, err = run_cli(
        "train", "ner", "--train-file", bad, "--dev-file", dev, "--output-dir", out, "--overwrite", *TINY_NER
    )
    assert code == 2
    assert err == f"error: {bad}:2: expected a token and a tag separated by whitespace, found one column 'Berg'\n"
    assert (out / "model" / "model.safetensors").read_bytes() == before


def test_unknown_config_key_is_an_error(tmp_path, conll_files):
    config = tmp_path / "c.yaml"
    config.write_text("hidden: 8\nclip: 5\n", encoding="utf-8")
    code, _, err = run_cli(
        "train", "ner", "--config", config, "--train-file", conll_files[0], "--output-dir", tmp_path / "out"
    )
    assert code == 2 and "unknown setting 'clip'" in err


def test_an_unknown_device_fails_before_the_output_directory_is_touched(tmp_path, conll_files):
    out = tmp_path / "run"
    code, _, err = run_cli("train", "ner", "--train-file", conll_files[0], "--output-dir", out, "--device", "gpu")
    assert code == 2 and err == "error: device must be auto, cpu, cuda or cuda:N, not 'gpu'\n"
    assert not out.exists()


def test_yaml_config_is_used_and_flags_override_it(tmp_path, conll_files):
    train, dev = conll_files
    config = tmp_path / "c.yaml"
    config.write_text("hidden: 12\nepochs: 1\ncell: gru\n", encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run_cli(
        "train",
        "ner",
        "--config",
        config,
        "--train-file",
        train,
        "--dev-file",
        dev,
        "--output-dir",
        out,
        *TINY_NER[:2],
        "--hidden",
        "10",
        "--quiet",
    )
    assert code == 0, err
    saved = json.loads((out / "model" / "config.json").read_text())["config"]
    assert (saved["hidden"], saved["epochs"], saved["cell"]) == (10, 1, "gru")


def test_resume_continues_to_more_epochs(trained):
    out, train, dev = trained
    code, _, err = train_cli(
        "ner",
        train,
        dev,
        out,
        *TINY_NER,
        "--resume",
        "--epochs",
        "4",
    )
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["train"]["epochs"] == 4


def test_fine_tune_from_a_model_keeps_its_vocabulary(trained, tmp_path):
    out, train, dev = trained
    tuned = tmp_path / "tuned"
    code, _, err = run_cli(
        "train",
        "ner",
        "--init-from",
        out / "model",
        "--train-file",
        dev,
        "--dev-file",
        dev,
        "--output-dir",
        tuned,
        "--epochs",
        "1",
        "--quiet",
    )
    assert code == 0, err
    assert (
        json.loads((tuned / "model" / "config.json").read_text())["assets"]["words"]
        == json.loads((out / "model" / "config.json").read_text())["assets"]["words"]
    )


def test_model_directory_holds_no_pickles(trained):
    out, _, _ = trained
    assert sorted(p.name for p in (out / "model").iterdir() if p.name != COMPLETE_MARKER) == [
        "README.md",  # the model card
        "config.json",
        "model.safetensors",
    ]


def test_reference_cells_train_through_the_recipe(tmp_path, conll_files):
    train, dev = conll_files
    out = tmp_path / "ref"
    code, _, err = train_cli(
        "ner",
        train,
        dev,
        out,
        "--epochs",
        "1",
        "--cell-impl",
        "reference",
        "--cell",
        "gru",
        *TINY_NER,
    )
    assert code == 0, err
    assert json.loads((out / "model" / "config.json").read_text())["config"]["cell_impl"] == "reference"


def test_models_saved_before_casing_features_still_load(tmp_path, conll_files):
    train, dev = conll_files
    out = tmp_path / "old"
    code, _, err = train_cli(
        "ner",
        train,
        dev,
        out,
        "--epochs",
        "1",
        "--casing-dim",
        "0",
        *TINY_NER,
    )
    assert code == 0, err
    path = out / "model" / "config.json"
    saved = json.loads(path.read_text())
    del saved["config"]["casing_dim"]  # as written before the setting existed
    path.write_text(json.dumps(saved))
    code, _, err = run_cli("evaluate", out / "model", "--test-file", dev, "--split", "dev")
    assert code == 0, err


def test_casing_classes():
    from seqnlp.data.tokenize import CASINGS, casing

    names = {
        token: CASINGS[casing(token) - 1] for token in ["the", "EU", "Germany", "1996", "12-3", "G7", "-", "iPhone"]
    }
    assert names == {
        "the": "lower",
        "EU": "upper",
        "Germany": "initial_upper",
        "1996": "numeric",
        "12-3": "mainly_numeric",
        "G7": "upper",
        "-": "other",
        "iPhone": "other",
    }


def test_pretrained_vectors_are_loaded_and_reported(tmp_path, conll_files):
    train, dev = conll_files
    vectors = tmp_path / "vectors.txt"
    vectors.write_text(
        "anna " + " ".join(["0.5"] * 16) + "\nberlin " + " ".join(["-0.5"] * 16) + "\n", encoding="utf-8"
    )
    out = tmp_path / "vec"
    code, _, err = train_cli(
        "ner",
        train,
        dev,
        out,
        "--epochs",
        "1",
        "--pretrained-vectors",
        vectors,
        *TINY_NER,
    )
    assert code == 0, err
    report = json.loads((out / "metrics.json").read_text())["pretrained_vectors"]
    assert (report["found"], report["file"]) == (2, str(vectors))
    assert "| pretrained vectors | the file `vectors.txt`; 2 of " in (out / "report.md").read_text()
    assert "Pretrained word vectors: the file `vectors.txt`; 2 of" in (out / "model" / "README.md").read_text()


def test_resume_reports_changed_settings(trained, capsys):
    out, train, dev = trained
    import contextlib
    import io

    from seqnlp.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        main(
            [
                "train",
                "ner",
                "--train-file",
                str(train),
                "--dev-file",
                str(dev),
                "--output-dir",
                str(out),
                *TINY_NER,
                "--resume",
                "--epochs",
                "4",
            ]
        )
    assert "resuming with changed settings: epochs: 3 -> 4" in buffer.getvalue()


def test_evaluate_on_an_hf_dataset_split(trained, tmp_path):
    datasets = pytest.importorskip("datasets")
    out, _, _ = trained
    rows = {"tokens": [["Anna", "Berg", "visited", "Berlin", "."]], "ner_tags": [["B-PER", "I-PER", "O", "B-LOC", "O"]]}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "hf"))
    code, stdout, err = run_cli("evaluate", out / "model", "--dataset", tmp_path / "hf", "--split", "test")
    assert code == 0, err
    assert json.loads(stdout)["test"]["per_type"]["PER"]["support"] == 1


def test_fine_tuning_refuses_dev_data_with_a_type_neither_the_model_nor_the_new_data_has(trained, tmp_path):
    out, _, _ = trained
    new = tmp_path / "new.txt"
    new.write_text("Olympics B-EVENT\n", encoding="utf-8")
    dev = tmp_path / "dev.txt"
    dev.write_text("Pizza B-FOOD\n", encoding="utf-8")
    code, _, err = run_cli(
        "train",
        "ner",
        "--init-from",
        out / "model",
        "--train-file",
        new,
        "--dev-file",
        dev,
        "--output-dir",
        tmp_path / "t",
        "--quiet",
    )
    assert code == 2 and "entity type 'FOOD' was not seen in training" in err
