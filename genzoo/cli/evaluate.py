"""Evaluation commands: evaluate (one run, writes metrics.json) and compare (one markdown table of runs)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import (OPT_ETA, OPT_GUIDANCE, OPT_SAMPLER, OPT_STEPS, OPT_TEMPERATURE, OPT_TRUNCATION, app, handle_errors,
                   wrote)

METRICS_HELP = ("comma-separated: fid,kid,pr,dc,is,coverage,mse,psnr,ssim,elbo,nll,probe,knn "
                "(default: every one that applies to the model)")


def _evaluate(run: Path, metrics: Optional[str], n: int, k: int, data: Optional[str], seed: int,
              threads: Optional[int], precision: str = "fp32", settings: Optional[dict] = None) -> dict:
    from ..evaluate import evaluate
    if not (run / "config.json").exists():
        raise FileNotFoundError(f"{run}: not a run directory (no config.json)")
    if precision == "fp32":
        return evaluate(run, metrics=metrics, n=n, k=k, data=data, seed=seed, threads=threads,
                        sample_settings=settings)
    # bf16/fp16: the model generates under autocast; the metrics themselves are computed in fp32
    import genzoo
    from ..data import run_data
    from ..train.engine import with_precision
    data, options = run_data(run, data)  # the run's dataset with its data options (run.json)
    model = with_precision(genzoo.load(run), precision)
    result = evaluate(model, metrics=metrics, n=n, k=k, data=data, seed=seed, threads=threads,
                      data_options=options, sample_settings=settings)
    return {**result, "run": str(run), "precision": precision}


@app.command("evaluate")
@handle_errors
def evaluate_cmd(
    run: Path = typer.Argument(..., help="run directory"),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help=METRICS_HELP),
    n: int = typer.Option(10_000, "--n", "-n", help="test images (and as many samples) to use"),
    k: int = typer.Option(1000, "--k", help="importance samples for the IWAE NLL (nll)"),
    data: Optional[str] = typer.Option(None, "--data", help="dataset (default: the run's)"),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON file (default: RUN/metrics.json)"),
    precision: str = typer.Option("fp32", "--precision", help="the model's sampling/decoding: fp32 | bf16 "
                                  "(autocast; fp16 on CUDA); metrics stay fp32"),
    truncation: Optional[float] = OPT_TRUNCATION,
    temperature: Optional[float] = OPT_TEMPERATURE,
    steps: Optional[int] = OPT_STEPS,
    sampler: Optional[str] = OPT_SAMPLER,
    eta: Optional[float] = OPT_ETA,
    guidance: Optional[float] = OPT_GUIDANCE,
) -> None:
    """Measure a trained run on the test split of its dataset and write metrics.json.

    Sample metrics (domain FID/KID, precision/recall, density/coverage, classifier score, mode coverage) use
    genzoo's own MNIST / Fashion-MNIST classifier as the feature extractor: domain FID is not comparable with
    published Inception FIDs.

    The sampler flags (--truncation, --steps, --guidance, ...) are those of `genzoo sample`: the samples the
    metrics score are drawn with them (recorded as "sample_settings"). A class-conditional model is asked for
    balanced labels, and `modes` then also reports label_accuracy (samples classified as the class asked for).

    Example: genzoo evaluate runs/vae --metrics fid,pr,coverage,mse --n 2000;
    genzoo evaluate runs/ddpm --metrics fid,modes --steps 50 --guidance 2
    """
    from .._io import write_json
    from ..evaluate import format_result

    flags = dict(truncation=truncation, temperature=temperature, steps=steps, sampler=sampler, eta=eta,
                 guidance=guidance)
    settings = {k: v for k, v in flags.items() if v is not None}
    result = _evaluate(run, metrics, n, k, data, seed, threads, precision, settings)
    typer.echo(format_result(result))
    wrote(write_json(out or run / "metrics.json", result))


@app.command("compare")
@handle_errors
def compare_cmd(
    runs: list[Path] = typer.Argument(..., help="run directories"),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help=METRICS_HELP + "; given: re-evaluate"),
    n: int = typer.Option(10_000, "--n", "-n", help="test images per evaluation (when evaluating)"),
    k: int = typer.Option(1000, "--k", help="importance samples for the IWAE NLL"),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also write the table to this markdown file"),
) -> None:
    """Print one markdown table of the metrics of several runs.

    A run's RUN/metrics.json is used when it exists and --metrics is not given; otherwise the run is evaluated
    (and its metrics.json written).

    Example: genzoo compare runs/ae runs/vae runs/dcgan
    """
    from .._io import read_json, write_json, write_text
    from ..evaluate import compare_table

    results = []
    for run in runs:
        path = run / "metrics.json"
        if metrics is None and path.exists():
            results.append(read_json(path))
            continue
        result = _evaluate(run, metrics, n, k, None, seed, None)
        wrote(write_json(path, result))
        results.append(result)
    table = compare_table(results, [str(r) for r in runs])
    typer.echo(table)
    if out is not None:
        wrote(write_text(out, table + "\n"))
