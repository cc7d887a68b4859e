"""Training throughput: genzoo's engine vs hand-written PyTorch loops of the same architecture, in one process.

For each case (model family) the methods run alternately for several rounds (the machine is shared and noisy);
we report the median images/s of each, the spread, and the ratio to the hand-written loop over pre-loaded tensors.

    python benchmarks/throughput.py [--cases mlp-ae,...] [--steps 300] [--rounds 5] [--threads 2]
                                    [--precisions fp32,bf16] [--no-dataloader]

Targets: MLP AE 784-400-20-400-784: genzoo >= 0.95x the hand-written loop, and faster than the tutorial-style
per-sample Dataset + DataLoader loop. Issue 16 (the fast path): genzoo with its fp32 defaults >= 1.3x the hand
loop on the conv AE and DCGAN, >= 1.15x on the MLP VAE and AE; `genzoo bf16` (precision=bf16) >= 1.7x on the
MLP VAE, conv AE and DCGAN. Every case gets one `genzoo <precision>` method per entry of --precisions beyond
fp32 (a case is a dict of methods: add one with `engine_method(name, ds, train={...}, **model_settings)`).
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


PRECISIONS = ["fp32"]  # set by --precisions: each beyond fp32 adds a "genzoo <precision>" method to every case


def engine_method(name: str, ds: gd.Dataset, train: dict | None = None, **settings) -> Callable[[int], float]:
    """genzoo's engine with its progress bar, metrics.csv every 50 steps and checkpoints; loop seconds only.
    `train`: TrainConfig fields (precision=..., channels_last=...), else the defaults."""

    def run(steps: int) -> float:
        torch.manual_seed(0)
        model = build_model(name, ds, **settings)
        tc = TrainConfig(steps=steps, batch_size=BATCH, log_every=50, sample_every=0, checkpoint_every=10**9,
                         validate=False, progress=True, **(train or {}))
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


def conv_ae_case(ds: gd.Dataset) -> dict[str, Callable[[int], float]]:
    """The `conv` AE preset: 4x4 stride-2 convs 1-32-64 with batch norm, Linear to 32, mirrored transposed
    convs, BCE on logits summed over pixels, Adam(1e-3). The hand loop builds the same layers with genzoo.nn."""
    from genzoo.nn import conv_decoder, conv_encoder

    def make():
        model = nn.Sequential(conv_encoder((1, 28, 28), (32, 64), 32, "relu", True, "stride"),
                              conv_decoder(32, (1, 28, 28), (64, 32), "relu", True, "transpose"))

        def loss_fn(m, x):
            return F.binary_cross_entropy_with_logits(m(x), x, reduction="sum") / len(x)
        return model, loss_fn

    return {"genzoo": engine_method("ae", ds, preset="conv"), "hand-written": hand_loop(make, ds)}


def vae_case(ds: gd.Dataset) -> dict[str, Callable[[int], float]]:
    """pytorch/examples' VAE 784-400-20 (the `mlp-784-400-20` preset): Bernoulli decoder, loss = BCE summed
    over pixels + KL(q(z|x) || N(0, I)), per example, Adam(1e-3)."""

    class HandVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 40))
            self.dec = nn.Sequential(nn.Linear(20, 400), nn.ReLU(), nn.Linear(400, 784))

    def make():
        def loss_fn(m, x):
            mean, logvar = m.enc(x).chunk(2, 1)  # (B, 40) -> 2 x (B, 20)
            z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
            rec = F.binary_cross_entropy_with_logits(m.dec(z), x.flatten(1), reduction="sum")
            kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum()
            return (rec + kl) / len(x)
        return HandVAE(), loss_fn

    return {"genzoo": engine_method("vae", ds, preset="mlp-784-400-20"), "hand-written": hand_loop(make, ds)}


def dcgan_case(ds: gd.Dataset) -> dict[str, Callable[[int], float]]:
    """The `dcgan` model at its `mnist` preset (z 100, base width 64): one D step on a real batch and as many
    fakes, then one non-saturating G step, BCE, Adam(2e-4, betas (0.5, 0.999)). The hand loop builds the
    same G and D with genzoo's builders and writes the two steps out."""
    from genzoo.models.gan import dcgan_generator, dcgan_init
    from genzoo.nn import conv_encoder

    def run(steps: int) -> float:
        torch.manual_seed(0)
        G, D = dcgan_generator(100, (1, 28, 28), 64), conv_encoder((1, 28, 28), (64, 128), 1, "leaky_relu", True)
        dcgan_init(G), dcgan_init(D)
        opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        ones, zeros = torch.ones(BATCH, 1), torch.zeros(BATCH, 1)
        X = ds.x
        t = time.perf_counter()
        perm = torch.randperm(len(X))
        for i in range(steps):
            j = (i * BATCH) % (len(X) - BATCH)
            x = X[perm[j:j + BATCH]].float() / 127.5 - 1  # [-1, 1], like the tanh output
            fake = G(torch.randn(BATCH, 100)).detach()
            loss_d = (F.binary_cross_entropy_with_logits(D(x), ones)
                      + F.binary_cross_entropy_with_logits(D(fake), zeros))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            D.requires_grad_(False)  # no weight gradients of D in G's step
            loss_g = F.binary_cross_entropy_with_logits(D(G(torch.randn(BATCH, 100))), ones)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
        return time.perf_counter() - t

    return {"genzoo": engine_method("dcgan", ds, preset="mnist"), "hand-written": run}


