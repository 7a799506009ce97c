"""Label-smoothed cross-entropy over a large output vocabulary, in fewer passes over the logits than PyTorch's.

``F.cross_entropy(..., label_smoothing=e)`` differentiates through log-softmax, the gathered NLL and the
smoothing mean separately, and adds the pieces: several ``[N, V]`` buffers filled, added and read again.
Here the gradient is one buffer, ``(softmax - (1 - e) onehot - e / V) * weight``, made from the log-probabilities
the forward pass saved (``docs/experiments.md`` times the two).
"""

from __future__ import annotations

import torch

IGNORED = -100  # a target left out of the loss, as F.cross_entropy's default ignore_index


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """``F.cross_entropy(logits, targets, label_smoothing=smoothing)`` for ``logits`` ``[N, V]``: the mean over the
    targets that are not ``IGNORED``; its gradient is computed in float32."""
    return _SmoothedCrossEntropy.apply(logits, targets, smoothing)


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, smoothing):
        log_probs = torch.log_softmax(logits, dim=1, dtype=torch.float32)
        kept = targets != IGNORED
        gold = targets.masked_fill(~kept, 0).unsqueeze(1)
        # (1 - e) * -log p(gold) + e * mean over the vocabulary of -log p
        per_row = log_probs.gather(1, gold).squeeze(1).mul_(1 - smoothing).add_(log_probs.mean(1), alpha=smoothing)
        count = kept.sum()
        ctx.save_for_backward(log_probs, gold, kept, count)
        ctx.smoothing = smoothing
        return -(per_row * kept).sum() / count

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        log_probs, gold, kept, count = ctx.saved_tensors
        # softmax of log-probabilities is their exp, and PyTorch's CPU softmax is twice as fast as its exp
        gradient = torch.softmax(log_probs, dim=1)
        rows, classes = gradient.shape
        gold_at = torch.arange(0, rows * classes, classes, device=gold.device) + gold.squeeze(1)
        gradient.view(-1).index_add_(0, gold_at, gold_at.new_full((rows,), ctx.smoothing - 1, dtype=gradient.dtype))
        weight = kept.to(gradient.dtype).mul_(grad / count).unsqueeze(1)
        return gradient.sub_(ctx.smoothing / gradient.size(1)).mul_(weight), None, None
