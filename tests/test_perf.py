"""The fast path (issue 16): precision, channels-last, compile checks, the sync-free step, metrics.csv append,
and the engine-level fixes of issue 17 (cosine re-planned on resume, binarised validation, gif without frames)."""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from safetensors.torch import load_file

import genzoo
from genzoo.config import TrainConfig
from genzoo.models.base import Batch
from genzoo.train import build_model
from genzoo.train import rundir as R
from genzoo.train.engine import CosineSchedule, NoiseSource, Trainer, check_compiler, write_gif
from genzoo.train.metrics_log import MetricsCSV
from genzoo.train.syncguard import forbid_host_syncs

FAST = {"log_every": 5, "sample_every": 0, "progress": False, "batch_size": 32}


def _trainer(name: str, steps: int = 3, preset: str = "tiny", model_kw: dict | None = None, **tc_kw) -> Trainer:
    ds = genzoo.data.load("mnist-mini")
    torch.manual_seed(0)
    model = build_model(name, ds, preset=preset, **(model_kw or {}))
    tc = TrainConfig(steps=steps, **{**FAST, "validate": False, **tc_kw})
    return Trainer(model, ds, tc, None)


# ---- precision ---------------------------------------------------------------------------------------------
def test_bf16_loss_agrees_with_fp32_within_a_percent_and_kl_stays_fp32():
    """Same weights, same batch: the bf16-autocast VAE loss is within 2% of the fp32 loss (bf16 keeps 8
    mantissa bits, ~0.4% per rounding; the layers' sums add a little), differs from it (autocast really ran),
    and the KL term is computed in fp32 as the code promises."""
    ds = genzoo.data.load("mnist-mini")
    torch.manual_seed(0)
    m = build_model("vae", ds, preset="tiny").train()
    x = m.prepare(ds.x[:64])
    torch.manual_seed(1)
    l32, t32 = m.loss(Batch(x))
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        l16, t16 = m.loss(Batch(x))
    assert l16.dtype == torch.float32 and t16["kl"].dtype == torch.float32 and t16["recon"].dtype == torch.float32
    l16, l32 = float(l16.detach()), float(l32.detach())
    rel = abs(l16 - l32) / abs(l32)
    assert 0 < rel < 0.02, rel
    assert abs(float(t16["kl"].detach()) - float(t32["kl"].detach())) / float(t32["kl"].detach()) < 0.05


def test_bf16_training_keeps_fp32_weights_and_optimizer_state_and_tracks_fp32():
    """Training 20 steps in bf16 follows the fp32 run's loss curve closely (within 3% at every log) while
    weights, gradients and Adam moments stay float32."""
    curves = {}
    for p in ("fp32", "bf16"):
        t = _trainer("vae", steps=20, precision=p, log_every=5)
        rows = []
        t._log = lambda row, rows=rows: rows.append(row)
        t.fit()
        curves[p] = [r["loss"] for r in rows]
        assert all(q.dtype == torch.float32 for q in t.model.parameters())
        st = t.optimizers[0].state
        assert all(s["exp_avg"].dtype == torch.float32 and s["exp_avg_sq"].dtype == torch.float32
                   for s in st.values())
    assert len(curves["fp32"]) == 4
    for a, b in zip(curves["fp32"], curves["bf16"]):
        assert abs(a - b) / abs(a) < 0.03, (curves)
    assert curves["fp32"] != curves["bf16"]


def test_fp32_default_path_is_bitwise_a_plain_pytorch_loop():
    """With default switches (fp32, channels_last auto -> off for an MLP, no compile) three engine steps give
    bitwise the weights of a plain loop: the documented batch order, model.loss, fused Adam."""
    ds = genzoo.data.load("mnist-mini")
    t = _trainer("ae", steps=3)
    assert t.precision == "fp32" and t.channels_last is False
    torch.manual_seed(0)
    ref = build_model("ae", ds, preset="tiny").train()
    ref.load_state_dict(t.model.state_dict())
    t.fit()
    opt = torch.optim.Adam(ref.parameters(), lr=ref.config.lr, betas=ref.config.betas, fused=True)
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0 * 100_003 + 0))
    for i in range(3):
        x = ref.prepare(ds.x[perm[i * 32:(i + 1) * 32]])  # uint8 -> [0, 1]
        opt.zero_grad(set_to_none=True)
        ref.loss(Batch(x))[0].backward()
        opt.step()
    for (k, a), b in zip(t.model.named_parameters(), ref.parameters()):  # (buffers: on_train_end's code fit)
        assert torch.equal(a, b), k


