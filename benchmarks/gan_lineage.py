"""The GAN lineage after DCGAN on MNIST under a CPU budget (SAGAN, BigGAN, ProGAN), and BigGAN's truncation sweep.

    OMP_NUM_THREADS=1 python benchmarks/gan_lineage.py --cases sagan-mnist,biggan-mnist,progan-mnist --budget 20
    OMP_NUM_THREADS=1 python benchmarks/gan_lineage.py --cases dcgan-sn-fashion,biggan-fashion --budget 20
    OMP_NUM_THREADS=1 python benchmarks/gan_lineage.py --sweep runs/bench-lineage/biggan-mnist
    OMP_NUM_THREADS=1 python benchmarks/gan_lineage.py --cases sagan-fashion --set ema=0.999   # a recipe variant
    python benchmarks/gan_lineage.py --quick      # every case and the sweep for a few seconds (checks the script)

Training runs in chunks of 250 steps, each a --resume of the run, until the CPU budget is spent (progan's step
cost grows with its resolution, so a one-off calibration would overshoot); evaluation is
benchmarks/gan_quality.py's `evaluate_case` (10,000 samples vs the 10,000 test images with
the shipped classifier: domain FID, classes >= 5%, smallest class, KL to uniform, and label accuracy for
conditional models). The sweep samples a trained biggan at truncation T in 0.25, 0.5, 1.0, 1.5, 2.0 (z entries
with |z| > T redrawn) and reports precision/recall (k = 3), density/coverage (k = 5), classes covered, domain FID
and label accuracy, as a markdown table (sweep.md), JSON and a figure (sweep.png, plus a sample grid per T).
Cases: sagan, biggan, progan and the spectral-norm DCGAN they are compared with (dcgan-sn), each on MNIST (-mnist)
and Fashion-MNIST (-fashion, the same recipes, the shipped Fashion-MNIST classifier). progan's images per growth
phase come from the budget (`progan_phase_images`: the official schedule's 30/70 split of the training images
between growing and the full resolution). Targets (issue 14): each model covers 10/10 classes (>= 5% each) with a lower
domain FID than the spectral-norm DCGAN at 20 CPU minutes (MNIST 59.5-60.5); biggan label accuracy >= 98% at
T = 1; precision rises and recall/coverage fall as T shrinks.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gan_quality import COMMON, evaluate_case  # noqa: E402

CASES: dict[str, dict[str, Any]] = {
    "sagan-mnist": {"model": "sagan", "data": "mnist", "preset": "mnist", "budget": True, "batch_size": 64,
                    "settings": {}},
    "biggan-mnist": {"model": "biggan", "data": "mnist", "preset": "mnist", "budget": True, "batch_size": 64,
                     "settings": {}},
    "progan-mnist": {"model": "progan", "data": "mnist", "preset": "mnist", "budget": True, "batch_size": 64,
                     "settings": {"gif": True, "sample_every": 250}},
    # the reference the targets compare with: benchmarks/gan_quality.py's dcgan-mnist with --set spectral_norm=true
    # (registry defaults, no preset, batch 64: MNIST 59.5-60.5 at 20 CPU minutes), here under this script's protocol
    "dcgan-sn-mnist": {"model": "dcgan", "data": "mnist", "preset": None, "budget": True, "batch_size": 64,
                       "settings": {"spectral_norm": True}},
}
# Fashion-MNIST: the same recipes (the `mnist` presets are for 28x28 greyscale data), evaluated with the shipped
# Fashion-MNIST classifier
for _name in ("sagan", "biggan", "progan", "dcgan-sn"):
    CASES[f"{_name}-fashion"] = {**CASES[f"{_name}-mnist"], "data": "fashion-mnist"}

# ProGAN's growth schedule from the budget. The official implementation (Karras et al. 2018,
# tkarras/progressive_growing_of_gans, config preset v2: 600k images per fade-in and per stable phase,
# train.total_kimg = 12,000) grows a 32x32 model (4 -> 32, three fade-ins) until 600k + 2 x 1,200k + 600k = 3,600k
# images, 30% of its training images, and trains the full resolution stable on the other 70%. At 28x28
# (7 -> 14 -> 28) the growth is five phases of P images (7x7 stable, 14x14 fade and stable, 28x28 fade); keeping
# the 30/70 split of the images the budget buys, 28x28 trains stable on F = (70 / 30) * 5P images, and
#     budget = P (c7 + 2 c14 + c28) + F c28,
# c_r the CPU seconds per real image at resolution r, from the 7-minute MNIST run at batch 64, one thread
# (docs/benchmarks.md): ~0.10 s per step at 7x7 and ~0.60 at 28x28 (the gradient penalty's double backward)
# measured, ~0.28 at 14x14 the rest of its 7.01 CPU minutes. 20 CPU minutes -> P ~ 9,300, rounded down to a
# multiple of 1,000 (the run prints its cost per step per chunk, to check these).
PROGAN_STEP_BATCH = 64  # real images per step of the run PROGAN_STEP_S was measured on
PROGAN_STEP_S = {7: 0.10, 14: 0.28, 28: 0.60}  # CPU seconds per step of PROGAN_STEP_BATCH real images
PROGAN_FINAL_SHARE = 0.70


def progan_phase_images(budget_min: float) -> int:
    """Images per progan fade-in and stable phase for a `budget_min` CPU-minute run (see the comment above; the
    cost per image is taken as that of the measured batch at any batch size)."""
    c = {r: t / PROGAN_STEP_BATCH for r, t in PROGAN_STEP_S.items()}
    final_per_p = PROGAN_FINAL_SHARE / (1 - PROGAN_FINAL_SHARE) * 5
    p = budget_min * 60 / (c[7] + 2 * c[14] + c[28] + final_per_p * c[28])
    return max(1000, int(p // 1000) * 1000)


TRUNCATIONS = (0.25, 0.5, 1.0, 1.5, 2.0)


def train_budget(case: dict[str, Any], out: Path, budget_min: float, seed: int, chunk: int = 250) -> dict[str, Any]:
    """Train in chunks of `chunk` steps (each a --resume of the run) until `budget_min` CPU minutes
    (`time.process_time()`) are spent: a step's cost changes as progan grows, so the next chunk's length comes from
    the last chunk's cost per step and the budget left."""
    from genzoo.train import train

    settings = {**COMMON, **case["settings"], "seed": seed, "batch_size": case["batch_size"]}
    budget = budget_min * 60
    t0 = time.process_time()
    steps = min(chunk, 50) if budget_min < 1 else chunk
    train(case["model"], case["data"], out=out, settings=settings, steps=steps, preset=case.get("preset"))
    last_steps, last_cost = steps, time.process_time() - t0
    while True:
        left = budget - (time.process_time() - t0)
        n = min(chunk, int(left / (last_cost / last_steps)))
        if n < 10:
            break
        t1 = time.process_time()
        train(case["model"], case["data"], out=out, resume=True, steps=steps + n)
        steps, last_steps, last_cost = steps + n, n, time.process_time() - t1
        print(f"  step {steps}: {last_cost / last_steps:.3f} CPU s per step, "
              f"{(time.process_time() - t0) / 60:.2f} CPU min", flush=True)
    return {"steps": steps, "cpu_min": round((time.process_time() - t0) / 60, 2)}


