"""Paired datasets: aligned (source, target) images for pix2pix and super-resolution.

A paired `Dataset` holds the sources in `x` (uint8, (N, C, h, w)), the aligned targets in `target` (uint8,
(N, C', H, W); another size for SR, other channels for e.g. edges -> photo) and the labels of the base images
in `y` where it has them. Everything stays in memory and is batched by index, like every genzoo dataset.

Built-in tasks, deterministic functions of a base dataset (mnist, fashion-mnist and the bundled mnist-mini):

    BASE-edges     binary Sobel edge map of the image -> the image
    BASE-inpaint   the image with a square (side H*3/7, 12 px at 28x28) filled with grey 128 -> the image;
                   the square's place is drawn per image from `seed` (default 0) and the split
    BASE-sr2       area-downsampled x2 (14x14) -> the 28x28 image
    BASE-sr4       area-downsampled x4 (7x7) -> the 28x28 image

Your own data (names with a prefix, like folder:PATH):

    pix2pix:PATH   the official pix2pix layouts: side-by-side AB images (left half A, right half B) in
                   PATH/train and PATH/test (or PATH/val), or PATH/A + PATH/B with matching file names (either
                   with train/ and test/ (or val/) inside each, or flat, split by a fixed hash of the name).
                   Options: direction="AtoB"|"BtoA", size=N (resize every image; else all must match).
    sr:PATH        super-resolution from any image folder (PATH/train + PATH/test, or one folder split by
                   name hash). Options: scale=2|4 (4), crop=96 (training crop side, a multiple of scale),
                   crops=16 (crops per training image), seed=0. Training: a fixed set of random crops per
                   image (drawn once from `seed`, held as uint8, so batching stays by index); test: whole
                   images (cut to a multiple of the scale; centre-cut to the common size when they differ).

Low-resolution images are area-downsampled (the mean of each scale x scale block, rounded to uint8).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import Dataset, register_source
from .idx import DataError

BASES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "mnist-mini": "the bundled MNIST subset"}
TASKS = {
    "edges": "binary Sobel edge map -> image",
    "inpaint": "image with a grey square (12 px at 28x28) masked -> full image",
    "sr2": "area-downsampled x2 (14x14) -> 28x28 image",
    "sr4": "area-downsampled x4 (7x7) -> 28x28 image",
}
MASK_VALUE = 128
EDGE_THRESHOLD = 1.0
_CACHE: dict[tuple, Dataset] = {}
_CACHE_SIZE = 8


# ---- the derivations ---------------------------------------------------------------------------------------
def area_downsample(x: Tensor, scale: int) -> Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, H/scale, W/scale): the mean of each scale x scale block, rounded
    (H and W must be multiples of scale)."""
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise DataError(f"cannot area-downsample {h}x{w} images by {scale}: the size is not a multiple of it")
    return F.avg_pool2d(x.float(), scale).round().clamp(0, 255).to(torch.uint8)


