"""What autoencoders are used for (genzoo.applications and its CLI): each checked against an independent
reference — scipy's subspace angles, the Mann-Whitney definition of AUROC, a hand-computed average precision,
explicit translations, PSNR from its definition, label counts — or a behaviour a broken version would fail."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import genzoo
import genzoo.data as gd
from genzoo import applications as A
from genzoo.cli import commands  # noqa: F401  (registers the commands)
from genzoo.cli._app import app
from genzoo.train import build_model, train

runner = CliRunner()
QUIET = {"log_every": 50, "sample_every": 0, "progress": False, "validate": False}


def cli(*args):
    r = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return r


@pytest.fixture(scope="module")
def dae_run(tmp_path_factory):
    """A small denoising AE trained for a few hundred steps on mnist-mini (shared by several tests)."""
    out = tmp_path_factory.mktemp("runs") / "dae"
    torch.manual_seed(0)
    train("denoising-ae", "mnist-mini", out=out, preset="tiny", steps=300,
          settings={**QUIET, "hidden": (64,), "latent_dim": 16, "noise": "gaussian", "noise_level": 0.5})
    return out


# ---- principal angles, anomaly metrics -------------------------------------------------------------------
def test_principal_angles_match_scipy():
    from scipy.linalg import subspace_angles
    rng = np.random.default_rng(0)
    for d, k, l in ((10, 3, 3), (20, 5, 2), (8, 4, 6)):
        a, b = rng.normal(size=(d, k)), rng.normal(size=(d, l))
        ours = A.principal_angles(a, b)
        ref = np.sort(np.degrees(subspace_angles(a, b)))
        np.testing.assert_allclose(ours, ref, atol=1e-6)
    # a subspace against a rotated basis of itself: all angles zero
    q = rng.normal(size=(12, 4))
    assert A.principal_angles(q, q @ rng.normal(size=(4, 4))).max() < 1e-5


def test_auroc_is_the_mann_whitney_probability_and_ap_matches_a_hand_computation():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=60), 1)  # with ties
    y = rng.random(60) < 0.4
    pos, neg = scores[y], scores[~y]
    mw = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    # AP by hand on untied scores: mean over positives of the precision at their rank
    s2 = rng.normal(size=60)
    order = np.argsort(-s2)
    hits = y[order]
    ap = np.mean([hits[: i + 1].mean() for i in range(60) if hits[i]])
    assert A.anomaly_metrics(scores, y)["auroc"] == pytest.approx(mw, abs=1e-12)
    assert A.anomaly_metrics(s2, y)["ap"] == pytest.approx(ap, abs=1e-12)
    with pytest.raises(ValueError, match="both normal and anomalous"):
        A.anomaly_metrics(scores, np.zeros(60, bool))


# ---- reconstruction errors, codes, the mean-image baseline -----------------------------------------------
def test_reconstruction_errors_and_codes(dae_run):
    model = genzoo.load(dae_run)
    ds = gd.load("mnist-mini", "test").subset(slice(0, 50))
    errs = A.reconstruction_errors(model, ds, batch_size=16)
    with torch.no_grad():
        x = ds.x.double() / 255
        r = model.reconstruct(model.prepare(ds.x)).double().clamp(0, 1)
    by_hand = [float(((r[i] - x[i]) ** 2).mean()) for i in range(50)]
    np.testing.assert_allclose(errs.numpy(), by_hand, rtol=1e-4, atol=1e-7)
    codes = A.encode_dataset(model, ds, batch_size=16)
    assert codes.shape == (50, 16)
    torch.testing.assert_close(codes, model.encode(model.prepare(ds.x)).detach())


def test_mean_image_baseline_on_a_toy_set():
    train_ = gd.Dataset("t", "train", torch.tensor([[[[0]]], [[[255]]]], dtype=torch.uint8))
    test = gd.Dataset("t", "test", torch.tensor([[[[255]]], [[[255]]]], dtype=torch.uint8))
    assert A.mean_image_mse(train_, test) == pytest.approx(0.25)  # mean image 0.5, every test pixel 1


@pytest.mark.slow
def test_mean_image_baseline_on_mnist_is_the_issue_figure(mnist_root):
    mse = A.mean_image_mse(gd.load("mnist", "train", root=mnist_root), gd.load("mnist", "test", root=mnist_root))
    assert mse == pytest.approx(0.0675, abs=5e-5)


# ---- denoising ----------------------------------------------------------------------------------------------
def test_denoise_metrics_follow_their_definitions_and_the_dae_removes_noise(dae_run):
    model = genzoo.load(dae_run)
    x = gd.load("mnist-mini", "test").x[:200]
    res = A.denoise(model, x, "gaussian:0.5", seed=3)
    assert res.clean.shape == res.noisy.shape == res.denoised.shape == (200, 1, 28, 28)
    torch.testing.assert_close(res.clean, x.float() / 255)
    mse = ((res.noisy.double() - res.clean.double()) ** 2).flatten(1).mean(1)
    assert res.metrics["psnr_noisy"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-5)
    assert res.metrics["psnr_denoised"] > res.metrics["psnr_noisy"] + 3  # at least 3 dB cleaner
    again = A.denoise(model, x, "gaussian:0.5", seed=3)
    assert torch.equal(again.noisy, res.noisy)  # the seed fixes the noise


# ---- the one-class protocol ---------------------------------------------------------------------------------
def test_one_class_task_on_mnist_mini_detects_other_digits():
    r = A.anomaly_task("mnist-mini", [1], model="ae", preset="tiny", steps=150, settings={"batch_size": 64})
    assert r["normal"] == [1] and r["n_test"] == 2000
    test_y = gd.load("mnist-mini", "test").y
    assert r["anomaly_fraction"] == pytest.approx(float((test_y != 1).float().mean()))
    assert r["auroc"] > 0.9  # a "1" is far easier to reconstruct for a model that saw only ones


@pytest.mark.parametrize("normal, msg", [([], "expected some"), (list(range(10)), "not all"), ([12], "0..9")])
def test_one_class_task_rejects_bad_class_lists(normal, msg):
    with pytest.raises(ValueError, match=msg):
        A.anomaly_task("mnist-mini", normal, steps=1)


# ---- features and the linear probe ---------------------------------------------------------------------------
def test_linear_probe_reads_digits_and_does_not_see_test_labels():
    tr, te = gd.load("digits", "train"), gd.load("digits", "test")
    xtr, xte = tr.x.flatten(1).numpy(), te.x.flatten(1).numpy()
    assert A.linear_probe(xtr, tr.y, xte, te.y) > 0.93  # logistic regression on raw 8x8 digits: ~0.96
    shuffled = tr.y[torch.randperm(len(tr.y), generator=torch.Generator().manual_seed(0))]
    assert A.linear_probe(xtr, shuffled, xte, te.y) < 0.25  # labels unrelated to the inputs: chance level
    with pytest.raises(ValueError, match="differ in length"):
        A.linear_probe(xtr, tr.y[:5], xte, te.y)


# ---- fine-tuning -------------------------------------------------------------------------------------------------
def test_balanced_labels_are_balanced_and_seeded():
    ds = gd.load("mnist-mini", "train")
    a, b, c = (A.balanced_labels(ds, 50, seed=s) for s in (0, 0, 1))
    assert torch.bincount(a.y, minlength=10).tolist() == [5] * 10
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    for bad in (0, 55):
        with pytest.raises(ValueError, match="multiple"):
            A.balanced_labels(ds, bad)


def test_random_shift_is_a_zero_filled_translation():
    x = torch.rand(64, 1, 6, 7, generator=torch.Generator().manual_seed(0)) + 0.1  # no zeros inside
    out = A.random_shift(x, 2, torch.Generator().manual_seed(1))

    def translate(img, dy, dx):  # reference: shift content by (dy, dx), zeros elsewhere
        res = np.zeros_like(img)
        h, w = img.shape[-2:]
        res[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            img[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        return res

    seen = set()
    for i in range(64):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(out[i].numpy(), translate(x[i].numpy(), dy, dx))]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 15  # the offsets vary (25 possible)


def test_finetune_reports_both_classifiers_and_leaves_the_pretrained_model_alone():
    ds_tr, ds_te = gd.load("digits", "train"), gd.load("digits", "test")
    torch.manual_seed(0)
    ae = train("ae", ds_tr, preset="tiny", steps=200, settings=QUIET)
    before = {k: v.clone() for k, v in ae.state_dict().items()}
    r = A.finetune(ae, ds_tr, ds_te, labels=50, seed=0, steps=150, shift=0)
    assert all(torch.equal(before[k], v) for k, v in ae.state_dict().items())
    assert r["labels"] == 50 and set(r) >= {"pretrained_error", "scratch_error"}
    # 50 labelled 8x8 digits: both classifiers are far better than chance (0.9 error)
    assert r["pretrained_error"] < 0.4 and r["scratch_error"] < 0.4
    with pytest.raises(ValueError, match="multiple"):
        A.finetune(ae, ds_tr, ds_te, labels=15)


# ---- the linear AE's decoder basis, learned features ---------------------------------------------------------------
def test_decoder_basis_and_unit_images_show_the_decoder_columns():
    ds = gd.load("digits", "train")
    m = build_model("ae", ds, hidden=(), latent_dim=5, loss="mse")
    W = m.decoder[0][0].weight.detach()  # (64, 5)
    np.testing.assert_allclose(A.decoder_basis(m), W.double().numpy())
    imgs = A.unit_images(m)
    assert imgs.shape == (5, 1, 8, 8) and imgs.min() >= 0 and imgs.max() <= 1
    for j in range(5):  # unit j draws column j of W, rescaled to [0, 1]
        col = W[:, j]
        torch.testing.assert_close(imgs[j].flatten(), (col - col.min()) / (col.max() - col.min()))
    with pytest.raises(ValueError, match="one-layer"):
        A.decoder_basis(build_model("ae", ds, preset="tiny"))


# ---- CLI -------------------------------------------------------------------------------------------------------------
def test_cli_denoise_features_and_anomaly_on_a_run(dae_run, tmp_path):
    r = cli("denoise", dae_run, "--noise", "masking:0.4", "-n", "6", "--measure", "100",
            "--out", tmp_path / "d.png", "--json", tmp_path / "d.json")
    assert r.exit_code == 0, r.output
    assert f"wrote {tmp_path / 'd.png'}" in r.output and "PSNR noisy" in r.output
    assert json.loads((tmp_path / "d.json").read_text())["noise"] == "masking:0.4"
    r = cli("features", dae_run, "--out", tmp_path / "c.npy", "--probe-train", "1000", "--units", tmp_path / "u.png")
    assert r.exit_code == 0, r.output
    codes, labels = np.load(tmp_path / "c.npy"), np.load(tmp_path / "c.labels.npy")
    assert codes.shape == (2000, 16) and labels.tolist() == gd.load("mnist-mini", "test").y.tolist()
    assert "linear probe" in r.output and (tmp_path / "u.png").exists()
    r = cli("anomaly", "--run", dae_run, "--normal", "3", "--out", tmp_path / "a.json")
    assert r.exit_code == 0 and 0 < json.loads((tmp_path / "a.json").read_text())["auroc"] < 1


def test_cli_anomaly_finetune_and_pca_check_train_small_models(tmp_path):
    r = cli("anomaly", "--data", "digits", "--normal", "0", "--preset", "tiny", "--steps", "20", "--set", "batch_size=32")
    assert r.exit_code == 0, r.output
    assert "AUROC" in r.output
    r = cli("finetune", "--data", "digits", "--preset", "tiny", "--pretrain-epochs", "1", "--labels", "20",
            "--steps", "20", "--out", tmp_path / "f.json")
    assert r.exit_code == 0, r.output
    assert set(json.loads((tmp_path / "f.json").read_text())) >= {"pretrained_error", "scratch_error"}
    r = cli("pca-check", "--data", "digits", "-k", "3", "--epochs", "5", "--out", tmp_path / "p.json")
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "p.json").read_text())["angles_deg"]) == 3


@pytest.mark.parametrize("args, msg", [
    (["anomaly", "--data", "digits"], "--normal"),
    (["anomaly", "--data", "digits", "--normal", "1", "--all-classes"], "drop --normal"),
    (["finetune", "--labels", "100"], "--data"),
    (["denoise", "nope", "--out", "x.png", "--noise", "blur:1"], None),
])
def test_cli_bad_input_is_a_clear_error(args, msg):
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    if msg:
        assert msg in r.output
