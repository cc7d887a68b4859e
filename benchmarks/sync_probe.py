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
from genzoo.train.syncguard import HostSync, forbid_host_syncs


def data_for(entry) -> str:
    if getattr(entry.model_class, "example_data", None):
        return entry.model_class.example_data
    kind = getattr(entry.model_class, "data_kind", "images")
    return "mnist-mini" if kind == "images" else next(n for n in genzoo.data.names_of_kind(kind) if "mini" in n)


def main() -> None:
    torch.set_num_threads(1)
    root = str(Path(genzoo.__file__).parent)
    for name in sys.argv[1:] or registry.names():
        entry = registry.get(name)
        ds = genzoo.data.load(data_for(entry))
        torch.manual_seed(0)
        tc = TrainConfig(steps=4, batch_size=8, log_every=2, sample_every=0, validate=False, progress=False)
        try:
            with forbid_host_syncs():
                Trainer(build_model(name, ds, preset="tiny"), ds, tc, None).fit()
            print(f"sync-free {name}", flush=True)
        except HostSync as e:
            tb = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(root)
                  and not f.filename.endswith(("engine.py", "syncguard.py"))]
            where = "; ".join(f"{f.filename[len(root) + 1:]}:{f.lineno} {f.line}" for f in tb[-2:])
            print(f"SYNC {name}: {e}, {where}", flush=True)


if __name__ == "__main__":
    main()
