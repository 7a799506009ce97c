"""One Trainer for every task: the model's ``forward(batch)`` returns the loss, the task supplies batches and
evaluation."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from seqnlp import compat
from seqnlp.config import UNBOUNDED_EPOCHS, RunConfig
from seqnlp.data.batching import to_device
from seqnlp.errors import ConfigError, SeqNLPError
from seqnlp.storage.folders import (
    atomic_directory,
    existing_directory,
    load_weights,
    read_json,
    recover_directory,
    write_json,
    write_text_atomic,
)
from seqnlp.training.heap import memory_mib, release_memory
from seqnlp.training.optim import FusedOptimizer


class TrainingError(SeqNLPError):
    """Training cannot go on (for example a non-finite loss)."""


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
    scales = None
    if config.lr_pretrained is not None:  # fine-tuning: the body (embeddings, encoder) learns at its own rate
        body = {id(p) for name, module in model.named_children() if name in BODY for p in module.parameters()}
        scales = [
            config.lr_pretrained / config.lr if id(p) in body else 1.0 for p in model.parameters() if p.requires_grad
        ]
    return FusedOptimizer(
        model.parameters(), config.optimizer, config.lr, config.weight_decay, momentum, lr_scales=scales
    )


BODY = ("embedding", "embed", "encoder", "rnn")  # the modules a fine-tuned model brings, as against its output layer


def checkpoint_path(output_dir) -> Path:
    """Where a run in ``output_dir`` keeps its last checkpoint (``--resume`` continues from it)."""
    return Path(output_dir) / "checkpoints" / "last"


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


class WeightAverage:
    """Exponential moving average of a model's trainable parameters (Polyak averaging).

    The averaged weights are what gets evaluated and saved, smoothing out the last steps' noise at
    no training cost (NMT's checkpoint averaging does the same; on SST-2 it measured neutral).
    Early steps use a smaller decay, ``min(decay, (1 + step) / (10 + step))``, so the average
    does not remember the random initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.average = [p.detach().clone() for _, p in self.named]

    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        compat.lerp_(self.average, [p.detach() for _, p in self.named], 1.0 - decay)

    @contextmanager
    def applied(self):
        """The model holds the averaged weights inside the ``with`` block and its own weights again after it."""
        # Copies into the parameters themselves, not their .data, so their version counters move: products
        # prepared from the weights (Seq2Seq.decoder) are rebuilt for the averaged weights and again after.
        params = [p for _, p in self.named]
        own = [p.detach().clone() for p in params]
        with torch.no_grad():
            compat.copy_(params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                compat.copy_(params, own)

    def save(self, path: Path) -> None:
        save_file({name: t.contiguous() for (name, _), t in zip(self.named, self.average)}, str(path))

    def load(self, path: Path) -> None:
        saved = load_file(str(path))
        compat.copy_(self.average, [saved[name].to(t.device) for (name, _), t in zip(self.named, self.average)])


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs to continue exactly."""

    epoch: int = 0  # current epoch (0-based)
    step_in_epoch: int = 0  # batches of the current epoch already trained
    step: int = 0  # optimizer steps in total
    seconds: float = 0.0  # training wall-clock time so far
    tokens: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the best dev metric (early stopping)
    finished: bool = False  # stopped early: resuming has nothing left to do
    first_loss: float | None = None  # the untrained model's loss, which the divergence check compares against
    ended_by: str | None = None  # what ended training: ENDINGS


# What can end a run's training, as metrics.json and the report name it.
ENDINGS = ("epochs", "time budget", "early stopping", "interrupted")


class Trainer:
    """Trains ``model`` with the settings of ``config``.

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
    ):
        self.model = model
        self.group = group  # seqnlp.training.distributed.Group of a data-parallel run; None: one process
        self.loss_units = loss_units  # what a batch's loss averages over: weights each process's share of a step
        self.is_writer = group is None or group.is_writer
        self.config = config
        self.output_dir = Path(output_dir)
        self.train_batches = train_batches
        self.evaluate = evaluate
        self.write_model = write_model
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.signalled = False  # set by Ctrl-C / SIGTERM: the step ends, a checkpoint is written, the run stops
        self.stop_agreed = False  # data-parallel: some process was signalled, as all agreed after the last step
        # A fresh run into a used folder leaves the earlier run's files (model, metrics, log) alone until
        # it has a model or checkpoint of its own to put in their place; its log lines wait until then.
        self.on_first_save = on_first_save
        self.pending_log: list[dict] | None = None
        from seqnlp.training import distributed

        self.device = distributed.device_of(group, pick_device(config.device))
        self.model.to(self.device)
        self.precision = training_precision(config.precision, self.device)
        self.parallel = self.row_exchange = None
        if group is not None:
            from torch.nn.parallel import DistributedDataParallel

            tables = distributed.row_sparse_parameters(model)
            if tables and not compat.leave_to_row_exchange(model, list(tables)):
                tables = {}  # this PyTorch's DDP cannot be told to leave them: it reduces them densely
            self.row_exchange = distributed.RowExchange(tables.values(), group.world) if tables else None
            # Buffers (CRF masks, output ids) never change: nothing to broadcast at each forward.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.parallel = distributed.collective(
                lambda: DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
            )
        self.optimizer = build_optimizer(model, config)
        self.average = WeightAverage(model, config.average_decay) if config.average_decay else None
        self.state = TrainState()
        self.checkpoint_dir = checkpoint_path(self.output_dir)
        self.log_path = self.output_dir / "train_log.jsonl"
        self.board_writer = open_tensorboard() if config.report_to == "tensorboard" else None
        self.board = None

    @property
    def stop_requested(self) -> bool:
        """Whether to stop: signalled, or in a data-parallel run, agreed at the last step (a signal that arrives
        between steps on one process must not stop it alone)."""
        return self.stop_agreed if self.group is not None else self.signalled

    # -- checkpoints -------------------------------------------------------------------
    def _take_over_folder(self) -> None:
        """Before this run's first save: remove the earlier run's files and write the log lines kept so far."""
        if self.pending_log is None:
            return
        pending, self.pending_log = self.pending_log, None
        if self.on_first_save:
            self.on_first_save()
        self.log_path.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoint_dir.parent, ignore_errors=True)  # the earlier run's: it would resume that run
        for record in pending:
            self.log(record)

    def _rng_states(self) -> dict:
        states = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":  # dropout on the GPU draws from the device's generator
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        return states

    def _own_states(self) -> dict:
        """What differs between the processes of a data-parallel run besides the random state: a language model's
        carried hidden state, which is that of the process's own streams."""
        if type(self.model).get_extra_state is not torch.nn.Module.get_extra_state:
            return {**self._rng_states(), "extra_state": self.model.get_extra_state().detach().cpu().contiguous()}
        return self._rng_states()

    def save_checkpoint(self) -> None:
        rank_states = None
        if self.group is not None:  # every rank's random state, so that each resumes its own stream
            from seqnlp.training import distributed

            rank_states = distributed.gather_to_writer((self._own_states(), _jsonable(random.getstate())))
        if not self.is_writer:
            return
        self._take_over_folder()
        with atomic_directory(self.checkpoint_dir) as tmp:
            self.write_model(tmp)
            self.optimizer.save(tmp / "optimizer.safetensors")
            if self.average:
                self.average.save(tmp / "average.safetensors")
            save_file(self._rng_states(), str(tmp / "rng.safetensors"))
            rng = {"python": _jsonable(random.getstate())}
            extra = {}
            if rank_states is not None:
                for rank, (tensors, python) in enumerate(rank_states):
                    save_file(tensors, str(tmp / f"rng-rank{rank}.safetensors"))
                    rng[f"python-rank{rank}"] = python
                extra["processes"] = self.group.world
            write_json(tmp / "trainer_state.json", {"state": vars(self.state), "rng": rng, **extra})

    def load_checkpoint(self) -> bool:
        # the newest complete copy a crash left, put in its place (by the writer alone; the others read it after)
        recover = recover_directory if self.is_writer else existing_directory
        directory = recover(self.checkpoint_dir)
        if directory is None:
            return False
        load_weights(self.model, directory / "model.safetensors")
        try:
            if (directory / "optimizer.safetensors").exists():
                self.optimizer.load(directory / "optimizer.safetensors")
            else:  # checkpoints of seqnlp before 2026-11-26; weights_only: no code is unpickled
                self.optimizer.load_state_dict(
                    torch.load(directory / "optimizer.pt", map_location=self.device, weights_only=True)
                )
        except ValueError as err:
            raise TrainingError(f"--resume: {directory}: {err}") from None
        if self.average:
            if not (directory / "average.safetensors").exists():
                raise TrainingError(f"--resume: {directory} has no averaged weights; resume with --average-decay 0")
            self.average.load(directory / "average.safetensors")
        data = read_json(directory / "trainer_state.json")
        self.state = _train_state(data, directory / "trainer_state.json")
        saved_world, world = data.get("processes", 1), self.group.world if self.group else 1
        if saved_world != world:
            raise TrainingError(
                f"--resume: the checkpoint was written by {saved_world} process(es), this run has {world}: "
                f"resume with the same number (torchrun --nproc-per-node {saved_world})",
                str(directory),
            )
        rank = f"-rank{self.group.rank}" if self.group else ""
        try:
            rng_states = load_file(str(directory / f"rng{rank}.safetensors"))
            torch.set_rng_state(rng_states["torch"])
            if self.device.type == "cuda" and "cuda" in rng_states:
                torch.cuda.set_rng_state(rng_states["cuda"], self.device)
            if "extra_state" in rng_states:  # this process's carried state, not rank 0's in model.safetensors
                self.model.set_extra_state(rng_states["extra_state"].to(self.device))
            random.setstate(_tupled(data["rng"][f"python{rank}"]))
        except Exception as err:  # a checkpoint is files on disk: a damaged one is reported, not a traceback
            raise TrainingError(
                f"--resume: damaged random-number state ({type(err).__name__}: {str(err)[:120]})", str(directory)
            ) from None
        return True

    # -- logging -----------------------------------------------------------------------
    def _forget_lost_steps(self) -> None:
        """Drop log lines of steps after the checkpoint: a killed run wrote them, the resumed run trains them again."""
        if not self.is_writer or not self.log_path.exists():
            return
        kept = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                step = json.loads(line).get("step", 0)
            except (json.JSONDecodeError, AttributeError):
                continue  # a line cut short by the kill
            if isinstance(step, int) and step <= self.state.step:
                kept.append(line)
        write_text_atomic(self.log_path, "".join(kept))

    def log(self, record: dict) -> None:
        if not self.is_writer:
            return
        if self.pending_log is not None:
            self.pending_log.append(record)
            return
        try:
            with open(self.log_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
        except OSError as err:
            raise TrainingError(f"cannot write: {err.strerror or err}", str(self.log_path)) from None
        if self.board_writer is not None:
            self.board = self.board or self.board_writer(str(self.output_dir / "tensorboard"))
            for name, value in scalars(record):
                self.board.add_scalar(name, value, global_step=record["step"])
            self.board.flush()

    def _improved(self, value: float) -> bool:
        best = self.state.best_metric
        return best is None or (value > best if self.higher_is_better else value < best)

    # -- the loop ----------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainState:
        config = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            if self.group is not None and not self.is_writer:
                from seqnlp.training import distributed

                distributed.barrier()  # the writer has put the checkpoint in place
            if not self.load_checkpoint():
                raise TrainingError(f"--resume: no checkpoint in {self.checkpoint_dir}")
            if self.group is not None and self.is_writer:
                from seqnlp.training import distributed

                distributed.barrier()
            self._forget_lost_steps()
            print(
                f"resuming from {self.checkpoint_dir}: epoch {self.state.epoch + 1}, step {self.state.step}", flush=True
            )
        else:
            self.pending_log = []
        state = self.state
        if state.finished or state.epoch >= config.epochs:
            print(f"nothing left to train: the checkpoint finished {state.epoch} of {config.epochs} epochs", flush=True)
            return state
        batches = self.train_batches(state.epoch)
        self.total_steps = max(1, len(batches) * config.epochs)  # every epoch has the same number of batches
        self.budget = config.max_minutes * 60 if config.max_minutes else None
        self.started = time.perf_counter() - state.seconds
        self.progress_bar = None
        if not config.quiet and self.is_writer:
            from tqdm import tqdm

            # A run that its budget ends has no step count to show progress against: steps and their rate only.
            total = None if self.budget and config.epochs >= UNBOUNDED_EPOCHS else self.total_steps
            self.progress_bar = tqdm(total=total, initial=state.step, dynamic_ncols=True, mininterval=1.0)
        with stop_on_signals(self):
            self._train_epochs(batches)
        self._close_progress_bar()
        if self.stop_requested:
            print(
                f"interrupted at step {state.step} (epoch {state.epoch + 1}): --resume continues from "
                f"{self.checkpoint_dir}",
                flush=True,
            )
            raise KeyboardInterrupt
        return state

    def _train_epochs(self, batches: list) -> None:
        """Epochs until the last, the time budget, early stopping or a stop request; a checkpoint after each."""
        config, state = self.config, self.state
        stop = False
        while state.epoch < config.epochs and not stop:
            batches = batches or self.train_batches(state.epoch)
            interrupted, epoch_loss = self._train_epoch(batches)
            self._check_divergence(epoch_loss)
            out_of_time = bool(self.budget and state.seconds >= self.budget)
            if not interrupted or out_of_time:
                self._evaluate(epoch_loss)
            if not interrupted:
                state.epoch += 1
                state.step_in_epoch = 0
                batches = None
            if config.patience and state.bad_epochs >= config.patience:
                print(f"early stopping: no dev {self.metric} improvement for {state.bad_epochs} epochs", flush=True)
                state.finished = True
                state.ended_by = "early stopping"
            stop = interrupted or state.finished or self.stop_requested
            if out_of_time:
                state.ended_by = "time budget"
            elif self.stop_requested:
                state.ended_by = "interrupted"
            elif state.epoch >= config.epochs:
                state.ended_by = "epochs"
            self.save_checkpoint()
            release_memory()

    def _close_progress_bar(self) -> None:
        if self.progress_bar is not None:
            self.progress_bar.close()
            self.progress_bar = None

    def _train_epoch(self, batches: list) -> tuple[bool, float]:
        """Train on the epoch's remaining batches; returns (stopped before the end?, mean loss)."""
        config, state = self.config, self.state
        self.model.train()
        loss_sum, loss_count, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
        last_checkpoint = state.seconds  # the run's clock, which a data-parallel run's processes share
        for index in range(state.step_in_epoch, len(batches)):
            batch = batches[index]
            lr = self._set_learning_rate()
            loss, tokens = self._step(batch)
            if state.first_loss is None:
                state.first_loss = loss
            state.step += 1
            state.step_in_epoch += 1
            state.tokens += tokens
            state.seconds = time.perf_counter() - self.started
            if self.group is not None:
                self._agree()
            window_tokens += tokens
            loss_sum += loss
            loss_count += 1
            if state.step % config.log_every == 0:
                self._check_divergence(loss_sum / loss_count)
                speed = window_tokens / max(1e-9, time.perf_counter() - window_start)
                self.log(
                    {
                        "step": state.step,
                        "epoch": state.epoch + 1,
                        "loss": loss_sum / loss_count,
                        "lr": lr,
                        "tokens_per_s": speed,
                    }
                )
                self._show(loss_sum / loss_count, speed)
                window_tokens, window_start = 0, time.perf_counter()
            if self.progress_bar is not None:
                self.progress_bar.update(1)
            if self.budget and state.seconds >= self.budget:
                self._close_progress_bar()
                print(
                    f"time budget of {config.max_minutes:g} minutes used up at step {state.step} (epoch "
                    f"{state.epoch + 1}): "
                    "a last dev evaluation, then the end",
                    flush=True,
                )
                return True, loss_sum / loss_count
            if self.stop_requested and index + 1 < len(batches):  # at an epoch's end, the epoch is finished first
                return True, loss_sum / loss_count
            if state.seconds - last_checkpoint > 600:  # long epochs: a crash loses at most ten minutes
                self.save_checkpoint()
                last_checkpoint = state.seconds
        return False, loss_sum / max(1, loss_count)

    def _agree(self) -> None:
        """Every process takes rank 0's clock (the schedule and the budget follow it) and stops if any was asked to."""
        from seqnlp.training import distributed

        clock, stops = distributed.all_sum(
            [self.state.seconds if self.is_writer else 0.0, float(self.signalled)], self.device
        )
        self.state.seconds, self.stop_agreed = clock, stops > 0

    def _set_learning_rate(self) -> float:
        state = self.state
        # a data-parallel run's processes must agree on the rate: rank 0's clock at the last step
        elapsed = state.seconds if self.group is not None else time.perf_counter() - self.started
        progress = max(state.step / self.total_steps, elapsed / self.budget if self.budget else 0.0)
        lr = self.config.lr * lr_factor(self.config.schedule, progress, state.step, self.config.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _what_is_kept(self) -> str:
        kept = (
            [f"the best model so far is in {self.output_dir / 'model'}"]
            if existing_directory(self.output_dir / "model")
            else []
        )
        if existing_directory(self.checkpoint_dir):
            kept.append(f"the last checkpoint is in {self.checkpoint_dir}")
        return "; ".join(kept) if kept else "no model or checkpoint was saved"

    def _check_divergence(self, mean_loss: float) -> None:
        """Stop when the training loss has exploded: ``divergence_factor`` times the untrained model's (the first
        step's)."""
        state = self.state
        if state.first_loss is not None and mean_loss > self.config.divergence_factor * max(state.first_loss, 1e-3):
            raise TrainingError(
                f"training diverged: the mean loss reached {mean_loss:.4g} at step {state.step} (epoch "
                f"{state.epoch + 1}), "
                f"over {self.config.divergence_factor:g} times its first value {state.first_loss:.4g}; "
                f"try a lower --lr or --clip-norm ({self._what_is_kept()})"
            )

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
            # DDP averages the processes' gradients; weighting each loss by its share of the global batch's
            # units (examples, target tokens) makes that average the gradient of the global batch's loss.
            units = self.loss_units(batch) * batch.get("loss_weight", 1.0)
            total, loss_sum, tokens = distributed.all_sum([units, loss.item() * units, tokens], self.device)
            scaled = loss * (units * self.group.world / total)
            value, tokens = loss_sum / total, int(tokens)
        else:
            scaled, value = loss, loss.item()
        if not math.isfinite(value):
            raise TrainingError(
                f"loss became {value} at step {self.state.step} (epoch {self.state.epoch + 1}); "
                f"try a lower --lr or --clip-norm ({self._what_is_kept()})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self.group is None:
            scaled.backward()
        else:  # DDP all-reduces the gradients inside backward: a process that died is found here
            distributed.collective(scaled.backward, computes=True)
        if self.row_exchange is not None:
            self.row_exchange()
        if self.config.clip_norm and self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm, foreach=True)
        self.optimizer.step()
        if self.average:
            self.average.update(self.state.step)
        return value, tokens

    def _evaluate(self, epoch_loss: float) -> None:
        """Dev evaluation (of the averaged weights, when averaging); the model is saved when the dev metric improves.

        In a data-parallel run rank 0 evaluates and the others wait for its verdict: the selection metrics
        (seqeval F1, BLEU) are not sums over shards, so a sharded evaluation would gather every prediction anyway,
        and the dev sets here take seconds.
        """
        state = self.state
        if self.group is not None:
            from seqnlp.training import distributed

            if self.is_writer:
                self._evaluate_here(epoch_loss)
            verdict = distributed.from_writer((state.best_metric, state.best_epoch, state.bad_epochs))
            state.best_metric, state.best_epoch, state.bad_epochs = verdict
            return
        self._evaluate_here(epoch_loss)

    def _evaluate_here(self, epoch_loss: float) -> None:
        state = self.state
        with self.average.applied() if self.average else nullcontext():
            dev = self.evaluate(self.model)
            value = dev[self.metric]
            improved = self._improved(value)
            if improved:
                self._take_over_folder()
                with atomic_directory(self.output_dir / "model") as tmp:
                    self.write_model(tmp)
        if improved:
            state.best_metric, state.best_epoch, state.bad_epochs = value, state.epoch + 1, 0
        else:
            state.bad_epochs += 1
        self.log(
            {
                "epoch": state.epoch + 1,
                "step": state.step,
                "train_loss": epoch_loss,
                "dev": {k: v for k, v in dev.items() if isinstance(v, (int, float))},
                "seconds": state.seconds,
                **memory_mib(),
            }
        )
        self._show(epoch_loss)

    def _show(self, loss: float, speed: float | None = None) -> None:
        if self.progress_bar is not None:
            extra = {"tok_s": f"{speed:,.0f}"} if speed is not None else {}
            best = {f"best_dev_{self.metric}": _fmt(self.state.best_metric)}
            self.progress_bar.set_postfix(epoch=self.state.epoch + 1, loss=f"{loss:.3f}", **best, **extra)


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


def open_tensorboard():
    """torch's TensorBoard writer class (opened at the first log line: the folder is the run's once it has saved)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError("--report-to tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter


def scalars(record: dict, prefix: str = ""):
    """``(name, value)`` of every number in a log record, nested ones as ``dev/f1``; the step is the axis."""
    for key, value in record.items():
        if isinstance(value, dict):
            yield from scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
            yield f"{prefix}{key}", value


def _train_state(data: dict, path: Path) -> TrainState:
    """The saved ``TrainState``, every field of its declared type."""
    saved = data.get("state")
    if not isinstance(saved, dict):
        raise TrainingError("--resume: no 'state' object", str(path))
    state = TrainState()
    for field in dataclasses.fields(TrainState):
        if field.name not in saved:
            continue
        value = saved[field.name]
        optional = field.default is None
        kind = {"bool": bool, "int": int, "str": str}.get(field.type.split(" ")[0], float)
        ok = (value is None and optional) or (
            isinstance(value, bool)
            if kind is bool
            else value in ENDINGS
            if kind is str
            else isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
        )
        if not ok:
            raise TrainingError(f"--resume: {field.name} must be {kind.__name__}, not {str(value)[:40]!r}", str(path))
        setattr(state, field.name, value)
    return state


def _fmt(value):
    return "-" if value is None else f"{value:.4f}"


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value
