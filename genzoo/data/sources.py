"""Built-in dataset sources: mnist, fashion-mnist, cifar10, digits, mnist-mini, folder:PATH."""
from __future__ import annotations

import hashlib
import json
import os
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
CACHE_FORMAT = 1
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F", "P;L")


class FolderWarning(UserWarning):
    """An image folder has images far from its common size (they are resized)."""


def folder_cache_dir() -> Path:
    from .._io import genzoo_home
    return genzoo_home() / "folders"


def load_folder(path: str, split: str = "train", size: int | tuple[int, int] | None = None,
                channels: int | None = None, test_fraction: float = 0.1, cache: bool = True,
                workers: int | None = None) -> Dataset:
    """Images under PATH (PNG/JPEG). Class sub-folders become labels. `PATH/train` and `PATH/test`, when both
    exist, are the splits; otherwise a fixed hash of each file name puts `test_fraction` of them in test.

    Every image is resized to `size` (int or (H, W)), else to the folder's most common image size (a warning
    names images more than 2x off it); `channels` 1 or 3, else the majority of the images' modes.

    Decoded once, in parallel (`workers` threads), into a uint8 cache file under $GENZOO_HOME/folders/
    (default ~/.cache/genzoo/folders) keyed by the file list with every file's size and modification time and
    the options: later loads memory-map it (no decoding), a changed, added or removed file makes a new one.
    `x` is a torch tensor over the copy-on-write memory map, so a folder larger than RAM trains from disk
    (batches index it; only the pages touched are read)."""
    from . import check_image_options
    check_image_options(size, channels)
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r}: expected a fraction in [0, 1)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / split if split_dirs else root
    files = _scan(base)  # (path relative to base, bytes, mtime ns), strings for speed (20,000 files: ~0.1 s)
    if not split_dirs:
        files = [f for f in files if _in_test(f[0], test_fraction) == (split == "test")]
    if not files:
        raise DataError(f"{base}: no PNG/JPEG images found" + ("" if split_dirs else f" for split {split!r}"))
    parts = [f[0].partition(os.sep) for f in files]  # (class folder, sep or "", rest)
    class_names = sorted({p[0] for p in parts if p[1]})
    if class_names and any(not p[1] for p in parts):
        raise DataError(f"{base}: mixes images at the top level with class sub-folders; use one or the other")
    if isinstance(size, int):
        size = (size, size)
    index = {c: i for i, c in enumerate(class_names)}
    y_np = np.array([index[p[0]] for p in parts], dtype=np.int64) if class_names else None
    h = hashlib.sha256(json.dumps([CACHE_FORMAT, str(root.resolve()), split, test_fraction,
                                   list(size) if size else None, channels]).encode())
    h.update("\n".join(f"{n}\t{b}\t{t}" for n, b, t in files).encode())  # the file list, sizes, mtimes
    key = h.hexdigest()[:32]
    stem = hashlib.sha256(f"{root.resolve()}|{split}".encode()).hexdigest()[:12]
    meta = {"folder": str(root)}
    cdir = folder_cache_dir()
    found = _open_cache(cdir, f"{stem}-{key}") if cache else None
    if found is not None:
        x_np, info = found
        meta.update(cache=str(cdir / f"{stem}-{key}.u8"), cached=True, **info.get("meta", {}))
        import warnings
        for msg in meta.get("warnings", []):
            warnings.warn(msg, FolderWarning, stacklevel=2)
    else:
        x_np, info = _decode_folder([base / f[0] for f in files], base, size, channels, workers,
                                    cdir if cache else None, f"{stem}-{key}")
        meta.update(info.get("meta", {}), cached=False)
        if info.get("path"):
            meta["cache"] = info["path"]
    x = _as_tensor(x_np)
    y = torch.from_numpy(y_np) if y_np is not None else None
    return Dataset(f"folder:{root}", split, x, y, class_names or None, meta)


def _scan(base: Path) -> list[tuple[str, int, int]]:
    """(path relative to `base`, size in bytes, mtime in ns) of every image file under `base`, sorted by path
    (os.scandir: one stat per file, which the cache key needs anyway; kept lean: 20,000 files in ~0.1 s)."""
    out: list[tuple[str, int, int]] = []
    append, suffixes, sep = out.append, IMAGE_SUFFIXES, os.sep
    stack = [("", str(base))]
    while stack:
        rel, d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError as e:
            raise DataError(f"{d}: cannot list the folder ({e.strerror})") from None
        with it:
            for e in it:
                name = e.name
                dot = name.rfind(".")
                if dot > 0 and name[dot:].lower() in suffixes and e.is_file():
                    st = e.stat()
                    append((rel + name, st.st_size, st.st_mtime_ns))
                elif e.is_dir():
                    stack.append((rel + name + sep, e.path))
    out.sort()
    return out


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


