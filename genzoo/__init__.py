"""genzoo: train, measure and explore autoencoders, VAEs and GANs with one API."""
from __future__ import annotations

__version__ = "0.1.0"


def load(run_dir, device="cpu"):
    """Rebuild a trained model from a run directory (config.json + model.safetensors), in eval mode."""
    from .train.rundir import load as _load
    return _load(run_dir, device)


def train(model, data="mnist-mini", **kw):
    """Train a registered model (by name) or a built one; see `genzoo.train.train`."""
    from .train import train as _train
    return _train(model, data, **kw)


def models() -> list[str]:
    """Registered model names."""
    from .registry import names
    return names()


__all__ = ["__version__", "load", "train", "models"]
