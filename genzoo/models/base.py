"""What every genzoo model is: a torch module with a frozen config, capabilities and optimisation phases.

The engine (genzoo.train) only ever calls `phases()`, `prepare()`, `val_loss()`, `preview()`, `callbacks()`
and `on_train_end()`; the CLI and explorer ask `can("encode")` etc. instead of checking model types.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from ..config import check_choice

LossFn = Callable[["Batch"], tuple[Tensor, dict[str, Tensor]]]
CAPABILITIES = ("encode", "decode", "reconstruct", "sample", "translate")


class Batch(NamedTuple):
    """A training batch: model inputs `x` (already `prepare`d, on the device) and labels `y` (or None)."""

    x: Tensor
    y: Tensor | None


@dataclass(frozen=True)
class ModelConfig:
    """Fields every model config has. `image_shape` and `num_classes` are filled in from the dataset."""

    image_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W); for 2-D point data (2, 1, 1)
    num_classes: int = 10

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}


@dataclass(frozen=True)
class OneOptimizerConfig(ModelConfig):
    """Fields of a model trained by one optimizer (the autoencoders and VAEs; a GAN has two phases)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0

    def optimizer_spec(self) -> dict[str, Any]:
        return {"name": self.optimizer, "lr": self.lr, "betas": self.betas, "weight_decay": self.weight_decay}


@dataclass
class Phase:
    """One optimisation phase: which parameters, which optimizer, which loss, how many times per step."""

    name: str
    params: list[nn.Parameter]
    loss: LossFn
    optimizer: dict[str, Any]  # {"name": "adam", "lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.0, ...}
    repeat: int = 1
    uses_data: bool = True  # False: reuse the batch of the previous phase (e.g. a GAN's generator phase)
    after_step: Callable[[], None] | None = None  # e.g. WGAN weight clipping


OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def make_optimizer(params: list[nn.Parameter], spec: dict[str, Any]) -> torch.optim.Optimizer:
    """Build Adam/AdamW/SGD/RMSprop from a phase's optimizer spec. Adam, AdamW and SGD use PyTorch's fused
    kernels (one kernel for all parameters: on CPU the MLP VAE/AE train ~1.4x faster than with the default
    per-tensor loop, see docs/benchmarks.md); RMSprop has none and uses the multi-tensor `foreach` path."""
    spec = dict(spec)
    name = spec.pop("name", "adam")
    check_choice("optimizer", name, OPTIMIZERS)
    lr = spec.pop("lr", 1e-3)
    wd = spec.pop("weight_decay", 0.0)
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=tuple(spec.pop("betas", (0.9, 0.999))), weight_decay=wd,
                   eps=spec.pop("eps", 1e-8), fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=spec.pop("momentum", 0.0), weight_decay=wd, fused=True)
    return torch.optim.RMSprop(params, lr=lr, momentum=spec.pop("momentum", 0.0), weight_decay=wd, foreach=True)


class GenerativeModel(nn.Module):
    """Base class. Subclasses set `config_class`, build layers in `__init__(config)` and implement
    `phases()` plus whichever capabilities they have (encode, decode, reconstruct, sample, translate)."""

    config_class: ClassVar[type] = ModelConfig
    model_type: ClassVar[str] = ""  # filled by the registry decorator's name when saved
    input_range: ClassVar[tuple[float, float]] = (0.0, 1.0)  # what `prepare` maps uint8 pixels to

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    # ---- data ------------------------------------------------------------------------------------
    def prepare(self, x: Tensor) -> Tensor:
        """Raw dataset tensor -> model input. uint8 pixels map to `input_range`; float data passes through."""
        if x.dtype != torch.uint8:
            return x.float()
        lo, hi = self.input_range
        return x.float().mul_((hi - lo) / 255.0).add_(lo)

    def to_unit(self, x: Tensor) -> Tensor:
        """Model output/input space -> images in [0, 1] for saving."""
        lo, hi = self.input_range
        return ((x - lo) / (hi - lo)).clamp(0, 1)

    # ---- capabilities ----------------------------------------------------------------------------
    def can(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}")
        return getattr(type(self), capability) is not getattr(GenerativeModel, capability)

    @property
    def capabilities(self) -> list[str]:
        return [c for c in CAPABILITIES if self.can(c)]

    def encode(self, x: Tensor) -> Any:
        raise NotImplementedError(f"{type(self).__name__} cannot encode")

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot decode")

    def reconstruct(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot reconstruct")

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None,
               **kw: Any) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot sample")

    def translate(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot translate")

    def code(self, x: Tensor) -> Tensor:
        """One latent point per input, for the latent toolbox: the code of a plain AE, the posterior mean
        of a VAE (whose `encode` returns (mean, logvar))."""
        h = self.encode(x)
        return h[0] if isinstance(h, tuple) else h

    @property
    def conditional(self) -> bool:
        """True when `sample`/`decode` take class labels (cvae, cgan)."""
        return bool(getattr(self.config, "conditional", False))

    @property
    def latent_dim(self) -> int | None:
        return getattr(self.config, "latent_dim", None)

    @property
    def device(self) -> torch.device:
        return next(iter(self.parameters())).device

    # ---- training --------------------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        raise NotImplementedError

    @torch.no_grad()
    def val_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Validation loss on a test batch: by default every phase's loss, terms prefixed by phase name
        when there is more than one phase."""
        phases = self.phases()
        total, terms = torch.zeros(()), {}
        for p in phases:
            t, ts = p.loss(batch)
            total = total + t.detach().cpu()
            prefix = f"{p.name}/" if len(phases) > 1 else ""
            terms.update({prefix + k: v for k, v in ts.items()})
        return total, terms

    @torch.no_grad()
    def preview(self, batch: Batch, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
        """Images in [0, 1] for the progress grid, and the number of columns: real images over their
        reconstructions when the model can reconstruct, else samples from a fixed noise seed."""
        if self.can("reconstruct"):
            x = batch.x[:32]
            return self.to_unit(torch.cat([x, self.reconstruct(x)])), min(16, len(x))
        if self.can("sample"):
            labels = batch.y[:64] if batch.y is not None and self.conditional else None
            return self.to_unit(self.sample(64, labels=labels, generator=generator)), 8
        raise NotImplementedError

    def callbacks(self) -> list[Any]:
        """Extra engine callbacks this model wants (objects with optional on_log / on_epoch_end methods)."""
        return []

    def on_train_end(self, batches: Callable[[], Any]) -> None:
        """Called once after training with a function yielding `Batch`es over the training data."""
