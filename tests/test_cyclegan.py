"""CycleGAN (genzoo/models/cyclegan.py): the losses against a hand computation, the image pool (capacity, the
50/50 mix, saved and restored, against a one-at-a-time reference), the constant-then-linear LR on both phases,
translation both ways, exact resume, a sync-free step, and a short run lowering the held-out cycle L1."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import genzoo
import genzoo.data as gd
from genzoo.models.base import Batch
from genzoo.models.cyclegan import CycleGANConfig, ImagePool, cycle_loss, identity_loss
from genzoo.train import build_model
from genzoo.train import rundir as R

FAST = {"log_every": 1, "sample_every": 0, "progress": False, "validate": False}


def _model(**kw):
    ds = gd.load("mnist-mini-thick", "test")
    return build_model("cyclegan", ds, preset="tiny", **kw), ds


def _batch(model, ds, n=6):
    return Batch(model.prepare(ds.x[:n]), ds.y[:n], model.prepare(ds.domain_b.x[:n]), ds.domain_b.y[:n])


def test_cycle_and_identity_losses_are_mean_absolute_errors():
    x = torch.tensor([[[[0.0, 1.0], [-1.0, 0.5]]]])
    y = torch.tensor([[[[1.0, -1.0], [-1.0, 0.0]]]])
    assert cycle_loss(x, y).item() == pytest.approx((1 + 2 + 0 + 0.5) / 4)
    assert identity_loss(x, y).item() == pytest.approx(0.875)


@pytest.mark.parametrize("kw", [{}, {"lambda_a": 3.0, "lambda_b": 7.0, "lambda_identity": 0.2, "gan_weight": 0.5},
                                {"lambda_a": 0.0, "lambda_b": 0.0}, {"norm": "batch", "d_norm": "batch"}])
def test_generator_loss_matches_a_hand_computation(kw):
    torch.manual_seed(0)
    m, ds = _model(**kw)
    m.eval()  # no pool, no dropout: the networks are plain functions
    b = _batch(m, ds)
    with torch.no_grad():
        total, terms = m.g_loss(b)
        a, bb = b.x.numpy(), b.target.numpy()
        G = lambda t: m.gen_ab(torch.from_numpy(t)).detach().numpy()  # noqa: E731
        Fn = lambda t: m.gen_ba(torch.from_numpy(t)).detach().numpy()  # noqa: E731
        DA = lambda t: m.disc_a(torch.from_numpy(t)).detach().numpy()  # noqa: E731
        DB = lambda t: m.disc_b(torch.from_numpy(t)).detach().numpy()  # noqa: E731
    c = m.config
    gan = np.mean((DB(G(a)) - 1) ** 2) + np.mean((DA(Fn(bb)) - 1) ** 2)
    cyc_a, cyc_b = np.mean(np.abs(Fn(G(a)) - a)), np.mean(np.abs(G(Fn(bb)) - bb))
    ref = c.gan_weight * gan + c.lambda_a * cyc_a + c.lambda_b * cyc_b
    if c.lambda_identity and (c.lambda_a or c.lambda_b):
        ref += c.lambda_identity * (c.lambda_b * np.mean(np.abs(G(bb) - bb)) + c.lambda_a * np.mean(np.abs(Fn(a) - a)))
    else:
        assert "identity_a" not in terms
    assert total.item() == pytest.approx(ref, rel=1e-4, abs=1e-5)
    assert terms["cycle_a"].item() == pytest.approx(cyc_a, rel=1e-4)


def test_discriminator_loss_is_half_the_lsgan_loss_of_each_discriminator():
    torch.manual_seed(0)
    m, ds = _model()
    m.eval()
    b = _batch(m, ds)
    with torch.no_grad():
        m.g_loss(b)
        total, _ = m.d_loss(b)
        ra, fa = m.disc_a(b.x).numpy(), m.disc_a(m.gen_ba(b.target)).numpy()
        rb, fb = m.disc_b(b.target).numpy(), m.disc_b(m.gen_ab(b.x)).numpy()
    ref = 0.5 * (np.mean((ra - 1) ** 2) + np.mean(fa ** 2)) + 0.5 * (np.mean((rb - 1) ** 2) + np.mean(fb ** 2))
    assert total.item() == pytest.approx(ref, rel=1e-4)


def test_image_pool_fills_to_capacity_then_mixes_half_and_half():
    torch.manual_seed(0)
    pool = ImagePool(50, (1, 2, 2))
    first = torch.arange(30.0)[:, None, None, None].expand(30, 1, 2, 2)
    assert torch.equal(pool.query(first), first) and int(pool.count) == 30  # filling: returned as they are
    second = 100 + torch.arange(30.0)[:, None, None, None].expand(30, 1, 2, 2)
    out = pool.query(second)
    assert int(pool.count) == 50 and torch.equal(out[:20], second[:20])  # 20 more fill it up
    # full: each new image is returned with probability 1/2, else a stored one (which it replaces)
    n = 4000
    new = -1 - torch.arange(float(n))[:, None, None, None].expand(n, 1, 2, 2)
    before = pool.images.clone()
    got = pool.query(new)
    returned_new = (got[:, 0, 0, 0] == new[:, 0, 0, 0]).double().mean().item()
    assert abs(returned_new - 0.5) < 4 * (0.25 / n) ** 0.5
    old = got[got[:, 0, 0, 0] >= 0][:, 0, 0, 0]  # images that were in the pool before this call
    assert len(old) > 0 and set(old.tolist()) <= set(before[:, 0, 0, 0].tolist())
    # every stored image is one we gave it, and the 50 slots stay filled
    assert int(pool.count) == 50 and torch.isin(pool.images[:, 0, 0, 0], torch.cat(
        [first, second, new])[:, 0, 0, 0]).all()
    # the swapped-in images are drawn uniformly over the slots: all 50 slots replaced after ~2000 swaps
    assert (pool.images[:, 0, 0, 0] < 0).all()


def _reference_pool_query(images: torch.Tensor, stored: torch.Tensor, count: int, size: int):
    """The pool of the official code (util/image_pool.py), one image at a time on the host: fill, then a coin
    per image, swapping with a uniform slot on heads. Draws the same random numbers in the same order (all the
    coins, then all the slots), so it must agree exactly with ImagePool.query."""
    out, stored = images.clone(), stored.clone()
    fill = min(size - count, len(images))
    for i in range(max(fill, 0)):
        stored[count + i] = images[i]
    count += max(fill, 0)
    rest = len(images) - max(fill, 0)
    if rest > 0:
        coins, slots = (torch.rand(rest) < 0.5).tolist(), torch.randint(size, (rest,)).tolist()
        for k, (heads, j) in enumerate(zip(coins, slots)):
            i = len(images) - rest + k
            if heads:
                out[i], stored[j] = stored[j].clone(), images[i]
    return out, stored, count


@pytest.mark.parametrize("size,batches", [(3, [2, 10, 10, 7]), (50, [30, 30, 16, 16]), (1, [4, 4])])
def test_image_pool_equals_the_one_at_a_time_reference(size, batches):
    """The batched, sync-free pool against the sequential reference, with many swaps into one slot per batch
    (size 3, batch 10) — including a later swap returning an image stored earlier in the same batch."""
    pool = ImagePool(size, (1, 2, 2))
    stored, count, seen = torch.zeros(size, 1, 2, 2), 0, 0
    for n in batches:
        x = (seen + torch.arange(float(n)))[:, None, None, None].expand(n, 1, 2, 2).contiguous()
        seen += n
        state = torch.get_rng_state()
        got = pool.query(x)
        torch.set_rng_state(state)
        ref, stored, count = _reference_pool_query(x, stored, count, size)
        assert torch.equal(got, ref) and torch.equal(pool.images, stored)
        assert pool.filled == count == int(pool.count)


def test_image_pool_fill_count_is_restored_from_the_checkpoint():
    pool = ImagePool(5, (1, 2, 2))
    pool.query(torch.ones(3, 1, 2, 2))
    twin = ImagePool(5, (1, 2, 2))
    twin.load_state_dict(pool.state_dict())
    assert twin.filled == 3  # the host-side mirror follows the loaded buffer
    out = twin.query(2 * torch.ones(4, 1, 2, 2))
    assert twin.filled == 5 and torch.equal(out[:2], 2 * torch.ones(2, 1, 2, 2))  # two more fill it


def test_training_step_calls_no_synchronising_method():
    """Issue 16: the cyclegan step (both phases, the pools, the LR schedule) calls none of the tensor methods
    that wait for a GPU — the same guard as tests/test_perf.py's list of models, on an unpaired dataset."""
    from genzoo.config import TrainConfig
    from genzoo.train.engine import Trainer
    from genzoo.train.syncguard import forbid_host_syncs
    ds = gd.load("mnist-mini-thick")
    torch.manual_seed(0)
    model = build_model("cyclegan", ds, preset="tiny", pool_size=5)  # batch 4: fills the pool, then swaps
    t = Trainer(model, ds, TrainConfig(steps=6, batch_size=4, log_every=3, sample_every=0, validate=False,
                                       progress=False, lr_schedule="linear"), None)
    with forbid_host_syncs():
        t.fit()
    assert t.step == 6 and model.pool_a.filled == 5


