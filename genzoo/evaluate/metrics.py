"""Sample metrics on features of a domain classifier (or any feature extractor you pass).

Every function here takes features (N, D) or class probabilities (N, K) that the caller extracted with
`extract(...)`; none of them knows about models. Domain FID/KID use genzoo's own small classifiers, so their
values are **not comparable with published Inception FIDs**.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

Extractor = nn.Module | Callable[[Tensor], Tensor]


def extractor_name(extractor: Extractor) -> str:
    return getattr(extractor, "name", None) or type(extractor).__name__


@torch.no_grad()
def extract(extractor: Extractor, images01: Tensor, batch_size: int = 500, what: str = "features") -> Tensor:
    """Run `extractor` over images in [0, 1] in batches. `what="features"` calls `extractor.features` when it
    has one (the penultimate layer of a domain classifier), else `extractor(x)`; `what="probs"` calls
    `extractor.probs`. Returns float64 (N, D)."""
    if isinstance(extractor, nn.Module):
        extractor.eval()
    fn = getattr(extractor, what, None)
    if fn is None:
        if what != "features":
            raise ValueError(f"extractor {extractor_name(extractor)!r} has no {what}() method (needed for "
                             f"class-based metrics); use a domain classifier from get_classifier()")
        fn = extractor
    out = [fn(images01[i:i + batch_size].float()).flatten(1).double() for i in range(0, len(images01), batch_size)]
    return torch.cat(out)


# ---- Frechet distance (FID) ------------------------------------------------------------------------------
def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix via its eigendecomposition."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((S1 S2)^{1/2}) for covariance matrices S1, S2.

    S1 S2 is similar to the symmetric PSD matrix M = S1^{1/2} S2 S1^{1/2} (S1^{1/2} M S1^{-1/2} = S1 S2),
    so they share eigenvalues and Tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(M)), with tiny negative eigenvalues
    from round-off clipped to 0. Stable for singular covariances, where scipy's sqrtm of the non-symmetric
    S1 S2 can return complex parts.
    """
    s1h = _sqrtm_psd(np.asarray(sigma1, np.float64))
    m = s1h @ np.asarray(sigma2, np.float64) @ s1h
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(lam, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2) (Dowson & Landau 1982;
    FID, Heusel et al. 2017):

        d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))
    return max(d, 0.0)


def gaussian_stats(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D)."""
    f = features.double().cpu().numpy()
    if len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {len(f)}")
    return f.mean(0), np.cov(f, rowvar=False)


def fid(real: Tensor, fake: Tensor) -> float:
    """Domain FID: the Frechet distance between Gaussians fitted to the real and the generated features."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


# ---- Kernel Inception Distance (KID) ---------------------------------------------------------------------
def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """k(x, y) = (x.y / d + 1)^3, the KID kernel (Binkowski et al. 2018). x (m, d), y (n, d) -> (m, n)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    """Unbiased estimate of the squared MMD with the polynomial kernel (Gretton et al. 2012, eq. 3):

        MMD_u^2 = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j) - 2/(mn) sum_{i,j} k(x_i, y_j)
    """
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1)) - 2 * kxy.mean())


def kid(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Domain KID: the unbiased polynomial-kernel MMD^2 averaged over `subsets` random subsets of
    `subset_size` real and generated features (as Binkowski et al.; at most half of each set, so that the
    subsets differ and the spread means something). Returns (mean, std over subsets).
    Unbiased: for two samples of one distribution its expectation is 0 (it can be negative)."""
    g = torch.Generator().manual_seed(seed)
    size = min(subset_size, len(real) // 2, len(fake) // 2)  # at most half of each set, so subsets differ
    if size < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated features, got {len(real)} and {len(fake)}")
    vals = [mmd2_unbiased(real[torch.randperm(len(real), generator=g)[:size]].double(),
                          fake[torch.randperm(len(fake), generator=g)[:size]].double()) for _ in range(subsets)]
    return float(np.mean(vals)), float(np.std(vals))


# ---- k-NN manifolds: precision/recall, density/coverage -------------------------------------------------
def knn_radii(features: Tensor, k: int, chunk: int = 1000) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded). (N,)"""
    if len(features) <= k:
        raise ValueError(f"need more than k={k} points for k-NN radii, got {len(features)}")
    f = features.float()
    out = [torch.cdist(f[i:i + chunk], f).kthvalue(k + 1, dim=1).values for i in range(0, len(f), chunk)]
    return torch.cat(out)  # k + 1: the smallest distance is the point to itself


def ball_counts(centres: Tensor, radii: Tensor, queries: Tensor, chunk: int = 1000) -> Tensor:
    """For each centre i, how many queries lie inside its ball: #{j : |q_j - c_i| <= r_i}. (N_centres,)"""
    c, q = centres.float(), queries.float()
    counts = torch.zeros(len(c), dtype=torch.long)
    for i in range(0, len(q), chunk):
        counts += (torch.cdist(c, q[i:i + chunk]) <= radii[:, None]).sum(1)
    return counts


