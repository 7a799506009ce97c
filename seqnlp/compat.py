"""Every private PyTorch function seqnlp calls, and every public one whose form differs across the PyTorch releases
it is tested on (2.4 to 2.14), in one place.

Each is here because it is faster than its public form (fused optimizer kernels, the fused multi-step RNN kernel,
oneDNN's linear operator, int8 products) or because no public form exists (the TorchScript ONNX exporter, which
writes recurrent layers with a dynamic length; DistributedDataParallel's list of parameters to leave alone). Each
sits behind a check that this PyTorch has it, and each but the exporter has a public fallback with the same
arithmetic: a PyTorch that drops or changes one of them runs the fallback instead. ``use_private(False)`` (or
``SEQNLP_PRIVATE_TORCH=0`` in the environment) turns every private path off; the tests compare each fallback
with its private path that way.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import warnings

import torch


def _has(owner, *names: str) -> bool:
    return all(getattr(owner, name, None) is not None for name in names)


def _ddp_has_ignore_list() -> bool:
    from torch.nn.parallel import DistributedDataParallel

    return _has(DistributedDataParallel, "_set_params_and_buffers_to_ignore_for_model")


# What this PyTorch has, read once.
HAS = {
    "fused_optimizers": _has(torch, "_fused_adam_", "_fused_adamw_", "_fused_sgd_"),
    "foreach": _has(torch, "_foreach_add_", "_foreach_lerp_", "_foreach_copy_"),
    "fused_rnn": _has(getattr(torch, "_VF", None), "lstm", "gru", "rnn_tanh"),
    "onednn_linear": platform.machine().lower() in ("x86_64", "amd64")
    and torch.backends.mkldnn.is_available()
    and _has(torch.ops.mkldnn, "_linear_pointwise"),
    "mkldnn_bf16_check": _has(torch.ops.mkldnn, "_is_mkldnn_bf16_supported"),
    "int8_linear": _has(torch, "quantize_per_channel")
    and _has(torch.ops.quantized, "linear_prepack", "linear_dynamic"),
    "ddp_ignore_list": _ddp_has_ignore_list(),
}
enabled = [os.environ.get("SEQNLP_PRIVATE_TORCH", "1") != "0"]


def private(name: str) -> bool:
    """Whether the private path ``name`` (a key of ``HAS``) is taken: this PyTorch has it and it is not turned off."""
    return enabled[0] and HAS[name]


@contextlib.contextmanager
def use_private(on: bool):
    """Within the block, private paths are taken where this PyTorch has them (``on``) or never (the fallbacks)."""
    before = enabled[0]
    enabled[0] = on
    try:
        yield
    finally:
        enabled[0] = before


# -- optimizers and weight averaging ---------------------------------------------------------------------------


def sgd_(params, grads, momentum_buffers, *, lr, momentum, weight_decay, first_step) -> None:
    """One SGD step (momentum without dampening, L2 weight decay) over lists of tensors, as ``torch.optim.SGD``."""
    if private("fused_optimizers"):
        torch._fused_sgd_(
            params, grads, momentum_buffers, weight_decay=weight_decay, momentum=momentum, lr=lr, dampening=0.0,
            nesterov=False, maximize=False, is_first_step=first_step and bool(momentum),
        )  # fmt: skip
        return
    for i, (param, grad) in enumerate(zip(params, grads)):
        step = grad.add(param, alpha=weight_decay) if weight_decay else grad
        if momentum:
            buffer = momentum_buffers[i]
            if first_step:
                buffer.copy_(step)
            else:
                buffer.mul_(momentum).add_(step)
            step = buffer
        param.add_(step, alpha=-lr)


def adam_(params, grads, exp_avgs, exp_avg_sqs, steps, *, lr, beta1, beta2, weight_decay, eps, decoupled) -> None:
    """One Adam step (AdamW's decoupled weight decay with ``decoupled``) over lists of tensors whose ``steps`` are
    already counted, as ``torch.optim.Adam`` / ``AdamW``."""
    if private("fused_optimizers"):
        update = torch._fused_adamw_ if decoupled else torch._fused_adam_
        update(
            params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=lr, beta1=beta1, beta2=beta2,
            weight_decay=weight_decay, eps=eps, maximize=False,
        )  # fmt: skip
        return
    for param, grad, exp_avg, exp_avg_sq, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
        if decoupled:
            param.mul_(1 - lr * weight_decay)
        elif weight_decay:
            grad = grad.add(param, alpha=weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        count = float(step)
        denominator = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**count)).add_(eps)
        param.addcdiv_(exp_avg, denominator, value=-lr / (1 - beta1**count))


def add_(tensors: list[torch.Tensor], value: float) -> None:
    if private("foreach"):
        torch._foreach_add_(tensors, value)
        return
    for tensor in tensors:
        tensor.add_(value)


def lerp_(tensors: list[torch.Tensor], ends: list[torch.Tensor], weight: float) -> None:
    if private("foreach"):
        torch._foreach_lerp_(tensors, ends, weight)
        return
    for tensor, end in zip(tensors, ends):
        tensor.lerp_(end, weight)


def copy_(tensors: list[torch.Tensor], sources: list[torch.Tensor]) -> None:
    if private("foreach"):
        torch._foreach_copy_(tensors, sources)
        return
    for tensor, source in zip(tensors, sources):
        tensor.copy_(source)


# -- kernels ---------------------------------------------------------------------------------------------------

_RNN_MODULES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def fused_rnn(cell: str, x: torch.Tensor, hx, weights: list[torch.Tensor], dropout: float, training: bool):
    """Outputs ``[B, T, H]`` of stacked unidirectional cells (``weights``: ``w_ih, w_hh, b_ih, b_hh`` per layer)
    over every step of ``x`` ``[B, T, E]`` from state ``hx``, in one fused kernel. The fallback runs the same
    weights through ``torch.nn``'s module of that cell (``torch.func.functional_call``)."""
    layers = len(weights) // 4
    if private("fused_rnn"):
        kernel = {"lstm": torch._VF.lstm, "gru": torch._VF.gru, "rnn": torch._VF.rnn_tanh}[cell]
        return kernel(x, hx, weights, True, layers, dropout, training, False, True)[0]
    kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    named = {f"{kind}_l{i // 4}": w for i, (kind, w) in enumerate(zip(kinds * layers, weights))}
    # nn warns of dropout with one layer (the kernel ignores it too) and of weights not in one flat buffer
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", UserWarning)
        module = _RNN_MODULES[cell](x.size(2), weights[1].size(1), layers, batch_first=True, dropout=dropout)
    module.train(training)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.func.functional_call(module, named, (x, tuple(hx) if cell == "lstm" else hx))[0]


def onednn_linear():
    """oneDNN's linear operator (what TorchInductor lowers a CPU linear layer to), or None where this PyTorch has no
    such operator or it is turned off; ``seqnlp.nn.gemm`` then multiplies through ``torch.mm``."""
    return torch.ops.mkldnn._linear_pointwise if private("onednn_linear") else None


def bf16_matrix_units_on_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); the fallback reads the CPU's flags."""
    if private("mkldnn_bf16_check"):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return torch.backends.mkldnn.is_available() and bool({"avx512_bf16", "amx_bf16"} & set(flags))


