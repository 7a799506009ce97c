"""Timing helpers shared by the speed benchmarks: side-by-side, interleaved measurements."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import seqnlp  # noqa: E402,F401  (sets the oneDNN primitive cache size before torch is imported)


def timed(step, batches, seconds: float, count=lambda batch: batch["num_tokens"]) -> float:
    """Units per second of ``step`` cycling over ``batches`` for about ``seconds`` (after one warm-up call)."""
    step(batches[0])
    units, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        batch = batches[i % len(batches)]
        step(batch)
        units += count(batch)
        i += 1
    return units / (time.perf_counter() - start)


def side_by_side(ours, theirs, batches, seconds: float, **kwargs) -> tuple[float, float]:
    """Mean throughput of ``ours`` and ``theirs``, measured ours, theirs, ours, theirs so load drift hits both alike."""
    half = seconds / 2
    a1, b1 = timed(ours, batches, half, **kwargs), timed(theirs, batches, half, **kwargs)
    a2, b2 = timed(ours, batches, half, **kwargs), timed(theirs, batches, half, **kwargs)
    return (a1 + a2) / 2, (b1 + b2) / 2


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


def compare_with_bare_lstm(model, optimizer, config, input_dim: int, train_batches, infer_batches, seconds: float,
                           ids_key: str = "words") -> dict:
    """Training and inference tokens/s of ``model`` and of a bare LSTM of the encoder's shape, with their ratios."""
    import torch

    bare = torch.nn.LSTM(input_dim, config.hidden, num_layers=config.layers, batch_first=True, bidirectional=config.bidirectional)
    bare_train, bare_infer = bare_lstm_steps(bare, input_dim, ids_key)

    def infer(batch):
        model.eval()
        model.predict(batch)

    result = {}
    for name, ours, theirs, batches in (("train", train_step_of(model, optimizer, config.clip_norm), bare_train, train_batches),
                                        ("infer", infer, bare_infer, infer_batches)):
        mine, bare_speed = side_by_side(ours, theirs, batches, seconds)
        result[f"{name}_tokens_per_s"] = round(mine)
        result[f"bare_lstm_{name}_tokens_per_s"] = round(bare_speed)
        result[f"{name}_ratio"] = round(mine / bare_speed, 3)
    result.update({"threads": torch.get_num_threads(), "torch": torch.__version__})
    return result
