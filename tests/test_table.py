import pytest

from seqnlp.data.table import pick_column, read_records
from seqnlp.errors import DataError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_keeps_bare_quotes_and_line_numbers(tmp_path):
    path = write(tmp_path, "d.tsv", 'sentence\tlabel\nit \'s a " quoted " film\t1\n\nbad\t0\n')
    assert read_records(path, ["sentence", "label"]) == [
        (2, {"sentence": 'it \'s a " quoted " film', "label": "1"}),
        (4, {"sentence": "bad", "label": "0"}),
    ]


def test_csv_with_quoted_commas(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\n"good, really",pos\n')
    assert read_records(path, ["text", "label"])[0][1] == {"text": "good, really", "label": "pos"}


def test_jsonl_rows(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "fine", "label": 3}\n\n{"text": "meh", "label": 1}\n')
    assert [r[0] for r in read_records(path, ["text", "label"])] == [1, 3]


def test_line_separator_characters_stay_inside_their_row(tmp_path):
    # JSON strings and TSV cells may hold U+2028 / U+0085 unescaped: only \n ends a row
    path = write(tmp_path, "d.jsonl", '{"text": "one\u2028two", "label": 3}\n{"text": "x\x85y", "label": 1}\n')
    assert read_records(path, ["text", "label"]) == [
        (1, {"text": "one\u2028two", "label": 3}),
        (2, {"text": "x\x85y", "label": 1}),
    ]
    path = write(tmp_path, "d.tsv", "sentence\tlabel\none\u2028two\t1\n")
    assert read_records(path, ["sentence", "label"]) == [(2, {"sentence": "one\u2028two", "label": "1"})]


def test_missing_column_lists_the_header(tmp_path):
    path = write(tmp_path, "d.tsv", "sentence\tscore\nok\t1\n")
    with pytest.raises(DataError, match=r"d.tsv:1: no column 'label' in the header \(columns: sentence, score\)"):
        read_records(path, ["sentence", "label"])


def test_row_with_wrong_field_count_names_its_line(tmp_path):
    path = write(tmp_path, "d.tsv", "sentence\tlabel\nok\t1\nbroken row without tab\n")
    with pytest.raises(DataError, match=r"d.tsv:3: found 1 fields, the header has 2"):
        read_records(path, ["sentence", "label"])


def test_invalid_json_names_its_line(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: invalid JSON"):
        read_records(path, ["text", "label"])


def test_pick_column_prefers_the_first_candidate_present(tmp_path):
    path = write(tmp_path, "d.tsv", "text\tlabel\nok\t1\n")
    assert pick_column(str(path), ["sentence", "text"]) == "text"
