"""Attribute directions and latent arithmetic (White 2016; Larsen et al. 2016; the DCGAN paper's "smiling woman
- neutral woman + neutral man").

direction(attribute) = mean of the codes with it - mean of the codes without it; shifting a code by alpha times
the direction adds (alpha > 0) or removes (alpha < 0) the attribute. On MNIST the classes serve as attributes
(`class_direction`); a boolean attribute table such as CelebA's `list_attr_celeba.txt` is read by
`read_attributes` (genzoo has no CelebA source: point it at the file when you have the data).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from .codes import decode, encode, encode_dataset, read_image


def class_means(codes: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    """Mean code of each class: (K, L); a class with no examples gets a row of NaN."""
    labels = torch.as_tensor(labels).long()
    k = num_classes if num_classes is not None else int(labels.max()) + 1
    sums = torch.zeros(k, codes.shape[1], dtype=torch.float64).index_add_(0, labels, codes.double())
    counts = torch.bincount(labels, minlength=k).double()[:, None]
    return (sums / counts).float()  # 0/0 = NaN for empty classes


def attribute_direction(codes: Tensor, mask: Tensor) -> Tensor:
    """mean(codes[mask]) - mean(codes[~mask]), (L,). `mask`: boolean (N,), True where the attribute holds."""
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.shape != codes.shape[:1]:
        raise ValueError(f"mask has shape {tuple(mask.shape)}; expected ({len(codes)},), one entry per code")
    n_with, n_without = int(mask.sum()), int((~mask).sum())
    if n_with == 0 or n_without == 0:
        raise ValueError(f"an attribute direction needs codes with and without the attribute; got {n_with} with "
                         f"and {n_without} without")
    return codes[mask].double().mean(0).float() - codes[~mask].double().mean(0).float()


def class_direction(codes: Tensor, labels: Tensor, target: int, base: int | None = None) -> Tensor:
    """Direction towards class `target`: mean(target) - mean(every other class), or - mean(class `base`)."""
    labels = torch.as_tensor(labels).long()
    if base is not None:
        keep = (labels == target) | (labels == base)
        codes, labels = codes[keep], labels[keep]
    return attribute_direction(codes, labels == target)


def shift(x: Tensor, direction: Tensor, alpha: float | Sequence[float], model: Any = None,
          labels: Tensor | None = None) -> Tensor:
    """z + alpha * direction. Without `model`, `x` holds codes (N, L) (or one code (L,)). With `model`, `x`
    holds images (N, C, H, W): they are encoded (`model.code`), shifted and decoded to images in [0, 1].
    A scalar alpha gives (N, ...); a sequence of A alphas gives (N, A, ...) — one row per input."""
    direction = torch.as_tensor(direction, dtype=torch.float32)
    z = encode(model, x, labels) if model is not None else torch.as_tensor(x, dtype=torch.float32)
    z = z[None] if z.ndim == 1 else z
    if z.shape[-1] != direction.shape[-1]:
        raise ValueError(f"direction has {direction.shape[-1]} dimensions but the codes have {z.shape[-1]}")
    scalar = isinstance(alpha, (int, float))
    a = torch.tensor([alpha] if scalar else list(alpha), dtype=torch.float32)
    out = z[:, None, :] + a[None, :, None] * direction  # (N, A, L)
    if model is not None:
        n, k = out.shape[:2]
        rep = None if labels is None else torch.as_tensor(labels).repeat_interleave(k)
        out = decode(model, out.reshape(n * k, -1), rep)
        out = out.reshape(n, k, *out.shape[1:])  # (N, A, C, H, W)
    return out[:, 0] if scalar else out


_TERM = re.compile(r"\s*([+-])?\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?([A-Za-z_][\w:.]*|\d+)\s*")


def parse_expression(expr: str) -> list[tuple[float, str]]:
    """'a - b + 0.5*c' -> [(1.0, 'a'), (-1.0, 'b'), (0.5, 'c')]. Operands: names (letters, digits, _, :, .)
    or integers; each may carry a coefficient `k*`."""
    terms, pos = [], 0
    expr = expr.strip()
    if not expr:
        raise ValueError("empty latent expression; expected something like 'a - b + c'")
    while pos < len(expr):
        m = _TERM.match(expr, pos)
        if m is None or m.end() == pos or (terms and m.group(1) is None):
            raise ValueError(f"cannot parse latent expression {expr!r} at {expr[pos:]!r}; expected terms such as "
                             f"'a - b + 0.5*c' joined by + and -")
        sign = -1.0 if m.group(1) == "-" else 1.0
        terms.append((sign * float(m.group(2) or 1.0), m.group(3)))
        pos = m.end()
    return terms


def arithmetic(expr: str, values: Mapping[str, Tensor]) -> Tensor:
    """Evaluate `expr` (see parse_expression) on latent codes: sum_i coef_i * values[name_i]."""
    terms = parse_expression(expr)
    missing = [name for _, name in terms if name not in values]
    if missing:
        raise ValueError(f"latent expression {expr!r}: no code given for {', '.join(missing)}; "
                         f"known names: {', '.join(values) or 'none'}")
    return sum(c * torch.as_tensor(values[name], dtype=torch.float32) for c, name in terms)


def read_attributes(path: str | Path) -> tuple[list[str], list[str], Tensor]:
    """A CelebA-style attribute table -> (attribute names, image ids, values bool (N, A)).

    Reads the original `list_attr_celeba.txt` (line 1: the count, line 2: the names, then `file v1 v2 ...`
    with values 1 / -1) and the CSV form (`image_id,Attr1,...`). Values > 0 are True."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such attribute file") from None
    if not lines:
        raise ValueError(f"{path}: empty attribute file")
    if "," in lines[0]:
        rows = [ln.split(",") for ln in lines]
        names, rows = [s.strip() for s in rows[0][1:]], rows[1:]
    else:
        start = 1 if lines[0].strip().isdigit() else 0
        names, rows = lines[start].split(), [ln.split() for ln in lines[start + 1:]]
    ids, values = [], []
    for i, r in enumerate(rows):
        if len(r) != len(names) + 1:
            raise ValueError(f"{path}: row {i + 1} has {len(r) - 1} values; expected {len(names)} ({r[0]})")
        try:
            values.append([int(v) > 0 for v in r[1:]])
        except ValueError:
            raise ValueError(f"{path}: row {i + 1} ({r[0]}): expected integer attribute values such as 1 / -1") from None
        ids.append(r[0].strip())
    return names, ids, torch.tensor(values, dtype=torch.bool).reshape(len(ids), len(names))


