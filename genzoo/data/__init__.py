"""The data layer: named datasets held in memory as uint8 tensors and batched by index.

`load(name, split="train", root=None, download=False)` -> `Dataset`. Names: mnist, fashion-mnist, cifar10,
digits, mnist-mini, folder:PATH (and 2-D toy sets registered by other modules). Root: the `root` argument,
else `$GENZOO_DATA`, else `~/.cache/genzoo`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor

from .idx import DataError

__all__ = ["Dataset", "DataError", "load", "names", "info", "data_root", "register_source", "names_of_kind"]

KINDS = ("images", "paired", "unpaired")


@dataclass
class Dataset:
    """An in-memory dataset. `x`: uint8 images (N, C, H, W), or float32 points (N, D, 1, 1) for toy data;
    `y`: int64 labels (N,) or None; `classes`: class names or None.

    Three kinds (`kind`): labelled images; *paired* — `target` holds the aligned target image of each `x`
    (N, C', H', W'), which may differ in size (super-resolution) or channels; *unpaired* — `domain_b` is a
    second Dataset (domain B, any length, its own labels) sampled independently of `x` (domain A)."""

    name: str
    split: str
    x: Tensor
    y: Tensor | None = None
    classes: list[str] | None = None
    meta: dict = field(default_factory=dict)
    target: Tensor | None = None
    domain_b: "Dataset | None" = None

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise DataError(f"{self.name}/{self.split}: expected images of shape (N, C, H, W), got {tuple(self.x.shape)}")
        if self.y is not None and len(self.y) != len(self.x):
            raise DataError(f"{self.name}/{self.split}: {len(self.y)} labels do not match {len(self.x)} images")
        if self.target is not None:
            if self.domain_b is not None:
                raise DataError(f"{self.name}/{self.split}: a dataset is paired (target) or unpaired (domain_b), "
                                f"not both")
            if self.target.ndim != 4 or len(self.target) != len(self.x):
                raise DataError(f"{self.name}/{self.split}: expected one target image (N, C, H, W) per source "
                                f"image ({len(self.x)}), got {tuple(self.target.shape)}")

    @property
    def kind(self) -> str:
        return "paired" if self.target is not None else "unpaired" if self.domain_b is not None else "images"

    @property
    def target_shape(self) -> tuple[int, int, int] | None:
        """(C, H, W) of the targets (paired) or of domain B (unpaired); None for plain images."""
        if self.target is not None:
            return tuple(self.target.shape[1:])  # type: ignore[return-value]
        return self.domain_b.shape if self.domain_b is not None else None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else 0

    def subset(self, index: Tensor | slice) -> "Dataset":
        """The examples at `index` (with their targets); domain B of an unpaired dataset is kept whole."""
        return Dataset(self.name, self.split, self.x[index], None if self.y is None else self.y[index],
                       self.classes, dict(self.meta), None if self.target is None else self.target[index],
                       self.domain_b)

    def to(self, device: str | torch.device) -> "Dataset":
        return Dataset(self.name, self.split, self.x.to(device), None if self.y is None else self.y.to(device),
                       self.classes, self.meta, None if self.target is None else self.target.to(device),
                       None if self.domain_b is None else self.domain_b.to(device))

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, start: int = 0) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Yield (x, y) batches by indexing the whole tensors (no per-sample __getitem__ + collate)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else None
        end = n - n % batch_size if drop_last else n
        for i in range(start, end, batch_size):
            if order is None:
                sl = slice(i, min(i + batch_size, n))
                yield self.x[sl], None if self.y is None else self.y[sl]
            else:
                idx = order[i: i + batch_size]
                yield self.x[idx], None if self.y is None else self.y[idx]

    def describe(self) -> dict:
        return {
            "name": self.name, "split": self.split, "n": len(self), "shape": list(self.shape),
            "dtype": str(self.x.dtype).replace("torch.", ""),
            "classes": self.classes, "kind": self.kind,
            **({"target_shape": list(self.target_shape)} if self.target_shape else {}),
            **({"n_b": len(self.domain_b)} if self.domain_b is not None else {}), **self.meta,
        }


# ---- sources --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    name: str
    loader: Callable[..., Dataset]  # loader(split, root, download) -> Dataset
    summary: str
    files: tuple[str, ...] = ()  # files expected under root/<name>/ (for messages)
    kind: str = "images"  # images | paired | unpaired


_SOURCES: dict[str, Source] = {}


def register_source(name: str, summary: str, files: tuple[str, ...] = (), kind: str = "images") -> Callable:
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {', '.join(KINDS)}")

    def deco(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _SOURCES[name] = Source(name, fn, summary, files, kind)
        return fn

    return deco


def names_of_kind(kind: str) -> list[str]:
    """Registered dataset names of one kind (for error messages that name a dataset that would fit)."""
    _import_sources()
    return sorted(n for n, s in _SOURCES.items() if s.kind == kind)


def data_root(root: str | os.PathLike | None = None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("GENZOO_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/genzoo").expanduser()


def names() -> list[str]:
    _import_sources()
    return sorted(_SOURCES) + ["folder:PATH"]


def all_sources() -> list[Source]:
    _import_sources()
    return [_SOURCES[n] for n in sorted(_SOURCES)]


def _import_sources() -> None:
    import importlib

    from . import sources, toy  # noqa: F401  (they register the built-in sources)
    for mod in ("paired", "unpaired", "celeba"):  # derived translation datasets, when their modules exist
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{mod}":
                raise


def load(name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = False,
         **options) -> Dataset:
    """Load a named dataset split into memory. `options` go to the source (e.g. `size=` for folders)."""
    _import_sources()
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: expected 'train' or 'test'")
    if name.startswith("folder:"):
        from .sources import load_folder
        return load_folder(name[len("folder:"):], split=split, **options)
    if name.startswith(("pix2pix:", "sr:")):  # paired data from the user's folders (genzoo/data/paired.py)
        from .paired import PREFIXES
        prefix, path = name.split(":", 1)
        return PREFIXES[prefix](path, split=split, **options)
    if name.startswith("unpaired:"):  # CycleGAN's trainA/trainB/testA/testB folders (genzoo/data/unpaired.py)
        from .unpaired import load_unpaired_folder
        return load_unpaired_folder(name[len("unpaired:"):], split=split, **options)
    if name not in _SOURCES:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(names())}")
    return _SOURCES[name].loader(split=split, root=data_root(root), download=download, **options)


def info(name: str, root: str | os.PathLike | None = None) -> dict:
    ds = load(name, "train", root=root)
    out = ds.describe()
    try:
        out["n_test"] = len(load(name, "test", root=root))
    except (DataError, FileNotFoundError):
        out["n_test"] = 0
    return out
