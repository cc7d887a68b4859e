"""What one request to the explorer may cost, and who may send it (docs/explorer.md, "Limits").

`Guard` is an ASGI middleware in front of every route; it is the one place where requests are admitted:

1. the Host header must name this server (a DNS-rebinding page is refused, 400);
2. every `/api/` request except the LIGHT ones carries the page's per-server token in the `X-Genzoo-Token`
   header (403 otherwise). A page of another site cannot read the token (it is only in the HTML page, which
   other origins cannot read) and cannot send a custom header without a CORS preflight, which this server
   never grants; so such a page cannot drive the model, not even through `<img src>` or a text/plain form;
3. a request body has an accepted content type (415 otherwise): JSON for the JSON routes, PNG/JPEG bytes
   (or application/octet-stream) for the upload routes;
4. a body above its size limit is refused (413) from its Content-Length, or while it is read when it has none;
5. every `/api/` request except the LIGHT ones is heavy: at most `workers` of them run at once, at most
   `queue` more wait (up to `queue_wait_s`), any further one is answered 503 with Retry-After at once;
6. when the last heavy request of a burst ends, freed memory is handed back to the system (`trim_memory`).

A new route under `/api/` is therefore guarded and counted as heavy without further code; a route that takes
uploads is added to `UPLOAD_PATHS`, a cheap read-only one to `LIGHT_PATHS`.
"""
from __future__ import annotations

import dataclasses
import hmac
import threading
import time
from dataclasses import dataclass, fields

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from .._memory import trim_memory  # glibc malloc_trim: without it, the arenas of the worker threads keep the
# peak of a burst for the life of the server

TOKEN_HEADER = "X-Genzoo-Token"
LIGHT_PATHS = frozenset({"/api/info"})  # no token, not counted as heavy: cheap and read-only
UPLOAD_PATHS = frozenset({"/api/encode", "/api/translate"})  # bodies are image bytes, up to max_upload_bytes
JSON_TYPES = ("application/json",)
UPLOAD_TYPES = ("image/png", "image/jpeg", "application/octet-stream")


class LimitError(ValueError):
    """A request over one of the limits; `status` is the HTTP status to answer with (422 by default)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """The explorer's limits. Change them with `genzoo explore RUN --limit NAME=VALUE` or
    `create_app(run, limits=Limits(...))`."""

    max_upload_bytes: int = 4 * 1024 * 1024  # body of an upload (/api/encode)
    max_json_bytes: int = 1024 * 1024  # body of any other request
    max_pixels: int = 2048 * 2048  # pixels an upload decodes to (width x height x frames), checked from its header
    max_images: int = 64  # images, codes or path points per request (`n`, `z`, `ts`)
    max_scale: int = 8  # nearest-neighbour upscaling of a returned PNG
    max_output_pixels: int = 2048 * 2048  # pixels of a returned picture (grid x scale)
    workers: int = 2  # heavy requests computing at once
    queue: int = 16  # heavy requests waiting for a worker; beyond that: 503
    queue_wait_s: float = 60.0  # longest wait for a worker before a 503

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            least = {"queue": 0, "queue_wait_s": 0.01}.get(f.name, 1)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < least:
                raise ValueError(f"limit {f.name} must be a number >= {least}; got {v!r}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def parse(cls, items: list[str] | None, base: Limits | None = None) -> Limits:
        """["workers=4", "max_pixels=16777216", ...] -> Limits (the others at their defaults), or ValueError."""
        base, changes = base or cls(), {}
        types = {f.name: f.type for f in fields(cls)}
        for item in items or []:
            name, eq, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not eq:
                raise ValueError(f"--limit {item!r}: expected NAME=VALUE, e.g. workers=4")
            if name not in types:
                raise ValueError(f"unknown limit {name!r}; the limits are: {', '.join(cls.names())}")
            kind = float if types[name] in (float, "float") else int
            try:
                changes[name] = kind(value.replace("_", ""))
            except ValueError:
                raise ValueError(f"--limit {name}={value}: expected a{'n integer' if kind is int else ' number'}") \
                    from None
        return dataclasses.replace(base, **changes)


# ---- the gate: a small worker pool with a bounded queue ------------------------------------------------------
class Busy(Exception):
    pass


class Gate:
    """Admits at most `workers + queue` heavy requests; lets `workers` of them run at once.

    Only threading primitives (no asyncio ones): the same app may be driven from several event loops (e.g.
    TestClient, one per thread). Waiting polls every 5 ms, so a cancelled request never holds a slot."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._lock = threading.Lock()
        self._running = threading.BoundedSemaphore(limits.workers)
        self.admitted = 0

    def admit(self) -> None:
        with self._lock:
            if self.admitted >= self.limits.workers + self.limits.queue:
                raise Busy
            self.admitted += 1

    def leave(self) -> bool:
        """-> True when this was the last admitted request (the burst is over)."""
        with self._lock:
            self.admitted -= 1
            return self.admitted == 0

    async def acquire(self) -> None:
        deadline = time.monotonic() + self.limits.queue_wait_s
        while not self._running.acquire(blocking=False):
            if time.monotonic() > deadline:
                raise Busy
            await anyio.sleep(0.005)

    def release(self) -> None:
        self._running.release()


