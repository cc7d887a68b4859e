"""Paired image-to-image translation: pix2pix and super-resolution (SRResNet / SRGAN).

Both train on a *paired* dataset (`data_kind = "paired"`: `Batch.x` the source, `Batch.target` the aligned
target, both prepared to [-1, 1]) through the one engine, in two phases: the `generator` phase (its loss
computes G(x) once and keeps a detached copy) and then the `discriminator` phase (`uses_data=False`: the same
batch and that copy of G(x), so G runs once per step; the order of PyTorch-GAN's pix2pix and SRGAN scripts,
while the official pix2pix code updates D first). With `gan_weight = 0` there is no discriminator and one
phase: pix2pix becomes the L1-only baseline, srgan becomes SRResNet (preset `srresnet`).

pix2pix (Isola et al. 2017): U-Net G with skips and decoder dropout, PatchGAN D on the (source, image) pair,

    L_D = 1/2 [ l(D(x, y), 1) + l(D(x, G(x)), 0) ]
    L_G = gan_weight * l(D(x, G(x)), 1) + l1_weight * mean |y - G(x)|,      l1_weight = lambda_L1 = 100

with l the BCE-with-logits (`gan_loss=bce`, the paper's cGAN loss) or the squared error (`least-squares`),
averaged over the patch map; Adam(2e-4, 0.5, 0.999); weights ~ N(0, 0.02); batch or instance norm.

srgan (Ledig et al. 2017): SRResNet G (residual blocks, PixelShuffle x2/x4), a PatchGAN D on the image alone,

    L_G = pixel_weight * pixel(G(x), y) + perceptual_weight * mean (phi(G(x)) - phi(y))^2
          + gan_weight * l(D(G(x)), 1),           L_D = 1/2 [ l(D(y), 1) + l(D(G(x)), 0) ]

pixel = MSE (the paper's SRResNet-MSE) or L1; phi = the penultimate features of genzoo's shipped domain
classifier (`perceptual=mnist|fashion-mnist`) in place of the paper's VGG features, which cannot be had
offline; gan_weight 1e-3 as in the paper. `init_from=RUN` starts G from a trained SRResNet run (the paper
initialises SRGAN from SRResNet). The discriminator is a PatchGAN, not the paper's VGG-style D.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import check_choice
from ..nn.translation import NORMS, UNet, PatchGAN, SRResNet, init_normal, unet_depth
from ..registry import register
from .base import Batch, GenerativeModel, ModelConfig, Phase

GAN_LOSSES = ("bce", "least-squares")
PIXEL_LOSSES = ("mse", "l1")


# ---- losses ---------------------------------------------------------------------------------------------
def adversarial(kind: str, logits: Tensor, real: bool) -> Tensor:
    """l(D, t) averaged over the patch map: BCE-with-logits -[t log s(D) + (1 - t) log(1 - s(D))]
    (`bce`) or the squared error (D - t)^2 (`least-squares`, Mao et al. 2017), t = 1 for real, 0 for fake."""
    t = torch.full_like(logits, 1.0 if real else 0.0)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, t)
    if kind == "least-squares":
        return F.mse_loss(logits, t)
    raise ValueError(f"gan_loss={kind!r} is not valid; expected one of: {', '.join(GAN_LOSSES)}")


def discriminator_loss(kind: str, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """pix2pix's halved discriminator loss: L_D = 1/2 [l(D(real), 1) + l(D(fake), 0)] (the official code's
    `(loss_D_fake + loss_D_real) * 0.5`, which slows D relative to G)."""
    return 0.5 * (adversarial(kind, real_logits, True) + adversarial(kind, fake_logits, False))


def l1(out: Tensor, target: Tensor) -> Tensor:
    """mean |target - out| over every pixel and channel (pix2pix's L1 term, before lambda_L1)."""
    return (target - out).abs().mean()


def pixel_loss(kind: str, out: Tensor, target: Tensor) -> Tensor:
    """mean (target - out)^2 (`mse`) or mean |target - out| (`l1`)."""
    if kind == "mse":
        return F.mse_loss(out, target)
    if kind == "l1":
        return l1(out, target)
    raise ValueError(f"pixel_loss={kind!r} is not valid; expected one of: {', '.join(PIXEL_LOSSES)}")


# ---- shared --------------------------------------------------------------------------------------------
class _Paired(GenerativeModel):
    """What pix2pix and srgan share: [-1, 1] images, the two phases with one G forward per step,
    translate/preview."""

    input_range = (-1.0, 1.0)
    data_kind = "paired"

    generator: nn.Module
    discriminator: nn.Module | None

    def _set_last(self, batch: Batch, fake: Tensor) -> None:
        # a plain attribute (not a buffer): the detached G(x) of the batch the generator phase just saw
        self.__dict__["_last"] = (batch.x, fake.detach())

    def _fake_for(self, batch: Batch) -> Tensor:
        last = self.__dict__.get("_last")
        if last is not None and last[0] is batch.x:
            return last[1]
        with torch.no_grad():
            return self.generator(batch.x)

    def _d_input(self, batch: Batch, image: Tensor) -> Tensor:
        raise NotImplementedError

    def _g_extra(self, batch: Batch, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The non-adversarial part of L_G (weighted) and its named, unweighted terms."""
        raise NotImplementedError

    def generator_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        if batch.target is None:
            raise ValueError(f"{self.model_type} trains on paired data: the batch has no target")
        fake = self.generator(batch.x)
        self._set_last(batch, fake)
        total, terms = self._g_extra(batch, fake)
        if self.discriminator is not None and self.config.gan_weight > 0:
            adv = adversarial(self.config.gan_loss, self.discriminator(self._d_input(batch, fake)), True)
            terms["adversarial"] = adv
            total = total + self.config.gan_weight * adv
        return total, terms

    def discriminator_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        fake = self._fake_for(batch)
        real_logits = self.discriminator(self._d_input(batch, batch.target))
        fake_logits = self.discriminator(self._d_input(batch, fake))
        loss = discriminator_loss(self.config.gan_loss, real_logits, fake_logits)
        return loss, {"d_loss": loss, "d_real": torch.sigmoid(real_logits).mean().detach(),
                      "d_fake": torch.sigmoid(fake_logits).mean().detach()}

    def phases(self) -> list[Phase]:
        c = self.config
        opt = {"name": "adam", "lr": c.lr, "betas": c.betas}
        g_params = list(self.generator.parameters())
        out = [Phase("generator", g_params, self.generator_loss, opt)]
        if self.discriminator is not None:
            d_params = list(self.discriminator.parameters())
            out.append(Phase("discriminator", d_params, self.discriminator_loss, {**opt, "lr": c.lr_d or c.lr},
                             uses_data=False))
        return out

    # ---- capabilities ----------------------------------------------------------------------------
    def translate(self, x: Tensor, direction: str | None = None, **kw: Any) -> Tensor:
        """Sources in model space ([-1, 1]; (B, C, h, w) of any size the network accepts) -> outputs in model
        space. One direction only (`a2b`); eval-mode networks (dropout off, batch-norm running statistics)."""
        if direction not in (None, *self.directions):
            raise ValueError(f"{self.model_type} translates in one direction ({', '.join(self.directions)}), "
                             f"not {direction!r}")
        if kw:
            raise TypeError(f"translate() got unexpected settings: {', '.join(kw)}")
        c_in = self.config.image_shape[0]
        if x.ndim != 4 or x.shape[1] != c_in:
            raise ValueError(f"{self.model_type} translates images shaped (B, {c_in}, H, W), got {tuple(x.shape)}")
        with torch.no_grad():
            return self.inference(self.generator)(x.to(self.device))  # the EMA copy in eval mode, when on

    def source_for_display(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """Sources resized (nearest) to the target size, for grids of source | output | target."""
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=size, mode="nearest")

    @torch.no_grad()
    def preview(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
        """Rows of 16: sources, outputs, targets (sources resized for display)."""
        x = batch.x[:16]
        out = self.translate(x)
        rows = [self.source_for_display(x, out.shape[-2:]), out]
        if batch.target is not None:
            rows.append(batch.target[:16])
        rows = [_to_channels(r, out.shape[1]) for r in rows]
        return self.to_unit(torch.cat(rows)), len(x)


def _to_channels(x: Tensor, c: int) -> Tensor:
    if x.shape[1] == c:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, c, -1, -1)
    return x.mean(1, keepdim=True).expand(-1, c, -1, -1)


# ---- pix2pix ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pix2PixConfig(ModelConfig):
    """pix2pix. `target_shape` comes from the dataset (same H, W as the source; channels may differ).
    `base`: U-Net width (ngf); `depth`: U-Net levels (0: floor(log2(min(H, W))), at most 8); `dropout` on the
    `n_dropout` innermost decoder levels (the noise of pix2pix). `d_base`, `n_layers`: PatchGAN width and
    stride-2 layers (receptive field 9 * 2^n - 2 px: 16, 34, 70 for n = 1, 2, 3). `norm`: batch | instance
    | none. `gan_loss`: bce | least-squares. `gan_weight` = 0: the L1-only baseline (no discriminator).
    `lr_d`: D's learning rate (0: same as `lr`). The optional linear LR decay of the official code (100
    epochs constant, 100 decaying) is the training setting `lr_schedule=linear` (with `lr_decay_start` /
    `lr_decay_steps`; genzoo/train/engine.py's LinearSchedule)."""

    target_shape: tuple[int, int, int] = (1, 28, 28)
    base: int = 64
    depth: int = 0
    dropout: float = 0.5
    n_dropout: int = 3
    norm: str = "batch"
    d_base: int = 64
    n_layers: int = 3
    gan_loss: str = "bce"
    gan_weight: float = 1.0
    l1_weight: float = 100.0
    lr: float = 2e-4
    lr_d: float = 0.0
    betas: tuple[float, float] = (0.5, 0.999)
    init_std: float = 0.02

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"base": 8, "d_base": 8, "n_layers": 1, "depth": 2},
        # 28x28 digits: U-Net 32-64-128-256 (padded to 32, 2x2 bottleneck), 34x34 PatchGAN
        "mnist": {"base": 32, "d_base": 32, "n_layers": 2},
        "l1": {"gan_weight": 0.0},
        "recommended": {"base": 32, "d_base": 32, "n_layers": 2, "batch_size": 32},  # docs/translation.md's run
    }

    def __post_init__(self) -> None:
        check_choice("norm", self.norm, NORMS)
        check_choice("gan_loss", self.gan_loss, GAN_LOSSES)
        for name in ("base", "d_base", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.depth < 0:
            raise ValueError(f"depth={self.depth} must be >= 0 (0: from the image size)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        for name in ("gan_weight", "l1_weight", "lr_d"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if tuple(self.target_shape[1:]) != tuple(self.image_shape[1:]):
            raise ValueError(f"pix2pix maps images to images of the same size, but the sources are "
                             f"{self.image_shape[2]}x{self.image_shape[1]} and the targets "
                             f"{self.target_shape[2]}x{self.target_shape[1]}; for super-resolution use srgan")

    @property
    def resolved_depth(self) -> int:
        return self.depth or unet_depth(*self.image_shape[1:])


@register("pix2pix", Pix2PixConfig, "pix2pix: U-Net generator + PatchGAN on (source, image), cGAN + 100 x L1 "
          "(paired translation; gan_weight=0 is the L1-only baseline)")
class Pix2Pix(_Paired):
    """pix2pix (Isola et al. 2017): paired image-to-image translation with a conditional GAN."""

    config_class = Pix2PixConfig
    example_data: ClassVar[str] = "mnist-mini-edges"

    def __init__(self, config: Pix2PixConfig):
        super().__init__(config)
        c = config
        c_in, c_out = c.image_shape[0], c.target_shape[0]
        self.generator = UNet(c_in, c_out, c.resolved_depth, c.base, c.norm, c.dropout, c.n_dropout)
        self.discriminator = PatchGAN(c_in + c_out, c.d_base, c.n_layers, c.norm) if c.gan_weight > 0 else None
        init_normal(self, c.init_std)
        self.init_ema(self.generator)  # `ema` > 0: translate with an average of G's weights

    def _d_input(self, batch: Batch, image: Tensor) -> Tensor:
        return torch.cat([batch.x, image], 1)  # (B, C_in + C_out, H, W): D sees the pair

    def _g_extra(self, batch: Batch, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        rec = l1(fake, batch.target)
        return self.config.l1_weight * rec, {"l1": rec}


# ---- super-resolution ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SRGANConfig(ModelConfig):
    """Super-resolution x2 / x4 (the scale is target size / source size, from the dataset). `channels`,
    `blocks`, `head` (first/last kernel): SRResNet G; `residual`: add the bicubic upsampling to G's output.
    `pixel_loss`: mse | l1 with `pixel_weight`; `perceptual` = mnist | fashion-mnist: a content loss on the
    shipped domain classifier's features (weight `perceptual_weight`); `gan_weight` = 0 is SRResNet (no
    discriminator). `init_from`: a trained srgan/srresnet run whose generator weights start this one.
    Optional linear LR decay: `lr_schedule=linear`, as pix2pix's."""

    target_shape: tuple[int, int, int] = (1, 28, 28)
    channels: int = 64
    blocks: int = 16
    head: int = 9
    batch_norm: bool = True
    residual: bool = False
    pixel_loss: str = "mse"
    pixel_weight: float = 1.0
    perceptual: str = ""
    perceptual_weight: float = 0.0
    gan_loss: str = "bce"
    gan_weight: float = 1e-3
    d_base: int = 64
    n_layers: int = 3
    norm: str = "batch"
    init_from: str = ""
    lr: float = 1e-4
    lr_d: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"channels": 8, "blocks": 1, "head": 3, "d_base": 8, "n_layers": 1},
        "srresnet": {"gan_weight": 0.0},
        # 28x28 digits: 32 channels, 6 blocks, 5x5 head/tail; 1e-3 lr for short CPU runs
        "mnist": {"channels": 32, "blocks": 6, "head": 5, "lr": 1e-3, "d_base": 32, "n_layers": 2},
        "srresnet-mnist": {"channels": 32, "blocks": 6, "head": 5, "lr": 1e-3, "gan_weight": 0.0},
        # one run from scratch: the SRResNet stage of docs/translation.md (batch 32, cosine LR). The SRGAN
        # fine-tune is a second run on top of it (`--preset mnist --set init_from=RUN --set gan_weight=0.01`)
        "recommended": {"channels": 32, "blocks": 6, "head": 5, "lr": 1e-3, "gan_weight": 0.0, "batch_size": 32,
                        "lr_schedule": "cosine"},
    }

    def __post_init__(self) -> None:
        check_choice("pixel_loss", self.pixel_loss, PIXEL_LOSSES)
        check_choice("gan_loss", self.gan_loss, GAN_LOSSES)
        check_choice("norm", self.norm, NORMS)
        check_choice("perceptual", self.perceptual, ("", "mnist", "fashion-mnist"))
        for name in ("channels", "head", "d_base", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.head % 2 == 0:
            raise ValueError(f"head={self.head} must be odd (a 'same' convolution)")
        for name in ("pixel_weight", "perceptual_weight", "gan_weight", "lr_d", "blocks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.perceptual_weight > 0 and not self.perceptual:
            raise ValueError("perceptual_weight > 0 needs perceptual=mnist or fashion-mnist (the domain "
                             "classifier whose features measure content)")
        if self.perceptual and tuple(self.target_shape) != (1, 28, 28):
            raise ValueError(f"perceptual={self.perceptual!r}: the domain classifier takes 1x28x28 images, but the "
                             f"targets are {self.target_shape}")
        self.scale  # validates the shapes

    @property
    def scale(self) -> int:
        (c, h, w), (ct, ht, wt) = self.image_shape, self.target_shape
        if ht % h or wt % w or ht // h != wt // w or ht // h not in (2, 4, 8):
            raise ValueError(f"srgan needs targets 2, 4 or 8 times the source size, got sources {w}x{h} and "
                             f"targets {wt}x{ht} (use a paired SR dataset such as mnist-sr4)")
        return ht // h


@register("srgan", SRGANConfig, "SRGAN / SRResNet super-resolution x2/x4: residual generator with PixelShuffle "
          "(preset srresnet: gan_weight=0)")
class SRGAN(_Paired):
    """Super-resolution (Ledig et al. 2017): SRResNet, and SRGAN with an adversarial term."""

    config_class = SRGANConfig
    example_data: ClassVar[str] = "mnist-mini-sr2"

    def __init__(self, config: SRGANConfig):
        super().__init__(config)
        c = config
        self.generator = SRResNet(c.image_shape[0], c.target_shape[0], c.scale, c.channels, c.blocks, c.head,
                                  c.batch_norm, c.residual)
        self.discriminator = PatchGAN(c.target_shape[0], c.d_base, c.n_layers, c.norm) if c.gan_weight > 0 else None
        if self.discriminator is not None:
            init_normal(self.discriminator)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.long))
        self.__dict__["_phi_model"] = None
        self.init_ema(self.generator)  # `ema` > 0: translate with an average of G's weights

    def _phi(self) -> nn.Module:
        phi = self.__dict__["_phi_model"]
        if phi is None:  # not a submodule: the classifier's weights are genzoo's, not this run's
            from ..evaluate.classifier import get_classifier
            phi = self.__dict__["_phi_model"] = get_classifier(self.config.perceptual)
        return phi.to(self.device)

    def _d_input(self, batch: Batch, image: Tensor) -> Tensor:
        return image  # D judges the high-resolution image alone

    def _g_extra(self, batch: Batch, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        pix = pixel_loss(c.pixel_loss, fake, batch.target)
        total, terms = c.pixel_weight * pix, {c.pixel_loss: pix}
        if c.perceptual_weight > 0:
            phi = self._phi()
            f_fake = phi.features(self.to_unit_soft(fake))
            with torch.no_grad():
                f_real = phi.features(self.to_unit(batch.target))
            terms["perceptual"] = F.mse_loss(f_fake, f_real)
            total = total + c.perceptual_weight * terms["perceptual"]
        return total, terms

    def to_unit_soft(self, x: Tensor) -> Tensor:
        """[-1, 1] -> [0, 1] without clamping, so that gradients pass everywhere."""
        return (x + 1) / 2

    def phases(self) -> list[Phase]:
        self._start_from()
        return super().phases()

    def _start_from(self) -> None:
        """Copy the generator of the `init_from` run, once (a buffer remembers it, so resuming and loading do
        not read that run again)."""
        c = self.config
        if not c.init_from or int(self.initialised):
            return
        from ..train.rundir import load as load_run
        src = load_run(Path(c.init_from))
        if not isinstance(src, SRGAN):
            raise ValueError(f"init_from={c.init_from}: a {src.model_type} run, expected an srgan/srresnet run")
        try:
            self.generator.load_state_dict(src.generator.state_dict())
        except RuntimeError as e:
            raise ValueError(f"init_from={c.init_from}: its generator does not fit this config (channels, "
                             f"blocks, head, scale must match): {str(e).splitlines()[0]}") from None
        if "ema" in self._modules:  # the average starts from the copied weights too
            self.ema.module.load_state_dict(self.generator.state_dict())
        self.initialised.fill_(1)


__all__ = ["Pix2Pix", "Pix2PixConfig", "SRGAN", "SRGANConfig", "adversarial", "discriminator_loss", "l1",
           "pixel_loss"]
