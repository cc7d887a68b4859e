"""The scoreboard at a real budget: every registered image model (and translation model, on its task) at its
`recommended` preset (the recipe in the package, model and training keys, so `genzoo train MODEL --data mnist
--preset recommended` reproduces a row) for >= 10 CPU minutes on MNIST and Fashion-MNIST, one protocol (10,000
test images and samples, every metric that applies, a sample grid per model). Reuses benchmarks/scoreboard.py
(`sb.sections`: budgeted training by measured CPU seconds per step, the same evaluation and tables).

Rows accumulate: each scored model is merged into a row store (`--write-doc`: docs/scoreboard_budget.json,
else `--work`/scoreboard_budget.json) as soon as it is measured, and the tables are rebuilt from the whole store
(docs/benchmarks.md between the `scoreboard-budget` markers with `--write-doc`), listing the models not yet run;
so the ~7 CPU hours can be spent a few models at a time (also by processes side by side: the store is updated
under a lock; or in separate `--work` stores joined by `--merge`), and a killed run keeps every finished row. A
store holds one protocol (budget, n, NLL n, k, seed): other options are an error unless `--fresh` starts anew.

    GENZOO_DATA=../shared/data python benchmarks/scoreboard_budget.py --smoke     # seconds: checks the pipeline
    GENZOO_DATA=../shared/data python benchmarks/scoreboard_budget.py --data mnist --models ae,vae --write-doc
        [--models ...] [--data mnist,fashion-mnist] [--budget 600] [--work runs/scoreboard-budget]
    GENZOO_DATA=../shared/data python benchmarks/scoreboard_budget.py --write-doc --merge runs/other/scoreboard_budget.json
"""
from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import scoreboard as sb  # noqa: E402  (benchmarks/scoreboard.py)
import torch  # noqa: E402

from genzoo import registry  # noqa: E402
from genzoo._io import write_json, write_text  # noqa: E402

START, END = "<!-- scoreboard-budget:start -->", "<!-- scoreboard-budget:end -->"
BASES = ("mnist", "fashion-mnist")


def all_models() -> list[str]:
    """Every registered image model, then every translation model with a scoreboard task."""
    sb.PRESET.update({m: "recommended" for m in registry.names()})  # the package's recipes
    return sb.image_models() + sb.translation_models()


def protocol(args) -> dict:
    return {"preset": "recommended", "budget_cpu_s": args.budget, "n": args.n, "nll_n": args.nll_n, "k": args.k,
            "seed": args.seed}


def merge(store: dict | None, proto: dict, rows: list[dict], source: str = "the store") -> dict:
    """`store` with `rows` added (each replacing the row of the same base dataset and model). A store holds one
    protocol: rows measured under another are refused, naming both."""
    if store and store.get("protocol") != proto:
        raise SystemExit(f"{source}: its rows were measured under {store.get('protocol')}, this run under {proto}; "
                         f"use the same options, or --fresh to start a new store")
    merged = dict((store or {}).get("rows", {}))
    merged.update({f"{r['base']}/{r['model']}": r for r in rows})
    return {"protocol": proto, "rows": merged}


def describe_for(proto: dict):
    def describe(data: str, kind: str, ext: str) -> str:
        what = (f"n={proto['n']} test images and as many samples; NLL: IWAE k={proto['k']} on {proto['nll_n']} test "
                f"images" if kind == "images" else sb.KIND_WHAT[kind].format(n=proto["n"]))
        return (f"**{data}{'' if kind == 'images' else ', ' + kind + ' translation'}** (budget "
                f"{proto['budget_cpu_s']:.0f} CPU s per model at `--preset recommended`, 1 thread, seed "
                f"{proto['seed']}; {what}; domain FID extractor: {ext})")
    return describe


