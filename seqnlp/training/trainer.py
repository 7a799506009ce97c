"""One Trainer for every task: the model's ``forward(batch)`` returns the loss, the task supplies batches and
evaluation."""

from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from seqnlp import compat
from seqnlp.config import UNBOUNDED_EPOCHS, RunConfig
from seqnlp.data.batching import to_device
from seqnlp.errors import ConfigError
from seqnlp.nn.embedding import word_tables
from seqnlp.storage.folders import (
    atomic_directory,
)
from seqnlp.training.averaging import WeightAverage
from seqnlp.training.checkpoints import Checkpoints, TrainState, checkpoint_path
from seqnlp.training.divergence import check_finite, check_mean_loss, what_is_kept
from seqnlp.training.heap import memory_mib, release_memory
from seqnlp.training.optim import FusedOptimizer
from seqnlp.training.run_log import LossWindow, Progress, RunLog
from seqnlp.training.selection import Selection


def pick_device(name: str) -> torch.device:
    """``auto``: the GPU if torch sees one, else the CPU; otherwise the named device, which must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, not {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: this torch sees no CUDA GPU (torch {torch.__version__}); use --device cpu")
    return device


def has_bf16_matrix_units(device: torch.device) -> bool:
    """Whether bf16 arithmetic runs in hardware here (without it, oneDNN has no bf16 LSTM kernel at all)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and compat.bf16_matrix_units_on_cpu()


def resolve_precision(precision: str, device: torch.device, bf16_pays: bool) -> str:
    """``auto``: bf16 where the device has bf16 arithmetic and the model trains faster in it, fp32 elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if bf16_pays and has_bf16_matrix_units(device) else "fp32"


def training_precision(precision: str, device: torch.device):
    """The context of a training forward: fp32 as written, or bf16 autocast (matrix products and recurrent
    layers in bf16, reductions and the loss in fp32); refused where the hardware has no bf16 arithmetic."""
    if precision == "fp32":
        return nullcontext
    if not has_bf16_matrix_units(device):
        raise ConfigError(
            f"--precision bf16 needs bf16 matrix instructions, which this {device.type.upper()} lacks "
            "(AVX512-BF16 or AMX on CPUs; without them PyTorch's LSTM does not run in bf16); use --precision fp32"
        )
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def build_optimizer(model: torch.nn.Module, config: RunConfig) -> FusedOptimizer:
    """SGD with momentum, Adam or AdamW on torch's fused kernels (``seqnlp.training.optim`` says why not
    ``torch.optim``)."""
    momentum = config.momentum if config.optimizer == "sgd" else 0.0
    rates = {}  # parameter -> its own peak rate, where it is not --lr
    if config.lr_pretrained is not None:  # fine-tuning: the body (embeddings, encoder) learns at its own rate
        body = [p for name, module in model.named_children() if name in BODY for p in module.parameters()]
        rates.update({id(p): config.lr_pretrained for p in body})
    if config.word_embedding_lr is not None:
        rates.update({id(table.weight): config.word_embedding_lr for table in word_tables(model)})
    scales = [rates.get(id(p), config.lr) / config.lr for p in model.parameters() if p.requires_grad]
    return FusedOptimizer(
        model.parameters(), config.optimizer, config.lr, config.weight_decay, momentum, lr_scales=scales
    )


BODY = ("embedding", "embed", "encoder", "rnn")  # the modules a fine-tuned model brings, as against its output layer


def lr_factor(schedule: str, progress: float, step: int, warmup_steps: int) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1] of the training budget (steps or minutes, whichever binds
    first)."""
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        decay = 1.0 - progress
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        decay = 1.0
    return warmup * max(decay, 0.01)


