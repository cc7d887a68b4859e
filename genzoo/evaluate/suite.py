"""One evaluation protocol for every model: `evaluate(run_dir_or_model, metrics=[...])` -> dict.

Metric groups (names for `metrics=` and `genzoo evaluate --metrics`) and what each needs:

    fid, kid, pr, dc, is, modes   a model that can `sample` and a feature extractor (the shipped domain
                                  classifier of the dataset, or `extractor=` any torch module); `is` and `modes`
                                  need class probabilities (`extractor.probs`). `coverage` is an alias of
                                  `modes` (mode coverage); Naeem et al.'s coverage is in `dc`.
    mse, psnr, ssim               a model that can `reconstruct`; on the test split, images in [0, 1]
    elbo, nll                     a model with a likelihood (vae, cvae; genzoo/evaluate/likelihood.py): nats per
                                  image on the test split, binarised the way the run was trained; a model with its
                                  own bound `nll_bound(x)` (ddpm: the variational bound, Ho et al. eq. 5) gives
                                  `nll` as that upper bound on -log p(x) and `nll_bits_per_dim`
    probe, knn                    a model that can `encode`, and a labelled dataset

The reference set is a seeded random sample of `n` images of the test split (stratified by class where it has
labels; all of it when it has fewer; genzoo/evaluate/subsets.py); as many samples are drawn, seeded with `seed`.
The probe / k-NN training codes are a stratified random sample of `n` training images the same way.
Conditional models (cvae) reconstruct with the true labels, as their likelihood metrics do. FID grows as n shrinks (it is biased), so compare FIDs only at equal n.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import data as gdata
from . import image_metrics as im
from . import metrics as M
from .subsets import random_subset

SAMPLE_GROUPS = ("fid", "kid", "pr", "dc", "is", "modes")
RECON_GROUPS = ("mse", "psnr", "ssim")
LIKELIHOOD_GROUPS = ("elbo", "nll")
REPR_GROUPS = ("probe", "knn")
GROUPS = SAMPLE_GROUPS + RECON_GROUPS + LIKELIHOOD_GROUPS + REPR_GROUPS
ALIASES = {"coverage": "modes", "precision": "pr", "recall": "pr", "density": "dc", "classifier_score": "is"}
DOMAIN_NOTE = ("domain FID/KID use genzoo's own small classifier as the feature extractor: not comparable with "
               "published (Inception) FIDs")


def parse_metrics(metrics: str | list[str] | None) -> list[str]:
    """'fid,kid' or ['fid', 'kid'] -> canonical group names (None or 'all' -> every group)."""
    if metrics is None or metrics == "all" or metrics == ["all"]:
        return list(GROUPS)
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    out: list[str] = []
    for m in (s.strip().lower() for s in items if s.strip()):
        m = ALIASES.get(m, m)
        if m not in GROUPS:
            raise ValueError(f"unknown metric {m!r}; expected some of: {', '.join(GROUPS + tuple(ALIASES))}")
        if m not in out:
            out.append(m)
    return out


def metric_label(key: str, extractor: str | None) -> str:
    """How a result key is printed: FID and KID always as 'domain ...' with the extractor named."""
    if key in ("fid", "kid", "kid_std"):
        return f"domain {key.upper().replace('_STD', ' std')} (extractor: {extractor})"
    return key


# ---- pieces ----------------------------------------------------------------------------------------------
@torch.no_grad()
def draw_samples(model, n: int, seed: int = 0, batch_size: int = 500, **kw: Any) -> Tensor:
    """n samples in [0, 1] (N, C, H, W), seeded. Class-conditional models get balanced labels 0, 1, ..., K-1,
    0, 1, ... so that mode coverage measures the model, not the label draw."""
    g = torch.Generator().manual_seed(seed)
    asked = requested_labels(model, n)
    out = []
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        labels = None if asked is None else asked[i:i + b]
        out.append(model.to_unit(model.sample(b, labels=labels, generator=g, **kw)).float().cpu())
    return torch.cat(out)


def requested_labels(model, n: int) -> Tensor | None:
    """The balanced labels 0, 1, ..., K-1, 0, 1, ... that `draw_samples` asks a class-conditional model for
    (None for an unconditional one)."""
    if not getattr(model.config, "conditional", False):
        return None
    return torch.arange(n) % model.config.num_classes


@torch.no_grad()
def reconstruction_metrics(model, ds: gdata.Dataset, batch_size: int = 500) -> dict[str, float]:
    """Mean per-image MSE, PSNR (dB) and SSIM between test images and their reconstructions, both in [0, 1]."""
    errs: dict[str, list[Tensor]] = {"mse": [], "psnr": [], "ssim": []}
    conditional = bool(getattr(model, "conditional", False))
    if conditional and ds.y is None:
        raise ValueError(f"a conditional {model.model_type} model reconstructs with class labels; {ds.name} has none")
    for xb, yb in ds.batches(batch_size):
        x = model.prepare(xb.to(model.device))
        kw = {"labels": yb.to(model.device)} if conditional else {}  # the true labels, as the likelihood uses
        x01, r01 = model.to_unit(x).float().cpu(), model.to_unit(model.reconstruct(x, **kw)).float().cpu()
        errs["mse"].append(im.mse(r01, x01))
        errs["psnr"].append(im.psnr(r01, x01))
        errs["ssim"].append(im.ssim(r01, x01))
    return {k: torch.cat(v).double().mean().item() for k, v in errs.items()}


def knn_accuracy(train_codes, train_y, test_codes, test_y, k: int = 5) -> float:
    """Test accuracy of a k-nearest-neighbour classifier (Euclidean, majority vote; scikit-learn) on codes."""
    from sklearn.neighbors import KNeighborsClassifier
    clf = KNeighborsClassifier(n_neighbors=k).fit(torch.as_tensor(train_codes).flatten(1).numpy(),
                                                  torch.as_tensor(train_y).numpy())
    return float(clf.score(torch.as_tensor(test_codes).flatten(1).numpy(), torch.as_tensor(test_y).numpy()))


def _likelihood(model, group: str, ds: gdata.Dataset, k: int, settings: dict[str, Any]) -> dict[str, float]:
    """ELBO or IWAE NLL (nats per image) on `ds`, binarised as the run was trained (`settings`)."""
    from . import likelihood
    if callable(getattr(model, "nll_bound", None)):  # diffusion: its variational bound (nats per image)
        return _bound(model, group, ds, settings)
    if group == "elbo":
        return _as_dict("elbo", likelihood.elbo(model, ds, **settings))
    return _as_dict("nll", likelihood.iwae_nll(model, ds, k, **settings))


@torch.no_grad()
def _bound(model, group: str, ds: gdata.Dataset, settings: dict[str, Any], batch_size: int = 250) -> dict[str, float]:
    """A model's own variational bound `nll_bound(x, generator=, labels=)` on -log p(x) (a DDPM's, Ho et al.
    2020 eq. 5): `nll` (nats per image, an upper bound) and `nll_bits_per_dim`; `elbo` is its negative."""
    import math

    from .likelihood import _batches
    g = torch.Generator().manual_seed(int(settings.get("seed", 0)) + 7919)
    total, count = 0.0, 0
    for x, kw in _batches(model, ds, None, batch_size, settings.get("binarize", "none"), settings.get("seed", 0)):
        total += float(model.nll_bound(x, generator=g, **kw).double().sum())
        count += len(x)
    nll = total / count
    if group == "elbo":
        return {"elbo": -nll}
    return {"nll": nll, "nll_bits_per_dim": nll / (math.prod(ds.shape) * math.log(2))}


def _as_dict(key: str, value: Any) -> dict[str, float]:
    return {f"{key}_{k}" if k != key else k: v for k, v in value.items()} if isinstance(value, dict) else {key: float(value)}


def _why_not(group: str, model, extractor, has_labels: bool) -> str | None:
    """None when `group` applies to the model, else the reason it is skipped."""
    if group in SAMPLE_GROUPS:
        if not model.can("sample"):
            return f"{model.model_type or type(model).__name__} cannot sample"
        if extractor is None:
            return ("no feature extractor for this dataset: train one with `genzoo classifier train DATASET` "
                    "(evaluate then finds it), or pass extractor=")
        if group in ("is", "modes") and not hasattr(extractor, "probs"):
            return f"extractor {M.extractor_name(extractor)!r} gives no class probabilities"
    elif group in RECON_GROUPS and not model.can("reconstruct"):
        return f"{model.model_type or type(model).__name__} cannot reconstruct"
    elif group in REPR_GROUPS:
        if not model.can("encode"):
            return f"{model.model_type or type(model).__name__} cannot encode"
        if not has_labels:
            return "the dataset has no labels"
    elif group in LIKELIHOOD_GROUPS:
        if callable(getattr(model, "nll_bound", None)):
            return None
        from .likelihood import require_likelihood
        try:
            require_likelihood(model)
        except ValueError as e:
            return str(e)
    return None


def default_extractor(dataset: str, image_shape: tuple[int, ...] | None = None):
    """The extractor for `dataset`: the shipped domain classifier, else the one `genzoo classifier train
    DATASET` stored in $GENZOO_HOME/classifiers/ (named with its test accuracy), else None. None too when it
    takes another image shape than `image_shape`."""
    from .classifier import find_classifier
    clf = find_classifier(dataset)
    if clf is not None and image_shape is not None and tuple(clf.image_shape) != tuple(image_shape):
        return None
    return clf


def _load_like(model, data: str, split: str, root, options: dict | None = None) -> gdata.Dataset:
    """A split of `data` with its data `options`; an image folder is resized to the model's image size (a
    run trained with --image-size before run.json recorded data options)."""
    ds = gdata.load(data, split, root=root, **(options or {}))
    shape = tuple(getattr(model.config, "image_shape", ()) or ())
    if data.startswith("folder:") and not options and len(shape) == 3 and tuple(ds.shape) != shape:
        ds = gdata.load(data, split, size=(shape[1], shape[2]), channels=shape[0])
    return ds


# ---- the protocol ----------------------------------------------------------------------------------------
def evaluate(run_or_model, metrics: str | list[str] | None = None, data: str | None = None, n: int = 10_000,
             k: int = 1000, extractor=None, seed: int = 0, batch_size: int = 500, root=None,
             out: str | Path | None = None, strict: bool = False, k_pr: int = 3, k_dc: int = 5,
             kid_subsets: int = 100, kid_subset_size: int = 1000, threads: int | None = None,
             data_options: dict[str, Any] | None = None,
             sample_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a run directory (or a built model with `data=`) on the test split of its dataset, loaded with
    the run's data options (run.json "data_options"; or `data_options` with a model or another `data`).

    Returns {"model_type", "run", "data", "n", "seed", "extractor", "metrics": {key: value}, "skipped":
    {group: reason}, "note", "seconds"}; with `out`, also writes it as JSON. Groups that do not apply to the
    model are skipped with the reason (with `strict=True` they raise instead). `k` is the number of importance
    samples of the IWAE NLL; `k_pr`/`k_dc` the neighbour counts of precision/recall and density/coverage.
    `sample_settings`: keywords of the model's `sample` for the sample metrics (e.g. {"truncation": 0.7}; a
    diffusion model's {"steps": 50, "sampler": "ddim", "guidance": 2}), recorded in the result with the
    sampling's wall seconds. A class-conditional model is asked for balanced labels, and `modes` then also
    gives `label_accuracy`: the share of samples the classifier assigns to the class asked for.
    """
    from .._io import write_json
    from ..train.rundir import RUN

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    run = None
    if isinstance(run_or_model, (str, Path)):
        import genzoo
        from .._io import read_json
        run = Path(run_or_model)
        model = genzoo.load(run)
        if data_options is None:
            data, data_options = gdata.run_data(run, data)
        data = data or read_json(run / RUN)["data"]
    else:
        model = run_or_model.eval()
        if data is None:
            raise ValueError("evaluate(model, ...): pass data= (the dataset name) when giving a model, not a run")
    if n < 2:
        raise ValueError(f"n={n}: expected at least 2 images")
    if model.can("translate") and model.data_kind in ("paired", "unpaired"):  # pix2pix, srgan, cyclegan
        from .translation import evaluate_translation
        return evaluate_translation(model, data, metrics=metrics, n=n, seed=seed, batch_size=batch_size, root=root,
                                    run=run, classifier=extractor, kid_subsets=kid_subsets,
                                    kid_subset_size=kid_subset_size, out=out, strict=strict,
                                    data_options=data_options)
    groups = parse_metrics(metrics)
    sample_settings = dict(sample_settings or {})
    model.check_sample_settings(sample_settings, str(run) if run else "evaluate")
    test = _load_like(model, data, "test", root, data_options)
    test = random_subset(test, n, seed)
    if extractor is None and any(g in SAMPLE_GROUPS for g in groups):
        extractor = default_extractor(data, tuple(test.shape))
    ext_name = M.extractor_name(extractor) if extractor is not None else None
    ext_info = getattr(extractor, "info", None) if extractor is not None else None

    result: dict[str, Any] = {"model_type": model.model_type, "run": str(run) if run else None, "data": data,
                              "n": len(test), "seed": seed, "extractor": ext_name, "metrics": {}, "skipped": {}}
    if isinstance(ext_info, dict) and "test_accuracy" in ext_info:
        result["extractor_test_accuracy"] = ext_info["test_accuracy"]
    todo = []
    for g in groups:
        why = _why_not(g, model, extractor, test.y is not None)
        if why is None:
            todo.append(g)
        elif strict:
            raise ValueError(f"metric {g!r} does not apply: {why}")
        else:
            result["skipped"][g] = why
    res = result["metrics"]

    if any(g in SAMPLE_GROUPS for g in todo):
        torch.manual_seed(seed)
        t_sample = time.perf_counter()
        fake = draw_samples(model, len(test), seed=seed, batch_size=batch_size, **sample_settings)
        result["sampling_seconds"] = round(time.perf_counter() - t_sample, 2)
        if sample_settings:
            result["sample_settings"] = sample_settings
        real01 = test.x.float() / 255
        if tuple(fake.shape[1:]) != tuple(real01.shape[1:]):
            raise ValueError(f"samples are shaped {tuple(fake.shape[1:])} but {data} images {tuple(real01.shape[1:])}")
        feats = [g for g in todo if g in ("fid", "kid", "pr", "dc")]
        if feats:
            fr, ff = M.extract(extractor, real01, batch_size), M.extract(extractor, fake, batch_size)
            if "fid" in todo:
                res["fid"] = M.fid(fr, ff)
            if "kid" in todo:
                res["kid"], res["kid_std"] = M.kid(fr, ff, kid_subsets, kid_subset_size, seed)
            if "pr" in todo:
                res["precision"], res["recall"] = M.precision_recall(fr, ff, k_pr)
            if "dc" in todo:
                res["density"], res["coverage"] = M.density_coverage(fr, ff, k_dc)
        if "is" in todo or "modes" in todo:
            probs = M.extract(extractor, fake, batch_size, what="probs")
            if "is" in todo:
                res["classifier_score"], res["classifier_score_std"] = M.classifier_score(probs)
            if "modes" in todo:
                res.update(M.mode_coverage(probs))
                asked = requested_labels(model, len(fake))
                if asked is not None and probs.shape[1] == model.config.num_classes:
                    res["label_accuracy"] = float((probs.argmax(1) == asked).double().mean())
        result["note"] = DOMAIN_NOTE

    if any(g in RECON_GROUPS for g in todo):
        rec = reconstruction_metrics(model, test, batch_size)
        res.update({g: rec[g] for g in RECON_GROUPS if g in todo})

    if any(g in LIKELIHOOD_GROUPS for g in todo):
        from .likelihood import likelihood_settings
        ll = likelihood_settings(run) if run else {}
        result["binarize"] = ll.get("binarize", "none")
        for g in LIKELIHOOD_GROUPS:
            if g in todo:
                res.update(_likelihood(model, g, test, k, ll))
        if callable(getattr(model, "nll_bound", None)):
            result["likelihood_note"] = ("nll is the variational bound (Ho et al. 2020, eq. 5; discretised decoder, "
                                         "middle sum from 100 stratified timesteps): an upper bound on -log p(x)")

    if any(g in REPR_GROUPS for g in todo):
        from ..applications import encode_dataset, linear_probe
        train = _load_like(model, data, "train", root)
        train = random_subset(train, n, seed + 1)
        ctr, cte = encode_dataset(model, train, batch_size), encode_dataset(model, test, batch_size)
        if "probe" in todo:
            res["probe_accuracy"] = linear_probe(ctr, train.y, cte, test.y)
        if "knn" in todo:
            res["knn_accuracy"] = knn_accuracy(ctr, train.y, cte, test.y)

    result["seconds"] = round(time.perf_counter() - t0, 2)
    if out is not None:
        write_json(out, result)
    return result


