"""Evaluation: image similarity (MSE/PSNR/SSIM), domain classifiers, sample and representation metrics."""
from __future__ import annotations

from .image_metrics import mse, psnr, ssim

__all__ = ["mse", "psnr", "ssim"]