def _open_cache(cdir: Path, name: str) -> tuple[np.ndarray, dict] | None:
    """The cached array (copy-on-write memory map) and its info, or None when absent or incomplete."""
    info_path, data_path = cdir / f"{name}.json", cdir / f"{name}.u8"
    try:
        info = json.loads(info_path.read_text())
        shape = tuple(info["shape"])
        if data_path.stat().st_size != int(np.prod(shape)):
            return None
        return np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape), info
    except (OSError, ValueError, KeyError):
        return None


def _header(p: Path) -> tuple[int, int, str]:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(p) as im:
            return im.height, im.width, im.mode
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{p}: cannot read image ({e})") from None


def _decode_folder(paths: list[Path], base: Path, size: tuple[int, int] | None, channels: int | None,
                   workers: int | None, cdir: Path | None, name: str) -> tuple[np.ndarray, dict]:
    """Decode every image (threads: PIL releases the GIL while decoding) into one uint8 (N, C, H, W) array,
    written to `cdir/name.u8` (atomically; the .json beside it is written last) when `cdir` is given."""
    import warnings
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    from .._io import TEMP_MARK, write_json

    n = len(paths)
    workers = max(1, workers or min(8, os.cpu_count() or 1))
    # one task per chunk of 256 images: ThreadPoolExecutor.map ignores `chunksize` and holds a Future per item
    # (about 1 KB each: 20,000 images held ~30 MB of them, measured by benchmarks/folder_cache.py)
    chunks = [range(i, min(i + 256, n)) for i in range(0, n, 256)]
    with ThreadPoolExecutor(workers) as pool:
        headers = [h for part in pool.map(lambda r: [_header(paths[i]) for i in r], chunks) for h in part]
    sizes = Counter((h, w) for h, w, _ in headers)
    common = sizes.most_common(1)[0][0]
    meta: dict = {}
    if size is None:
        size = common
    far = [(p, h, w) for p, (h, w, _) in zip(paths, headers)
           if max(h / size[0], size[0] / h, w / size[1], size[1] / w) > 2]
    if far:
        p, h, w = max(far, key=lambda t: t[1] * t[2])
        msg = (f"{base}: {len(far)} of {n} images are more than 2x off the size {size[0]}x{size[1]} "
               f"({'chosen' if size != common else 'the most common'}), e.g. {p.relative_to(base)} {h}x{w}; "
               f"every image is resized to {size[0]}x{size[1]} (pass size= or --image-size to choose another)")
        warnings.warn(msg, FolderWarning, stacklevel=3)
        meta["warnings"] = [msg]
    if len(sizes) > 1:
        meta["resized"] = sum(c for s, c in sizes.items() if s != tuple(size))
    if channels is None:
        grey = sum(1 for _, _, m in headers if m in GREY_MODES)
        channels = 1 if grey * 2 >= n else 3
    if channels not in (1, 3):
        raise ValueError(f"channels={channels}: expected 1 (grey) or 3 (RGB)")
    shape = (n, channels, size[0], size[1])
    tmp = final = None
    if cdir is not None:
        try:
            cdir.mkdir(parents=True, exist_ok=True)
            final = cdir / f"{name}.u8"
            tmp = cdir / f".{name}.u8{TEMP_MARK}{os.getpid()}"
            out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
        except OSError:
            tmp = final = None
    if tmp is None:
        out = np.empty(shape, dtype=np.uint8)

    def work(i: int) -> None:
        from PIL import Image, UnidentifiedImageError
        p = paths[i]
        try:
            with Image.open(p) as im:
                im.load()
                im = im.convert("L" if channels == 1 else "RGB")
                if (im.height, im.width) != tuple(size):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"{p}: cannot read image ({e})") from None
        out[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    try:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(lambda r: [work(i) for i in r], chunks):
                pass
    except BaseException:
        if tmp is not None:
            del out
            tmp.unlink(missing_ok=True)
        raise
    if tmp is None:
        return out, {"meta": meta}
    out.flush()
    del out
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    for old in cdir.glob(f"{name.split('-')[0]}-*"):  # older caches of this folder and split: files changed
        if not old.name.startswith(name):
            old.unlink(missing_ok=True)
    info = {"shape": list(shape), "files": n, "folder": str(base), "meta": meta}
    write_json(cdir / f"{name}.json", info)
    return np.memmap(final, dtype=np.uint8, mode="c", shape=shape), {"meta": meta, "path": str(final)}


def _in_test(rel: Path | str, fraction: float) -> bool:
    h = int.from_bytes(hashlib.md5(str(rel).encode()).digest()[:4], "big")  # = int(hexdigest[:8], 16)
    return h / 0xFFFFFFFF < fraction