def render(store: dict, models: list[str], img_dir: str) -> str:
    """The markdown of every stored row (per base dataset and data kind) and the models not yet run."""
    order = {m: i for i, m in enumerate(models)}
    rows = sorted(store["rows"].values(), key=lambda r: (BASES.index(r["base"]) if r["base"] in BASES else 9,
                                                         r["base"], order.get(r["model"], 99), r["model"]))
    dates = sorted(r.get("measured", "?") for r in rows)
    cpu = sum(r.get("total_cpu_min", 0.0) for r in rows)
    parts = [f"Each row: `GENZOO_DATA=../shared/data python benchmarks/scoreboard_budget.py --data DATA --models "
             f"MODEL --write-doc` ({len(rows)} rows, measured {dates[0]} to {dates[-1]}, {cpu:.1f} CPU minutes "
             f"in all incl. probes and evaluation). Sample grids: {img_dir}/scoreboard-DATA-MODEL.png."
             if rows else "No rows measured yet."]
    parts += sb.tables(rows, describe_for(store["protocol"]))
    for base in BASES:
        done = {r["model"] for r in rows if r["base"] == base}
        todo = [m for m in models if m not in done and sb.task_data(m, base) is not None]
        if todo:
            parts.append(f"Not yet run on {base} at this budget: {', '.join(todo)}.")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="5 CPU s per model, 200 images: checks the pipeline only")
    p.add_argument("--data", default=",".join(BASES))
    p.add_argument("--models", default=None, help="comma-separated (default: every registered model)")
    p.add_argument("--budget", type=float, default=None, help="CPU seconds of training per model (600; smoke 5)")
    p.add_argument("--n", type=int, default=None, help="test images and samples per evaluation (10000; smoke 200)")
    p.add_argument("--nll-n", type=int, default=None, help="test images for the IWAE NLL (1000; smoke 50)")
    p.add_argument("--k", type=int, default=None, help="IWAE importance samples (1000; smoke 20)")
    p.add_argument("--probe-steps", type=int, default=None, help="steps of each timing probe (10; smoke 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="data root (default: $GENZOO_DATA)")
    p.add_argument("--work", type=Path, default=Path("runs/scoreboard-budget"))
    p.add_argument("--write-doc", action="store_true",
                   help="merge the rows into docs/scoreboard_budget.json and rewrite the tables in docs/benchmarks.md")
    p.add_argument("--fresh", action="store_true", help="start a new row store (drop the stored rows)")
    p.add_argument("--merge", type=Path, nargs="+", default=None, metavar="STORE",
                   help="merge the rows of these row stores (scoreboard_budget.json of another --work) into this "
                        "one and rewrite the tables; trains nothing")
    args = p.parse_args(argv)
    s = args.smoke
    args.budget = args.budget if args.budget is not None else (5.0 if s else 600.0)
    args.n = args.n or (200 if s else 10_000)
    args.nll_n = args.nll_n if args.nll_n is not None else (50 if s else 1000)
    args.k = args.k or (20 if s else 1000)
    args.probe_steps = args.probe_steps or (3 if s else 10)
    torch.set_num_threads(1)
    everything = all_models()
    models = [m for m in args.models.split(",") if m] if args.models else everything
    for m in models:
        registry.get(m)  # unknown names fail before any work
    store_path = ROOT / "docs" / "scoreboard_budget.json" if args.write_doc else args.work / "scoreboard_budget.json"
    img_dir = ROOT / "docs" / "img" / "budget" if args.write_doc else args.work / "img"  # not the 30-s grids
    shown_dir = img_dir.relative_to(ROOT) if img_dir.is_relative_to(ROOT) else img_dir

    def publish(store: dict) -> None:
        body = render(store, everything, str(shown_dir))
        write_text(args.work / "scoreboard_budget.md", body + "\n")
        if args.write_doc:
            sb.write_between_markers(ROOT / "docs" / "benchmarks.md", START, END, body)

    if args.merge:  # rows measured elsewhere (another process, machine or --work): no training
        for other in args.merge:
            theirs = json.loads(other.read_text())
            publish(add_rows(store_path, theirs["protocol"], list(theirs["rows"].values()), str(store_path)))
            print(f"merged {len(theirs['rows'])} rows of {other} into {store_path}")
        return
    proto = protocol(args)
    if args.fresh and store_path.exists():
        store_path.unlink()
    add_rows(store_path, proto, [], str(store_path))  # a protocol mismatch fails before any work
    t0 = [time.process_time()]

    def on_row(row: dict) -> None:
        now = time.process_time()
        row = {**row, "measured": time.strftime("%Y-%m-%d"), "total_cpu_min": (now - t0[0]) / 60}
        t0[0] = now
        publish(add_rows(store_path, proto, [row], str(store_path)))

    sb.sections(models, args.data.split(","), args, img_dir, describe_for(proto), on_row)
    print(render(json.loads(store_path.read_text()), everything, str(shown_dir)))
    print(f"wrote {store_path}" + (f" and {ROOT / 'docs' / 'benchmarks.md'}" if args.write_doc else ""))


def add_rows(store_path: Path, proto: dict, rows: list[dict], source: str) -> dict:
    """Merge `rows` into the store at `store_path` and write it: read, merge, write under an exclusive lock,
    so processes scoring different models into one store do not drop each other's rows."""
    store_path.parent.mkdir(parents=True, exist_ok=True)
    with open(store_path.with_name(store_path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store = merge(json.loads(store_path.read_text()) if store_path.exists() else None, proto, rows, source)
        write_json(store_path, store)
    return store


if __name__ == "__main__":
    main()
