"""Predict with an exported model (``seqnlp export``) through onnxruntime and NumPy; torch is never imported.

``seqnlp.load(OUT_DIR)`` and ``seqnlp predict OUT_DIR FILE`` come here when the folder holds ``onnx.json``. The
answers are the PyTorch model's (``seqnlp.predictions`` builds both): the same tokenization, vocabularies, label
names and decoding settings, read from the folder's ``config.json``. Text generation samples from NumPy's random
stream, so a seed gives another continuation than under PyTorch (greedy, ``top_k=1``, gives the same).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from seqnlp.data.batching import bucket_batches
from seqnlp.errors import ConfigError, SeqNLPError
from seqnlp.predictions import LoadedModel
from seqnlp.serving import FORMAT, FORMAT_VERSION, MANIFEST
from seqnlp.storage.folders import read_json, read_model_config
from seqnlp.tasks import task_part

MAX_GRAPH_BYTES = 2 << 30  # protobuf's limit for one ONNX file


def pad_ids(rows: list[list[int]], value: int = 0) -> np.ndarray:
    longest = max((len(r) for r in rows), default=0)
    return np.array([list(r) + [value] * (longest - len(r)) for r in rows], dtype=np.int64).reshape(len(rows), longest)


class Graphs:
    """The folder's ONNX graphs as onnxruntime sessions, checked against ``onnx.json``."""

    def __init__(self, directory: Path, manifest: dict, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("an ONNX export runs with onnxruntime: pip install 'seqnlp[runtime]'") from None

        where = str(directory / MANIFEST)
        graphs = manifest.get("graphs")
        if not isinstance(graphs, dict) or not graphs:
            raise SeqNLPError("'graphs' must be a non-empty JSON object", where)
        options = ort.SessionOptions()
        # onnxruntime's threads otherwise spin for a while after each run: beside other work on a small machine
        # (the server's event loop, PyTorch) that costs the others the CPU (a PyTorch translation beside it took
        # 62 instead of 16 ms), and it bought nothing measurable here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.sessions, self.inputs, self.outputs = {}, {}, {}
        for name, spec in graphs.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
                raise SeqNLPError(f"graph {str(name)[:40]!r} must name its file", where)
            path = member(directory, spec["file"], where)
            if path.stat().st_size > MAX_GRAPH_BYTES:
                raise SeqNLPError(f"too large for an ONNX graph ({path.stat().st_size} bytes)", str(path))
            try:
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime reports a garbled or foreign file with its own error types
                detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                raise SeqNLPError(f"not a valid ONNX graph ({detail})", str(path)) from None
            self.inputs[name] = [i.name for i in session.get_inputs()]
            self.outputs[name] = [o.name for o in session.get_outputs()]
            if self.inputs[name] != spec.get("inputs") or self.outputs[name] != spec.get("outputs"):
                raise SeqNLPError(f"the graph's inputs or outputs are not those {MANIFEST} names", str(path))
            self.sessions[name] = session

    def run(self, name: str, feeds: dict) -> dict:
        session = self.sessions[name]
        values = session.run(None, {k: feeds[k] for k in self.inputs[name]})
        return dict(zip(self.outputs[name], values))


def member(directory: Path, name: str, where: str) -> Path:
    """A file of the folder named by the (untrusted) manifest: a plain name, no path."""
    if Path(name).name != name or name in ("", ".", ".."):
        raise SeqNLPError(f"file name {name[:60]!r} must be a plain name inside the folder", where)
    path = directory / name
    if not path.is_file():
        raise SeqNLPError("file not found", str(path))
    return path


def _arrays(directory: Path, manifest: dict) -> dict[str, np.ndarray]:
    if not manifest.get("arrays"):
        return {}
    from safetensors.numpy import load_file

    path = member(directory, manifest["arrays"], str(directory / MANIFEST))
    try:
        return load_file(str(path))
    except Exception as err:
        raise SeqNLPError(f"not a valid safetensors file ({str(err)[:200]})", str(path)) from None


class Runner:
    """What a task needs to predict from its graphs; ``config`` holds the saved settings (a namespace)."""

    name = ""
    shares_batches = True  # as ``Task.shares_batches``: whether the server may batch concurrent requests
    predict_options: dict[str, type] = {}
    token_list_inputs = False
    output_formats = ("text", "json")
    length_key = "words"

    def __init__(self, directory: Path, settings: dict, assets: dict, graphs: Graphs, arrays: dict):
        self.directory = directory
        self.config = SimpleNamespace(**settings)
        self.graphs = graphs
        self.arrays = arrays
        self.load_assets(assets)

    def load_assets(self, assets: dict) -> None:
        raise NotImplementedError

    def label_names(self) -> list[str] | None:
        return None

    def input_from_line(self, line: str) -> str:
        return line

    def predict(self, inputs: list, options: dict) -> list:
        raise NotImplementedError

    def random_stream(self, seed: int) -> np.random.Generator:
        """The random numbers that sampling draws (text generation), from ``seed``."""
        return np.random.default_rng(seed)

    def batches(self, items: list[dict]):
        """Index groups of similar length, longest first, bounded as the PyTorch task bounds them."""
        lengths = [len(item[self.length_key]) for item in items]
        return bucket_batches(
            lengths, self.config.eval_batch_size, shuffle=False, max_tokens=self.config.eval_max_tokens
        )


def load_runner(path, overrides: dict | None = None, threads: int | None = None) -> Runner:
    """The runner of an exported folder; ``overrides`` change saved decoding settings (``--set``)."""
    from seqnlp.storage.hub import model_directory

    directory = Path(model_directory(path))
    manifest = read_json(directory / MANIFEST)
    where = str(directory / MANIFEST)
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise SeqNLPError(f"not a {FORMAT} folder of version {FORMAT_VERSION} (re-export the model)", where)
    saved = read_model_config(directory)
    part = task_part(saved["task"], "runner") if isinstance(saved["task"], str) else None
    runner_class = getattr(part, "RUNNER", None)
    if runner_class is None or manifest.get("task") != saved["task"]:
        raise SeqNLPError(f"unknown or inconsistent task {str(saved['task'])[:40]!r}", where)
    settings = with_settings(saved["config"], overrides or {}, saved["task"])
    if saved.get("calibration") and settings.get("calibrate") != saved["config"].get("calibrate"):
        raise SeqNLPError(
            "an ONNX export carries its temperature inside its graphs (calibrate cannot change here): load the model "
            "folder it was exported from for the trained probabilities",
            str(directory),
        )
    try:
        return runner_class(
            directory, settings, saved["assets"], Graphs(directory, manifest, threads), _arrays(directory, manifest)
        )
    except SeqNLPError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise SeqNLPError(
            f"invalid vocabulary or tokenizer assets ({type(err).__name__}: {str(err)[:200]})", str(directory)
        ) from None


# The settings a runner reads that would break it out of range (the PyTorch path checks every setting's range).
SETTING_CHECKS = {
    "eval_batch_size": lambda v: v >= 1,
    "eval_max_tokens": lambda v: v >= 1,
    "max_length": lambda v: v >= 1,
    "beam": lambda v: v >= 1,
    "n_best": lambda v: v >= 1,
    "max_len_ratio": lambda v: math.isfinite(v) and v > 0,
    "length_penalty": math.isfinite,
    "coverage_penalty": lambda v: math.isfinite(v) and v >= 0,
}


def with_settings(settings: dict, overrides: dict, task: str) -> dict:
    """``settings`` with ``overrides``, each of a known setting and of its type (an int where a float goes)."""
    merged = dict(settings)
    for key, value in overrides.items():
        if key not in merged:
            raise ConfigError(f"unknown setting {key!r} for a {task} model")
        saved = merged[key]
        if saved is not None and type(value) is not type(saved) and not (type(saved) is float and type(value) is int):
            raise ConfigError(f"{key} must be of type {type(saved).__name__}, not {type(value).__name__}")
        if key in SETTING_CHECKS and not SETTING_CHECKS[key](value):
            raise ConfigError(f"invalid value for {key}: {value!r}")
        merged[key] = value
    return merged


class OnnxModel(LoadedModel):
    """An exported model, ready to predict: what ``seqnlp.load`` returns for a folder of ``seqnlp export``
    (``LoadedModel``; ``task`` is the export's runner, what the server asks of a model's task too)."""

    def __init__(self, runner: Runner, path: Path):
        self.task = runner
        self.path = path

    def _predict(self, runner, items: list, options: dict) -> list:
        return runner.predict(items, options)

    def _with_settings(self, settings: dict):
        runner = copy.copy(self.task)  # the sessions are shared
        runner.config = SimpleNamespace(**with_settings(vars(self.task.config), settings, runner.name))
        return runner

    def _facts(self) -> dict:
        return {"runtime": "onnx"}
