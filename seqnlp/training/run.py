"""train -> evaluate -> report, the same for every task (recipes and ``seqnlp train`` call this)."""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import io
import math
import os
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from seqnlp import config as configs
from seqnlp.errors import ConfigError, DataError
from seqnlp.evaluation.report import remove_run_files, write_predictions, write_report
from seqnlp.storage.card import ece_changes, vectors_summary, write_model_card
from seqnlp.storage.folders import OutputDirectory, existing_directory, read_model_config
from seqnlp.storage.hub import model_directory
from seqnlp.tasks.base import (
    build_checked_model,
    calibrate_model_dir,
    get_task,
    load_model_dir,
    load_task_assets,
    write_model_files,
)
from seqnlp.training import distributed
from seqnlp.training.checkpoints import checkpoint_path
from seqnlp.training.finetune import freeze, transfer_weights
from seqnlp.training.heap import configure_heap, release_memory
from seqnlp.training.trainer import Trainer, pick_device, resolve_precision

# What a saved config says about the run that made it, not about the model: a fine-tuning run never
# takes these over from the model directory (which is untrusted input, and names another run's
# data, budget and folder). Resuming continues the same run in its own folder and takes all of them.
RUN_SETTINGS = {
    "train_file",
    "dev_file",
    "test_file",
    "dataset",
    "dataset_config",
    "train_split",
    "dev_split",
    "test_split",
    "output_dir",
    "init_from",
    "pretrained_vectors",
    "epochs",
    "max_minutes",
    "quiet",
    "device",
    "threads",
    "ddp_backend",
    "precision",
    "report_to",
    "labels",
    "label_map",
    "reset_head",
    "extend_vocab",
    "new_rows_from",
    "new_vocab",
    "freeze",
    "lr_pretrained",
}


def build_parser(task_name: str, prog: str | None = None) -> argparse.ArgumentParser:
    cls = get_task(task_name)
    parser = configs.ArgumentParser(
        prog=prog or f"seqnlp train {task_name}",
        usage="%(prog)s [options]",
        description=f"Train, evaluate and report a {task_name} model.",
    )
    parser.add_argument("--config", help="YAML file of settings (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoints/last")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train afresh into a used output folder (its model stays until the new run saves one)",
    )
    configs.add_arguments(parser, cls.config_class)
    return parser


def file_checksums(config) -> dict:
    out = {}
    for key in ("train_file", "dev_file", "test_file"):
        path = getattr(config, key)
        if path and os.path.isfile(path):
            out[key] = {"path": path, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    return out


def _config_differences(old: dict, new: dict) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]


@dataclass
class Data:
    """A run's examples; ``dev`` is held out of ``train`` when no dev set is given (``selected_on`` says which)."""

    train: list
    dev: list
    test: list | None
    selected_on: str


def train(task_name: str, argv: list[str] | None = None, prog: str | None = None, on_evaluation=None) -> dict:
    """Run a whole recipe; returns the metrics written to ``metrics.json``.

    ``on_evaluation(epoch, dev_metric)``, if given, follows each dev evaluation; True stops training there (a
    search's pruned trial), and the run is evaluated and reported as it stands.
    """
    configure_heap()
    cls = get_task(task_name)
    args = build_parser(task_name, prog).parse_args(argv)
    output = OutputDirectory(getattr(args, "output_dir", None) or f"runs/{task_name}")
    if args.resume and args.overwrite:
        raise ConfigError(
            "give either --resume (continue the run in OUTPUT_DIR) or --overwrite (start afresh), not both"
        )
    writer = int(os.environ.get("RANK", "0")) == 0  # of a data-parallel run, rank 0 alone touches the folder
    if writer and output.path.exists():  # a busy or used folder fails at once, before any data is read
        _claim(output, args)
    with contextlib.nullcontext() if writer else contextlib.redirect_stdout(io.StringIO()):  # rank 0 speaks
        config, saved, device = resolve_config(cls, args, output.path)
        group = distributed.start(config.ddp_backend, device)
        try:
            task = seeded_task(cls, config)
            data = read_data(task)  # all of it read and checked before anything in the output folder is touched
            model, extras = prepare_model(task, saved, args.resume, data)
            if writer:
                _claim(output, args)
            state = fit(task, model, output.path, data, args.resume, group, on_evaluation)
            if not writer:
                return {}
            metrics = evaluate_and_report(task, model, state, data, output.path, device, extras)
        finally:
            distributed.stop()
    output.release()
    print(run_summary(metrics, task.metric, output.path), flush=True)
    return metrics


