"""The autoencoder and VAE claims of the lectures (1-6, 11, 12), each measured on MNIST (mnist-mini in tests)."""
from __future__ import annotations

import copy
import math
from typing import Any

import torch

from .. import applications as A
from .. import latent as lt
from ..evaluate.likelihood import elbo_terms
from ..evaluate.subsets import random_subset
from ..evaluate.suite import knn_accuracy
from . import figures as F
from .core import Context, Result, claim, describe_checks, recognised, verdict_of

def mlp(ctx: Context) -> dict:
    """Claim 1's encoder widths (784-512-256-L); a narrow one in tests."""
    return {"arch": "mlp", "hidden": ctx.pick((32,), (512, 256), (512, 256))}


def _train_set(ctx: Context):
    return ctx.dataset(ctx.digits(), "train", ctx.pick(512, 20000, None))


def _test_set(ctx: Context, n: int | None = None):
    return ctx.dataset(ctx.digits(), "test", n or ctx.pick(200, 2000, 10000))


def _epochs(ctx: Context, tiny: int = 1, quick: int = 8, full: int = 30) -> int:
    return ctx.pick(tiny, quick, full)


def latent_pair(ctx: Context, L: int):
    """The AE and the VAE of claim 1 (the same 784-512-256-L MLP, Bernoulli/BCE decoder, same seed and steps)."""
    train = _train_set(ctx)
    s = {**mlp(ctx), "latent_dim": L}
    ep = _epochs(ctx)
    return ctx.train(f"ae-L{L}", "ae", train, settings=s, epochs=ep), ctx.train(f"vae-L{L}", "vae", train,
                                                                                 settings=s, epochs=ep)


