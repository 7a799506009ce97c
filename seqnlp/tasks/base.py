"""What a task is: its config, reader, vocabularies, model, metric and prediction format.

The Trainer, CLI, model directories and reports are written once, against this interface.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

import torch

from seqnlp import config as configs
from seqnlp.data.batching import Batches, bucket_batches, to_device
from seqnlp.errors import ConfigError, DataError, SeqNLPError
from seqnlp.evaluation.calibration import check_calibration
from seqnlp.nn.embedding import start_from_vectors, word_tables
from seqnlp.serving import is_export
from seqnlp.storage.folders import (
    COMPLETE_MARKER,
    atomic_directory,
    check_weights,
    existing_directory,
    load_weights,
    read_model_config,
    save_weights,
    write_model_config,
)


class Task:
    name: str = ""
    config_class: type = configs.RunConfig
    metric: str = ""  # dev metric that selects the model
    # settings newer than some saved models: the value that reproduces those models' behaviour
    settings_added_later: dict = {}
    higher_is_better: bool = True
    length_key: str = "words"  # the field of a prepared item whose length groups items into batches
    predict_options: dict[str, type] = {}  # ``predict``'s options besides the config's settings, with their types
    token_list_inputs: bool = False  # whether ``predict`` also takes pre-tokenized inputs (lists of token strings)
    output_formats: tuple[str, ...] = ("text", "json")  # what ``seqnlp predict --format`` offers
    shares_batches: bool = True  # whether the server may batch concurrent requests into one ``predict`` call
    bf16_pays: bool = False  # whether the model trains faster in bf16 where the device has it (``--precision auto``)
    # the model card (``seqnlp.storage.card``): the Hub's pipeline tag and the example input of its usage section
    pipeline_tag: str = ""
    usage_input: str = "..."
    # settings that decoding alone reads, with the ranges ``seqnlp tune --model`` searches without retraining
    decoding_space: dict = {}
    # a loaded model's fitted temperature and what it was fitted on (``config.json``'s "calibration")
    calibration: dict | None = None

    def __init__(self, config):
        self.config = config

    def applied_calibration(self) -> dict | None:
        """The calibration record whose temperature the model uses; None when it has none or it is turned off."""
        return self.calibration if self.calibration is not None and getattr(self.config, "calibrate", False) else None

    @property
    def temperature(self) -> float:
        """What the model's scores are divided by before they become probabilities
        (``seqnlp.evaluation.calibration``): the fitted temperature, unless the config turns calibration off."""
        applied = self.applied_calibration()
        return 1.0 if applied is None else float(applied["temperature"])

    @classmethod
    def settings_of(cls, saved: dict) -> dict:
        """The settings a saved config stands for: its own, and the old behaviour of settings added since."""
        return {**cls.settings_added_later, **saved}

    @classmethod
    def sample_data(cls) -> dict | None:
        """The data settings of a run on the task's sample, shipped inside its package: ``seqnlp train TASK`` and
        the recipes train on it when no data is given, with a 1.5-minute budget."""
        if cls.sample_files is None:
            return None
        folder = Path(sys.modules[cls.__module__].__file__).resolve().parent / "sample"
        train, dev, test = (str(folder / name) for name in cls.sample_files)
        return {"train_file": train, "dev_file": dev, "test_file": test, "max_minutes": 1.5}

    @classmethod
    def fine_tuning_settings(cls, inherited: dict) -> dict:
        """Settings a fine-tuning run (``--init-from``) starts from instead of the base model's ``inherited`` ones;
        flags and the YAML file still set them."""
        return {}

    # -- data --------------------------------------------------------------------------
    def read(self, split: str, path: str | None = None) -> list | None:
        """Examples of ``split`` ("train" / "dev" / "test") from ``path``, the config's files, or its HF dataset; None
        if not given."""
        config = self.config
        path = getattr(config, f"{split}_file") if path is None else path
        if path:
            examples = self.read_file(path)
        elif config.dataset:
            from seqnlp.data import hf

            split_name = getattr(config, f"{split}_split")
            dataset = hf.load_split(config.dataset, split_name, config.dataset_config, role=split)
            if dataset is None:
                return None
            examples = self.read_hf(dataset, f"{config.dataset}[{split_name}]")
        else:
            return None
        if not examples:
            raise DataError(f"the {split} data is empty", path or config.dataset)
        return examples

    def data_exists(self, path: str) -> bool:
        """Whether ``path`` names this task's data on disk (rather than a HuggingFace dataset name)."""
        return os.path.exists(path)

    def description(self) -> str:
        """What the model is, as the first line of its card says it (``a named-entity tagger (...)``)."""
        return f"a {self.name} model"

    def languages(self) -> list[str] | None:
        """The languages the model reads and writes, where it names them (the card's ``language``)."""
        return None

    def label_names(self) -> list[str] | None:
        """The entity types or classes the model predicts; None for tasks without labels."""
        return None

    def data_source(self) -> str:
        """Where the training data comes from, as vocabularies record it."""
        config = self.config
        return config.train_file or (f"{config.dataset}[{config.train_split}]" if config.dataset else "training data")

    def hold_out(self, train: list) -> tuple[list, list, str]:
        """(train, dev, how) when no dev set is given: 10% of the training examples, drawn with the seed."""
        order = list(range(len(train)))
        random.Random(self.config.seed).shuffle(order)
        cut = max(1, len(order) // 10)
        if len(order) - cut < 1:
            raise DataError(
                f"the training data holds {len(train)} example(s): too few to hold out a dev set; give a dev set"
            )
        dev = [train[i] for i in sorted(order[:cut])]
        kept = [train[i] for i in sorted(order[cut:])]
        return kept, dev, f"{len(dev)} of {len(train)} training examples (10%) held out"

    def read_file(self, path: str) -> list:
        raise NotImplementedError

    def read_hf(self, dataset, source: str) -> list:
        raise NotImplementedError

    def num_tokens(self, example) -> int:
        raise NotImplementedError

    # -- vocabularies and model --------------------------------------------------------
    def build_vocabularies(self, train: list) -> None:
        """Build the vocabularies / tokenizers (and label set) of a fresh model from the training data."""
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def save_assets(self, directory: Path) -> dict:
        """Write what rebuilds the task besides the weights: files (SentencePiece models) into ``directory``, and
        the JSON-able rest (vocabularies, label names...) as the returned dict, which ``config.json`` holds."""
        raise NotImplementedError

    def load_assets(self, directory: Path, assets: dict) -> None:
        """Rebuild what ``save_assets`` wrote (``assets``: the dict it returned)."""
        raise NotImplementedError

    def adapt(self, train: list):
        """Fine-tuning: turn the loaded vocabularies into the new run's; returns a
        ``seqnlp.training.finetune.Adaptation``.

        The default keeps everything as the model has it.
        """
        from seqnlp.training.finetune import Adaptation

        return Adaptation()

    def uses_subwords(self) -> bool:
        """Whether the model reads SentencePiece subwords (which ``--new-vocab`` re-trains when fine-tuning)."""
        return False

    def weight_axes(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Tensors whose rows (dims) are indexed by a vocabulary: ``{tensor name: (vocabulary, dims)}``."""
        return {}

    def init_model(self, model: torch.nn.Module, rows=None) -> dict | None:
        """The word tables start from the config's pretrained vectors (``rows``: only these); their report or None."""
        spec = getattr(self.config, "pretrained_vectors", None)
        return start_from_vectors(spec, getattr(self, "words", None), word_tables(model), rows)

    # -- batches, evaluation, prediction -------------------------------------------------
    def prepare(self, examples: list) -> list:
        """Encode examples once (ids), so each epoch only groups and pads them."""
        raise NotImplementedError

    def batches(self, items: list, shuffle: bool, epoch: int = 0) -> Batches:
        """Batches of prepared ``items`` of similar length (``batch_length``); the training order is a pure function of
        ``(seed, epoch)``."""
        config = self.config
        size, max_tokens = (
            (config.batch_size, config.batch_max_tokens or None)
            if shuffle
            else (config.eval_batch_size, config.eval_max_tokens)
        )
        groups = bucket_batches(
            [self.batch_length(item) for item in items], size, shuffle, config.seed, epoch, max_tokens=max_tokens
        )
        return Batches(groups, items, self.collate)

    def batch_length(self, item) -> int | tuple[int, ...]:
        """The size that groups a prepared item with items like it: its ``length_key`` field's length, or a tuple of
        lengths for an item of several sequences (``bucket_batches``)."""
        return len(item[self.length_key])

    def inference_batches(self, model, items: list):
        """``(indices, batch on the model's device)`` over length buckets of prepared ``items``, longest first.

        The caller puts each batch's outputs back at ``indices``, so results come in input order.
        """
        model.eval()
        device = next(model.parameters()).device
        lengths = [len(item[self.length_key]) for item in items]
        for group in bucket_batches(
            lengths, self.config.eval_batch_size, shuffle=False, max_tokens=self.config.eval_max_tokens
        ):
            yield group, to_device(self.collate([items[i] for i in group]), device)

    def collate(self, items: list) -> dict:
        """One padded batch of prepared items."""
        raise NotImplementedError

    def loss_units(self, batch: dict) -> float:
        """What the model's loss averages over in ``batch``: its examples, unless the task says otherwise.

        A data-parallel run weights each process's loss by its share of the global batch's units.
        """
        return float(batch[self.length_key].size(0))

    def check_labels(self, examples: list) -> None:
        """Raise DataError for labels the model does not know (evaluation / fine-tuning data)."""

    def evaluate(self, model, examples: list, selection: bool = False) -> dict:
        """Metrics of ``model`` on ``examples``; ``selection=True`` during training, where only the selection metric
        must be exact."""
        raise NotImplementedError

    def predict(self, model, inputs: list, options: dict) -> list:
        """A ``seqnlp.predictions.Prediction`` for each input, in input order (``options``: decoding settings)."""
        raise NotImplementedError

    def input_from_line(self, line: str) -> str:
        """An input as ``seqnlp predict`` reads it from one line of text."""
        return line

    def predict_lines(self, model, lines: list[str], options: dict) -> list[str]:
        """``predict``, one line of text in and one out (``seqnlp predict --format text``)."""
        return [p.to_text() for p in self.predict(model, [self.input_from_line(line) for line in lines], options)]

    def fit_temperature(self, model, examples: list) -> dict | None:
        """For a task whose predictions carry probabilities: the temperature that makes them calibrated on
        ``examples`` (``{"temperature", "objective", "items"}``, ``seqnlp.evaluation.calibration``); None for the
        others."""
        return None

    def report_sections(self, results: dict, output_dir=None) -> list[str]:
        """Markdown sections for ``report.md`` (pictures, if any, are written into ``output_dir``)."""
        return []

    def data_files(self, path: str) -> list[str]:
        """The files a data path names (a translation prefix names one per language)."""
        return [path]

    def data_summary(self, splits: dict) -> dict:
        summary = {}
        for name, examples in splits.items():
            if examples is not None:
                summary[f"{name} examples"] = len(examples)
                summary[f"{name} tokens"] = sum(self.num_tokens(e) for e in examples)
        return summary


TASKS: dict[str, type[Task]] = {}


def register(cls):
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type[Task]:
    """The ``Task`` class of ``name``: its package's ``task`` module registers it (``seqnlp.tasks``)."""
    from seqnlp.tasks import task_names, task_part

    if not isinstance(name, str) or task_part(name, "task") is None or name not in TASKS:
        raise DataError(f"unknown task {str(name)[:40]!r}; choose from {', '.join(task_names())}")
    return TASKS[name]


def write_model_files(task: Task, model: torch.nn.Module, directory) -> None:
    """Write ``config.json``, ``model.safetensors``, the task's assets and a model card into ``directory``.

    The card has no scores yet: the run's end rewrites it with them (``seqnlp.storage.card``).
    """
    from seqnlp.storage.card import write_model_card

    directory = Path(directory)
    save_weights(model, directory / "model.safetensors")
    write_model_card(directory, task, sum(p.numel() for p in model.parameters()))
    write_task_config(task, directory)


def write_task_config(task: Task, directory) -> None:
    """``config.json``: the task's settings, its assets (files written into ``directory``) and its calibration."""
    extra = {"assets": task.save_assets(Path(directory))}
    if task.calibration is not None:
        extra["calibration"] = task.calibration
    write_model_config(directory, task.name, configs.to_dict(task.config), extra)


def save_model_dir(task: Task, model: torch.nn.Module, directory) -> None:
    """``write_model_files`` into a fresh folder that replaces ``directory`` atomically."""
    with atomic_directory(directory) as tmp:
        write_model_files(task, model, tmp)


def calibrate_model_dir(task: Task, model: torch.nn.Module, examples: list, fitted_on: str, source, target) -> dict:
    """Fit ``task``'s temperature on ``examples`` (``Task.fit_temperature``), set it on ``model`` and write the model
    folder ``source`` to ``target`` (which may be ``source``: a copy replaces it atomically) with the temperature in
    its ``config.json``; the weights and every other file are copied unchanged. Returns the calibration."""
    fitted = task.fit_temperature(model, examples)
    if fitted is None:
        raise ConfigError(f"a {task.name} model gives no probabilities to calibrate (ner and sentiment do)")
    task.calibration = {**fitted, "fitted_on": fitted_on}
    model.temperature = task.temperature
    copy_model_dir(task, source, target)
    return task.calibration


def copy_model_dir(task: Task, source, target) -> None:
    """Write the model folder ``source`` to ``target`` (which may be ``source``: a copy replaces it atomically) with
    ``task``'s config in its ``config.json``; the weights and every other file are copied unchanged."""
    with atomic_directory(target) as tmp:
        for path in Path(source).iterdir():
            if path.is_file() and path.name not in (COMPLETE_MARKER, "config.json"):
                shutil.copyfile(path, tmp / path.name)
        write_task_config(task, tmp)


def task_from_model_config(directory: Path, saved: dict, overrides: dict | None = None) -> Task:
    """The task a model directory's ``config.json`` describes, its assets loaded; every problem names the file."""
    source = str(directory / "config.json")
    try:
        cls = get_task(saved["task"])
    except SeqNLPError as err:
        raise type(err)(err.message, source) from None
    values = {**cls.settings_of(saved["config"]), **(overrides or {})}
    try:
        task = cls(configs.from_dict(cls.config_class, values, source=source))
    except SeqNLPError as err:
        raise type(err)(err.message, err.path or source, err.line) from None
    load_task_assets(task, directory, saved["assets"])
    task.calibration = check_calibration(saved.get("calibration"), source)
    return task


def load_task_assets(task: Task, directory: Path, assets: dict) -> None:
    """``task.load_assets``, with any malformation of the (untrusted) files reported as the directory's error."""
    try:
        task.load_assets(Path(directory), assets)
    except SeqNLPError as err:
        raise type(err)(err.message, err.path or str(directory), err.line) from None
    except Exception as err:
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise SeqNLPError(
            f"invalid vocabulary or tokenizer assets ({type(err).__name__}: {detail})", str(directory)
        ) from None


def build_checked_model(task: Task, weights: Path) -> torch.nn.Module:
    """Build ``task``'s model and load ``weights`` into it, checking every tensor's shape first.

    The first build is on the meta device (no memory), so a config whose sizes disagree with the
    weights file, or would need more memory than the file holds, fails before anything is allocated.
    """
    with torch.device("meta"):
        probe = task.build_model()
    check_weights(probe, weights)
    del probe
    model = task.build_model()
    load_weights(model, weights)
    if task.calibration is not None:
        model.temperature = task.temperature
    return model


def load_model_dir(directory, device: str = "cpu", overrides: dict | None = None) -> tuple[Task, torch.nn.Module]:
    """Rebuild a task and its model from a model directory (no pickle involved; every file is checked)."""
    from seqnlp.storage.hub import model_directory

    directory = model_directory(directory)  # hf://ORG/NAME: from the HuggingFace cache
    directory = existing_directory(directory) or directory  # a crash between a save's renames leaves DIR.old
    if is_export(directory):
        raise SeqNLPError(
            "an ONNX export (seqnlp export) runs with `seqnlp predict` and `seqnlp.load`; give its model folder here",
            str(directory),
        )
    saved = read_model_config(directory)
    task = task_from_model_config(directory, saved, overrides)
    model = build_checked_model(task, directory / "model.safetensors")
    model.to(device)
    model.eval()
    return task, model
