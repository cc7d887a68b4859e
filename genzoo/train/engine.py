"""The one training engine: runs the phases a model declares, for every model family.

A step runs each phase `repeat` times (a GAN: the discriminator k times, then the generator — the
lecture's Algorithm 1). Each phase execution draws its own batch when `uses_data` is set, so an epoch is
floor(batches per epoch / batches per step) steps, and the data order is a function of (seed, epoch) alone:
resuming from a checkpoint replays exactly the batches an uninterrupted run would see.

The fast path (docs/guide.md, "Speed"): `precision` bf16 | fp16 runs each phase's forward and loss under
autocast (weights, gradients and optimizer state stay fp32; fp16 only on CUDA, with a gradient scaler per
phase); `channels_last` stores conv weights and image batches channels-last (auto: on CPU for models with
convolutions, where it was measured faster); `compile` wraps each phase's loss in torch.compile.
Nothing in a step waits for the device: noise is drawn on the device (`NoiseSource`, saved in the
checkpoint), a non-finite loss is recorded on the device and checked at each log interval and before every
checkpoint (the message still names the step, phase and term, and the last checkpoint is a good one), batches
are copied from pinned memory with non_blocking=True, and `float()` of the logged values happens only at log
steps. `Trainer._train_step` is that step; tests/test_perf.py checks that it calls no synchronising method.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from .._memory import trim_memory
from ..config import TrainConfig
from ..data import Dataset
from ..images import save_grid
from ..models.base import Batch, GenerativeModel, Phase, make_optimizer
from . import distributed as D
from . import rundir as R
from .metrics_log import MetricsCSV

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_NEVER = 2 ** 62  # "no non-finite loss yet" in the device-side first-bad-step record


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step, phase and term."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_precision(precision: str, device: torch.device) -> None:
    """bf16 on CPU and on CUDA devices that support it; fp16 only on CUDA (with a gradient scaler)."""
    if precision not in DTYPES:
        raise ValueError(f"precision={precision!r} is not valid; expected one of: {', '.join(DTYPES)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision=fp16 needs a CUDA device (device is {device}); on a CPU use precision=bf16 "
                         f"(autocast to bfloat16), or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision=bf16: {torch.cuda.get_device_name(device)} does not support bfloat16; use "
                         f"precision=fp16 (with a gradient scaler) or fp32")


def bf16_native(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 in hardware: a CUDA device that supports it, or a CPU with AVX512-BF16 or
    AMX-BF16 (read from /proc/cpuinfo; False where that cannot be read). Elsewhere bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in /proc/cpuinfo's flags, read once per process (the explorer asks per request)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """torch.autocast for `precision` on `device` (a no-op context for fp32). Losses that must stay fp32 (KL,
    log-likelihoods, gradient penalties) cast to float or switch autocast off themselves, saying so in code."""
    dtype = DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def with_precision(model: GenerativeModel, precision: str) -> GenerativeModel:
    """`model` with its generating capabilities (sample, decode, reconstruct, translate) run under autocast
    to `precision` and returning float32 — for `genzoo sample/evaluate --precision bf16`. Metric code (features,
    likelihoods) that calls other methods stays fp32. fp32: the model unchanged."""

    check_precision(precision, model.device)
    if precision == "fp32":
        return model
    for name in ("sample", "decode", "reconstruct", "translate"):
        if not model.can(name):
            continue
        fn = getattr(model, name)

        @functools.wraps(fn)
        def run(*a: Any, _fn=fn, **k: Any) -> Any:
            with autocast(model.device, precision):
                out = _fn(*a, **k)
            return out.float() if isinstance(out, Tensor) else out

        setattr(model, name, run)  # an instance attribute: can() still reads the class
    return model


def check_compiler(device: torch.device) -> None:
    """torch.compile's inductor backend needs a C++ compiler (CPU) or Triton (CUDA): say which is missing
    instead of failing deep inside the first step (or silently running 10x slower)."""
    if device.type == "cuda":
        try:
            from torch.utils._triton import has_triton
            ok = has_triton()
        except ImportError:
            ok = False
        if not ok:
            raise RuntimeError("compile=true on CUDA needs Triton (pip install triton matching your torch); it is "
                               "not importable here. Set compile=false to train without torch.compile")
        return
    cxx = os.environ.get("CXX", "g++")
    if not (shutil.which(cxx) or shutil.which("c++") or shutil.which("clang++")):
        raise RuntimeError(f"compile=true needs a C++ compiler for torch.compile's CPU backend ({cxx!r}, c++ or "
                           f"clang++ on PATH, or $CXX); none was found. Install one (e.g. apt-get install g++) "
                           f"or set compile=false")


def has_conv(model: torch.nn.Module) -> bool:
    return any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in model.modules())


class NoiseSource:
    """The random numbers a loss draws for noise (a GAN's z, the gradient penalty's eps), from a
    torch.Generator on the training device: no host round trip on a GPU, and its state is saved in the
    checkpoint. The engine sets it as `model.rng` while training (None otherwise; models then use the global
    RNG or the generator they are given).

    Under torchrun every rank holds the same generator state and draws the noise of the *global* batch
    (world * n rows), keeping rows rank, rank + world, ... — the rows of the global batch its data shard
    holds — so N processes draw exactly what one process with the global batch draws."""

    def __init__(self, device: torch.device, seed: int, rank: int = 0, world: int = 1):
        self.device, self.rank, self.world = device, rank, world
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def _rows(self, t: Tensor) -> Tensor:
        return t if self.world == 1 else t[self.rank::self.world].contiguous()

    def randn(self, n: int, *shape: int) -> Tensor:
        """N(0, 1) noise of shape (n, *shape) on the device."""
        return self._rows(torch.randn(n * self.world, *shape, generator=self.generator, device=self.device))

    def rand(self, n: int, *shape: int) -> Tensor:
        """U[0, 1) noise of shape (n, *shape) on the device."""
        return self._rows(torch.rand(n * self.world, *shape, generator=self.generator, device=self.device))


class _FactorSchedule:
    """lr = base_lr * self.factor(step) for every parameter group; subclasses define `factor`."""

    def _apply(self) -> None:
        f = self.factor(self.step_n)
        for g, b in zip(self.opt.param_groups, self.base):
            g["lr"] = b * f

    def step(self) -> None:
        self.step_n += 1
        self._apply()


class CosineSchedule(_FactorSchedule):
    """lr = base_lr * f(step), f cosine-annealed to 0 at the run's total: f(s) = f0 (1 + cos(pi (s - s0) /
    (T - s0))) / 2 from segment start (s0, f0). A fresh run has (s0, f0) = (0, 1): the closed form
    (1 + cos(pi s / T)) / 2. Resuming with a larger total T' starts a new segment at the resumed step from the
    factor reached there, so the LR keeps decaying monotonically and reaches 0 at the new end; resuming with
    the same total keeps the segment (the uninterrupted run's LRs, exactly). A finished run (factor 0) cannot
    be extended: that would train at learning rate 0, so it is refused with a message."""

    def __init__(self, opt: torch.optim.Optimizer, total: int):
        self.opt, self.total = opt, max(1, total)
        self.base = [g["lr"] for g in opt.param_groups]
        self.s0, self.f0, self.step_n = 0, 1.0, 0

    def factor(self, s: int) -> float:
        span = max(1, self.total - self.s0)
        return self.f0 * (1 + math.cos(math.pi * min(max(s - self.s0, 0), span) / span)) / 2

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "cosine", "total": self.total, "s0": self.s0, "f0": self.f0, "step": self.step_n,
                "base_lrs": list(self.base)}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        if s.get("kind") == "cosine":
            old_total, s0, f0, step = int(s["total"]), int(s["s0"]), float(s["f0"]), int(s["step"])
            self.base = [float(b) for b in s["base_lrs"]]
        else:  # a checkpoint written with torch's CosineAnnealingLR: closed form from step 0
            old_total, s0, f0, step = int(s["T_max"]), 0, 1.0, int(s["last_epoch"])
            self.base = [float(b) for b in s["base_lrs"]]
        self.step_n = step
        self.s0, self.f0, saved = s0, f0, self.total
        if saved != old_total:  # the run's total changed on resume: a new segment from here
            self.total = old_total
            f_now = self.factor(step)
            if f_now <= 1e-12 and saved > step:
                raise ValueError(f"this run's cosine schedule ended at step {step} with learning rate 0; "
                                 f"resuming it to {saved} steps would train at learning rate 0. Start a new "
                                 f"run with the total you want (or resume an interrupted run before its end)")
            self.total, self.s0, self.f0 = saved, step, f_now
        self._apply()


class LinearSchedule(_FactorSchedule):
    """lr = base_lr * f(step): constant, then linear decay to 0 — the pix2pix / CycleGAN schedule (Zhu et al.
    2017: 100 epochs constant, 100 decaying). With the plan (start, end) from TrainConfig and the run's total T:
    start = lr_decay_start (a step, or a fraction of T when below 1; default T/2, or 0 with lr_decay_steps), end =
    start + lr_decay_steps (default T), and

        f(s) = 1 for s < start,   f(s) = max(0, 1 - (s - start) / (end - start)) after,

    where s counts the steps done: step s + 1 trains at base_lr * f(s). In general f holds f0 until `s0`, then
    falls linearly to 0 at `end` (a fresh run: s0 = start, f0 = 1). Resuming with the same plan keeps the saved
    segment (the uninterrupted run's LRs, exactly); a changed plan (a new total, or new decay keys) continues
    from the factor reached at the resumed step: f0 until the new start, then linearly to 0 at the new end. A
    finished run (factor 0) cannot be extended — that would train at learning rate 0 — so it is refused."""

    def __init__(self, opt: torch.optim.Optimizer, total: int, start: int | float | None = None,
                 decay_steps: int | None = None):
        self.opt, self.total = opt, max(1, total)
        self.base = [g["lr"] for g in opt.param_groups]
        self.plan = self.make_plan(self.total, start, decay_steps)
        self.s0, self.end = self.plan
        self.f0, self.step_n = 1.0, 0

    @staticmethod
    def make_plan(total: int, start: int | float | None, decay_steps: int | None) -> tuple[int, int]:
        """(start, end) steps of the decay."""
        if start is None:
            start = 0 if decay_steps is not None else total // 2
        elif isinstance(start, float):
            start = round(start * total)
        return start, (start + decay_steps if decay_steps is not None else max(total, start))

    def factor(self, s: int) -> float:
        if s < self.s0:
            return self.f0
        if self.end <= self.s0:
            return 0.0
        return self.f0 * max(0.0, 1.0 - (s - self.s0) / (self.end - self.s0))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "linear", "total": self.total, "plan": list(self.plan), "s0": self.s0, "f0": self.f0,
                "end": self.end, "step": self.step_n, "base_lrs": list(self.base)}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        if s.get("kind") != "linear":
            raise ValueError(f"the checkpoint's learning-rate schedule is {s.get('kind', 'a torch scheduler')!r}, "
                             f"this run's is 'linear': resume with the run's own lr_schedule")
        self.base = [float(b) for b in s["base_lrs"]]
        self.step_n = step = int(s["step"])
        new_plan = self.plan
        self.s0, self.f0, self.end = int(s["s0"]), float(s["f0"]), int(s["end"])
        changed = tuple(int(v) for v in s["plan"]) != tuple(new_plan)
        if (changed or self.total != int(s["total"])) and self.factor(step) <= 1e-12 and self.total > step:
            raise ValueError(f"this run's linear schedule reached learning rate 0 at step {step}; resuming it "
                             f"to {self.total} steps would train at learning rate 0. Start a new run with the "
                             f"total you want (or resume an interrupted run before its end)")
        if changed:  # a new total or new decay keys on resume: re-plan from the factor reached here
            f_now = self.factor(step)
            if new_plan[1] <= step:
                raise ValueError(f"lr_decay_start/lr_decay_steps put the end of the decay at step {new_plan[1]}, "
                                 f"but the run resumes at step {step}: the decay must end after it")
            self.s0, self.f0, self.end = max(step, new_plan[0]), f_now, new_plan[1]
            self.plan = new_plan
        self._apply()


class Trainer:
    """Runs `model`'s phases over `train_data`; writes the run directory `out` (rank 0 only)."""

    def __init__(self, model: GenerativeModel, train_data: Dataset, tc: TrainConfig, out: Path | None,
                 test_data: Dataset | None = None, dist_info: D.DistInfo | None = None,
                 resume_state: dict[str, Any] | None = None, run_info: dict[str, Any] | None = None):
        self.model, self.tc, self.out = model, tc, out
        self.dist = dist_info or D.DistInfo()
        self.device = model.device
        self.train_data, self.test_data = train_data, test_data
        precision = getattr(tc, "precision", "fp32")
        check_precision(precision, self.device)
        self.precision = precision
        self.channels_last = self._resolve_channels_last(getattr(tc, "channels_last", False))
        if self.channels_last:
            model.to(memory_format=torch.channels_last)  # 4-D (conv) weights only; same Parameter objects
        self.phases: list[Phase] = model.phases()
        if getattr(tc, "compile", False):
            check_compiler(self.device)
            for p in self.phases:
                p.loss = torch.compile(p.loss)
        self.optimizers = [make_optimizer(p.params, p.optimizer) for p in self.phases]
        self.scalers = [torch.amp.GradScaler("cuda") if precision == "fp16" else None for _ in self.phases]
        self.batches_per_step = sum(p.repeat for p in self.phases if p.uses_data) or 1
        world = self.dist.world
        self.local_batch = tc.batch_size // world
        if self.local_batch < 1 or tc.batch_size % world:
            raise ValueError(f"batch_size={tc.batch_size} must be a positive multiple of the {world} processes")
        n_local = len(train_data) // world
        self.steps_per_epoch = n_local // self.local_batch // self.batches_per_step
        if self.steps_per_epoch < 1:
            raise ValueError(f"{train_data.name}: {len(train_data)} training examples are fewer than one step "
                             f"needs ({self.batches_per_step} batches of {tc.batch_size}); lower batch_size")
        self.total_steps = tc.steps if tc.steps is not None else tc.epochs * self.steps_per_epoch
        self.schedulers = [self._scheduler(o) for o in self.optimizers]
        self.step = 0
        self.callbacks = list(model.callbacks())
        self.warnings: list[str] = []
        self.run_info = dict(run_info or {})
        self.run_info.update({"precision": precision, "channels_last": self.channels_last,
                              "compile": bool(getattr(tc, "compile", False))})
        # a fresh run (also one restarted from step 0) starts metrics.csv empty; _restore keeps rows up to the checkpoint
        keep = 0 if resume_state is None else int(resume_state["step"])
        self.metrics = MetricsCSV(out / R.METRICS, keep_until_step=keep) if out and self.dist.main else None
        self.multi_phase = len(self.phases) > 1
        # trainable parameters only: an EMA copy (requires_grad False) must stay frozen after a phase re-enables all
        self.all_params = [p for p in model.parameters() if p.requires_grad]
        self.bar = None
        # device-side noise, the same state on every rank (see NoiseSource)
        self.noise = NoiseSource(self.device, tc.seed * 1_000_003 + 12_345, self.dist.rank, world)
        self.pin = self.device.type == "cuda"
        # per phase: the first step whose loss was not finite (_NEVER: none), kept on the device
        self._first_bad = [torch.full((), _NEVER, dtype=torch.long, device=self.device) for _ in self.phases]
        # per phase and list of term names (a lazy penalty logs its term only on some steps): the values at the
        # first bad step; the list whose total (last value) is not finite holds them
        self._snap: dict[int, dict[tuple[str, ...], Tensor]] = {}
        self._checked_from = 1  # first step of the interval since the last finite-check
        if resume_state is not None:
            self._restore(resume_state)
        # fixed inputs for the progress grids: the first test (else train) images, and a fixed noise seed
        ref = test_data if test_data is not None else train_data
        n_fixed = min(64, len(ref))
        self.fixed = self._batch(ref, slice(0, n_fixed),
                                 None if ref.domain_b is None else torch.arange(n_fixed) % len(ref.domain_b))

    # ---- set-up ---------------------------------------------------------------------------------
    def _resolve_channels_last(self, value: Any) -> bool:
        """auto: on CPU for models with convolutions and image data (docs/benchmarks.md, "The fast path": the
        bf16 conv AE 1.74x faster than contiguous, fp32 equal, the DCGAN ~1.2x); off on CUDA (not measured here;
        set channels_last=true to try)."""
        if value == "auto":
            return (self.device.type == "cpu" and has_conv(self.model) and len(self.train_data.shape) == 3
                    and self.train_data.shape[1] > 1)
        return bool(value)

    def _scheduler(self, opt: torch.optim.Optimizer):
        if self.tc.lr_schedule == "cosine":
            return CosineSchedule(opt, self.total_steps)
        if self.tc.lr_schedule == "step":
            return torch.optim.lr_scheduler.StepLR(opt, self.tc.lr_step_size, self.tc.lr_gamma)
        if self.tc.lr_schedule == "linear":
            return LinearSchedule(opt, self.total_steps, self.tc.lr_decay_start, self.tc.lr_decay_steps)
        return None

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"]):
            if sch is not None and s:
                sch.load_state_dict(s)
        self.step = int(state["step"])
        self._checked_from = self.step + 1
        ranks = state.get("rng_ranks")
        if ranks and len(ranks) == self.dist.world:  # each rank continues its own random streams
            self._set_rng(ranks[self.dist.rank])
        else:
            torch.set_rng_state(state["rng"])
            if self.dist.world > 1:
                self.warn(f"the checkpoint holds RNG states of {len(ranks or [0])} process(es), this run has "
                          f"{self.dist.world}: random draws after resuming differ from an uninterrupted run")
        for sc, s in zip(self.scalers, state.get("scalers", [])):
            if sc is not None and s:
                sc.load_state_dict(s)
        self.run_info["wall_time_s"] = float(state.get("wall_time_s", 0.0))

    def _rng_state(self) -> dict[str, Tensor]:
        s = {"cpu": torch.get_rng_state(), "noise": self.noise.generator.get_state()}
        if self.device.type == "cuda":
            s["cuda"] = torch.cuda.get_rng_state(self.device)
        return s

    def _set_rng(self, s: dict[str, Tensor]) -> None:
        torch.set_rng_state(s["cpu"])
        if "noise" in s:
            self.noise.generator.set_state(s["noise"])
        if "cuda" in s and self.device.type == "cuda":
            torch.cuda.set_rng_state(s["cuda"], self.device)

    # ---- data -----------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int, start_step: int) -> Iterator[Batch]:
        """This rank's batches of `epoch`, from step `start_step` within it; order fixed by (seed, epoch).
        An unpaired dataset's domain B is drawn from its own permutation (fixed by (seed, epoch) too),
        independently of domain A, and cycled when B is smaller: an epoch is one pass over domain A."""
        n, world = len(self.train_data), self.dist.world
        g = torch.Generator().manual_seed(self.tc.seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=g)
        usable = (n // world) * world
        local = perm[self.dist.rank:usable:world]
        b = self.local_batch
        n_batches = self.steps_per_epoch * self.batches_per_step
        local_b = None
        dom_b = self.train_data.domain_b
        if dom_b is not None:
            gb = torch.Generator().manual_seed(self.tc.seed * 100_003 + epoch + 7_919)
            need = n_batches * b * world
            perm_b = torch.cat([torch.randperm(len(dom_b), generator=gb) for _ in range(-(-need // len(dom_b)))])
            local_b = perm_b[self.dist.rank:need:world]
        for i in range(start_step * self.batches_per_step, n_batches):
            idx = local[i * b:(i + 1) * b]
            yield self._batch(self.train_data, idx, None if local_b is None else local_b[i * b:(i + 1) * b],
                              train=True)

    def _batch(self, data: Dataset, idx: Tensor | slice, idx_b: Tensor | slice | None = None,
               train: bool = False, binarize: torch.Generator | None = None) -> Batch:
        """Index `data` (and its target / domain B) into a prepared Batch on the device: gathered on the
        host, pinned and copied with non_blocking=True on CUDA; channels-last when the engine uses it.
        `binarize`: validation under binarize=dynamic, a Bernoulli draw from this generator."""
        dev, prep, pin = self.device, self.model.prepare, self.pin

        def take(t: Tensor | None, i: Tensor | slice | None) -> Tensor | None:
            if t is None or i is None:
                return None
            part = t[i]
            if pin and not part.is_cuda:
                part = part.pin_memory()
            return part.to(dev, non_blocking=True)

        x = self._layout(prep(take(data.x, idx)))
        target = y_target = None
        if data.target is not None:
            target = self._layout(prep(take(data.target, idx)))
        elif data.domain_b is not None:
            target = self._layout(prep(take(data.domain_b.x, idx_b)))
            y_target = take(data.domain_b.y, idx_b)
        if train or binarize is not None:
            x = self._transform(x, binarize)
            target = None if target is None else self._transform(target, binarize)
        return Batch(x, take(data.y, idx), target, y_target)

    def _layout(self, x: Tensor) -> Tensor:
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _transform(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """binarize=dynamic: a fresh Bernoulli draw of every pixel each time it is seen (Salakhutdinov &
        Murray 2008); static binarisation happens once on the dataset, before training."""
        if self.tc.binarize == "dynamic":
            return torch.bernoulli(x, generator=generator)
        return x

    def _all_batches(self, data: Dataset, binarize: torch.Generator | None = None) -> Iterator[Batch]:
        """Every example of `data` once, in order (domain B cycled alongside for an unpaired dataset).

        After each batch the heap's free pages go back to the system (`trim_memory`): a caller that keeps one
        small result per batch (an AE's codes in on_train_end) would otherwise pin the holes the batches' float
        copies leave, and private memory would grow with the dataset (+700 MB over a 210 MB folder, measured:
        docs/benchmarks.md, "Image-folder cache"); with it, a pass holds about one batch."""
        n, bs = len(data), self.tc.batch_size
        for i in range(0, n, bs):
            sl = slice(i, min(i + bs, n))
            idx_b = None
            if data.domain_b is not None:
                idx_b = torch.arange(sl.start, sl.stop) % len(data.domain_b)
            yield self._batch(data, sl, idx_b, binarize=binarize)
            trim_memory()

    # ---- the loop -------------------------------------------------------------------------------
    def fit(self) -> GenerativeModel:
        model, tc = self.model, self.tc
        t_start, wall0 = time.perf_counter(), self.run_info.get("wall_time_s", 0.0)
        self._acc: dict[str, Tensor] = {}
        self._cnt: dict[str, int] = {}
        t_log, self._images_log = time.perf_counter(), 0
        if self.dist.main and tc.progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                            desc=f"{model.model_type}", leave=True)
        model.train()
        model.rng = self.noise
        try:
            epoch = self.step // self.steps_per_epoch
            batches = self._epoch_batches(epoch, self.step % self.steps_per_epoch)
            while self.step < self.total_steps:
                self._train_step(batches)
                end_of_epoch = self.step % self.steps_per_epoch == 0
                if self.step % tc.log_every == 0 or self.step == self.total_steps:
                    self._check_finite()
                    now = time.perf_counter()
                    row = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                           "images_per_s": round(self._images_log * self.dist.world / max(now - t_log, 1e-9), 1)}
                    row.update({k: float(v) / self._cnt[k] for k, v in self._acc.items()})
                    row["lr"] = self.optimizers[0].param_groups[0]["lr"]
                    for cb in self.callbacks:
                        if hasattr(cb, "on_log"):
                            cb.on_log(self, row)
                    self._log(row)
                    self._acc, self._cnt, t_log, self._images_log = {}, {}, now, 0
                if self.out is not None and self.dist.main and tc.sample_every and self.step % tc.sample_every == 0:
                    self.save_preview()
                if end_of_epoch:
                    self._epoch_end()
                    if self.step < self.total_steps:
                        epoch += 1
                        batches = self._epoch_batches(epoch, 0)
                if self.step % tc.checkpoint_every == 0 and self.step < self.total_steps:
                    self._check_finite()  # never checkpoint weights a non-finite loss has touched
                    self.checkpoint(wall0 + time.perf_counter() - t_start)
            self._check_finite()
            self.loop_seconds = time.perf_counter() - t_start
            if self.bar is not None:
                self.bar.close()
            if self.channels_last:  # hand back the default layout: the trained model then computes bit for bit
                model.to(memory_format=torch.contiguous_format)  # what the same model loaded from disk does
            model.eval()
            if self.dist.main:  # once (rank 0); the final checkpoint broadcasts the result to every rank
                model.on_train_end(lambda: self._all_batches(self.train_data))
            model.train()
            wall = wall0 + time.perf_counter() - t_start
            self.checkpoint(wall, final=True)
        finally:
            model.rng = None
            if self.metrics is not None:
                self.metrics.close()
        model.eval()
        return model

    def _train_step(self, batches: Iterator[Batch]) -> None:
        """One step: every phase `repeat` times, then schedulers, EMA, step count. No host synchronisation:
        logged terms are accumulated as device tensors and a non-finite loss is only recorded (on the
        device) here; both are read at log steps."""
        model, tc, acc, cnt = self.model, self.tc, self._acc, self._cnt
        want_norms = (self.step + 1) % tc.log_every == 0
        last: Batch | None = None
        for pi, (phase, opt) in enumerate(zip(self.phases, self.optimizers)):
            if self.multi_phase:
                self._only_train(phase)
            scaler = self.scalers[pi]
            prefix = f"{phase.name}/" if self.multi_phase else ""
            for _ in range(phase.repeat):
                if phase.uses_data or last is None:
                    last = next(batches)
                    self._images_log += len(last.x)
                opt.zero_grad(set_to_none=True)
                with autocast(self.device, self.precision):
                    total, terms = phase.loss(last)
                self._record_finite(pi, total, terms)
                (total if scaler is None else scaler.scale(total)).backward()
                if self.dist.enabled:
                    D.average_gradients(phase.params, self.dist.world)
                if scaler is not None:
                    scaler.unscale_(opt)  # true gradients for clipping and the logged norm
                if tc.grad_clip is not None:
                    norm = torch.nn.utils.clip_grad_norm_(phase.params, tc.grad_clip)
                    if want_norms:
                        terms = {**terms, "grad_norm": norm}
                elif want_norms:
                    terms = {**terms, "grad_norm": _grad_norm(phase.params)}
                if scaler is None:
                    opt.step()
                else:
                    scaler.step(opt)
                    scaler.update()
                if phase.after_step is not None:
                    phase.after_step()
                if "loss" not in terms:
                    terms["loss"] = total
                for k, v in terms.items():
                    key = prefix + k
                    v = v.detach()
                    acc[key] = acc[key] + v if key in acc else v
                    cnt[key] = cnt.get(key, 0) + 1
            if self.multi_phase:
                self._only_train(None)
        for s in self.schedulers:
            if s is not None:
                s.step()
        ema = getattr(model, "ema", None)
        if ema is not None:
            ema.update()
        self.step += 1

    def _record_finite(self, pi: int, total: Tensor, terms: dict[str, Tensor]) -> None:
        """On the device, no sync: remember the first step whose loss is not finite and every term's value at
        that step (for the message _check_finite writes at the next log interval or checkpoint)."""
        fb = self._first_bad[pi]
        dev = total.device  # (a term may be a CPU constant, e.g. the VAE's beta: copied, not waited for)
        vals = [(v.detach().reshape(()) if v.numel() == 1 else v.detach().sum()).to(dev, non_blocking=True)
                for v in terms.values()]
        vals = torch.stack([*vals, total.detach()]).float()  # (terms + 1,)
        newly = (fb == _NEVER) & ~torch.isfinite(total.detach())
        self._first_bad[pi] = torch.where(newly, self.step + 1, fb)
        snaps, names = self._snap.setdefault(pi, {}), tuple(terms)
        snaps[names] = torch.where(newly, vals, snaps[names] if names in snaps else torch.zeros_like(vals))

    def _only_train(self, phase: Phase | None) -> None:
        """requires_grad only for this phase's parameters (None: all), so that e.g. a generator step does
        not compute the discriminator's weight gradients for nothing."""
        own = None if phase is None else {id(p) for p in phase.params}
        for p in self.all_params:
            p.requires_grad_(own is None or id(p) in own)

    # ---- non-finite losses ----------------------------------------------------------------------
    def _check_finite(self) -> None:
        """Read the device-side record of non-finite losses since the last check (one sync per log
        interval). Under torchrun every rank takes part (min over ranks), so a NaN on one rank stops every
        rank, all with the same message, and none is left waiting in an all_reduce."""
        first = torch.stack(self._first_bad)  # (phases,)
        if self.dist.enabled:
            torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
        lo = int(first.min())
        if lo >= _NEVER:
            self._checked_from = self.step + 1
            return
        mine = torch.stack(self._first_bad)
        pi = int(torch.argmin(mine)) if int(mine.min()) == lo else -1
        report = None
        if pi >= 0:  # the terms at that step: the first non-finite one (else the total) is named
            names, vals = next((n, v.tolist()) for n, v in self._snap[pi].items() if not math.isfinite(float(v[-1])))
            bad = [i for i, v in enumerate(vals[:-1]) if not math.isfinite(v)]
            term, value = (names[bad[0]], vals[bad[0]]) if bad else ("total", vals[-1])
            report = (lo, pi, self.dist.rank, term, self.phases[pi].name, value)
        if self.dist.enabled:
            reports = [r for r in D.gather_objects(report, self.dist.world) if r is not None]
            report = min(reports)
        step, _, rank, term, phase_name, value = report
        where = f" on rank {rank} of {self.dist.world}" if self.dist.enabled else ""
        msg = (f"step {step}: loss term {term!r} of phase {phase_name!r} is {value}{where} (found at the check "
               f"after steps {self._checked_from}-{self.step}); training stopped.")
        self._diverged(msg)

    def _diverged(self, msg: str) -> None:
        if self.out is not None:
            msg += f" The last good checkpoint is in {self.out} (step {self._last_ckpt_step()})."
            if self.dist.main:
                self._write_run_json(status="diverged", error=msg)
        if self.bar is not None:
            self.bar.close()
        raise TrainingDiverged(msg)

    def _last_ckpt_step(self) -> int:
        try:
            return int(R.load_state(self.out)["step"]) if self.out else 0
        except (FileNotFoundError, ValueError):
            return 0

    def warn(self, message: str) -> None:
        """Callbacks call this: printed once per distinct message and kept in run.json."""
        if message in self.warnings:
            return
        self.warnings.append(message)
        if self.dist.main:
            text = f"warning (step {self.step}): {message}"
            if self.bar is not None:
                self.bar.write(text)
            else:
                print(text, flush=True)

    def _log(self, row: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        if self.bar is not None:
            self.bar.update(self.step - self.bar.n)
            show = {k: f"{v:.4g}" for k, v in row.items() if k not in ("step", "lr") and isinstance(v, float)}
            self.bar.set_postfix(show, refresh=False)
        if self.metrics is not None:
            self.metrics.add(row)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean validation loss and terms on the test split, in the training precision. Under
        binarize=dynamic on binarised images (what the model trains on; a fixed draw, the same every epoch)."""
        if self.test_data is None:
            return {}
        self.model.eval()
        rng, self.model.rng = self.model.rng, None  # rank 0 only: keep the ranks' shared noise stream in step
        gen = None
        if self.tc.binarize == "dynamic":
            gen = torch.Generator(device=self.device)
            gen.manual_seed(self.tc.seed + 424_242)
        sums: dict[str, float] = {}
        n = 0
        try:
            for b in self._all_batches(self.test_data, binarize=gen):
                with autocast(self.device, self.precision):
                    total, terms = self.model.val_loss(b)
                w = len(b.x)
                sums["loss"] = sums.get("loss", 0.0) + float(total) * w
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * w
                n += w
        finally:
            self.model.rng = rng
            self.model.train()
        return {f"val/{k}": v / n for k, v in sums.items()}

    def _epoch_end(self) -> None:
        if self.dist.main and self.tc.validate:
            row = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), **self.validate()}
            self._log(row)
            self.run_info["last_validation"] = row
        for cb in self.callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(self)

    # ---- outputs ----------------------------------------------------------------------------------
    def save_preview(self) -> Path | None:
        if self.out is None:
            return None
        self.model.eval()
        rng, self.model.rng = self.model.rng, None  # the grid uses its own fixed generator
        try:
            imgs, nrow = self.model.preview(self.fixed, torch.Generator().manual_seed(self.tc.seed + 12345))
        except NotImplementedError:
            return None
        finally:
            self.model.rng = rng
            self.model.train()
        return save_grid(imgs.float().cpu(), self.out / R.SAMPLES / f"step_{self.step:06d}.png", nrow, scale=2)

    def checkpoint(self, wall: float, final: bool = False) -> None:
        rng_ranks = [self._rng_state()]
        if self.dist.enabled:  # BN running statistics etc. follow rank 0, as under DDP (at the end: everything)
            with torch.no_grad():
                tensors = list(self.model.parameters()) + list(self.model.buffers()) if final else \
                    list(self.model.buffers())
                for t in tensors:
                    torch.distributed.broadcast(t.data, 0)
            rng_ranks = D.gather_objects(rng_ranks[0], self.dist.world)
        if self.out is None or not self.dist.main:
            if final and self.dist.enabled:
                D.gather_strings(D.checksum(self.model), self.dist.world)
            return
        R.save_model(self.model, self.out, self.step)
        state = {
            "step": self.step,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() if s is not None else {} for s in self.schedulers],
            "rng": torch.get_rng_state(),
            "rng_ranks": [{k: v.cpu() for k, v in s.items()} for s in rng_ranks],
            "wall_time_s": wall,
        }
        if any(s is not None for s in self.scalers):
            state["scalers"] = [s.state_dict() if s is not None else {} for s in self.scalers]
        R.save_state(self.out, state)
        if final:
            if self.tc.sample_every == 0 or self.step % self.tc.sample_every:
                self.save_preview()
            if self.tc.gif:
                gif = write_gif(self.out / R.SAMPLES)
                if gif is None:
                    self.warn("gif=true but there are no sample grids to animate (samples/step_*.png); no "
                              "training.gif written")
                self.run_info["gif"] = None if gif is None else str(gif)
            if self.dist.enabled:
                sums = D.gather_strings(D.checksum(self.model), self.dist.world)
                self.run_info["distributed"] = {"world_size": self.dist.world, "weight_checksums": sums}
        self.run_info["wall_time_s"] = round(wall, 2)
        self._write_run_json(status="finished" if final else "running")

    def _write_run_json(self, status: str, **extra: Any) -> None:
        if self.out is None:
            return
        R.write_run_json(self.out, {
            **self.run_info, "status": status, "step": self.step, "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch, "train_config": asdict(self.tc),
            "warnings": self.warnings, **extra,
        })


def write_gif(folder: Path, ms_per_frame: int = 300) -> Path | None:
    """samples/step_*.png -> samples/training.gif (one frame per grid, in step order; atomic). None when there
    is no grid to animate (the caller says so)."""
    from PIL import Image

    from .._io import atomic_path

    paths = sorted(Path(folder).glob("step_*.png")) if Path(folder).is_dir() else []
    if not paths:
        return None
    frames = [Image.open(p).convert("P") for p in paths]
    out = Path(folder) / "training.gif"
    with atomic_path(out) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return out


def _grad_norm(params: list[torch.nn.Parameter]) -> Tensor:
    grads = [p.grad.detach().reshape(-1) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.cat(grads)) if grads else torch.zeros(())