@torch.no_grad()
def sweep(run: Path, n: int, truncations=TRUNCATIONS, seed: int = 0) -> list[dict[str, Any]]:
    """Fidelity vs variety of a conditional GAN run at each truncation T (balanced labels 0..K-1)."""
    import genzoo
    from genzoo import data as gd
    from genzoo._io import read_json
    from genzoo.evaluate import metrics as M
    from genzoo.evaluate.suite import default_extractor, draw_samples

    model = genzoo.load(run)
    data = read_json(run / "run.json")["data"]
    test = gd.load(data, "test")
    test = test.subset(slice(0, min(n, len(test))))
    ext = default_extractor(data)
    real = M.extract(ext, test.x.float() / 255)
    k = model.config.num_classes
    rows = []
    for t in truncations:
        fake01 = draw_samples(model, len(test), seed=seed, truncation=t)
        ff = M.extract(ext, fake01)
        probs = M.extract(ext, fake01, what="probs")
        cov = M.mode_coverage(probs)
        p, r = M.precision_recall(real, ff, 3)
        d, c = M.density_coverage(real, ff, 5)
        labels = torch.arange(len(fake01)) % k
        hit = (probs.argmax(1) == labels).double()
        rows.append({"truncation": t, "precision": round(p, 4), "recall": round(r, 4), "density": round(d, 4),
                     "coverage": round(c, 4), "classes_covered": cov["classes_covered"],
                     "min_class_share": round(min(cov["class_histogram"]), 4), "domain_fid": round(M.fid(real, ff), 3),
                     "label_accuracy": round(float(hit.mean()), 4),
                     "label_accuracy_per_class": [round(float(hit[labels == j].mean()), 4) for j in range(k)]})
        print(json.dumps(rows[-1]), flush=True)
        from genzoo.images import save_grid
        pick = torch.cat([fake01[labels == j][:8] for j in range(k)])
        save_grid(pick, run / f"truncation_{t}.png", 8, scale=2)
    return rows


