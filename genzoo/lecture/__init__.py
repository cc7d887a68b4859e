"""The lectures' claims, measured: each claim a small registered experiment with its number(s), figure(s),
verdict (holds / partly / does not hold at this scale) and the command that reruns it.

    from genzoo import lecture
    lecture.names()                                   # every registered claim
    results = lecture.run(["latent-space"], scale="quick", out="lecture", runs="runs/lecture")
    # -> report.md, report.html (self-contained), results.json, figures/*.png under out

Add a claim (the report picks it up):

    from genzoo.lecture import claim, Result, verdict_of

    @claim("my-claim", number=13, title="...", quote="the slide's sentence", experiment="what is run")
    def my_claim(ctx):
        model = ctx.train("my-ae", "ae", ctx.digits(), settings={"latent_dim": 2}, epochs=ctx.pick(1, 5, 20))
        ...
        checks = {"the AE beats PCA": a < b}
        return Result({"a": a, "b": b}, [fig_path], verdict_of(checks), "why, in one paragraph")
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .core import (FAILS, HOLDS, PARTLY, SCALES, VERDICTS, Claim, Context, Result, claim, claims, get, names,
                   recognised, run_claim, verdict_of)
from .report import write_report

__all__ = ["claim", "claims", "names", "get", "run", "Claim", "Context", "Result", "verdict_of", "recognised",
           "run_claim", "write_report", "SCALES", "VERDICTS", "HOLDS", "PARTLY", "FAILS"]


def run(only: Sequence[str] | None = None, scale: str = "quick", out: str | Path = "lecture",
        runs: str | Path | None = "runs/lecture", root: str | None = None, seed: int = 0, strict: bool = False,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the claims named in `only` (all when None) at `scale` and write the report under `out`.
    Returns {"results": [(Claim, Result), ...], "paths": {"md", "html", "json"}, "wall_s", "cpu_s"}."""
    import torch
    chosen = [get(n) for n in only] if only else claims()
    ctx = Context(scale=scale, out=Path(out), runs=None if runs is None else Path(runs), root=root, seed=seed, log=log)
    w0, c0 = time.time(), time.process_time()
    items = []
    for c in chosen:
        log(f"[{c.number}] {c.name}: {c.title}")
        torch.manual_seed(seed)
        r = run_claim(c, ctx, strict=strict)
        log(f"    -> {r.verdict} ({r.cpu_s:.0f} CPU s)" + (f": {r.why}" if r.verdict == "error" else ""))
        items.append((c, r))
    wall, cpu = time.time() - w0, time.process_time() - c0
    ran = len(items)
    if only:
        items = _with_earlier(items, Path(out), scale)
    summed = sum(r.cpu_s for _, r in items) / 60
    spent = (f"{cpu / 60:.1f} CPU minutes ({wall / 60:.1f} min wall)" if ran == len(items) else
             f"{summed:.1f} CPU minutes summed over the claims' own times (this call reran {ran}: {cpu / 60:.1f} "
             f"CPU min, {wall / 60:.1f} min wall; the others are kept from earlier calls)")
    header = (f"{len(items)} claims at scale '{scale}', seed {seed}; {spent} on this machine, torch threads "
              f"{torch.get_num_threads()}. "
              f"Verdicts follow the rule stated in each claim; 'does not hold at this scale' means the measure "
              f"did not show it with these models and budgets.")
    paths = write_report(items, Path(out), scale, header)
    return {"results": items, "paths": paths, "wall_s": wall, "cpu_s": cpu}


def _with_earlier(items: list, out: Path, scale: str) -> list:
    """With --only: the claims not rerun keep their results from `out`/results.json (same scale), so the
    report still lists every claim; the header then sums the claims' own CPU times and states this call's."""
    import json
    try:
        old = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return items
    if old.get("scale") != scale:
        return items
    done = {c.name for c, _ in items}
    kept = dict((c.name, (c, r)) for c, r in items)
    for d in old.get("claims", []):
        if d.get("name") in done or d.get("name") not in names():
            continue
        figs = [f if Path(f).is_absolute() else out / f for f in d.get("figures") or []]
        r = Result(d.get("numbers") or {}, [Path(f) for f in figs], d.get("verdict", "error"),
                   d.get("why", ""), d.get("table"), float(d.get("cpu_s") or 0.0), d.get("error"))
        kept[d["name"]] = (get(d["name"]), r)
    return [kept[n] for n in names() if n in kept]