# ---- 1. AE vs VAE latent space ---------------------------------------------------------------------------
def box_grid(codes: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The plane of the codes (the latent itself when 2-D, else the PCA plane), the codes' 2-D coordinates
    on it (N, 2), an n x n grid of latent points over their bounding box (row-major, top row = largest v)
    and the share of the box's n x n cells that hold no code ("gaps")."""
    L = codes.shape[1]
    origin, basis = (torch.zeros(2), torch.eye(2)) if L == 2 else lt.pca_plane(codes)
    # coordinates: least squares uv with z - origin ~ uv @ basis  (basis rows are orthogonal)
    uv = (codes - origin) @ basis.T @ torch.linalg.inv(basis @ basis.T)  # (N, 2)
    lo, hi = uv.min(0).values, uv.max(0).values
    us = torch.linspace(float(lo[0]), float(hi[0]), n)
    vs = torch.linspace(float(hi[1]), float(lo[1]), n)
    v, u = torch.meshgrid(vs, us, indexing="ij")
    grid_uv = torch.stack([u.reshape(-1), v.reshape(-1)], 1)  # (n*n, 2)
    cells = ((uv - lo) / (hi - lo).clamp_min(1e-9) * n).long().clamp(0, n - 1)  # (N, 2) cell indices
    occupied = torch.zeros(n, n, dtype=torch.bool)
    occupied[cells[:, 0], cells[:, 1]] = True
    return uv, grid_uv, origin + grid_uv @ basis, float(1 - occupied.float().mean())


@claim("latent-space", number=1, title="AE vs VAE latent space: continuity, gaps, sampling",
       quote="The latent space of an autoencoder may not be continuous and may have gaps, so decoding a random "
             "point gives garbage; the VAE's KL term makes the latent space continuous and complete, so that "
             "points sampled from the prior decode to plausible images.",
       experiment="The same 784-512-256-L MLP trained as `ae` and as `vae` (Bernoulli/BCE decoder, same seed and "
                  "epochs) at L = 2 and L = 20. Codes of the test set are coloured by class; an n x n grid over the "
                  "codes' bounding box (the latent itself at L = 2, the codes' PCA plane at L = 20) is decoded. "
                  "Numbers: share of grid points the shipped MNIST classifier recognises (p >= 0.9); share of the "
                  "box's cells holding no test code ('gaps'); share of recognised samples from the VAE's prior "
                  "and from a Gaussian fitted to the AE's training codes; share of recognised interior images "
                  "on straight interpolation paths between test pairs of different digits.")
def latent_space(ctx: Context) -> Result:
    clf = ctx.classifier("mnist")
    test, train = _test_set(ctx), _train_set(ctx)
    n_grid, n_samples, pairs = ctx.pick(8, 15, 20), ctx.pick(50, 1000, 2000), ctx.pick(10, 200, 300)
    rows, checks, figs = [], {}, []
    for L in (2, 20):
        ae, vae = latent_pair(ctx, L)
        fig, axes = F.new_figure(2, 3)
        r: dict[str, dict[str, float]] = {}
        for i, (name, m) in enumerate((("ae", ae), ("vae", vae))):
            codes, y = lt.encode_dataset(m, test)
            uv, _, zgrid, gaps = box_grid(codes, n_grid)
            decoded = lt.decode(m, zgrid)
            fitted = lt.sample_code_gaussian(m, train, n_samples, max_codes=ctx.pick(500, 10000, 10000))
            row = {"model": name, "latent": L, "grid recognised": recognised(clf, decoded), "gaps": gaps,
                   "fitted-Gaussian samples recognised": recognised(clf, fitted),
                   "prior samples recognised": recognised(clf, lt.sample_prior(m, n_samples)) if name == "vae"
                   else float("nan"),
                   "interpolation recognised": lt.smoothness(m, test, pairs, 10, "lerp", clf, 0.9,
                                                             seed=ctx.seed)["confident_fraction"]}
            r[name] = row
            rows.append(row)
            plane = "latent" if L == 2 else "PCA plane"
            F.scatter(axes[i][0], uv.numpy(), y, f"{name} L={L}: test codes ({plane})")
            F.images(axes[i][1], decoded, n_grid, f"{name}: grid over the box, {row['grid recognised']:.0%} recognised")
            own = lt.sample_prior(m, 64) if name == "vae" else lt.sample_code_gaussian(m, train, 64)
            F.images(axes[i][2], own, 8, f"{name}: {'prior' if name == 'vae' else 'fitted-Gaussian'} samples")
        figs.append(F.save(fig, ctx.figure(f"latent_space_L{L}")))
        a, v = r["ae"], r["vae"]
        checks[f"L={L}: VAE grid more recognisable"] = v["grid recognised"] > a["grid recognised"]
        checks[f"L={L}: VAE box has fewer gaps"] = v["gaps"] < a["gaps"]
        checks[f"L={L}: VAE prior samples beat AE fitted-Gaussian samples"] = (
            v["prior samples recognised"] > a["fitted-Gaussian samples recognised"])
        checks[f"L={L}: VAE interpolations more recognisable"] = (v["interpolation recognised"]
                                                                  > a["interpolation recognised"])
    numbers = {f"{r['model']} L={r['latent']} {k}": v for r in rows for k, v in r.items()
               if k not in ("model", "latent") and not (isinstance(v, float) and math.isnan(v))}
    return Result(numbers, figs, verdict_of(checks),
                  f"Rule: holds when the VAE is ahead on all eight comparisons, does not hold when on none. "
                  f"{describe_checks(checks)}.", table=rows)


# ---- 2. the KL term ---------------------------------------------------------------------------------------
@claim("kl-term", number=2, title="The KL term's effect: KL only, reconstruction only, both",
       quote="With only the KL term, the codes collapse onto the prior and carry no information; with only the "
             "reconstruction term, the classes separate but the codes spread out with gaps, like a plain "
             "autoencoder; with both, the classes separate in a compact region around the origin.",
       experiment="A VAE with a 2-D latent (784-512-256-2 MLP) trained three times: loss_terms = kl, recon, both. "
                  "Numbers per variant: test reconstruction MSE, KL(q(z|x) || N(0, I)) in nats, class separation "
                  "(5-nearest-neighbour accuracy of the 2-D codes, train codes -> test codes; chance 0.1) and the "
                  "codes' spread (mean |mu|). Figure: the three latent maps.")
def kl_term(ctx: Context) -> Result:
    train, test = _train_set(ctx), _test_set(ctx)
    fig, axes = F.new_figure(1, 3)
    rows = {}
    for i, terms in enumerate(("kl", "recon", "both")):
        m = ctx.train(f"vae2-{terms}", "vae", train, settings={**mlp(ctx), "latent_dim": 2, "loss_terms": terms},
                      epochs=_epochs(ctx))
        codes, y = lt.encode_dataset(m, test)
        tr_codes, tr_y = lt.encode_dataset(m, train, ctx.pick(300, 5000, 10000), seed=ctx.seed)
        rows[terms] = {"loss terms": terms, "recon MSE": float(A.reconstruction_errors(m, test).mean()),
                       "KL (nats)": elbo_terms(m, test)["kl"], "kNN accuracy (2-D)": knn_accuracy(tr_codes, tr_y, codes, y),
                       "mean |mu|": float(codes.norm(dim=1).mean())}
        F.scatter(axes[0][i], codes.numpy(), y, f"{terms}: kNN {rows[terms]['kNN accuracy (2-D)']:.2f}, "
                                                 f"KL {rows[terms]['KL (nats)']:.1f}")
    fig_path = F.save(fig, ctx.figure("kl_term"))
    kl, rec, both = rows["kl"], rows["recon"], rows["both"]
    checks = {"KL only carries no class information (kNN < 0.3)": kl["kNN accuracy (2-D)"] < 0.3,
              "reconstruction only separates classes (kNN > KL-only + 0.2)":
                  rec["kNN accuracy (2-D)"] > kl["kNN accuracy (2-D)"] + 0.2,
              "reconstruction only spreads the codes (larger KL than both)": rec["KL (nats)"] > both["KL (nats)"],
              "both separates classes (kNN > KL-only + 0.2)": both["kNN accuracy (2-D)"] > kl["kNN accuracy (2-D)"] + 0.2,
              "both reconstructs better than KL only": both["recon MSE"] < kl["recon MSE"]}
    numbers = {f"{t} {k}": v for t, r in rows.items() for k, v in r.items() if k != "loss terms"}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: all five checks. {describe_checks(checks)}.",
                  table=list(rows.values()))


