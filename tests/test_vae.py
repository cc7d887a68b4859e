"""VAE losses against torch.distributions and autograd; the vae/cvae models' options and behaviour."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

import genzoo
from genzoo import data as gd
from genzoo import losses
from genzoo.models.base import Batch
from genzoo.train import build_model, train


def _fit(name: str, steps: int, preset: str = "tiny", **settings):
    """Train without writing a run directory."""
    s = {"log_every": 10, "sample_every": 0, "progress": False, "validate": False, **settings}
    return train(name, "mnist-mini", preset=preset, settings=s, steps=steps)


# ---- losses ---------------------------------------------------------------------------------------------
def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(7, 5, generator=g) * 2, torch.randn(7, 5, generator=g)
    ref = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0))  # (7, 5)
    assert torch.allclose(losses.kl_normal_std_dims(mean, logvar), ref, atol=1e-5)
    assert torch.allclose(losses.kl_normal_std(mean, logvar), ref.sum(-1), atol=1e-5)


def test_free_bits_is_max_lambda_per_dimension():
    g = torch.Generator().manual_seed(1)
    mean, logvar = torch.randn(16, 6, generator=g) * 0.3, torch.randn(16, 6, generator=g) * 0.1
    per_dim = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).mean(0)
    lam = float(per_dim.median())
    expected = torch.maximum(per_dim, torch.tensor(lam)).sum()
    assert torch.allclose(losses.kl_free_bits(mean, logvar, lam), expected, atol=1e-6)
    assert torch.allclose(losses.kl_free_bits(mean, logvar, 0.0), per_dim.sum(), atol=1e-6)


def test_reparametrised_sample_moments_and_gradients():
    mean = torch.tensor([1.5, -2.0, 0.0], requires_grad=True)
    logvar = torch.tensor([0.0, math.log(4.0), math.log(0.25)], requires_grad=True)
    n = 200_000
    z = losses.reparametrize(mean.expand(n, 3), logvar.expand(n, 3), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), mean.detach(), atol=0.02)
    assert torch.allclose(z.var(0), logvar.detach().exp(), rtol=0.02)
    # gradients: dz/dmean = 1, dz/dlogvar = eps * sigma / 2, with the same eps
    z1 = losses.reparametrize(mean[None], logvar[None], generator=torch.Generator().manual_seed(5))[0]
    eps = torch.randn((1, 3), generator=torch.Generator().manual_seed(5))[0]
    z1.sum().backward()
    assert torch.allclose(mean.grad, torch.ones(3))
    assert torch.allclose(logvar.grad, eps * (0.5 * logvar.detach()).exp() / 2, atol=1e-6)


def test_log_densities_match_torch_distributions():
    g = torch.Generator().manual_seed(2)
    z, mean, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    assert torch.allclose(losses.log_normal(z, mean, logvar),
                          Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(-1), atol=1e-5)
    assert torch.allclose(losses.log_normal_std(z), Normal(0.0, 1.0).log_prob(z).sum(-1), atol=1e-5)
    logits, x = torch.randn(4, 1, 3, 3, generator=g), (torch.rand(4, 1, 3, 3, generator=g) > 0.5).float()
    assert torch.allclose(-losses.bernoulli_nll(logits, x), Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)),
                          atol=1e-5)
    mu, log_sigma = torch.randn(4, 1, 3, 3, generator=g), torch.tensor(-0.7)
    assert torch.allclose(-losses.gaussian_nll(mu, x, log_sigma),
                          Normal(mu, log_sigma.exp()).log_prob(x).sum((1, 2, 3)), atol=1e-4)


# ---- the model ------------------------------------------------------------------------------------------
def _batch(n=8, labels=True):
    ds = gd.load("mnist-mini", "test")
    return Batch(ds.x[:n].float() / 255, ds.y[:n] if labels else None)


def test_loss_is_per_example_sum_over_pixels():
    """recon = 1/B sum_b -log Bernoulli(x_b | decoder(z_b)) with z_b = mean + sigma * eps (same eps)."""
    m = build_model("vae", gd.load("mnist-mini", "test"), preset="tiny")
    b = _batch()
    torch.manual_seed(3)
    total, terms = m.loss(b)
    mean, logvar = m.encode(b.x)
    torch.manual_seed(3)
    z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape)
    rec = -Bernoulli(logits=m.decode_logits(z), validate_args=False).log_prob(b.x).sum((1, 2, 3)).mean()
    kl = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1).mean()
    assert torch.allclose(terms["recon"], rec, rtol=1e-5)
    assert torch.allclose(terms["kl"], kl, rtol=1e-5)
    assert torch.allclose(total, rec + kl, rtol=1e-5)


@pytest.mark.parametrize("loss_terms", ["recon", "kl", "both"])
def test_loss_terms_and_beta(loss_terms):
    m = build_model("vae", gd.load("mnist-mini", "test"), preset="tiny", beta=4.0, loss_terms=loss_terms)
    torch.manual_seed(0)
    total, t = m.loss(_batch())
    expected = {"recon": t["recon"], "kl": 4.0 * t["kl"], "both": t["recon"] + 4.0 * t["kl"]}[loss_terms]
    assert torch.allclose(total, expected)
    assert float(t["beta"]) == 4.0


def test_kl_warmup_ramps_beta_and_survives_resume(tiny_train):
    m, run = tiny_train("vae", steps=10, kl_warmup_steps=40, beta=2.0)
    assert int(m.steps_done) == 10 and m.current_beta() == pytest.approx(0.5)
    assert genzoo.load(run).current_beta() == pytest.approx(0.5)  # the step count is saved with the weights
    from genzoo.train import rundir as R
    betas = [float(r["beta"]) for r in R.read_metrics(run) if r.get("beta")]
    assert betas == sorted(betas) and betas[0] < betas[-1] <= 0.5


def test_ablation_kl_only_collapses_and_recon_only_spreads(tiny_train):
    kl_only = _fit("vae", 150, loss_terms="kl", lr=3e-3)
    recon_only = _fit("vae", 150, loss_terms="recon", lr=3e-3)
    b = _batch(200)
    with torch.no_grad():
        kl = {name: float(losses.kl_normal_std(*m.encode(b.x)).mean()) for name, m in
              (("kl", kl_only), ("recon", recon_only))}
    assert kl["kl"] < 0.5  # KL only: every posterior becomes the prior
    assert kl["recon"] > 20 * max(kl["kl"], 0.1)  # similarity only: codes spread out, no pull to the prior


def test_training_improves_the_elbo(tiny_train):
    m, run = tiny_train("vae", steps=100, validate=False)
    from genzoo.train import rundir as R
    rows = [r for r in R.read_metrics(run) if r.get("neg_elbo")]
    assert float(rows[-1]["neg_elbo"]) < float(rows[0]["neg_elbo"]) - 50


def test_sampling_shapes_ranges_and_temperature(tiny_train):
    m, _ = tiny_train("vae", steps=5)
    with torch.no_grad():
        s = m.sample(6, generator=torch.Generator().manual_seed(0))
    assert s.shape == (6, 1, 28, 28) and float(s.min()) >= 0 and float(s.max()) <= 1
    cold = m.sample(3, temperature=0.0)
    assert torch.allclose(cold, m.decode(torch.zeros(3, m.latent_dim)).expand_as(cold))
    again = m.sample(6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, again)


def test_gaussian_decoder_learns_sigma_and_conv_arch(tiny_train):
    m, run = tiny_train("vae", steps=30, preset="conv", decoder="gaussian", learn_sigma=True, sigma=1.0,
                        batch_size=32)
    assert float(m.log_sigma.detach()) < 0  # sigma shrinks from 1 towards the reconstruction error
    out = m.reconstruct(_batch(4).x)
    assert out.shape == (4, 1, 28, 28)
    loaded = genzoo.load(run)
    assert torch.allclose(loaded.log_sigma, m.log_sigma)


def test_cvae_draws_chosen_classes_and_checks_labels():
    m = _fit("cvae", 200, lr=3e-3)
    assert m.can("sample") and m.can("encode")
    z = torch.randn(1, m.latent_dim).expand(10, -1)
    imgs = m.decode(z, torch.arange(10))
    assert imgs.shape == (10, 1, 28, 28)
    assert (imgs[1:] - imgs[:1]).abs().flatten(1).sum(1).min() > 1  # the class changes the picture
    assert m.sample(3, labels=torch.tensor([3, 3, 7])).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="labels"):
        m.sample(3, labels=torch.tensor([3, 7]))
    with pytest.raises(ValueError, match="0..9"):
        m.sample(2, labels=torch.tensor([3, 12]))
    b = _batch(200)
    acc = float((m.infer_labels(b.x) == b.y).float().mean())  # the CVAE as a classifier: argmax_y ELBO(x, y)
    assert acc > 0.5


def test_cvae_cli_sample_labels(tiny_train, tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401
    from genzoo.cli._app import app
    _, run = tiny_train("cvae", steps=3)
    out = tmp_path / "s.npy"
    r = CliRunner().invoke(app, ["sample", str(run), "-n", "3", "--labels", "3,3,7", "--out", str(out)])
    assert r.exit_code == 0, r.output
    import numpy as np
    assert np.load(out).shape == (3, 28, 28)


def test_config_errors():
    ds = gd.load("mnist-mini", "test")
    for bad in ({"decoder": "poisson"}, {"loss_terms": "all"}, {"latent_dim": 0}, {"sigma": 0.0},
                {"free_bits": -1.0}):
        with pytest.raises(ValueError):
            build_model("vae", ds, preset="tiny", **bad)
    with pytest.raises(ValueError, match="labelled"):
        build_model("cvae", ds, preset="tiny", num_classes=0)
