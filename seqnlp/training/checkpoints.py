"""A run's checkpoint: everything a resumed run needs to go on exactly (weights, optimizer, averaged weights, every
random state, the ``TrainState``), written crash-safe into ``OUTPUT_DIR/checkpoints/last``."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save, save_file

from seqnlp.errors import TrainingError
from seqnlp.storage.folders import (
    atomic_directory,
    existing_directory,
    load_weights,
    read_json,
    recover_directory,
    write_json,
)


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
    # the steps the learning-rate schedule annealed over (epochs x batches, max_steps, or the steps a time budget
    # held): --max-steps with it re-runs the same schedule on any machine
    schedule_steps: int | None = None


# What can end a run's training, as metrics.json and the report name it.
ENDINGS = ("epochs", "time budget", "step budget", "early stopping", "pruned", "interrupted")


def checkpoint_path(output_dir) -> Path:
    """Where a run in ``output_dir`` keeps its last checkpoint (``--resume`` continues from it)."""
    return Path(output_dir) / "checkpoints" / "last"


class Checkpoints:
    """Saves and loads the checkpoint of a run in ``directory`` for ``model`` on ``device``, with its ``optimizer``
    and weight ``average`` (or None); ``group``: the process group of a data-parallel run (None: one process)."""

    def __init__(self, directory: Path, model: torch.nn.Module, optimizer, average, device: torch.device, group):
        self.directory = directory
        self.model, self.optimizer, self.average = model, optimizer, average
        self.device, self.group = device, group
        self.is_writer = group is None or group.is_writer

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

    def save(self, state: TrainState, write_model: Callable[[Path], None], before_writing: Callable[[], None]):
        """Every process takes part (each rank's random state goes to the writer); the writer calls
        ``before_writing`` and writes the folder."""
        rank_states = None
        if self.group is not None:  # every rank's random state, so that each resumes its own stream
            from seqnlp.training import distributed

            # as safetensors bytes: pickled tensors would be unpickled with torch.load (which warns before 2.6)
            rank_states = distributed.gather_to_writer((save(self._own_states()), _jsonable(random.getstate())))
        if not self.is_writer:
            return
        before_writing()
        with atomic_directory(self.directory) as tmp:
            write_model(tmp)
            self.optimizer.save(tmp / "optimizer.safetensors")
            if self.average:
                self.average.save(tmp / "average.safetensors")
            save_file(self._rng_states(), str(tmp / "rng.safetensors"))
            rng = {"python": _jsonable(random.getstate())}
            extra = {}
            if rank_states is not None:
                for rank, (tensors, python) in enumerate(rank_states):
                    (tmp / f"rng-rank{rank}.safetensors").write_bytes(tensors)
                    rng[f"python-rank{rank}"] = python
                extra["processes"] = self.group.world
            write_json(tmp / "trainer_state.json", {"state": vars(state), "rng": rng, **extra})

    def resume(self) -> TrainState:
        """``load`` for ``--resume``: the writer puts the checkpoint in place while the other processes of a
        data-parallel run wait; no checkpoint is an error."""
        from seqnlp.training import distributed

        if self.group is not None and not self.is_writer:
            distributed.barrier()
        state = self.load()
        if state is None:
            raise TrainingError(f"--resume: no checkpoint in {self.directory}")
        if self.group is not None and self.is_writer:
            distributed.barrier()
        return state

    def load(self) -> TrainState | None:
        """The saved state, with the model, optimizer, average and random states put back; None without one."""
        # the newest complete copy a crash left, put in its place (by the writer alone; the others read it after)
        directory = (recover_directory if self.is_writer else existing_directory)(self.directory)
        if directory is None:
            return None
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
        state = _train_state(data, directory / "trainer_state.json")
        saved_world, world = data.get("processes", 1), self.group.world if self.group else 1
        if saved_world != world:
            raise TrainingError(
                f"--resume: the checkpoint was written by {saved_world} process(es), this run has {world}: "
                f"resume with the same number (torchrun --nproc-per-node {saved_world})",
                str(directory),
            )
        self._load_random_states(directory, data)
        return state

    def _load_random_states(self, directory: Path, data: dict) -> None:
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


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value