def resolve_config(cls, args, output_dir: Path):
    """The run's config (defaults < saved model or checkpoint < YAML < flags), the saved model's record, the device."""
    saved, base = _saved_settings(cls, args, output_dir)
    config = configs.resolve(cls.config_class, args, args.config, base=base)
    if not config.train_file and not config.dataset:
        sample = cls.sample_data()
        if sample is None:
            raise ConfigError("no training data: give --train-file or --dataset")
        print(f"no data given: training on the {cls.name} sample in {Path(sample['train_file']).parent}", flush=True)
        # The sample's settings sit below the YAML file and the flags, which still win.
        config = configs.resolve(cls.config_class, args, args.config, base={**base, **sample})
    config.output_dir = str(output_dir)
    given = _given_settings(args)
    if (config.max_minutes or config.max_steps) and not args.resume and "epochs" not in given:
        # "20 minutes" means 20 minutes: no epoch cap ends the run first (the schedule follows the budget alone).
        config.epochs = configs.UNBOUNDED_EPOCHS
        budgets = [f"{config.max_minutes:g} minutes"] if config.max_minutes else []
        budgets += [f"{config.max_steps} steps"] if config.max_steps else []
        kind = "time" if not config.max_steps else "step" if not config.max_minutes else "first"
        print(f"the {kind} budget ends the run: {' or '.join(budgets)} (--epochs N would also cap it)", flush=True)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not args.resume and "lr" not in given:
        # A step averages `world` batches: half as many steps of twice the batch want a larger rate; the square
        # root rule suits Adam (measured on CoNLL-2003 in docs/experiments.md).
        config.lr *= math.sqrt(world)
        print(f"data-parallel: learning rate {config.lr:g}, the default x sqrt({world}) (--lr sets it)", flush=True)
    device = pick_device(config.device)  # an unknown or absent device fails here, before any data is read
    own = {k: v for k, v in (saved or {}).get("fine_tuning_settings", {}).items() if k not in given}
    if own:
        print(
            "fine-tuning starts from "
            + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in own.items())
            + f" instead of the model's settings (the {cls.name} fine-tuning defaults; flags set them)",
            flush=True,
        )
    if saved is not None:
        unchanged = {"output_dir", "init_from", "quiet"} if args.resume else RUN_SETTINGS
        current = {k: v for k, v in configs.to_dict(config).items() if k not in unchanged}
        changes = _config_differences(saved["config"], current)
        if changes:
            print(
                ("resuming" if args.resume else "fine-tuning") + " with changed settings: " + "; ".join(changes),
                flush=True,
            )
    return config, saved, device


def _given_settings(args) -> set[str]:
    """The settings the user gave: flags and the YAML file (not the defaults, a saved model's or the sample's)."""
    given = set(vars(args))
    if args.config:
        given |= set(configs.load_yaml(args.config))
    return given


def seeded_task(cls, config):
    """The task, with threads and every random generator set from the config."""
    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    return cls(config)


