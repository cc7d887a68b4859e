"""Sampling: the model's own sampler (a VAE's prior), or a Gaussian fitted to the codes of real data.

A plain AE has no prior; decoding z ~ N(mean, cov) of its training codes is the fair way to show that "AE
samples are poor" (Gaussian-fitted codes fall into the holes of an unregularised latent space), and the same
function applied to a VAE shows its aggregate posterior.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data import Dataset
from .codes import decode, encode_dataset, require


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
    if generator is not None:
        return generator
    return None if seed is None else torch.Generator().manual_seed(seed)


@torch.no_grad()
def sample_prior(model: Any, n: int, labels: Tensor | None = None, temperature: float = 1.0,
                 seed: int | None = 0, generator: torch.Generator | None = None) -> Tensor:
    """`model.sample(n, labels, generator, temperature=...)` as images in [0, 1], (n, C, H, W) on the CPU."""
    require(model, "sample")
    kw = {} if labels is None else {"labels": torch.as_tensor(labels)}
    x = model.sample(n, generator=_generator(seed, generator), temperature=temperature, **kw)
    return model.to_unit(x).float().cpu()


def fit_gaussian(codes: Tensor, jitter: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Maximum-likelihood-style Gaussian of codes (N, L): (mean (L,), Cholesky factor (L, L) of
    cov + jitter * I), with cov the unbiased sample covariance."""
    codes = torch.as_tensor(codes, dtype=torch.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError(f"expected at least 2 codes of shape (N, L), got {tuple(codes.shape)}")
    mean = codes.mean(0)
    cov = torch.cov(codes.T).reshape(codes.shape[1], codes.shape[1])
    chol = torch.linalg.cholesky(cov + jitter * torch.eye(codes.shape[1], dtype=cov.dtype))
    return mean.float(), chol.float()


def sample_gaussian(mean: Tensor, chol: Tensor, n: int, temperature: float = 1.0,
                    generator: torch.Generator | None = None) -> Tensor:
    """z = mean + temperature * A eps, eps ~ N(0, I), A the Cholesky factor: (n, L)."""
    eps = torch.randn(n, len(mean), generator=generator)
    return mean + temperature * eps @ chol.T


def sample_code_gaussian(model: Any, data: Dataset | Tensor, n: int, temperature: float = 1.0, seed: int = 0,
                         max_codes: int = 10_000, labels: Tensor | None = None) -> Tensor:
    """Decode n codes drawn from a Gaussian fitted to the codes of `data` (a Dataset, of which the first
    `max_codes` images are encoded, or a code tensor (N, L)). Images in [0, 1], (n, C, H, W)."""
    require(model, "decode")
    codes = encode_dataset(model, data, max_codes)[0] if isinstance(data, Dataset) else torch.as_tensor(data)
    mean, chol = fit_gaussian(codes)
    z = sample_gaussian(mean, chol, n, temperature, torch.Generator().manual_seed(seed))
    return decode(model, z, labels)
