"""Data-parallel training under torchrun: one process per device, gradients averaged across them.

`torchrun --nproc_per_node N -m gankit train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; gankit then
joins a process group (nccl on GPUs, gloo on CPUs). Each rank trains on its own shard of every
global batch, and before each optimizer step the gradients of that optimizer's parameters are
averaged over all ranks in one flat all-reduce, which is what DistributedDataParallel does. The
DDP module wrapper itself is not used because GAN steps need what it cannot do: several forward
passes per backward, torch.autograd.grad (BEGAN's simultaneous updates, WGAN-GP's penalty with its
double backward) and frozen nets (StyleGAN2-ADA averages gradients by hand for the same reasons).
BatchNorm running statistics and family state (BEGAN's k_t) are averaged after every step, so all
ranks hold identical weights. Rank 0 alone writes logs, samples and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_from_env(device_type: str = "auto") -> World:
    """Join the process group torchrun describes in the environment; a single process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device_type in ("auto", "cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return World(rank, size, local_rank)


def shutdown() -> None:
    """Leave the process group after an error (no barrier: the other ranks may never come, and
    torchrun stops them)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def leave() -> None:
    """End a torchrun process after a clean finish: every rank meets at a barrier, then the process
    exits at once, without tearing the process group down. Tearing gloo down (destroy_process_group,
    or the interpreter's exit) aborted rank 0 with 'terminate called without an active exception'
    after training had finished and printed its result, in about 1 of 3 two-process runs sharing one
    core (tests/test_distributed.py, 2026-11-24). Every file is written and closed before this."""
    import logging
    import sys
    if dist.is_initialized():
        dist.barrier()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def mean_in_place(tensors: list[torch.Tensor], world: World) -> None:
    """Each tensor replaced by its mean over ranks, all in one flat all-reduce (fp32 on the wire)."""
    if not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= world.size
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.detach().copy_(part.view_as(t))


def average_gradients(params: list[torch.Tensor], world: World) -> None:
    """Average the gradients of `params` over all ranks."""
    mean_in_place([p.grad for p in params if p.grad is not None], world)


def average_tensors(tensors: list[torch.Tensor], world: World) -> None:
    """In-place mean over ranks of floating-point tensors (BatchNorm statistics, k_t)."""
    mean_in_place([t for t in tensors if t.is_floating_point()], world)


def gather_rows(rows, world: World):
    """The rows (a NumPy array) of every rank, concatenated in rank order, on every rank."""
    import numpy as np
    parts: list = [None] * world.size
    dist.all_gather_object(parts, rows)
    return np.concatenate(parts)


def buffers(nets: dict[str, nn.Module]) -> list[torch.Tensor]:
    return [b for net in nets.values() for b in net.buffers()]


def max_over_ranks(value: float, world: World, device: torch.device) -> float:
    """The largest of the ranks' values, on every rank."""
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when it is true on any (a stop signal seen by one process stops all)."""
    return max_over_ranks(1.0 if flag else 0.0, world, device) > 0


def mean_over_ranks(values: dict[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """The per-rank metric sums averaged over ranks, in one all-reduce."""
    keys = sorted(values)
    flat = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    mean_in_place([flat], world)
    return dict(zip(keys, flat))


def weights_digest(nets: dict[str, nn.Module]) -> str:
    """sha256 of every parameter and buffer, in order (ranks compare it to prove they agree)."""
    import hashlib
    h = hashlib.sha256()
    for name, net in sorted(nets.items()):
        for t in (*net.parameters(), *net.buffers()):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def digests_agree(nets: dict[str, nn.Module], world: World) -> bool:
    """True when every rank holds bit-identical weights and buffers."""
    mine = weights_digest(nets)
    every = [None] * world.size
    dist.all_gather_object(every, mine)
    return all(d == mine for d in every)


def broadcast_object(obj, world: World):
    """Rank 0's value of a picklable object on every rank (the run folder's path)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
