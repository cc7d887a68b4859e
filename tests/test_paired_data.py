"""Paired datasets: the derived tasks against independent numpy computations, the two pix2pix folder layouts and
every mismatch error, and super-resolution pairs from an image folder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import genzoo.data as gd
from genzoo.cli._app import app
from genzoo.cli import commands  # noqa: F401  (registers the commands)
from genzoo.data import DataError
from genzoo.data.paired import area_downsample, mask_square


def save(path, a):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def rnd(h, w, c=3, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    return a[:, :, 0] if c == 1 else a


# ---- derived tasks -------------------------------------------------------------------------------------
def test_derived_tasks_are_paired_and_listed():
    names = gd.names_of_kind("paired")
    for base in ("mnist", "fashion-mnist", "mnist-mini"):
        for task in ("edges", "inpaint", "sr2", "sr4"):
            assert f"{base}-{task}" in names
    ds = gd.load("mnist-mini-sr4", "test")
    assert ds.kind == "paired" and ds.shape == (1, 7, 7) and ds.target_shape == (1, 28, 28)
    base = gd.load("mnist-mini", "test")
    assert torch.equal(ds.target, base.x) and torch.equal(ds.y, base.y)
    out = CliRunner().invoke(app, ["data", "list"], catch_exceptions=False).output
    assert "mnist-mini-edges" in out and "Sobel" in out


def test_sr_sources_are_area_means_rounded():
    ds = gd.load("mnist-mini-sr2", "train")
    hr = ds.target[:50, 0].numpy().astype(np.float64)  # (50, 28, 28)
    ref = hr.reshape(50, 14, 2, 14, 2).mean((2, 4))
    assert np.array_equal(ds.x[:50, 0].numpy(), np.round(ref).astype(np.uint8))  # nearest, ties to even
    with pytest.raises(DataError, match="not a multiple"):
        area_downsample(torch.zeros(1, 1, 10, 10, dtype=torch.uint8), 4)


def test_edges_match_a_numpy_sobel():
    ds = gd.load("mnist-mini-edges", "test")
    img = ds.target[:20, 0].numpy().astype(np.float64) / 255
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)))
    # Sobel by explicit shifts: gx = sum_k K_x[i, j] * I(y + i - 1, x + j - 1)
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
    gx = sum(kx[i, j] * p[:, i:i + 28, j:j + 28] for i in range(3) for j in range(3))
    gy = sum(kx.T[i, j] * p[:, i:i + 28, j:j + 28] for i in range(3) for j in range(3))
    ref = (np.sqrt(gx ** 2 + gy ** 2) > 1.0).astype(np.uint8) * 255
    got = ds.x[:20, 0].numpy()
    assert (got != ref).mean() < 1e-3  # float rounding at the threshold only
    assert set(np.unique(got)) <= {0, 255} and (got == 255).mean() > 0.05


def test_inpaint_masks_one_square_per_image_deterministically():
    ds = gd.load("mnist-mini-inpaint", "test")
    for i in range(20):
        src, tgt = ds.x[i, 0].numpy(), ds.target[i, 0].numpy()
        # the one 12 x 12 window that is all grey 128; everything outside it is the untouched image
        wins = [(r, c) for r in range(17) for c in range(17) if (src[r:r + 12, c:c + 12] == 128).all()]
        assert len(wins) >= 1
        r, c = wins[0]
        outside = np.ones_like(src, dtype=bool)
        outside[r:r + 12, c:c + 12] = False
        assert np.array_equal(src[outside], tgt[outside])
        assert (src != tgt).sum() <= 144 and (src != tgt).any()
    again = gd.load("mnist-mini-inpaint", "test", seed=0)
    assert torch.equal(again.x, ds.x)
    other = gd.load("mnist-mini-inpaint", "test", seed=1)
    assert not torch.equal(other.x, ds.x)
    x = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    assert torch.equal(mask_square(x, 5), mask_square(x, 5)) and (mask_square(x, 5, side=2) == 128).sum() == 12


# ---- pix2pix:PATH, AB layout ------------------------------------------------------------------------------
def test_ab_layout_splits_halves_and_direction(tmp_path):
    a, b = rnd(16, 16, seed=1), rnd(16, 16, seed=2)
    for split in ("train", "val"):
        for i in range(3):
            save(tmp_path / split / f"{i}.png", np.concatenate([a, b], 1))
    tr = gd.load(f"pix2pix:{tmp_path}", "train")
    assert tr.kind == "paired" and tr.x.shape == (3, 3, 16, 16) and tr.meta["layout"] == "AB"
    assert np.array_equal(tr.x[0].permute(1, 2, 0).numpy(), a) and np.array_equal(tr.target[0].permute(1, 2, 0).numpy(), b)
    te = gd.load(f"pix2pix:{tmp_path}", "test")  # val/ stands in for test/
    assert len(te) == 3
    rev = gd.load(f"pix2pix:{tmp_path}", "train", direction="BtoA")
    assert torch.equal(rev.x, tr.target) and torch.equal(rev.target, tr.x)
    small = gd.load(f"pix2pix:{tmp_path}", "train", size=8)
    assert small.x.shape == (3, 3, 8, 8)


def test_ab_layout_errors_name_the_files(tmp_path):
    save(tmp_path / "train" / "ok.png", rnd(8, 16))
    with pytest.raises(DataError, match="no test/ or val/"):
        gd.load(f"pix2pix:{tmp_path}", "test")
    save(tmp_path / "train" / "odd.png", rnd(8, 15))
    with pytest.raises(DataError, match=r"odd\.png.*even width"):
        gd.load(f"pix2pix:{tmp_path}", "train")
    (tmp_path / "train" / "odd.png").unlink()
    save(tmp_path / "train" / "zbig.png", rnd(10, 20))
    with pytest.raises(DataError, match=r"zbig\.png.*ok\.png"):
        gd.load(f"pix2pix:{tmp_path}", "train")
    (tmp_path / "test").mkdir()
    with pytest.raises(DataError, match="no images"):
        gd.load(f"pix2pix:{tmp_path}", "test")
    with pytest.raises(DataError, match="not a folder"):
        gd.load(f"pix2pix:{tmp_path / 'nope'}", "train")
    with pytest.raises(ValueError, match="direction"):
        gd.load(f"pix2pix:{tmp_path}", "train", direction="sideways")


# ---- pix2pix:PATH, A/ + B/ layout ------------------------------------------------------------------------
def test_a_b_layout_pairs_by_name(tmp_path):
    for split in ("train", "test"):
        for i in range(2):
            save(tmp_path / "A" / split / f"im{i}.png", rnd(12, 12, 1, seed=i))
            save(tmp_path / "B" / split / f"im{i}.png", rnd(12, 12, 3, seed=10 + i))
    ds = gd.load(f"pix2pix:{tmp_path}", "train")
    assert ds.meta["layout"] == "A/B" and ds.x.shape == (2, 1, 12, 12) and ds.target.shape == (2, 3, 12, 12)
    assert np.array_equal(ds.x[1, 0].numpy(), rnd(12, 12, 1, seed=1))
    assert np.array_equal(ds.target[1].permute(1, 2, 0).numpy(), rnd(12, 12, 3, seed=11))


def test_a_b_layout_flat_folders_split_by_name(tmp_path):
    for i in range(30):
        save(tmp_path / "A" / f"{i:03d}.png", rnd(6, 6, 1, seed=i))
        save(tmp_path / "B" / f"{i:03d}.png", rnd(6, 6, 1, seed=100 + i))
    tr, te = gd.load(f"pix2pix:{tmp_path}", "train"), gd.load(f"pix2pix:{tmp_path}", "test")
    assert len(tr) + len(te) == 30 and len(tr) > len(te)


def test_a_b_layout_mismatch_errors(tmp_path):
    save(tmp_path / "A" / "train" / "cat.png", rnd(8, 8))
    save(tmp_path / "A" / "train" / "dog.png", rnd(8, 8))
    save(tmp_path / "B" / "train" / "cat.png", rnd(8, 8))
    save(tmp_path / "B" / "train" / "eel.png", rnd(8, 8))
    with pytest.raises(DataError, match=r"dog\.png.*no partner.*eel\.png"):
        gd.load(f"pix2pix:{tmp_path}", "train")
    (tmp_path / "B" / "train" / "eel.png").unlink()
    save(tmp_path / "B" / "train" / "dog.png", rnd(9, 8))
    with pytest.raises(DataError, match=r"A/train/dog\.png is 8x8 but its partner .*B/train/dog\.png is 8x9"):
        gd.load(f"pix2pix:{tmp_path}", "train")
    save(tmp_path / "B" / "train" / "dog.png", rnd(8, 8))
    save(tmp_path / "A" / "test" / "cat.png", rnd(8, 8))
    with pytest.raises(DataError, match="partner does not"):
        gd.load(f"pix2pix:{tmp_path}", "test")
    only = tmp_path / "only"
    save(only / "A" / "x.png", rnd(4, 4))
    with pytest.raises(DataError, match="has A/ but no B/"):
        gd.load(f"pix2pix:{only}", "train")


# ---- sr:PATH -------------------------------------------------------------------------------------------
def test_sr_folder_crops_and_whole_test_images(tmp_path):
    save(tmp_path / "train" / "a.png", rnd(40, 50, seed=1))
    save(tmp_path / "train" / "b.png", rnd(33, 36, seed=2))
    save(tmp_path / "test" / "c.png", rnd(30, 42, seed=3))
    tr = gd.load(f"sr:{tmp_path}", "train", scale=4, crop=16, crops=5)
    assert tr.x.shape == (10, 3, 4, 4) and tr.target.shape == (10, 3, 16, 16)
    assert torch.equal(tr.x, area_downsample(tr.target, 4))
    again = gd.load(f"sr:{tmp_path}", "train", scale=4, crop=16, crops=5)
    assert torch.equal(again.target, tr.target)  # a fixed set of crops
    full = rnd(40, 50, seed=1).transpose(2, 0, 1)
    patch = tr.target[0].numpy()  # the first crop of a.png lies somewhere inside it
    hits = [(i, j) for i in range(40 - 15) for j in range(50 - 15) if np.array_equal(full[:, i:i + 16, j:j + 16], patch)]
    assert hits
    te = gd.load(f"sr:{tmp_path}", "test", scale=4)
    assert te.target.shape == (1, 3, 28, 40) and te.x.shape == (1, 3, 7, 10)  # whole image cut to a multiple of 4
    with pytest.raises(DataError, match=r"b\.png.*smaller than the training crop"):
        gd.load(f"sr:{tmp_path}", "train", scale=4, crop=36)
    with pytest.raises(ValueError, match="multiple of scale"):
        gd.load(f"sr:{tmp_path}", "train", scale=4, crop=18)