# ---- presenting ------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def format_result(result: dict[str, Any]) -> str:
    """A two-column markdown table of one evaluation, FID/KID labelled as domain scores with the extractor."""
    lines = [f"{result.get('model_type')} on {result['data']} test split (n={result['n']}, seed={result['seed']})",
             "", "| metric | value |", "| --- | --- |"]
    for key, v in result["metrics"].items():
        lines.append(f"| {metric_label(key, result.get('extractor'))} | {_fmt(v)} |")
    for g, why in result.get("skipped", {}).items():
        lines.append(f"| {g} | skipped: {why} |")
    if result.get("note"):
        lines += ["", f"note: {result['note']}"]
    if result.get("likelihood_note"):
        lines += ["", f"note: {result['likelihood_note']}"]
    return "\n".join(lines)


def compare_table(results: list[dict[str, Any]], names: list[str] | None = None) -> str:
    """One markdown table: a row per evaluation, a column per metric any of them has ('-' where it does not
    apply). Histograms and spreads (*_std) are left out; FID/KID headers name the extractor(s)."""
    names = names or [r.get("run") or r.get("model_type") or "?" for r in results]
    keys: list[str] = []
    for r in results:
        keys += [k for k, v in r["metrics"].items()
                 if k not in keys and not isinstance(v, list) and not k.endswith("_std")]
    exts = sorted({r.get("extractor") for r in results if r.get("extractor")})
    head = [metric_label(k, ", ".join(exts) or None) for k in keys]
    lines = ["| run | model | data | n | " + " | ".join(head) + " |", "|" + " --- |" * (4 + len(keys))]
    for name, r in zip(names, results):
        cells = [_fmt(r["metrics"][k]) if k in r["metrics"] else "-" for k in keys]
        lines.append(f"| {name} | {r.get('model_type')} | {r['data']} | {r['n']} | " + " | ".join(cells) + " |")
    if any(k in keys for k in ("fid", "kid")):
        lines += ["", f"note: {DOMAIN_NOTE}"]
        if len({r["n"] for r in results}) > 1:
            lines.append("note: the runs were evaluated at different n; FID is biased by the sample size, so "
                         "compare FIDs only at equal n (re-evaluate with --metrics ... --n N)")
    return "\n".join(lines)


__all__ = ["evaluate", "parse_metrics", "metric_label", "draw_samples", "reconstruction_metrics", "knn_accuracy",
           "format_result", "compare_table", "GROUPS", "DOMAIN_NOTE"]
