"""Generative adversarial networks: one model class, the variants are config fields.

The game (Goodfellow et al. 2014): min_G max_D E_x[log D(x)] + E_z[log(1 - D(G(z)))]. Training follows the
lecture's Algorithm 1 through the one engine: a `discriminator` phase repeated `k` times per step (each on a
fresh real batch and fresh z), then a `generator` phase (`uses_data=False`: it only takes the batch size and,
for a conditional GAN, the labels of the last real batch).

Registry names are presets of the same class: `gan` (MLPs, BCE), `dcgan` (Radford et al. 2016), `cgan`
(one-hot class concatenated to z and to D's input; Mirza & Osindero 2014), `wgan` (critic, weight clipping,
RMSprop, n_critic = 5; Arjovsky et al. 2017) and `wgan-gp` (gradient penalty; Gulrajani et al. 2017). Any
of them takes `loss=bce|hinge|wasserstein|least-squares`, `generator_loss=minimax|non-saturating`,
`spectral_norm`, `ema`, `label_smoothing`, `instance_noise`.

The lineage after DCGAN is two more architectures of the same class (blocks in genzoo/nn/blocks.py):
`arch=resnet` — residual G and D, optional self-attention (`attention`), spectral norm in G (`g_spectral_norm`),
and when conditional, BigGAN's conditional batch norm with a shared class embedding (`embed_dim`,
`hierarchical_z`) in G and a projection discriminator — gives `sagan` (Zhang et al. 2019) and `biggan` (Brock et
al. 2019); `arch=progan` — progressive growing with fade-in, pixel norm, equalised LR and minibatch stddev
(Karras et al. 2018) — gives `progan`. The EMA of G is the engine's (`GenerativeModel.init_ema`).

Inputs: images in [-1, 1] (G ends in tanh), or 2-D points (N, 2, 1, 1) for the toy sets ring8/grid25
(G's output is linear there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..config import check_choice
from ..nn import blocks as B
from ..nn import conv_encoder, flat_dim, mlp
from ..registry import register
from .base import Batch, GenerativeModel, ModelConfig, Phase

ARCHS = ("auto", "mlp", "dcgan", "resnet", "progan")


@dataclass(frozen=True)
class GANConfig(ModelConfig):
    """A GAN. `arch`: mlp | dcgan | auto (dcgan for images, mlp for 2-D points). `hidden`: MLP widths of G
    (D uses them reversed). `channels`: DCGAN base width (D doubles it at each stride-2 layer; G mirrors D).
    `loss`: bce | hinge | wasserstein | least-squares; `generator_loss` (bce only): non-saturating | minimax.
    `k`: discriminator steps per generator step. `clip` > 0: WGAN weight clipping to [-clip, clip] after
    every critic step. `gradient_penalty`: lambda of the WGAN-GP term. `gp_every`: lazy regularisation (Karras et
    al. 2020, StyleGAN2, s.3.1): the penalty only in the critic phases of every `gp_every`-th generator step,
    weighted gp_every * lambda there, so its average strength is unchanged (1: every step). `ema` > 0: sample
    with an exponential moving average of G's weights (decay `ema`). `label_smoothing`: real target 1 - alpha
    (one-sided). `instance_noise`: std of Gaussian noise added to D's inputs, annealed linearly to 0 over
    `instance_noise_steps` generator steps (0: constant). `init`: default | dcgan (weights ~ N(0, 0.02)).
    `monitor_every`: run the mode monitor every N steps (0: off) on `monitor_samples` fixed samples.

    The lineage (arch=resnet | progan; `channels` is then the width at full resolution, doubling per halving):
    `attention`: height of the feature maps that get a self-attention block in G and D (0: none; -1: H/2, e.g.
    14 for 28x28). `g_spectral_norm`: spectral norm in G too. `embed_dim`: size of the shared class embedding
    of a conditional resnet G (conditional BN) — its D is then a projection discriminator. `hierarchical_z`: z
    split into one chunk per G block, each chunk joining the class embedding in that block's conditional BN.
    `orthogonal_reg`: beta of BigGAN's orthogonal regularisation of G (1e-4 in the paper; 0: off).
    `drift`: epsilon of ProGAN's drift term eps * E[D(x)^2] in the critic loss. `minibatch_std`: group size of
    the minibatch-stddev feature in the progan critic (0: off). `pixel_norm`, `equalized_lr`: progan G/D.
    `phase_images`: progan growth schedule: real images per fade-in phase and per stable phase."""

    arch: str = "mlp"
    latent_dim: int = 64
    hidden: tuple[int, ...] = (256, 256)
    channels: int = 64
    conditional: bool = False
    loss: str = "bce"
    generator_loss: str = "non-saturating"
    k: int = 1
    clip: float = 0.0
    gradient_penalty: float = 0.0
    gp_every: int = 1
    spectral_norm: bool = False
    d_batch_norm: bool | None = None  # dcgan arch; None: on unless spectral_norm or gradient_penalty
    label_smoothing: float = 0.0
    instance_noise: float = 0.0
    instance_noise_steps: int = 0
    init: str = "default"
    optimizer: str = "adam"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    monitor_every: int = 500
    monitor_samples: int = 1000
    attention: int = 0
    g_spectral_norm: bool = False
    embed_dim: int = 128
    hierarchical_z: bool = False
    orthogonal_reg: float = 0.0
    drift: float = 0.0
    minibatch_std: int = 0
    pixel_norm: bool = True
    equalized_lr: bool = True
    phase_images: int = 600_000

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden": (32, 32), "latent_dim": 8, "channels": 8},
        # ring8 / grid25: 3 x 128 MLPs, z in R^16 (add spectral_norm=true, ema=0.999 to cover ring8: docs/gans.md)
        "toy": {"arch": "mlp", "hidden": (128, 128, 128), "latent_dim": 16},
        "mnist": {"latent_dim": 100, "channels": 64},
        # images: the measured DCGAN recipe with spectral norm in D (MNIST 20 CPU min: 10/10 classes, FID 60)
        "recommended": {"arch": "dcgan", "latent_dim": 100, "init": "dcgan", "spectral_norm": True},
    }

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCHS)
        check_choice("loss", self.loss, losses.GAN_LOSSES)
        check_choice("generator_loss", self.generator_loss, losses.GENERATOR_LOSSES)
        check_choice("init", self.init, ("default", "dcgan"))
        for name in ("latent_dim", "k", "channels", "embed_dim", "phase_images", "gp_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 0.5)")
        for name in ("clip", "gradient_penalty", "instance_noise", "orthogonal_reg", "drift", "minibatch_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.label_smoothing and self.loss not in ("bce", "least-squares"):
            raise ValueError(f"label_smoothing needs loss=bce or least-squares, not {self.loss!r}")
        if self.gradient_penalty and self.d_batch_norm:
            raise ValueError("gradient_penalty > 0 penalises per-example input gradients, which batch norm in "
                             "the critic mixes across the batch; set d_batch_norm=false (Gulrajani et al. 2017)")
        arch = self.resolved_arch
        if arch in ("resnet", "progan") and not self.points:
            h, w = self.image_shape[1:]
            if dcgan_depth(h, w) < 1:
                raise ValueError(f"arch={arch} needs images whose size halves at least once to >= 4 (28x28, "
                                 f"32x32, ...), got {h}x{w}")
            if arch == "progan" and h != w:
                raise ValueError(f"arch=progan needs square images, got {h}x{w}")
        if self.attention and arch != "resnet":
            raise ValueError(f"attention={self.attention} needs arch=resnet (got arch={arch})")
        if self.attention and not self.points and self.attention not in (-1, *self.resolutions()):
            raise ValueError(f"attention={self.attention}: expected 0 (none), -1 (H/2) or one of the feature-map "
                             f"heights {', '.join(map(str, self.resolutions()))} of {self.image_shape[1]}x"
                             f"{self.image_shape[2]} images")
        if self.hierarchical_z and not (arch == "resnet" and self.conditional):
            raise ValueError("hierarchical_z=true needs a conditional resnet generator (arch=resnet, "
                             "conditional=true): the z chunks join the class embedding in conditional BN")
        if arch == "progan" and self.conditional:
            raise ValueError("arch=progan is unconditional here; use biggan or cgan for class-conditional samples")
        if self.conditional and self.num_classes < 2:
            raise ValueError(f"conditional=true needs labelled data with >= 2 classes (num_classes="
                             f"{self.num_classes})")

    @property
    def points(self) -> bool:
        """2-D toy data (N, D, 1, 1) rather than images."""
        return tuple(self.image_shape[1:]) == (1, 1)

    @property
    def resolved_arch(self) -> str:
        if self.arch == "auto":
            return "mlp" if self.points else "dcgan"
        return self.arch

    def resolutions(self) -> list[int]:
        """Feature-map heights of the resnet/progan generator, lowest first: [7, 14, 28] for 28x28 images,
        [4, 8, 16, 32] for 32x32 (the progan stages)."""
        h = self.image_shape[1]
        L = dcgan_depth(h, self.image_shape[2])
        return [h >> (L - i) for i in range(L + 1)]

    @property
    def attention_res(self) -> int:
        """The height at which self-attention sits (0: none); -1 resolves to H/2."""
        return self.image_shape[1] // 2 if self.attention == -1 else self.attention


@dataclass(frozen=True)
class DCGANConfig(GANConfig):
    """DCGAN: strided convolutions, batch norm, ReLU in G / LeakyReLU(0.2) in D, tanh output, weights
    ~ N(0, 0.02), Adam(2e-4, beta1 = 0.5) (Radford et al. 2016, s.3-4)."""

    arch: str = "dcgan"
    latent_dim: int = 100
    init: str = "dcgan"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {**GANConfig.PRESETS, "recommended": {"spectral_norm": True}}  # 10/10 classes, FID 59-60 (benchmarks)


@dataclass(frozen=True)
class CGANConfig(GANConfig):
    """Conditional GAN: G(z, c) and D(x, c), c one-hot, concatenated to z and to D's input."""

    arch: str = "auto"
    latent_dim: int = 100
    conditional: bool = True
    init: str = "dcgan"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {**GANConfig.PRESETS, "recommended": {}}  # the defaults: FID 3.8, 98.8% label accuracy in 20 CPU min


