"""Variational autoencoders (Kingma & Welling 2013): `vae` and its conditional form `cvae`.

Encoder q(z|x) = N(mean(x), diag exp(logvar(x))); prior p(z) = N(0, I); decoder p(x|z) Bernoulli (logits)
or Gaussian (fixed or learned sigma). Trained by minimising, per example,

    L(x) = -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z))

with one reparametrised sample z = mean + sigma * eps. **Normalisation**: the reconstruction term is the
negative log-likelihood *summed over the pixels* of an image and the KL *summed over latent dimensions*; both
are *averaged over the batch*. So `recon` and `kl` in metrics.csv are nats per image, `recon + kl` is the
negative ELBO, and beta keeps its meaning whatever the image size or batch size (a per-pixel mean would
silently multiply the KL weight by the number of pixels).

Variants are config fields: beta-VAE (`beta`), KL warm-up (`kl_warmup_steps`: beta rises linearly from 0),
free bits (`free_bits`), the ablation `loss_terms=recon|kl|both`, `decoder=bernoulli|gaussian`,
`learn_sigma`, `arch=mlp|conv`, and `conditional` (what `cvae` switches on: the encoder and decoder also
receive the one-hot class).
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
from ..nn import conv_decoder, conv_encoder, flat_dim, mlp
from ..registry import register
from .base import Batch, GenerativeModel, OneOptimizerConfig, Phase


_MLP_784_400_20 = {"arch": "mlp", "hidden": (400,), "latent_dim": 20}  # pytorch/examples' VAE


@dataclass(frozen=True)
class VAEConfig(OneOptimizerConfig):
    """VAE. `arch`: mlp | conv; `hidden`: MLP widths (encoder order, the decoder mirrors them) or conv channels.
    `decoder`: bernoulli (inputs in [0, 1]; binarised data for likelihoods) | gaussian (`sigma` fixed, or
    learned from that start when `learn_sigma`). `beta`: KL weight; `kl_warmup_steps`: anneal beta linearly
    from 0 over this many steps; `free_bits`: nats per latent dimension that cost nothing;
    `loss_terms`: recon | kl | both (the ablation: similarity only, KL only, both)."""

    arch: str = "mlp"
    latent_dim: int = 20
    hidden: tuple[int, ...] = (400,)
    activation: str = "relu"
    batch_norm: bool = True  # conv arch only
    decoder: str = "bernoulli"
    sigma: float = 1.0
    learn_sigma: bool = False
    beta: float = 1.0
    kl_warmup_steps: int = 0
    free_bits: float = 0.0
    loss_terms: str = "both"
    conditional: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden": (32,), "latent_dim": 4},
        # pytorch/examples' VAE: 784-400-20, ReLU, Bernoulli decoder
        "mlp-784-400-20": _MLP_784_400_20,
        # the same VAE, trained to the 10-epoch constant-LR -ELBO sooner: Adam(4e-3) annealed to 0 by a cosine over
        # 8 epochs reaches it after 6 (docs/benchmarks.md, "time to quality"; benchmarks/fast_path.py --recipe)
        "mlp-784-400-20-fast": {**_MLP_784_400_20, "lr": 4e-3, "lr_schedule": "cosine", "epochs": 8},
        # a 2-D latent for latent maps and manifold grids
        "latent2": {"arch": "mlp", "hidden": (512, 256), "latent_dim": 2},
        # Burda et al. 2015's one-stochastic-layer VAE: 784-200-200-50, tanh
        "iwae-1layer": {"arch": "mlp", "hidden": (200, 200), "latent_dim": 50, "activation": "tanh"},
        "conv": {"arch": "conv", "hidden": (32, 64), "latent_dim": 16},
        # the measured NLL recipe (88.99 nats with --set binarize=dynamic, 110 epochs: docs/benchmarks.md)
        "recommended": {"arch": "mlp", "hidden": (500, 500), "latent_dim": 50},
    }

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ("mlp", "conv"))
        check_choice("decoder", self.decoder, ("bernoulli", "gaussian"))
        check_choice("loss_terms", self.loss_terms, ("recon", "kl", "both"))
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if self.beta < 0 or self.free_bits < 0 or self.kl_warmup_steps < 0:
            raise ValueError("beta, free_bits and kl_warmup_steps must be >= 0")
        if self.conditional and self.num_classes < 1:
            raise ValueError("conditional=true needs labelled data (num_classes >= 1)")
        if self.arch == "conv" and not self.hidden:
            raise ValueError("arch=conv needs at least one entry in hidden (conv channels)")


@dataclass(frozen=True)
class CVAEConfig(VAEConfig):
    """Conditional VAE: a VAEConfig with `conditional=true`."""

    conditional: bool = True


@register("vae", VAEConfig, "variational autoencoder (beta, KL warm-up, free bits; Bernoulli/Gaussian decoder)")
class VAE(GenerativeModel):
    """VAE: q(z|x) Gaussian, p(z) = N(0, I), p(x|z) Bernoulli or Gaussian."""

    config_class = VAEConfig

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        d, L = flat_dim(c.image_shape), c.latent_dim
        self.cond_dim = c.num_classes if c.conditional else 0
        if c.arch == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), mlp([d, *c.hidden], c.activation, out_act=c.activation))
            feat = c.hidden[-1] if c.hidden else d
            self.decoder = nn.Sequential(mlp([L + self.cond_dim, *reversed(c.hidden), d], c.activation),
                                         nn.Unflatten(1, c.image_shape))  # (B, D) -> (B, C, H, W)
        else:
            enc = conv_encoder(c.image_shape, c.hidden, 2 * L, c.activation, c.batch_norm)
            self.encoder, feat = enc[:-1], enc[-1].in_features  # conv features before the final Linear
            self.decoder = conv_decoder(L + self.cond_dim, c.image_shape, tuple(reversed(c.hidden)), c.activation,
                                        c.batch_norm)
        # [features, one-hot class] -> [mean, logvar]
        self.encoder_head = nn.Linear(feat + self.cond_dim, 2 * L)
        log_sigma = torch.tensor(math.log(c.sigma))
        if c.learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)
        # optimiser steps taken, for the KL warm-up (saved with the weights so resuming continues the schedule)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.init_ema({"encoder": self.encoder, "encoder_head": self.encoder_head, "decoder": self.decoder})

    # ---- conditioning ----------------------------------------------------------------------------
    def _cond(self, labels: Tensor | None, n: int, what: str) -> Tensor | None:
        """Class indices (B,) or soft one-hots (B, C) -> (B, C) floats; None for an unconditional model."""
        if not self.cond_dim:
            return None
        if labels is None:
            raise ValueError(f"a conditional VAE needs labels= (class indices) to {what}")
        labels = torch.as_tensor(labels, device=self.device)
        if labels.ndim == 1:
            # the range check reads the labels on the host (a GPU sync): for user calls, not the engine's steps,
            # whose labels are the dataset's (self.rng is set while the engine trains)
            if self.rng is None and len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.cond_dim):
                raise ValueError(f"labels must lie in 0..{self.cond_dim - 1}, got {labels.tolist()[:10]}")
            labels = F.one_hot(labels.long(), self.cond_dim).float()
        if labels.shape != (n, self.cond_dim):
            raise ValueError(f"expected {n} labels (or ({n}, {self.cond_dim}) one-hots), got shape "
                             f"{tuple(labels.shape)}")
        return labels.float()

    def _with_cond(self, h: Tensor, labels: Tensor | None, what: str) -> Tensor:
        c = self._cond(labels, len(h), what)
        return h if c is None else torch.cat([h, c], 1)

    @torch.no_grad()
    def infer_labels(self, x: Tensor) -> Tensor:
        """Conditional model without labels: the class with the highest ELBO (posterior mean as the sample),
        argmax_y [log p(x|mean_y, y) - KL(q(z|x, y) || p(z))]."""
        scores = []
        for k in range(self.cond_dim):
            y = torch.full((len(x),), k, dtype=torch.long, device=x.device)
            mean, logvar = self.encode(x, y)
            scores.append(self.log_likelihood(x, mean, y) - losses.kl_normal_std(mean, logvar))
        return torch.stack(scores, 1).argmax(1)  # (B,)

    def _labels_for(self, x: Tensor, labels: Tensor | None) -> Tensor | None:
        if self.cond_dim and labels is None:
            return self.infer_labels(x)
        return labels

    # ---- capabilities ----------------------------------------------------------------------------
    def encode(self, x: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z|x): (mean, logvar), each (B, latent_dim). A conditional model infers missing labels."""
        labels = self._labels_for(x, labels)
        h = self._with_cond(self.inference(self.encoder)(x), labels, "encode")  # the EMA copies in eval mode
        mean, logvar = self.inference(self.encoder_head)(h).chunk(2, dim=1)  # (B, 2L) -> 2 x (B, L)
        return mean, logvar

    def code(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.encode(x, labels)[0]

    def decode_logits(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Decoder output: Bernoulli logits, or the Gaussian mean. (B, C, H, W)."""
        return self.inference(self.decoder)(self._with_cond(z, labels, "decode"))

    def output(self, out: Tensor) -> Tensor:
        return torch.sigmoid(out) if self.config.decoder == "bernoulli" else out

    def decode(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """The decoder's mean image E[x|z] (Bernoulli probabilities or the Gaussian mean)."""
        return self.output(self.decode_logits(z, labels))

    def reconstruct(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Decode the posterior mean (deterministic)."""
        labels = self._labels_for(x, labels)
        return self.decode(self.code(x, labels), labels)

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0, **kw: Any) -> Tensor:
        """Decode z ~ N(0, temperature^2 I). A conditional model draws `labels` (default: 0, 1, 2, ... cycling)."""
        self.refuse_labels(labels)
        if self.cond_dim and labels is None:
            labels = torch.arange(n) % self.cond_dim
        z = temperature * torch.randn(n, self.config.latent_dim, generator=generator)
        return self.decode(z.to(self.device), labels)

    def log_likelihood(self, x: Tensor, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """log p(x|z) per example, (B,): Bernoulli or Gaussian, summed over pixels."""
        out = self.decode_logits(z, labels).float()  # the log-likelihood in fp32 under bf16/fp16 autocast
        if self.config.decoder == "bernoulli":
            return -losses.bernoulli_nll(out, x)
        return -losses.gaussian_nll(out, x, self.log_sigma)

    # ---- training --------------------------------------------------------------------------------
    def current_beta(self) -> float:
        """beta, ramped linearly from 0 over the first kl_warmup_steps optimiser steps."""
        c = self.config
        if c.kl_warmup_steps <= 0:
            return c.beta
        return c.beta * min(1.0, int(self.steps_done) / c.kl_warmup_steps)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """L = recon + beta * KL, each per example and averaged over the batch (see the module docstring);
        with free bits the KL cost is sum_j max(free_bits, mean_b KL_bj)."""
        c = self.config
        if self.cond_dim and batch.y is None:
            raise ValueError("a conditional VAE needs labelled training data")
        y = batch.y if self.cond_dim else None
        mean, logvar = self.encode(batch.x, y)
        mean, logvar = mean.float(), logvar.float()  # KL and reparametrisation in fp32 under autocast
        z = losses.reparametrize(mean, logvar)
        rec = -self.log_likelihood(batch.x, z, y).mean()
        kl = losses.kl_normal_std(mean, logvar).mean()
        kl_cost = losses.kl_free_bits(mean, logvar, c.free_bits) if c.free_bits > 0 else kl
        beta = self.current_beta()
        total = {"recon": rec, "kl": beta * kl_cost, "both": rec + beta * kl_cost}[c.loss_terms]
        terms = {"recon": rec, "kl": kl, "neg_elbo": rec + kl, "beta": torch.tensor(beta)}
        if c.learn_sigma:
            terms["sigma"] = self.log_sigma.detach().exp()
        return total, terms

    def _count_step(self) -> None:
        self.steps_done += 1

    def phases(self) -> list[Phase]:
        return [Phase("vae", list(self.parameters()), self.loss, self.config.optimizer_spec(),
                      after_step=self._count_step)]

    @torch.no_grad()
    def preview(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
        """Two rows of test images over their reconstructions, then two rows of prior samples."""
        x = batch.x[:16]
        y = batch.y[:16] if self.cond_dim and batch.y is not None else None
        samples = self.sample(32, generator=generator)
        return torch.cat([x, self.reconstruct(x, y), samples]).clamp(0, 1), min(16, len(x))

    def callbacks(self) -> list[Any]:
        return [CollapseWarning()]


class CollapseWarning:
    """Warn when the KL falls below 0.1 nats per image once beta is at full strength: the decoder ignores z
    (posterior collapse). Suggests KL warm-up or free bits."""

    def on_log(self, trainer: Any, row: dict[str, Any]) -> None:
        m = trainer.model
        if m.config.loss_terms != "both" or m.current_beta() < m.config.beta or "kl" not in row:
            return
        if row["kl"] < 0.1 and trainer.step >= 200:
            trainer.warn(f"KL is {row['kl']:.3g} nats per image: the posterior has collapsed onto the prior "
                         f"(the decoder ignores z). Try kl_warmup_steps=5000 or free_bits=0.1.")


@register("cvae", CVAEConfig, "conditional VAE: encoder and decoder see the one-hot class; sample chosen classes")
class CVAE(VAE):
    """Conditional VAE (Sohn et al. 2015): q(z|x, y), p(x|z, y); `sample(n, labels=...)` draws chosen classes."""

    config_class = CVAEConfig
