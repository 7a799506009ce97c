import json
import signal

import pytest
import torch

from seqnlp.config import RunConfig
from seqnlp.errors import SeqNLPError, TrainingError
from seqnlp.training.trainer import Trainer, lr_factor


class Regression(torch.nn.Module):
    """A model small enough to train in milliseconds, with dropout so RNG state matters."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, batch):
        return ((self.layer(self.drop(batch["x"])).squeeze(1) - batch["y"]) ** 2).mean()


def make_data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    return x, y


class CtrlCAt(list):
    """An epoch's batches that send this process SIGINT, as Ctrl-C does, when the batch of step ``step`` is taken."""

    def __init__(self, batches, first_step, step):
        super().__init__(batches)
        self.first_step, self.step = first_step, step

    def __getitem__(self, index):
        if self.first_step + index + 1 == self.step:
            signal.raise_signal(signal.SIGINT)
        return super().__getitem__(index)


def batches_for(x, y, seed, interrupt_at=None):
    def batches(epoch):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        epoch_batches = [{"x": x[i], "y": y[i], "num_tokens": len(i)} for i in order.split(8)]
        return CtrlCAt(epoch_batches, epoch * len(epoch_batches), interrupt_at) if interrupt_at else epoch_batches

    return batches


def interrupted_run(tmp_path, config, step):
    """A run stopped by Ctrl-C during ``step``: it ends that step, writes a checkpoint, raises KeyboardInterrupt."""
    trainer, _ = make_trainer(tmp_path, config, interrupt_at=step)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    return trainer


def make_trainer(tmp_path, config, interrupt_at=None):
    torch.manual_seed(0)
    model = Regression()
    x, y = make_data()

    def evaluate(m):
        m.eval()
        device = m.layer.weight.device
        with torch.no_grad():
            return {"neg_mse": -float(((m.layer(x.to(device)).squeeze(1) - y.to(device)) ** 2).mean())}

    def write_model(directory):
        from seqnlp.storage.folders import save_weights

        save_weights(model, directory / "model.safetensors")

    trainer = Trainer(
        model, config, tmp_path, batches_for(x, y, config.seed, interrupt_at), evaluate, write_model, "neg_mse"
    )
    return trainer, model


def config(**kw):
    return RunConfig(
        **{"epochs": 4, "lr": 0.05, "optimizer": "adam", "quiet": True, "patience": 0, "log_every": 1, **kw}
    )


def test_interrupted_then_resumed_run_equals_uninterrupted_run(tmp_path):
    full_trainer, full_model = make_trainer(tmp_path / "full", config())
    full_trainer.fit()
    interrupted = interrupted_run(tmp_path / "split", config(), step=13)  # mid-epoch 2
    assert interrupted.state.step == 13
    resumed, resumed_model = make_trainer(tmp_path / "split", config())
    torch.manual_seed(123)  # whatever the RNG did meanwhile, the checkpoint restores it
    resumed.fit(resume=True)
    assert resumed.state.step == full_trainer.state.step == 32
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_with_the_older_pickled_optimizer_state_still_resumes_exactly(tmp_path):
    full_trainer, full_model = make_trainer(tmp_path / "full", config())
    full_trainer.fit()
    interrupted = interrupted_run(tmp_path / "split", config(), step=13)
    last = tmp_path / "split" / "checkpoints" / "last"
    torch.save(interrupted.optimizer.state_dict(), last / "optimizer.pt")  # the format before safetensors
    (last / "optimizer.safetensors").unlink()
    resumed, resumed_model = make_trainer(tmp_path / "split", config())
    resumed.fit(resume=True)
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_resume_after_the_last_epoch_trains_nothing(tmp_path, capsys):
    trainer, _ = make_trainer(tmp_path, config())
    trainer.fit()
    again, _ = make_trainer(tmp_path, config())
    again.fit(resume=True)
    assert "nothing left to train" in capsys.readouterr().out
    assert again.state.step == 32


def test_best_model_and_checkpoint_are_written_and_log_has_every_epoch(tmp_path):
    trainer, _ = make_trainer(tmp_path, config())
    trainer.fit()
    assert (tmp_path / "model" / "model.safetensors").exists()
    assert (tmp_path / "checkpoints" / "last" / "optimizer.safetensors").exists()
    epochs = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines() if '"dev"' in line]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    cfg = config(patience=1, patience_after=0.0)
    cfg.lr = 1e-12  # nothing improves after the first evaluation
    cfg.epochs = 10
    trainer, _ = make_trainer(tmp_path, cfg)
    state = trainer.fit()
    assert state.epoch == 2 and state.finished


def test_early_stopping_counts_epochs_only_once_the_schedule_has_passed_patience_after(tmp_path):
    cfg = config(patience=1, patience_after=0.5, lr=1e-12, epochs=10)
    trainer, _ = make_trainer(tmp_path, cfg)
    state = trainer.fit()
    assert state.epoch == 5 and state.finished  # epochs 2-4 end before half the schedule; epoch 5 ends at half


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    trainer, model = make_trainer(tmp_path, config())
    trainer.fit()
    before = (tmp_path / "checkpoints" / "last" / "model.safetensors").read_bytes()

    def crash(directory):
        (directory / "model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    trainer.write_model = crash
    with pytest.raises(SeqNLPError, match="checkpoints/last: cannot write: disk full"):
        trainer.save_checkpoint()
    assert (tmp_path / "checkpoints" / "last" / "model.safetensors").read_bytes() == before
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last"]


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    trainer, model = make_trainer(tmp_path, config())
    with torch.no_grad():
        model.layer.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="loss became nan at step 0"):
        trainer.fit()


