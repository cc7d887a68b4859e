"""Plain autoencoders: h = f(x), x_hat = g(h), trained to reconstruct x.

Encoders/decoders: fully connected of any depth ("stacked") or convolutional. Undercomplete vs
overcomplete is just `latent_dim` versus the input size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from .. import losses
from ..config import check_choice
from ..nn import activation, conv_decoder, conv_encoder, flat_dim, mlp
from ..registry import register
from .base import Batch, GenerativeModel, ModelConfig, Phase


@dataclass(frozen=True)
class AEConfig(ModelConfig):
    """Plain autoencoder. `arch`: mlp | conv. `hidden`: MLP widths (encoder order; the decoder mirrors
    them) or conv channels. `loss`: bce (inputs in [0, 1], decoder emits logits) or mse."""

    arch: str = "mlp"
    latent_dim: int = 32
    hidden: tuple[int, ...] = (400,)
    activation: str = "relu"
    latent_activation: str = "linear"
    batch_norm: bool = True  # conv arch only
    loss: str = "bce"
    tied: bool = False  # one-layer MLP only: x_hat = s(W^T h + b')
    optimizer: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden": (32,), "latent_dim": 8},
        "mlp-784-400-20": {"arch": "mlp", "hidden": (400,), "latent_dim": 20},
        "conv": {"arch": "conv", "hidden": (32, 64), "latent_dim": 32},
    }

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ("mlp", "conv"))
        check_choice("loss", self.loss, ("mse", "bce"))
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.tied and (self.arch != "mlp" or len(self.hidden) != 0):
            raise ValueError("tied=true needs a one-layer MLP autoencoder: set arch=mlp and hidden=()")


@register("ae", AEConfig, "autoencoder (MLP or conv; under/overcomplete by latent_dim; tied weights option)")
class Autoencoder(GenerativeModel):
    """Plain autoencoder h = f(x), x_hat = g(h)."""

    config_class = AEConfig

    def __init__(self, config: AEConfig):
        super().__init__(config)
        c = config
        d = flat_dim(c.image_shape)
        if c.arch == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), mlp([d, *c.hidden, c.latent_dim], c.activation))
            self.decoder = None if c.tied else nn.Sequential(
                mlp([c.latent_dim, *reversed(c.hidden), d], c.activation), nn.Unflatten(1, c.image_shape))
            if c.tied:
                self.decoder_bias = nn.Parameter(torch.zeros(d))
        else:
            self.encoder = conv_encoder(c.image_shape, c.hidden, c.latent_dim, c.activation, c.batch_norm)
            self.decoder = conv_decoder(c.latent_dim, c.image_shape, tuple(reversed(c.hidden)), c.activation,
                                        c.batch_norm)
        self.latent_act = activation(c.latent_activation)
        # A Gaussian fitted to the training codes (on_train_end), so a plain AE can "sample" fairly.
        self.register_buffer("code_mean", torch.zeros(c.latent_dim))
        self.register_buffer("code_chol", torch.eye(c.latent_dim))

    # h = f(x)
    def encode(self, x: Tensor) -> Tensor:
        return self.latent_act(self.encoder(x))  # (B, latent_dim)

    def decode_logits(self, h: Tensor) -> Tensor:
        """Decoder output before the output nonlinearity: logits for bce, values for mse."""
        if self.config.tied:
            W = self.encoder[1][0].weight  # (latent, D)
            return (h @ W + self.decoder_bias).reshape(-1, *self.config.image_shape)  # W^T h + b'
        return self.decoder(h)

    def output(self, out: Tensor) -> Tensor:
        return torch.sigmoid(out) if self.config.loss == "bce" else out

    def decode(self, h: Tensor) -> Tensor:
        return self.output(self.decode_logits(h))

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0, **kw: Any) -> Tensor:
        """Decode codes drawn from N(mean, cov) fitted to the training codes (the plain AE has no prior)."""
        eps = torch.randn(n, self.config.latent_dim, generator=generator).to(self.code_mean.device)
        return self.decode(self.code_mean + temperature * eps @ self.code_chol.T)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """L = recon(g(f(x)), x): summed over pixels, averaged over the batch."""
        h = self.encode(batch.x)
        rec = losses.reconstruction(self.config.loss, self.decode_logits(h), batch.x)
        return rec, {"recon": rec, "dead_units": losses.dead_units(h)}

    def phases(self) -> list[Phase]:
        c = self.config
        return [Phase("ae", list(self.parameters()), self.loss,
                      {"name": c.optimizer, "lr": c.lr, "betas": c.betas, "weight_decay": c.weight_decay})]

    @torch.no_grad()
    def on_train_end(self, batches: Callable[[], Any]) -> None:
        """Fit N(mean, cov) to the codes of the training data, for `sample`."""
        codes = torch.cat([self.encode(b.x) for b in batches()]).double()
        mean = codes.mean(0)
        cov = torch.cov(codes.T).reshape(len(mean), len(mean)) + 1e-5 * torch.eye(len(mean), dtype=codes.dtype)
        self.code_mean.copy_(mean)
        self.code_chol.copy_(torch.linalg.cholesky(cov))
