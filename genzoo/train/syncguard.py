"""A training step must not wait for the device (issue 16): `forbid_host_syncs()` makes the tensor methods that
synchronise with a GPU raise while `Trainer._train_step` runs, on any device, so a CPU test or probe can show
that a model's step is sync-free (on CUDA, `torch.cuda.set_sync_debug_mode("error")` checks the device itself).

    with forbid_host_syncs():
        trainer.fit()          # HostSync("Tensor.item called inside a training step") if a step syncs
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .engine import Trainer

__all__ = ["SYNCING", "HostSync", "forbid_host_syncs"]

# .item(), bool(), int(), float(), operator.index(), .tolist(), .cpu(), .numpy(): each waits for the device
SYNCING = ("item", "__bool__", "__int__", "__float__", "__index__", "tolist", "cpu", "numpy")


class HostSync(AssertionError):
    """A synchronising tensor method was called inside a training step."""


@contextlib.contextmanager
def forbid_host_syncs() -> Iterator[None]:
    inside = {"on": False}
    real = {m: getattr(torch.Tensor, m) for m in SYNCING}
    step = Trainer._train_step

    def guard(method):
        def wrapper(self, *a, **k):
            if inside["on"]:
                inside["on"] = False  # the error's own formatting may call these
                raise HostSync(f"Tensor.{method} called inside a training step")
            return real[method](self, *a, **k)
        return wrapper

    def guarded(self, batches):
        inside["on"] = True
        try:
            return step(self, batches)
        finally:
            inside["on"] = False

    try:
        for m in SYNCING:
            setattr(torch.Tensor, m, guard(m))
        Trainer._train_step = guarded
        yield
    finally:
        for m, fn in real.items():
            setattr(torch.Tensor, m, fn)
        Trainer._train_step = step
