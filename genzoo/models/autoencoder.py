"""The autoencoder family: h = f(x), x_hat = g(h), trained to reconstruct x.

    ae              plain: L = recon(g(f(x)), x)
    sparse-ae       L + beta sum_j KL(rho || rho_hat_j)   (or L + beta 1/B sum |h|, sparsity=l1)
    denoising-ae    recon(g(f(x_tilde)), x), x_tilde ~ C(x_tilde | x) (gaussian, masking, salt-pepper)
    contractive-ae  L + lambda ||J_f(x)||_F^2

Encoders/decoders: fully connected of any depth ("stacked"), convolutional (strided or conv + pooling down;
transposed or upsample + conv up), or the lecture's Keras model (`arch=lecture-conv`, genzoo.nn.lecture).
Undercomplete vs overcomplete is just `latent_dim` versus the input size. The variants are subclasses that
only add a regulariser (`regularizer`) or corrupt the input (`model_input`); the rest is the plain AE.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from .. import losses
from ..config import check_choice
from ..nn import activation, conv_decoder, conv_encoder, flat_dim, mlp
from ..nn.lecture import LECTURE_LATENT, LECTURE_SHAPE, keras_init, lecture_conv_decoder, lecture_conv_encoder
from ..registry import register
from .base import Batch, GenerativeModel, OneOptimizerConfig, Phase

_LECTURE = {"arch": "lecture-conv", "latent_dim": LECTURE_LATENT, "loss": "mse", "latent_activation": "relu"}


@dataclass(frozen=True)
class AEConfig(OneOptimizerConfig):
    """Plain autoencoder. `arch`: mlp | conv | lecture-conv. `hidden`: MLP widths (encoder order; the decoder
    mirrors them) or conv channels. `down`/`up` (conv): stride | pool, transpose | upsample. `loss`: bce
    (inputs in [0, 1], decoder emits logits) or mse. `lecture-conv` is the lecture's fixed Keras architecture
    (genzoo.nn.lecture): it ignores hidden, activation, batch_norm, down and up, and needs 1x28x28 images and
    latent_dim=49."""

    arch: str = "mlp"
    latent_dim: int = 32
    hidden: tuple[int, ...] = (400,)
    activation: str = "relu"
    latent_activation: str = "linear"
    batch_norm: bool = True  # conv arch only
    down: str = "stride"  # conv arch: stride-2 4x4 conv | 3x3 conv + 2x2 max pool
    up: str = "transpose"  # conv arch: stride-2 4x4 transposed conv | 2x nearest upsample + 3x3 conv
    loss: str = "bce"
    tied: bool = False  # one-layer MLP only: x_hat = s(W^T h + b')

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden": (32,), "latent_dim": 8},
        "mlp-784-400-20": {"arch": "mlp", "hidden": (400,), "latent_dim": 20},
        "conv": {"arch": "conv", "hidden": (32, 64), "latent_dim": 32},
        "conv-pool": {"arch": "conv", "hidden": (32, 64), "latent_dim": 32, "down": "pool", "up": "upsample"},
        "linear": {"arch": "mlp", "hidden": (), "latent_dim": 16, "loss": "mse"},  # = PCA (Baldi & Hornik)
        "lecture-conv": dict(_LECTURE),  # the lecture's model, literally (its ReLU bottleneck dies)
        "lecture-conv-linear": {**_LECTURE, "latent_activation": "linear"},  # the working variant
        # the scoreboard's best reconstruction at 30 CPU s (conv 32-64, code 32: test MSE 0.0068)
        "recommended": {"arch": "conv", "hidden": (32, 64), "latent_dim": 32},
    }

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ("mlp", "conv", "lecture-conv"))
        check_choice("loss", self.loss, ("mse", "bce"))
        check_choice("down", self.down, ("stride", "pool"))
        check_choice("up", self.up, ("transpose", "upsample"))
        activation(self.activation), activation(self.latent_activation)  # valid names, else ValueError
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.tied and (self.arch != "mlp" or len(self.hidden) != 0):
            raise ValueError("tied=true needs a one-layer MLP autoencoder: set arch=mlp and hidden=()")
        if self.arch == "lecture-conv" and (tuple(self.image_shape) != LECTURE_SHAPE
                                            or self.latent_dim != LECTURE_LATENT):
            raise ValueError(f"arch=lecture-conv is the lecture's fixed model for 1x28x28 images with "
                             f"latent_dim={LECTURE_LATENT}; got image_shape={tuple(self.image_shape)}, "
                             f"latent_dim={self.latent_dim}")


class DeadUnitMonitor:
    """Engine callback: warns when latent units are dead, i.e. zero for every input of a batch (the logged
    `dead_units`, averaged over the logging window). A dead ReLU unit passes no gradient and never recovers."""

    def __init__(self) -> None:
        self.reported = 0

    def on_log(self, trainer: Any, row: dict[str, Any]) -> None:
        dead = round(float(row.get("dead_units", 0.0)))
        if dead > self.reported:
            self.reported = dead
            k = trainer.model.config.latent_dim
            trainer.warn(f"{dead} of {k} latent units are dead (zero for every input of a batch): they pass no "
                         f"gradient and will not recover; with latent_activation=relu use "
                         f"latent_activation=linear (or leaky_relu), or a lower lr")


@register("ae", AEConfig, "autoencoder (MLP, conv or the lecture's conv; under/overcomplete by latent_dim; tied option)")
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
        elif c.arch == "conv":
            self.encoder = conv_encoder(c.image_shape, c.hidden, c.latent_dim, c.activation, c.batch_norm, c.down)
            self.decoder = conv_decoder(c.latent_dim, c.image_shape, tuple(reversed(c.hidden)), c.activation,
                                        c.batch_norm, c.up)
        else:  # lecture-conv
            self.encoder, self.decoder = lecture_conv_encoder(), lecture_conv_decoder()
            keras_init(self)
        self.latent_act = activation(c.latent_activation)
        # A Gaussian fitted to the training codes (on_train_end), so a plain AE can "sample" fairly.
        self.register_buffer("code_mean", torch.zeros(c.latent_dim))
        self.register_buffer("code_chol", torch.eye(c.latent_dim))
        if c.tied and c.ema:
            raise ValueError(f"ema={c.ema}: a tied autoencoder has no decoder of its own to average (it decodes "
                             f"with the encoder's transpose); use ema=0 or tied=false")
        if not c.tied:
            self.init_ema({"encoder": self.encoder, "decoder": self.decoder})  # `ema`: average both

    # h = f(x)
    def encode(self, x: Tensor) -> Tensor:
        return self.latent_act(self.inference(self.encoder)(x))  # (B, latent_dim); the EMA copy in eval mode

    def decode_logits(self, h: Tensor) -> Tensor:
        """Decoder output before the output nonlinearity: logits for bce, values for mse."""
        if self.config.tied:
            W = self.encoder[1][0].weight  # (latent, D)
            return (h @ W + self.decoder_bias).reshape(-1, *self.config.image_shape)  # W^T h + b'
        return self.inference(self.decoder)(h)

    def output(self, out: Tensor) -> Tensor:
        return torch.sigmoid(out) if self.config.loss == "bce" else out

    def decode(self, h: Tensor) -> Tensor:
        return self.output(self.decode_logits(h))

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0, **kw: Any) -> Tensor:
        """Decode codes drawn from N(mean, cov) fitted to the training codes (the plain AE has no prior)."""
        self.refuse_labels(labels)
        eps = torch.randn(n, self.config.latent_dim, generator=generator).to(self.code_mean.device)
        return self.decode(self.code_mean + temperature * eps @ self.code_chol.T)

    # ---- the loss: subclasses change the input (model_input) or add a term (regularizer) -------------
    def model_input(self, x: Tensor) -> Tensor:
        """What the encoder sees during training: x itself (the denoising AE corrupts it)."""
        return x

    def regularizer(self, x_in: Tensor, h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Penalty added to the reconstruction loss, and the terms to log. The plain AE has none."""
        return h.new_zeros(()), {}

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """L = recon(g(f(x_in)), x) + regularizer, recon summed over pixels and averaged over the batch;
        x_in = x for all but the denoising AE. Also logs `dead_units`: code units zero on the whole batch."""
        x_in = self.model_input(batch.x)
        h = self.encode(x_in)
        rec = losses.reconstruction(self.config.loss, self.decode_logits(h), batch.x)
        penalty, terms = self.regularizer(x_in, h)
        return rec + penalty, {"recon": rec, **terms, "dead_units": losses.dead_units(h)}

    def phases(self) -> list[Phase]:
        return [Phase("ae", list(self.parameters()), self.loss, self.config.optimizer_spec())]

    def callbacks(self) -> list[Any]:
        return [DeadUnitMonitor()]

    @torch.no_grad()  # no autograd graph over the whole training set (it held ~4x the dataset in memory)
    def on_train_end(self, batches: Callable[[], Any]) -> None:
        """Fit N(mean, cov) to the codes of the training data, for `sample`."""
        codes = torch.cat([self.encode(b.x) for b in batches()]).double()
        mean = codes.mean(0)
        cov = torch.cov(codes.T).reshape(len(mean), len(mean)) + 1e-5 * torch.eye(len(mean), dtype=codes.dtype)
        self.code_mean.copy_(mean)
        self.code_chol.copy_(torch.linalg.cholesky(cov))


