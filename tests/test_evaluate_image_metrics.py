"""MSE / PSNR / SSIM against hand computations and an independent scipy implementation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genzoo.evaluate.image_metrics import batched, mse, psnr, ssim

C1, C2 = 0.01 ** 2, 0.03 ** 2


def test_psnr_and_mse_by_hand():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 0.1)
    y[1, 0, 0, 0] = 0.5  # image 1: fifteen errors of 0.1 and one of 0.5
    mse1 = (15 * 0.01 + 0.25) / 16
    assert mse(x, y).tolist() == pytest.approx([0.01, mse1], rel=1e-6)
    assert psnr(x, y).tolist() == pytest.approx([20.0, 10 * math.log10(1 / mse1)], rel=1e-5)
    assert psnr(x, y, data_range=255.0)[0].item() == pytest.approx(10 * math.log10(255 ** 2 / 0.01), rel=1e-5)
    assert math.isinf(psnr(x, x)[0].item())


def test_ssim_of_constant_images_is_the_luminance_term():
    # Constant images: every local variance and covariance is 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.3, 0.7
    x = torch.full((1, 1, 28, 28), a)
    y = torch.full((1, 1, 28, 28), b)
    assert ssim(x, y).item() == pytest.approx((2 * a * b + C1) / (a * a + b * b + C1), rel=1e-6)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-7)


def _ssim_loops(x: np.ndarray, y: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """Wang et al. 2004 written out with explicit loops over window positions (one 2-D grey image)."""
    k = np.arange(size) - (size - 1) / 2
    g = np.exp(-k ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            px, py = x[i:i + size, j:j + size], y[i:i + size, j:j + size]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            vals.append((2 * mx * my + C1) * (2 * cxy + C2) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2)))
    return float(np.mean(vals))


def test_ssim_matches_a_loop_reference_on_a_known_pair():
    rng = np.random.default_rng(0)
    x = rng.random((13, 14))
    y = np.clip(0.6 * x + 0.2 + 0.1 * rng.standard_normal((13, 14)), 0, 1)  # a distorted copy
    got = ssim(torch.tensor(x)[None, None], torch.tensor(y)[None, None]).item()
    assert got == pytest.approx(_ssim_loops(x, y), abs=1e-10)
    assert 0.1 < got < 0.99


def test_ssim_matches_scipy_gaussian_filter_per_image_and_channel():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(1)
    x = rng.random((3, 2, 28, 28))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)

    def ref(a, b):  # scipy's Gaussian filter (radius 5 = truncate 5/1.5), cropped to the 'valid' part
        f = lambda t: ndimage.gaussian_filter(t, 1.5, truncate=5 / 1.5, mode="constant")[5:-5, 5:-5]  # noqa: E731
        ma, mb = f(a), f(b)
        va, vb, cab = f(a * a) - ma ** 2, f(b * b) - mb ** 2, f(a * b) - ma * mb
        return ((2 * ma * mb + C1) * (2 * cab + C2) / ((ma ** 2 + mb ** 2 + C1) * (va + vb + C2))).mean()

    want = [np.mean([ref(x[i, c], y[i, c]) for c in range(2)]) for i in range(3)]
    got = ssim(torch.tensor(x), torch.tensor(y))
    assert got.tolist() == pytest.approx(want, abs=1e-9)
    assert batched(ssim, torch.tensor(x), torch.tensor(y), batch_size=2).tolist() == pytest.approx(want, abs=1e-9)


def test_ssim_orders_distortions_and_handles_small_images():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)  # smaller than the 11x11 window (the `digits` size)
    near = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    far = (x + 0.4 * torch.randn_like(x)).clamp(0, 1)
    assert (ssim(x, near) > ssim(x, far)).all()
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 4, abs=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 1, 28, 28), torch.rand(1, 1, 27, 28))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        psnr(torch.rand(28, 28), torch.rand(28, 28))


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    from genzoo.evaluate.image_metrics import gaussian_blur
    rng = np.random.default_rng(5)
    x = rng.random((2, 3, 12, 10))
    want = np.stack([[ndimage.gaussian_filter(x[i, c], 1.2, truncate=4 / 1.2, mode="constant") for c in range(3)]
                     for i in range(2)])  # radius 4 = the 9x9 window
    assert gaussian_blur(torch.tensor(x), 1.2).numpy() == pytest.approx(want, abs=1e-12)
