"""`genzoo translate`: run a translation model (pix2pix, srgan, cyclegan ...) on a split or on your own images."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, handle_errors, load_run, wrote


@app.command("translate")
@handle_errors
def translate_cmd(
    run: Path = typer.Argument(..., help="run directory of a model that can translate"),
    out: Path = typer.Option(..., "--out", "-o", help="split mode: FILE.png (rows source | output | target) or "
                             "FILE.npy (outputs, uint8); --input mode: a folder (one PNG per image) or FILE.npy"),
    split: str = typer.Option("test", "--split", help="train or test"),
    n: int = typer.Option(16, "-n", help="split mode: number of images (the first N)"),
    input_: Optional[Path] = typer.Option(None, "--input", "-i", help="your own image, folder of images or .npy "
                                          "(any size; converted to the model's channels)"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset (default: the run's)"),
    direction: Optional[str] = typer.Option(None, "--direction", help="for models with several directions "
                                            "(e.g. a2b, b2a); default: the model's first"),
) -> None:
    """Translate the first N sources of a split (grid rows: source | output | target), or your own images.

    Examples:
      genzoo translate runs/p2p --split test -n 16 --out grid.png
      genzoo translate runs/sr4 --input photo.png --out upscaled/
    """
    from .. import translate as T

    model = load_run(run)
    T.check_direction(model, direction)
    if input_ is not None:
        wrote(*T.translate_files(model, input_, out, direction))
        return
    from ..data import run_data
    name, options = run_data(run, data)  # the run's dataset with its data options (run.json)
    src, output, target = T.translate_split(model, name, split, n, direction, data_options=options)
    if out.suffix == ".png":
        wrote(T.save_translation_grid(src, output, target, out))
    elif out.suffix == ".npy":
        wrote(T.save_outputs(output, out))
    else:
        raise ValueError(f"--out {out}: expected FILE.png or FILE.npy")