@dataclass(frozen=True)
class Budget:
    """What ends a run's training, and where its learning-rate schedule stands: the epochs' steps (cut to
    ``--max-steps``) or ``--max-minutes``, whichever binds first."""

    total_steps: int  # the steps the schedule anneals over
    max_steps: int | None
    seconds: float | None  # --max-minutes in seconds

    @staticmethod
    def of(config: RunConfig, steps_per_epoch: int) -> Budget:
        total = max(1, steps_per_epoch * config.epochs)
        return Budget(
            min(total, config.max_steps) if config.max_steps else total,
            config.max_steps,
            config.max_minutes * 60 if config.max_minutes else None,
        )

    def progress(self, step: int, elapsed: float) -> float:
        """How far along the schedule is: the larger of the steps' share and the clock's."""
        return max(step / self.total_steps, elapsed / self.seconds if self.seconds else 0.0)

    def learning_rate(self, config: RunConfig, step: int, elapsed: float) -> float:
        progress = self.progress(step, elapsed)
        return config.lr * lr_factor(config.schedule, progress, step, config.warmup_steps)

    def out_of_time(self, state: TrainState) -> bool:
        return bool(self.seconds and state.seconds >= self.seconds)

    def spent(self, state: TrainState, last_in_epoch: bool) -> str | None:
        """What a budget says if it ends the run at this step: the clock's, or the step count's before an epoch's
        last step (after it, the epoch's own evaluation and end follow)."""
        if self.out_of_time(state):
            minutes = self.seconds / 60
            return f"time budget of {minutes:g} minutes used up at step {state.step} (epoch {state.epoch + 1})"
        if self.max_steps and state.step >= self.max_steps and not last_in_epoch:
            return f"step budget of {self.max_steps} steps used up in epoch {state.epoch + 1}"
        return None

    def schedule_steps(self, state: TrainState) -> int:
        """The steps the schedule annealed over: its step count, or where the clock led it, the steps the time
        budget held at the run's rate."""
        by_clock = state.seconds / self.seconds if self.seconds else 0.0
        if by_clock <= state.step / self.total_steps:
            return self.total_steps
        return max(1, round(state.step / min(1.0, by_clock)))


