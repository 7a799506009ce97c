"""The array operations that the searches shared by both runtimes need, for NumPy arrays and PyTorch tensors.

A search (``seqnlp.nn.beam``) is written once against these few calls plus what both libraries spell alike
(indexing, slicing, ``reshape``, arithmetic and comparisons, ``sum(axis)``, ``all(axis)``, ``any()``): a model
exported to ONNX searches in NumPy without torch installed, the PyTorch model searches in tensors on its device,
and the two cannot drift apart. ``arrays_for(x)`` gives the operations for ``x``'s kind; the PyTorch ones live in
``seqnlp.nn.torch_arrays`` so that importing this module never imports torch.
"""

from __future__ import annotations

import contextlib

import numpy as np

from seqnlp.nn.crf_decoding import log_softmax


class NumpyArrays:
    """The operations over NumPy arrays."""

    @staticmethod
    def inference():
        return contextlib.nullcontext()

    @staticmethod
    def asarray(values) -> np.ndarray:
        return np.asarray(values)

    @staticmethod
    def floats(shape, fill: float) -> np.ndarray:
        return np.full(shape, fill, dtype=np.float32)

    @staticmethod
    def ints(shape, fill: int) -> np.ndarray:
        return np.full(shape, fill, dtype=np.int64)

    @staticmethod
    def falses(shape) -> np.ndarray:
        return np.zeros(shape, dtype=bool)

    @staticmethod
    def arange(n: int) -> np.ndarray:
        return np.arange(n)

    @staticmethod
    def broadcast(values: np.ndarray, shape) -> np.ndarray:
        return np.broadcast_to(values, shape)

    @staticmethod
    def float32(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32)

    @staticmethod
    def int32(values: np.ndarray) -> np.ndarray:
        return values.astype(np.int32)

    @staticmethod
    def repeat_rows(values: np.ndarray, times: int) -> np.ndarray:
        """Each row ``times`` times in a row (``torch.repeat_interleave`` on dim 0)."""
        return np.repeat(values, times, axis=0)

    @staticmethod
    def nonzero(mask: np.ndarray) -> np.ndarray:
        """The indices where a 1-d mask is true."""
        return np.flatnonzero(mask)

    @staticmethod
    def take_along(values: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
        """``values`` picked at ``index`` along ``axis``, the other axes broadcast (``torch.take_along_dim``)."""
        return np.take_along_axis(values, index, axis=axis)

    @staticmethod
    def where(condition, a, b) -> np.ndarray:
        return np.where(condition, a, b)

    @staticmethod
    def isneginf(values: np.ndarray) -> np.ndarray:
        return np.isneginf(values)

    @staticmethod
    def log_clipped(values: np.ndarray, low: float, high: float) -> np.ndarray:
        return np.log(np.clip(values, low, high))

    @staticmethod
    def topk(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` largest values along the last axis, best first, and their indices (``torch.topk``)."""
        if k < values.shape[-1]:
            index = np.argpartition(values, -k, axis=-1)[..., -k:]
        else:
            index = np.broadcast_to(np.arange(values.shape[-1]), values.shape).copy()
        picked = np.take_along_axis(values, index, axis=-1)
        order = np.argsort(-picked, axis=-1, kind="stable")
        return np.take_along_axis(picked, order, axis=-1), np.take_along_axis(index, order, axis=-1)

    @staticmethod
    def sort_descending(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values along the last axis, largest first (ties in index order), and the order that sorts them."""
        order = np.argsort(-values, axis=-1, kind="stable")
        return np.take_along_axis(values, order, axis=-1), order

    @staticmethod
    def unsort(values: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Values sorted by ``order`` put back where they came from."""
        out = np.empty_like(values)
        np.put_along_axis(out, order, values, axis=-1)
        return out

    @staticmethod
    def softmax(values: np.ndarray) -> np.ndarray:
        return np.exp(log_softmax(values))

    @staticmethod
    def without_columns(values: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
        """A float64 copy of ``values[B, V]`` with ``columns`` at -inf; float64 so that the probabilities drawn from
        it sum to 1 within what ``Generator.choice`` checks."""
        out = values.astype(np.float64)
        out[:, list(columns)] = -np.inf
        return out

    @staticmethod
    def cumsum(values: np.ndarray) -> np.ndarray:
        return np.cumsum(values, axis=-1)

    @staticmethod
    def draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One index per row, drawn with the row's probabilities."""
        return np.array([rng.choice(len(row), p=row / row.sum()) for row in probs], dtype=np.int64)


NUMPY = NumpyArrays()


def arrays_for(values):
    """The operations for ``values``' kind: NumPy's for an array, PyTorch's (on its device) for a tensor."""
    if isinstance(values, np.ndarray):
        return NUMPY
    from seqnlp.nn.torch_arrays import TorchArrays

    return TorchArrays(values.device)
