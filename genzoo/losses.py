"""Every loss is a small pure function with its equation (and source) in the docstring.

Conventions: `x` and `x_hat` have shape (B, ...); reconstruction losses are summed over the pixels of an
image and averaged over the batch ("per example, summed over pixels"), the normalisation the VAE papers use,
unless the name says `mean`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mse_sum(x_hat: Tensor, x: Tensor) -> Tensor:
    """Squared error per example: 1/B sum_b sum_i (x_hat_bi - x_bi)^2."""
    return F.mse_loss(x_hat, x, reduction="sum") / x.shape[0]


def bce_logits_sum(logits: Tensor, x: Tensor) -> Tensor:
    """Binary cross-entropy per example from logits l, x in [0, 1]:
    1/B sum_b sum_i -[x_bi log s(l_bi) + (1 - x_bi) log(1 - s(l_bi))], s the logistic sigmoid
    (the Bernoulli decoder's -log p(x|z))."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def pixel_mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error per pixel: 1/(B D) sum_b sum_i (x_hat_bi - x_bi)^2 (the number papers report as MSE)."""
    return F.mse_loss(x_hat, x)


def reconstruction(kind: str, out: Tensor, x: Tensor) -> Tensor:
    """`mse`: mse_sum on the decoder output; `bce`: bce_logits_sum with the decoder output as logits."""
    if kind == "mse":
        return mse_sum(out, x)
    if kind == "bce":
        return bce_logits_sum(out, x)
    raise ValueError(f"loss={kind!r} is not valid; expected 'mse' or 'bce'")


def dead_units(h: Tensor, threshold: float = 0.0) -> Tensor:
    """Number of code units never active on the batch: #{j : max_b |h_bj| <= threshold}.
    (A ReLU bottleneck unit that outputs 0 for every input passes no gradient and never recovers.)"""
    return (h.detach().abs().amax(0) <= threshold).sum()


# ---- autoencoder regularisers (sparse, contractive) ---------------------------------------------------


# ---- VAE ------------------------------------------------------------------------------------------------


# ---- GANs -----------------------------------------------------------------------------------------------
