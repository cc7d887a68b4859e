"""Out-of-distribution scores: how unlikely is an image under a model trained on other data?

    scores = ood_scores(model, ds, k=100)      # {"nll": -log p_k(x) (IWAE), "recon": reconstruction MSE}, (N,) each
    auroc(scores_in, scores_out)               # P(score(OOD image) > score(in-distribution image)), ties 1/2
    ood_detection(model, in_ds, ood_ds)        # both scores' AUROC and their means on each set

Higher scores mean "more anomalous". `nll` needs a latent-variable model with a likelihood (vae, cvae): the
importance-weighted bound log p_k(x) = logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k
(Burda et al. 2015). Nalisnick et al. (2019) found that such likelihoods can rank OOD data as *more* likely
(e.g. MNIST under a Fashion-MNIST model): an AUROC below 0.5.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data import Dataset

SCORES = ("nll", "recon")


def auroc(scores_in: Any, scores_out: Any) -> float:
    """Area under the ROC curve with the OOD images as positives, by the Mann-Whitney statistic:

        AUROC = (R_out - n_out (n_out + 1) / 2) / (n_in n_out),

    R_out the sum of the OOD scores' ranks in the pooled sample (ties get their average rank, so a tie
    counts 1/2): the probability that a random OOD image scores higher than a random in-distribution one."""
    a = np.asarray(scores_in, dtype=np.float64).ravel()
    b = np.asarray(scores_out, dtype=np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"AUROC needs scores of both sets; got {len(a)} in-distribution and {len(b)} OOD")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("AUROC: scores must be finite numbers (found NaN or inf)")
    pooled = np.concatenate([a, b])
    order = np.argsort(pooled, kind="mergesort")
    sorted_v = pooled[order]
    ranks = np.empty(len(pooled))
    i = 0
    while i < len(pooled):  # average rank over each run of equal values
        j = i
        while j + 1 < len(pooled) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    r_out = ranks[len(a):].sum()
    return float((r_out - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))


@torch.no_grad()
def ood_scores(model: Any, ds: Dataset, *, k: int = 100, n: int | None = None, batch_size: int = 100,
               seed: int = 0, which: tuple[str, ...] | None = None) -> dict[str, Tensor]:
    """Per-image scores (N,) of `n` images of `ds` (all when `n` is None; else a seeded random sample,
    stratified by class where `ds` has labels: `subsets.random_subset(ds, n, seed)`, never the first n, which
    in a folder sorted by class is one class): "recon" (per-pixel MSE of the reconstruction, any model that
    reconstructs) and "nll" (-log p_k(x), IWAE with `k` samples, models with a likelihood)."""
    from ..applications import reconstruction_errors
    from .likelihood import iwae_log_px, require_likelihood
    from .subsets import random_subset
    sub = ds if n is None else random_subset(ds, n, seed)
    has_lik = callable(getattr(model, "log_likelihood", None)) and model.can("encode")
    which = which or tuple(s for s in SCORES if s != "nll" or has_lik)
    out: dict[str, Tensor] = {}
    if "nll" in which:
        require_likelihood(model)
        if getattr(model, "conditional", False):
            raise ValueError("OOD likelihoods of a conditional model would need the OOD images' classes; use an "
                             "unconditional vae")
        if k < 1:
            raise ValueError(f"k={k}: expected >= 1 importance samples")
        g = torch.Generator().manual_seed(seed + 104729)
        model.eval()
        out["nll"] = torch.cat([-iwae_log_px(model, model.prepare(x).to(model.device), k, g).float().cpu()
                                for x, _ in sub.batches(batch_size)])
    if "recon" in which:
        out["recon"] = reconstruction_errors(model, sub, batch_size).float()
    if not out:
        raise ValueError(f"a {getattr(model, 'model_type', '?')} model can neither reconstruct nor give a likelihood")
    return out


def ood_detection(model: Any, in_ds: Dataset, ood_ds: Dataset, *, k: int = 100, n: int = 1000,
                  seed: int = 0) -> dict[str, Any]:
    """Score `n` images of each set; AUROC of each score (OOD = positive) and the mean scores."""
    if in_ds.shape != ood_ds.shape:
        raise ValueError(f"{ood_ds.name} images are {ood_ds.shape} but the model's data ({in_ds.name}) are "
                         f"{in_ds.shape}; OOD scoring needs images of the same shape")
    s_in = ood_scores(model, in_ds, k=k, n=n, seed=seed)
    s_out = ood_scores(model, ood_ds, k=k, n=n, seed=seed + 1)
    res: dict[str, Any] = {"in": in_ds.name, "ood": ood_ds.name, "n_in": len(next(iter(s_in.values()))),
                           "n_ood": len(next(iter(s_out.values()))), "k": k if "nll" in s_in else None}
    for name in s_in:
        res[f"auroc_{name}"] = auroc(s_in[name].numpy(), s_out[name].numpy())
        res[f"mean_{name}_in"] = float(s_in[name].double().mean())
        res[f"mean_{name}_ood"] = float(s_out[name].double().mean())
    return res
