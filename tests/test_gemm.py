"""seqnlp.nn.gemm: oneDNN's products give PyTorch's values and gradients, and stay out of traced graphs."""

import pytest
import torch
import torch.nn.functional as F

from seqnlp.nn import gemm, kernels

needs_onednn = pytest.mark.skipif(not gemm.AVAILABLE, reason="this PyTorch has no oneDNN linear operator")


def ran_onednn(function) -> bool:
    with torch.profiler.profile() as profile:
        function()
    return any("_linear_pointwise" in event.name for event in profile.events())


@needs_onednn
def test_linear_gives_torchs_values_and_gradients_for_a_sliced_weight():
    torch.manual_seed(0)
    wide = torch.randn(512, 300, requires_grad=True)
    weight = wide[:, 16:272]  # a slice of a wider matrix, as a decoder's gate weights are
    x = torch.randn(8, 400, 256, requires_grad=True)  # large enough for oneDNN to repay a kernel per shape
    bias = torch.randn(512, requires_grad=True)
    grad = torch.randn(8, 400, 512)
    assert ran_onednn(lambda: gemm.linear(x, weight, bias))

    gemm.linear(x, weight, bias).backward(grad)
    ours = [t.grad.clone() for t in (x, wide, bias)]
    for t in (x, wide, bias):
        t.grad = None
    F.linear(x, weight, bias).backward(grad)

    torch.testing.assert_close(gemm.linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-4, atol=1e-3)
    for mine, theirs in zip(ours, (x.grad, wide.grad, bias.grad)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-3)
    assert wide.grad[:, :16].abs().sum() == 0


def test_small_layers_and_evaluation_keep_torchs_kernels():
    x, weight = torch.randn(400, 256, requires_grad=True), torch.randn(17, 256, requires_grad=True)
    assert not ran_onednn(lambda: gemm.linear(x, weight))  # a tagger's emissions: a new shape every batch
    with torch.no_grad():
        assert not ran_onednn(lambda: gemm.linear(torch.randn(3200, 256), torch.randn(512, 256)))


@needs_onednn
def test_products_for_hand_written_gradients_match_torch():
    torch.manual_seed(0)
    x, weight, add = torch.randn(64, 512), torch.randn(1024, 512), torch.randn(64, 1024)
    assert torch.allclose(gemm.mm_t(x, weight), x @ weight.t(), atol=1e-3)
    assert torch.allclose(gemm.mm_t(x, weight, add), torch.addmm(add, x, weight.t()), atol=1e-3)
    assert torch.allclose(gemm.mm_t(x, weight.t().contiguous().t()), x @ weight.t(), atol=1e-3)
    rows_a, rows_b = torch.randn(300, 1024), torch.randn(300, 256)
    for a, b in ((rows_a, rows_b), (rows_b, rows_a)):  # either operand the one transposed
        product = gemm.mm_tn(a, b)
        assert product.is_contiguous()
        assert torch.allclose(product, a.t() @ b, atol=1e-3)
    assert ran_onednn(lambda: gemm.mm_tn(rows_a, rows_b))


@needs_onednn
def test_switched_off_the_products_are_torchs():
    x, weight = torch.randn(64, 512), torch.randn(1024, 512)
    with kernels.use(products="torch"):
        assert not ran_onednn(lambda: gemm.mm_t(x, weight))
    assert ran_onednn(lambda: gemm.mm_t(x, weight))


def test_a_traced_layer_holds_torchs_linear_operator():
    layer = gemm.Linear(128, 96)
    assert set(layer.state_dict()) == {"weight", "bias"}  # nn.Linear's keys: saved models load as before
    graph = str(torch.jit.trace(layer, torch.randn(300, 128)).graph)
    assert "aten::linear" in graph and "mkldnn" not in graph


@needs_onednn
def test_rows_of_large_training_products_are_rounded_so_that_their_kernels_recur():
    output_layer = torch.randn(2209, 256, requires_grad=True)
    assert gemm.row_multiple(1237, output_layer) == kernels.current().row_multiple == 64
    assert gemm.row_multiple(1237, torch.randn(17, 256, requires_grad=True)) == 1  # too small for oneDNN
    with torch.no_grad():
        assert gemm.row_multiple(1237, output_layer) == 1
    with kernels.use(products="torch"):
        assert gemm.row_multiple(1237, output_layer) == 1


def test_a_kernel_choice_holds_within_its_block_and_is_checked():
    with kernels.use(row_multiple=1, input_feeding="autograd") as chosen:
        assert kernels.current() == chosen and chosen.products == "onednn"
    assert kernels.current() == kernels.Kernels()
    with pytest.raises(ValueError, match="products must be one of"):
        kernels.use(products="mkl").__enter__()
    with pytest.raises(ValueError, match="no kernel choice 'precision'"):
        kernels.use(precision="int8").__enter__()
