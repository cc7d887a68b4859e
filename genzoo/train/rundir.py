"""The run directory: what `train` writes and everything else reads.

    config.json          model_type, genzoo_version and the model's config fields
    model.safetensors    the weights (and buffers); loading never unpickles code
    training_state.pt    model + optimizers + schedulers + step + RNG, loaded with weights_only=True
    metrics.csv          one row every log_every steps, validation rows at epoch ends
    samples/step_XXXXXX.png
    run.json             command, data, seed, versions, wall time, status

Every write is atomic (temp file + rename). Safety rules (docs/guide.md, "The run directory"):

- `train` refuses an `--out` that is not empty and holds no genzoo run (`inspect`), and checks up front that it
  can write there (`check_writable`).
- Training and resuming hold an exclusive lock on `RUN/.lock` (`RunLock`, fcntl.flock): a second trainer gets
  an error naming the PID that holds it; the kernel drops the lock when its process dies, so a killed run
  never leaves a stale lock.
- Readers see a consistent (config, weights) pair: model.safetensors carries the SHA-256 of the config.json
  bytes written with it (metadata `config_sha256`); `load` checks it.
- config.json and run.json (status "started", step 0) are written before the first step, so a run killed
  before or during its first checkpoint is a run without a checkpoint: `--resume` starts it again from step
  0 (same seed, so the same result as an uninterrupted run).
"""
from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .. import __version__, registry
from .._io import TEMP_MARK, is_temp, read_json, remove_temps, write_bytes, write_json, write_text
from ..config import from_dict, to_dict
from ..models.base import GenerativeModel

CONFIG, WEIGHTS, STATE, METRICS, RUN, SAMPLES = (
    "config.json", "model.safetensors", "training_state.pt", "metrics.csv", "run.json", "samples")
LOCK = ".lock"
STATE_KEYS = ("step", "model", "optimizers", "schedulers", "rng")
# what genzoo itself puts in a run directory (anything else there is the user's)
OWN_FILES = {CONFIG, WEIGHTS, STATE, METRICS, RUN, SAMPLES, LOCK, "metrics.json"}


