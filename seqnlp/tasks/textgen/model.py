"""Character-level language model trained with truncated backpropagation through time."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from seqnlp.nn.dropout import LockedDropout
from seqnlp.nn.encoder import CELLS
from seqnlp.nn.gemm import Linear
from seqnlp.nn.sampling import continue_prompts
from seqnlp.nn.torch_arrays import TorchArrays


class CharLM(nn.Module):
    """Embedding -> stacked unidirectional RNN -> softmax over characters.

    ``forward(batch)`` is stateful: the hidden state after one segment starts the next one
    (detached, so gradients are truncated at segment borders) until a batch says ``reset``.
    The carried state is part of the module's extra state, so a checkpoint resumes exactly.
    """

    def __init__(self, config, num_chars: int):
        """``config``: the task's settings (``TextgenConfig``: ``embed_dim``, ``hidden``, ``layers``, ``cell``,
        ``dropout``); ``num_chars``: its character vocabulary's size."""
        super().__init__()
        self.cell = config.cell
        self.embed = nn.Embedding(num_chars, config.embed_dim)
        dropout = config.dropout
        self.rnn = CELLS[config.cell](
            config.embed_dim, config.hidden, num_layers=config.layers, batch_first=True,
            dropout=dropout if config.layers > 1 else 0.0,
        )  # fmt: skip
        self.drop = LockedDropout(dropout)
        self.out = Linear(config.hidden, num_chars)
        self.carried = None

    def step(self, inputs: torch.Tensor, state=None):
        """Logits ``[B, T, V]`` and the final state for ``inputs[B, T]`` starting from ``state``."""
        output, state = self.rnn(self.drop(self.embed(inputs)), state)
        return self.out(self.drop(output)), state

    def forward(self, batch: dict) -> torch.Tensor:
        state = None if batch.get("reset") else self.carried
        logits, state = self.step(batch["inputs"], state)
        # in float32: under bf16 autocast the state comes back in bf16, which oneDNN's LSTM refuses as the next start
        self.carried = tuple(s.detach().float() for s in state) if isinstance(state, tuple) else state.detach().float()
        return F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten())

    def get_extra_state(self) -> torch.Tensor:
        if self.carried is None:
            return torch.zeros(0)
        return torch.stack(self.carried) if isinstance(self.carried, tuple) else self.carried.unsqueeze(0)

    def set_extra_state(self, value: torch.Tensor) -> None:
        if value.numel() == 0:
            self.carried = None
            return
        states = 2 if self.cell == "lstm" else 1
        if (
            value.dim() != 4
            or value.shape[0] != states
            or value.shape[1] != self.rnn.num_layers
            or value.shape[3] != self.rnn.hidden_size
        ):
            raise ValueError(
                f"carried state of shape {list(value.shape)} does not fit a {self.rnn.num_layers}-layer {self.cell}"
            )
        if self.cell == "lstm":
            self.carried = (value[0].contiguous(), value[1].contiguous())
        else:
            self.carried = value[0].contiguous()

    @torch.inference_mode()
    def total_nll(
        self,
        streams: torch.Tensor,
        segment: int = 256,
        chunks: list | None = None,
        by_target: torch.Tensor | None = None,
    ) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of predicting each next character of ``streams[B, N]``.

        ``chunks``, when given, receives ``(nats, characters)`` of each stream's part of each segment (the units of
        a bootstrap interval); ``by_target[2, V]`` (float64, CPU) adds up the nats and the count of each predicted
        character id."""
        state, total, count = None, 0.0, 0
        for start in range(0, streams.size(1) - 1, segment):
            inputs = streams[:, start : start + segment]
            targets = streams[:, start + 1 : start + segment + 1]
            inputs = inputs[:, : targets.size(1)]
            logits, state = self.step(inputs, state)
            total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
            count += targets.numel()
            if chunks is not None:
                per_char = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
                chunks += [(nats, targets.size(1)) for nats in per_char.view(targets.shape).sum(1).tolist()]
            if by_target is not None:
                ids = targets.flatten().cpu()
                by_target[0].index_add_(0, ids, per_char.detach().double().cpu())
                by_target[1].index_add_(0, ids, torch.ones(ids.numel(), dtype=torch.float64))
        return total, count

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[list[int]],
        length: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        banned: tuple[int, ...] = (0, 1),
    ) -> list[list[int]]:
        """Sample ``length`` characters after each prompt, all prompts in one batch; ``banned`` ids (padding, unknown)
        are never drawn."""
        arrays = TorchArrays(self.out.weight.device)
        settings = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        return continue_prompts(self.step, prompts, length, arrays, banned=banned, **settings)
