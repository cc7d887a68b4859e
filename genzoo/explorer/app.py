"""The explorer's web app: one static page and a small JSON/PNG API over a run (see docs/explorer.md).

No route reads a path the client gives: the page's files come from the package's `static/` folder through
Starlette's StaticFiles (which refuses paths outside it), and the run directory is fixed when the server starts.
What a request may cost and who may send it is decided in one place, `limits.Guard` (see limits.py): a new
route under /api/ needs the page's token and counts as heavy without further code.
"""
from __future__ import annotations

import base64
import secrets
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .curves import MAX_POINTS, MAX_POINTS_LIMIT
from .limits import Gate, Guard, LimitError, Limits, host_name  # noqa: F401 (host_name: the old import path)
from .session import Explorer
from .uploads import UploadError

STATIC = Path(__file__).parent / "static"
MAX_POINTS_SHOWN = 4096  # real and generated 2-D points per /api/points answer (points are cheap: 8 bytes each)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_META = '<meta name="genzoo-token" content="">'  # in static/index.html; filled with the server's token
SECURITY_HEADERS = {
    # The page may only talk to this server: no CDN, no external requests, no framing by other sites.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class Codes(BaseModel):
    z: list[list[float]] = Field(..., min_length=1, description="latent codes (M, L), M <= max_images")
    label: int | None = None
    scale: int = Field(1, description="nearest-neighbour upscaling, 1..max_scale")


class Path2(BaseModel):
    a: list[float]
    b: list[float]
    mode: Literal["lerp", "slerp"] = "lerp"
    ts: list[float] = Field(..., min_length=1, description="fractions of the path, at most max_images")
    label: int | None = None
    scale: int = Field(1, description="nearest-neighbour upscaling, 1..max_scale")


class Shift(BaseModel):
    z: list[float]
    alphas: dict[int, float] = Field(..., description="class index -> distance along its direction")
    label: int | None = None
    scale: int = Field(1, description="nearest-neighbour upscaling, 1..max_scale")


def png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


RunDir = str | Path | Explorer


def create_app(run_dir: RunDir | Sequence[RunDir], data: str | None = None,
               allowed_hosts: list[str] | None = None, limits: Limits | None = None,
               precision: str = "auto") -> FastAPI:
    """The app for one run, or for several side by side (a list: `create_app(["runs/ae", "runs/vae"])`; every
    route then takes `run=I`, the index in that list, default 0; GET /api/runs lists them).
    `data`: the dataset to show for every run (default: each run's own). `allowed_hosts`: Host headers to answer
    (default: the loopback names, which also stops DNS-rebinding pages from reaching the server); ["*"]
    accepts any. `limits`: what a request may cost (default `Limits()`; given with an Explorer, they become
    that Explorer's limits). `precision`: how runs decode and sample (`Explorer`: auto, fp32 or bf16).

    Every request passes `limits.Guard` first (host, the page's token, content type, body size, the worker
    pool), whichever run it addresses; `app.state.token` is the token the page carries,
    `app.state.explorers` the runs (`app.state.explorer` the first)."""
    runs = list(run_dir) if isinstance(run_dir, (list, tuple)) else [run_dir]
    if not runs:
        raise ValueError("create_app: no run directory given")
    limits = limits or (runs[0].limits if isinstance(runs[0], Explorer) else Limits())
    explorers = [r if isinstance(r, Explorer) else Explorer(r, data, limits=limits, precision=precision)
                 for r in runs]
    for e in explorers:
        e.limits = limits
    ex = explorers[0]
    app = FastAPI(title="genzoo explorer", docs_url=None, redoc_url=None, openapi_url=None)
    token = secrets.token_urlsafe(32)
    app.state.explorer, app.state.explorers, app.state.limits, app.state.token = ex, explorers, limits, token
    app.state.gate = gate = Gate(limits)
    hosts = set(allowed_hosts or LOCAL_HOSTS)
    app.add_middleware(Guard, hosts=hosts, token=token, limits=limits, gate=gate, headers=SECURITY_HEADERS)
    page = (STATIC / "index.html").read_text()
    if TOKEN_META not in page:
        raise RuntimeError(f"{STATIC / 'index.html'} lacks {TOKEN_META}")
    page = page.replace(TOKEN_META, f'<meta name="genzoo-token" content="{token}">')
    n_images = Query(16, ge=1, le=limits.max_images, description="number of images")
    scale_q = Query(1, ge=1, le=limits.max_scale, description="nearest-neighbour upscaling of the PNG")

    async def pick(run: int = Query(0, ge=0, description="which run: its index in GET /api/runs")) -> Explorer:
        # async: it runs on the event loop; a plain def would cost every request one more hop to a worker thread
        if run >= len(explorers):
            names = ", ".join(f"{i} = {e.run_dir}" for i, e in enumerate(explorers))
            raise RunIndexError(f"run {run} does not exist: this explorer shows {len(explorers)} "
                                f"run{'s' if len(explorers) > 1 else ''} ({names}); expected run=0.."
                                f"{len(explorers) - 1}")
        return explorers[run]

    RUN = Depends(pick)  # `ex: Explorer = RUN`: the run a request addresses (`run=I`, default 0)

    @app.exception_handler(UploadError)
    @app.exception_handler(LimitError)
    async def limit_error(request: Request, e: UploadError | LimitError):
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        return JSONResponse({"detail": readable(e, request.scope.get("route"))}, status_code=422)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, e: ValueError):
        return JSONResponse({"detail": str(e)}, status_code=400)

    @app.exception_handler(IndexError)
    async def index_error(request: Request, e: IndexError):
        return JSONResponse({"detail": str(e)}, status_code=404)

    @app.exception_handler(FileNotFoundError)
    async def not_found(request: Request, e: FileNotFoundError):
        return JSONResponse({"detail": str(e)}, status_code=404)

    @app.exception_handler(NotImplementedError)
    async def not_implemented(request: Request, e: NotImplementedError):
        return JSONResponse({"detail": str(e)}, status_code=400)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/info")
    def info(ex: Explorer = RUN) -> dict[str, Any]:
        return ex.info()

    @app.get("/api/runs")
    def runs_info() -> dict[str, Any]:
        """Every run this server shows, in order (the `run` index of every other route)."""
        return {"runs": [{"index": i, **e.info()} for i, e in enumerate(explorers)]}

    @app.get("/api/metrics")
    def metrics(*, ex: Explorer = RUN,
                known: str | None = Query(None, max_length=200, description="the etag of the last answer"),
                max_points: int = Query(MAX_POINTS, ge=2, le=MAX_POINTS_LIMIT)) -> dict[str, Any]:
        """The run's metrics.csv as curves, its status and progress grids; {changed: false} when `known` is
        still current (a cheap poll)."""
        return ex.curves.answer(known, max_points)

    @app.get("/api/progress.png")
    def progress(*, ex: Explorer = RUN, step: int | None = Query(None, ge=0, lt=2**63)) -> Response:
        """The progress grid samples/step_XXXXXX.png at `step` (default: the newest), as training wrote it."""
        found, data = ex.curves.grid_png(step)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store",
                                                                "X-Genzoo-Step": str(found)})

    @app.get("/api/points")
    def points(*, ex: Explorer = RUN, n: int = Query(1000, ge=1, le=MAX_POINTS_SHOWN),
               seed: int = Query(0, ge=0, lt=2**63), res: int = Query(64, ge=8, le=160)) -> dict[str, Any]:
        """A GAN of 2-D points from its newest checkpoint: D's output on a res x res grid, n real and n generated
        points, modes covered."""
        return ex.point_view(n, seed, res)

    @app.get("/api/samples.png")
    def samples(*, ex: Explorer = RUN, n: int = n_images, seed: int = Query(0, ge=0, lt=2**63),
                label: int | None = None, temperature: float | None = Query(None, gt=0, le=10),
                truncation: float | None = Query(None, gt=0, le=10), steps: int | None = Query(None, ge=1, le=1000),
                guidance: float | None = Query(None, ge=0, le=20), scale: int = scale_q) -> Response:
        nrow = int(np.ceil(np.sqrt(n)))
        ex.check_picture(n, nrow, scale)  # before sampling: an oversized picture costs nothing
        x = ex.samples(n, seed, label, temperature, truncation, steps, guidance)
        return png(ex.png(x, nrow=nrow, scale=scale))

    @app.get("/api/trajectory.png")
    def trajectory(*, ex: Explorer = RUN, n: int = Query(4, ge=1, le=8), seed: int = Query(0, ge=0, lt=2**63),
                   label: int | None = None, steps: int | None = Query(None, ge=1, le=1000),
                   guidance: float | None = Query(None, ge=0, le=20), frames: int = Query(10, ge=2, le=16),
                   scale: int = scale_q) -> Response:
        ex.check_picture(n * frames, frames, scale)
        return png(ex.png(ex.trajectory(n, seed, label, steps, guidance, frames), nrow=frames, scale=scale))

    @app.get("/api/test.png")
    def test_image(*, ex: Explorer = RUN, index: int = Query(..., ge=0), scale: int = scale_q) -> Response:
        return png(ex.png(ex.unit(ex.test_image(index)[0]), scale=scale))

    @app.get("/api/code")
    def test_code(*, ex: Explorer = RUN, index: int = Query(..., ge=0),
                  method: str | None = None) -> dict[str, Any]:
        """A test image's latent code, its class, and its place on the map `method` (when given)."""
        x, y = ex.test_image(index)
        z = ex.code(x, None if y is None else torch.tensor([y]))
        return {"index": index, "label": y, "z": z[0].tolist(), "xy": _place(ex, z, method)}

    def _place(ex: Explorer, z: torch.Tensor, method: str | None) -> list[float] | None:
        return ex.latent_map(method).proj.to_plane(z.numpy())[0].tolist() if method else None

    @app.post("/api/encode")
    async def encode(request: Request, ex: Explorer = RUN, fit: bool = False, invert: bool | None = None,
                     method: str | None = None) -> dict[str, Any]:
        """Body: the bytes of a PNG or JPEG image. Returns the image as the model sees it, its
        reconstruction, its latent code and its place on the map `method`."""
        body = await _read_body(request, limits.max_upload_bytes)
        return await run_in_threadpool(_encode, ex, body, fit, invert, method)

    def _encode(ex: Explorer, body: bytes, fit: bool, invert: bool | None, method: str | None) -> dict[str, Any]:
        if not (ex.model.can("encode") or ex.model.can("reconstruct")):
            raise ValueError(f"a {ex.model.model_type} model cannot encode or reconstruct images")
        x = ex.upload(body, fit=fit, invert=invert)
        out: dict[str, Any] = {"input": data_url(ex.png(ex.unit(x))), "reconstruction": None, "z": None, "xy": None}
        if ex.model.can("reconstruct"):
            out["reconstruction"] = data_url(ex.png(ex.reconstruct(x)))
        if ex.model.can("encode"):
            z = ex.code(x)
            out["z"], out["xy"] = z[0].tolist(), _place(ex, z, method)
        return out

    @app.post("/api/decode.png")
    def decode(body: Codes, ex: Explorer = RUN) -> Response:
        return png(ex.png(ex.decode(body.z, body.label), scale=body.scale))

    @app.get("/api/map")
    def latent_map(*, ex: Explorer = RUN, method: str) -> dict[str, Any]:
        lm = ex.latent_map(method)
        return {"method": lm.proj.method, "xy": np.round(lm.proj.xy, 4).ravel().tolist(),
                "labels": None if lm.labels is None else lm.labels.tolist(), "bounds": lm.bounds(),
                "classes": ex.classes}

    @app.get("/api/map/decode.png")
    def map_decode(*, ex: Explorer = RUN, method: str, x: float = Query(..., allow_inf_nan=False),
                   y: float = Query(..., allow_inf_nan=False), label: int | None = None,
                   scale: int = scale_q) -> Response:
        z = ex.latent_map(method).proj.to_latent(np.array([[x, y]]))
        return png(ex.png(ex.decode(z, label), scale=scale))

    @app.post("/api/interpolate.png")
    def interpolate(body: Path2, ex: Explorer = RUN) -> Response:
        return png(ex.png(ex.decode(ex.interpolate(body.a, body.b, body.ts, body.mode), body.label),
                          nrow=len(body.ts), scale=body.scale))

    @app.post("/api/attributes.png")
    def attributes(body: Shift, ex: Explorer = RUN) -> Response:
        return png(ex.png(ex.decode(ex.shift(body.z, body.alphas), body.label), scale=body.scale))

    @app.get("/api/denoise.png")
    def denoise(*, ex: Explorer = RUN, index: int = Query(..., ge=0), noise: float = Query(..., ge=0, le=1),
                seed: int = Query(0, ge=0), scale: int = scale_q) -> Response:
        return png(ex.png(ex.denoise(index, noise, seed), nrow=3, scale=scale))

    from .translate import add_routes as add_translate_routes  # the translate panel (pix2pix, srgan, ...)
    add_translate_routes(app, ex, pick)
    return app


