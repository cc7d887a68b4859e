"""Test-set likelihoods of latent-variable models, in nats per image.

    elbo(model, dataset, *, n=None, samples=1, binarize="none", seed=0, batch_size=500) -> float
        mean over images of  E_q[log p(x|z)] - KL(q(z|x) || p(z))   (a lower bound on log p(x); higher is better)
    elbo_terms(model, dataset, ...same...) -> {"elbo", "recon", "kl", "n"}   (recon = -E_q[log p(x|z)])
    iwae_nll(model, dataset, k=1000, *, n=None, binarize="none", seed=0, batch_size=100) -> float
        mean over images of  -log (1/k) sum_i p(x, z_i) / q(z_i|x),  z_i ~ q(z|x)
        (Burda et al. 2015, eq. 8: the importance-weighted bound L_k; L_1 = ELBO, L_k rises with k towards
        log p(x), so the NLL estimate falls towards -log p(x); lower is better)
    likelihood_settings(run_dir) -> {"binarize": ..., "seed": ...}   (how to evaluate a run like it was trained)

`model` needs `encode(x) -> (mean, logvar)` of a diagonal Gaussian q(z|x), the prior N(0, I) and
`log_likelihood(x, z) -> log p(x|z)` per example (a `vae` or `cvae`; a plain AE or a GAN has no likelihood and
raises ValueError). For a conditional model with a labelled dataset these are log p(x|y).

`binarize`: "none" evaluates the dataset's grey levels as they are; "dynamic" or "static" evaluate on one fixed
Bernoulli draw of every pixel (p = intensity / 255, generator seeded with `seed`) — the usual protocol for
dynamically binarised MNIST. `likelihood_settings` returns the run's mode and, for static binarisation, the seed
that reproduces the test set the run was validated on (train(): seed + 1).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import losses
from ..config import check_choice
from ..data import Dataset

BINARIZE = ("none", "static", "dynamic")


def require_likelihood(model: Any) -> None:
    if not callable(getattr(model, "log_likelihood", None)) or not model.can("encode"):
        raise ValueError(f"a {getattr(model, 'model_type', type(model).__name__)} model has no likelihood: ELBO and "
                         f"NLL need a latent-variable model with encode -> (mean, logvar) and log_likelihood "
                         f"(e.g. vae, cvae)")


def likelihood_settings(run_dir: str | Path) -> dict[str, Any]:
    """{"binarize", "seed"} to evaluate a run on data prepared the way it was trained (from run.json)."""
    from .._io import read_json
    info = read_json(Path(run_dir) / "run.json")
    tc = info.get("train_config", {})
    mode = tc.get("binarize", "none")
    seed = int(tc.get("seed", 0)) + 1 if mode == "static" else 0
    return {"binarize": mode, "seed": seed}


def _batches(model: Any, dataset: Dataset, n: int | None, batch_size: int, binarize: str, seed: int):
    """Model inputs (binarised once with `seed` when asked) and the labels a conditional model needs."""
    check_choice("binarize", binarize, BINARIZE)
    from .subsets import random_subset
    ds = dataset if n is None else random_subset(dataset, n, seed=0)  # seeded, stratified: never the first n
    if binarize != "none":  # one draw of the whole set: the same as genzoo.train's static binarisation for `seed`
        g = torch.Generator().manual_seed(seed)
        ds = Dataset(ds.name, ds.split, (torch.rand(ds.x.shape, generator=g) < ds.x.float() / 255).to(torch.uint8)
                     * 255, ds.y, ds.classes, dict(ds.meta))
    conditional = bool(getattr(model, "conditional", False))
    if conditional and ds.y is None:
        raise ValueError(f"a conditional model needs a labelled dataset; {ds.name} has no labels")
    for xb, yb in ds.batches(batch_size):
        x = model.prepare(xb).to(model.device)
        yield x, ({"labels": yb.to(model.device)} if conditional else {})


@torch.no_grad()
def elbo_terms(model: Any, dataset: Dataset, *, n: int | None = None, samples: int = 1, binarize: str = "none",
               seed: int = 0, batch_size: int = 500) -> dict[str, float]:
    """Mean ELBO and its two terms over the first `n` images (all when None), nats per image. The KL is in
    closed form; E_q[log p(x|z)] is averaged over `samples` reparametrised draws."""
    require_likelihood(model)
    g = torch.Generator().manual_seed(seed + 7919)
    tot_rec = tot_kl = 0.0
    count = 0
    for x, kw in _batches(model, dataset, n, batch_size, binarize, seed):
        mean, logvar = model.encode(x, **kw)
        rec = torch.zeros(len(x), dtype=torch.float64)
        for _ in range(samples):
            z = losses.reparametrize(mean, logvar, generator=g)
            rec -= model.log_likelihood(x, z, **kw).double().cpu()
        tot_rec += float(rec.sum()) / samples
        tot_kl += float(losses.kl_normal_std(mean, logvar).double().sum())
        count += len(x)
    if count == 0:
        raise ValueError(f"{dataset.name}: no images to evaluate")
    rec, kl = tot_rec / count, tot_kl / count
    return {"elbo": -(rec + kl), "recon": rec, "kl": kl, "n": count}


def elbo(model: Any, dataset: Dataset, **kw: Any) -> float:
    """Mean test ELBO in nats per image (see elbo_terms)."""
    return elbo_terms(model, dataset, **kw)["elbo"]


@torch.no_grad()
def iwae_log_px(model: Any, x: Tensor, k: int, generator: torch.Generator | None = None, chunk: int | None = None,
                **kw: Any) -> Tensor:
    """log p_k(x) = logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k, z_i ~ q(z|x), per example (B,).
    Samples are drawn `chunk` at a time (default: about 20,000 decoder inputs per chunk)."""
    mean, logvar = model.encode(x, **kw)  # (B, L) each
    B, L = mean.shape
    chunk = chunk or max(1, 20_000 // B)
    labels = kw.get("labels")
    logw = []
    for start in range(0, k, chunk):
        c = min(chunk, k - start)
        eps = torch.randn(c, B, L, generator=generator).to(mean.device)
        z = mean + (0.5 * logvar).exp() * eps  # (c, B, L)
        log_q = losses.log_normal(z, mean, logvar)  # (c, B)
        log_pz = losses.log_normal_std(z)  # (c, B)
        xr = x.expand(c, *x.shape).reshape(c * B, *x.shape[1:])  # (c*B, C, H, W)
        extra = {} if labels is None else {"labels": labels.repeat(c)}
        log_px = model.log_likelihood(xr, z.reshape(c * B, L), **extra).reshape(c, B)
        logw.append((log_px + log_pz - log_q).double())
    return torch.logsumexp(torch.cat(logw), 0) - math.log(k)  # (B,)


def iwae_nll(model: Any, dataset: Dataset, k: int = 1000, *, n: int | None = None, binarize: str = "none",
             seed: int = 0, batch_size: int = 100, chunk: int | None = None) -> float:
    """Importance-weighted estimate of the test NLL, -mean log p_k(x), nats per image (Burda et al. 2015)."""
    require_likelihood(model)
    if k < 1:
        raise ValueError(f"k must be >= 1 importance samples, got {k}")
    g = torch.Generator().manual_seed(seed + 104729)
    total, count = 0.0, 0
    for x, kw in _batches(model, dataset, n, batch_size, binarize, seed):
        total += float(iwae_log_px(model, x, k, g, chunk, **kw).sum())
        count += len(x)
    if count == 0:
        raise ValueError(f"{dataset.name}: no images to evaluate")
    return -total / count
