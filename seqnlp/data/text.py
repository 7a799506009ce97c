"""Reading UTF-8 text files line by line, naming the line of any invalid byte."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from seqnlp.errors import DataError, unreadable


def read_text_lines(path) -> list[str]:
    """Read a UTF-8 text file as lines (without newlines), naming the line of any invalid byte."""
    return list(iter_text_lines(str(path)))


def iter_text_lines(path: str) -> Iterator[str]:
    """The lines of a UTF-8 file (``-``: standard input), read one at a time, naming the line of any invalid byte.

    Lines end at ``\\n`` (a ``\\r`` before it is dropped) and nowhere else. ``str.splitlines`` also splits at
    U+2028, U+0085, form feeds and other characters that occur inside the lines of real corpora
    (web-crawled parallel text), which would shift every later line of one side of a parallel file
    against the other. Streams (``seqnlp predict``) get each line as soon as it is read.
    """
    if path == "-":
        yield from _decoded_lines(sys.stdin.buffer, "<stdin>")
        return
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise unreadable(err, path) from None
    with handle:
        yield from _decoded_lines(handle, path)


def _decoded_lines(handle, name: str) -> Iterator[str]:
    for number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"invalid UTF-8 byte 0x{raw[err.start]:02x} (the file must be UTF-8)", name, number
            ) from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        yield line.removesuffix("\n").removesuffix("\r")


def read_text(path) -> str:
    return "\n".join(read_text_lines(path))
