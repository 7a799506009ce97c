"""SGD (with momentum), Adam and AdamW on torch's fused update kernels, without ``torch.optim``.

``torch.optim.Optimizer`` guards its methods against the compiler, so building one imports
``torch._dynamo``: +63 MiB resident and ~3 s at start-up, more than a CoNLL tagger's weights, data
and Adam state together. The update itself is the kernel ``torch.optim`` runs with ``fused=True``
(``torch._fused_adam_`` / ``_fused_adamw_`` / ``_fused_sgd_``), so results match it (tested).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from seqnlp import compat

KINDS = ("sgd", "adam", "adamw")


class FusedOptimizer:
    """One parameter group; the Trainer sets ``param_groups[0]["lr"]`` before each step.

    Parameters without a gradient in a step are skipped and keep their state (Adam's step count
    included), as in ``torch.optim``.
    """

    def __init__(
        self,
        params,
        kind: str,
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        lr_scales: list[float] | None = None,
    ):
        if kind not in KINDS:
            raise ValueError(f"optimizer must be one of {', '.join(KINDS)}, not {kind!r}")
        self.kind = kind
        self.params = [p for p in params if p.requires_grad]
        # Each trainable parameter's learning rate is lr times its scale (fine-tuning's --lr-pretrained).
        self.lr_scales = list(lr_scales) if lr_scales is not None else [1.0] * len(self.params)
        self.param_groups = [{"lr": lr}]
        self.weight_decay, self.momentum, self.betas, self.eps = weight_decay, momentum, betas, eps
        self.state: dict[
            str, list[torch.Tensor]
        ] = {}  # buffer name -> one tensor per parameter, made at the first step

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def _buffers(self) -> dict[str, list[torch.Tensor]]:
        if not self.state:
            if self.kind == "sgd":
                names = ("momentum",) if self.momentum else ()
            else:
                names = ("exp_avg", "exp_avg_sq")
            self.state = {name: [torch.zeros_like(p) for p in self.params] for name in names}
            if self.kind != "sgd":
                self.state["step"] = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        return self.state

    @torch.no_grad()
    def step(self) -> None:
        first_step = not self.state
        state = self._buffers()
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        for scale in sorted({self.lr_scales[i] for i in live}):
            self._update(
                [i for i in live if self.lr_scales[i] == scale], state, self.param_groups[0]["lr"] * scale, first_step
            )

    def _update(self, indices: list[int], state: dict, lr: float, first_step: bool) -> None:
        params = [self.params[i] for i in indices]
        grads = [self.params[i].grad for i in indices]
        picked = {name: [tensors[i] for i in indices] for name, tensors in state.items()}
        if self.kind == "sgd":
            compat.sgd_(
                params, grads, picked.get("momentum", []), lr=lr, momentum=self.momentum,
                weight_decay=self.weight_decay, first_step=first_step,
            )  # fmt: skip
            return
        compat.add_(picked["step"], 1)
        compat.adam_(
            params, grads, picked["exp_avg"], picked["exp_avg_sq"], picked["step"], lr=lr, beta1=self.betas[0],
            beta2=self.betas[1], weight_decay=self.weight_decay, eps=self.eps, decoupled=self.kind == "adamw",
        )  # fmt: skip

    def state_dict(self) -> dict:
        return {"kind": self.kind, "param_groups": [dict(g) for g in self.param_groups], "state": self.state}

    def load_state_dict(self, saved: dict) -> None:
        if saved.get("kind") != self.kind:
            raise ValueError(f"the checkpoint's optimizer is {saved.get('kind')!r}, this run's is {self.kind!r}")
        for name, tensors in saved["state"].items():
            if len(tensors) != len(self.params) or any(
                t.shape != p.shape for t, p in zip(tensors, self.params) if name != "step"
            ):
                raise ValueError(f"the checkpoint's optimizer state {name!r} does not fit this model's parameters")
        self.state = {
            name: [t.to(p.device) for t, p in zip(tensors, self.params)] for name, tensors in saved["state"].items()
        }
        self.param_groups = [dict(g) for g in saved["param_groups"]]

    def save(self, path: Path) -> None:
        """The state as safetensors (``buffer.index`` per parameter), kind and learning rate as metadata: no pickle."""
        tensors = {
            f"{name}.{i}": t.detach().cpu().contiguous() for name, ts in self.state.items() for i, t in enumerate(ts)
        }
        save_file(tensors, str(path), metadata={"kind": self.kind, "param_groups": json.dumps(self.param_groups)})

    def load(self, path: Path) -> None:
        with safe_open(str(path), framework="pt") as saved:
            metadata = saved.metadata()
            buffers: dict[str, dict[int, torch.Tensor]] = {}
            for key in saved.keys():
                name, index = key.rsplit(".", 1)
                buffers.setdefault(name, {})[int(index)] = saved.get_tensor(key)
        state = {name: [tensors[i] for i in sorted(tensors)] for name, tensors in buffers.items()}
        self.load_state_dict(
            {"kind": metadata["kind"], "param_groups": json.loads(metadata["param_groups"]), "state": state}
        )
