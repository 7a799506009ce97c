"""Translation: parallel readers, attention, beam search, and the recipe end to end."""

import dataclasses
import itertools
import json
import math
from functools import partial

import numpy as np
import pytest
import torch

from seqnlp.data.parallel import read_parallel
from seqnlp.errors import DataError
from seqnlp.nn.attention import Attention
from seqnlp.nn.beam import GNMTScorer, beam_search, coverage_penalty, length_penalty
from tests.conftest import run_cli, train_cli

BOS, EOS, PAD = 2, 3, 0
# A small translator; the switches are those of the full model (input feeding, separate embeddings).
SMALL_SEQ2SEQ = dict(
    embed_dim=8,
    hidden=8,
    decoder_hidden=8,
    layers=1,
    decoder_layers=1,
    cell="lstm",
    bidirectional=True,
    attention="general",
    input_feed=True,
    dropout=0.0,
    label_smoothing=0.1,
    tie_embeddings=False,
    joint_vocab=False,
    cell_impl="fused",
)


def seq2seq(src_vocab, tgt_vocab, pad_id=0, unk_id=1, output_ids=None, **settings):
    """A ``Seq2Seq`` of ``SMALL_SEQ2SEQ``'s sizes, ``settings`` overriding them."""
    from seqnlp.tasks.translate.model import Seq2Seq
    from seqnlp.tasks.translate.task import TranslateConfig

    config = TranslateConfig(**{**SMALL_SEQ2SEQ, **settings})
    return Seq2Seq(config, src_vocab, tgt_vocab, pad_id, unk_id, output_ids)


def search(model, src, src_lengths, alpha=0.6, beta=0.0, **options):
    """``beam_search`` with GNMT's length penalty ``alpha`` and coverage penalty ``beta``."""
    return beam_search(model, src, src_lengths, scorer=GNMTScorer(alpha, beta), **options)


def write_pair(tmp_path, name, de, en):
    (tmp_path / f"{name}.de").write_text(de, encoding="utf-8")
    (tmp_path / f"{name}.en").write_text(en, encoding="utf-8")
    return str(tmp_path / name)


def test_parallel_files_are_read_line_by_line(tmp_path):
    prefix = write_pair(tmp_path, "train", "Ein Hund.\nZwei Katzen.\n", "A dog.\nTwo cats.\n")
    pairs = read_parallel(prefix, "de", "en", "de", "en")
    assert [(p.src, p.tgt) for p in pairs] == [("Ein Hund.", "A dog."), ("Zwei Katzen.", "Two cats.")]


def test_parallel_lines_end_only_at_newlines(tmp_path):
    # U+2028, U+0085 and form feeds occur inside lines of crawled corpora: splitting at them would misalign the sides
    prefix = write_pair(
        tmp_path, "train", "Ein\u2028Hund.\r\nZwei\x85Katzen\x0c sind da.\n", "A dog.\r\nTwo cats are there.\n"
    )
    pairs = read_parallel(prefix, "de", "en", "de", "en")
    assert [(p.src, p.tgt) for p in pairs] == [
        ("Ein\u2028Hund.", "A dog."),
        ("Zwei\x85Katzen\x0c sind da.", "Two cats are there."),
    ]


def test_line_count_mismatch_names_both_files(tmp_path):
    prefix = write_pair(tmp_path, "train", "Ein Hund.\nZwei Katzen.\nDrei.\n", "A dog.\nTwo cats.\n")
    with pytest.raises(DataError) as err:
        read_parallel(prefix, "de", "en", "de", "en")
    assert (
        str(err.value)
        == f"{prefix}.de:3: {prefix}.en ends after 2 lines but {prefix}.de goes on (parallel files must have the "
        "same number of lines)"
    )


def test_empty_line_is_reported_with_file_and_line(tmp_path):
    prefix = write_pair(tmp_path, "train", "Ein Hund.\nZwei Katzen.\n", "A dog.\n \n")
    with pytest.raises(DataError, match=r"train\.en:2: empty line"):
        read_parallel(prefix, "de", "en", "de", "en")


