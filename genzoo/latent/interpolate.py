"""Interpolation between latent points: straight lines (lerp) or great circles (slerp).

slerp(a, b; t) = sin((1 - t) theta) / sin(theta) a + sin(t theta) / sin(theta) b, theta = angle(a, b)
(Shoemake 1985; White 2016, "Sampling generative networks"). Under a Gaussian prior in many dimensions almost
all the mass lies near the sphere of radius sqrt(L); the midpoint of a straight line between two such points
is shorter (|a + b| / 2 ~ sqrt(L / 2)) and lands where the prior has few samples, while slerp between points of
equal norm keeps that norm all the way.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import check_choice
from .codes import decode, encode

MODES = ("lerp", "slerp")


def _t(t: Tensor | float) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)  # (K, 1)


def lerp(a: Tensor, b: Tensor, t: Tensor | float) -> Tensor:
    """(1 - t) a + t b for each t: a, b (L,), t (K,) -> (K, L)."""
    t = _t(t)
    out = (1 - t) * a.double() + t * b.double()
    return out.to(a.dtype)


def slerp(a: Tensor, b: Tensor, t: Tensor | float, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation (module docstring) for each t: a, b (L,), t (K,) -> (K, L). Falls back to lerp
    when a and b are (anti)parallel or one is zero, where the great circle is not defined."""
    t = _t(t)
    a64, b64 = a.double(), b.double()
    na, nb = a64.norm(), b64.norm()
    if na < eps or nb < eps:
        return lerp(a, b, t.reshape(-1))
    cos = torch.clamp(torch.dot(a64 / na, b64 / nb), -1.0, 1.0)
    theta = torch.arccos(cos)
    if torch.sin(theta) < eps:
        return lerp(a, b, t.reshape(-1))
    out = (torch.sin((1 - t) * theta) * a64 + torch.sin(t * theta) * b64) / torch.sin(theta)
    return out.to(a.dtype)


def path(za: Tensor, zb: Tensor, steps: int, mode: str = "lerp") -> Tensor:
    """`steps` points from za to zb inclusive, (steps, L)."""
    check_choice("mode", mode, MODES)
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (the two endpoints), got {steps}")
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    return (lerp if mode == "lerp" else slerp)(torch.as_tensor(za), torch.as_tensor(zb), t)


@torch.no_grad()
def interpolate(model: Any, xa: Tensor, xb: Tensor, steps: int = 10, mode: str = "lerp",
                labels: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
    """Encode two images (each (C, H, W) or (1, C, H, W); uint8 or model inputs), walk between their codes and
    decode: images in [0, 1] (steps, C, H, W) and the latent points (steps, L). Needs encode and decode.
    `labels` (class of a, class of b) for a conditional model: the one-hot class is interpolated linearly too."""
    xa, xb = (x if x.ndim == 4 else x[None] for x in (xa, xb))
    x = torch.cat([xa, xb])
    y = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
    za, zb = encode(model, x, y)
    z = path(za, zb, steps, mode)
    cond = None
    if y is not None:
        k = model.config.num_classes
        cond = lerp(F.one_hot(y[0], k).float(), F.one_hot(y[1], k).float(), torch.linspace(0, 1, steps))
    return decode(model, z, cond), z