# ---- 3. undercomplete vs overcomplete ---------------------------------------------------------------------
def one_layer_ae(ctx: Context, k: int):
    return ctx.train(f"ae1-k{k}", "ae", _train_set(ctx), epochs=_epochs(ctx, 1, 5, 10),
                     settings={"arch": "mlp", "hidden": (), "latent_dim": k, "latent_activation": "relu",
                               "loss": "bce"})


@claim("overcomplete", number=3, title="Undercomplete vs overcomplete: copying instead of compressing",
       quote="An overcomplete autoencoder (code larger than the input) can learn to copy its input, so it "
             "reconstructs anything, even inputs unlike its training data; an undercomplete one must compress "
             "and reconstructs only what resembles the data.",
       experiment="One-layer autoencoders (x -> ReLU code of size k -> sigmoid, BCE) on MNIST, k = 16 "
                  "(undercomplete) and k = 1024 (overcomplete). Ratio of the per-pixel reconstruction MSE on "
                  "out-of-distribution images (uniform noise; Fashion-MNIST test images when present) to the MSE on "
                  "MNIST test digits, for both. Also: linear-probe accuracy (logistic regression on the codes) "
                  "against code size.")
def overcomplete(ctx: Context) -> Result:
    test = _test_set(ctx)
    g = torch.Generator().manual_seed(ctx.seed)
    from ..data import Dataset
    probes = {"noise": Dataset("noise", "test", torch.randint(0, 256, (len(test), *test.shape), generator=g,
                                                              dtype=torch.uint8))}
    if not ctx.tiny and ctx.has("fashion-mnist", ("test",)):
        probes["fashion-mnist"] = ctx.dataset("fashion-mnist", "test", len(test))
    under_k, over_k = ctx.pick(8, 16, 16), ctx.pick(256, 1024, 1024)
    rows, ratios, pics = [], {}, []
    for k in (under_k, over_k):
        m = one_layer_ae(ctx, k)
        own = float(A.reconstruction_errors(m, test).mean())
        row: dict[str, Any] = {"code size": k, "MNIST test MSE": own}
        for name, ds in probes.items():
            e = float(A.reconstruction_errors(m, ds).mean())
            row[f"{name} MSE"], row[f"{name} / MNIST"] = e, e / own
            ratios[(k, name)] = e / own
        rows.append(row)
    with torch.no_grad():
        for ds in [test, *probes.values()]:
            pics.append(ds.x[:10].float() / 255)
            for k in (under_k, over_k):
                m = one_layer_ae(ctx, k)
                pics.append(m.to_unit(m.reconstruct(m.prepare(ds.x[:10]))))
    fig, axes = F.new_figure(1, 2, 4.2)
    F.images(axes[0][0], torch.cat(pics), 10, f"rows: input, k={under_k}, k={over_k} (per probe set)")
    sizes = ctx.pick([4, 32], [4, 16, 64, 256, 1024], [2, 4, 16, 64, 256, 1024])
    sizes = sorted(set(sizes) | {under_k, over_k}) if not ctx.tiny else sizes
    train = _train_set(ctx)
    probe_train = random_subset(train, ctx.pick(300, 5000, 10000), ctx.seed)  # stratified, not the first n
    acc = []
    for k in sizes:
        m = one_layer_ae(ctx, k)
        acc.append(A.linear_probe(A.encode_dataset(m, probe_train), probe_train.y,
                                  A.encode_dataset(m, test), test.y, max_iter=ctx.pick(50, 300, 1000)))
    axes[0][1].plot(sizes, acc, "o-")
    axes[0][1].set_xscale("log")
    axes[0][1].set_xlabel("code size k")
    axes[0][1].set_ylabel("linear-probe test accuracy")
    axes[0][1].set_title("linear probe vs code size", fontsize=9)
    fig_path = F.save(fig, ctx.figure("overcomplete"))
    checks = {}
    for name in probes:
        checks[f"{name}: overcomplete's OOD/in-distribution ratio below the undercomplete's"] = (
            ratios[(over_k, name)] < ratios[(under_k, name)])
        checks[f"{name}: overcomplete reconstructs it nearly as well as digits (ratio < 2)"] = ratios[(over_k, name)] < 2
    numbers = {f"k={r['code size']} {key}": v for r in rows for key, v in r.items() if key != "code size"}
    numbers.update({f"probe accuracy k={k}": a for k, a in zip(sizes, acc)})
    absolute = "; ".join(f"{name} MSE k={over_k} {rows[1][f'{name} MSE']:.4f} vs k={under_k} {rows[0][f'{name} MSE']:.4f}"
                         for name in probes)
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: every check. {describe_checks(checks)}. "
                  f"For reference, absolute errors on the OOD sets: {absolute}.", table=rows)