def read_data(task) -> Data:
    """Train, dev and test examples; without a dev set, 10% of the training examples held out."""
    config = task.config
    train_set, dev_set, test_set = task.read("train"), task.read("dev"), task.read("test")
    if config.dataset and not config.train_file:
        from seqnlp.data import hf

        if hf.is_single_split(config.dataset, config.dataset_config):
            print(f"{config.dataset} is a single split: it is the training data (no test set)", flush=True)
        else:
            served = [
                f"train: {config.train_split}",
                f"dev: {config.dev_split if dev_set is not None else 'none (held out)'}",
                f"test: {config.test_split if test_set is not None else 'none'}",
            ]
            print(f"{config.dataset} splits: " + ", ".join(served), flush=True)
    if dev_set is not None:
        return Data(train_set, dev_set, test_set, "dev set")
    train_set, dev_set, selected_on = task.hold_out(train_set)
    print(f"no dev set given: {selected_on} to select the model", flush=True)
    return Data(train_set, dev_set, test_set, selected_on)


def prepare_model(task, saved: dict | None, resume: bool, data: Data) -> tuple[torch.nn.Module, dict]:
    """A resumed, fine-tuned or fresh model (labels of every split checked), and what the report says of it."""
    extras = {}
    if saved is not None and resume:
        load_task_assets(task, saved["directory"], saved["assets"])
        task.check_labels(data.train)
        task.check_labels(data.dev)
        model = task.build_model()
    elif saved is not None:
        model, extras["fine_tuning"] = adapted_model(task, saved["directory"], saved["assets"], data.train, data.dev)
    else:
        task.build_vocabularies(data.train)
        task.check_labels(data.dev)
        model = task.build_model()
        extras["vectors"] = task.init_model(model)
    if data.test is not None:
        task.check_labels(data.test)
    if task.config.frozen_parts():
        freeze(model, task.config.frozen_parts())
    return model, extras


def adapted_model(task, base: Path, assets: dict, train: list, dev: list) -> tuple[torch.nn.Module, dict]:
    """The model in ``base`` carried over to the new data's labels and words, and what the report says of it.

    ``task`` holds the new run's config; the base model is checked like any model directory.
    """
    load_task_assets(task, base, assets)
    if task.config.new_vocab and not task.uses_subwords():
        raise ConfigError(
            "--new-vocab re-trains a SentencePiece model; this model reads words and characters, "
            "which --extend-vocab extends"
        )
    old_model = build_checked_model(task, base / "model.safetensors")
    adaptation = task.adapt(train)
    task.check_labels(train)
    task.check_labels(dev)
    model = task.build_model()
    transfer_weights(old_model.state_dict(), model, task.weight_axes(), adaptation.maps)
    del old_model
    added = [i for i, old in enumerate(adaptation.maps.get("words", [])) if old != i]
    vectors = task.init_model(model, rows=added) if added else None
    if vectors is not None:
        source = vectors.get("source") or vectors.get("file")
        adaptation.notes["word vectors"] = (
            f"{vectors['started_rows']} of the {len(added)} added words start from {source}"
        )
    for what, note in adaptation.notes.items():
        print(f"fine-tuning: {what}: {note}", flush=True)
    before = task.evaluate(model, dev)[task.metric]
    print(f"fine-tuning: the base model's dev {task.metric} before training: {before:.4f}", flush=True)
    config_sha256 = hashlib.sha256((base / "config.json").read_bytes()).hexdigest()
    return model, {
        "base_model": str(base),
        "base_config_sha256": config_sha256,
        "dev_before": before,
        **adaptation.notes,
    }