@dataclass(frozen=True)
class WGANConfig(GANConfig):
    """WGAN: a critic (no sigmoid), weights clipped to [-0.01, 0.01], RMSprop(5e-5), n_critic = 5
    (Arjovsky et al. 2017, Algorithm 1)."""

    arch: str = "auto"
    loss: str = "wasserstein"
    k: int = 5
    clip: float = 0.01
    optimizer: str = "rmsprop"
    lr_g: float = 5e-5
    lr_d: float = 5e-5
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {**GANConfig.PRESETS, "recommended": {}}  # the paper's Algorithm 1 (defaults)


@dataclass(frozen=True)
class WGANGPConfig(GANConfig):
    """WGAN-GP: lambda = 10 gradient penalty on interpolates, no batch norm in the critic,
    Adam(1e-4, 0, 0.9), n_critic = 5 (Gulrajani et al. 2017, Algorithm 1)."""

    arch: str = "auto"
    loss: str = "wasserstein"
    k: int = 5
    gradient_penalty: float = 10.0
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {**GANConfig.PRESETS, "recommended": {}}  # the paper's Algorithm 1 (defaults)


@dataclass(frozen=True)
class SAGANConfig(GANConfig):
    """SAGAN (Zhang et al. 2019): residual G and D, self-attention at H/2 in both, spectral norm in G and D,
    hinge loss, two time-scale update rule G 1e-4 / D 4e-4 with Adam betas (0, 0.9)."""

    arch: str = "resnet"
    latent_dim: int = 128
    channels: int = 32
    attention: int = -1
    spectral_norm: bool = True
    g_spectral_norm: bool = True
    loss: str = "hinge"
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 8, "channels": 4, "embed_dim": 8},
        # MNIST on a CPU budget (docs/benchmarks.md): G widths 64 -> 32 -> 16, D 16 -> 32 -> 64
        "mnist": {"channels": 16},
        # the 20-CPU-minute recipe of docs/benchmarks.md (benchmarks/gan_lineage.py: batch 64)
        "recommended": {"channels": 16, "batch_size": 64},
    }


