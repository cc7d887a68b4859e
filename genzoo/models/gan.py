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
from ..nn import conv_encoder, flat_dim, mlp
from ..registry import register
from .base import Batch, GenerativeModel, ModelConfig, Phase

ARCHS = ("auto", "mlp", "dcgan")


@dataclass(frozen=True)
class GANConfig(ModelConfig):
    """A GAN. `arch`: mlp | dcgan | auto (dcgan for images, mlp for 2-D points). `hidden`: MLP widths of G
    (D uses them reversed). `channels`: DCGAN base width (D doubles it at each stride-2 layer; G mirrors D).
    `loss`: bce | hinge | wasserstein | least-squares; `generator_loss` (bce only): non-saturating | minimax.
    `k`: discriminator steps per generator step. `clip` > 0: WGAN weight clipping to [-clip, clip] after
    every critic step. `gradient_penalty`: lambda of the WGAN-GP term. `ema` > 0: sample with an exponential
    moving average of G's weights (decay `ema`). `label_smoothing`: real target 1 - alpha (one-sided).
    `instance_noise`: std of Gaussian noise added to D's inputs, annealed linearly to 0 over
    `instance_noise_steps` generator steps (0: constant). `init`: default | dcgan (weights ~ N(0, 0.02)).
    `monitor_every`: run the mode monitor every N steps (0: off) on `monitor_samples` fixed samples."""

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
    spectral_norm: bool = False
    d_batch_norm: bool | None = None  # dcgan arch; None: on unless spectral_norm or gradient_penalty
    ema: float = 0.0
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

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden": (32, 32), "latent_dim": 8, "channels": 8},
        # ring8 / grid25: 3 x 128 MLPs, z in R^16 (add spectral_norm=true, ema=0.999 to cover ring8: docs/gans.md)
        "toy": {"arch": "mlp", "hidden": (128, 128, 128), "latent_dim": 16},
        "mnist": {"latent_dim": 100, "channels": 64},
    }

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCHS)
        check_choice("loss", self.loss, losses.GAN_LOSSES)
        check_choice("generator_loss", self.generator_loss, losses.GENERATOR_LOSSES)
        check_choice("init", self.init, ("default", "dcgan"))
        for name in ("latent_dim", "k", "channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema={self.ema} must be in [0, 1) (a decay such as 0.999; 0 turns it off)")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 0.5)")
        for name in ("clip", "gradient_penalty", "instance_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.label_smoothing and self.loss not in ("bce", "least-squares"):
            raise ValueError(f"label_smoothing needs loss=bce or least-squares, not {self.loss!r}")
        if self.gradient_penalty and self.d_batch_norm:
            raise ValueError("gradient_penalty > 0 penalises per-example input gradients, which batch norm in "
                             "the critic mixes across the batch; set d_batch_norm=false (Gulrajani et al. 2017)")
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


@dataclass(frozen=True)
class DCGANConfig(GANConfig):
    """DCGAN: strided convolutions, batch norm, ReLU in G / LeakyReLU(0.2) in D, tanh output, weights
    ~ N(0, 0.02), Adam(2e-4, beta1 = 0.5) (Radford et al. 2016, s.3-4)."""

    arch: str = "dcgan"
    latent_dim: int = 100
    init: str = "dcgan"


@dataclass(frozen=True)
class CGANConfig(GANConfig):
    """Conditional GAN: G(z, c) and D(x, c), c one-hot, concatenated to z and to D's input."""

    arch: str = "auto"
    latent_dim: int = 100
    conditional: bool = True
    init: str = "dcgan"


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
        if arch == "dcgan" and c.points:
            raise ValueError("arch=dcgan needs images; 2-D point data needs arch=mlp (or auto)")
        if arch == "mlp":
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
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    nn.utils.parametrizations.spectral_norm(m)
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        if c.ema:
            # the averaged weights are buffers: saved with the model, never optimised
            self.ema_weights = nn.Module()
            for name, p in self.generator.named_parameters():
                self.ema_weights.register_buffer(_ema_key(name), p.detach().clone())

    # ---- the two networks ------------------------------------------------------------------------
    def _one_hot(self, y: Tensor | None) -> Tensor | None:
        if not self.config.conditional:
            return None
        if y is None:
            raise ValueError("a conditional GAN needs class labels")
        return F.one_hot(y, self.config.num_classes).float()  # (B, K)

    def G(self, z: Tensor, y: Tensor | None = None, average: bool = False) -> Tensor:
        """z (B, latent_dim) [and labels (B,)] -> samples (B, C, H, W); `average`: use the EMA weights."""
        c = self._one_hot(y)
        if c is not None:
            z = torch.cat([z, c], 1)  # (B, latent_dim + K)
        if average and self.config.ema:
            weights = {n: getattr(self.ema_weights, _ema_key(n)) for n, _ in self.generator.named_parameters()}
            return torch.func.functional_call(self.generator, weights, (z,))
        return self.generator(z)

    def D(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) [and labels] -> D's logit / the critic's value, (B,)."""
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
        return self.G(z, y, average=True)

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
            sigma *= max(0.0, 1.0 - float(self.generator_steps) / c.instance_noise_steps)
        return x + sigma * torch.randn_like(x) if sigma > 0 else x

    def _mean_output(self, logits: Tensor) -> Tensor:
        """Mean D(.) for the logs: a probability for bce, the raw output for the other losses."""
        return (torch.sigmoid(logits) if self.config.loss == "bce" else logits).mean().detach()

    def d_loss(self, batch: Batch, penalty: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        """Discriminator/critic phase: the `loss` on a real batch and as many fresh samples, plus
        lambda * gradient penalty."""
        c = self.config
        y = batch.y if c.conditional else None
        with torch.no_grad():
            fake = self.G(self.noise(len(batch.x)), y)
        r = self.D(self._noisy(batch.x), y)
        f = self.D(self._noisy(fake), y)
        adv = losses.gan_d_loss(c.loss, r, f, 1.0 - c.label_smoothing)
        terms = {"adv": adv, "d_real": self._mean_output(r), "d_fake": self._mean_output(f)}
        total = adv
        if c.loss == "wasserstein":
            terms["w_estimate"] = (r.mean() - f.mean()).detach()  # E[D(x)] - E[D(G(z))]
        if c.gradient_penalty and penalty:
            eps = torch.rand(len(batch.x), *([1] * (batch.x.ndim - 1)), device=batch.x.device)
            gp = losses.gradient_penalty(lambda v: self.D(v, y), batch.x, fake, eps)
            total = total + c.gradient_penalty * gp
            terms["gp"] = gp.detach()
        return total, terms

    def g_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Generator phase: the generator loss on len(batch) fresh samples (labels of the last real batch).
        For bce it also logs |dL/df| per sample for both generator losses, averaged: s(f) for minimax and
        1 - s(f) for non-saturating — the minimax one vanishes when D rejects the samples."""
        c = self.config
        y = batch.y if c.conditional else None
        f = self.D(self._noisy(self.G(self.noise(len(batch.x)), y)), y)
        loss = losses.gan_g_loss(c.loss, f, c.generator_loss)
        terms = {"d_fake": self._mean_output(f)}
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
        """Count generator steps; EMA: w_avg <- ema * w_avg + (1 - ema) * w."""
        self.generator_steps += 1
        if self.config.ema:
            with torch.no_grad():
                avg = [getattr(self.ema_weights, _ema_key(n)) for n, _ in self.generator.named_parameters()]
                torch._foreach_lerp_(avg, [p.detach() for p in self.generator.parameters()], 1.0 - self.config.ema)

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
