"""Make genzoo/data/mnist_mini.npz: a seeded, class-balanced real MNIST subset (10,000 train, 2,000 test).

Usage: GENZOO_DATA=../shared/data python scripts/make_mnist_mini.py
"""
import io
from pathlib import Path

import numpy as np

import genzoo.data as gd
from genzoo._io import write_bytes


def balanced(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    per = n // 10
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per, replace=False) for c in range(10)])
    return np.sort(idx)


def main() -> None:
    rng = np.random.default_rng(20261122)
    out = {}
    for split, n in (("train", 10_000), ("test", 2_000)):
        ds = gd.load("mnist", split)
        y = ds.y.numpy()
        idx = balanced(y, n, rng)
        out[f"x_{split}"] = ds.x.numpy()[idx, 0]
        out[f"y_{split}"] = y[idx].astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    path = write_bytes(Path(gd.__file__).parent / gd.sources.MINI_FILE, buf.getvalue())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
