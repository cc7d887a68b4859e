"""Decode and sample latency, fp32 vs bf16 autocast (issue 16: "bf16 decode where it helps; the explorer's decode
stays < 100 ms"), for the models the explorer and `genzoo sample` serve.

Each case builds the model at its preset (latency does not depend on the weights' values), then times the same
call under fp32 and under `--precision bf16` (genzoo.train.engine.with_precision), alternating the two within each
round, and prints the median over rounds of the per-call milliseconds and the ratio fp32 / bf16 (> 1: bf16 faster).
Batch 1 is the explorer's hover decode; 64 and 400 are its grids and `genzoo sample -n 64`.

    OMP_NUM_THREADS=1 python benchmarks/decode_precision.py --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from genzoo import data as gdata
from genzoo.train import build_model
from genzoo.train.engine import with_precision

CASES = [("ae", "mlp-784-400-20"), ("vae", "mlp-784-400-20"), ("ae", "conv"), ("vae", "conv"), ("dcgan", None)]


def timed(fn, reps: int) -> float:
    fn()  # warm-up (autocast caches, allocator)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1000


def call(model, batch: int):
    if model.can("decode"):
        z = torch.randn(batch, model.config.latent_dim)
        return lambda: model.decode(z)
    g = torch.Generator().manual_seed(0)
    return lambda: model.sample(batch, generator=g)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", default="1,64,400")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = gdata.load("mnist-mini", "train")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.rounds} alternating rounds")
    print(f"{'model':<24} {'batch':>5} {'fp32 ms':>9} {'bf16 ms':>9} {'fp32/bf16':>9}")
    for name, preset in CASES:
        torch.manual_seed(0)
        fp32 = build_model(name, ds, preset=preset).eval()
        bf16 = with_precision(build_model(name, ds, preset=preset).eval(), "bf16")
        for batch in (int(b) for b in args.batches.split(",")):
            reps = max(3, 200 // batch)
            t32, t16 = [], []
            with torch.no_grad():
                f32, f16 = call(fp32, batch), call(bf16, batch)
                for _ in range(args.rounds):
                    t32.append(timed(f32, reps))
                    t16.append(timed(f16, reps))
            a, b = statistics.median(t32), statistics.median(t16)
            print(f"{name + ' ' + (preset or ''):<24} {batch:>5} {a:>9.2f} {b:>9.2f} {a / b:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
