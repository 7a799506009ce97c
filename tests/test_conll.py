import pytest

from seqnlp.data.conll import read_conll
from seqnlp.errors import DataError


def write(tmp_path, text, name="data.txt", binary=False):
    path = tmp_path / name
    path.write_bytes(text) if binary else path.write_text(text, encoding="utf-8")
    return path


def test_reads_sentences_and_skips_docstart(tmp_path):
    path = write(tmp_path, "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n")
    sentences = read_conll(path, scheme="iob2")
    assert [s.tokens for s in sentences] == [["EU", "rejects"], ["Peter"]]
    assert [s.tags for s in sentences] == [["B-ORG", "O"], ["B-PER"]]
    assert sentences[1].source.endswith(":6")


def test_iob1_input_is_read_as_iob2(tmp_path):
    path = write(tmp_path, "Peter I-PER\nBlackburn I-PER\n")
    assert read_conll(path, scheme="iob2")[0].tags == ["B-PER", "I-PER"]


def test_configurable_columns(tmp_path):
    path = write(tmp_path, "x EU B-ORG NNP\n")
    assert read_conll(path, token_column=1, tag_column=2)[0].tokens == ["EU"]


def test_missing_tag_names_file_and_line(tmp_path):
    path = write(tmp_path, "EU B-ORG\nrejects\n")
    with pytest.raises(DataError) as err:
        read_conll(path)
    assert str(err.value).startswith(f"{path}:2: ")


def test_invalid_tag_names_line(tmp_path):
    path = write(tmp_path, "EU B-ORG\n\nrejects ORG\n")
    with pytest.raises(DataError, match=":3: invalid tag 'ORG'"):
        read_conll(path)


def test_inconsistent_column_count_is_reported(tmp_path):
    path = write(tmp_path, "EU NNP B-ORG\nrejects O\n")
    with pytest.raises(DataError, match=":2: found 2 columns, earlier lines have 3"):
        read_conll(path)


def test_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path, b"EU B-ORG\nM\xfcller B-PER\n", binary=True)
    with pytest.raises(DataError, match=r":2: invalid UTF-8 byte 0xfc"):
        read_conll(path)


def test_empty_file_is_an_error(tmp_path):
    path = write(tmp_path, "-DOCSTART- O\n\n")
    with pytest.raises(DataError, match="no sentences"):
        read_conll(path)