def test_image_pool_size_zero_passes_through_and_eval_skips_the_pool():
    x = torch.randn(5, 1, 2, 2)
    assert torch.equal(ImagePool(0, (1, 2, 2)).query(x), x)
    m, ds = _model()
    m.eval()
    with torch.no_grad():
        m.g_loss(_batch(m, ds))
        m.d_loss(_batch(m, ds))
    assert int(m.pool_a.count) == 0  # validation does not touch the pools


def test_pools_are_saved_and_resume_is_exact(tmp_path):
    s = {**FAST, "batch_size": 8, "lr_decay_start": 2, "lr_decay_steps": 4}  # resumed mid-decay
    genzoo.train("cyclegan", "mnist-mini-thick", out=tmp_path / "full", preset="tiny", steps=6, settings=s)
    genzoo.train("cyclegan", "mnist-mini-thick", out=tmp_path / "half", preset="tiny", steps=3, settings=s)
    genzoo.train("cyclegan", "mnist-mini-thick", out=tmp_path / "half", resume=True, steps=6)
    w_full, w_half = load_file(tmp_path / "full" / R.WEIGHTS), load_file(tmp_path / "half" / R.WEIGHTS)
    assert "pool_a.images" in w_full and int(w_full["pool_b.count"]) == 8  # tiny preset: pool of 8
    assert w_full.keys() == w_half.keys()
    for k in w_full:
        assert torch.equal(w_full[k], w_half[k]), k
    loaded = genzoo.load(tmp_path / "full")
    assert torch.equal(loaded.pool_a.images, w_full["pool_a.images"])


