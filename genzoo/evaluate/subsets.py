"""Seeded random subsets for metrics: never the first N of a split (image folders and some datasets come
sorted by class, so a first-N slice can hold a single class).

Stratified where labels exist: class k of N_k images gets n_k = floor(n N_k / N) images, and the n - sum n_k
left over go one each to the classes with the largest remainders n N_k / N - n_k (ties: lower class index).
Within a class the images are a uniform random draw without replacement; the result is returned shuffled.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["subset_indices", "random_subset"]


def subset_indices(total: int, n: int, labels: Tensor | None = None, seed: int = 0) -> Tensor:
    """`min(n, total)` distinct indices into 0..total-1, seeded; per-class counts proportional (see above)."""
    if n < 0:
        raise ValueError(f"n={n}: expected a non-negative number of examples")
    g = torch.Generator().manual_seed(seed)
    if n >= total:
        return torch.arange(total)
    if labels is None:
        return torch.randperm(total, generator=g)[:n]
    labels = torch.as_tensor(labels).reshape(-1).long().cpu()
    if len(labels) != total:
        raise ValueError(f"{len(labels)} labels for {total} examples")
    classes, counts = torch.unique(labels, return_counts=True)
    exact = n * counts.double() / total
    take = exact.floor().long()
    left = n - int(take.sum())
    if left:
        rem = exact - take.double()
        order = sorted(range(len(classes)), key=lambda i: (-float(rem[i]), i))
        for i in order[:left]:
            take[i] += 1
    idx = []
    for c, k in zip(classes.tolist(), take.tolist()):
        members = torch.nonzero(labels == c).flatten()
        idx.append(members[torch.randperm(len(members), generator=g)[:k]])
    out = torch.cat(idx)
    return out[torch.randperm(len(out), generator=g)]


def random_subset(ds, n: int, seed: int = 0):
    """`ds.subset(subset_indices(len(ds), n, ds.y, seed))`: the whole dataset when it has at most n examples."""
    if n >= len(ds):
        return ds
    return ds.subset(subset_indices(len(ds), n, ds.y, seed))
