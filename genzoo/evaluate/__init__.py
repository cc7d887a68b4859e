"""Evaluation: image similarity (MSE/PSNR/SSIM), domain classifiers, and one protocol for every model.

    from genzoo.evaluate import evaluate, get_classifier
    evaluate("runs/vae", metrics="fid,pr,modes,mse", n=2000)   # -> dict (see docs/evaluation.md)

Domain FID/KID use genzoo's own small classifiers: not comparable with published Inception FIDs.
"""
from __future__ import annotations

from .classifier import DomainClassifier, get_classifier, train_classifier
from .image_metrics import mse, psnr, ssim
from .metrics import (classifier_score, density_coverage, extract, fid, frechet_distance, kid, mode_coverage,
                      precision_recall)
from .suite import GROUPS, compare_table, evaluate, format_result

__all__ = ["evaluate", "compare_table", "format_result", "GROUPS", "get_classifier", "train_classifier",
           "DomainClassifier", "mse", "psnr", "ssim", "extract", "fid", "frechet_distance", "kid",
           "precision_recall", "density_coverage", "classifier_score", "mode_coverage"]