def lineage_case(name: str, **settings) -> Callable[[gd.Dataset], dict[str, Callable[[int], float]]]:
    """sagan / biggan / progan at their `mnist` presets. The hand loop takes the same G and D modules from a model
    built by genzoo and writes the step out: hinge D step + G step (sagan, biggan: class labels, orthogonal
    regularisation of G, an EMA of G updated by hand); progan at its last stage (phase_images=1): critic step
    with gradient penalty and drift, then G step, Adam(1e-3, 0, 0.99)."""

    def case(ds: gd.Dataset) -> dict[str, Callable[[int], float]]:
        from genzoo.nn.blocks import orthogonal_penalty

        def run(steps: int) -> float:
            torch.manual_seed(0)
            m = build_model(name, ds, preset="mnist", **settings).train()
            c, G, D = m.config, m.generator, m.discriminator
            opt_g = torch.optim.Adam(G.parameters(), lr=c.lr_g, betas=c.betas)
            opt_d = torch.optim.Adam(D.parameters(), lr=c.lr_d, betas=c.betas)
            prog = c.arch == "progan"
            g_args = (lambda z, y: G(z, 2, 1.0)) if prog else (lambda z, y: G(z, y))
            d_args = (lambda x, y: D(x, 2, 1.0)) if prog else (lambda x, y: D(x, y))
            ema = [p for p in m.ema.module.parameters()] if c.ema else None
            X, Y = ds.x, ds.y
            t = time.perf_counter()
            perm = torch.randperm(len(X))
            for i in range(steps):
                j = (i * BATCH) % (len(X) - BATCH)
                idx = perm[j:j + BATCH]
                x = X[idx].float() / 127.5 - 1
                y = Y[idx] if c.conditional else None
                with torch.no_grad():
                    fake = g_args(torch.randn(BATCH, c.latent_dim), y)
                r, f = d_args(x, y), d_args(fake, y)
                if prog:  # WGAN-GP + drift
                    eps = torch.rand(BATCH, 1, 1, 1)
                    xh = (eps * x + (1 - eps) * fake).requires_grad_(True)
                    (gr,) = torch.autograd.grad(d_args(xh, y).sum(), xh, create_graph=True)
                    loss_d = f.mean() - r.mean() + 10 * ((gr.flatten(1).norm(dim=1) - 1) ** 2).mean() \
                        + 0.001 * (r ** 2).mean()
                else:  # hinge
                    loss_d = F.relu(1 - r).mean() + F.relu(1 + f).mean()
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                D.requires_grad_(False)
                loss_g = -d_args(g_args(torch.randn(BATCH, c.latent_dim), y), y).mean()
                if c.orthogonal_reg:
                    loss_g = loss_g + c.orthogonal_reg * orthogonal_penalty(G)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                D.requires_grad_(True)
                if ema is not None:
                    with torch.no_grad():
                        torch._foreach_lerp_(ema, [p.detach() for p in G.parameters()], 1 - c.ema)
                        for b_avg, b in zip(m.ema.module.buffers(), G.buffers()):
                            b_avg.copy_(b)
            return time.perf_counter() - t

        return {"genzoo": engine_method(name, ds, preset="mnist", **settings), "hand-written": run}

    return case