# ---- 4. deep vs shallow -----------------------------------------------------------------------------------
@claim("deep-codes", number=4, title="Deep is better: 2-D codes of a 1- vs 3-hidden-layer autoencoder",
       quote="Deep autoencoders give much better codes than shallow ones: in 2-D the classes separate.",
       experiment="Two AEs with a 2-D code: 784-256-2 (one hidden layer) and 784-512-256-128-2 (three), same "
                  "epochs and seed. Class separation = 5-nearest-neighbour accuracy of the test codes (train codes "
                  "as reference), and the latent maps.")
def deep_codes(ctx: Context) -> Result:
    train, test = _train_set(ctx), _test_set(ctx)
    fig, axes = F.new_figure(1, 2)
    rows = []
    for i, (name, hidden) in enumerate((("shallow", (256,)), ("deep", (512, 256, 128)))):
        m = ctx.train(f"ae2-{name}", "ae", train, settings={"arch": "mlp", "hidden": hidden, "latent_dim": 2},
                      epochs=_epochs(ctx))
        codes, y = lt.encode_dataset(m, test)
        tr, ty = lt.encode_dataset(m, train, ctx.pick(300, 5000, 10000), seed=ctx.seed)
        rows.append({"model": name, "hidden": "-".join(map(str, hidden)), "kNN accuracy (2-D)":
                     knn_accuracy(tr, ty, codes, y), "recon MSE": float(A.reconstruction_errors(m, test).mean())})
        F.scatter(axes[0][i], codes.numpy(), y, f"{name} ({rows[-1]['hidden']}): kNN {rows[-1]['kNN accuracy (2-D)']:.2f}")
    fig_path = F.save(fig, ctx.figure("deep_codes"))
    checks = {"deep separates classes better (kNN)": rows[1]["kNN accuracy (2-D)"] > rows[0]["kNN accuracy (2-D)"],
              "deep reconstructs better": rows[1]["recon MSE"] < rows[0]["recon MSE"]}
    numbers = {f"{r['model']} {k}": v for r in rows for k, v in r.items() if k not in ("model", "hidden")}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: both checks. {describe_checks(checks)}.",
                  table=rows)


