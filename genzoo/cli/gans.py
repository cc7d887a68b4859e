"""GAN commands: `genzoo gans plot` (toy runs: real vs generated points over D's output) and
`genzoo gans modes` (mode coverage of a run's samples)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import app, check_n, handle_errors, load_run, run_data, wrote

gans_app = typer.Typer(help="GAN tools: toy-data plots and mode coverage.", no_args_is_help=True)
app.add_typer(gans_app, name="gans")


def _gan_run(run: Path):
    model = load_run(run)
    if not hasattr(model, "discriminator_field"):
        raise ValueError(f"{run}: a {model.model_type} run is not a GAN")
    return model


@gans_app.command("plot")
@handle_errors
def plot_cmd(
    run: Path = typer.Argument(..., help="run directory of a GAN trained on ring8 or grid25"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png"),
    n: int = typer.Option(2500, "-n", help="number of generated points"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Plot real (blue) and generated (red) 2-D points over the discriminator's output, with the
    modes covered and the share of high-quality samples in the title.

    Example: genzoo gans plot runs/gan-ring8 --out ring8.png
    """
    from .. import data as gd

    check_n(n, "generated points")
    if out.suffix != ".png":
        raise ValueError(f"--out {out}: expected a .png file")
    model = _gan_run(run)
    real = gd.load(run_data(run, None), "test")
    wrote(toy_plot(model, real, out, n, seed))


def toy_plot(model, real, out: Path, n: int = 2500, seed: int = 0) -> Path:
    """The `gans plot` picture for a GAN `model` of the 2-D points of dataset `real` (its test split)."""
    import torch

    from ..data.toy import mode_quality, plot

    if real.meta.get("kind") != "points":
        raise ValueError(f"{real.name} is not a set of 2-D points; `gans plot` needs a run on ring8 or grid25")
    modes, std = torch.tensor(real.meta["modes"]), float(real.meta["std"])
    with torch.no_grad():
        fake = model.sample(n, generator=torch.Generator().manual_seed(seed))
    lim = float(modes.abs().max()) + 1.0
    field = model.discriminator_field(lim, 200)
    q = mode_quality(fake, modes, std)
    c = model.config
    loss = f"{c.loss}, {c.generator_loss}" if c.loss == "bce" else c.loss
    title = (f"{model.model_type} ({loss}): {q['modes_covered']}/{len(modes)} modes covered, "
             f"{100 * q['hq_share']:.1f}% high-quality")
    label = "D(x)" if c.loss == "bce" else "critic D(x)"
    return plot(real.x[:n], fake, field, lim, out, title=title, field_label=label)


@gans_app.command("modes")
@handle_errors
def modes_cmd(
    run: Path = typer.Argument(..., help="run directory of a GAN"),
    n: int = typer.Option(10000, "-n", help="number of samples"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the numbers to FILE.json"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Mode coverage of N samples: classes (MNIST-like data, by the dataset classifier) or mixture components
    (ring8/grid25) holding at least half a fair share, KL(histogram || uniform), the share of high-quality
    toy samples, and for conditional GANs the share classified as the requested label.

    Example: genzoo gans modes runs/dcgan-mnist -n 10000 --out modes.json
    """
    from .. import data as gd
    from .._io import write_json
    from ..train.callbacks import ModeMonitor

    check_n(n, "samples")
    model = _gan_run(run)
    ds = gd.load(run_data(run, None), "test")
    monitor = ModeMonitor(n=n, seed=seed)
    monitor.setup(ds)
    stats = monitor.measure(model, histogram=True)
    typer.echo(json.dumps(stats, indent=2))
    if out is not None:
        wrote(write_json(out, {"run": str(run), "n": n, "seed": seed, **stats}))