def sobel_edges(x: Tensor, threshold: float = EDGE_THRESHOLD) -> Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, 1, H, W) edge map, 255 where the Sobel gradient magnitude of the
    (channel-mean) image in [0, 1] exceeds `threshold`: |G| = sqrt((K_x * I)^2 + (K_y * I)^2),
    K_x = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], K_y = K_x^T, zero padding (Sobel & Feldman 1968)."""
    img = x.float().mean(1, keepdim=True) / 255  # (N, 1, H, W)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    k = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3)
    g = F.conv2d(img, k, padding=1)  # (N, 2, H, W)
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    return (mag > threshold).to(torch.uint8) * 255


def mask_square(x: Tensor, seed: int, side: int | None = None, value: int = MASK_VALUE) -> Tensor:
    """uint8 (N, C, H, W) with one square of side `side` (default round(3 H / 7)) per image set to `value`; the
    top-left corners are uniform over the positions where the square fits, drawn from `seed`."""
    n, _, h, w = x.shape
    side = side or max(1, round(3 * h / 7))
    g = torch.Generator().manual_seed(seed)
    top = torch.randint(0, h - side + 1, (n,), generator=g)
    left = torch.randint(0, w - side + 1, (n,), generator=g)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
              & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side))  # (N, H, W)
    out = x.clone()
    out[inside[:, None].expand_as(x)] = value
    return out


def derive(task: str, base: Dataset, seed: int = 0) -> tuple[Tensor, dict[str, Any]]:
    """The source images of `task` made from base.x (the targets are base.x itself)."""
    if task == "edges":
        return sobel_edges(base.x), {"edge_threshold": EDGE_THRESHOLD}
    if task == "inpaint":
        split_seed = seed * 2 + (0 if base.split == "train" else 1)
        return mask_square(base.x, split_seed), {"mask_value": MASK_VALUE, "seed": seed}
    if task in ("sr2", "sr4"):
        s = int(task[2:])
        return area_downsample(base.x, s), {"scale": s}
    raise KeyError(f"unknown paired task {task!r}; expected one of {', '.join(TASKS)}")


def _cached(key: tuple, make) -> Dataset:
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = make()
    return _CACHE[key]


def _make_loader(base: str, task: str):
    name = f"{base}-{task}"

    def loader(split: str, root: Path, download: bool = False, seed: int = 0) -> Dataset:
        from . import load

        def make() -> Dataset:
            b = load(base, split, root=root, download=download)
            src, meta = derive(task, b, seed)
            return Dataset(name, split, src, b.y, b.classes, {"base": base, "task": task, **meta}, target=b.x)

        return _cached((name, split, str(root), seed), make)

    loader.__name__ = f"load_{name.replace('-', '_')}"
    return loader


for _base, _what in BASES.items():
    for _task, _desc in TASKS.items():
        register_source(f"{_base}-{_task}", f"paired, from {_what}: {_desc}", kind="paired")(
            _make_loader(_base, _task))


# ---- image files -------------------------------------------------------------------------------------------
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path, channels: int | None = None) -> np.ndarray:
    """An image file -> uint8 (C, H, W); `channels` 1 or 3, else 1 for grey files and 3 otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if channels is None:
                channels = 1 if im.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
            a = np.array(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    c = a.shape[0]
    im = Image.fromarray(a[0] if c == 1 else a.transpose(1, 2, 0))
    b = np.asarray(im.resize((size[1], size[0]), Image.BICUBIC), dtype=np.uint8)
    return b[None] if b.ndim == 2 else b.transpose(2, 0, 1)


def _stack(images: list[np.ndarray], files: list[Path], what: str) -> Tensor:
    shape = images[0].shape
    for a, f in zip(images, files):
        if a.shape != shape:
            raise DataError(f"{f}: {what} image is {a.shape[2]}x{a.shape[1]} with {a.shape[0]} channel(s), but "
                            f"{files[0]} is {shape[2]}x{shape[1]} with {shape[0]}; give every image the same size "
                            f"or pass size=N to resize them")
    return torch.from_numpy(np.stack(images))


def _in_test(name: str, fraction: float = 0.1) -> bool:
    h = int(hashlib.md5(name.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def _split_dir(root: Path, split: str) -> Path | None:
    """root/train for train; root/test, else root/val for test; None when the split folders do not exist."""
    if split == "train":
        return root / "train" if (root / "train").is_dir() else None
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / name
    return None


# ---- pix2pix:PATH ------------------------------------------------------------------------------------------
def load_pix2pix(path: str | Path, split: str = "train", direction: str = "AtoB",
                 size: int | tuple[int, int] | None = None, channels: int | None = None) -> Dataset:
    """A paired dataset in one of the two official pix2pix layouts (see the module docstring).
    `direction`: AtoB (source A, target B) or BtoA. `size`: resize every image (int or (H, W))."""
    if direction not in ("AtoB", "BtoA"):
        raise ValueError(f"direction={direction!r}: expected 'AtoB' or 'BtoA'")
    from . import check_image_options
    check_image_options(size, channels)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (pix2pix:PATH needs a folder with train/ and test/ or val/ of "
                        f"side-by-side AB images, or A/ and B/ folders)")
    if isinstance(size, int):
        size = (size, size)
    if (root / "A").is_dir() and (root / "B").is_dir():
        a, b, files, layout = _load_a_b(root, split, size, channels)
    elif (root / "A").is_dir() or (root / "B").is_dir():
        have, lack = ("A", "B") if (root / "A").is_dir() else ("B", "A")
        raise DataError(f"{root}: has {have}/ but no {lack}/; the A/B layout needs both folders with matching "
                        f"file names")
    else:
        a, b, files, layout = _load_ab(root, split, size, channels)
    src, tgt = (a, b) if direction == "AtoB" else (b, a)
    return Dataset(f"pix2pix:{root}", split, src, None, None,
                   {"folder": str(root), "layout": layout, "direction": direction, "n_files": len(files)},
                   target=tgt)


def _load_ab(root: Path, split: str, size, channels) -> tuple[Tensor, Tensor, list[Path], str]:
    folder = _split_dir(root, split)
    if folder is None:
        want = "train/" if split == "train" else "test/ or val/"
        raise DataError(f"{root}: no {want} folder. pix2pix:PATH expects side-by-side AB images in "
                        f"{root}/train and {root}/test (or {root}/val), or A/ and B/ folders")
    files = image_files(folder)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    As, Bs = [], []
    for f in files:
        img = read_image(f, channels)
        w = img.shape[2]
        if w % 2:
            raise DataError(f"{f}: an AB image must be two images side by side (even width), got width {w}")
        a, b = img[:, :, : w // 2], img[:, :, w // 2:]
        if size is not None:
            a, b = _resize(a, size), _resize(b, size)
        As.append(a)
        Bs.append(b)
    return _stack(As, files, "the A half of this"), _stack(Bs, files, "the B half of this"), files, "AB"


def _load_a_b(root: Path, split: str, size, channels) -> tuple[Tensor, Tensor, list[Path], str]:
    da, db = _split_dir(root / "A", split), _split_dir(root / "B", split)
    if (da is None) != (db is None):
        have = root / "A" if da is not None else root / "B"
        raise DataError(f"{have} has a {split} folder but its partner does not: give A/ and B/ the same "
                        f"split folders (train/ and test/ or val/) or none")
    hashed = da is None
    da, db = (root / "A", root / "B") if hashed else (da, db)
    fa, fb = image_files(da), image_files(db)
    if hashed:
        fa = [f for f in fa if _in_test(f.name) == (split == "test")]
        fb = [f for f in fb if _in_test(f.name) == (split == "test")]
    by_a, by_b = {f.name: f for f in fa}, {f.name: f for f in fb}
    only_a, only_b = sorted(set(by_a) - set(by_b)), sorted(set(by_b) - set(by_a))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} file(s) in {da} have no partner in {db}: {', '.join(only_a[:5])}"
                         + (" ..." if len(only_a) > 5 else ""))
        if only_b:
            parts.append(f"{len(only_b)} file(s) in {db} have no partner in {da}: {', '.join(only_b[:5])}"
                         + (" ..." if len(only_b) > 5 else ""))
        raise DataError("; ".join(parts) + " (the A/B layout pairs files by identical names)")
    names = sorted(by_a)
    if not names:
        raise DataError(f"{da}: no images for split {split!r}")
    As, Bs = [], []
    for n in names:
        a, b = read_image(by_a[n], channels), read_image(by_b[n], channels)
        if size is not None:
            a, b = _resize(a, size), _resize(b, size)
        elif a.shape[1:] != b.shape[1:]:
            raise DataError(f"{by_a[n]} is {a.shape[2]}x{a.shape[1]} but its partner {by_b[n]} is "
                            f"{b.shape[2]}x{b.shape[1]}; pairs must have the same size (or pass size=N)")
        As.append(a)
        Bs.append(b)
    fa = [by_a[n] for n in names]
    return _stack(As, fa, "this"), _stack(Bs, [by_b[n] for n in names], "this"), fa, "A/B"


# ---- sr:PATH -----------------------------------------------------------------------------------------------
def load_sr_folder(path: str | Path, split: str = "train", scale: int = 4, crop: int = 96, crops: int = 16,
                   seed: int = 0, channels: int | None = None) -> Dataset:
    """Super-resolution pairs from any image folder (see the module docstring). Training: `crops` random
    crop x crop patches per image (top-left corners uniform, drawn once from `seed` and the file's index);
    test: whole images. Sources are the area-downsampled patches/images."""
    if scale not in (2, 4, 8):
        raise ValueError(f"scale={scale}: expected 2, 4 or 8")
    if crop < scale or crop % scale:
        raise ValueError(f"crop={crop} must be a positive multiple of scale={scale}")
    if crops < 1:
        raise ValueError(f"crops={crops} must be >= 1")
    from . import check_image_options
    check_image_options(None, channels)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (sr:PATH takes a folder of images)")
    folder = _split_dir(root, split) if (root / "train").is_dir() else None
    files = image_files(folder) if folder is not None else \
        [f for f in image_files(root) if _in_test(f.name) == (split == "test")]
    if not files:
        raise DataError(f"{folder or root}: no images for split {split!r} ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images = [read_image(f, channels) for f in files]
    channels = images[0].shape[0]
    for a, f in zip(images, files):
        if a.shape[0] != channels:  # channels was inferred from the first file
            images = [read_image(f2, channels) for f2 in files]
            break
    meta: dict[str, Any] = {"folder": str(root), "scale": scale, "n_files": len(files)}
    if split == "train":
        g = torch.Generator().manual_seed(seed)
        patches = []
        for a, f in zip(images, files):
            h, w = a.shape[1:]
            if h < crop or w < crop:
                raise DataError(f"{f}: the image is {w}x{h}, smaller than the training crop {crop}x{crop}; "
                                f"pass a smaller crop= (a multiple of scale={scale})")
            t = torch.from_numpy(a)
            tops = torch.randint(0, h - crop + 1, (crops,), generator=g)
            lefts = torch.randint(0, w - crop + 1, (crops,), generator=g)
            patches += [t[:, i:i + crop, j:j + crop] for i, j in zip(tops.tolist(), lefts.tolist())]
        hr = torch.stack(patches)  # (N * crops, C, crop, crop)
        meta.update(crop=crop, crops_per_image=crops, seed=seed)
    else:
        hs = [a.shape[1] - a.shape[1] % scale for a in images]
        ws = [a.shape[2] - a.shape[2] % scale for a in images]
        h, w = min(hs), min(ws)
        if h == 0 or w == 0:
            raise DataError(f"{files[hs.index(min(hs)) if h == 0 else ws.index(min(ws))]}: smaller than the "
                            f"scale {scale}")
        if len(set(hs)) > 1 or len(set(ws)) > 1:
            meta["test_crop"] = [h, w]  # whole images differ in size: centre-cut to the common size
        hr = torch.stack([_centre(torch.from_numpy(a), h, w) for a in images])
    return Dataset(f"sr:{root}", split, area_downsample(hr, scale), None, None, meta, target=hr)


def _centre(t: Tensor, h: int, w: int) -> Tensor:
    top, left = (t.shape[1] - h) // 2, (t.shape[2] - w) // 2
    return t[:, top:top + h, left:left + w]


PREFIXES = {"pix2pix": load_pix2pix, "sr": load_sr_folder}

__all__ = ["load_pix2pix", "load_sr_folder", "area_downsample", "sobel_edges", "mask_square", "derive",
           "TASKS", "BASES", "PREFIXES"]
