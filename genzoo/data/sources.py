"""Built-in dataset sources: mnist, fashion-mnist, cifar10, digits, mnist-mini, folder:PATH."""
from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from . import Dataset, register_source
from .idx import DataError, read_bytes, read_idx

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _find(folders: list[Path], stem: str) -> Path | None:
    for d in folders:
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def _idx_dataset(name: str, split: str, root: Path, download: bool, classes: list[str],
                 extra: tuple[Path, ...] = ()) -> Dataset:
    folders = [root / name, *extra]
    img_stem, lbl_stem = IDX_FILES[split]
    img, lbl = _find(folders, img_stem), _find(folders, lbl_stem)
    if (img is None or lbl is None) and download:
        from .fetch import fetch
        fetch(name, root)
        img, lbl = _find(folders, img_stem), _find(folders, lbl_stem)
    if img is None or lbl is None:
        missing = [s + ".gz" for s, p in ((img_stem, img), (lbl_stem, lbl)) if p is None]
        raise DataError(
            f"{name}: {', '.join(missing)} not found in {' or '.join(map(str, folders))}. "
            f"Run `genzoo data fetch {name}` (needs network), or place the IDX files in {root / name}/ "
            f"(set $GENZOO_DATA or pass root= to use another folder)."
        )
    x, y = read_idx(img), read_idx(lbl)
    if x.ndim != 3:
        raise DataError(f"{img}: expected an image file of shape (N, H, W), got shape {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{lbl}: expected a label file of shape (N,), got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{lbl}: {len(y)} labels do not match the {len(x)} images of {img}")
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(f"{lbl}: labels must lie in 0..{len(classes) - 1}, found {y.min()}..{y.max()}")
    return Dataset(name, split, torch.from_numpy(x.astype(np.uint8)).unsqueeze(1),
                   torch.from_numpy(y.astype(np.int64)), classes, {"files": [str(img), str(lbl)]})


@register_source("mnist", "MNIST handwritten digits, 60,000/10,000, 1x28x28", files=(
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz"))
def load_mnist(split: str, root: Path, download: bool = False) -> Dataset:
    return _idx_dataset("mnist", split, root, download, MNIST_CLASSES)


@register_source("fashion-mnist", "Fashion-MNIST clothing, 60,000/10,000, 1x28x28 (also found in Debian's "
                 "dataset-fashion-mnist)", files=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))
def load_fashion(split: str, root: Path, download: bool = False) -> Dataset:
    return _idx_dataset("fashion-mnist", split, root, download, FASHION_CLASSES, extra=(DEBIAN_FASHION,))


@register_source("cifar10", "CIFAR-10 (binary release), 50,000/10,000, 3x32x32",
                 files=("data_batch_1.bin ... data_batch_5.bin", "test_batch.bin"))
def load_cifar10(split: str, root: Path, download: bool = False) -> Dataset:
    folders = [root / "cifar10", root / "cifar10" / "cifar-10-batches-bin", root / "cifar-10-batches-bin"]
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]

    def locate() -> list[Path] | None:
        for d in folders:
            if all((d / n).is_file() for n in names):
                return [d / n for n in names]
        return None

    files = locate()
    if files is None and download:
        from .fetch import fetch
        fetch("cifar10", root)
        files = locate()
    if files is None:
        raise DataError(f"cifar10: {', '.join(names)} not found in {folders[0]}. Run `genzoo data fetch cifar10` "
                        f"or extract cifar-10-binary.tar.gz into {folders[0]}/")
    xs, ys = [], []
    for f in files:
        raw = np.frombuffer(read_bytes(f), dtype=np.uint8)
        if raw.size % 3073:
            raise DataError(f"{f}: {raw.size} bytes is not a whole number of 3073-byte CIFAR-10 records")
        rec = raw.reshape(-1, 3073)
        if rec[:, 0].max(initial=0) > 9:
            raise DataError(f"{f}: label byte {rec[:, 0].max()} out of range 0..9 (not a CIFAR-10 binary file?)")
        ys.append(rec[:, 0].astype(np.int64))
        xs.append(rec[:, 1:].reshape(-1, 3, 32, 32))
    return Dataset("cifar10", split, torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)),
                   CIFAR_CLASSES, {"files": [str(f) for f in files]})


@register_source("digits", "scikit-learn's 8x8 digits (1,797 images; 1,438 train / 359 test, seeded split)")
def load_digits(split: str, root: Path, download: bool = False) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8), 0..16 -> 0..255
    perm = np.random.default_rng(0).permutation(len(x))
    n_train = int(round(0.8 * len(x)))
    idx = perm[:n_train] if split == "train" else perm[n_train:]
    return Dataset("digits", split, torch.from_numpy(x[idx]), torch.from_numpy(d.target[idx].astype(np.int64)),
                   MNIST_CLASSES)


MINI_FILE = "mnist_mini.npz"


@register_source("mnist-mini", "a real MNIST subset shipped with genzoo: 10,000 train / 2,000 test, 1x28x28")
def load_mnist_mini(split: str, root: Path, download: bool = False) -> Dataset:
    with resources.files("genzoo.data").joinpath(MINI_FILE).open("rb") as f:
        z = np.load(f)
        x, y = z[f"x_{split}"], z[f"y_{split}"]
    return Dataset("mnist-mini", split, torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y.astype(np.int64)),
                   MNIST_CLASSES)


# ---- folder:PATH ---------------------------------------------------------------------------------------
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def load_folder(path: str, split: str = "train", size: int | tuple[int, int] | None = None,
                channels: int | None = None, test_fraction: float = 0.1) -> Dataset:
    """Images under PATH (PNG/JPEG). Class sub-folders become labels. `PATH/train` and `PATH/test`, when both
    exist, are the splits; otherwise a fixed hash of each file name puts `test_fraction` of them in test.
    Every image is resized to `size` (int or (H, W)), else to the first image's size; `channels` 1 or 3,
    else taken from the first image."""
    from PIL import Image, UnidentifiedImageError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / split if split_dirs else root
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not split_dirs:
        files = [p for p in files if _in_test(p.relative_to(root), test_fraction) == (split == "test")]
    if not files:
        raise DataError(f"{base}: no PNG/JPEG images found" + ("" if split_dirs else f" for split {split!r}"))
    class_names = sorted({p.relative_to(base).parts[0] for p in files if len(p.relative_to(base).parts) > 1})
    if class_names and any(len(p.relative_to(base).parts) == 1 for p in files):
        raise DataError(f"{base}: mixes images at the top level with class sub-folders; use one or the other")
    if isinstance(size, int):
        size = (size, size)
    imgs, labels = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
                if channels is None:
                    channels = 1 if im.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
                im = im.convert("L" if channels == 1 else "RGB")
                if size is None:
                    size = (im.height, im.width)
                if (im.height, im.width) != tuple(size):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"{p}: cannot read image ({e})") from None
        imgs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        if class_names:
            labels.append(class_names.index(p.relative_to(base).parts[0]))
    x = torch.from_numpy(np.stack(imgs))
    y = torch.tensor(labels, dtype=torch.int64) if class_names else None
    return Dataset(f"folder:{root}", split, x, y, class_names or None, {"folder": str(root)})


def _in_test(rel: Path, fraction: float) -> bool:
    h = int(hashlib.md5(str(rel).encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction
