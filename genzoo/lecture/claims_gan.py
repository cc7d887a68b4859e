"""The GAN claims of the lectures (7-9): saturation, mode collapse and conditioning; the WGAN critic's clean
gradients on two 1-D Gaussians; "VAE images are blurry, GAN images sharp"."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as Fn
from torch import nn

from .. import latent as lt
from .. import registry
from ..evaluate.metrics import mode_coverage
from . import figures as F
from .core import Context, Result, claim, describe_checks, verdict_of


def _digits_train(ctx: Context):
    return ctx.dataset(ctx.digits(), "train", ctx.pick(512, 20000, None))


@torch.no_grad()
def _classes_covered(ctx: Context, model: Any, n: int) -> dict[str, Any]:
    clf = ctx.classifier("mnist")
    x = lt.sample_prior(model, n, seed=ctx.seed)
    return mode_coverage(clf.probs(x))


# ---- 7. saturation, mode collapse, conditioning ------------------------------------------------------------
@claim("gan-training", number=7, title="GANs: minimax saturation, mode collapse, conditioning as the remedy",
       quote="Early in training D rejects G's samples confidently and the minimax loss log(1 - D(G(z))) "
             "saturates, so G is trained with -log D(G(z)) instead; GANs tend to collapse onto a few modes; "
             "conditioning on the class (cGAN) makes G cover every class.",
       experiment="(a) Saturation: an MLP `gan` on MNIST after 50 steps, then 100 more steps of D alone against "
                  "that G (a poor G whose samples D rejects); over 1,000 samples the minimax generator's gradient "
                  "per logit |d/df log(1 - s(f))| = s(f) against the non-saturating one's 1 - s(f) (s = D's "
                  "sigmoid). (b) Mode collapse: the same GAN (preset toy) on ring8, modes "
                  "covered (>= half a fair share of high-quality samples). (c) Conditioning: the lectures' DCGAN "
                  "(`dcgan`, batch norm, 64 channels at the full scale) vs the same convolutional networks given "
                  "the class (`cgan`), same steps and batch, on MNIST: classes covered by 10,000 samples (2,000 "
                  "quick; >= half a fair share), KL of the class histogram to uniform, and the share of cgan "
                  "samples classified as the class asked for.")
def gan_training(ctx: Context) -> Result:
    from ..train.callbacks import ModeMonitor
    train = _digits_train(ctx)
    mlp = {"arch": "mlp", "monitor_every": 0}
    gan, cgan = conv_gan(ctx, "dcgan"), conv_gan(ctx, "cgan")
    early = ctx.train("gan-mlp-early", "gan", train, settings=mlp, steps=early_steps(ctx), batch_size=64)
    s = early_rejection(early, train, ctx.pick(5, 100, 100), ctx.seed)  # D(G(z)) once D has caught up, (1000,)
    grad_minimax, grad_nonsat = float(s.mean()), float((1 - s).mean())
    ring = ctx.dataset("ring8", "train")
    toy = ctx.train("gan-ring8", "gan", ring, preset="toy", settings={"monitor_every": 0},
                    steps=ctx.pick(10, 6000, 20000), batch_size=256)
    mon = ModeMonitor(n=ctx.pick(500, 2500, 2500), seed=ctx.seed)
    mon.setup(ctx.dataset("ring8", "test"))
    ring_stats = mon.measure(toy, histogram=True)
    n = ctx.pick(100, 2000, 10000)
    cov_gan = _classes_covered(ctx, gan, n)
    clf = ctx.classifier("mnist")
    with torch.no_grad():
        labels = torch.arange(n) % 10
        xc = lt.sample_prior(cgan, n, labels=labels, seed=ctx.seed)
        pc = clf.probs(xc)
    cov_cgan = mode_coverage(pc)
    label_acc = float((pc.argmax(1) == labels).float().mean())
    fig, axes = F.new_figure(1, 4, 3.0)
    with torch.no_grad():
        pts = toy.sample(2500, generator=torch.Generator().manual_seed(ctx.seed)).reshape(2500, -1).cpu().numpy()
    real = ring.x[:2500].reshape(-1, 2).numpy()
    axes[0][0].scatter(real[:, 0], real[:, 1], s=2, alpha=0.3, label="real")
    axes[0][0].scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.3, label="generated")
    axes[0][0].set_title(f"ring8: {ring_stats['modes_covered']}/8 modes", fontsize=9)
    axes[0][0].legend(fontsize=6)
    axes[0][0].set_aspect("equal")
    F.bars(axes[0][1], ["minimax s(f)", "non-sat 1-s(f)"], [grad_minimax, grad_nonsat], "G's gradient per logit, D ahead")
    F.images(axes[0][2], lt.sample_prior(gan, 64, seed=ctx.seed), 8, f"dcgan: {cov_gan['classes_covered']}/10 classes")
    F.images(axes[0][3], xc[:100].reshape(10, 10, *xc.shape[1:]).transpose(0, 1).reshape(100, *xc.shape[1:]), 10,
             f"cgan: {cov_cgan['classes_covered']}/10 classes, {label_acc:.0%} as asked")
    fig_path = F.save(fig, ctx.figure("gan_training"))
    numbers = {"mean D(G(z)) after early steps": grad_minimax, "minimax gradient per logit": grad_minimax,
               "non-saturating gradient per logit": grad_nonsat,
               "non-saturating / minimax": grad_nonsat / max(grad_minimax, 1e-12),
               "ring8 modes covered (of 8)": ring_stats["modes_covered"], "ring8 high-quality share": ring_stats["hq_share"],
               "dcgan MNIST classes covered": cov_gan["classes_covered"],
               "cgan MNIST classes covered": cov_cgan["classes_covered"],
               "dcgan KL to uniform": cov_gan["kl_to_uniform"], "cgan KL to uniform": cov_cgan["kl_to_uniform"],
               "cgan label accuracy": label_acc, "dcgan / cgan steps": dcgan_steps(ctx)}
    checks = {"minimax gradient saturates (non-saturating one > 2x larger)": grad_nonsat > 2 * grad_minimax,
              "the plain GAN collapses on ring8 (>= 50% high-quality samples, on < 8 modes)":
                  ring_stats["hq_share"] >= 0.5 and ring_stats["modes_covered"] < 8,
              "cgan covers more classes than dcgan or all 10, as evenly (KL to uniform), 90% of its samples of "
              "the class asked for": (cov_cgan["classes_covered"] > cov_gan["classes_covered"]
                                      or cov_cgan["classes_covered"] == 10)
                                     and cov_cgan["kl_to_uniform"] <= cov_gan["kl_to_uniform"] and label_acc >= 0.9}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: all three. {describe_checks(checks)}.")


def dcgan_steps(ctx: Context) -> int:
    return ctx.pick(3, 1000, 5000)


def conv_gan(ctx: Context, model: str) -> Any:
    """The lectures' DCGAN (`dcgan`) or the same convolutional networks given the class (`cgan`), at one budget:
    claim 7 compares the two, claim 9 reuses the DCGAN. (The MLP pair of earlier rounds diverged at 20,000
    steps, and its cgan, the one-hot label concatenated to 784 pixels, ignored the label:
    benchmarks/lecture_cgan_probe.py.)"""
    return ctx.train(model, model, _digits_train(ctx), settings={"channels": ctx.pick(8, 32, 64), "monitor_every": 0},
                     steps=dcgan_steps(ctx), batch_size=64)


def early_steps(ctx: Context) -> int:
    return ctx.pick(3, 50, 50)


def early_rejection(model: Any, train: Any, d_steps: int, seed: int = 0, batch_size: int = 64) -> torch.Tensor:
    """s(D(G(z))) on 1,000 samples after `d_steps` more discriminator steps against the (frozen) early G —
    the situation the lecture describes: a poor G whose samples D has learned to reject. A copy of the model
    is used; the D steps are the GAN's own discriminator loss with Adam (lr 2e-4, betas 0.5, 0.999)."""
    import copy
    from .. import losses
    m = copy.deepcopy(model).train()
    m.requires_grad_(False)
    m.discriminator.requires_grad_(True)
    opt = torch.optim.Adam(m.discriminator.parameters(), 2e-4, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    for _ in range(d_steps):
        idx = torch.randint(0, len(train), (batch_size,), generator=g)
        real = m.prepare(train.x[idx])
        with torch.no_grad():
            fake = m.G(m.noise(batch_size, g))
        loss = losses.gan_d_bce(m.D(real), m.D(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        return torch.sigmoid(m.D(m.G(m.noise(1000, g))))


# ---- 8. the WGAN critic vs the minimax discriminator on two 1-D Gaussians ----------------------------------
def _mlp1d(width: int = 64) -> nn.Sequential:
    return nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))


def fit_discriminators(real: torch.Tensor, fake: torch.Tensor, steps: int, seed: int = 0, clip: float = 0.1
                       ) -> tuple[nn.Module, nn.Module]:
    """Train, with G held fixed, (a) a minimax discriminator: min_D -E log s(D(x)) - E log(1 - s(D(G(z))))
    (Adam 1e-3), (b) a WGAN critic: max_f E f(x) - E f(G(z)) with weights clipped to [-clip, clip] (RMSprop
    1e-3; Arjovsky et al. 2017, Algorithm 1, without the G step). Both are 1-64-64-1 ReLU MLPs. This is the
    experiment of the WGAN paper's Figure 2, not a generative model, so it is a plain loop (no engine)."""
    from .. import losses
    torch.manual_seed(seed)
    d, f = _mlp1d(), _mlp1d()
    opt_d, opt_f = torch.optim.Adam(d.parameters(), 1e-3), torch.optim.RMSprop(f.parameters(), 1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i, j = torch.randint(0, len(real), (128,), generator=g), torch.randint(0, len(fake), (128,), generator=g)
        r, q = real[i, None], fake[j, None]  # (128, 1)
        loss_d = losses.gan_d_bce(d(r).reshape(-1), d(q).reshape(-1))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_f = losses.gan_critic_wasserstein(f(r).reshape(-1), f(q).reshape(-1))
        opt_f.zero_grad()
        loss_f.backward()
        opt_f.step()
        with torch.no_grad():
            for p in f.parameters():
                p.clamp_(-clip, clip)
    return d.eval().requires_grad_(False), f.eval().requires_grad_(False)


def generator_gradients(d: nn.Module, f: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """|d/dx| of each generator loss at the points x (N,): minimax log(1 - s(D(x))) = -softplus(D(x)),
    non-saturating -log s(D(x)) = softplus(-D(x)), WGAN -f(x)."""
    out = {}
    for name, fn in (("minimax", lambda v: -Fn.softplus(d(v))), ("non-saturating", lambda v: Fn.softplus(-d(v))),
                     ("critic", lambda v: -f(v))):
        v = x[:, None].clone().requires_grad_(True)
        with torch.enable_grad():
            (gx,) = torch.autograd.grad(fn(v).sum(), v)
        out[name] = gx.reshape(-1).abs()
    return out


@claim("wgan-critic", number=8, title="The WGAN critic gives clean gradients where the minimax discriminator saturates",
       quote="When the two distributions are far apart the optimal discriminator saturates and its gradient "
             "vanishes, while the WGAN critic stays close to linear and gives the generator a clean gradient "
             "everywhere (WGAN paper, Figure 2).",
       experiment="Real data N(-2, 0.3^2), generator output held fixed at N(2, 0.3^2), 1-D. A minimax discriminator "
                  "(BCE) and a WGAN critic (weight clipping 0.1) are trained against them; along the line "
                  "x in [-5, 5] we compute the gradient each generator loss gives the generator's samples. "
                  "Number: the median gradient magnitude at the generated samples as a share of that loss's "
                  "largest gradient on the line (1: clean; ~0: saturated).")
def wgan_critic(ctx: Context) -> Result:
    g = torch.Generator().manual_seed(ctx.seed)
    real = -2 + 0.3 * torch.randn(4000, generator=g)
    fake = 2 + 0.3 * torch.randn(4000, generator=g)
    d, f = fit_discriminators(real, fake, ctx.pick(40, 2000, 5000), ctx.seed)
    line = torch.linspace(-5, 5, 401)
    gl = generator_gradients(d, f, line)
    gf = generator_gradients(d, f, fake[:1000])
    share = {k: float(gf[k].median() / gl[k].max().clamp_min(1e-30)) for k in gl}
    with torch.no_grad():
        d_line = torch.sigmoid(d(line[:, None])).reshape(-1)
        f_line = f(line[:, None]).reshape(-1)
    fig, axes = F.new_figure(2, 1, 3.0, aspect=2.2)
    ax = axes[0][0]
    ax.hist(real.numpy(), bins=60, density=True, alpha=0.4, label="real")
    ax.hist(fake.numpy(), bins=60, density=True, alpha=0.4, label="fake (G)")
    ax.plot(line, d_line, label="minimax D(x) = s(.)")
    fs = (f_line - f_line.min()) / (f_line.max() - f_line.min()).clamp_min(1e-12)
    ax.plot(line, fs, label="WGAN critic (rescaled to [0, 1])")
    ax.legend(fontsize=7)
    ax.set_title("discriminator vs critic", fontsize=9)
    ax = axes[1][0]
    for k, v in gl.items():
        ax.plot(line, v / v.max().clamp_min(1e-30), label=f"{k} (at fakes: {share[k]:.3g})")
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 2)
    ax.legend(fontsize=7)
    ax.set_title("|gradient| the generator gets, / its max on the line", fontsize=9)
    fig_path = F.save(fig, ctx.figure("wgan_critic"))
    numbers = {f"{k}: median |grad| at fakes / max on line": v for k, v in share.items()}
    numbers["D(x) at the fakes (median)"] = float(torch.sigmoid(d(fake[:1000, None])).median())
    checks = {"the minimax gradient at the fakes has vanished (< 1% of its max)": share["minimax"] < 0.01,
              "the critic's gradient at the fakes is clean (> 10% of its max)": share["critic"] > 0.1}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: both. {describe_checks(checks)}.")


# ---- 9. sharpness ---------------------------------------------------------------------------------------------
LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_variance(x01: torch.Tensor) -> torch.Tensor:
    """Per-image variance of the 4-neighbour Laplacian (a standard focus/sharpness measure): (N,).
    x01: (N, C, H, W) in [0, 1]; channels are averaged first; 'valid' convolution (no padding)."""
    g = x01.float().mean(1, keepdim=True)
    lap = Fn.conv2d(g, LAPLACE.reshape(1, 1, 3, 3).to(g))  # (N, 1, H-2, W-2)
    return lap.flatten(1).var(1)


@claim("sharpness", number=9, title="VAE images are blurry, GAN images sharp",
       quote="VAE samples tend to be blurry (the Gaussian/Bernoulli likelihood averages over plausible images), "
             "while GAN samples are sharp; pix2pix adds the adversarial term to L1 for the same reason.",
       experiment="Sharpness = mean variance of the image Laplacian, relative to real test images (1 = as sharp as "
                  "real; < 1 blurrier). Measured on VAE prior samples and reconstructions, AE reconstructions "
                  "(claim 1's L = 20 models), DCGAN samples, and pix2pix edges -> digit outputs trained L1-only "
                  "(gan_weight = 0) vs with the adversarial term (gan_weight = 1), same steps.")
def sharpness(ctx: Context) -> Result:
    from .claims_ae import latent_pair
    test = ctx.dataset(ctx.digits(), "test", ctx.pick(100, 1000, 5000))
    n = len(test)
    real = float(laplacian_variance(test.x.float() / 255).mean())
    ae, vae = latent_pair(ctx, 20)
    dcgan = conv_gan(ctx, "dcgan")
    sets = {"VAE prior samples": lt.sample_prior(vae, n, seed=ctx.seed),
            "VAE reconstructions": lt.decode(vae, lt.encode(vae, test.x)),
            "AE reconstructions": lt.decode(ae, lt.encode(ae, test.x)),
            "DCGAN samples": lt.sample_prior(dcgan, n, seed=ctx.seed)}
    p2p_note = ""
    if "pix2pix" in registry.names():
        base = "mnist-mini" if ctx.tiny or ctx.digits() == "mnist-mini" else "mnist"
        pdata = ctx.dataset(f"{base}-edges", "train", ctx.pick(200, 10000, None))
        ptest = ctx.dataset(f"{base}-edges", "test", n)
        for w in (0.0, 1.0):
            m = ctx.train(f"pix2pix-w{w:g}", "pix2pix", pdata, preset=ctx.pick("tiny", "tiny", "mnist"),
                          settings={"gan_weight": w}, steps=ctx.pick(3, 400, 4000), batch_size=32)
            with torch.no_grad():
                out = torch.cat([m.to_unit(m.translate(m.prepare(xb))).cpu() for xb, _ in ptest.batches(200)])
            sets[f"pix2pix {'L1 only' if w == 0 else 'L1 + adversarial'}"] = out
    else:
        p2p_note = " (pix2pix is not registered in this build: its rows are missing.)"
    ratio = {k: float(laplacian_variance(v).mean()) / real for k, v in sets.items()}
    fig, axes = F.new_figure(1, len(sets) + 1, 2.6)
    F.images(axes[0][0], test.x[:16].float() / 255, 4, "real")
    for i, (k, v) in enumerate(sets.items()):
        F.images(axes[0][i + 1], v[:16], 4, f"{k}\n{ratio[k]:.2f}x real")
    fig_path = F.save(fig, ctx.figure("sharpness"))
    checks = {"VAE samples blurrier than DCGAN samples": ratio["VAE prior samples"] < ratio["DCGAN samples"],
              "VAE samples blurrier than real images (< 0.8x)": ratio["VAE prior samples"] < 0.8,
              "DCGAN samples closer to real sharpness than VAE samples":
                  abs(math.log(ratio["DCGAN samples"])) < abs(math.log(ratio["VAE prior samples"]))}
    if "pix2pix L1 only" in ratio:
        checks["pix2pix with the adversarial term sharper than L1 only"] = (ratio["pix2pix L1 + adversarial"]
                                                                          > ratio["pix2pix L1 only"])
    numbers = {"real test images: Laplacian variance": real, **{f"{k}: sharpness / real": v for k, v in ratio.items()}}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: every check. {describe_checks(checks)}.{p2p_note}")