@dataclass(frozen=True)
class BigGANConfig(SAGANConfig):
    """BigGAN, small (Brock et al. 2019): SAGAN's residual G and D, class-conditional through conditional BN
    with a shared class embedding and hierarchical z in G and a projection discriminator, hinge loss, spectral
    norm in G and D, an EMA of G's weights (decay 0.999) for sampling, orthogonal regularisation beta = 1e-4;
    sample with `truncation=T` to trade variety for fidelity. Self-attention off by default (on at 64x64 in the
    paper; `attention=-1` turns it on)."""

    latent_dim: int = 96
    conditional: bool = True
    attention: int = 0
    hierarchical_z: bool = True
    ema: float = 0.999
    orthogonal_reg: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.999)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 8, "channels": 4, "embed_dim": 8},
        # MNIST on a CPU budget: SAGAN's mnist widths; a shorter EMA window (~200 steps) for a run of a few
        # thousand steps (the paper starts its 0.9999 EMA after 20k steps)
        "mnist": {"channels": 16, "ema": 0.995},
        "recommended": {"channels": 16, "ema": 0.995, "batch_size": 64},  # the 20-CPU-minute recipe (batch 64)
    }


@dataclass(frozen=True)
class ProGANConfig(GANConfig):
    """ProGAN (Karras et al. 2018): G and D grow from 7x7 (28x28 data; 4x4 for 32x32) to full size, each new
    resolution faded in over `phase_images` real images and then trained stable for as many; WGAN-GP
    (lambda 10, one critic step) plus the drift term 0.001 E[D(x)^2], Adam(1e-3, 0, 0.99), minibatch stddev
    (group 4), pixel norm in G, equalised learning rate everywhere, linear output."""

    arch: str = "progan"
    latent_dim: int = 128
    channels: int = 32
    loss: str = "wasserstein"
    gradient_penalty: float = 10.0
    drift: float = 0.001
    minibatch_std: int = 4
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 8, "channels": 4, "phase_images": 64},
        # MNIST on a CPU budget (docs/benchmarks.md): widths 64 / 32 / 16 at 7 / 14 / 28, 12,000 images per phase
        # (the whole schedule, 60,000 images, takes ~5 of 8 CPU minutes; 25,000 per phase did not finish in 8)
        "mnist": {"channels": 16, "phase_images": 12_000},
        # the 20-CPU-minute recipe: 9,000 images per phase leaves ~70% of the run to 28x28, as the official
        # schedule does (gan_lineage.progan_phase_images); batch 32 (more, smaller steps; with the EMA at 20 CPU
        # minutes on MNIST: FID 90 in fp32 against batch 64's 102, 81-93 in bf16 at three seeds against 96) and
        # sampling from an EMA of G, as the paper does
        "recommended": {"channels": 16, "phase_images": 9_000, "batch_size": 32, "ema": 0.999},
    }


def dcgan_depth(h: int, w: int) -> int:
    """Number of stride-2 layers: halve H, W while both stay even and >= 8 (28 -> 7: 2; 32 -> 4: 3)."""
    n = 0
    while h % 2 == 0 and w % 2 == 0 and h >= 8 and w >= 8:
        h, w, n = h // 2, w // 2, n + 1
    return n


def dcgan_generator(in_dim: int, out_shape: tuple[int, int, int], base: int) -> nn.Sequential:
    """z (B, in_dim) -> image (B, C, H, W) in [-1, 1]: a projection to (base * 2^(L-1), H/2^L, W/2^L),
    then L stride-2 4x4 transposed convolutions, batch norm + ReLU between, tanh at the end."""
    c, h, w = out_shape
    L = dcgan_depth(h, w)
    if L < 1:
        raise ValueError(f"image size {h}x{w} is too small or odd for the dcgan arch; use arch=mlp")
    h0, w0 = h >> L, w >> L
    chans = [base * 2 ** i for i in reversed(range(L))]  # e.g. [128, 64] for 28x28
    layers: list[nn.Module] = [
        nn.Unflatten(1, (in_dim, 1, 1)),  # (B, in_dim, 1, 1)
        nn.ConvTranspose2d(in_dim, chans[0], (h0, w0), 1, 0, bias=False),  # (B, chans[0], h0, w0)
        nn.BatchNorm2d(chans[0]), nn.ReLU(),
    ]
    for a, b in zip(chans, chans[1:]):
        layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]  # size x2
    layers += [nn.ConvTranspose2d(chans[-1], c, 4, 2, 1), nn.Tanh()]  # (B, C, H, W)
    return nn.Sequential(*layers)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. 2016, s.4: conv/linear weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class ResNetGenerator(nn.Module):
    """Residual generator (SNGAN/SAGAN/BigGAN): z -> Linear -> (C0, h0, w0) -> ResBlockUp x L (size x2 each)
    [-> self-attention at height `attention`] -> BN -> ReLU -> conv3x3 -> tanh. Widths halve per block, ending
    at `base` (e.g. 128 -> 64 -> 32 for 28x28 with base 32). Conditional (`num_classes` > 0): every BN is a
    conditional BN on c = [shared embedding(y), z chunk] (hierarchical z) or c = embedding(y)."""

    def __init__(self, z_dim: int, out_shape: tuple[int, int, int], base: int, num_classes: int = 0,
                 embed_dim: int = 128, hierarchical: bool = False, attention: int = 0):
        super().__init__()
        c, h, w = out_shape
        L = dcgan_depth(h, w)
        self.h0, self.w0 = h >> L, w >> L
        chans = [base * 2 ** i for i in reversed(range(L + 1))]  # [128, 64, 32] for 28x28, base 32
        self.chunks = [z_dim] if not hierarchical else _split_sizes(z_dim, L + 1)
        cond = 0
        if num_classes:
            self.embed = nn.Embedding(num_classes, embed_dim)  # shared by every block (BigGAN)
            cond = embed_dim + (self.chunks[1] if hierarchical else 0)
        self.linear = nn.Linear(self.chunks[0], chans[0] * self.h0 * self.w0)
        self.blocks = nn.ModuleList(B.ResBlockUp(a, b, cond) for a, b in zip(chans, chans[1:]))
        res = [self.h0 << (i + 1) for i in range(L)]  # output height of each block
        self.attn = nn.ModuleDict({str(i): B.SelfAttention(chans[i + 1]) for i, r in enumerate(res) if r == attention})
        self.out_bn = nn.BatchNorm2d(chans[-1])
        self.out_conv = nn.Conv2d(chans[-1], c, 3, 1, 1)
        self.chans = chans

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        zs = list(torch.split(z, self.chunks, 1)) if len(self.chunks) > 1 else [z]
        e = self.embed(y) if hasattr(self, "embed") else None  # (B, embed_dim)
        h = self.linear(zs[0]).reshape(len(z), self.chans[0], self.h0, self.w0)  # (B, C0, h0, w0)
        for i, blk in enumerate(self.blocks):
            cond = None if e is None else (torch.cat([e, zs[i + 1]], 1) if len(zs) > 1 else e)
            h = blk(h, cond)  # (B, C_{i+1}, 2H, 2W)
            if str(i) in self.attn:
                h = self.attn[str(i)](h)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class ResNetDiscriminator(nn.Module):
    """Residual discriminator (SNGAN/SAGAN/BigGAN): ResBlockDown x L (the first one the optimised input block)
    [-> self-attention at height `attention`] -> a ResBlock without pooling -> ReLU -> sum over positions ->
    phi(x) (B, F) -> psi = Linear(F, 1); with `num_classes` > 0, the projection term embed(y)^T phi(x) is added
    (Miyato & Koyama 2018)."""

    def __init__(self, in_shape: tuple[int, int, int], base: int, num_classes: int = 0, attention: int = 0):
        super().__init__()
        c, h, w = in_shape
        L = dcgan_depth(h, w)
        chans = [base * 2 ** i for i in range(L + 1)]  # [32, 64, 128] for 28x28, base 32
        blocks: list[nn.Module] = [B.ResBlockDown(c, chans[0], first=True)]
        res = h // 2
        if res == attention:
            blocks.append(B.SelfAttention(chans[0]))
        for a, b in zip(chans[:L - 1], chans[1:L]):
            blocks.append(B.ResBlockDown(a, b))
            res //= 2
            if res == attention:
                blocks.append(B.SelfAttention(b))
        blocks.append(B.ResBlockDown(chans[L - 1], chans[L], down=False))
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(chans[L], 1)
        if num_classes:
            self.embed = nn.Embedding(num_classes, chans[L])

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        phi = F.relu(self.blocks(x)).sum((2, 3))  # (B, F): sum pooling
        out = self.linear(phi).reshape(-1)  # (B,)
        if hasattr(self, "embed"):
            out = out + B.projection_term(phi, y, self.embed)
        return out


