"""The scoreboard at a real budget: every image model of the lectures at its `recommended` preset (the recipe in
the package, so `genzoo train MODEL --data mnist --preset recommended` reproduces a row) for >= 10 CPU minutes
on MNIST and Fashion-MNIST, one protocol (10,000 test images and samples, every metric that applies, a sample
grid per model). Reuses benchmarks/scoreboard.py (`sb.sections`: budgeted training by measured CPU seconds per
step, the same evaluation and tables; `sb.write_between_markers`); writes its table to
`--work`/scoreboard_budget.md, and with `--write-doc` between the `scoreboard-budget` markers of
docs/benchmarks.md.

    GENZOO_DATA=../shared/data python benchmarks/scoreboard_budget.py --smoke     # seconds: checks the pipeline
    GENZOO_DATA=../shared/data python benchmarks/scoreboard_budget.py             # 10 CPU min per model and dataset
        [--models ae,vae,dcgan] [--data mnist,fashion-mnist] [--budget 600] [--work runs/scoreboard-budget]

The full run is 11 models x 2 datasets x (10 CPU min + evaluation) ~ 4-5 CPU hours.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import scoreboard as sb  # noqa: E402  (benchmarks/scoreboard.py)
import torch  # noqa: E402

from genzoo._io import write_text  # noqa: E402

MODELS = ("ae", "denoising-ae", "sparse-ae", "contractive-ae", "vae", "cvae", "gan", "dcgan", "cgan", "wgan",
          "wgan-gp")
START, END = "<!-- scoreboard-budget:start -->", "<!-- scoreboard-budget:end -->"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="5 CPU s per model, 200 images: checks the pipeline only")
    p.add_argument("--data", default="mnist,fashion-mnist")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--budget", type=float, default=None, help="CPU seconds of training per model (600; smoke 5)")
    p.add_argument("--n", type=int, default=None, help="test images and samples per evaluation (10000; smoke 200)")
    p.add_argument("--nll-n", type=int, default=None, help="test images for the IWAE NLL (1000; smoke 50)")
    p.add_argument("--k", type=int, default=None, help="IWAE importance samples (1000; smoke 20)")
    p.add_argument("--probe-steps", type=int, default=None, help="steps of each timing probe (10; smoke 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root", default=None, help="data root (default: $GENZOO_DATA)")
    p.add_argument("--work", type=Path, default=Path("runs/scoreboard-budget"))
    p.add_argument("--write-doc", action="store_true", help="write the table into docs/benchmarks.md")
    args = p.parse_args(argv)
    s = args.smoke
    args.budget = args.budget if args.budget is not None else (5.0 if s else 600.0)
    args.n = args.n or (200 if s else 10_000)
    args.nll_n = args.nll_n if args.nll_n is not None else (50 if s else 1000)
    args.k = args.k or (20 if s else 1000)
    args.probe_steps = args.probe_steps or (3 if s else 10)
    torch.set_num_threads(1)
    models = [m for m in args.models.split(",") if m]
    sb.PRESET.update({m: "recommended" for m in models})  # the package's recipes
    img_dir = args.work / "img"
    t0 = time.process_time()

    def describe(data: str, kind: str, ext: str) -> str:
        return (f"**{data}** (budget {args.budget:.0f} CPU s per model at `--preset recommended`, 1 thread, "
                f"seed {args.seed}; n={args.n} test images and as many samples; NLL: IWAE k={args.k} on "
                f"{args.nll_n} test images; domain FID extractor: {ext})")

    parts = sb.sections(models, args.data.split(","), args, img_dir, describe)  # scoreboard.py's loop and tables
    cmd = "python benchmarks/scoreboard_budget.py " + " ".join(argv if argv is not None else sys.argv[1:])
    body = (f"Command: `GENZOO_DATA=../shared/data {cmd.strip()}` (total {(time.process_time() - t0) / 60:.1f} CPU "
            f"minutes incl. evaluation). Sample grids: {img_dir}/scoreboard-DATA-MODEL.png.\n\n" + "\n\n".join(parts))
    print(body)
    print(f"wrote {write_text(args.work / 'scoreboard_budget.md', body + chr(10))}")
    if args.write_doc:
        print(f"wrote {sb.write_between_markers(ROOT / 'docs' / 'benchmarks.md', START, END, body)}")

if __name__ == "__main__":
    main()
