"""Run-directory safety: foreign folders, the lock, consistent (config, weights), the first checkpoint, resume
rules, and input checks that fire before any work (issue 17)."""
from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import genzoo
from genzoo.cli import commands  # noqa: F401  (registers the commands)
from genzoo.cli._app import app
from genzoo.train import rundir as R

FAST = {"log_every": 5, "sample_every": 0, "progress": False, "batch_size": 64}
runner = CliRunner()


def gz(*args):
    return runner.invoke(app, [str(a) for a in args])


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def tiny(out, steps=10, **kw):
    return genzoo.train("ae", "mnist-mini", out=out, preset="tiny", steps=steps, settings={**FAST, **kw})


# ---- foreign folders and temp files ---------------------------------------------------------------------
def test_non_empty_folder_without_a_run_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "mine"
    (out / "samples").mkdir(parents=True)
    (out / "metrics.csv").write_text("my,own\n1,2\n")
    (out / "run.json").write_text('{"mine": true}')
    (out / "samples" / "holiday.png").write_bytes(b"not really")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError) as e:
        tiny(out)
    msg = str(e.value)
    assert "not empty and holds no genzoo run" in msg and "metrics.csv" in msg and "samples/" in msg
    assert "--out" in msg
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (out / "config.json").exists()


def test_empty_folder_and_genzoo_leftovers_are_accepted(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    (out / ".lock").write_text("")
    (out / f".x{R.TEMP_MARK}abc").write_text("")
    tiny(out, steps=2)
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_resume_removes_only_genzoo_temp_files(tmp_path):
    out = tmp_path / "r"
    tiny(out, steps=5)
    ours = out / f".model.safetensors{R.TEMP_MARK}k3j2h1"
    ours_sample = out / "samples" / f".step_000005.png{R.TEMP_MARK}zz"
    ours_sample.parent.mkdir(exist_ok=True)
    user = [out / ".notes.tmp", out / "draft.tmp", out / ".model.safetensors.abcd.tmp"]
    for p in (ours, ours_sample, *user):
        p.write_text("x")
    genzoo.train("ae", out=out, resume=True, steps=10)
    assert not ours.exists() and not ours_sample.exists()
    assert all(p.read_text() == "x" for p in user)


def test_atomic_writes_get_the_mode_open_would_give_and_keep_an_existing_files_mode(tmp_path):
    from genzoo._io import write_bytes
    umask = os.umask(0o022)
    os.umask(umask)
    # reference: what a plain open(..., "w") creates under the same umask
    (tmp_path / "plain").write_bytes(b"x")
    new = write_bytes(tmp_path / "grid.png", b"png")
    assert new.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(new, 0o640)
    write_bytes(new, b"png2")
    assert new.stat().st_mode & 0o777 == 0o640 and new.read_bytes() == b"png2"


# ---- the lock -------------------------------------------------------------------------------------------
HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from genzoo.train.rundir import RunLock
    with RunLock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_second_trainer_gets_an_error_naming_the_pid_and_a_dead_holder_frees_the_lock(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=rf"another genzoo process \(PID {p.pid}\)"):
            tiny(out, steps=2)
        assert not (out / "config.json").exists()  # nothing written by the refused trainer
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    tiny(out, steps=2)  # the kernel released the dead process's lock: no stale lock to clean
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_lock_is_held_while_training_and_released_after(tmp_path, monkeypatch):
    import fcntl
    out = tmp_path / "r"
    seen = {}
    from genzoo.train import engine

    real_fit = engine.Trainer.fit

    def fit(self):
        fd = os.open(out / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen["free_during"] = True
        except BlockingIOError:
            seen["free_during"] = False
        finally:
            os.close(fd)
        seen["pid"] = (out / ".lock").read_text().split()[0]
        return real_fit(self)

    monkeypatch.setattr(engine.Trainer, "fit", fit)
    tiny(out, steps=2)
    assert seen == {"free_during": False, "pid": str(os.getpid())}
    fd = os.open(out / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    os.close(fd)


# ---- consistent (config, weights) -----------------------------------------------------------------------
def test_weights_carry_the_hash_of_their_config(tmp_path):
    import hashlib
    from safetensors import safe_open
    out = tmp_path / "r"
    tiny(out, steps=2)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["config_sha256"] == hashlib.sha256((out / "config.json").read_bytes()).hexdigest()


def test_config_of_another_run_is_detected(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    tiny(a, steps=2)
    genzoo.train("ae", "mnist-mini", out=b, preset="tiny", steps=2, settings={**FAST, "latent_dim": 3})
    (a / "config.json").write_bytes((b / "config.json").read_bytes())
    with pytest.raises(ValueError, match="belong to different runs"):
        genzoo.load(a)


def test_weight_shape_mismatch_names_the_file_and_the_shapes(tmp_path):
    out = tmp_path / "r"
    tiny(out, steps=2)
    w = load_file(out / "model.safetensors")
    key = next(k for k, v in w.items() if v.ndim == 2)
    w[key] = torch.zeros(w[key].shape[0] + 1, w[key].shape[1])
    save_file(w, out / "model.safetensors")  # no config hash: as an older genzoo wrote
    with pytest.raises(ValueError) as e:
        genzoo.load(out)
    msg = str(e.value)
    assert str(out / "model.safetensors") in msg and key in msg and "config.json" in msg


def test_unknown_model_type_names_config_json(tmp_path):
    out = tmp_path / "r"
    tiny(out, steps=2)
    cfg = json.loads((out / "config.json").read_text())
    cfg["model_type"] = "nosuchmodel"
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config\.json: unknown model_type 'nosuchmodel'.*ae"):
        genzoo.load(out)


def test_training_state_missing_keys_and_pickles_are_clear_errors(tmp_path):
    out = tmp_path / "r"
    tiny(out, steps=2)
    state = torch.load(out / "training_state.pt", weights_only=True)
    del state["optimizers"], state["rng"]
    torch.save(state, out / "training_state.pt")
    with pytest.raises(ValueError, match=r"training_state\.pt: training state lacks key\(s\) optimizers, rng"):
        genzoo.train("ae", out=out, resume=True, steps=4)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    torch.save({"step": 1, "evil": Evil()}, buf)
    (out / "training_state.pt").write_bytes(buf.getvalue())
    with pytest.raises(ValueError) as e:
        genzoo.train("ae", out=out, resume=True, steps=4)
    assert "training_state.pt" in str(e.value) and "refuses" in str(e.value)
    assert "weights_only" not in str(e.value)


# ---- SIGKILL during the first checkpoint ----------------------------------------------------------------


@pytest.mark.parametrize("die_at_rename", [1, 2])
def test_sigkill_during_first_checkpoint_leaves_a_run_resumable_from_step_0(tmp_path, die_at_rename,
                                                                            killed_at_rename):
    out = tmp_path / "run"
    p = killed_at_rename(out, 20, die_at_rename)
    assert p.returncode == -9, p.stderr.decode()[-2000:]
    assert not (out / "training_state.pt").exists()
    assert json.loads((out / "run.json").read_text())["status"] == "started"
    # retraining says what happened and what to do
    with pytest.raises(FileExistsError, match=r"no checkpoint yet.*--resume to start it again from step 0"):
        genzoo.train("ae", "mnist-mini", out=out, preset="tiny", steps=20, settings=FAST)
    genzoo.train("ae", out=out, resume=True)
    assert not [q for q in out.rglob("*") if R.TEMP_MARK in q.name]
    ref = tmp_path / "ref"
    genzoo.train("ae", "mnist-mini", out=ref, preset="tiny", steps=20, settings={**FAST, "checkpoint_every": 10})
    assert same(load_file(out / "model.safetensors"), load_file(ref / "model.safetensors"))
    assert json.loads((out / "run.json").read_text())["step"] == 20


# ---- resume rules ---------------------------------------------------------------------------------------
def test_resume_with_another_dataset_is_refused(tmp_path):
    out = tmp_path / "r"
    tiny(out, steps=2)
    with pytest.raises(ValueError, match=r"--data 'digits'.*trained on 'mnist-mini'.*Drop --data"):
        genzoo.train("ae", "digits", out=out, resume=True, steps=4)
    genzoo.train("ae", "mnist-mini", out=out, resume=True, steps=4)  # the same dataset is fine
    r = gz("train", "ae", "--resume", "--out", out, "--data", "digits", "--steps", "6")
    assert r.exit_code == 2 and "--data 'digits'" in r.output


def test_resume_with_fewer_steps_than_done_is_refused(tmp_path):
    out = tmp_path / "r"
    tiny(out, steps=6)
    with pytest.raises(ValueError, match="already at step 6"):
        genzoo.train("ae", out=out, resume=True, steps=3)


def _lrs(out):
    return {int(r["step"]): float(r["lr"]) for r in R.read_metrics(out) if r.get("lr")}


def test_cosine_resume_of_a_finished_run_to_a_larger_total_is_refused(tmp_path):
    """The bug: resuming a finished 20-step cosine run to 40 steps restored T_max=20, so the LR climbed from 0
    back to 1e-3 at step 40 while run.json said 40 steps. A finished cosine run has reached learning rate 0:
    extending it is refused with a message, and the run is left as it was."""
    out = tmp_path / "r"
    s = {**FAST, "lr_schedule": "cosine", "log_every": 1, "checkpoint_every": 5}
    genzoo.train("ae", "mnist-mini", out=out, preset="tiny", steps=20, settings=s)
    rows = _lrs(out)
    for i in range(1, 21):
        assert rows[i] == pytest.approx(1e-3 * (1 + math.cos(math.pi * i / 20)) / 2, rel=1e-4, abs=1e-9)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    with pytest.raises(ValueError, match=r"ended at step 20 with learning rate 0; resuming it to 40 steps"):
        genzoo.train("ae", out=out, resume=True, steps=40)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before
    run = json.loads((out / "run.json").read_text())
    assert run["total_steps"] == 20 and run["step"] == 20


def test_cosine_resume_of_an_interrupted_run_decays_to_zero_at_the_new_total(tmp_path, monkeypatch):
    """A 20-step cosine run stopped after its step-10 checkpoint, resumed with --steps 40: from step 11 the LR
    decays monotonically, stays a real learning rate in between, and reaches ~0 exactly at step 40."""
    from genzoo.train import engine
    out = tmp_path / "r"
    s = {**FAST, "lr_schedule": "cosine", "log_every": 1, "checkpoint_every": 10}
    real = engine.Trainer.checkpoint

    def stop_after_first(self, *a, **k):
        real(self, *a, **k)
        if self.step == 10:
            raise KeyboardInterrupt  # as if killed right after the step-10 checkpoint

    monkeypatch.setattr(engine.Trainer, "checkpoint", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        genzoo.train("ae", "mnist-mini", out=out, preset="tiny", steps=20, settings=s)
    monkeypatch.setattr(engine.Trainer, "checkpoint", real)
    assert torch.load(out / "training_state.pt", weights_only=True)["step"] == 10
    genzoo.train("ae", out=out, resume=True, steps=40)
    rows = _lrs(out)
    assert sorted(rows) == list(range(1, 41))
    assert rows[10] == pytest.approx(0.5e-3, rel=1e-4)  # half-way down the 20-step plan when it stopped
    after = [rows[i] for i in range(11, 41)]
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:])), after
    assert after[-1] == pytest.approx(0.0, abs=1e-9)
    assert rows[30] > 0.05e-3 and rows[39] > 0  # still training after the old end (step 20)


# ---- input checks before any work -----------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--epochs", "-1"], "epochs=-1: expected an integer >= 1 (--epochs N"),
    (["--steps", "-5"], "steps=-5: expected an integer >= 1 (--steps N"),
    (["--steps", "0"], "steps=0: expected an integer >= 1"),
    (["--set", "checkpoint_every=0"], "checkpoint_every=0: expected an integer >= 1"),
    (["--set", "sample_every=-2"], "sample_every=-2: expected an integer >= 0"),
    (["--set", "log_every=0"], "log_every=0: expected an integer >= 1"),
])
def test_bad_training_numbers_fail_before_any_work(tmp_path, args, needle):
    out = tmp_path / "never"
    r = gz("train", "ae", "--preset", "tiny", "--out", out, *args)
    assert r.exit_code == 2 and needle in r.output, r.output
    assert "Traceback" not in r.output and "ZeroDivision" not in r.output
    assert not out.exists()


