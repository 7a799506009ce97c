"""The Python API: ``seqnlp.load(...).predict``, ``seqnlp.train``, ``seqnlp.evaluate``; CRF marginals; raw-text
tokenization."""

import itertools
import json
import math

import pytest
import torch

import seqnlp
from seqnlp.data.tags import allowed_transitions, continuation_mask
from seqnlp.data.tokenize import tokenize
from seqnlp.errors import ConfigError
from seqnlp.nn.crf import CRF
from tests.conftest import ROOT, run_cli, train_cli

SAMPLES = {
    "ner": ("data/ner/train.txt", "data/ner/dev.txt", {"hidden": 16, "word_dim": 16, "char_dim": 8, "char_out": 8}),
    "sentiment": ("data/sentiment/train.tsv", "data/sentiment/dev.tsv", {"hidden": 16, "word_dim": 16}),
    "translate": (
        "data/translate/train",
        "data/translate/val",
        {"hidden": 16, "decoder_hidden": 16, "embed_dim": 16, "beam": 2},
    ),
    "textgen": ("data/textgen/train.txt", "data/textgen/val.txt", {"hidden": 16, "sample_chars": 5}),
}
INPUTS = {
    "ner": ["Peter Blackburn visited Brussels.", "EU rejects German call to boycott British lamb ."],
    "sentiment": ["a gorgeous , witty film", "dull"],
    "translate": ["Ein Mann schläft.", "Zwei Hunde spielen im Schnee."],
    "textgen": ["ROMEO:", "The "],
}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """``sample_run(task)``: (task, output directory, metrics) of a model trained for one epoch through
    ``seqnlp.train`` on the task's sample, trained once per module."""
    runs = {}

    def run(task):
        if task not in runs:
            train, dev, sizes = SAMPLES[task]
            out = tmp_path_factory.mktemp(task)
            metrics = seqnlp.train(
                task, train_file=str(ROOT / train), dev_file=str(ROOT / dev), output_dir=str(out), epochs=1,
                quiet=True, **sizes,
            )  # fmt: skip
            runs[task] = task, out, metrics
        return runs[task]

    return run


@pytest.fixture(params=sorted(SAMPLES))
def trained(request, sample_run):
    return sample_run(request.param)


def test_train_returns_the_metrics_it_writes(trained):
    task, out, metrics = trained
    assert metrics == json.loads((out / "metrics.json").read_text()) and metrics["task"] == task


def test_the_api_predicts_what_the_cli_prints(trained, tmp_path):
    task, out, _ = trained
    inputs = INPUTS[task]
    model = seqnlp.load(out / "model")
    predictions = model.predict(inputs, max_chars=10) if task == "textgen" else model.predict(inputs)
    source = tmp_path / "inputs.txt"
    source.write_text("\n".join(inputs) + "\n", encoding="utf-8")
    extra = ["--max-chars", "10"] if task == "textgen" else []
    code, stdout, err = run_cli("predict", out / "model", source, "--format", "json", *extra)
    assert code == 0, err
    assert [json.loads(line) for line in stdout.splitlines()] == [p.to_dict() for p in predictions]
    code, stdout, _ = run_cli("predict", out / "model", source, *extra)
    assert stdout.splitlines() == [p.to_text() for p in predictions]


def test_evaluate_returns_what_the_cli_prints(trained):
    task, out, metrics = trained
    dev = str(ROOT / SAMPLES[task][1])
    code, stdout, _ = run_cli("evaluate", out / "model", "--test-file", dev)
    assert code == 0
    assert seqnlp.evaluate(out / "model", dev) == json.loads(stdout)
    assert seqnlp.evaluate(seqnlp.load(out / "model"), test_file=dev)["test"] == metrics["dev"]


def test_entity_offsets_slice_the_input_to_the_entity_text(tmp_path):
    from tests.conftest import TINY_NER, write_tiny_conll

    train, dev = write_tiny_conll(tmp_path)
    assert (
        train_cli(
            "ner",
            train,
            dev,
            tmp_path / "run",
            "--epochs",
            "10",
            "--lr",
            "0.01",
            *TINY_NER,
        )[0]
        == 0
    )
    text = "Anna Berg visited Berlin, and Acme Corp hired Tom."
    result = seqnlp.load(tmp_path / "run" / "model").predict(text)
    entities = result.to_dict()["entities"]
    assert entities, "the tagger found no entity"
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert 0 < entity["score"] <= 1
    assert [t.text for t in result.tokens][3:5] == ["Berlin", ","]


def test_a_single_input_gives_a_single_prediction_and_lists_of_tokens_are_read_as_tokens(sample_run):
    _, out, _ = sample_run("ner")
    model = seqnlp.load(out / "model")
    tokenized = model.predict([["New York", "City", "."]])[0]
    assert [(t.text, t.start, t.end) for t in tokenized.tokens] == [("New York", 0, 8), ("City", 9, 13), (".", 14, 15)]
    assert isinstance(model.predict("New York City."), seqnlp.Tagging)
    assert [t.text for t in model.predict("New York City.").tokens] == ["New", "York", "City", "."]
    assert [t.text for t in model.predict("New York City.", pretokenized=True).tokens] == ["New", "York", "City."]