def balanced_rows(mask: Tensor, n: int, seed: int = 0) -> Tensor:
    """Sorted indices of n rows, a seeded sample with half of them (as far as there are) where `mask` holds and
    the rest where it does not: a rare attribute (CelebA's Bald: 2%) still gets ~n/2 images on its side."""
    g = torch.Generator().manual_seed(seed)
    pos, neg = (torch.nonzero(m).flatten() for m in (mask, ~mask))
    pos, neg = pos[torch.randperm(len(pos), generator=g)], neg[torch.randperm(len(neg), generator=g)]
    k = min(len(pos), max(n // 2, n - len(neg)))
    return torch.cat([pos[:k], neg[:n - k]]).sort().values


def file_attribute_direction(model: Any, attr_file: str | Path, image_dir: str | Path, attribute: str,
                             n: int = 2000, seed: int = 0) -> Tensor:
    """Direction of a boolean `attribute` of a CelebA-style table: `n` of the images it lists (a seeded sample,
    half with the attribute and half without as far as there are: `balanced_rows`) are read from `image_dir`
    (resized to the model's image shape), encoded, and split by the attribute."""
    names, ids, values = read_attributes(attr_file)
    if attribute not in names:
        raise ValueError(f"{attr_file}: no attribute {attribute!r}; attributes: {', '.join(names)}")
    mask = values[:, names.index(attribute)]
    rows = balanced_rows(mask, n, seed)
    ids, mask = [ids[i] for i in rows.tolist()], mask[rows]
    x = torch.cat([read_image(Path(image_dir) / i, model.config.image_shape) for i in ids])
    return attribute_direction(encode(model, x), mask)


def dataset_attribute_direction(model: Any, ds: Any, attribute: str, n: int = 2000, seed: int = 0) -> Tensor:
    """Direction of a boolean `attribute` of a dataset with an attribute table (celeba): `n` of its images, a
    seeded sample half with the attribute and half without (`balanced_rows`), encoded and split by it."""
    from ..data.celeba import attribute_mask
    mask = attribute_mask(ds, attribute)
    rows = balanced_rows(mask, n, seed)
    return attribute_direction(encode_dataset(model, ds.subset(rows))[0], mask[rows])
