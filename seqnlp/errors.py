"""User-facing errors: bad input is reported as ``FILE:LINE: what is wrong``."""

from __future__ import annotations

import sys
from collections.abc import Iterator


class SeqNLPError(Exception):
    """An error caused by the user's input or configuration, never by a bug.

    The CLI prints it as one line and exits with status 2.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return where + self.message


class DataError(SeqNLPError):
    """Malformed, empty or inconsistent data."""


class ConfigError(SeqNLPError):
    """Unknown or invalid configuration."""


def unreadable(err: OSError, path, expected: str = "a file", kind: type = None) -> "SeqNLPError":
    """The one-line error for a file that cannot be opened: missing (or a dangling link), a folder, forbidden."""
    from pathlib import Path

    kind = kind or DataError
    if isinstance(err, FileNotFoundError):
        message = "file not found" + (" (a dangling link)" if Path(path).is_symlink() else "")
    elif isinstance(err, IsADirectoryError):
        message = f"is a directory, expected {expected}"
    elif isinstance(err, PermissionError):
        message = "permission denied (cannot read the file)"
    else:
        message = f"cannot read: {err.strerror or err}"
    return kind(message, str(path))


def shorten(text: str, limit: int = 80) -> str:
    """Input echoed in an error line is cut: a 1 MB bad token must not become a 1 MB error."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


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
            raise DataError(f"invalid UTF-8 byte 0x{raw[err.start]:02x} (the file must be UTF-8)", name, number) from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        yield line.removesuffix("\n").removesuffix("\r")


def read_text(path) -> str:
    return "\n".join(read_text_lines(path))
