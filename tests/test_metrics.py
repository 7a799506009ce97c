import random

import pytest

from seqnlp.evaluation.metrics import (
    classification_scores,
    entity_f1,
    entity_scores,
    language_model_scores,
    translation_scores,
)


def test_entity_scores_on_a_hand_checked_example():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    # gold entities: PER, LOC, ORG; predicted: PER, ORG(wrong span type), ORG -> 2 of 3 correct each way
    scores = entity_scores(gold, predicted)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["per_type"]["PER"]["f1"] == 1.0


def test_conlleval_reads_inside_after_outside_as_an_entity():
    scores = entity_scores([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])
    assert scores["f1"] == 1.0


def test_fast_entity_f1_equals_seqeval_on_random_sequences():
    rng = random.Random(0)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    predicted = [[t if rng.random() < 0.7 else rng.choice(tags) for t in g] for g in gold]
    fast, reference = entity_f1(gold, predicted), entity_scores(gold, predicted)
    for key in ("precision", "recall", "f1"):
        assert fast[key] == pytest.approx(reference[key], abs=1e-12)


def test_classification_scores_and_confusion_matrix():
    scores = classification_scores(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert scores["accuracy"] == 0.75
    assert scores["confusion_matrix"]["matrix"] == [[1, 1], [0, 2]]
    assert scores["per_class"]["a"]["recall"] == 0.5 and scores["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_macro_f1_averages_over_the_classes_that_occur():
    """A class the model knows but neither gold nor predictions hold (kept from a base model) does not count."""
    scores = classification_scores(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b", "kept"])
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert classification_scores(["a"], ["kept"], ["a", "kept"])["macro_f1"] == 0.0


def test_language_model_scores_in_nats_and_bits():
    import math

    scores = language_model_scores(total_nats=2 * math.log(2) * 10, num_chars=10)
    assert scores["bpc"] == pytest.approx(2.0) and scores["perplexity"] == pytest.approx(4.0)


def test_translation_scores_use_sacrebleu_on_detokenized_text():
    scores = translation_scores(["The cat sat on the mat."], ["The cat sat on the mat."])
    assert scores["bleu"] == pytest.approx(100.0) and scores["signature"]["bleu"].startswith("nrefs:1")


def test_each_kind_of_entity_error_is_named_once():
    from seqnlp.evaluation.metrics import entity_errors

    gold = {("PER", 0, 2), ("LOC", 3, 4), ("ORG", 5, 7), ("MISC", 8, 9), ("PER", 10, 11), ("LOC", 12, 13)}
    predicted = {("PER", 0, 2), ("ORG", 3, 4), ("ORG", 5, 6), ("PER", 8, 10), ("LOC", 14, 15), ("LOC", 12, 13)}
    assert entity_errors(gold, predicted) == [
        ("wrong type", ("LOC", 3, 4), ("ORG", 3, 4)),
        ("wrong boundary", ("ORG", 5, 7), ("ORG", 5, 6)),
        ("wrong type and boundary", ("MISC", 8, 9), ("PER", 8, 10)),
        ("missed", ("PER", 10, 11), None),  # (PER, 8, 10) ends before it
        ("spurious", None, ("LOC", 14, 15)),
    ]


def test_error_analysis_counts_errors_by_type_confusions_and_f1_by_length_and_seen_words():
    from seqnlp.evaluation.metrics import entity_error_analysis

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "O", "B-LOC"]]
    tokens = [["anna", "berg", "in", "oslo"], ["acme", "hired", "zorp"]]
    analysis = entity_error_analysis(gold, predicted, tokens, known_words={"anna", "berg", "in", "oslo", "hired"})
    assert analysis["errors_by_type"]["LOC"] == {"wrong type": 1, "wrong boundary": 0, "wrong type and boundary": 0,
                                                 "missed": 0, "spurious": 1}  # fmt: skip
    assert analysis["errors_by_type"]["ORG"]["missed"] == 1
    assert analysis["confused_types"] == [{"gold": "LOC", "predicted": "ORG", "count": 1}]
    # length 1: gold LOC, ORG; predicted ORG, LOC: none right; length 2: PER right
    assert analysis["f1_by_length"] == {"1": {"f1": 0.0, "gold": 2, "predicted": 2},
                                        "2": {"f1": 1.0, "gold": 1, "predicted": 1}}  # fmt: skip
    # seen: PER and LOC (gold), PER and ORG "oslo" (predicted); unseen: ORG "acme" (gold), LOC "zorp" (predicted)
    assert analysis["f1_by_words"]["seen"] == {"f1": 0.5, "gold": 2, "predicted": 2}
    assert analysis["f1_by_words"]["unseen"] == {"f1": 0.0, "gold": 1, "predicted": 1}


def test_expected_calibration_error_weighs_each_bins_gap_by_its_share():
    from seqnlp.evaluation.metrics import calibration

    got = calibration([0.95, 0.95, 0.15, 0.55], [True, False, False, True])
    # bins: 0.9-1.0 holds two (confidence 0.95, half right), 0.1-0.2 one (0.15, wrong), 0.5-0.6 one (0.55, right)
    assert got["ece"] == pytest.approx(2 / 4 * 0.45 + 1 / 4 * 0.15 + 1 / 4 * 0.45)
    assert [(b["low"], b["count"], b["accuracy"]) for b in got["bins"]] == [(0.1, 1, 0.0), (0.5, 1, 1.0), (0.9, 2, 0.5)]
    assert calibration([1.0, 1.0], [True, True]) == {
        "ece": 0.0, "items": 2, "bins": [{"low": 0.9, "high": 1.0, "count": 2, "confidence": 1.0, "accuracy": 1.0}]
    }  # fmt: skip
    assert calibration([], []) == {"ece": 0.0, "items": 0, "bins": []}


def test_characters_fall_in_the_classes_a_language_model_report_shows():
    from seqnlp.evaluation.metrics import character_class

    assert [character_class(c) for c in ["a", "É", "7", " ", "\t", "\n", ",", "<unk>", "\x07"]] == [
        "letters", "letters", "digits", "spaces", "spaces", "newlines", "punctuation", "other", "other",
    ]  # fmt: skip


def test_loss_by_character_class_sums_each_class_and_weighs_it_by_its_characters():
    from seqnlp.evaluation.metrics import loss_by_character_class

    classes = loss_by_character_class(["<pad>", "a", "b", " ", "."], [0.0, 3.0, 1.0, 1.0, 5.0], [0, 2, 2, 1, 0])
    assert list(classes) == ["letters", "spaces"]  # most characters first; no "." predicted, no class
    assert classes["letters"] == {"characters": 4, "share": 0.8, "loss": 1.0, "share_of_loss": 0.8}
    assert classes["spaces"] == {"characters": 1, "share": 0.2, "loss": 1.0, "share_of_loss": 0.2}