# ---- the middleware ---------------------------------------------------------------------------------------------
class Guard:
    """ASGI middleware: host, token, content type, body size, the gate, and the security headers (see the
    module's docstring)."""

    def __init__(self, app, *, hosts: set[str], token: str, limits: Limits, gate: Gate,
                 headers: dict[str, str]):
        self.app, self.hosts, self.token, self.limits, self.gate = app, hosts, token, limits, gate
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        def answer(status: int, detail: str, **headers):
            return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)(
                scope, receive, send_with_headers)

        h = Headers(scope=scope)
        path = scope["path"]
        if "*" not in self.hosts and host_name(h.get("host", "")) not in self.hosts:
            return await answer(400, "this server answers only requests addressed to "
                                     f"{' or '.join(sorted(self.hosts))}")
        api = path.startswith("/api/") and path not in LIGHT_PATHS
        if api and not hmac.compare_digest(h.get(TOKEN_HEADER, "").encode(), self.token.encode()):
            return await answer(403, f"this request needs the {TOKEN_HEADER} header of the explorer's page (the "
                                     f"page sends it; scripts read it from the page's <meta name=\"genzoo-token\">):"
                                     f" requests from other web sites are refused")
        upload = path in UPLOAD_PATHS
        limit = self.limits.max_upload_bytes if upload else self.limits.max_json_bytes
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            ctype = h.get("content-type", "").split(";")[0].strip().lower()
            allowed = UPLOAD_TYPES if upload else JSON_TYPES
            if ctype not in allowed:
                return await answer(415, f"{path} takes the content type {' or '.join(allowed)}; got "
                                         f"{ctype or 'none'}")
        declared = h.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await answer(413, f"the request body has {int(declared):,} bytes; the limit is {limit:,} bytes")
        receive = _counted(receive, limit)
        if not api:
            return await self.app(scope, receive, send_with_headers)
        try:
            self.gate.admit()
        except Busy:
            return await answer(503, _busy(self.limits), **{"Retry-After": "1"})
        try:
            try:
                await self.gate.acquire()
            except Busy:
                return await answer(503, _busy(self.limits), **{"Retry-After": "1"})
            try:
                await self.app(scope, receive, send_with_headers)
            finally:
                self.gate.release()
        finally:
            if self.gate.leave():
                trim_memory()


def _busy(limits: Limits) -> str:
    return (f"the explorer is busy: {limits.workers} requests are running and {limits.queue} waiting; "
            f"try again in a moment")


def _counted(receive, limit: int):
    """`receive` that refuses (413) a body growing past `limit` bytes while it is read."""
    size = 0

    async def counted():
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise HTTPException(413, f"the request body is larger than the limit of {limit:,} bytes")
        return message
    return counted


def host_name(header: str) -> str:
    """The host of a Host header without its port: '127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1'."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header
