"""The engine and the run directory: determinism, resume, kill safety, divergence, schedules, torchrun."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import genzoo
from genzoo.models.base import Batch, GenerativeModel, ModelConfig, Phase
from genzoo.train import TrainingDiverged, rundir as R

FAST = {"log_every": 5, "sample_every": 0, "progress": False, "batch_size": 64}


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_layout_and_load(tmp_path):
    out = tmp_path / "run"
    m = genzoo.train("ae", "mnist-mini", out=out, preset="tiny", steps=30,
                     settings={**FAST, "sample_every": 10, "checkpoint_every": 10})
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "training_state.pt", "metrics.csv", "run.json", "samples"} <= names
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000010.png", "step_000020.png",
                                                                   "step_000030.png"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "ae" and cfg["genzoo_version"] == genzoo.__version__
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["seed"] == 0 and run["data"] == "mnist-mini"
    assert run["versions"]["torch"] == torch.__version__ and run["wall_time_s"] > 0
    rows = R.read_metrics(out)
    assert [int(r["step"]) for r in rows if r["loss"]] == [5, 10, 15, 20, 25, 30]
    # training loss falls and is finite
    first, last = float(rows[0]["loss"]), float([r for r in rows if r["loss"]][-1]["loss"])
    assert last < first
    # the training state loads without unpickling code
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert state["step"] == 30
    loaded = genzoo.load(out)
    x = loaded.prepare(genzoo.data.load("mnist-mini", "test").x[:8])
    assert torch.equal(loaded.reconstruct(x), m.reconstruct(x))


def test_same_seed_is_bitwise_repeatable_and_another_seed_is_not(tmp_path):
    runs = []
    for i, seed in enumerate((3, 3, 4)):
        out = tmp_path / f"r{i}"
        genzoo.train("ae", "mnist-mini", out=out, preset="tiny", steps=25, seed=seed, settings=FAST)
        runs.append(weights(out))
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


def test_resume_reaches_the_uninterrupted_result(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    settings = {**FAST, "checkpoint_every": 10, "lr_schedule": "cosine"}
    genzoo.train("ae", "mnist-mini", out=full, preset="tiny", steps=40, settings=settings)
    genzoo.train("ae", "mnist-mini", out=part, preset="tiny", steps=20, settings=settings)
    # resuming with a larger step budget continues from step 20 (cosine over the *new* total differs, so use
    # constant LR for the equality check below)
    full2, part2 = tmp_path / "full2", tmp_path / "part2"
    s2 = {**FAST, "checkpoint_every": 10}
    genzoo.train("ae", "mnist-mini", out=full2, preset="tiny", steps=40, settings=s2)
    genzoo.train("ae", "mnist-mini", out=part2, preset="tiny", steps=20, settings=s2)
    genzoo.train("ae", out=part2, resume=True, steps=40)
    assert same(weights(full2), weights(part2))
    rows = R.read_metrics(part2)
    assert [int(r["step"]) for r in rows if r["loss"]] == [5, 10, 15, 20, 25, 30, 35, 40]


def test_existing_run_is_not_overwritten(tmp_path):
    out = tmp_path / "r"
    genzoo.train("ae", out=out, preset="tiny", steps=5, settings=FAST)
    with pytest.raises(FileExistsError, match="--resume"):
        genzoo.train("ae", out=out, preset="tiny", steps=5, settings=FAST)




@pytest.mark.parametrize("die_at_rename", [3, 4])  # step-20 checkpoint: before the weights / the state rename
def test_sigkill_during_checkpoint_keeps_previous_checkpoint(tmp_path, die_at_rename, killed_at_rename):
    out = tmp_path / "run"
    p = killed_at_rename(out, 40, die_at_rename)
    assert p.returncode == -9, p.stderr.decode()[-2000:]
    state = torch.load(out / "training_state.pt", weights_only=True)
    assert state["step"] in (10, 20)
    genzoo.load(out)  # loadable
    # resume finishes, and reaches the uninterrupted run's weights
    genzoo.train("ae", out=out, resume=True)
    ref = tmp_path / "ref"
    genzoo.train("ae", "mnist-mini", out=ref, preset="tiny", steps=40, settings={**FAST, "checkpoint_every": 10})
    assert same(weights(out), weights(ref))
    assert not [q for q in out.rglob("*") if R.TEMP_MARK in q.name]


@dataclass(frozen=True)
class ExplodeConfig(ModelConfig):
    explode_at: int = 3


class Exploding(GenerativeModel):
    """A model whose 'recon' term becomes NaN at a chosen step (to test divergence handling)."""

    config_class = ExplodeConfig
    model_type = "exploding"

    def __init__(self, config):
        super().__init__(config)
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def phases(self):
        def loss(batch: Batch):
            self.calls += 1
            val = (self.w - 1).pow(2).sum()
            if self.calls >= self.config.explode_at:
                val = val * float("nan")
            return val, {"recon": val, "other": torch.ones(())}
        return [Phase("main", [self.w], loss, {"name": "sgd", "lr": 0.1})]


def test_nan_loss_stops_with_step_and_term_and_keeps_checkpoint(tmp_path, monkeypatch):
    from genzoo import registry
    monkeypatch.setitem(registry._MODELS, "exploding", registry.Entry("exploding", ExplodeConfig, Exploding, "x"))
    out = tmp_path / "run"
    model = Exploding(ExplodeConfig(image_shape=(1, 28, 28), explode_at=5))
    with pytest.raises(TrainingDiverged, match=r"step 5: loss term 'recon' of phase 'main' is nan.*step 4\)"):
        genzoo.train(model, "mnist-mini", out=out, steps=10, settings={**FAST, "checkpoint_every": 2})
    assert torch.load(out / "training_state.pt", weights_only=True)["step"] == 4
    assert json.loads((out / "run.json").read_text())["status"] == "diverged"


class LazyExploding(Exploding):
    """Logs a 'lazy' term only on odd calls (as a lazy penalty does) and makes it NaN at `explode_at`."""

    def phases(self):
        def loss(batch: Batch):
            self.calls += 1
            val = (self.w - 1).pow(2).sum()
            terms = {"recon": val}
            if self.calls % 2:
                lazy = val * float("nan") if self.calls == self.config.explode_at else val.detach() * 0
                val, terms["lazy"] = val + lazy, lazy
            return val, terms
        return [Phase("main", [self.w], loss, {"name": "sgd", "lr": 0.1})]


def test_nan_in_a_term_logged_on_some_steps_only_is_still_named(tmp_path, monkeypatch):
    # the bad step's values survive the steps after it whose term list differs
    from genzoo import registry
    monkeypatch.setitem(registry._MODELS, "lazy-exploding",
                        registry.Entry("lazy-exploding", ExplodeConfig, LazyExploding, "x"))
    model = LazyExploding(ExplodeConfig(image_shape=(1, 28, 28), explode_at=5))
    with pytest.raises(TrainingDiverged, match=r"step 5: loss term 'lazy' of phase 'main' is nan.*steps 1-8\)"):
        genzoo.train(model, "mnist-mini", out=tmp_path / "run", steps=10, settings={**FAST, "log_every": 8})


def test_cosine_schedule_follows_closed_form(tmp_path):
    out = tmp_path / "r"
    genzoo.train("ae", out=out, preset="tiny", steps=20, settings={**FAST, "lr_schedule": "cosine", "log_every": 1})
    rows = [r for r in R.read_metrics(out) if r.get("lr")]
    for r in rows:
        s = int(r["step"])
        assert float(r["lr"]) == pytest.approx(1e-3 * (1 + math.cos(math.pi * s / 20)) / 2, rel=1e-4, abs=1e-9)


def test_grad_clip_bounds_the_update(tmp_path):
    """With SGD(lr) and clipping at c, every parameter update has norm <= lr * c."""
    torch.manual_seed(0)
    m = genzoo.train("ae", preset="tiny", steps=1, settings={**FAST, "grad_clip": 1e-3, "optimizer": "sgd",
                                                                "lr": 1.0})
    torch.manual_seed(0)
    m0 = genzoo.train("ae", preset="tiny", steps=0 + 1, settings={**FAST, "grad_clip": 1e-3, "optimizer": "sgd",
                                                                  "lr": 0.0})
    delta = torch.cat([(a - b).flatten() for a, b in zip(m.parameters(), m0.parameters())])
    assert 0 < delta.norm().item() <= 1e-3 * (1 + 1e-5)


def test_dynamic_binarisation_gives_binary_batches():
    from genzoo.config import TrainConfig
    from genzoo.train import build_model
    from genzoo.train.engine import Trainer
    ds = genzoo.data.load("mnist-mini")
    t = Trainer(build_model("ae", ds, preset="tiny"), ds, TrainConfig(steps=1, binarize="dynamic",
                                                                      progress=False), None)
    b = next(t._epoch_batches(0, 0))
    assert set(b.x.unique().tolist()) <= {0.0, 1.0}
    # E[bernoulli(p)] = p: the mean over the batch matches the grey-level mean
    grey = ds.x.float().mean() / 255
    assert abs(b.x.mean().item() - grey.item()) < 0.02


def test_torchrun_two_processes_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "genzoo", "train", "ae", "--data", "mnist-mini", "--preset", "tiny", "--steps", "15",
           "--batch-size", "64", "--set", "progress=false", "--set", "sample_every=0", "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    info = json.loads((out / "run.json").read_text())["distributed"]
    assert info["world_size"] == 2
    a, b = info["weight_checksums"]
    assert a == b
    # and the rank-0 file on disk is that same model
    from genzoo.train.distributed import checksum
    assert checksum(genzoo.load(out)) == a


# ---- lr_schedule=linear: constant, then linear decay to 0 (pix2pix / CycleGAN) ------------------------------
def _train_stopped_after_checkpoint(monkeypatch, step: int, **train_kw) -> None:
    """Train a tiny AE on mnist-mini that stops (KeyboardInterrupt) right after its checkpoint at `step`."""
    from genzoo.train import engine
    real = engine.Trainer.checkpoint

    def stop(self, *a, **k):
        real(self, *a, **k)
        if self.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine.Trainer, "checkpoint", stop)
    with pytest.raises(KeyboardInterrupt):
        genzoo.train("ae", "mnist-mini", preset="tiny", **train_kw)
    monkeypatch.setattr(engine.Trainer, "checkpoint", real)


def _linear_lrs(out: Path) -> dict[int, float]:
    """The logged LR after step s: the rate step s + 1 trains at (metrics.csv keeps 6 significant digits)."""
    return {int(r["step"]): float(r["lr"]) for r in R.read_metrics(out) if r.get("lr")}


def _closed_form(s: int, start: int, end: int, lr: float = 1e-3) -> float:
    return lr * min(1.0, max(0.0, 1.0 - (s - start) / (end - start)))


@pytest.mark.parametrize("keys,start,end", [({}, 10, 20), ({"lr_decay_start": 0.25}, 5, 20),
                                            ({"lr_decay_start": 8, "lr_decay_steps": 6}, 8, 14),
                                            ({"lr_decay_steps": 5}, 0, 5)])
def test_linear_schedule_follows_the_closed_form(tmp_path, keys, start, end):
    """f(s) = 1 before the start, 1 - (s - start) / (end - start) after, 0 from the end on; the start a step,
    a fraction of the run, or (default) half of it; giving the decay keys alone selects the schedule."""
    out = tmp_path / "r"
    sched = {} if keys else {"lr_schedule": "linear"}
    genzoo.train("ae", out=out, preset="tiny", steps=20, settings={**FAST, "log_every": 1, **sched, **keys})
    assert json.loads((out / "run.json").read_text())["train_config"]["lr_schedule"] == "linear"
    rows = _linear_lrs(out)
    assert sorted(rows) == list(range(1, 21))
    for s, lr in rows.items():
        assert lr == pytest.approx(_closed_form(s, start, end), rel=1e-5, abs=1e-12), (s, lr)


def test_linear_schedule_resume_is_exact(tmp_path, monkeypatch):
    """A run stopped after its step-10 checkpoint and resumed to the same total equals the uninterrupted run
    bitwise (weights and LRs); so does one that stopped at its own end of 12 steps and is resumed to 20 when
    the decay's place does not depend on the total."""
    s = {**FAST, "lr_schedule": "linear", "lr_decay_start": 0.3, "log_every": 1, "checkpoint_every": 10}
    full, part = tmp_path / "full", tmp_path / "part"
    genzoo.train("ae", "mnist-mini", out=full, preset="tiny", steps=20, settings=s)
    _train_stopped_after_checkpoint(monkeypatch, 10, out=part, steps=20, settings=s)
    genzoo.train("ae", out=part, resume=True)
    assert same(weights(full), weights(part)) and _linear_lrs(full) == _linear_lrs(part)
    fixed = {**s, "lr_decay_start": 6, "lr_decay_steps": 10}
    full2, part2 = tmp_path / "full2", tmp_path / "part2"
    genzoo.train("ae", "mnist-mini", out=full2, preset="tiny", steps=20, settings=fixed)
    genzoo.train("ae", "mnist-mini", out=part2, preset="tiny", steps=12, settings=fixed)
    genzoo.train("ae", out=part2, resume=True, steps=20)
    assert same(weights(full2), weights(part2)) and _linear_lrs(full2) == _linear_lrs(part2)


