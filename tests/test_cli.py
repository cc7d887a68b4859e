"""The command line: the README's tour works, bad input gives clear errors, every command prints what it wrote."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from genzoo.cli._app import app
from genzoo.cli import commands  # noqa: F401  (registers the commands)

runner = CliRunner()
QUIET = ["--set", "progress=false", "--set", "sample_every=0"]


def gz(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ae"
    r = gz("train", "ae", "--data", "mnist-mini", "--steps", "40", "--batch-size", "64", "--preset", "tiny",
           "--out", out, *QUIET)
    assert r.exit_code == 0, r.output
    assert f"wrote {out / 'model.safetensors'}" in r.output
    return out


def test_reconstruct_png_and_npy(ae_run, tmp_path):
    r = gz("reconstruct", ae_run, "-n", "16", "--out", tmp_path / "recon.png")
    assert r.exit_code == 0 and "wrote" in r.output
    im = Image.open(tmp_path / "recon.png")
    assert im.width > im.height > 0  # two rows of 16
    r = gz("reconstruct", ae_run, "-n", "5", "--out", tmp_path / "recon.npy")
    a = np.load(tmp_path / "recon.npy")
    assert a.shape == (5, 28, 28) and a.dtype == np.uint8


def test_sample_npy_from_code_gaussian(ae_run, tmp_path):
    r = gz("sample", ae_run, "-n", "64", "--out", tmp_path / "s.npy")
    assert r.exit_code == 0, r.output
    a = np.load(tmp_path / "s.npy")
    assert a.shape == (64, 28, 28) and a.dtype == np.uint8 and a.std() > 0


def test_sample_rejects_labels_for_unconditional_and_bad_suffix(ae_run, tmp_path):
    r = runner.invoke(app, ["sample", str(ae_run), "-n", "4", "--out", str(tmp_path / "s.jpg")])
    assert r.exit_code == 2 and "unsupported output type '.jpg'; expected .png or .npy" in r.output
    r = runner.invoke(app, ["sample", str(ae_run), "-n", "4", "--labels", "x,y", "--out", str(tmp_path / "s.npy")])
    assert r.exit_code == 2 and "--labels 'x,y'" in r.output


def test_unknown_set_key_lists_valid_keys(tmp_path):
    r = runner.invoke(app, ["train", "ae", "--set", "latnet_dim=3", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2
    assert "unknown key(s) latnet_dim" in r.output and "latent_dim" in r.output and "batch_size" in r.output


def test_wrong_type_names_key_and_type(tmp_path):
    r = runner.invoke(app, ["train", "ae", "--set", "latent_dim=big", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "latent_dim='big': expected int" in r.output
    r = runner.invoke(app, ["train", "ae", "--set", "arch=transformer", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "arch='transformer' is not valid; expected one of" in r.output


def test_yaml_config_and_print_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("latent_dim: 7\nhidden: [16, 8]\nbatch_size: 32\n")
    r = gz("train", "ae", "--config", cfg, "--set", "activation=elu", "--print-config")
    assert r.exit_code == 0
    d = json.loads(r.output)
    assert d["model"]["latent_dim"] == 7 and d["model"]["hidden"] == [16, 8] and d["model"]["activation"] == "elu"
    assert d["train"]["batch_size"] == 32
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    r = runner.invoke(app, ["train", "ae", "--config", str(bad)])
    assert r.exit_code == 2 and "bad.yaml: expected a mapping" in r.output


def test_a_preset_carries_training_keys_that_options_override(tmp_path):
    """`--preset recommended` is a recipe: ddpm's holds batch 64, the cosine LR schedule and gradient clipping
    (the measured ~50-CPU-minute run); --batch-size and --set override them; a real run records them."""
    r = gz("train", "ddpm", "--preset", "recommended", "--print-config")
    d = json.loads(r.output)
    assert (d["train"]["batch_size"], d["train"]["lr_schedule"], d["train"]["grad_clip"]) == (64, "cosine", 1.0)
    assert d["model"]["lr"] == 1e-3 and d["model"]["widths"] == [16, 32, 64]
    r = gz("train", "ddpm", "--preset", "recommended", "--batch-size", "8", "--set", "grad_clip=none",
           "--print-config")
    d = json.loads(r.output)
    assert (d["train"]["batch_size"], d["train"]["lr_schedule"], d["train"]["grad_clip"]) == (8, "cosine", None)
    out = tmp_path / "cyc"
    r = gz("train", "cyclegan", "--data", "mnist-mini-thick", "--preset", "recommended", "--steps", "2",
           "--set", "base=2", "--set", "d_base=2", "--out", out, *QUIET, "--set", "validate=false")
    assert r.exit_code == 0, r.output
    tc = json.loads((out / "run.json").read_text())["train_config"]
    assert tc["batch_size"] == 16 and tc["lr_schedule"] == "linear" and tc["lr_decay_start"] == 0.5
    r = runner.invoke(app, ["train", "ae", "--preset", "nonesuch", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "preset 'nonesuch' is not defined for ae" in r.output


def test_the_fast_vae_preset_is_the_timed_recipe_and_options_override_it():
    """`mlp-784-400-20-fast` is the recipe benchmarks/fast_path.py times (--recipe 4e-3:8): pytorch/examples'
    784-400-20 VAE, Adam(4e-3), a cosine decay over 8 epochs; --epochs / --steps / --set replace its parts."""
    d = json.loads(gz("train", "vae", "--preset", "mlp-784-400-20-fast", "--print-config").output)
    assert (d["model"]["hidden"], d["model"]["latent_dim"], d["model"]["lr"]) == ([400], 20, 4e-3)
    assert (d["train"]["lr_schedule"], d["train"]["epochs"], d["train"]["batch_size"]) == ("cosine", 8, 128)
    d = json.loads(gz("train", "vae", "--preset", "mlp-784-400-20-fast", "--steps", "30", "--set", "lr=1e-3",
                      "--print-config").output)
    assert (d["train"]["epochs"], d["train"]["steps"], d["model"]["lr"]) == (None, 30, 1e-3)


def test_resume_continues_from_cli(ae_run):
    r = gz("train", "ae", "--out", ae_run, "--resume", "--steps", "50", *QUIET)
    assert r.exit_code == 0, r.output
    info = json.loads((ae_run / "run.json").read_text())
    assert info["step"] == 50 and info["status"] == "finished"


def test_models_and_data_commands():
    r = gz("models")
    assert r.exit_code == 0 and r.output.startswith("ae ")
    r = gz("data", "list")
    assert "mnist-mini" in r.output and "folder:PATH" in r.output and "$GENZOO_DATA" in r.output
    r = gz("data", "info", "digits")
    info = json.loads(r.output)
    assert info["n"] == 1438 and info["n_test"] == 359 and info["shape"] == [1, 8, 8]


def test_missing_run_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["sample", str(tmp_path / "nope"), "-n", "2", "--out", str(tmp_path / "a.npy")])
    assert r.exit_code == 2 and "no such run directory" in r.output


@pytest.mark.slow
def test_done_when_tour_on_full_mnist(mnist_root, tmp_path, monkeypatch):
    """The issue's "done when": train ae on MNIST for one epoch, reconstruct 16, sample 64 to .npy."""
    monkeypatch.setenv("GENZOO_DATA", str(mnist_root))
    out = tmp_path / "runs" / "ae"
    r = gz("train", "ae", "--data", "mnist", "--epochs", "1", "--out", out, "--set", "progress=false")
    assert r.exit_code == 0, r.output
    val = json.loads((out / "run.json").read_text())["last_validation"]
    # reference: the BCE of predicting the training set's mean image for every test image (~206 nats)
    import torch
    import torch.nn.functional as F
    import genzoo.data as gd
    mean = (gd.load("mnist").x.float() / 255).mean(0).clamp(1e-4, 1 - 1e-4)
    x = gd.load("mnist", "test").x.float() / 255
    baseline = F.binary_cross_entropy(mean.expand_as(x), x, reduction="sum").item() / len(x)
    assert val["val/recon"] < 0.5 * baseline
    assert gz("reconstruct", out, "-n", "16", "--out", tmp_path / "recon.png").exit_code == 0
    assert gz("sample", out, "-n", "64", "--out", tmp_path / "s.npy").exit_code == 0
    assert np.load(tmp_path / "s.npy").shape == (64, 28, 28)


