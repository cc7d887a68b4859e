"""Which registered models' training steps call a synchronising tensor method (issue 16).

Trains each model's `tiny` preset 4 steps on its bundled dataset with `.item()`, `bool()`, `int()`, `float()`,
`__index__`, `.tolist()`, `.cpu()` and `.numpy()` made to raise inside `Trainer._train_step` (on a GPU each of
them waits for the device), and prints "sync-free NAME" or "SYNC NAME: method, where".

    python benchmarks/sync_probe.py [NAME ...]
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

import torch

import genzoo
from genzoo import registry
from genzoo.config import TrainConfig
from genzoo.train import build_model
from genzoo.train.engine import Trainer

SYNCING = ("item", "__bool__", "__int__", "__float__", "__index__", "tolist", "cpu", "numpy")


def data_for(entry) -> str:
    if getattr(entry.model_class, "example_data", None):
        return entry.model_class.example_data
    kind = getattr(entry.model_class, "data_kind", "images")
    return "mnist-mini" if kind == "images" else next(n for n in genzoo.data.names_of_kind(kind) if "mini" in n)


def main() -> None:
    torch.set_num_threads(1)
    inside = {"on": False}
    real = {m: getattr(torch.Tensor, m) for m in SYNCING}

    def guard(method):
        def wrapper(self, *a, **k):
            if inside["on"]:
                inside["on"] = False
                raise AssertionError(f"Tensor.{method}")
            return real[method](self, *a, **k)
        return wrapper

    for m in SYNCING:
        setattr(torch.Tensor, m, guard(m))
    step = Trainer._train_step

    def guarded(self, batches):
        inside["on"] = True
        try:
            return step(self, batches)
        finally:
            inside["on"] = False

    Trainer._train_step = guarded
    root = str(Path(genzoo.__file__).parent)
    for name in sys.argv[1:] or registry.names():
        entry = registry.get(name)
        ds = genzoo.data.load(data_for(entry))
        torch.manual_seed(0)
        tc = TrainConfig(steps=4, batch_size=8, log_every=2, sample_every=0, validate=False, progress=False)
        try:
            Trainer(build_model(name, ds, preset="tiny"), ds, tc, None).fit()
            print(f"sync-free {name}", flush=True)
        except AssertionError as e:
            tb = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(root)
                  and not f.filename.endswith("engine.py")]
            where = "; ".join(f"{f.filename[len(root) + 1:]}:{f.lineno} {f.line}" for f in tb[-2:])
            print(f"SYNC {name}: {e}, {where}", flush=True)


if __name__ == "__main__":
    main()
