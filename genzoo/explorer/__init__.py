"""The explorer: a local web page to see and play with a trained run (`genzoo explore RUN`).

    from genzoo.explorer import create_app, serve
    serve("runs/demo")                      # http://127.0.0.1:8000/
    serve(["runs/ae2", "runs/vae2"])        # two runs side by side, linked inputs
    app = create_app("runs/demo")           # a FastAPI app, e.g. for TestClient or another ASGI server

Needs the `explorer` extra (fastapi, uvicorn). See docs/explorer.md.
"""
from __future__ import annotations

from .app import create_app, serve
from .session import Explorer

__all__ = ["create_app", "serve", "Explorer"]
