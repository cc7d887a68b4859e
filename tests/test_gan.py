"""GAN family: phases through the one engine (k D steps, clipping, EMA), conditional sampling, spectral
norm, the mode monitor, toy metrics and the `genzoo gans` commands."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import genzoo
from genzoo import data as gd
from genzoo import registry
from genzoo.data.toy import mode_quality, ring8_modes
from genzoo.models.base import Batch
from genzoo.train import build_model, train
from genzoo.train.callbacks import ModeMonitor

QUIET = {"log_every": 1, "sample_every": 0, "progress": False, "validate": False}


def tiny(name: str, ds, **kw):
    """A tiny model without the mode monitor (it would run at the last step)."""
    return build_model(name, ds, preset="tiny", **{"monitor_every": 0, **kw})


@pytest.fixture
def tiny_run(tmp_path):
    """Train a tiny GAN for a few steps on mnist-mini into a run directory: (model, run_dir)."""
    def run(name: str, steps: int = 2, **model_kw):
        out = tmp_path / f"{name}-run"
        m = train(name, "mnist-mini", out=out, preset="tiny", steps=steps, batch_size=32,
                  settings={**QUIET, "monitor_every": 0, **model_kw})
        return m, out
    return run


def counting(model, name: str, log: list):
    """Wrap a bound loss method so every call through the engine is recorded."""
    fn = getattr(model, name)

    def wrapped(batch, *a, **kw):
        log.append(name)
        return fn(batch, *a, **kw)

    setattr(model, name, wrapped)


def test_registry_names_and_paper_defaults():
    for name in ("gan", "dcgan", "cgan", "wgan", "wgan-gp"):
        assert name in registry.names()
    ds = gd.load("mnist-mini")
    dc = build_model("dcgan", ds).config
    assert (dc.optimizer, dc.lr_d, dc.lr_g, dc.betas, dc.init) == ("adam", 2e-4, 2e-4, (0.5, 0.999), "dcgan")
    w = build_model("wgan", ds).config
    assert (w.loss, w.k, w.clip, w.optimizer, w.lr_d) == ("wasserstein", 5, 0.01, "rmsprop", 5e-5)
    gp = build_model("wgan-gp", ds)
    c = gp.config
    assert (c.loss, c.k, c.gradient_penalty, c.betas, c.lr_d, c.clip) == ("wasserstein", 5, 10.0, (0.0, 0.9), 1e-4, 0.0)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gp.discriminator.modules())
    assert build_model("cgan", ds).config.conditional
    with pytest.raises(ValueError, match="batch norm"):
        build_model("wgan-gp", ds, d_batch_norm=True)
    with pytest.raises(ValueError, match="loss="):
        build_model("gan", ds, loss="wgan")


def test_dcgan_architecture_and_init_for_grey_28_and_colour_32():
    torch.manual_seed(0)
    for shape in ((1, 28, 28), (3, 32, 32)):
        m = build_model("dcgan", image_shape=shape, num_classes=10)
        strided = [l for l in m.discriminator.modules() if isinstance(l, torch.nn.Conv2d)]
        assert all(l.stride == (2, 2) for l in strided)
        assert len(strided) == {28: 2, 32: 3}[shape[1]]
        assert any(isinstance(l, torch.nn.BatchNorm2d) for l in m.generator.modules())
        assert isinstance(m.generator[-1], torch.nn.Tanh)
        w = torch.cat([l.weight.flatten() for l in m.modules() if isinstance(l, torch.nn.ConvTranspose2d)])
        assert float(w.detach().std()) == pytest.approx(0.02, rel=0.05)  # N(0, 0.02) init
        m.eval()
        with torch.no_grad():
            x = m.sample(5, generator=torch.Generator().manual_seed(0))
            assert x.shape == (5, *shape) and float(x.abs().max()) <= 1.0
            assert m.D(x).shape == (5,)


def test_k_discriminator_steps_per_generator_step(tmp_path):
    ds = gd.load("mnist-mini")
    model = tiny("gan", ds, k=3)
    log: list[str] = []
    counting(model, "d_loss", log)
    counting(model, "g_loss", log)
    train(model, ds, out=tmp_path / "run", settings=QUIET, steps=4, batch_size=32)
    # Algorithm 1: k discriminator updates, then one generator update, every step
    assert log == (["d_loss"] * 3 + ["g_loss"]) * 4
    assert int(model.generator_steps) == 4
    rows = gd_rows(tmp_path / "run")
    assert {"discriminator/d_real", "discriminator/d_fake", "generator/d_fake", "generator/grad_minimax",
            "generator/grad_nonsat", "discriminator/grad_norm", "generator/grad_norm"} <= set(rows[-1])


def gd_rows(run):
    from genzoo.train.rundir import read_metrics
    return read_metrics(run)


def test_wgan_clipping_bound_holds_after_every_critic_step():
    ds = gd.load("mnist-mini")
    model = tiny("wgan", ds, arch="mlp", lr_d=5e-3, lr_g=5e-3)
    c = model.config.clip
    seen: list[float] = []

    def record(batch, *a, **kw):  # called before each critic step: sees the weights the last step left
        seen.append(max(float(p.detach().abs().max()) for p in model.discriminator.parameters()))
        return orig(batch, *a, **kw)

    orig = model.d_loss
    model.d_loss = record
    train(model, ds, out=None, settings=QUIET, steps=3, batch_size=32)
    seen.append(max(float(p.detach().abs().max()) for p in model.discriminator.parameters()))
    assert seen[0] > c  # PyTorch's default init exceeds the bound, so the clipping is doing the work
    assert len(seen) == 3 * 5 + 1 and all(v <= c for v in seen[1:])


def test_gradient_penalty_in_training_and_validation(tiny_run, monkeypatch):
    model, run = tiny_run("wgan-gp")
    rows = gd_rows(run)
    assert all(math.isfinite(float(r["discriminator/gp"])) for r in rows if r.get("discriminator/gp"))
    # the critic loss adds lambda * E[(||grad D(x_hat)|| - 1)^2] on x_hat = eps x + (1 - eps) G(z): checked
    # against a per-example Jacobian of the model's own critic at the interpolates it used
    from genzoo import losses
    seen = {}
    real_gp = losses.gradient_penalty

    def spy(critic, real, fake, eps):
        seen.update(real=real.detach().clone(), fake=fake.detach().clone(), eps=eps.detach().clone())
        return real_gp(critic, real, fake, eps)

    monkeypatch.setattr(losses, "gradient_penalty", spy)
    model.train()
    batch = Batch(model.prepare(gd.load("mnist-mini", "test").x[:6]), None)
    total, terms = model.d_loss(batch)
    ref = []
    for i in range(6):
        x_hat = seen["eps"][i] * seen["real"][i] + (1 - seen["eps"][i]) * seen["fake"][i]
        g = torch.autograd.functional.jacobian(lambda v: model.D(v[None], None).reshape(()), x_hat)
        ref.append((g.flatten().norm() - 1) ** 2)
    gp_ref = float(torch.stack(ref).mean())
    assert float(terms["gp"]) == pytest.approx(gp_ref, rel=1e-4)
    lam = model.config.gradient_penalty
    assert float(total.detach()) == pytest.approx(float(terms["adv"].detach()) + lam * gp_ref, rel=1e-4, abs=1e-6)
    batch = Batch(model.prepare(gd.load("mnist-mini", "test").x[:16]), None)
    with torch.no_grad():
        total, terms = model.val_loss(batch)  # no autograd here: the penalty is left out
    assert torch.isfinite(total) and "discriminator/gp" not in terms and "generator/d_fake" in terms


def test_lazy_gradient_penalty_runs_every_nth_generator_step_at_n_times_the_weight(tiny_run):
    # StyleGAN2's lazy regularisation: with gp_every = 3 the penalty is in the critic phases of generator steps
    # 0, 3, 6, ... only (metrics rows 1, 4, 7), weighted 3 * lambda there, so its average weight stays lambda
    model, run = tiny_run("wgan-gp", steps=7, gp_every=3, k=1)
    assert [int(r["step"]) for r in gd_rows(run) if r.get("discriminator/gp")] == [1, 4, 7]
    model.train()
    batch = Batch(model.prepare(gd.load("mnist-mini", "test").x[:8]), None)
    lam = model.config.gradient_penalty
    model._generator_steps = 9
    total, terms = model.d_loss(batch)
    adv = float(terms["adv"].detach())
    assert float(total.detach()) == pytest.approx(adv + 3 * lam * float(terms["gp"]), rel=1e-5)
    model._generator_steps = 10
    total, terms = model.d_loss(batch)
    assert "gp" not in terms and float(total.detach()) == float(terms["adv"].detach())
    with pytest.raises(ValueError, match="gp_every must be >= 1, got 0"):
        tiny("wgan-gp", gd.load("mnist-mini"), gp_every=0)


def test_conditional_sampling_shapes_and_labels_reach_both_networks():
    torch.manual_seed(0)
    ds = gd.load("mnist-mini")
    m = tiny("cgan", ds).eval()
    labels = torch.tensor([3, 3, 7, 0, 9])
    seen = {}
    h1 = m.generator[1].register_forward_pre_hook(lambda mod, inp: seen.__setitem__("g", inp[0]))
    h2 = m.discriminator[0].register_forward_pre_hook(lambda mod, inp: seen.__setitem__("d", inp[0]))
    with torch.no_grad():
        x = m.sample(5, labels=labels, generator=torch.Generator().manual_seed(1))
        m.D(x, labels)
    h1.remove(), h2.remove()
    assert x.shape == (5, 1, 28, 28)
    eye = torch.eye(10)
    # G's input: z then the one-hot class; D's input: the image then one constant map per class
    g_in = seen["g"].reshape(5, -1)
    torch.testing.assert_close(g_in[:, -10:], eye[labels])
    torch.testing.assert_close(seen["d"][:, 1:, 5, 7], eye[labels])
    with torch.no_grad():
        same = m.sample(5, labels=labels, generator=torch.Generator().manual_seed(1))
        other = m.sample(5, labels=(labels + 1) % 10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(same, x)
    assert not torch.allclose(other, x)
    with pytest.raises(ValueError, match="0..9"):
        m.sample(2, labels=torch.tensor([1, 10]))
    with pytest.raises(ValueError, match="labels for n=3"):
        m.sample(3, labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="unconditional"):
        tiny("gan", ds).sample(2, labels=torch.tensor([1, 2]))


def test_cli_sample_with_labels(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli._app import app
    from genzoo.cli import commands  # noqa: F401

    _, run = tiny_run("cgan")
    out = tmp_path / "s.npy"
    r = CliRunner().invoke(app, ["sample", str(run), "-n", "3", "--labels", "3,3,7", "--out", str(out)])
    assert r.exit_code == 0, r.output
    a = np.load(out)
    assert a.shape == (3, 28, 28) and a.dtype == np.uint8


def generator_weights_per_step(model, ds, steps: int = 4) -> list[list[torch.Tensor]]:
    """Train `model` for `steps` generator steps and return G's weights before each step and after the last."""
    snaps: list[list[torch.Tensor]] = []
    orig = model.g_loss

    def record(batch):
        snaps.append([p.detach().clone() for p in model.generator.parameters()])
        return orig(batch)

    model.g_loss = record
    train(model, ds, out=None, settings=QUIET, steps=steps, batch_size=32)
    return snaps + [[p.detach().clone() for p in model.generator.parameters()]]


