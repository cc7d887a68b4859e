"""One-class anomaly detection with an autoencoder, over the 10 one-class tasks of MNIST and Fashion-MNIST.

For each class c: train the model on the training images of class c only, score every test image by its
reconstruction error (per-pixel MSE), and report AUROC and average precision with the other 9 classes as
anomalies. Target (MNIST, conv AE): mean AUROC >= 0.95 (Deep SVDD, Ruff et al. 2018, reports 0.948).

    OMP_NUM_THREADS=1 GENZOO_DATA=/work/shared/data python benchmarks/anomaly.py \
        [--data mnist,fashion-mnist] [--preset conv] [--set latent_dim=16 ...] [--epochs 20] [--out FILE.json]

The same table from the command line: genzoo anomaly --data mnist --all-classes --preset conv --epochs 20
CPU seconds are process time, single-threaded.
"""
from __future__ import annotations

import argparse

import torch

from genzoo.applications import anomaly_table
from genzoo.config import parse_sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist,fashion-mnist")
    ap.add_argument("--model", default="ae")
    ap.add_argument("--preset", default="conv")
    ap.add_argument("--set", action="append", default=[], help="model/training key=value")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write all results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    settings = parse_sets(args.set)
    results = []
    for data in args.data.split(","):
        print(f"{data}: {args.model} --preset {args.preset} {settings} {args.epochs} epochs", flush=True)
        res = anomaly_table(data, classes=[int(c) for c in args.classes.split(",")], model=args.model,
                            preset=args.preset, settings=settings, epochs=args.epochs, seed=args.seed,
                            on_row=lambda r: print(f"  class {r['class']}: AUROC {r['auroc']:.4f}  AP {r['ap']:.4f}"
                                                   f"  ({r['cpu_s']:.0f} CPU s)", flush=True))
        print(f"  mean AUROC {res['mean_auroc']:.4f}  mean AP {res['mean_ap']:.4f}  "
              f"({res['cpu_s'] / 60:.1f} CPU min)", flush=True)
        results.append({**res, "model": args.model, "preset": args.preset, "settings": settings,
                        "epochs": args.epochs, "seed": args.seed})
    if args.out:
        from genzoo._io import write_json
        print(f"wrote {write_json(args.out, results)}")


if __name__ == "__main__":
    main()
