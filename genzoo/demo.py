"""`make demo` / `genzoo demo`: train a small model on the bundled mnist-mini set and write the pictures a
newcomer wants first. Runs offline in a few CPU minutes."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from . import data as gd
from .images import save_grid, save_images
from .train import rundir as R
from .train import train

DEMO_MODEL, DEMO_SETTINGS = "ae", {"arch": "mlp", "hidden": (400,), "latent_dim": 20}


def run(out: str | Path = "runs/demo", epochs: int = 10, fresh: bool = True) -> dict[str, Path]:
    out = Path(out)
    if fresh and (out / R.CONFIG).exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    model = train(DEMO_MODEL, "mnist-mini", out=out, settings=dict(DEMO_SETTINGS), epochs=epochs,
                  log_every=20, sample_every=200)
    test = gd.load("mnist-mini", "test")
    x = model.prepare(test.x[:16])
    with torch.no_grad():
        rec = model.reconstruct(x)
        samples = model.sample(64, generator=torch.Generator().manual_seed(0))
        mse = float(((model.reconstruct(model.prepare(test.x)) - model.prepare(test.x)) ** 2).mean())
    pictures = {
        "reconstructions": save_grid(torch.cat([x, rec]), out / "reconstructions.png", nrow=16, scale=2),
        "samples": save_images(samples, out / "samples.png"),
    }
    minutes = (time.perf_counter() - t0) / 60
    print(f"\ngenzoo demo: {DEMO_MODEL} on mnist-mini, {epochs} epochs in {minutes:.1f} CPU minutes")
    print(f"  test reconstruction MSE per pixel: {mse:.4f}")
    print(f"  run directory: {out}")
    for name, p in pictures.items():
        print(f"  {name}: {p}")
    return pictures
