"""Data-parallel training on PyTorch's own engine: ``torch.distributed`` + ``DistributedDataParallel``, launched by
``torchrun`` (or anything that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``).

Every process reads the same data and builds the same vocabularies and model (same seed); DDP checks the
parameters agree and keeps their gradients averaged. A step is one *global* batch, the batch of a one-process run
with ``batch_size x processes`` examples, whose examples are dealt out to the processes (``shard``); each
process's loss is weighted by its share of what the global batch's loss averages over (examples, or target
tokens for translation), so N processes take the step one process would take on the global batch. Rank 0 alone
evaluates, writes and decides; its decisions (stop, the best metric) reach every rank at the same step.

Embedding tables, most of a word model's weights, bypass DDP's dense all-reduce: a batch looks up a few hundred
of their rows, the rest of their gradient is zero, and ``RowExchange`` sends only the rows some process touched.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from seqnlp.errors import ConfigError, SeqNLPError

BACKENDS = ("auto", "gloo", "nccl")


class PeerFailure(SeqNLPError):
    """Another process of the run stopped: its own output says why."""


@dataclass(frozen=True)
class Group:
    """This process's place in a data-parallel run."""

    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether this process was started as one of several (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(backend: str, device: torch.device) -> Group | None:
    """Join the process group torchrun's environment describes; None for a run of one process."""
    if not launched():
        return None
    if backend not in BACKENDS:
        raise ConfigError(f"ddp_backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError("ddp_backend nccl needs CUDA devices (--device cuda); on CPUs use gloo")
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise ConfigError("a distributed launch needs RANK and WORLD_SIZE (torchrun sets them)") from None
    if not dist.is_initialized():
        # torch's default timeout (30 minutes) bounds a wait on a peer that hangs; one that dies closes its
        # connections, which ends the others' waits at once (``collective``)
        dist.init_process_group(backend, rank=rank, world_size=world)
    return Group(rank, world, local_rank, backend)


def device_of(group: Group | None, device: torch.device) -> torch.device:
    """One GPU per process (``LOCAL_RANK``); CPUs are shared."""
    if group is not None and device.type == "cuda":
        torch.cuda.set_device(group.local_rank)
        return torch.device("cuda", group.local_rank)
    return device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def collective(function, computes: bool = False):
    """Run a collective; a peer that died mid-run (its connection closed) is a ``PeerFailure``, not a traceback.

    ``computes``: ``function`` also computes (DDP's forward and backward, whose all-reduce runs inside), so only
    the transport's errors (gloo's, NCCL's) mean a lost peer; any other error stays what it is.
    """
    try:
        return function()
    except (RuntimeError, dist.DistError) as err:
        if computes and not (isinstance(err, dist.DistError) or "/gloo/" in str(err)):
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise PeerFailure(
            f"another process of this data-parallel run stopped ({first}); its own output says why"
        ) from None


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over the processes."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    collective(lambda: dist.all_reduce(tensor, op=dist.ReduceOp.SUM))
    return tensor.tolist()


def from_writer(value):
    """Rank 0's ``value`` (any picklable object), on every rank."""
    box = [value]
    collective(lambda: dist.broadcast_object_list(box, src=0))
    return box[0]


def writer_selects(state, evaluate_here: Callable[[], None], is_writer: bool) -> None:
    """The writer evaluates and updates ``state``'s model selection (``evaluate_here``); every rank takes its
    verdict. The selection metrics (seqeval F1, BLEU) are not sums over shards, so a sharded evaluation would gather
    every prediction anyway, and the dev sets here take seconds."""
    if is_writer:
        evaluate_here()
    fields = ("best_metric", "best_epoch", "bad_epochs", "finished", "ended_by")
    for name, value in zip(fields, from_writer(tuple(getattr(state, name) for name in fields))):
        setattr(state, name, value)


def gather_to_writer(value) -> list | None:
    """Every rank's ``value`` on rank 0 (in rank order); None elsewhere."""
    rank, world = dist.get_rank(), dist.get_world_size()
    out = [None] * world if rank == 0 else None
    collective(lambda: dist.gather_object(value, out, dst=0))
    return out


def barrier() -> None:
    collective(dist.barrier)


def row_sparse_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The trainable embedding tables whose gradient is zero outside the rows a batch looked up, by qualified name.

    A table that another module shares (tied to an output layer) has a dense gradient: it stays with DDP.
    """
    holders = Counter(id(p) for module in model.modules() for p in module.parameters(recurse=False))
    return {
        f"{name}.weight": module.weight
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Embedding)
        and not module.sparse
        and module.weight.requires_grad
        and holders[id(module.weight)] == 1
    }


class RowExchange:
    """Averages embedding gradients over the processes by their nonzero rows only, after DDP's backward.

    Two collectives a step: the union of the rows any process touched (a byte per row), then those rows'
    gradients. Rows nobody touched are zero on every process, so the result is the average of the whole tables.
    """

    def __init__(self, parameters: Sequence[torch.nn.Parameter], world: int):
        self.parameters, self.world = list(parameters), world
        for parameter in self.parameters:  # DDP broadcasts rank 0's weights at its start; these it does not see
            collective(lambda p=parameter: dist.broadcast(p.data, src=0))

    def __call__(self) -> None:
        grads = []
        for parameter in self.parameters:
            if parameter.grad is None:  # a process whose batch never reached this table
                parameter.grad = torch.zeros_like(parameter)
            grads.append(parameter.grad)
        touched = torch.cat([grad.ne(0).any(dim=1) for grad in grads]).to(torch.uint8)
        collective(lambda: dist.all_reduce(touched, op=dist.ReduceOp.MAX))
        rows = torch.split(touched.bool(), [grad.size(0) for grad in grads])
        rows = [mask.nonzero().squeeze(1) for mask in rows]
        values = torch.cat([grad.index_select(0, index).flatten() for grad, index in zip(grads, rows)])
        collective(lambda: dist.all_reduce(values, op=dist.ReduceOp.SUM))
        values /= self.world
        sizes = [len(index) * grad.size(1) for grad, index in zip(grads, rows)]
        for grad, index, part in zip(grads, rows, torch.split(values, sizes)):
            grad.index_copy_(0, index, part.view(len(index), grad.size(1)))


class Shard(Sequence):
    """Rank ``rank``'s part of each global batch: every ``world``-th example of it, from the ``rank``-th.

    ``global_batches`` is a ``seqnlp.data.batching.Batches`` (index groups, collated on demand) or a list of
    batches of row-aligned tensors (the language model's parallel streams, whose rows stay with one rank from
    segment to segment, so the hidden state each rank carries is its own streams'). A rank whose share of a
    small last batch is empty trains on the batch's first example with weight 0 (``batch["loss_weight"]``), so
    every rank takes every step.
    """

    def __init__(self, global_batches, rank: int, world: int):
        self.batches, self.rank, self.world = global_batches, rank, world

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index):
        from seqnlp.data.batching import Batches

        if isinstance(self.batches, Batches):
            group = self.batches.groups[index]
            mine = group[self.rank :: self.world]
            batch = self.batches.collate([self.batches.items[i] for i in (mine or group[:1])])
            batch["loss_weight"] = 1.0 if mine else 0.0
            return batch
        batch = self.batches[index]
        rows = next(v for v in batch.values() if torch.is_tensor(v)).size(0)
        if rows < self.world:
            raise ConfigError(f"{rows} parallel streams cannot be dealt out to {self.world} processes")
        mine = {k: (v[self.rank :: self.world] if torch.is_tensor(v) and v.dim() else v) for k, v in batch.items()}
        mine["num_tokens"] = batch["num_tokens"] * len(range(self.rank, rows, self.world)) // rows
        mine["loss_weight"] = 1.0
        return mine


def data_parallel(model: torch.nn.Module, group: Group, device: torch.device):
    """``(DDP-wrapped model, RowExchange or None)``: DistributedDataParallel all-reduces the dense gradients; the
    embedding tables of their own are left to a ``RowExchange``, which sends only the rows a step touched (where
    this PyTorch's DDP can be told to leave them alone: ``seqnlp.compat``)."""
    from seqnlp import compat

    tables = row_sparse_parameters(model)
    if tables and not compat.leave_to_row_exchange(model, list(tables)):
        tables = {}  # this PyTorch's DDP cannot be told to leave them: it reduces them densely
    row_exchange = RowExchange(tables.values(), group.world) if tables else None
    # Buffers (CRF masks, output ids) never change: nothing to broadcast at each forward.
    ids = [device.index] if device.type == "cuda" else None
    parallel = collective(lambda: compat.data_parallel_without_buffer_sync(model, ids))
    return parallel, row_exchange


def agree(seconds: float, signalled: bool, is_writer: bool, device: torch.device) -> tuple[float, bool]:
    """After each step: rank 0's clock (the schedule and the budget follow it), and whether any process was asked to
    stop."""
    clock, stops = all_sum([seconds if is_writer else 0.0, float(signalled)], device)
    return clock, stops > 0


def global_batch_loss(loss: torch.Tensor, units: float, tokens: int, world: int, device: torch.device):
    """``(loss to differentiate, the global batch's loss, its tokens)`` for this process's ``loss`` over ``units``.

    DDP averages the processes' gradients; weighting each loss by its share of the global batch's units (examples,
    target tokens) makes that average the gradient of the global batch's loss."""
    total, loss_sum, tokens = all_sum([units, loss.item() * units, tokens], device)
    return loss * (units * world / total), loss_sum / total, int(tokens)
