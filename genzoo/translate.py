"""Translation from Python: what `genzoo translate` does, for any model that can `translate`.

    model = genzoo.load("runs/p2p")
    src, out, tgt = translate_split(model, "mnist-edges", "test", n=16)   # images in [0, 1]
    save_translation_grid(src, out, tgt, "grid.png")                        # rows: source | output | target
    translate_files(model, "my_sketches/", "out_dir/")                      # your own images, any size
    translate_array(model, uint8_image)                                     # (H, W[, C]) uint8 -> uint8

The generators are fully convolutional: an image of another size than the training images works (a
super-resolution model upsamples a whole photo by its scale).
"""
from __future__ import annotations

from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import data as gdata
from .images import grid, png_bytes, save_images, to_uint8
from ._io import write_bytes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def check_direction(model, direction: str | None) -> str | None:
    """`direction` must be one of `model.directions` (None: the model's default, its first)."""
    if not model.can("translate"):
        raise ValueError(f"a {model.model_type} model cannot translate (it has: {', '.join(model.capabilities)})")
    dirs = tuple(getattr(model, "directions", ("a2b",)))
    if direction is not None and direction not in dirs:
        raise ValueError(f"--direction {direction!r}: a {model.model_type} model translates {', '.join(dirs)}")
    return direction


@torch.no_grad()
def translate_tensor(model, x_uint8: Tensor, direction: str | None = None, batch_size: int = 256) -> Tensor:
    """uint8 (N, C, H, W) -> outputs in [0, 1] (N, C', H', W'), on the CPU."""
    model.eval()
    out = []
    kw = {} if direction is None else {"direction": direction}
    for i in range(0, len(x_uint8), batch_size):
        x = model.prepare(x_uint8[i:i + batch_size].to(model.device))
        out.append(model.to_unit(model.translate(x, **kw)).float().cpu())
    return torch.cat(out)


def split_sources(ds: gdata.Dataset, direction: str | None) -> tuple[Tensor, Tensor | None]:
    """The sources (uint8) and aligned targets (or None) of a split for `direction`: a paired dataset's x and
    target; an unpaired one's domain A (a2b) or domain B (b2a), with no aligned target."""
    if ds.kind == "paired":
        return ds.x, ds.target
    if ds.kind == "unpaired":
        if direction == "b2a":
            return ds.domain_b.x, None
        return ds.x, None
    return ds.x, None


