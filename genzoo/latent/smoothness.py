"""How continuous is a latent space? Walk between the codes of random test pairs and look at what decodes.

Numbers (higher `confident_fraction`, lower `max_step_share` and `path_ratio` = smoother):

- `confident_fraction`: share of the interior path images (endpoints excluded) that the dataset's classifier
  (`genzoo.evaluate.classifier`) assigns to some class with probability >= `threshold` — a VAE's paths pass
  through digit-like images, a plain AE's through blends and blots.
- `mean_step_change`: mean absolute pixel change between consecutive images, (1 / (P (K-1) D)) sum |x_{t+1} - x_t|.
- `max_step_share`: mean over paths of max_t |dx_t|_1 / sum_t |dx_t|_1: 1 / (K - 1) when the picture changes
  evenly, 1 when it changes in one jump.
- `path_ratio`: mean over paths of sum_t |dx_t|_2 / |x_K - x_1|_2 (>= 1; 1 for a straight path in pixel space).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data import Dataset
from .codes import decode, encode, require
from .interpolate import path


def random_pairs(n: int, n_pairs: int, seed: int = 0, labels: Tensor | None = None,
                 different_class: bool = True) -> Tensor:
    """(n_pairs, 2) indices into 0..n-1, two different items each (of different classes when `labels` are given
    and `different_class`)."""
    if n < 2:
        raise ValueError(f"need at least 2 items to form pairs, got {n}")
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, n, (n_pairs,), generator=g)
    b = (a + torch.randint(1, n, (n_pairs,), generator=g)) % n  # never equal to a
    if labels is not None and different_class:
        labels = torch.as_tensor(labels)
        if len(torch.unique(labels[:n])) < 2:
            raise ValueError("different_class=True needs at least two classes among the items")
        same = labels[a] == labels[b]
        while same.any():
            b[same] = (a[same] + torch.randint(1, n, (int(same.sum()),), generator=g)) % n
            same = labels[a] == labels[b]
    return torch.stack([a, b], 1)


def _classifier(classifier: Any) -> Any:
    if isinstance(classifier, str):
        from ..evaluate.classifier import get_classifier
        return get_classifier(classifier)
    return classifier


@torch.no_grad()
def smoothness(model: Any, dataset: Dataset, n_pairs: int = 200, steps: int = 10, mode: str = "lerp",
               classifier: Any = None, threshold: float = 0.9, seed: int = 0, max_items: int | None = None
               ) -> dict[str, Any]:
    """The measures of the module docstring over `n_pairs` random pairs of `dataset` images (of different
    classes when labelled), `steps` images per path (endpoints included). `classifier`: None (pixel measures
    only), a dataset name for `genzoo.evaluate.classifier.get_classifier`, or an object with `probs(x01)`."""
    require(model, "encode", "decode")
    n = len(dataset) if max_items is None else min(max_items, len(dataset))
    pairs = random_pairs(n, n_pairs, seed, dataset.y)
    idx = torch.unique(pairs.reshape(-1))
    codes = torch.zeros(n, model.latent_dim)
    codes[idx] = encode(model, dataset.x[idx])
    z = torch.stack([path(codes[i], codes[j], steps, mode) for i, j in pairs.tolist()])  # (P, K, L)
    imgs = decode(model, z.reshape(-1, z.shape[-1]))
    imgs = imgs.reshape(n_pairs, steps, -1)  # (P, K, D)
    d = imgs.diff(dim=1)  # (P, K-1, D)
    l1 = d.abs().sum(-1)  # (P, K-1)
    direct = (imgs[:, -1] - imgs[:, 0]).norm(dim=-1).clamp_min(1e-8)
    out: dict[str, Any] = {
        "n_pairs": n_pairs, "steps": steps, "mode": mode,
        "mean_step_change": float(d.abs().mean()),
        "max_step_share": float((l1.max(1).values / l1.sum(1).clamp_min(1e-8)).mean()),
        "path_ratio": float((d.norm(dim=-1).sum(1) / direct).mean()),
    }
    clf = _classifier(classifier)
    if clf is not None:
        shape = (n_pairs, steps, *model.config.image_shape)
        conf = clf.probs(imgs.reshape(-1, *shape[2:])).max(-1).values.reshape(n_pairs, steps)
        out["confident_fraction"] = float((conf[:, 1:-1] >= threshold).float().mean())
        out["endpoint_confident_fraction"] = float((conf[:, [0, -1]] >= threshold).float().mean())
        out["threshold"] = threshold
    return out
