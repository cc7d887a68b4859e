"""genzoo lecture: every registered claim runs at the tiny scale and yields numbers, a figure and a verdict; the
report lists them all; the measures checked against independent references (scikit-learn, scipy, closed form)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genzoo import lecture
from genzoo.evaluate.ood import auroc
from genzoo.lecture.claims_ae import box_grid
from genzoo.lecture.claims_gan import generator_gradients, laplacian_variance

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lecture")
    res = lecture.run(None, scale="tiny", out=out, runs=None, strict=True, log=lambda s: None)
    return out, res


def test_every_claim_gives_numbers_figure_verdict(tiny_report):
    out, res = tiny_report
    assert [c.name for c, _ in res["results"]] == lecture.names()
    assert len(res["results"]) >= 12
    numbers_seen = set()
    for c, r in res["results"]:
        assert r.verdict in lecture.VERDICTS, (c.name, r.verdict, r.why)
        assert r.numbers, c.name
        assert r.figures, c.name
        for f in r.figures:
            assert Path(f).read_bytes()[:8] == PNG, (c.name, f)
        assert all(isinstance(v, (int, float, str)) for v in r.numbers.values()), c.name
        numbers_seen.add(c.number)
    assert set(range(1, 13)) <= numbers_seen  # every one of the 12 claims has an experiment


def test_report_lists_every_claim_and_inlines_images(tiny_report):
    out, res = tiny_report
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    data = json.loads((out / "results.json").read_text())
    n_figs = sum(len(r.figures) for _, r in res["results"])
    for c in lecture.claims():
        assert f"`{c.name}`" in md and f"genzoo lecture --only {c.name}" in md
        assert f"id='{c.name}'" in page
        assert c.quote in md
    assert page.count("src='data:image/png;base64,") == n_figs
    assert "src='figures/" not in page  # self-contained
    assert [d["name"] for d in data["claims"]] == lecture.names()
    assert all((out / f).exists() and not Path(f).is_absolute() for d in data["claims"] for f in d["figures"])


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 6, 40).astype(float)  # many ties
        b = rng.integers(2, 9, 25).astype(float)
        ref = roc_auc_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b])
        assert auroc(a, b) == pytest.approx(ref, abs=1e-12)
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0
    with pytest.raises(ValueError, match="both sets"):
        auroc([], [1.0])


def test_laplacian_variance_matches_scipy():
    from scipy import ndimage
    x = torch.rand(3, 1, 12, 10, generator=torch.Generator().manual_seed(1))
    ref = [ndimage.laplace(x[i, 0].double().numpy())[1:-1, 1:-1].var(ddof=1) for i in range(3)]
    assert laplacian_variance(x).double().numpy() == pytest.approx(ref, rel=1e-5)
    flat = torch.full((1, 1, 8, 8), 0.5)
    assert float(laplacian_variance(flat)) == pytest.approx(0.0, abs=1e-12)


def test_generator_gradients_closed_form():
    """D(x) = a x + b: |d/dx log(1 - s(D))| = |a| s(D), |d/dx -log s(D)| = |a| (1 - s(D)); critic f = c x: |c|."""
    d, f = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        d.weight.fill_(3.0), d.bias.fill_(-1.0), f.weight.fill_(-0.7), f.bias.fill_(2.0)
    x = torch.linspace(-2, 2, 9)
    g = generator_gradients(d, f, x)
    s = torch.sigmoid(3 * x - 1)
    assert g["minimax"].tolist() == pytest.approx((3 * s).tolist(), rel=1e-5)
    assert g["non-saturating"].tolist() == pytest.approx((3 * (1 - s)).tolist(), rel=1e-5)
    assert g["critic"].tolist() == pytest.approx([0.7] * 9, rel=1e-6)


def test_box_grid_gaps_by_hand():
    # four codes at the corners of [0, 1]^2: with a 2 x 2 grid every cell holds one -> no gaps
    corners = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    uv, grid_uv, z, gaps = box_grid(corners, 2)
    assert gaps == 0.0 and torch.allclose(uv, corners)
    assert z.tolist() == [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]  # top row first
    # two opposite corners: 2 of the 4 cells are empty; a 4 x 4 grid: 14 of 16
    diag = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert box_grid(diag, 2)[3] == 0.5 and box_grid(diag, 4)[3] == pytest.approx(14 / 16)


def test_verdict_rule_and_unknown_claim():
    assert lecture.verdict_of({"a": True, "b": True}) == lecture.HOLDS
    assert lecture.verdict_of({"a": True, "b": False}) == lecture.PARTLY
    assert lecture.verdict_of({"a": False}) == lecture.FAILS
    with pytest.raises(KeyError, match="unknown claim 'nope'"):
        lecture.get("nope")
    with pytest.raises(ValueError, match="verdict"):
        lecture.Result({}, [], "maybe", "")


def test_a_teacher_can_add_a_claim(tmp_path):
    from genzoo.lecture import core

    @lecture.claim("test-extra", number=99, title="an added claim", quote="two is more than one",
                   experiment="compare 2 with 1")
    def extra(ctx):
        return lecture.Result({"two": 2}, [], lecture.verdict_of({"2 > 1": 2 > 1}), "by arithmetic")

    try:
        assert "test-extra" in lecture.names()
        res = lecture.run(["test-extra"], scale="tiny", out=tmp_path, runs=None, log=lambda s: None)
        assert res["results"][0][1].verdict == lecture.HOLDS
        assert "two is more than one" in (tmp_path / "report.md").read_text()
    finally:
        core._CLAIMS.pop("test-extra", None)


def test_cli_lecture_list_and_anomaly_ood(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401
    from genzoo.cli._app import app
    from genzoo.train import train

    r = CliRunner().invoke(app, ["lecture", "--list"])
    assert r.exit_code == 0 and all(n in r.output for n in lecture.names())
    r = CliRunner().invoke(app, ["lecture", "--only", "nope", "--tiny"])
    assert r.exit_code == 2 and "unknown claim 'nope'" in r.output
    run = tmp_path / "vae"
    train("vae", "mnist-mini", out=run, preset="tiny", steps=3, settings={"progress": False, "validate": False,
                                                                        "sample_every": 0})
    res_file = tmp_path / "ood.json"
    # edge maps of the digits are images of the same shape but not digits: out-of-distribution
    r = CliRunner().invoke(app, ["anomaly", "--run", str(run), "--ood", "mnist-mini-edges", "-n", "50", "--k", "3",
                                 "--out", str(res_file)])
    assert r.exit_code == 0, r.output
    assert "AUROC by likelihood" in r.output and "AUROC by reconstruction error" in r.output
    res = json.loads(res_file.read_text())
    assert res["n_in"] == res["n_ood"] == 50 and 0 <= res["auroc_nll"] <= 1 and 0 <= res["auroc_recon"] <= 1
    r = CliRunner().invoke(app, ["anomaly", "--ood", "mnist-mini-edges"])
    assert r.exit_code == 2 and "--run" in r.output
    r = CliRunner().invoke(app, ["anomaly", "--run", str(run), "--ood", "digits"])
    assert r.exit_code == 2 and "same shape" in r.output


def test_recommended_presets_hold_the_measured_recipes():
    """Every registered model has `--preset recommended`, with the recipe docs/benchmarks.md measured."""
    from genzoo import data as gd
    from genzoo import registry
    from genzoo.train import build_model
    ds = gd.load("mnist-mini", "test")
    want = {"ae": {"arch": "conv", "latent_dim": 32}, "denoising-ae": {"arch": "conv"},
            "sparse-ae": {"latent_dim": 196, "rho": 0.05, "beta": 3.0}, "contractive-ae": {"lam": 0.1},
            "vae": {"hidden": (500, 500), "latent_dim": 50}, "cvae": {"hidden": (500, 500), "conditional": True},
            "gan": {"arch": "dcgan", "spectral_norm": True}, "dcgan": {"spectral_norm": True},
            "cgan": {"spectral_norm": False, "conditional": True}, "wgan": {"clip": 0.01, "k": 5},
            "wgan-gp": {"gradient_penalty": 10.0, "spectral_norm": False},
            "sagan": {"channels": 16}, "biggan": {"channels": 16, "ema": 0.995},
            "progan": {"channels": 16, "phase_images": 9000}, "ddpm": {"lr": 1e-3, "widths": (16, 32, 64)},
            "pix2pix": {"base": 32, "n_layers": 2}, "srgan": {"blocks": 6, "gan_weight": 0.0},
            "cyclegan": {"n_blocks": 3, "d_layers": 2}}
    assert set(want) == set(registry.names())  # every registered model has its recipe
    for name, fields in want.items():
        data = {"pix2pix": "mnist-mini-edges", "srgan": "mnist-mini-sr4", "cyclegan": "mnist-mini-thick"}.get(name)
        cfg = build_model(name, gd.load(data, "test") if data else ds, "recommended").config
        assert {k: getattr(cfg, k) for k in fields} == fields, name


def test_only_keeps_the_other_claims_of_an_earlier_report(tmp_path):
    lecture.run(["linear-pca", "wgan-critic"], scale="tiny", out=tmp_path, runs=None, log=lambda s: None)
    first = json.loads((tmp_path / "results.json").read_text())["claims"]
    res = lecture.run(["wgan-critic"], scale="tiny", out=tmp_path, runs=None, log=lambda s: None)
    names = [c.name for c, _ in res["results"]]
    assert names == ["linear-pca", "wgan-critic"]  # the earlier linear-pca result is kept, in claim order
    again = json.loads((tmp_path / "results.json").read_text())["claims"]
    assert again[0]["numbers"] == first[0]["numbers"]
    report = (tmp_path / "report.md").read_text()
    assert "`linear-pca`" in report
    total = sum(c["cpu_s"] for c in again) / 60  # the header sums both claims' own times, not this call's
    assert f"2 claims at scale 'tiny', seed 0; {total:.1f} CPU minutes summed over the claims' own times " \
           f"(this call reran 1:" in report


# ---- subsets: seeded, stratified samples, never the first n (issue 17) ----------------------------------
def _class_sorted(split: str = "train"):
    """mnist-mini sorted by class, with unequal class sizes (class k keeps 500 + 50 k images)."""
    from genzoo import data as gd
    ds = gd.load("mnist-mini", split)
    idx = torch.cat([torch.nonzero(ds.y == k).flatten()[:500 + 50 * k] for k in range(10)])
    return ds.subset(idx)


def _assert_proportional(got_labels, population_labels, n):
    """Every class in the sample, each within one image of its share n * N_k / N of the population."""
    got = np.bincount(np.asarray(got_labels), minlength=10)
    pop = np.bincount(np.asarray(population_labels), minlength=10)
    assert got.sum() == n
    assert (got > 0).all(), got
    assert np.abs(got - n * pop / pop.sum()).max() < 1, (got, n * pop / pop.sum())


def test_lecture_data_subsets_are_stratified_samples_of_a_class_sorted_split():
    from genzoo.lecture.core import Context
    sorted_ds = _class_sorted()
    assert sorted_ds.y[:500].eq(0).all()  # the first 500 are one class: a first-n subset held only 0s
    ctx = Context(scale="tiny", out=Path("unused"), runs=None)
    ctx._data[("sorted", "train")] = sorted_ds
    sub = ctx.dataset("sorted", "train", 512)
    _assert_proportional(sub.y, sorted_ds.y, 512)
    assert torch.equal(ctx.dataset("sorted", "train", 512).x, sub.x)  # seeded: the same sample every call
    assert ctx.dataset("sorted", "train", 10_000) is sorted_ds and ctx.dataset("sorted", "train") is sorted_ds
    assert sub.meta["sample"] == "stratified seed 0"  # part of the run cache's key: not a first-n run's


def test_overcomplete_probe_trains_on_a_stratified_sample(monkeypatch, tmp_path):
    """The linear probe of claim 3 trained on the first n_probe training images (one class on a sorted split)."""
    from genzoo import applications
    from genzoo.lecture.core import Context
    torch.set_num_threads(1)
    seen = []
    real_probe = applications.linear_probe

    def probe(train_codes, train_y, *args, **kw):
        seen.append(np.asarray(train_y))
        return real_probe(train_codes, train_y, *args, **kw)

    monkeypatch.setattr(applications, "linear_probe", probe)
    ctx = Context(scale="tiny", out=tmp_path, runs=None, log=lambda s: None)
    ctx._data[("mnist-mini", "train")] = _class_sorted()
    r = lecture.get("overcomplete").fn(ctx)
    train = ctx.dataset("mnist-mini", "train", 512)  # the claim's training set (tiny scale)
    assert len(seen) == 2 and all(len(y) == 300 for y in seen)  # tiny: code sizes 4 and 32, 300 probe images
    for y in seen:
        _assert_proportional(y, train.y, 300)
    assert all(0 <= r.numbers[f"probe accuracy k={k}"] <= 1 for k in (4, 32))
