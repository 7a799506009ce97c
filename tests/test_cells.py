"""The cells written from their equations match PyTorch's fused kernels, values and gradients."""

import pytest
import torch

from seqnlp.nn.cells import ReferenceRNN
from seqnlp.nn.encoder import RNNEncoder

FUSED = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def copy_weights(reference: ReferenceRNN, fused: torch.nn.Module) -> None:
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(reference.cell, name).copy_(getattr(fused, f"{name}_l0"))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cell_matches_fused_layer_outputs_and_gradients(cell):
    torch.manual_seed(0)
    fused = FUSED[cell](3, 5, batch_first=True)
    reference = ReferenceRNN(cell, 3, 5)
    copy_weights(reference, fused)
    x = torch.randn(4, 7, 3, requires_grad=True)
    out_fused, _ = fused(x)
    out_reference, _ = reference(x)
    assert torch.allclose(out_fused, out_reference, atol=1e-6)
    weights = torch.randn_like(out_fused)
    grad_fused = torch.autograd.grad((out_fused * weights).sum(), [x, fused.weight_hh_l0])
    grad_reference = torch.autograd.grad((out_reference * weights).sum(), [x, reference.cell.weight_hh])
    for a, b in zip(grad_fused, grad_reference):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_reference_encoder_matches_fused_encoder_with_padding(cell, bidirectional):
    torch.manual_seed(0)
    fused = RNNEncoder(3, 4, num_layers=2, cell=cell, bidirectional=bidirectional).eval()
    reference = RNNEncoder(3, 4, num_layers=2, cell=cell, bidirectional=bidirectional, cell_impl="reference").eval()
    layers = [*zip(fused.forward_layers, reference.forward_layers)]
    if bidirectional:
        layers += [*zip(fused.backward_layers, reference.backward_layers)]
    for f, r in layers:
        copy_weights(r, f)
    x = torch.randn(3, 6, 3, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    (out_f, final_f), (out_r, final_r) = fused(x, lengths), reference(x, lengths)
    assert torch.allclose(out_f, out_r, atol=1e-6) and torch.allclose(final_f, final_r, atol=1e-6)
    (grad_f,) = torch.autograd.grad(out_f.sum() + final_f.sum(), x)
    (grad_r,) = torch.autograd.grad(out_r.sum() + final_r.sum(), x)
    assert torch.allclose(grad_f, grad_r, atol=1e-5)
    assert grad_f[1, 2:].abs().sum() == 0  # padding gets no gradient
