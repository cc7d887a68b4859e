"""The explorer's translate panel (pix2pix, srgan, cyclegan, any model that can `translate`): a test source or the
user's drawing/upload goes through the model, in the direction the page chose when the model has two (a
cyclegan: a2b takes domain A's test images and drawings, b2a domain B's; `info` names the domains). For
super-resolution the bicubic upsampling comes along, so the page's slider can blend bicubic and the model.

A drawing of the *target* kind (a filled digit) can be turned into a source the way the run's paired dataset made
its sources (`derive`): its Sobel edges for an `*-edges` run, its area-downsampling for an `*-sr2`/`*-sr4` run;
otherwise the drawing is the source itself, at the model's input size.
"""
from __future__ import annotations

import base64
from typing import Any

import torch
from fastapi import Query, Request
from starlette.concurrency import run_in_threadpool
from torch import Tensor

from ..data.paired import area_downsample, sobel_edges
from ..images import grid, png_bytes
from .uploads import WORK_SIDE, open_image, to_model_pixels


def _url(x01: Tensor, scale: int = 1) -> str:
    """Images in [0, 1] (1, C, H, W) -> a PNG data URL."""
    data = png_bytes(grid(x01.float().cpu(), nrow=1, pad=0), scale)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def task_of(ex) -> str | None:
    """The derived paired task of the run's dataset (edges, inpaint, sr2, sr4) or None."""
    return (ex.test.meta.get("task") if ex.test is not None else None)


def target_shape(ex) -> tuple[int, int, int]:
    cfg = ex.model.config
    return tuple(getattr(cfg, "target_shape", None) or cfg.image_shape)


def domains(ex) -> dict[str, dict[str, Any]]:
    """Per direction the model has: the source and target domain names and how many test images the source
    domain has (an unpaired run: domain A's images for a2b, domain B's for b2a; a paired run: its sources)."""
    t, dirs = ex.test, tuple(getattr(ex.model, "directions", ("a2b",)))
    if t is not None and t.kind == "unpaired":
        a, b = t.meta.get("domain_a", "A"), t.meta.get("domain_b", "B")
        sizes = {"a2b": len(t), "b2a": len(t.domain_b)}
    else:
        a, b = "source", "target"
        sizes = {"a2b": len(t) if t is not None else 0, "b2a": 0}
    names = {"a2b": (a, b), "b2a": (b, a)}
    return {d: {"source": names[d][0], "target": names[d][1], "test_size": sizes[d]} for d in dirs}


def source_shape(ex, direction: str | None) -> tuple[int, int, int]:
    """(C, H, W) the model takes for `direction` (a cyclegan's b2a takes domain B's shape)."""
    fn = getattr(ex.model, "source_shape", None)
    return tuple(fn(direction or "a2b")) if callable(fn) else tuple(ex.model.config.image_shape)


def info(ex) -> dict[str, Any]:
    """What the page needs to lay the panel out."""
    src, tgt = tuple(ex.model.config.image_shape), target_shape(ex)
    sr = src[1:] != tgt[1:]
    task = task_of(ex)
    return {"directions": list(getattr(ex.model, "directions", ("a2b",))), "domains": domains(ex),
            "source_shape": list(src),
            "target_shape": list(tgt), "super_resolution": sr, "task": task,
            "derive": task in ("edges", "sr2", "sr4"),
            "derive_label": {"edges": "take the edges of my drawing (as the data set did)",
                             "sr2": "downsample my drawing x2 (as the data set did)",
                             "sr4": "downsample my drawing x4 (as the data set did)"}.get(task or "", "")}


def _check_direction(ex, direction: str | None) -> str | None:
    dirs = tuple(getattr(ex.model, "directions", ("a2b",)))
    if direction is not None and direction not in dirs:
        raise ValueError(f"direction {direction!r}: this {ex.model.model_type} model translates {', '.join(dirs)}")
    return direction