def _split_sizes(n: int, parts: int) -> list[int]:
    """n latent dimensions in `parts` chunks, the first taking the remainder: 96, 3 -> [32, 32, 32]."""
    k = n // parts
    if k < 1:
        raise ValueError(f"latent_dim={n} is too small to split into {parts} hierarchical-z chunks")
    return [n - k * (parts - 1)] + [k] * (parts - 1)


def _conv(equalized: bool, c_in: int, c_out: int, k: int, pad: int, gain: float = math.sqrt(2)) -> nn.Module:
    return B.EqualizedConv2d(c_in, c_out, k, pad, gain) if equalized else nn.Conv2d(c_in, c_out, k, 1, pad)


def _act_norm(pixel_norm: bool) -> list[nn.Module]:
    return [nn.LeakyReLU(0.2)] + ([B.PixelNorm()] if pixel_norm else [])


class ProGenerator(nn.Module):
    """ProGAN generator (Karras et al. 2018, Table 2) for stages s = 0..S at heights res[s] (7, 14, 28):
    z -> PixelNorm -> Linear to (C0, h0, h0) -> LReLU, PN -> conv3 -> LReLU, PN; stage s >= 1 adds
    [upsample x2 -> conv3 -> LReLU, PN -> conv3 -> LReLU, PN]; `to_rgb[s]` (1x1, linear) turns stage s's
    features into an image. While stage s fades in (alpha < 1) the output is
    (1 - alpha) * upsample(to_rgb[s-1](h_{s-1})) + alpha * to_rgb[s](block_s(h_{s-1})), at res[s]."""

    def __init__(self, z_dim: int, out_shape: tuple[int, int, int], base: int, equalized: bool = True,
                 pixel_norm: bool = True):
        super().__init__()
        c, h, _ = out_shape
        S = dcgan_depth(h, h)
        self.h0 = h >> S
        self.chans = [base * 2 ** (S - s) for s in range(S + 1)]  # [128, 64, 32] for 28x28, base 32
        lin = B.EqualizedLinear(z_dim, self.chans[0] * self.h0 ** 2, math.sqrt(2) / 4) if equalized else \
            nn.Linear(z_dim, self.chans[0] * self.h0 ** 2)  # gain sqrt(2)/4 as the authors' dense 4x4 layer
        self.input = nn.Sequential(*([B.PixelNorm()] if pixel_norm else []), lin)
        self.base = nn.Sequential(*_act_norm(pixel_norm), _conv(equalized, self.chans[0], self.chans[0], 3, 1),
                                  *_act_norm(pixel_norm))
        self.blocks = nn.ModuleList([nn.Identity()] + [nn.Sequential(
            nn.Upsample(scale_factor=2.0), _conv(equalized, a, b, 3, 1), *_act_norm(pixel_norm),
            _conv(equalized, b, b, 3, 1), *_act_norm(pixel_norm)) for a, b in zip(self.chans, self.chans[1:])])
        self.to_rgb = nn.ModuleList(_conv(equalized, ch, c, 1, 0, 1.0) for ch in self.chans)

    def forward(self, z: Tensor, stage: int, alpha: float = 1.0) -> Tensor:
        h = self.input(z).reshape(len(z), self.chans[0], self.h0, self.h0)  # (B, C0, h0, h0)
        h = self.base(h)
        for s in range(1, stage):
            h = self.blocks[s](h)  # (B, C_s, res[s], res[s])
        if stage == 0:
            return self.to_rgb[0](h)
        new = self.to_rgb[stage](self.blocks[stage](h))  # (B, C, res[stage], res[stage])
        if alpha >= 1.0:
            return new
        old = F.interpolate(self.to_rgb[stage - 1](h), scale_factor=2.0)  # the previous stage, upsampled
        return torch.lerp(old, new, alpha)


