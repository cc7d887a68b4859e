"""DDPM quality on MNIST: domain FID vs sampling steps (with images/s), the guidance sweep of a class-conditional
run (label accuracy, FID, classes covered) and the variational bound on test images.

    OMP_NUM_THREADS=1 python benchmarks/diffusion_quality.py --uncond runs/ddpm-mnist --cond runs/ddpm-cond-mnist \
        [--n 500] [--steps 10,25,50,100] [--guidance 0,1,2,4] [--guidance-steps 25] [--bound-n 200] \
        [--figures docs/figures] [--out ddpm_quality.json]

Domain FID uses the shipped MNIST classifier's features (not comparable with Inception FIDs) against the first n
MNIST test images, with n samples; FID is biased upwards at small n, so the table also gives the FID of n training
images against the same test images (the floor at this n). images/s is samples per CPU second of the sampling
process (time.process_time, one thread). Label accuracy: the share of samples the classifier assigns to the
requested class (classes 0..9 cycling). The bound: nats per test image and bits/dim (Ho et al. eq. 5 with the
discretised decoder; the middle sum estimated from 100 stratified timesteps), an upper bound on -log p(x).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import genzoo
import genzoo.data as gd
from genzoo.evaluate import metrics as M
from genzoo.evaluate.suite import default_extractor


def draw(model, n: int, seed: int = 0, batch: int = 250, labels: torch.Tensor | None = None, **settings):
    """n samples in [0, 1] and the CPU seconds they took."""
    g = torch.Generator().manual_seed(seed)
    out, t0 = [], time.process_time()
    for i in range(0, n, batch):
        y = None if labels is None else labels[i:i + batch]
        with torch.no_grad():
            out.append(model.to_unit(model.sample(min(batch, n - i), labels=y, generator=g, **settings)).float())
    return torch.cat(out), time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uncond", type=Path)
    ap.add_argument("--cond", type=Path)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", default="10,25,50,100")
    ap.add_argument("--ddpm", action="store_true", help="also 1000-step ancestral sampling (T forward passes each)")
    ap.add_argument("--guidance", default="0,1,2,4")
    ap.add_argument("--guidance-steps", type=int, default=25)
    ap.add_argument("--bound-n", type=int, default=200)
    ap.add_argument("--bound-timesteps", type=int, default=100)
    ap.add_argument("--figures", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ext = default_extractor("mnist")
    test = gd.load("mnist", "test")
    real = test.x[:args.n].float() / 255
    fr = M.extract(ext, real)
    train = gd.load("mnist", "train")
    res: dict = {"n": args.n, "floor_fid_train_vs_test": M.fid(fr, M.extract(ext, train.x[:args.n].float() / 255))}
    print(f"n={args.n}; FID of {args.n} training images vs the test images: {res['floor_fid_train_vs_test']:.2f}")

    if args.uncond:
        m = genzoo.load(args.uncond).eval()
        rows = []
        settings = [("ddim", int(s)) for s in args.steps.split(",")] + ([("ddpm", 1000)] if args.ddpm else [])
        print("\n| sampler | steps | domain FID | classes >= 5% | smallest class | images/s (CPU) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for sampler, steps in settings:
            x, sec = draw(m, args.n, sampler=sampler, steps=None if sampler == "ddpm" else steps)
            probs = M.extract(ext, x, what="probs")
            hist = torch.bincount(probs.argmax(1), minlength=10).double() / len(x)
            row = {"sampler": sampler, "steps": steps, "fid": M.fid(fr, M.extract(ext, x)),
                   "classes_5pct": int((hist >= 0.05).sum()), "smallest_class": float(hist.min()),
                   "images_per_s": args.n / sec}
            rows.append(row)
            print(f"| {sampler} | {steps} | {row['fid']:.2f} | {row['classes_5pct']} | {row['smallest_class']:.1%} | "
                  f"{row['images_per_s']:.1f} |", flush=True)
            if args.figures and sampler == "ddim" and steps == 50:
                from genzoo.images import save_grid
                save_grid(x[:64], args.figures / "ddpm_mnist_samples.png", 8, scale=2)
        res["uncond"] = rows
        t0 = time.process_time()
        xb = m.prepare(test.x[:args.bound_n])
        g = torch.Generator().manual_seed(0)
        terms = {k: 0.0 for k in ("prior", "diffusion", "decoder", "total")}
        for i in range(0, len(xb), 100):
            t = m.bound_terms(xb[i:i + 100], generator=g, timesteps=args.bound_timesteps)
            for k in terms:
                terms[k] += float(t[k].sum())
        terms = {k: v / len(xb) for k, v in terms.items()}
        res["bound"] = {**terms, "bits_per_dim": terms["total"] / (784 * math.log(2)), "n": len(xb),
                        "cpu_s": time.process_time() - t0}
        print(f"\nvariational bound on {len(xb)} test images: {terms['total']:.1f} nats/image "
              f"({res['bound']['bits_per_dim']:.3f} bits/dim; prior {terms['prior']:.3f}, diffusion "
              f"{terms['diffusion']:.1f}, decoder {terms['decoder']:.1f})", flush=True)
        if args.figures:
            from genzoo.images import save_grid
            fr_ = m.trajectory(8, generator=torch.Generator().manual_seed(1), frames=10, steps=50)  # (10, 8, ...)
            save_grid(fr_.transpose(0, 1).reshape(-1, *fr_.shape[2:]), args.figures / "ddpm_trajectory.png", 10,
                      scale=2)

    if args.cond:
        m = genzoo.load(args.cond).eval()
        labels = torch.arange(args.n) % 10
        rows = []
        print(f"\n| guidance | DDIM steps | domain FID | label accuracy | classes >= 5% | images/s (CPU) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for s in (float(v) for v in args.guidance.split(",")):
            x, sec = draw(m, args.n, labels=labels, steps=args.guidance_steps, guidance=s)
            probs = M.extract(ext, x, what="probs")
            pred = probs.argmax(1)
            hist = torch.bincount(pred, minlength=10).double() / len(x)
            row = {"guidance": s, "steps": args.guidance_steps, "fid": M.fid(fr, M.extract(ext, x)),
                   "label_accuracy": float((pred == labels).double().mean()),
                   "classes_5pct": int((hist >= 0.05).sum()), "images_per_s": args.n / sec}
            rows.append(row)
            print(f"| {s:g} | {args.guidance_steps} | {row['fid']:.2f} | {row['label_accuracy']:.1%} | "
                  f"{row['classes_5pct']} | {row['images_per_s']:.1f} |", flush=True)
            if args.figures and s in (1.0, 4.0):
                from genzoo.images import save_grid
                idx = torch.cat([torch.nonzero(labels == k)[:8, 0] for k in range(10)])
                save_grid(x[idx], args.figures / f"ddpm_cond_mnist_g{s:g}.png", 8, scale=2)
        res["cond"] = rows
    if args.out:
        from genzoo._io import write_json
        write_json(args.out, res)
    print(json.dumps(res, indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()
