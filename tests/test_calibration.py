"""Temperature scaling: the fit finds the temperature that generated the data, a temperature never changes a
prediction, and a trained model carries its temperature into predict, the API, exports and reports."""

import json
import math
import shutil

import pytest
import torch
from torch.nn import functional as F

from seqnlp.evaluation.calibration import HIGHEST, LOWEST, binary_log_loss, fit_temperature
from seqnlp.nn.crf import CRF
from tests.conftest import ROOT, TINY_NER, run_cli, train_cli, write_tiny_conll

SENTIMENT = ROOT / "data" / "sentiment"


def test_the_search_finds_the_minimum_of_a_loss_in_log_temperature():
    assert fit_temperature(lambda t: (math.log(t) - math.log(2.5)) ** 2) == pytest.approx(2.5, rel=1e-6)


def test_the_search_stops_at_the_edges_of_the_range():
    assert fit_temperature(lambda t: t) == pytest.approx(LOWEST, rel=1e-6)
    assert fit_temperature(lambda t: -t) == pytest.approx(HIGHEST, rel=1e-6)


def test_the_cross_entropy_fit_recovers_the_temperature_that_drew_the_labels():
    """Labels drawn from softmax(logits / 2): the fitted temperature of the logits is 2, within sampling error."""
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20_000, 4, generator=generator, dtype=torch.float64)
    labels = torch.multinomial((logits / 2).softmax(1), 1, generator=generator).squeeze(1)
    fitted = fit_temperature(lambda t: float(F.cross_entropy(logits / t, labels)))
    assert fitted == pytest.approx(2.0, rel=0.05)


def test_the_log_loss_of_certain_right_answers_is_zero_and_of_coin_flips_log_2():
    assert binary_log_loss([1.0, 1.0], [True, True]) == pytest.approx(0.0, abs=1e-9)
    assert binary_log_loss([0.5, 0.5], [True, False]) == pytest.approx(math.log(2))


def _random_crf(tags=5, seed=0):
    torch.manual_seed(seed)
    crf = CRF(tags)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = 2 * torch.randn(3, 6, tags)
    mask = torch.arange(6).unsqueeze(0) < torch.tensor([6, 4, 1]).unsqueeze(1)
    return crf, emissions, mask


def test_a_crf_temperature_divides_every_score_and_keeps_the_best_path():
    crf, emissions, mask = _random_crf()
    scaled = CRF(5)
    with torch.no_grad():
        for mine, theirs in zip(scaled.parameters(), crf.parameters()):
            mine.copy_(theirs / 3.0)
    assert torch.allclose(crf.marginals(emissions, mask, 3.0), scaled.marginals(emissions / 3.0, mask), atol=1e-6)
    assert not torch.allclose(crf.marginals(emissions, mask, 3.0), crf.marginals(emissions, mask), atol=1e-3)
    assert crf.decode(emissions, mask) == scaled.decode(emissions / 3.0, mask)  # every score divided: the same path


