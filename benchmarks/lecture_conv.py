"""The lecture's convolutional autoencoder, built literally (`--preset lecture-conv`: ReLU bottleneck), against
the working variant (`--preset lecture-conv-linear`: the same network with a linear bottleneck), on MNIST.

Part 1 (dead units): for each seed, train each variant for --dead-steps Adam steps and count the bottleneck
units that are zero for every image of the test split. Part 2 (quality): train each variant for --epochs
epochs (seed 0) and report the test MSE per pixel (reconstructions clamped to [0, 1]) against the mean-image
baseline (0.0675 on MNIST), in eval mode (batch norm uses its moving statistics, as Keras' predict does) and with
batch statistics. With --run DIR it only measures a run trained by the CLI (e.g. 50 epochs:
`genzoo train ae --data mnist --preset lecture-conv-linear --epochs 50 --out DIR`).

    OMP_NUM_THREADS=1 GENZOO_DATA=/work/shared/data python benchmarks/lecture_conv.py \
        [--seeds 0,1,2,3] [--dead-steps 100 (0: skip)] [--epochs 2] [--variants lecture-conv,lecture-conv-linear]
        [--run DIR]

Prints one JSON line per run and a summary table; CPU seconds are process time.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from genzoo import load
from genzoo.train import train as train_model
import genzoo.data as gd
from genzoo.applications import encode_dataset, mean_image_mse, reconstruction_errors

VARIANTS = ("lecture-conv", "lecture-conv-linear")


def run(preset: str, seed: int, train: gd.Dataset, test: gd.Dataset, steps: int | None = None,
        epochs: int | None = None) -> dict:
    t0 = time.process_time()
    kw = {"steps": steps, "epochs": None} if steps else {"epochs": epochs}
    m = train_model("ae", train, preset=preset, seed=seed, batch_size=128,
                     settings={"progress": False, "validate": False, "sample_every": 0, "log_every": 10}, **kw)
    return {"preset": preset, "seed": seed, "steps": steps, "epochs": epochs, **measure(m, test),
            "cpu_s": round(time.process_time() - t0, 1)}


def measure(m, test: gd.Dataset) -> dict:
    """Dead code units on the test split, test MSE per pixel in eval mode and with batch statistics."""
    codes = encode_dataset(m, test)
    dead = int((codes.abs().amax(0) == 0).sum())
    mse = float(reconstruction_errors(m, test).double().mean())  # eval mode: BN moving statistics
    m.train()  # batch statistics instead (this also moves the moving statistics: the model is discarded)
    with torch.no_grad():
        sq = [(m.reconstruct(m.prepare(x)).clamp(0, 1) - m.prepare(x)).double().pow(2).sum() for x, _ in
              test.batches(500)]
    mse_batch = float(sum(sq)) / test.x.numel()
    return {"dead_units_test": dead, "test_mse": round(mse, 5), "test_mse_batch_stats": round(mse_batch, 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--dead-steps", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--run", help="only measure this trained run directory")
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, test = gd.load("mnist", "train"), gd.load("mnist", "test")
    base = mean_image_mse(train, test)
    print(json.dumps({"mean_image_mse": round(base, 5)}), flush=True)
    if args.run:
        r = measure(load(args.run), test)
        print(json.dumps({"run": args.run, **r, "test_mse_vs_mean_image": round(r["test_mse"] / base, 3)}))
        return
    rows = []
    variants = args.variants.split(",")
    for seed in [int(s) for s in args.seeds.split(",")] if args.dead_steps else []:
        for preset in variants:
            rows.append(run(preset, seed, train, test, steps=args.dead_steps))
            print(json.dumps(rows[-1]), flush=True)
    for preset in variants:
        if args.epochs:
            rows.append(run(preset, 0, train, test, epochs=args.epochs))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nmean-image baseline: test MSE {base:.4f} per pixel")
    print(f"{'preset':<22}{'seed':>5}{'budget':>12}{'dead/49':>9}{'test MSE':>10}{'vs mean':>9}{'batch-stat MSE':>16}"
          f"{'CPU s':>8}")
    for r in rows:
        budget = f"{r['steps']} steps" if r["steps"] else f"{r['epochs']} epochs"
        print(f"{r['preset']:<22}{r['seed']:>5}{budget:>12}{r['dead_units_test']:>9}{r['test_mse']:>10.4f}"
              f"{r['test_mse'] / base:>9.2f}{r['test_mse_batch_stats']:>16.4f}{r['cpu_s']:>8.0f}")


if __name__ == "__main__":
    main()
