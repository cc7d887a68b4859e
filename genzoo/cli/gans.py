"""GAN commands: `genzoo gans plot` (toy runs: real vs generated points over D's output),
`genzoo gans modes` (mode coverage of a run's samples) and `genzoo gans attention` (where G's self-attention
of one output position looks)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import app, check_n, handle_errors, load_run, wrote

gans_app = typer.Typer(help="GAN tools: toy-data plots, mode coverage, self-attention maps.", no_args_is_help=True)
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
    real = gd.load_run_data(run, "test")
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
    ds = gd.load_run_data(run, "test")
    monitor = ModeMonitor(n=n, seed=seed)
    monitor.setup(ds)
    stats = monitor.measure(model, histogram=True)
    typer.echo(json.dumps(stats, indent=2))
    if out is not None:
        wrote(write_json(out, {"run": str(run), "n": n, "seed": seed, **stats}))


@gans_app.command("attention")
@handle_errors
def attention_cmd(
    run: Path = typer.Argument(..., help="run directory of a GAN with self-attention in G (sagan)"),
    pos: str = typer.Option(..., "--pos", help="ROW,COL of the output pixel whose attention to show"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png"),
    n: int = typer.Option(4, "-n", help="number of samples"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Where the self-attention of one output position looks (SAGAN's attention-map figure): for N samples, the
    sample with the query position marked, and over it the attention weights of that position (the softmax
    over positions of G's attention layer, upsampled from its grid to the image size).

    Example: genzoo gans attention runs/sagan-mnist --pos 14,10 --out attn.png
    """
    import torch

    try:
        row, col = (int(v) for v in pos.split(","))
    except ValueError:
        raise ValueError(f"--pos {pos!r}: expected ROW,COL (two integers, e.g. 14,10)") from None
    if out.suffix != ".png":
        raise ValueError(f"--out {out}: expected a .png file")
    check_n(n, "samples")
    model = _gan_run(run)
    _, H, W = model.config.image_shape
    if not (0 <= row < H and 0 <= col < W):
        raise ValueError(f"--pos {row},{col} is outside the {H}x{W} image (rows 0..{H - 1}, columns 0..{W - 1})")
    labels = torch.arange(n) % model.config.num_classes if model.conditional else None
    x, beta, (h, w) = model.attention_maps(n, labels=labels, generator=torch.Generator().manual_seed(seed))
    q = (row * h // H) * w + col * w // W  # the query position on the attention grid
    maps = beta[:, q].reshape(n, 1, h, w)
    wrote(attention_figure(model.to_unit(x).cpu(), maps.cpu(), (row, col), (h, w), out))


def attention_figure(images, maps, pos: tuple[int, int], grid: tuple[int, int], out: Path) -> Path:
    """Two rows: the samples with the query pixel marked, and the attention weights over each sample."""
    import torch.nn.functional as F
    from matplotlib.figure import Figure

    from .._io import atomic_path

    n, _, H, W = images.shape
    up = F.interpolate(maps, size=(H, W), mode="nearest")[:, 0]
    fig = Figure(figsize=(1.8 * n, 3.9))
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        img = images[i].permute(1, 2, 0).numpy()
        img = img[..., 0] if img.shape[-1] == 1 else img
        for ax in axes[:, i]:
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.plot([pos[1]], [pos[0]], "o", color="red", ms=5, mfc="none", mew=1.5)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1, i].imshow(up[i].numpy(), cmap="magma", alpha=0.6)
    axes[0, 0].set_ylabel("sample, query")
    axes[1, 0].set_ylabel(f"attention ({grid[0]}x{grid[1]})")
    fig.suptitle(f"where output position (row {pos[0]}, col {pos[1]}) attends", fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return out
