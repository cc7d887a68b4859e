"""Autoencoder applications: denoise, anomaly, features, finetune, pca-check (genzoo.applications)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import app, check_n, handle_errors, load_run, parse_labels, run_dataset, wrote


def _settings(set_: Optional[list[str]]) -> dict:
    from ..config import parse_sets
    return parse_sets(set_)


def _write_json(path: Optional[Path], obj: dict) -> None:
    if path is not None:
        from .._io import write_json
        wrote(write_json(path, obj))


@app.command("denoise")
@handle_errors
def denoise_cmd(
    run: Path = typer.Argument(..., help="run directory of a model that can reconstruct"),
    noise: str = typer.Option("gaussian:0.5", "--noise", help="gaussian:SIGMA | masking:NU | salt-pepper:NU"),
    n: int = typer.Option(16, "-n", help="number of test images in the grid"),
    out: Path = typer.Option(..., "--out", "-o", help="FILE.png: rows clean | noisy | denoised"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset (default: the run's)"),
    split: str = typer.Option("test", "--split"),
    measure: int = typer.Option(1000, "--measure", help="images over which PSNR/SSIM are averaged"),
    seed: int = typer.Option(0, "--seed", help="seed of the noise"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the metrics to this JSON file"),
) -> None:
    """Corrupt test images, reconstruct them, and report PSNR/SSIM of noisy and denoised vs clean.

    Example: genzoo denoise runs/dae --noise gaussian:0.5 -n 16 --out denoise.png
    """
    import torch
    from .. import data as gd
    from ..applications import denoise
    from ..images import save_grid

    check_n(n, "test images in the grid")
    check_n(measure, "images to measure", "--measure")
    model = load_run(run)
    ds = run_dataset(run, data, split)
    m = max(n, min(measure, len(ds)))
    from ..evaluate.subsets import subset_indices
    res = denoise(model, ds.x[subset_indices(len(ds), m, ds.y, seed=0).sort().values], noise, seed=seed)
    k = min(n, m)
    grid = torch.cat([res.clean[:k], res.noisy[:k], res.denoised[:k]])
    wrote(save_grid(grid, out, nrow=k, scale=2))
    mt = res.metrics
    typer.echo(f"{noise} on {m} {split} images: PSNR noisy {mt['psnr_noisy']:.2f} dB -> denoised "
               f"{mt['psnr_denoised']:.2f} dB; SSIM noisy {mt['ssim_noisy']:.3f} -> denoised {mt['ssim_denoised']:.3f}")
    _write_json(json_out, {"run": str(run), "noise": noise, "n": m, **mt})


@app.command("anomaly")
@handle_errors
def anomaly_cmd(
    data: Optional[str] = typer.Option(None, "--data", "-d", help="dataset with labels (default: the run's)"),
    normal: Optional[str] = typer.Option(None, "--normal", help="normal class(es), e.g. 3 or 3,5"),
    all_classes: bool = typer.Option(False, "--all-classes", help="the 10 one-class tasks and their mean"),
    run: Optional[Path] = typer.Option(None, "--run", help="score with this trained run instead of training"),
    model: str = typer.Option("ae", "--model", help="registered model to train on the normal images"),
    preset: Optional[str] = typer.Option("conv", "--preset"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="model or training key=value (repeatable)"),
    epochs: int = typer.Option(20, "--epochs"),
    steps: Optional[int] = typer.Option(None, "--steps", help="train for this many steps instead of --epochs"),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the results as JSON"),
    ood: Optional[str] = typer.Option(None, "--ood", help="with --run: score this dataset's test images as "
                                                          "out-of-distribution against the run's own test images"),
    k: int = typer.Option(100, "--k", help="with --ood: IWAE importance samples for the likelihood score"),
    n: int = typer.Option(1000, "-n", help="with --ood: test images of each set"),
) -> None:
    """One-class anomaly detection: train on the normal class(es) of the train split, score every test
    image by its reconstruction error, report AUROC and average precision. With --run RUN --ood DATA: how
    well the run's likelihood (IWAE, VAEs) and its reconstruction error tell DATA from its own data.

    Example: genzoo anomaly --data mnist --normal 3 --model ae --preset conv --epochs 20
    Example: genzoo anomaly --run runs/vae-fashion --ood mnist --k 100 -n 1000
    """
    from .. import data as gd
    from .. import applications as A

    if ood is not None:
        from ..evaluate.ood import ood_detection
        if run is None:
            raise ValueError("--ood scores a trained model: give it with --run RUN")
        res = {"run": str(run), **ood_detection(load_run(run), run_dataset(run, data, "test"),
                                                 gd.load(ood, "test"), k=k, n=n, seed=seed)}
        for name in ("nll", "recon"):
            if f"auroc_{name}" in res:
                typer.echo(f"AUROC by {'likelihood (IWAE k=' + str(k) + ')' if name == 'nll' else 'reconstruction error'}: "
                           f"{res[f'auroc_{name}']:.4f}  (mean {name}: {res['in']} {res[f'mean_{name}_in']:.4g}, "
                           f"{res['ood']} {res[f'mean_{name}_ood']:.4g})")
        _write_json(out, res)
        return
    if run is not None:
        if all_classes or normal is None:
            raise ValueError("--run scores one trained model: give the class(es) it was trained on with --normal")
        res = {"run": str(run), "normal": parse_labels(normal),
               **A.score_anomalies(load_run(run), run_dataset(run, data, "test"), parse_labels(normal))}
        typer.echo(f"normal {res['normal']}: AUROC {res['auroc']:.4f}  AP {res['ap']:.4f}")
        _write_json(out, res)
        return
    if data is None:
        raise ValueError("--data is required when training (or pass --run)")
    kw = dict(model=model, preset=preset, settings=_settings(set_), epochs=epochs, steps=steps, seed=seed)
    if all_classes:
        if normal is not None:
            raise ValueError("--all-classes runs every one-class task: drop --normal")
        k = gd.load(data, "test").num_classes or 10

        def show(row: dict) -> None:
            typer.echo(f"class {row['class']}: AUROC {row['auroc']:.4f}  AP {row['ap']:.4f}  ({row['cpu_s']:.0f} CPU s)")

        res = A.anomaly_table(data, classes=range(k), on_row=show, **kw)
        typer.echo(f"mean over {k} tasks: AUROC {res['mean_auroc']:.4f}  AP {res['mean_ap']:.4f}  "
                   f"({res['cpu_s'] / 60:.1f} CPU min)")
    else:
        if normal is None:
            raise ValueError("give --normal CLASSES (e.g. --normal 3) or --all-classes")
        res = A.anomaly_task(data, parse_labels(normal), **kw)
        typer.echo(f"normal {res['normal']}: AUROC {res['auroc']:.4f}  AP {res['ap']:.4f}  ({res['cpu_s']:.0f} CPU s)")
    _write_json(out, {"data": data, **kw, **res})


@app.command("features")
@handle_errors
def features_cmd(
    run: Path = typer.Argument(..., help="run directory of a model that can encode"),
    out: Path = typer.Option(..., "--out", "-o", help="codes FILE.npy (float32 N x k); labels go to FILE.labels.npy"),
    split: str = typer.Option("test", "--split"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset (default: the run's)"),
    probe: bool = typer.Option(True, "--probe/--no-probe", help="linear probe: logistic regression trained on "
                               "the train split's codes, accuracy on --split"),
    probe_train: Optional[int] = typer.Option(None, "--probe-train",
                                              help="use N training images (a seeded sample, stratified by class)"),
    units: Optional[Path] = typer.Option(None, "--units", help="also write what each code unit draws (PNG)"),
) -> None:
    """Export latent codes with labels; report the linear-probe accuracy and the mean code activation.

    Example: genzoo features runs/ae --split test --out codes.npy
    """
    import io

    import numpy as np
    from .. import data as gd
    from .._io import write_bytes
    from ..applications import encode_dataset, linear_probe, unit_images
    from ..images import save_grid

    if out.suffix != ".npy":
        raise ValueError(f"--out {out}: expected a .npy file")
    model = load_run(run)
    if not model.can("encode"):
        raise ValueError(f"{run}: a {model.model_type} model cannot encode")
    name, opts = gd.run_data(run, data)
    ds = gd.load(name, split, **opts)
    codes = encode_dataset(model, ds)

    def save(path: Path, a: np.ndarray) -> Path:
        buf = io.BytesIO()
        np.save(buf, a)
        return write_bytes(path, buf.getvalue())

    wrote(save(out, codes.numpy()))
    if ds.y is not None:
        wrote(save(out.with_suffix(".labels.npy"), ds.y.numpy()))
    rho = getattr(model.config, "rho", None)
    typer.echo(f"{len(codes)} codes of size {codes.shape[1]}; mean activation {float(codes.mean()):.4f}"
               + (f" (target rho {rho})" if rho is not None and getattr(model.config, "sparsity", "") == "kl" else "")
               + f"; per-unit mean in [{float(codes.mean(0).min()):.4f}, {float(codes.mean(0).max()):.4f}]")
    if probe and ds.y is not None:
        train = gd.load(name, "train", **opts)
        if probe_train is not None:
            from ..evaluate.subsets import random_subset
            train = random_subset(train, probe_train, seed=0)
        acc = linear_probe(encode_dataset(model, train), train.y, codes, ds.y)
        typer.echo(f"linear probe (logistic regression, {len(train)} training codes): {split} accuracy {acc:.4f}")
    if units is not None:
        imgs = unit_images(model)
        wrote(save_grid(imgs, units, nrow=min(16, len(imgs)), scale=2))


@app.command("finetune")
@handle_errors
def finetune_cmd(
    run: Optional[Path] = typer.Argument(None, help="pretrained run (omit to pretrain --model on --data first)"),
    labels: int = typer.Option(100, "--labels", help="number of labelled training images (balanced)"),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="dataset (default: the run's)"),
    model: str = typer.Option("ae", "--model", help="without RUN: the model to pretrain"),
    preset: Optional[str] = typer.Option("conv", "--preset", help="without RUN: its preset"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="without RUN: model/training key=value"),
    pretrain_epochs: int = typer.Option(5, "--pretrain-epochs", help="without RUN: epochs on all training images"),
    pretrain_out: Optional[Path] = typer.Option(None, "--pretrain-out", help="without RUN: keep the pretrained run"),
    steps: int = typer.Option(1500, "--steps", help="classifier training steps (both classifiers)"),
    lr: float = typer.Option(1e-3, "--lr"),
    shift: int = typer.Option(2, "--shift", help="random translation of the labelled images, in pixels"),
    freeze: bool = typer.Option(False, "--freeze", help="train only the linear head on the frozen encoder"),
    seed: int = typer.Option(0, "--seed", help="seed of the labelled subset and of the classifiers"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the results as JSON"),
) -> None:
    """Unsupervised pretraining, then fine-tuning on N labels, against the same classifier from scratch.

    Example: genzoo finetune runs/ae --labels 100
    """
    from .. import data as gd
    from ..applications import finetune
    from ..train import train

    if run is not None:
        ae = load_run(run)
        name, opts = gd.run_data(run, data)
    else:
        if data is None:
            raise ValueError("give a pretrained RUN or --data to pretrain on")
        name, opts = data, {}
        s = {"progress": False, "sample_every": 0, **_settings(set_)}
        ae = train(model, data, out=pretrain_out, settings=s, preset=preset, epochs=pretrain_epochs, seed=seed)
        typer.echo(f"pretrained {model} ({preset}) on all {name} training images for {pretrain_epochs} epochs")
        if pretrain_out is not None:
            wrote(pretrain_out)
    res = finetune(ae, gd.load(name, "train", **opts), gd.load(name, "test", **opts), labels=labels, seed=seed,
                   steps=steps, lr=lr, shift=shift, freeze=freeze)
    typer.echo(f"{labels} labels: test error pretrained {100 * res['pretrained_error']:.2f}%  "
               f"from scratch {100 * res['scratch_error']:.2f}%")
    _write_json(out, {"run": str(run) if run else None, "data": name, **res})


@app.command("pca-check")
@handle_errors
def pca_check_cmd(
    data: str = typer.Option("digits", "--data", "-d"),
    k: int = typer.Option(10, "-k", help="code size = number of principal components"),
    epochs: int = typer.Option(500, "--epochs"),
    lr: float = typer.Option(1e-2, "--lr", help="Adam learning rate (cosine schedule to 0)"),
    batch_size: int = typer.Option(128, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the results as JSON"),
) -> None:
    """Linear AE = PCA: train a linear autoencoder, compare its MSE and subspace with scikit-learn PCA.

    Example: genzoo pca-check --data digits -k 10
    """
    from ..applications import linear_pca_check

    res = linear_pca_check(data, k=k, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    typer.echo(f"{data}, k={k}: linear AE MSE {res['ae_mse']:.6f}, PCA MSE {res['pca_mse']:.6f} "
               f"(ratio {res['mse_ratio']:.4f}); largest principal angle {res['max_angle_deg']:.2f} degrees")
    _write_json(out, res)
    typer.echo(json.dumps({"angles_deg": res["angles_deg"]}))
