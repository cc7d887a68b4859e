"""Is the VAE's latent space more continuous than the plain AE's? The same MLP, trained both ways, measured
with `genzoo.latent.smoothness` along interpolation paths between random test pairs of different digits.

    python benchmarks/smoothness.py [--data mnist] [--epochs 10] [--latent-dims 2,20] [--pairs 300] [--steps 10]

For each latent size, trains `ae` and `vae` (784-400-L, ReLU, Bernoulli/BCE decoder, same seed and steps) and
prints, for lerp paths: the share of interior images the shipped MNIST classifier recognises with p >= 0.9,
the mean step-to-step pixel change, the largest step's share of the path, the path length ratio, plus the
share of recognised samples when decoding z ~ N(mean, cov) of the training codes (both models) and z ~ N(0, I)
(the VAE's prior). Single-threaded; CPU time is process time.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist", help="mnist (needs $GENZOO_DATA) or mnist-mini")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--latent-dims", default="2,20")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("GENZOO_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

    from genzoo import data as gd
    from genzoo import latent
    from genzoo.evaluate.classifier import get_classifier
    from genzoo.train import train

    clf = get_classifier(args.data)
    train_ds, test = gd.load(args.data, "train"), gd.load(args.data, "test")

    def recognised(x01: torch.Tensor) -> float:
        with torch.no_grad():
            return float((clf.probs(x01).max(1).values >= 0.9).float().mean())

    rows = []
    for L in (int(s) for s in args.latent_dims.split(",")):
        for name in ("ae", "vae"):
            t0 = time.process_time()
            model = train(name, train_ds, settings={"hidden": (400,), "latent_dim": L, "progress": False,
                                                    "validate": False, "sample_every": 0, "seed": args.seed},
                          epochs=args.epochs)
            model.requires_grad_(False)
            cpu = time.process_time() - t0
            r = latent.smoothness(model, test, args.pairs, args.steps, "lerp", clf, 0.9, seed=args.seed)
            row = {"model": name, "latent_dim": L, "train_cpu_min": round(cpu / 60, 1),
                   **{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()},
                   "code_gaussian_recognised": round(recognised(
                       latent.sample_code_gaussian(model, train_ds, args.samples, max_codes=10_000)), 4)}
            if name == "vae":
                row["prior_recognised"] = round(recognised(latent.sample_prior(model, args.samples)), 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    keys = ["model", "latent_dim", "confident_fraction", "endpoint_confident_fraction", "mean_step_change",
            "max_step_share", "path_ratio", "code_gaussian_recognised", "prior_recognised", "train_cpu_min"]
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "-")) for k in keys) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
