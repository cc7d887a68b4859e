"""Claim 10: a generative model's likelihood as an out-of-distribution detector (Nalisnick et al. 2019)."""
from __future__ import annotations

import torch

from ..data import Dataset
from ..evaluate.ood import auroc, ood_scores
from ..evaluate.subsets import subset_indices
from . import figures as F
from .core import Context, Result, claim, describe_checks, verdict_of


@claim("ood-likelihood", number=10, title="Likelihood as an out-of-distribution detector",
       quote="A generative model tells you how likely a given example is: unusual inputs get a low likelihood.",
       experiment="A `vae` (784-400-20 MLP, Bernoulli decoder) trained on Fashion-MNIST scores Fashion-MNIST test "
                  "images (in-distribution) and MNIST test digits (out-of-distribution). AUROC (OOD = positive) of "
                  "two scores: -log p(x) by the IWAE bound and the reconstruction MSE (`genzoo anomaly --run RUN "
                  "--ood mnist`). Tests and machines without Fashion-MNIST use mnist-mini vs uniform noise.")
def ood_likelihood(ctx: Context) -> Result:
    real = not ctx.tiny and ctx.has("fashion-mnist", ("test",)) and ctx.has("mnist", ("test",))
    held_out = ""
    if real:
        n = ctx.pick(200, 1000, 5000)
        ood_ds = ctx.dataset("mnist", "test", n)
        if ctx.has("fashion-mnist", ("train",)):
            train = ctx.dataset("fashion-mnist", "train", ctx.pick(2000, 20000, None))
            in_ds = ctx.dataset("fashion-mnist", "test", n)
        else:  # only the test split is present: score a stratified sample of it, train on the rest
            test = ctx.dataset("fashion-mnist", "test")
            scored = subset_indices(len(test), min(n, 2000), test.y, ctx.seed)
            rest = torch.ones(len(test), dtype=torch.bool)
            rest[scored] = False
            train, in_ds = test.subset(torch.nonzero(rest).flatten()), test.subset(scored)
            train.meta["sample"] = in_ds.meta["sample"] = f"stratified split seed {ctx.seed}"
            held_out = (f" (Fashion-MNIST's training split is not on this machine: the VAE trained on "
                        f"{len(train)} Fashion-MNIST test images and is scored on the other {len(in_ds)}, a "
                        f"seeded stratified sample.)")
    else:
        train = ctx.dataset("mnist-mini", "train", 512)
        in_ds = ctx.dataset("mnist-mini", "test", 100)
        g = torch.Generator().manual_seed(ctx.seed)
        ood_ds = Dataset("noise", "test", torch.randint(0, 256, (100, *in_ds.shape), generator=g, dtype=torch.uint8))
    m = ctx.train("ood-vae", "vae", train, settings={"arch": "mlp", "hidden": (400,), "latent_dim": 20},
                  epochs=ctx.pick(1, 8, 30))
    k = ctx.pick(3, 50, 1000)
    s_in, s_out = ood_scores(m, in_ds, k=k, seed=ctx.seed), ood_scores(m, ood_ds, k=k, seed=ctx.seed + 1)
    r = {}
    for key in s_in:  # the same numbers as ood_detection (genzoo anomaly --run RUN --ood DATA), scored once
        r[f"auroc_{key}"] = auroc(s_in[key].numpy(), s_out[key].numpy())
        r[f"mean_{key}_in"], r[f"mean_{key}_ood"] = float(s_in[key].double().mean()), float(s_out[key].double().mean())
    fig, axes = F.new_figure(1, 2, 3.6)
    for ax, key, label in ((axes[0][0], "nll", "-log p(x) (IWAE), nats"), (axes[0][1], "recon", "reconstruction MSE")):
        ax.hist([s_in[key].numpy(), s_out[key].numpy()], bins=40, label=[in_ds.name, ood_ds.name], alpha=0.8)
        ax.set_xlabel(label, fontsize=8)
        ax.set_title(f"AUROC {r[f'auroc_{key}']:.3f}", fontsize=9)
        ax.legend(fontsize=7)
    fig_path = F.save(fig, ctx.figure("ood_likelihood"))
    checks = {"likelihood separates OOD images (AUROC >= 0.8)": r["auroc_nll"] >= 0.8,
              "OOD images are less likely on average": r["mean_nll_ood"] > r["mean_nll_in"]}
    numbers = {"in-distribution": in_ds.name, "OOD": ood_ds.name, "IWAE k": k,
               "AUROC by likelihood (IWAE)": r["auroc_nll"], "AUROC by reconstruction error": r["auroc_recon"],
               f"mean -log p(x), {in_ds.name}": r["mean_nll_in"], f"mean -log p(x), {ood_ds.name}": r["mean_nll_ood"],
               f"mean recon MSE, {in_ds.name}": r["mean_recon_in"], f"mean recon MSE, {ood_ds.name}": r["mean_recon_ood"]}
    why = (f"Rule: both checks (about the likelihood; reconstruction error shown for comparison). "
           f"{describe_checks(checks)}." + held_out + ("" if real else " (Fashion-MNIST/MNIST not found: mnist-mini vs noise, "
                                                           "a smoke test, not the lecture's experiment.)"))
    return Result(numbers, [fig_path], verdict_of(checks), why)
