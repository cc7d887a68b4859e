"""The run directory: what `train` writes and everything else reads.

    config.json          model_type, genzoo_version and the model's config fields
    model.safetensors    the weights (and buffers); loading never unpickles code
    training_state.pt    model + optimizers + schedulers + step + RNG, loaded with weights_only=True
    metrics.csv          one row every log_every steps, validation rows at epoch ends
    samples/step_XXXXXX.png
    run.json             command, data, seed, versions, wall time, status

Every write is atomic (temp file + rename).
"""
from __future__ import annotations

import csv
import io
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .. import __version__, registry
from .._io import read_json, write_bytes, write_json
from ..config import from_dict, to_dict
from ..models.base import GenerativeModel

CONFIG, WEIGHTS, STATE, METRICS, RUN, SAMPLES = (
    "config.json", "model.safetensors", "training_state.pt", "metrics.csv", "run.json", "samples")


def versions() -> dict[str, str]:
    return {"genzoo": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def save_model(model: GenerativeModel, run_dir: str | Path, step: int | None = None) -> list[Path]:
    """Write config.json and model.safetensors (atomically)."""
    run_dir = Path(run_dir)
    cfg = {"model_type": model.model_type, "genzoo_version": __version__, **to_dict(model.config)}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"model_type": model.model_type, "genzoo_version": __version__}
    if step is not None:
        meta["step"] = str(step)
    return [write_json(run_dir / CONFIG, cfg), write_bytes(run_dir / WEIGHTS, st_save(tensors, metadata=meta))]


def read_config(run_dir: str | Path) -> tuple[registry.Entry, Any]:
    path = Path(run_dir) / CONFIG
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such run directory")
    data = read_json(path)
    if not isinstance(data, dict) or "model_type" not in data:
        raise ValueError(f"{path}: expected a JSON object with a 'model_type' field")
    data = dict(data)
    entry = registry.get(data.pop("model_type"))
    data.pop("genzoo_version", None)
    return entry, from_dict(entry.config_class, data, source=str(path))


def build(entry: registry.Entry, config: Any) -> GenerativeModel:
    return entry.model_class(config)


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild a trained model from config.json + model.safetensors (no pickle), in eval mode."""
    run_dir = Path(run_dir)
    entry, cfg = read_config(run_dir)
    model = build(entry, cfg)
    path = run_dir / WEIGHTS
    try:
        state = st_load(path.read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no weights in this run directory (was training started?)") from None
    except Exception as e:  # safetensors raises its own error type for corrupt headers
        raise ValueError(f"{path}: cannot read the weights ({e})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model of {run_dir / CONFIG}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval()


def save_state(run_dir: Path, state: dict[str, Any]) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    return write_bytes(run_dir / STATE, buf.getvalue())


def remove_stale_temps(run_dir: Path) -> None:
    """Delete temp files a killed process left behind (`.NAME.xxxx.tmp`); the real files are intact."""
    for p in list(run_dir.glob(".*.tmp")) + list(run_dir.glob(f"{SAMPLES}/.*.tmp")):
        p.unlink(missing_ok=True)


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read the checkpoint ({e})") from None


class MetricsLog:
    """metrics.csv, kept in memory and rewritten atomically on each flush (the columns may grow)."""

    def __init__(self, path: Path, keep_until_step: int | None = None):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if keep_until_step is not None and path.exists():
            with open(path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= keep_until_step]

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def flush(self) -> None:
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: _fmt(v) for k, v in r.items()})
        write_bytes(self.path, buf.getvalue().encode())


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def read_metrics(run_dir: str | Path) -> list[dict[str, str]]:
    path = Path(run_dir) / METRICS
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_run_json(run_dir: Path, info: dict[str, Any]) -> Path:
    return write_json(run_dir / RUN, {"command": " ".join(sys.argv), "versions": versions(), **info})