def test_a_high_temperature_spreads_a_span_probability_towards_uniform():
    crf, emissions, mask = _random_crf()
    continues = torch.zeros(5, 5, dtype=torch.bool)
    best = crf.decode(emissions, mask)
    spans = [(0, 2, best[0][2:3])]
    sharp, soft = (math.exp(crf.span_log_probs(emissions, mask, spans, continues, t)[0]) for t in (0.2, 50.0))
    assert sharp > 0.9 and abs(soft - 1 / 5) < 0.05


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibrated") / "run"
    code, out, err = train_cli(
        "sentiment", SENTIMENT / "train.tsv", SENTIMENT / "dev.tsv", folder, "--test-file", SENTIMENT / "test.tsv",
        "--epochs", "2", "--hidden", "8", "--word-dim", "8", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    return folder, out


def test_training_fits_a_temperature_on_dev_and_says_so(sentiment_run):
    folder, out = sentiment_run
    saved = json.loads((folder / "model" / "config.json").read_text())["calibration"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert LOWEST < saved["temperature"] < HIGHEST and saved["items"] == 100 and saved["fitted_on"] == "dev set"
    assert metrics["calibration"]["temperature"] == saved["temperature"]
    before, after = metrics["calibration"]["test_ece"]
    assert (before, after) == (metrics["test"]["calibration"]["ece_before"], metrics["test"]["calibration"]["ece"])
    assert f"calibration: temperature {saved['temperature']:.3f} fitted on the dev set" in out
    assert "fitted on the dev set at the end of training" in (folder / "report.md").read_text()


def test_the_temperature_changes_probabilities_and_no_label(sentiment_run):
    import seqnlp

    folder, _ = sentiment_run
    texts = [line.split("\t")[0] for line in (SENTIMENT / "test.tsv").read_text().splitlines()[1:]]
    calibrated = seqnlp.load(folder / "model").predict(texts)
    trained = seqnlp.load(folder / "model", calibrate=False).predict(texts)
    temperature = json.loads((folder / "model" / "config.json").read_text())["calibration"]["temperature"]
    assert [p.label for p in calibrated] == [p.label for p in trained]
    # the probabilities are the trained logits' softmax at the temperature: log-ratios shrink by 1/T
    for c, t in zip(calibrated[:5], trained[:5]):
        (a, pa), (b, pb) = list(c.probabilities.items())[:2]
        expected = (math.log(t.probabilities[a]) - math.log(t.probabilities[b])) / temperature
        assert math.log(pa) - math.log(pb) == pytest.approx(expected, abs=1e-3)


@pytest.fixture(scope="module")
def exported(sentiment_run, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    import seqnlp

    folder = tmp_path_factory.mktemp("exported") / "onnx"
    seqnlp.export(sentiment_run[0] / "model", folder)
    return folder


def test_the_onnx_export_carries_the_temperature(sentiment_run, exported):
    import seqnlp

    folder, _ = sentiment_run
    texts = ["a gorgeous , witty film", "dull and lifeless"]
    torch_side, onnx_side = seqnlp.load(folder / "model").predict(texts), seqnlp.load(exported).predict(texts)
    for a, b in zip(torch_side, onnx_side):
        assert a.label == b.label and a.score == pytest.approx(b.score, abs=1e-5)


def test_calibrate_refits_on_other_data_into_a_copy_and_keeps_the_weights(sentiment_run, tmp_path):
    folder, _ = sentiment_run
    code, out, err = run_cli(
        "calibrate", folder / "model", "--dev-file", SENTIMENT / "test.tsv", "--output-dir", tmp_path / "copy"
    )
    assert code == 0, err
    result = json.loads(out)
    saved = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert saved["calibration"] == result and result["fitted_on"] == str(SENTIMENT / "test.tsv")
    original = json.loads((folder / "model" / "config.json").read_text())
    assert original["calibration"]["fitted_on"] == "dev set" and saved["config"] == original["config"]
    weights = (tmp_path / "copy" / "model.safetensors").read_bytes()
    assert weights == (folder / "model" / "model.safetensors").read_bytes()


def test_calibrate_of_a_model_without_probabilities_is_one_line(tmp_path):
    data = ROOT / "data" / "textgen"
    code, _, err = train_cli(
        "textgen", data / "train.txt", data / "val.txt", tmp_path / "lm", "--epochs", "1", "--hidden", "8",
        "--layers", "1", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli("calibrate", tmp_path / "lm" / "model", "--dev-file", data / "val.txt")
    assert code == 2 and err.count("\n") == 1 and "no probabilities to calibrate" in err


@pytest.mark.parametrize("bad", ["1.5", '"warm"', "0", "NaN", "[]"])
def test_a_malformed_temperature_in_a_model_folder_is_one_line(sentiment_run, tmp_path, bad):
    folder, _ = sentiment_run
    shutil.copytree(folder / "model", tmp_path / "model")
    config = tmp_path / "model" / "config.json"
    text = json.dumps(json.loads(config.read_text()))
    value = json.loads(config.read_text())["calibration"]["temperature"]
    config.write_text(text.replace(json.dumps(value), bad if bad != "1.5" else '"1.5"', 1))
    code, _, err = run_cli("predict", tmp_path / "model", SENTIMENT / "test.tsv")
    assert code == 2 and err.count("\n") == 1 and "'calibration'" in err and str(config) in err


def test_the_tagger_is_calibrated_on_its_entities_and_keeps_its_tags(tmp_path):
    import seqnlp

    train, dev = write_tiny_conll(tmp_path)
    code, _, err = train_cli("ner", train, dev, tmp_path / "run", *TINY_NER, "--epochs", "2")
    assert code == 0, err
    calibration = json.loads((tmp_path / "run" / "model" / "config.json").read_text())["calibration"]
    assert calibration["objective"] == "log loss of the predicted entities' probabilities"
    sentences = ["Anna Berg visited Oslo .", "Acme Corp hired Tom ."]
    calibrated = seqnlp.load(tmp_path / "run" / "model").predict(sentences)
    trained = seqnlp.load(tmp_path / "run" / "model", calibrate=False).predict(sentences)
    assert [[t.tag for t in p.tokens] for p in calibrated] == [[t.tag for t in p.tokens] for p in trained]
    if calibration["temperature"] != pytest.approx(1.0, abs=1e-3):
        assert [e.score for p in calibrated for e in p.entities] != [e.score for p in trained for e in p.entities]


def test_an_onnx_export_refuses_to_drop_the_temperature_it_holds(exported):
    code, _, err = run_cli("predict", exported, SENTIMENT / "test.tsv", "--set", "calibrate=false")
    assert code == 2 and err.count("\n") == 1 and "carries its temperature inside its graphs" in err
