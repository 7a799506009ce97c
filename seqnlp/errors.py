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


def unreadable(err: OSError, path, expected: str = "a file", kind: type = None) -> SeqNLPError:
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


class TrainingError(SeqNLPError):
    """Training cannot go on (for example a non-finite loss)."""


class DivergedError(TrainingError):
    """The loss grew past its bound: these settings fail, other settings of the same data may not."""


# What `pip install 'seqnlp[train]'` adds to the base install, which runs ONNX exports without them.
TRAINING_PACKAGES = ("torch", "datasets", "sacrebleu", "seqeval", "tqdm", "matplotlib")


def missing_training_package(err: ModuleNotFoundError) -> str | None:
    """The one-line error for a training package absent from a base (runtime-only) install; None for other modules."""
    name = (err.name or "").split(".")[0]
    if name not in TRAINING_PACKAGES:
        return None
    return (
        f"{name} is not installed: training and PyTorch models need pip install 'seqnlp[train]' "
        "(a folder of seqnlp export runs without it)"
    )
