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
    """A training batch, one type for every family, already `prepare`d and on the device.

    `x`: model inputs (labelled images; the *source* of a paired dataset; domain A of an unpaired one);
    `y`: labels of `x` or None; `target`: the aligned target of a paired dataset, or an independently drawn
    batch of domain B of an unpaired one; `y_target`: labels of `target` where it has them."""

    x: Tensor
    y: Tensor | None = None
    target: Tensor | None = None
    y_target: Tensor | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Fields every model config has. `image_shape` and `num_classes` are filled in from the dataset.
    `ema` > 0: keep an exponential moving average (decay `ema`) of the networks the model generates with (G of a
    GAN, the diffusion U-Net, an autoencoder's encoder and decoder, a translator's generators) and generate,
    evaluate and explore with it; `ema_warmup`: its warm-up d_n = min(ema, (1 + n) / (10 + n)) (false: the plain
    decay from the first update). See `EMA`."""

    image_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W); for 2-D point data (2, 1, 1)
    num_classes: int = 10
    ema: float = 0.0
    ema_warmup: bool = True

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


class EMA(nn.Module):
    """An exponential moving average of a module's weights, kept as a real copy of the module (same class),
    so it is saved in model.safetensors, restored on resume and called like the module itself.

    update():  w_avg <- d_n * w_avg + (1 - d_n) * w   for every parameter (Polyak averaging as used for
    GAN generators by Karras et al. 2018 and Brock et al. 2019, and for DDPM weights by Ho et al. 2020);
    buffers (e.g. batch-norm running statistics) are copied from the live module at each update.
    Warm-up (on by default): d_n = min(decay, (1 + n) / (10 + n)) at the n-th update, n = 0, 1, ...
    (TensorFlow's ExponentialMovingAverage with num_updates). Without it the average keeps decay^n of the
    initial random weights: 0.999^1028 = 36% after a 1,028-step DDPM run, whose EMA then samples noise while
    the live network draws clothes (measured; docs/benchmarks.md, the 10-CPU-minute scoreboard). `warmup=False`
    gives the plain formula, d_n = decay. The update count is a buffer (saved, so `--resume` is exact) with a
    Python-int mirror, so the step reads nothing from the device.
    Because averaged weights do not match the live module's batch-norm statistics, `recompute_bn` re-estimates
    the copy's running statistics from its own activations; models with batch norm call it at the end of
    training (genzoo's choice: recompute, not copy, for the final weights)."""

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True):
        super().__init__()
        import copy

        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema={decay} must be in (0, 1) (a decay such as 0.999; ema=0 turns averaging off)")
        self.decay, self.warmup = decay, warmup
        self.module = copy.deepcopy(module)
        self.module.requires_grad_(False)
        self._live = [module]  # a plain list: the live module is not a submodule of the EMA
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._n = 0  # mirror of `updates` on the host

    def current_decay(self) -> float:
        """d_n for the next update: min(decay, (1 + n) / (10 + n)) with warm-up, else decay."""
        return min(self.decay, (1 + self._n) / (10 + self._n)) if self.warmup else self.decay

    def _load_from_state_dict(self, state_dict, prefix, *args, **kw):  # noqa: ANN001, ANN002, ANN003
        # a checkpoint written before the update count existed: its average is past any warm-up
        state_dict.setdefault(prefix + "updates", torch.tensor(10**9))
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)
        self._n = int(self.updates)

    @torch.no_grad()
    def update(self) -> None:
        live = self._live[0]
        avg = list(self.module.parameters())
        torch._foreach_lerp_(avg, [p.detach() for p in live.parameters()], 1.0 - self.current_decay())
        self._n += 1
        self.updates.fill_(self._n)
        for b_avg, b in zip(self.module.buffers(), live.buffers()):
            b_avg.copy_(b)

    @torch.no_grad()
    def recompute_bn(self, forward: Callable[[nn.Module], Any], n_batches: int = 20) -> None:
        """Re-estimate every batch-norm layer's running mean/variance of the averaged module from
        `n_batches` calls of `forward(module)` in train mode (cumulative average, momentum=None)."""
        bns = [m for m in self.module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               and m.track_running_stats]
        if not bns:
            return
        was_training = self.module.training
        moms = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        self.module.train()
        for _ in range(n_batches):
            forward(self.module)
        for m, mom in zip(bns, moms):
            m.momentum = mom
        self.module.train(was_training)

    def forward(self, *args: Any, **kw: Any) -> Any:
        return self.module(*args, **kw)


