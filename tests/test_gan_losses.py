"""GAN losses against hand-computed values, closed-form gradients and autograd references."""
from __future__ import annotations

import math

import pytest
import torch

from genzoo import losses as L


def sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


R = [2.0, -1.0, 0.5]
Fk = [0.5, -3.0, 1.5]


def t(v):
    return torch.tensor(v, dtype=torch.float64)


def test_bce_discriminator_matches_hand_computation():
    # -E[log D(x)] - E[log(1 - D(G(z)))], written out with math.log on probabilities
    want = -sum(math.log(sig(r)) for r in R) / 3 - sum(math.log(1 - sig(f)) for f in Fk) / 3
    assert float(L.gan_d_bce(t(R), t(Fk))) == pytest.approx(want, rel=1e-12)
    assert float(L.gan_d_loss("bce", t(R), t(Fk))) == pytest.approx(want, rel=1e-12)


def test_one_sided_label_smoothing():
    a = 0.1  # real target 0.9, fake target stays 0
    want = (-sum(0.9 * math.log(sig(r)) + 0.1 * math.log(1 - sig(r)) for r in R) / 3
            - sum(math.log(1 - sig(f)) for f in Fk) / 3)
    assert float(L.gan_d_loss("bce", t(R), t(Fk), 1 - a)) == pytest.approx(want, rel=1e-12)
    want_ls = 0.5 * sum((r - 0.9) ** 2 for r in R) / 3 + 0.5 * sum(f ** 2 for f in Fk) / 3
    assert float(L.gan_d_loss("least-squares", t(R), t(Fk), 0.9)) == pytest.approx(want_ls, rel=1e-12)
    with pytest.raises(ValueError, match="label smoothing"):
        L.gan_d_loss("hinge", t(R), t(Fk), 0.9)


def test_generator_losses_values():
    assert float(L.gan_g_minimax(t(Fk))) == pytest.approx(sum(math.log(1 - sig(f)) for f in Fk) / 3, rel=1e-12)
    assert float(L.gan_g_non_saturating(t(Fk))) == pytest.approx(-sum(math.log(sig(f)) for f in Fk) / 3, rel=1e-12)
    assert float(L.gan_g_loss("bce", t(Fk), "minimax")) == pytest.approx(float(L.gan_g_minimax(t(Fk))))
    with pytest.raises(ValueError, match="generator_loss"):
        L.gan_g_loss("bce", t(Fk), "saturating")


def test_saturating_vs_non_saturating_gradient_when_d_rejects_samples():
    """At D(G(z)) ~ 0 (logit -10): d/df log(1 - s(f)) = -s(f) ~ -4.5e-5 (vanishes), while
    d/df -log s(f) = -(1 - s(f)) ~ -1 (the generator still learns) — why the non-saturating loss exists."""
    f0 = -10.0
    for fn, want in ((L.gan_g_minimax, -sig(f0)), (L.gan_g_non_saturating, -(1 - sig(f0)))):
        f = torch.tensor([f0], dtype=torch.float64, requires_grad=True)
        fn(f).backward()
        assert float(f.grad) == pytest.approx(want, rel=1e-9)
    assert sig(f0) < 1e-4 and 1 - sig(f0) > 0.9999


def test_bce_forms_stay_finite_at_extreme_logits():
    big = torch.tensor([1e4, -1e4])
    for v in (L.gan_d_bce(big, big), L.gan_g_minimax(big), L.gan_g_non_saturating(big)):
        assert torch.isfinite(v)
    f = torch.tensor([-1e4], requires_grad=True)
    L.gan_g_non_saturating(f).backward()
    assert float(f.grad) == pytest.approx(-1.0)


def test_hinge_wasserstein_least_squares_values():
    # hinge: E[max(0, 1 - r)] + E[max(0, 1 + f)]
    want_h = sum(max(0, 1 - r) for r in R) / 3 + sum(max(0, 1 + f) for f in Fk) / 3
    assert float(L.gan_d_loss("hinge", t(R), t(Fk))) == pytest.approx(want_h, rel=1e-12)
    assert float(L.gan_d_loss("wasserstein", t(R), t(Fk))) == pytest.approx(sum(Fk) / 3 - sum(R) / 3)
    for kind in ("hinge", "wasserstein"):
        assert float(L.gan_g_loss(kind, t(Fk))) == pytest.approx(-sum(Fk) / 3)
    want_ls = 0.5 * sum((r - 1) ** 2 for r in R) / 3 + 0.5 * sum(f ** 2 for f in Fk) / 3
    assert float(L.gan_d_loss("least-squares", t(R), t(Fk))) == pytest.approx(want_ls, rel=1e-12)
    assert float(L.gan_g_loss("least-squares", t(Fk))) == pytest.approx(0.5 * sum((f - 1) ** 2 for f in Fk) / 3)
    with pytest.raises(ValueError, match="loss='wgan'"):
        L.gan_d_loss("wgan", t(R), t(Fk))


def test_gradient_penalty_on_a_linear_critic_is_closed_form():
    """D(x) = w . x: grad_x D = w for every x, so the penalty is (||w|| - 1)^2 whatever eps, and its gradient
    with respect to w is 2 (||w|| - 1) w / ||w|| (reaches the weights through create_graph)."""
    torch.manual_seed(0)
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    real, fake = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    gp = L.gradient_penalty(lambda x: x @ w, real, fake, torch.rand(5, 1, dtype=torch.float64))
    n = float(w.detach().norm())
    assert float(gp.detach()) == pytest.approx((n - 1) ** 2, rel=1e-10)
    gp.backward()
    torch.testing.assert_close(w.grad, 2 * (n - 1) * w.detach() / n)


def test_gradient_penalty_matches_per_example_autograd_on_a_tiny_mlp_critic():
    torch.manual_seed(1)
    critic = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    real, fake = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    eps = torch.rand(7, 1, dtype=torch.float64)
    gp = L.gradient_penalty(lambda x: critic(x).squeeze(1), real, fake, eps)
    ref = []
    for i in range(7):  # one example at a time: the full Jacobian of a scalar function of R^3
        x_hat = eps[i] * real[i] + (1 - eps[i]) * fake[i]
        g = torch.autograd.functional.jacobian(lambda v: critic(v[None])[0, 0], x_hat)
        ref.append((g.norm() - 1) ** 2)
    assert float(gp.detach()) == pytest.approx(float(torch.stack(ref).mean()), rel=1e-10)
    # the penalty's gradient w.r.t. the critic's weights matches central finite differences
    gp.backward()
    p = critic[2].weight
    h, i = 1e-6, (0, 2)

    def penalty_at(delta: float) -> float:
        with torch.no_grad():
            p[i] += delta
        try:
            return float(L.gradient_penalty(lambda x: critic(x).squeeze(1), real, fake, eps).detach())
        finally:
            with torch.no_grad():
                p[i] -= delta

    assert float(p.grad[i]) == pytest.approx((penalty_at(h) - penalty_at(-h)) / (2 * h), rel=1e-5)
