"""genzoo: train, measure and explore autoencoders, VAEs and GANs with one API.

    import genzoo
    model = genzoo.train("vae", "mnist-mini", out="runs/vae", epochs=5)
    model = genzoo.load("runs/vae")
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import data  # noqa: E402
from .train import train  # noqa: E402  (the function shadows the subpackage name on purpose)
from .train.rundir import load  # noqa: E402


def models() -> list[str]:
    """Registered model names."""
    from .registry import names
    return names()


__all__ = ["__version__", "data", "load", "train", "models"]