# ---- sparse ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SparseAEConfig(AEConfig):
    """Sparse AE. `sparsity`: kl (beta sum_j KL(rho || rho_hat_j), sigmoid code units) or l1 (beta times the
    L1 norm of the code). `rho_estimate`: rho_hat_j from the batch, or a running mean over the data set
    (rho_hat = m rho_prev + (1 - m) batch mean, gradient through the batch mean; m = rho_momentum).
    Defaults follow Ng's notes: one hidden layer of sigmoid units."""

    hidden: tuple[int, ...] = ()
    latent_dim: int = 196
    latent_activation: str = "sigmoid"
    loss: str = "mse"
    sparsity: str = "kl"
    rho: float = 0.05
    beta: float = 3.0
    rho_estimate: str = "batch"
    rho_momentum: float = 0.99

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 16},
        "mnist-196": {"latent_dim": 196, "rho": 0.05, "beta": 3.0},
        "recommended": {"latent_dim": 196, "rho": 0.05, "beta": 3.0},  # 95.4% linear probe after 10 epochs
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("sparsity", self.sparsity, ("kl", "l1"))
        check_choice("rho_estimate", self.rho_estimate, ("batch", "running"))
        if self.sparsity == "kl" and self.latent_activation != "sigmoid":
            raise ValueError(f"sparsity=kl needs code units in (0, 1): set latent_activation=sigmoid "
                             f"(got {self.latent_activation!r}), or use sparsity=l1")
        if not 0 < self.rho < 1:
            raise ValueError(f"rho must be in (0, 1), got {self.rho}")
        if not 0 <= self.rho_momentum < 1:
            raise ValueError(f"rho_momentum must be in [0, 1), got {self.rho_momentum}")