def test_unwritable_out_is_reported_up_front(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker / "run", Path("/proc/genzoo-cannot-write-here")):
        r = gz("train", "ae", "--preset", "tiny", "--steps", "2", "--out", out)
        assert r.exit_code == 2 and f"--out {out}: cannot" in r.output, r.output
        assert "PermissionError" not in r.output and "Traceback" not in r.output


def test_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("mine")
    r = gz("train", "ae", "--preset", "tiny", "--steps", "2", "--out", f)
    assert r.exit_code == 2 and "is not a folder" in r.output and f.read_text() == "mine"


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rd") / "ae"
    genzoo.train("ae", "mnist-mini", out=out, preset="tiny", steps=4, settings=FAST)
    return out


@pytest.mark.parametrize("n", ["0", "-3"])
def test_sample_and_reconstruct_need_a_positive_n(ae_run, tmp_path, n):
    for cmd in ("sample", "reconstruct"):
        r = gz(cmd, ae_run, "-n", n, "--out", tmp_path / "s.png")
        assert r.exit_code == 2 and f"-n {n}: expected the number" in r.output
        assert not (tmp_path / "s.png").exists()


def test_labels_for_an_unconditional_model_are_an_error(ae_run, tmp_path):
    r = gz("sample", ae_run, "-n", "4", "--labels", "3", "--out", tmp_path / "s.npy")
    assert r.exit_code == 2 and "unconditional ae model, which takes no class labels" in r.output
    assert not (tmp_path / "s.npy").exists()


