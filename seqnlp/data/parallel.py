"""Parallel text: ``PREFIX.src`` / ``PREFIX.tgt`` line-aligned files, or a TSV/JSONL table with two columns."""

from __future__ import annotations

import os
from dataclasses import dataclass

from seqnlp.data.table import read_records, table_format
from seqnlp.data.text import read_text_lines
from seqnlp.errors import DataError


@dataclass(frozen=True)
class SentencePair:
    src: str
    tgt: str
    source: str = ""  # "FILE:LINE" of the source side


def read_parallel_files(prefix: str, src_lang: str, tgt_lang: str) -> list[SentencePair]:
    """Line-aligned ``prefix.src_lang`` and ``prefix.tgt_lang``; different line counts or empty lines are errors."""
    src_path, tgt_path = f"{prefix}.{src_lang}", f"{prefix}.{tgt_lang}"
    src_lines, tgt_lines = read_text_lines(src_path), read_text_lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        shorter, longer = (src_path, tgt_path) if len(src_lines) < len(tgt_lines) else (tgt_path, src_path)
        raise DataError(
            f"{shorter} ends after {min(len(src_lines), len(tgt_lines))} lines but {longer} goes on "
            f"(parallel files must have the same number of lines)",
            longer,
            min(len(src_lines), len(tgt_lines)) + 1,
        )
    pairs = []
    for number, (src, tgt) in enumerate(zip(src_lines, tgt_lines), start=1):
        for path, text in ((src_path, src), (tgt_path, tgt)):
            if not text.strip():
                raise DataError("empty line (every line must hold a sentence)", path, number)
        pairs.append(SentencePair(src.strip(), tgt.strip(), f"{src_path}:{number}"))
    return pairs


def read_parallel_table(path: str, src_column: str, tgt_column: str) -> list[SentencePair]:
    pairs = []
    for number, row in read_records(path, [src_column, tgt_column]):
        for column in (src_column, tgt_column):
            if row[column] is not None and not isinstance(row[column], str):
                raise DataError(f"{column!r} must be a string, not {type(row[column]).__name__}", path, number)
        src, tgt = (row[src_column] or "").strip(), (row[tgt_column] or "").strip()
        if not src or not tgt:
            raise DataError(f"empty {'source' if not src else 'target'} sentence", path, number)
        pairs.append(SentencePair(src, tgt, f"{path}:{number}"))
    return pairs


def read_parallel(path: str, src_lang: str, tgt_lang: str, src_column: str, tgt_column: str) -> list[SentencePair]:
    """A table when ``path`` is a .tsv/.csv/.jsonl file, else a prefix of two language files."""
    if os.path.isfile(path):
        table_format(path)  # raises for anything that is not a table
        return read_parallel_table(path, src_column, tgt_column)
    if not os.path.exists(f"{path}.{src_lang}"):
        raise DataError(
            f"no file {path}.{src_lang} (give a prefix with --src-lang/--tgt-lang, or a .tsv/.jsonl table)", path
        )
    return read_parallel_files(path, src_lang, tgt_lang)
