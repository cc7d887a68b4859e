"""Training throughput: genzoo's engine vs hand-written PyTorch loops of the same architecture, in one process.

For each case (model family) the methods run alternately for several rounds (the machine is shared and noisy);
we report the median images/s of each, the spread, and the ratio to the hand-written loop over pre-loaded tensors.

    python benchmarks/throughput.py [--cases mlp-ae,...] [--steps 300] [--rounds 5] [--threads 2]

Targets: MLP AE 784-400-20-400-784: genzoo >= 0.95x the hand-written loop, and faster than the tutorial-style
per-sample Dataset + DataLoader loop.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import genzoo.data as gd
from genzoo.config import TrainConfig
from genzoo.train import build_model
from genzoo.train.engine import Trainer

BATCH = 128


def load_data() -> gd.Dataset:
    try:
        return gd.load("mnist", "train")
    except gd.DataError:
        print("(full MNIST not found under $GENZOO_DATA: using mnist-mini)")
        return gd.load("mnist-mini", "train")


def engine_method(name: str, ds: gd.Dataset, **settings) -> Callable[[int], float]:
    """genzoo's engine with its progress bar, metrics.csv every 50 steps and checkpoints; loop seconds only."""

    def run(steps: int) -> float:
        torch.manual_seed(0)
        model = build_model(name, ds, **settings)
        tc = TrainConfig(steps=steps, batch_size=BATCH, log_every=50, sample_every=0, checkpoint_every=10**9,
                         validate=False, progress=True)
        with tempfile.TemporaryDirectory() as out:
            from pathlib import Path
            trainer = Trainer(model, ds, tc, Path(out))
            trainer.fit()
            return trainer.loop_seconds
    return run


def hand_loop(make: Callable[[], tuple[nn.Module, Callable]], ds: gd.Dataset, lr: float = 1e-3) -> Callable[[int], float]:
    """The loop a user writes by hand: pre-loaded uint8 tensor, index a shuffled batch, float, step."""

    def run(steps: int) -> float:
        torch.manual_seed(0)
        model, loss_fn = make()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        X = ds.x
        t = time.perf_counter()
        perm = torch.randperm(len(X))
        for i in range(steps):
            j = (i * BATCH) % (len(X) - BATCH)
            x = X[perm[j:j + BATCH]].float() / 255
            loss = loss_fn(model, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t
    return run


class PerSample(torch.utils.data.Dataset):
    """Tutorial style: one image at a time through PIL, like transforms.ToTensor()."""

    def __init__(self, x: torch.Tensor):
        self.x = x.numpy()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image
        im = Image.fromarray(self.x[i, 0])
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None]


def dataloader_loop(make: Callable[[], tuple[nn.Module, Callable]], ds: gd.Dataset,
                    lr: float = 1e-3) -> Callable[[int], float]:
    def run(steps: int) -> float:
        torch.manual_seed(0)
        model, loss_fn = make()
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        loader = torch.utils.data.DataLoader(PerSample(ds.x), batch_size=BATCH, shuffle=True, drop_last=True)
        t = time.perf_counter()
        done = 0
        while done < steps:
            for x in loader:
                loss = loss_fn(model, x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
                if done == steps:
                    break
        return time.perf_counter() - t
    return run


# ---- cases: name -> (builder of {method: run(steps) -> seconds}, images per step) --------------------------
def mlp_ae_case(ds: gd.Dataset) -> dict[str, Callable[[int], float]]:
    """MLP autoencoder 784-400-20-400-784, ReLU, BCE on logits summed over pixels, Adam(1e-3)."""

    def make():
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 20),
                              nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))

        def loss_fn(m, x):
            return F.binary_cross_entropy_with_logits(m(x), x.flatten(1), reduction="sum") / len(x)
        return model, loss_fn

    return {
        "genzoo": engine_method("ae", ds, arch="mlp", hidden=(400,), latent_dim=20, loss="bce"),
        "hand-written": hand_loop(make, ds),
        "per-sample DataLoader": dataloader_loop(make, ds),
    }


CASES: dict[str, Callable[[gd.Dataset], dict[str, Callable[[int], float]]]] = {
    "mlp-ae": mlp_ae_case,
}
# images consumed per step, when a case's step uses more than one batch (e.g. k discriminator batches)
BATCHES_PER_STEP: dict[str, int] = {}


def measure(case: str, ds: gd.Dataset, steps: int, rounds: int) -> dict[str, list[float]]:
    methods = CASES[case](ds)
    for run in methods.values():  # warm-up (allocator, oneDNN kernels)
        run(max(10, steps // 10))
    ips: dict[str, list[float]] = {m: [] for m in methods}
    images = steps * BATCH * BATCHES_PER_STEP.get(case, 1)
    for r in range(rounds):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for m in order:
            ips[m].append(images / methods[m](steps))
    return ips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_data()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, {args.steps} steps x "
          f"{args.rounds} rounds, data {ds.name}")
    for case in args.cases.split(","):
        ips = measure(case, ds, args.steps, args.rounds)
        ref = statistics.median(ips["hand-written"])
        print(f"\n{case}")
        print(f"  {'method':<24}{'images/s (median)':>18}{'min':>9}{'max':>9}{'ratio':>8}")
        for m, v in ips.items():
            med = statistics.median(v)
            print(f"  {m:<24}{med:>18,.0f}{min(v):>9,.0f}{max(v):>9,.0f}{med / ref:>8.2f}")


if __name__ == "__main__":
    main()