def test_channels_last_conv_ae_matches_contiguous_within_float_tolerance():
    runs = {}
    for cl in (False, True):
        t = _trainer("ae", steps=4, model_kw={"arch": "conv", "hidden": (8, 16), "latent_dim": 8},
                     channels_last=cl)
        assert t.channels_last is cl
        t.fit()
        runs[cl] = {k: v.contiguous() for k, v in t.model.state_dict().items()}
    conv_w = [k for k, v in runs[True].items() if v.ndim == 4]
    assert conv_w
    for k in runs[False]:
        assert torch.allclose(runs[False][k].float(), runs[True][k].float(), rtol=1e-4, atol=1e-5), k


def test_channels_last_auto_is_on_for_cpu_conv_models_only():
    assert _trainer("dcgan", steps=1).channels_last is True
    assert _trainer("ae", steps=1, model_kw={"arch": "conv", "hidden": (8, 16)}).channels_last is True
    assert _trainer("vae", steps=1).channels_last is False  # an MLP


def test_precision_round_trips_through_config_and_run_json(tmp_path):
    out = tmp_path / "r"
    genzoo.train("vae", "mnist-mini", out=out, preset="tiny", steps=4, settings={**FAST, "precision": "bf16"})
    info = json.loads((out / "run.json").read_text())
    assert info["train_config"]["precision"] == "bf16" and info["precision"] == "bf16"
    assert info["channels_last"] is False and info["compile"] is False
    genzoo.train("vae", out=out, resume=True, steps=8)  # the resumed run keeps the run's precision
    info = json.loads((out / "run.json").read_text())
    assert info["precision"] == "bf16" and info["step"] == 8
    assert TrainConfig(**{**info["train_config"]}).precision == "bf16"


def test_bad_precision_and_fp16_on_cpu_are_clear_errors():
    with pytest.raises(ValueError, match=r"precision='fp8'.*fp32, bf16, fp16"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match=r"channels_last='maybe'"):
        TrainConfig(channels_last="maybe")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device.*bf16"):
        _trainer("vae", steps=1, precision="fp16", device="cpu")


def test_compile_without_a_cxx_compiler_says_so(monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"C\+\+ compiler.*compile=false"):
        check_compiler(torch.device("cpu"))
    with pytest.raises(RuntimeError, match=r"C\+\+ compiler"):
        _trainer("vae", steps=1, compile=True)


# ---- the sync-free step ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", [("ae", {}), ("vae", {}), ("cvae", {}), ("gan", {}), ("wgan-gp", {"arch": "mlp"}),
                                     ("dcgan", {}), ("vae", {"__precision": "bf16"}), ("sagan", {}), ("biggan", {}),
                                     ("progan", {}), ("gan", {"instance_noise": 0.1, "instance_noise_steps": 5})])
def test_step_calls_no_synchronising_method(name, kw):
    """Between log steps, Trainer._train_step (the whole step: batch, every phase's loss, backward,
    optimizer, schedulers, EMA) calls none of the tensor methods that wait for a GPU: on CPU we make them raise
    while a step runs. (On CUDA, test_cuda_step_has_no_sync_under_sync_debug_mode checks the device itself.)"""
    precision = kw.pop("__precision", "fp32")
    t = _trainer(name, steps=7, model_kw=kw, log_every=3, precision=precision, lr_schedule="cosine",
                 grad_clip=1.0)
    with forbid_host_syncs():
        t.fit()
    assert t.step == 7


def test_the_sync_guard_catches_a_step_that_reads_a_value_and_restores_the_methods():
    """The guard is not vacuous: a loss that calls .item() inside the step raises HostSync naming the method;
    outside a step (and after the guard) the methods work."""
    from genzoo.train.syncguard import HostSync
    t = _trainer("ae", steps=3, log_every=3)
    loss = t.phases[0].loss

    def reads(batch):
        total, terms = loss(batch)
        total.detach().item()  # a host read: waits for the device on a GPU
        return total, terms

    t.phases[0].loss = reads
    with forbid_host_syncs(), pytest.raises(HostSync, match=r"Tensor\.item called inside a training step"):
        t.fit()
    assert torch.tensor(2.5).item() == 2.5 and int(torch.tensor(3)) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device in this environment: the CPU test "
                    "above checks the step's code path instead (torch.cuda.set_sync_debug_mode needs CUDA)")
