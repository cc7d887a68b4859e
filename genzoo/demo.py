"""`make demo` / `genzoo demo`: train a VAE with a 2-D latent on the bundled mnist-mini set and write the
pictures a newcomer wants first — reconstructions, prior samples, the latent map, a manifold grid and an
interpolation strip. Runs offline in a few CPU minutes; ends with the command that opens the web page."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from . import data as gd
from . import latent
from .images import save_grid
from .train import rundir as R
from .train import train

DEMO_MODEL, DEMO_PRESET = "vae", "latent2"  # 784-512-256-2, Bernoulli decoder: the latent map is the latent


def run(out: str | Path = "runs/demo", epochs: int = 10, fresh: bool = True) -> dict[str, Path]:
    out = Path(out)
    if fresh and (out / R.CONFIG).exists():
        shutil.rmtree(out)
    cpu0 = time.process_time()
    model = train(DEMO_MODEL, "mnist-mini", out=out, preset=DEMO_PRESET, epochs=epochs, log_every=20,
                  sample_every=200)
    test = gd.load("mnist-mini", "test")
    x = model.prepare(test.x[:16])
    with torch.no_grad():
        rec = model.reconstruct(x)
    codes, labels = latent.encode_dataset(model, test)
    i, j = _pair(labels, 3, 8)
    strip, _ = latent.interpolate(model, test.x[i], test.x[j], steps=12, mode="lerp")
    grid, _ = latent.manifold_grid(model, n=15, span=2.0)
    proj = latent.project(codes, "latent")
    pictures = {
        "reconstructions (test images over their reconstructions)":
            save_grid(torch.cat([x, rec]), out / "reconstructions.png", nrow=16, scale=2),
        "prior samples": save_grid(latent.sample_prior(model, 64, seed=0), out / "samples.png", nrow=8, scale=2),
        "latent map (test codes coloured by digit)": latent.save_latent_map(
            out / "latent_map.png", proj.xy, labels, test.classes, "VAE latent space: 2,000 mnist-mini test digits"),
        "manifold grid ([-2, 2]^2 decoded)": save_grid(grid, out / "manifold_grid.png", nrow=15, scale=2),
        f"interpolation (test image {i} -> {j})": save_grid(strip, out / "interpolation.png", nrow=12, scale=2),
    }
    row = [r for r in R.read_metrics(out) if r.get("val/neg_elbo")][-1:]
    minutes = (time.process_time() - cpu0) / 60
    print(f"\ngenzoo demo: a VAE with a 2-D latent on mnist-mini, {epochs} epochs, {minutes:.1f} CPU minutes")
    if row:
        print(f"  test negative ELBO: {float(row[0]['val/neg_elbo']):.1f} nats per image "
              f"(recon {float(row[0]['val/recon']):.1f} + KL {float(row[0]['val/kl']):.1f})")
    print(f"  run directory: {out}")
    for name, p in pictures.items():
        print(f"  {name}: {p}")
    print(f"\nOpen the web page to explore it:\n  genzoo explore {out}")
    return {name.split(" (")[0]: p for name, p in pictures.items()}


def _pair(labels: torch.Tensor, a: int, b: int) -> tuple[int, int]:
    """The first test images of classes a and b (for a readable interpolation strip)."""
    return int((labels == a).nonzero()[0]), int((labels == b).nonzero()[0])