@register("sparse-ae", SparseAEConfig, "sparse autoencoder: KL(rho || rho_hat) or L1 activity penalty on the code")
class SparseAutoencoder(Autoencoder):
    """J + beta sum_j KL(rho || rho_hat_j) (or J + beta 1/B sum_b sum_j |h_bj|)."""

    config_class = SparseAEConfig

    def __init__(self, config: SparseAEConfig):
        super().__init__(config)
        self.register_buffer("rho_running", torch.full((config.latent_dim,), config.rho))

    def rho_hat(self, h: Tensor) -> Tensor:
        """Mean activation of each code unit (k,): over the batch, or the running mean over the data."""
        batch_mean = h.mean(0)
        if self.config.rho_estimate == "batch":
            return batch_mean
        m = self.config.rho_momentum
        est = m * self.rho_running + (1 - m) * batch_mean
        if self.training:
            self.rho_running.copy_(est.detach())
        return est

    def regularizer(self, x_in: Tensor, h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        if c.sparsity == "l1":
            pen = losses.l1_activity(h)
            return c.beta * pen, {"l1": pen, "mean_activation": h.detach().mean()}
        rho_hat = self.rho_hat(h)
        pen = losses.kl_sparsity(c.rho, rho_hat)
        return c.beta * pen, {"sparsity_kl": pen, "mean_activation": h.detach().mean()}


# ---- denoising -------------------------------------------------------------------------------------------
NOISES = ("gaussian", "masking", "salt-pepper")


def corrupt(x: Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> Tensor:
    """x_tilde ~ C(x_tilde | x) for inputs in [0, 1] (Vincent et al. 2008/2010):
    gaussian: x + sigma eps, eps ~ N(0, I) (level = sigma);
    masking: each input set to 0 with probability nu (level = nu);
    salt-pepper: each input, with probability nu, set to 0 or 1 with equal probability (level = nu)."""
    check_choice("noise", kind, NOISES)
    if level < 0 or (kind != "gaussian" and level > 1):
        raise ValueError(f"noise level {level} is not valid for {kind}: expected "
                         f"{'sigma >= 0' if kind == 'gaussian' else 'a probability in [0, 1]'}")
    if kind == "gaussian":
        return x + level * torch.randn(x.shape, generator=generator).to(x)
    hit = torch.rand(x.shape, generator=generator).to(x) < level
    if kind == "masking":
        return x.masked_fill(hit, 0.0)
    salt = (torch.rand(x.shape, generator=generator).to(x) < 0.5).to(x.dtype)  # 1 (salt) or 0 (pepper)
    return torch.where(hit, salt, x)


def parse_noise(spec: str) -> tuple[str, float]:
    """'gaussian:0.5' -> ('gaussian', 0.5); also masking:NU, salt-pepper:NU."""
    kind, sep, level = spec.partition(":")
    try:
        value = float(level)
    except ValueError:
        value = None
    if not sep or kind not in NOISES or value is None:
        raise ValueError(f"noise {spec!r}: expected KIND:LEVEL with KIND one of {', '.join(NOISES)}, "
                         f"e.g. gaussian:0.5 or masking:0.3")
    corrupt(torch.zeros(1), kind, value)  # checks the level
    return kind, value


@dataclass(frozen=True)
class DenoisingAEConfig(AEConfig):
    """Denoising AE: the encoder sees x_tilde = corrupt(x; noise, noise_level), the loss compares g(f(x_tilde))
    with the clean x. `noise`: gaussian (noise_level = sigma) | masking | salt-pepper (noise_level = nu)."""

    noise: str = "gaussian"
    noise_level: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        corrupt(torch.zeros(1), self.noise, self.noise_level)  # checks kind and level


@register("denoising-ae", DenoisingAEConfig, "denoising autoencoder: reconstruct x from a corrupted x_tilde")
class DenoisingAutoencoder(Autoencoder):
    """L = recon(g(f(x_tilde)), x), x_tilde ~ C(x_tilde | x). The validation loss is the same (noisy input)."""

    config_class = DenoisingAEConfig

    def model_input(self, x: Tensor) -> Tensor:
        return corrupt(x, self.config.noise, self.config.noise_level)


# ---- contractive -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContractiveAEConfig(AEConfig):
    """Contractive AE: J + lam ||J_f(x)||_F^2. `jacobian`: closed-form (one-layer sigmoid encoder: arch=mlp,
    hidden=(), latent_activation=sigmoid), exact (k vector-Jacobian products, any encoder without batch norm),
    estimate (unbiased, `jacobian_samples` random projections), or auto (closed-form when it applies, else
    exact)."""

    hidden: tuple[int, ...] = ()
    latent_activation: str = "sigmoid"
    lam: float = 0.1
    jacobian: str = "auto"
    jacobian_samples: int = 1

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 8},
        "deep": {"hidden": (256,), "latent_dim": 32},
        "recommended": {},  # the one-layer sigmoid CAE of the scoreboard (closed-form Jacobian)
    }

    @property
    def one_layer_sigmoid(self) -> bool:
        return self.arch == "mlp" and len(self.hidden) == 0 and self.latent_activation == "sigmoid"

    @property
    def jacobian_method(self) -> str:
        if self.jacobian == "auto":
            return "closed-form" if self.one_layer_sigmoid else "exact"
        return self.jacobian

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("jacobian", self.jacobian, ("auto", "closed-form", "exact", "estimate"))
        if self.jacobian == "closed-form" and not self.one_layer_sigmoid:
            raise ValueError("jacobian=closed-form needs a one-layer sigmoid encoder (arch=mlp, hidden=(), "
                             "latent_activation=sigmoid); use jacobian=exact or estimate")
        if self.arch == "conv" and self.batch_norm:
            raise ValueError("contractive-ae needs a per-example Jacobian; batch norm in the conv encoder mixes "
                             "the examples of a batch: set batch_norm=false")
        if self.jacobian_samples < 1:
            raise ValueError(f"jacobian_samples must be >= 1, got {self.jacobian_samples}")