def test_linear_schedule_decays_to_one_percent_and_warms_up():
    assert lr_factor("linear", 0.0, 0, 0) == 1.0
    assert lr_factor("linear", 0.5, 100, 0) == 0.5
    assert lr_factor("linear", 1.0, 100, 0) == 0.01
    assert lr_factor("constant", 0.7, 1, 4) == 0.5


def test_weight_average_follows_the_parameters_with_the_configured_decay():
    from seqnlp.training.averaging import WeightAverage

    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(step=1000)  # late step: the configured decay applies
    assert average.average[0].item() == pytest.approx(0.5)
    with average.applied():
        assert model.weight.item() == pytest.approx(0.5)
    assert model.weight.item() == 1.0


def test_averaged_weights_are_evaluated_and_saved_and_resume_exactly(tmp_path):
    from seqnlp.storage.folders import load_weights

    full, full_model = make_trainer(tmp_path / "full", config(average_decay=0.9))
    full.fit()
    best = Regression()
    load_weights(best, tmp_path / "full" / "model" / "model.safetensors")
    assert not torch.equal(
        best.layer.weight, full_model.layer.weight.cpu()
    )  # the saved model is the average, not the last step
    interrupted_run(tmp_path / "split", config(average_decay=0.9), step=13)
    resumed, _ = make_trainer(tmp_path / "split", config(average_decay=0.9))
    resumed.fit(resume=True)
    for a, b in zip(full.average.average, resumed.average.average):
        assert torch.equal(a, b)


def test_weights_in_one_flat_buffer_and_tied_weights_save_and_load(tmp_path):
    """On a GPU cuDNN keeps an RNN's weights as views of one buffer; tied embeddings are one tensor under two names."""
    from seqnlp.storage.folders import load_weights, save_weights

    def tied_model(seed):
        torch.manual_seed(seed)
        m = torch.nn.ModuleDict(
            {"rnn": torch.nn.LSTM(3, 2), "embed": torch.nn.Embedding(5, 2), "out": torch.nn.Linear(2, 5)}
        )
        m["out"].weight = m["embed"].weight
        return m

    saved = tied_model(0)
    weights = list(saved["rnn"].parameters())
    flat = torch.cat([p.detach().flatten() for p in weights])
    offset = 0
    for p in weights:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    save_weights(saved, tmp_path / "model.safetensors")
    loaded = tied_model(1)
    load_weights(loaded, tmp_path / "model.safetensors")
    for (name, a), b in zip(saved.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded["out"].weight is loaded["embed"].weight


def test_an_unknown_or_absent_device_is_a_clear_error():
    from seqnlp.errors import ConfigError
    from seqnlp.training.trainer import pick_device

    with pytest.raises(ConfigError, match="not 'gpu'"):
        pick_device("gpu")
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            pick_device("cuda")


def test_bf16_where_it_would_be_emulated_is_refused(tmp_path, monkeypatch):
    import seqnlp.training.trainer
    from seqnlp.errors import ConfigError

    monkeypatch.setattr(seqnlp.training.trainer, "has_bf16_matrix_units", lambda device: False)
    with pytest.raises(ConfigError, match="--precision bf16 needs bf16 matrix instructions"):
        make_trainer(tmp_path, config(precision="bf16"))


def test_bf16_runs_the_training_forward_in_bf16_and_keeps_fp32_weights(tmp_path, monkeypatch):
    import seqnlp.training.trainer

    monkeypatch.setattr(seqnlp.training.trainer, "has_bf16_matrix_units", lambda device: True)
    trainer, model = make_trainer(tmp_path, config(precision="bf16", epochs=1))
    seen = []
    model.layer.register_forward_hook(lambda module, inputs, output: seen.append((module.training, output.dtype)))
    trainer.fit()
    trained = {dtype for training, dtype in seen if training}
    evaluated = {dtype for training, dtype in seen if not training}
    assert trained == {torch.bfloat16} and evaluated == {torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], True),
        (["--no-bidirectional"], False),
        (["--bidirectional"], True),
        (["--no-bidirectional", "--bidirectional"], True),
    ],
)
def test_every_switch_has_both_spellings_whatever_its_default(argv, expected):
    import argparse

    from seqnlp import config as configs

    parser = argparse.ArgumentParser()
    configs.add_arguments(parser, RunConfig)
    assert configs.resolve(RunConfig, parser.parse_args(argv)).bidirectional is expected


def test_report_to_tensorboard_writes_the_scalars_of_the_log(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    trainer, _ = make_trainer(tmp_path, config(report_to="tensorboard"))
    trainer.fit()
    events = accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    dev = [(r["step"], r["dev"]["neg_mse"]) for r in logged if "dev" in r]
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("dev/neg_mse")] == dev
    assert len(events.Scalars("loss")) == sum("loss" in r for r in logged)


def test_precision_auto_is_bf16_only_where_the_device_has_bf16_arithmetic_and_the_model_gains(monkeypatch):
    from seqnlp import compat
    from seqnlp.training.trainer import resolve_precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(compat, "bf16_matrix_units_on_cpu", lambda: True)
    assert [resolve_precision("auto", cpu, True), resolve_precision("auto", cpu, False)] == ["bf16", "fp32"]
    assert resolve_precision("fp32", cpu, True) == "fp32"
    monkeypatch.setattr(compat, "bf16_matrix_units_on_cpu", lambda: False)
    assert resolve_precision("auto", cpu, True) == "fp32"