def sweep_outputs(rows: list[dict[str, Any]], out: Path) -> None:
    from matplotlib.figure import Figure

    from genzoo._io import atomic_path, read_json, write_bytes, write_json
    keys = ["truncation", "precision", "recall", "density", "coverage", "classes_covered", "min_class_share",
            "domain_fid", "label_accuracy"]
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    write_bytes(out / "sweep.md", ("\n".join(lines) + "\n").encode())
    write_json(out / "sweep.json", rows)
    fig = Figure(figsize=(9, 3.4))
    a, b = fig.subplots(1, 2)
    t = [r["truncation"] for r in rows]
    for key in ("precision", "recall", "coverage", "label_accuracy"):
        a.plot(t, [r[key] for r in rows], "o-", label=key.replace("_", " "))
    a.set_xlabel("truncation T (|z| <= T)")
    a.set_ylim(0, 1.02)
    a.legend(fontsize=8)
    a.set_title("fidelity vs variety")
    b.plot(t, [r["domain_fid"] for r in rows], "o-", color="k")
    b.set_xlabel("truncation T")
    data = read_json(out / "run.json")["data"]
    b.set_ylabel(f"domain FID (genzoo's {data} classifier)")
    b.set_title("domain FID")
    fig.tight_layout()
    with atomic_path(out / "sweep.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    print(f"wrote {out / 'sweep.md'}, {out / 'sweep.json'}, {out / 'sweep.png'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="", help=f"comma-separated, from: {', '.join(CASES)}")
    ap.add_argument("--budget", type=float, default=20.0, help="CPU minutes per case")
    ap.add_argument("--n", type=int, default=10_000, help="samples (and test images) for FID and coverage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-lineage"))
    ap.add_argument("--sweep", type=Path, default=None, help="run directory of a biggan: the truncation sweep")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config field for every case (a recipe variant), e.g. --set ema=0.999")
    ap.add_argument("--batch-size", type=int, default=None, help="instead of the case's 64 (progan's images per "
                    "phase stay those of the budget)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets and mnist-mini: checks the script only")
    args = ap.parse_args()
    from genzoo.config import parse_sets

    overrides = parse_sets(args.set)
    torch.set_num_threads(1)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.quick and not names:
        names = list(CASES)
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    budget, n = (0.1, 500) if args.quick else (args.budget, args.n)
    results = {}
    for name in names:
        case = dict(CASES[name])
        case["settings"] = {**case["settings"], **overrides}
        if args.batch_size:
            case["batch_size"] = args.batch_size
        if args.quick:
            case["data"], case["preset"] = "mnist-mini" if case["data"] == "mnist" else case["data"], "tiny"
        elif case["model"] == "progan" and "phase_images" not in case["settings"]:
            case["settings"] = {**case["settings"], "phase_images": progan_phase_images(budget)}
            print(f"{name}: {case['settings']['phase_images']} images per progan phase for {budget} CPU minutes",
                  flush=True)
        out = args.out / name
        shutil.rmtree(out, ignore_errors=True)
        info = train_budget({**case, "settings": {**case["settings"], "monitor_every": 1000, "monitor_samples": 500}},
                            out, budget, args.seed)
        info.update(evaluate_case(case, out, n))
        results[name] = {"model": case["model"], "data": case["data"], "preset": case["preset"],
                         "settings": case["settings"], **info}
        print(json.dumps({name: results[name]}), flush=True)
    if results:
        from genzoo._io import write_json
        print(f"wrote {write_json(args.out / 'results.json', results)}")
    quick_biggan = [c for c in names if CASES[c]["model"] == "biggan"] if args.quick else []
    run = args.sweep or (args.out / quick_biggan[0] if quick_biggan else None)
    if run is not None:
        sweep_outputs(sweep(run, n, seed=args.seed), run)


if __name__ == "__main__":
    main()
