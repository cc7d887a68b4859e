"""The scoreboard: every registered image model trained on MNIST and Fashion-MNIST under the same CPU budget
(seeded, one thread), then measured with one protocol (genzoo.evaluate.evaluate); the translation models
(pix2pix, srgan, cyclegan) on a fitting dataset derived from the same base (`TASK`: DATA-edges, DATA-sr4,
DATA-thick), each kind in its own table with the metrics that apply to it (paired: L1/MSE/PSNR/SSIM, label
preservation, domain FID, bicubic's PSNR beside SR; unpaired: per direction label preservation, cycle L1,
domain FID against the identity map).

    GENZOO_DATA=../shared/data python benchmarks/scoreboard.py --quick      # a few minutes: checks the pipeline
    GENZOO_DATA=../shared/data python benchmarks/scoreboard.py              # 3 CPU minutes per model and dataset
    GENZOO_DATA=../shared/data python benchmarks/scoreboard.py --calibration --data mnist   # metric sanity table

Each model first trains a few steps to measure its CPU seconds per step, then trains from scratch for as many
steps as fit the budget (`--budget` CPU seconds). The full run rewrites the table between the scoreboard
markers of docs/benchmarks.md and writes one sample grid (translation models: source | output | target) per
model to docs/img/; `--quick` writes both under `--work` only. benchmarks/scoreboard_budget.py runs the same
functions at the `recommended` presets and a larger budget. Domain FID uses genzoo's own classifiers: not comparable with published Inception FIDs.
"""
from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import genzoo  # noqa: E402
from genzoo import data as gd  # noqa: E402
from genzoo import registry  # noqa: E402
from genzoo._io import write_text  # noqa: E402
from genzoo.evaluate import evaluate  # noqa: E402
from genzoo.evaluate.suite import draw_samples  # noqa: E402
from genzoo.images import save_grid  # noqa: E402
from genzoo.train import build_model, train  # noqa: E402  (genzoo.train the function is shadowed by the module)
from genzoo.train.rundir import read_metrics  # noqa: E402

# The size each family is benchmarked at (a preset name); models not listed use their default config.
PRESET = {"ae": "conv", "denoising-ae": "conv", "sparse-ae": "mnist-196", "vae": "mlp-784-400-20",
          "cvae": "mlp-784-400-20", "gan": "mnist", "cgan": "mnist", "dcgan": "mnist", "wgan": "mnist",
          "wgan-gp": "mnist", "ddpm": "mnist", "pix2pix": "mnist", "srgan": "srresnet-mnist", "cyclegan": "mnist"}
SAMPLE_METRICS = "fid,pr,dc,modes,mse"
COLUMNS = ("model", "preset", "CPU min", "steps", "img/s (CPU)", "recon MSE", "NLL (nats)", "domain FID",
           "precision", "recall", "coverage", "classes covered")
START, END = "<!-- scoreboard:start -->", "<!-- scoreboard:end -->"

# Translation models: the task each is scored on, as a suffix of the scoreboard's base dataset (DATA-TASK, e.g.
# mnist-edges, fashion-mnist-sr4, mnist-mini-thick); a base without that derived set skips the model.
TASK = {"pix2pix": "edges", "srgan": "sr4", "cyclegan": "thick"}
# The timing probes' settings where a model's step cost grows during training: a progan's steps get dearer with
# each resolution (the budget run's first ~420 steps are at 7x7 and 14x14), so its probes run at the last one
# from the start (phase_images=1), the cost of nearly all of the run's steps. Without this the probes priced
# 7x7 steps and the MNIST run was stopped past 20 CPU minutes of a 10-minute budget.
PROBE_SETTINGS = {"progan": {"phase_images": 1}}
KIND_METRICS = {"paired": "l1,mse,psnr,ssim,labels,fid,bicubic", "unpaired": "labels,cycle,fid"}
# (header, metrics key, format) per kind; the unpaired keys are per direction
KIND_COLUMNS = {
    "paired": (("L1", "l1", ".4f"), ("MSE", "mse", ".4f"), ("PSNR (dB)", "psnr", ".2f"),
               ("bicubic PSNR", "bicubic_psnr", ".2f"), ("SSIM", "ssim", ".3f"),
               ("label preservation", "label_accuracy", ".3f"), ("domain FID", "fid", ".2f")),
    "unpaired": tuple((f"{h} {d}", f"{k}_{d}", f) for d in ("a2b", "b2a") for h, k, f in (
        ("label pres.", "label_preservation", ".3f"), ("cycle L1", "cycle_l1", ".4f"), ("domain FID", "fid", ".2f"),
        ("FID identity", "fid_identity", ".2f"))),
}
KIND_WHAT = {"paired": "outputs vs targets on a seeded stratified sample of n={n} test pairs (SR: bicubic beside)",
             "unpaired": "both directions on a seeded stratified sample of n={n} test images of each domain, FID also "
                            "for the identity map"}


