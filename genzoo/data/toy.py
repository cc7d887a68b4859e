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


def mode_quality(points: torch.Tensor, modes: torch.Tensor, std: float, min_share: float = 0.5) -> dict:
    """The toy-set metrics of Unrolled GAN / VEEGAN for samples `points` (N, 2) of a mixture with means
    `modes` (K, 2) and component std `std`: a sample is *high quality* when it lies within 3 std of its
    nearest mode; a mode is *covered* when it holds at least `min_share` of its fair share of the samples,
    i.e. >= min_share * N / K high-quality samples (0.5: the same half-a-fair-share rule as for MNIST classes).
    Returns {"modes_covered", "hq_share", "counts" (high-quality samples per mode), "nearest" (N,)}."""
    points = points.reshape(len(points), -1).double()
    dist = torch.cdist(points, modes.double())  # (N, K)
    dmin, nearest = dist.min(1)
    hq = dmin <= 3 * std
    counts = torch.bincount(nearest[hq], minlength=len(modes))
    return {"modes_covered": int((counts >= min_share * len(points) / len(modes)).sum()),
            "hq_share": float(hq.double().mean()), "counts": counts.tolist(), "nearest": nearest}


def plot(real: torch.Tensor, fake: torch.Tensor, field: torch.Tensor | None, lim: float, path: str | Path,
         title: str = "", field_label: str = "D(x)") -> Path:
    """A PNG of real (blue) and generated (red) 2-D points over `field` (res, res), D's output on
    [-lim, lim]^2 with row 0 at y = +lim. Matplotlib's Figure API (no pyplot state); written atomically."""
    from matplotlib.figure import Figure

    from .._io import atomic_path

    fig = Figure(figsize=(5.8, 4.6), dpi=110)
    ax = fig.add_subplot()
    if field is not None:
        im = ax.imshow(field.cpu().numpy(), extent=(-lim, lim, -lim, lim), cmap="Greys", alpha=0.8)
        fig.colorbar(im, ax=ax, label=field_label)
    r, f = real.reshape(len(real), -1).cpu(), fake.reshape(len(fake), -1).cpu()
    ax.scatter(r[:, 0], r[:, 1], s=3, c="tab:blue", label="real", alpha=0.6)
    ax.scatter(f[:, 0], f[:, 1], s=3, c="tab:red", label="generated", alpha=0.6)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    if title:
        ax.set_title(title, fontsize=8)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
