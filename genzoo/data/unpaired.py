"""Unpaired two-domain datasets for CycleGAN-style translation (the `unpaired` kind).

An unpaired dataset is a `Dataset` whose `x`/`y` are domain A and whose `domain_b` is a second `Dataset`
(domain B, its own length, labels and classes). The training engine draws B independently of A (its own
permutation, cycled when B is the smaller domain), and **an epoch is one pass over domain A**.

Built-in pairs (all offline; derived deterministically from the base sets, computed in memory on load):

    mnist-digits        MNIST <-> `digits28`: scikit-learn's 1,797 real 8x8 handwritten digits, upsampled
                        (bilinear) to 20x20 and padded to 28x28 like MNIST's 20x20 box: a second handwriting
                        domain with the same ten classes
    mnist-thick         MNIST <-> `thick-mnist` (a 3x3 grey-level dilation of each digit). Domain A
                        holds the even-indexed MNIST images, domain B the dilated odd-indexed ones, so no
                        hidden pairing exists
    mnist-fashion       MNIST <-> Fashion-MNIST (no class correspondence)
    mnist-mini-digits   the same from the bundled `mnist-mini` (offline tests and the demo)
    mnist-mini-thick

Every domain's `meta` names its domain (`domain`) and the shipped classifier that measures it (`classifier`),
which the evaluation uses for label preservation and domain FID.

The user's own data, in CycleGAN's layout, as `unpaired:PATH`:

    PATH/trainA/*.png|jpg   PATH/trainB/...   PATH/testA/...   PATH/testB/...

Images may be grey or colour and of any size: every image of a domain is brought to `size` (int or (H, W);
default: the first trainA image's size) by `fit="resize"` (stretch) or `fit="crop"` (scale the shorter side
to fit, then take the centre); `channels` 1 or 3 (default: per domain, from its first image).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import Dataset, register_source
from .idx import DataError

DIGITS28 = "digits28"
THICK = "thick-mnist"


# ---- single domains ---------------------------------------------------------------------------------------
def upsample_digits(x8: torch.Tensor) -> torch.Tensor:
    """(N, 1, 8, 8) uint8 -> (N, 1, 28, 28) uint8: bilinear upsampling to 20x20 (MNIST's digit box), then 4
    pixels of zero padding on each side."""
    up = F.interpolate(x8.float(), size=(20, 20), mode="bilinear", align_corners=False)  # (N, 1, 20, 20)
    up = F.pad(up, (4, 4, 4, 4))  # (N, 1, 28, 28)
    return up.round().clamp(0, 255).to(torch.uint8)


def dilate(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Grey-level dilation (a `size` x `size` maximum filter, zero outside): thicker strokes, (N, C, H, W)."""
    return F.max_pool2d(x.float(), size, stride=1, padding=size // 2).to(x.dtype)


@register_source(DIGITS28, "scikit-learn's 8x8 digits upsampled to 28x28 (20x20 box, MNIST-like); "
                 "1,438 train / 359 test (the `digits` split)")
def load_digits28(split: str, root: Path, download: bool = False) -> Dataset:
    from .sources import load_digits
    d = load_digits(split, root)
    return Dataset(DIGITS28, split, upsample_digits(d.x), d.y, d.classes,
                   {"domain": DIGITS28, "classifier": DIGITS28, "made_from": "digits (scikit-learn)"})


@register_source(THICK, "MNIST with thick strokes (a 3x3 grey-level dilation of every digit), 60,000/10,000")
def load_thick(split: str, root: Path, download: bool = False) -> Dataset:
    d = _load("mnist", split, root, download)
    return Dataset(THICK, split, dilate(d.x), d.y, d.classes,
                   {"domain": THICK, "classifier": THICK, "made_from": "mnist, 3x3 dilation"})


def _domain(ds: Dataset, name: str, classifier: str | None, **meta) -> Dataset:
    return Dataset(name, ds.split, ds.x, ds.y, ds.classes,
                   {"domain": name, "classifier": classifier, **meta})


def unpaired(name: str, a: Dataset, b: Dataset, **meta) -> Dataset:
    """An unpaired dataset: domain A is the top-level `x`/`y`, domain B is `domain_b`."""
    return Dataset(name, a.split, a.x, a.y, a.classes,
                   {"domain_a": a.meta.get("domain", a.name), "domain_b": b.meta.get("domain", b.name),
                    "classifier": a.meta.get("classifier"), "domain": a.meta.get("domain", a.name), **meta},
                   domain_b=b)


def _thick_pair(name: str, base: Dataset, base_name: str) -> Dataset:
    """Domain A: the even-indexed images of `base`; domain B: the odd-indexed ones, dilated."""
    even, odd = base.subset(slice(0, None, 2)), base.subset(slice(1, None, 2))
    a = _domain(even, base_name, "mnist", made_from=f"{base_name} even indices")
    b = Dataset(THICK, base.split, dilate(odd.x), odd.y, odd.classes,
                {"domain": THICK, "classifier": THICK, "made_from": f"{base_name} odd indices, 3x3 dilation"})
    return unpaired(name, a, b)


def _load(name: str, split: str, root: Path, download: bool) -> Dataset:
    from . import load
    return load(name, split, root=root, download=download)


@register_source("mnist-digits", "unpaired: MNIST (A) <-> digits28 (B, sklearn digits at 28x28), shared classes",
                 kind="unpaired")
def load_mnist_digits(split: str, root: Path, download: bool = False) -> Dataset:
    a = _domain(_load("mnist", split, root, download), "mnist", "mnist")
    return unpaired("mnist-digits", a, load_digits28(split, root))


@register_source("mnist-thick", "unpaired: MNIST even indices (A) <-> dilated thick-stroke MNIST odd indices (B)",
                 kind="unpaired")
def load_mnist_thick(split: str, root: Path, download: bool = False) -> Dataset:
    return _thick_pair("mnist-thick", _load("mnist", split, root, download), "mnist")


@register_source("mnist-fashion", "unpaired: MNIST (A) <-> Fashion-MNIST (B), no class correspondence",
                 kind="unpaired")
def load_mnist_fashion(split: str, root: Path, download: bool = False) -> Dataset:
    a = _domain(_load("mnist", split, root, download), "mnist", "mnist")
    b = _domain(_load("fashion-mnist", split, root, download), "fashion-mnist", "fashion-mnist")
    return unpaired("mnist-fashion", a, b)


@register_source("mnist-mini-digits", "unpaired, bundled: mnist-mini (A) <-> digits28 (B)", kind="unpaired")
def load_mini_digits(split: str, root: Path, download: bool = False) -> Dataset:
    a = _domain(_load("mnist-mini", split, root, download), "mnist-mini", "mnist")
    return unpaired("mnist-mini-digits", a, load_digits28(split, root))


@register_source("mnist-mini-thick", "unpaired, bundled: mnist-mini even (A) <-> dilated mnist-mini odd (B)",
                 kind="unpaired")
def load_mini_thick(split: str, root: Path, download: bool = False) -> Dataset:
    return _thick_pair("mnist-mini-thick", _load("mnist-mini", split, root, download), "mnist-mini")


# ---- unpaired:PATH (CycleGAN's trainA/trainB/testA/testB layout) ------------------------------------------
LAYOUT = ("trainA", "trainB", "testA", "testB")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
FITS = ("resize", "crop")


def _fit(im, size: tuple[int, int], fit: str):
    """Bring a PIL image to (H, W) = size: stretch (`resize`) or scale-to-cover and centre-crop (`crop`)."""
    from PIL import Image
    h, w = size
    if (im.height, im.width) == (h, w):
        return im
    if fit == "resize":
        return im.resize((w, h), Image.BICUBIC)
    s = max(h / im.height, w / im.width)
    nh, nw = max(h, round(im.height * s)), max(w, round(im.width * s))
    im = im.resize((nw, nh), Image.BICUBIC)
    top, left = (nh - h) // 2, (nw - w) // 2
    return im.crop((left, top, left + w, top + h))


def _read_domain(folder: Path, size: tuple[int, int] | None, channels: int | None,
                 fit: str) -> tuple[torch.Tensor, list[str], tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no PNG/JPEG images found (CycleGAN layout: trainA/ trainB/ testA/ testB/, "
                        f"each a flat folder of images)")
    imgs = []
    for p in files:
        try:
            with Image.open(p) as im:
                im.load()
                if channels is None:
                    channels = 1 if im.mode in ("1", "L", "LA", "I", "I;16", "F") else 3
                im = im.convert("L" if channels == 1 else "RGB")
                if size is None:
                    size = (im.height, im.width)
                a = np.asarray(_fit(im, size, fit), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"{p}: cannot read image ({e})") from None
        imgs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(imgs)), [p.name for p in files], size


def _first_size(folder: Path) -> tuple[int, int] | None:
    """(H, W) of the first image (by name) in `folder`, or None when it has none."""
    from PIL import Image
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        return None
    try:
        with Image.open(files[0]) as im:
            return (im.height, im.width)
    except OSError as e:
        raise DataError(f"{files[0]}: cannot read image ({e})") from None


def load_unpaired_folder(path: str | Path, split: str = "train", size: int | tuple[int, int] | None = None,
                         channels: int | None = None, fit: str = "resize") -> Dataset:
    """Domains A and B from `PATH/{split}A/` and `PATH/{split}B/` (CycleGAN's layout). Both domains are brought
    to the same (H, W): `size`, else the first trainA image's size (so train and test agree)."""
    root = Path(path).expanduser()
    if fit not in FITS:
        raise DataError(f"fit={fit!r}: expected one of {', '.join(FITS)}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels={channels!r}: expected 1 (grey) or 3 (colour)")
    from . import check_image_options
    check_image_options(size, None)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected CycleGAN's layout: {', '.join(s + '/' for s in LAYOUT)})")
    present = [d for d in LAYOUT if (root / d).is_dir()]
    need = [f"{split}A", f"{split}B"]
    missing = [d for d in need if d not in present]
    if missing:
        found = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())
        raise DataError(f"{root}: missing {', '.join(m + '/' for m in missing)} for split {split!r}; CycleGAN's "
                        f"layout is {', '.join(s + '/' for s in LAYOUT)} (found: {', '.join(found) or 'no folders'})")
    if isinstance(size, int):
        size = (size, size)
    if size is None and split != "train" and (root / "trainA").is_dir():
        size = _first_size(root / "trainA")
    xa, fa, size = _read_domain(root / need[0], size, channels, fit)
    xb, fb, _ = _read_domain(root / need[1], size, channels, fit)
    name = f"unpaired:{root}"
    b = Dataset(name + "#B", split, xb, None, None, {"domain": "B", "folder": str(root / need[1]), "files": len(fb)})
    return Dataset(name, split, xa, None, None,
                   {"domain": "A", "domain_a": "A", "domain_b": "B", "folder": str(root / need[0]),
                    "files": len(fa)}, domain_b=b)


__all__ = ["load_unpaired_folder", "upsample_digits", "dilate", "unpaired", "DIGITS28", "THICK", "LAYOUT"]
