"""Timing helpers shared by the speed benchmarks: side-by-side, interleaved measurements."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(step, batches, seconds: float, count=lambda batch: batch["num_tokens"], start_at: int = 0) -> float:
    """Units per second of ``step`` cycling over ``batches`` (from ``start_at``) for about ``seconds``."""
    units, start, i = 0, time.perf_counter(), start_at
    while time.perf_counter() - start < seconds:
        batch = batches[i % len(batches)]
        step(batch)
        units += count(batch)
        i += 1
    return units / (time.perf_counter() - start)


def side_by_side(ours, theirs, batches, seconds: float, rounds: int = 4, **kwargs) -> dict:
    """Throughput of ``ours`` and ``theirs`` in ``rounds`` adjacent pairs of windows of ``seconds / rounds`` each.

    This VM's speed drifts by up to ±25% over seconds to minutes. A ratio taken from two adjacent
    windows sees the same speed on both sides, so the median of the per-round ratios is steady
    where a ratio of two long means is not; the order within a pair alternates, and the range
    of the per-round ratios is reported beside the median.
    """
    ours(batches[0])  # warm-up: first-call allocations and kernel selection
    theirs(batches[0])
    window = seconds / rounds
    pairs = []
    for r in range(rounds):
        order = (ours, theirs) if r % 2 == 0 else (theirs, ours)
        # both sides of a round step through the same batches, and each round through batches of its own: a batch
        # met again would find oneDNN's kernels for its shapes already built
        start_at = r * len(batches) // rounds
        speeds = {step: timed(step, batches, window, start_at=start_at, **kwargs) for step in order}
        pairs.append((speeds[ours], speeds[theirs]))
    ratio, ratio_range = median_ratio(pairs)
    return {
        "ours": statistics.median(a for a, _ in pairs),
        "theirs": statistics.median(b for _, b in pairs),
        "ratio": ratio,
        "ratio_range": ratio_range,
    }


def median_ratio(pairs) -> tuple[float, list[float]]:
    """Median of the ratios ``a / b`` of adjacent measurements ``(a, b)``, and their range."""
    ratios = sorted(a / b for a, b in pairs)
    return statistics.median(ratios), [round(ratios[0], 3), round(ratios[-1], 3)]


def comparison_fields(name: str, comparison: dict) -> dict:
    """The JSON fields of one ``side_by_side`` comparison with a bare LSTM: medians, median ratio and its range over the
    rounds."""
    return {
        f"{name}_tokens_per_s": round(comparison["ours"]),
        f"bare_lstm_{name}_tokens_per_s": round(comparison["theirs"]),
        f"{name}_ratio": round(comparison["ratio"], 3),
        f"{name}_ratio_range": comparison["ratio_range"],
    }


def train_step_of(model, optimizer, clip_norm: float):
    """One full training step of a seqnlp model, exactly as the Trainer does it."""
    import torch

    def step(batch):
        model.train()
        loss = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm, foreach=True)
        optimizer.step()

    return step


def bare_lstm_steps(bare, input_dim: int, ids_key: str):
    """Forward+backward and inference steps of a bare ``nn.LSTM`` on random inputs shaped like ``batch[ids_key]``."""
    import torch

    def train(batch):
        output, _ = bare(torch.randn(*batch[ids_key].shape, input_dim))
        bare.zero_grad(set_to_none=True)
        output.sum().backward()

    def infer(batch):
        with torch.inference_mode():
            bare(torch.randn(*batch[ids_key].shape, input_dim))

    return train, infer


def compare_with_bare_lstm(
    model, optimizer, config, input_dim: int, train_batches, infer_batches, seconds: float, ids_key: str = "words"
) -> dict:
    """Training and inference tokens/s of ``model`` and of a bare LSTM of the encoder's shape, with their ratios."""
    import torch

    bare = torch.nn.LSTM(
        input_dim, config.hidden, num_layers=config.layers, batch_first=True, bidirectional=config.bidirectional
    )
    bare_train, bare_infer = bare_lstm_steps(bare, input_dim, ids_key)

    def infer(batch):
        model.eval()
        model.predict(batch)

    result = {}
    for name, ours, theirs, batches in (
        ("train", train_step_of(model, optimizer, config.clip_norm), bare_train, train_batches),
        ("infer", infer, bare_infer, infer_batches),
    ):
        result.update(comparison_fields(name, side_by_side(ours, theirs, batches, seconds)))
    result.update({"threads": torch.get_num_threads(), "torch": torch.__version__})
    return result