def versions() -> dict[str, str]:
    return {"genzoo": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


# ---- what a directory holds ----------------------------------------------------------------------------
def is_run(run_dir: str | Path) -> bool:
    """True when `run_dir` holds a genzoo run: a config.json or run.json that genzoo wrote."""
    run_dir = Path(run_dir)
    for name, key in ((CONFIG, "genzoo_version"), (RUN, "versions")):
        try:
            obj = json.loads((run_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(obj, dict) and key in obj and (name == CONFIG and "model_type" in obj
                                                     or name == RUN and "genzoo" in (obj.get(key) or {})):
            return True
    return False


def inspect(run_dir: str | Path) -> str:
    """"new" (missing, empty, or only genzoo's lock / temp files), "run" (a genzoo run) or "foreign"."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return "new"
    if not run_dir.is_dir():
        return "foreign"
    if is_run(run_dir):
        return "run"
    return "foreign" if _user_entries(run_dir) else "new"


def _user_entries(run_dir: Path) -> list[str]:
    out = []
    for p in sorted(run_dir.iterdir()):
        if p.name == LOCK or is_temp(p):
            continue
        if p.name == SAMPLES and p.is_dir() and not any(q for q in p.iterdir() if not is_temp(q)):
            continue
        out.append(p.name + ("/" if p.is_dir() else ""))
    return out


def refuse_foreign(run_dir: Path) -> None:
    """A non-empty folder that is not a genzoo run: an error that says what is there and how to proceed."""
    if inspect(run_dir) != "foreign":
        return
    if not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir}: exists and is not a folder; choose another --out")
    items = _user_entries(run_dir)
    shown = ", ".join(items[:8]) + (f", ... ({len(items)} entries)" if len(items) > 8 else "")
    raise FileExistsError(f"--out {run_dir}: the folder is not empty and holds no genzoo run (it contains: "
                          f"{shown}); genzoo will not write over these files. Choose a new or empty --out, "
                          f"or move the files away")


def check_writable(run_dir: Path) -> None:
    """Create `run_dir` (and parents) and prove a file can be written there, before any work."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {run_dir}: cannot create the run directory ({e.strerror or e}); choose another "
                         f"--out") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=f".write-test{TEMP_MARK}")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ValueError(f"--out {run_dir}: cannot write into this folder ({e.strerror or e}); choose another "
                         f"--out or fix its permissions") from None


class RunLock:
    """Exclusive lock on RUN/.lock for the lifetime of a training process (fcntl.flock, non-blocking).

    The lock file holds the owner's PID (for the message a second trainer gets). flock belongs to the open
    file: when the owner exits or is killed, the kernel releases it, so there are no stale locks to clean."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            try:
                holder = self.path.read_text().split()[0]
            except (OSError, IndexError):
                holder = "unknown"
            raise RuntimeError(f"{self.path.parent}: another genzoo process (PID {holder}) is training into this "
                               f"run directory; wait for it to finish (or stop it), or choose another --out"
                               ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


# ---- config + weights ----------------------------------------------------------------------------------
def _config_text(model: GenerativeModel) -> str:
    cfg = {"model_type": model.model_type, "genzoo_version": __version__, **to_dict(model.config)}
    return json.dumps(cfg, indent=2) + "\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_config(model: GenerativeModel, run_dir: str | Path) -> Path:
    return write_text(Path(run_dir) / CONFIG, _config_text(model))


def save_model(model: GenerativeModel, run_dir: str | Path, step: int | None = None) -> list[Path]:
    """Write config.json, then model.safetensors carrying the SHA-256 of that config.json (atomically)."""
    run_dir = Path(run_dir)
    text = _config_text(model)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"model_type": model.model_type, "genzoo_version": __version__,
            "config_sha256": _sha(text.encode("utf-8"))}
    if step is not None:
        meta["step"] = str(step)
    return [write_text(run_dir / CONFIG, text), write_bytes(run_dir / WEIGHTS, st_save(tensors, metadata=meta))]


def _parse_config(path: Path, raw: bytes) -> tuple[registry.Entry, Any]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise ValueError(f"{path}: expected a JSON object with a 'model_type' field")
    data = dict(data)
    model_type = data.pop("model_type")
    try:
        entry = registry.get(model_type)
    except KeyError:
        raise ValueError(f"{path}: unknown model_type {model_type!r}; registered models: "
                         f"{', '.join(registry.names())} (was this run made by a newer genzoo or by a plug-in "
                         f"that is not installed?)") from None
    data.pop("genzoo_version", None)
    return entry, from_dict(entry.config_class, data, source=str(path))


def read_config(run_dir: str | Path) -> tuple[registry.Entry, Any]:
    path = Path(run_dir) / CONFIG
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such run directory")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (not a genzoo run directory?)") from None
    return _parse_config(path, raw)


def build(entry: registry.Entry, config: Any) -> GenerativeModel:
    return entry.model_class(config)


def _read_pair(run_dir: Path) -> tuple[bytes, bytes, dict[str, str]]:
    """config.json and model.safetensors bytes that belong together (the weights name their config's hash).
    A writer replaces both files while we read only in a race; read again, then give up with an error."""
    cpath, wpath = run_dir / CONFIG, run_dir / WEIGHTS
    for attempt in range(5):
        try:
            craw = cpath.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{cpath}: no such file (not a genzoo run directory?)") from None
        try:
            wraw = wpath.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{wpath}: no weights in this run directory (was training started? "
                                    f"a run without its first checkpoint can be continued with --resume)") from None
        meta = _weights_meta(wpath, wraw)
        want = meta.get("config_sha256")
        if want is None or want == _sha(craw):  # runs written before the hash existed carry none
            return craw, wraw, meta
        time.sleep(0.05 * (attempt + 1))
    raise ValueError(f"{wpath} was not written with {cpath} (the config hash differs): the two files belong to "
                     f"different runs; retrain, or restore the matching config.json")


def _weights_meta(path: Path, raw: bytes) -> dict[str, str]:
    """The safetensors header metadata (read without loading the tensors)."""
    try:
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n].decode("utf-8"))
        return dict(header.get("__metadata__") or {})
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{path}: not a safetensors file (corrupt header)") from None


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild a trained model from config.json + model.safetensors (no pickle), in eval mode."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    read_config(run_dir)  # a bad config.json is reported as such, before the pair check
    craw, wraw, _ = _read_pair(run_dir)
    entry, cfg = _parse_config(run_dir / CONFIG, craw)
    model = build(entry, cfg)
    path = run_dir / WEIGHTS
    try:
        state = st_load(wraw)
    except Exception as e:  # safetensors raises its own error type for corrupt headers
        raise ValueError(f"{path}: cannot read the weights ({e})") from None
    load_weights(model, state, path, run_dir / CONFIG)
    return model.to(device).eval()


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, config: Path) -> None:
    """load_state_dict with errors that name the file: missing / unexpected keys and shape mismatches."""
    own = model.state_dict()
    wrong = [f"{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError(f"{path}: weight shapes do not match the model described by {config}: "
                         f"{'; '.join(wrong[:5])}" + (f" (and {len(wrong) - 5} more)" if len(wrong) > 5 else ""))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model of {config}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")


# ---- training state ------------------------------------------------------------------------------------
def save_state(run_dir: Path, state: dict[str, Any]) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    return write_bytes(run_dir / STATE, buf.getvalue())


def remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete genzoo's temp files a killed process left behind (`.NAME.genzoo-tmp-XXXX`); the real files are
    intact. Other files (the user's own `.tmp` files included) are never touched."""
    return remove_temps(run_dir)


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e)
        if "weights_only" in msg or "Unsupported global" in msg or "pickle" in msg.lower():
            why = ("it holds Python objects other than tensors and plain data, which genzoo refuses to load "
                   "(unpickling them could run code)")
        else:
            why = f"not a readable checkpoint ({msg.splitlines()[0][:200] if msg else type(e).__name__})"
        raise ValueError(f"{path}: cannot read the checkpoint: {why}. Delete it and retrain, or resume from an "
                         f"intact copy") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a dict of training state, got {type(state).__name__}")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: training state lacks key(s) {', '.join(missing)} (expected {', '.join(STATE_KEYS)}"
                         f"); not a genzoo checkpoint, or written by another version")
    return state


def read_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    path = Path(run_dir) / METRICS
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_run_json(run_dir: Path, info: dict[str, Any]) -> Path:
    return write_json(run_dir / RUN, {"command": " ".join(sys.argv), "versions": versions(), **info})