def test_cuda_step_has_no_sync_under_sync_debug_mode(monkeypatch):
    """On a GPU: every step of a DCGAN and a VAE in bf16 runs under torch.cuda.set_sync_debug_mode("error")."""
    ds = genzoo.data.load("mnist-mini")
    step = Trainer._train_step

    def guarded(self, batches):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return step(self, batches)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(Trainer, "_train_step", guarded)
    for name, precision in (("dcgan", "fp32"), ("vae", "bf16")):
        torch.manual_seed(0)
        model = build_model(name, ds, preset="tiny").cuda()
        t = Trainer(model, ds, TrainConfig(steps=7, **{**FAST, "log_every": 3, "validate": False},
                                           precision=precision), None)
        t.fit()
        assert t.step == 7


def test_nan_is_found_at_the_next_check_and_names_the_first_bad_step(tmp_path):
    """NaN from step 3 on; log_every 10, checkpoint every 4: the check before the step-4 checkpoint stops the
    run naming step 3, and the last checkpoint (step 0: none) is not overwritten with NaN weights."""
    from genzoo.train import TrainingDiverged
    t = _trainer("vae", steps=20, log_every=10, checkpoint_every=4)
    loss = t.phases[0].loss
    calls = {"n": 0}

    def bad(batch):
        calls["n"] += 1
        total, terms = loss(batch)
        if calls["n"] >= 3:
            terms = {**terms, "kl": terms["kl"] * float("nan")}
            total = total * float("inf")
        return total, terms

    t.phases[0].loss = bad
    with pytest.raises(TrainingDiverged, match=r"step 3: loss term 'kl' of phase 'vae' is nan.*steps 1-4"):
        t.fit()
    assert t.step == 4


