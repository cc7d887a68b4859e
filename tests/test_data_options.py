"""Dataset options from the CLI and the API (`--data-opt KEY=VALUE`, `train(data_options=...)`): recorded in
run.json and used by every command that reloads the run's data; unknown options and bad values are clear errors
before any work; resuming with other options is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import genzoo
import genzoo.data as gd
from genzoo.cli import commands  # noqa: F401  (registers the commands)
from genzoo.cli._app import app

TRAIN_SIDE, TEST_SIDE = 24, 20  # training photos 24x24 (crop 16 fits), whole test images 20x20


def photo_folder(root, n_train=4, n_test=3):
    """root/train/*.png (24x24 RGB) and root/test/*.png (20x20 RGB): smooth random colour fields."""
    rng = np.random.default_rng(0)
    images = {}
    for split, n, side in (("train", n_train, TRAIN_SIDE), ("test", n_test, TEST_SIDE)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            a = np.asarray(Image.fromarray(coarse).resize((side, side), Image.BILINEAR))
            Image.fromarray(a).save(root / split / f"{i}.png")
            images[(split, i)] = a
    return images


def cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    images = photo_folder(root)
    run = root.parent / (root.name + "-run")
    code, out = cli("train", "srgan", "--data", f"sr:{root}", "--data-opt", "scale=2", "--data-opt", "crop=16",
                    "--data-opt", "crops=3", "--steps", "3", "--batch-size", "4", "--out", run,
                    "--preset", "tiny", "--set", "gan_weight=0", "--set", "sample_every=0",
                    "--set", "progress=false")
    assert code == 0, out
    return root, run, images


def test_cli_data_opts_train_at_the_given_scale_and_are_recorded(sr_run):
    root, run, _ = sr_run
    info = json.loads((run / "run.json").read_text())
    assert info["data"] == f"sr:{root}"
    assert info["data_options"] == {"scale": 2, "crop": 16, "crops": 3}
    model = genzoo.load(run)
    # from the options: 16x16 training crops (targets), area-downsampled by 2 -> 8x8 sources; RGB photos
    assert tuple(model.config.target_shape) == (3, 16, 16)
    assert tuple(model.config.image_shape) == (3, 8, 8)


def test_translate_and_evaluate_reload_the_run_with_its_options(sr_run, tmp_path):
    root, run, images = sr_run
    npy = tmp_path / "out.npy"
    code, out = cli("translate", run, "--split", "test", "-n", "3", "--out", npy)
    assert code == 0, out
    outputs = np.load(npy)
    # whole 20x20 test images at scale 2: 10x10 sources upsampled x2 -> 20x20 (the default scale=4 would give
    # 5x5 sources and 10x10 outputs)
    assert outputs.shape == (3, TEST_SIDE, TEST_SIDE, 3)
    code, out = cli("evaluate", run, "--metrics", "mse,psnr", "-n", "3", "--out", tmp_path / "m.json")
    assert code == 0, out
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["n"] == 3
    # evaluate's MSE against the test images read straight from disk, with translate's (uint8) outputs
    targets = np.stack([images[("test", i)] for i in range(3)]).astype(np.float64) / 255
    mse = np.mean((outputs.astype(np.float64) / 255 - targets) ** 2, axis=(1, 2, 3)).mean()
    assert res["metrics"]["mse"] == pytest.approx(mse, abs=2e-3)
    # the Python API: the run's options come from run.json
    name, opts = gd.run_data(run)
    assert (name, opts) == (f"sr:{root}", {"scale": 2, "crop": 16, "crops": 3})
    ds = gd.load_run_data(run, "test")
    assert ds.shape == (3, TEST_SIDE // 2, TEST_SIDE // 2) and ds.target_shape == (3, TEST_SIDE, TEST_SIDE)
    from genzoo.evaluate import evaluate
    api = evaluate(run, metrics="mse", n=3)
    assert api["metrics"]["mse"] == pytest.approx(res["metrics"]["mse"], rel=1e-6)


def test_resume_with_other_data_options_is_refused(sr_run):
    root, run, _ = sr_run
    code, out = cli("train", "srgan", "--out", run, "--resume", "--steps", "4", "--data-opt", "scale=4")
    assert code == 2
    assert "scale=4" in out and "scale=2" in out and "--resume" in out
    # the same options, or none (the run's own), resume
    code, out = cli("train", "srgan", "--out", run, "--resume", "--steps", "4", "--data-opt", "scale=2",
                    "--data-opt", "crop=16", "--data-opt", "crops=3")
    assert code == 0, out
    code, out = cli("train", "srgan", "--out", run, "--resume", "--steps", "5")
    assert code == 0, out
    info = json.loads((run / "run.json").read_text())
    assert info["data_options"] == {"scale": 2, "crop": 16, "crops": 3} and info["step"] == 5


def test_python_api_data_options(tmp_path):
    root = tmp_path / "p"
    photo_folder(root, n_train=2, n_test=1)
    run = tmp_path / "run"
    model = genzoo.train("srgan", f"sr:{root}", out=run, preset="tiny", steps=1, batch_size=2,
                         data_options={"scale": 4, "crop": 8, "crops": 2},
                         settings={"gan_weight": 0, "sample_every": 0, "progress": False})
    assert tuple(model.config.image_shape) == (3, 2, 2) and tuple(model.config.target_shape) == (3, 8, 8)
    assert json.loads((run / "run.json").read_text())["data_options"] == {"scale": 4, "crop": 8, "crops": 2}


def test_unknown_option_names_the_option_the_dataset_and_the_accepted_ones(tmp_path):
    root = tmp_path / "p"
    photo_folder(root, n_train=2, n_test=1)
    with pytest.raises(ValueError) as e:
        gd.load(f"sr:{root}", "train", size=16)
    msg = str(e.value)
    assert "'size'" in msg and "sr:PATH" in msg
    for opt in ("scale", "crop", "crops", "seed", "channels"):
        assert opt in msg
    with pytest.raises(ValueError, match=r"'scale'.*mnist-mini.*no options"):
        gd.load("mnist-mini", "test", scale=2)
    run = tmp_path / "run"
    code, out = cli("train", "srgan", "--data", f"sr:{root}", "--data-opt", "zoom=2", "--steps", "1", "--out", run)
    assert code == 2 and "'zoom'" in out and "sr:PATH" in out and "crop" in out
    assert not (run / "config.json").exists()  # refused before any work
    code, out = cli("train", "ae", "--data", "mnist-mini", "--image-size", "32", "--steps", "1", "--out", run)
    assert code == 2 and "'size'" in out and "mnist-mini" in out


@pytest.mark.parametrize("opt, words", [
    ("scale=3", ("scale=3", "2, 4 or 8")),
    ("crop=16.5", ("crop=16.5", "integer")),
    ("crop=abc", ("crop='abc'", "integer")),
    ("crop=18", ("crop=18", "multiple of scale=4")),
    ("crops=0", ("crops=0", ">= 1")),
    ("channels=2", ("channels=2", "1 (grey) or 3")),
])
def test_bad_values_are_clear_errors_before_any_work(tmp_path, opt, words):
    root = tmp_path / "p"
    photo_folder(root, n_train=2, n_test=1)
    run = tmp_path / "run"
    code, out = cli("train", "srgan", "--data", f"sr:{root}", "--data-opt", opt, "--steps", "1", "--out", run)
    assert code == 2, out
    for w in words:
        assert w in out, out
    assert not (run / "config.json").exists()


def test_folder_and_pix2pix_options(tmp_path):
    # folder: size (also as --image-size), pix2pix: direction / size; bad values name the option
    rng = np.random.default_rng(1)
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")
    assert gd.load(f"folder:{folder}", "train", size=8, cache=False).shape == (1, 8, 8)
    with pytest.raises(ValueError, match=r"size=0: expected a positive integer"):
        gd.load(f"folder:{folder}", "train", size=0)
    with pytest.raises(ValueError, match=r"size='big'.*folder:PATH.*expected an integer"):
        gd.load(f"folder:{folder}", "train", size="big")
    run = tmp_path / "frun"
    code, out = cli("train", "ae", "--data", f"folder:{folder}", "--image-size", "8", "--preset", "tiny",
                    "--steps", "1", "--batch-size", "4", "--set", "sample_every=0", "--set", "progress=false",
                    "--out", run)
    assert code == 0, out
    assert json.loads((run / "run.json").read_text())["data_options"] == {"size": 8}
    assert gd.load_run_data(run, "train").shape == (1, 8, 8)
    code, out = cli("train", "ae", "--data", f"folder:{folder}", "--image-size", "8", "--data-opt", "size=10",
                    "--steps", "1", "--out", tmp_path / "x")
    assert code == 2 and "disagree" in out
    p2p = tmp_path / "ab"
    for split in ("train", "test"):
        (p2p / split).mkdir(parents=True)
        a = np.zeros((6, 12, 3), np.uint8)
        a[:, 6:] = 200  # right half (B) bright
        Image.fromarray(a).save(p2p / split / "0.png")
    ds = gd.load(f"pix2pix:{p2p}", "train", direction="BtoA")
    assert int(ds.x.min()) == 200 and int(ds.target.max()) == 0
    with pytest.raises(ValueError, match=r"direction='up': expected 'AtoB' or 'BtoA'"):
        gd.load(f"pix2pix:{p2p}", "train", direction="up")


def test_parse_options():
    assert gd.parse_options(["scale=2", "fit=crop", "test_fraction=0.25", "cache=false", "size=none"]) == {
        "scale": 2, "fit": "crop", "test_fraction": 0.25, "cache": False, "size": None}
    with pytest.raises(ValueError, match=r"--data-opt 'scale': expected KEY=VALUE"):
        gd.parse_options(["scale"])


def test_explorer_shows_the_run_s_test_images_loaded_with_its_options(sr_run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from genzoo.explorer import create_app
    from genzoo.explorer.limits import TOKEN_HEADER

    root, run, images = sr_run
    app = create_app(run, allowed_hosts=["testserver"])
    ex = app.state.explorer
    assert ex.data_error is None, ex.data_error
    # scale=2 from run.json: the whole 20x20 test photos are the targets, their 10x10 area means the sources
    # (the default scale=4 would give 5x5 sources, which this x2 model's shape check would refuse)
    assert tuple(ex.test.shape) == (3, TEST_SIDE // 2, TEST_SIDE // 2)
    want = images[("test", 0)].astype(np.float64).reshape(10, 2, 10, 2, 3).mean(axis=(1, 3))
    got = ex.test.x[0].permute(1, 2, 0).double().numpy()
    assert np.abs(got - want).max() <= 1.0  # uint8 rounding of the area mean
    client = TestClient(app, headers={TOKEN_HEADER: app.state.token})
    assert client.get("/api/translate/test", params={"index": 0}).status_code == 200
