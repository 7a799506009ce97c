"""Bootstrap intervals: the resampling is the bootstrap's, and each task's sufficient statistics give exactly the score
its own metric computes on the resampled units."""

import hashlib
import json
import math
import random

import numpy as np
import pytest

from seqnlp.evaluation.evidence import (
    SEED,
    UnitStatistics,
    bootstrap_intervals,
    interval,
    paired_comparison,
    resample_counts,
)
from seqnlp.evaluation.metrics import (
    calibration,
    classification_scores,
    classification_statistics,
    entity_f1,
    entity_scores,
    entity_statistics,
    language_model_statistics,
    translation_statistics,
)
from tests.conftest import TINY_NER, run_cli, train_cli, write_tiny_conll


def test_each_resample_draws_as_many_units_as_there_are_and_a_seed_repeats_it():
    counts = resample_counts(7, 50, seed=3)
    assert counts.shape == (50, 7) and (counts.sum(1) == 7).all() and (counts >= 0).all()
    assert (resample_counts(7, 50, seed=3) == counts).all() and not (resample_counts(7, 50, seed=4) == counts).all()


def test_resampled_accuracy_follows_the_binomial_law_of_the_bootstrap():
    """Four examples, two right: a resample's accuracy is Binomial(4, 1/2) / 4."""
    correct = np.array([1.0, 0.0, 1.0, 0.0])
    resampled = resample_counts(4, 40_000, seed=0) @ correct / 4
    for k in range(5):
        assert np.mean(resampled == k / 4) == pytest.approx(math.comb(4, k) / 16, abs=0.01)


def test_the_interval_is_the_central_95_percent_by_sacrebleus_order_statistics():
    assert interval(np.arange(1000)) == [25.0, 974.0]
    assert interval(np.arange(40)[::-1]) == [1.0, 38.0]


def test_no_resamples_give_no_intervals():
    assert bootstrap_intervals(UnitStatistics("units", [[1.0]], {"x": lambda s: s[:, 0]}), resamples=0) == {}


def translations(rng, kept: float, references=None):
    """60 references, and hypotheses that keep each reference word with probability ``kept``."""
    words = "a man dog woman is are running playing in the park street on beach".split()
    references = references or [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) for _ in range(60)]
    return references, [
        " ".join(w if rng.random() < kept else rng.choice(words) for w in r.split()) for r in references
    ]


