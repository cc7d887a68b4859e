"""The autoencoder family: ae, sparse-ae, denoising-ae, contractive-ae and the lecture's conv AE.

Loss terms are checked against independent computations: the sparse KL by hand, the contractive penalty
against torch.autograd's Jacobian, the corruption processes against their known statistics, the lecture's
model against its Keras summary table, the linear AE against scikit-learn's PCA.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

import genzoo
import genzoo.data as gd
from genzoo.models.autoencoder import DeadUnitMonitor, corrupt, parse_noise
from genzoo.models.base import Batch
from genzoo.train import build_model, train
from genzoo.train.rundir import read_metrics

AE_MODELS = ["ae", "sparse-ae", "denoising-ae", "contractive-ae"]


@pytest.fixture(scope="module")
def mini():
    return gd.load("mnist-mini", "train")


def fixed_batch(model, ds, n=32):
    return Batch(model.prepare(ds.x[:n]), ds.y[:n])


def seeded_loss(model, batch, seed=123):
    torch.manual_seed(seed)  # the denoising AE's corruption and the Hutchinson estimator draw noise
    return model.loss(batch)[0].item()


# ---- every model: builds, learns, saves and loads -------------------------------------------------------
@pytest.mark.parametrize("name", AE_MODELS)
def test_train_steps_lower_the_loss_on_a_fixed_batch(name, mini):
    torch.manual_seed(0)
    model = build_model(name, mini, preset="tiny")
    batch = fixed_batch(model, mini)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = seeded_loss(model, batch)
    for _ in range(10):
        opt.zero_grad()
        torch.manual_seed(123)
        model.loss(batch)[0].backward()
        opt.step()
    assert seeded_loss(model, batch) < before


@pytest.mark.parametrize("name", AE_MODELS)
def test_save_load_round_trip_gives_identical_outputs(name, tiny_train, mini):
    model, run = tiny_train(name, steps=5)
    loaded = genzoo.load(run)
    assert type(loaded) is type(model) and loaded.config == model.config
    x = model.prepare(mini.x[:8])
    with torch.no_grad():
        assert torch.equal(model.reconstruct(x), loaded.reconstruct(x))
        g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        assert torch.equal(model.sample(4, generator=g1), loaded.sample(4, generator=g2))
    # the loss terms every AE logs, dead units included, are in metrics.csv
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"recon", "dead_units", "loss"} <= set(header)


def test_conv_variants_build_and_reconstruct_shapes(mini):
    for preset in ("conv", "conv-pool"):
        m = build_model("ae", mini, preset=preset)
        assert m.reconstruct(m.prepare(mini.x[:3])).shape == (3, 1, 28, 28)
    pool = build_model("ae", mini, preset="conv-pool")
    kinds = {type(l).__name__ for l in list(pool.encoder) + list(pool.decoder)}
    assert {"MaxPool2d", "Upsample"} <= kinds and "ConvTranspose2d" not in kinds


def test_tied_weights_decoder_is_the_transposed_encoder(mini):
    m = build_model("ae", mini, hidden=(), latent_dim=6, tied=True, loss="bce")
    W, b = m.encoder[1][0].weight, m.encoder[1][0].bias  # (6, 784)
    x = m.prepare(mini.x[:4])
    h = m.encode(x)
    torch.testing.assert_close(h, x.flatten(1) @ W.T + b)
    torch.testing.assert_close(m.reconstruct(x).flatten(1), torch.sigmoid(h @ W + m.decoder_bias))
    assert sum(p.numel() for p in m.parameters()) == 6 * 784 + 6 + 784


@pytest.mark.parametrize("bad, msg", [
    (dict(name="ae", tied=True), "tied=true"),
    (dict(name="ae", arch="lecture-conv", latent_dim=32), "latent_dim=49"),
    (dict(name="sparse-ae", latent_activation="relu"), "sigmoid"),
    (dict(name="contractive-ae", hidden=(16,), jacobian="closed-form"), "one-layer sigmoid"),
    (dict(name="contractive-ae", arch="conv", hidden=(8, 8)), "batch_norm=false"),
    (dict(name="denoising-ae", noise="masking", noise_level=1.5), "probability"),
])
def test_invalid_configs_are_clear_errors(bad, msg, mini):
    bad = dict(bad)
    with pytest.raises(ValueError, match=msg):
        build_model(bad.pop("name"), mini, **bad)


# ---- the lecture's convolutional AE against its Keras summary ------------------------------------------
KERAS_TABLE = [  # (Keras layer, output shape (H, W, C) or (F,), parameters incl. BN moving statistics)
    ("Conv2D", (26, 26, 32), 320),
    ("MaxPooling2D", (13, 13, 32), 0),
    ("Conv2D", (11, 11, 64), 18_496),
    ("MaxPooling2D", (5, 5, 64), 0),
    ("Conv2D", (3, 3, 64), 36_928),
    ("Flatten", (576,), 0),
    ("Dense", (49,), 28_273),
    ("Reshape", (7, 7, 1), 0),
    ("Conv2DTranspose", (14, 14, 64), 640),
    ("BatchNormalization", (14, 14, 64), 256),
    ("Conv2DTranspose", (28, 28, 64), 36_928),
    ("BatchNormalization", (28, 28, 64), 256),
    ("Conv2DTranspose", (28, 28, 32), 18_464),
    ("Conv2D", (28, 28, 1), 289),
]


def test_lecture_conv_matches_the_keras_table_layer_by_layer(mini):
    m = build_model("ae", mini, preset="lecture-conv")
    layers = [l for l in list(m.encoder) + list(m.decoder) if not isinstance(l, torch.nn.ReLU)]
    assert len(layers) == len(KERAS_TABLE)
    shapes = []
    hooks = [l.register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape[1:]))) for l in layers]
    m.eval()
    with torch.no_grad():
        m.reconstruct(m.prepare(mini.x[:2]))
    for h in hooks:
        h.remove()
    for layer, shape, (kname, kshape, kparams) in zip(layers, shapes, KERAS_TABLE):
        keras_chw = kshape if len(kshape) == 1 else (kshape[2], kshape[0], kshape[1])
        assert shape == keras_chw, (kname, shape, kshape)
        stats = sum(b.numel() for n, b in layer.named_buffers() if n in ("running_mean", "running_var"))
        assert sum(p.numel() for p in layer.parameters()) + stats == kparams, kname
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert trainable == 140_594
    bn_stats = sum(b.numel() for n, b in m.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert trainable + bn_stats == 140_850
    assert isinstance(m.latent_act, torch.nn.ReLU)  # Dense(49, relu)
    assert isinstance(build_model("ae", mini, preset="lecture-conv-linear").latent_act, torch.nn.Identity)


def test_lecture_conv_uses_keras_initialisation(mini):
    m = build_model("ae", mini, preset="lecture-conv")
    dense = m.encoder[-1]
    assert torch.count_nonzero(dense.bias) == 0
    limit = math.sqrt(6 / (576 + 49))  # Glorot uniform
    assert dense.weight.abs().max() <= limit and dense.weight.abs().max() > 0.9 * limit


# ---- dead latent units ------------------------------------------------------------------------------------
class FakeTrainer:
    def __init__(self, model):
        self.model, self.messages = model, []

    def warn(self, msg):
        self.messages.append(msg)


def test_dead_unit_monitor_warns_once_per_new_count(mini):
    m = build_model("ae", mini, preset="tiny")
    t, mon = FakeTrainer(m), DeadUnitMonitor()
    for dead in (0.0, 0.4, 2.0, 2.2, 5.0):
        mon.on_log(t, {"dead_units": dead})
    assert len(t.messages) == 2 and t.messages[0].startswith("2 of 8") and t.messages[1].startswith("5 of 8")


def test_training_logs_and_warns_about_dead_relu_bottleneck(tmp_path, mini):
    import json
    m = build_model("ae", mini, preset="tiny", latent_activation="relu")
    with torch.no_grad():  # a huge negative bias: every bottleneck ReLU outputs 0 for every input, forever
        m.encoder[-1][-1].bias.fill_(-1e4)
    out = tmp_path / "dead"
    train(m, mini, out=out, steps=5, settings={"log_every": 5, "sample_every": 0, "progress": False})
    info = json.loads((out / "run.json").read_text())
    assert any(w.startswith("8 of 8 latent units are dead") for w in info["warnings"])
    rows = [r for r in read_metrics(out) if r.get("dead_units")]
    assert float(rows[0]["dead_units"]) == 8


# ---- sparse AE ------------------------------------------------------------------------------------------
def kl_by_hand(rho, rho_hat):
    return sum(rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r)) for r in rho_hat)


def test_sparse_kl_term_matches_a_hand_computation(mini):
    m = build_model("sparse-ae", mini, preset="tiny", rho=0.1, beta=2.0)
    batch = fixed_batch(m, mini, 16)
    with torch.no_grad():
        total, terms = m.loss(batch)
        h = torch.sigmoid(batch.x.flatten(1) @ m.encoder[1][0].weight.T + m.encoder[1][0].bias).double()
    rho_hat = [float(h[:, j].mean()) for j in range(h.shape[1])]
    expected = kl_by_hand(0.1, rho_hat)
    assert float(terms["sparsity_kl"]) == pytest.approx(expected, rel=1e-5)
    assert float(total) == pytest.approx(float(terms["recon"]) + 2.0 * expected, rel=1e-5)
    assert float(terms["mean_activation"]) == pytest.approx(float(h.mean()), rel=1e-5)


def test_sparse_running_estimate_is_an_exponential_moving_average(mini):
    m = build_model("sparse-ae", mini, preset="tiny", rho=0.05, rho_estimate="running", rho_momentum=0.9)
    b1, b2 = fixed_batch(m, mini, 16), Batch(m.prepare(mini.x[16:48]), None)
    m.train()
    with torch.no_grad():
        m.loss(b1)
        _, terms = m.loss(b2)
        mean1, mean2 = m.encode(b1.x).mean(0).double(), m.encode(b2.x).mean(0).double()
    run1 = 0.9 * 0.05 + 0.1 * mean1
    run2 = 0.9 * run1 + 0.1 * mean2
    torch.testing.assert_close(m.rho_running.double(), run2, rtol=1e-5, atol=1e-7)
    assert float(terms["sparsity_kl"]) == pytest.approx(kl_by_hand(0.05, run2.tolist()), rel=1e-4)
    m.eval()  # validation does not move the running estimate
    with torch.no_grad():
        m.loss(b1)
    torch.testing.assert_close(m.rho_running.double(), run2, rtol=1e-5, atol=1e-7)


def test_sparse_l1_variant_is_the_mean_code_l1_norm(mini):
    m = build_model("sparse-ae", mini, preset="tiny", sparsity="l1", latent_activation="relu", beta=0.5)
    batch = fixed_batch(m, mini, 8)
    with torch.no_grad():
        total, terms = m.loss(batch)
        h = m.encode(batch.x)
    by_hand = sum(abs(float(v)) for v in h.flatten()) / 8
    assert float(terms["l1"]) == pytest.approx(by_hand, rel=1e-5)
    assert float(total) == pytest.approx(float(terms["recon"]) + 0.5 * by_hand, rel=1e-5)


def test_sparse_training_pulls_mean_activation_towards_rho(tiny_train):
    from genzoo.applications import encode_dataset
    model, run = tiny_train("sparse-ae", steps=150, rho=0.05, beta=10.0, lr=3e-3)
    rows = [r for r in read_metrics(run) if r.get("mean_activation")]
    assert float(rows[0]["mean_activation"]) > 0.2  # starts near 0.5: sigmoid of pre-activations near 0
    per_unit = encode_dataset(model, gd.load("mnist-mini", "test")).mean(0)  # rho_hat_j on unseen images
    assert float(per_unit.mean()) < 0.08
    assert abs(float(per_unit.median()) - 0.05) < 0.01


# ---- contractive AE ---------------------------------------------------------------------------------------
def autograd_frobenius(model, x):
    """Mean over examples of ||J||_F^2, J from torch.autograd.functional.jacobian, one example at a time."""
    vals = []
    for xi in x:
        J = jacobian(lambda v: model.encode(v[None])[0], xi)  # (k, C, H, W)
        vals.append(float(J.double().pow(2).sum()))
    return float(np.mean(vals))


def test_contractive_closed_form_matches_the_autograd_jacobian(mini):
    m = build_model("contractive-ae", mini, preset="tiny", lam=0.3)
    assert m.config.jacobian_method == "closed-form"
    batch = fixed_batch(m, mini, 6)
    total, terms = m.loss(batch)
    ref = autograd_frobenius(m, batch.x)
    assert terms["jacobian_fro2"].item() == pytest.approx(ref, rel=1e-4)
    assert total.item() == pytest.approx(terms["recon"].item() + 0.3 * ref, rel=1e-5)


def test_contractive_exact_penalty_for_a_deep_encoder_matches_autograd(mini):
    m = build_model("contractive-ae", mini, hidden=(24,), latent_dim=5, activation="tanh")
    assert m.config.jacobian_method == "exact"
    batch = fixed_batch(m, mini, 4)
    _, terms = m.loss(batch)
    assert terms["jacobian_fro2"].item() == pytest.approx(autograd_frobenius(m, batch.x), rel=1e-4)
    # the penalty is differentiable (double backprop): its gradient w.r.t. the weights is finite, non-zero
    m.zero_grad()
    terms["jacobian_fro2"].backward()
    g = m.encoder[1][0].weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # validation (no_grad) computes the same value
    with torch.no_grad():
        _, vterms = m.val_loss(batch)
    assert float(vterms["jacobian_fro2"]) == pytest.approx(terms["jacobian_fro2"].item(), rel=1e-5)


def test_contractive_estimate_is_unbiased(mini):
    m = build_model("contractive-ae", mini, hidden=(16,), latent_dim=6, jacobian="estimate", jacobian_samples=1)
    batch = fixed_batch(m, mini, 4)
    exact = autograd_frobenius(m, batch.x)
    torch.manual_seed(0)
    draws = np.array([m.loss(batch)[1]["jacobian_fro2"].item() for _ in range(400)])
    se = draws.std(ddof=1) / math.sqrt(len(draws))
    assert abs(draws.mean() - exact) < 4 * se
    assert draws.std() > 0  # it really is random


def test_contractive_penalty_shrinks_the_jacobian(mini):
    def fit(lam):
        s = {"lam": lam, "loss": "mse", "lr": 3e-3, "log_every": 20, "sample_every": 0, "progress": False,
             "validate": False}
        return train("contractive-ae", mini, preset="tiny", settings=s, steps=200, seed=0)

    weak, strong = fit(0.0), fit(1000.0)
    batch = Batch(weak.prepare(gd.load("mnist-mini", "test").x[:256]), None)
    j_weak, j_strong = (m.val_loss(batch)[1]["jacobian_fro2"].item() for m in (weak, strong))
    assert j_strong < 0.1 * j_weak


# ---- denoising AE: the corruption processes ----------------------------------------------------------------
def test_gaussian_corruption_statistics():
    x = torch.full((200, 1, 28, 28), 0.3)
    n = x.numel()
    d = (corrupt(x, "gaussian", 0.5, torch.Generator().manual_seed(0)) - x).double()
    assert abs(float(d.mean())) < 5 * 0.5 / math.sqrt(n)
    # the sample variance of n normal draws has standard error sigma^2 sqrt(2 / (n - 1))
    assert abs(float(d.var()) - 0.25) < 5 * 0.25 * math.sqrt(2 / (n - 1))


def test_masking_corruption_statistics():
    x = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.1  # no zeros
    out = corrupt(x, "masking", 0.3, torch.Generator().manual_seed(2))
    n = x.numel()
    zeroed = (out == 0)
    assert abs(float(zeroed.double().mean()) - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    assert torch.equal(out[~zeroed], x[~zeroed])  # the other inputs are untouched


def test_salt_and_pepper_corruption_statistics():
    x = torch.full((200, 1, 28, 28), 0.5)
    out = corrupt(x, "salt-pepper", 0.2, torch.Generator().manual_seed(3))
    n = x.numel()
    hit = out != 0.5
    k = int(hit.sum())
    assert abs(k / n - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)
    assert set(out[hit].unique().tolist()) == {0.0, 1.0}
    assert abs(float((out[hit] == 1).double().mean()) - 0.5) < 5 * math.sqrt(0.25 / k)


def test_denoising_loss_compares_the_noisy_reconstruction_with_the_clean_input(mini):
    from genzoo import losses
    m = build_model("denoising-ae", mini, preset="tiny", noise="masking", noise_level=0.5)
    batch = fixed_batch(m, mini, 8)
    torch.manual_seed(7)
    total, _ = m.loss(batch)
    torch.manual_seed(7)
    noisy = corrupt(batch.x, "masking", 0.5)
    expected = losses.bce_logits_sum(m.decode_logits(m.encode(noisy)), batch.x)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert not torch.equal(noisy, batch.x)
    # reconstruct() itself does not corrupt
    torch.testing.assert_close(m.reconstruct(batch.x), torch.sigmoid(m.decode_logits(m.encode(batch.x))))


def test_parse_noise():
    assert parse_noise("gaussian:0.5") == ("gaussian", 0.5)
    assert parse_noise("salt-pepper:0.1") == ("salt-pepper", 0.1)
    for bad in ("gaussian", "blur:0.3", "masking:x", "masking:1.2"):
        with pytest.raises(ValueError):
            parse_noise(bad)


# ---- linear AE = PCA ------------------------------------------------------------------------------------------
def test_linear_autoencoder_spans_the_pca_subspace_on_digits():
    from genzoo.applications import linear_pca_check
    r = linear_pca_check("digits", k=10, epochs=400, lr=1e-2, seed=0)
    assert r["mse_ratio"] < 1.02  # ae_mse within 2% of PCA's
    assert r["mse_ratio"] > 1 - 1e-6  # and, being rank-k linear, never better than PCA on its own data
    assert r["max_angle_deg"] < 5.0
