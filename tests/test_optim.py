import subprocess
import sys

import pytest
import torch

from seqnlp import compat
from seqnlp.training.optim import FusedOptimizer

REFERENCES = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01),
    "adam": lambda params: torch.optim.Adam(params, lr=0.01, weight_decay=0.01),
    "adamw": lambda params: torch.optim.AdamW(params, lr=0.01, weight_decay=0.01),
}


def train(make_optimizer, steps=5):
    """A few steps of a tiny model in which the second layer gets no gradient on odd steps."""
    torch.manual_seed(0)
    first, second = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1)
    optimizer = make_optimizer([*first.parameters(), *second.parameters()])
    for step in range(steps):
        x = torch.randn(8, 3)
        loss = first(x).pow(2).mean() if step % 2 else second(first(x)).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in (*first.parameters(), *second.parameters())], optimizer


@pytest.mark.parametrize("private", [True, False], ids=["fused kernels", "public fallback"])
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_updates_equal_torch_optim_including_parameters_without_gradients(kind, private):
    lr = 0.1 if kind == "sgd" else 0.01
    momentum = 0.9 if kind == "sgd" else 0.0
    with compat.use_private(private):
        mine, _ = train(lambda params: FusedOptimizer(params, kind, lr, weight_decay=0.01, momentum=momentum))
    reference, _ = train(REFERENCES[kind])
    for a, b in zip(mine, reference):
        torch.testing.assert_close(a, b)


def test_state_dict_round_trip_continues_identically():
    make = lambda params: FusedOptimizer(params, "adam", 0.01)  # noqa: E731
    _, optimizer = train(make, steps=3)
    restored = make([torch.nn.Parameter(torch.zeros_like(p)) for p in optimizer.params])
    restored.load_state_dict(optimizer.state_dict())
    assert [int(s) for s in restored.state["step"]] == [3, 3, 2, 2]
    for a, b in zip(restored.state["exp_avg"], optimizer.state["exp_avg"]):
        assert torch.equal(a, b)


def test_saved_file_round_trip_keeps_every_buffer_in_parameter_order(tmp_path):
    params = [torch.nn.Parameter(torch.randn(i + 1)) for i in range(12)]  # indices past 9: order must be numeric
    optimizer = FusedOptimizer(params, "adam", 0.01)
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.005
    optimizer.save(tmp_path / "optimizer.safetensors")
    restored = FusedOptimizer([torch.nn.Parameter(torch.zeros_like(p)) for p in params], "adam", 0.01)
    restored.load(tmp_path / "optimizer.safetensors")
    assert restored.param_groups == [{"lr": 0.005}]
    for name in ("exp_avg", "exp_avg_sq", "step"):
        assert all(torch.equal(a, b) for a, b in zip(restored.state[name], optimizer.state[name]))


def test_loading_another_optimizers_state_is_refused():
    _, adam = train(lambda params: FusedOptimizer(params, "adam", 0.01), steps=1)
    sgd = FusedOptimizer(adam.params, "sgd", 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="'adam'.*'sgd'"):
        sgd.load_state_dict(adam.state_dict())


def test_training_does_not_import_the_compiler_stack():
    """torch.optim imports torch._dynamo (+63 MiB resident); seqnlp's optimizer must not."""
    code = (
        "import sys, torch\n"
        "from seqnlp.config import RunConfig\n"
        "from seqnlp.training.trainer import build_optimizer\n"
        "model = torch.nn.Linear(2, 1)\n"
        "optimizer = build_optimizer(model, RunConfig())\n"
        "model(torch.ones(1, 2)).sum().backward()\n"
        "optimizer.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