def training_flops_per_image(case: str, ds: gd.Dataset) -> float:
    """FLOPs of one training step of genzoo's model (every phase, forward + backward; torch's FlopCounterMode
    counts matmuls and convolutions) divided by the real images it consumes."""
    from torch.utils.flop_counter import FlopCounterMode

    from genzoo.models.base import Batch

    name, preset = {"conv-ae": ("ae", "conv"), "vae": ("vae", "mlp-784-400-20"), "dcgan": ("dcgan", "mnist")}[case]
    torch.manual_seed(0)
    model = build_model(name, ds, preset=preset).train()
    batch = Batch(model.prepare(ds.x[:BATCH]), ds.y[:BATCH])
    with FlopCounterMode(display=False) as counter:
        for phase in model.phases():
            for _ in range(phase.repeat):
                phase.loss(batch)[0].backward()
    return counter.get_total_flops() / (BATCH * BATCHES_PER_STEP.get(case, 1))


def matmul_peak(threads: int, n: int = 1024, reps: int = 20) -> dict[str, float]:
    """GFLOP/s of a square float32 GEMM (2 n^3 FLOPs) through torch.mm (MKL) and as a 1x1 convolution
    (oneDNN), best of `reps`: the measured peak a model's FLOP rate is compared with."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    x, w = a.T.reshape(1, n, n, 1).contiguous(), b.T.reshape(n, n, 1, 1).contiguous()  # (1, C, H=n, 1) image
    out = {}
    for label, fn in (("torch.mm", lambda: torch.mm(a, b)), ("conv1x1", lambda: F.conv2d(x, w))):
        fn()
        best = min(_timed(fn) for _ in range(reps))
        out[label] = 2 * n ** 3 / best / 1e9
    return out


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def pix2pix_case(ds: gd.Dataset) -> dict[str, Callable[[int], float]]:
    """pix2pix at its `mnist` preset on edges -> digit (mnist-edges, or mnist-mini-edges without full MNIST):
    U-Net 32-64-128-256 and a 34x34 PatchGAN on the (source, image) pair. The hand loop takes G and D from a
    model built by genzoo and writes the step out in genzoo's order: G step (BCE + 100 L1, D frozen), then the
    halved D step on the same batch and the detached G(x); Adam(2e-4, betas (0.5, 0.999))."""
    pds = gd.load("mnist-edges" if ds.name == "mnist" else "mnist-mini-edges", "train")

    def run(steps: int) -> float:
        torch.manual_seed(0)
        m = build_model("pix2pix", pds, preset="mnist").train()
        G, D = m.generator, m.discriminator
        opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        X, T = pds.x, pds.target
        t = time.perf_counter()
        perm = torch.randperm(len(X))
        for i in range(steps):
            j = (i * BATCH) % (len(X) - BATCH)
            idx = perm[j:j + BATCH]
            x, y = X[idx].float() / 127.5 - 1, T[idx].float() / 127.5 - 1
            D.requires_grad_(False)
            fake = G(x)
            pf = D(torch.cat([x, fake], 1))
            loss_g = F.binary_cross_entropy_with_logits(pf, torch.ones_like(pf)) + 100 * (y - fake).abs().mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
            fake = fake.detach()
            pr, pf = D(torch.cat([x, y], 1)), D(torch.cat([x, fake], 1))
            loss_d = 0.5 * (F.binary_cross_entropy_with_logits(pr, torch.ones_like(pr))
                            + F.binary_cross_entropy_with_logits(pf, torch.zeros_like(pf)))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        return time.perf_counter() - t

    return {"genzoo": engine_method("pix2pix", pds, preset="mnist"), "hand-written": run}


def ddpm_case(ds: gd.Dataset) -> dict[str, Callable[[int], float]]:
    """The `ddpm` model at its `mnist` preset (U-Net 16-32-64, one block per level, attention in the middle,
    cosine schedule, T = 1000, eps-prediction, EMA 0.999): L_simple at a uniform t, Adam(5e-4). The hand loop
    builds the same U-Net class and writes the step out: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, MSE to
    eps, Adam step, EMA update of a copy of the weights."""
    import copy
    import math

    from genzoo.nn.diffusion_unet import DiffusionUNet

    def run(steps: int) -> float:
        torch.manual_seed(0)
        net = DiffusionUNet((1, 28, 28), (16, 32, 64), 1, False, 8, 0.0, 0)
        ema = copy.deepcopy(net).requires_grad_(False)
        opt = torch.optim.Adam(net.parameters(), lr=5e-4)
        T, s = 1000, 0.008
        f = [math.cos((i / T + s) / (1 + s) * math.pi / 2) ** 2 for i in range(T + 1)]
        betas = torch.tensor([min(1 - f[i + 1] / f[i], 0.999) for i in range(T)], dtype=torch.float64)
        abar = torch.cumprod(1 - betas, 0).float()
        X = ds.x
        t0 = time.perf_counter()
        perm = torch.randperm(len(X))
        for i in range(steps):
            j = (i * BATCH) % (len(X) - BATCH)
            x0 = X[perm[j:j + BATCH]].float() / 127.5 - 1  # [-1, 1]
            t = torch.randint(T, (BATCH,))
            eps = torch.randn_like(x0)
            ab = abar[t].reshape(-1, 1, 1, 1)
            loss = F.mse_loss(net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - 0.999)
        return time.perf_counter() - t0

    return {"genzoo": engine_method("ddpm", ds, preset="mnist", ema=0.999), "hand-written": run}


def cyclegan_case(ds: gd.Dataset) -> dict[str, Callable[[int], float]]:
    """cyclegan at its `mnist` preset on MNIST <-> thick-stroke MNIST (mnist-thick, or mnist-mini-thick without
    full MNIST): two ResNet generators (width 16, 3 blocks), two 34x34 PatchGANs, instance norm. The hand loop
    takes the four networks from a model built by genzoo and writes the official step out (Zhu et al.'s
    train.py): G step with D frozen (LSGAN + 10 x both cycles + 5 x both identities, six generator calls), then
    the D step on the same batch with a 50-image pool per discriminator (a Python list), each D loss halved;
    Adam(2e-4, betas (0.5, 0.999)). Images per step: one batch of each domain (BATCH of A counted)."""
    import random

    uds = gd.load("mnist-thick" if ds.name == "mnist" else "mnist-mini-thick", "train")

    def pool(images: list, fakes: torch.Tensor) -> torch.Tensor:
        out = []
        for f in fakes:
            f = f[None]
            if len(images) < 50:
                images.append(f)
                out.append(f)
            elif random.random() > 0.5:
                k = random.randint(0, 49)
                out.append(images[k].clone())
                images[k] = f
            else:
                out.append(f)
        return torch.cat(out)

    def run(steps: int) -> float:
        torch.manual_seed(0)
        random.seed(0)
        m = build_model("cyclegan", uds, preset="mnist").train()
        G, Fn, DA, DB = m.gen_ab, m.gen_ba, m.disc_a, m.disc_b
        opt_g = torch.optim.Adam([*G.parameters(), *Fn.parameters()], lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam([*DA.parameters(), *DB.parameters()], lr=2e-4, betas=(0.5, 0.999))
        pool_a, pool_b = [], []
        XA, XB = uds.x, uds.domain_b.x
        t = time.perf_counter()
        pa, pb = torch.randperm(len(XA)), torch.randperm(len(XB))
        for i in range(steps):
            j = (i * BATCH) % (len(XA) - BATCH)
            k = (i * BATCH) % (len(XB) - BATCH)
            a, b = XA[pa[j:j + BATCH]].float() / 127.5 - 1, XB[pb[k:k + BATCH]].float() / 127.5 - 1
            DA.requires_grad_(False)
            DB.requires_grad_(False)
            fake_b, fake_a = G(a), Fn(b)
            rec_a, rec_b = Fn(fake_b), G(fake_a)
            idt_b, idt_a = G(b), Fn(a)
            loss_g = (((DB(fake_b) - 1) ** 2).mean() + ((DA(fake_a) - 1) ** 2).mean()
                      + 10 * (rec_a - a).abs().mean() + 10 * (rec_b - b).abs().mean()
                      + 5 * (idt_b - b).abs().mean() + 5 * (idt_a - a).abs().mean())
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            DA.requires_grad_(True)
            DB.requires_grad_(True)
            fa, fb = pool(pool_a, fake_a.detach()), pool(pool_b, fake_b.detach())
            loss_d = (0.5 * (((DA(a) - 1) ** 2).mean() + (DA(fa) ** 2).mean())
                      + 0.5 * (((DB(b) - 1) ** 2).mean() + (DB(fb) ** 2).mean()))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        return time.perf_counter() - t

    return {"genzoo": engine_method("cyclegan", uds, preset="mnist"), "hand-written": run}


CASES: dict[str, Callable[[gd.Dataset], dict[str, Callable[[int], float]]]] = {
    "mlp-ae": mlp_ae_case,
    "conv-ae": conv_ae_case,
    "vae": vae_case,
    "dcgan": dcgan_case,
    "sagan": lineage_case("sagan", monitor_every=0),
    "biggan": lineage_case("biggan", monitor_every=0),
    "progan": lineage_case("progan", monitor_every=0, phase_images=1),
    "pix2pix": pix2pix_case,
    "ddpm": ddpm_case,
    "cyclegan": cyclegan_case,
}
# cases whose genzoo images/s is also shown as a share of the measured matmul peak
FLOP_CASES = ("conv-ae", "dcgan")
# images consumed per step, when a case's step uses more than one batch (e.g. k discriminator batches)
BATCHES_PER_STEP: dict[str, int] = {}


ENGINE_CASES = {"mlp-ae": ("ae", {"arch": "mlp", "hidden": (400,), "latent_dim": 20, "loss": "bce"}),
                "conv-ae": ("ae", {"preset": "conv"}), "vae": ("vae", {"preset": "mlp-784-400-20"}),
                "dcgan": ("dcgan", {"preset": "mnist"})}
SKIP: set[str] = set()  # method names left out (--no-dataloader)
ABLATE_CHANNELS_LAST: list[bool] = [False]  # --channels-last-ablation: also "genzoo <p> contiguous" (conv cases)


def measure(case: str, ds: gd.Dataset, steps: int, rounds: int) -> dict[str, list[float]]:
    methods = {k: v for k, v in CASES[case](ds).items() if k not in SKIP}
    if case in ENGINE_CASES:
        name, settings = ENGINE_CASES[case]
        for p in PRECISIONS:
            if p != "fp32":
                methods[f"genzoo {p}"] = engine_method(name, ds, train={"precision": p}, **settings)
            if ABLATE_CHANNELS_LAST[0] and case in FLOP_CASES:
                methods[f"genzoo {p} contiguous"] = engine_method(
                    name, ds, train={"precision": p, "channels_last": False}, **settings)
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
    ap.add_argument("--precisions", default="fp32", help="comma list: fp32 (the `genzoo` method), bf16, fp16")
    ap.add_argument("--no-dataloader", action="store_true", help="skip the slow per-sample DataLoader method")
    ap.add_argument("--channels-last-ablation", action="store_true",
                    help="conv cases: also each precision with channels_last=false")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    PRECISIONS[:] = args.precisions.split(",")
    if args.no_dataloader:
        SKIP.add("per-sample DataLoader")
    ABLATE_CHANNELS_LAST[0] = args.channels_last_ablation
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
        if case in FLOP_CASES:
            peak = matmul_peak(args.threads)
            flops = training_flops_per_image(case, ds)
            rate = statistics.median(ips["genzoo"]) * flops / 1e9
            print(f"  {flops / 1e6:,.0f} MFLOP per image (forward + backward, every phase); genzoo "
                  f"{rate:,.1f} GFLOP/s = {rate / max(peak.values()):.0%} of the measured matmul peak "
                  f"({', '.join(f'{k} {v:,.0f}' for k, v in peak.items())} GFLOP/s)")


if __name__ == "__main__":
    main()
