"""DDPM quality: domain FID vs sampling steps (with images/s), the guidance sweep of a class-conditional run
(label accuracy, FID, classes covered) and the variational bound on test images, on the runs' dataset
(MNIST or Fashion-MNIST).

    OMP_NUM_THREADS=1 python benchmarks/diffusion_quality.py --uncond runs/ddpm-mnist --cond runs/ddpm-cond-mnist \
        [--n 1000] [--steps 10,25,50,100,250] [--eta 0[,0.5,1]] [--ddpm-n 1000] [--guidance 0,1,2,4] \
        [--guidance-steps 50] [--bound-n 200] [--figures docs/figures] [--out ddpm_quality.json]

Domain FID uses the shipped classifier of the run's dataset (not comparable with Inception FIDs) against n test
images drawn by evaluate's seeded, class-stratified subset, with n samples; FID is biased upwards at small n, so
the output also gives the FID of n stratified training images against the same test images (the floor at this
n). The 10,000-sample headline figures come from `genzoo evaluate RUN --metrics fid,modes` (the same
sampler flags). `--ddpm-n`: also 1000-step ancestral sampling (T network evaluations per image) of that many
samples, with DDIM at the same n beside it (at each `--eta`: 0 is deterministic, 1 adds the DDPM posterior's
noise at every step; the guidance sweep also runs at each `--eta`). images/s is samples per CPU second of the
sampling process (time.process_time, one thread). Label accuracy: the share of samples the classifier assigns
to the requested class (classes 0..9 cycling, as evaluate asks). The bound: nats per test image and bits/dim
(Ho et al. eq. 5 with the discretised decoder; the middle sum estimated from 100 stratified timesteps), an upper
bound on -log p(x).
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
from genzoo.evaluate.subsets import random_subset
from genzoo.evaluate.suite import default_extractor, draw_samples, requested_labels


def draw(model, n: int, **settings):
    """n seeded samples in [0, 1] (evaluate's draw: balanced labels for a conditional model) and their CPU s."""
    t0 = time.process_time()
    x = draw_samples(model, n, seed=0, batch_size=250, **settings)
    return x, time.process_time() - t0


def score(ext, fr, x, labels=None) -> dict:
    probs = M.extract(ext, x, what="probs")
    pred = probs.argmax(1)
    hist = torch.bincount(pred, minlength=probs.shape[1]).double() / len(x)
    row = {"fid": M.fid(fr, M.extract(ext, x)), "classes_5pct": int((hist >= 0.05).sum()),
           "smallest_class": float(hist.min())}
    if labels is not None:
        row["label_accuracy"] = float((pred == labels).double().mean())
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uncond", type=Path)
    ap.add_argument("--cond", type=Path)
    ap.add_argument("--data", default=None, help="dataset (default: the runs')")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", default="10,25,50,100,250")
    ap.add_argument("--eta", default="0", help="DDIM eta value(s), comma-separated: each gives the steps rows")
    ap.add_argument("--ddpm-n", type=int, default=0, help="also 1000-step ancestral sampling of this many samples")
    ap.add_argument("--guidance", default="0,1,2,4")
    ap.add_argument("--guidance-steps", type=int, default=50)
    ap.add_argument("--bound-n", type=int, default=200, help="test images for the bound (0: skip it)")
    ap.add_argument("--bound-timesteps", type=int, default=100)
    ap.add_argument("--figures", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    first = args.uncond or args.cond
    if first is None:
        ap.error("give --uncond RUN and/or --cond RUN")
    data = args.data or gd.run_data(first)[0]
    tag = data.replace("-", "_")
    ext = default_extractor(data)
    test = gd.load(data, "test")
    train = gd.load(data, "train")
    refs: dict[int, tuple] = {}

    def ref(n: int):
        """(test features, floor FID) at n: evaluate's stratified test subset; n stratified training images."""
        if n not in refs:
            fr = M.extract(ext, random_subset(test, n, seed=0).x.float() / 255)
            floor = M.fid(fr, M.extract(ext, random_subset(train, n, seed=1).x.float() / 255))
            refs[n] = (fr, floor)
            print(f"{data}, n={n}: FID of {n} training images vs the test images (the floor): {floor:.2f}",
                  flush=True)
        return refs[n]

    res: dict = {"data": data, "n": args.n}
    fr, res["floor_fid_train_vs_test"] = ref(args.n)
    etas = [float(e) for e in args.eta.split(",")]
    if args.uncond:
        m = genzoo.load(args.uncond).eval()
        settings = [("ddim", int(s), args.n, eta) for eta in etas for s in args.steps.split(",")]
        if args.ddpm_n:
            if args.ddpm_n != args.n:
                settings += [("ddim", 50, args.ddpm_n, eta) for eta in etas]
            settings.append(("ddpm", m.config.timesteps, args.ddpm_n, None))
        rows = []
        print("\n| sampler | steps | eta | n | domain FID | floor at n | classes >= 5% | smallest class "
              "| images/s (CPU) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for sampler, steps, n, eta in settings:
            kw = {"sampler": "ddpm"} if sampler == "ddpm" else {"sampler": "ddim", "steps": steps, "eta": eta}
            x, sec = draw(m, n, **kw)
            fr_n, floor = ref(n)
            row = {"sampler": sampler, "steps": steps, "eta": eta, "n": n, **score(ext, fr_n, x), "floor": floor,
                   "images_per_s": n / sec}
            rows.append(row)
            print(f"| {sampler} | {steps} | {'-' if eta is None else f'{eta:g}'} | {n} | {row['fid']:.2f} | "
                  f"{floor:.2f} | {row['classes_5pct']} | {row['smallest_class']:.1%} | {row['images_per_s']:.2f} |",
                  flush=True)
            if args.figures and sampler == "ddim" and steps == 50 and n == args.n and eta == etas[0]:
                from genzoo.images import save_grid
                save_grid(x[:64], args.figures / f"ddpm_{tag}_samples.png", 8, scale=2)
        res["uncond"] = rows
        if args.bound_n:  # 0: skip the bound
            t0 = time.process_time()
            xb = m.prepare(random_subset(test, args.bound_n, seed=0).x)
            g = torch.Generator().manual_seed(0)
            terms = {k: 0.0 for k in ("prior", "diffusion", "decoder", "total")}
            for i in range(0, len(xb), 100):
                t = m.bound_terms(xb[i:i + 100], generator=g, timesteps=args.bound_timesteps)
                for k in terms:
                    terms[k] += float(t[k].sum())
            terms = {k: v / len(xb) for k, v in terms.items()}
            dims = xb[0].numel()
            res["bound"] = {**terms, "bits_per_dim": terms["total"] / (dims * math.log(2)), "n": len(xb),
                            "cpu_s": time.process_time() - t0}
            print(f"\nvariational bound on {len(xb)} test images: {terms['total']:.1f} nats/image "
                  f"({res['bound']['bits_per_dim']:.3f} bits/dim; prior {terms['prior']:.3f}, diffusion "
                  f"{terms['diffusion']:.1f}, decoder {terms['decoder']:.1f})", flush=True)
        if args.figures:
            from genzoo.images import save_grid
            fr_ = m.trajectory(8, generator=torch.Generator().manual_seed(1), frames=10, steps=50)  # (10, 8, ...)
            save_grid(fr_.transpose(0, 1).reshape(-1, *fr_.shape[2:]), args.figures / f"ddpm_{tag}_trajectory.png",
                      10, scale=2)

    if args.cond:
        m = genzoo.load(args.cond).eval()
        labels = requested_labels(m, args.n)
        rows = []
        print("\n| guidance | DDIM steps | eta | domain FID | label accuracy | classes >= 5% | images/s (CPU) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for eta in etas:
            for s in (float(v) for v in args.guidance.split(",")):
                x, sec = draw(m, args.n, steps=args.guidance_steps, guidance=s, eta=eta)
                row = {"guidance": s, "steps": args.guidance_steps, "eta": eta, **score(ext, fr, x, labels),
                       "images_per_s": args.n / sec}
                rows.append(row)
                print(f"| {s:g} | {args.guidance_steps} | {eta:g} | {row['fid']:.2f} | "
                      f"{row['label_accuracy']:.1%} | {row['classes_5pct']} | {row['images_per_s']:.2f} |", flush=True)
                if args.figures and eta == etas[0]:
                    from genzoo.images import save_grid
                    idx = torch.cat([torch.nonzero(labels == k)[:8, 0] for k in range(m.config.num_classes)])
                    save_grid(x[idx], args.figures / f"ddpm_cond_{tag}_g{s:g}.png", 8, scale=2)
        res["cond"] = rows
    if args.out:
        from genzoo._io import write_json
        write_json(args.out, res)
    print(json.dumps(res, indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()
