"""Every loss is a small pure function with its equation (and source) in the docstring.

Conventions: `x` and `x_hat` have shape (B, ...); reconstruction losses are summed over the pixels of an
image and averaged over the batch ("per example, summed over pixels"), the normalisation the VAE papers use,
unless the name says `mean`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mse_sum(x_hat: Tensor, x: Tensor) -> Tensor:
    """Squared error per example: 1/B sum_b sum_i (x_hat_bi - x_bi)^2."""
    return F.mse_loss(x_hat, x, reduction="sum") / x.shape[0]


def bce_logits_sum(logits: Tensor, x: Tensor) -> Tensor:
    """Binary cross-entropy per example from logits l, x in [0, 1]:
    1/B sum_b sum_i -[x_bi log s(l_bi) + (1 - x_bi) log(1 - s(l_bi))], s the logistic sigmoid
    (the Bernoulli decoder's -log p(x|z))."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def pixel_mse(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean squared error per pixel: 1/(B D) sum_b sum_i (x_hat_bi - x_bi)^2 (the number papers report as MSE)."""
    return F.mse_loss(x_hat, x)


def reconstruction(kind: str, out: Tensor, x: Tensor) -> Tensor:
    """`mse`: mse_sum on the decoder output; `bce`: bce_logits_sum with the decoder output as logits."""
    if kind == "mse":
        return mse_sum(out, x)
    if kind == "bce":
        return bce_logits_sum(out, x)
    raise ValueError(f"loss={kind!r} is not valid; expected 'mse' or 'bce'")


def dead_units(h: Tensor, threshold: float = 0.0) -> Tensor:
    """Number of code units never active on the batch: #{j : max_b |h_bj| <= threshold}.
    (A ReLU bottleneck unit that outputs 0 for every input passes no gradient and never recovers.)"""
    return (h.detach().abs().amax(0) <= threshold).sum()


# ---- autoencoder regularisers (sparse, contractive) ---------------------------------------------------
def kl_sparsity(rho: float, rho_hat: Tensor, eps: float = 1e-6) -> Tensor:
    """Sparsity penalty of the sparse autoencoder (Ng 2011, CS294A notes "Sparse autoencoder", sec. 2.2):
    sum_j KL(rho || rho_hat_j) = sum_j [rho log(rho / rho_hat_j) + (1 - rho) log((1 - rho) / (1 - rho_hat_j))],
    the KL divergence between Bernoulli(rho) and Bernoulli(rho_hat_j); rho_hat_j in (0, 1) is the mean
    activation of code unit j (clamped to [eps, 1 - eps]). `rho_hat`: (k,). A scalar."""
    r = rho_hat.clamp(eps, 1 - eps)
    return (rho * torch.log(rho / r) + (1 - rho) * torch.log((1 - rho) / (1 - r))).sum()


def l1_activity(h: Tensor) -> Tensor:
    """L1 activity penalty per example: 1/B sum_b sum_j |h_bj| (Goodfellow et al. 2016, "Deep Learning",
    sec. 14.2.1, the Laplace-prior view of sparse codes). A scalar."""
    return h.abs().sum() / h.shape[0]


def contractive_sigmoid(h: Tensor, weight: Tensor) -> Tensor:
    """Closed-form contractive penalty of a one-layer sigmoid encoder h = s(W x + b) (Rifai et al. 2011,
    "Contractive auto-encoders", sec. 4): J_f(x) = diag(h (1 - h)) W, so
    ||J_f(x)||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2, averaged over the batch.
    `h`: (B, k) codes, `weight`: W (k, D). A scalar."""
    return ((h * (1 - h)).pow(2) @ weight.pow(2).sum(1)).mean()


def jacobian_frobenius_sq(h: Tensor, x: Tensor) -> Tensor:
    """Exact ||J_f(x)||_F^2 = sum_j ||d h_j / d x||^2 for any encoder, averaged over the batch, from k
    vector-Jacobian products (one per code unit; differentiable: create_graph=True). `h` (B, k) must have been
    computed from `x` (B, ...) with x.requires_grad, each example independently of the others (no batch norm
    in training mode in the encoder). A scalar."""
    total = h.new_zeros(())
    for j in range(h.shape[1]):
        (g,) = torch.autograd.grad(h[:, j].sum(), x, create_graph=True)  # (B, ...) = d h_bj / d x_b
        total = total + g.pow(2).sum()
    return total / h.shape[0]


def jacobian_frobenius_sq_estimate(h: Tensor, x: Tensor, samples: int = 1,
                                   generator: torch.Generator | None = None) -> Tensor:
    """Unbiased estimate of ||J_f(x)||_F^2 from `samples` random projections (Hutchinson's trace estimator,
    Hutchinson 1990): with v ~ N(0, I_k), E_v ||v^T J||^2 = E_v v^T J J^T v = tr(J J^T) = ||J||_F^2, so
    1/S sum_s ||v_s^T J_f(x)||^2 is unbiased, at the cost of S vector-Jacobian products instead of k.
    Same requirements on `h` and `x` as `jacobian_frobenius_sq`. A scalar (batch mean)."""
    total = h.new_zeros(())
    for _ in range(samples):
        v = torch.randn(h.shape, generator=generator).to(h)
        (g,) = torch.autograd.grad(h, x, grad_outputs=v, create_graph=True)  # (B, ...) = v_b^T J_b
        total = total + g.pow(2).sum()
    return total / (samples * h.shape[0])



# ---- VAE ------------------------------------------------------------------------------------------------
LOG_2PI = 1.8378770664093453  # log(2 pi)


def kl_normal_std_dims(mean: Tensor, logvar: Tensor) -> Tensor:
    """Per-dimension KL(N(mean, exp(logvar)) || N(0, 1)) = -1/2 (1 + logvar - mean^2 - exp(logvar)),
    Kingma & Welling 2013, App. B. Shape (B, L)."""
    return -0.5 * (1 + logvar - mean.pow(2) - logvar.exp())


def kl_normal_std(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, diag exp(logvar)) || N(0, I)) per example:
    1/2 sum_j (sigma_j^2 + mean_j^2 - log sigma_j^2 - 1), Kingma & Welling 2013, App. B. Shape (B,)."""
    return kl_normal_std_dims(mean, logvar).sum(-1)


def kl_free_bits(mean: Tensor, logvar: Tensor, free_bits: float) -> Tensor:
    """Batch KL with free bits (Kingma et al. 2016, "Improved variational inference with IAF", eq. 15):
    sum_j max(lambda, 1/B sum_b KL_bj) — each latent dimension may spend `lambda` nats at no cost, so the
    optimiser has no incentive to push it below that (against posterior collapse). A scalar."""
    per_dim = kl_normal_std_dims(mean, logvar).mean(0)  # (L,)
    return per_dim.clamp(min=free_bits).sum()


def reparametrize(mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = mean + sigma * eps, sigma = exp(logvar / 2), eps ~ N(0, I) (the reparametrisation trick,
    Kingma & Welling 2013, sec. 2.4): the randomness is an input, so gradients flow to mean and sigma."""
    eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    return mean + (0.5 * logvar).exp() * eps