def translate_split(model, data: str, split: str = "test", n: int = 16, direction: str | None = None,
                    root=None, data_options: dict | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """The first `n` sources of `data`'s `split`, their translations and their targets (None when the data
    has no aligned targets; for a two-direction model, the translations translated back), all in [0, 1].
    `data_options`: the dataset loader's options (a run's are in run.json: `genzoo.data.run_data(run)`)."""
    if n < 1:
        raise ValueError(f"-n {n}: expected the number of images, an integer >= 1")
    direction = check_direction(model, direction)
    ds = gdata.load(data, split, root=root, **(data_options or {}))
    xs, ts = split_sources(ds, direction)
    xs = xs[:n]
    out = translate_tensor(model, xs, direction)
    back = reverse_direction(model, direction)
    if ts is None and back is not None:  # two-direction models (cyclegan): the third row is the cycle back
        return xs.float() / 255, out, translate_tensor(model, (out * 255).round().to(torch.uint8), back)
    return xs.float() / 255, out, None if ts is None else ts[:n].float() / 255


def reverse_direction(model, direction: str | None) -> str | None:
    """The other direction of a model with exactly two (a2b <-> b2a), else None."""
    dirs = tuple(getattr(model, "directions", ("a2b",)))
    if len(dirs) != 2:
        return None
    return dirs[1] if (direction or dirs[0]) == dirs[0] else dirs[0]


def _display(x: Tensor, like: Tensor) -> Tensor:
    """Resize (nearest) and match channels of x to `like`, for side-by-side rows."""
    if tuple(x.shape[-2:]) != tuple(like.shape[-2:]):
        x = F.interpolate(x, size=like.shape[-2:], mode="nearest")
    if x.shape[1] != like.shape[1]:
        x = x.expand(-1, like.shape[1], -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True).expand_as(like)
    return x


def translation_rows(rows: list[Tensor], per_row: int = 16) -> tuple[Tensor, int]:
    """Stack rows of images (each (n, C, H, W) in [0, 1], e.g. source, output, target) into one grid input:
    blocks of `per_row` columns, each block one row per entry of `rows`. Returns (images, nrow)."""
    ref = max(rows, key=lambda r: (r.shape[-2] * r.shape[-1], r.shape[1]))  # the largest images set the size
    rows = [_display(r, ref) for r in rows]
    n = len(rows[0])
    per_row = min(per_row, n)
    blocks = []
    for i in range(0, n, per_row):
        for r in rows:
            chunk = r[i:i + per_row]
            if len(chunk) < per_row:  # pad the last block with white
                chunk = torch.cat([chunk, torch.ones(per_row - len(chunk), *chunk.shape[1:])])
            blocks.append(chunk)
    return torch.cat(blocks), per_row


def save_translation_grid(source: Tensor, output: Tensor, target: Tensor | None, path: str | Path,
                          scale: int = 2) -> Path:
    """A PNG with rows source | output | target (blocks of 16 columns)."""
    rows = [source, output] + ([target] if target is not None else [])
    imgs, nrow = translation_rows(rows)
    return write_bytes(path, png_bytes(grid(imgs, nrow), scale))


# ---- the user's own images -----------------------------------------------------------------------------
def _as_model_channels(a: np.ndarray, c: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, C) -> (c, H, W)."""
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 4:
        a = a[:, :, :3]
    if a.shape[2] == c:
        return a.transpose(2, 0, 1)
    if c == 1:
        return np.round(a.mean(2, keepdims=True)).astype(np.uint8).transpose(2, 0, 1)
    if a.shape[2] == 1:
        return np.repeat(a, c, 2).transpose(2, 0, 1)
    raise ValueError(f"cannot map a {a.shape[2]}-channel image to the model's {c} channels")


@torch.no_grad()
def translate_array(model, a: np.ndarray, direction: str | None = None) -> np.ndarray:
    """One uint8 image (H, W) or (H, W, C), any size -> the translated uint8 image ((H', W') grey or
    (H', W', C) colour), converted to the model's input channels first."""
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {a.dtype}")
    direction = check_direction(model, direction)
    c = model.source_shape(direction)[0] if hasattr(model, "source_shape") else model.config.image_shape[0]
    x = torch.from_numpy(np.array(_as_model_channels(a, c)))[None]  # (1, c, H, W)
    return to_uint8(translate_tensor(model, x, direction))[0]


def read_inputs(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) for an image file, a folder of images (sorted), or a .npy of uint8 (H, W),
    (N, H, W) or (N, H, W, C) images (names NAME_0000 ...)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | {".npy"})
        if not files:
            raise FileNotFoundError(f"{p}: no images ({', '.join(sorted(IMAGE_SUFFIXES))} or .npy)")
        return [item for f in files for item in read_inputs(f)]
    if not p.is_file():
        raise FileNotFoundError(f"--input {p}: no such file or folder")
    if p.suffix.lower() == ".npy":
        try:
            a = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{p}: cannot read as a numpy array ({e})") from None
        if a.dtype != np.uint8:
            raise ValueError(f"{p}: expected uint8 images, got dtype {a.dtype}")
        if a.ndim == 2:
            return [(p.stem, a)]
        if a.ndim in (3, 4):
            if a.ndim == 3 and a.shape[2] in (3, 4) and a.shape[0] > 4:  # one colour image (H, W, C)
                return [(p.stem, a)]
            return [(f"{p.stem}_{i:04d}", a[i]) for i in range(len(a))]
        raise ValueError(f"{p}: expected (H, W), (N, H, W) or (N, H, W, C) images, got shape {a.shape}")
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"--input {p}: expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a .npy or a folder")
    try:
        with Image.open(p) as im:
            im.load()
            grey = im.mode in ("1", "L", "LA", "I", "I;16", "F")
            a = np.array(im.convert("L" if grey else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"{p}: cannot read image ({e})") from None
    return [(p.stem, a)]


def translate_files(model, inputs: str | Path, out: str | Path, direction: str | None = None) -> list[Path]:
    """Translate every image of `inputs` (file, folder or .npy); `out` a folder (one NAME.png per image) or a
    FILE.npy (all outputs in one uint8 array; they must share a size). Returns the paths written."""
    out = Path(out)
    items = read_inputs(inputs)
    results = [(name, translate_array(model, a, direction)) for name, a in items]
    if out.suffix == ".npy":
        shapes = {r.shape for _, r in results}
        if len(shapes) > 1:
            raise ValueError(f"--out {out}: the outputs have different sizes {sorted(shapes)}; write a folder instead")
        return [save_images_uint8(np.stack([r for _, r in results]), out)]
    if out.suffix:
        raise ValueError(f"--out {out}: expected a folder (one PNG per image) or a FILE.npy")
    written = []
    for name, r in results:
        written.append(write_bytes(out / f"{name}.png", png_bytes(r)))
    return written


def save_images_uint8(a: np.ndarray, path: Path) -> Path:
    import io
    buf = io.BytesIO()
    np.save(buf, a)
    return write_bytes(path, buf.getvalue())


def save_outputs(output01: Tensor, path: str | Path) -> Path:
    """`.npy`: uint8 (N, H, W) / (N, H, W, C) of the outputs alone."""
    return save_images(output01, path)


__all__ = ["translate_split", "translate_tensor", "translate_array", "translate_files", "save_translation_grid",
           "translation_rows", "read_inputs", "check_direction", "split_sources"]
