"""CelebA (Liu et al. 2015), the lectures' faces, read from the user's copy: genzoo does not download it (the
dataset's terms ask every user to agree to them on its site).

Put the standard *aligned and cropped* release under `ROOT/celeba/` (ROOT: `$GENZOO_DATA`, else
`~/.cache/genzoo`):

    ROOT/celeba/img_align_celeba/000001.jpg ...   the aligned 178x218 JPEGs (img_align_celeba.zip, unzipped)
    ROOT/celeba/list_attr_celeba.txt              the 40 binary attributes (1 / -1), or Kaggle's .csv form
    ROOT/celeba/list_eval_partition.txt           optional: 0 train, 1 validation, 2 test (or .csv)

Splits: with the partition file, train = partitions 0 and 1, test = 2; without it a fixed hash of each file
name puts 10% in test. Images are centre-cropped to 178x178 and resized to `size` x `size` (default 64, the
DCGAN setting); `limit` keeps the first N images of a split. The attributes travel with the dataset:
`attribute_names(ds)`, `attribute_mask(ds, "Blond_Hair")` -> bool (N,), so that
`genzoo latent shift RUN --attribute Blond_Hair` and `genzoo latent arithmetic RUN "3 + attr:Eyeglasses"`
work on a run trained with `--data celeba`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import Dataset, register_source
from .idx import DataError

IMAGES = "img_align_celeba"
ATTRS = ("list_attr_celeba.txt", "list_attr_celeba.csv")
PARTITIONS = ("list_eval_partition.txt", "list_eval_partition.csv")
HOME = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CROP = 178  # centre crop of the aligned 178x218 images (as in the DCGAN / VAE-GAN face experiments)
_TABLES: dict[tuple, tuple[list[str], list[str], Tensor]] = {}
_CACHE: dict[tuple, Dataset] = {}


def _missing(folder: Path, problem: str) -> DataError:
    return DataError(
        f"celeba: {problem}. genzoo does not download CelebA (its terms must be accepted at "
        f"{HOME}). Download the aligned images (img_align_celeba.zip) and list_attr_celeba.txt (optionally "
        f"list_eval_partition.txt), then unzip so that {folder}/{IMAGES}/000001.jpg and "
        f"{folder}/{ATTRS[0]} exist (set $GENZOO_DATA or pass root= to use another folder).")


def _image_dir(folder: Path) -> Path:
    for d in (folder / IMAGES / IMAGES, folder / IMAGES):  # Kaggle's zip nests the folder once more
        if d.is_dir():
            return d
    raise _missing(folder, f"no image folder {IMAGES}/ in {folder}/")


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _read_partition(path: Path) -> dict[str, int]:
    out = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        parts = line.replace(",", " ").split()
        if not parts or (i == 0 and not parts[-1].lstrip("-").isdigit()):
            continue  # blank line or the CSV header
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}: line {i + 1} {line!r}: expected 'FILE PARTITION' with partition 0, 1 or 2")
        out[parts[0]] = int(parts[1])
    return out


def _in_test(name: str, fraction: float = 0.1) -> bool:
    return int(hashlib.md5(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def split_table(root: Path, split: str, limit: int | None = None) -> tuple[list[str], list[str], Tensor]:
    """(attribute names, image files of the split in table order, bool values (N, A)), cached."""
    folder = Path(root) / "celeba"
    key = (str(folder), split, limit)
    if key in _TABLES:
        return _TABLES[key]
    attr_file = _first(folder, ATTRS)
    if attr_file is None:
        raise _missing(folder, f"no attribute table {ATTRS[0]} (or .csv) in {folder}/")
    from ..latent.attributes import read_attributes
    try:
        names, ids, values = read_attributes(attr_file)
    except ValueError as e:
        raise DataError(str(e)) from None
    part_file = _first(folder, PARTITIONS)
    if part_file is not None:
        part = _read_partition(part_file)
        unknown = [i for i in ids if i not in part]
        if unknown:
            raise DataError(f"{part_file}: no partition for {len(unknown)} images of {attr_file} (e.g. {unknown[0]})")
        keep = [(part[i] == 2) == (split == "test") for i in ids]
    else:
        keep = [_in_test(i) == (split == "test") for i in ids]
    idx = [j for j, k in enumerate(keep) if k][:limit]
    if not idx:
        raise DataError(f"celeba: {attr_file} lists no images for split {split!r}")
    out = (names, [ids[j] for j in idx], values[idx])
    _TABLES[key] = out
    return out


def _read(path: Path, size: int) -> np.ndarray:
    """An aligned CelebA JPEG -> uint8 (3, size, size): centre crop to 178x178, bilinear resize."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            c = min(CROP, w, h)
            left, top = (w - c) // 2, (h - c) // 2
            im = im.crop((left, top, left + c, top + c))
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except FileNotFoundError:
        raise DataError(f"{path}: listed in the attribute table but missing from {path.parent}/") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


@register_source("celeba", "CelebA aligned faces + 40 attributes, from your copy in ROOT/celeba/ (no download), "
                 "3x64x64 by default", files=(f"{IMAGES}/000001.jpg ...", ATTRS[0], PARTITIONS[0] + " (optional)"))
def load_celeba(split: str, root: Path, download: bool = False, size: int = 64, limit: int | None = None) -> Dataset:
    if download:
        raise DataError(f"celeba cannot be downloaded by genzoo: accept its terms at {HOME}, download it and "
                        f"place it in {Path(root) / 'celeba'}/ as described by `genzoo data list`")
    if not isinstance(size, int) or size < 4:
        raise DataError(f"celeba: size={size!r}: expected an image side in pixels, an integer >= 4")
    folder = Path(root) / "celeba"
    if not folder.is_dir():
        raise _missing(folder, f"no folder {folder}/")
    key = (str(folder), split, size, limit)
    if key in _CACHE:
        return _CACHE[key]
    images = _image_dir(folder)
    names, ids, _ = split_table(root, split, limit)
    x = torch.from_numpy(np.stack([_read(images / i, size) for i in ids]))  # (N, 3, size, size)
    ds = Dataset("celeba", split, x, None, None, {"attributes": names, "celeba_table": [str(root), split, limit],
                                                  "image_dir": str(images)})
    _CACHE.clear()  # one split in memory at a time (a full split at 64x64 is ~2 GB)
    _CACHE[key] = ds
    return ds


def attribute_names(ds: Dataset) -> list[str]:
    names = ds.meta.get("attributes")
    if not names:
        raise ValueError(f"{ds.name} has no attribute table (attributes come with the celeba dataset)")
    return list(names)


def attribute_values(ds: Dataset) -> Tensor:
    """bool (N, A): the attribute table rows of the dataset's images, in order."""
    attribute_names(ds)
    root, split, limit = ds.meta["celeba_table"]
    _, ids, values = split_table(Path(root), split, limit)
    if len(ids) != len(ds):
        raise ValueError(f"{ds.name}/{ds.split}: {len(ds)} images but {len(ids)} attribute rows; use the whole "
                         f"split as loaded (subsets lose the alignment)")
    return values


def attribute_mask(ds: Dataset, attribute: str) -> Tensor:
    """bool (N,): True where image i has `attribute` (a column name such as Blond_Hair)."""
    names = attribute_names(ds)
    if attribute not in names:
        raise ValueError(f"{ds.name}: no attribute {attribute!r}; attributes: {', '.join(names)}")
    return attribute_values(ds)[:, names.index(attribute)]
