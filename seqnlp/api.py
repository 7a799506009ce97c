"""The Python API: what ``seqnlp train``, ``evaluate`` and ``predict`` do, without a subprocess.

>>> import seqnlp
>>> tagger = seqnlp.load("runs/ner/model")                       # doctest: +SKIP
>>> tagger.predict(["Peter Blackburn visited Brussels."])[0].to_dict()["entities"]  # doctest: +SKIP
[{'text': 'Peter Blackburn', 'type': 'PER', 'start': 0, 'end': 15, 'score': 0.998, ...}, ...]
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from seqnlp import config as configs
from seqnlp.errors import ConfigError
from seqnlp.predictions import LoadedModel

if TYPE_CHECKING:  # torch is imported where tensors are made: the ONNX runtime never imports it
    import torch


@dataclasses.dataclass
class Model(LoadedModel):
    """A trained model of any task, ready to predict: what ``seqnlp.load`` returns (``LoadedModel``)."""

    task: object  # the seqnlp.tasks.base.Task the model was trained as (its config, vocabularies, labels)
    module: torch.nn.Module
    path: Path

    def evaluate(self, data=None, **kwargs) -> dict:
        return evaluate(self, data, **kwargs)

    def _predict(self, task, items: list, options: dict) -> list:
        return task.predict(self.module, items, options)

    def _with_settings(self, settings: dict):
        return with_settings(self.task, settings)

    def _facts(self) -> dict:
        return {"parameters": sum(p.numel() for p in self.module.parameters())}


def load(path, device: str = "auto", threads: int | None = None, **settings) -> Model:
    """The model in ``path`` (a model directory), on ``device`` ("auto": the GPU if torch sees one).

    A folder of ``seqnlp export`` loads as an ``OnnxModel`` (the same ``predict``), run by onnxruntime on the CPU
    with ``threads`` threads (default: onnxruntime's choice); a PyTorch model uses torch's thread setting.

    ``settings`` override saved decoding and data settings, as ``--set`` does on the command line.
    """
    from seqnlp.serving import is_export
    from seqnlp.storage.folders import existing_directory
    from seqnlp.storage.hub import model_directory

    path = model_directory(path)
    if is_export(path):  # a folder of ``seqnlp export``: onnxruntime, no torch
        from seqnlp.serving.runtime import OnnxModel, load_runner

        return OnnxModel(load_runner(path, settings or None, threads), Path(path))
    from seqnlp.tasks.base import load_model_dir
    from seqnlp.training.trainer import pick_device

    task, module = load_model_dir(path, device=pick_device(device), overrides=settings or None)
    return Model(task, module, existing_directory(path) or path)


def export(model, out_dir, overwrite: bool = False) -> dict:
    """``seqnlp export MODEL_DIR OUT_DIR``: the model as ONNX graphs that ``load(out_dir)`` runs without torch;
    returns the export's manifest (``onnx.json``)."""
    from seqnlp.serving.export import export as write_export

    return write_export(model, out_dir, overwrite=overwrite)


def train(task: str, config: str | os.PathLike | None = None, **settings) -> dict:
    """Run a recipe from Python, exactly as ``seqnlp train TASK`` runs it; returns the metrics of ``metrics.json``.

    ``config``: a YAML file of settings; ``settings``: flags by their setting names (``train_file=...,
    epochs=3, bidirectional=False``), which win over the file. ``resume=True`` and ``overwrite=True`` as the flags.
    """
    from seqnlp.config import as_flags
    from seqnlp.training.run import train as run_recipe

    argv = ["--config", str(config)] if config is not None else []
    argv += [f"--{name}" for name in ("resume", "overwrite") if settings.pop(name, False)]
    return run_recipe(task, argv + as_flags(settings))


def evaluate(
    model, data=None, *, test_file=None, dataset=None, split: str | None = None, dataset_config: str | None = None
) -> dict:
    """The metrics ``seqnlp evaluate`` prints: ``{"task": ..., "test": {...}}``.

    ``model``: a ``Model`` or a model directory. ``data``: a data file (or a translation file prefix),
    a HuggingFace dataset (folder, hub name, ``Dataset`` or ``DatasetDict``); or name it with
    ``test_file=`` / ``dataset=``. ``split``: the ``DatasetDict`` split (default: test).
    """
    return score(model, data, test_file=test_file, dataset=dataset, split=split, dataset_config=dataset_config)[0]


def score(
    model, data=None, *, test_file=None, dataset=None, split=None, dataset_config=None
) -> tuple[dict, dict, list]:
    """``evaluate``'s metrics, with the scores' report-only extras and the examples scored (for ``report.md``)."""
    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    if not isinstance(model, Model):  # an OnnxModel
        raise ConfigError(
            f"{model.path} is an ONNX export, which predicts but is not evaluated here: evaluate the model folder it "
            "was exported from"
        )
    task, examples, test_file, dataset = data_examples(model.task, data, test_file, dataset, split, dataset_config)
    scores = task.evaluate(model.module, examples)
    metrics = {
        "task": task.name,
        "evaluated": evaluation_record(model, task, test_file, dataset, split),
        "test": {k: v for k, v in scores.items() if not k.startswith("_")},
    }
    return metrics, scores, examples


def data_examples(task, data, test_file, dataset, split, dataset_config, default_split: str = "test") -> tuple:
    """``(task, examples, test_file, dataset)``: the task with its data settings pointed at the data to score (``data``
    is a file or a dataset), that data's examples, and which of the two it is."""
    if data is not None:
        if is_dataset(data, task):
            dataset = data
        else:
            test_file = data
    if (test_file is None) == (dataset is None):
        raise ConfigError("give the data to score (a test file or a dataset)")
    sources = {
        "train_file": None,
        "dev_file": None,
        "test_file": None if test_file is None else str(test_file),
        "dataset": None if dataset is None or not isinstance(dataset, (str, os.PathLike)) else str(dataset),
        "dataset_config": dataset_config,
        "test_split": split or "test",
    }
    task = with_settings(task, sources)
    return task, evaluation_examples(task, dataset, split, dataset_config, default_split), test_file, dataset


def calibrate(
    model, data=None, *, dev_file=None, dataset=None, split=None, dataset_config=None, output_dir=None,
    device: str = "auto",
) -> dict:  # fmt: skip
    """``seqnlp calibrate``: fit a model folder's temperature on held-out data (``dev_file``, or a ``dataset`` and
    its ``split``, default validation) and write it into the folder's ``config.json``, or into a copy of the folder
    at ``output_dir``; returns the calibration (temperature, objective, items, data). Predictions never change."""
    from seqnlp.tasks.base import calibrate_model_dir

    loaded = load(model_folder(model), device=device)
    if not isinstance(loaded, Model):
        raise ConfigError(
            "an ONNX export holds its temperature in its graphs: calibrate the model folder, then export it again",
            str(loaded.path),
        )
    if not hasattr(loaded.task.config, "calibrate"):
        raise ConfigError(f"a {loaded.task.name} model gives no probabilities to calibrate (ner and sentiment do)")
    if output_dir is None and str(model).startswith("hf://"):
        raise ConfigError("a model from the Hub is a read-only cache: give --output-dir for the calibrated copy")
    _, examples, dev_file, dataset = data_examples(
        loaded.task, data, dev_file, dataset, split, dataset_config, default_split="validation"
    )
    task = loaded.task  # its saved settings are written back; the data's were only for reading
    task.config = dataclasses.replace(task.config, calibrate=True)  # asked for: a saved calibrate=false yields
    where = dev_file or examples[0].source.rpartition(":")[0]  # a dataset example's source is "NAME[SPLIT]:row N"
    return calibrate_model_dir(task, loaded.module, examples, str(where), loaded.path, output_dir or loaded.path)


def evaluation_record(model: Model, task, test_file, dataset, split) -> dict:
    """What an evaluation scored: the model (folder and config hash), the data (its files and their SHA-256, or the
    dataset and split) and the settings that differ from the model's saved ones (``--set``, ``--bootstrap``)."""
    from seqnlp.storage.folders import read_model_config

    record = {"model": str(model.path), "config_sha256": model.info()["config_sha256"]}
    if test_file is not None:
        record["data"] = [
            {"path": path, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
            for path in task.data_files(str(test_file))
            if os.path.isfile(path)
        ]
    else:
        name = dataset if isinstance(dataset, (str, os.PathLike)) else type(dataset).__name__
        record["dataset"] = {"name": str(name), "split": split or "test"}
    saved = read_model_config(model.path)["config"] if (Path(model.path) / "config.json").is_file() else {}
    saved = {**configs.to_dict(type(task.config)()), **saved}  # settings newer than the model: their defaults
    current = configs.to_dict(task.config)
    ignored = {"train_file", "dev_file", "test_file", "dataset", "dataset_config", "test_split", "output_dir"}
    record["settings"] = {k: v for k, v in current.items() if k not in ignored and saved.get(k) != v}
    return record


def compare(
    models: list,
    data=None,
    *,
    test_file=None,
    dataset=None,
    split: str | None = None,
    dataset_config: str | None = None,
    resamples: int = 1000,
    trials: int = 10_000,
    device: str = "auto",
) -> dict:
    """``seqnlp compare``: each model's score on the same data with its 95% bootstrap interval, and for each pair
    (``b`` against ``a``, in the order given) the difference, its 95% paired-bootstrap interval and the p-value of
    paired approximate randomization.

    ``models``: ``Model`` objects, model folders, run folders (holding ``model/``) or ``hf://`` names; ``data`` as
    for ``evaluate``. ``resamples``: bootstrap resamples (intervals); ``trials``: randomization trials.
    """
    from seqnlp.evaluation.evidence import paired_comparison

    if len(models) < 2:
        raise ConfigError("compare: give at least two models")
    if resamples < 1 or trials < 1:
        raise ConfigError("compare: --bootstrap and --trials must be at least 1")
    if repeat_folders(models, given_data=data is not None or test_file is not None or dataset is not None):
        return compare_groups(models, split or "dev", resamples, trials)
    names, loaded = comparable_models(models, device, resamples)
    metric = loaded[0].task.metric
    results = []
    for model in loaded:
        _, scores, examples = score(
            model, data, test_file=test_file, dataset=dataset, split=split, dataset_config=dataset_config
        )
        results.append(scores)
    pairs = []
    for i, j in itertools.combinations(range(len(loaded)), 2):
        try:
            tested = paired_comparison(results[i]["_statistics"], results[j]["_statistics"], metric, resamples, trials)
        except ValueError:
            raise ConfigError(
                f"compare: {names[i]} and {names[j]} score on different label sets (their evaluations' statistics "
                "differ in shape)"
            ) from None
        pairs.append({"a": names[i], "b": names[j], **tested})
    return {
        "task": loaded[0].task.name,
        "metric": metric,
        "units": results[0]["_statistics"].units,
        "examples": len(examples),
        "models": [
            {"model": name, metric: scores[metric], "interval": scores.get("intervals", {}).get(metric)}
            for name, scores in zip(names, results)
        ],
        "comparisons": pairs,
    }


def repeat_folders(models: list, given_data: bool) -> bool:
    """Whether ``compare`` compares folders of ``seqnlp repeat`` (their recorded seeds) rather than models."""
    from seqnlp.training.repeat import is_repeat_folder

    groups = [not isinstance(m, Model) and is_repeat_folder(m) for m in models]
    if any(groups) and (not all(groups) or given_data):
        raise ConfigError(
            "compare: give model folders with the data to score them on, or folders of seqnlp repeat alone "
            "(their seeds' recorded scores are compared)"
        )
    return any(groups)


def comparable_models(models: list, device: str, resamples: int) -> tuple[list[str], list[Model]]:
    """The models ``compare`` scores, loaded, with the names it shows; exports and mixed tasks are refused."""
    loaded = [m if isinstance(m, Model) else load(model_folder(m), device=device, bootstrap=resamples) for m in models]
    names = [str(m.path) if isinstance(m, Model) else str(m) for m in models]
    exports = [name for name, m in zip(names, loaded) if not isinstance(m, Model)]
    if exports:
        raise ConfigError(f"compare: {exports[0]} is an ONNX export: compare the model folders it was exported from")
    kinds = sorted({m.task.name for m in loaded})
    if len(kinds) > 1:
        raise ConfigError(f"compare: the models are of different tasks ({', '.join(kinds)})")
    return names, loaded


def compare_groups(folders: list, split: str, resamples: int, trials: int) -> dict:
    """``compare`` of folders of ``seqnlp repeat``: each group's recorded ``split`` scores over its seeds, and for
    each pair the difference of the means, its bootstrap interval and a permutation test's p-value."""
    from seqnlp.evaluation.evidence import group_comparison
    from seqnlp.training.repeat import gather

    summaries = [gather(Path(folder)) for folder in folders]
    kinds = sorted({s["task"] for s in summaries})
    if len(kinds) > 1:
        raise ConfigError(f"compare: the groups are runs of different tasks ({', '.join(kinds)})")
    if split not in ("dev", "test") or any(split not in s for s in summaries):
        raise ConfigError(
            f"compare: groups are compared on their recorded dev or test scores, and not every seed has {split!r}"
        )
    metric = summaries[0]["metric"]
    scores = [[row[split] for row in s["seeds"]] for s in summaries]
    pairs = []
    for i, j in itertools.combinations(range(len(folders)), 2):
        try:
            tested = group_comparison(scores[i], scores[j], resamples, trials)
        except ValueError:
            raise ConfigError(f"compare: {folders[i]} and {folders[j]} need at least two finished seeds each") from None
        pairs.append({"a": str(folders[i]), "b": str(folders[j]), **tested})
    return {
        "task": kinds[0],
        "metric": metric,
        "split": split,
        "groups": [
            {
                "folder": str(folder),
                "seeds": [row["seed"] for row in s["seeds"]],
                "scores": values,
                "mean": s[split]["mean"],
                "sd": s[split]["sd"],
            }
            for folder, s, values in zip(folders, summaries, scores)
        ],  # fmt: skip
        "comparisons": pairs,
    }


def model_folder(path):
    """A run folder's ``model/``; any other path (a model folder, ``hf://``) as it is."""
    inner = Path(path) / "model"
    return inner if not str(path).startswith("hf://") and (inner / "config.json").is_file() else path


def evaluation_examples(
    task, dataset, split: str | None, dataset_config: str | None, default_split: str = "test"
) -> list:
    """The examples to score: the test file, a whole single-split dataset, or a named split of a ``DatasetDict``
    (``default_split`` unless ``split`` names one)."""
    if dataset is None:
        return task.read("test")
    from seqnlp.data import hf

    loaded = dataset if not isinstance(dataset, (str, os.PathLike)) else hf.load(str(dataset), dataset_config)
    name = dataset if isinstance(dataset, (str, os.PathLike)) else type(dataset).__name__
    if not hf.is_dataset_dict(loaded):
        if split is not None:
            raise ConfigError(
                f"--split {split}: {name} is a single split (a data file or Dataset); "
                "--split names a split of a DatasetDict"
            )
        return task.read_hf(loaded, str(name))
    split = split or default_split
    if split not in loaded:
        raise ConfigError(f"dataset has no split {split!r} (splits: {', '.join(loaded)})", str(name))
    return task.read_hf(loaded[split], f"{name}[{split}]")


def is_dataset(data, task) -> bool:
    """Whether ``data`` names a HuggingFace dataset rather than a data file (or a translation file prefix)."""
    if not isinstance(data, (str, os.PathLike)):
        return True  # a Dataset or DatasetDict object
    path = str(data)
    return os.path.isdir(path) or not task.data_exists(path)


def with_settings(task, settings: dict):
    """A copy of ``task`` whose config has ``settings`` (checked like any config); vocabularies are shared."""
    values = {**configs.to_dict(task.config), **settings}
    clone = object.__new__(type(task))
    clone.__dict__.update(task.__dict__)
    clone.config = configs.from_dict(type(task.config), values, source="settings")
    return clone