def in_any_ball(centres: Tensor, radii: Tensor, queries: Tensor, chunk: int = 1000) -> Tensor:
    """For each query, whether it lies inside at least one ball B(c_i, r_i). (N_queries,) bool"""
    c = centres.float()
    out = [(torch.cdist(queries[i:i + chunk].float(), c) <= radii[None, :]).any(1) for i in range(0, len(queries), chunk)]
    return torch.cat(out)


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019). Each set's manifold is the union of balls
    around its points with radius = distance to the k-th nearest neighbour (k = 3 in the paper):

        precision = 1/M sum_j 1[fake_j in manifold(real)],  recall = 1/N sum_i 1[real_i in manifold(fake)]
    """
    precision = in_any_ball(real, knn_radii(real, k), fake).double().mean().item()
    recall = in_any_ball(fake, knn_radii(fake, k), real).double().mean().item()
    return precision, recall


def density_coverage(real: Tensor, fake: Tensor, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), with balls of k-th-neighbour radius around real points only
    (k = 5 in the paper):

        density  = 1/(kM) sum_j sum_i 1[fake_j in B(real_i, r_i)]    (~1 when fakes match reals; can exceed 1)
        coverage = 1/N sum_i 1[exists j: fake_j in B(real_i, r_i)]
    """
    counts = ball_counts(real, knn_radii(real, k), fake)
    return counts.sum().item() / (k * len(fake)), (counts > 0).double().mean().item()


# ---- class-based: classifier score, mode coverage -------------------------------------------------------
def classifier_score(probs: Tensor, splits: int = 10) -> tuple[float, float]:
    """The Inception-Score formula (Salimans et al. 2016) with the domain classifier's p(y|x):

        CS = exp( E_x KL(p(y|x) || p(y)) ),  p(y) = E_x p(y|x),

    computed on `splits` equal parts; returns (mean, std over parts). Between 1 and the number of classes."""
    p = probs.double().clamp_min(1e-12)
    scores = []
    for part in p.chunk(splits):
        py = part.mean(0, keepdim=True)
        scores.append(math.exp((part * (part.log() - py.log())).sum(1).mean().item()))
    return float(np.mean(scores)), float(np.std(scores))


def mode_coverage(probs: Tensor) -> dict[str, Any]:
    """The class histogram of samples under the domain classifier (predicted class = argmax p(y|x)):

        classes_covered = #{c : h_c >= 1/(2K)}  (at least half a fair share),
        kl_to_uniform   = sum_c h_c log(h_c K)  (0 when every class gets 1/K; log K when one class takes all)
    """
    k = probs.shape[1]
    hist = torch.bincount(probs.argmax(1), minlength=k).double() / len(probs)
    nz = hist[hist > 0]
    return {"classes_covered": int((hist >= 0.5 / k).sum()), "kl_to_uniform": float((nz * (nz * k).log()).sum()),
            "class_histogram": [round(v, 6) for v in hist.tolist()]}


__all__ = ["extract", "extractor_name", "frechet_distance", "trace_sqrt_product", "gaussian_stats", "fid",
           "polynomial_kernel", "mmd2_unbiased", "kid", "knn_radii", "precision_recall", "density_coverage",
           "classifier_score", "mode_coverage"]
