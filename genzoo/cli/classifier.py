"""`genzoo classifier train DATA`: a domain classifier for any labelled dataset, the feature extractor that
`genzoo evaluate` then uses for that dataset's sample metrics (FID/KID, precision/recall, coverage, modes)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, handle_errors, wrote

classifier_app = typer.Typer(help="Domain classifiers: the feature extractors of domain FID/KID and mode coverage.",
                             no_args_is_help=True)
app.add_typer(classifier_app, name="classifier")


@classifier_app.command("train")
@handle_errors
def train_cmd(
    data: str = typer.Argument(..., help="a labelled dataset: mnist, fashion-mnist, cifar10, folder:PATH, ..."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder for classifier.safetensors + .json "
                                       "(default $GENZOO_HOME/classifiers/<dataset>/, where evaluate looks)"),
    epochs: int = typer.Option(8, "--epochs", help="passes over the training split"),
    batch_size: int = typer.Option(128, "--batch-size"),
    width: int = typer.Option(16, "--width", help="channels of the first conv block (then 2x, 4x)"),
    hidden: int = typer.Option(128, "--hidden", help="size of the feature layer (the FID embedding)"),
    shift: int = typer.Option(2, "--shift", help="random translations of up to this many pixels"),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="random horizontal flips (default: on "
                                        "for colour images and Fashion-MNIST)"),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads"),
    root: Optional[Path] = typer.Option(None, "--root", help="data root"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="folder: resize images to this size "
                                             "(default: the folder's most common size; train with the same)"),
) -> None:
    """Train the shipped classifier recipe (3 conv blocks, AdamW, cosine LR, shifts) on DATA's train split,
    report its accuracy on DATA's test split, and store it where `genzoo evaluate` finds it for DATA.

    Example: genzoo classifier train folder:~/pictures --epochs 10
    """
    from ..evaluate.classifier import train_user_classifier

    if epochs < 1:
        raise ValueError(f"--epochs {epochs}: expected an integer >= 1")
    _, report, folder = train_user_classifier(
        data, out, root=root, epochs=epochs, batch_size=batch_size, width=width, hidden=hidden, shift=shift,
        flip=flip, seed=seed, threads=threads, image_size=image_size, log=lambda s: typer.echo(s))
    typer.echo(f"{data}: test accuracy {report['test_accuracy']:.4f} on {report['n_test']} test images "
               f"({report['n_train']} training images, {len(report['classes'])} classes, "
               f"{'x'.join(map(str, report['image_shape']))})")
    wrote(folder / "classifier.safetensors", folder / "classifier.json")
    if out is not None:
        typer.echo(f"note: evaluate looks in the default folder; copy these files there to use them automatically")


@classifier_app.command("list")
@handle_errors
def list_cmd() -> None:
    """List the shipped classifiers and yours, with their test accuracy.

    Example: genzoo classifier list
    """
    from .._io import genzoo_home, read_json
    from ..evaluate.classifier import CLASSIFIER_FOR
    for name, stem in sorted(CLASSIFIER_FOR.items()):
        typer.echo(f"{name:<28} shipped ({stem})")
    for info in sorted((genzoo_home() / "classifiers").glob("*/classifier.json")):
        r = read_json(info)
        typer.echo(f"{r['dataset']:<28} yours, test accuracy {r['test_accuracy']:.4f}  ({info.parent})")
