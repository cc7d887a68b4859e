"""DDPM/DDIM against closed forms and hand computations (the shared per-model test covers training, save/load)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import genzoo
from genzoo.models.base import Batch
from genzoo.models.diffusion import (ddim_timesteps, discretized_gaussian_log_likelihood, make_betas,
                                     simple_loss)
from genzoo.train import build_model


def ddpm(**settings):
    return build_model("ddpm", genzoo.data.load("mnist-mini", "train"), preset="tiny", **settings).eval()


# ---- schedules ----------------------------------------------------------------------------------------
def test_linear_schedule_alpha_bar_matches_the_product_formula():
    betas = make_betas("linear", 1000)
    ref_betas = np.linspace(1e-4, 0.02, 1000)  # Ho et al.: 1e-4 .. 0.02 at T = 1000
    np.testing.assert_allclose(betas.numpy(), ref_betas, rtol=1e-12)
    np.testing.assert_allclose(torch.cumprod(1 - betas, 0).numpy(), np.cumprod(1 - ref_betas), rtol=1e-10)
    # other T: both ends scaled by 1000 / T
    np.testing.assert_allclose(make_betas("linear", 50).numpy(), np.linspace(2e-3, 0.4, 50), rtol=1e-12)


def test_cosine_schedule_alpha_bar_matches_nichol_dhariwal():
    T, s = 1000, 0.008
    ab = torch.cumprod(1 - make_betas("cosine", T), 0).numpy()
    t = np.arange(1, T + 1)
    f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    ref = f(t) / f(0)
    # equal wherever the 0.999 clip on beta has not acted (it only acts at the very last steps)
    np.testing.assert_allclose(ab[:-2], ref[:-2], rtol=1e-9)
    assert make_betas("cosine", T).max() <= 0.999


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    ts = ddim_timesteps(1000, 10)
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts)) == 10 and ts == sorted(ts, reverse=True)
    with pytest.raises(ValueError, match="steps=0"):
        ddim_timesteps(1000, 0)


# ---- forward process and posterior ------------------------------------------------------------------
def test_q_sample_marginal_mean_and_variance():
    m = ddpm(timesteps=1000, schedule="linear")
    x0 = torch.tensor([-0.8, 0.1, 0.6]).reshape(3, 1, 1, 1)
    betas = np.linspace(1e-4, 0.02, 1000)
    for t in (0, 300, 999):
        ab = np.prod(1 - betas[:t + 1])
        n = 200_000
        x = x0.expand(3, 1, 1, n).contiguous()  # (3, 1, 1, n): n draws per x0
        xt = m.q_sample(x, torch.full((3,), t), torch.randn_like(x))
        mean, var = xt.mean(-1).flatten().double().numpy(), xt.var(-1).flatten().double().numpy()
        se = math.sqrt((1 - ab) / n)
        np.testing.assert_allclose(mean, math.sqrt(ab) * x0.flatten().numpy(), atol=5 * se)
        np.testing.assert_allclose(var, np.full(3, 1 - ab), rtol=0.02, atol=1e-4)


def test_posterior_matches_a_direct_bayes_computation():
    """q(x_{t-1}|x_t, x_0) ∝ N(x_{t-1}; sqrt(abar_{t-1}) x_0, 1 - abar_{t-1}) N(x_t; sqrt(alpha_t) x_{t-1}, beta_t):
    a product of Gaussians in x_{t-1}, precision 1/(1 - abar_{t-1}) + alpha_t/beta_t."""
    for schedule in ("linear", "cosine"):
        m = ddpm(timesteps=200, schedule=schedule)
        betas = make_betas(schedule, 200).numpy()
        for t in (1, 57, 199):
            x0, xt = 0.3, -1.1
            abp = np.prod(1 - betas[:t])
            a, b = 1 - betas[t], betas[t]
            prec = 1 / (1 - abp) + a / b
            var = 1 / prec
            mean = var * (math.sqrt(abp) * x0 / (1 - abp) + math.sqrt(a) * xt / b)
            mu, v = m.posterior(torch.tensor(x0, dtype=torch.float64).reshape(1, 1, 1, 1),
                                torch.tensor(xt, dtype=torch.float64).reshape(1, 1, 1, 1), t)
            assert float(mu) == pytest.approx(mean, rel=1e-9)
            assert float(v) == pytest.approx(var, rel=1e-9)
            # also by brute force on a grid: the normalised product of the two densities
            g = np.linspace(mean - 12 * math.sqrt(var), mean + 12 * math.sqrt(var), 200_001)
            logd = -(g - math.sqrt(abp) * x0) ** 2 / (2 * (1 - abp)) - (xt - math.sqrt(a) * g) ** 2 / (2 * b)
            dens = np.exp(logd - logd.max())
            dens /= dens.sum()
            assert (g * dens).sum() == pytest.approx(float(mu), rel=1e-6, abs=1e-9)
            assert ((g - mean) ** 2 * dens).sum() == pytest.approx(float(v), rel=1e-4)


def test_v_prediction_target_and_inversion():
    m = ddpm(prediction="v")
    x0, eps = torch.rand(4, 1, 28, 28) * 2 - 1, torch.randn(4, 1, 28, 28)
    t = torch.tensor([0, 10, 30, 49])
    ab = torch.cumprod(1 - make_betas("linear", 50), 0)[t].float().reshape(4, 1, 1, 1)
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
    torch.testing.assert_close(m.target(x0, t, eps), v)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    x0_hat, eps_hat = m.split_output(xt, t, v)
    torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eps_hat, eps, atol=1e-5, rtol=1e-5)


# ---- loss ---------------------------------------------------------------------------------------------
def test_one_step_loss_against_hand_computation():
    m = ddpm(timesteps=50, schedule="cosine").train()
    x0 = m.prepare(genzoo.data.load("mnist-mini", "train").x[:3])
    t = torch.tensor([0, 17, 49])
    noise = torch.randn_like(x0)
    T, s = 50, 0.008
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    ab = torch.tensor([f(int(i) + 1) / f(0) for i in t]).reshape(3, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    with torch.no_grad():
        pred = m.net(xt, t)
        hand = sum(float(((pred[b] - noise[b]) ** 2).sum()) for b in range(3)) / x0.numel()
        assert float(m.loss_at(x0, t, noise)) == pytest.approx(hand, rel=1e-5)
    assert float(simple_loss(torch.ones(2, 3), torch.zeros(2, 3))) == 1.0


def test_label_dropout_uses_the_no_label_token():
    m = ddpm(conditional=True, label_dropout=0.5).train()
    seen = []
    orig = m.net.forward
    m.net.forward = lambda x, t, y=None: (seen.append(y.clone()), orig(x, t, y))[1]
    x = torch.zeros(400, 1, 28, 28)
    m.loss(Batch(x, torch.full((400,), 3)))
    y = seen[0]
    assert set(y.tolist()) == {3, 10}
    assert 0.4 < float((y == 10).float().mean()) < 0.6


# ---- samplers -----------------------------------------------------------------------------------------
def test_ddim_eta0_is_deterministic_and_seeded():
    m = ddpm()
    a = m.sample(3, generator=torch.Generator().manual_seed(1), steps=7)
    b = m.sample(3, generator=torch.Generator().manual_seed(1), steps=7)
    c = m.sample(3, generator=torch.Generator().manual_seed(2), steps=7)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # eta = 0 draws no noise after x_T: continuing from the same x_T with another global RNG state is identical
    torch.manual_seed(123)
    d = m.sample(3, generator=torch.Generator().manual_seed(1), steps=7)
    assert torch.equal(a, d)
    e = m.sample(3, generator=torch.Generator().manual_seed(1), sampler="ddpm")
    f = m.sample(3, generator=torch.Generator().manual_seed(1), sampler="ddpm")
    assert torch.equal(e, f)


def test_ddim_eta1_all_steps_is_the_ddpm_posterior():
    """With eta = 1 and t' = t - 1 the DDIM update has the mean and variance of q(x_{t-1}|x_t, x_0=x0_hat)
    (Bayes' rule as in test_posterior), checked over many noise draws."""
    m = ddpm(timesteps=100, schedule="linear")
    betas = make_betas("linear", 100).numpy()
    n = 100_000
    for t in (1, 40, 99):
        abp, ab = np.prod(1 - betas[:t]), np.prod(1 - betas[:t + 1])
        a, b = 1 - betas[t], betas[t]
        x0, xt = 0.4, 0.9
        var = 1 / (1 / (1 - abp) + a / b)
        mean = var * (math.sqrt(abp) * x0 / (1 - abp) + math.sqrt(a) * xt / b)
        x0_t = torch.full((n, 1, 1, 1), x0, dtype=torch.float64)
        xt_t = torch.full((n, 1, 1, 1), xt, dtype=torch.float64)
        eps = (xt_t - math.sqrt(ab) * x0_t) / math.sqrt(1 - ab)  # the eps consistent with x0_hat
        out = m.ddim_step(xt_t, t, t - 1, x0_t, eps, 1.0, torch.randn(n, 1, 1, 1, dtype=torch.float64))
        assert float(out.mean()) == pytest.approx(mean, abs=5 * math.sqrt(var / n))
        assert float(out.var()) == pytest.approx(var, rel=0.02)
        # and the ancestral step draws from the same distribution
        anc = m.ddpm_step(xt_t, t, x0_t, torch.randn(n, 1, 1, 1, dtype=torch.float64))
        assert float(anc.mean()) == pytest.approx(mean, abs=5 * math.sqrt(var / n))
        assert float(anc.var()) == pytest.approx(var, rel=0.02)


def test_guidance_scale_0_is_the_unconditional_prediction():
    m = ddpm(conditional=True)
    for p in m.net.parameters():  # away from the zero initialisation, so that the label matters
        torch.nn.init.normal_(p, std=0.3)
    x, t, y = torch.randn(4, 1, 28, 28), torch.tensor([3, 10, 20, 40]), torch.tensor([0, 1, 2, 3])
    none = torch.full((4,), 10)
    with torch.no_grad():
        unc, cond = m.net(x, t, none), m.net(x, t, y)
        assert not torch.allclose(unc, cond)
        torch.testing.assert_close(m.guided_output(m.net, x, t, y, 0.0), unc)
        torch.testing.assert_close(m.guided_output(m.net, x, t, y, 1.0), cond)
        torch.testing.assert_close(m.guided_output(m.net, x, t, y, 3.0), unc + 3.0 * (cond - unc), atol=1e-5,
                                   rtol=1e-5)


def test_sample_settings_are_checked():
    m = ddpm()
    with pytest.raises(ValueError, match="sampler"):
        m.sample(2, sampler="euler")
    with pytest.raises(ValueError, match="sampler=ddim"):
        m.sample(2, sampler="ddpm", steps=10)
    with pytest.raises(ValueError, match="conditional"):
        m.sample(2, guidance=3.0)
    with pytest.raises(ValueError, match="unconditional"):
        m.sample(2, labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="temperature"):
        m.sample(2, temperature=0.5)


def test_trajectory_runs_from_noise_to_the_sample():
    m = ddpm()
    fr = m.trajectory(2, generator=torch.Generator().manual_seed(0), frames=4, steps=6)
    assert fr.shape == (4, 2, 1, 28, 28) and fr.min() >= 0 and fr.max() <= 1
    x = m.sample(2, generator=torch.Generator().manual_seed(0), steps=6)
    torch.testing.assert_close(fr[-1], m.to_unit(x))
    xT = torch.randn((2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fr[0], m.to_unit(xT))
    with pytest.raises(ValueError, match="at least 9 sampling steps"):
        m.trajectory(2, frames=10, steps=5)


# ---- the bound ----------------------------------------------------------------------------------------
def test_discretized_gaussian_decoder_against_normal_cdf():
    from torch.distributions import Normal
    x = torch.tensor([-1.0, 2 * 100 / 255 - 1, 1.0])
    mean, std = torch.tensor([-0.98, -0.2, 0.97]), 0.05
    N = Normal(mean.double(), std)
    ref = torch.stack([N.cdf(torch.tensor(-1 + 1 / 255, dtype=torch.float64))[0],
                       (N.cdf(x[1].double() + 1 / 255) - N.cdf(x[1].double() - 1 / 255))[1],
                       1 - N.cdf(torch.tensor(1 - 1 / 255, dtype=torch.float64))[2]]).log()
    torch.testing.assert_close(discretized_gaussian_log_likelihood(x, mean, torch.tensor(std)), ref)
    # the 256 bins' probabilities sum to one
    grid = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1
    p = discretized_gaussian_log_likelihood(grid, torch.full((256,), 0.3), torch.tensor(0.2)).exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-9)


def test_bound_estimate_is_unbiased_for_the_full_sum():
    """The stratified estimate of the middle sum averages to the exact sum over every t."""
    m = ddpm(ema=0.0, timesteps=20, schedule="cosine")
    x = m.prepare(genzoo.data.load("mnist-mini", "test").x[:2])
    full = m.bound_terms(x, generator=torch.Generator().manual_seed(0), timesteps=None)
    assert all(torch.isfinite(v).all() for v in full.values())
    torch.testing.assert_close(full["total"], full["prior"] + full["diffusion"] + full["decoder"])
    # with one noise draw per term both are random; averaging many estimates of each gives the same mean
    est = torch.stack([m.bound_terms(x, generator=torch.Generator().manual_seed(s), timesteps=4)["diffusion"]
                       for s in range(30)])
    exact = torch.stack([m.bound_terms(x, generator=torch.Generator().manual_seed(100 + s), timesteps=None)
                         ["diffusion"] for s in range(8)])
    se = (est.var(0) / len(est) + exact.var(0) / len(exact)).sqrt()
    assert ((est.mean(0) - exact.mean(0)).abs() < 4 * se).all(), (est.mean(0), exact.mean(0), se)
    # a wrong weighting of the strata (e.g. forgetting their sizes) would be far outside that band
    assert (est.mean(0) / exact.mean(0) - 1).abs().max() < 0.5


def test_bound_is_finite_and_decreases_over_a_short_run(tmp_path):
    ds = genzoo.data.load("mnist-mini", "test")
    x = ds.x[:8]
    before = ddpm(ema=0.0)
    b0 = float(before.nll_bound(before.prepare(x), generator=torch.Generator().manual_seed(0), timesteps=None).mean())
    torch.manual_seed(0)
    m = genzoo.train("ddpm", "mnist-mini", preset="tiny", steps=40,
                     settings={"ema": 0.0, "lr": 2e-3, "progress": False, "sample_every": 0, "validate": False,
                               "batch_size": 16, "log_every": 20})
    b1 = float(m.nll_bound(m.prepare(x), generator=torch.Generator().manual_seed(0), timesteps=None).mean())
    assert math.isfinite(b0) and math.isfinite(b1)
    assert b1 < 0.7 * b0, (b0, b1)
    bpd = b1 / (784 * math.log(2))
    assert 0 < bpd < 50


def test_evaluate_nll_gives_the_bound(tmp_path):
    from genzoo.evaluate.suite import evaluate
    m = ddpm()
    r = evaluate(m, metrics="nll", data="mnist-mini", n=8)
    assert "nll" in r["metrics"] and math.isfinite(r["metrics"]["nll"])
    assert r["metrics"]["nll_bits_per_dim"] == pytest.approx(r["metrics"]["nll"] / (784 * math.log(2)))


# ---- command line -------------------------------------------------------------------------------------
def test_cli_sample_passes_diffusion_settings_and_rejects_foreign_ones(tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401  (registers the commands)
    from genzoo.cli._app import app
    out = tmp_path / "run"
    genzoo.train("ddpm", "mnist-mini", out=out, preset="tiny", steps=2,
                 settings={"conditional": True, "progress": False, "sample_every": 0, "validate": False})
    runner = CliRunner()
    args = ["sample", str(out), "-n", "3", "--steps", "4", "--labels", "3,3,7", "--guidance", "2", "--seed", "5"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "s.npy")])
    assert r.exit_code == 0, r.output
    got = np.load(tmp_path / "s.npy")
    m = genzoo.load(out)
    ref = m.to_unit(m.sample(3, labels=torch.tensor([3, 3, 7]), generator=torch.Generator().manual_seed(5), steps=4,
                             guidance=2.0))
    assert got.shape[0] == 3
    np.testing.assert_allclose(got.reshape(3, -1) / 255, ref.reshape(3, -1).numpy(), atol=1 / 255 + 1e-6)
    r = runner.invoke(app, ["sample", str(out), "-n", "2", "--temperature", "0.5", "--out", str(tmp_path / "t.png")])
    assert r.exit_code != 0 and "takes no --temperature" in r.output and "--steps" in r.output
    r = runner.invoke(app, ["sample", str(out), "-n", "2", "--sampler", "ddpm", "--eta", "1", "--out",
                            str(tmp_path / "u.png")])
    assert r.exit_code != 0 and "eta" in r.output


