"""Test NLL of a one-stochastic-layer VAE on dynamically binarised MNIST (Burda et al. 2015 protocol).

Trains a `vae` with binarize=dynamic (a fresh Bernoulli draw of every training pixel each time it is seen),
then reports on the MNIST test set, binarised once with a fixed seed: the ELBO and the importance-weighted
estimate -log p_k(x) with k samples, in nats per image. Single-threaded; CPU time is process time.

    python benchmarks/likelihood.py --epochs 110 --out runs/bench/nll            # train, then evaluate
    python benchmarks/likelihood.py --run runs/bench/nll --k 1000                 # evaluate an existing run
    python benchmarks/likelihood.py --run RUN --k 1000 --n 1000                   # quicker: first 1000 test images

Target (docs/benchmarks.md): NLL <= 89.8 nats (pythae reproduces 89.78; Burda et al. report 86.76 for the
784-200-200-50 VAE after 3,280 epochs).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

TARGET = 89.8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="evaluate this run directory instead of training")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/nll"), help="run directory to train into")
    ap.add_argument("--epochs", type=int, default=110)
    ap.add_argument("--hidden", default="500,500")
    ap.add_argument("--latent-dim", type=int, default=50)
    ap.add_argument("--activation", default="relu")
    ap.add_argument("--lr-step-epochs", type=int, default=50, help="multiply the LR by 0.6 every this many epochs")
    ap.add_argument("--k", type=int, default=1000, help="importance samples for the NLL")
    ap.add_argument("--n", type=int, default=None, help="evaluate the first n test images (default: all 10,000)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("GENZOO_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))

    import genzoo
    from genzoo import data as gd
    from genzoo.evaluate.likelihood import elbo_terms, iwae_nll, likelihood_settings
    from genzoo.train import train

    result: dict = {}
    if args.run is None:
        hidden = tuple(int(h) for h in args.hidden.split(","))
        steps_per_epoch = 60_000 // 100
        settings = {"hidden": hidden, "latent_dim": args.latent_dim, "activation": args.activation,
                    "binarize": "dynamic", "lr_schedule": "step", "lr_gamma": 0.6,
                    "lr_step_size": args.lr_step_epochs * steps_per_epoch, "validate": False, "progress": False,
                    "log_every": steps_per_epoch, "sample_every": 50 * steps_per_epoch,
                    "checkpoint_every": 10 * steps_per_epoch, "num_threads": args.threads}
        t0 = time.process_time()
        model = train("vae", "mnist", out=args.out, settings=settings, epochs=args.epochs, batch_size=100)
        result["train_cpu_minutes"] = round((time.process_time() - t0) / 60, 1)
        run = args.out
    else:
        run = args.run
        model = genzoo.load(run)
    info = json.loads((run / "run.json").read_text())
    result.update(run=str(run), step=info.get("step"), epochs=round(info["step"] / info["steps_per_epoch"], 1),
                  config={k: v for k, v in json.loads((run / "config.json").read_text()).items()
                          if k in ("hidden", "latent_dim", "activation", "decoder")})
    settings = likelihood_settings(run)
    if settings["binarize"] == "none":
        print("warning: this run was trained on grey levels (binarize=none); evaluating it on binarised data")
        settings["binarize"] = "dynamic"
    test = gd.load("mnist", "test")
    model.requires_grad_(False)
    t0 = time.process_time()
    result.update({f"test_{k}": v for k, v in elbo_terms(model, test, n=args.n, **settings).items()})
    nll = iwae_nll(model, test, k=args.k, n=args.n, **settings)
    result.update(k=args.k, test_nll=round(nll, 2), eval_cpu_minutes=round((time.process_time() - t0) / 60, 1),
                  target_nll=TARGET, reached=nll <= TARGET)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
