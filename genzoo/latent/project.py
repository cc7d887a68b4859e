"""2-D views of a latent space: the latent itself, PCA, t-SNE (scikit-learn) or UMAP (when installed).

A `Projection` maps both ways. Linear ones (latent, pca) are exact: plane -> latent is z = origin + xy @ basis.
t-SNE and UMAP have no inverse: a plane point decodes as the inverse-distance-weighted mean of the codes of its
k nearest map points, and a new code is placed at the weighted mean of the map points of its k nearest codes.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from torch import Tensor

from .._io import write_bytes
from ..config import check_choice

METHODS = ("auto", "latent", "pca", "tsne", "umap")


@dataclass(frozen=True)
class Projection:
    """`xy` (N, 2): the projected `codes` (N, L). Linear methods have `origin` (L,) and `basis` (2, L)."""

    method: str
    xy: np.ndarray
    codes: np.ndarray
    origin: np.ndarray | None = None
    basis: np.ndarray | None = None
    k: int = 8  # neighbours for the non-linear methods' approximate inverse

    @property
    def linear(self) -> bool:
        return self.basis is not None

    def to_latent(self, xy: np.ndarray) -> np.ndarray:
        """(M, 2) plane points -> (M, L) latent codes."""
        xy = np.atleast_2d(np.asarray(xy, dtype=np.float64))
        if self.linear:
            return self.origin + xy @ self.basis
        return _idw(self.xy, self.codes, xy, self.k)

    def to_plane(self, codes: np.ndarray) -> np.ndarray:
        """(M, L) codes -> (M, 2): the orthogonal projection onto a linear plane (least squares in the basis),
        or the weighted mean place of the nearest codes for t-SNE / UMAP."""
        codes = np.atleast_2d(np.asarray(codes, dtype=np.float64))
        if self.linear:
            return np.linalg.lstsq(self.basis.T, (codes - self.origin).T, rcond=None)[0].T
        return _idw(self.codes, self.xy, codes, self.k)


def _idw(keys: np.ndarray, values: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """Inverse-squared-distance-weighted mean of `values` at the k nearest `keys` of each query row."""
    d = np.linalg.norm(keys[None].astype(np.float64) - query[:, None], axis=2)  # (M, N)
    k = min(k, len(keys))
    idx = np.argsort(d, axis=1)[:, :k]  # (M, k)
    w = 1.0 / (np.take_along_axis(d, idx, 1) + 1e-9) ** 2
    return (w[..., None] * values[idx]).sum(1) / w.sum(1, keepdims=True)


def project(codes: Tensor | np.ndarray, method: str = "auto", seed: int = 0, perplexity: float = 30.0
            ) -> Projection:
    """Fit a 2-D projection of `codes` (N, L). `auto`: the latent itself when L == 2, else PCA."""
    check_choice("method", method, METHODS)
    z = np.asarray(codes.detach().cpu() if isinstance(codes, Tensor) else codes, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"a latent map needs codes of shape (N, L) with L >= 2, got {z.shape}")
    L = z.shape[1]
    if method == "auto":
        method = "latent" if L == 2 else "pca"
    if method == "latent":
        if L != 2:
            raise ValueError(f"method=latent needs a 2-D latent; this one has {L} dimensions (use pca, tsne "
                             f"or umap)")
        return Projection("latent", z.copy(), z, np.zeros(2), np.eye(2))
    if method == "pca":
        from sklearn.decomposition import PCA
        p = PCA(2, random_state=seed).fit(z)
        return Projection("pca", p.transform(z), z, p.mean_.copy(), p.components_.copy())
    if method == "tsne":
        from sklearn.manifold import TSNE
        xy = TSNE(2, init="pca", random_state=seed, perplexity=min(perplexity, (len(z) - 1) / 3)).fit_transform(z)
        return Projection("tsne", np.asarray(xy, dtype=np.float64), z)
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        raise ValueError("method=umap needs the umap-learn package (pip install umap-learn); use pca or tsne")
    xy = umap.UMAP(n_components=2, random_state=seed).fit_transform(z)
    return Projection("umap", np.asarray(xy, dtype=np.float64), z)


def latent_map_figure(xy: np.ndarray, labels: Sequence[int] | Tensor | None = None,
                      classes: Sequence[str] | None = None, title: str | None = None, size: float = 6.0):
    """A matplotlib Figure (no pyplot: safe in servers): the points coloured by class, with a legend."""
    import matplotlib
    from matplotlib.figure import Figure

    xy = np.asarray(xy)
    fig = Figure(figsize=(size, size), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6, color="tab:blue", linewidths=0)
    else:
        lab = np.asarray(labels)
        cmap = matplotlib.colormaps["tab10" if lab.max(initial=0) < 10 else "tab20"]
        for k in np.unique(lab):
            m = lab == k
            name = classes[k] if classes is not None and 0 <= k < len(classes) else str(k)
            ax.scatter(xy[m, 0], xy[m, 1], s=4, alpha=0.7, color=cmap(int(k) % cmap.N), label=name, linewidths=0)
        ax.legend(markerscale=3, fontsize=8, loc="best", framealpha=0.8)
    if title:
        ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    return fig


def save_latent_map(path: str | Path, xy: np.ndarray, labels: Sequence[int] | Tensor | None = None,
                    classes: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Write the latent map as a PNG (atomically)."""
    fig = latent_map_figure(xy, labels, classes, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes(path, buf.getvalue())