def random_tags(rng, length):
    tags = []
    for _ in range(length):
        tag = rng.choice(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG"])
        tags.append(tag)
    return tags


def brute_force(units_of_resample, score, resamples=200):
    """The score recomputed from scratch on each resample's list of units (the same draws as the statistics')."""
    n = len(units_of_resample)
    indices = np.random.default_rng(SEED).choice(n, size=(resamples, n), replace=True)
    return interval([score([units_of_resample[i] for i in row]) for row in indices])


def test_entity_intervals_equal_entity_scores_recomputed_on_each_resample():
    rng = random.Random(0)
    gold = [random_tags(rng, rng.randint(1, 9)) for _ in range(30)]
    predicted = [random_tags(rng, len(g)) for g in gold]
    got = bootstrap_intervals(entity_statistics(gold, predicted, ["LOC", "ORG", "PER"]), 200)
    pairs = list(zip(gold, predicted))
    for name in ("precision", "recall", "f1"):
        assert got[name] == pytest.approx(brute_force(pairs, lambda ps, n=name: entity_f1(*zip(*ps))[n]))
    per_type = brute_force(pairs, lambda ps: entity_scores(*zip(*ps))["per_type"].get("LOC", {"f1": 0.0})["f1"])
    assert got["per_type"]["LOC"]["f1"] == pytest.approx(per_type)
    point = entity_scores(gold, predicted)
    assert got["f1"][0] <= point["f1"] <= got["f1"][1]


def test_classification_intervals_equal_the_scores_recomputed_on_each_resample():
    rng = random.Random(1)
    labels = ["neg", "neutral", "pos"]
    gold = [rng.choice(labels) for _ in range(40)]
    predicted = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    got = bootstrap_intervals(classification_statistics(gold, predicted, labels), 200)
    pairs = list(zip(gold, predicted))

    def recomputed(name, label=None):
        def score(ps):
            scores = classification_scores(*zip(*ps), labels)
            return scores["per_class"][label][name] if label else scores[name]

        return brute_force(pairs, score)

    assert got["accuracy"] == pytest.approx(recomputed("accuracy"))
    assert got["macro_f1"] == pytest.approx(recomputed("macro_f1"))
    assert got["per_class"]["neutral"]["recall"] == pytest.approx(recomputed("recall", "neutral"))
    assert got["per_class"]["pos"]["precision"] == pytest.approx(recomputed("precision", "pos"))


def test_translation_intervals_are_sacrebleus_own_bootstrap_bounds():
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import _bootstrap_resample

    references, hypotheses = translations(random.Random(2), 0.7)
    got = bootstrap_intervals(translation_statistics(hypotheses, references), 300)
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        stats = metric._extract_corpus_statistics(hypotheses, [references])
        _, scores = _bootstrap_resample(stats, metric, 300)  # sacreBLEU's seed is 12345 unless SACREBLEU_SEED says
        # sacreBLEU sums the statistics in float32: its scores differ from these in the eighth significant digit
        assert got[name] == pytest.approx(interval([s.score for s in scores]), rel=1e-6)


def test_language_model_intervals_are_the_resampled_chunks_nats_per_character():
    rng = random.Random(3)
    chunks = [(rng.uniform(100, 400), rng.randint(150, 256)) for _ in range(25)]
    got = bootstrap_intervals(language_model_statistics(chunks, 256), 200)
    expected = brute_force(chunks, lambda cs: sum(n for n, _ in cs) / sum(c for _, c in cs))
    assert got["loss"] == pytest.approx(expected)
    assert got["bpc"] == pytest.approx([x / math.log(2) for x in expected])


def accuracy_statistics(correct):
    return classification_statistics(["y"] * len(correct), ["y" if c else "n" for c in correct], ["n", "y"])


def test_identical_systems_get_uniform_p_values_and_intervals_that_cover_no_difference():
    """Two systems right on each example with probability 0.7, independently: the null holds."""
    rng = np.random.default_rng(0)
    p_values, covered = [], []
    for _ in range(200):
        a, b = (accuracy_statistics(rng.random(60) < 0.7) for _ in range(2))
        result = paired_comparison(a, b, "accuracy", resamples=400, trials=400, seed=int(rng.integers(1 << 30)))
        p_values.append(result["p_value"])
        covered.append(result["interval"][0] <= 0 <= result["interval"][1])
    # a valid test: P(p <= alpha) <= alpha, up to the draws' noise (accuracy's ties make it a little conservative)
    assert np.mean(np.array(p_values) <= 0.05) <= 0.08 and np.mean(np.array(p_values) <= 0.5) <= 0.55
    assert np.mean(np.array(p_values) <= 0.5) >= 0.3  # and not blind
    assert 0.88 <= np.mean(covered) <= 0.99


def test_a_system_with_a_real_lead_is_found():
    rng = np.random.default_rng(1)
    a, b = accuracy_statistics(rng.random(200) < 0.6), accuracy_statistics(rng.random(200) < 0.8)
    result = paired_comparison(a, b, "accuracy", resamples=1000, trials=2000)
    assert result["p_value"] < 0.01 and result["interval"][0] > 0
    assert result["difference"] == pytest.approx(float(b.rows[:, 3].mean() - a.rows[:, 3].mean()))


def test_identical_outputs_are_no_evidence_of_a_difference():
    same = accuracy_statistics(np.random.default_rng(2).random(50) < 0.7)
    result = paired_comparison(same, same, "accuracy", resamples=200, trials=200)
    assert result["difference"] == 0 and result["p_value"] == 1.0 and result["interval"] == [0.0, 0.0]


def test_a_translation_comparison_is_sacrebleus_paired_approximate_randomization():
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    references, baseline = translations(random.Random(4), 0.6)
    _, system = translations(random.Random(5), 0.7, references)
    a, b = translation_statistics(baseline, references), translation_statistics(system, references)
    ours = paired_comparison(a, b, "bleu", resamples=300, trials=1000)
    _, theirs = PairedTest([("a", baseline), ("b", system)], {"BLEU": BLEU()}, [references], "ar", n_samples=1000)()
    assert ours["p_value"] == theirs["BLEU"][1].p_value
    assert ours["difference"] == pytest.approx(theirs["BLEU"][1].score - theirs["BLEU"][0].score)


def test_compare_refuses_models_of_different_tasks_in_one_line(tmp_path, conll_files):
    train, dev = conll_files
    assert train_cli("ner", train, dev, tmp_path / "ner", "--epochs", "1", *TINY_NER)[0] == 0
    data = tmp_path / "two.tsv"
    data.write_text("sentence\tlabel\n" + "good film\t1\nbad film\t0\n" * 10)
    assert run_cli("train", "sentiment", "--train-file", data, "--output-dir", tmp_path / "sst", "--epochs", "1",
                   "--word-dim", "8", "--hidden", "8", "--quiet")[0] == 0  # fmt: skip
    code, _, err = run_cli("compare", tmp_path / "ner", tmp_path / "sst", "--test-file", dev)
    assert code == 2 and err == "error: compare: the models are of different tasks (ner, sentiment)\n"
    code, _, err = run_cli("compare", tmp_path / "ner", "--test-file", dev)
    assert code == 2 and err == "error: compare: give at least two models\n"


@pytest.fixture(scope="module")
def taggers(tmp_path_factory):
    """(folder, dev file) of two tiny tagger runs on the same data, ``one`` and ``three`` epochs."""
    folder = tmp_path_factory.mktemp("taggers")
    train, dev = write_tiny_conll(folder)
    for name, epochs in (("one", "1"), ("three", "3")):
        code, _, err = train_cli("ner", train, dev, folder / name, "--epochs", epochs, *TINY_NER)
        assert code == 0, err
    return folder, dev


def test_a_run_reports_each_score_with_its_interval_and_evaluate_reproduces_it(taggers):
    folder, dev = taggers
    dev_scores = json.loads((folder / "three" / "metrics.json").read_text())["dev"]
    assert dev_scores["bootstrap"]["resamples"] == 1000 and dev_scores["bootstrap"]["units"] == "sentences"
    for name in ("precision", "recall", "f1"):
        low, high = dev_scores["intervals"][name]
        assert low <= dev_scores[name] <= high
    assert set(dev_scores["intervals"]["per_type"]) == set(dev_scores["per_type"])
    report = (folder / "three" / "report.md").read_text()
    assert "| split | metric | value | 95% interval |" in report and "percentile bootstrap over" in report
    code, stdout, _ = run_cli("evaluate", folder / "three" / "model", "--test-file", dev)
    assert code == 0 and json.loads(stdout)["test"] == dev_scores  # seeded: the same intervals
    code, stdout, _ = run_cli("evaluate", folder / "three" / "model", "--test-file", dev, "--bootstrap", "0")
    assert code == 0 and "intervals" not in json.loads(stdout)["test"]


def test_an_evaluation_report_says_what_was_scored_and_not_how_a_run_trained(taggers, tmp_path):
    folder, dev = taggers
    model = folder / "three" / "model"
    code, stdout, err = run_cli(
        "evaluate", model, "--test-file", dev, "--output-dir", tmp_path / "eval", "--bootstrap", "300"
    )
    assert code == 0, err
    evaluated = json.loads(stdout)["evaluated"]
    assert evaluated["model"] == str(model) and len(evaluated["config_sha256"]) == 64
    assert evaluated["data"] == [{"path": str(dev), "sha256": hashlib.sha256(dev.read_bytes()).hexdigest()}]
    assert evaluated["settings"] == {"bootstrap": 300}
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == json.loads(stdout)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert report.startswith("# seqnlp ner evaluation\n") and "## Evaluated" in report and str(dev) in report
    assert "| setting `bootstrap` | `300` (not the model's) |" in report and "300 resamples" in report
    assert "## Training" not in report and "None" not in report and "## Configuration" not in report


def test_compare_scores_each_model_and_tests_each_pair_on_the_same_sentences(taggers):
    folder, dev = taggers
    runs = [folder / "one", folder / "three" / "model"]  # a run folder and a model folder
    code, stdout, err = run_cli("compare", *runs, "--test-file", dev, "--bootstrap", "200", "--trials", "500")
    assert code == 0, err
    result = json.loads(stdout)
    assert (result["task"], result["metric"], result["units"]) == ("ner", "f1", "sentences")
    scores = [json.loads(run_cli("evaluate", run, "--test-file", dev, "--bootstrap", "200")[1])["test"] for run in
              (folder / "one" / "model", runs[1])]  # fmt: skip
    assert [m["f1"] for m in result["models"]] == [s["f1"] for s in scores]
    assert [m["interval"] for m in result["models"]] == [s["intervals"]["f1"] for s in scores]
    (pair,) = result["comparisons"]
    assert pair["a"] == str(runs[0]) and pair["b"] == str(runs[1])
    assert pair["difference"] == pytest.approx(scores[1]["f1"] - scores[0]["f1"])
    assert pair["test"] == "paired approximate randomization" and pair["trials"] == 500
    assert 0 < pair["p_value"] <= 1 and pair["interval"][0] <= pair["difference"] <= pair["interval"][1]


def predictions_of(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


def test_predictions_jsonl_holds_every_dev_sentence_with_its_entities_and_rescores_to_the_metrics(taggers):
    folder, dev = taggers
    rows, metrics = predictions_of(folder / "three"), json.loads((folder / "three" / "metrics.json").read_text())
    assert {r["split"] for r in rows} == {"dev"} and len(rows) == 4  # the tiny dev file's sentences
    predicted = [e for r in rows for e in r["predicted"]]
    gold = [e for r in rows for e in r["gold"]]
    correct = sum(e["correct"] for e in predicted)
    assert correct / len(predicted) == pytest.approx(metrics["dev"]["precision"])
    assert correct / len(gold) == pytest.approx(metrics["dev"]["recall"])
    assert all(0 < e["score"] <= 1 for e in predicted)
    assert metrics["dev"]["calibration"]["items"] == len(predicted)  # every predicted entity, by its probability
    assert "calibration of entity probabilities" in (folder / "three" / "report.md").read_text()
    assert (folder / "three" / "calibration_dev.png").is_file()
    errors = [e["kind"] for r in rows for e in r["errors"]]
    by_type = metrics["dev"]["error_analysis"]["errors_by_type"]
    assert len(errors) == sum(sum(kinds.values()) for kinds in by_type.values())
    assert rows[0]["source"].startswith(f"{dev}:") and rows[0]["tokens"] == ["Anna", "Berg", "visited", "Berlin", "."]


def test_sentiment_and_translation_predictions_rescore_to_their_metrics(tmp_path):
    import sacrebleu

    from tests.conftest import ROOT

    sentiment = tmp_path / "sentiment"
    code, _, err = run_cli(
        "train", "sentiment", "--train-file", ROOT / "data/sentiment/train.tsv", "--dev-file",
        ROOT / "data/sentiment/dev.tsv", "--output-dir", sentiment, "--epochs", "1", "--hidden", "8", "--word-dim",
        "8", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    rows, metrics = predictions_of(sentiment), json.loads((sentiment / "metrics.json").read_text())
    assert len(rows) == 100 and sum(r["correct"] for r in rows) / 100 == pytest.approx(metrics["dev"]["accuracy"])
    assert all(r["probability"] == max(r["probabilities"].values()) for r in rows)
    assert all(r["correct"] == (r["gold"] == r["predicted"]) for r in rows)
    recomputed = calibration([r["probability"] for r in rows], [r["correct"] for r in rows])
    assert metrics["dev"]["calibration"]["ece"] == pytest.approx(recomputed["ece"], abs=1e-5)

    translate = tmp_path / "translate"
    code, _, err = run_cli(
        "train", "translate", "--train-file", ROOT / "data/translate/train", "--dev-file", ROOT / "data/translate/val",
        "--output-dir", translate, "--epochs", "1", "--hidden", "16", "--decoder-hidden", "16", "--embed-dim", "16",
        "--beam", "2", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    rows, metrics = predictions_of(translate), json.loads((translate / "metrics.json").read_text())
    assert len(rows) == 60 and rows[0]["source"].endswith("val.de:1")
    hypotheses, references = [r["translation"] for r in rows], [r["reference"] for r in rows]
    assert sacrebleu.corpus_bleu(hypotheses, [references]).score == pytest.approx(metrics["dev"]["bleu"])
    for r in rows[:5]:
        assert r["chrf"] == pytest.approx(sacrebleu.sentence_chrf(r["translation"], [r["reference"]]).score, abs=1e-4)
    assert "the sentences with the lowest chrF" in (translate / "report.md").read_text()
