"""Figure helpers for the claims: matplotlib Figures (no pyplot: no global state) written atomically as PNG."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .._io import write_bytes


def new_figure(rows: int, cols: int, size: float = 3.2, aspect: float = 1.0):
    """A Figure with rows x cols axes (axes[r][c]), each `size` inches high and `aspect` x `size` wide."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(cols * size * aspect, rows * size), dpi=90)
    axes = [[fig.add_subplot(rows, cols, r * cols + c + 1) for c in range(cols)] for r in range(rows)]
    return fig, axes


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes(path, buf.getvalue())


def scatter(ax: Any, xy: Any, labels: Any = None, title: str = "", s: float = 3) -> None:
    """Codes coloured by class (tab10)."""
    import matplotlib
    xy = np.asarray(xy)
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=s, alpha=0.6, linewidths=0)
    else:
        lab = np.asarray(labels)
        cmap = matplotlib.colormaps["tab10"]
        for k in np.unique(lab):
            m = lab == k
            ax.scatter(xy[m, 0], xy[m, 1], s=s, alpha=0.7, color=cmap(int(k) % 10), label=str(k), linewidths=0)
        ax.legend(markerscale=3, fontsize=6, loc="best", framealpha=0.6, ncol=2)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def images(ax: Any, x01: torch.Tensor, nrow: int, title: str = "") -> None:
    """A grid of images (N, C, H, W) in [0, 1] shown on one axis."""
    from ..images import grid
    a = grid(x01, nrow=nrow)
    ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def bars(ax: Any, names: Sequence[str], values: Sequence[float], title: str = "", ref: float | None = None) -> None:
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(values)), list(names), rotation=20, fontsize=7)
    if ref is not None:
        ax.axhline(ref, color="k", lw=0.8, ls="--")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
