"""Core commands: models, data list|info|fetch, train, sample, reconstruct."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from ._app import (OPT_ETA, OPT_GUIDANCE, OPT_SAMPLER, OPT_STEPS, OPT_TEMPERATURE, OPT_TRUNCATION, app, check_labels,
                   handle_errors, load_run, parse_labels, sample_settings, wrote)

data_app = typer.Typer(help="Datasets: list them, show one, download one.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@app.command("models")
@handle_errors
def models_cmd() -> None:
    """List the registered models, one line each.

    Example: genzoo models
    """
    from .. import registry
    for e in registry.entries():
        presets = ", ".join(e.config_class.PRESETS) or "-"
        typer.echo(f"{e.name:<16} {e.summary}  [presets: {presets}]")


@data_app.command("list")
@handle_errors
def data_list() -> None:
    """List dataset names and where they are looked for.

    Example: genzoo data list
    """
    from .. import data as gd
    typer.echo(f"data root: {gd.data_root()}  (root= argument, else $GENZOO_DATA, else ~/.cache/genzoo)")
    for s in gd.all_sources():
        typer.echo(f"{s.name:<14} {s.summary}")
    typer.echo(f"{'folder:PATH':<14} PNG/JPEG images under PATH; class sub-folders become labels")
    typer.echo(f"{'unpaired:PATH':<14} unpaired: two image domains in CycleGAN's PATH/trainA, trainB, testA, testB")
    typer.echo(f"{'pix2pix:PATH':<14} paired: pix2pix folders, side-by-side AB images in train/ + test/|val/, or A/ + B/ "
               f"with matching names")
    typer.echo(f"{'sr:PATH':<14} paired: super-resolution from any image folder (x4 by default; random crops "
               f"for training, whole images for test)")


@data_app.command("info")
@handle_errors
def data_info(name: str = typer.Argument(..., help="dataset name, e.g. mnist or folder:PATH")) -> None:
    """Show a dataset's size, shape, classes and files.

    Example: genzoo data info mnist-mini
    """
    from .. import data as gd
    typer.echo(json.dumps(gd.info(name), indent=2))


@data_app.command("fetch")
@handle_errors
def data_fetch(name: str = typer.Argument(..., help="mnist, fashion-mnist or cifar10"),
               root: Optional[Path] = typer.Option(None, help="data root (default $GENZOO_DATA or ~/.cache/genzoo)"),
               mirror: Optional[str] = typer.Option(None, help="base URL serving <mirror>/<name>/<file>")) -> None:
    """Download a dataset from its public mirrors and verify the checksums.

    Example: genzoo data fetch mnist
    """
    from .. import data as gd
    from ..data.fetch import fetch
    wrote(*fetch(name, gd.data_root(root), mirror=mirror))


@app.command("train")
@handle_errors
def train_cmd(
    model: str = typer.Argument(..., help="registered model name (see `genzoo models`)"),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="dataset name (see `genzoo data list`; "
                                       "default mnist-mini, or the run's own with --resume)"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of model and training keys"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="key=value override (repeatable)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="named preset, e.g. tiny; `recommended` is the measured recipe (model and training keys; --set and the options override it)"),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    steps: Optional[int] = typer.Option(None, "--steps"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size"),
    latent_dim: Optional[int] = typer.Option(None, "--latent-dim"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory (default runs/MODEL-DATA-SEED)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its last checkpoint"),
    data_opt: Optional[list[str]] = typer.Option(None, "--data-opt", help="KEY=VALUE option of the dataset's loader "
                                                 "(repeatable; values parsed as int/float/bool/str), e.g. "
                                                 "--data-opt scale=2 --data-opt crop=48 for sr:PATH; recorded in "
                                                 "run.json and used whenever the run's data is reloaded. Options: "
                                                 "folder: size, channels, test_fraction; pix2pix: direction, size, "
                                                 "channels; sr: scale, crop, crops, seed, channels; unpaired: size, "
                                                 "channels, fit; BASE-inpaint: seed"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="short for --data-opt size=N (folder:, "
                                             "pix2pix:, unpaired: images resized to N x N)"),
    print_config: bool = typer.Option(False, "--print-config", help="print the resolved config and exit"),
    gif: bool = typer.Option(False, "--gif", help="also write the sample grids as samples/training.gif"),
) -> None:
    """Train a model and write a run directory.

    Examples:
      genzoo train ae --data mnist --epochs 1 --out runs/ae
      genzoo train srgan --preset srresnet --data sr:photos --data-opt scale=2 --data-opt crop=48 --out runs/sr2
    """
    from .. import registry
    from ..config import TrainConfig, field_names, parse_sets, read_yaml, split_settings, to_dict
    from .. import data as gd
    from ..train import build_model, train

    data_options = gd.parse_options(data_opt)
    settings = read_yaml(config) if config else {}
    settings.update(parse_sets(set_))
    for key, val in (("epochs", epochs), ("steps", steps), ("batch_size", batch_size),
                     ("latent_dim", latent_dim), ("seed", seed), ("gif", gif or None)):
        if val is not None:
            settings[key] = val
    if steps is not None and epochs is None:
        settings.setdefault("epochs", None)
    entry = registry.get(model)
    if latent_dim is not None and "latent_dim" not in field_names(entry.config_class):
        raise ValueError(f"{model} has no latent_dim")
    if print_config:
        from ..config import from_dict, preset_settings
        from ..train import _data_options
        m_set, t_set = split_settings(entry.config_class, settings, source="settings")
        t_set = {**preset_settings(entry.config_class, preset, model)[1], **t_set}  # the preset's training keys
        ds = gd.load(data or "mnist-mini", "train", **_data_options(data, data_options, image_size))
        built = build_model(model, ds, preset=preset, **m_set)
        typer.echo(json.dumps({"model_type": model, "model": to_dict(built.config),
                               "train": to_dict(from_dict(TrainConfig, t_set))}, indent=2, default=str))
        return
    seed_val = settings.get("seed", 0)
    if out is None:
        if resume:
            raise ValueError("--resume needs --out (the run directory to continue)")
        name = (data or "mnist-mini").replace(":", "_").replace("/", "_")
        out = Path("runs") / f"{model}-{name}-{seed_val}"
    train(model, data, out=out, settings=settings, preset=preset, resume=resume, image_size=image_size,
          data_options=data_options)
    from ..train import rundir as R
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 writes
        wrote(*[p for p in (out / R.CONFIG, out / R.WEIGHTS, out / R.STATE, out / R.METRICS, out / R.RUN,
                            out / R.SAMPLES) if p.exists()])


@app.command("sample")
@handle_errors
def sample_cmd(
    run: Path = typer.Argument(..., help="run directory"),
    n: int = typer.Option(64, "-n", help="number of samples"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png (a grid) or FILE.npy (uint8 N,H,W[,C])"),
    labels: Optional[str] = typer.Option(None, "--labels", help="classes for conditional models, e.g. 3,3,7"),
    truncation: Optional[float] = OPT_TRUNCATION,
    temperature: Optional[float] = OPT_TEMPERATURE,
    steps: Optional[int] = OPT_STEPS,
    sampler: Optional[str] = OPT_SAMPLER,
    eta: Optional[float] = OPT_ETA,
    guidance: Optional[float] = OPT_GUIDANCE,
    seed: int = typer.Option(0, "--seed"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 (autocast; fp16 on CUDA)"),
) -> None:
    """Draw samples from a trained model.

    Example: genzoo sample runs/ae -n 64 --out samples.npy;
    genzoo sample runs/ddpm -n 64 --steps 50 --labels 3,3,7 --guidance 3 --out s.png
    """
    import torch
    from ..images import save_images

    if n < 1:
        raise ValueError(f"-n {n}: expected the number of samples, an integer >= 1")
    from ..train.engine import with_precision
    model = with_precision(load_run(run), precision)
    if not model.can("sample"):
        raise ValueError(f"{run}: a {model.model_type} model cannot sample")
    lab = parse_labels(labels)
    y = None
    if lab is not None:
        check_labels(model, lab, run)
        if len(lab) == 1:
            lab = lab * n
        if len(lab) != n:
            raise ValueError(f"--labels gives {len(lab)} labels for -n {n}; give one label or n of them")
        y = torch.tensor(lab)
    # sampler settings go through one path, model.sample(**settings); a setting it does not take is an error
    kw = sample_settings(model, run, temperature=temperature, truncation=truncation, steps=steps, sampler=sampler,
                         eta=eta, guidance=guidance)
    with torch.no_grad():
        x = model.sample(n, labels=y, generator=torch.Generator().manual_seed(seed), **kw)
    wrote(save_images(model.to_unit(x), out))


@app.command("reconstruct")
@handle_errors
def reconstruct_cmd(
    run: Path = typer.Argument(..., help="run directory"),
    n: int = typer.Option(16, "-n", help="number of test images"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png (originals over reconstructions) or FILE.npy"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset (default: the run's)"),
    split: str = typer.Option("test", "--split"),
) -> None:
    """Reconstruct the first N images of a split.

    Example: genzoo reconstruct runs/ae -n 16 --out recon.png
    """
    import torch
    from .. import data as gd
    from ..images import save_grid, save_images

    if n < 1:
        raise ValueError(f"-n {n}: expected the number of test images, an integer >= 1")
    model = load_run(run)
    if not model.can("reconstruct"):
        raise ValueError(f"{run}: a {model.model_type} model cannot reconstruct")
    ds = gd.load_run_data(run, split, data)
    x = model.prepare(ds.x[:n])
    with torch.no_grad():
        r = model.reconstruct(x)
    if out.suffix == ".png":
        wrote(save_grid(torch.cat([model.to_unit(x), model.to_unit(r)]), out, nrow=min(n, 16), scale=2))
    else:
        wrote(save_images(model.to_unit(r), out))


@app.command("demo")
@handle_errors
def demo_cmd(out: Path = typer.Option(Path("runs/demo"), "--out", "-o"),
             epochs: int = typer.Option(10, "--epochs")) -> None:
    """Train a 2-D-latent VAE on the bundled mnist-mini set (offline, a few CPU minutes) and write the first
    pictures: reconstructions, prior samples, latent map, manifold grid, interpolation.

    Example: genzoo demo --out runs/demo
    """
    from ..demo import run
    run(out, epochs=epochs)
