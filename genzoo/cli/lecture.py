"""`genzoo lecture`: the lectures' claims, each measured with a number, a figure and a verdict."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app, handle_errors, wrote


@app.command("lecture")
@handle_errors
def lecture_cmd(
    quick: bool = typer.Option(False, "--quick", help="a few CPU minutes (subsets, few epochs) instead of the "
                                                      "full run (~1.5 CPU hours: 87 CPU min measured)"),
    only: Optional[str] = typer.Option(None, "--only", help="comma-separated claim names (see --list)"),
    out: Path = typer.Option(Path("lecture"), "--out", "-o", help="report folder: report.md, report.html, "
                                                                  "results.json, figures/"),
    runs: Path = typer.Option(Path("runs/lecture"), "--runs", help="trained runs go here, and are reused when a "
                                                                   "later call needs the same model"),
    tiny: bool = typer.Option(False, "--tiny", help="the test-suite scale (seconds; numbers mean little)"),
    seed: int = typer.Option(0, "--seed"),
    strict: bool = typer.Option(False, "--strict", help="stop at the first claim that fails with an error"),
    list_: bool = typer.Option(False, "--list", help="list the registered claims and exit"),
) -> None:
    """Reproduce the lectures' claims: per claim the quote, the experiment, the numbers, the figure, the
    verdict (holds / partly / does not hold at this scale) and the command that reruns just that claim.

    Example: genzoo lecture --quick --out lecture --runs runs/lecture
    """
    from .. import lecture

    if list_:
        for c in lecture.claims():
            typer.echo(f"{c.number:>3}  {c.name:<16} {c.title}")
        return
    if quick and tiny:
        raise ValueError("--quick and --tiny are two scales: pick one")
    names = [s.strip() for s in only.split(",") if s.strip()] if only else None
    if names:
        for n in names:
            lecture.get(n)  # unknown names fail before any work
    res = lecture.run(names, scale="tiny" if tiny else "quick" if quick else "full", out=out, runs=runs, seed=seed,
                      strict=strict, log=typer.echo)
    typer.echo(f"{len(res['results'])} claims in {res['cpu_s'] / 60:.1f} CPU min ({res['wall_s'] / 60:.1f} min wall)")
    wrote(*res["paths"].values())
