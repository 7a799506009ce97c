"""Float32 matrix products of training through oneDNN on x86 CPUs.

PyTorch multiplies float32 matrices on the CPU with MKL, which on AMD processors runs its AVX2 kernels: on an
AVX-512 EPYC, ``torch.mm`` reaches half of what oneDNN (bundled with PyTorch, and already what runs its fused
LSTM kernels) reaches on the same products. ``linear`` (differentiable), ``mm_t`` and ``mm_tn`` (for gradients
written by hand) take oneDNN's path for float32 CPU tensors and PyTorch's everywhere else: other devices and
dtypes, small products, while tracing or exporting, and in a PyTorch without oneDNN's linear operator.
``docs/experiments.md`` has the commands that compare the two."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seqnlp import compat
from seqnlp.nn import kernels

# the operator TorchInductor lowers a CPU linear layer to; absent from builds without oneDNN
_ONEDNN_LINEAR = compat.onednn_linear()
AVAILABLE = _ONEDNN_LINEAR is not None


def _applies(x: torch.Tensor, weight: torch.Tensor, least: int = 1 << 21) -> bool:
    """Whether ``x @ weight^T`` takes oneDNN: at least ``least`` multiply-adds (below about two million MKL's lower
    overhead wins even for a kernel oneDNN has built before)."""
    return _takes(x.numel() * weight.size(0), least, x, weight)


def _takes(multiply_adds: int, least: int, *tensors: torch.Tensor) -> bool:
    """Whether a product of ``multiply_adds`` over ``tensors`` takes oneDNN: float32 on the CPU, at least ``least``."""
    return (
        AVAILABLE
        and kernels.current().products == "onednn"
        and compat.enabled[0]
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.compiler.is_compiling()
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and multiply_adds >= least
    )


def mm_t(x: torch.Tensor, weight: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T`` (plus ``add``, of the result's shape) for 2-D ``x`` ``[N, K]`` and ``weight`` ``[M, K]``
    of any strides; not differentiable (for code that differentiates by hand)."""
    if not _applies(x, weight):
        return torch.mm(x, weight.t()) if add is None else torch.addmm(add, x, weight.t())
    x, weight = _rows(x), _dense(weight)
    if add is None:
        return _ONEDNN_LINEAR(x, weight, None, "none", [], "")
    return _ONEDNN_LINEAR.binary(x, add.contiguous(), weight, None, "add")


def mm_tn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a^T @ b`` for ``a`` ``[M, N]`` and ``b`` ``[M, K]``: a weight's gradient summed over ``M`` rows. Not
    differentiable."""
    if not _applies(a.t(), b.t()):
        return a.t().mm(b)
    # oneDNN copies a transposed input: the smaller of the two is given as the input, the product transposed
    if a.size(1) <= b.size(1):
        return _ONEDNN_LINEAR(a.t().contiguous(), _dense(b.t()), None, "none", [], "")
    return _ONEDNN_LINEAR(b.t().contiguous(), _dense(a.t()), None, "none", [], "").t().contiguous()


def _rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` as oneDNN multiplies it at full speed: one of its two strides 1 (a slice of a wider matrix will do)."""
    return x if 1 in x.stride() else x.contiguous()


def _dense(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` row- or column-major without gaps: given a slice of a wider matrix, oneDNN's linear takes a
    reference kernel some thousand times slower."""
    return weight if weight.is_contiguous() or weight.t().is_contiguous() else weight.contiguous()


# oneDNN builds a kernel for each shape it meets (about as long as the product then runs) and keeps the last 1,024
# (ONEDNN_PRIMITIVE_CACHE_CAPACITY). From LARGE multiply-adds a product on a new shape is no slower than MKL's; with
# its rows rounded up (``Kernels.row_multiple``), shapes recur and their kernels run at about twice MKL's speed.
LARGE = 1 << 27


def row_multiple(rows: int, weight: torch.Tensor) -> int:
    """What to round up the ``rows`` of a training product ``x @ weight^T`` to, so that its kernels are reused:
    ``Kernels.row_multiple`` where ``linear`` takes oneDNN's path for it, 1 (no rounding) where it takes PyTorch's."""
    onednn = torch.is_grad_enabled() and weight.requires_grad and _takes(rows * weight.numel(), LARGE, weight)
    return kernels.current().row_multiple if onednn else 1


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, on oneDNN where it applies, a gradient is wanted and the product is large.

    oneDNN builds a kernel for each new shape. A layer's rows change from batch to batch (a batch's words, a
    translation's target subwords), so only a large product repays it, and in a search, whose batch shrinks as
    sentences finish, nothing does. Loops that repeat one shape call ``mm_t`` and ``mm_tn``.
    """
    wanted = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if not wanted or not _applies(x, weight, least=LARGE) or (bias is not None and bias.dtype != torch.float32):
        return F.linear(x, weight, bias)
    return _Linear.apply(x, weight, bias)


class Linear(torch.nn.Linear):
    """``nn.Linear`` (the same parameters and state-dict keys) whose product is ``linear``'s."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        rows, weight = _rows(x.reshape(-1, x.size(-1))), _dense(weight)
        ctx.save_for_backward(rows, weight)
        ctx.has_bias, ctx.shape = bias is not None, x.shape
        return _ONEDNN_LINEAR(rows, weight, bias, "none", [], "").view(*x.shape[:-1], weight.size(0))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        rows, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad = _rows(grad.reshape(-1, grad.size(-1)))
        grad_x = _ONEDNN_LINEAR(grad, weight.t(), None, "none", [], "").view(ctx.shape) if needs[0] else None
        grad_weight = mm_tn(grad, rows) if needs[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and needs[2] else None
        return grad_x, grad_weight, grad_bias
