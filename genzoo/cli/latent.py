"""Latent-space commands: `genzoo interpolate`, and `genzoo latent grid | map | shift | arithmetic | smoothness`.

They work for every model that can encode and/or decode (plain AEs, VAEs, ...); images are named by their
index in the run's dataset (test split by default) or by an image file path.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ._app import app, handle_errors, load_run, parse_labels, wrote

latent_app = typer.Typer(help="Explore a latent space: manifold grids, latent maps, attribute shifts, arithmetic, "
                              "smoothness. (Interpolation: `genzoo interpolate`.)", no_args_is_help=True)
app.add_typer(latent_app, name="latent")


def _dataset(run: Path, data: Optional[str], split: str):
    from .. import data as gd
    return gd.load_run_data(run, split, data)


def _image(spec: str, model: Any, ds: Any) -> tuple[Any, int | None]:
    """An image named by a dataset index or a file path -> (uint8 (1, C, H, W), its label or None)."""
    from ..latent import read_image
    if spec.lstrip("-").isdigit():
        i = int(spec)
        if not 0 <= i < len(ds):
            raise ValueError(f"image index {i} is out of range: {ds.name}/{ds.split} has {len(ds)} images "
                             f"(0..{len(ds) - 1})")
        return ds.x[i:i + 1], None if ds.y is None else int(ds.y[i])
    if not Path(spec).exists():
        raise ValueError(f"{spec!r} is neither an image index nor an existing image file")
    return read_image(spec, model.config.image_shape), None


def _save(x: Any, out: Path, nrow: int) -> Path:
    """PNG: a grid with `nrow` images per row, scaled x2; .npy: uint8 (N, H, W[, C])."""
    from ..images import save_grid, save_images
    if out.suffix == ".png":
        return save_grid(x, out, nrow=nrow, scale=2)
    return save_images(x, out)


def _labels_pair(model: Any, given: Optional[str], found: tuple[int | None, int | None]) -> tuple[int, int] | None:
    """The (from, to) classes a conditional model needs: --labels A,B, else the dataset labels."""
    if not model.conditional:
        if given is not None:
            raise ValueError(f"--labels: this {model.model_type} model is unconditional and takes no class labels; "
                             f"drop --labels")
        return None
    lab = parse_labels(given)
    if lab is not None:
        if len(lab) != 2:
            raise ValueError(f"--labels {given!r}: expected two classes, for the --from and --to images")
        return lab[0], lab[1]
    if None in found:
        raise ValueError("a conditional model needs the classes of image files: pass --labels A,B")
    return found  # type: ignore[return-value]


@app.command("interpolate")
@handle_errors
def interpolate_cmd(
    run: Path = typer.Argument(..., help="run directory of a model that can encode and decode"),
    from_: str = typer.Option(..., "--from", help="first image: an index into the dataset split, or a file"),
    to: str = typer.Option(..., "--to", help="second image: an index or a file"),
    steps: int = typer.Option(10, "--steps", help="images in the strip, endpoints included"),
    mode: str = typer.Option("lerp", "--mode", help="lerp (straight line) or slerp (great circle)"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png (a strip) or FILE.npy (uint8 N,H,W[,C])"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset (default: the run's)"),
    split: str = typer.Option("test", "--split"),
    labels: Optional[str] = typer.Option(None, "--labels", help="conditional models with image files: A,B"),
) -> None:
    """Decode a walk between the codes of two images (a strip from --from to --to).

    Example: genzoo interpolate runs/vae --from 3 --to 17 --steps 10 --mode slerp --out strip.png
    """
    from ..latent import interpolate

    model = load_run(run)
    ds = _dataset(run, data, split)
    (xa, ya), (xb, yb) = _image(from_, model, ds), _image(to, model, ds)
    imgs, _ = interpolate(model, xa, xb, steps, mode, labels=_labels_pair(model, labels, (ya, yb)))
    wrote(_save(imgs, out, nrow=steps))


def _plane(spec: str, model: Any, run: Path, data: Optional[str], n_codes: int):
    from .. import latent as lt
    from ..latent.grid import axis_plane
    L = model.latent_dim
    if spec == "auto" and L == 2:
        return None
    if spec.startswith("dims:"):
        try:
            i, j = (int(s) for s in spec[5:].split(","))
        except ValueError:
            raise ValueError(f"--plane {spec!r}: expected dims:I,J such as dims:0,1") from None
        return axis_plane(L, (i, j))
    if spec not in ("auto", "pca"):
        raise ValueError(f"--plane {spec!r}: expected auto, pca or dims:I,J")
    # a seeded sample, stratified by class: the first n of a class-sorted folder would be one class's plane
    codes, _ = lt.encode_dataset(model, _dataset(run, data, "test"), n_codes, seed=0)
    return lt.pca_plane(codes)


@latent_app.command("grid")
@handle_errors
def grid_cmd(
    run: Path = typer.Argument(..., help="run directory of a model that can decode"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png or FILE.npy"),
    n: int = typer.Option(15, "-n", help="points per axis"),
    span: float = typer.Option(2.0, "--span", help="uniform spacing: the grid covers [-span, span]^2"),
    spacing: str = typer.Option("uniform", "--spacing", help="uniform, or quantile (normal quantiles 5%..95%)"),
    plane: str = typer.Option("auto", "--plane", help="auto (the latent if 2-D, else pca), pca (mean and top two "
                                                       "principal directions of 2,000 test codes, a seeded "
                                                       "sample stratified by class, in std units), "
                                                       "or dims:I,J (two latent axes through 0)"),
    label: Optional[int] = typer.Option(None, "--label", help="class to draw (conditional models)"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset for the pca plane (default: the run's)"),
) -> None:
    """Decode a regular grid over a 2-D latent, or over a plane of a larger one (the manifold picture).

    Example: genzoo latent grid runs/vae2d -n 15 --span 2 --out grid.png
    """
    from ..latent import manifold_grid

    model = load_run(run)
    if model.conditional and label is None:
        raise ValueError("a conditional model draws one class: pass --label K")
    imgs, _ = manifold_grid(model, n, span, spacing, _plane(plane, model, run, data, 2000), label)
    wrote(_save(imgs, out, nrow=n))


@latent_app.command("map")
@handle_errors
def map_cmd(
    run: Path = typer.Argument(..., help="run directory of a model that can encode"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png (scatter coloured by class)"),
    method: str = typer.Option("auto", "--method", help="auto, latent (2-D latents), pca, tsne or umap"),
    n: int = typer.Option(2000, "-n", help="number of images to encode (a sample seeded by --seed, stratified by class)"),
    data: Optional[str] = typer.Option(None, "--data"),
    split: str = typer.Option("test", "--split"),
    points: Optional[Path] = typer.Option(None, "--points", help="also write x,y,label per image as CSV"),
    seed: int = typer.Option(0, "--seed", help="seed of the sample of images and of t-SNE / UMAP"),
) -> None:
    """Encode images and scatter their codes coloured by class (2-D directly, else PCA / t-SNE / UMAP).

    Example: genzoo latent map runs/vae --method tsne -n 2000 --out map.png
    """
    from .. import latent as lt
    from .._io import write_text

    model = load_run(run)
    ds = _dataset(run, data, split)
    codes, y = lt.encode_dataset(model, ds, n, use_labels=model.conditional, seed=seed)  # every class, in proportion
    proj = lt.project(codes, method, seed=seed)
    title = f"{model.model_type}: {proj.method} of {len(codes)} {ds.name} {split} codes (latent_dim {codes.shape[1]})"
    wrote(lt.save_latent_map(out, proj.xy, y, ds.classes, title))
    if points is not None:
        rows = ["x,y,label"] + [f"{a:.6g},{b:.6g},{'' if y is None else int(y[i])}"
                                for i, (a, b) in enumerate(proj.xy)]
        wrote(write_text(points, "\n".join(rows) + "\n"))


def _class_index(spec: str, classes: list[str] | None) -> int:
    if classes and spec in classes:
        return classes.index(spec)
    if spec.isdigit():
        return int(spec)
    raise ValueError(f"class {spec!r} not found; expected an index or one of: {', '.join(classes or [])}")


@latent_app.command("shift")
@handle_errors
def shift_cmd(
    run: Path = typer.Argument(..., help="run directory of a model that can encode and decode"),
    images: str = typer.Option(..., "--images", help="comma-separated dataset indices and/or image files"),
    attribute: str = typer.Option(..., "--attribute", help="a class (name or index), or with --attr-file an "
                                                            "attribute column such as Smiling"),
    away_from: Optional[str] = typer.Option(None, "--away-from", help="classes: direction = mean(attribute) - "
                                                                      "mean(this class) instead of the rest"),
    alphas: str = typer.Option("-2,-1,0,1,2", "--alphas", help="multiples of the direction, one column each"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png (one row per image) or FILE.npy"),
    n: int = typer.Option(5000, "-n", help="images used to estimate the direction (a seeded sample, stratified by "
                           "class; for an attribute, half with it and half without)"),
    attr_file: Optional[Path] = typer.Option(None, "--attr-file", help="CelebA-style attribute table"),
    image_dir: Optional[Path] = typer.Option(None, "--image-dir", help="folder of the images the table names"),
    data: Optional[str] = typer.Option(None, "--data"),
    split: str = typer.Option("test", "--split"),
) -> None:
    """Add an attribute direction (mean code with it - mean code without it) to encoded images.

    Example: genzoo latent shift runs/vae --images 0,1,2 --attribute 7 --alphas -2,-1,0,1,2 --out shift.png
    """
    import torch
    from .. import latent as lt

    model = load_run(run)
    ds = _dataset(run, data, split)
    try:
        a = [float(s) for s in alphas.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--alphas {alphas!r}: expected comma-separated numbers such as -2,-1,0,1,2") from None
    if attr_file is not None:
        if image_dir is None:
            raise ValueError("--attr-file needs --image-dir, the folder holding the images it names")
        direction = lt.attributes.file_attribute_direction(model, attr_file, image_dir, attribute, n)
    elif ds.meta.get("attributes"):  # a dataset with an attribute table (celeba): --attribute Blond_Hair
        direction = lt.attributes.dataset_attribute_direction(model, ds, attribute, n)  # half with it, half without
    else:
        if ds.y is None:
            raise ValueError(f"{ds.name} has no labels: use --attr-file and --image-dir for attributes")
        codes, y = lt.encode_dataset(model, ds, n, seed=0)  # a stratified sample: folders come sorted by class
        base = None if away_from is None else _class_index(away_from, ds.classes)
        direction = lt.class_direction(codes, y, _class_index(attribute, ds.classes), base)
    picked = [_image(s.strip(), model, ds) for s in images.split(",") if s.strip()]
    x = torch.cat([p[0] for p in picked])
    labels = None
    if model.conditional:
        if any(p[1] is None for p in picked):
            raise ValueError("a conditional model needs labelled images: use dataset indices")
        labels = torch.tensor([p[1] for p in picked])
    imgs = lt.shift(x, direction, a, model=model, labels=labels)  # (N, A, C, H, W)
    wrote(_save(imgs.reshape(-1, *imgs.shape[2:]), out, nrow=len(a)))


@latent_app.command("arithmetic")
@handle_errors
def arithmetic_cmd(
    run: Path = typer.Argument(..., help="run directory of a model that can encode and decode"),
    expr: str = typer.Argument(..., help="e.g. 'a - b + c' or '12 - class:1 + class:7' (integers: dataset "
                                         "indices; class:K: the mean code of class K; attr:NAME: an attribute "
                                         "direction, datasets with attributes such as celeba)"),
    let: Optional[list[str]] = typer.Option(None, "--let", help="name=INDEX, name=class:K or name=FILE "
                                                                 "(repeatable)"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png: the operands, then the result"),
    n: int = typer.Option(5000, "-n", help="images used for class means (a seeded sample, stratified by class)"),
    data: Optional[str] = typer.Option(None, "--data"),
    split: str = typer.Option("test", "--split"),
) -> None:
    """Latent arithmetic on encoded images: decode sum_i c_i z_i for an expression like 'a - b + c'.

    Example: genzoo latent arithmetic runs/vae "a - b + c" --let a=3 --let b=class:1 --let c=class:7 --out ab.png
    """
    import torch
    from .. import latent as lt
    from ..config import parse_sets

    model = load_run(run)
    if model.conditional:
        raise ValueError("latent arithmetic needs an unconditional model (a conditional one decodes a chosen "
                         "class); use a vae or ae run")
    ds = _dataset(run, data, split)
    names = parse_sets(let)
    means = None
    values: dict[str, Any] = {}
    for _, name in lt.parse_expression(expr):
        spec = names.get(name, name)
        if spec.startswith("class:"):
            if means is None:
                if ds.y is None:
                    raise ValueError(f"{ds.name} has no labels, so class:K means are not available")
                codes, y = lt.encode_dataset(model, ds, n, seed=0)  # stratified: every class is represented
                means = lt.class_means(codes, y, ds.num_classes or None)
            k = _class_index(spec[6:], ds.classes)
            if not 0 <= k < len(means) or torch.isnan(means[k]).any():
                raise ValueError(f"{spec}: no images of that class among the {n} sampled from {ds.name}")
            values[name] = means[k]
        elif spec.startswith("attr:"):  # attribute direction of a dataset with an attribute table (celeba)
            values[name] = lt.attributes.dataset_attribute_direction(model, ds, spec[5:], n)
        elif spec.isdigit() or Path(spec).exists():
            values[name] = lt.encode(model, _image(spec, model, ds)[0])[0]
        else:
            raise ValueError(f"{name!r} in {expr!r}: give it a value with --let {name}=INDEX|class:K|FILE")
    z = torch.stack([*values.values(), lt.arithmetic(expr, values)])
    wrote(_save(lt.decode(model, z), out, nrow=len(z)))
    typer.echo(f"columns: {', '.join(values)}, then {expr}")


@latent_app.command("smoothness")
@handle_errors
def smoothness_cmd(
    run: Path = typer.Argument(..., help="run directory of a model that can encode and decode"),
    pairs: int = typer.Option(200, "--pairs", help="random pairs of images (of different classes)"),
    steps: int = typer.Option(10, "--steps", help="images per path, endpoints included"),
    mode: str = typer.Option("lerp", "--mode", help="lerp or slerp"),
    classifier: str = typer.Option("auto", "--classifier", help="auto (the dataset's shipped classifier, when "
                                                                 "there is one), none, or a dataset name"),
    threshold: float = typer.Option(0.9, "--threshold", help="classifier confidence that counts as recognised"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the numbers as JSON"),
    data: Optional[str] = typer.Option(None, "--data"),
    split: str = typer.Option("test", "--split"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """How continuous is the latent space? Recognisable images and pixel jumps along interpolation paths.

    Example: genzoo latent smoothness runs/vae --pairs 200 --steps 10 --out smooth.json
    """
    from .._io import write_json
    from ..latent import smoothness

    model = load_run(run)
    ds = _dataset(run, data, split)
    clf: Any = None if classifier == "none" else classifier
    if classifier == "auto":
        from ..evaluate.classifier import CLASSIFIER_FOR
        clf = ds.name if ds.name in CLASSIFIER_FOR else None
    result = smoothness(model, ds, pairs, steps, mode, clf, threshold, seed)
    typer.echo(json.dumps(result, indent=2))
    if out is not None:
        wrote(write_json(out, result))
