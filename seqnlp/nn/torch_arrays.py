"""``seqnlp.nn.arrays``' operations over PyTorch tensors, made on one device."""

from __future__ import annotations

import torch


class TorchArrays:
    """The operations over tensors; new ones are made on ``device``."""

    def __init__(self, device):
        self.device = device

    @staticmethod
    def inference():
        return torch.inference_mode()

    def asarray(self, values) -> torch.Tensor:
        return torch.as_tensor(values, device=self.device)

    def floats(self, shape, fill: float) -> torch.Tensor:
        return torch.full(shape, fill, device=self.device)

    def ints(self, shape, fill: int) -> torch.Tensor:
        return torch.full(shape, fill, dtype=torch.long, device=self.device)

    def falses(self, shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.bool, device=self.device)

    def arange(self, n: int) -> torch.Tensor:
        return torch.arange(n, device=self.device)

    @staticmethod
    def broadcast(values: torch.Tensor, shape) -> torch.Tensor:
        return values.expand(shape)

    @staticmethod
    def float32(values: torch.Tensor) -> torch.Tensor:
        return values.float()

    @staticmethod
    def int32(values: torch.Tensor) -> torch.Tensor:
        return values.int()

    @staticmethod
    def repeat_rows(values: torch.Tensor, times: int) -> torch.Tensor:
        return values.repeat_interleave(times, dim=0)

    @staticmethod
    def nonzero(mask: torch.Tensor) -> torch.Tensor:
        return mask.nonzero().squeeze(1)

    @staticmethod
    def take_along(values: torch.Tensor, index: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.take_along_dim(values, index, dim=axis)

    @staticmethod
    def where(condition, a, b) -> torch.Tensor:
        return torch.where(condition, a, b)

    @staticmethod
    def isneginf(values: torch.Tensor) -> torch.Tensor:
        return values.isneginf()

    @staticmethod
    def log_clipped(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return values.clamp(low, high).log()

    @staticmethod
    def topk(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return values.topk(k, dim=-1)

    @staticmethod
    def sort_descending(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return values.sort(dim=-1, descending=True)

    @staticmethod
    def unsort(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        return torch.full_like(values, float("-inf")).scatter(-1, order, values)

    @staticmethod
    def softmax(values: torch.Tensor) -> torch.Tensor:
        return values.softmax(dim=-1)

    def without_columns(self, values: torch.Tensor, columns: tuple[int, ...]) -> torch.Tensor:
        return values.index_fill(1, torch.tensor(columns, dtype=torch.long, device=self.device), float("-inf"))

    @staticmethod
    def cumsum(values: torch.Tensor) -> torch.Tensor:
        return values.cumsum(-1)

    @staticmethod
    def draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.multinomial(probs.float().cpu(), 1, generator=generator).squeeze(1).to(probs.device)
