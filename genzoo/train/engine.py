"""The one training engine: runs the phases a model declares, for every model family.

A step runs each phase `repeat` times (a GAN: the discriminator k times, then the generator — the
lecture's Algorithm 1). Each phase execution draws its own batch when `uses_data` is set, so an epoch is
floor(batches per epoch / batches per step) steps, and the data order is a function of (seed, epoch) alone:
resuming from a checkpoint replays exactly the batches an uninterrupted run would see.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from ..config import TrainConfig
from ..data import Dataset
from ..images import save_grid
from ..models.base import Batch, GenerativeModel, Phase, make_optimizer
from . import distributed as D
from . import rundir as R


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step, phase and term."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """Runs `model`'s phases over `train_data`; writes the run directory `out` (rank 0 only)."""

    def __init__(self, model: GenerativeModel, train_data: Dataset, tc: TrainConfig, out: Path | None,
                 test_data: Dataset | None = None, dist_info: D.DistInfo | None = None,
                 resume_state: dict[str, Any] | None = None, run_info: dict[str, Any] | None = None):
        self.model, self.tc, self.out = model, tc, out
        self.dist = dist_info or D.DistInfo()
        self.device = model.device
        self.train_data, self.test_data = train_data, test_data
        self.phases: list[Phase] = model.phases()
        self.optimizers = [make_optimizer(p.params, p.optimizer) for p in self.phases]
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
        self.metrics = R.MetricsLog(out / R.METRICS, keep_until_step=None) if out and self.dist.main else None
        self.multi_phase = len(self.phases) > 1
        self.all_params = list(model.parameters())
        self.bar = None
        if resume_state is not None:
            self._restore(resume_state)
        # fixed inputs for the progress grids: the first test (else train) images, and a fixed noise seed
        ref = test_data if test_data is not None else train_data
        n_fixed = min(64, len(ref))
        self.fixed = self._batch(ref, slice(0, n_fixed),
                                 None if ref.domain_b is None else torch.arange(n_fixed) % len(ref.domain_b))

    # ---- set-up ---------------------------------------------------------------------------------
    def _scheduler(self, opt: torch.optim.Optimizer):
        if self.tc.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.total_steps))
        if self.tc.lr_schedule == "step":
            return torch.optim.lr_scheduler.StepLR(opt, self.tc.lr_step_size, self.tc.lr_gamma)
        return None

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"]):
            if sch is not None and s:
                sch.load_state_dict(s)
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"])
        self.run_info["wall_time_s"] = float(state.get("wall_time_s", 0.0))
        if self.metrics is not None:
            self.metrics = R.MetricsLog(self.out / R.METRICS, keep_until_step=self.step)

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
               train: bool = False) -> Batch:
        """Index `data` (and its target / domain B) into a prepared Batch on the device."""
        dev, prep = self.device, self.model.prepare

        def take(t: Tensor | None, i: Tensor | slice | None) -> Tensor | None:
            return None if t is None or i is None else t[i].to(dev, non_blocking=True)

        x = prep(take(data.x, idx))
        target = y_target = None
        if data.target is not None:
            target = prep(take(data.target, idx))
        elif data.domain_b is not None:
            target, y_target = prep(take(data.domain_b.x, idx_b)), take(data.domain_b.y, idx_b)
        if train:
            x = self._transform(x)
            target = None if target is None else self._transform(target)
        return Batch(x, take(data.y, idx), target, y_target)

    def _transform(self, x: Tensor) -> Tensor:
        """binarize=dynamic: a fresh Bernoulli draw of every pixel each time it is seen (Salakhutdinov &
        Murray 2008); static binarisation happens once on the dataset, before training."""
        if self.tc.binarize == "dynamic":
            return torch.bernoulli(x)
        return x

    def _all_batches(self, data: Dataset) -> Iterator[Batch]:
        """Every example of `data` once, in order (domain B cycled alongside for an unpaired dataset)."""
        n, bs = len(data), self.tc.batch_size
        for i in range(0, n, bs):
            sl = slice(i, min(i + bs, n))
            idx_b = None
            if data.domain_b is not None:
                idx_b = torch.arange(sl.start, sl.stop) % len(data.domain_b)
            yield self._batch(data, sl, idx_b)

    # ---- the loop -------------------------------------------------------------------------------
    def fit(self) -> GenerativeModel:
        model, tc = self.model, self.tc
        t_start, wall0 = time.perf_counter(), self.run_info.get("wall_time_s", 0.0)
        acc: dict[str, Tensor] = {}
        cnt: dict[str, int] = {}
        t_log, images_log = time.perf_counter(), 0
        if self.dist.main and tc.progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                            desc=f"{model.model_type}", leave=True)
        model.train()
        epoch = self.step // self.steps_per_epoch
        batches = self._epoch_batches(epoch, self.step % self.steps_per_epoch)
        while self.step < self.total_steps:
            want_norms = (self.step + 1) % tc.log_every == 0
            last: Batch | None = None
            for pi, (phase, opt) in enumerate(zip(self.phases, self.optimizers)):
                if self.multi_phase:
                    self._only_train(phase)
                for _ in range(phase.repeat):
                    if phase.uses_data or last is None:
                        last = next(batches)
                        images_log += len(last.x)
                    opt.zero_grad(set_to_none=True)
                    total, terms = phase.loss(last)
                    if not torch.isfinite(total):
                        self._diverged(phase, total, terms)
                    total.backward()
                    if self.dist.enabled:
                        D.average_gradients(phase.params, self.dist.world)
                    if tc.grad_clip is not None:
                        norm = torch.nn.utils.clip_grad_norm_(phase.params, tc.grad_clip)
                        if want_norms:
                            terms = {**terms, "grad_norm": norm}
                    elif want_norms:
                        terms = {**terms, "grad_norm": _grad_norm(phase.params)}
                    opt.step()
                    if phase.after_step is not None:
                        phase.after_step()
                    prefix = f"{phase.name}/" if self.multi_phase else ""
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
            end_of_epoch = self.step % self.steps_per_epoch == 0
            if self.step % tc.log_every == 0 or self.step == self.total_steps:
                now = time.perf_counter()
                row = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                       "images_per_s": round(images_log * self.dist.world / max(now - t_log, 1e-9), 1)}
                row.update({k: float(v) / cnt[k] for k, v in acc.items()})
                row["lr"] = self.optimizers[0].param_groups[0]["lr"]
                for cb in self.callbacks:
                    if hasattr(cb, "on_log"):
                        cb.on_log(self, row)
                self._log(row)
                acc, cnt, t_log, images_log = {}, {}, now, 0
            if self.out is not None and self.dist.main and tc.sample_every and self.step % tc.sample_every == 0:
                self.save_preview()
            if end_of_epoch:
                self._epoch_end()
                if self.step < self.total_steps:
                    epoch += 1
                    batches = self._epoch_batches(epoch, 0)
            if self.step % tc.checkpoint_every == 0 and self.step < self.total_steps:
                self.checkpoint(wall0 + time.perf_counter() - t_start)
        self.loop_seconds = time.perf_counter() - t_start
        if self.bar is not None:
            self.bar.close()
        model.eval()
        model.on_train_end(lambda: self._all_batches(self.train_data))
        model.train()
        wall = wall0 + time.perf_counter() - t_start
        self.checkpoint(wall, final=True)
        model.eval()
        return model

    def _only_train(self, phase: Phase | None) -> None:
        """requires_grad only for this phase's parameters (None: all), so that e.g. a generator step does
        not compute the discriminator's weight gradients for nothing."""
        own = None if phase is None else {id(p) for p in phase.params}
        for p in self.all_params:
            p.requires_grad_(own is None or id(p) in own)

    def _diverged(self, phase: Phase, total: Tensor, terms: dict[str, Tensor]) -> None:
        bad = [k for k, v in terms.items() if not torch.isfinite(v).all()] or ["total"]
        msg = (f"step {self.step + 1}: loss term {bad[0]!r} of phase {phase.name!r} is {float(total.detach())}; "
               f"training stopped.")
        if self.out is not None:
            msg += f" The last good checkpoint is in {self.out} (step {self._last_ckpt_step()})."
            if self.dist.main:
                self._write_run_json(status="diverged", error=msg)
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
            self.metrics.flush()

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.test_data is None:
            return {}
        self.model.eval()
        sums: dict[str, float] = {}
        n = 0
        for b in self._all_batches(self.test_data):
            total, terms = self.model.val_loss(b)
            w = len(b.x)
            sums["loss"] = sums.get("loss", 0.0) + float(total) * w
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * w
            n += w
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
        try:
            imgs, nrow = self.model.preview(self.fixed, torch.Generator().manual_seed(self.tc.seed + 12345))
        except NotImplementedError:
            return None
        finally:
            self.model.train()
        return save_grid(imgs.cpu(), self.out / R.SAMPLES / f"step_{self.step:06d}.png", nrow, scale=2)

    def checkpoint(self, wall: float, final: bool = False) -> None:
        if self.dist.enabled:  # BN running statistics etc. follow rank 0, as under DDP
            with torch.no_grad():
                for b in self.model.buffers():
                    torch.distributed.broadcast(b.data, 0)
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
            "wall_time_s": wall,
        }
        R.save_state(self.out, state)
        if final:
            if self.tc.sample_every == 0 or self.step % self.tc.sample_every:
                self.save_preview()
            if self.tc.gif:
                self.run_info["gif"] = str(write_gif(self.out / R.SAMPLES))
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


def write_gif(folder: Path, ms_per_frame: int = 300) -> Path:
    """samples/step_*.png -> samples/training.gif (one frame per grid, in step order; atomic)."""
    from PIL import Image

    from .._io import atomic_path

    frames = [Image.open(p).convert("P") for p in sorted(folder.glob("step_*.png"))]
    out = folder / "training.gif"
    with atomic_path(out) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return out


def _grad_norm(params: list[torch.nn.Parameter]) -> Tensor:
    grads = [p.grad.detach().reshape(-1) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.cat(grads)) if grads else torch.zeros(())