def int8_linear_available() -> bool:
    """Whether int8 products (PyTorch's deprecated quantized tensors and fbgemm's kernels) can be built here; where
    not, decoding multiplies in float32."""
    return private("int8_linear")


def int8_pack(weight: torch.Tensor, scales: torch.Tensor):
    """``weight`` ``[M, K]`` as int8 with a scale per output row, packed for ``int8_linear``."""
    # PyTorch marks quantized tensors deprecated; fbgemm's kernels take nothing else yet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_channel(
            weight, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8
        )
    return torch.ops.quantized.linear_prepack(quantized, None)


def int8_linear(x: torch.Tensor, packed) -> torch.Tensor:
    """``x @ weight^T`` with ``x`` quantized per call (fbgemm's dynamic linear)."""
    return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)


def leave_to_row_exchange(model: torch.nn.Module, names: list[str]) -> bool:
    """Tell DistributedDataParallel to leave the parameters ``names`` alone (``distributed.RowExchange`` sends
    their touched rows instead); False where it cannot be told, so that it reduces them densely itself."""
    if not private("ddp_ignore_list"):
        return False
    from torch.nn.parallel import DistributedDataParallel

    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    return True


def data_parallel_without_buffer_sync(model: torch.nn.Module, device_ids):
    """DistributedDataParallel that broadcasts no buffers at each forward (``forward_sync_buffers=False`` from
    PyTorch 2.13, ``broadcast_buffers=False`` before, which 2.13 deprecates)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def onnx_export(module: torch.nn.Module, inputs: tuple, path: str, **options) -> None:
    """The TorchScript-based ONNX exporter, which writes PyTorch's fused RNNs as ONNX ``LSTM`` / ``GRU`` / ``RNN``
    nodes of dynamic length (the ``torch.export`` one unrolls them into a fixed number of steps)."""
    from seqnlp.errors import ConfigError

    try:
        torch.onnx.export(module, inputs, path, dynamo=False, **options)
    except TypeError as err:
        if "dynamo" not in str(err):
            raise
        raise ConfigError(
            f"this PyTorch ({torch.__version__}) has no TorchScript ONNX exporter, which seqnlp export needs for "
            "recurrent layers of any length"
        ) from None