def run(ex, source_uint8: Tensor, direction: str | None = None, target01: Tensor | None = None) -> dict[str, Any]:
    """Translate one uint8 source (1, C, h, w): data URLs of the source, the output, bicubic (SR) and target."""
    m = ex.model
    direction = _check_direction(ex, direction)
    if not m.can("translate"):
        raise ValueError(f"a {m.model_type} model cannot translate")
    x = m.prepare(source_uint8)
    kw = {} if direction is None else {"direction": direction}
    with torch.inference_mode():
        out01 = m.to_unit(m.translate(x, **kw)).float().cpu()
    src01 = source_uint8.float() / 255
    res: dict[str, Any] = {"source": _url(src01), "output": _url(out01), "bicubic": None, "target": None,
                           "size": list(out01.shape[-2:])}
    if tuple(src01.shape[-2:]) != tuple(out01.shape[-2:]):
        from ..evaluate.translation import bicubic
        up = bicubic(src01, tuple(out01.shape[-2:]))
        res["bicubic"] = _url(up.expand(-1, out01.shape[1], -1, -1) if up.shape[1] != out01.shape[1] else up)
    if target01 is not None:
        res["target"] = _url(target01)
    return res


def from_test(ex, index: int, direction: str | None = None) -> dict[str, Any]:
    """Test example `index`: its source, the output, bicubic (SR) and its target."""
    if ex.test is None:
        raise ValueError(f"no test set: {ex.data_error}")
    direction = _check_direction(ex, direction)
    t = ex.test
    dom = t.domain_b if t.kind == "unpaired" and direction == "b2a" else t  # the source domain's test images
    if not 0 <= index < len(dom):
        which = f" of domain {dom.meta.get('domain', dom.name)}" if t.kind == "unpaired" else ""
        raise IndexError(f"test image {index}{which} does not exist: expected 0..{len(dom) - 1}")
    src = dom.x[index:index + 1]
    tgt = t.target[index:index + 1] if dom is t and t.target is not None else None
    return {"index": index, "label": int(dom.y[index]) if dom.y is not None else None,
            **run(ex, src, direction, None if tgt is None else tgt.float() / 255)}


def from_upload(ex, body: bytes, fit: bool = True, invert: bool | None = None, derive: bool = True,
                direction: str | None = None) -> dict[str, Any]:
    """A PNG/JPEG (the drawing canvas or a file) -> its translation. With `derive` and an edges/SR run, the
    image is taken as a *target*-like picture and its source made the way the data set made them."""
    task = task_of(ex)
    src_shape = source_shape(ex, _check_direction(ex, direction))
    shape = target_shape(ex) if derive and task in ("edges", "sr2", "sr4") else src_shape
    side = max(WORK_SIDE, 4 * max(shape[1:]))
    im = open_image(body, ex.limits.max_upload_bytes, ex.limits.max_pixels, work_side=side)
    px = to_model_pixels(im, shape, invert=invert, background=ex.background, fit=fit)  # uint8 (1, C, H, W)
    if derive and task == "edges":
        px = sobel_edges(px).expand(-1, src_shape[0], -1, -1).contiguous()
    elif derive and task in ("sr2", "sr4"):
        px = area_downsample(px, int(task[2:]))
    if tuple(px.shape[1:]) != src_shape:
        raise ValueError(f"the drawing became {tuple(px.shape[1:])} but the model takes {src_shape}")
    return run(ex, px, direction)


def add_routes(app, ex, pick=None) -> None:
    """GET /api/translate/info, GET /api/translate/test?index=I[&direction=D], POST /api/translate (image body;
    query fit, invert, derive, direction). `pick`: the app's dependency that takes `run=I` and gives that run's
    Explorer (two runs side by side); without it, every route uses `ex`."""
    from fastapi import Depends

    from .app import _read_body

    RUN = Depends(pick or (lambda: ex))

    @app.get("/api/translate/info")
    def translate_info(ex=RUN) -> dict[str, Any]:
        return info(ex)

    @app.get("/api/translate/test")
    def translate_test(index: int = Query(..., ge=0), direction: str | None = None, ex=RUN) -> dict[str, Any]:
        return from_test(ex, index, direction)

    @app.post("/api/translate")
    async def translate_upload(request: Request, fit: bool = True, invert: bool | None = None, derive: bool = True,
                               direction: str | None = None, ex=RUN) -> dict[str, Any]:
        body = await _read_body(request, ex.limits.max_upload_bytes)
        return await run_in_threadpool(from_upload, ex, body, fit, invert, derive, direction)


__all__ = ["add_routes", "domains", "info", "from_test", "from_upload", "run"]
