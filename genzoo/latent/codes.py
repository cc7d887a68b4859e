"""Encoding and decoding in batches, for any model with the `encode` / `decode` capabilities."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..data import Dataset


def require(model: Any, *capabilities: str) -> None:
    """Raise a clear ValueError unless `model` can do every one of `capabilities`."""
    missing = [c for c in capabilities if not model.can(c)]
    if missing:
        raise ValueError(f"a {getattr(model, 'model_type', type(model).__name__)} model cannot "
                         f"{' or '.join(missing)}; this needs a model that can {' and '.join(capabilities)}")


def as_input(model: Any, x: Tensor) -> Tensor:
    """Dataset images (uint8 pixels) -> model inputs on the model's device; float tensors pass unchanged."""
    x = torch.as_tensor(x)
    x = model.prepare(x) if x.dtype == torch.uint8 else x.float()
    return x.to(model.device)


def _labels_kw(labels: Tensor | None, sl: slice) -> dict[str, Tensor]:
    """labels= only when given (a plain AE's code/decode take no labels; a conditional model needs them)."""
    return {} if labels is None else {"labels": torch.as_tensor(labels)[sl]}


@torch.no_grad()
def encode(model: Any, x: Tensor, labels: Tensor | None = None, batch_size: int = 500) -> Tensor:
    """One latent point per image: `model.code` (an AE's code, a VAE's posterior mean). x: uint8 dataset
    images or model inputs (N, C, H, W). Returns (N, L) on the CPU."""
    require(model, "encode")
    out = [model.code(as_input(model, x[i:i + batch_size]), **_labels_kw(labels, slice(i, i + batch_size)))
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).float().cpu()


@torch.no_grad()
def decode(model: Any, z: Tensor, labels: Tensor | None = None, batch_size: int = 500) -> Tensor:
    """Latent points (N, L) -> images in [0, 1], (N, C, H, W) on the CPU. `labels`: class indices (N,) or soft
    one-hots (N, K), for conditional models."""
    require(model, "decode")
    z = torch.as_tensor(z, dtype=torch.float32)
    if z.ndim != 2 or (model.latent_dim is not None and z.shape[1] != model.latent_dim):
        raise ValueError(f"expected latent points of shape (N, {model.latent_dim}), got {tuple(z.shape)}")
    out = [model.to_unit(model.decode(z[i:i + batch_size].to(model.device),
                                      **_labels_kw(labels, slice(i, i + batch_size))))
           for i in range(0, len(z), batch_size)]
    return torch.cat(out).float().cpu() if out else torch.zeros(0, *model.config.image_shape)


def encode_dataset(model: Any, dataset: Dataset, n: int | None = None, batch_size: int = 500,
                   use_labels: bool = False, seed: int | None = None) -> tuple[Tensor, Tensor | None]:
    """Codes of `n` images of `dataset` (all when None) and their labels: ((n, L), (n,) or None). With `seed`,
    the n images are a seeded random sample, stratified by class when there are labels (use it for anything
    measured: folders come sorted by class); without, the first n (index i is test image i, for displays).
    `use_labels`: also pass the labels to the encoder (conditional models)."""
    if n is None:
        sub = dataset
    elif seed is not None:
        from ..evaluate.subsets import random_subset
        sub = random_subset(dataset, n, seed)
    else:
        sub = dataset.subset(slice(0, n))
    z = encode(model, sub.x, sub.y if use_labels else None, batch_size)
    return z, sub.y


def read_image(path: str | Path, image_shape: tuple[int, int, int]) -> Tensor:
    """An image file -> uint8 (1, C, H, W) in the model's shape: converted to grey or RGB, resized to (H, W)."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = image_shape
    try:
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such image file") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image file PIL can read (expected PNG or JPEG)") from None
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
    if a.shape[0] != c:
        raise ValueError(f"{path}: expected {c} channel(s), got {a.shape[0]}")
    return torch.from_numpy(a.copy())[None]
