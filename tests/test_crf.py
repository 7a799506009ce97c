import gc
import itertools
import math

import pytest
import torch

from seqnlp.data.tags import allowed_transitions, continuation_mask
from seqnlp.nn.crf import CRF
from seqnlp.predictions import cycle_collection_paused


def sequence_score(crf, emissions, tags):
    start, trans, end = crf._scores()
    score = start[tags[0]] + end[tags[-1]] + sum(emissions[t, tag] for t, tag in enumerate(tags))
    return score + sum(trans[a, b] for a, b in zip(tags, tags[1:]))


def brute_force(crf, emissions, length):
    paths = list(itertools.product(range(crf.num_tags), repeat=length))
    scores = torch.stack([sequence_score(crf, emissions[:length], p) for p in paths])
    return torch.logsumexp(scores, 0), list(paths[int(scores.argmax())])


def random_crf(num_tags=3, allowed=None):
    torch.manual_seed(0)
    crf = CRF(num_tags, allowed)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def test_log_partition_and_viterbi_match_enumeration_with_padding():
    crf = random_crf()
    emissions = torch.randn(3, 4, 3)
    lengths = torch.tensor([4, 2, 1])
    mask = torch.arange(4).unsqueeze(0) < lengths.unsqueeze(1)
    log_z = crf.log_partition(emissions, mask)
    decoded = crf.decode(emissions, mask)
    for b, n in enumerate(lengths.tolist()):
        expected_z, expected_path = brute_force(crf, emissions[b], n)
        assert torch.allclose(log_z[b], expected_z, atol=1e-5)
        assert decoded[b] == expected_path


def test_nll_is_minus_log_probability_of_the_gold_path():
    crf = random_crf()
    emissions = torch.randn(1, 3, 3)
    tags = torch.tensor([[0, 2, 1]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    log_z, _ = brute_force(crf, emissions[0], 3)
    expected = log_z - sequence_score(crf, emissions[0], [0, 2, 1])
    assert torch.allclose(crf.nll(emissions, tags, mask)[0], expected, atol=1e-5)


def test_constrained_decoding_never_outputs_invalid_iob2():
    labels = ["B-PER", "I-PER", "I-LOC", "O"]
    crf = CRF(len(labels), allowed_transitions(labels, "iob2"))
    emissions = torch.zeros(2, 3, 4)
    emissions[:, :, 1] = 5.0  # I-PER everywhere is the strongest emission
    emissions[:, :, 2] = 4.0
    paths = crf.decode(emissions, torch.ones(2, 3, dtype=torch.bool))
    for path in paths:
        assert path[0] in (0, 3)
        assert all(not (b == 2) for b in path)
    assert paths[0] == [0, 1, 1]


def test_nll_gradients_are_finite_with_forbidden_transitions():
    labels = ["B-PER", "I-PER", "O"]
    crf = CRF(len(labels), allowed_transitions(labels, "iob2"))
    emissions = torch.randn(2, 5, 3, requires_grad=True) * 30
    tags = torch.tensor([[0, 1, 2, 2, 0], [2, 0, 1, 1, 1]])
    loss = crf.nll(emissions, tags, torch.ones(2, 5, dtype=torch.bool)).sum()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in crf.parameters())


def test_span_probabilities_of_a_padded_batch_equal_those_of_each_sentence_alone():
    labels = ["O", "B-X", "I-X", "B-Y", "I-Y"]
    crf = random_crf(len(labels), allowed_transitions(labels, "iob2"))
    lengths = [6, 3, 1]
    emissions = torch.randn(3, 6, len(labels))
    mask = torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]
    continues = continuation_mask(labels)
    # spans at a sentence's start, middle and end (the padded sentence's last real token included)
    spans = [(0, 0, [1, 2]), (0, 3, [3]), (0, 4, [1, 2]), (1, 1, [3, 4]), (1, 0, [1]), (2, 0, [3])]
    batched = crf.span_log_probs(emissions, mask, spans, continues)
    for (row, first, tags), together in zip(spans, batched):
        alone = emissions[row : row + 1, : lengths[row]]
        (single,) = crf.span_log_probs(alone, mask[row : row + 1, : lengths[row]], [(0, first, tags)], continues)
        assert together == pytest.approx(single, abs=1e-5)
    assert all(math.exp(x) <= 1 for x in batched)


def test_the_cycle_collector_is_paused_while_answers_are_built_and_restored_after():
    assert gc.isenabled()
    with cycle_collection_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with cycle_collection_paused():
            pass
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()
