"""Quality at speed (issue 16): the VAE 784-400-20 trained 10 epochs on MNIST by a hand-written fp32 loop, by
genzoo fp32 and by genzoo bf16, side by side in one process. Reports each run's test -ELBO after every epoch
(nats per image, one z sample, BCE on the [0, 1] intensities; the same measure for all three) and its training
wall time (evaluation excluded), then

  * bf16 quality: |test -ELBO(genzoo bf16) - test -ELBO(genzoo fp32)| after 10 epochs (target <= 0.5 nats);
  * time to quality: the training time genzoo needs to reach the hand loop's 10-epoch test -ELBO, as a
    fraction of the hand loop's 10-epoch time (target <= 0.5x); each genzoo variant is timed until its first
    epoch end at or below that value.

    python benchmarks/fast_path.py [--epochs 10] [--threads 1] [--variants fp32,bf16]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

import genzoo.data as gd
from genzoo.config import TrainConfig
from genzoo.train import build_model
from genzoo.train.engine import Trainer, autocast

BATCH = 128


@torch.no_grad()
def test_neg_elbo(encode_decode, x_test: torch.Tensor) -> float:
    """Mean over the test set of BCE(decoder(z), x) summed over pixels + KL(q(z|x) || N(0, I)), z ~ q once."""
    g = torch.Generator().manual_seed(1234)
    total = 0.0
    for i in range(0, len(x_test), 1000):
        x = x_test[i:i + 1000].float() / 255
        mean, logvar, decode = encode_decode(x)
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g)
        rec = F.binary_cross_entropy_with_logits(decode(z), x.flatten(1), reduction="none").sum(1)
        kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum(1)
        total += float((rec + kl).sum())
    return total / len(x_test)


def hand_run(ds: gd.Dataset, x_test: torch.Tensor, epochs: int, lr: float = 1e-3,
             cosine: bool = False, seed: int = 0) -> list[tuple[float, float]]:
    """pytorch/examples' VAE loop, fp32, default Adam(1e-3), fresh shuffle per epoch (`cosine`: the LR annealed
    to 0 over the run, stepped per batch). [(train seconds, -ELBO)]"""
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40))
    dec = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * (len(ds.x) // BATCH)) if cosine else None
    X, out, train_s = ds.x, [], 0.0

    def ed(x):
        mean, logvar = enc(x).chunk(2, 1)
        return mean, logvar, dec

    for _ in range(epochs):
        t = time.perf_counter()
        perm = torch.randperm(len(X))
        for j in range(0, len(X) - BATCH + 1, BATCH):
            x = X[perm[j:j + BATCH]].float() / 255
            mean, logvar = enc(x).chunk(2, 1)
            z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
            rec = F.binary_cross_entropy_with_logits(dec(z), x.flatten(1), reduction="sum")
            kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum()
            loss = (rec + kl) / len(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
        train_s += time.perf_counter() - t
        out.append((train_s, test_neg_elbo(ed, x_test)))
    return out


def genzoo_run(ds: gd.Dataset, x_test: torch.Tensor, epochs: int, lr: float = 1e-3, seed: int = 0,
               **train) -> list[tuple[float, float]]:
    """genzoo's engine (the `mlp-784-400-20` preset, Adam at `lr`) with TrainConfig `train`; the same test measure
    at every epoch end, its time excluded from the training seconds."""
    torch.manual_seed(seed)
    model = build_model("vae", ds, preset="mlp-784-400-20", lr=lr)
    tc = TrainConfig(epochs=epochs, batch_size=BATCH, seed=seed, log_every=50, sample_every=0, checkpoint_every=10**9,
                     validate=False, progress=False, **train)
    trainer = Trainer(model, ds, tc, None)
    out: list[tuple[float, float]] = []
    clock = {"t": 0.0, "last": None}

    def ed(x):
        mean, logvar = model.encode(x)
        return mean.float(), logvar.float(), lambda z: model.decode_logits(z).float().flatten(1)

    real_end = trainer._epoch_end

    def epoch_end():
        clock["t"] += time.perf_counter() - clock["last"]
        model.eval()
        with autocast(trainer.device, trainer.precision):
            out.append((clock["t"], test_neg_elbo(ed, x_test)))
        model.train()
        real_end()
        clock["last"] = time.perf_counter()

    trainer._epoch_end = epoch_end
    clock["last"] = time.perf_counter()
    trainer.fit()
    return out


def first_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, v in curve if v <= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default="fp32,bf16", help="genzoo precisions to run")
    ap.add_argument("--data", default="mnist", help="dataset (mnist-mini for a smoke run)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every run (init, batch order, z samples)")
    ap.add_argument("--recipe", default="", metavar="LR:EPOCHS",
                    help="also run Adam(LR) with a cosine decay to 0 over EPOCHS epochs (hand loop and genzoo)")
    args = ap.parse_args()
    recipe = None
    if args.recipe:
        try:
            lr_s, ep_s = args.recipe.split(":")
            recipe = (float(lr_s), int(ep_s))
        except ValueError:
            ap.error(f"--recipe {args.recipe!r}: expected LR:EPOCHS, e.g. 4e-3:8")
    torch.set_num_threads(args.threads)
    ds, test = gd.load(args.data, "train"), gd.load(args.data, "test")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), VAE 784-400-20, batch {BATCH}, "
          f"{args.epochs} epochs, seed {args.seed}, {ds.name} {len(ds)} train / {len(test)} test")
    variants = args.variants.split(",")
    curves = {"hand-written fp32": hand_run(ds, test.x, args.epochs, seed=args.seed)}
    for p in variants:
        curves[f"genzoo {p}"] = genzoo_run(ds, test.x, args.epochs, precision=p, seed=args.seed)
    if recipe:
        lr, ep = recipe
        tag = f"lr {lr:g} cos {ep} ep"
        curves[f"hand fp32 {tag}"] = hand_run(ds, test.x, ep, lr=lr, cosine=True, seed=args.seed)
        for p in variants:
            curves[f"genzoo {p} {tag}"] = genzoo_run(ds, test.x, ep, lr=lr, precision=p, lr_schedule="cosine",
                                                       seed=args.seed)
    hand_t, hand_v = curves["hand-written fp32"][-1]
    print(f"\n{'method':<32}{'train s':>9}{'test -ELBO':>12}   per-epoch -ELBO")
    for k, c in curves.items():
        print(f"{k:<32}{c[-1][0]:>9.1f}{c[-1][1]:>12.2f}   " + " ".join(f"{v:.1f}" for _, v in c))
    if "genzoo fp32" in curves and "genzoo bf16" in curves:
        d = curves["genzoo bf16"][-1][1] - curves["genzoo fp32"][-1][1]
        print(f"\nbf16 - fp32 test -ELBO after {args.epochs} epochs: {d:+.2f} nats (target |d| <= 0.5)")
    print(f"time to the hand loop's {args.epochs}-epoch test -ELBO ({hand_v:.2f}; hand loop {hand_t:.1f} s):")
    for k, c in curves.items():
        if k != "hand-written fp32":
            t = first_reach(c, hand_v)
            print(f"  {k}: " + (f"{t:.1f} s = {t / hand_t:.2f}x (target <= 0.5x)" if t is not None
                                else f"not reached in {len(c)} epochs ({c[-1][1]:.2f})"))
    print(json.dumps({k: [[round(t, 2), round(v, 3)] for t, v in c] for k, c in curves.items()}))


if __name__ == "__main__":
    main()