def test_noise_source_ranks_draw_the_rows_of_the_global_batch():
    one = NoiseSource(torch.device("cpu"), 7)
    full = one.randn(6, 3)
    ranks = [NoiseSource(torch.device("cpu"), 7, rank=r, world=2) for r in (0, 1)]
    parts = [r.randn(3, 3) for r in ranks]
    ref = torch.randn(6, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(full, ref)
    assert torch.equal(parts[0], ref[0::2]) and torch.equal(parts[1], ref[1::2])


def test_noise_generator_state_is_checkpointed_and_resume_matches(tmp_path):
    """A GAN (z drawn from the engine's device generator) resumed from step 6 ends bitwise where the
    uninterrupted run ends."""
    s = {**FAST, "checkpoint_every": 6}
    genzoo.train("gan", "mnist-mini", out=tmp_path / "full", preset="tiny", steps=12, settings=s)
    genzoo.train("gan", "mnist-mini", out=tmp_path / "part", preset="tiny", steps=6, settings=s)
    state = torch.load(tmp_path / "part" / "training_state.pt", weights_only=True)
    assert "noise" in state["rng_ranks"][0]
    genzoo.train("gan", out=tmp_path / "part", resume=True, steps=12)
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "part" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---- metrics.csv -------------------------------------------------------------------------------------------
def test_metrics_csv_appends_and_widens_the_header_once(tmp_path):
    path = tmp_path / "metrics.csv"
    m = MetricsCSV(path)
    m.add({"step": 1, "loss": 0.5})
    ino = path.stat().st_ino
    m.add({"step": 2, "loss": 0.25})
    assert path.stat().st_ino == ino  # appended, not replaced
    m.add({"step": 2, "val/loss": 0.75})  # a new column: one rewrite with the wider header
    m.add({"step": 3, "loss": 0.125})
    m.close()
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == ["step", "loss", "val/loss"]
    assert [(r["step"], r["loss"], r["val/loss"]) for r in rows] == [
        ("1", "0.5", ""), ("2", "0.25", ""), ("2", "", "0.75"), ("3", "0.125", "")]


def test_torn_last_line_and_rows_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n1,0.5\n2,0.4\n3,0.3\n4,0.")  # killed mid-row
    MetricsCSV(path, keep_until_step=2).close()
    assert path.read_text() == "step,loss\n1,0.5\n2,0.4\n"


KILL = textwrap.dedent("""
    import sys, genzoo
    genzoo.train("ae", "mnist-mini", out=sys.argv[1], preset="tiny", steps=100000,
                 settings={"log_every": 1, "sample_every": 0, "progress": False, "batch_size": 16,
                           "checkpoint_every": 20, "validate": False})
""")


def test_metrics_csv_survives_kill_9_and_resume_continues_it(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", KILL, str(out)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (out / "training_state.pt").exists() and (out / "metrics.csv").exists() \
                    and (out / "metrics.csv").read_text().count("\n") > 45:
                break
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait(timeout=30)
    assert p.returncode == -9, p.stderr.read().decode()[-2000:]
    text = (out / "metrics.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    header = rows[0]
    complete = [r for r in rows[1:] if len(r) == len(header)]
    assert len(complete) >= len(rows) - 2  # at most a torn last line
    steps = [int(r[0]) for r in complete]
    assert steps == list(range(1, len(steps) + 1))
    ckpt = int(torch.load(out / "training_state.pt", weights_only=True)["step"])
    genzoo.train("ae", out=out, resume=True, steps=ckpt + 5)
    after = R.read_metrics(out)
    assert [int(r["step"]) for r in after] == list(range(1, ckpt + 6))
    assert all(r["loss"] not in ("", None) for r in after)


# ---- issue 17: engine-level fixes ----------------------------------------------------------------------------
def test_cosine_schedule_resumed_with_a_larger_total_decays_monotonically_to_zero():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    s = CosineSchedule(opt, 10)
    lrs = []
    for _ in range(6):
        s.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[-1] == pytest.approx((1 + math.cos(math.pi * 6 / 10)) / 2)
    opt2 = torch.optim.SGD([p], lr=1.0)
    s2 = CosineSchedule(opt2, 30)  # resumed at step 6 with a new total of 30
    s2.load_state_dict(s.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[-1])
    for _ in range(24):
        s2.step()
        lrs.append(opt2.param_groups[0]["lr"])
    assert all(a > b for a, b in zip(lrs, lrs[1:-1])) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    s3 = CosineSchedule(torch.optim.SGD([p], lr=1.0), 10)  # same total: the same segment, same LRs
    s3.load_state_dict(s.state_dict())
    s3.step()
    assert s3.opt.param_groups[0]["lr"] == (1 + math.cos(math.pi * 7 / 10)) / 2


def test_validation_under_dynamic_binarisation_sees_binary_images_the_same_each_time():
    ds = genzoo.data.load("mnist-mini")
    t = Trainer(build_model("vae", ds, preset="tiny"), ds, TrainConfig(steps=1, binarize="dynamic", progress=False),
                None, test_data=genzoo.data.load("mnist-mini", "test"))
    seen = []
    real = t.model.val_loss
    t.model.val_loss = lambda b: (seen.append(b.x.clone()), real(b))[1]
    v1 = t.validate()
    first = torch.cat(seen)
    seen.clear()
    v2 = t.validate()
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(first, torch.cat(seen)) and set(v1) == set(v2)


def test_write_gif_without_frames_returns_none(tmp_path):
    assert write_gif(tmp_path / "samples") is None
    (tmp_path / "samples").mkdir()
    assert write_gif(tmp_path / "samples") is None


# ---- sample / evaluate --precision -------------------------------------------------------------------------
def test_sample_and_evaluate_take_precision(tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401  (registers the commands)
    from genzoo.cli._app import app
    run = tmp_path / "vae"
    genzoo.train("vae", "mnist-mini", out=run, preset="tiny", steps=30, settings=FAST)
    runner = CliRunner()
    imgs = {}
    for p in ("fp32", "bf16"):
        r = runner.invoke(app, ["sample", str(run), "-n", "16", "--out", str(tmp_path / f"{p}.npy"), "--precision", p])
        assert r.exit_code == 0, r.output
        imgs[p] = np.load(tmp_path / f"{p}.npy").astype(np.int16)
    diff = np.abs(imgs["fp32"] - imgs["bf16"])
    assert 0 < diff.max() <= 12 and diff.mean() < 1.0  # the same samples, decoded in bf16 (8-bit mantissa)
    r = runner.invoke(app, ["sample", str(run), "-n", "4", "--out", str(tmp_path / "x.npy"), "--precision", "fp16"])
    assert r.exit_code != 0 and "CUDA" in r.output
    r = runner.invoke(app, ["evaluate", str(run), "--metrics", "mse", "--n", "200", "--precision", "bf16",
                            "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["precision"] == "bf16" and m["run"] == str(run) and m["metrics"]["mse"] > 0


def test_steady_heap_reuses_the_pages_of_large_tensors_freed_every_step():
    """`steady_heap()` (what the batch commands set): a loop that allocates and frees two 28 MB tensors per step
    faults their pages in about once, where glibc's defaults trim the heap and fault them in again; counted by the
    kernel (minor page faults, getrusage) in a fresh process each way."""
    import subprocess
    import sys
    code = """
import resource, sys, torch
if sys.argv[1] == "steady":
    from genzoo._memory import steady_heap
    assert steady_heap()
n = (28 << 20) // 4
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = torch.ones(n); b = torch.ones(n)
    del a, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {m: int(subprocess.run([sys.executable, "-c", code, m], capture_output=True, text=True, check=True)
                     .stdout) for m in ("default", "steady")}
    pages = 2 * (28 << 20) // 4096  # one step's two tensors
    assert faults["steady"] < 2 * pages < faults["default"], faults