# ---- 5. sparse, denoising, contractive --------------------------------------------------------------------
@claim("sparse", number=5, title="Sparse AE: average activations near rho",
       quote="The sparsity penalty sum_j KL(rho || rho_hat_j) keeps the average activation rho_hat_j of every "
             "hidden unit near a small rho, so each unit responds to few inputs and learns a localised feature.",
       experiment="`sparse-ae` (one layer of sigmoid units, rho = 0.05, beta = 3, MSE) against the same network "
                  "with no penalty (`ae`, sigmoid code). Numbers: mean and median rho_hat_j over the test set, the "
                  "share of units with rho_hat_j in [rho/2, 2 rho], the plain AE's mean activation. Figures: the "
                  "activation histograms and the features (what each unit draws).")
def sparse(ctx: Context) -> Result:
    train, test = _train_set(ctx), _test_set(ctx)
    k, rho = ctx.pick(32, 196, 196), 0.05
    base = {"arch": "mlp", "hidden": (), "latent_dim": k, "latent_activation": "sigmoid", "loss": "mse"}
    ep = _epochs(ctx, 1, 8, 20)
    sp = ctx.train("sparse", "sparse-ae", train, settings={**base, "rho": rho, "beta": 3.0}, epochs=ep)
    plain = ctx.train("sparse-plain", "ae", train, settings=base, epochs=ep)
    h_sp, h_pl = A.encode_dataset(sp, test), A.encode_dataset(plain, test)  # (N, k) in (0, 1)
    rho_hat, rho_pl = h_sp.mean(0), h_pl.mean(0)
    near = float(((rho_hat >= rho / 2) & (rho_hat <= 2 * rho)).float().mean())
    fig, axes = F.new_figure(1, 3)
    axes[0][0].hist([h_pl.flatten().numpy(), h_sp.flatten().numpy()], bins=30, label=["plain", "sparse"], log=True)
    axes[0][0].legend(fontsize=7)
    axes[0][0].set_title("code activations (test)", fontsize=9)
    axes[0][1].hist([rho_pl.numpy(), rho_hat.numpy()], bins=30, label=["plain", "sparse"])
    axes[0][1].axvline(rho, color="k", ls="--", lw=0.8)
    axes[0][1].legend(fontsize=7)
    axes[0][1].set_title("rho_hat_j per unit (dashed: rho)", fontsize=9)
    F.images(axes[0][2], A.unit_images(sp, 49), 7, "sparse AE features")
    fig_path = F.save(fig, ctx.figure("sparse"))
    numbers = {"rho": rho, "mean rho_hat": float(rho_hat.mean()), "median rho_hat": float(rho_hat.median()),
               "share of units with rho_hat in [rho/2, 2 rho]": near,
               "plain AE mean activation": float(rho_pl.mean()),
               "sparse recon MSE": float(A.reconstruction_errors(sp, test).mean()),
               "plain recon MSE": float(A.reconstruction_errors(plain, test).mean())}
    checks = {"mean rho_hat within [rho/2, 2 rho]": rho / 2 <= numbers["mean rho_hat"] <= 2 * rho,
              "most units near rho (share > 0.5)": near > 0.5,
              "plain AE's units far more active (> 2x)": numbers["plain AE mean activation"] > 2 * numbers["mean rho_hat"]}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: all three. {describe_checks(checks)}.")


