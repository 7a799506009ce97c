"""A run whose loss explodes or stops being a number ends with ``DivergedError``, saying what it kept."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from seqnlp.errors import DivergedError
from seqnlp.storage.folders import existing_directory
from seqnlp.training.checkpoints import TrainState


def what_is_kept(output_dir: Path, checkpoint_dir: Path) -> str:
    """What a failed run leaves behind: its best model so far and its last checkpoint, where it has them."""
    kept = []
    if existing_directory(output_dir / "model"):
        kept.append(f"the best model so far is in {output_dir / 'model'}")
    if existing_directory(checkpoint_dir):
        kept.append(f"the last checkpoint is in {checkpoint_dir}")
    return "; ".join(kept) if kept else "no model or checkpoint was saved"


def diverged(first_loss: float | None, mean_loss: float, factor: float) -> bool:
    """Whether the training loss has exploded: over ``factor`` times the untrained model's (the first step's)."""
    return first_loss is not None and mean_loss > factor * max(first_loss, 1e-3)


def check_mean_loss(state: TrainState, mean_loss: float, factor: float, kept: Callable[[], str]) -> None:
    """Raise ``DivergedError`` if the mean loss so far has exploded; ``kept()`` says what the run has saved."""
    if diverged(state.first_loss, mean_loss, factor):
        raise DivergedError(
            f"training diverged: the mean loss reached {mean_loss:.4g} at step {state.step} (epoch "
            f"{state.epoch + 1}), over {factor:g} times its first value {state.first_loss:.4g}; "
            f"try a lower --lr or --clip-norm ({kept()})"
        )


def check_finite(state: TrainState, loss: float, kept: Callable[[], str]) -> None:
    """Raise ``DivergedError`` if a step's loss is infinite or not a number."""
    if not math.isfinite(loss):
        raise DivergedError(
            f"loss became {loss} at step {state.step} (epoch {state.epoch + 1}); try a lower --lr or --clip-norm "
            f"({kept()})"
        )
