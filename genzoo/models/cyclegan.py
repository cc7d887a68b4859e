"""CycleGAN: unpaired image-to-image translation with cycle consistency (Zhu et al. 2017).

Two generators G: A -> B and F: B -> A, two discriminators D_A (real A vs F(b)) and D_B (real B vs G(a)),
trained on an *unpaired* dataset (genzoo/data/unpaired.py): each batch holds a batch `x` of domain A and an
independently drawn batch `target` of domain B. The objective (eq. 3 of the paper, with the least-squares GAN
loss of its s.4 and the identity term of its s.5.2):

    L(G, F, D_A, D_B) = L_GAN(G, D_B) + L_GAN(F, D_A)
                        + lambda_a E_a |F(G(a)) - a|_1 + lambda_b E_b |G(F(b)) - b|_1          (cycle)
                        + lambda_identity (lambda_b E_b |G(b) - b|_1 + lambda_a E_a |F(a) - a|_1)   (identity)

Each step runs the official update order through the one engine: a `generator` phase (G and F together,
D frozen) on the step's batch, then a `discriminator` phase (D_A and D_B together, `uses_data=False`: the same
batch) that sees the generator's fakes through an image pool of the `pool_size` most recent fakes per
discriminator (Shrivastava et al. 2017). The pools are buffers, so they are saved in model.safetensors and
training_state.pt, and `--resume` continues exactly; their random 50/50 choices use the global torch RNG, which
the engine checkpoints.

Learning rate: Adam(lr, betas); the paper's "constant, then linear decay to 0" (100 epochs constant, 100
decaying) is the engine's `lr_schedule=linear` (genzoo/train/engine.py, LinearSchedule: by default constant for
the first half of the run; `lr_decay_start` / `lr_decay_steps` place the decay), applied to both phases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..config import check_choice
from ..nn.resnet import ResnetGenerator, resnet_blocks
from ..nn.translation import NORMS, PatchGAN, UNet, init_normal, unet_depth
from ..registry import register
from .base import Batch, GenerativeModel, ModelConfig, Phase

GENERATORS = ("resnet", "unet")
CYCLE_GAN_LOSSES = ("least-squares", "bce")
DIRECTIONS = ("a2b", "b2a")


# ---- losses ------------------------------------------------------------------------------------------------
def cycle_loss(x: Tensor, x_cycled: Tensor) -> Tensor:
    """Cycle-consistency loss (Zhu et al. 2017, eq. 2), one direction: E_x |F(G(x)) - x|_1, the L1 distance
    averaged over pixels and the batch (the official `nn.L1Loss()`)."""
    return (x_cycled - x).abs().mean()


def identity_loss(y: Tensor, g_y: Tensor) -> Tensor:
    """Identity-mapping loss (Zhu et al. 2017, s.5.2; Taigman et al. 2017): E_y |G(y) - y|_1, averaged over
    pixels — a generator fed an image of its own output domain should leave it unchanged."""
    return (g_y - y).abs().mean()


def generator_adversarial(kind: str, f: Tensor) -> Tensor:
    """The generator's GAN loss on D's raw outputs f = D(G(x)) (any shape; every patch counts once):
    least-squares E[(f - 1)^2] (Mao et al. 2017 with c = 1; the official GANLoss('lsgan') = MSE to 1), or
    bce -E[log s(f)] = E[softplus(-f)] (non-saturating)."""
    if kind == "least-squares":
        return ((f - 1) ** 2).mean()
    return F.softplus(-f).mean()


def discriminator_adversarial(kind: str, r: Tensor, f: Tensor) -> Tensor:
    """One discriminator's loss, halved as in the official code ("slows down the rate at which D learns"):
    least-squares 1/2 (E[(r - 1)^2] + E[f^2]) (losses.gan_d_least_squares), or bce
    1/2 (-E[log s(r)] - E[log(1 - s(f))])."""
    if kind == "least-squares":
        return losses.gan_d_least_squares(r, f)
    return 0.5 * losses.gan_d_bce(r, f)


class ImagePool(nn.Module):
    """The most recent `size` generated images (Shrivastava et al. 2017, s.2.3; CycleGAN s.4), as buffers.

    query(images): while the pool is not full, each image is stored and returned as is; once full, each image
    is, with probability 1/2, swapped with a uniformly chosen stored one (the stored one is returned, the new
    one takes its place), else returned as is. Images are handled in order, so two swaps in one batch may hit
    the same slot (the later one gets the earlier one's image back). Randomness: the global torch RNG of the
    images' device (checkpointed by the engine). size 0: no pool.

    No host synchronisation (issue 16): how full the pool is depends only on how many images it has been given,
    so it is kept as a Python int (`filled`) mirrored into the `count` buffer for the checkpoint (and read back
    from it once, on load); the swaps are computed on the device for the whole batch at once."""

    def __init__(self, size: int, shape: tuple[int, int, int]):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))  # (size, C, H, W)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.filled = 0  # host mirror of `count`

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.filled = int(self.count)  # once per load, not per step

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        images = images.detach()
        out = images.clone()
        n, c = len(images), self.filled
        fill = min(self.size - c, n)
        if fill > 0:  # not full yet: store and return the new images
            self.images[c:c + fill] = images[:fill]
            self.filled = c + fill
            self.count.fill_(self.filled)
        rest = n - max(fill, 0)
        if rest > 0:
            dev = images.device
            swap = torch.rand(rest, device=dev) < 0.5  # (rest,)
            slots = torch.randint(self.size, (rest,), device=dev)  # (rest,)
            new = images[n - rest:]
            k = torch.arange(rest, device=dev)
            into = (slots[:, None] == slots[None, :]) & swap[None, :]  # into[i, j]: image j swapped into i's slot
            # image i's swap returns the latest earlier image swapped into its slot in this batch, else the stored
            prev = torch.where(into & (k[None, :] < k[:, None]), k[None, :] + 1, 0).amax(1)  # 1-based, 0: none
            bcast = (-1,) + (1,) * (images.ndim - 1)
            got = torch.where((prev > 0).view(bcast), new[(prev - 1).clamp(min=0)], self.images[slots])
            out[n - rest:] = torch.where(swap.view(bcast), got, new)
            # each slot ends up holding the last image swapped into it
            last = swap & ~(into & (k[None, :] > k[:, None])).any(1)  # (rest,)
            hit = (slots[None, :] == torch.arange(self.size, device=dev)[:, None]) & last[None, :]  # (size, rest)
            who = torch.where(hit, k[None, :] + 1, 0).amax(1)  # (size,) 1-based, 0: keep
            self.images.copy_(torch.where((who > 0).view(bcast), new[(who - 1).clamp(min=0)], self.images))
        return out


# ---- config ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CycleGANConfig(ModelConfig):
    """CycleGAN. `image_shape` is domain A's (C, H, W), `target_shape` domain B's (both filled from the data;
    the two domains must share H and W, channels may differ). Generators: `generator` resnet (`base` width,
    `n_blocks` residual blocks, 0: from the image size, `n_down` stride-2 levels) or unet (`unet_depth`, 0:
    from the image size); `norm` instance | batch | none; `dropout` in the residual blocks / U-Net decoder.
    Discriminators: PatchGAN with `d_base` width, `d_layers` stride-2 layers (receptive field 9 * 2^n - 2
    pixels: 34 for 2, 70 for 3), `d_norm`. Loss weights: `gan_weight` on both generator GAN terms,
    `lambda_a`/`lambda_b` the cycle weights (A -> B -> A and B -> A -> B; 0 and 0: the ablation without cycle
    consistency), `lambda_identity` the identity weight as a fraction of them (0.5: 0.5 lambda). `gan_loss`:
    least-squares (LSGAN, the paper's) | bce. `pool_size`: fakes kept per discriminator (0: none).
    Adam(`lr`, `betas`) (constant LR then linear decay to 0: the training setting `lr_schedule=linear`, with
    `lr_decay_start` / `lr_decay_steps`). `init_std`: weights ~ N(0, init_std)."""

    target_shape: tuple[int, int, int] = (1, 28, 28)
    generator: str = "resnet"
    base: int = 64
    n_blocks: int = 0
    n_down: int = 2
    unet_depth: int = 0
    norm: str = "instance"
    dropout: float = 0.0
    d_base: int = 64
    d_layers: int = 3
    d_norm: str = "instance"
    gan_loss: str = "least-squares"
    gan_weight: float = 1.0
    lambda_a: float = 10.0
    lambda_b: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    init_std: float = 0.02

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"base": 4, "n_blocks": 1, "d_base": 4, "d_layers": 2, "pool_size": 8},
        # 28x28 digits on a CPU: width 16, 3 residual blocks at 7x7, 34x34 patches (docs/cyclegan.md)
        "mnist": {"base": 16, "n_blocks": 3, "d_base": 16, "d_layers": 2},
        # docs/cyclegan.md's MNIST <-> thick run: batch 16, constant LR for half the run, then linear to 0
        "recommended": {"base": 16, "n_blocks": 3, "d_base": 16, "d_layers": 2, "batch_size": 16,
                        "lr_decay_start": 0.5},
        # the paper's 256x256 setting: 9 residual blocks, 70x70 PatchGAN
        "paper": {"base": 64, "n_blocks": 9, "d_base": 64, "d_layers": 3},
    }

    def __post_init__(self) -> None:
        check_choice("generator", self.generator, GENERATORS)
        check_choice("norm", self.norm, NORMS)
        check_choice("d_norm", self.d_norm, NORMS)
        check_choice("gan_loss", self.gan_loss, CYCLE_GAN_LOSSES)
        for name in ("base", "d_base", "d_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_blocks", "n_down", "unet_depth", "pool_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gan_weight", "lambda_a", "lambda_b", "lambda_identity", "dropout", "init_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        (ca, ha, wa), (cb, hb, wb) = self.image_shape, self.target_shape
        if (ha, wa) != (hb, wb):
            raise ValueError(f"domains A {tuple(self.image_shape)} and B {tuple(self.target_shape)} must share the "
                             f"image size (H, W); load the data with size= to bring them to one size")
        if self.lambda_identity > 0 and ca != cb and (self.lambda_a or self.lambda_b):
            raise ValueError(f"the identity loss feeds B images to G: A -> B, which needs equal channel counts, but "
                             f"A has {ca} and B {cb}; set lambda_identity=0")
        if self.d_layers and min(ha, wa) < PatchGAN.min_size(self.d_layers):
            raise ValueError(f"d_layers={self.d_layers} needs images of at least {PatchGAN.min_size(self.d_layers)} "
                             f"pixels a side, got {ha}x{wa}; lower d_layers")


# ---- the model ---------------------------------------------------------------------------------------------
@register("cyclegan", CycleGANConfig, "CycleGAN: unpaired A <-> B translation, ResNet generators, PatchGANs, "
          "LSGAN + cycle (10) + identity (0.5 x 10) losses, image pools of 50")
class CycleGAN(GenerativeModel):
    """Generators G: A -> B (`gen_ab`) and F: B -> A (`gen_ba`); discriminators D_A (`disc_a`), D_B (`disc_b`)."""

    config_class = CycleGANConfig
    input_range = (-1.0, 1.0)
    data_kind = "unpaired"
    directions = DIRECTIONS

    def __init__(self, config: CycleGANConfig):
        super().__init__(config)
        c = config
        ca, cb = c.image_shape[0], c.target_shape[0]
        self.gen_ab, self.gen_ba = self._generator(ca, cb), self._generator(cb, ca)
        self.disc_a = PatchGAN(ca, c.d_base, c.d_layers, c.d_norm)
        self.disc_b = PatchGAN(cb, c.d_base, c.d_layers, c.d_norm)
        for net in (self.gen_ab, self.gen_ba, self.disc_a, self.disc_b):
            init_normal(net, c.init_std)
        self.pool_a = ImagePool(c.pool_size, tuple(c.image_shape))  # fakes F(b) for D_A
        self.pool_b = ImagePool(c.pool_size, tuple(c.target_shape))  # fakes G(a) for D_B
        self._fakes: tuple[Tensor, Tensor] | None = None  # (F(b), G(a)) of the last generator phase, detached
        self.init_ema({"gen_ab": self.gen_ab, "gen_ba": self.gen_ba})  # `ema` > 0: translate with averages

    def _generator(self, c_in: int, c_out: int) -> nn.Module:
        c = self.config
        h, w = c.image_shape[1:]
        if c.generator == "unet":
            depth = c.unet_depth or unet_depth(h, w)
            return UNet(c_in, c_out, depth, c.base, c.norm, dropout=c.dropout)
        return ResnetGenerator(c_in, c_out, c.base, c.n_blocks or resnet_blocks(h, w), c.n_down, c.norm, c.dropout)

    # ---- capabilities ----------------------------------------------------------------------------------
    def translate(self, x: Tensor, direction: str | None = "a2b", **kw: Any) -> Tensor:
        """Model-space images of one domain ([-1, 1], (N, C, H, W), any H and W) -> the other domain:
        `a2b` runs G, `b2a` runs F."""
        direction = direction or "a2b"
        if direction not in DIRECTIONS:
            raise ValueError(f"direction={direction!r} is not valid; cyclegan translates: {', '.join(DIRECTIONS)}")
        c_in = (self.config.image_shape if direction == "a2b" else self.config.target_shape)[0]
        if x.ndim != 4 or x.shape[1] != c_in:
            raise ValueError(f"translate({direction}) takes images shaped (N, {c_in}, H, W) of domain "
                             f"{direction[0].upper()}, got {tuple(x.shape)}")
        return self.inference(self.gen_ab if direction == "a2b" else self.gen_ba)(x)  # EMA copies in eval mode

    def source_shape(self, direction: str | None = "a2b") -> tuple[int, int, int]:
        """(C, H, W) of the images `translate(x, direction)` takes: domain A's for a2b, domain B's for b2a."""
        return tuple(self.config.target_shape if direction == "b2a" else self.config.image_shape)

    # ---- training --------------------------------------------------------------------------------------
    def _per_sample(self, norm: str) -> bool:
        """Instance norm (or none) treats every image alone, so one call on a concatenated batch gives the same
        outputs as separate calls (fewer, larger convolutions); batch norm mixes the batch, so it does not."""
        return norm != "batch"

    def g_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Generator phase: GAN terms of G and F, the two cycle terms and the two identity terms."""
        c = self.config
        a, b = batch.x, batch.target
        if b is None:
            raise ValueError("cyclegan needs an unpaired dataset (a batch of domain B in `target`)")
        idt = c.lambda_identity > 0 and (c.lambda_a > 0 or c.lambda_b > 0)
        if idt and self._per_sample(c.norm) and len(a) == len(b):
            fake_b, idt_b = self.gen_ab(torch.cat([a, b])).split([len(a), len(b)])  # G(a), G(b)
            fake_a, idt_a = self.gen_ba(torch.cat([b, a])).split([len(b), len(a)])  # F(b), F(a)
        else:
            fake_b, fake_a = self.gen_ab(a), self.gen_ba(b)
            idt_b = self.gen_ab(b) if idt else None
            idt_a = self.gen_ba(a) if idt else None
        with torch.set_grad_enabled(torch.is_grad_enabled() and (c.lambda_a > 0 or c.lambda_b > 0)):
            rec_a, rec_b = self.gen_ba(fake_b), self.gen_ab(fake_a)  # F(G(a)), G(F(b)); logged only at lambda 0
        adv_ab = generator_adversarial(c.gan_loss, self.disc_b(fake_b))
        adv_ba = generator_adversarial(c.gan_loss, self.disc_a(fake_a))
        cyc_a, cyc_b = cycle_loss(a, rec_a), cycle_loss(b, rec_b)
        total = c.gan_weight * (adv_ab + adv_ba) + c.lambda_a * cyc_a + c.lambda_b * cyc_b
        terms = {"gan_ab": adv_ab.detach(), "gan_ba": adv_ba.detach(), "cycle_a": cyc_a.detach(),
                 "cycle_b": cyc_b.detach()}
        if idt:
            id_b, id_a = identity_loss(b, idt_b), identity_loss(a, idt_a)
            total = total + c.lambda_identity * (c.lambda_b * id_b + c.lambda_a * id_a)
            terms.update({"identity_a": id_a.detach(), "identity_b": id_b.detach()})
        self._fakes = (fake_a.detach(), fake_b.detach())
        return total, terms

    def d_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Discriminator phase: D_A on real A vs pooled F(b), D_B on real B vs pooled G(a), each halved."""
        c = self.config
        a, b = batch.x, batch.target
        if self._fakes is None or len(self._fakes[0]) != len(b) or len(self._fakes[1]) != len(a):
            with torch.no_grad():
                self._fakes = (self.gen_ba(b), self.gen_ab(a))
        fake_a, fake_b = self._fakes
        if self.training:
            fake_a, fake_b = self.pool_a.query(fake_a), self.pool_b.query(fake_b)
        self._fakes = None
        ra, fa = self._judge(self.disc_a, a, fake_a)
        rb, fb = self._judge(self.disc_b, b, fake_b)
        la = discriminator_adversarial(c.gan_loss, ra, fa)
        lb = discriminator_adversarial(c.gan_loss, rb, fb)
        terms = {"d_a": la.detach(), "d_b": lb.detach(), "d_a_real": ra.mean().detach(),
                 "d_a_fake": fa.mean().detach(), "d_b_real": rb.mean().detach(), "d_b_fake": fb.mean().detach()}
        return la + lb, terms

    def _judge(self, disc: nn.Module, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """D's patch outputs on real and fake images, (B, 1, h, w) each (one call when D's norm allows)."""
        if self._per_sample(self.config.d_norm) and real.shape[1:] == fake.shape[1:]:
            return disc(torch.cat([real, fake])).split([len(real), len(fake)])
        return disc(real), disc(fake)

    @property
    def _gen_params(self) -> list[nn.Parameter]:
        return [*self.gen_ab.parameters(), *self.gen_ba.parameters()]

    @property
    def _disc_params(self) -> list[nn.Parameter]:
        return [*self.disc_a.parameters(), *self.disc_b.parameters()]

    def phases(self) -> list[Phase]:
        c = self.config
        opt = {"name": "adam", "lr": c.lr, "betas": c.betas}
        return [
            Phase("generator", self._gen_params, self.g_loss, opt),
            Phase("discriminator", self._disc_params, self.d_loss, opt, uses_data=False),
        ]

    @torch.no_grad()
    def preview(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
        """Rows of 8: A | G(A) | F(G(A)) and B | F(B) | G(F(B)) (grey shown as RGB when the domains differ)."""
        a, b = batch.x[:8], batch.target[:8]
        g, f = self.inference(self.gen_ab), self.inference(self.gen_ba)
        fb, fa = g(a), f(b)
        rows = [a, fb, f(fb), b, fa, g(fa)]
        ch = max(r.shape[1] for r in rows)
        rows = [self.to_unit(r).expand(-1, ch, -1, -1) if r.shape[1] != ch else self.to_unit(r) for r in rows]
        return torch.cat(rows), len(a)


__all__ = ["CycleGAN", "CycleGANConfig", "ImagePool", "cycle_loss", "identity_loss", "generator_adversarial",
           "discriminator_adversarial"]
