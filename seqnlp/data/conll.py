"""CoNLL column files: one token per line, a blank line between sentences."""

from __future__ import annotations

from dataclasses import dataclass

from seqnlp.data import tags as tagging
from seqnlp.data.hf import label_names, require_columns
from seqnlp.data.text import read_text_lines
from seqnlp.errors import DataError, shorten


@dataclass(frozen=True)
class TaggedSentence:
    tokens: list[str]
    tags: list[str]
    source: str = ""  # "FILE:LINE" of the sentence's first token, for error messages


def read_conll(path, token_column: int = 0, tag_column: int = -1, scheme: str = "iob2") -> list[TaggedSentence]:
    """Read sentences, validate every tag and convert them to ``scheme``.

    ``-DOCSTART-`` lines are skipped; columns are split on any whitespace.
    """
    path = str(path)
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    first_line = 0
    width = None

    def flush():
        if tokens:
            sentences.append(TaggedSentence(list(tokens), tagging.convert(tags, scheme), f"{path}:{first_line}"))
            tokens.clear()
            tags.clear()

    for number, line in enumerate(read_text_lines(path), start=1):
        columns = line.split()
        if not columns:
            flush()
            continue
        if columns[0] == "-DOCSTART-":
            flush()
            continue
        if len(columns) < 2:
            raise DataError(
                f"expected a token and a tag separated by whitespace, found one column {shorten(line.strip())!r}",
                path,
                number,
            )
        if width is None:
            width = len(columns)
        elif len(columns) != width:
            raise DataError(f"found {len(columns)} columns, earlier lines have {width}", path, number)
        try:
            token, tag = columns[token_column], columns[tag_column]
        except IndexError:
            raise DataError(
                f"no column {max(token_column, tag_column)} (the line has {len(columns)})", path, number
            ) from None
        try:
            tagging.split_tag(tag)
        except ValueError as err:
            raise DataError(str(err), path, number) from None
        if not tokens:
            first_line = number
        tokens.append(token)
        tags.append(tag)
    flush()
    if not sentences:
        raise DataError("no sentences found (expected CoNLL columns: token ... tag)", path)
    return sentences


def read_tagged_rows(dataset, tokens_field: str, tags_field: str, scheme: str, source: str) -> list[TaggedSentence]:
    """The sentences of a HuggingFace token-classification dataset: each row's token list and tag list (ClassLabel
    ids or strings), the tags converted to ``scheme``; an empty row is skipped, a bad one is a ``DataError`` naming
    ``source`` and the row."""
    require_columns(dataset, [tokens_field, tags_field], source)
    names = label_names(dataset, tags_field)
    sentences = []
    for row_number, row in enumerate(dataset):
        tokens, raw_tags = row[tokens_field], row[tags_field]
        where = f"{source}:row {row_number}"
        if len(tokens) != len(raw_tags):
            raise DataError(f"{where}: {len(tokens)} tokens but {len(raw_tags)} tags")
        if not tokens:
            continue
        tag_strings = [names[t] if names is not None and isinstance(t, int) else str(t) for t in raw_tags]
        try:
            converted = tagging.convert(tag_strings, scheme)
        except ValueError as err:
            raise DataError(f"{where}: {err}") from None
        sentences.append(TaggedSentence(list(tokens), converted, where))
    return sentences
