"""Image grids and files without torchvision: tensors in [0, 1] -> uint8 arrays -> PNG / .npy."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ._io import write_bytes


def to_uint8(x: Tensor) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] -> uint8 (N, H, W) for grey, (N, H, W, C) for colour."""
    a = (x.detach().cpu().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def grid(x: Tensor, nrow: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile N images (N, C, H, W) in [0, 1] into one uint8 picture (H', W') or (H', W', C), `nrow` per row."""
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    out = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = x[i]
    return to_uint8(out[None])[0]


def png_bytes(a: np.ndarray, scale: int = 1) -> bytes:
    from PIL import Image

    im = Image.fromarray(a)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(x: Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
    return write_bytes(path, png_bytes(grid(x, nrow), scale))


def save_images(x: Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """`.npy`: uint8 (N, H, W) / (N, H, W, C); `.png`: a grid. Anything else is an error."""
    path = Path(path)
    if path.suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, to_uint8(x))
        return write_bytes(path, buf.getvalue())
    if path.suffix == ".png":
        return save_grid(x, path, nrow)
    raise ValueError(f"{path}: unsupported output type {path.suffix!r}; expected .png or .npy")
