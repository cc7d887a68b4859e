"""Shared fixtures. Fast tests use bundled data (mnist-mini, digits); `slow` ones need $GENZOO_DATA."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests train tiny models: one thread is as fast as two for them and does not collapse when the machine is busy.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # for subprocesses (CLI, torchrun)
# folder caches and user classifiers ($GENZOO_HOME) go to a temp folder, not the user's ~/.cache/genzoo
os.environ.setdefault("GENZOO_HOME", __import__("tempfile").mkdtemp(prefix="genzoo-test-home-"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def full_data_root() -> Path | None:
    root = os.environ.get("GENZOO_DATA")
    for cand in ([Path(root)] if root else []) + [SHARED_DATA]:
        if (cand / "mnist" / "train-images-idx3-ubyte.gz").exists():
            return cand
    return None


@pytest.fixture
def mnist_root() -> Path:
    root = full_data_root()
    if root is None:
        pytest.skip("full MNIST not found: set GENZOO_DATA to a folder with mnist/ (CI sets ../shared/data)")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_train(tmp_path):
    """Train a registered model briefly on mnist-mini (or `data`) and return (model, run_dir)."""
    import genzoo

    def run(name: str, data: str = "mnist-mini", steps: int = 20, **settings):
        out = tmp_path / f"{name}-run"
        s = {"log_every": 5, "sample_every": 0, "progress": False, **settings}
        m = genzoo.train(name, data, out=out, settings=s, steps=steps, preset=s.pop("preset", "tiny"))
        return m, out

    return run


KILL_AT_RENAME = """
import os, signal, sys
import genzoo
calls = {"n": 0}
real_replace = os.replace
def replace(src, dst):
    # SIGKILL at the Nth rename (argv[3]) of a checkpoint file: its temp files are written, not yet renamed
    if str(dst).endswith(("model.safetensors", "training_state.pt")):
        calls["n"] += 1
        if calls["n"] == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)
os.replace = replace
genzoo.train("ae", "mnist-mini", out=sys.argv[1], preset="tiny", steps=int(sys.argv[2]),
             settings={"log_every": 5, "sample_every": 0, "progress": False, "batch_size": 64,
                       "checkpoint_every": 10})
"""


@pytest.fixture
def killed_at_rename():
    """Train a tiny AE (checkpoint every 10 steps) into `out` for `steps` steps in a subprocess that SIGKILLs itself
    at the `n`-th rename of model.safetensors / training_state.pt; returns the finished process."""
    import subprocess
    import sys

    def run(out, steps: int, n: int):
        return subprocess.run([sys.executable, "-c", KILL_AT_RENAME, str(out), str(steps), str(n)],
                              capture_output=True)

    return run
