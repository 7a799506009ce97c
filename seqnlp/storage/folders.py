"""Model directories (safetensors + JSON, nothing unpickled) and atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from seqnlp.errors import SeqNLPError, unreadable

if TYPE_CHECKING:  # torch is imported where tensors are made: the ONNX runtime never imports it
    import torch

FORMAT_VERSION = 1


# Written last into a saved folder, after everything else is on disk: a folder holding it is complete.
# Its sequence number orders the copies a crash can leave (target, target.old, .target.tmp-*).
COMPLETE_MARKER = ".seqnlp-complete.json"


def _fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to the disk before it is renamed into place."""
    if path.is_dir() and not hasattr(os, "O_DIRECTORY"):
        return  # Windows opens no directory to flush: its renames are what they are
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _shared_permissions(path: Path) -> None:
    """mkdtemp makes folders 0700 and safetensors files 0600; a saved model gets the modes the user's umask gives."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _sequence(folder: Path, fallback: int) -> int | None:
    """The save sequence number of a complete ``folder``; None if it is incomplete.

    ``target`` and ``target.old`` only ever come from renaming a complete folder, so they count as
    complete without the marker (folders saved before it existed), ranked by ``fallback``.
    """
    try:
        return int(json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8"))["sequence"])
    except (OSError, ValueError, KeyError, TypeError):
        return fallback if fallback >= 0 else None


def _copies(target: Path) -> list[tuple[tuple[int, int], Path]]:
    """Every complete copy of ``target`` a save (or a crash in one) left, best first."""
    ranked = [(target, 1, 0), (target.with_name(target.name + ".old"), 0, 0)]
    if target.parent.is_dir():
        ranked += [(p, 2, -1) for p in target.parent.glob(f".{target.name}.tmp-*")]
    complete = []
    for folder, rank, fallback in ranked:
        if folder.is_dir():
            sequence = _sequence(folder, fallback)
            if sequence is not None:
                complete.append(((sequence, rank), folder))
    return sorted(complete, key=lambda item: item[0], reverse=True)


def _remove(folder: Path) -> None:
    """Delete a folder, marker first, so a crash half-way never leaves a partial folder that looks complete."""
    try:
        (folder / COMPLETE_MARKER).unlink(missing_ok=True)
    except OSError:
        pass
    shutil.rmtree(folder, ignore_errors=True)


def recover_directory(target) -> Path | None:
    """Put the newest complete copy of ``target`` in its place and delete every other copy.

    Safe at every instruction boundary: the newest complete copy is never deleted, only renamed
    onto a name that does not exist, so a crash during recovery leaves it for the next recovery.
    """
    target = Path(target)
    copies = _copies(target)
    if not copies:
        leftovers = [target, target.with_name(target.name + ".old")] + list(target.parent.glob(f".{target.name}.tmp-*"))
        for folder in leftovers:
            if folder.is_dir():
                _remove(folder)
        return None
    best = copies[0][1]
    if best != target:
        if target.exists():
            _remove(target)
        os.replace(best, target)
        _fsync_path(target.parent)
    for folder in [target.with_name(target.name + ".old"), *target.parent.glob(f".{target.name}.tmp-*")]:
        if folder.is_dir():
            _remove(folder)
    return target


@contextmanager
def atomic_directory(target):
    """Yield a temporary sibling folder; on success it replaces ``target``.

    Every file is flushed to disk and the folder marked complete before the first rename, and
    between the renames the previous version is kept as ``target.old``: a crash (or a full disk) at
    any point leaves a complete copy that ``existing_directory`` and ``recover_directory`` find.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)
    sequence = (_copies(target)[0][0][0] if target.exists() else 0) + 1
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _shared_permissions(tmp)
        yield tmp
        for path in tmp.rglob("*"):
            _shared_permissions(path)
            if path.is_file():
                _fsync_path(path)
        write_json(tmp / COMPLETE_MARKER, {"sequence": sequence})
        _fsync_path(tmp)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) or type(err).__name__ == "SafetensorError":  # safetensors' I/O errors (a full disk)
            detail = err.strerror if isinstance(err, OSError) and err.strerror else _first_line(err)
            raise SeqNLPError(f"cannot write: {detail}", str(target)) from None
        raise
    old = target.with_name(target.name + ".old")
    if target.exists():
        if old.exists():
            _remove(old)
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_path(target.parent)
    _remove(old)


def existing_directory(target) -> Path | None:
    """The newest complete copy of ``target`` (itself, or one that a crash during a save left), read-only."""
    copies = _copies(Path(target))
    return copies[0][1] if copies else None


def write_text_atomic(path, text: str) -> None:
    """Write a text file atomically (temporary file, flushed to disk, then renamed); a failed write leaves no temporary
    file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of this process's own: processes sharing a folder (a search's workers) write the same files
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SeqNLPError(f"cannot write: {err.strerror or err}", str(path)) from None


def write_json(path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# A model directory is untrusted input (downloaded, shared, tampered with): its JSON files are
# read with a size bound and checked for shape before anything is built from them.
MAX_JSON_BYTES = 512 << 20


def read_json(path, expect: type = dict):
    """A JSON file of type ``expect``; any problem is one SeqNLPError naming the file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise SeqNLPError(f"too large for a JSON file ({path.stat().st_size} bytes)", str(path))
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise SeqNLPError(
            f"not UTF-8 (invalid byte 0x{err.object[err.start]:02x} at offset {err.start})", str(path)
        ) from None
    except json.JSONDecodeError as err:
        raise SeqNLPError(f"invalid JSON: {err.msg} (line {err.lineno})", str(path)) from None
    except RecursionError:
        raise SeqNLPError("invalid JSON: nested too deeply", str(path)) from None
    except OSError as err:
        raise unreadable(err, path, "a JSON file", SeqNLPError) from None
    if not isinstance(data, expect):
        raise SeqNLPError(
            f"expected a JSON {expect.__name__ if expect is not dict else 'object'}, found {type(data).__name__}",
            str(path),
        )
    return data


