"""Model directories (safetensors + JSON, nothing unpickled) and atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from seqnlp.errors import SeqNLPError

FORMAT_VERSION = 1


@contextmanager
def atomic_directory(target):
    """Yield a temporary sibling folder; on success it replaces ``target`` in (nearly) one rename.

    A crash while writing leaves ``target`` untouched. Between the two renames the previous
    version is kept as ``target.old``, which ``existing_directory`` falls back on.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def existing_directory(target) -> Path | None:
    """``target`` if complete, else the ``.old`` copy a crash between renames left behind."""
    target = Path(target)
    for candidate in (target, target.with_name(target.name + ".old")):
        if candidate.is_dir():
            return candidate
    return None


def write_json(path, data) -> None:
    """Write JSON atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _alias(t: torch.Tensor) -> tuple:
    """Tensors with equal keys are the same weight under two names (tied embeddings)."""
    return (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())


def save_weights(module: torch.nn.Module, path) -> None:
    """safetensors file of the module's state, on the CPU; tied weights (shared embeddings) are stored once.

    Each tensor is copied on its own: on a GPU, cuDNN keeps an RNN's weights as views into one
    flat buffer, which safetensors' own ``save_model`` refuses to write.
    """
    tensors, stored = {}, set()
    for name, t in module.state_dict().items():
        alias = _alias(t)
        if t.numel() and alias in stored:
            continue
        stored.add(alias)
        tensors[name] = t.detach().to("cpu", copy=True).contiguous()
    save_file(tensors, str(path))


def load_weights(module: torch.nn.Module, path) -> None:
    """Load ``save_weights``' file; a name absent from it must be tied to one that is present."""
    saved = load_file(str(path))
    missing, unexpected = module.load_state_dict(saved, strict=False)
    state = module.state_dict()
    loaded = {_alias(state[name]) for name in saved if name in state}
    missing = [name for name in missing if not (state[name].numel() and _alias(state[name]) in loaded)]
    if missing or unexpected:
        raise RuntimeError(f"weights do not match the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")


def write_model_config(directory, task: str, config: dict, extra: dict) -> None:
    write_json(Path(directory) / "config.json", {"format_version": FORMAT_VERSION, "task": task, "config": config, **extra})


def read_model_config(directory) -> dict:
    directory = Path(directory)
    path = directory / "config.json"
    if not path.exists():
        raise SeqNLPError("not a seqnlp model directory (no config.json)", str(directory))
    data = read_json(path)
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise SeqNLPError(f"model format version {version} is not supported (this seqnlp reads version {FORMAT_VERSION})", str(path))
    return data