def fit(task, model, output_dir: Path, data: Data, resume: bool, group=None, on_evaluation=None):
    """Train with the one Trainer; the best model by the dev metric is in ``output_dir/model``.

    ``group``: this process's place in a data-parallel run (``seqnlp.training.distributed``), which deals each global
    batch, ``batch_size`` x processes examples, out to the processes.
    """
    requested = task.config.precision
    task.config.precision = resolve_precision(requested, pick_device(task.config.device), task.bf16_pays)
    if requested == "auto":
        print(f"precision auto: {task.config.precision}", flush=True)
    if group is None:
        train_batches = partial(task.batches, task.prepare(data.train), True)
    else:
        config = task.config
        batching = copy.copy(task)
        batching.config = dataclasses.replace(
            config, batch_size=config.batch_size * group.world, batch_max_tokens=config.batch_max_tokens * group.world
        )
        items = task.prepare(data.train)

        def train_batches(epoch):
            return distributed.Shard(batching.batches(items, True, epoch), group.rank, group.world)

        print(
            f"data-parallel: {group.world} processes ({group.backend}), batch {config.batch_size} per process, "
            f"{config.batch_size * group.world} per step",
            flush=True,
        )
        torch.manual_seed(config.seed + 1_000_003 * group.rank)  # each process its own dropout (the weights are set)
    trainer = Trainer(
        model,
        task.config,
        output_dir,
        train_batches=train_batches,
        evaluate=lambda m: task.evaluate(m, data.dev, selection=True),
        write_model=partial(write_model_files, task, model),
        metric=task.metric,
        higher_is_better=task.higher_is_better,
        on_first_save=partial(remove_run_files, output_dir),
        group=group,
        loss_units=task.loss_units,
        on_evaluation=on_evaluation,
    )
    state = trainer.fit(resume=resume)
    if group is not None and not group.is_writer:
        return state
    if existing_directory(output_dir / "model") is None:
        raise DataError("training produced no model (it stopped before the first evaluation)")
    return state


def evaluate_and_report(task, model, state, data: Data, output_dir: Path, device, extras: dict) -> dict:
    """Score the saved model as a user loads it (so ``seqnlp evaluate`` reproduces the numbers); write metrics and
    report."""
    config = task.config
    summary = task.data_summary({"train": data.train, "dev": data.dev, "test": data.test})
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del model  # the evaluation needs none of the training state: give the memory back first
    release_memory()
    best_task, best = load_model_dir(existing_directory(output_dir / "model"), device=device)
    calibrated = None
    if getattr(config, "calibrate", False):
        source = existing_directory(output_dir / "model")
        calibrated = calibrate_model_dir(best_task, best, data.dev, data.selected_on, source, output_dir / "model")
    results = {"dev": best_task.evaluate(best, data.dev)}
    if data.test is not None:
        results["test"] = best_task.evaluate(best, data.test)
    metrics = {
        "task": task.name,
        **{split: _public(values) for split, values in results.items()},
        "train": {
            "epochs": state.epoch + (state.step_in_epoch > 0),
            "steps": state.step,
            "schedule_steps": state.schedule_steps,
            "seconds": state.seconds,
            "tokens_per_second": state.tokens / max(1e-9, state.seconds),
            "best_epoch": state.best_epoch,
            "ended_by": state.ended_by,
        },
        "config": configs.to_dict(config),
        "protocol": {
            "selected_on": data.selected_on,
            "seed": config.seed,
            "data": file_checksums(config) or config.dataset,
        },
    }
    if calibrated is not None:
        metrics["calibration"] = {**calibrated, **_ece_before_after(results)}
    vectors, fine_tuning = extras.get("vectors"), extras.get("fine_tuning")
    if fine_tuning:
        metrics["fine_tuning"] = {**fine_tuning, "dev_after": results["dev"][task.metric]}
    if vectors:
        metrics["pretrained_vectors"] = vectors
        summary["pretrained vectors"] = vectors_summary(vectors)
    summary["model parameters"] = parameters
    summary["training precision"] = config.precision
    if trainable != parameters:
        summary["trainable parameters"] = f"{trainable} (frozen: {config.freeze})"
    if fine_tuning:
        summary.update({f"fine-tuning: {k.replace('_', ' ')}": v for k, v in metrics["fine_tuning"].items()})
    write_report(output_dir, task.name, metrics, best_task.report_sections(results, output_dir), summary, task.metric)
    write_predictions(output_dir, results)
    write_model_card(existing_directory(output_dir / "model"), task, parameters, metrics, summary)
    return metrics


