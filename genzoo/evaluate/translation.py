"""Evaluation of paired translation runs (pix2pix, SRResNet/SRGAN): outputs G(source) against the targets of
the test split.

Metric groups (`metrics=`, `genzoo evaluate --metrics`):

    l1, mse, psnr, ssim   mean per-image distance/similarity of output and target, both in [0, 1]
                          (image_metrics.py: PSNR 10 log10(1 / MSE), SSIM of Wang et al. 2004)
    labels                label preservation: the shipped domain classifier's accuracy on the outputs against
                          the source's label (and, for reference, on the targets themselves)
    fid, kid              domain FID/KID of the outputs against the test targets (genzoo's classifier features)
    bicubic               super-resolution only: the same metrics for bicubic upsampling of the source
                          (keys prefixed `bicubic_`), the baseline a model must beat

Bicubic: torch's `interpolate(mode="bicubic", align_corners=False)` (Keys' cubic convolution, a = -0.75,
borders replicated), clamped to [0, 1]. On the area-downsampled MNIST test set it gives mean per-image PSNR
20.61 dB (x2) and 14.70 dB (x4); Fashion-MNIST 19.41 and 16.08.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import data as gdata
from . import image_metrics as im
from . import metrics as M
from .subsets import random_subset

GROUPS = ("l1", "mse", "psnr", "ssim", "labels", "fid", "kid", "bicubic")
DISTANCE = ("l1", "mse", "psnr", "ssim")


def parse(metrics: str | list[str] | None) -> list[str]:
    if metrics is None or metrics == "all" or metrics == ["all"]:
        return list(GROUPS)
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    out = []
    for m in (s.strip().lower() for s in items if s.strip()):
        m = {"label": "labels", "label_accuracy": "labels", "baseline": "bicubic"}.get(m, m)
        if m not in GROUPS:
            raise ValueError(f"unknown metric {m!r} for a translation run; expected some of: {', '.join(GROUPS)}")
        if m not in out:
            out.append(m)
    return out


def bicubic(x01: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic upsampling of images in [0, 1] to `size` (H, W), clamped to [0, 1]."""
    return F.interpolate(x01.float(), size=size, mode="bicubic", align_corners=False).clamp(0, 1)


@torch.no_grad()
def translate_dataset(model, ds: gdata.Dataset, batch_size: int = 500) -> Tensor:
    """G(source) for every example of a paired dataset, as images in [0, 1] on the CPU, (N, C', H, W)."""
    model.eval()
    out = []
    for i in range(0, len(ds), batch_size):
        x = model.prepare(ds.x[i:i + batch_size].to(model.device))
        out.append(model.to_unit(model.translate(x)).float().cpu())
    return torch.cat(out)