class Trainer:
    """Trains ``model`` with the settings of ``config``: the loop, with its parts kept apart (``Checkpoints``,
    ``RunLog`` and ``Progress``, ``WeightAverage``, the data-parallel agreement in ``seqnlp.training.distributed``).

    ``train_batches(epoch)`` returns that epoch's batches, a sequence (a pure function of the epoch, so a
    resumed run replays the same order); ``evaluate(model)`` returns dev metrics in which
    ``metric`` is maximised (or minimised when ``higher_is_better`` is false);
    ``write_model(directory)`` writes the model files (weights, config, vocabularies) into a
    folder; the best model goes to ``output_dir/model`` and every checkpoint holds a copy too.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: RunConfig,
        output_dir,
        train_batches: Callable[[int], list],
        evaluate: Callable[[torch.nn.Module], dict],
        write_model: Callable[[Path], None],
        metric: str,
        higher_is_better: bool = True,
        on_first_save: Callable[[], None] | None = None,
        group=None,
        loss_units: Callable[[dict], float] | None = None,
        on_evaluation: Callable[[int, float], bool] | None = None,
    ):
        from seqnlp.training import distributed

        self.model = model
        self.group = group  # seqnlp.training.distributed.Group of a data-parallel run; None: one process
        self.loss_units = loss_units  # what a batch's loss averages over: weights each process's share of a step
        # called with (epoch, dev metric) after each evaluation; True stops the run (a search's pruned trial)
        self.on_evaluation = on_evaluation
        self.is_writer = group is None or group.is_writer
        self.config = config
        self.output_dir = Path(output_dir)
        self.train_batches, self.evaluate, self.write_model = train_batches, evaluate, write_model
        self.metric = metric
        self.selection = Selection(metric, higher_is_better, config.patience, config.patience_after)
        self.signalled = False  # set by Ctrl-C / SIGTERM: the step ends, a checkpoint is written, the run stops
        self.stop_agreed = False  # data-parallel: some process was signalled, as all agreed after the last step
        self.device = distributed.device_of(group, pick_device(config.device))
        self.model.to(self.device)
        self.precision = training_precision(config.precision, self.device)
        self.parallel = self.row_exchange = None
        if group is not None:
            self.parallel, self.row_exchange = distributed.data_parallel(model, group, self.device)
        self.optimizer = build_optimizer(model, config)
        self.average = WeightAverage(model, config.average_decay) if config.average_decay else None
        self.state = TrainState()
        self.checkpoint_dir = checkpoint_path(self.output_dir)
        self.checkpoints = Checkpoints(self.checkpoint_dir, model, self.optimizer, self.average, self.device, group)
        self.run_log = RunLog(self.output_dir, self.is_writer, config.report_to == "tensorboard")
        self.progress = Progress(False, None, 0)
        self.kept = partial(what_is_kept, self.output_dir, self.checkpoint_dir)  # said when a run fails
        # A fresh run into a used folder leaves the earlier run's files (model, metrics, log) alone until
        # it has a model or checkpoint of its own to put in their place; its log lines wait until then.
        self.take_over_folder = partial(self.run_log.take_over, partial(remove_run, on_first_save, self.checkpoint_dir))

    @property
    def stop_requested(self) -> bool:
        """Whether to stop: signalled, or in a data-parallel run, agreed at the last step (a signal that arrives
        between steps on one process must not stop it alone)."""
        return self.stop_agreed if self.group is not None else self.signalled

    # -- the folder ------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        self.checkpoints.save(self.state, self.write_model, self.take_over_folder)

    def log(self, record: dict) -> None:
        self.run_log.write(record)

    # -- the loop ----------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainState:
        config = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        else:
            self.run_log.hold()
        state = self.state
        if state.finished or state.epoch >= config.epochs:
            print(f"nothing left to train: the checkpoint finished {state.epoch} of {config.epochs} epochs", flush=True)
            return state
        batches = self.train_batches(state.epoch)
        self.budget = Budget.of(config, len(batches))  # every epoch has the same number of batches
        self.started = time.perf_counter() - state.seconds
        # A run that its budget ends has no step count to show progress against: steps and their rate only.
        total = None if self.budget.seconds and config.epochs >= UNBOUNDED_EPOCHS else self.budget.total_steps
        self.progress = Progress(not config.quiet and self.is_writer, total, state.step)
        with stop_on_signals(self):
            self._train_epochs(batches)
        state.schedule_steps = self.budget.schedule_steps(state)
        self.progress.close()
        if self.stop_requested:
            print(
                f"interrupted at step {state.step} (epoch {state.epoch + 1}): --resume continues from "
                f"{self.checkpoint_dir}",
                flush=True,
            )
            raise KeyboardInterrupt
        return state

    def _resume(self) -> None:
        self.state = state = self.checkpoints.resume()
        self.run_log.forget_after(state.step)
        print(f"resuming from {self.checkpoint_dir}: epoch {state.epoch + 1}, step {state.step}", flush=True)

    def _train_epochs(self, batches: list) -> None:
        """Epochs until the last, the time budget, early stopping or a stop request; a checkpoint after each."""
        config, state = self.config, self.state
        stop = False
        while state.epoch < config.epochs and not stop:
            batches = batches or self.train_batches(state.epoch)
            interrupted, epoch_loss = self._train_epoch(batches)
            check_mean_loss(state, epoch_loss, config.divergence_factor, self.kept)
            out_of_time = self.budget.out_of_time(state)
            out_of_steps = bool(config.max_steps and state.step >= config.max_steps)
            if not interrupted or out_of_time or out_of_steps:
                self._evaluate(epoch_loss)
            if not interrupted:
                state.epoch += 1
                state.step_in_epoch = 0
                batches = None
            self.selection.stops_early(state)
            stop = interrupted or out_of_steps or state.finished or self.stop_requested
            state.ended_by = ending(state, out_of_time, out_of_steps, self.stop_requested, config.epochs)
            self.save_checkpoint()
            release_memory()

    def _train_epoch(self, batches: list) -> tuple[bool, float]:
        """Train on the epoch's remaining batches; returns (stopped before the end?, mean loss)."""
        config, state = self.config, self.state
        self.model.train()
        window = LossWindow()
        last_checkpoint = state.seconds  # the run's clock, which a data-parallel run's processes share
        for index in range(state.step_in_epoch, len(batches)):
            lr = self._set_learning_rate()
            loss, tokens = self._step(batches[index])
            if state.first_loss is None:
                state.first_loss = loss
            state.step += 1
            state.step_in_epoch += 1
            state.tokens += tokens
            state.seconds = time.perf_counter() - self.started
            if self.group is not None:
                from seqnlp.training import distributed

                state.seconds, self.stop_agreed = distributed.agree(
                    state.seconds, self.signalled, self.is_writer, self.device
                )
            window.add(loss, tokens)
            if state.step % config.log_every == 0:
                check_mean_loss(state, window.mean, config.divergence_factor, self.kept)
                speed = window.speed()
                self.log({"step": state.step, "epoch": state.epoch + 1, "loss": window.mean, "lr": lr,
                          "tokens_per_s": speed})  # fmt: skip
                self._show(window.mean, speed)
            self.progress.update()
            spent = self.budget.spent(state, last_in_epoch=index + 1 == len(batches))
            if spent:
                self.progress.close()
                print(f"{spent}: a last dev evaluation, then the end", flush=True)
                return True, window.mean
            if self.stop_requested and index + 1 < len(batches):  # at an epoch's end, the epoch is finished first
                return True, window.mean
            if state.seconds - last_checkpoint > 600:  # long epochs: a crash loses at most ten minutes
                self.save_checkpoint()
                last_checkpoint = state.seconds
        return False, window.mean

    def _set_learning_rate(self) -> float:
        state = self.state
        # a data-parallel run's processes must agree on the rate: rank 0's clock at the last step
        elapsed = state.seconds if self.group is not None else time.perf_counter() - self.started
        lr = self.budget.learning_rate(self.config, state.step, elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _step(self, batch: dict) -> tuple[float, int]:
        """One optimizer step; returns the step's loss and tokens (of the whole global batch in a data-parallel run)."""
        if self.group is not None:
            from seqnlp.training import distributed
        with self.precision():
            if self.parallel is None:
                loss = self.model(to_device(batch, self.device))
            else:
                loss = distributed.collective(lambda: self.parallel(to_device(batch, self.device)), computes=True)
        tokens = int(batch["num_tokens"])
        if self.group is not None:
            units = self.loss_units(batch) * batch.get("loss_weight", 1.0)
            scaled, value, tokens = distributed.global_batch_loss(loss, units, tokens, self.group.world, self.device)
        else:
            scaled, value = loss, loss.item()
        check_finite(self.state, value, self.kept)
        self.optimizer.zero_grad(set_to_none=True)
        if self.group is None:
            scaled.backward()
        else:  # DDP all-reduces the gradients inside backward: a process that died is found here
            distributed.collective(scaled.backward, computes=True)
        if self.row_exchange is not None:
            self.row_exchange()
        if self.config.clip_norm and self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm, foreach=True)
        if self.state.epoch < self.config.word_embedding_frozen_epochs:
            for table in word_tables(self.model):
                table.weight.grad = None  # the optimizer skips a parameter without a gradient, state and all
        self.optimizer.step()
        if self.average:
            self.average.update(self.state.step)
        return value, tokens

    def _evaluate(self, epoch_loss: float) -> None:
        """Dev evaluation (of the averaged weights, when averaging); the model is saved when the dev metric improves
        (in a data-parallel run, by the writer: ``distributed.writer_selects``)."""
        if self.group is None:
            self._evaluate_here(epoch_loss)
            return
        from seqnlp.training import distributed

        distributed.writer_selects(self.state, partial(self._evaluate_here, epoch_loss), self.is_writer)

    def _evaluate_here(self, epoch_loss: float) -> None:
        state = self.state
        with self.average.applied() if self.average else nullcontext():
            dev = self.evaluate(self.model)
            value = dev[self.metric]
            improved = self.selection.improves(state, value)
            if improved:
                self.take_over_folder()
                with atomic_directory(self.output_dir / "model") as tmp:
                    self.write_model(tmp)
        self.selection.record(state, value, improved, self.budget.progress(state.step, state.seconds))
        numbers = {k: v for k, v in dev.items() if isinstance(v, (int, float))}
        self.log(
            {"epoch": state.epoch + 1, "step": state.step, "train_loss": epoch_loss, "dev": numbers,
             "seconds": state.seconds, **memory_mib()}
        )  # fmt: skip
        self._show(epoch_loss)
        if self.on_evaluation is not None and self.on_evaluation(state.epoch + 1, value):
            print(f"pruned at step {state.step} (epoch {state.epoch + 1}): dev {self.metric} {value:.4f}", flush=True)
            state.finished, state.ended_by = True, "pruned"

    def _show(self, loss: float, speed: float | None = None) -> None:
        self.progress.show(self.state.epoch + 1, loss, {f"best_dev_{self.metric}": self.state.best_metric}, speed)


def remove_run(remove_files: Callable[[], None] | None, checkpoint_dir: Path) -> None:
    """Remove an earlier run's files (``remove_files``) and checkpoints, which would resume that run."""
    if remove_files:
        remove_files()
    shutil.rmtree(checkpoint_dir.parent, ignore_errors=True)


def ending(state: TrainState, out_of_time: bool, out_of_steps: bool, stop_requested: bool, epochs: int) -> str | None:
    """What ended the run after an epoch (``checkpoints.ENDINGS``), or what already had (early stopping, pruning)."""
    if out_of_time:
        return "time budget"
    if out_of_steps:
        return "step budget"
    if stop_requested:
        return "interrupted"
    if state.epoch >= epochs and state.ended_by != "pruned":
        return "epochs"
    return state.ended_by


@contextmanager
def stop_on_signals(trainer: Trainer):
    """While training, Ctrl-C (SIGINT) and SIGTERM ask ``trainer`` to stop after its current step, with a checkpoint.

    A second signal acts as it would have without this (Ctrl-C raises KeyboardInterrupt at once). Only the
    main thread can take signals: elsewhere (a notebook's worker thread) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        trainer.signalled = True
        signal.signal(signum, previous[signum])

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