class ProDiscriminator(nn.Module):
    """ProGAN critic, the mirror of ProGenerator: `from_rgb[s]` (1x1 -> LReLU) at res[s], stage s >= 1 blocks
    [conv3 -> LReLU -> conv3 -> LReLU -> avgpool 2x2]; at h0: minibatch stddev -> conv3 -> LReLU ->
    conv h0 x h0 (valid) -> LReLU -> Linear(., 1). While stage s fades in, the features entering block s-1 are
    (1 - alpha) * from_rgb[s-1](avgpool(x)) + alpha * block_s(from_rgb[s](x))."""

    def __init__(self, in_shape: tuple[int, int, int], base: int, equalized: bool = True, mbstd: int = 4):
        super().__init__()
        c, h, _ = in_shape
        S = dcgan_depth(h, h)
        h0 = h >> S
        ch = [base * 2 ** (S - s) for s in range(S + 1)]  # [128, 64, 32] for 28x28, base 32
        self.from_rgb = nn.ModuleList(nn.Sequential(_conv(equalized, c, k, 1, 0), nn.LeakyReLU(0.2)) for k in ch)
        self.blocks = nn.ModuleList([nn.Identity()] + [nn.Sequential(
            _conv(equalized, ch[s], ch[s], 3, 1), nn.LeakyReLU(0.2), _conv(equalized, ch[s], ch[s - 1], 3, 1),
            nn.LeakyReLU(0.2), nn.AvgPool2d(2)) for s in range(1, S + 1)])
        head: list[nn.Module] = [B.MinibatchStdDev(mbstd)] if mbstd else []
        head += [_conv(equalized, ch[0] + (1 if mbstd else 0), ch[0], 3, 1), nn.LeakyReLU(0.2),
                 _conv(equalized, ch[0], ch[0], h0, 0), nn.LeakyReLU(0.2), nn.Flatten()]  # (B, C0)
        head.append(B.EqualizedLinear(ch[0], 1, 1.0) if equalized else nn.Linear(ch[0], 1))
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor, stage: int, alpha: float = 1.0) -> Tensor:
        h = self.from_rgb[stage](x)  # (B, C_stage, res, res)
        if stage > 0:
            h = self.blocks[stage](h)  # (B, C_{stage-1}, res/2, res/2)
            if alpha < 1.0:
                h = torch.lerp(self.from_rgb[stage - 1](F.avg_pool2d(x, 2)), h, alpha)
        for s in range(stage - 1, 0, -1):
            h = self.blocks[s](h)
        return self.head(h).reshape(-1)  # (B,)


def progan_schedule(images_seen: int, phase_images: int, stages: int) -> tuple[int, float]:
    """(stage, alpha) after `images_seen` real images: stage 0 stable for `phase_images`, then for each
    s = 1..stages-1 a fade-in (alpha = images into the phase / phase_images, rising 0 -> 1) followed by a stable
    phase (alpha = 1) of `phase_images` each; the last stage then stays stable."""
    if images_seen < phase_images or stages == 1:
        return 0, 1.0
    m = images_seen - phase_images
    s, r = 1 + m // (2 * phase_images), m % (2 * phase_images)
    if s >= stages:
        return stages - 1, 1.0
    return s, min(1.0, r / phase_images)


