"""seqnlp.nn.loss: the label-smoothed cross-entropy gives PyTorch's values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from seqnlp.nn.loss import IGNORED, cross_entropy


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_cross_entropy_equals_torchs_in_value_and_gradient_with_ignored_targets(smoothing):
    torch.manual_seed(0)
    logits = torch.randn(7, 11, requires_grad=True)
    targets = torch.tensor([3, IGNORED, 0, 10, 5, IGNORED, 3])
    ours = cross_entropy(logits, targets, smoothing)
    (our_grad,) = torch.autograd.grad(2.5 * ours, logits)
    theirs = F.cross_entropy(logits, targets, label_smoothing=smoothing)
    (their_grad,) = torch.autograd.grad(2.5 * theirs, logits)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(our_grad, their_grad)
    assert our_grad[1].abs().sum() == 0 and our_grad[5].abs().sum() == 0


def test_a_kept_graph_gives_torchs_gradient_at_every_backward():
    """The gradient is computed in the forward pass into one buffer: a first backward must not use it up."""
    torch.manual_seed(1)
    logits = torch.randn(4, 6, requires_grad=True)
    targets = torch.tensor([1, 2, 3, 4])
    (reference,) = torch.autograd.grad(F.cross_entropy(logits, targets, label_smoothing=0.1), logits)
    loss = cross_entropy(logits, targets, 0.1)
    for scale in (1.0, 3.0):
        (grad,) = torch.autograd.grad(scale * loss, logits, retain_graph=True)
        torch.testing.assert_close(grad, scale * reference)


def test_half_precision_logits_get_a_gradient_of_their_own_dtype():
    logits = torch.randn(4, 6, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.tensor([1, 2, 3, 4])
    (grad,) = torch.autograd.grad(cross_entropy(logits, targets, 0.1), logits)
    assert grad.dtype == torch.bfloat16
    (reference,) = torch.autograd.grad(F.cross_entropy(logits.float(), targets, label_smoothing=0.1), logits)
    torch.testing.assert_close(grad.float(), reference.float(), atol=1e-2, rtol=1e-2)