def test_constant_then_linear_decay_lr_on_both_phases(monkeypatch):
    """The paper's schedule is the engine's lr_schedule=linear (the old cyclegan keys select it): every step of
    both phases (G and F; D_A and D_B) trains at lr * min(1, max(0, 1 - (s - start) / (end - start))), s = the
    steps done before it — here start 2, end 2 + 4."""
    from genzoo.config import TrainConfig
    from genzoo.train.engine import Trainer
    ds = gd.load("mnist-mini-thick")
    torch.manual_seed(0)
    model = build_model("cyclegan", ds, preset="tiny")
    tc = TrainConfig(steps=8, batch_size=4, lr_decay_start=2, lr_decay_steps=4, sample_every=0, validate=False,
                     progress=False)
    assert tc.lr_schedule == "linear"
    t = Trainer(model, ds, tc, None)
    seen = []
    step = Trainer._train_step

    def record(self, batches):
        seen.append([o.param_groups[0]["lr"] for o in self.optimizers])
        return step(self, batches)

    monkeypatch.setattr(Trainer, "_train_step", record)
    t.fit()
    lr = model.config.lr
    want = [lr * min(1.0, max(0.0, 1 - (s - 2) / 4)) for s in range(8)]  # 1, 1, 1, .75, .5, .25, 0, 0
    assert [p.name for p in t.phases] == ["generator", "discriminator"]
    for s, (g, d) in enumerate(seen):
        assert g == pytest.approx(want[s], rel=1e-12, abs=0) and d == pytest.approx(want[s], rel=1e-12, abs=0)


def test_translate_both_directions_and_any_size():
    m, ds = _model()
    m.eval()
    assert m.directions == ("a2b", "b2a") and m.can("translate") and m.data_kind == "unpaired"
    x = m.prepare(ds.x[:3])
    with torch.no_grad():
        assert m.translate(x, direction="a2b").shape == (3, 1, 28, 28)
        assert m.translate(x, direction="b2a").shape == (3, 1, 28, 28)
        assert torch.equal(m.translate(x), m.gen_ab(x))
        assert m.translate(torch.zeros(2, 1, 30, 21), direction="b2a").shape == (2, 1, 30, 21)
        out = m.translate(x, "a2b")
        assert out.min() >= -1 and out.max() <= 1
    with pytest.raises(ValueError, match="direction='c2d'.*a2b, b2a"):
        m.translate(x, direction="c2d")
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        m.translate(torch.zeros(2, 3, 28, 28))


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="lambda_identity=0"):
        CycleGANConfig(image_shape=(1, 28, 28), target_shape=(3, 28, 28))
    CycleGANConfig(image_shape=(1, 28, 28), target_shape=(3, 28, 28), lambda_identity=0.0)  # grey <-> colour
    with pytest.raises(ValueError, match="share the image size"):
        CycleGANConfig(image_shape=(1, 28, 28), target_shape=(1, 32, 32))
    with pytest.raises(ValueError, match="generator='vgg'"):
        CycleGANConfig(generator="vgg")
    with pytest.raises(ValueError, match="lambda_a must be >= 0"):
        CycleGANConfig(lambda_a=-1.0)
    with pytest.raises(ValueError, match="datasets that fit: .*mnist-mini-thick"):
        genzoo.train("cyclegan", "mnist-mini", preset="tiny", steps=1, settings=FAST)


