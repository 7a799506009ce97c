"""What a run tells as it trains: ``train_log.jsonl`` (and TensorBoard) and the progress bar."""

from __future__ import annotations

import json
import time
from pathlib import Path

from seqnlp.errors import TrainingError
from seqnlp.storage.folders import write_text_atomic


class LossWindow:
    """An epoch's mean training loss so far, and the tokens per second since the last log line (``speed``)."""

    def __init__(self):
        self.loss_sum, self.count, self.tokens, self.start = 0.0, 0, 0, time.perf_counter()

    def add(self, loss: float, tokens: int) -> None:
        self.loss_sum += loss
        self.count += 1
        self.tokens += tokens

    @property
    def mean(self) -> float:
        return self.loss_sum / max(1, self.count)

    def speed(self) -> float:
        """Tokens per second since the last call (or the start), and a new window from now."""
        now = time.perf_counter()
        rate = self.tokens / max(1e-9, now - self.start)
        self.tokens, self.start = 0, now
        return rate


class RunLog:
    """``train_log.jsonl`` of a run (and its TensorBoard events with ``tensorboard``), written by the writing
    process alone.

    A fresh run into a used folder ``hold``s its lines until it has saved something of its own (``release``):
    until then the earlier run's log stays as it was.
    """

    def __init__(self, output_dir: Path, writes: bool, tensorboard: bool):
        self.output_dir = output_dir
        self.path = output_dir / "train_log.jsonl"
        self.writes = writes
        self.pending: list[dict] | None = None
        self.board_writer = open_tensorboard() if tensorboard else None
        self.board = None

    def hold(self) -> None:
        self.pending = []

    def release(self) -> None:
        """Start the log afresh with the lines held so far."""
        pending, self.pending = self.pending or [], None
        self.path.unlink(missing_ok=True)
        for record in pending:
            self.write(record)

    def take_over(self, remove_earlier_run) -> None:
        """Before the run's first save: ``remove_earlier_run()``, then the lines held so far written (once)."""
        if self.pending is None:
            return
        remove_earlier_run()
        self.release()

    def write(self, record: dict) -> None:
        if not self.writes:
            return
        if self.pending is not None:
            self.pending.append(record)
            return
        try:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
        except OSError as err:
            raise TrainingError(f"cannot write: {err.strerror or err}", str(self.path)) from None
        if self.board_writer is not None:
            self.board = self.board or self.board_writer(str(self.output_dir / "tensorboard"))
            for name, value in scalars(record):
                self.board.add_scalar(name, value, global_step=record["step"])
            self.board.flush()

    def forget_after(self, step: int) -> None:
        """Drop the lines of steps after ``step``: a killed run wrote them, the resumed run trains them again."""
        if not self.writes or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                logged = json.loads(line).get("step", 0)
            except (json.JSONDecodeError, AttributeError):
                continue  # a line cut short by the kill
            if isinstance(logged, int) and logged <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(kept))


class Progress:
    """The progress bar (tqdm) of the writing process, unless ``quiet``: steps against ``total`` (None: a run that
    its time budget ends, whose steps and rate alone are shown)."""

    def __init__(self, shown: bool, total: int | None, initial: int):
        self.bar = None
        if shown:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, mininterval=1.0)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def show(self, epoch: int, loss: float, best: dict, speed: float | None = None) -> None:
        if self.bar is not None:
            extra = {"tok_s": f"{speed:,.0f}"} if speed is not None else {}
            shown = {name: "-" if value is None else f"{value:.4f}" for name, value in best.items()}
            self.bar.set_postfix(epoch=epoch, loss=f"{loss:.3f}", **shown, **extra)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