def _alias(t: torch.Tensor) -> tuple:
    """Tensors with equal keys are the same weight under two names (tied embeddings)."""
    return (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())


def save_weights(module: torch.nn.Module, path) -> None:
    """safetensors file of the module's state, on the CPU; tied weights (shared embeddings) are stored once.

    Each tensor is copied on its own: on a GPU, cuDNN keeps an RNN's weights as views into one
    flat buffer, which safetensors' own ``save_model`` refuses to write.
    """
    from safetensors.torch import save_file

    tensors, stored = {}, set()
    for name, t in module.state_dict().items():
        alias = _alias(t)
        if t.numel() and alias in stored:
            continue
        stored.add(alias)
        tensors[name] = t.detach().to("cpu", copy=True).contiguous()
    save_file(tensors, str(path))


def weights_header(path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a safetensors file, read from its header alone (no tensor is loaded)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SeqNLPError("file not found" + (" (a dangling link)" if path.is_symlink() else ""), str(path))
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except Exception as err:  # safetensors reports a truncated or garbled file with its own error types
        raise SeqNLPError(f"not a valid safetensors file ({_first_line(err)})", str(path)) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def check_weights(module: torch.nn.Module, path) -> None:
    """The file at ``path`` holds exactly ``module``'s tensors with their shapes (tied weights once).

    ``module`` may live on the meta device, so a model directory is checked before a byte of its
    model is allocated.
    """
    saved = weights_header(path)
    state = module.state_dict()
    stored_aliases = {_alias(state[name]) for name in saved if name in state}
    unexpected = sorted(set(saved) - set(state))
    missing = sorted(
        n for n in state if n not in saved and not (state[n].numel() and _alias(state[n]) in stored_aliases)
    )
    if missing or unexpected:
        raise SeqNLPError(
            f"weights do not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}", str(path)
        )
    for name, shape in saved.items():
        # Extra state (a language model's carried hidden state) has a shape of its own; its module checks it.
        if tuple(state[name].shape) != shape and not name.endswith("_extra_state"):
            raise SeqNLPError(
                f"tensor {name!r} has shape {list(shape)}, the config makes {list(state[name].shape)}", str(path)
            )


def load_weights(module: torch.nn.Module, path) -> None:
    """Load ``save_weights``' file (checked first); a name absent from it must be tied to one that is present."""
    from safetensors.torch import load_file

    check_weights(module, path)
    try:
        saved = load_file(str(path))
    except Exception as err:
        raise SeqNLPError(f"not a valid safetensors file ({_first_line(err)})", str(path)) from None
    try:
        module.load_state_dict(saved, strict=False)
    except (RuntimeError, ValueError) as err:
        raise SeqNLPError(f"weights do not match the model ({_first_line(err)})", str(path)) from None


def write_model_config(directory, task: str, config: dict, extra: dict) -> None:
    write_json(
        Path(directory) / "config.json", {"format_version": FORMAT_VERSION, "task": task, "config": config, **extra}
    )


def read_model_config(directory) -> dict:
    """``config.json`` of a model directory, with the keys and types every loader relies on."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SeqNLPError("model directory not found" if not directory.exists() else "not a directory", str(directory))
    path = directory / "config.json"
    if not path.exists() and not path.is_symlink():
        raise SeqNLPError("not a seqnlp model directory (no config.json)", str(directory))
    data = read_json(path)
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise SeqNLPError(
            f"model format version {str(version)[:20]} is not supported (this seqnlp reads version {FORMAT_VERSION})",
            str(path),
        )
    for key, kind in (("task", str), ("config", dict), ("assets", dict)):
        if not isinstance(data.get(key), kind):
            raise SeqNLPError(f"{key!r} must be a JSON {'object' if kind is dict else 'string'}", str(path))
    return data


LOCK_FILE = ".seqnlp.lock"


def lock_without_waiting(handle) -> None:
    """Take an exclusive lock on the open file ``handle`` or raise OSError at once if another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


class FolderBusy(SeqNLPError):
    """Another process holds the output folder's lock."""


class OutputDirectory:
    """A run's output folder, held with an OS lock for the life of the process.

    The lock is ``flock`` on a file inside the folder (``msvcrt.locking`` on Windows): the kernel drops it when the
    process ends, however it ends, so a killed run never leaves a stale lock behind.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._handle = None

    def acquire(self) -> OutputDirectory:
        if self._handle is not None:
            return self
        if self.path.exists() and not self.path.is_dir():
            raise SeqNLPError("the output folder is a file", str(self.path))
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / LOCK_FILE, "a+")
        except OSError as err:
            raise SeqNLPError(f"cannot use as the output folder: {err.strerror or err}", str(self.path)) from None
        try:
            lock_without_waiting(handle)
        except OSError:
            handle.close()
            raise FolderBusy(
                "another seqnlp run is using this output folder (wait for it to end, or choose another --output-dir)",
                str(self.path),
            ) from None
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def used(self) -> bool:
        """The folder holds something besides the lock (a model, checkpoints, metrics or a log)."""
        return self.path.is_dir() and any(p.name != LOCK_FILE for p in self.path.iterdir())
