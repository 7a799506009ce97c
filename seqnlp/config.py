"""Dataclass configs shared by every task, loaded from YAML and overridden by command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, fields
from pathlib import Path

from seqnlp.errors import ConfigError


@dataclass
class RunConfig:
    """Data sources, output and training settings that every task shares."""

    # data
    train_file: str | None = None
    dev_file: str | None = None
    test_file: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    train_split: str = "train"
    dev_split: str = "validation"
    test_split: str = "test"
    output_dir: str | None = None
    init_from: str | None = None
    # model (shared encoder)
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 256
    bidirectional: bool = True
    dropout: float = 0.5
    cell_impl: str = "fused"          # fused (PyTorch kernels) | reference (seqnlp.nn.cells, from the equations)
    # training
    epochs: int = 30
    max_minutes: float | None = None
    batch_size: int = 32
    batch_max_tokens: int = 0         # > 0: training batches hold at most this many padded tokens (long inputs in smaller batches)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    schedule: str = "linear"
    average_decay: float = 0.0        # > 0: evaluate and save an exponential moving average of the weights (e.g. 0.999)
    warmup_steps: int = 0
    patience: int = 10
    log_every: int = 50
    eval_max_tokens: int = 4096       # inference batches hold at most this many (padded) tokens
    seed: int = 1
    device: str = "auto"
    threads: int = 0
    quiet: bool = False

    def validate(self) -> None:
        checks = {
            "cell": self.cell in ("rnn", "lstm", "gru"),
            "cell_impl": self.cell_impl in ("fused", "reference"),
            "optimizer": self.optimizer in ("sgd", "adam", "adamw"),
            "schedule": self.schedule in ("constant", "linear", "cosine"),
            "layers": self.layers >= 1,
            "hidden": self.hidden >= 1,
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "dropout": 0 <= self.dropout < 1,
            "average_decay": 0 <= self.average_decay < 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"invalid value for {name}: {getattr(self, name)!r}")
        if self.train_file and self.dataset:
            raise ConfigError("give either --train-file or --dataset, not both")


def _field_type(cls, field):
    hints = typing.get_type_hints(cls)
    hint = hints[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _coerce(cls, name: str, value):
    field = next(f for f in fields(cls) if f.name == name)
    kind = _field_type(cls, field)
    if value is None:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    try:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str):
            return value
        if kind in (int, float):
            return kind(value)
    except (TypeError, ValueError):
        pass
    if kind is str:
        return str(value)
    raise ConfigError(f"{name} must be of type {kind.__name__}, not {value!r}")


def from_dict(cls, values: dict, source: str = "config"):
    """Build ``cls`` from a mapping; unknown keys are an error (a setting nobody reads is a bug)."""
    known = {f.name for f in fields(cls)}
    clean = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"unknown setting {key!r} in {source}")
        clean[name] = _coerce(cls, name, value)
    config = cls(**clean)
    config.validate()
    return config


def load_yaml(path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError("config file not found", str(path)) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML: {str(err).splitlines()[0]}", str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of setting: value", str(path))
    return data


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per config field; defaults are suppressed so only flags the user typed override."""
    for field in fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind = _field_type(cls, field)
        if kind is bool:  # both spellings whatever the default, so a changed default breaks no command line
            parser.add_argument(flag, dest=field.name, action="store_const", const=True, default=argparse.SUPPRESS)
            parser.add_argument("--no-" + field.name.replace("_", "-"), dest=field.name, action="store_const", const=False, default=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, dest=field.name, type=kind, default=argparse.SUPPRESS, metavar=field.name.upper())


def resolve(cls, namespace: argparse.Namespace, config_file: str | None = None, base: dict | None = None):
    """defaults < ``base`` (a saved config, when resuming or fine-tuning) < YAML file < flags."""
    values = dict(base or {})
    if config_file:
        values.update(load_yaml(config_file))
    names = {f.name for f in fields(cls)}
    values.update({k: v for k, v in vars(namespace).items() if k in names})
    return from_dict(cls, values, source=config_file or "command line")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)
