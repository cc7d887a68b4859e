"""Denoising diffusion probabilistic models (Ho et al. 2020): `ddpm`, with DDIM sampling (Song et al. 2021) and
classifier-free guidance (Ho & Salimans 2022).

Notation: code index t = 0 .. T-1 is the paper's step t + 1; alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s,
abar_{-1} = 1. Images live in [-1, 1] (uint8 k -> 2k/255 - 1).

- forward process (Ho et al. eq. 4):  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
      x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,  eps ~ N(0, I)                                 `q_sample`
- schedules: linear beta_t from 1e-4 to 0.02 at T = 1000 (Ho et al.; both ends scaled by 1000/T for other T,
  as Nichol & Dhariwal's code does), or cosine (Nichol & Dhariwal 2021, eq. 17)
      abar(t) = f(t) / f(0),  f(t) = cos^2(((t/T) + s) / (1 + s) * pi/2),  s = 0.008,
      beta_t = min(1 - abar(t+1)/abar(t), 0.999)                                                    `make_betas`
- network output: epsilon-prediction eps_theta(x_t, t), or v-prediction (Salimans & Ho 2022)
      v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0;   x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v,
      eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v                                                  `split_output`
- loss (Ho et al. eq. 14, L_simple): E_{t, x_0, eps} ||target - out_theta(x_t, t)||^2, target eps or v, t uniform,
  *mean over pixels* and over the batch (Ho et al.'s `mean_flat`)                                  `simple_loss`
- posterior (Ho et al. eq. 6-7):  q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I),
      mu~_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
      beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t                                             `posterior`
- ancestral sampling (Ho et al. Algorithm 2): x_{t-1} = mu~_t(x_t, x0_theta) + sigma_t z, sigma_t^2 = beta~_t
  (`variance=posterior`) or beta_t (`variance=beta`), no noise at the last step                   `ddpm_step`
- DDIM (Song et al. 2021, eq. 12 and 16), any decreasing sub-sequence of steps t -> t':
      x_t' = sqrt(abar_t') x0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z,
      sigma = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t');
  eta = 0 is deterministic; eta = 1 over all T steps is the DDPM posterior (sigma^2 = beta~_t)     `ddim_step`
- classifier-free guidance (Ho & Salimans 2022): trained with the label replaced by a "no label" token with
  probability `label_dropout`; sampling with guidance scale s uses
      out = out(x_t, t, none) + s (out(x_t, t, y) - out(x_t, t, none))
  so s = 0 is the unconditional model, s = 1 the plain conditional one, s > 1 guided (Ho & Salimans's w = s - 1)
- variational bound (Ho et al. eq. 5), nats per image, an upper bound on -log p(x_0):
      L = KL(q(x_{T-1}|x_0) || N(0, I)) + sum_{t=1}^{T-1} KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t)) - log p(x_0|x_0')
  with the discretised Gaussian decoder (Ho et al. eq. 13) over the 256 grey levels (bins of width 2/255, the
  outer bins open-ended); the middle sum is estimated from `timesteps` stratified draws of t (exact with all)
                                                                                                    `bound_terms`
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import check_choice
from ..nn.diffusion_unet import DiffusionUNet
from ..registry import register
from .base import Batch, GenerativeModel, OneOptimizerConfig, Phase

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")
SAMPLERS = ("ddim", "ddpm")
VARIANCES = ("posterior", "beta")


# ---- schedules -----------------------------------------------------------------------------------------
def cosine_alpha_bar(t: Tensor, T: int, s: float = 0.008) -> Tensor:
    """abar(t) = f(t) / f(0), f(t) = cos^2(((t/T) + s) / (1 + s) * pi/2) (Nichol & Dhariwal 2021, eq. 17)."""
    f = lambda u: torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return f(t.double()) / f(torch.zeros((), dtype=torch.float64))


def make_betas(schedule: str, T: int, beta_start: float = 1e-4, beta_end: float = 0.02, s: float = 0.008) -> Tensor:
    """beta_0 .. beta_{T-1} (float64). linear: evenly spaced from beta_start to beta_end, both scaled by 1000/T
    (so T = 1000 gives Ho et al.'s 1e-4 .. 0.02); cosine: beta_t = min(1 - abar(t+1)/abar(t), 0.999)."""
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "linear":
        scale = 1000.0 / T
        return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)
    ab = cosine_alpha_bar(torch.arange(T + 1), T, s)  # (T+1,)
    return (1 - ab[1:] / ab[:-1]).clamp(max=0.999)


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """`steps` evenly spaced code indices from T-1 down to 0 (both ends included when steps >= 2)."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps={steps}: expected 1..{T} (the model's timesteps)")
    if steps == 1:
        return [T - 1]
    return torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long().tolist()


def simple_loss(out: Tensor, target: Tensor) -> Tensor:
    """L_simple = 1/(B D) sum_b sum_i (target_bi - out_bi)^2 (Ho et al. eq. 14; mean over pixels and batch)."""
    return F.mse_loss(out, target)


def normal_kl(mean1: Tensor, var1: Tensor, mean2: Tensor, var2: Tensor) -> Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) per element = 1/2 [log(var2/var1) + var1/var2 + (mean1-mean2)^2/var2 - 1]."""
    return 0.5 * (torch.log(var2 / var1) + var1 / var2 + (mean1 - mean2) ** 2 / var2 - 1)


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log p(x) per element for x on the grid {2k/255 - 1} (Ho et al. eq. 13): the N(mean, std^2) mass of the
    bin [x - 1/255, x + 1/255], the lowest bin extended to -inf and the highest to +inf."""
    x, mean, std = x.double(), mean.double(), torch.as_tensor(std, dtype=torch.float64, device=x.device)
    upper = (x + 1 / 255 - mean) / std
    lower = (x - 1 / 255 - mean) / std
    log_cdf_upper = torch.special.log_ndtr(upper)  # log Phi(upper)
    log_sf_lower = torch.special.log_ndtr(-lower)  # log (1 - Phi(lower))
    mid = torch.log((torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp_min(1e-12))
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, mid))


@dataclass(frozen=True)
class DDPMConfig(OneOptimizerConfig):
    """DDPM. `timesteps` T; `schedule`: linear | cosine (`beta_start`, `beta_end`: the linear ends at T = 1000;
    `cosine_s`: its offset); `prediction`: epsilon | v; `variance`: posterior (sigma_t^2 = beta~_t) | beta
    (sigma_t^2 = beta_t), the reverse-process variance of ancestral sampling and of the bound; U-Net `widths`
    (one per resolution), `res_blocks` per level, `attention` (also after the lowest level's blocks; the middle
    always has one), `groups` (GroupNorm), `dropout`; `conditional` with `label_dropout` (classifier-free
    guidance); `ema`: decay of the weight average used for sampling (0: off); `clip_denoised`: clip the
    predicted x_0 to [-1, 1] while sampling; `sample_steps`: default DDIM steps of `sample`; `preview_steps`:
    DDIM steps of the training progress grids."""

    lr: float = 2e-4
    timesteps: int = 1000
    schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008
    prediction: str = "epsilon"
    variance: str = "posterior"
    widths: tuple[int, ...] = (32, 64, 128)
    res_blocks: int = 1
    attention: bool = False
    groups: int = 8
    dropout: float = 0.0
    conditional: bool = False
    label_dropout: float = 0.1
    ema: float = 0.999  # the field of every model config (ModelConfig), on by default here
    clip_denoised: bool = True
    sample_steps: int = 50
    preview_steps: int = 20

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"timesteps": 50, "widths": (8, 16), "groups": 4, "ema": 0.9, "sample_steps": 10,
                 "preview_steps": 5},
        # the CPU runs of docs/benchmarks.md: ~0.64 M parameters, ~150 training images/s on one thread
        "mnist": {"schedule": "cosine", "widths": (16, 32, 64), "res_blocks": 1, "lr": 5e-4},
        # the ~50-CPU-minute runs of docs/benchmarks.md (FID 22.65 on MNIST at 8,500 steps): the mnist U-Net
        # at LR 1e-3 with a cosine LR schedule, gradient norm clipped to 1, batch 64, EMA 0.999
        "recommended": {"schedule": "cosine", "widths": (16, 32, 64), "res_blocks": 1, "lr": 1e-3, "ema": 0.999,
                        "batch_size": 64, "lr_schedule": "cosine", "grad_clip": 1.0},
        # Ho et al.'s CIFAR-10 widths and depth, 128 x (1, 2, 2, 2), 2 blocks, dropout 0.1 (35.7 M parameters
        # on 32x32x3); attention after the lowest level's blocks (4x4 here; theirs at 16x16)
        "ho-cifar10": {"widths": (128, 256, 256, 256), "res_blocks": 2, "attention": True, "dropout": 0.1},
    }

    def __post_init__(self) -> None:
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("prediction", self.prediction, PREDICTIONS)
        check_choice("variance", self.variance, VARIANCES)
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be >= 2, got {self.timesteps}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        if self.schedule == "linear" and self.beta_end * 1000 / self.timesteps >= 1:
            raise ValueError(f"schedule=linear with timesteps={self.timesteps}: beta_end scaled by 1000/T is "
                             f"{self.beta_end * 1000 / self.timesteps:.3g} >= 1; use more timesteps or cosine")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout={self.label_dropout} must be in [0, 1)")
        if self.conditional and self.num_classes < 2:
            raise ValueError(f"conditional=true needs labelled data with >= 2 classes (num_classes="
                             f"{self.num_classes})")
        if any(w < 1 or w % self.groups for w in self.widths):
            raise ValueError(f"widths={self.widths} must be positive multiples of groups={self.groups}")
        for name in ("sample_steps", "preview_steps"):
            if not 1 <= getattr(self, name) <= self.timesteps:
                raise ValueError(f"{name}={getattr(self, name)} must be in 1..timesteps={self.timesteps}")


@register("ddpm", DDPMConfig, "denoising diffusion (DDPM/DDIM sampling, cosine or linear schedule, "
          "classifier-free guidance, variational bound)")
class DDPM(GenerativeModel):
    """A U-Net eps_theta(x_t, t[, y]) trained with L_simple; samples by DDIM or ancestral DDPM from its EMA."""

    config_class = DDPMConfig
    input_range = (-1.0, 1.0)

    def __init__(self, config: DDPMConfig):
        super().__init__(config)
        c = config
        self.net = DiffusionUNet(c.image_shape, c.widths, c.res_blocks, c.attention, c.groups, c.dropout,
                                 c.num_classes if c.conditional else 0)
        betas = make_betas(c.schedule, c.timesteps, c.beta_start, c.beta_end, c.cosine_s)
        ab = torch.cumprod(1 - betas, 0)
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        post_var = (1 - ab_prev) / (1 - ab) * betas
        # schedule tables, float64 for the bound's arithmetic; not saved (they follow from the config)
        for name, v in (("betas", betas), ("alpha_bar", ab), ("alpha_bar_prev", ab_prev), ("posterior_var", post_var)):
            self.register_buffer(name, v, persistent=False)
        self.init_ema(self.net)

    # ---- the schedule's closed forms ---------------------------------------------------------------
    def _at(self, table: Tensor, t: Tensor | int, like: Tensor) -> Tensor:
        """table[t] shaped to broadcast over (B, C, H, W), in like's dtype."""
        t = torch.as_tensor(t, device=table.device).long().reshape(-1)
        return table[t].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        ab = self._at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor | int) -> tuple[Tensor, Tensor]:
        """q(x_{t-1} | x_t, x_0) = N(mu~, beta~): (mu~, beta~) with
        mu~ = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t."""
        ab, abp, b = (self._at(v, t, x_t) for v in (self.alpha_bar, self.alpha_bar_prev, self.betas))
        mean = abp.sqrt() * b / (1 - ab) * x0 + (1 - b).sqrt() * (1 - abp) / (1 - ab) * x_t
        return mean, self._at(self.posterior_var, t, x_t).expand_as(x_t)

    def reverse_var(self, t: Tensor | int, like: Tensor) -> Tensor:
        """sigma_t^2 of p(x_{t-1}|x_t): beta~_t (variance=posterior; at t = 0, where beta~_0 = 0, beta~_1 as
        in Ho et al.'s code) or beta_t (variance=beta)."""
        if self.config.variance == "beta":
            return self._at(self.betas, t, like)
        clipped = torch.cat([self.posterior_var[1:2], self.posterior_var[1:]])
        return self._at(clipped, t, like)

    def target(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """What the network learns: eps, or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0."""
        if self.config.prediction == "epsilon":
            return noise
        ab = self._at(self.alpha_bar, t, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def split_output(self, x_t: Tensor, t: Tensor | int, out: Tensor, clip: bool = False) -> tuple[Tensor, Tensor]:
        """Network output -> (x0_hat, eps_hat). epsilon: x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar);
        v: x0 = sqrt(abar) x_t - sqrt(1 - abar) v. With `clip`, x0_hat is clipped to [-1, 1] and eps_hat
        recomputed from it, eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar), so the two stay consistent."""
        ab = self._at(self.alpha_bar, t, x_t)
        if self.config.prediction == "epsilon":
            eps = out
            x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        else:
            x0 = ab.sqrt() * x_t - (1 - ab).sqrt() * out
            eps = (1 - ab).sqrt() * x_t + ab.sqrt() * out
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return x0, eps

    def ddpm_step(self, x_t: Tensor, t: int, x0: Tensor, noise: Tensor | None) -> Tensor:
        """x_{t-1} = mu~_t(x_t, x0) + sigma_t z (no noise at t = 0)."""
        mean, _ = self.posterior(x0, x_t, t)
        if t == 0 or noise is None:
            return mean
        return mean + self.reverse_var(t, x_t).sqrt() * noise

    def ddim_step(self, x_t: Tensor, t: int, t_prev: int, x0: Tensor, eps: Tensor, eta: float,
                  noise: Tensor | None) -> Tensor:
        """x_t' = sqrt(abar_t') x0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z, t' = t_prev (-1: abar = 1),
        sigma = eta sqrt((1 - abar_t') / (1 - abar_t)) sqrt(1 - abar_t / abar_t')."""
        ab = self._at(self.alpha_bar, t, x_t)
        abp = self._at(self.alpha_bar, t_prev, x_t) if t_prev >= 0 else torch.ones_like(ab)
        sigma = eta * ((1 - abp) / (1 - ab) * (1 - ab / abp)).sqrt()
        x = abp.sqrt() * x0 + (1 - abp - sigma ** 2).clamp_min(0).sqrt() * eps
        if eta > 0 and t_prev >= 0 and noise is not None:
            x = x + sigma * noise
        return x

    # ---- conditioning and guidance -----------------------------------------------------------------
    def _labels(self, labels: Tensor | None, n: int, generator: torch.Generator | None) -> Tensor | None:
        c = self.config
        if labels is not None:
            if not c.conditional:
                raise ValueError("this ddpm is unconditional: it takes no labels (train with conditional=true)")
            labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            if len(labels) != n:
                raise ValueError(f"got {len(labels)} labels for n={n} samples")
            if len(labels) and (labels.min() < 0 or labels.max() >= c.num_classes):
                raise ValueError(f"labels must be class indices in 0..{c.num_classes - 1}, got "
                                 f"{labels.min().item()}..{labels.max().item()}")
        elif c.conditional:
            labels = torch.randint(c.num_classes, (n,), generator=generator)
        return None if labels is None else labels.to(self.device)

    def guided_output(self, net: torch.nn.Module, x_t: Tensor, t: Tensor, labels: Tensor | None,
                      guidance: float) -> Tensor:
        """out(x, t, none) + s (out(x, t, y) - out(x, t, none)); one network call when s is 0 or 1 or the
        model is unconditional, else one call on the doubled batch."""
        if labels is None or guidance == 1.0:
            return net(x_t, t, labels)
        none = torch.full_like(labels, self.config.num_classes)
        if guidance == 0.0:
            return net(x_t, t, none)
        both = net(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, none]))  # (2B, C, H, W)
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    # ---- sampling ----------------------------------------------------------------------------------
    def _settings(self, steps: int | None, sampler: str, eta: float, guidance: float | None,
                  conditional: bool) -> tuple[list[int], float]:
        c = self.config
        check_choice("sampler", sampler, SAMPLERS)
        if eta < 0:
            raise ValueError(f"eta={eta} must be >= 0 (0: deterministic DDIM, 1: DDPM-like noise)")
        if sampler == "ddpm":
            if steps not in (None, c.timesteps):
                raise ValueError(f"sampler=ddpm runs all {c.timesteps} steps (got steps={steps}); use sampler=ddim "
                                 f"for fewer steps (eta=1 is its stochastic form)")
            if eta:
                raise ValueError(f"eta={eta} is a DDIM setting; sampler=ddpm draws its noise from the posterior "
                                 f"(use sampler=ddim with eta)")
            ts = list(range(c.timesteps - 1, -1, -1))
        else:
            ts = ddim_timesteps(c.timesteps, min(c.sample_steps, c.timesteps) if steps is None else int(steps))
        if guidance is None:
            guidance = 1.0
        elif not conditional and guidance != 1.0:
            raise ValueError(f"guidance={guidance} needs a class-conditional ddpm (train with conditional=true)")
        if guidance < 0:
            raise ValueError(f"guidance={guidance} must be >= 0 (0: unconditional, 1: conditional, > 1: guided)")
        return ts, float(guidance)

    @torch.no_grad()
    def reverse(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None,
                steps: int | None = None, sampler: str = "ddim", eta: float = 0.0, guidance: float | None = None,
                keep: int = 0) -> tuple[Tensor, list[Tensor]]:
        """Run the reverse process from x_T ~ N(0, I). Returns (x_0, frames): `keep` > 0 keeps that many states
        evenly spaced along the way (x_T first, x_0 last). All noise is drawn from `generator` on the CPU, so
        a seed gives the same images on any device."""
        c = self.config
        y = self._labels(labels, n, generator)
        ts, s = self._settings(steps, sampler, eta, guidance, y is not None)
        net = self.averaged(self.net)
        shape = (n, *c.image_shape)
        x = torch.randn(shape, generator=generator).to(self.device)
        if keep > len(ts) + 1:
            raise ValueError(f"{keep} frames need at least {keep - 1} sampling steps (got {len(ts)})")
        keep_at = set(torch.linspace(0, len(ts), keep).round().long().tolist()) if keep > 1 else set()
        frames = [x] if 0 in keep_at else []
        for i, t in enumerate(ts):
            tt = torch.full((n,), t, dtype=torch.long, device=self.device)
            out = self.guided_output(net, x, tt, y, s)
            x0, eps = self.split_output(x, t, out, clip=c.clip_denoised)
            if sampler == "ddpm":
                noise = torch.randn(shape, generator=generator).to(self.device) if t > 0 else None
                x = self.ddpm_step(x, t, x0, noise)
            else:
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                noise = torch.randn(shape, generator=generator).to(self.device) if eta > 0 and t_prev >= 0 else None
                x = self.ddim_step(x, t, t_prev, x0, eps, eta, noise)
            if i + 1 in keep_at:
                frames.append(x)
        return x, frames

    @torch.no_grad()
    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None,
               steps: int | None = None, sampler: str = "ddim", eta: float = 0.0, guidance: float | None = None,
               **kw: Any) -> Tensor:
        """n images in [-1, 1]. sampler: ddim (`steps`, default config.sample_steps; `eta`) | ddpm (all T
        ancestral steps). A conditional model draws random classes when `labels` is None; `guidance` s: 0
        unconditional, 1 (default) conditional, > 1 classifier-free guidance. Uses the EMA weights."""
        if kw:
            raise ValueError(f"ddpm sample: unknown setting(s) {', '.join(sorted(kw))}; it takes steps, sampler, "
                             f"eta, guidance")
        return self.reverse(n, labels, generator, steps, sampler, eta, guidance)[0]

    @torch.no_grad()
    def trajectory(self, n: int = 8, labels: Tensor | None = None, generator: torch.Generator | None = None,
                   frames: int = 10, **settings: Any) -> Tensor:
        """The reverse process as `frames` snapshots x_T -> x_0, images in [0, 1]: (frames, n, C, H, W)."""
        if frames < 2:
            raise ValueError(f"frames={frames}: expected at least 2 (x_T and x_0)")
        _, fr = self.reverse(n, labels, generator, keep=frames, **settings)
        return torch.stack([self.to_unit(f) for f in fr])

    # ---- likelihood --------------------------------------------------------------------------------
    @torch.no_grad()
    def bound_terms(self, x0: Tensor, labels: Tensor | None = None, generator: torch.Generator | None = None,
                    timesteps: int | None = 100) -> dict[str, Tensor]:
        """The variational bound per image, nats (float64, (B,) each): `prior` KL(q(x_{T-1}|x_0) || N(0, I)),
        `diffusion` sum over t = 1..T-1 of KL(q(x_{t-1}|x_t, x_0) || p(x_{t-1}|x_t)) with x_t ~ q(x_t|x_0),
        `decoder` -log p(x_0|x_0') (discretised Gaussian, x_0' ~ q(x_0'|x_0) at code index 0), `total`.
        `timesteps` K < T-1: the sum is estimated from one t per stratum of K equal strata of 1..T-1, each
        weighted by its stratum's size (unbiased); None or >= T-1: every term. Uses the EMA weights and the
        class labels of a conditional model (then it bounds -log p(x_0 | y))."""
        c, T = self.config, self.config.timesteps
        net = self.averaged(self.net)
        B = len(x0)
        x0 = x0.to(self.device)
        y = None
        if c.conditional:
            if labels is None:
                raise ValueError("the bound of a conditional ddpm needs the images' labels")
            y = torch.as_tensor(labels, dtype=torch.long).to(self.device).reshape(-1)
        x64 = x0.double()
        dims = tuple(range(1, x0.ndim))

        def randn() -> Tensor:
            return torch.randn(x0.shape, generator=generator).to(self.device)

        def p_mean(x_t: Tensor, t: int) -> Tensor:
            tt = torch.full((B,), t, dtype=torch.long, device=self.device)
            # the same reverse model the samplers use (x0_hat clipped when clip_denoised, as Nichol & Dhariwal's
            # bound computation does): any function of x_t gives a valid p(x_{t-1}|x_t), so this is still a bound
            x0_hat, _ = self.split_output(x_t, t, net(x_t, tt, y), clip=c.clip_denoised)
            return self.posterior(x0_hat.double(), x_t.double(), t)[0]

        ab_T = self.alpha_bar[-1]
        prior = normal_kl(ab_T.sqrt() * x64, (1 - ab_T).expand_as(x64), torch.zeros_like(x64),
                          torch.ones_like(x64)).sum(dims)
        # the middle terms: code indices 1..T-1 (K strata)
        n_mid = T - 1
        K = n_mid if timesteps is None or timesteps >= n_mid else int(timesteps)
        if K < 1:
            raise ValueError(f"timesteps={timesteps}: expected >= 1 (or None for all {n_mid} terms)")
        edges = torch.linspace(0, n_mid, K + 1, dtype=torch.float64).round().long().tolist()
        diffusion = torch.zeros(B, dtype=torch.float64, device=self.device)
        for a, b in zip(edges[:-1], edges[1:]):
            if b <= a:
                continue
            if b - a == 1:
                t = 1 + a
            else:
                t = 1 + a + int(torch.randint(b - a, (1,), generator=generator))
            x_t = self.q_sample(x0, torch.full((B,), t, device=self.device), randn())
            mean_q, var_q = self.posterior(x64, x_t.double(), t)
            kl = normal_kl(mean_q, var_q, p_mean(x_t, t), self.reverse_var(t, x64).expand_as(x64))
            diffusion += (b - a) * kl.sum(dims)
        x_1 = self.q_sample(x0, torch.zeros(B, dtype=torch.long, device=self.device), randn())
        std0 = self.reverse_var(0, x64).sqrt()
        decoder = -discretized_gaussian_log_likelihood(x64, p_mean(x_1, 0), std0).sum(dims)
        total = prior + diffusion + decoder
        return {"prior": prior.cpu(), "diffusion": diffusion.cpu(), "decoder": decoder.cpu(), "total": total.cpu()}

    def nll_bound(self, x0: Tensor, labels: Tensor | None = None, generator: torch.Generator | None = None,
                  timesteps: int | None = 100) -> Tensor:
        """The variational bound on -log p(x_0) in nats per image, (B,) (see bound_terms); bits per dimension
        are bound / (C H W ln 2)."""
        return self.bound_terms(x0, labels, generator, timesteps)["total"]

    # ---- training ----------------------------------------------------------------------------------
    def loss_at(self, x0: Tensor, t: Tensor, noise: Tensor, y: Tensor | None = None) -> Tensor:
        """L_simple for given timesteps (B,), noise (B, C, H, W) and (already dropped-out) labels."""
        return simple_loss(self.net(self.q_sample(x0, t, noise), t, y), self.target(x0, t, noise))

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """t ~ U{0..T-1}, eps ~ N(0, I), labels replaced by the no-label token with probability label_dropout."""
        c = self.config
        x0 = batch.x
        B = len(x0)
        t = torch.randint(c.timesteps, (B,), device=x0.device)
        noise = torch.randn_like(x0)
        y = None
        if c.conditional:
            if batch.y is None:
                raise ValueError("a conditional ddpm needs labelled training data")
            drop = torch.rand(B, device=x0.device) < c.label_dropout
            y = torch.where(drop, torch.full_like(batch.y, c.num_classes), batch.y)
        loss = self.loss_at(x0, t, noise, y)
        return loss, {"mse": loss.detach()}

    def phases(self) -> list[Phase]:
        return [Phase("ddpm", list(self.net.parameters()), self.loss, self.config.optimizer_spec())]

    @torch.no_grad()
    def preview(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
        """64 samples from a fixed seed by a short DDIM run (`preview_steps`); a conditional model draws
        classes 0, 1, ..., K-1 cycling, one class per column of the 10-column grid."""
        c = self.config
        labels = torch.arange(60) % c.num_classes if c.conditional else None
        n = 60 if c.conditional else 64
        x = self.sample(n, labels=labels, generator=generator, steps=c.preview_steps)
        return self.to_unit(x), (c.num_classes if c.conditional and c.num_classes <= 16 else 8)