def distances(out01: Tensor, target01: Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Mean per-image L1, MSE, PSNR (dB) and SSIM of outputs vs targets (both in [0, 1])."""
    l1 = (out01.double() - target01.double()).abs().flatten(1).mean(1)
    return {"l1": l1.mean().item(),
            "mse": im.batched(im.mse, out01, target01, batch_size).double().mean().item(),
            "psnr": im.batched(im.psnr, out01, target01, batch_size).double().mean().item(),
            "ssim": im.batched(im.ssim, out01, target01, batch_size).double().mean().item()}


@torch.no_grad()
def label_accuracy(classifier, images01: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Share of images the classifier assigns to `labels`."""
    pred = torch.cat([classifier.logits(images01[i:i + batch_size]).argmax(1)
                      for i in range(0, len(images01), batch_size)])
    return (pred == labels).double().mean().item()


def image_scores(images01: Tensor, ds: gdata.Dataset, groups: list[str], target01: Tensor, classifier,
                 real_features: Tensor | None, kid_subsets: int, kid_subset_size: int, seed: int,
                 batch_size: int) -> dict[str, float]:
    """The metrics of `groups` for one set of outputs (a model's, or bicubic's)."""
    res: dict[str, float] = {}
    if any(g in groups for g in DISTANCE):
        d = distances(images01, target01)
        res.update({k: v for k, v in d.items() if k in groups})
    if "labels" in groups and classifier is not None and ds.y is not None:
        res["label_accuracy"] = label_accuracy(classifier, images01, ds.y, batch_size)
    if real_features is not None and ("fid" in groups or "kid" in groups):
        ff = M.extract(classifier, images01, batch_size)
        if "fid" in groups:
            res["fid"] = M.fid(real_features, ff)
        if "kid" in groups:
            size = min(kid_subset_size, len(ff))
            res["kid"], res["kid_std"] = M.kid(real_features, ff, kid_subsets, size, seed)
    return res


def evaluate_translation(model, data: str, *, metrics: str | list[str] | None = None, n: int = 10_000,
                         seed: int = 0, batch_size: int = 500, root=None, run: Path | None = None,
                         classifier=None, kid_subsets: int = 100, kid_subset_size: int = 1000,
                         out: str | Path | None = None, strict: bool = False,
                         data_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a translation model on `n` examples of the test split of paired dataset `data` (a seeded random
    sample, stratified by class where it has labels: `subsets.random_subset(test, n, seed)`, never the first n)
    (loaded with the dataset loader's `data_options`, e.g. a run's scale= and crop= for sr:PATH).
    Returns the same record as `genzoo.evaluate.evaluate` (model_type, run, data, n, seed, extractor, metrics,
    skipped, note, seconds), so `format_result` and `compare_table` show it."""
    from .._io import write_json
    from .suite import DOMAIN_NOTE

    if getattr(model, "data_kind", "paired") == "unpaired":  # two domains, per direction: evaluate/cycle.py
        from .cycle import evaluate_cycle
        return evaluate_cycle(model, data, metrics=metrics, n=n, seed=seed, batch_size=batch_size, root=root,
                              run=run, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, out=out,
                              strict=strict, data_options=data_options)
    t0 = time.perf_counter()
    groups = parse(metrics)
    test = gdata.load(data, "test", root=root, **(data_options or {}))
    if test.kind != "paired":
        raise ValueError(f"{data} is not a paired dataset ({test.kind}); a {model.model_type} run is evaluated on "
                         f"paired data such as {', '.join(gdata.names_of_kind('paired')[:4])}")
    test = random_subset(test, n, seed)
    target01 = test.target.float() / 255
    tshape = tuple(target01.shape[1:])
    if classifier is None and tshape == (1, 28, 28):
        from .classifier import CLASSIFIER_FOR, get_classifier
        base = test.meta.get("base", data)
        classifier = get_classifier(base) if base in CLASSIFIER_FOR else None
    is_sr = tuple(test.x.shape[-2:]) != tuple(target01.shape[-2:])
    result: dict[str, Any] = {"model_type": model.model_type, "run": str(run) if run else None, "data": data,
                              "n": len(test), "seed": seed,
                              "extractor": M.extractor_name(classifier) if classifier is not None else None,
                              "metrics": {}, "skipped": {}}
    skipped = result["skipped"]
    for g in groups:
        why = None
        if g in ("labels", "fid", "kid") and classifier is None:
            why = f"no shipped domain classifier for {data} (targets {tshape})"
        elif g == "labels" and test.y is None:
            why = f"{data} has no labels"
        elif g == "bicubic" and not is_sr:
            why = "not super-resolution (sources and targets have the same size)"
        if why:
            if strict:
                raise ValueError(f"metric {g!r} does not apply: {why}")
            skipped[g] = why
    todo = [g for g in groups if g not in skipped]
    torch.manual_seed(seed)
    outputs = translate_dataset(model, test, batch_size)
    if tuple(outputs.shape[1:]) != tshape:
        raise ValueError(f"the model's outputs are shaped {tuple(outputs.shape[1:])} but {data}'s targets {tshape}")
    real_features = None
    if classifier is not None and ("fid" in todo or "kid" in todo):
        real_features = M.extract(classifier, target01, batch_size)
    res = result["metrics"]
    args = (kid_subsets, kid_subset_size, seed, batch_size)
    res.update(image_scores(outputs, test, todo, target01, classifier, real_features, *args))
    if "labels" in todo:
        res["target_label_accuracy"] = label_accuracy(classifier, target01, test.y, batch_size)
    if "bicubic" in todo:
        up = bicubic(test.x.float() / 255, tshape[1:])
        if up.shape[1] != tshape[0]:
            up = up.expand(-1, tshape[0], -1, -1) if up.shape[1] == 1 else up.mean(1, keepdim=True)
        base = image_scores(up, test, todo, target01, classifier, real_features, *args)
        res.update({f"bicubic_{k}": v for k, v in base.items()})
        if "psnr" in res and "psnr" in base:
            res["psnr_gain_db"] = res["psnr"] - base["psnr"]
        if "ssim" in res and "ssim" in base:
            res["ssim_gain"] = res["ssim"] - base["ssim"]
    if "fid" in todo or "kid" in todo:
        result["note"] = DOMAIN_NOTE
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if out is not None:
        write_json(out, result)
    return result


__all__ = ["evaluate_translation", "translate_dataset", "distances", "bicubic", "label_accuracy", "GROUPS"]