def test_tsv_table_with_language_columns(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("de\ten\nEin Hund.\tA dog.\n", encoding="utf-8")
    assert read_parallel(str(path), "de", "en", "de", "en")[0].tgt == "A dog."


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_attention_gives_padding_no_weight(kind):
    torch.manual_seed(0)
    attention = Attention(kind, 4, 4)
    memory = torch.randn(2, 5, 4)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    context, weights = attention(torch.randn(2, 4), memory, mask)
    assert torch.allclose(weights.sum(1), torch.ones(2))
    assert weights[1, 2:].abs().sum() == 0
    assert context.shape == (2, 4)


class BigramModel:
    """Next-token log-probabilities that depend only on the previous token: a table, easy to search by hand."""

    def __init__(self, table):
        self.table = table

    class State:
        def expand(self, beam):
            return self

        def select(self, sentences, rows):
            return self

        def reorder(self, rows):
            return self

    def encode(self, src, lengths):
        return self.State()

    def next_log_probs(self, tokens, enc):
        return self.table[tokens], enc


def bigram_table(seed=0, vocab=6):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(vocab, vocab, generator=generator) * 2
    logits[:, [PAD, BOS]] = float("-inf")
    return logits.log_softmax(dim=1)


def exhaustive_best(table, max_len, alpha):
    best, best_score = None, -math.inf
    content = [t for t in range(table.size(0)) if t not in (PAD, BOS, EOS)]
    for n in range(0, max_len):
        for seq in itertools.product(content, repeat=n):
            tokens = [BOS, *seq, EOS]
            score = sum(float(table[a, b]) for a, b in zip(tokens, tokens[1:]))
            score /= float(length_penalty(torch.tensor(n + 1), alpha))
            if score > best_score:
                best, best_score = list(seq), score
    return best, best_score


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_finds_the_exhaustive_optimum(seed):
    """Exact without a length penalty: a sentence stops once its best raw score is a finished hypothesis."""
    table = bigram_table(seed)
    hyps = search(
        BigramModel(table),
        torch.zeros(1, 1, dtype=torch.long),
        torch.tensor([1]),
        beam=60,
        max_lengths=torch.tensor([4]),
        bos=BOS,
        eos=EOS,
        alpha=0.0,
    )
    best, score = exhaustive_best(table, 4, 0.0)
    assert hyps[0][0][0] == best and hyps[0][0][1] == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize("beam", [1, 4])
def test_the_search_over_numpy_arrays_finds_what_it_finds_over_tensors(beam):
    """One search for both runtimes: an export's NumPy arrays and a model's tensors give the same hypotheses."""
    table = bigram_table(5)
    options = dict(beam=beam, bos=BOS, eos=EOS, n_best=beam)
    lengths = dict(max_lengths=[6, 4, 7], min_lengths=[3, 1, 5])
    over_tensors = search(
        BigramModel(table),
        torch.zeros(3, 1, dtype=torch.long),
        torch.ones(3, dtype=torch.long),
        **{name: torch.tensor(value) for name, value in lengths.items()},
        **options,
    )
    over_arrays = search(
        BigramModel(table.numpy()),
        np.zeros((3, 1), dtype=np.int64),
        np.ones(3, dtype=np.int64),
        **{name: np.array(value) for name, value in lengths.items()},
        **options,
    )
    assert [[ids for ids, _ in hyps] for hyps in over_arrays] == [[ids for ids, _ in hyps] for hyps in over_tensors]
    assert [s for hyps in over_arrays for _, s in hyps] == pytest.approx(
        [s for hyps in over_tensors for _, s in hyps], abs=1e-5
    )
    assert all(len(ids) + 1 >= 5 for ids, _ in over_tensors[2])  # sentence 2 may not end before 5 tokens


def test_beam_one_is_greedy_and_n_best_is_sorted():
    table = bigram_table(3)
    greedy = search(
        BigramModel(table),
        torch.zeros(2, 1, dtype=torch.long),
        torch.tensor([1, 1]),
        beam=1,
        max_lengths=torch.tensor([6, 6]),
        bos=BOS,
        eos=EOS,
    )
    token, expected = BOS, []
    for _ in range(5):
        token = int(table[token].argmax())
        if token == EOS:
            break
        expected.append(token)
    assert greedy[0][0][0] == expected == greedy[1][0][0]
    nbest = search(
        BigramModel(table),
        torch.zeros(1, 1, dtype=torch.long),
        torch.tensor([1]),
        beam=4,
        max_lengths=torch.tensor([6]),
        bos=BOS,
        eos=EOS,
        n_best=3,
    )[0]
    assert len(nbest) == 3 and [s for _, s in nbest] == sorted((s for _, s in nbest), reverse=True)


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_each_hypothesis_score_is_its_log_probability_over_the_length_penalty_of_its_length(alpha):
    """Length: the hypothesis's tokens and its EOS; hypotheses of one sentence finish at different steps."""
    table = bigram_table(5)
    nbest = search(
        BigramModel(table),
        torch.zeros(1, 1, dtype=torch.long),
        torch.tensor([1]),
        beam=4,
        max_lengths=torch.tensor([7]),
        bos=BOS,
        eos=EOS,
        alpha=alpha,
        n_best=4,
    )[0]
    assert len({len(ids) for ids, _ in nbest}) > 1
    for ids, score in nbest:
        tokens = [BOS, *ids, EOS]
        log_p = sum(float(table[a, b]) for a, b in zip(tokens, tokens[1:]))
        assert score == pytest.approx(log_p / float(length_penalty(torch.tensor(len(ids) + 1), alpha)), abs=1e-5)


class PerSentenceBigramModel:
    """A bigram table per source sentence (``src[:, 0]`` picks it), so sentences finish at different steps."""

    def __init__(self, tables):
        self.tables = tables

    class State:
        def __init__(self, rows):
            self.rows = rows

        def expand(self, beam):
            return PerSentenceBigramModel.State(self.rows.repeat_interleave(beam))

        def select(self, sentences, rows):
            return PerSentenceBigramModel.State(self.rows[rows])

        def reorder(self, rows):
            return self

    def encode(self, src, lengths):
        return self.State(src[:, 0])

    def next_log_probs(self, tokens, enc):
        return self.tables[enc.rows, tokens], enc


def test_sentences_leaving_the_batch_early_do_not_change_any_result():
    tables = torch.stack([bigram_table(seed) for seed in range(4)])
    model = PerSentenceBigramModel(tables)
    src = torch.tensor([[0], [1], [2], [3]])
    max_lengths = torch.tensor([3, 7, 5, 6])
    together = search(
        model, src, torch.ones(4, dtype=torch.long), beam=3, max_lengths=max_lengths, bos=BOS, eos=EOS, n_best=2
    )
    for i in range(4):
        alone = search(
            model,
            src[i : i + 1],
            torch.ones(1, dtype=torch.long),
            beam=3,
            max_lengths=max_lengths[i : i + 1],
            bos=BOS,
            eos=EOS,
            n_best=2,
        )
        assert together[i] == alone[0]


def test_maximum_length_is_enforced_per_sentence():
    table = torch.full((6, 6), -10.0)
    table[:, 4] = 0.0  # token 4 forever: only the length limit ends it
    table = table.log_softmax(1)
    hyps = search(
        BigramModel(table),
        torch.zeros(2, 1, dtype=torch.long),
        torch.tensor([1, 1]),
        beam=2,
        max_lengths=torch.tensor([3, 5]),
        bos=BOS,
        eos=EOS,
    )
    assert hyps[0][0][0] == [4, 4] and hyps[1][0][0] == [4, 4, 4, 4]


def test_coverage_penalty_sums_the_log_of_capped_attention_over_real_positions():
    coverage = torch.tensor([[[0.5, 2.0, 0.0], [1.0, 0.25, 7.0]]])  # one sentence, two hypotheses, three positions
    real = torch.tensor([[True, True, False]])
    assert coverage_penalty(coverage, real)[0].tolist() == pytest.approx([math.log(0.5), math.log(0.25)])


def test_negative_coverage_penalty_is_a_config_error():
    from seqnlp.config import ConfigError
    from seqnlp.tasks.translate.task import TranslateConfig

    with pytest.raises(ConfigError, match=r"invalid value for coverage_penalty: -0.1 \(must be >= 0.0"):
        TranslateConfig(coverage_penalty=-0.1).validate()


def test_checkpoints_are_selected_by_the_bleu_of_the_decoding_beam(monkeypatch):
    import sacrebleu

    from seqnlp.data.parallel import SentencePair
    from seqnlp.tasks.translate.task import TranslateConfig, TranslateTask

    task = TranslateTask(TranslateConfig(beam=4))
    beams = []
    outputs = {
        "Ein Hund läuft.": "A dog walks.",
        "Eine Frau liest ein Buch im Park.": "A woman reads a book in a park.",
    }
    monkeypatch.setattr(
        task,
        "translate",
        lambda model, sentences, beam: beams.append(beam) or [[(outputs[s], -1.0), ("worse", -9.0)] for s in sentences],
    )
    pairs = [
        SentencePair("Ein Hund läuft.", "A dog runs.", "val:1"),
        SentencePair("Eine Frau liest ein Buch im Park.", "A woman is reading a book in the park.", "val:2"),
    ]
    # the selection score is sacreBLEU's corpus BLEU of each sentence's best hypothesis against its own reference
    expected = sacrebleu.corpus_bleu(list(outputs.values()), [[p.tgt for p in pairs]]).score
    assert 0 < expected < 100
    assert task.evaluate(None, pairs, selection=True)["bleu"] == pytest.approx(expected)
    task.config.selection_beam = 1  # greedy selection, for large dev sets
    task.evaluate(None, pairs, selection=True)
    assert beams == [4, 1]


class AttendingBigramModel(BigramModel):
    """A bigram table whose attention falls wholly on one of two source positions, chosen by the token fed."""

    def __init__(self, table, focus):
        super().__init__(table)
        self.focus = focus

    def next_log_probs(self, tokens, enc):
        enc = self.State()
        enc.attention = torch.nn.functional.one_hot(self.focus[tokens], 2).float()
        return self.table[tokens], enc


def test_coverage_penalty_prefers_the_hypothesis_that_attends_to_every_source_position():
    """[5] is likelier, but its steps attend only to position 0; [4] covers both. Once a hypothesis has
    ended, the steps it keeps taking while others are open (feeding EOS, which attends to position 1)
    add no coverage."""
    table = torch.full((6, 6), float("-inf"))
    table[BOS, [5, 4, 1]] = torch.tensor([0.5, 0.3, 0.2]).log()
    table[[4, 5], EOS] = 0.0
    table[1, [1, EOS]] = torch.tensor([0.99, 0.01]).log()  # [1, 1, ...] stays open to the length limit
    table[EOS, EOS] = 0.0
    focus = torch.tensor([0, 0, 0, 1, 1, 0])  # position attended to when each token is fed (BOS -> 0)
    args = dict(
        src=torch.zeros(1, 2, dtype=torch.long),
        src_lengths=torch.tensor([2]),
        beam=3,
        max_lengths=torch.tensor([4]),
        bos=BOS,
        eos=EOS,
        alpha=0.0,
        n_best=3,
    )
    plain = search(AttendingBigramModel(table, focus), **args)[0]
    assert [ids for ids, _ in plain[:2]] == [[5], [4]]
    covered = search(AttendingBigramModel(table, focus), **args, beta=0.1)[0]
    assert [ids for ids, _ in covered[:2]] == [[4], [5]]
    assert covered[0][1] == pytest.approx(math.log(0.3))  # both positions attended once: no penalty
    assert covered[1][1] == pytest.approx(math.log(0.5) + 0.1 * math.log(1e-6))  # position 1 never attended


TINY = [
    "--embed-dim",
    "16",
    "--hidden",
    "16",
    "--decoder-hidden",
    "16",
    "--vocab-size",
    "60",
    "--batch-size",
    "8",
    "--epochs",
    "2",
    "--beam",
    "3",
    "--quiet",
]


@pytest.fixture
def parallel(tmp_path):
    de = ["Ein Hund läuft.", "Eine Frau liest.", "Zwei Männer laufen.", "Ein Kind spielt."] * 6
    en = ["A dog runs.", "A woman reads.", "Two men run.", "A child plays."] * 6
    return write_pair(tmp_path, "train", "\n".join(de) + "\n", "\n".join(en) + "\n"), write_pair(
        tmp_path, "val", "\n".join(de[:4]) + "\n", "\n".join(en[:4]) + "\n"
    )


def test_recipe_trains_scores_with_sacrebleu_and_translates(tmp_path, parallel):
    train, val = parallel
    out = tmp_path / "run"
    code, _, err = train_cli("translate", train, val, out, *TINY)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["dev"]) >= {"bleu", "chrf", "signature", "bleu_by_source_length"}
    assert metrics["dev"]["signature"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "sample translations" in (out / "report.md").read_text()
    assert (out / "model" / "source.model").exists()
    code, stdout, _ = run_cli("evaluate", out / "model", "--test-file", val)
    assert json.loads(stdout)["test"] == metrics["dev"]
    inputs = tmp_path / "in.txt"
    inputs.write_text("Ein Hund läuft.\nEine Frau liest.\n", encoding="utf-8")
    code, stdout, err = run_cli("predict", out / "model", inputs, "--beam", "2")
    assert code == 0, err
    assert len(stdout.splitlines()) == 2 and "▁" not in stdout
    code, stdout, err = run_cli(
        "predict", out / "model", inputs, "--beam", "3", "--set", "n_best=2", "--set", "coverage_penalty=0"
    )
    assert code == 0, err
    assert [line.count(" ||| ") for line in stdout.splitlines()] == [2, 2]  # two scored translations per input


def test_models_saved_before_the_coverage_penalty_decode_without_it(tmp_path, parallel):
    from seqnlp.tasks.base import load_model_dir

    train, _ = parallel
    out = tmp_path / "run"
    assert (
        run_cli(
            "train",
            "translate",
            "--train-file",
            train,
            "--output-dir",
            out,
            *TINY,
            "--epochs",
            "1",
            "--coverage-penalty",
            "0.15",
        )[0]
        == 0
    )
    assert load_model_dir(out / "model")[0].config.coverage_penalty == 0.15
    config_file = out / "model" / "config.json"
    saved = json.loads(config_file.read_text())
    del saved["config"]["coverage_penalty"]
    config_file.write_text(json.dumps(saved))
    assert load_model_dir(out / "model")[0].config.coverage_penalty == 0.0


def test_hf_translation_dict_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {
        "translation": [
            {"de": "Ein Hund läuft.", "en": "A dog runs."},
            {"de": "Eine Frau liest.", "en": "A woman reads."},
        ]
        * 8
    }
    split = datasets.Dataset.from_dict(rows)
    datasets.DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "wmt-like"))
    out = tmp_path / "run"
    code, _, err = run_cli(
        "train", "translate", "--dataset", tmp_path / "wmt-like", "--output-dir", out, *TINY, "--epochs", "1"
    )
    assert code == 0, err
    code, _, err = run_cli(
        "train",
        "translate",
        "--dataset",
        tmp_path / "wmt-like",
        "--src-lang",
        "fr",
        "--output-dir",
        out,
        "--overwrite",
        *TINY,
    )
    assert code == 2 and "has no language 'fr' (has: de, en)" in err