# ---- explorer -----------------------------------------------------------------------------------------
def test_explorer_sampling_steps_guidance_and_trajectory(tmp_path):
    import io

    pytest.importorskip("fastapi")
    pytest.importorskip("httpx2")
    from fastapi.testclient import TestClient
    from PIL import Image

    from genzoo.explorer import create_app
    from genzoo.explorer.limits import TOKEN_HEADER
    out = tmp_path / "run"
    genzoo.train("ddpm", "mnist-mini", out=out, preset="tiny", steps=2,
                 settings={"conditional": True, "progress": False, "sample_every": 0, "validate": False})
    app = create_app(out, allowed_hosts=["testserver"])
    c = TestClient(app, headers={TOKEN_HEADER: app.state.token})
    info = c.get("/api/info").json()
    assert {"steps", "guidance"} <= set(info["sample_options"]) and info["trajectory"]
    r = c.get("/api/samples.png?n=1&steps=4&guidance=2&label=3&seed=9")
    assert r.status_code == 200
    m = genzoo.load(out)
    ref = m.to_unit(m.sample(1, labels=torch.tensor([3]), generator=torch.Generator().manual_seed(9), steps=4,
                             guidance=2.0))
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("L"), dtype=np.float64) / 255
    np.testing.assert_allclose(got, ref[0, 0].numpy(), atol=1 / 255 + 1e-6)
    r = c.get("/api/trajectory.png?n=2&steps=5&frames=6&label=1")
    assert r.status_code == 200
    w, h = Image.open(io.BytesIO(r.content)).size
    assert (w, h) == (6 * 28 + 7 * 2, 2 * 28 + 3 * 2)  # one row of 6 frames per sample, 2-pixel padding
    r = c.get("/api/trajectory.png?n=2&steps=3&frames=6")
    assert r.status_code == 400 and "sampling steps" in r.json()["detail"]
