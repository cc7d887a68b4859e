"""Manifold grids: decode a regular grid of latent points on a plane (Kingma & Welling 2013, fig. 4).

A plane is (origin (L,), basis (2, L)): grid point (u, v) decodes z = origin + u * basis[0] + v * basis[1].
For a 2-D latent the plane is the latent itself (origin 0, basis I): the lecture's [-2, 2]^2 grid. For a larger
latent use `axis_plane(L, (i, j))` (two coordinate axes through the origin: the prior's centre) or
`pca_plane(codes)` (the data codes' mean and top two principal directions scaled by their standard deviations,
so that u, v are in standard deviations: comparable between an AE and a VAE).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..config import check_choice
from .codes import decode

SPACINGS = ("uniform", "quantile")


def grid_values(n: int = 15, span: float = 2.0, spacing: str = "uniform") -> Tensor:
    """n coordinates per axis: `uniform`: linspace(-span, span, n); `quantile`: the normal quantiles
    Phi^-1(linspace(0.05, 0.95, n)) (equal prior mass between neighbours; `span` is not used)."""
    check_choice("spacing", spacing, SPACINGS)
    if n < 2:
        raise ValueError(f"a grid needs n >= 2 points per axis, got {n}")
    if spacing == "uniform":
        return torch.linspace(-span, span, n)
    return torch.special.ndtri(torch.linspace(0.05, 0.95, n, dtype=torch.float64)).float()


def axis_plane(latent_dim: int, dims: tuple[int, int] = (0, 1)) -> tuple[Tensor, Tensor]:
    """The plane of latent coordinates dims[0], dims[1] through the origin: (zeros(L), basis (2, L))."""
    i, j = dims
    if i == j or not (0 <= i < latent_dim and 0 <= j < latent_dim):
        raise ValueError(f"dims={dims}: expected two different latent dimensions in 0..{latent_dim - 1}")
    basis = torch.zeros(2, latent_dim)
    basis[0, i] = basis[1, j] = 1.0
    return torch.zeros(latent_dim), basis


def pca_plane(codes: Tensor) -> tuple[Tensor, Tensor]:
    """(mean (L,), basis (2, L)): the top two principal directions of `codes` (N, L), each scaled by the
    standard deviation of the codes along it. Principal directions come from the SVD of the centred codes."""
    codes = torch.as_tensor(codes, dtype=torch.float64)
    if codes.ndim != 2 or codes.shape[1] < 2 or len(codes) < 3:
        raise ValueError(f"a PCA plane needs at least 3 codes with >= 2 dimensions, got {tuple(codes.shape)}")
    mean = codes.mean(0)
    _, s, vt = torch.linalg.svd(codes - mean, full_matrices=False)
    std = s[:2] / (len(codes) - 1) ** 0.5
    return mean.float(), (vt[:2] * std[:, None]).float()  # (2, L)


def default_plane(latent_dim: int, codes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The latent itself when it is 2-D; else the PCA plane of `codes` when given, else axes 0 and 1."""
    if latent_dim == 2:
        return torch.zeros(2), torch.eye(2)
    if codes is not None:
        return pca_plane(codes)
    return axis_plane(latent_dim)


@torch.no_grad()
def manifold_grid(model: Any, n: int = 15, span: float = 2.0, spacing: str = "uniform",
                  plane: tuple[Tensor, Tensor] | None = None, labels: Tensor | int | None = None
                  ) -> tuple[Tensor, Tensor]:
    """Decode an n x n grid on `plane` (default: `default_plane(model.latent_dim)`). Returns images in [0, 1]
    (n*n, C, H, W) in row-major order — u grows left to right, v grows bottom to top, like a plot — and the
    latent points (n*n, L). `labels`: one class (int) or n*n classes for a conditional model."""
    L = model.latent_dim
    if L is None:
        raise ValueError("this model has no latent_dim; a manifold grid needs a latent space")
    origin, basis = plane if plane is not None else default_plane(L)
    origin, basis = torch.as_tensor(origin, dtype=torch.float32), torch.as_tensor(basis, dtype=torch.float32)
    if origin.shape != (L,) or basis.shape != (2, L):
        raise ValueError(f"a plane is (origin ({L},), basis (2, {L})); got {tuple(origin.shape)}, "
                         f"{tuple(basis.shape)}")
    vals = grid_values(n, span, spacing)
    v, u = torch.meshgrid(vals.flip(0), vals, indexing="ij")  # (n, n) each; row 0 is the top (largest v)
    uv = torch.stack([u.reshape(-1), v.reshape(-1)], 1)  # (n*n, 2)
    z = origin + uv @ basis  # (n*n, L)
    if isinstance(labels, int):
        labels = torch.full((len(z),), labels, dtype=torch.long)
    return decode(model, z, labels), z