@register("gan", GANConfig, "GAN with MLP generator and discriminator (BCE; minimax or non-saturating, k D steps)")
class GAN(GenerativeModel):
    """Generator G(z[, c]) and discriminator D(x[, c]) trained adversarially (Algorithm 1)."""

    config_class = GANConfig
    input_range = (-1.0, 1.0)

    def __init__(self, config: GANConfig):
        super().__init__(config)
        c = config
        k = c.num_classes if c.conditional else 0
        d = flat_dim(c.image_shape)
        arch = c.resolved_arch
        if arch != "mlp" and c.points:
            raise ValueError(f"arch={arch} needs images; 2-D point data needs arch=mlp (or auto)")
        if arch == "resnet":
            nc = c.num_classes if c.conditional else 0
            self.generator = ResNetGenerator(c.latent_dim, c.image_shape, c.channels, nc, c.embed_dim,
                                             c.hierarchical_z, c.attention_res)
            self.discriminator = ResNetDiscriminator(c.image_shape, c.channels, nc, c.attention_res)
        elif arch == "progan":
            self.generator = ProGenerator(c.latent_dim, c.image_shape, c.channels, c.equalized_lr, c.pixel_norm)
            self.discriminator = ProDiscriminator(c.image_shape, c.channels, c.equalized_lr, c.minibatch_std)
        elif arch == "mlp":
            out_act = "linear" if c.points else "tanh"
            self.generator = nn.Sequential(mlp([c.latent_dim + k, *c.hidden, d], "relu", out_act),
                                           nn.Unflatten(1, c.image_shape))  # (B, C, H, W)
            self.discriminator = mlp([d + k, *reversed(c.hidden), 1], "leaky_relu")
        else:
            bn = c.d_batch_norm if c.d_batch_norm is not None else not (c.spectral_norm or c.gradient_penalty)
            self.generator = dcgan_generator(c.latent_dim + k, c.image_shape, c.channels)
            L = dcgan_depth(*c.image_shape[1:])
            in_shape = (c.image_shape[0] + k, *c.image_shape[1:])  # one-hot class maps as extra channels
            self.discriminator = conv_encoder(in_shape, tuple(c.channels * 2 ** i for i in range(L)), 1,
                                              "leaky_relu", bn)
        if c.init == "dcgan":
            dcgan_init(self)
        if c.spectral_norm:  # Miyato et al. 2018: W / sigma(W), sigma by one power iteration per step
            for m in list(self.discriminator.modules()):
                if isinstance(m, (nn.Linear, nn.Conv2d)) or (arch == "resnet" and isinstance(m, nn.Embedding)):
                    nn.utils.parametrizations.spectral_norm(m)
        if c.g_spectral_norm:  # SAGAN / BigGAN: spectral norm in G too (its class embedding excepted)
            for m in list(self.generator.modules()):
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    nn.utils.parametrizations.spectral_norm(m)
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        # real images seen (progan's growth schedule reads its stage and alpha from it; saved, so --resume
        # continues mid-fade exactly). The schedule reads the Python-int mirror `_images_seen`, so a step never
        # reads a tensor back (a host sync on a GPU, issue 16); the buffer is what the checkpoint holds, and
        # load_state_dict sets the mirror from it.
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))
        self._images_seen = 0
        self._generator_steps = 0  # the same kind of mirror of `generator_steps` (instance noise's annealing)
        self._step_images = 0
        self.init_ema(self.generator)  # engine-level EMA of G (config `ema`; the engine updates it every step)

    # ---- the two networks ------------------------------------------------------------------------
    def _one_hot(self, y: Tensor | None) -> Tensor | None:
        if not self.config.conditional:
            return None
        if y is None:
            raise ValueError("a conditional GAN needs class labels")
        return F.one_hot(y, self.config.num_classes).float()  # (B, K)

    # ---- progan's growth schedule ---------------------------------------------------------------
    @property
    def stage(self) -> tuple[int, float]:
        """(stage, alpha) of the growth schedule now (progan; other archs: the full-size stage, alpha 1)."""
        n = len(self.config.resolutions()) if self.config.resolved_arch == "progan" else 1
        if n == 1:
            return 0, 1.0
        return progan_schedule(self._images_seen, self.config.phase_images, n)

    def _real_at_stage(self, x: Tensor) -> Tensor:
        """progan: real images at the current stage's resolution (average pooling), and while a stage fades
        in, blended with the previous resolution as G's output is: lerp(up(pool(x_s)), x_s, alpha)."""
        if self.config.resolved_arch != "progan":
            return x
        s, alpha = self.stage
        f = x.shape[-1] // self.config.resolutions()[s]
        xs = F.avg_pool2d(x, f) if f > 1 else x  # (B, C, res[s], res[s])
        if s > 0 and alpha < 1.0:
            xs = torch.lerp(F.interpolate(F.avg_pool2d(xs, 2), scale_factor=2.0), xs, alpha)
        return xs

    def G(self, z: Tensor, y: Tensor | None = None, average: bool = False) -> Tensor:
        """z (B, latent_dim) [and labels (B,)] -> samples (B, C, H, W); `average`: use the EMA weights.
        progan: at the current stage's resolution (see `sample` for full-size images)."""
        net = self.averaged(self.generator) if average else self.generator
        arch = self.config.resolved_arch
        if arch == "resnet":
            return net(z, y if self.config.conditional else None)
        if arch == "progan":
            s, alpha = self.stage
            return net(z, s, alpha)
        c = self._one_hot(y)
        if c is not None:
            z = torch.cat([z, c], 1)  # (B, latent_dim + K)
        return net(z)

    def D(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) [and labels] -> D's logit / the critic's value, (B,)."""
        arch = self.config.resolved_arch
        if arch == "resnet":
            if self.config.conditional and y is None:
                raise ValueError("a conditional GAN needs class labels")
            return self.discriminator(x, y if self.config.conditional else None)
        if arch == "progan":
            s, alpha = self.stage
            return self.discriminator(x, s, alpha)
        c = self._one_hot(y)
        if c is not None:
            if self.config.resolved_arch == "mlp":
                x = torch.cat([x.flatten(1), c], 1)  # (B, C*H*W + K)
            else:
                x = torch.cat([x, c[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)  # (B, C + K, H, W)
        elif self.config.resolved_arch == "mlp":
            x = x.flatten(1)  # (B, C*H*W)
        return self.discriminator(x).reshape(-1)  # (B,)

    def noise(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None) -> Tensor:
        """z ~ N(0, I), (n, latent_dim); with `truncation` T, entries with |z_i| > T are redrawn (the
        truncation trick, Brock et al. 2019)."""
        if generator is None and truncation is None and self.rng is not None:
            return self.rng.randn(n, self.config.latent_dim)  # training: on the device, from the engine's stream
        z = torch.randn(n, self.config.latent_dim, generator=generator)
        if truncation is not None:
            if truncation <= 0:
                raise ValueError(f"truncation={truncation} must be > 0")
            bad = z.abs() > truncation
            while bad.any():
                z[bad] = torch.randn(int(bad.sum()), generator=generator)
                bad = z.abs() > truncation
        return z.to(self.device)

    # ---- capabilities ----------------------------------------------------------------------------
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None,
               truncation: float | None = None, temperature: float = 1.0, **kw: Any) -> Tensor:
        """n samples G(temperature * z[, labels]) in model space ([-1, 1] images, or points). A conditional GAN
        draws uniform random classes when `labels` is None. Uses the EMA weights when `ema` > 0."""
        c = self.config
        if labels is not None:
            if not c.conditional:
                raise ValueError(f"{self.model_type or 'this GAN'} is unconditional: it takes no labels "
                                 f"(train a cgan, or set conditional=true)")
            labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            if len(labels) != n:
                raise ValueError(f"got {len(labels)} labels for n={n} samples")
            if labels.min() < 0 or labels.max() >= c.num_classes:
                raise ValueError(f"labels must be class indices in 0..{c.num_classes - 1}, got "
                                 f"{labels.min().item()}..{labels.max().item()}")
        elif c.conditional:
            labels = torch.randint(c.num_classes, (n,), generator=generator)
        z = temperature * self.noise(n, generator, truncation)
        y = labels.to(self.device) if labels is not None else None
        x = self.G(z, y, average=True)
        if x.shape[-1] != c.image_shape[-1]:  # progan before its last stage: show it at full size
            x = F.interpolate(x, size=tuple(c.image_shape[1:]), mode="nearest")
        return x

    @torch.no_grad()
    def attention_maps(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None,
                       **settings: Any) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Samples and where G's self-attention looks: (samples (n, C, H, W) in model space, attention (n, N, N)
        with row j the distribution over the N = h*w positions that output position j attends to, (h, w) the
        attention layer's grid). Uses the same (EMA) generator and noise as `sample`."""
        layers = [m for m in self.averaged(self.generator).modules() if isinstance(m, B.SelfAttention)]
        if not layers:
            raise ValueError(f"{self.model_type or 'this GAN'} has no self-attention in its generator (train a sagan, "
                             f"or arch=resnet with attention > 0)")
        att = layers[0]
        att.keep_attention = True
        try:
            x = self.sample(n, labels=labels, generator=generator, **settings)
        finally:
            att.keep_attention = False
        beta, att.last_attention = att.last_attention, None
        h = self.config.attention_res
        return x, beta, (h, beta.shape[-1] // h)

    def to_unit(self, x: Tensor) -> Tensor:
        if self.config.points:
            raise ValueError("2-D point samples have no image form; plot them with `genzoo gans plot RUN`")
        return super().to_unit(x)

    # ---- losses ----------------------------------------------------------------------------------
    def _noisy(self, x: Tensor) -> Tensor:
        """Instance noise (Sonderby et al. 2017): x + sigma_t eps, sigma_t annealed linearly to 0."""
        c = self.config
        if not (c.instance_noise and self.training):
            return x
        sigma = c.instance_noise
        if c.instance_noise_steps:
            sigma *= max(0.0, 1.0 - self._generator_steps / c.instance_noise_steps)  # the int mirror: no sync
        return x + sigma * torch.randn_like(x) if sigma > 0 else x

    def _mean_output(self, logits: Tensor) -> Tensor:
        """Mean D(.) for the logs: a probability for bce, the raw output for the other losses."""
        return (torch.sigmoid(logits) if self.config.loss == "bce" else logits).mean().detach()

    def d_loss(self, batch: Batch, penalty: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        """Discriminator/critic phase: the `loss` on a real batch and as many fresh samples, plus
        lambda * gradient penalty."""
        c = self.config
        y = batch.y if c.conditional else None
        real = self._real_at_stage(batch.x)
        with torch.no_grad():
            fake = self.G(self.noise(len(batch.x)), y)
        r = self.D(self._noisy(real), y).float()  # the losses in fp32 under bf16/fp16 autocast
        f = self.D(self._noisy(fake), y).float()
        adv = losses.gan_d_loss(c.loss, r, f, 1.0 - c.label_smoothing)
        terms = {"adv": adv, "d_real": self._mean_output(r), "d_fake": self._mean_output(f)}
        total = adv
        if c.loss == "wasserstein":
            terms["w_estimate"] = (r.mean() - f.mean()).detach()  # E[D(x)] - E[D(G(z))]
        if c.drift:
            drift = losses.drift_penalty(r)
            total = total + c.drift * drift
            terms["drift"] = drift.detach()
        if c.gradient_penalty and penalty and self._generator_steps % c.gp_every == 0:  # the int mirror: no sync
            shape = (len(real), *([1] * (real.ndim - 1)))
            eps = self.rng.rand(*shape) if self.rng is not None else torch.rand(shape, device=real.device)
            with torch.autocast(real.device.type, enabled=False):  # the penalty's double backward stays fp32
                gp = losses.gradient_penalty(lambda v: self.D(v, y), real.float(), fake.float(), eps)
            total = total + c.gp_every * c.gradient_penalty * gp
            terms["gp"] = gp.detach()
        if c.resolved_arch == "progan":  # logged in metrics.csv as discriminator/stage, discriminator/alpha
            s, alpha = self.stage
            terms["stage"], terms["alpha"] = torch.tensor(float(s)), torch.tensor(alpha)
        return total, terms

    def g_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Generator phase: the generator loss on len(batch) fresh samples (labels of the last real batch).
        For bce it also logs |dL/df| per sample for both generator losses, averaged: s(f) for minimax and
        1 - s(f) for non-saturating — the minimax one vanishes when D rejects the samples."""
        c = self.config
        y = batch.y if c.conditional else None
        f = self.D(self._noisy(self.G(self.noise(len(batch.x)), y)), y).float()  # loss in fp32 under autocast
        loss = losses.gan_g_loss(c.loss, f, c.generator_loss)
        terms = {"d_fake": self._mean_output(f)}
        world = self.rng.world if self.rng is not None else 1  # under torchrun: every rank's images
        self._step_images = len(batch.x) * c.k * world  # real images this step's discriminator phases consumed
        if c.orthogonal_reg:
            ortho = B.orthogonal_penalty(self.generator)
            loss = loss + c.orthogonal_reg * ortho
            terms["ortho"] = ortho.detach()
        if c.loss == "bce":
            p = torch.sigmoid(f.detach())
            terms["grad_minimax"], terms["grad_nonsat"] = p.mean(), (1 - p).mean()
        return loss, terms

    @torch.no_grad()
    def val_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Both phases' losses on a test batch, without the gradient penalty (it needs autograd)."""
        d, dt = self.d_loss(batch, penalty=False)
        _, gt = self.g_loss(batch)
        terms = {f"discriminator/{k}": v for k, v in dt.items()}
        terms.update({f"generator/{k}": v for k, v in gt.items()})
        return d, terms

    # ---- training --------------------------------------------------------------------------------
    def _clip(self) -> None:
        """WGAN: clamp every critic weight to [-c, c] after each critic step."""
        with torch.no_grad():
            for p in self.discriminator.parameters():
                p.clamp_(-self.config.clip, self.config.clip)

    def _after_generator_step(self) -> None:
        """Count generator steps and the real images seen (the progan schedule's clock). The EMA of G is
        updated by the engine after the step (`model.ema.update()`)."""
        self.generator_steps += 1
        self._generator_steps += 1
        self.images_seen += self._step_images  # in place on the device: no read-back
        self._images_seen += self._step_images

    def on_train_end(self, batches) -> None:
        """With an EMA of a generator that has batch norm (dcgan, resnet): recompute the EMA copy's running
        statistics from its own activations on 10 batches of 200 fresh z (a private RNG, so the global RNG saved in
        the checkpoint is untouched), instead of keeping the live generator's statistics."""
        ema = self._modules.get("ema")
        if ema is None or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in ema.module.modules()):
            return
        c, g = self.config, torch.Generator().manual_seed(20_190_101)
        n = 200  # x 10 batches: 2,000 samples per statistic

        def forward(module: nn.Module) -> None:
            z = torch.randn(n, c.latent_dim, generator=g).to(self.device)
            y = torch.randint(c.num_classes, (n,), generator=g).to(self.device) if c.conditional else None
            if c.resolved_arch == "resnet":
                module(z, y)
            else:
                oh = self._one_hot(y)
                module(z if oh is None else torch.cat([z, oh], 1))

        ema.recompute_bn(forward, 10)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also reads runs saved before the EMA moved to the engine: their `ema_weights.<name with _>` buffers
        become `ema.module.<name>`, and the EMA copy's buffers (batch-norm statistics) come from the live G; and
        runs saved before the `images_seen` counter (it starts at 0). Sets the Python-int mirrors of
        `images_seen` (progan's schedule) and `generator_steps` (instance noise) from the loaded buffers."""
        if "images_seen" not in state_dict:  # runs saved before the progan counter existed (none are progan)
            state_dict = {**state_dict, "images_seen": self.images_seen.detach().clone()}
        if any(k.startswith("ema_weights.") for k in state_dict) and "ema" in self._modules:
            state_dict = dict(state_dict)
            for name, _ in self.generator.named_parameters():
                old = "ema_weights." + _ema_key(name)
                if old in state_dict:
                    state_dict["ema.module." + name] = state_dict.pop(old)
            for name, _ in self.generator.named_buffers():
                if "generator." + name in state_dict:
                    state_dict.setdefault("ema.module." + name, state_dict["generator." + name])
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._images_seen = int(self.images_seen)  # the Python-int mirrors (one read each, at load time)
        self._generator_steps = int(self.generator_steps)
        return result

    def phases(self) -> list[Phase]:
        c = self.config
        opt = {"name": c.optimizer, "betas": c.betas}
        return [
            Phase("discriminator", list(self.discriminator.parameters()), self.d_loss, {**opt, "lr": c.lr_d},
                  repeat=c.k, after_step=self._clip if c.clip else None),
            Phase("generator", list(self.generator.parameters()), self.g_loss, {**opt, "lr": c.lr_g},
                  uses_data=False, after_step=self._after_generator_step),
        ]

    @torch.no_grad()
    def discriminator_field(self, lim: float, res: int = 128) -> Tensor:
        """D's output (probability for bce, raw otherwise) on a res x res grid over [-lim, lim]^2 of 2-D
        points, row 0 at y = +lim: (res, res). Unconditional toy models only."""
        if not self.config.points or self.config.image_shape[0] != 2 or self.config.conditional:
            raise ValueError("discriminator_field needs an unconditional model of 2-D points")
        t = torch.linspace(-lim, lim, res, device=self.device)
        yy, xx = torch.meshgrid(t.flip(0), t, indexing="ij")
        pts = torch.stack([xx, yy], -1).reshape(-1, 2, 1, 1)  # (res*res, 2, 1, 1)
        out = self.D(pts)
        if self.config.loss == "bce":
            out = torch.sigmoid(out)
        return out.reshape(res, res)

    @torch.no_grad()
    def preview(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
        """Images: samples from a fixed z (base class). Points: one picture of D's output (grey, rescaled to
        [0, 1]) with the fixed real batch (blue) and 512 samples from a fixed z (red)."""
        if not self.config.points:
            return super().preview(batch, generator)
        res, lim = 160, _extent(batch.x)
        field = self.discriminator_field(lim, res).float().cpu()
        field = (field - field.min()) / (field.max() - field.min()).clamp_min(1e-8)
        img = (0.35 + 0.55 * field).expand(3, res, res).clone()  # (3, res, res)
        for pts, colour in ((batch.x, (0.1, 0.3, 1.0)), (self.sample(512, generator=generator), (1.0, 0.1, 0.1))):
            xy = pts.reshape(-1, 2).cpu()
            col = ((xy[:, 0] + lim) / (2 * lim) * (res - 1)).round().long()
            row = ((lim - xy[:, 1]) / (2 * lim) * (res - 1)).round().long()
            ok = (col >= 0) & (col < res) & (row >= 0) & (row < res)
            for ch, v in enumerate(colour):
                img[ch, row[ok], col[ok]] = v
        return img[None], 1

    def callbacks(self) -> list[Any]:
        if not self.config.monitor_every:
            return []
        from ..train.callbacks import ModeMonitor
        return [ModeMonitor(self.config.monitor_every, self.config.monitor_samples)]


def _ema_key(name: str) -> str:
    return name.replace(".", "_")


def _extent(x: Tensor) -> float:
    """Half-width of a square view around 2-D points: max |coordinate| plus a margin, rounded up."""
    return float(math.ceil(float(x.abs().max()) + 0.5))


@register("dcgan", DCGANConfig, "DCGAN: strided-conv G and D with batch norm, tanh output, Adam(2e-4, 0.5)")
class DCGAN(GAN):
    config_class = DCGANConfig


@register("cgan", CGANConfig, "conditional GAN: one-hot class concatenated to z and to D's input")
class CGAN(GAN):
    config_class = CGANConfig


@register("wgan", WGANConfig, "WGAN: critic with weight clipping, RMSprop(5e-5), n_critic = 5")
class WGAN(GAN):
    config_class = WGANConfig


@register("wgan-gp", WGANGPConfig, "WGAN-GP: gradient penalty lambda = 10, Adam(1e-4, 0, 0.9), n_critic = 5")
class WGANGP(GAN):
    config_class = WGANGPConfig


@register("sagan", SAGANConfig, "SAGAN: residual G/D with self-attention, spectral norm in both, hinge, TTUR 1e-4/4e-4")
class SAGAN(GAN):
    config_class = SAGANConfig


@register("biggan", BigGANConfig, "BigGAN (small): conditional BN + shared embedding, projection D, EMA, truncation")
class BigGAN(GAN):
    config_class = BigGANConfig


@register("progan", ProGANConfig, "ProGAN: progressive growing with fade-in, WGAN-GP + drift, pixel norm, equalised LR")
class ProGAN(GAN):
    config_class = ProGANConfig
