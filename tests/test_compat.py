"""Each private PyTorch path has a public fallback that gives its results (``seqnlp.compat``)."""

import pytest
import torch

from seqnlp import compat


def test_this_pytorch_has_every_private_path_seqnlp_takes():
    """On the PyTorch CI installs, every private path is there (a newer one that drops one says so here)."""
    assert compat.HAS == dict.fromkeys(compat.HAS, True) | {"onednn_linear": compat.HAS["onednn_linear"]}


def test_turning_private_paths_off_takes_every_fallback():
    with compat.use_private(False):
        assert not any(compat.private(name) for name in compat.HAS)
        assert compat.onednn_linear() is None and not compat.int8_linear_available()
    assert compat.private("foreach")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 2])
def test_the_fused_rnn_fallback_gives_the_kernels_outputs_and_gradients(cell, layers):
    torch.manual_seed(0)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](5, 7, layers, batch_first=True)
    weights = [p for name, p in module.named_parameters()]
    x = torch.randn(3, 4, 5)
    h = torch.randn(layers, 3, 7)
    hx = (h, torch.randn(layers, 3, 7)) if cell == "lstm" else h
    results = []
    for private in (True, False):
        with compat.use_private(private):
            out = compat.fused_rnn(cell, x, hx, weights, 0.0, False)
        grads = torch.autograd.grad(out.pow(2).sum(), weights)
        results.append((out, grads))
    (fused, fused_grads), (public, public_grads) = results
    torch.testing.assert_close(public, fused)
    for a, b in zip(public_grads, fused_grads):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fused, module(x, hx)[0])


def test_weight_averaging_and_copies_match_without_foreach_kernels():
    tensors = [torch.randn(3, 4), torch.randn(5)]
    ends = [torch.randn(3, 4), torch.randn(5)]
    private, public = [t.clone() for t in tensors], [t.clone() for t in tensors]
    compat.lerp_(private, ends, 0.25)
    compat.add_(private, 1)
    with compat.use_private(False):
        compat.lerp_(public, ends, 0.25)
        compat.add_(public, 1)
    for a, b in zip(public, private):
        torch.testing.assert_close(a, b)
    with compat.use_private(False):
        compat.copy_(public, ends)
    assert all(torch.equal(a, b) for a, b in zip(public, ends))


def test_the_bf16_check_reads_the_cpus_flags_where_the_private_one_is_gone():
    with compat.use_private(False):
        fallback = compat.bf16_matrix_units_on_cpu()
    assert fallback == compat.bf16_matrix_units_on_cpu()


def test_products_fall_back_to_pytorch_and_decoding_to_float32():
    from seqnlp.nn import gemm
    from seqnlp.nn.products import DenseProduct, decoding_product

    x, weight = torch.randn(256, 512), torch.randn(4096, 512)
    with compat.use_private(False):
        assert not gemm._applies(x, weight)
        torch.testing.assert_close(gemm.mm_t(x, weight), x @ weight.T)
        assert isinstance(decoding_product(weight, None, int8=True), DenseProduct)
