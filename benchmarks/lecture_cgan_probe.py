"""Claim 7's conditioning experiment with other settings: the lecture's MLP `gan` and MLP `cgan` (same data,
steps and batch as `genzoo lecture --quick`), trained with extra config keys, then the MNIST classes covered by
2,000 samples of each and the cgan's label accuracy (share of samples classified as the requested class).

    GENZOO_DATA=../shared/data python benchmarks/lecture_cgan_probe.py --steps 6000 --set spectral_norm=true
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genzoo import latent as lt  # noqa: E402
from genzoo.config import parse_sets  # noqa: E402
from genzoo.evaluate.metrics import mode_coverage  # noqa: E402
from genzoo.lecture.claims_gan import _classes_covered, _digits_train  # noqa: E402
from genzoo.lecture.core import Context  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE config keys of both GANs")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--root", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ctx = Context(scale="quick", out=Path("/tmp/lecture-cgan-probe"), runs=None, root=args.root)
    train = _digits_train(ctx)
    settings = {"arch": "mlp", "monitor_every": 0, **parse_sets(args.sets)}
    t = time.process_time()
    gan = ctx.train("gan", "gan", train, settings=settings, steps=args.steps, batch_size=64)
    cgan = ctx.train("cgan", "cgan", train, settings=settings, steps=args.steps, batch_size=64)
    cpu = time.process_time() - t
    g = _classes_covered(ctx, gan, args.n)
    labels = torch.arange(args.n) % 10
    with torch.no_grad():
        pc = ctx.classifier("mnist").probs(lt.sample_prior(cgan, args.n, labels=labels, seed=ctx.seed))
    c = mode_coverage(pc)
    acc = float((pc.argmax(1) == labels).float().mean())
    print(f"settings {settings}, {args.steps} steps, {cpu / 60:.1f} CPU min of training")
    print(f"gan:  {g['classes_covered']}/10 classes, KL to uniform {g['kl_to_uniform']:.3f}")
    print(f"cgan: {c['classes_covered']}/10 classes, KL to uniform {c['kl_to_uniform']:.3f}, label accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
