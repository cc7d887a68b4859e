"""Image folders: decoded once into a memory-mapped cache (reused, invalidated by a changed file), sized by the
most common image size with a warning for outliers; `genzoo classifier train` on a folder and `evaluate`
finding that classifier (issue 17, 'The user's own data')."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import genzoo
import genzoo.data as gd
from genzoo.cli import commands  # noqa: F401
from genzoo.cli._app import app
from genzoo.data.sources import FolderWarning, folder_cache_dir

runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def pil_array(p, size=None, mode="L"):
    """The independent reference: what PIL itself decodes (resized bilinearly when asked)."""
    with Image.open(p) as im:
        im = im.convert(mode)
        if size is not None and (im.height, im.width) != size:
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.array(im)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def make(root, n=6, size=(12, 10), classes=("a", "b"), mode="L", seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = size if mode == "L" else (*size, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i:03d}.png")


def test_second_load_comes_from_the_cache_without_decoding(tmp_path, monkeypatch):
    make(tmp_path / "f", n=20)
    name = f"folder:{tmp_path / 'f'}"
    first, first_test = gd.load(name, "train"), gd.load(name, "test")
    assert first.meta["cached"] is False and os.path.exists(first.meta["cache"])
    files = sorted((tmp_path / "f").rglob("*.png"))
    ref = {str(p.relative_to(tmp_path / "f")): pil_array(p) for p in files}
    import PIL.Image

    def no_decoding(*a, **k):
        raise AssertionError("decoded an image although the cache is valid")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    second = gd.load(name, "train")
    assert second.meta["cached"] is True
    assert torch.equal(first.x, second.x) and torch.equal(first.y, second.y)
    # against PIL: every image of the split, in order, with its class
    train_files = [p for p in files if str(p.relative_to(tmp_path / "f")) in ref]
    assert len(second) + len(gd.load(name, "test")) == len(train_files)  # (from the cache as well)
    got = {tuple(second.x[i].flatten().tolist()) for i in range(len(second))}
    assert got <= {tuple(v.flatten().tolist()) for v in ref.values()}


def test_a_changed_or_added_file_invalidates_the_cache(tmp_path):
    root = tmp_path / "f"
    make(root / "train", n=3)
    make(root / "test", n=2)
    name = f"folder:{root}"
    before = gd.load(name, "train")
    gd.load(name, "test")
    old_cache = before.meta["cache"]
    p = root / "train" / "a" / "001.png"
    Image.fromarray(np.full((12, 10), 200, np.uint8)).save(p)
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    after = gd.load(name, "train")
    assert after.meta["cached"] is False
    i = 1  # sorted order: a/000, a/001, a/002, b/...
    assert torch.equal(after.x[i], torch.from_numpy(pil_array(p)))
    assert not torch.equal(after.x[i], before.x[i])
    assert not os.path.exists(old_cache)  # the stale cache of this folder and split is removed
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / "train" / "b" / "999.png")
    assert len(gd.load(name, "train")) == len(after) + 1
    assert gd.load(name, "test").meta["cached"] is True  # the test split's files did not change


def test_cache_is_copy_on_write(tmp_path):
    make(tmp_path / "f", n=10)
    name = f"folder:{tmp_path / 'f'}"
    ds = gd.load(name, "train")
    ds.x[0] = 0  # a user's in-place edit changes this process's view only
    ds.x[0] += 7
    again = gd.load(name, "train")
    assert again.meta["cached"] is True and not torch.equal(again.x[0], ds.x[0])


def test_size_is_the_most_common_and_outliers_are_warned(tmp_path):
    root = tmp_path / "f"
    make(root, n=8, size=(8, 8), classes=("a",))
    Image.fromarray(np.zeros((400, 300), np.uint8)).save(root / "a" / "000-huge.png")  # sorted first
    with pytest.warns(FolderWarning, match=r"1 of \d+ images are more than 2x off the size 8x8.*000-huge.png 400x300"):
        ds = gd.load(f"folder:{root}", "train", test_fraction=0.0)
    assert ds.shape == (1, 8, 8) and len(ds) == 9
    assert torch.equal(ds.x[0], torch.from_numpy(pil_array(root / "a" / "000-huge.png", (8, 8))))
    with pytest.warns(FolderWarning):  # a cached load warns again
        gd.load(f"folder:{root}", "train", test_fraction=0.0)
    with pytest.warns(FolderWarning, match=r"size 16x16 \(chosen\)"):
        assert gd.load(f"folder:{root}", "train", size=16, test_fraction=0.0).shape == (1, 16, 16)


def test_engine_trains_from_the_memory_map(tmp_path):
    make(tmp_path / "f", n=40, size=(8, 8))
    name = f"folder:{tmp_path / 'f'}"
    ds = gd.load(name, "train")
    assert isinstance(ds.x, torch.Tensor) and ds.meta["cache"]
    size = os.path.getsize(ds.meta["cache"])
    assert size == ds.x.numel()  # the tensor is a view of the cache file's bytes (N*C*H*W uint8)
    m = genzoo.train("ae", ds, preset="tiny", steps=3,
                     settings={"log_every": 1, "sample_every": 0, "progress": False, "batch_size": 16})
    assert m is not None


# ---- classifiers for the user's own data -----------------------------------------------------------------
def colour_folder(root, n_train=60, n_test=30, size=(16, 16), seed=0):
    """Two classes of colour images an easy classifier separates: reddish vs bluish noise."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, ch in (("red", 0), ("blue", 2)):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 100, (*size, 3), dtype=np.uint8)
                a[..., ch] = rng.integers(150, 256, size, dtype=np.uint8)
                Image.fromarray(a, "RGB").save(d / f"{i:03d}.png")
    return root