def _ece_before_after(results: dict) -> dict:
    """Each split's expected calibration error at the trained temperature and at the fitted one."""
    eces = {}
    for split, scores in results.items():
        found = scores.get("calibration", {})
        eces[f"{split}_ece"] = [found.get("ece_before", found.get("ece")), found.get("ece")]
    return eces


def run_summary(metrics: dict, metric: str, output_dir: Path) -> str:
    """The lines a finished run ends with: its scores, where the model and report are, how long it took."""
    train = metrics["train"]
    minutes, seconds = divmod(round(train["seconds"]), 60)
    scores = (
        f"dev {metric} {metrics['dev'][metric]:.4f} (best epoch {train['best_epoch']} of {train['epochs']}; "
        f"ended by {train.get('ended_by') or 'epochs'})"
    )
    if "test" in metrics:
        scores += f", test {metric} {metrics['test'][metric]:.4f}"
    calibrated = metrics.get("calibration")
    if calibrated:
        scores += (
            f"\ncalibration: temperature {calibrated['temperature']:.3f} fitted on the dev set "
            f"(ECE before -> after: {ece_changes(calibrated)})"
        )
    return (
        f"done in {minutes}m{seconds:02d}s: {scores}\nmodel: {output_dir / 'model'}\nreport: {output_dir / 'report.md'}"
    )


def _claim(output: OutputDirectory, args) -> None:
    """Lock the output folder; a fresh run refuses a used one unless ``--overwrite`` (HF's ``overwrite_output_dir``)."""
    output.acquire()
    if not args.resume and not args.overwrite and output.used():
        raise ConfigError(
            f"the output folder {output.path} is not empty: --resume continues its run, "
            "--overwrite starts afresh (the old model stays until the new run saves one)"
        )


def _saved_settings(cls, args, output_dir: Path) -> tuple[dict | None, dict]:
    """The saved config a run starts from (its checkpoint when resuming, the model when fine-tuning) and the settings it
    supplies."""
    if args.resume:
        checkpoint = existing_directory(checkpoint_path(output_dir))
        if checkpoint is None:
            raise ConfigError(f"--resume: no checkpoint in {checkpoint_path(output_dir)}")
        saved = read_model_config(checkpoint)
        given, started_from = getattr(args, "init_from", None), saved["config"].get("init_from")
        if given and not _same_source(given, started_from):
            # Resuming loads the checkpoint's weights: another starting model would be silently ignored.
            raise ConfigError(
                f"--init-from {given[:200]} contradicts --resume: the run in {output_dir} started from "
                f"{started_from or 'scratch'} and resumes from its checkpoint (drop --init-from, or start a new run "
                "in another folder)"
            )
        return {**saved, "directory": checkpoint}, cls.settings_of(saved["config"])
    if getattr(args, "init_from", None):
        source = model_directory(args.init_from)  # hf://ORG/NAME: from the HuggingFace cache
        directory = existing_directory(source) or source
        saved = read_model_config(directory)
        if saved["task"] != cls.name:
            raise ConfigError(
                f"--init-from: this is a {str(saved['task'])[:40]} model, not a {cls.name} model", str(directory)
            )
        inherited = cls.settings_of({k: v for k, v in saved["config"].items() if k not in RUN_SETTINGS})
        own = cls.fine_tuning_settings(inherited)
        return {**saved, "directory": directory, "fine_tuning_settings": own}, {**inherited, **own}
    return None, {}


def _same_source(given: str, started_from: str | None) -> bool:
    """Whether ``--init-from`` names the model a run started from (a path however written, or the same hf:// name)."""
    if not started_from:
        return False
    if given.startswith("hf://") or started_from.startswith("hf://"):
        return given == started_from
    return Path(given).resolve() == Path(started_from).resolve()


def _public(values: dict) -> dict:
    """Metrics for metrics.json: drop report-only extras (keys starting with an underscore)."""
    return {k: v for k, v in values.items() if not k.startswith("_")}
