"""Matrix products a decoder repeats every step: ``x @ W^T + b``, in float32 or, for CPU decoding, in int8.

A decoding step multiplies a few hundred rows by fixed weights, and on a CPU those products are most
of its time. ``Int8Product`` keeps the weights in int8 with one scale per output row and quantizes
the rows it multiplies per call (fbgemm's dynamic quantization, 7-bit activations so that AVX2's
8-bit multiply-adds cannot saturate). It suits inputs of bounded range, as a decoder's ``tanh``-squashed
states are: one scale then serves the whole batch.
"""

from __future__ import annotations

import warnings

import torch

from seqnlp import compat
from seqnlp.nn.gemm import linear

INT8_ENGINES = ("x86", "fbgemm")  # where int8 decoding was measured (AVX2): other engines multiply in float32


class DenseProduct:
    """``x @ weight^T + bias``; ``add`` (``[N, out]``) replaces the bias for one call. Differentiable, and in
    training on oneDNN where ``seqnlp.nn.gemm.linear`` applies."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, contiguous: bool = False):
        """``contiguous``: store ``weight^T`` row-major, for faster products on CPU."""
        self.weight_t = weight.t().contiguous() if contiguous else weight.t()
        self.bias = bias

    def __call__(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        if torch.is_grad_enabled():
            y = linear(x, self.weight_t.t(), self.bias if add is None else None)
            return y if add is None else y + add
        add = self.bias if add is None else add
        return torch.mm(x, self.weight_t) if add is None else torch.addmm(add, x, self.weight_t)


class Int8Product:
    """``DenseProduct``'s product with int8 weights (a scale per output row) and int8 inputs (a scale per call).
    Inference only."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        weight = weight.detach().float().contiguous()
        scales = (weight.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
        self.packed = compat.int8_pack(weight, scales)
        self.bias = None if bias is None else bias.detach()

    def __call__(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        y = compat.int8_linear(x, self.packed)
        add = self.bias if add is None else add
        return y if add is None else y.add_(add)


Product = DenseProduct | Int8Product


def decoding_product(weight: torch.Tensor, bias: torch.Tensor | None, int8: bool) -> Product:
    """The product a decoding step uses: int8 when asked for, on CPU, with an x86 quantized engine; else float32.

    Where this PyTorch cannot build int8 weights, decoding warns and goes on in float32.
    """
    if (
        int8
        and weight.device.type == "cpu"
        and torch.backends.quantized.engine in INT8_ENGINES
        and compat.int8_linear_available()
    ):
        try:
            return Int8Product(weight, bias)
        except (RuntimeError, AttributeError, NotImplementedError) as error:
            warnings.warn(
                f"int8 decoding is not available with this PyTorch ({error}); decoding in float32",
                RuntimeWarning,
                stacklevel=2,
            )
    return DenseProduct(weight.detach(), None if bias is None else bias.detach(), contiguous=True)
