"""Images sent by the page (an uploaded PNG/JPEG or the drawing canvas) -> uint8 tensors the model can take.

Everything a client sends is untrusted: the byte size is capped before decoding, the pixel count (and frame
count) is checked from the header before any pixel is decoded (Pillow's decompression-bomb guard stays on as a
second line), a PNG's ancillary chunks are dropped unread, large images are decoded or reduced to a working size
early, only PNG and JPEG are opened, and every failure is an `UploadError` carrying an HTTP status and a
readable message.
"""
from __future__ import annotations

import io
import struct

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

MAX_BYTES = 4 * 1024 * 1024  # 4 MiB
MAX_PIXELS = 2048 * 2048  # pixels to decode (all frames), checked from the header, before decoding
WORK_SIDE = 512  # larger uploads are decoded or reduced to about this many pixels on their shorter side
FORMATS = ("PNG", "JPEG")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_KEEP = (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND")  # all that decoding the first frame needs
REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK")  # modes Image.reduce averages correctly
MNIST_BOX = 20 / 28  # MNIST digits are scaled to fit a 20x20 box inside 28x28, then centred by mass


class UploadError(ValueError):
    """A bad upload: `status` is the HTTP status to answer with (413 too large, 415 not an image, 400 broken)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def open_image(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
               work_side: int | None = None) -> Image.Image:
    """Decode PNG/JPEG bytes into a fully loaded PIL image, or raise UploadError.

    Before any pixel is decoded: the byte size is checked, a PNG's chunks are walked (its declared size and
    frame count read from IHDR and acTL, and every chunk but IHDR, PLTE, tRNS, IDAT and IEND dropped, so that
    Pillow inflates no text or profile chunks and sees one frame), a JPEG is set to decode in the DCT at the
    smallest scale that keeps `work_side` pixels on its shorter side, and the pixels to decode (width x height
    x frames) must be at most `max_pixels`; Pillow's decompression-bomb guard stays on behind that. After
    decoding, an image whose shorter side is at least twice `work_side` is reduced by an integer factor (box
    average), so later conversions handle small images."""
    if not data:
        raise UploadError(400, "the upload is empty: send the bytes of a PNG or JPEG image")
    if len(data) > max_bytes:
        raise UploadError(413, f"the upload has {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    frames = 1
    if data.startswith(PNG_SIGNATURE):
        data, (w, h), frames = clean_png(data)
        _check_pixels(w, h, frames, max_pixels)
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise UploadError(415, "the upload is not a PNG or JPEG image") from None
    except Image.DecompressionBombError as e:
        raise UploadError(413, f"the image is too large to decode ({e}); the limit is {max_pixels:,} pixels") \
            from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UploadError(400, f"cannot read the image header ({e})") from None
    frames = max(frames, int(getattr(im, "n_frames", 1) or 1))
    w, h = im.size
    if w < 1 or h < 1:
        raise UploadError(400, f"the image header says {w} x {h} pixels")
    note = ""
    if im.format == "JPEG" and work_side and min(w, h) > 2 * work_side:
        s = work_side / min(w, h)
        im.draft(None, (max(1, int(w * s)), max(1, int(h * s))))
        if im.size != (w, h):
            note = f" (a {w} x {h} JPEG read at 1/{round(w / im.size[0])} scale)"
    _check_pixels(*im.size, frames, max_pixels, note)
    try:
        im.load()
    except Image.DecompressionBombError as e:
        raise UploadError(413, f"the image is too large to decode ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UploadError(400, f"the image is truncated or corrupt ({e})") from None
    if work_side and min(im.size) >= 2 * work_side:
        if im.mode not in REDUCIBLE:  # palette, 1-bit, 16-bit: to a mode whose values can be averaged
            if im.mode == "PA" or "transparency" in im.info:
                im = im.convert("RGBA")
            else:
                im = im.convert({"1": "L", "I;16": "I", "I;16B": "I", "I;16L": "I"}.get(im.mode, "RGB"))
        im = im.reduce(min(im.size) // work_side)
    return im


def _check_pixels(w: int, h: int, frames: int, max_pixels: int, note: str = "") -> None:
    n = w * h * frames
    if n > max_pixels:
        side = int(max_pixels ** 0.5)
        of = f" x {frames} frames" if frames > 1 else ""
        raise UploadError(413, f"the image is too large to decode: {w} x {h}{of} = {n:,} pixels{note}; the limit "
                               f"is {max_pixels:,} pixels (e.g. {side} x {side}): send a smaller image")


def clean_png(data: bytes) -> tuple[bytes, tuple[int, int], int]:
    """PNG bytes -> (the same image with only the chunks needed to decode its first frame, its declared
    (width, height), its declared frame count), without inflating anything. A truncated last chunk is kept
    as it is (Pillow then says the file is truncated)."""
    if data[12:16] != b"IHDR" or len(data) < 33:
        raise UploadError(400, "cannot read the image header (a PNG must start with its IHDR chunk)")
    w, h = struct.unpack(">II", data[16:24])
    out, frames, pos = [PNG_SIGNATURE], 1, len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos: pos + 4]), data[pos + 4: pos + 8]
        end = pos + 12 + length
        if end > len(data):  # truncated
            out.append(data[pos:])
            break
        if kind == b"acTL" and length >= 4:
            frames = max(1, struct.unpack(">I", data[pos + 8: pos + 12])[0])
        if kind in PNG_KEEP:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            break
    return b"".join(out), (w, h), frames


def to_model_pixels(im: Image.Image, shape: tuple[int, int, int], *, invert: bool | None = None,
                    background: float = 0.0, fit: bool = False) -> torch.Tensor:
    """A PIL image -> uint8 (1, C, H, W) of the model's `shape` (C, H, W).

    Grey models get luminance, colour models RGB; transparent pixels become a background that contrasts with
    the visible ones. `invert` flips the intensities (a dark digit on white paper for a model trained on white
    digits on black); None decides for grey images: invert when the image's border (its background) is on the
    other side of mid-grey from `background`, the data set's own border level (0..255). `fit` (grey only) does
    what MNIST's makers did: crop to the ink, scale its longer side to 20/28 of the frame and centre it by its
    centre of mass; without `fit` the image is centre-cropped to the model's aspect ratio and resized.
    """
    c, h, w = shape
    if c not in (1, 3):
        raise UploadError(400, f"this model takes {c}-channel images; uploads work for grey or RGB models")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        seen = rgba[..., 3] > 0
        ink = float(np.asarray(im.convert("L"))[seen].mean()) if seen.any() else 255.0
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255) if ink > 127 else (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
    im = im.convert("L" if c == 1 else "RGB")
    a = np.array(im)  # a writable copy
    if invert is None:
        invert = c == 1 and (border_level(torch.from_numpy(a)[None, None]) > 127) != (background > 127)
    if invert:
        a = 255 - a
    if fit and c == 1:
        if background > 127:  # fit_like_mnist wants bright ink on black
            out = 255 - fit_like_mnist(255 - a, h, w)
        else:
            out = fit_like_mnist(a, h, w)
    else:
        out = np.asarray(_crop_resize(Image.fromarray(a), h, w))
    t = torch.from_numpy(np.array(out))  # a writable copy
    return (t[None, None] if c == 1 else t.permute(2, 0, 1)[None]).to(torch.uint8)  # (1, C, H, W)


def _crop_resize(im: Image.Image, h: int, w: int) -> Image.Image:
    """Centre-crop to aspect w/h, then resize to (w, h)."""
    W, H = im.size
    if W * h > H * w:  # too wide
        cw = max(1, round(H * w / h))
        im = im.crop(((W - cw) // 2, 0, (W - cw) // 2 + cw, H))
    elif W * h < H * w:  # too tall
        ch = max(1, round(W * h / w))
        im = im.crop((0, (H - ch) // 2, W, (H - ch) // 2 + ch))
    return im.resize((w, h), Image.BILINEAR, reducing_gap=3.0)


def fit_like_mnist(a: np.ndarray, h: int, w: int, box: float = MNIST_BOX) -> np.ndarray:
    """Bright ink on black, any size (H0, W0) uint8 -> (h, w) uint8 in MNIST's framing (LeCun et al. 1998):
    the ink's bounding box is scaled (aspect kept) so its longer side is `box`*min(h, w), then placed so its
    centre of mass sits at the frame centre."""
    ys, xs = np.nonzero(a > 25)
    if len(ys) == 0:
        return np.zeros((h, w), np.uint8)
    crop = a[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    side = max(1.0, box * min(h, w))
    s = side / max(crop.shape)
    ch, cw = max(1, round(crop.shape[0] * s)), max(1, round(crop.shape[1] * s))
    small = np.asarray(Image.fromarray(crop).resize((cw, ch), Image.LANCZOS, reducing_gap=3.0), dtype=np.float64)
    mass = small.sum()
    if mass <= 0:
        return np.zeros((h, w), np.uint8)
    cy = (small.sum(1) * np.arange(ch)).sum() / mass  # centre of mass inside the scaled crop
    cx = (small.sum(0) * np.arange(cw)).sum() / mass
    top = int(round((h - 1) / 2 - cy))
    left = int(round((w - 1) / 2 - cx))
    top, left = min(max(top, 0), h - ch), min(max(left, 0), w - cw)  # keep the whole digit in the frame
    out = np.zeros((h, w), np.float64)
    out[top: top + ch, left: left + cw] = small
    return out.clip(0, 255).round().astype(np.uint8)


def border_level(x: torch.Tensor) -> float:
    """Median intensity (0..255) of the outermost pixels of uint8 images (N, C, H, W): the background."""
    b = torch.cat([x[..., 0, :].flatten(), x[..., -1, :].flatten(), x[..., :, 0].flatten(),
                   x[..., :, -1].flatten()])
    return float(b.float().median())