def test_ema_weights_follow_the_recursion():
    ds = gd.load("mnist-mini")
    model = tiny("gan", ds, ema=0.8)
    snaps = generator_weights_per_step(model, ds)
    # w_avg_0 = w_0;  w_avg_t = d w_avg_{t-1} + (1 - d) w_t after each generator step t, d = min(0.8, t / (9 + t))
    avg = snaps[0]
    for t, w in enumerate(snaps[1:], start=1):
        d = min(0.8, t / (9 + t))
        avg = [d * a + (1 - d) * b for a, b in zip(avg, w)]
    ema = list(model.ema.module.parameters())  # the engine-level EMA copy of G
    for a, b in zip(ema, avg):
        torch.testing.assert_close(a, b)
    # sampling uses the averaged weights: equal to running the generator with them loaded
    z_gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        x = model.sample(4, generator=z_gen)
        for p, a in zip(model.generator.parameters(), avg):
            p.copy_(a)
        ref = model.generator(torch.randn(4, model.config.latent_dim, generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(x, ref)


def test_ema_without_warmup_is_the_plain_recursion(tiny_run):
    """`--set ema_warmup=false`: the papers' w_avg_t = d w_avg_{t-1} + (1 - d) w_t with d = ema from the first
    update, trained through `train` as the CLI does."""
    ds = gd.load("mnist-mini")
    model = tiny("gan", ds, ema=0.8, ema_warmup=False)
    snaps = generator_weights_per_step(model, ds)
    avg = snaps[0]
    for w in snaps[1:]:
        avg = [0.8 * a + 0.2 * b for a, b in zip(avg, w)]
    for a, b in zip(model.ema.module.parameters(), avg):
        torch.testing.assert_close(a, b)
    _, out = tiny_run("gan", steps=1, ema=0.8, ema_warmup=False)
    assert genzoo.load(out).ema.warmup is False  # recorded in the run's config and restored


def test_spectral_norm_keeps_d_layers_near_unit_spectral_norm():
    ds = gd.load("mnist-mini")
    model = tiny("gan", ds, spectral_norm=True, lr_d=1e-2)
    train(model, ds, out=None, settings=QUIET, steps=30, batch_size=32)
    model.train()
    with torch.no_grad():
        model.D(model.prepare(ds.x[:8]))  # one more power iteration with the final weights
    lin = [m for m in model.discriminator.modules() if isinstance(m, torch.nn.Linear)]
    for m in lin:
        s = torch.linalg.svdvals(m.weight.detach())[0]  # the effective weight W / sigma_hat(W)
        assert float(s) == pytest.approx(1.0, abs=0.05)


def test_truncation_bounds_the_noise():
    m = tiny("gan", gd.load("ring8"))
    z = m.noise(2000, torch.Generator().manual_seed(0), truncation=0.5)
    assert float(z.abs().max()) <= 0.5 and float(z.std()) > 0.2
    with pytest.raises(ValueError, match="truncation"):
        m.noise(2, truncation=0.0)


def test_save_load_round_trip_gives_the_same_samples(tiny_run):
    for name, extra in (("gan", {"ema": 0.9}), ("wgan-gp", {}), ("dcgan", {"spectral_norm": True})):
        model, run = tiny_run(name, **extra)
        loaded = genzoo.load(run)
        g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
        with torch.no_grad():
            torch.testing.assert_close(loaded.sample(6, generator=g()), model.eval().sample(6, generator=g()))


# ---- toy data, the mode monitor ---------------------------------------------------------------------------
def test_mode_quality_hand_example():
    modes = ring8_modes()
    std = 0.02
    pts = torch.cat([modes[0] + torch.tensor([[0.05, 0.0]]).repeat(6, 1),  # within 3 std of mode 0
                     modes[1] + torch.tensor([[0.0, 0.07]]).repeat(3, 1),  # 3.5 std off mode 1: low quality
                     modes[2].repeat(1, 1)])
    q = mode_quality(pts, modes, std, min_share=0.5)
    assert q["hq_share"] == pytest.approx(7 / 10)
    assert q["counts"] == [6, 0, 1, 0, 0, 0, 0, 0]
    # fair share 10/8 = 1.25 samples; half of it: 0.625 -> modes 0 and 2
    assert q["modes_covered"] == 2


class FakeTrainer:
    def __init__(self, model, data, step=100, total=1000):
        self.model, self.train_data, self.step, self.total_steps = model, data, step, total
        self.warnings: list[str] = []
        self.run_info: dict = {}

    def warn(self, msg):
        self.warnings.append(msg)


class FixedSampler(torch.nn.Module):
    """A 'model' whose samples are given points, to check the monitor's numbers."""

    def __init__(self, pts):
        super().__init__()
        self.pts = pts
        self.config = type("C", (), {"conditional": False, "loss": "bce"})()

    def sample(self, n, labels=None, generator=None):
        return self.pts[:n]


def test_mode_monitor_on_toy_data_warns_on_collapse_and_when_d_wins():
    ds = gd.load("ring8", "test")
    modes = torch.tensor(ds.meta["modes"])
    spread = modes[torch.arange(800) % 8][:, :, None, None]
    mon = ModeMonitor(every=100, n=800)
    model = FixedSampler(spread)
    tr = FakeTrainer(model, ds, step=100)
    row = {"discriminator/d_real": 0.6, "generator/d_fake": 0.4}
    mon.on_log(tr, row)
    assert (row["modes_covered"], row["hq_share"], row["modes_kl"]) == (8, 1.0, 0.0)
    assert tr.warnings == []
    model.pts = modes[torch.zeros(800, dtype=torch.long)][:, :, None, None]  # total collapse on mode 0
    tr.step = 200
    row = {"discriminator/d_real": 0.99, "generator/d_fake": 0.01, "generator/grad_minimax": 0.01}
    mon.on_log(tr, row)
    assert row["modes_covered"] == 1 and row["modes_kl"] == pytest.approx(math.log(8), abs=1e-4)
    assert any("mode collapse" in w and "from 8 to 1" in w for w in tr.warnings)
    assert any("wins outright" in w for w in tr.warnings)
    n = len(tr.warnings)
    tr.step = 250  # between monitor runs: no new measurement, and no repeated warning
    row = {"discriminator/d_real": 0.99, "generator/d_fake": 0.01}
    mon.on_log(tr, row)
    assert "modes_covered" not in row and len(tr.warnings) == n


def test_mode_monitor_with_the_mnist_classifier_on_real_digits():
    try:
        from genzoo.evaluate.classifier import get_classifier
        get_classifier("mnist")
    except (ImportError, FileNotFoundError) as e:
        pytest.skip(f"the MNIST classifier is not available yet ({e})")
    ds = gd.load("mnist-mini", "test")
    x = ds.x[:1000].float() / 127.5 - 1  # real digits in the GAN's [-1, 1] space

    class Real(FixedSampler):
        def to_unit(self, v):
            return (v + 1) / 2

    mon = ModeMonitor(n=1000)
    mon.setup(ds)
    stats = mon.measure(Real(x), histogram=True)
    true = torch.bincount(ds.y[:1000], minlength=10) / 1000
    assert stats["modes_covered"] == 10
    assert np.abs(np.array(stats["class_histogram"]) - true.numpy()).sum() <= 0.04  # a ~99% accurate classifier


def test_short_ring8_run_reaches_more_than_one_mode(tmp_path):
    torch.manual_seed(0)
    # spectral norm: without it a non-saturating GAN this short usually sits on a single mode
    model = train("gan", "ring8", out=tmp_path / "ring", preset="toy", steps=400, batch_size=128,
                  settings={**QUIET, "log_every": 100, "monitor_every": 200, "monitor_samples": 1000,
                            "spectral_norm": True})
    with torch.no_grad():
        x = model.sample(1000, generator=torch.Generator().manual_seed(0)).reshape(1000, 2)
    nearest = torch.cdist(x, ring8_modes()).argmin(1)
    share = torch.bincount(nearest, minlength=8).double() / 1000
    assert int((share >= 0.05).sum()) >= 2, share
    rows = gd_rows(tmp_path / "ring")
    assert "modes_covered" in rows[-1] and "hq_share" in rows[-1]


def test_gans_cli_plot_and_modes(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli._app import app
    from genzoo.cli import commands  # noqa: F401

    train("gan", "ring8", out=tmp_path / "ring", preset="tiny", steps=3, batch_size=64,
          settings={**QUIET, "monitor_every": 0})
    r = CliRunner().invoke(app, ["gans", "plot", str(tmp_path / "ring"), "--out", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    assert f"wrote {tmp_path / 'p.png'}" in r.output and (tmp_path / "p.png").stat().st_size > 1000
    r = CliRunner().invoke(app, ["gans", "modes", str(tmp_path / "ring"), "-n", "500",
                                 "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    import json
    stats = json.loads((tmp_path / "m.json").read_text())
    # an independent numpy computation from the same 500 samples (seed 0, as the CLI's default)
    import genzoo
    model = genzoo.load(tmp_path / "ring")
    ds = gd.load("ring8", "test")
    with torch.no_grad():
        pts = model.sample(500, generator=torch.Generator().manual_seed(0)).reshape(500, 2).double().numpy()
    modes, std = np.array(ds.meta["modes"], dtype=np.float64), float(ds.meta["std"])
    d = np.sqrt(((pts[:, None, :] - modes[None]) ** 2).sum(-1))  # (500, 8)
    nearest, hq = d.argmin(1), d.min(1) <= 3 * std
    counts = np.bincount(nearest[hq], minlength=8)
    assert stats["hq_counts"] == counts.tolist()
    assert stats["modes_covered"] == int((counts >= 0.5 * 500 / 8).sum())
    assert stats["hq_share"] == pytest.approx(hq.mean(), abs=1e-4)
    np.testing.assert_allclose(stats["class_histogram"], np.bincount(nearest, minlength=8) / 500, atol=1e-6)
    r = CliRunner().invoke(app, ["gans", "plot", str(tmp_path / "ring"), "--out", str(tmp_path / "p.jpg")])
    assert r.exit_code == 2 and ".png" in r.output


def test_instance_noise_anneals_to_zero():
    ds = gd.load("ring8")
    m = tiny("gan", ds, instance_noise=0.5, instance_noise_steps=10).train()
    x = torch.zeros(20000, 2, 1, 1)
    assert float(m._noisy(x).std()) == pytest.approx(0.5, rel=0.03)
    for _ in range(5):  # the counter the training step advances (and its Python-int mirror)
        m._after_generator_step()
    assert int(m.generator_steps) == 5 and float(m._noisy(x).std()) == pytest.approx(0.25, rel=0.03)
    # a checkpoint at step 10 (what --resume loads) sets the mirror: the noise is gone
    m.load_state_dict({**m.state_dict(), "generator_steps": torch.tensor(10)})
    assert float(m._noisy(x).abs().max()) == 0.0
    m.load_state_dict({**m.state_dict(), "generator_steps": torch.tensor(0)})
    m.eval()
    assert float(m._noisy(x).abs().max()) == 0.0  # never at evaluation


def test_point_models_have_no_image_form():
    m = tiny("gan", gd.load("ring8"))
    with pytest.raises(ValueError, match="gans plot"):
        m.to_unit(torch.zeros(2, 2, 1, 1))
    with pytest.raises(ValueError, match="arch=mlp"):
        build_model("dcgan", gd.load("ring8"))
