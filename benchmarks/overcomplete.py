"""Undercomplete vs overcomplete autoencoders: compression vs a near-identity copy.

Two one-layer autoencoders (x -> ReLU code -> sigmoid output, BCE), identical except for the code size: k=16
(undercomplete: 784 -> 16) and k=1024 (overcomplete: 784 -> 1024). Both train on MNIST digits. Then both
reconstruct (a) unseen test digits, (b) images unlike any they have seen: Fashion-MNIST clothes and uniform
noise. The undercomplete AE's 16 numbers can only describe digit-like images: everything comes out as a blurry
digit-like blob. The overcomplete AE is much closer to a copy: 20x lower error on digits, and clothes keep their
shapes and textures. It is not the identity everywhere, though: it copies only on the support of the training
data (MNIST's border pixels are always 0, so uniform noise is not reproduced by either model).

    OMP_NUM_THREADS=1 GENZOO_DATA=/work/shared/data python benchmarks/overcomplete.py \
        [--data mnist] [--other fashion-mnist] [--epochs 5] [--figure docs/figures/under_vs_overcomplete.png]
"""
from __future__ import annotations

import argparse
import time

import torch

import genzoo.data as gd
from genzoo.applications import reconstruction_errors
from genzoo.images import save_grid
from genzoo.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--other", default="fashion-mnist", help="out-of-domain images (or 'none')")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--sizes", default="16,1024")
    ap.add_argument("--figure", default="docs/figures/under_vs_overcomplete.png")
    args = ap.parse_args()
    torch.set_num_threads(1)
    test = gd.load(args.data, "test").subset(slice(0, 2000))
    g = torch.Generator().manual_seed(0)
    probes = {"test digits": test,
              "uniform noise": gd.Dataset("noise", "test", torch.randint(0, 256, (2000, *test.shape), generator=g,
                                                                          dtype=torch.uint8))}
    if args.other != "none":
        probes["other data"] = gd.load(args.other, "test").subset(slice(0, 2000))
    rows, models = [], {}
    for k in [int(s) for s in args.sizes.split(",")]:
        t0 = time.process_time()
        m = train("ae", args.data, epochs=args.epochs, seed=0,
                  settings={"hidden": (), "latent_dim": k, "latent_activation": "relu", "loss": "bce",
                            "progress": False, "validate": False, "sample_every": 0})
        models[k] = m
        errs = {name: float(reconstruction_errors(m, ds).mean()) for name, ds in probes.items()}
        rows.append((k, errs, time.process_time() - t0))
    names = list(probes)
    print(f"per-pixel reconstruction MSE after {args.epochs} epochs on {args.data}")
    print(f"{'code size':>10}" + "".join(f"{n:>16}" for n in names) + f"{'CPU s':>8}")
    for k, errs, cpu in rows:
        print(f"{k:>10}" + "".join(f"{errs[n]:>16.4f}" for n in names) + f"{cpu:>8.0f}")
    n = 12
    pics = []
    with torch.no_grad():
        for ds in probes.values():
            x = ds.x[:n].float() / 255
            pics.append(x)
            for m in models.values():
                pics.append(m.reconstruct(m.prepare(ds.x[:n])))
    print(f"wrote {save_grid(torch.cat(pics), args.figure, nrow=n, scale=2)}")


if __name__ == "__main__":
    main()