def test_unet_generator_option_trains():
    m = genzoo.train("cyclegan", "mnist-mini-thick", preset="tiny", steps=2,
                     settings={**FAST, "batch_size": 4, "generator": "unet"})
    assert type(m.gen_ab).__name__ == "UNet"
    with torch.no_grad():
        assert m.translate(torch.zeros(1, 1, 28, 28), "b2a").shape == (1, 1, 28, 28)


def test_short_run_lowers_held_out_cycle_l1():
    from genzoo.evaluate.cycle import cycle_metrics
    torch.manual_seed(0)
    test = gd.load("mnist-mini-thick", "test").subset(slice(0, 100))
    m0 = cycle_metrics(build_model("cyclegan", test, preset="tiny"), test, kid=False)["metrics"]
    torch.manual_seed(0)
    after = genzoo.train("cyclegan", "mnist-mini-thick", preset="tiny", steps=20,
                         settings={**FAST, "batch_size": 8, "lr": 2e-3})
    m1 = cycle_metrics(after, test, kid=False)["metrics"]
    for d in ("a2b", "b2a"):  # measured 0.43 -> 0.12 and 0.46 -> 0.19
        assert m1[f"cycle_l1_{d}"] < 0.6 * m0[f"cycle_l1_{d}"], (m0, m1)


def test_evaluate_and_translate_commands_work_per_direction(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli import app
    from genzoo.cli import commands  # noqa: F401
    from genzoo.translate import translate_split, translate_tensor

    run = tmp_path / "run"
    genzoo.train("cyclegan", "mnist-mini-digits", out=run, preset="tiny", steps=2, settings={**FAST, "batch_size": 4})
    model = genzoo.load(run)
    src, out, back = translate_split(model, "mnist-mini-digits", "test", n=5, direction="b2a")
    digits = gd.load("digits28", "test").x[:5]
    assert torch.equal(src, digits.float() / 255)  # b2a starts from domain B
    assert torch.equal(out, translate_tensor(model, digits, "b2a"))
    assert torch.equal(back, translate_tensor(model, (out * 255).round().to(torch.uint8), "a2b"))  # cycled back
    r = CliRunner().invoke(app, ["translate", str(run), "--direction", "b2a", "-n", "4", "--out",
                                 str(tmp_path / "g.png")])
    assert r.exit_code == 0 and (tmp_path / "g.png").exists(), r.output
    r = CliRunner().invoke(app, ["translate", str(run), "--direction", "x2y", "-n", "4", "--out",
                                 str(tmp_path / "g.png")])
    assert r.exit_code != 0 and "a2b, b2a" in r.output
    from genzoo.evaluate import evaluate
    res = evaluate(run, metrics="labels,cycle,fid", n=100)
    m = res["metrics"]
    for d in ("a2b", "b2a"):
        for k in ("label_preservation", "cycle_l1", "fid", "fid_identity", "fid_ratio"):
            assert f"{k}_{d}" in m
        assert 0 <= m[f"label_preservation_{d}"] <= 1
    assert "kid_a2b" not in m and res["extractor"] == "a2b: digits28, b2a: mnist"
    # the identity baseline: the shipped classifier on real digits28 images, measured independently
    from genzoo.evaluate.classifier import get_classifier
    clf = get_classifier("digits28")
    from genzoo.evaluate.subsets import random_subset
    mnist = random_subset(gd.load("mnist-mini", "test"), 100, seed=0)  # evaluate's sample of domain A (seed 0)
    with torch.no_grad():
        acc = (clf(mnist.x.float() / 255).argmax(1) == mnist.y).double().mean().item()
    assert m["source_accuracy_a2b"] == pytest.approx(acc)
