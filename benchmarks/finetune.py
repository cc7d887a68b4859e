"""Unsupervised pretraining, then fine-tuning on 100 labels, against the same classifier from scratch (MNIST).

The autoencoder is pretrained on all 60,000 training images without labels (or taken from --run); then the
classifier code -> linear layer is trained on N balanced labelled images (seeded), once starting from the
pretrained encoder and once from a fresh initialisation of the same architecture, with the same steps,
optimiser and augmentation (random shifts). Both are measured on the 10,000 test images, for several label
draws. Target: below 11.8% test error with 100 labels (Kingma et al. 2014, M1+TSVM: 11.82%).

    OMP_NUM_THREADS=1 GENZOO_DATA=/work/shared/data python benchmarks/finetune.py \
        [--run RUN | --model denoising-ae --preset conv --set latent_dim=64 --pretrain-epochs 10] \
        [--labels 100] [--seeds 0,1,2] [--steps 1500] [--shift 2] [--freeze]

The same from the command line: genzoo finetune RUN --labels 100
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import genzoo
import genzoo.data as gd
from genzoo.applications import finetune
from genzoo.config import parse_sets
from genzoo.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--run", default=None, help="pretrained run directory")
    ap.add_argument("--model", default="denoising-ae")
    ap.add_argument("--preset", default="conv")
    ap.add_argument("--set", action="append", default=[], help="model key=value for pretraining")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--pretrain-out", default=None, help="keep the pretrained run here")
    ap.add_argument("--labels", type=int, default=100)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--shift", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--freeze", action="store_true")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.process_time()
    if args.run:
        ae = genzoo.load(args.run)
        pre = {"run": args.run}
    else:
        settings = {"progress": False, "sample_every": 0, "validate": False, **parse_sets(args.set)}
        ae = train(args.model, args.data, out=Path(args.pretrain_out) if args.pretrain_out else None,
                   settings=settings, preset=args.preset, epochs=args.pretrain_epochs, seed=0)
        pre = {"model": args.model, "preset": args.preset, "settings": parse_sets(args.set),
               "pretrain_epochs": args.pretrain_epochs, "pretrain_cpu_s": round(time.process_time() - t0, 1)}
        print(json.dumps(pre), flush=True)
    tr, te = gd.load(args.data, "train"), gd.load(args.data, "test")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        r = finetune(ae, tr, te, labels=args.labels, seed=seed, steps=args.steps, lr=args.lr, shift=args.shift,
                     freeze=args.freeze, dropout=args.dropout, weight_decay=args.weight_decay)
        rows.append(r)
        print(json.dumps(r), flush=True)

    def summary(key: str) -> str:
        v = [100 * r[key] for r in rows]
        return f"{statistics.mean(v):.2f}% +- {statistics.stdev(v) if len(v) > 1 else 0:.2f}"

    print(f"{args.labels} labels, {len(rows)} draws: pretrained {summary('pretrained_error')}, "
          f"from scratch {summary('scratch_error')}; {(time.process_time() - t0) / 60:.1f} CPU min")
    if args.out:
        from genzoo._io import write_json
        print(f"wrote {write_json(args.out, {**pre, **vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
