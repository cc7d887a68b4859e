"""Sample metrics against closed forms, scipy/scikit-learn and brute-force loops (features only, no images)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genzoo.evaluate import metrics as M


def _random_cov(d: int, rng: np.random.Generator, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    # Commuting (diagonal) covariances: Tr((S1 S2)^1/2) = sum sqrt(a_i b_i), so
    # d^2 = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    want = 1 + 0 + 9 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0
    assert M.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)
    assert M.frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-12)


def test_trace_term_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    for d, rank in ((5, None), (20, None), (20, 8)):  # full rank and singular covariances
        s1, s2 = _random_cov(d, rng), _random_cov(d, rng, rank)
        want = np.trace(linalg.sqrtm(s1 @ s2)).real
        assert M.trace_sqrt_product(s1, s2) == pytest.approx(want, rel=1e-6, abs=1e-8)


def test_fid_of_sampled_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(1)
    d, n = 4, 200_000
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_cov(d, rng), _random_cov(d, rng)
    x = torch.tensor(rng.multivariate_normal(mu1, s1, n))
    y = torch.tensor(rng.multivariate_normal(mu2, s2, n))
    # Closed form for these Gaussians, trace term from scipy (independent of our eigen route).
    linalg = pytest.importorskip("scipy.linalg")
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert M.fid(x, y) == pytest.approx(want, rel=0.02)


def test_mmd_matches_sklearn_kernel_and_kid_is_unbiased():
    pairwise = pytest.importorskip("sklearn.metrics.pairwise")
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((30, 6)), rng.standard_normal((40, 6)) + 0.3
    k = lambda a, b: pairwise.polynomial_kernel(a, b, degree=3, gamma=1 / 6, coef0=1)  # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    want = ((kxx.sum() - np.trace(kxx)) / (30 * 29) + (kyy.sum() - np.trace(kyy)) / (40 * 39)
            - 2 * k(x, y).mean())
    assert M.mmd2_unbiased(torch.tensor(x), torch.tensor(y)) == pytest.approx(want, rel=1e-10)

    # Unbiased: over independent pairs of samples of ONE distribution the mean is ~0 (within 3 standard
    # errors), while the biased V-statistic (diagonal kept) is clearly positive on the same draws.
    g = torch.Generator().manual_seed(0)
    u, v = [], []
    for _ in range(200):
        a, b = torch.randn(50, 8, generator=g, dtype=torch.float64), torch.randn(50, 8, generator=g, dtype=torch.float64)
        u.append(M.mmd2_unbiased(a, b))
        kaa, kbb, kab = M.polynomial_kernel(a, a), M.polynomial_kernel(b, b), M.polynomial_kernel(a, b)
        v.append((kaa.mean() + kbb.mean() - 2 * kab.mean()).item())
    sem = np.std(u) / math.sqrt(len(u))
    assert abs(np.mean(u)) < 3 * sem
    assert np.mean(v) > 10 * sem
    # kid() itself: identical distributions ~0, shifted clearly > 0
    real, same = torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g)
    m0, s0 = M.kid(real, same, subsets=50, subset_size=500)
    m1, _ = M.kid(real, same + 0.5, subsets=50, subset_size=500)
    assert abs(m0) < s0 and m1 > 20 * s0  # the pooled estimate errs far less than one subset's spread


def _brute_pr_dc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int):
    def radii(a, k):
        d = np.linalg.norm(a[:, None] - a[None], axis=2)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def inside(centres, r, q):  # (Q, C)
        return np.linalg.norm(q[:, None] - centres[None], axis=2) <= r[None]

    precision = inside(real, radii(real, k_pr), fake).any(1).mean()
    recall = inside(fake, radii(fake, k_pr), real).any(1).mean()
    hits = inside(real, radii(real, k_dc), fake)
    return precision, recall, hits.sum() / (k_dc * len(fake)), hits.any(0).mean()


def test_precision_recall_density_coverage_match_brute_force():
    rng = np.random.default_rng(3)
    real = rng.standard_normal((120, 5))
    fake = rng.standard_normal((90, 5)) * 0.7 + 0.4
    p, r, d, c = _brute_pr_dc(real, fake, 3, 5)
    rt, ft = torch.tensor(real), torch.tensor(fake)
    assert M.precision_recall(rt, ft, k=3) == pytest.approx((p, r), abs=1e-12)
    assert M.density_coverage(rt, ft, k=5) == pytest.approx((d, c), abs=1e-12)
    # chunking does not change anything
    assert M.in_any_ball(rt, M.knn_radii(rt, 3, chunk=7), ft, chunk=11).double().mean().item() == pytest.approx(p)


def test_precision_recall_calibration_real_vs_real_and_collapse():
    g = torch.Generator().manual_seed(4)
    real, other = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    p, r = M.precision_recall(real, other)
    assert p > 0.6 and r > 0.6
    d, c = M.density_coverage(real, other)
    assert 0.8 < d < 1.2 and c > 0.9
    collapse = other[:1].repeat(2000, 1)  # one repeated sample: total mode collapse
    p_c, r_c = M.precision_recall(real, collapse)
    assert r_c < 0.01
    assert M.density_coverage(real, collapse)[1] < 0.01


def test_classifier_score_and_mode_coverage_by_hand():
    k = 10
    onehot = torch.eye(k).repeat(50, 1)  # confident and balanced: CS = K
    assert M.classifier_score(onehot, splits=5)[0] == pytest.approx(k, rel=1e-6)
    uniform = torch.full((500, k), 1 / k)  # no confidence: CS = 1
    assert M.classifier_score(uniform)[0] == pytest.approx(1.0, rel=1e-9)
    # Two confident classes, 3:1 -> p(y) = (3/4, 1/4), KL(p(y|x) || p(y)) = -log p(y); CS = exp(H(p(y))).
    p = torch.zeros(400, k)
    p[:300, 0], p[300:, 1] = 1, 1
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert M.classifier_score(p, splits=1)[0] == pytest.approx(math.exp(h), rel=1e-6)

    mc = M.mode_coverage(p)
    assert mc["classes_covered"] == 2
    assert mc["kl_to_uniform"] == pytest.approx(0.75 * math.log(7.5) + 0.25 * math.log(2.5), rel=1e-9)
    assert mc["class_histogram"][:3] == [0.75, 0.25, 0.0]
    full = M.mode_coverage(onehot)
    assert full["classes_covered"] == 10 and full["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    # exactly half a fair share counts, just below does not: 5% of samples with K=10
    q = torch.zeros(100, k)
    q[:5, 9], q[5:9, 8], q[9:, 0] = 1, 1, 1
    assert M.mode_coverage(q)["classes_covered"] == 2
