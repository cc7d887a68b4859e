"""SAGAN, BigGAN and ProGAN as GAN config presets: paper defaults, ProGAN's fade-in and growth schedule (and an
exact --resume mid-fade), BigGAN's conditioning, truncation and EMA, the attention-map command."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from genzoo import data as gd
from genzoo.models.gan import ProDiscriminator, ProGenerator, progan_schedule
from genzoo.nn import blocks as B
from genzoo.train import build_model, train
from genzoo.train import rundir as R

TRAIN = {"log_every": 1, "sample_every": 0, "progress": False, "validate": False}  # for built models
QUIET = {**TRAIN, "monitor_every": 0}


def _sn(module) -> bool:
    return hasattr(module, "parametrizations") and "weight" in module.parametrizations


def test_paper_defaults():
    ds = gd.load("mnist-mini")
    s = build_model("sagan", ds)
    c = s.config
    assert (c.loss, c.lr_g, c.lr_d, c.betas, c.attention_res) == ("hinge", 1e-4, 4e-4, (0.0, 0.9), 14)
    for net in (s.generator, s.discriminator):
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(_sn(m) for m in convs)  # spectral norm in G and D
        att = [m for m in net.modules() if isinstance(m, B.SelfAttention)]
        assert len(att) == 1
    b = build_model("biggan", ds)
    c = b.config
    assert c.conditional and c.hierarchical_z and c.loss == "hinge" and c.ema == 0.999 and c.orthogonal_reg == 1e-4
    assert any(isinstance(m, B.ConditionalBatchNorm2d) for m in b.generator.modules())
    assert hasattr(b.discriminator, "embed") and hasattr(b, "ema")  # projection D; EMA copy of G
    p = build_model("progan", ds)
    c = p.config
    assert (c.loss, c.gradient_penalty, c.drift, c.lr_g, c.lr_d, c.betas, c.k, c.minibatch_std) == \
        ("wasserstein", 10.0, 0.001, 1e-3, 1e-3, (0.0, 0.99), 1, 4)
    assert c.resolutions() == [7, 14, 28]
    assert any(isinstance(m, B.PixelNorm) for m in p.generator.modules())
    assert any(isinstance(m, B.EqualizedConv2d) for m in p.discriminator.modules())
    assert build_model("progan", image_shape=(3, 32, 32)).config.resolutions() == [4, 8, 16, 32]
    with pytest.raises(ValueError, match="attention"):
        build_model("sagan", ds, attention=5)


def test_progan_schedule_by_hand():
    P = 100
    assert progan_schedule(0, P, 3) == (0, 1.0)
    assert progan_schedule(99, P, 3) == (0, 1.0)
    assert progan_schedule(100, P, 3) == (1, 0.0)  # stage 1 starts fading in
    assert progan_schedule(125, P, 3) == (1, 0.25)
    assert progan_schedule(200, P, 3) == (1, 1.0)  # then stable
    assert progan_schedule(299, P, 3) == (1, 1.0)
    assert progan_schedule(350, P, 3) == (2, 0.5)
    assert progan_schedule(10 ** 6, P, 3) == (2, 1.0)


def test_fade_in_equals_the_low_res_path_at_alpha_0_and_the_new_path_at_alpha_1():
    torch.manual_seed(0)
    G, D = ProGenerator(8, (1, 28, 28), 4), ProDiscriminator((1, 28, 28), 4)
    z = torch.randn(4, 8)
    with torch.no_grad():
        for s in (1, 2):
            low = G(z, s - 1, 1.0)  # the previous stage's image, (B, 1, res[s-1], res[s-1])
            torch.testing.assert_close(G(z, s, 0.0), low.repeat_interleave(2, 2).repeat_interleave(2, 3))
            # the new path by hand: base -> blocks 1..s -> to_rgb[s]
            h = G.base(G.input(z).reshape(4, G.chans[0], 7, 7))
            for t in range(1, s + 1):
                h = G.blocks[t](h)
            torch.testing.assert_close(G(z, s, 1.0), G.to_rgb[s](h))
            mid = G(z, s, 0.3)
            torch.testing.assert_close(mid, 0.7 * G(z, s, 0.0) + 0.3 * G(z, s, 1.0), rtol=1e-5, atol=1e-5)
            # critic: alpha 0 = the previous stage on the 2x average-pooled image; alpha 1 = the new block path
            x = torch.randn(4, 1, 7 << s, 7 << s)
            torch.testing.assert_close(D(x, s, 0.0), D(F.avg_pool2d(x, 2), s - 1, 1.0))
            h = D.blocks[s](D.from_rgb[s](x))
            for t in range(s - 1, 0, -1):
                h = D.blocks[t](h)
            torch.testing.assert_close(D(x, s, 1.0), D.head(h).reshape(-1))


def test_progan_resume_mid_fade_equals_an_uninterrupted_run(tmp_path):
    kw = {"preset": "tiny", "batch_size": 32, "settings": {**QUIET, "checkpoint_every": 10 ** 6}}
    train("progan", "mnist-mini", out=tmp_path / "a", steps=6, **kw)
    train("progan", "mnist-mini", out=tmp_path / "b", steps=3, **kw)  # stops with stage 1 half faded in
    m = train("progan", "mnist-mini", out=tmp_path / "b", resume=True, steps=6)
    a, b = load_file(tmp_path / "a" / R.WEIGHTS), load_file(tmp_path / "b" / R.WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert int(m.images_seen) == 6 * 32
    # metrics.csv logs the stage and alpha of every step: tiny phase_images = 64, batch 32
    rows = R.read_metrics(tmp_path / "a")
    got = [(float(r["discriminator/stage"]), float(r["discriminator/alpha"])) for r in rows]
    want = [progan_schedule(32 * i, 64, 3) for i in range(6)]
    assert got == [(float(s), a) for s, a in want] and want[3] == (1, 0.5)
    # samples come out at full size while G still outputs 14x14 (alpha 0)
    assert m.stage == (2, 0.0)  # 192 images: 28x28 starts fading in
    assert m.sample(3).shape == (3, 1, 28, 28)


def test_progan_grid_shows_the_low_resolution_upsampled():
    m = build_model("progan", gd.load("mnist-mini"), preset="tiny")
    assert m.stage == (0, 1.0)
    x = m.sample(2, generator=torch.Generator().manual_seed(0))  # stage 0: 7x7 shown as 4x4 blocks
    assert x.shape == (2, 1, 28, 28)
    assert torch.equal(x, x[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3))


def test_biggan_truncation_keeps_z_within_t_and_reaches_the_generator():
    m = build_model("biggan", gd.load("mnist-mini"), preset="tiny").eval()
    z = m.noise(3000, torch.Generator().manual_seed(0), truncation=0.5)
    assert z.abs().max().item() <= 0.5 and z.std().item() > 0.25  # redrawn, not clamped
    assert (z.abs() > 0.49).float().mean().item() < 0.05
    y = torch.tensor([1, 2, 3])
    with torch.no_grad():
        x = m.sample(3, labels=y, generator=torch.Generator().manual_seed(1), truncation=0.5)
        ref = m.averaged(m.generator)(m.noise(3, torch.Generator().manual_seed(1), truncation=0.5), y)
        assert torch.equal(x, ref)
        # conditional BN: the same z gives different images for different classes
        zz = torch.randn(1, m.config.latent_dim).expand(2, -1)
        a = m.averaged(m.generator)(zz, torch.tensor([0, 5]))
        assert (a[0] - a[1]).abs().max().item() > 1e-4


def test_biggan_ema_follows_the_recursion_and_recomputes_batch_norm(tmp_path):
    ds = gd.load("mnist-mini")
    model = build_model("biggan", ds, preset="tiny", ema=0.8, monitor_every=0)
    snaps = []
    orig = model.g_loss

    def record(batch):
        snaps.append([p.detach().clone() for p in model.generator.parameters()])
        return orig(batch)

    model.g_loss = record
    train(model, ds, out=None, settings=TRAIN, steps=4, batch_size=32)
    snaps.append([p.detach().clone() for p in model.generator.parameters()])
    avg = snaps[0]  # w_avg_0 = w_0; w_avg_t = d w_avg_{t-1} + (1 - d) w_t, d = min(0.8, t / (9 + t)) (warm-up)
    for t, w in enumerate(snaps[1:], start=1):
        d = min(0.8, t / (9 + t))
        avg = [d * a + (1 - d) * b for a, b in zip(avg, w)]
    for a, b in zip(model.ema.module.parameters(), avg):
        torch.testing.assert_close(a, b)
    # the EMA copy's batch norms use statistics of its own activations, not the live G's: in eval mode its first
    # BN normalises fresh activations of the averaged G to mean ~0, variance ~1 per channel
    ema_g = model.ema.module.eval()
    bn = ema_g.blocks[0].bn1.bn
    assert not torch.equal(bn.running_mean, model.generator.blocks[0].bn1.bn.running_mean)
    seen = {}
    hook = bn.register_forward_hook(lambda mod, inp, out: seen.setdefault("out", out))
    with torch.no_grad():
        g = torch.Generator().manual_seed(9)
        ema_g(torch.randn(4000, model.config.latent_dim, generator=g), torch.randint(10, (4000,), generator=g))
    hook.remove()
    out = seen["out"]
    assert out.mean((0, 2, 3)).abs().max().item() < 0.1
    assert (out.var((0, 2, 3)) - 1).abs().max().item() < 0.1


def test_old_ema_weights_keys_still_load():
    torch.manual_seed(0)
    m = build_model("dcgan", gd.load("mnist-mini"), preset="tiny", ema=0.9)
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("ema.") and k != "images_seen"}
    for name, p in m.generator.named_parameters():  # the layout before the engine-level EMA
        state["ema_weights." + name.replace(".", "_")] = p.detach() + 1.0
    fresh = build_model("dcgan", gd.load("mnist-mini"), preset="tiny", ema=0.9)
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    assert not missing and not unexpected
    for (n, p), q in zip(m.generator.named_parameters(), fresh.ema.module.parameters()):
        torch.testing.assert_close(q, p.detach() + 1.0)


@pytest.mark.parametrize("name", ["sagan", "biggan", "progan"])
def test_lineage_trains_with_finite_losses(name):
    ds = gd.load("mnist-mini")
    m = build_model(name, ds, preset="tiny", monitor_every=0)
    before = [p.detach().clone() for p in m.discriminator.parameters()]
    train(m, ds, out=None, settings=TRAIN, steps=2, batch_size=32)
    assert any(not torch.equal(a, b) for a, b in zip(before, m.discriminator.parameters()))
    with torch.no_grad():
        assert np.isfinite(m.sample(2, labels=torch.tensor([0, 1]) if m.conditional else None).numpy()).all()
    if name == "biggan":  # the EMA copy is never optimised
        assert not any(p.requires_grad for p in m.ema.parameters())


def test_attention_command_and_truncated_sampling_from_the_cli(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401
    from genzoo.cli._app import app

    runs = {}
    for name in ("sagan", "biggan"):
        runs[name] = tmp_path / name
        train(name, "mnist-mini", out=runs[name], preset="tiny", steps=2, batch_size=32, settings=QUIET)
    import genzoo
    m = genzoo.load(runs["sagan"])
    x, beta, grid = m.attention_maps(3, generator=torch.Generator().manual_seed(0))
    assert grid == (14, 14) and beta.shape == (3, 196, 196) and x.shape == (3, 1, 28, 28)
    torch.testing.assert_close(beta.sum(-1), torch.ones(3, 196))
    # the recorded map is G's attention on the features its first block produced from that z
    G = m.generator
    with torch.no_grad():
        z = m.noise(3, torch.Generator().manual_seed(0))
        h = G.linear(z).reshape(3, G.chans[0], 7, 7)
        h = G.blocks[0](h)
        torch.testing.assert_close(beta, G.attn["0"].attention(h))
    out = tmp_path / "attn.png"
    r = CliRunner().invoke(app, ["gans", "attention", str(runs["sagan"]), "--pos", "14,10", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000
    r = CliRunner().invoke(app, ["gans", "attention", str(runs["biggan"]), "--pos", "1,1", "--out", str(out)])
    assert r.exit_code != 0 and "no self-attention" in r.output
    npy = tmp_path / "s.npy"
    r = CliRunner().invoke(app, ["sample", str(runs["biggan"]), "-n", "4", "--labels", "1,1,7,7", "--truncation",
                                 "0.5", "--out", str(npy)])
    assert r.exit_code == 0, r.output
    assert np.load(npy).shape == (4, 28, 28)


def test_colour_32x32_folder_trains_biggan_and_grows_progan_from_4x4(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, colour in enumerate(((200, 40, 40), (40, 40, 200))):  # two classes of coloured squares on noise
        d = tmp_path / "imgs" / f"c{k}"
        d.mkdir(parents=True)
        for i in range(20):
            a = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            r, c = rng.integers(0, 20, 2)
            a[r:r + 12, c:c + 12] = colour
            Image.fromarray(a, "RGB").save(d / f"{i}.png")
    data = f"folder:{tmp_path / 'imgs'}"
    b = train("biggan", data, preset="tiny", steps=2, batch_size=8, settings=QUIET)
    with torch.no_grad():
        assert b.sample(2, labels=torch.tensor([0, 1])).shape == (2, 3, 32, 32)
    p = train("progan", data, preset="tiny", steps=7, batch_size=8, settings={**QUIET, "phase_images": 16})
    assert p.config.resolutions() == [4, 8, 16, 32]
    assert p.stage == progan_schedule(56, 16, 4) == (2, 0.5)  # 16x16 half faded in after 7 steps of 8 images
    with torch.no_grad():
        assert p.sample(2).shape == (2, 3, 32, 32)
