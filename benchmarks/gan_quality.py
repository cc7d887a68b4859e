"""GAN quality under a CPU budget: MNIST coverage and domain FID for DCGAN and cGAN, cGAN label accuracy, and
the ring8 mode-collapse benchmark (modes covered, share of high-quality samples) for the non-saturating GAN,
WGAN-GP and the minimax GAN. Results go to docs/benchmarks.md (GANs section) with the command that made them.

    OMP_NUM_THREADS=1 python benchmarks/gan_quality.py --cases dcgan-mnist,cgan-mnist --budget 20
    OMP_NUM_THREADS=1 python benchmarks/gan_quality.py --cases dcgan-mnist-2k-ns,dcgan-mnist-2k-minimax
    OMP_NUM_THREADS=1 python benchmarks/gan_quality.py --cases ring8-ns,ring8-wgan-gp,ring8-minimax,ring8-ns-plain
    python benchmarks/gan_quality.py --quick        # every case for a few seconds, to check the script

Budgets are process CPU time (`time.process_time()`, one thread): the MNIST cases train a short calibration
run, then resume it for as many steps as the rest of the budget buys. The toy cases train a fixed number of
steps and report the CPU time they took. Everything is seeded. Targets (issue 5): DCGAN and cGAN cover all 10
MNIST classes (each >= 5% of 10,000 samples); cGAN samples are classified as their requested label >= 95% of
the time; on ring8 WGAN-GP and the non-saturating GAN cover 8/8 modes with >= 80% high-quality samples.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

CASES: dict[str, dict[str, Any]] = {
    "dcgan-mnist": {"model": "dcgan", "data": "mnist", "budget": True, "batch_size": 64, "settings": {}},
    "cgan-mnist": {"model": "cgan", "data": "mnist", "budget": True, "batch_size": 64, "settings": {}},
    # the Fashion-MNIST cGAN the class-conditional DDPM is set against (issue 15)
    "cgan-fashion": {"model": "cgan", "data": "fashion-mnist", "budget": True, "batch_size": 64, "settings": {}},
    # why the non-saturating loss exists: the same DCGAN for 2,000 steps with either generator loss
    "dcgan-mnist-2k-ns": {"model": "dcgan", "data": "mnist", "steps": 2000, "batch_size": 64, "settings": {}},
    "dcgan-mnist-2k-minimax": {"model": "dcgan", "data": "mnist", "steps": 2000, "batch_size": 64,
                               "settings": {"generator_loss": "minimax"}},
    # ring8: 3 x 128 MLPs (preset toy), batch 256. Plain GANs (NS or minimax) collapse onto a few modes here;
    # spectral norm on D plus an EMA of G's weights lets both cover all 8.
    "ring8-ns": {"model": "gan", "data": "ring8", "preset": "toy", "steps": 20_000, "batch_size": 256,
                 "settings": {"spectral_norm": True, "ema": 0.999}},
    "ring8-wgan-gp": {"model": "wgan-gp", "data": "ring8", "preset": "toy", "steps": 40_000, "batch_size": 256,
                      "settings": {"ema": 0.999}},
    "ring8-minimax": {"model": "gan", "data": "ring8", "preset": "toy", "steps": 20_000, "batch_size": 256,
                      "settings": {"generator_loss": "minimax"}},
    "ring8-ns-plain": {"model": "gan", "data": "ring8", "preset": "toy", "steps": 20_000, "batch_size": 256,
                       "settings": {}},
    "ring8-minimax-sn": {"model": "gan", "data": "ring8", "preset": "toy", "steps": 20_000, "batch_size": 256,
                         "settings": {"generator_loss": "minimax", "spectral_norm": True, "ema": 0.999}},
}
COMMON = {"progress": False, "validate": False, "log_every": 100, "sample_every": 1000, "checkpoint_every": 10**9}


def train_case(name: str, case: dict[str, Any], out: Path, budget_min: float, seed: int) -> dict[str, Any]:
    from genzoo.train import train

    settings = {**COMMON, **case["settings"], "seed": seed, "batch_size": case["batch_size"]}
    kw = {"preset": case.get("preset")}
    t0 = time.process_time()
    if case.get("budget"):
        budget = budget_min * 60
        calib = 300 if budget_min >= 1 else 20
        train(case["model"], case["data"], out=out, settings=settings, steps=calib, **kw)
        used = time.process_time() - t0
        per_step = used / calib  # includes loading and set-up: errs on the short side
        steps = calib + max(0, int((budget - used) / per_step))
        if steps > calib:
            train(case["model"], case["data"], out=out, resume=True, steps=steps)
    else:
        steps = case["steps"] if budget_min >= 1 else max(20, int(case["steps"] * budget_min / 20))
        train(case["model"], case["data"], out=out, settings=settings, steps=steps, **kw)
    return {"steps": steps, "cpu_min": round((time.process_time() - t0) / 60, 2)}


def evaluate_case(case: dict[str, Any], out: Path, n: int) -> dict[str, Any]:
    import genzoo
    from genzoo import data as gd
    from genzoo.train.callbacks import ModeMonitor

    model = genzoo.load(out)
    test = gd.load(case["data"], "test")
    res: dict[str, Any] = {}
    if test.meta.get("kind") == "points":
        mon = ModeMonitor(n=2500, seed=0)  # 2,500 samples, as in VEEGAN / PacGAN
        mon.setup(test)
        res.update(mon.measure(model, histogram=True))
        from genzoo.cli.gans import toy_plot
        res["plot"] = str(toy_plot(model, test, out / "points.png"))
        return res
    from genzoo.evaluate import evaluate
    ev = evaluate(out, metrics="fid,modes", n=n, seed=0)["metrics"]
    hist = ev["class_histogram"]
    res.update({"domain_fid": round(ev["fid"], 3), "classes_covered": ev["classes_covered"],
                "min_class_share": round(min(hist), 4), "kl_to_uniform": round(ev["kl_to_uniform"], 4),
                "class_histogram": hist, "n": n})
    if getattr(model.config, "conditional", False):
        mon = ModeMonitor(n=n, seed=1)
        mon.setup(test)
        res["label_accuracy"] = mon.measure(model)["label_acc"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES)}")
    ap.add_argument("--budget", type=float, default=20.0, help="CPU minutes per MNIST case")
    ap.add_argument("--n", type=int, default=10_000, help="samples (and test images) for FID and coverage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-gans"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra model/training setting for every chosen case (repeatable), e.g. ema=0.999")
    ap.add_argument("--quick", action="store_true", help="tiny budgets and mnist-mini: checks the script only")
    args = ap.parse_args()
    from genzoo.config import parse_sets
    extra = parse_sets(args.set)
    torch.set_num_threads(1)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    budget, n = (0.2, 1000) if args.quick else (args.budget, args.n)
    results = {}
    for name in names:
        case = dict(CASES[name])
        case["settings"] = {**case["settings"], **extra}
        if args.quick and case["data"] == "mnist":
            case["data"] = "mnist-mini"
        out = args.out / name
        shutil.rmtree(out, ignore_errors=True)
        info = train_case(name, case, out, budget, args.seed)
        info.update(evaluate_case(case, out, n))
        results[name] = {"model": case["model"], "data": case["data"], "settings": case["settings"], **info}
        print(json.dumps({name: results[name]}), flush=True)
    from genzoo._io import write_json
    print(f"wrote {write_json(args.out / 'results.json', results)}")


if __name__ == "__main__":
    main()
