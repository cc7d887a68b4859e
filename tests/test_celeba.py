"""The celeba source on a tiny generated copy in the standard layout (img_align_celeba/ + list_attr_celeba.txt
+ list_eval_partition.txt): splits, crop and resize, attributes, errors, and `latent shift --attribute`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo import data as gd
from genzoo.data.celeba import attribute_mask, attribute_names

NAMES = ["5_o_Clock_Shadow", "Blond_Hair", "Eyeglasses"]
# file, attributes, partition (0 train, 1 val, 2 test)
ROWS = [(f"{i:06d}.jpg", a, p) for i, (a, p) in enumerate([
    ((1, -1, -1), 0), ((-1, 1, -1), 0), ((-1, 1, 1), 1), ((1, -1, 1), 0), ((-1, -1, -1), 2), ((-1, 1, -1), 2),
    ((1, 1, -1), 0), ((-1, -1, 1), 0)], start=1)]


def make_celeba(root: Path, partition: bool = True, csv: bool = False) -> Path:
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    for i, (f, a, _) in enumerate(ROWS):
        a_img = np.zeros((218, 178, 3), np.uint8)
        a_img[20:198] = 20 + 30 * i  # the 178x178 centre holds the value; the cropped-off rows stay black
        a_img[20:198, :, 1] = 255 if a[1] > 0 else 0  # green channel marks Blond_Hair
        Image.fromarray(a_img).save(folder / "img_align_celeba" / f, quality=95)
    if csv:
        lines = ["image_id," + ",".join(NAMES)] + [f + "," + ",".join(map(str, a)) for f, a, _ in ROWS]
        (folder / "list_attr_celeba.csv").write_text("\n".join(lines) + "\n")
    else:
        lines = [str(len(ROWS)), " ".join(NAMES)] + [f + " " + " ".join(f"{v:2d}" for v in a) for f, a, _ in ROWS]
        (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition:
        (folder / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, _, p in ROWS))
    return folder


@pytest.fixture
def celeba_root(tmp_path):
    make_celeba(tmp_path)
    return tmp_path


def test_splits_shapes_and_attributes(celeba_root):
    train, test = gd.load("celeba", "train", root=celeba_root), gd.load("celeba", "test", root=celeba_root)
    assert len(train) == 6 and len(test) == 2  # partitions 0+1 train, 2 test
    assert train.shape == (3, 64, 64) and train.x.dtype == torch.uint8 and train.y is None
    assert attribute_names(train) == NAMES
    want = [a[1] > 0 for _, a, p in ROWS if p != 2]
    assert attribute_mask(train, "Blond_Hair").tolist() == want
    assert attribute_mask(test, "Eyeglasses").tolist() == [False, False]
    # centre crop: no black rows from the 218-pixel height survive; green marks the blond images
    assert train.x[:, 1].float().mean((1, 2)).gt(200).tolist() == want
    assert int(train.x[:, 0].min()) > 0
    small = gd.load("celeba", "train", root=celeba_root, size=16, limit=3)
    assert small.shape == (3, 16, 16) and len(small) == 3
    assert attribute_mask(small, "5_o_Clock_Shadow").tolist() == [True, False, False]
    assert "celeba" in gd.names() and gd.info("celeba", root=celeba_root)["n_test"] == 2


def test_csv_layout_and_hash_split(tmp_path):
    make_celeba(tmp_path, partition=False, csv=True)
    import hashlib
    in_test = [int(hashlib.md5(f.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < 0.1 for f, _, _ in ROWS]
    train = gd.load("celeba", "train", root=tmp_path)
    assert len(train) == len(ROWS) - sum(in_test)
    assert attribute_mask(train, "Blond_Hair").tolist() == [a[1] > 0 for (_, a, _), t in zip(ROWS, in_test) if not t]
    if not any(in_test):  # 10% of 8 names: the test split may be empty, which is an error naming the split
        with pytest.raises(gd.DataError, match="no images for split 'test'"):
            gd.load("celeba", "test", root=tmp_path)


def test_clear_errors(tmp_path):
    with pytest.raises(gd.DataError, match=r"does not download CelebA.*img_align_celeba/000001.jpg"):
        gd.load("celeba", "train", root=tmp_path)
    with pytest.raises(gd.DataError, match="cannot be downloaded"):
        gd.load("celeba", "train", root=tmp_path, download=True)
    folder = make_celeba(tmp_path)
    (folder / "list_attr_celeba.txt").unlink()
    with pytest.raises(gd.DataError, match="list_attr_celeba.txt"):
        gd.load("celeba", "train", root=tmp_path)
    with pytest.raises(ValueError, match="no attribute 'Blond'"):
        make_celeba(tmp_path / "b")
        attribute_mask(gd.load("celeba", "train", root=tmp_path / "b"), "Blond")


def test_latent_shift_with_celeba_attribute(celeba_root, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401
    from genzoo.cli._app import app
    from genzoo.train import train

    monkeypatch.setenv("GENZOO_DATA", str(celeba_root))
    run = tmp_path / "vae"
    train("vae", "celeba", out=run, preset="tiny", steps=2, batch_size=4,
          settings={"progress": False, "validate": False, "sample_every": 0})
    out = tmp_path / "shift.npy"
    r = CliRunner().invoke(app, ["latent", "shift", str(run), "--images", "0,1", "--attribute", "Blond_Hair",
                                 "--alphas", "0,1", "--split", "train", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert np.load(out).shape == (4, 64, 64, 3)
    r = CliRunner().invoke(app, ["latent", "arithmetic", str(run), "0 + attr:Eyeglasses", "--split", "train",
                                 "--out", str(tmp_path / "ar.png")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["latent", "shift", str(run), "--images", "0", "--attribute", "Blond",
                                 "--split", "train", "--out", str(out)])
    assert r.exit_code == 2 and "no attribute 'Blond'" in r.output and "Blond_Hair" in r.output


def test_explorer_attribute_sliders_on_celeba(celeba_root, tmp_path, monkeypatch):
    """The explorer's attributes panel on a celeba run slides along the attribute table's directions: the
    direction of Blond_Hair is the code of the blond test image minus the code of the other (the test split
    holds 2 images, one blond), checked against the model's own codes of the loaded images; an attribute that
    the test images hold on one side only has no direction, and saying so is an error naming it."""
    pytest.importorskip("httpx2")
    from fastapi.testclient import TestClient

    from genzoo.explorer import Explorer, create_app
    from genzoo.explorer.limits import TOKEN_HEADER
    from genzoo.train import train

    monkeypatch.setenv("GENZOO_DATA", str(celeba_root))
    run = tmp_path / "ae"
    model = train("ae", "celeba", out=run, preset="tiny", steps=2, batch_size=4,
                  settings={"progress": False, "validate": False, "sample_every": 0}).eval()
    ex = Explorer(run, precision="fp32")
    info = ex.info()
    assert info["directions"] == NAMES and "attributes" in info["panels"]
    test = gd.load("celeba", "test")
    blond = attribute_mask(test, "Blond_Hair")
    assert blond.tolist() == [False, True]  # ROWS 5 and 6, the two of partition 2
    with torch.no_grad():
        codes = model.code(model.prepare(test.x)).double()
    want = codes[1] - codes[0]
    got = ex.directions()[NAMES.index("Blond_Hair")].double()
    assert torch.allclose(got, want, atol=1e-5)
    assert set(ex.directions()) == {NAMES.index("Blond_Hair")}  # the others are one-sided in the test split
    app = create_app(ex, allowed_hosts=["testserver"])
    c = TestClient(app, headers={TOKEN_HEADER: app.state.token})
    z = codes[0].tolist()
    r = c.post("/api/attributes.png", json={"z": z, "alphas": {"1": 1.0}})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with torch.no_grad():
        ref = model.to_unit(model.decode(torch.tensor([z], dtype=torch.float32) + want.float()))
    shown = np.asarray(Image.open(__import__("io").BytesIO(r.content)))
    ref_u8 = (ref[0].permute(1, 2, 0).numpy() * 255).round().astype(int)
    assert np.abs(shown.astype(int).reshape(ref_u8.shape) - ref_u8).max() <= 1
    r = c.post("/api/attributes.png", json={"z": z, "alphas": {"2": 1.0}})
    assert r.status_code == 400 and "no direction for attribute 2" in r.json()["detail"]