def data_kind(name: str) -> str:
    return getattr(registry.get(name).model_class, "data_kind", "images")


def task_data(name: str, data: str) -> str | None:
    """The dataset a model is scored on for base `data`: `data` itself for image models, DATA-TASK for the
    translation models (None when that derived set does not exist)."""
    if data_kind(name) == "images":
        return data
    cand = f"{data}-{TASK.get(name, '')}"
    return cand if cand in gd.names_of_kind(data_kind(name)) else None


def image_models() -> list[str]:
    """Registered models that train on 28x28 images (toy-point-only models are left out)."""
    out = []
    for name in registry.names():
        if data_kind(name) != "images":
            continue  # paired / unpaired translation models: translation_models()
        try:
            build_model(name, gd.load("mnist-mini", "test"), PRESET.get(name))
            out.append(name)
        except (ValueError, KeyError, NotImplementedError):
            pass
    return out


def translation_models() -> list[str]:
    """Registered paired / unpaired translation models that have a scoreboard task (`TASK`)."""
    return [n for n in registry.names() if data_kind(n) != "images" and n in TASK]


def train_for_budget(name: str, data: str, out: Path, budget: float, seed: int, probe_steps: int,
                     root: str | None) -> tuple[int, float]:
    """Train `name` from scratch for as many steps as fit `budget` CPU seconds: at least the budget (the
    scoreboard's rows are "at least 10 CPU minutes"), aiming at 1.1x. After a warm-up run (one-time kernel and
    allocator set-up), probe runs of p and 3p steps give the CPU seconds per step (their difference, free of the
    fixed start-up cost of loading data and building the model; p grows 4x until the difference is at least 1% of
    the budget). A run that used less than the budget is trained again from scratch at its own measured rate (a
    model in PROBE_SETTINGS: with the steps added at the last-stage rate), at most twice. PROBE_SETTINGS changes
    the probes (not the run) where the step cost grows during training. Returns (steps, CPU s of the final run)."""
    settings = {"log_every": 10, "sample_every": 0, "checkpoint_every": 10 ** 9, "progress": False,
                "num_threads": 1, "validate": False}

    def cost(steps: int, run_dir: Path | None) -> float:
        probe = {} if run_dir is not None else PROBE_SETTINGS.get(name, {})
        t = time.process_time()
        train(name, data, out=run_dir, settings={**settings, **probe}, steps=steps, preset=PRESET.get(name),
              seed=seed, root=root)
        return time.process_time() - t

    cost(probe_steps, None)  # warm-up
    while True:  # the probes' difference must be a measurable share of the budget (>= 1%): fast models need more steps
        t1, t3 = cost(probe_steps, None), cost(3 * probe_steps, None)
        if t3 - t1 >= 0.01 * budget or probe_steps >= 100_000:
            break
        probe_steps *= 4
    per_step = max((t3 - t1) / (2 * probe_steps), t3 / (3 * probe_steps) / 4)  # guard against timer noise
    fixed = max(t1 - probe_steps * per_step, 0.0)
    aim = 1.1 * budget  # over: a run under the budget costs another run (and the rate drifts with the load)
    steps = max(probe_steps, int((aim - fixed) / per_step))
    cpu = cost(steps, out)
    for _ in range(2):
        if cpu >= budget:
            break
        # Short probes overestimate the per-step cost of small, fast models (their first steps are the slowest:
        # the contractive AE's run took 4.5 of 10 CPU minutes), and a process beside it on the other core slows
        # every step. Train again from scratch for the steps the run's own rate gives; resuming would not be the
        # run that `--steps N` reproduces (schedules know the total). A model probed at its last stage
        # (PROBE_SETTINGS: progan) is the other way round: its run's average step includes the cheap early
        # stages, whose number of steps is fixed by the schedule, so every step added is one at the last stage,
        # priced by the probes, or after two runs by their difference (pricing them at the average took the
        # MNIST progan to 12.2 CPU minutes of a 10-minute budget).
        before = cpu
        if name in PROBE_SETTINGS:
            added = max(int((aim - cpu) / per_step), 1)
        else:
            per_step = max(cpu - fixed, 1e-9) / steps
            added = max(int((aim - fixed) / per_step) - steps, 1)
        steps += added
        shutil.rmtree(out)
        cpu = cost(steps, out)
        if name in PROBE_SETTINGS and cpu > before:
            per_step = (cpu - before) / added
    return steps, cpu


