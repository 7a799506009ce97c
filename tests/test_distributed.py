"""Data-parallel training (torch.distributed, gloo, 2 CPU processes, tiny models): the step of N processes is the
one-process step on the whole batch; resume is exact; a failure on one process ends them all with one line."""

import json
import math
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from seqnlp.tasks.sentiment.task import SentimentConfig
from tests.conftest import ROOT

TINY = {
    "ner": ["--hidden", "8", "--word-dim", "8", "--char-dim", "4", "--char-out", "4", "--word-dropout", "0"],
    "sentiment": ["--hidden", "8", "--word-dim", "8", "--word-dropout", "0"],
    "translate": ["--hidden", "8", "--decoder-hidden", "8", "--embed-dim", "8", "--vocab-size", "60", "--beam", "1"],
    "textgen": ["--hidden", "8", "--layers", "1", "--embed-dim", "8", "--seq-len", "512", "--sample-chars", "0"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(
    world: int, argv: list, cwds=None, timeout: float = 180, signal_at: tuple | None = None, environment=None
) -> list[subprocess.CompletedProcess]:
    """``seqnlp train ...`` in ``world`` processes, as torchrun starts them (its environment, one per rank).

    ``signal_at``: (rank, epoch, step, signal name): that process signals itself just before that training step
    (``tests/signal_at_step.py``)."""
    command = [sys.executable, "-m", "seqnlp.cli"]
    if signal_at is not None:
        command = [sys.executable, str(ROOT / "tests" / "signal_at_step.py"), *map(str, signal_at)]
    port = free_port()
    processes = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            **(environment or {}),
        }
        if world == 1:
            for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
                env.pop(name)
        processes.append(
            subprocess.Popen(
                [*command, "train", *map(str, argv)],
                cwd=(cwds or [ROOT] * world)[rank],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        raise AssertionError(f"the run did not end within {timeout} s") from None
    return results


def one_batch_of_data(task: str, folder):
    """(train, dev) files whose training part is 8 examples: one step of batch 8 is the whole epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    if task == "ner":
        blocks = (ROOT / "data/ner/train.txt").read_text().split("\n\n")
        sentences = [b.strip("\n") for b in blocks if b.strip() and not b.startswith("-DOCSTART-")]
        (folder / "train.txt").write_text("\n\n".join(sentences[:8]) + "\n")
        return folder / "train.txt", ROOT / "data/ner/dev.txt"
    if task == "sentiment":
        lines = (ROOT / "data/sentiment/train.tsv").read_text().splitlines()
        (folder / "train.tsv").write_text("\n".join(lines[:9]) + "\n")
        return folder / "train.tsv", ROOT / "data/sentiment/dev.tsv"
    if task == "translate":
        for lang in ("de", "en"):
            lines = (ROOT / f"data/translate/train.{lang}").read_text().splitlines()
            (folder / f"train.{lang}").write_text("\n".join(lines[:8]) + "\n")
        return folder / "train", ROOT / "data/translate/val"
    (folder / "train.txt").write_text((ROOT / "data/textgen/train.txt").read_text()[:2000])
    return folder / "train.txt", ROOT / "data/textgen/val.txt"


def weights(out) -> dict:
    """The parameters of the run's last checkpoint (not a language model's carried state: each process has its own)."""
    saved = load_file(str(out / "checkpoints" / "last" / "model.safetensors"))
    return {name: t for name, t in saved.items() if not name.endswith("_extra_state")}


def test_only_embedding_tables_of_their_own_bypass_the_dense_all_reduce():
    from seqnlp.training.distributed import row_sparse_parameters

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.words = torch.nn.Embedding(50, 4)
            self.frozen = torch.nn.Embedding(50, 4).requires_grad_(False)
            self.tied = torch.nn.Embedding(50, 4)
            self.out = torch.nn.Linear(4, 50)
            self.out.weight = self.tied.weight  # a tied output layer: its gradient is dense

    assert list(row_sparse_parameters(Model())) == ["words.weight"]


@pytest.mark.parametrize(
    ("task", "private"),
    [*((task, "1") for task in sorted(TINY)), ("ner", "0")],
    ids=[*sorted(TINY), "ner-without-private-torch"],
)
def test_two_processes_with_half_batches_take_the_one_process_step_on_the_whole_batch(task, private, tmp_path):
    """(Without PyTorch's private paths, DDP reduces the embedding tables densely instead of RowExchange.)"""
    train, dev = one_batch_of_data(task, tmp_path / "data")
    # SGD: the step is the gradient itself. (Adam's first step divides each gradient by its own size, so a
    # gradient that is rounding noise on either side moves its weight by the full rate.) fp32: bf16's rounding of
    # half batches differs from the whole batch's by more than the reduction's.
    common = ["--train-file", train, "--dev-file", dev, "--epochs", "1", "--dropout", "0", "--quiet",
              "--optimizer", "sgd", "--momentum", "0", "--lr", "0.5", "--average-decay", "0", "--precision", "fp32",
              *TINY[task]]  # fmt: skip
    environment = {"SEQNLP_PRIVATE_TORCH": private}
    (single,) = launch(1, [task, *common, "--batch-size", "8" if task != "textgen" else "4", "--output-dir",
                           tmp_path / "one"], environment=environment)  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    pair = launch(2, [task, *common, "--batch-size", "4" if task != "textgen" else "2", "--output-dir",
                      tmp_path / "two"], environment=environment)  # fmt: skip
    assert [p.returncode for p in pair] == [0, 0], pair[0].stderr[-2000:] + pair[1].stderr[-2000:]
    assert "data-parallel: 2 processes (gloo)" in pair[0].stdout and pair[1].stdout == ""
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for name in one:
        scale = max(one[name].abs().max().item(), 1e-6)
        assert (one[name] - two[name]).abs().max().item() <= 1e-6 * scale, name


def test_a_two_process_run_resumed_equals_the_uninterrupted_run(tmp_path):
    train, dev = ROOT / "data/sentiment/train.tsv", ROOT / "data/sentiment/dev.tsv"
    common = ["sentiment", "--train-file", train, "--dev-file", dev, "--quiet", "--schedule", "constant",
              "--batch-size", "16", *TINY["sentiment"]]  # fmt: skip
    whole = launch(2, [*common, "--epochs", "2", "--output-dir", tmp_path / "whole"])
    assert [p.returncode for p in whole] == [0, 0], whole[0].stderr[-2000:]
    # without --lr, the default rate grows with the square root of the processes, and a resumed run keeps it
    saved = json.loads((tmp_path / "whole" / "model" / "config.json").read_text())["config"]
    assert saved["lr"] == pytest.approx(SentimentConfig().lr * math.sqrt(2))
    first = launch(2, [*common, "--epochs", "1", "--output-dir", tmp_path / "parts"])
    assert [p.returncode for p in first] == [0, 0], first[0].stderr[-2000:]
    assert (tmp_path / "parts" / "checkpoints" / "last" / "rng-rank1.safetensors").exists()
    second = launch(2, [*common, "--epochs", "2", "--resume", "--output-dir", tmp_path / "parts"])
    assert [p.returncode for p in second] == [0, 0], second[0].stderr[-2000:]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "parts")
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    train, dev = ROOT / "data/sentiment/train.tsv", ROOT / "data/sentiment/dev.tsv"
    common = ["sentiment", "--train-file", train, "--dev-file", dev, "--quiet", *TINY["sentiment"]]
    (single,) = launch(1, [*common, "--epochs", "1", "--output-dir", tmp_path / "run"])
    assert single.returncode == 0, single.stderr[-2000:]
    pair = launch(2, [*common, "--epochs", "2", "--resume", "--output-dir", tmp_path / "run"])
    assert [p.returncode for p in pair] == [2, 2]
    assert "written by 1 process(es), this run has 2" in pair[0].stderr
    assert pair[0].stderr.count("\n") == 1


def test_a_bad_input_on_one_process_ends_every_process_with_exit_2(tmp_path):
    """Rank 1's copy of the data (another machine's disk, say) is broken; rank 0's is fine."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    for folder in (good, bad):
        folder.mkdir()
        (folder / "train.tsv").write_text((ROOT / "data/sentiment/train.tsv").read_text())
    with (bad / "train.tsv").open("a") as out:
        out.write("a text without its label\n")
    argv = ["sentiment", "--train-file", "train.tsv", "--dev-file", ROOT / "data/sentiment/dev.tsv", "--quiet",
            "--epochs", "1", *TINY["sentiment"], "--output-dir", tmp_path / "run"]  # fmt: skip
    results = launch(2, argv, cwds=[good, bad], timeout=120)
    assert [p.returncode for p in results] == [2, 2]
    assert results[1].stderr.startswith("error: train.tsv:") and results[1].stderr.count("\n") == 1
    assert results[0].stderr.startswith("error: another process of this data-parallel run stopped")
    assert results[0].stderr.count("\n") == 1


LONG_RUN = ["sentiment", "--train-file", ROOT / "data/sentiment/train.tsv", "--dev-file",
            ROOT / "data/sentiment/dev.tsv", "--quiet", "--schedule", "constant", "--batch-size", "4",
            "--log-every", "1", "--epochs", "3", *TINY["sentiment"]]  # fmt: skip


def test_a_signal_to_one_process_stops_every_process_at_the_same_step_and_resume_is_exact(tmp_path):
    whole = launch(2, [*LONG_RUN, "--output-dir", tmp_path / "whole"])
    assert [p.returncode for p in whole] == [0, 0], whole[0].stderr[-2000:]
    parts = tmp_path / "parts"
    # SIGTERM to rank 1 alone, before the fifth step: rank 0 learns of it at that step and both stop after it
    stopped = launch(2, [*LONG_RUN, "--output-dir", parts], signal_at=(1, 1, 5, "SIGTERM"))
    assert [p.returncode for p in stopped] == [130, 130], stopped[0].stderr[-2000:]
    state = json.loads((parts / "checkpoints" / "last" / "trainer_state.json").read_text())["state"]
    assert (state["ended_by"], state["epoch"], state["step"], state["step_in_epoch"]) == ("interrupted", 0, 5, 5)
    resumed = launch(2, [*LONG_RUN, "--resume", "--output-dir", parts])
    assert [p.returncode for p in resumed] == [0, 0], resumed[0].stderr[-2000:]
    a, b = weights(tmp_path / "whole"), weights(parts)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_a_killed_process_ends_the_other_and_resume_recovers(tmp_path):
    out = tmp_path / "run"
    # rank 1 dies before the first step of epoch 2; rank 0 sees its peer's connection close (launch's timeout
    # bounds the wait: a rank 0 waiting for a collective's own timeout would run into it)
    killed = launch(2, [*LONG_RUN, "--output-dir", out], signal_at=(1, 2, 1, "SIGKILL"), timeout=120)
    assert killed[1].returncode == -signal.SIGKILL and killed[0].returncode == 2
    assert killed[0].stderr.startswith("error: another process of this data-parallel run stopped")
    state = json.loads((out / "checkpoints" / "last" / "trainer_state.json").read_text())["state"]
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0)  # the first epoch's checkpoint
    resumed = launch(2, [*LONG_RUN, "--resume", "--output-dir", out])
    assert [p.returncode for p in resumed] == [0, 0], resumed[0].stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["train"]["epochs"] == 3


def test_only_the_transports_errors_inside_forward_and_backward_mean_a_lost_process():
    from seqnlp.training.distributed import PeerFailure, collective

    def fail(message):
        def function():
            raise RuntimeError(message)

        return function

    lost = "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:4812."
    with pytest.raises(PeerFailure, match="another process of this data-parallel run stopped"):
        collective(fail(lost), computes=True)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        collective(fail("mat1 and mat2 shapes cannot be multiplied"), computes=True)