@pytest.mark.parametrize("path", sorted((__import__("pathlib").Path(__file__).parents[1] / "configs").glob("*.yaml")))
def test_shipped_configs_are_valid(path):
    model = path.stem.split("-")[0]
    r = gz("train", model, "--config", path, "--print-config")
    assert r.exit_code == 0, r.output


def test_gif_holds_every_sample_grid_in_step_order(tmp_path):
    """--gif: samples/training.gif has one frame per samples/step_*.png, in step order, each frame the picture
    of its PNG (up to the GIF palette), 300 ms per frame, looping."""
    out = tmp_path / "gif"
    r = gz("train", "ae", "--preset", "tiny", "--steps", "15", "--batch-size", "32", "--out", out, "--gif",
           "--set", "progress=false", "--set", "sample_every=5", "--set", "validate=false")
    assert r.exit_code == 0, r.output
    pngs = sorted((out / "samples").glob("step_*.png"))
    assert [p.name for p in pngs] == ["step_000005.png", "step_000010.png", "step_000015.png"]
    gif = Image.open(out / "samples" / "training.gif")
    assert gif.n_frames == 3 and gif.info.get("loop") == 0 and gif.info.get("duration") == 300
    ref = [np.asarray(Image.open(p).convert("L"), dtype=np.float64) for p in pngs]
    assert all(np.abs(ref[i] - ref[i + 1]).mean() > 0.5 for i in range(2))  # the grids differ: order matters
    for i in range(3):
        gif.seek(i)
        frame = np.asarray(gif.convert("L"), dtype=np.float64)
        assert frame.shape == ref[i].shape
        dist = [np.abs(frame - r_).mean() for r_ in ref]
        assert int(np.argmin(dist)) == i and dist[i] < 8, dist  # its own PNG, within palette error
    import json
    assert json.loads((out / "run.json").read_text())["gif"] == str(out / "samples" / "training.gif")
