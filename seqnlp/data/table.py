"""TSV / CSV / JSONL files with a header: records of named columns, each with its line number."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from seqnlp.data.text import read_text, read_text_lines
from seqnlp.errors import DataError, shorten, unreadable


def table_format(path: str) -> str:
    lowered = path.lower()
    for ext, kind in ((".jsonl", "jsonl"), (".json", "jsonl"), (".tsv", "tsv"), (".csv", "csv")):
        if lowered.endswith(ext):
            return kind
    raise DataError("unknown table format (use .tsv, .csv or .jsonl)", path)


def read_records(path, columns: Sequence[str]) -> list[tuple[int, dict]]:
    """``(line, {column: value})`` for every non-blank row, keeping only ``columns`` (all required)."""
    path = str(path)
    kind = table_format(path)
    records: list[tuple[int, dict]] = []
    if kind == "jsonl":
        for number, line in enumerate(read_text_lines(path), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"invalid JSON: {err.msg}", path, number) from None
            except RecursionError:
                raise DataError("invalid JSON: nested too deeply", path, number) from None
            if not isinstance(row, dict):
                raise DataError("each line must be a JSON object", path, number)
            missing = [c for c in columns if c not in row]
            if missing:
                raise DataError(f"no field {missing[0]!r} (fields: {', '.join(row)})", path, number)
            records.append((number, {c: row[c] for c in columns}))
        return records
    # The TSV reader does not treat quotes specially: tokenized corpora (SST-2) contain bare quotes.
    text = read_text(path)
    reader = (
        csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
        if kind == "tsv"
        else csv.reader(io.StringIO(text))
    )
    try:
        header = next(reader)
    except StopIteration:
        raise DataError("empty file (expected a header line)", path) from None
    except csv.Error as err:
        raise DataError(f"malformed header: {err}", path, 1) from None
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"no column {shorten(repr(missing[0]))} in the header (columns: {shorten(', '.join(header))})", path, 1
        )
    positions = [header.index(c) for c in columns]
    try:
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"found {len(row)} fields, the header has {len(header)}", path, number)
            records.append((number, {c: row[i] for c, i in zip(columns, positions)}))
    except csv.Error as err:
        raise DataError(f"malformed row: {err}", path, reader.line_num) from None
    return records


def pick_column(path: str, candidates: Sequence[str]) -> str:
    """The first of ``candidates`` present in the file's header (or first JSON object).

    Reads only up to the first non-blank line; encoding errors are left for ``read_records`` to report.
    """
    first = ""
    try:
        with open(path, "rb") as handle:
            for raw in handle:
                if raw.strip():
                    first = raw.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
                    break
    except OSError as err:
        raise unreadable(err, path) from None
    if table_format(path) == "jsonl":
        try:
            first_row = json.loads(first)
        except (json.JSONDecodeError, RecursionError):
            return candidates[0]  # read_records names the line and what is wrong with it
        names = [str(n) for n in first_row] if isinstance(first_row, dict) else []
    else:
        try:
            names = [
                h.strip() for h in next(csv.reader([first], delimiter="\t" if table_format(path) == "tsv" else ","), [])
            ]
        except csv.Error:
            names = []
    for name in candidates:
        if name in names:
            return name
    raise DataError(
        f"no column named {' or '.join(map(repr, candidates))} (columns: {shorten(', '.join(names))})", path, 1
    )