def test_labels_out_of_range_for_a_conditional_model(tmp_path):
    out = tmp_path / "cvae"
    genzoo.train("cvae", "mnist-mini", out=out, preset="tiny", steps=2, settings=FAST)
    r = gz("sample", out, "-n", "2", "--labels", "10", "--out", tmp_path / "s.npy")
    assert r.exit_code == 2 and "class 10 is out of range" in r.output
    r = gz("sample", out, "-n", "2", "--labels", "3,7", "--out", tmp_path / "s.npy")
    assert r.exit_code == 0, r.output


def test_train_prints_only_files_it_wrote(tmp_path):
    out = tmp_path / "r"
    r = gz("train", "ae", "--preset", "tiny", "--steps", "2", "--out", out, "--set", "progress=false",
           "--set", "sample_every=0", "--set", "validate=false")
    assert r.exit_code == 0, r.output
    for line in r.output.splitlines():
        if line.startswith("wrote "):
            assert Path(line[6:]).exists(), line


def test_atomic_writes_follow_a_umask_changed_after_import(tmp_path):
    from genzoo._io import write_bytes
    old = os.umask(0o077)  # a process that tightens its umask after importing genzoo
    try:
        (tmp_path / "plain").write_bytes(b"x")
        new = write_bytes(tmp_path / "report.json", b"{}")
    finally:
        os.umask(old)
    assert new.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o600
