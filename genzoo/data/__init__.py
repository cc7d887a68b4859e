"""The data layer: named datasets held in memory as uint8 tensors and batched by index.

`load(name, split="train", root=None, download=False, **options)` -> `Dataset`. Names: mnist, fashion-mnist,
cifar10, digits, mnist-mini, folder:PATH, pix2pix:PATH, sr:PATH, unpaired:PATH (and the derived and toy sets
registered by other modules). `options` are the source loader's keyword parameters (size= for folder:, scale=
/ crop= for sr:, ...), checked by name and type before any work; a run records them in run.json
("data_options") and every command that reloads its data uses them (`load_run_data`). Root: the `root`
argument, else `$GENZOO_DATA`, else `~/.cache/genzoo`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from .idx import DataError

__all__ = ["Dataset", "DataError", "load", "names", "info", "data_root", "register_source", "names_of_kind",
           "accepted_options", "check_options", "parse_options", "run_data", "load_run_data"]

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


def _loader(name: str) -> tuple[Callable[..., Dataset], dict]:
    """The source loader of `name` and the fixed arguments genzoo gives it (the options are the rest)."""
    _import_sources()
    if name.startswith("folder:"):
        from .sources import load_folder
        return load_folder, {"path": name[len("folder:"):]}
    if name.startswith(("pix2pix:", "sr:")):  # paired data from the user's folders (genzoo/data/paired.py)
        from .paired import PREFIXES
        prefix, path = name.split(":", 1)
        return PREFIXES[prefix], {"path": path}
    if name.startswith("unpaired:"):  # CycleGAN's trainA/trainB/testA/testB folders (genzoo/data/unpaired.py)
        from .unpaired import load_unpaired_folder
        return load_unpaired_folder, {"path": name[len("unpaired:"):]}
    if name not in _SOURCES:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(names())}")
    return _SOURCES[name].loader, {}


_FIXED_ARGS = ("path", "split", "root", "download")


def accepted_options(name: str) -> dict[str, Any]:
    """{option: default} of the keyword options dataset `name` takes (`genzoo train --data-opt KEY=VALUE`)."""
    import inspect
    fn, _ = _loader(name)
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.name not in _FIXED_ARGS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _prefix(name: str) -> str:
    return name.split(":", 1)[0] + ":PATH" if ":" in name else name


def check_options(name: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Check `options` against the keyword parameters of `name`'s source loader: an unknown option, or a value
    of the wrong type (e.g. crop='x' where an integer is expected), is a ValueError naming the option, the
    dataset and what it accepts. Ranges (scale=3 for sr:) are checked by the loader before it reads a file.
    Returns the options as a plain dict."""
    import typing
    options = dict(options or {})
    if not options:
        return options
    accepted = accepted_options(name)
    for key in options:
        if key not in accepted:
            listed = ", ".join(f"{k} (default {v!r})" for k, v in accepted.items())
            raise ValueError(f"data option {key!r}: {_prefix(name)} takes no such option; it accepts "
                             f"{listed or 'no options'}")
    fn, _ = _loader(name)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001  (an unresolvable annotation: the loader checks its own values)
        hints = {}
    for key, value in options.items():
        if key in hints and not _fits(value, hints[key]):
            raise ValueError(f"data option {key}={value!r} for {_prefix(name)}: expected {_expected(hints[key])}")
    return options


def _kinds(tp: Any) -> list[Any]:
    import types
    import typing
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [k for a in typing.get_args(tp) for k in _kinds(a)]
    return [typing.get_origin(tp) or tp]


def _fits(value: Any, tp: Any) -> bool:
    for k in _kinds(tp):
        if k is type(None) and value is None:
            return True
        if k is bool and isinstance(value, bool):
            return True
        if k is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if k is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if k is str and isinstance(value, str):
            return True
        if k in (tuple, list) and isinstance(value, (tuple, list)):
            return True
        if k is Any:
            return True
    return False


def _expected(tp: Any) -> str:
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string", tuple: "a pair (H, W)",
             list: "a list", type(None): "none"}
    return " or ".join(words.get(k, getattr(k, "__name__", str(k))) for k in _kinds(tp))


def check_image_options(size: Any = None, channels: Any = None) -> None:
    """The `size` (int or (H, W), positive) and `channels` (1 or 3) options the folder loaders share: a clear
    ValueError before any file is read."""
    if size is not None:
        pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)):
            raise ValueError(f"size={size!r}: expected a positive integer N (N x N images) or a pair (H, W)")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels={channels!r}: expected 1 (grey) or 3 (RGB)")


def parse_option_value(text: str) -> Any:
    """'16' -> 16, '0.1' -> 0.1, 'true'/'false' -> bool, 'none' -> None, anything else the string itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text.strip())
        except ValueError:
            pass
    return text.strip()


def parse_options(pairs: list[str] | None, flag: str = "--data-opt") -> dict[str, Any]:
    """['scale=2', 'crop=16'] -> {'scale': 2, 'crop': 16}; values parsed by `parse_option_value`."""
    out: dict[str, Any] = {}
    for p in pairs or []:
        key, eq, val = p.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{flag} {p!r}: expected KEY=VALUE, e.g. {flag} scale=2")
        out[key.strip()] = parse_option_value(val)
    return out


def run_data(run: str | os.PathLike, data: str | None = None) -> tuple[str, dict[str, Any]]:
    """(dataset name, data options) a run was trained on, from RUN/run.json ("data", "data_options"). With
    `data` naming another dataset, (data, {}): the run's options belong to its own dataset."""
    from .._io import read_json
    path = Path(run) / "run.json"
    info = read_json(path) if path.exists() else {}
    run_name = info.get("data")
    if data and data != run_name:
        return data, {}
    if run_name is None:
        raise ValueError(f"{path}: names no dataset (missing or without \"data\"); pass --data")
    return run_name, dict(info.get("data_options") or {})


def load_run_data(run: str | os.PathLike, split: str = "test", data: str | None = None,
                  root: str | os.PathLike | None = None) -> Dataset:
    """A split of the dataset a run was trained on, loaded with the run's data options (see `run_data`)."""
    name, options = run_data(run, data)
    return load(name, split, root=root, **options)


def load(name: str, split: str = "train", root: str | os.PathLike | None = None, download: bool = False,
         **options) -> Dataset:
    """Load a named dataset split into memory. `options` go to the source loader (e.g. `size=` for folder:,
    `scale=`/`crop=` for sr:); they are checked first (`check_options`)."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: expected 'train' or 'test'")
    fn, fixed = _loader(name)
    check_options(name, options)
    if fixed:  # a user folder (folder:, pix2pix:, sr:, unpaired:)
        return fn(fixed["path"], split=split, **options)
    return fn(split=split, root=data_root(root), download=download, **options)


def info(name: str, root: str | os.PathLike | None = None) -> dict:
    ds = load(name, "train", root=root)
    out = ds.describe()
    try:
        out["n_test"] = len(load(name, "test", root=root))
    except (DataError, FileNotFoundError):
        out["n_test"] = 0
    return out