def score(name: str, data: str, args, work: Path, img_dir: Path) -> dict:
    """Train `name` for the budget on `data` (an image model) or on its task derived from `data` (a
    translation model: `task_data`), evaluate it and write its grid. Returns the scoreboard row."""
    kind = data_kind(name)
    task = task_data(name, data)
    if task is None:
        raise ValueError(f"{name}: no {data}-{TASK.get(name)} dataset to score it on")
    run = work / f"{task}-{name}"
    if (run / "run.json").exists():  # a previous scoreboard's run: start again from scratch
        shutil.rmtree(run)
    steps, cpu = train_for_budget(name, task, run, args.budget, args.seed, args.probe_steps, args.root)
    rows = read_metrics(run)
    epochs = float(rows[-1]["epoch"]) if rows else 0.0
    images = epochs * len(gd.load_run_data(run, "train", root=args.root))  # translation: source images (A)
    metrics = SAMPLE_METRICS if kind == "images" else KIND_METRICS[kind]
    r = evaluate(run, metrics=metrics, n=args.n, seed=args.seed, root=args.root, out=run / "metrics.json")
    m = dict(r["metrics"])
    if kind == "images" and args.nll_n:  # likelihood on fewer images: IWAE costs k decoder passes per image
        m.update(evaluate(run, metrics="nll", n=args.nll_n, k=args.k, seed=args.seed, root=args.root)["metrics"])
    model = genzoo.load(run)
    grid = img_dir / f"scoreboard-{data}-{name}.png"
    if kind != "images":  # rows: source | output | target (cyclegan: | cycled back)
        from genzoo.translate import save_translation_grid, translate_split
        save_translation_grid(*translate_split(model, task, "test", 16, root=args.root), grid)
    elif model.can("sample"):
        save_grid(draw_samples(model, 64, seed=args.seed), grid, nrow=8)
    return {"model": name, "kind": kind, "data": task, "preset": PRESET.get(name, "default"), "cpu_min": cpu / 60,
            "steps": steps, "img_per_cpu_s": images / cpu if cpu else math.nan, "extractor": r["extractor"], **m}


def calibration(data: str, n: int, root: str | None, seed: int = 0) -> str:
    """The metrics on controlled image sets against the test split: a disjoint real set (n training images),
    the same with Gaussian noise or blur, uniform-noise images and one repeated image (total collapse)."""
    from genzoo.evaluate import get_classifier
    from genzoo.evaluate import metrics as M
    from genzoo.evaluate.image_metrics import gaussian_blur

    clf = get_classifier(data)
    g = torch.Generator().manual_seed(seed)
    test = gd.load(data, "test", root=root).x[:n].float() / 255
    train = gd.load(data, "train", root=root).x[:n].float() / 255
    sets = {"train images": train}
    for s in (0.1, 0.2, 0.4):
        sets[f"+ noise sigma {s}"] = (train + s * torch.randn(train.shape, generator=g)).clamp(0, 1)
    for s in (0.7, 1.2, 2.0):
        sets[f"blur sigma {s}"] = gaussian_blur(train, s)
    sets["uniform noise"] = torch.rand(train.shape, generator=g)
    sets["one image repeated"] = train[:1].repeat(n, 1, 1, 1)
    fr = M.extract(clf, test)
    lines = [f"| {data}: vs {n} test images | domain FID | domain KID | precision | recall | density | coverage "
             f"| classes covered |", "|" + " --- |" * 8]
    for name, x in sets.items():
        ff = M.extract(clf, x)
        p, r = M.precision_recall(fr, ff)
        d, c = M.density_coverage(fr, ff)
        kid = M.kid(fr, ff, seed=seed)[0]
        modes = M.mode_coverage(M.extract(clf, x, what="probs"))["classes_covered"]
        lines.append(f"| {name} | {M.fid(fr, ff):.2f} | {kid:.4f} | {p:.3f} | {r:.3f} | {d:.3f} | {c:.3f} | {modes} |")
    return "\n".join(lines)


