"""Which dev evaluation's model a run keeps, and when it stops early: the one concern of the Trainer that reads the
dev metric."""

from __future__ import annotations

from dataclasses import dataclass

from seqnlp.training.checkpoints import TrainState


@dataclass(frozen=True)
class Selection:
    """The dev ``metric`` selects the model (maximised, or minimised where ``higher_is_better`` is false); a run
    stops after ``patience`` evaluations without a gain (0: never), counted only once ``patience_after`` of its
    schedule has passed, so that a run annealed over its budget is not stopped with its rate near its peak."""

    metric: str
    higher_is_better: bool = True
    patience: int = 0
    patience_after: float = 0.0

    def improves(self, state: TrainState, value: float) -> bool:
        if state.best_metric is None:
            return True
        return value > state.best_metric if self.higher_is_better else value < state.best_metric

    def record(self, state: TrainState, value: float, improved: bool, progress: float) -> None:
        """Note an evaluation of ``value`` at ``progress`` (0 to 1) of the schedule."""
        if improved:
            state.best_metric, state.best_epoch, state.bad_epochs = value, state.epoch + 1, 0
        elif progress >= self.patience_after:
            state.bad_epochs += 1

    def stops_early(self, state: TrainState) -> bool:
        """Whether patience has run out (once: a finished run is not stopped again); marks the state if so."""
        if not self.patience or state.bad_epochs < self.patience or state.finished:
            return False
        print(f"early stopping: no dev {self.metric} improvement for {state.bad_epochs} epochs", flush=True)
        state.finished, state.ended_by = True, "early stopping"
        return True