@register("contractive-ae", ContractiveAEConfig, "contractive autoencoder: penalty lambda ||J_f(x)||_F^2")
class ContractiveAutoencoder(Autoencoder):
    """J + lam ||J_f(x)||_F^2, J_f the encoder's Jacobian dh/dx (Rifai et al. 2011)."""

    config_class = ContractiveAEConfig

    def model_input(self, x: Tensor) -> Tensor:
        method = self.config.jacobian_method
        return x if method == "closed-form" or not torch.is_grad_enabled() else x.detach().requires_grad_(True)

    def jacobian_penalty(self, x_in: Tensor, h: Tensor) -> Tensor:
        """||J_f(x)||_F^2 averaged over the batch, by the configured method."""
        method = self.config.jacobian_method
        if method == "closed-form":
            return losses.contractive_sigmoid(h, self.encoder[1][0].weight)  # W: (k, D)
        if method == "exact":
            return losses.jacobian_frobenius_sq(h, x_in)
        return losses.jacobian_frobenius_sq_estimate(h, x_in, self.config.jacobian_samples)

    def regularizer(self, x_in: Tensor, h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if not x_in.requires_grad and self.config.jacobian_method != "closed-form":
            with torch.enable_grad():  # validation runs under no_grad: recompute h with a graph to x
                x_in = x_in.detach().requires_grad_(True)
                pen = self.jacobian_penalty(x_in, self.encode(x_in)).detach()
        else:
            pen = self.jacobian_penalty(x_in, h)
        return self.config.lam * pen, {"jacobian_fro2": pen}