def test_linear_schedule_finished_run_extended_is_refused_and_interrupted_one_replanned(tmp_path, monkeypatch):
    """A finished run has learning rate 0: resuming it to a larger total is refused and leaves the run as it
    was. An interrupted one resumed to a larger total keeps the factor it reached until the new plan's start,
    then falls linearly to 0 at the new end (closed form for a stop at step 15 of a 20-step run, decay from 10,
    resumed to 40 — new plan: decay from 20 to 40: f = f(15) = 1/2 up to step 20, then 1/2 (1 - (s - 20) / 20))."""
    s = {**FAST, "lr_schedule": "linear", "log_every": 1, "checkpoint_every": 5}
    done = tmp_path / "done"
    genzoo.train("ae", "mnist-mini", out=done, preset="tiny", steps=20, settings=s)
    before = {p.name: p.read_bytes() for p in done.iterdir() if p.is_file() and p.name != ".lock"}
    with pytest.raises(ValueError, match=r"reached learning rate 0 at step 20; resuming it to 40 steps"):
        genzoo.train("ae", out=done, resume=True, steps=40)
    assert {p.name: p.read_bytes() for p in done.iterdir() if p.is_file() and p.name != ".lock"} == before
    out = tmp_path / "r"
    _train_stopped_after_checkpoint(monkeypatch, 15, out=out, steps=20, settings=s)
    genzoo.train("ae", out=out, resume=True, steps=40)
    rows = _linear_lrs(out)
    assert sorted(rows) == list(range(1, 41))
    f15 = 1 - (15 - 10) / (20 - 10)
    for st in range(1, 16):
        assert rows[st] == pytest.approx(_closed_form(st, 10, 20), rel=1e-5, abs=1e-12)
    for st in range(15, 41):
        want = 1e-3 * f15 * min(1.0, 1 - (st - 20) / 20)
        assert rows[st] == pytest.approx(want, rel=1e-5, abs=1e-12), st


def test_linear_schedule_keys_are_checked():
    from genzoo.config import TrainConfig, from_dict
    with pytest.raises(ValueError, match=r"lr_decay_start=1.5: expected a step .* or a fraction"):
        from_dict(TrainConfig, {"lr_decay_start": "1.5"})
    with pytest.raises(ValueError, match=r"lr_decay_steps=0: expected an integer >= 1"):
        from_dict(TrainConfig, {"lr_decay_steps": "0"})
    with pytest.raises(ValueError, match=r"lr_schedule='cosine'; use lr_schedule=linear"):
        from_dict(TrainConfig, {"lr_schedule": "cosine", "lr_decay_start": "3"})
    assert from_dict(TrainConfig, {"lr_decay_start": "900", "lr_decay_steps": "900"}).lr_schedule == "linear"