def log_normal(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mean, diag exp(logvar)) = -1/2 sum_j (log 2pi + logvar_j + (z_j - mean_j)^2 / exp(logvar_j)),
    summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mean).pow(2) * (-logvar).exp()).sum(-1)


def log_normal_std(z: Tensor) -> Tensor:
    """log N(z; 0, I) = -1/2 sum_j (log 2pi + z_j^2), summed over the last dimension."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p(x|z) of a Bernoulli decoder with logits l, per example (summed over all but the first dim):
    sum_i -[x_i log s(l_i) + (1 - x_i) log(1 - s(l_i))]. Shape (B,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_nll(mean: Tensor, x: Tensor, log_sigma: Tensor) -> Tensor:
    """-log N(x; mean, sigma^2 I) per example: sum_i [(x_i - mean_i)^2 / (2 sigma^2) + log sigma + 1/2 log 2pi].
    With sigma = 1 this is 1/2 the summed squared error plus a constant. Shape (B,)."""
    d = x[0].numel()
    sq = (x - mean).pow(2).flatten(1).sum(1)
    return 0.5 * sq * torch.exp(-2 * log_sigma) + d * (log_sigma + 0.5 * LOG_2PI)



# ---- GANs -----------------------------------------------------------------------------------------------
# `r` and `f` are the discriminator's raw outputs (logits, or critic values) on real and generated data,
# shape (B,) or (B, 1); D(x) = s(r) with s the logistic sigmoid. log s(l) = -softplus(-l) and
# log(1 - s(l)) = -softplus(l) keep every BCE form finite for any logit.

GAN_LOSSES = ("bce", "hinge", "wasserstein", "least-squares")
GENERATOR_LOSSES = ("non-saturating", "minimax")


def gan_d_bce(r: Tensor, f: Tensor, real_target: float = 1.0) -> Tensor:
    """Discriminator of the original GAN (Goodfellow et al. 2014, Algorithm 1), as a loss to descend:
    -E[t log D(x) + (1 - t) log(1 - D(x))] - E[log(1 - D(G(z)))]; t = 1, or 1 - alpha with one-sided label
    smoothing (Salimans et al. 2016, s.3.4)."""
    return F.binary_cross_entropy_with_logits(r, torch.full_like(r, real_target)) + F.softplus(f).mean()


def gan_g_minimax(f: Tensor) -> Tensor:
    """Generator of the minimax game: descend E[log(1 - D(G(z)))] = -E[softplus(f)].
    d/df log(1 - s(f)) = -s(f): the gradient vanishes when D confidently rejects the samples (s(f) -> 0),
    exactly when the generator is worst (Goodfellow et al. 2014, s.3)."""
    return -F.softplus(f).mean()


def gan_g_non_saturating(f: Tensor) -> Tensor:
    """Non-saturating generator loss: descend -E[log D(G(z))] = E[softplus(-f)].
    d/df [-log s(f)] = -(1 - s(f)): the gradient is largest when D rejects the samples (s(f) -> 0)."""
    return F.softplus(-f).mean()


def gan_d_hinge(r: Tensor, f: Tensor) -> Tensor:
    """Hinge discriminator (Lim & Ye 2017; Miyato et al. 2018, SNGAN): E[max(0, 1 - r)] + E[max(0, 1 + f)]."""
    return F.relu(1 - r).mean() + F.relu(1 + f).mean()


def gan_critic_wasserstein(r: Tensor, f: Tensor) -> Tensor:
    """WGAN critic (Arjovsky et al. 2017, Algorithm 1), as a loss to descend: E[f] - E[r], the negated
    estimate of W(P_r, P_g) = sup_{||D||_L <= 1} E_r[D(x)] - E_g[D(x)]."""
    return f.mean() - r.mean()


def gan_g_critic(f: Tensor) -> Tensor:
    """Generator against a critic (WGAN and hinge GAN): descend -E[D(G(z))]."""
    return -f.mean()


def gan_d_least_squares(r: Tensor, f: Tensor, real_target: float = 1.0) -> Tensor:
    """LSGAN discriminator (Mao et al. 2017, eq. 2 with a = 0, b = c = 1), on D's raw output:
    1/2 E[(r - b)^2] + 1/2 E[(f - a)^2]; b = 1 - alpha with label smoothing."""
    return 0.5 * ((r - real_target) ** 2).mean() + 0.5 * (f ** 2).mean()


def gan_g_least_squares(f: Tensor) -> Tensor:
    """LSGAN generator: 1/2 E[(f - c)^2] with c = 1 (Mao et al. 2017, eq. 2)."""
    return 0.5 * ((f - 1) ** 2).mean()


def gan_d_loss(kind: str, r: Tensor, f: Tensor, real_target: float = 1.0) -> Tensor:
    """The discriminator/critic loss of `kind` (one of GAN_LOSSES); `real_target` < 1: label smoothing
    (bce and least-squares only)."""
    if kind == "bce":
        return gan_d_bce(r, f, real_target)
    if kind == "least-squares":
        return gan_d_least_squares(r, f, real_target)
    if real_target != 1.0:
        raise ValueError(f"label smoothing needs loss=bce or least-squares, not {kind!r}")
    if kind == "hinge":
        return gan_d_hinge(r, f)
    if kind == "wasserstein":
        return gan_critic_wasserstein(r, f)
    raise ValueError(f"loss={kind!r} is not valid; expected one of: {', '.join(GAN_LOSSES)}")


def gan_g_loss(kind: str, f: Tensor, generator_loss: str = "non-saturating") -> Tensor:
    """The generator loss that goes with discriminator loss `kind`; for bce, `generator_loss` picks
    minimax or non-saturating."""
    if kind == "bce":
        if generator_loss == "minimax":
            return gan_g_minimax(f)
        if generator_loss == "non-saturating":
            return gan_g_non_saturating(f)
        raise ValueError(f"generator_loss={generator_loss!r} is not valid; expected one of: "
                         f"{', '.join(GENERATOR_LOSSES)}")
    if kind == "least-squares":
        return gan_g_least_squares(f)
    if kind in ("hinge", "wasserstein"):
        return gan_g_critic(f)
    raise ValueError(f"loss={kind!r} is not valid; expected one of: {', '.join(GAN_LOSSES)}")


def gradient_penalty(critic, real: Tensor, fake: Tensor, eps: Tensor) -> Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017, Algorithm 1): E[(||grad_x D(x_hat)||_2 - 1)^2] on
    x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per example (shape (B, 1, ..., 1)). The graph is kept
    (create_graph) so that the penalty's own gradient reaches the critic's weights."""
    x_hat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def drift_penalty(r: Tensor) -> Tensor:
    """ProGAN's drift term (Karras et al. 2018, App. A.1): E[D(x)^2] on real data, weighted by eps_drift = 0.001
    in the critic loss, keeps the critic's output from drifting far from zero."""
    return (r ** 2).mean()
