"""Weight averaging: an exponential moving average of the trainable weights, evaluated and saved in their place."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from seqnlp import compat


class WeightAverage:
    """Exponential moving average of a model's trainable parameters (Polyak averaging).

    The averaged weights are what gets evaluated and saved, smoothing out the last steps' noise at
    no training cost (NMT's checkpoint averaging does the same; on SST-2 it measured neutral).
    Early steps use a smaller decay, ``min(decay, (1 + step) / (10 + step))``, so the average
    does not remember the random initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = model
        self.named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.average = [p.detach().clone() for _, p in self.named]

    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        compat.lerp_(self.average, [p.detach() for _, p in self.named], 1.0 - decay)

    @contextmanager
    def applied(self):
        """The model holds the averaged weights inside the ``with`` block and its own weights again after it."""
        params = [p for _, p in self.named]
        own = [p.detach().clone() for p in params]
        with torch.no_grad():
            compat.copy_(params, self.average)
        weights_changed(self.model)
        try:
            yield
        finally:
            with torch.no_grad():
                compat.copy_(params, own)
            weights_changed(self.model)

    def save(self, path: Path) -> None:
        save_file({name: t.contiguous() for (name, _), t in zip(self.named, self.average)}, str(path))

    def load(self, path: Path) -> None:
        saved = load_file(str(path))
        compat.copy_(self.average, [saved[name].to(t.device) for (name, _), t in zip(self.named, self.average)])


def weights_changed(model: torch.nn.Module) -> None:
    """Tell each part of ``model`` that keeps products of its weights (``Seq2Seq.decoder``) that they changed."""
    for module in model.modules():
        if hasattr(module, "weights_changed"):
            module.weights_changed()