def _cell(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def table(rows: list[dict]) -> str:
    """The markdown table of rows of one data kind (image models, or paired / unpaired translation)."""
    kind = rows[0].get("kind", "images") if rows else "images"
    if kind != "images":
        return translation_table(rows, kind)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in rows:
        cells = [r["model"], r["preset"], _cell(r["cpu_min"], ".1f"), str(r["steps"]), _cell(r["img_per_cpu_s"], ".0f"),
                 _cell(r.get("mse"), ".4f"), _cell(r.get("nll"), ".1f"), _cell(r.get("fid"), ".2f"),
                 _cell(r.get("precision"), ".3f"), _cell(r.get("recall"), ".3f"), _cell(r.get("coverage"), ".3f"),
                 _cell(r.get("classes_covered"), "d")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def translation_table(rows: list[dict], kind: str) -> str:
    extra = KIND_COLUMNS[kind]
    head = ("model", "preset", "dataset", "CPU min", "steps", "img/s (CPU)") + tuple(h for h, _, _ in extra)
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r["model"], r["preset"], r["data"], _cell(r["cpu_min"], ".1f"), str(r["steps"]),
                 _cell(r["img_per_cpu_s"], ".0f")] + [_cell(r.get(k), f) for _, k, f in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sections(models: list[str], datas: list[str], args, img_dir: Path, describe, on_row=None) -> list[str]:
    """Score every model on every base dataset: one table per (dataset, data kind), each headed by
    `describe(data, kind, extractor)`. Translation models without a task on a base are left out (printed).
    `on_row(row)` is called after each model (the row's "base" is the base dataset)."""
    rows = []
    for data in datas:
        for name in models:
            if task_data(name, data) is None:
                print(f"[{data}] {name}: no {data}-{TASK.get(name)} dataset, left out", flush=True)
                continue
            print(f"[{data}] {name} ({PRESET.get(name, 'default')}) ...", flush=True)
            row = {**score(name, data, args, args.work, img_dir), "base": data}
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
            if on_row is not None:
                on_row(row)
    return tables(rows, describe)


def tables(rows: list[dict], describe) -> list[str]:
    """One markdown table per (base dataset, data kind) of `rows`, in the rows' order of base datasets."""
    out = []
    for data in dict.fromkeys(r["base"] for r in rows):
        for kind in ("images", "paired", "unpaired"):
            rs = [r for r in rows if r["base"] == data and r["kind"] == kind]
            if rs:
                out.append(f"{describe(data, kind, rs[0]['extractor'] or '-')}\n\n{table(rs)}")
    return out


def write_between_markers(doc: Path, start: str, end: str, body: str) -> Path:
    """Replace the text between the `start` and `end` markers of `doc` with `body`."""
    text = doc.read_text()
    if start not in text:
        raise SystemExit(f"{doc}: markers {start} / {end} not found")
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)
    return write_text(doc, text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small budget and sample size: checks the pipeline")
    p.add_argument("--calibration", action="store_true", help="only the metric calibration table (no training)")
    p.add_argument("--data", default="mnist,fashion-mnist")
    p.add_argument("--models", default=None, help="comma-separated (default: every registered image model and "
                   "translation model)")
    p.add_argument("--budget", type=float, default=None, help="CPU seconds of training per model (180; quick 10)")
    p.add_argument("--n", type=int, default=None, help="test images and samples per evaluation (10000; quick 500)")
    p.add_argument("--nll-n", type=int, default=None, help="test images for the IWAE NLL (1000; quick 100)")
    p.add_argument("--k", type=int, default=None, help="IWAE importance samples (1000; quick 50)")
    p.add_argument("--probe-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="data root (default: $GENZOO_DATA)")
    p.add_argument("--work", type=Path, default=Path("runs/scoreboard"), help="run directories go here")
    args = p.parse_args(argv)
    q = args.quick
    args.budget = args.budget if args.budget is not None else (10.0 if q else 180.0)
    args.n = args.n or (500 if q else 10_000)
    args.nll_n = args.nll_n if args.nll_n is not None else (100 if q else 1000)
    args.k = args.k or (50 if q else 1000)
    torch.set_num_threads(1)
    if args.calibration:
        for data in args.data.split(","):
            print(calibration(data, args.n, args.root, args.seed) + "\n", flush=True)
        return
    models = args.models.split(",") if args.models else image_models() + translation_models()
    img_dir = args.work / "img" if q else ROOT / "docs" / "img"
    t0 = time.process_time()

    def describe(data: str, kind: str, ext: str) -> str:
        what = (f"evaluation on n={args.n} test images and as many samples; NLL: IWAE k={args.k} on {args.nll_n} "
                f"test images" if kind == "images" else KIND_WHAT[kind].format(n=args.n))
        return (f"**{data}{'' if kind == 'images' else ', ' + kind + ' translation'}** (budget {args.budget:.0f} "
                f"CPU s per model, 1 thread, seed {args.seed}; {what}; domain FID extractor: {ext})")

    parts = sections(models, args.data.split(","), args, img_dir, describe)
    cmd = "python benchmarks/scoreboard.py " + " ".join(argv if argv is not None else sys.argv[1:])
    img_dir = img_dir.relative_to(ROOT) if img_dir.is_relative_to(ROOT) else img_dir
    body = (f"Command: `GENZOO_DATA=../shared/data {cmd.strip()}` (total {(time.process_time() - t0) / 60:.1f} "
            f"CPU minutes incl. evaluation). Sample grids: {img_dir}/scoreboard-DATA-MODEL.png.\n\n"
            + "\n\n".join(parts))
    print(body)
    if q:
        print(f"wrote {write_text(args.work / 'scoreboard.md', body + chr(10))}")
        return
    print(f"wrote {write_between_markers(ROOT / 'docs' / 'benchmarks.md', START, END, body)}")


if __name__ == "__main__":
    main()