def test_classifier_train_on_a_colour_folder_and_evaluate_finds_it(tmp_path, home):
    from genzoo.evaluate import classifier as C
    root = colour_folder(tmp_path / "pics")
    data = f"folder:{root}"
    r = runner.invoke(app, ["classifier", "train", data, "--epochs", "2", "--batch-size", "16", "--width", "4",
                            "--hidden", "16", "--threads", "1"])
    assert r.exit_code == 0, r.output
    folder = C.user_classifier_dir(data)
    assert str(folder).startswith(str(home / "classifiers"))
    info = json.loads((folder / "classifier.json").read_text())
    assert info["dataset"] == data and info["image_shape"] == [3, 16, 16] and info["classes"] == ["blue", "red"]
    assert f"test accuracy {info['test_accuracy']:.4f} on 60 test images" in r.output
    # the stored accuracy is what the stored weights give on the test split (independent argmax count)
    clf = C.load_user_classifier(data)
    test = gd.load(data, "test")
    with torch.no_grad():
        pred = clf(test.x.float() / 255).argmax(1)
    assert info["test_accuracy"] == pytest.approx(float((pred == test.y).double().mean()), abs=1e-9)
    assert info["test_accuracy"] >= 0.9  # red vs blue is easy
    # evaluate on a run trained on this folder uses it, named with its dataset and accuracy
    run = tmp_path / "run"
    genzoo.train("ae", data, out=run, preset="tiny", steps=3,
                 settings={"log_every": 1, "sample_every": 0, "progress": False, "batch_size": 16})
    res = genzoo.evaluate.evaluate(run, metrics="fid,pr,modes", n=40)
    assert res["extractor"] == f"{data} (yours, test accuracy {info['test_accuracy']:.4f})"
    assert res["extractor_test_accuracy"] == info["test_accuracy"]
    assert {"fid", "precision", "recall", "classes_covered"} <= set(res["metrics"]) and not res["skipped"]
    r = runner.invoke(app, ["classifier", "list"])
    assert data in r.output and "yours, test accuracy" in r.output


def test_without_a_classifier_evaluate_says_how_to_get_one(tmp_path):
    root = colour_folder(tmp_path / "pics", n_train=20, n_test=10)
    run = tmp_path / "run"
    genzoo.train("ae", f"folder:{root}", out=run, preset="tiny", steps=2,
                 settings={"log_every": 1, "sample_every": 0, "progress": False, "batch_size": 16})
    res = genzoo.evaluate.evaluate(run, metrics="fid,mse", n=20)
    assert "genzoo classifier train" in res["skipped"]["fid"] and "mse" in res["metrics"]


def test_classifier_needs_labels(tmp_path):
    make(tmp_path / "flat", n=0, classes=())
    d = tmp_path / "flat"
    d.mkdir(exist_ok=True)
    for i in range(30):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / f"{i}.png")
    r = runner.invoke(app, ["classifier", "train", f"folder:{d}", "--epochs", "1"])
    assert r.exit_code == 2 and "needs labels" in r.output
