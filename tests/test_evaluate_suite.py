"""evaluate() / genzoo evaluate / genzoo compare on tiny runs: which metrics apply, labels, files."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import genzoo.data as gd
from genzoo.cli._app import app
from genzoo.cli import commands  # noqa: F401  (registers the commands)
from genzoo.evaluate import evaluate
from genzoo.evaluate.suite import compare_table, parse_metrics
from genzoo.models.base import GenerativeModel, ModelConfig


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    import genzoo
    out = tmp_path_factory.mktemp("eval") / "ae"
    genzoo.train("ae", "mnist-mini", out=out, steps=30, preset="tiny",
                 settings={"log_every": 10, "sample_every": 0, "progress": False})
    return out


def check_sample_metrics(m, fr, ff, p):
    """evaluate()'s KID, precision/recall, density/coverage, classifier score and mode coverage against numpy /
    scipy / scikit-learn computations from the real and generated features `fr`, `ff` (N, D) and the
    classifier's p(y|x) of the generated images `p` (N, K), evaluate's defaults (seed 0, 100 KID subsets,
    k = 3 for precision/recall, k = 5 for density/coverage, 10 parts for the score)."""
    import numpy as np
    from scipy.spatial.distance import cdist
    from scipy.stats import entropy
    from sklearn.neighbors import NearestNeighbors
    n = len(fr)
    # KID (Binkowski et al. 2018): unbiased MMD^2, kernel (x.y / d + 1)^3, averaged over 100 subsets of
    # min(1000, n // 2) features each, drawn as documented (a seeded randperm of the real, then the fake)
    g, size, vals = torch.Generator().manual_seed(0), min(1000, n // 2), []
    for _ in range(100):
        a = fr[torch.randperm(n, generator=g)[:size].numpy()]
        b = ff[torch.randperm(n, generator=g)[:size].numpy()]
        kxx, kyy, kxy = ((u @ w.T / fr.shape[1] + 1) ** 3 for u, w in ((a, a), (b, b), (a, b)))
        vals.append((kxx.sum() - np.trace(kxx)) / (size * (size - 1))
                    + (kyy.sum() - np.trace(kyy)) / (size * (size - 1)) - 2 * kxy.mean())
    assert m["kid"] == pytest.approx(np.mean(vals), rel=1e-4, abs=1e-8)
    assert m["kid_std"] == pytest.approx(np.std(vals), rel=1e-3, abs=1e-8)

    # k-NN manifolds with scikit-learn's neighbours: radius = distance to the k-th neighbour, itself excluded
    def radii(f, kk):
        return NearestNeighbors(n_neighbors=kk + 1).fit(f).kneighbors(f)[0][:, kk]

    d_rf = cdist(fr, ff)  # (real, fake)
    inside3_real, inside3_fake = d_rf <= radii(fr, 3)[:, None], d_rf.T <= radii(ff, 3)[:, None]
    tol = 1 / n + 1e-9  # one point on a ball's boundary may fall either way in float32 vs float64
    assert m["precision"] == pytest.approx(inside3_real.any(0).mean(), abs=tol)  # fakes in the real manifold
    assert m["recall"] == pytest.approx(inside3_fake.any(0).mean(), abs=tol)  # reals in the fake manifold
    inside5 = d_rf <= radii(fr, 5)[:, None]  # Naeem et al. 2020: balls around real points only, k = 5
    assert m["density"] == pytest.approx(inside5.sum() / (5 * n), abs=2 / (5 * n) + 1e-9)
    assert m["coverage"] == pytest.approx(inside5.any(1).mean(), abs=tol)
    # class-based: the Inception-score formula with the classifier's p(y|x), on 10 equal parts
    parts = [np.exp(np.mean([entropy(row, part.mean(0)) for row in part])) for part in np.array_split(p, 10)]
    assert m["classifier_score"] == pytest.approx(np.mean(parts), rel=1e-6)
    assert m["classifier_score_std"] == pytest.approx(np.std(parts), rel=1e-4, abs=1e-9)
    hist = np.bincount(p.argmax(1), minlength=p.shape[1]) / n
    assert m["class_histogram"] == pytest.approx(hist.tolist(), abs=1e-6)
    assert m["classes_covered"] == int((hist >= 0.5 / p.shape[1]).sum())  # at least half of a fair share
    assert m["kl_to_uniform"] == pytest.approx(entropy(hist, np.full(p.shape[1], 1 / p.shape[1])), rel=1e-6,
                                               abs=1e-12)
    return hist


def test_parse_metrics():
    assert parse_metrics("fid, KID,coverage,fid") == ["fid", "kid", "modes"]
    assert "elbo" in parse_metrics(None)
    with pytest.raises(ValueError, match="unknown metric 'fidd'"):
        parse_metrics("fidd")


def test_evaluate_an_autoencoder(ae_run):
    r = evaluate(ae_run, n=300, k=5)
    m = r["metrics"]
    assert r["data"] == "mnist-mini" and r["n"] == 300 and r["extractor"] == "mnist"
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "classifier_score",
                "classes_covered", "kl_to_uniform", "mse", "psnr", "ssim", "probe_accuracy", "knn_accuracy"):
        assert key in m, key
    assert set(r["skipped"]) == {"elbo", "nll"} and "no likelihood" in r["skipped"]["elbo"]
    assert "not comparable" in r["note"]
    # every figure against an independent computation on the same seeded, stratified 300 test images
    import numpy as np
    import genzoo
    from genzoo.evaluate import get_classifier
    from genzoo.evaluate.subsets import random_subset
    from genzoo.evaluate.suite import draw_samples
    model = genzoo.load(ae_run)
    test = random_subset(gd.load("mnist-mini", "test"), 300, seed=0)
    assert (torch.bincount(test.y, minlength=10) >= 20).all()  # the sample spans every class
    x = model.prepare(test.x)
    with torch.no_grad():
        err = (model.to_unit(model.reconstruct(x)) - model.to_unit(x)).pow(2).flatten(1).mean(1)
    assert m["mse"] == pytest.approx(err.mean().item(), rel=1e-5)
    assert m["psnr"] == pytest.approx((10 * torch.log10(1 / err.double())).mean().item(), rel=1e-4)
    # domain FID: Frechet distance of Gaussians fitted to classifier features; tr sqrt(S1 S2) computed as
    # sum sqrt(eig(A S2 A)) with A = S1^(1/2) (symmetric PSD, eigh), not the code's own route
    clf = get_classifier("mnist")
    with torch.no_grad():
        fr = clf.features(test.x.float() / 255).double().numpy()
        ff = clf.features(draw_samples(model, 300, seed=0)).double().numpy()
    mu1, mu2, s1, s2 = fr.mean(0), ff.mean(0), np.cov(fr, rowvar=False), np.cov(ff, rowvar=False)
    w, v = np.linalg.eigh(s1)
    a_half = (v * np.sqrt(w.clip(0))) @ v.T
    tr_sqrt = np.sqrt(np.linalg.eigvalsh(a_half @ s2 @ a_half).clip(0)).sum()
    fid_ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert m["fid"] == pytest.approx(fid_ref, rel=1e-3)
    # k-NN accuracy: a plain numpy 5-nearest-neighbour majority vote on the encoder's codes
    train = random_subset(gd.load("mnist-mini", "train"), 300, seed=1)
    with torch.no_grad():
        ctr = model.code(model.prepare(train.x)).flatten(1).double().numpy()
        cte = model.code(x).flatten(1).double().numpy()
    d = ((cte[:, None] - ctr[None]) ** 2).sum(-1)
    votes = train.y.numpy()[np.argsort(d, axis=1)[:, :5]]
    pred = np.array([np.bincount(v, minlength=10).argmax() for v in votes])
    assert m["knn_accuracy"] == pytest.approx((pred == test.y.numpy()).mean(), abs=1 / 300 + 1e-9)
    # linear probe: scikit-learn's logistic regression on the same codes, standardised by hand
    from sklearn.linear_model import LogisticRegression
    mu, sd = ctr.mean(0), ctr.std(0)
    sd[sd == 0] = 1
    lr = LogisticRegression(max_iter=1000).fit((ctr - mu) / sd, train.y.numpy())
    assert m["probe_accuracy"] == pytest.approx(lr.score((cte - mu) / sd, test.y.numpy()), abs=1 / 300 + 1e-9)
    assert m["probe_accuracy"] > 0.3  # well above chance (0.1): the check above compares a real classifier
    with torch.no_grad():
        p = clf.probs(draw_samples(model, 300, seed=0)).double().numpy()
    check_sample_metrics(m, fr, ff, p)


class Replay(GenerativeModel):
    """A 'generator' that replays a bank of images (random draws with the generator it is given): its samples'
    features are known, so every sample metric has a non-degenerate value (a tiny AE's samples are one class,
    far from the data: recall and coverage near 0)."""

    config_class = ModelConfig

    def __init__(self, bank01):
        super().__init__(ModelConfig(image_shape=tuple(bank01.shape[1:]), num_classes=0))
        self.bank = bank01
        self.dummy = nn.Parameter(torch.zeros(()))

    def sample(self, n, labels=None, generator=None, **kw):
        return self.bank[torch.randint(len(self.bank), (n,), generator=generator)]


def test_sample_metrics_of_a_replay_model_against_references():
    """Training digits of classes 0-8 (80 each) but only 10 3s, no 9s, and 60 noise images (the classifier
    reads them as 8s): the samples lie partly on the test digits' manifold, one class is under half its fair
    share, one is missing."""
    import numpy as np
    from genzoo.evaluate import get_classifier
    from genzoo.evaluate.subsets import random_subset
    from genzoo.evaluate.suite import draw_samples
    train = gd.load("mnist-mini", "train")
    idx = torch.cat([torch.nonzero(train.y == k).flatten()[:10 if k == 3 else 80] for k in range(9)])
    noise = torch.rand(60, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    model = Replay(torch.cat([train.x[idx].float() / 255, noise]))
    r = evaluate(model, metrics="kid,pr,dc,is,modes", data="mnist-mini", n=300)
    m = r["metrics"]
    clf = get_classifier("mnist")
    test = random_subset(gd.load("mnist-mini", "test"), 300, seed=0)
    fake = draw_samples(model, 300, seed=0)
    with torch.no_grad():
        fr, ff = (clf.features(t).double().numpy() for t in (test.x.float() / 255, fake))
        p = clf.probs(fake).double().numpy()
    hist = check_sample_metrics(m, fr, ff, p)
    # the checks above can fail: every value is away from its degenerate end
    assert 0.2 < m["precision"] < 1 and 0 < m["recall"] < 1 and 0 < m["coverage"] < 1 and 0 < m["density"]
    assert ((hist > 0) & (hist < 0.05)).any() and (hist == 0).any()  # under half a share; missing
    assert 1 < m["classifier_score"] < 10 and 0 < m["kl_to_uniform"] < np.log(10)


class ReplayByClass(Replay):
    """A class-conditional replay: asked for class y it returns a bank image of class (y + shift) % 10, so the
    label accuracy evaluate reports is known in structure (shift 0: the classifier's accuracy on the bank;
    shift 1: only its mistakes that land on the class asked for)."""

    def __init__(self, bank01, bank_y):
        super().__init__(bank01)
        object.__setattr__(self, "config", ModelConfig(image_shape=tuple(bank01.shape[1:]), num_classes=10))
        object.__setattr__(self.config, "conditional", True)
        self.bank_y = bank_y

    def sample(self, n, labels=None, generator=None, shift: int = 0):
        assert labels is not None and len(labels) == n
        out = []
        for y in labels.tolist():
            pool = torch.nonzero(self.bank_y == (y + shift) % 10).flatten()
            out.append(self.bank[pool[torch.randint(len(pool), (1,), generator=generator)]])
        return torch.cat(out)


def test_label_accuracy_and_sample_settings_of_a_conditional_model():
    """evaluate asks a conditional model for balanced labels, scores label_accuracy as the share of samples the
    classifier assigns to the class asked for (checked against the classifier applied here to the same draws),
    forwards sample_settings to model.sample and records them, and names a setting the model does not take."""
    from genzoo.evaluate import get_classifier
    from genzoo.evaluate.suite import draw_samples
    train = gd.load("mnist-mini", "train")
    model = ReplayByClass(train.x.float() / 255, train.y)
    clf = get_classifier("mnist")
    asked, acc = torch.arange(200) % 10, {}
    for shift in (0, 1):
        r = evaluate(model, metrics="modes", data="mnist-mini", n=200, sample_settings={"shift": shift} if shift
                     else None)
        with torch.no_grad():
            pred = clf.probs(draw_samples(model, 200, seed=0, shift=shift)).argmax(1)
        assert r["metrics"]["label_accuracy"] == pytest.approx(float((pred == asked).double().mean()))
        assert r.get("sample_settings") == ({"shift": 1} if shift else None)
        assert r["sampling_seconds"] >= 0
        acc[shift] = r["metrics"]["label_accuracy"]
    # the classifier is right on almost every replayed digit, so asking for y and getting y + 1 is mostly wrong
    assert acc[0] > 0.9 and acc[1] < 0.1
    with pytest.raises(ValueError, match=r"sample takes no steps \(its settings: shift\)"):
        evaluate(model, metrics="modes", data="mnist-mini", n=200, sample_settings={"steps": 5})


def test_custom_extractor_and_strict(ae_run):
    import genzoo
    model = genzoo.load(ae_run)
    ext = nn.Sequential(nn.Flatten(), nn.Linear(784, 16))  # a user's own feature module, no probs()
    r = evaluate(model, metrics="fid,is", data="mnist-mini", n=100, extractor=ext)
    assert r["extractor"] == "Sequential" and "fid" in r["metrics"]
    # the FID is the user's features' Frechet distance (numpy: eigh route), on evaluate's seeded sample
    import numpy as np
    from genzoo.evaluate.subsets import random_subset
    from genzoo.evaluate.suite import draw_samples
    test = random_subset(gd.load("mnist-mini", "test"), 100, seed=0)
    with torch.no_grad():
        fr = ext(test.x.float() / 255).double().numpy()
        ff = ext(draw_samples(model, 100, seed=0)).double().numpy()
    mu1, mu2, s1, s2 = fr.mean(0), ff.mean(0), np.cov(fr, rowvar=False), np.cov(ff, rowvar=False)
    w, v = np.linalg.eigh(s1)
    a_half = (v * np.sqrt(w.clip(0))) @ v.T
    tr_sqrt = np.sqrt(np.linalg.eigvalsh(a_half @ s2 @ a_half).clip(0)).sum()
    fid_ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert r["metrics"]["fid"] == pytest.approx(fid_ref, rel=1e-3)
    assert "no class probabilities" in r["skipped"]["is"]
    with pytest.raises(ValueError, match="pass data="):
        evaluate(model, metrics="fid")
    with pytest.raises(ValueError, match="does not apply"):
        evaluate(model, metrics="elbo", data="mnist-mini", n=50, strict=True)


def test_cli_evaluate_and_compare(ae_run, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(ae_run), "--metrics", "fid,pr,mse,elbo", "--n", "200"])
    assert res.exit_code == 0, res.output
    assert "domain FID (extractor: mnist)" in res.output and f"wrote {ae_run / 'metrics.json'}" in res.output
    assert "elbo | skipped" in res.output
    saved = json.loads((ae_run / "metrics.json").read_text())
    assert set(saved["metrics"]) == {"fid", "precision", "recall", "mse"}
    assert saved["n"] == 200 and saved["seed"] == 0
    # the saved MSE is the numpy mean squared error on evaluate's seeded, stratified 200 test images
    import genzoo
    import numpy as np
    from genzoo.evaluate.subsets import random_subset
    model = genzoo.load(ae_run)
    test = random_subset(gd.load("mnist-mini", "test"), 200, seed=0)
    with torch.no_grad():
        x = model.prepare(test.x)
        r01, x01 = model.to_unit(model.reconstruct(x)).double().numpy(), model.to_unit(x).double().numpy()
    assert saved["metrics"]["mse"] == pytest.approx(((r01 - x01) ** 2).mean(), rel=1e-5)
    # the printed table holds the saved values (4 significant digits)
    for key, label in (("fid", "domain FID (extractor: mnist)"), ("precision", "precision"), ("mse", "mse")):
        row = next(line for line in res.output.splitlines() if line.startswith(f"| {label} |"))
        assert float(row.split("|")[2]) == pytest.approx(saved["metrics"][key], rel=5e-4, abs=1e-12), key
    # a second run (a copy, evaluated on other metrics and n): compare reads each run's metrics.json
    import shutil
    other = tmp_path / "ae-copy"
    shutil.copytree(ae_run, other)
    res = runner.invoke(app, ["evaluate", str(other), "--metrics", "mse,knn", "--n", "100"])
    assert res.exit_code == 0, res.output
    saved2 = json.loads((other / "metrics.json").read_text())
    res = runner.invoke(app, ["compare", str(ae_run), str(other), "--out", str(tmp_path / "t.md")])
    assert res.exit_code == 0, res.output
    table = (tmp_path / "t.md").read_text()
    assert table.strip() in res.output
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    assert head == ["run", "model", "data", "n", "domain FID (extractor: mnist)", "precision", "recall", "mse",
                    "knn_accuracy"]
    keys = ["fid", "precision", "recall", "mse", "knn_accuracy"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert len(rows) == 2
    for row, run, rec in zip(rows, (ae_run, other), (saved, saved2)):
        assert row[:4] == [str(run), "ae", "mnist-mini", str(rec["n"])]
        for key, cell in zip(keys, row[4:]):
            if key in rec["metrics"]:
                assert float(cell) == pytest.approx(rec["metrics"][key], rel=5e-4, abs=1e-12), (run, key)
            else:
                assert cell == "-", (run, key)
    assert saved2["metrics"]["mse"] != saved["metrics"]["mse"]  # other n, other sample: the rows can differ
    # a sampler flag the model does not take: a clear error, and metrics.json is left as it was
    before = (other / "metrics.json").read_text()
    res = runner.invoke(app, ["evaluate", str(other), "--metrics", "fid", "--n", "100", "--guidance", "2"])
    assert res.exit_code != 0 and "ae model's sample takes no guidance" in res.output, res.output
    assert (other / "metrics.json").read_text() == before
    assert "different n" in table  # 200 vs 100
    res = runner.invoke(app, ["evaluate", str(ae_run), "--metrics", "bogus"])
    assert res.exit_code == 2 and "unknown metric 'bogus'" in res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "not a run directory" in res.output


def test_compare_table_marks_missing_metrics():
    a = {"model_type": "ae", "data": "mnist", "n": 10, "extractor": "mnist", "metrics": {"mse": 0.01, "fid": 3.0}}
    b = {"model_type": "dcgan", "data": "mnist", "n": 10, "extractor": "mnist",
         "metrics": {"fid": 5.0, "class_histogram": [0.1] * 10, "kid_std": 0.1}}
    t = compare_table([a, b], ["A", "B"]).splitlines()
    assert t[0] == "| run | model | data | n | mse | domain FID (extractor: mnist) |"
    assert t[3] == "| B | dcgan | mnist | 10 | - | 5 |"
    assert "different n" not in "".join(t)
    assert "different n" in compare_table([a, {**b, "n": 20}])


def test_evaluate_a_vae_likelihood(tiny_train):
    _, run = tiny_train("vae", steps=20)
    r = evaluate(run, metrics="elbo,nll,mse,fid", n=100, k=20)
    m = r["metrics"]
    assert set(m) == {"elbo", "nll", "mse", "fid"} and r["binarize"] == "none"
    # the importance-weighted bound lies above the ELBO, so the NLL estimate lies below -ELBO
    assert 0 < m["nll"] <= -m["elbo"] + 1e-6
