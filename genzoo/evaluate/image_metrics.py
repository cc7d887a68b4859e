"""Per-image similarity between two batches of images: MSE, PSNR and SSIM.

All functions take float tensors shaped (N, C, H, W) with values in [0, data_range] and return one value per
image, shape (N,); average them yourself (`.mean()`), so that a caller can also report spreads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"image batches must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim != 4:
        raise ValueError(f"expected images shaped (N, C, H, W), got {tuple(x.shape)}")


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per image: MSE_i = 1/(CHW) sum_{c,h,w} (x_i - y_i)^2. Returns (N,)."""
    _check_pair(x, y)
    return (x.double() - y.double()).pow(2).flatten(1).mean(1).to(x.dtype)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image, in dB: PSNR_i = 10 log10(data_range^2 / MSE_i).

    Identical images give +inf. Returns (N,).
    """
    err = mse(x, y).double()
    return (10.0 * torch.log10(data_range ** 2 / err)).to(x.dtype)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    """The normalised 1-D Gaussian window w_k = exp(-(k - c)^2 / (2 sigma^2)) / Z, k = 0..size-1, c = (size-1)/2."""
    k = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-k ** 2 / (2 * sigma ** 2))
    return w / w.sum()


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """Structural similarity per image (Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment:
    from error visibility to structural similarity", eq. 13), with their 11x11 Gaussian window (sigma 1.5):

        SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
        C1 = (k1 L)^2, C2 = (k2 L)^2, L = data_range,

    where mu, sigma^2 and sigma_xy are Gaussian-weighted local means, variances and covariance. The map is
    computed at every position where the window fits inside the image ("valid", as in the authors' MATLAB
    ssim_index.m) and averaged over positions and channels. Images smaller than the window use a window as
    large as the smaller side (rounded down to odd). Returns (N,) in [-1, 1]; identical images give 1.
    """
    _check_pair(x, y)
    n, c, h, w_ = x.shape
    size = min(window, h, w_)
    size -= 1 - size % 2  # odd
    g = gaussian_window(size, sigma)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, size, size)  # (C, 1, s, s), one window per channel
    xd, yd = x.double(), y.double()

    def local_mean(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, groups=c)  # (N, C, H-s+1, W-s+1)

    mu_x, mu_y = local_mean(xd), local_mean(yd)
    var_x = local_mean(xd * xd) - mu_x ** 2
    var_y = local_mean(yd * yd) - mu_y ** 2
    cov = local_mean(xd * yd) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return smap.flatten(1).mean(1).to(x.dtype)


def gaussian_blur(x: Tensor, sigma: float, size: int = 9) -> Tensor:
    """Blur each channel of (N, C, H, W) images with a `size` x `size` Gaussian window (zero padding, same
    size out): a controlled distortion for calibrating sample metrics."""
    c = x.shape[1]
    g = gaussian_window(size, sigma).to(x.dtype)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, size, size)  # (C, 1, s, s)
    return F.conv2d(x, kernel, padding=size // 2, groups=c)


def batched(fn, x: Tensor, y: Tensor, batch_size: int = 1000, **kw) -> Tensor:
    """Apply a per-image metric in chunks of `batch_size` images (bounded memory). Returns (N,)."""
    _check_pair(x, y)
    return torch.cat([fn(x[i:i + batch_size], y[i:i + batch_size], **kw) for i in range(0, len(x), batch_size)])


__all__ = ["mse", "psnr", "ssim", "gaussian_window", "gaussian_blur", "batched"]
