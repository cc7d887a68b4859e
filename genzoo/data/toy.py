"""2-D toy data for seeing mode collapse: `ring8` and `grid25`, mixtures of Gaussians as in Unrolled GAN
(Metz et al. 2017) and VEEGAN (Srivastava et al. 2017). Points are stored as float32 (N, 2, 1, 1); the label
is the mixture component."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from . import Dataset, register_source

N_TRAIN, N_TEST = 50_000, 10_000


def ring8_modes(radius: float = 2.0) -> torch.Tensor:
    """(8, 2): means equally spaced on a circle."""
    a = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return torch.stack([radius * torch.cos(a), radius * torch.sin(a)], 1).float()


def grid25_modes(spacing: float = 2.0) -> torch.Tensor:
    """(25, 2): means on a 5x5 grid {-4, -2, 0, 2, 4}^2."""
    g = (torch.arange(5, dtype=torch.float32) - 2) * spacing
    return torch.cartesian_prod(g, g)


TOY = {"ring8": (ring8_modes, 0.02), "grid25": (grid25_modes, 0.05)}


def mixture(name: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    modes_fn, std = TOY[name]
    modes = modes_fn()
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(len(modes), (n,), generator=g)
    x = modes[y] + std * torch.randn(n, 2, generator=g)
    return x, y


def _loader(name: str):
    def load(split: str, root: Path, download: bool = False) -> Dataset:
        n, seed = (N_TRAIN, 1) if split == "train" else (N_TEST, 2)
        x, y = mixture(name, n, seed)
        modes, std = TOY[name][0](), TOY[name][1]
        return Dataset(name, split, x[:, :, None, None], y, [str(i) for i in range(len(modes))],
                       {"kind": "points", "modes": modes.tolist(), "std": std})
    return load


register_source("ring8", "2-D toy: 8 Gaussians (std 0.02) on a circle of radius 2")(_loader("ring8"))
register_source("grid25", "2-D toy: 25 Gaussians (std 0.05) on a 5x5 grid")(_loader("grid25"))
