"""Paired translation targets (docs/benchmarks.md, "Paired translation"): train and evaluate named cases.

    GENZOO_DATA=/work/shared/data heavy .venv/bin/python benchmarks/translation.py sr2-mnist sr4-mnist \
        [--steps N] [--runs runs/translation] [--out results.json]

Each case trains one run through `genzoo.train` (one thread), then `genzoo.evaluate` on the whole test split,
and prints/appends one JSON record with the CPU seconds of training and evaluation. Cases:

    sr2-mnist, sr4-mnist, sr2-fashion, sr4-fashion   SRResNet (srgan, preset srresnet-mnist)
    srgan4-mnist                                     SRGAN x4 started from the sr4-mnist run
    p2p-mnist, l1-mnist                              pix2pix edges -> digit, and its L1-only baseline
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import genzoo
from genzoo.evaluate.suite import evaluate

TRAIN = {"log_every": 50, "sample_every": 0, "progress": False, "batch_size": 32, "validate": False,
         "num_threads": 1}
SR = "srresnet-mnist"
COSINE = {"lr_schedule": "cosine"}


def cases(runs: Path) -> dict[str, dict]:
    return {
        "sr2-mnist": dict(model="srgan", data="mnist-sr2", preset=SR, steps=2500, settings=COSINE),
        "sr4-mnist": dict(model="srgan", data="mnist-sr4", preset=SR, steps=2500, settings=COSINE),
        "sr2-fashion": dict(model="srgan", data="fashion-mnist-sr2", preset=SR, steps=3000, settings=COSINE),
        "sr4-fashion": dict(model="srgan", data="fashion-mnist-sr4", preset=SR, steps=3000, settings=COSINE),
        "srgan4-mnist": dict(model="srgan", data="mnist-sr4", preset="mnist", steps=500,
                             settings={"init_from": str(runs / "sr4-mnist"), "gan_weight": 1e-2,
                                       "perceptual": "mnist", "perceptual_weight": 1e-2, "lr": 1e-4}),
        "p2p-mnist": dict(model="pix2pix", data="mnist-edges", preset="mnist", steps=1000),
        "l1-mnist": dict(model="pix2pix", data="mnist-edges", preset="mnist", steps=1000,
                         settings={"gan_weight": 0.0}),
    }


def run_case(name: str, spec: dict, runs: Path, steps: int | None) -> dict:
    out = runs / name
    steps = steps or spec["steps"]
    torch.set_num_threads(1)
    c0, w0 = time.process_time(), time.perf_counter()
    genzoo.train(spec["model"], spec["data"], out=out, preset=spec["preset"], steps=steps,
                 settings={**TRAIN, **spec.get("settings", {})})
    train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - w0
    c1 = time.process_time()
    res = evaluate(out, out=out / "metrics.json")
    return {"case": name, "run": str(out), "model": spec["model"], "data": spec["data"], "preset": spec["preset"],
            "settings": spec.get("settings", {}), "steps": steps, "batch_size": TRAIN["batch_size"],
            "train_cpu_s": round(train_cpu, 1), "train_wall_s": round(train_wall, 1),
            "eval_cpu_s": round(time.process_time() - c1, 1), "metrics": res["metrics"]}


def figure(out: Path, runs: list[Path], data: str, n: int = 16, bicubic_row: bool = False) -> Path:
    """One grid: rows source | [bicubic |] each run's outputs | target, the first n test examples."""
    from genzoo.evaluate.translation import bicubic
    from genzoo.images import grid, png_bytes
    from genzoo._io import write_bytes
    from genzoo.translate import translate_split, translation_rows

    rows = []
    for i, run in enumerate(runs):
        src, output, tgt = translate_split(genzoo.load(run), data, "test", n)
        if i == 0:
            rows.append(src)
            if bicubic_row:
                rows.append(bicubic(src, tuple(tgt.shape[-2:])))
        rows.append(output)
    rows.append(tgt)
    imgs, nrow = translation_rows(rows)
    return write_bytes(out, png_bytes(grid(imgs, nrow), 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*")
    ap.add_argument("--figure", type=Path, default=None, help="write a grid of the --figure-runs on --figure-data")
    ap.add_argument("--figure-runs", default="", help="comma list of run directories (rows, in order)")
    ap.add_argument("--figure-data", default="mnist-edges")
    ap.add_argument("--bicubic-row", action="store_true", help="add a bicubic row after the sources")
    ap.add_argument("--steps", type=int, default=None, help="override the case's training steps")
    ap.add_argument("--runs", type=Path, default=Path("runs/translation"))
    ap.add_argument("--out", type=Path, default=None, help="append the JSON records to this file (one per line)")
    a = ap.parse_args()
    if a.figure is not None:
        print("wrote", figure(a.figure, [Path(r) for r in a.figure_runs.split(",")], a.figure_data,
                              bicubic_row=a.bicubic_row))
        return
    known = cases(a.runs)
    for name in a.cases:
        if name not in known:
            raise SystemExit(f"unknown case {name!r}; known: {', '.join(known)}")
    for name in a.cases:
        start = known[name].get("settings", {}).get("init_from")
        for _ in range(120):  # a case that starts from another run waits for it (e.g. in a parallel job)
            if not start or (Path(start) / "run.json").exists() and \
                    json.loads((Path(start) / "run.json").read_text()).get("status") == "finished":
                break
            time.sleep(10)
        try:
            rec = run_case(name, known[name], a.runs, a.steps)
        except Exception as e:  # keep going with the other cases; the record says what failed
            rec = {"case": name, "error": f"{type(e).__name__}: {e}"}
        line = json.dumps(rec)
        print(line, flush=True)
        if a.out is not None:
            with open(a.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
