"""Paired translation: U-Net / PatchGAN / SRResNet shapes, the PatchGAN receptive field against its closed form,
the pix2pix and SRGAN losses against hand computations, the bicubic baseline against an independent numpy
implementation, translate on other image sizes, the CLI, evaluation, and a short run lowering held-out L1."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

import genzoo
from genzoo.cli import commands  # noqa: F401  (registers the commands)
from genzoo.cli._app import app
from genzoo.evaluate import image_metrics as im
from genzoo.evaluate.translation import bicubic, evaluate_translation
from genzoo.models.base import Batch
from genzoo.nn.translation import PatchGAN, SRResNet, UNet, patchgan_receptive_field, receptive_field, unet_depth
from genzoo.train import build_model

QUIET = {"log_every": 5, "sample_every": 0, "progress": False, "batch_size": 16, "validate": False}


# ---- networks ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w,cin,cout", [(28, 28, 1, 1), (32, 32, 3, 3), (64, 48, 1, 3), (17, 23, 3, 1)])
def test_unet_keeps_the_size_at_any_input(h, w, cin, cout):
    depth = unet_depth(h, w)
    assert depth == int(np.floor(np.log2(min(h, w))))
    net = UNet(cin, cout, depth, base=4).eval()
    y = net(torch.randn(2, cin, h, w))
    assert y.shape == (2, cout, h, w) and y.abs().max() <= 1  # tanh output
    assert len(net.downs) == depth and len(net.ups) == depth


def test_unet_skips_connect_each_level():
    net = UNet(1, 1, 3, base=4, dropout=0.0)
    # decoder input widths: innermost alone (16), then twice the encoder width of that level (2 * 8, 2 * 4)
    widths = [[m for m in u if isinstance(m, torch.nn.ConvTranspose2d)][0].in_channels for u in net.ups]
    assert widths == [2 * 4, 2 * 8, 16]


def _conv_out(s: int, n_layers: int) -> int:
    for _ in range(n_layers):
        s = (s + 2 - 4) // 2 + 1
    for _ in range(2):
        s = s + 2 - 4 + 1
    return s


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("size", [32, 64, 70])
def test_patchgan_map_size(n_layers, size):
    d = PatchGAN(4, base=4, n_layers=n_layers).eval()
    out = d(torch.randn(2, 4, size, size))
    assert out.shape == (2, 1, _conv_out(size, n_layers), _conv_out(size, n_layers))


@pytest.mark.parametrize("n_layers,expected", [(1, 16), (2, 34), (3, 70)])
def test_patchgan_receptive_field_matches_the_closed_form(n_layers, expected):
    assert patchgan_receptive_field(n_layers) == expected == 9 * 2 ** n_layers - 2
    d = PatchGAN(1, base=4, n_layers=n_layers, norm="none").eval()
    assert receptive_field(d.net) == expected
    # measured: the input pixels that one output logit depends on (gradient support), well inside the input
    size = 160
    x = torch.randn(1, 1, size, size, requires_grad=True)
    out = d(x)
    c = out.shape[-1] // 2
    out[0, 0, c, c].backward()
    support = x.grad[0, 0].abs() > 0
    rows = support.any(1).nonzero().flatten()
    cols = support.any(0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == expected and cols.max() - cols.min() + 1 == expected


@pytest.mark.parametrize("scale", [2, 4])
def test_srresnet_pixelshuffle_shapes(scale):
    g = SRResNet(1, 1, scale, channels=8, blocks=2, head=3).eval()
    assert g(torch.randn(2, 1, 7, 7)).shape == (2, 1, 7 * scale, 7 * scale)
    assert g(torch.randn(1, 1, 13, 9)).shape == (1, 1, 13 * scale, 9 * scale)
    shuffles = [m for m in g.modules() if isinstance(m, torch.nn.PixelShuffle)]
    assert len(shuffles) == int(np.log2(scale))
    with pytest.raises(ValueError, match="scale=3"):
        SRResNet(1, 1, 3)


# ---- losses against hand computations ----------------------------------------------------------------------
def _batch(model, ds, n=4):
    return Batch(model.prepare(ds.x[:n]), ds.y[:n], model.prepare(ds.target[:n]))


@pytest.mark.parametrize("gan_loss", ["bce", "least-squares"])
def test_pix2pix_losses_match_hand_computation(gan_loss):
    ds = genzoo.data.load("mnist-mini-edges", "test")
    m = build_model("pix2pix", ds, preset="tiny", gan_loss=gan_loss).eval()  # eval: no dropout, fixed BN
    b = _batch(m, ds)
    with torch.no_grad():
        g_total, g_terms = m.generator_loss(b)
        d_total, _ = m.discriminator_loss(b)
        fake = m.generator(b.x)
        f = m.discriminator(torch.cat([b.x, fake], 1))
        r = m.discriminator(torch.cat([b.x, b.target], 1))
    l1 = (b.target - fake).abs().mean()
    if gan_loss == "bce":  # -log sigmoid(f) = softplus(-f); -log(1 - sigmoid(f)) = softplus(f)
        adv = F.softplus(-f).mean()
        d_ref = 0.5 * (F.softplus(-r).mean() + F.softplus(f).mean())
    else:
        adv = ((f - 1) ** 2).mean()
        d_ref = 0.5 * (((r - 1) ** 2).mean() + (f ** 2).mean())
    torch.testing.assert_close(g_total, adv + 100 * l1)
    torch.testing.assert_close(g_terms["l1"], l1)
    torch.testing.assert_close(d_total, d_ref)


def test_l1_only_baseline_has_no_discriminator():
    ds = genzoo.data.load("mnist-mini-edges", "test")
    m = build_model("pix2pix", ds, preset="tiny", gan_weight=0.0).eval()
    assert m.discriminator is None and [p.name for p in m.phases()] == ["generator"]
    b = _batch(m, ds)
    with torch.no_grad():
        total, _ = m.generator_loss(b)
        torch.testing.assert_close(total, 100 * (b.target - m.generator(b.x)).abs().mean())


def test_srgan_loss_with_classifier_features():
    from genzoo.evaluate.classifier import get_classifier
    ds = genzoo.data.load("mnist-mini-sr4", "test")
    m = build_model("srgan", ds, preset="tiny", perceptual="mnist", perceptual_weight=0.5, gan_weight=0.1,
                    pixel_loss="l1").eval()
    b = _batch(m, ds)
    phi = get_classifier("mnist")
    with torch.no_grad():
        total, terms = m.generator_loss(b)
        fake = m.generator(b.x)
        perc = ((phi.features((fake + 1) / 2) - phi.features((b.target + 1) / 2)) ** 2).mean()
        adv = F.softplus(-m.discriminator(fake)).mean()
    torch.testing.assert_close(total, (b.target - fake).abs().mean() + 0.5 * perc + 0.1 * adv)
    assert not any(k.startswith("_phi") or "classifier" in k for k in m.state_dict())  # not saved with the run


def test_srresnet_preset_and_shape_errors():
    ds = genzoo.data.load("mnist-mini-sr2", "test")
    m = build_model("srgan", ds, preset="srresnet")
    assert m.discriminator is None and m.config.scale == 2
    with pytest.raises(ValueError, match="for super-resolution use srgan"):
        build_model("pix2pix", ds)
    with pytest.raises(ValueError, match="2, 4 or 8 times"):
        build_model("srgan", genzoo.data.load("mnist-mini-edges", "test"))
    with pytest.raises(ValueError, match="paired .*datasets that fit: .*mnist-mini-edges"):
        genzoo.train("pix2pix", "mnist-mini", steps=1, settings=QUIET)


# ---- bicubic baseline against numpy ------------------------------------------------------------------------
def _keys(d: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel W(d)."""
    d = np.abs(d)
    return np.where(d <= 1, (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1,
                    np.where(d < 2, a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a, 0.0))


def _resize_axis(x: np.ndarray, out: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    src = (np.arange(out) + 0.5) * n / out - 0.5  # half-pixel centres
    x0 = np.floor(src).astype(int)
    t = src - x0
    res = 0
    for k in (-1, 0, 1, 2):
        idx = np.clip(x0 + k, 0, n - 1)  # borders replicated
        w = _keys(k - t)
        shape = [1] * x.ndim
        shape[axis] = out
        res = res + np.take(x, idx, axis=axis) * w.reshape(shape)
    return res


@pytest.mark.parametrize("name,scale", [("mnist-mini-sr2", 2), ("mnist-mini-sr4", 4)])
def test_bicubic_baseline_matches_numpy(name, scale):
    ds = genzoo.data.load(name, "test").subset(slice(0, 300))
    lr = ds.x.double().numpy()[:, 0] / 255
    ref = np.clip(_resize_axis(_resize_axis(lr, 28, 1), 28, 2), 0, 1)
    got = bicubic(ds.x.float() / 255, (28, 28))[:, 0].double().numpy()
    assert np.abs(got - ref).max() < 1e-5
    hr = ds.target.double().numpy()[:, 0] / 255
    psnr_ref = np.mean(10 * np.log10(1 / ((ref - hr) ** 2).mean((1, 2))))
    psnr = im.psnr(torch.from_numpy(got)[:, None], torch.from_numpy(hr)[:, None]).mean().item()
    assert abs(psnr - psnr_ref) < 1e-3
    assert (18 < psnr < 23) if scale == 2 else (12 < psnr < 17)


@pytest.mark.slow
def test_bicubic_baseline_reproduces_the_reference_figures(mnist_root):
    for name, expected in (("mnist-sr2", 20.61), ("mnist-sr4", 14.70)):
        ds = genzoo.data.load(name, "test", root=mnist_root)
        up = bicubic(ds.x.float() / 255, (28, 28))
        assert round(im.psnr(up, ds.target.float() / 255).double().mean().item(), 2) == expected


# ---- training, translate, CLI, evaluation -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sr") / "run"
    model = genzoo.train("srgan", "mnist-mini-sr2", out=out, preset="srresnet", steps=60,
                         settings={**QUIET, "channels": 8, "blocks": 1, "head": 3, "lr": 2e-3})
    return model, out


def test_short_run_lowers_held_out_l1(sr_run):
    model, out = sr_run
    test = genzoo.data.load("mnist-mini-sr2", "test").subset(slice(0, 500))
    torch.manual_seed(0)
    fresh = build_model("srgan", test, preset="srresnet", channels=8, blocks=1, head=3).eval()

    def held_out_l1(m):
        with torch.no_grad():
            y = m.to_unit(m.translate(m.prepare(test.x)))
        return (y - test.target.float() / 255).abs().mean().item()

    before, after = held_out_l1(fresh), held_out_l1(model)
    assert after < 0.5 * before, (before, after)


def test_translate_on_other_sizes(sr_run):
    model, _ = sr_run
    y = model.translate(model.prepare(torch.randint(0, 255, (2, 1, 10, 13), dtype=torch.uint8)))
    assert y.shape == (2, 1, 20, 26)
    p2p = build_model("pix2pix", genzoo.data.load("mnist-mini-edges", "test"), preset="tiny").eval()
    assert p2p.translate(torch.zeros(1, 1, 40, 36)).shape == (1, 1, 40, 36)
    from genzoo.translate import translate_array
    assert translate_array(model, np.zeros((9, 11), np.uint8)).shape == (18, 22)
    assert translate_array(model, np.zeros((9, 11, 3), np.uint8)).shape == (18, 22)  # colour -> grey input
    with pytest.raises(ValueError, match="one direction"):
        model.translate(torch.zeros(1, 1, 7, 7), direction="b2a")


def test_translate_cli(sr_run, tmp_path):
    _, run = sr_run
    runner = CliRunner()
    r = runner.invoke(app, ["translate", str(run), "--split", "test", "-n", "5", "--out", str(tmp_path / "g.png")],
                      catch_exceptions=False)
    assert r.exit_code == 0 and "wrote" in r.output
    g = np.asarray(Image.open(tmp_path / "g.png"))
    assert g.shape[0] == 2 * (3 * 30 + 2)  # rows source | output | target of 28 px + 2 px padding, scale 2
    r = runner.invoke(app, ["translate", str(run), "-n", "3", "--out", str(tmp_path / "o.npy")])
    assert np.load(tmp_path / "o.npy").shape == (3, 28, 28)
    Image.fromarray(np.full((12, 20), 200, np.uint8)).save(tmp_path / "mine.png")
    r = runner.invoke(app, ["translate", str(run), "--input", str(tmp_path / "mine.png"), "--out",
                            str(tmp_path / "outdir")])
    assert r.exit_code == 0, r.output
    assert np.asarray(Image.open(tmp_path / "outdir" / "mine.png")).shape == (24, 40)
    r = runner.invoke(app, ["translate", str(run), "--direction", "b2a", "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "a2b" in r.output
    r = runner.invoke(app, ["translate", str(run), "--input", str(tmp_path / "missing.png"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "missing.png" in r.output


def test_evaluate_dispatches_to_translation_metrics(sr_run):
    model, run = sr_run
    res = genzoo.evaluate.evaluate(run, n=300)
    m = res["metrics"]
    from genzoo.evaluate.subsets import random_subset
    test = random_subset(genzoo.data.load("mnist-mini-sr2", "test"), 300, seed=0)  # evaluate's sample (seed 0)
    with torch.no_grad():
        y = model.to_unit(model.translate(model.prepare(test.x)))
    t = test.target.float() / 255
    assert abs(m["l1"] - (y - t).abs().mean().item()) < 1e-5
    assert abs(m["psnr"] - (10 * torch.log10(1 / ((y - t) ** 2).flatten(1).mean(1))).mean().item()) < 1e-3
    assert {"ssim", "label_accuracy", "fid", "kid", "bicubic_psnr", "bicubic_label_accuracy", "psnr_gain_db"} <= set(m)
    assert abs(m["psnr_gain_db"] - (m["psnr"] - m["bicubic_psnr"])) < 1e-9
    assert 0.9 < m["target_label_accuracy"] <= 1.0
    p2p = build_model("pix2pix", genzoo.data.load("mnist-mini-edges", "test"), preset="tiny").eval()
    r2 = evaluate_translation(p2p, "mnist-mini-edges", n=50, metrics="l1,bicubic")
    assert "bicubic" in r2["skipped"] and set(r2["metrics"]) == {"l1"}


def test_srgan_starts_from_a_srresnet_run(sr_run, tmp_path):
    src, run = sr_run
    m = genzoo.train("srgan", "mnist-mini-sr2", out=tmp_path / "gan", preset="srresnet", steps=1,
                     settings={**QUIET, "channels": 8, "blocks": 1, "head": 3, "gan_weight": 1e-3,
                               "d_base": 8, "n_layers": 1, "init_from": str(run), "lr": 0.0, "lr_d": 1e-4})
    for k, v in src.generator.state_dict().items():
        if v.dtype.is_floating_point and "running" not in k:
            torch.testing.assert_close(m.generator.state_dict()[k], v)
    assert int(m.initialised) == 1
    loaded = genzoo.load(tmp_path / "gan")  # loading does not read init_from again
    assert int(loaded.initialised) == 1
    with pytest.raises(ValueError, match="does not fit"):
        genzoo.train("srgan", "mnist-mini-sr2", preset="srresnet", steps=1,
                     settings={**QUIET, "channels": 16, "blocks": 1, "head": 3, "init_from": str(run)})


def test_linear_lr_decay_shrinks_each_update():
    """With lr_decay_start=0, lr_decay_steps=2 the factor is 1, 1/2, 0 at steps 1, 2, 3: the second update is half
    the undecayed one (same weights and Adam state before it), the third changes nothing."""
    s = {**QUIET, "channels": 8, "blocks": 1, "head": 3, "lr": 1e-2}

    def gen(steps, **kw):
        torch.manual_seed(0)
        m = genzoo.train("srgan", "mnist-mini-sr2", preset="srresnet", steps=steps, settings={**s, **kw})
        return {k: v.detach().clone() for k, v in m.generator.named_parameters()}

    one, two = gen(1), gen(2)
    two_d, three_d = gen(2, lr_decay_steps=2), gen(3, lr_decay_steps=2)
    for k in one:
        torch.testing.assert_close(two_d[k] - one[k], 0.5 * (two[k] - one[k]), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(three_d[k], two_d[k])