def test_unknown_or_invalid_options_are_errors(trained):
    task, out, _ = trained
    model = seqnlp.load(out / "model")
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        model.predict(INPUTS[task], colour="red")
    with pytest.raises(ConfigError, match="inputs\\[0\\] must be a string"):
        model.predict([3])
    with pytest.raises(
        ConfigError, match=r"inputs\[1\] is not Unicode text: a lone surrogate '\\udc00' at character 2"
    ):
        model.predict(["fine", "ok\udc00"])


def test_sentiment_probabilities_cover_every_class_and_sum_to_one(sample_run):
    _, out, _ = sample_run("sentiment")
    model = seqnlp.load(out / "model")
    result = model.predict("a gorgeous , witty film")
    assert set(result.probabilities) == set(model.labels)
    assert sum(result.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert result.score == max(result.probabilities.values())


def test_translation_returns_an_n_best_list_when_asked(sample_run):
    _, out, _ = sample_run("translate")
    result = seqnlp.load(out / "model").predict("Ein Mann schläft.", n_best=2)
    assert len(result.n_best) == 2 and result.n_best[0]["translation"] == result.translation
    assert result.n_best[0]["score"] >= result.n_best[1]["score"]


def test_the_version_printed_is_the_installed_distributions():
    from importlib.metadata import version

    code, stdout, _ = run_cli("--version")
    assert code == 0 and stdout.strip() == f"seqnlp {version('seqnlp')}"
    assert seqnlp.__version__ == version("seqnlp")


def test_the_package_shows_its_api():
    assert {"load", "train", "evaluate", "Model", "Tagging", "__version__"} <= set(dir(seqnlp))


# -- CRF marginals ------------------------------------------------------------------------


def random_crf(tags, allowed=None, seed=0):
    torch.manual_seed(seed)
    crf = CRF(len(tags), allowed)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def sequence_probabilities(crf, emissions, length):
    """P(y) of every tag sequence of one sentence, by enumeration."""
    k = emissions.size(-1)
    sequences = list(itertools.product(range(k), repeat=length))
    mask = torch.ones(len(sequences), length, dtype=torch.bool)
    tags = torch.tensor(sequences)
    with torch.no_grad():
        scores = crf.score(emissions[:length].expand(len(sequences), -1, -1), tags, mask)
    return sequences, torch.softmax(scores, dim=0)


def test_crf_marginals_sum_to_one_over_tags_at_every_token():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    crf = random_crf(labels, allowed_transitions(labels, "iob2"))
    emissions = torch.randn(3, 6, len(labels))
    mask = torch.arange(6)[None, :] < torch.tensor([6, 4, 1])[:, None]
    marginals = crf.marginals(emissions, mask)
    assert torch.allclose(marginals.sum(-1), mask.float(), atol=1e-5)


def test_crf_marginals_equal_the_enumerated_distribution():
    crf = random_crf(["O", "B-X", "I-X"])
    emissions = torch.randn(1, 4, 3)
    sequences, probabilities = sequence_probabilities(crf, emissions[0], 3)
    marginals = crf.marginals(emissions, torch.tensor([[True, True, True, False]]))[0]
    for t in range(3):
        for k in range(3):
            expected = sum(float(p) for s, p in zip(sequences, probabilities) if s[t] == k)
            assert float(marginals[t, k]) == pytest.approx(expected, abs=1e-5)


def test_an_entitys_probability_is_that_of_the_sequences_holding_exactly_that_entity():
    labels = ["O", "B-X", "I-X"]
    crf = random_crf(labels, seed=3)
    emissions = torch.randn(1, 5, 3)
    mask = torch.ones(1, 5, dtype=torch.bool)
    continues = continuation_mask(labels)
    sequences, probabilities = sequence_probabilities(crf, emissions[0], 5)
    spans = [(0, 1, [1, 2]), (0, 0, [2]), (0, 2, [1, 2, 2]), (0, 4, [1])]
    got = [math.exp(x) for x in crf.span_log_probs(emissions, mask, spans, continues)]
    for (_, start, span_tags), probability in zip(spans, got):
        end = start + len(span_tags)
        expected = sum(
            float(p)
            for s, p in zip(sequences, probabilities)
            if list(s[start:end]) == span_tags
            and not (start > 0 and continues[s[start - 1], span_tags[0]])
            and not (end < 5 and continues[span_tags[-1], s[end]])
        )
        assert probability == pytest.approx(expected, rel=1e-4)


# -- raw text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Peter Blackburn visited Brussels.", ["Peter", "Blackburn", "visited", "Brussels", "."]),
        (
            "John's team doesn't play in the U.S. (yet).",
            ["John", "'s", "team", "does", "n't", "play", "in", "the", "U.S.", "(", "yet", ")", "."],
        ),
        (
            "Shares rose 1,250.5 points at 10:30, said O'Neill.",
            ["Shares", "rose", "1,250.5", "points", "at", "10:30", ",", "said", "O'Neill", "."],
        ),
        (
            'Franco-German talks; AT&T says "no"...',
            ["Franco-German", "talks", ";", "AT&T", "says", '"', "no", '"', "..."],
        ),
    ],
)
def test_raw_text_is_tokenized_as_conll_2003_is(text, tokens):
    found = tokenize(text)
    assert [t for t, _, _ in found] == tokens
    assert all(text[start:end] == t for t, start, end in found)
