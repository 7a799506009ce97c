import pytest
import torch

from seqnlp.data.tags import allowed_transitions, convert, to_spans


def test_iob1_is_converted_to_iob2():
    assert convert(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], "iob2") == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]


def test_iob2_and_bioes_convert_both_ways():
    iob2 = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    bioes = ["B-PER", "I-PER", "E-PER", "O", "S-LOC", "B-ORG", "E-ORG"]
    assert convert(iob2, "bioes") == bioes
    assert convert(bioes, "iob2") == iob2


def test_spans_of_adjacent_entities_of_one_type():
    assert to_spans(["B-PER", "B-PER", "I-PER"]) == [("PER", 0, 1), ("PER", 1, 3)]


def test_invalid_tag_is_rejected():
    with pytest.raises(ValueError, match="invalid tag"):
        convert(["PER"], "iob2")


def test_iob2_constraints_forbid_inside_without_begin():
    labels = ["B-PER", "I-PER", "I-LOC", "O"]
    start, trans, end = allowed_transitions(labels, "iob2")
    assert start.tolist() == [True, False, False, True]
    assert trans[0, 1] and trans[1, 1] and not trans[3, 1] and not trans[0, 2]
    assert end.all()


def test_bioes_constraints_require_closing_entities():
    labels = ["B-PER", "E-PER", "I-PER", "O", "S-PER"]
    start, trans, end = allowed_transitions(labels, "bioes")
    assert end.tolist() == [False, True, False, True, True]
    assert not trans[0, 3] and trans[0, 1] and trans[0, 2] and trans[1, 3] and not trans[3, 2]
    assert isinstance(trans, torch.Tensor)
