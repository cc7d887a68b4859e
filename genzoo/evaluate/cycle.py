"""Per-direction metrics of a two-direction (unpaired) translation model such as CycleGAN.

For each direction d in `model.directions` (a2b: source domain A, target domain B; b2a the reverse), on the
test splits of an unpaired dataset:

    label_preservation_d   the target domain's shipped classifier labels the translations T(x); the share
                           that equals x's own label (only when both domains have the same classes)
    source_accuracy_d      the same classifier on the *untranslated* sources (the identity map), for reference
    cycle_l1_d             mean |T'(T(x)) - x| per pixel, images in [0, 1] (T' the reverse translation)
    fid_d, kid_d           domain FID/KID of the translations against the target domain's test images, with
                           the target domain's classifier as the feature extractor
    fid_identity_d, ...    the same for the untranslated sources: the baseline a translation must beat
    fid_ratio_d            fid_d / fid_identity_d

The sources are `n` test images of the source domain, the reference set `n` test images of the target domain:
seeded random samples, stratified by class where a domain has labels (`subsets.subset_indices`; domain A drawn
with `seed`, domain B with `seed + 1`, the same images in both directions), never the first n, since image
folders come sorted by class; both use all images when they hold fewer. FID is biased by the sample size:
compare it only at equal n (the identity baseline is measured at the same n as the translations).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import data as gdata
from . import metrics as M
from .subsets import random_subset

CYCLE_KEYS = ("label_preservation", "source_accuracy", "cycle_l1", "fid", "fid_identity", "fid_ratio", "kid",
              "kid_identity")


def domains(ds: gdata.Dataset) -> dict[str, gdata.Dataset]:
    """{"a": domain A, "b": domain B} of an unpaired dataset (clear error for another kind)."""
    if ds.domain_b is None:
        raise ValueError(f"{ds.name} is a {ds.kind} dataset; per-direction translation metrics need an unpaired "
                         f"one ({', '.join(gdata.names_of_kind('unpaired'))})")
    return {"a": ds, "b": ds.domain_b}


def domain_classifier(domain: gdata.Dataset):
    """The shipped classifier of a domain (named in its meta, else by its dataset name), or None."""
    from .classifier import CLASSIFIER_FOR, get_classifier
    name = domain.meta.get("classifier") or domain.meta.get("domain") or domain.name
    if name in CLASSIFIER_FOR and tuple(domain.shape) == (1, 28, 28):
        return get_classifier(name)
    return None


@torch.no_grad()
def translate_all(model, x_uint8: Tensor, direction: str, batch_size: int = 500) -> Tensor:
    """uint8 images of the source domain -> translations in [0, 1], (N, C', H, W), on the CPU."""
    out = []
    for i in range(0, len(x_uint8), batch_size):
        x = model.prepare(x_uint8[i:i + batch_size].to(model.device))
        out.append(model.to_unit(model.translate(x, direction=direction)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def cycle_metrics(model, data: str | gdata.Dataset, n: int = 10_000, batch_size: int = 500, root=None,
                  kid: bool = True, kid_subsets: int = 100, kid_subset_size: int = 1000,
                  seed: int = 0, data_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every metric of the module docstring for each direction: {"metrics": {key_direction: value},
    "extractors": {direction: name}, "n": {direction: (n_source, n_reference)}, "skipped": {...}}. `data`: a
    dataset name (loaded with `data_options`, e.g. {"size": 64}) or a loaded two-domain Dataset."""
    model.eval()
    test = gdata.load(data, "test", root=root, **(data_options or {})) if isinstance(data, str) else data
    dom = domains(test)
    dom = {"a": random_subset(dom["a"], n, seed), "b": random_subset(dom["b"], n, seed + 1)}
    res: dict[str, Any] = {}
    info: dict[str, Any] = {"metrics": res, "extractors": {}, "n": {}, "skipped": {}}
    for d in model.directions:
        src, tgt = (dom["a"], dom["b"]) if d == "a2b" else (dom["b"], dom["a"])
        back = "b2a" if d == "a2b" else "a2b"
        xs = src.x
        fake = translate_all(model, xs, d, batch_size)  # (N, C', H, W) in [0, 1]
        if back in model.directions:
            cyc = _cycle(model, fake, back, batch_size)
            res[f"cycle_l1_{d}"] = (cyc - xs.float() / 255).abs().mean().item()
        clf = domain_classifier(tgt)
        if clf is None:
            info["skipped"][d] = f"no shipped classifier for the target domain {tgt.meta.get('domain', tgt.name)}"
            continue
        info["extractors"][d] = M.extractor_name(clf)
        src01 = xs.float() / 255
        if src.y is not None and tgt.classes and src.classes == tgt.classes:
            y = src.y
            res[f"label_preservation_{d}"] = _accuracy(clf, fake, y, batch_size)
            res[f"source_accuracy_{d}"] = _accuracy(clf, src01, y, batch_size) if src.shape == tgt.shape else None
        ref = tgt.x.float() / 255
        info["n"][d] = [len(xs), len(ref)]
        fr, ff = M.extract(clf, ref, batch_size), M.extract(clf, fake, batch_size)
        res[f"fid_{d}"] = M.fid(fr, ff)
        if src.shape == tgt.shape:
            fi = M.extract(clf, src01, batch_size)
            res[f"fid_identity_{d}"] = M.fid(fr, fi)
            res[f"fid_ratio_{d}"] = res[f"fid_{d}"] / max(res[f"fid_identity_{d}"], 1e-12)
        if kid:
            size = min(kid_subset_size, len(fr), len(ff))
            res[f"kid_{d}"] = M.kid(fr, ff, kid_subsets, size, seed)[0]
            if src.shape == tgt.shape:
                res[f"kid_identity_{d}"] = M.kid(fr, fi, kid_subsets, min(size, len(fi)), seed)[0]
    info["metrics"] = {k: v for k, v in res.items() if v is not None}
    return info


def _cycle(model, fake01: Tensor, back: str, batch_size: int) -> Tensor:
    """T'(T(x)) in [0, 1], feeding the translations back in model space (not re-quantised to uint8)."""
    lo, hi = model.input_range
    out = []
    for i in range(0, len(fake01), batch_size):
        f = (fake01[i:i + batch_size] * (hi - lo) + lo).to(model.device)
        out.append(model.to_unit(model.translate(f, direction=back)).float().cpu())
    return torch.cat(out)


def _accuracy(clf, x01: Tensor, y: Tensor, batch_size: int) -> float:
    probs = M.extract(clf, x01, batch_size, what="probs")
    return (probs.argmax(1) == y).double().mean().item()


GROUPS = ("labels", "cycle", "fid", "kid")


def parse_groups(metrics: str | list[str] | None) -> list[str]:
    """'fid,labels' or a list -> the groups of a two-domain evaluation (None or 'all': every group)."""
    if metrics is None or metrics == "all" or metrics == ["all"]:
        return list(GROUPS)
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    out = []
    for m in (s.strip().lower() for s in items if s.strip()):
        m = {"label": "labels", "label_preservation": "labels", "cycle_l1": "cycle", "l1": "cycle"}.get(m, m)
        if m not in GROUPS:
            raise ValueError(f"unknown metric {m!r} for a two-domain translation run; expected some of: "
                             f"{', '.join(GROUPS)}")
        if m not in out:
            out.append(m)
    return out


def evaluate_cycle(model, data: str, *, metrics: str | list[str] | None = None, n: int = 10_000, seed: int = 0,
                   batch_size: int = 500, root=None, run=None, kid_subsets: int = 100, kid_subset_size: int = 1000,
                   out=None, strict: bool = False, data_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """`genzoo evaluate` for a two-direction model on unpaired `data`: the record of genzoo.evaluate.evaluate
    (model_type, run, data, n, seed, extractor, metrics, skipped, note, seconds) holding `cycle_metrics`,
    keys suffixed by direction (`label_preservation_a2b`, `fid_b2a`, `fid_identity_b2a`, ...)."""
    import time

    from .._io import write_json
    from .suite import DOMAIN_NOTE

    t0 = time.perf_counter()
    groups = parse_groups(metrics)
    test = gdata.load(data, "test", root=root, **(data_options or {}))
    torch.manual_seed(seed)
    r = cycle_metrics(model, test, n=n, batch_size=batch_size, kid="kid" in groups, kid_subsets=kid_subsets,
                      kid_subset_size=kid_subset_size, seed=seed)
    keep = {"labels": ("label_preservation", "source_accuracy"), "cycle": ("cycle_l1",),
            "fid": ("fid", "fid_identity", "fid_ratio"), "kid": ("kid", "kid_identity")}
    wanted = tuple(f"{k}_" for g in groups for k in keep[g])
    res = {k: v for k, v in r["metrics"].items() if k.startswith(wanted) and
           not (k.startswith("fid_") and "fid" not in groups and k.split("_")[1] in ("identity", "ratio"))}
    skipped = {f"{g} ({d})": why for d, why in r["skipped"].items() for g in groups if g != "cycle"}
    if "labels" in groups:
        for d in model.directions:
            if f"label_preservation_{d}" not in res and d in r["extractors"]:
                skipped[f"labels ({d})"] = "the two domains do not share their classes"
    if strict and skipped:
        raise ValueError(f"metrics do not apply: {skipped}")
    result = {"model_type": model.model_type, "run": str(run) if run else None, "data": data,
              "n": n_pairs(r["n"]), "seed": seed,
              "extractor": ", ".join(f"{d}: {e}" for d, e in r["extractors"].items()) or None,
              "metrics": res, "skipped": skipped, "n_per_direction": r["n"]}
    if "fid" in groups or "kid" in groups:
        result["note"] = DOMAIN_NOTE + "; identity = the untranslated sources, the baseline"
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if out is not None:
        write_json(out, result)
    return result


def n_pairs(n: dict[str, list[int]]) -> int:
    """The number of source images evaluated (the smallest over directions)."""
    return min((v[0] for v in n.values()), default=0)


__all__ = ["cycle_metrics", "evaluate_cycle", "parse_groups", "domains", "domain_classifier", "translate_all",
           "CYCLE_KEYS", "GROUPS"]
