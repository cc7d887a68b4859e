"""Unpaired two-domain datasets (genzoo/data/unpaired.py): the built-in pairs against independent numpy
constructions, disjoint source images, the engine's independent sampling of domain B, and the user's
trainA/trainB/testA/testB layout with its errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo.data as gd
from genzoo.config import TrainConfig
from genzoo.data.unpaired import load_unpaired_folder
from genzoo.train import build_model
from genzoo.train.engine import Trainer


def test_unpaired_sources_are_registered_with_their_kind():
    kinds = {s.name: s.kind for s in gd.all_sources()}
    for name in ("mnist-digits", "mnist-thick", "mnist-fashion", "mnist-mini-digits", "mnist-mini-thick"):
        assert kinds[name] == "unpaired"
    assert kinds["digits28"] == "images" and kinds["thick-mnist"] == "images"
    assert "mnist-mini-thick" in gd.names_of_kind("unpaired")


def _dilate_np(x: np.ndarray) -> np.ndarray:
    """3x3 maximum filter with zero padding, written out with numpy slices (N, H, W)."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    h, w = x.shape[1:]
    return np.max([p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)


@pytest.mark.parametrize("split,n", [("train", 10_000), ("test", 2_000)])
def test_mini_thick_is_even_sources_vs_dilated_odd_sources(split, n):
    base = gd.load("mnist-mini", split)
    ds = gd.load("mnist-mini-thick", split)
    assert ds.kind == "unpaired" and len(ds) == n // 2 and len(ds.domain_b) == n // 2
    xb = base.x[:, 0].numpy()
    np.testing.assert_array_equal(ds.x[:, 0].numpy(), xb[0::2])
    np.testing.assert_array_equal(ds.y.numpy(), base.y[0::2].numpy())
    np.testing.assert_array_equal(ds.domain_b.x[:, 0].numpy(), _dilate_np(xb[1::2]))
    np.testing.assert_array_equal(ds.domain_b.y.numpy(), base.y[1::2].numpy())
    # thicker strokes: more ink in every B image than in its source
    assert (ds.domain_b.x.float().sum((1, 2, 3)) > base.x[1::2].float().sum((1, 2, 3))).all()
    assert ds.meta["domain_b"] == "thick-mnist" and ds.domain_b.meta["classifier"] == "thick-mnist"


def _bilinear_np(img: np.ndarray, out: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize of a square image (edge-clamped), as align_corners=False does."""
    n = img.shape[0]
    c = (np.arange(out) + 0.5) * n / out - 0.5
    c = np.clip(c, 0, n - 1)
    lo = np.floor(c).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    t = c - lo
    rows = img[lo] * (1 - t)[:, None] + img[hi] * t[:, None]  # (out, n)
    return rows[:, lo] * (1 - t)[None] + rows[:, hi] * t[None]


def test_digits28_is_the_digits_split_upsampled_into_a_20px_box():
    d8, d28 = gd.load("digits", "train"), gd.load("digits28", "train")
    assert len(d28) == 1438 and len(gd.load("digits28", "test")) == 359 and d28.shape == (1, 28, 28)
    np.testing.assert_array_equal(d28.y.numpy(), d8.y.numpy())
    for i in (0, 7, 500):
        ref = np.round(_bilinear_np(d8.x[i, 0].numpy().astype(np.float64), 20))
        got = d28.x[i, 0].numpy().astype(np.float64)
        assert np.abs(got[4:24, 4:24] - ref).max() <= 1  # float32 vs float64 rounding
        assert got[:4].sum() == got[24:].sum() == got[:, :4].sum() == got[:, 24:].sum() == 0
    ds = gd.load("mnist-mini-digits", "test")
    assert ds.kind == "unpaired" and len(ds) == 2000 and len(ds.domain_b) == 359
    assert ds.domain_b.classes == ds.classes


def _trainer(data: str, batch_size: int = 50, seed: int = 0) -> Trainer:
    ds = gd.load(data, "train")
    model = build_model("cyclegan", ds, preset="tiny")
    tc = TrainConfig(epochs=1, batch_size=batch_size, seed=seed, progress=False, validate=False)
    return Trainer(model, ds, tc, None)


def test_engine_draws_domain_b_independently_of_domain_a():
    tr = _trainer("mnist-mini-thick")
    ds = tr.train_data
    batches = list(tr._epoch_batches(0, 0))
    assert len(batches) == tr.steps_per_epoch == len(ds) // 50
    ya = torch.cat([b.y for b in batches])
    yb = torch.cat([b.y_target for b in batches])
    # an epoch is one pass over domain A: every A image exactly once
    assert torch.equal(ya.sort().values, ds.y.sort().values)
    # the labels at the same batch position agree only by chance (~ sum_k p_k^2 ~ 0.1), not as a pairing would
    p = torch.bincount(ds.y, minlength=10).double() / len(ds)
    chance = float((p * p).sum())
    agree = float((ya == yb).double().mean())
    assert abs(agree - chance) < 4 * (chance * (1 - chance) / len(ya)) ** 0.5
    # the A-B pairing changes between epochs
    b0, b1 = next(tr._epoch_batches(0, 0)), next(tr._epoch_batches(1, 0))
    assert not torch.equal(b0.target, b1.target)


def test_smaller_domain_b_is_cycled_evenly():
    # domain B's images carry their own index in two pixels, so the drawn indices can be read back exactly
    n_a, n_b = 1000, 137
    xb = torch.zeros(n_b, 1, 28, 28, dtype=torch.uint8)
    xb[:, 0, 0, 0], xb[:, 0, 0, 1] = torch.arange(n_b) // 256, torch.arange(n_b) % 256
    b = gd.Dataset("b", "train", xb)
    ds = gd.Dataset("ab", "train", torch.zeros(n_a, 1, 28, 28, dtype=torch.uint8), domain_b=b)
    model = build_model("cyclegan", ds, preset="tiny")
    tr = Trainer(model, ds, TrainConfig(epochs=1, batch_size=50, progress=False, validate=False), None)
    t = torch.cat([bt.target for bt in tr._epoch_batches(0, 0)])  # (1000, 1, 28, 28) in [-1, 1]
    px = ((t[:, 0, 0, :2] + 1) * 127.5).round().long()
    idx = px[:, 0] * 256 + px[:, 1]
    assert len(idx) == n_a and idx.max() < n_b
    counts = torch.bincount(idx, minlength=n_b)
    # 1000 draws over 137 images: each image 7 or 8 times (whole permutations, then part of one more)
    assert counts.min() >= n_a // n_b and counts.max() <= -(-n_a // n_b)


# ---- unpaired:PATH ---------------------------------------------------------------------------------------
def _write(folder, n, size=(12, 10), mode="L", value=100):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = np.full((size[0], size[1]) + ((3,) if mode == "RGB" else ()), value + i, dtype=np.uint8)
        Image.fromarray(arr, mode).save(folder / f"{i:03d}.png")


def test_cyclegan_layout_loads_both_domains(tmp_path):
    _write(tmp_path / "trainA", 5)
    _write(tmp_path / "trainB", 3, size=(24, 20), mode="RGB", value=10)
    _write(tmp_path / "testA", 2, size=(6, 5))
    _write(tmp_path / "testB", 4)
    tr = gd.load(f"unpaired:{tmp_path}", "train")
    assert tr.kind == "unpaired" and tr.x.shape == (5, 1, 12, 10) and tr.domain_b.x.shape == (3, 3, 12, 10)
    assert tr.x[:, 0, 0, 0].tolist() == [100, 101, 102, 103, 104]
    assert int(tr.domain_b.x[1, 0, 5, 5]) == 11  # a constant image stays constant when resized
    te = gd.load(f"unpaired:{tmp_path}", "test")  # test images are brought to trainA's size
    assert te.x.shape == (2, 1, 12, 10) and te.domain_b.x.shape == (4, 1, 12, 10)
    sq = load_unpaired_folder(tmp_path, "train", size=8, channels=3, fit="crop")
    assert sq.x.shape == (5, 3, 8, 8) and sq.domain_b.x.shape == (3, 3, 8, 8)


def test_crop_fit_keeps_the_centre(tmp_path):
    arr = np.zeros((10, 30), dtype=np.uint8)
    arr[:, 10:20] = 255  # a white centre third
    for d in ("trainA", "trainB"):
        (tmp_path / d).mkdir()
        Image.fromarray(arr).save(tmp_path / d / "x.png")
    ds = load_unpaired_folder(tmp_path, "train", size=10, fit="crop")
    assert ds.x.shape == (1, 1, 10, 10) and ds.x.float().mean() > 250


def test_cyclegan_layout_errors(tmp_path):
    with pytest.raises(gd.DataError, match="not a folder"):
        load_unpaired_folder(tmp_path / "nope")
    _write(tmp_path / "trainA", 2)
    with pytest.raises(gd.DataError, match=r"missing trainB/.*found: trainA/"):
        load_unpaired_folder(tmp_path, "train")
    (tmp_path / "trainB").mkdir()
    with pytest.raises(gd.DataError, match=r"trainB: no PNG/JPEG images"):
        load_unpaired_folder(tmp_path, "train")
    (tmp_path / "trainB" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(gd.DataError, match=r"bad.png: cannot read image"):
        load_unpaired_folder(tmp_path, "train")
    with pytest.raises(gd.DataError, match=r"missing testA/, testB/ for split 'test'"):
        load_unpaired_folder(tmp_path, "test")
    with pytest.raises(gd.DataError, match="fit='stretch'"):
        load_unpaired_folder(tmp_path, "train", fit="stretch")
    with pytest.raises(gd.DataError, match="channels=2"):
        load_unpaired_folder(tmp_path, "train", channels=2)