def test_minimum_length_keeps_hypotheses_open():
    table = torch.full((6, 6), -10.0)
    table[:, EOS] = 0.0  # EOS at once, unless forbidden
    table = table.log_softmax(1)
    hyps = search(
        BigramModel(table),
        torch.zeros(2, 1, dtype=torch.long),
        torch.tensor([1, 1]),
        beam=2,
        max_lengths=torch.tensor([9, 9]),
        bos=BOS,
        eos=EOS,
        min_lengths=torch.tensor([1, 4]),
    )
    assert hyps[0][0][0] == [] and len(hyps[1][0][0]) == 3


def test_output_layer_scores_only_the_target_side_subwords():
    torch.manual_seed(0)
    allowed = [EOS, 5, 7, 9]
    model = seq2seq(12, 12, embed_dim=8, hidden=8, decoder_hidden=8, dropout=0.0, output_ids=allowed, unk_id=1)
    src = torch.tensor([[4, 6, 8], [6, 8, PAD]])
    batch = {
        "src": src,
        "src_lengths": torch.tensor([3, 2]),
        "tgt_in": torch.tensor([[BOS, 5, 7], [BOS, 9, PAD]]),
        "tgt_out": torch.tensor([[5, 7, EOS], [9, EOS, PAD]]),
    }
    model(batch).backward()
    touched = (model.out.bias.grad != 0).nonzero().squeeze(1).tolist()
    assert touched == sorted([1, *allowed])  # the unknown subword stays an output: unseen targets map to it
    model.eval()
    hyps = search(
        model.decoder(), src, batch["src_lengths"], beam=3, max_lengths=torch.tensor([6, 6]), bos=BOS, eos=EOS
    )
    assert all(set(ids) <= {1, *allowed} for nbest in hyps for ids, _ in nbest)


