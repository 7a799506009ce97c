"""User-facing errors: bad input is reported as ``FILE:LINE: what is wrong``."""

from __future__ import annotations


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


def read_text_lines(path) -> list[str]:
    """Read a UTF-8 text file as lines (without newlines), naming the line of any invalid byte."""
    path = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a file", path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(f"invalid UTF-8 byte 0x{raw[err.start]:02x} (the file must be UTF-8)", path, line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.splitlines()


def read_text(path) -> str:
    return "\n".join(read_text_lines(path))