class GenerativeModel(nn.Module):
    """Base class. Subclasses set `config_class`, build layers in `__init__(config)` and implement
    `phases()` plus whichever capabilities they have (encode, decode, reconstruct, sample, translate)."""

    config_class: ClassVar[type] = ModelConfig
    model_type: ClassVar[str] = ""  # filled by the registry decorator's name when saved
    input_range: ClassVar[tuple[float, float]] = (0.0, 1.0)  # what `prepare` maps uint8 pixels to
    data_kind: ClassVar[str] = "images"  # the dataset kind it trains on: images | paired | unpaired
    directions: ClassVar[tuple[str, ...]] = ("a2b",)  # translation directions (translate(x, direction=...))
    # while training: the engine's device-side noise source (genzoo.train.engine.NoiseSource, with .randn(n,
    # *shape) / .rand(n, *shape)); None otherwise. Draw a loss's noise through it when set.
    rng: Any = None

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

    @property
    def sample_options(self) -> list[str]:
        """The keyword settings this model's `sample` takes besides n, labels and generator (e.g. truncation;
        steps, sampler, eta, guidance)."""
        import inspect
        params = inspect.signature(self.sample).parameters.values()
        return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in ("n", "labels", "generator")]

    def check_sample_settings(self, settings: dict[str, Any], where: str = "", prefix: str = "") -> None:
        """A ValueError naming each setting `sample` does not take, and the ones it does."""
        bad = [k for k in settings if k not in self.sample_options]
        if bad:
            ok = ", ".join(prefix + a for a in self.sample_options) or "none"
            raise ValueError(f"{where + ': ' if where else ''}a {self.model_type} model's sample takes no "
                             f"{', '.join(prefix + k for k in bad)} (its settings: {ok})")

    def encode(self, x: Tensor) -> Any:
        raise NotImplementedError(f"{type(self).__name__} cannot encode")

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot decode")

    def reconstruct(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot reconstruct")

    def sample(self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None,
               **kw: Any) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot sample")

    def translate(self, x: Tensor, direction: str | None = None, **kw: Any) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} cannot translate")

    # ---- EMA of weights (an engine feature any model switches on) --------------------------------
    def init_ema(self, module: nn.Module | dict[str, nn.Module]) -> None:
        """Keep an EMA of `module` (or of several, {name: module}) when the config's `ema` decay is not 0 (EMA
        checks its range), with the warm-up unless the config's `ema_warmup` is false. Every model family calls
        it at the end of __init__ with the networks it generates with."""
        decay = float(getattr(self.config, "ema", 0.0) or 0.0)
        if decay == 0:
            return
        if isinstance(module, dict):
            module = nn.ModuleDict(module)  # not a submodule of the model: only the EMA holds it
        warmup = bool(getattr(self.config, "ema_warmup", True))
        self.ema = EMA(module, decay, warmup=warmup)  # a submodule: `model.ema` (absent when EMA is off)

    def averaged(self, module: nn.Module) -> nn.Module:
        """The EMA copy of `module` when EMA is on (the module itself otherwise): use it for sampling."""
        ema = self._modules.get("ema")
        if ema is None:
            return module
        live = ema._live[0]
        if live is module:
            return ema.module
        if isinstance(live, nn.ModuleDict):
            for name, m in live.items():
                if m is module:
                    return ema.module[name]
        return module

    def fold_ema(self) -> None:
        """Load the averaged weights into the live networks and stop averaging (a model about to be trained
        further as part of another one, e.g. an encoder being fine-tuned, whose eval mode must then use the
        weights being trained). A no-op without EMA."""
        ema = self._modules.get("ema")
        if ema is not None:
            ema._live[0].load_state_dict(ema.module.state_dict())
            del self.ema

    def inference(self, module: nn.Module) -> nn.Module:
        """`module` while training (the loss needs the live weights), its EMA copy in eval mode (sampling,
        evaluation, the explorer), when EMA is on."""
        return module if self.training else self.averaged(module)

    def code(self, x: Tensor) -> Tensor:
        """One latent point per input, for the latent toolbox: the code of a plain AE, the posterior mean
        of a VAE (whose `encode` returns (mean, logvar))."""
        h = self.encode(x)
        return h[0] if isinstance(h, tuple) else h

    def refuse_labels(self, labels: Any) -> None:
        """Class labels given to an unconditional model are an error, never silently ignored."""
        if labels is not None and not self.conditional:
            raise ValueError(f"{self.model_type or type(self).__name__} is unconditional: it takes no labels "
                             f"(train a conditional model, e.g. cvae, cgan or biggan)")

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