def _nearest_distance(x: torch.Tensor, ref: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """Euclidean distance (in [0, 1] pixels) from each image to its nearest reference image: (N,)."""
    a, b = x.flatten(1), ref.flatten(1)
    return torch.cat([torch.cdist(a[i:i + chunk], b).min(1).values for i in range(0, len(a), chunk)])


@claim("denoising", number=5, title="Denoising AE: corrupted inputs are mapped back toward the data",
       quote="A denoising autoencoder learns to map a corrupted example back to the data manifold: its output "
             "is closer to the training data than its input.",
       experiment="`denoising-ae` (784-256-64 MLP, Gaussian noise sigma = 0.5) and the same `ae` trained without "
                  "noise; test digits corrupted with sigma = 0.5. Numbers before (the noisy input) and after (the "
                  "reconstruction): the MNIST classifier's mean probability of the true digit and the mean Euclidean "
                  "distance to the nearest training image.")
def denoising(ctx: Context) -> Result:
    train, test = _train_set(ctx), _test_set(ctx, ctx.pick(100, 1000, 2000))
    base = {"arch": "mlp", "hidden": (256,), "latent_dim": 64}
    ep = _epochs(ctx, 1, 8, 20)
    dae = ctx.train("dae", "denoising-ae", train, settings={**base, "noise": "gaussian", "noise_level": 0.5}, epochs=ep)
    ae = ctx.train("dae-plain", "ae", train, settings=base, epochs=ep)
    clf = ctx.classifier("mnist")
    ref = train.x[:ctx.pick(300, 5000, 10000)].float() / 255
    d_dae, d_ae = A.denoise(dae, test.x, "gaussian:0.5", seed=ctx.seed), A.denoise(ae, test.x, "gaussian:0.5", seed=ctx.seed)

    def conf(x: torch.Tensor) -> float:
        """Mean classifier probability of the image's true digit (max p is fooled: the classifier is
        overconfident on noise)."""
        with torch.no_grad():
            return float(clf.probs(x).gather(1, test.y[:, None]).mean())

    numbers = {"clean: p(true digit)": conf(d_dae.clean),
               "noisy: p(true digit)": conf(d_dae.noisy),
               "DAE output: p(true digit)": conf(d_dae.denoised),
               "plain AE output: p(true digit)": conf(d_ae.denoised),
               "clean: distance to nearest training image": float(_nearest_distance(d_dae.clean, ref).mean()),
               "noisy: distance to nearest training image": float(_nearest_distance(d_dae.noisy, ref).mean()),
               "DAE output: distance to nearest training image": float(_nearest_distance(d_dae.denoised, ref).mean()),
               "plain AE output: distance to nearest training image": float(_nearest_distance(d_ae.denoised, ref).mean()),
               "DAE PSNR noisy -> denoised": f"{d_dae.metrics['psnr_noisy']:.2f} -> {d_dae.metrics['psnr_denoised']:.2f}"}
    fig, axes = F.new_figure(1, 1, 6)
    F.images(axes[0][0], torch.cat([d_dae.clean[:12], d_dae.noisy[:12], d_dae.denoised[:12], d_ae.denoised[:12]]), 12,
             "rows: clean, noisy (sigma 0.5), denoising AE, plain AE")
    fig_path = F.save(fig, ctx.figure("denoising"))
    checks = {"DAE output more recognisable as its digit than its input":
                  numbers["DAE output: p(true digit)"] > numbers["noisy: p(true digit)"],
              "DAE output closer to the training data than its input":
                  numbers["DAE output: distance to nearest training image"]
                  < numbers["noisy: distance to nearest training image"],
              "DAE output closer to the data than the plain AE's":
                  numbers["DAE output: distance to nearest training image"]
                  < numbers["plain AE output: distance to nearest training image"]}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: all three. {describe_checks(checks)}.")


@claim("contractive", number=5, title="Contractive AE: a code insensitive to small input changes",
       quote="The contractive penalty lambda ||J_f(x)||_F^2 makes the code locally invariant: small "
             "perturbations of the input barely move the code.",
       experiment="`contractive-ae` (one layer of 64 sigmoid units, lambda = 0.1, closed-form Jacobian) against "
                  "the same network without the penalty (`ae`). Numbers on test images: ||J_f(x)||_F (exact, by "
                  "vector-Jacobian products), the code change ||h(x + e) - h(x)|| / ||e|| for Gaussian e "
                  "(sigma = 0.05), and that change divided by the codes' spread (mean per-unit std), so that a "
                  "code that merely shrinks does not count as contractive.")
def contractive(ctx: Context) -> Result:
    from .. import losses
    train, test = _train_set(ctx), _test_set(ctx, ctx.pick(100, 500, 1000))
    base = {"arch": "mlp", "hidden": (), "latent_dim": 64, "latent_activation": "sigmoid"}
    ep = _epochs(ctx, 1, 8, 20)
    cae = ctx.train("cae", "contractive-ae", train, settings={**base, "lam": 0.1}, epochs=ep)
    ae = ctx.train("cae-plain", "ae", train, settings=base, epochs=ep)
    g = torch.Generator().manual_seed(ctx.seed)
    x = test.x.float() / 255
    e = 0.05 * torch.randn(x.shape, generator=g)
    rows = []
    for name, m in (("contractive", cae), ("plain", ae)):
        xin = x.clone().requires_grad_(True)
        with torch.enable_grad():
            h = m.encode(xin)
            fro = float(losses.jacobian_frobenius_sq(h, xin).detach().sqrt())
        with torch.no_grad():
            h0, h1 = m.encode(x), m.encode(x + e)
            change = float(((h1 - h0).norm(dim=1) / e.flatten(1).norm(dim=1)).mean())
            spread = float(h0.std(0).mean())
        rows.append({"model": name, "||J||_F": fro, "code change per input change": change,
                     "code spread": spread, "relative code change": change / max(spread, 1e-12),
                     "recon MSE": float(A.reconstruction_errors(m, test).mean())})
    fig, axes = F.new_figure(1, 2)
    F.bars(axes[0][0], [r["model"] for r in rows], [r["||J||_F"] for r in rows], "||J_f(x)||_F (test mean)")
    F.bars(axes[0][1], [r["model"] for r in rows], [r["relative code change"] for r in rows],
           "code change / input change / code spread")
    fig_path = F.save(fig, ctx.figure("contractive"))
    c, p = rows
    checks = {"smaller Jacobian norm": c["||J||_F"] < p["||J||_F"],
              "smaller code change relative to the codes' spread": c["relative code change"] < p["relative code change"]}
    numbers = {f"{r['model']} {k}": v for r in rows for k, v in r.items() if k != "model"}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: both. {describe_checks(checks)}.", table=rows)


# ---- 6. linear AE = PCA -----------------------------------------------------------------------------------
@claim("linear-pca", number=6, title="A linear autoencoder spans the principal subspace (= PCA)",
       quote="An autoencoder with linear activations and squared error learns the same subspace as PCA.",
       experiment="`genzoo.applications.linear_pca_check`: a linear AE (k codes, MSE, Adam + cosine schedule) on "
                  "scikit-learn's 8x8 digits, against scikit-learn's PCA with the same k: MSE ratio and the largest "
                  "principal angle between the decoder's span and the top-k principal directions.")
def linear_pca(ctx: Context) -> Result:
    k = ctx.pick(4, 10, 16)
    r = A.linear_pca_check("digits", k=k, epochs=ctx.pick(2, 300, 500), root=ctx.root, seed=ctx.seed)
    fig, axes = F.new_figure(1, 1, 4)
    axes[0][0].bar(range(1, len(r["angles_deg"]) + 1), r["angles_deg"])
    axes[0][0].set_xlabel("principal angle index")
    axes[0][0].set_ylabel("degrees")
    axes[0][0].set_title(f"decoder span vs top-{k} PCA (MSE ratio {r['mse_ratio']:.3f})", fontsize=9)
    fig_path = F.save(fig, ctx.figure("linear_pca"))
    checks = {"MSE within 5% of PCA's": r["mse_ratio"] < 1.05, "largest principal angle < 10 degrees": r["max_angle_deg"] < 10}
    numbers = {"k": k, "linear AE MSE": r["ae_mse"], "PCA MSE": r["pca_mse"], "MSE ratio": r["mse_ratio"],
               "largest principal angle (deg)": r["max_angle_deg"], "epochs": r["epochs"]}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: both. {describe_checks(checks)}.")


# ---- 11. unsupervised pretraining -------------------------------------------------------------------------
@claim("pretraining", number=11, title="Unsupervised pretraining helps when labels are few",
       quote="Pretrain an autoencoder on unlabelled data, then fine-tune its encoder with few labels: better "
             "than training the same network from scratch on those labels.",
       experiment="`genzoo.applications.finetune`: the encoder of claim 1's L = 20 AE plus a linear head, trained "
                  "on 100 balanced labelled images (random 2-pixel shifts as augmentation, the control it already "
                  "applies to both), against the same classifier from a fresh initialisation, same steps and seed.")
def pretraining(ctx: Context) -> Result:
    ae, _ = latent_pair(ctx, 20)
    train, test = _train_set(ctx), _test_set(ctx)
    r = A.finetune(copy.deepcopy(ae).requires_grad_(True), train, test, labels=100, seed=ctx.seed,
                   steps=ctx.pick(5, 600, 1500))
    fig, axes = F.new_figure(1, 1, 3.5)
    F.bars(axes[0][0], ["pretrained", "scratch"], [r["pretrained_error"], r["scratch_error"]], "test error, 100 labels")
    fig_path = F.save(fig, ctx.figure("pretraining"))
    checks = {"pretrained encoder has lower test error, by >= 1 point": r["pretrained_error"] < r["scratch_error"] - 0.01}
    numbers = {"labels": 100, "steps": r["steps"], "pretrained test error": r["pretrained_error"],
               "scratch test error": r["scratch_error"]}
    return Result(numbers, [fig_path], verdict_of(checks), describe_checks(checks) + ".")


# ---- 12. attribute vectors and latent arithmetic ----------------------------------------------------------
@claim("attributes", number=12, title="Latent arithmetic and attribute vectors",
       quote="Directions in latent space carry attributes: add the mean code of the images with an attribute "
             "minus the mean of those without ('make blonde', 'add glasses') and decode.",
       experiment="MNIST's classes serve as attributes (CelebA's 40 attributes when the `celeba` source has the "
                  "files: `genzoo latent shift RUN --attribute Blond_Hair`). Claim 1's L = 20 VAE: direction = mean "
                  "code of digit 7 - mean code of the other digits; test images of other digits are shifted by "
                  "alpha times it. Number: the share the classifier reads as 7 at each alpha.")
def attributes(ctx: Context) -> Result:
    _, vae = latent_pair(ctx, 20)
    test = _test_set(ctx)
    clf = ctx.classifier("mnist")
    target = 7
    codes, y = lt.encode_dataset(vae, test)
    d = lt.class_direction(codes, y, target)
    others = test.subset(torch.nonzero(test.y != target).flatten()[:ctx.pick(20, 300, 1000)])
    alphas = [0.0, 0.5, 1.0, 1.5, 2.0]
    imgs = lt.shift(others.x, d, alphas, model=vae)  # (N, A, C, H, W)
    with torch.no_grad():
        share = [float((clf.probs(imgs[:, i]).argmax(1) == target).float().mean()) for i in range(len(alphas))]
    fig, axes = F.new_figure(1, 2, 4)
    F.images(axes[0][0], imgs[:8].reshape(-1, *imgs.shape[2:]), len(alphas), f"alpha = {alphas} toward {target}")
    axes[0][1].plot(alphas, share, "o-")
    axes[0][1].set_xlabel("alpha")
    axes[0][1].set_ylabel(f"share read as {target}")
    axes[0][1].set_title("attribute vector strength", fontsize=9)
    fig_path = F.save(fig, ctx.figure("attributes"))
    checks = {f"most shifted images read as {target} at alpha = 2 (> 0.5)": share[-1] > 0.5,
              "the share grows with alpha (alpha=2 at least 0.3 above alpha=0)": share[-1] > share[0] + 0.3}
    numbers = {f"share read as {target} at alpha={a}": s for a, s in zip(alphas, share)}
    return Result(numbers, [fig_path], verdict_of(checks), f"Rule: both. {describe_checks(checks)}.")