@pytest.mark.parametrize("joint_vocab", [True, False])
def test_embeddings_start_at_the_scale_of_their_dimension_with_zero_padding(joint_vocab):
    torch.manual_seed(0)
    model = seq2seq(
        400, 300, embed_dim=64, hidden=8, decoder_hidden=8, tie_embeddings=True, joint_vocab=joint_vocab, pad_id=PAD
    )
    for embedding in (model.src_embed, model.tgt_embed):
        assert embedding.weight[PAD].abs().sum() == 0
        assert embedding.weight[PAD + 1 :].std().item() == pytest.approx(64**-0.5, rel=0.05)  # PyTorch's default: 1
    assert model.out.weight is model.tgt_embed.weight


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("input_feed", [True, False])
def test_decoder_step_equals_the_torch_cell_it_is_built_from(cell, input_feed):
    """The step loop feeds precomputed embedding gates to the functional cell and mixes precomputed attention
    values; the result is the plain nn cell's, and Luong's ``tanh(W_c [h; context])`` over the encoder states."""
    torch.manual_seed(0)
    model = seq2seq(
        12, 12, embed_dim=6, hidden=5, decoder_hidden=4, decoder_layers=2, cell=cell, input_feed=input_feed, dropout=0.0
    ).eval()
    src, lengths = torch.tensor([[4, 6, 8]]), torch.tensor([3])
    enc = model.encode(src, lengths, model.step_weights())
    tokens = torch.tensor([5])
    attentional, state = model.decode_step(model.embedding_gates(tokens), enc)
    x = model.tgt_embed(tokens)
    if input_feed:
        x = torch.cat([x, enc.state.feed], dim=1)
    for layer, nn_cell in enumerate(model.cells):
        expected = nn_cell(x, enc.state.layers[layer] if cell == "lstm" else enc.state.layers[layer][0])
        expected = expected if cell == "lstm" else (expected,)
        for a, b in zip(state.layers[layer], expected):
            assert torch.allclose(a, b, atol=1e-6)
        x = expected[0]
    memory, _ = model.encoder(model.src_embed(src), lengths)
    context, weights = model.attention(x, memory, src != PAD)
    assert torch.allclose(attentional, torch.tanh(model.combine(torch.cat([x, context], dim=1))), atol=1e-6)
    assert torch.allclose(state.attention, weights, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("per_row_gates", [False, True])
def test_joint_product_cell_step_equals_the_torch_cell_function(cell, per_row_gates):
    """LSTM and Elman steps take ``[x; h] @ [W_ih | W_hh]^T`` in one product; per-row gates replace the summed bias."""
    from seqnlp.nn.cells import CELL_CLASSES, cell_step
    from seqnlp.nn.products import DenseProduct

    torch.manual_seed(0)
    hidden, rows = 4, 3
    size = CELL_CLASSES[cell].gates * hidden
    x, h, c = torch.randn(rows, 5), torch.randn(rows, hidden), torch.randn(rows, hidden)
    weight_ih, weight_hh, bias_hh = torch.randn(size, 5), torch.randn(size, hidden), torch.randn(size)
    bias_ih = (
        torch.randn(rows, size) if per_row_gates else torch.randn(size)
    )  # PyTorch's CPU cells add a [N, G] bias row by row
    state = (h, c) if cell == "lstm" else (h,)
    joint = DenseProduct(torch.cat([weight_ih, weight_hh], dim=1), None if per_row_gates else bias_ih + bias_hh)
    stepped = cell_step(cell, x, state, (joint,), bias_ih + bias_hh if per_row_gates else None)
    if cell == "lstm":
        expected = torch.lstm_cell(x, state, weight_ih, weight_hh, bias_ih, bias_hh)
    else:
        expected = (torch.rnn_tanh_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh),)
    for a, b in zip(stepped, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("step_input", [5, 0])
def test_gru_cell_step_equals_the_torch_cell_function(step_input):
    """A GRU step keeps its input and recurrent products apart; per-row gates replace the input bias; no step input, no
    input product."""
    from seqnlp.nn.cells import cell_step
    from seqnlp.nn.products import DenseProduct

    torch.manual_seed(0)
    hidden, rows = 4, 3
    x, h = torch.randn(rows, step_input), torch.randn(rows, hidden)
    weight_ih, weight_hh, gates, bias_hh = (
        torch.randn(3 * hidden, step_input),
        torch.randn(3 * hidden, hidden),
        torch.randn(rows, 3 * hidden),
        torch.randn(3 * hidden),
    )
    input_product = DenseProduct(weight_ih) if step_input else None
    (stepped,) = cell_step("gru", x, (h,), (input_product, DenseProduct(weight_hh, bias_hh)), gates)
    assert torch.allclose(stepped, torch.gru_cell(x, h, weight_ih, weight_hh, gates, bias_hh), atol=1e-6)


def test_int8_product_is_close_to_the_float_product_and_adds_its_bias_or_the_given_gates():
    from seqnlp.nn.products import DenseProduct, Int8Product

    torch.manual_seed(0)
    weight, bias, gates = torch.randn(40, 32) * 0.1, torch.randn(40), torch.randn(6, 40)
    x = torch.rand(6, 32) * 2 - 1  # tanh-bounded, as a decoder's states are
    exact, int8 = DenseProduct(weight, bias), Int8Product(weight, bias)
    scale = (x @ weight.t()).abs().max()
    assert (int8(x) - exact(x)).abs().max() < 0.02 * scale
    assert (int8(x, gates) - exact(x, gates)).abs().max() < 0.02 * scale
    assert not torch.equal(int8(x), exact(x))  # really quantized


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("input_feed", [False, True])
def test_int8_decoding_scores_next_subwords_like_float_decoding(cell, input_feed):
    from seqnlp.nn.products import Int8Product

    torch.manual_seed(0)
    model = seq2seq(
        12,
        12,
        embed_dim=16,
        hidden=16,
        decoder_hidden=16,
        decoder_layers=2,
        cell=cell,
        input_feed=input_feed,
        dropout=0.0,
    ).eval()
    src, lengths, tokens = torch.tensor([[4, 6, 8], [6, 8, PAD]]), torch.tensor([3, 2]), torch.tensor([5, 11])
    decoder = model.decoder()
    exact, _ = decoder.next_log_probs(tokens, decoder.encode(src, lengths))
    decoder = model.decoder(int8=True)
    assert all(isinstance(p, Int8Product) for layer in decoder.weights.layers for p in layer if p is not None)
    assert isinstance(decoder.weights.projection, Int8Product)
    int8, _ = decoder.next_log_probs(tokens, decoder.encode(src, lengths))
    assert (int8 - exact).abs().max() < 0.02 * exact.abs().max()
    assert not torch.equal(int8, exact)


def test_int8_is_for_cpu_weights_only():
    """Weights on another device (here ``meta``, standing in for a GPU) keep float products."""
    from seqnlp.nn.products import DenseProduct, Int8Product, decoding_product

    assert isinstance(decoding_product(torch.randn(4, 3), None, int8=True), Int8Product)
    assert isinstance(decoding_product(torch.empty(4, 3, device="meta"), None, int8=True), DenseProduct)
    assert isinstance(decoding_product(torch.randn(4, 3), None, int8=False), DenseProduct)


def test_int8_decoding_falls_back_to_float_with_a_warning_where_pytorch_cannot_quantize(monkeypatch):
    from seqnlp.nn import products

    def unavailable(*args, **kwargs):
        raise RuntimeError("quantized engine unavailable")

    monkeypatch.setattr(products.torch, "quantize_per_channel", unavailable)
    torch.manual_seed(0)
    model = seq2seq(12, 12, embed_dim=6, hidden=5, decoder_hidden=4, dropout=0.0).eval()
    src, lengths, tokens = torch.tensor([[4, 6, 8]]), torch.tensor([3]), torch.tensor([5])
    decoder = model.decoder()
    exact, _ = decoder.next_log_probs(tokens, decoder.encode(src, lengths))
    with pytest.warns(RuntimeWarning, match="int8 decoding is not available"):
        decoder = model.decoder(int8=True)
    fallback, _ = decoder.next_log_probs(tokens, decoder.encode(src, lengths))
    assert torch.equal(fallback, exact)


def _step_loop(model, tgt_in, hyps):
    """Teacher forcing one ``decode_step`` at a time, differentiated by autograd: the reference of the fast paths."""
    outputs = []
    for t in range(tgt_in.size(1)):
        attentional, state = model.decode_step(model.embedding_gates(tgt_in[:, t]), hyps)
        hyps = dataclasses.replace(hyps, state=state)
        outputs.append(attentional)
    return torch.stack(outputs, dim=1)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("attention", ["general", "additive"])
def test_fused_teacher_forcing_without_input_feeding_equals_the_step_loop(cell, attention):
    torch.manual_seed(0)
    model = seq2seq(
        12,
        12,
        embed_dim=6,
        hidden=5,
        decoder_hidden=4,
        decoder_layers=2,
        cell=cell,
        attention=attention,
        input_feed=False,
        dropout=0.0,
    ).eval()
    src, lengths = torch.tensor([[4, 6, 8], [6, 8, PAD]]), torch.tensor([3, 2])
    tgt_in = torch.tensor([[BOS, 5, 7, 9], [BOS, 9, 5, PAD]])
    fused = model.teacher_forced(tgt_in, model.encode(src, lengths))
    assert torch.allclose(fused, _step_loop(model, tgt_in, model.encode(src, lengths)), atol=1e-5)


def test_rows_added_to_round_the_output_layers_products_change_neither_loss_nor_gradients(monkeypatch):
    import seqnlp.tasks.translate.model as seq2seq_module

    torch.manual_seed(0)
    model = seq2seq(12, 12, input_feed=False)
    batch = {
        "src": torch.tensor([[4, 6, 8], [6, 8, PAD]]),
        "src_lengths": torch.tensor([3, 2]),
        "tgt_in": torch.tensor([[BOS, 5, 7, 9], [BOS, 9, 5, PAD]]),
        "tgt_out": torch.tensor([[5, 7, 9, EOS], [9, 5, EOS, PAD]]),
    }
    rows = []
    real_cross_entropy = seq2seq_module.cross_entropy
    monkeypatch.setattr(
        seq2seq_module, "cross_entropy", lambda logits, *a: rows.append(len(logits)) or real_cross_entropy(logits, *a)
    )

    def loss_and_gradients():
        loss = model(batch)
        return [loss, *torch.autograd.grad(loss, list(model.parameters()))]

    plain = loss_and_gradients()
    monkeypatch.setattr(seq2seq_module, "row_multiple", lambda rows, weight: 4)
    rounded = loss_and_gradients()
    assert rows == [7, 8]  # the 7 real target subwords, then rounded up to a multiple of 4
    for a, b in zip(plain, rounded):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("attention", ["general", "dot"])
def test_hand_differentiated_input_feeding_equals_the_step_loop_in_values_and_gradients(attention):
    torch.manual_seed(0)
    model = seq2seq(12, 12, embed_dim=6, hidden=3, decoder_hidden=6, attention=attention, tie_embeddings=True)
    assert model._hand_differentiated
    src, lengths = torch.tensor([[4, 6, 8], [6, 8, PAD]]), torch.tensor([3, 2])
    tgt_in = torch.tensor([[BOS, 5, 7, 9], [BOS, 9, 5, PAD]])
    weighting = torch.randn(2, 4, 6)  # a loss that reaches every output position with its own weight
    results = []
    for teacher_forced in (model.teacher_forced, partial(_step_loop, model)):
        model.zero_grad()
        outputs = teacher_forced(tgt_in, model.encode(src, lengths))
        (outputs * weighting).sum().backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
        results.append((outputs.detach(), grads))
    (fast, fast_grads), (loop, loop_grads) = results
    assert torch.allclose(fast, loop, atol=1e-6)
    assert fast_grads.keys() == loop_grads.keys()
    for name, grad in loop_grads.items():
        assert torch.allclose(fast_grads[name], grad, atol=1e-6), name


def test_hand_differentiated_input_feeding_passes_gradcheck():
    from seqnlp.nn.input_feeding import input_fed_lstm

    torch.manual_seed(0)
    batch, steps, sources, hidden, dim = 2, 3, 4, 3, 2
    inputs = [
        torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        for shape in [
            (batch, steps, 4 * hidden),  # gates
            (4 * hidden, dim + hidden),  # weight
            (batch, hidden),  # h0
            (batch, hidden),  # c0
            (batch, sources, hidden),  # keys
            (batch, sources, dim),  # values
        ]
    ]
    mask_bias = torch.zeros(batch, 1, sources, dtype=torch.float64)
    mask_bias[1, 0, 3] = float("-inf")  # a padding position of the second sentence
    combine = torch.randn(dim, hidden, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *xs: input_fed_lstm(*xs[:6], mask_bias, xs[6]), (*inputs, combine))


def _one_step_log_probs(model, decoder):
    """The next-token log-probabilities of ``decoder`` and of the model's own differentiable step, on the same
    inputs."""
    src, lengths, tokens = torch.tensor([[4, 6, 8], [6, 8, PAD]]), torch.tensor([3, 2]), torch.tensor([5, 11])
    expected, _ = model.next_logits(tokens, model.encode(src, lengths, model.step_weights()))
    given, _ = decoder.next_log_probs(tokens, decoder.encode(src, lengths))
    return given, expected.log_softmax(dim=1)


def test_the_decoder_looks_up_the_embedding_gates_of_the_current_weights():
    torch.manual_seed(0)
    model = seq2seq(12, 12, embed_dim=6, hidden=5, decoder_hidden=4, dropout=0.0).eval()
    with torch.no_grad():
        model.cells[0].weight_ih.data.mul_(2.0)  # a change no version counter sees
    decoder = model.decoder()
    assert decoder.weights.gate_table.shape == (12, 16)  # [V, 4H]
    looked_up, expected = _one_step_log_probs(model, decoder)
    assert torch.allclose(looked_up, expected, atol=1e-5)
    with pytest.raises(ValueError, match="evaluation-mode"):
        model.train().decoder()  # dropout would apply to the embeddings: no gate table then


def test_the_decoder_is_kept_until_an_optimizer_step_changes_the_weights():
    from seqnlp.training.optim import FusedOptimizer

    torch.manual_seed(0)
    model = seq2seq(12, 12, embed_dim=6, hidden=5, decoder_hidden=4, dropout=0.0)
    optimizer = FusedOptimizer(model.parameters(), "adam", lr=0.1)
    decoder = model.eval().decoder()
    assert model.decoder() is decoder  # nothing changed: the prepared weights are reused
    batch = {
        "src": torch.tensor([[4, 6, 8]]),
        "src_lengths": torch.tensor([3]),
        "tgt_in": torch.tensor([[2, 5, 7]]),
        "tgt_out": torch.tensor([[5, 7, 3]]),
    }
    model.train()(batch).backward()
    optimizer.step()  # fused kernels: they write the weights without autograd seeing it
    renewed = model.eval().decoder()
    assert renewed is not decoder
    given, expected = _one_step_log_probs(model, renewed)
    assert torch.allclose(given, expected, atol=1e-5)


def test_the_decoder_is_dropped_by_loaded_weights_and_kept_across_evaluation_calls(tmp_path):
    from seqnlp.storage.folders import load_weights, save_weights

    torch.manual_seed(0)
    model = seq2seq(12, 12, embed_dim=6, hidden=5, decoder_hidden=4, dropout=0.0).eval()
    other = seq2seq(12, 12, embed_dim=6, hidden=5, decoder_hidden=4, dropout=0.0)
    save_weights(other, tmp_path / "other.safetensors")
    decoder = model.decoder()
    assert model.eval().decoder() is decoder  # eval() again: the weights are the same
    load_weights(model, tmp_path / "other.safetensors")
    renewed = model.decoder()
    assert renewed is not decoder
    given, expected = _one_step_log_probs(model, renewed)
    assert torch.allclose(given, expected, atol=1e-5)
    model.weights_changed()
    assert model.decoder() is not renewed


def test_the_decoder_follows_the_weight_average_in_and_out():
    from seqnlp.training.averaging import WeightAverage

    torch.manual_seed(0)
    model = seq2seq(12, 12, embed_dim=6, hidden=5, decoder_hidden=4, dropout=0.0).eval()
    average = WeightAverage(model, decay=0.5)
    own_log_probs, _ = _one_step_log_probs(model, model.decoder())
    torch._foreach_mul_(average.average, 0.5)  # an average that differs from the weights
    with average.applied():
        given, expected = _one_step_log_probs(model, model.decoder())
        assert torch.allclose(given, expected, atol=1e-5)
        assert not torch.allclose(given, own_log_probs, atol=1e-3)
    after, _ = _one_step_log_probs(model, model.decoder())
    assert torch.allclose(after, own_log_probs, atol=1e-6)


def test_subword_sampling_segments_each_epoch_anew_and_reproducibly():
    from seqnlp.data.parallel import SentencePair
    from seqnlp.tasks.translate.task import TranslateConfig, TranslateTask

    words = ["Hund", "Katze", "Kinder", "spielen", "laufen", "schnell", "langsam", "Garten", "Straße", "Wasser"]
    pairs = [
        SentencePair(f"Die {a} {b} im {c}.", f"The {a} {b} in the {c}.", f"train:{i}")
        for i, (a, b, c) in enumerate(itertools.product(words, words[3:7], words[7:]))
    ]
    task = TranslateTask(TranslateConfig(vocab_size=60, subword_sampling=0.1))
    task.build_vocabularies(pairs)
    items = task.prepare(pairs)
    first, again, second = task.resegment(items, 0), task.resegment(items, 0), task.resegment(items, 1)
    assert first == again and first != second
    assert any(a["src"] != it["src"] for a, it in zip(first, items))  # not the usual segmentation
    assert all(task.src_sp.decode(a["src"]) == it["pair"].src for a, it in zip(first, items))  # the same text
    assert all(set(a["tgt"]) <= set(task.output_ids) for a in first + second)
    assert task.batches(items, shuffle=False).items is items  # evaluation keeps the usual segmentation


def test_long_inputs_are_translated_whole(monkeypatch):
    import seqnlp.tasks.translate.task as translate_module
    from seqnlp.data.parallel import SentencePair
    from seqnlp.tasks.translate.task import TranslateConfig, TranslateTask

    pairs = [
        SentencePair("Ein Hund läuft.", "A dog runs.", "train:1"),
        SentencePair("Eine Frau liest.", "A woman reads.", "train:2"),
    ] * 4
    task = TranslateTask(TranslateConfig(vocab_size=40, max_tokens=4, embed_dim=8, hidden=8, decoder_hidden=8))
    task.build_vocabularies(pairs)
    source = " ".join(["Ein Hund läuft."] * 10)  # far beyond twice the training cut of 4 subwords
    searched = []
    monkeypatch.setattr(
        translate_module,
        "beam_search",
        lambda model, src, lengths, **options: (
            searched.append((lengths.tolist(), options["max_lengths"].tolist())) or [[([], 0.0)]] * len(src)
        ),
    )
    task.translate(task.build_model(), [source])
    length = len(task.src_sp.encode(source))
    assert searched == [([length], [int(length * task.config.max_len_ratio) + 5])]
