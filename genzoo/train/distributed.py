"""Plain torch.distributed, launched by `torchrun`: one process per device, data sharded by rank, gradients
averaged with all_reduce after each phase's backward (what DistributedDataParallel does, without its
restrictions on double backward and on several forward passes per backward, which GAN phases need)."""
from __future__ import annotations

import atexit
import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); gloo on CPU, nccl on CUDA.

    On CUDA each process first selects its own GPU (`torch.cuda.set_device(LOCAL_RANK)`), so NCCL never
    puts two ranks on GPU 0. Collectives time out after $GENZOO_DIST_TIMEOUT seconds (default 600): a rank
    that died without the others noticing ends the run with an error instead of a hang."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get("GENZOO_DIST_TIMEOUT", "600")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
        atexit.register(_shutdown)  # only for the group genzoo made: one made by the caller is the caller's
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def _shutdown(wait_s: float = 60.0) -> None:
    """At interpreter exit: a barrier of every rank, then the process group is destroyed.

    gloo's worker threads drop a finished collective's tensors after the caller has moved on, and dropping a
    tensor Python has seen takes the GIL. Once interpreter finalisation has begun, a thread that asks for the
    GIL is ended, inside a C++ destructor, which aborts the process (SIGABRT, 'terminate called without an
    active exception'): a run that had finished and written everything failed. The barrier waits with the GIL
    released, so those threads finish first. A rank that does not arrive within `wait_s` (it failed, or is
    stuck in a collective) is not waited for, and the group is then left as it is."""
    if not dist.is_initialized():
        return
    try:
        dist.barrier(async_op=True).wait(timeout=timedelta(seconds=wait_s))
    except Exception:  # noqa: BLE001 - exiting anyway; the failure that ended the run has been reported
        return
    dist.destroy_process_group()


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, 0)


def average_gradients(params: list[nn.Parameter], world: int) -> None:
    """g <- (1/world) sum_ranks g, as one flat all_reduce."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def checksum(module: nn.Module) -> str:
    """sha256 over every parameter's and buffer's bytes: equal iff the weights are bitwise identical."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def gather_strings(s: str, world: int) -> list[str]:
    return gather_objects(s, world)


def gather_objects(obj: Any, world: int) -> list[Any]:
    """Every rank's `obj` (picklable: strings, numbers, CPU tensors), in rank order, on every rank."""
    out: list = [None] * world
    dist.all_gather_object(out, obj)
    return out
