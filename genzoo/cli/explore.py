"""`genzoo explore RUN [RUN_B]`: the local web page over a trained run, or two runs side by side."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._app import app, handle_errors


@app.command("explore")
@handle_errors
def explore_cmd(
    runs: List[Path] = typer.Argument(..., metavar="RUN",
                                      help="run directory; two of them show both models side by side"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (default: this computer only)"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset to show (default: the run's)"),
    limit: Optional[List[str]] = typer.Option(
        None, "--limit", metavar="NAME=VALUE",
        help="change a limit of what one request may cost (repeatable), e.g. --limit workers=4 --limit "
             "max_pixels=16777216; names: max_upload_bytes, max_json_bytes, max_pixels, max_images, max_scale, "
             "max_output_pixels, workers, queue, queue_wait_s (docs/explorer.md, Limits)"),
    precision: str = typer.Option(
        "auto", "--precision",
        help="decoding and sampling: auto (bf16 for batches of 64 or more where the hardware has native bf16, "
             "where it is faster; fp32 otherwise and for diffusion), fp32, or bf16"),
) -> None:
    """Open a local web page to explore a trained model: samples, latent map, drawing, interpolation,
    training curves (followed live while the run trains). With two runs, both models sit side by side and
    every input (test image, drawing, point on the latent map, interpolation pair) goes to both.

    Example: genzoo explore runs/demo --port 8000

    Example: genzoo explore runs/ae2 runs/vae2
    """
    try:
        from ..explorer import serve
        from ..explorer.limits import Limits
    except ImportError as e:
        raise RuntimeError(f"the explorer needs the explorer extra: pip install 'genzoo[explorer]' ({e})") from None
    limits = Limits.parse(limit)  # before loading anything: a bad --limit is reported at once
    if len(runs) > 2:
        raise ValueError(f"{len(runs)} run directories given ({', '.join(map(str, runs))}); the explorer shows one "
                         f"run, or two side by side")
    serve(runs if len(runs) > 1 else runs[0], host=host, port=port, data=data, limits=limits, precision=precision)
