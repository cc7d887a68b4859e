"""ELBO and IWAE against closed forms: a linear-Gaussian VAE has log p(x) = log N(x; b, W W^T + sigma^2 I)."""
from __future__ import annotations

import math

import pytest
import torch

from genzoo.data import Dataset
from genzoo.evaluate.likelihood import elbo, elbo_terms, iwae_log_px, iwae_nll, likelihood_settings
from genzoo.train import build_model

D, L, SIGMA = 4, 2, 0.5


def linear_gaussian_vae(exact_posterior: bool):
    """A `vae` with no hidden layers and a Gaussian decoder: x = W z + b + sigma eps. W has orthogonal columns,
    so the true posterior N(S W^T (x - b) / sigma^2, S), S = (I + W^T W / sigma^2)^-1, is diagonal and the
    encoder (a linear layer) can represent it exactly."""
    torch.manual_seed(1)
    m = build_model("vae", image_shape=(1, 2, 2), num_classes=0, hidden=(), latent_dim=L, decoder="gaussian",
                    sigma=SIGMA)
    q, _ = torch.linalg.qr(torch.randn(D, L))
    W = q * torch.tensor([1.5, 0.8])  # (D, L), W^T W = diag(2.25, 0.64)
    b = torch.tensor([0.3, -0.2, 0.1, 0.5])
    dec = m.decoder[0][0]
    with torch.no_grad():
        dec.weight.copy_(W)
        dec.bias.copy_(b)
        S = torch.diag(1 / (1 + (W ** 2).sum(0) / SIGMA ** 2))  # (L, L)
        A = S @ W.T / SIGMA ** 2  # (L, D)
        head = m.encoder_head
        if exact_posterior:
            head.weight.copy_(torch.cat([A, torch.zeros(L, D)]))
            head.bias.copy_(torch.cat([-A @ b, torch.log(torch.diag(S))]))
        else:  # a deliberately imperfect q(z|x): wider, shifted
            head.weight.copy_(torch.cat([0.7 * A, torch.zeros(L, D)]))
            head.bias.copy_(torch.cat([-A @ b + 0.2, torch.log(torch.diag(S)) + 0.6]))
    true = torch.distributions.MultivariateNormal(b.double(), (W @ W.T + SIGMA ** 2 * torch.eye(D)).double())
    x = true.sample((300,)).float()
    return m.eval(), Dataset("linear", "test", x.reshape(-1, 1, 2, 2)), true.log_prob(x.double())


def test_exact_posterior_makes_elbo_and_iwae_equal_log_px():
    m, ds, log_px = linear_gaussian_vae(exact_posterior=True)
    true = float(log_px.mean())
    assert elbo(m, ds, samples=200) == pytest.approx(true, abs=0.01)  # Monte Carlo E_q[log p(x|z)]: std ~0.002
    assert -iwae_nll(m, ds, k=1) == pytest.approx(true, abs=1e-3)  # constant importance weights: exact
    per_image = iwae_log_px(m, ds.x, k=5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(per_image, log_px, atol=1e-3)


def test_iwae_matches_closed_form_and_rises_with_k():
    m, ds, log_px = linear_gaussian_vae(exact_posterior=False)
    true = float(log_px.mean())
    bounds = [-iwae_nll(m, ds, k=k) for k in (1, 10, 100, 2000)]
    assert bounds == sorted(bounds), bounds  # L_1 <= L_10 <= L_100 <= L_2000
    assert bounds[0] < true - 0.2  # the imperfect q leaves a real gap at k = 1 ...
    assert bounds[-1] == pytest.approx(true, abs=0.02)  # ... which the importance weights close
    assert bounds[-1] <= true + 0.005  # a lower bound (up to Monte Carlo error)
    assert elbo(m, ds, samples=50) == pytest.approx(bounds[0], abs=0.1)  # L_1 is the ELBO


def test_trained_vae_iwae_above_elbo(tiny_train):
    m, run = tiny_train("vae", steps=60, binarize="dynamic")
    from genzoo import data as gd
    test = gd.load("mnist-mini", "test")
    settings = likelihood_settings(run)
    assert settings == {"binarize": "dynamic", "seed": 0}
    terms = elbo_terms(m, test, n=200, samples=5, **settings)
    assert terms["elbo"] == pytest.approx(-(terms["recon"] + terms["kl"]))
    assert terms["kl"] > 0 and terms["n"] == 200
    nll = [iwae_nll(m, test, k=k, n=200, **settings) for k in (1, 50)]
    assert nll[1] < nll[0] and nll[1] < -terms["elbo"]
    assert 0 < nll[1] < 784 * math.log(2)  # better than a coin per pixel


def test_binarised_evaluation_is_binary_and_reproducible(tiny_train):
    m, _ = tiny_train("vae", steps=5)
    from genzoo import data as gd
    test = gd.load("mnist-mini", "test")
    a = iwae_nll(m, test, k=3, n=50, binarize="dynamic", seed=4)
    assert a == iwae_nll(m, test, k=3, n=50, binarize="dynamic", seed=4)
    assert a != iwae_nll(m, test, k=3, n=50, binarize="none", seed=4)


def test_models_without_likelihood_are_refused(tiny_train):
    ae, _ = tiny_train("ae", steps=2)
    from genzoo import data as gd
    with pytest.raises(ValueError, match="no likelihood"):
        elbo(ae, gd.load("mnist-mini", "test"), n=10)
    m, _ = tiny_train("vae", steps=2)
    with pytest.raises(ValueError, match="k must be"):
        iwae_nll(m, gd.load("mnist-mini", "test"), k=0)
    with pytest.raises(ValueError, match="binarize"):
        elbo(m, gd.load("mnist-mini", "test"), binarize="yes")