class RunIndexError(IndexError):
    """`run=I` names no run of this server (404)."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything above `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"the upload has {int(declared):,} bytes; the limit is {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadError(413, f"the upload is larger than the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def readable(e: RequestValidationError, route: Any) -> str:
    """FastAPI's validation errors as one sentence per parameter, with its allowed range:
    'n: Input should be less than or equal to 64 (got 1000); allowed: 1..64'."""
    out = []
    for err in e.errors():
        loc = [str(p) for p in err.get("loc", ())]
        name = ".".join(loc[1:]) or "body"
        text = f"{name}: {err.get('msg', 'invalid')}"
        if "input" in err and err["type"] != "missing" and len(repr(err["input"])) < 60:
            text += f" (got {err['input']})"
        allowed = _allowed(route, err.get("loc", ()))
        out.append(text + (f"; allowed: {allowed}" if allowed else ""))
    return "; ".join(out)


def _allowed(route: Any, loc: tuple) -> str | None:
    """The declared range of the query parameter or body field at `loc`, e.g. '1..64', '> 0 and <= 10'."""
    if len(loc) < 2 or route is None or not hasattr(route, "dependant"):
        return None
    info = None
    if loc[0] == "query":  # the route's own parameters, then those of its dependencies (`run`)
        deps, params = [route.dependant], []
        while deps:
            d = deps.pop()
            params += d.query_params
            deps += d.dependencies
        info = next((f.field_info for f in params if f.alias == loc[1]), None)
    elif loc[0] == "body":
        for f in route.dependant.body_params:
            model = f.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel) and loc[1] in model.model_fields:
                info = model.model_fields[loc[1]]
    if info is None:
        return None
    b = {k: getattr(m, k) for m in info.metadata for k in ("ge", "gt", "le", "lt", "min_length", "max_length")
         if getattr(m, k, None) is not None}
    def num(v) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"
    if "ge" in b and "le" in b:
        return f"{num(b['ge'])}..{num(b['le'])}"
    parts = [f"{op} {num(b[k])}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if k in b]
    if "min_length" in b or "max_length" in b:
        parts.append(f"{b.get('min_length', 0)}..{b.get('max_length', 'any')} values")
    return " and ".join(parts) or None


def serve(run_dir: RunDir | Sequence[RunDir], host: str = "127.0.0.1", port: int = 8000, data: str | None = None,
          limits: Limits | None = None, precision: str = "auto") -> None:
    """Run the explorer with uvicorn until interrupted: one run, or a list of runs side by side."""
    from .._memory import large_blocks_from_mmap
    large_blocks_from_mmap()  # a burst of requests gives its memory back when it ends (genzoo/_memory.py)
    local = host in LOCAL_HOSTS
    app = create_app(run_dir, data, allowed_hosts=None if local else ["*"], limits=limits, precision=precision)
    shown = f"[{host}]" if ":" in host else host
    names = " and ".join(str(e.run_dir) for e in app.state.explorers)
    print(f"genzoo explorer: {names} at http://{shown}:{port}/  (Ctrl+C stops it)", flush=True)
    if not local:
        print(f"warning: listening on {host}, not only on this computer: anyone who can reach this address can use "
              f"the page and the model (there is no login). Use the default --host 127.0.0.1 unless you mean it.",
              flush=True)
    _run_uvicorn(app, host, port)


def _run_uvicorn(app: FastAPI, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
