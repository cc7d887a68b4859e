"""Metric subsets are seeded stratified samples, conditional reconstruction uses true labels, and the registry
discovers model files and entry points (issue 17, 'Correctness found in review')."""
from __future__ import annotations

import sys
import textwrap
from collections import Counter
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo import registry
from genzoo.evaluate.subsets import random_subset, subset_indices

FAST = {"log_every": 5, "sample_every": 0, "progress": False, "batch_size": 32}


# ---- subsets --------------------------------------------------------------------------------------------
def test_stratified_subset_of_class_sorted_labels_has_proportional_counts():
    # 600 items sorted in class blocks of sizes 300, 200, 100: a first-100 slice would be all class 0
    y = torch.tensor([0] * 300 + [1] * 200 + [2] * 100)
    idx = subset_indices(len(y), 60, y, seed=3)
    assert len(idx) == 60 and len(set(idx.tolist())) == 60
    assert Counter(y[idx].tolist()) == {0: 30, 1: 20, 2: 10}  # 60 * (1/2, 1/3, 1/6)
    # largest remainder: 7 of (5, 3, 2) -> exact 3.5, 2.1, 1.4 -> floors 3, 2, 1 and one more to class 0
    y2 = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    assert Counter(y2[subset_indices(10, 7, y2, seed=0)].tolist()) == {0: 4, 1: 2, 2: 1}


def test_subsets_are_seeded_random_and_not_the_first_n():
    y = torch.arange(1000) // 100
    a, b, c = (subset_indices(1000, 50, y, seed=s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a.sort().values, c.sort().values)
    assert not torch.equal(a.sort().values, torch.arange(50))
    # unlabelled: a uniform draw; over many seeds every index is about equally likely (mean index ~ 499.5)
    draws = torch.cat([subset_indices(1000, 100, None, seed=s) for s in range(50)]).double()
    assert abs(draws.mean().item() - 499.5) < 15
    assert torch.equal(subset_indices(10, 20, y[:10]), torch.arange(10))  # n >= total: everything


def _folder(root, digits=(0, 1), per_class=40, test_per_class=20):
    """A class-sorted image folder (train/ and test/, one sub-folder per class) from mnist-mini."""
    ds = genzoo.data.load("mnist-mini", "train")
    for split, count in (("train", per_class), ("test", test_per_class)):
        offset = 0 if split == "train" else per_class
        for d in digits:
            folder = root / split / f"digit{d}"
            folder.mkdir(parents=True)
            members = torch.nonzero(ds.y == d).flatten()[offset:offset + count]
            for i, j in enumerate(members.tolist()):
                Image.fromarray(ds.x[j, 0].numpy()).save(folder / f"{i:04d}.png")
    return root


def test_evaluate_probe_and_knn_on_a_class_sorted_folder(tmp_path):
    """The first-N subsets held one class: the probe failed ('at least 2 classes'). Now both metrics run on
    stratified samples and separate 0s from 1s (a trivially easy task)."""
    folder = _folder(tmp_path / "imgs")
    data = f"folder:{folder}"
    out = tmp_path / "run"
    genzoo.train("ae", data, out=out, preset="tiny", steps=4, settings=FAST)
    res = genzoo.evaluate.evaluate(out, metrics="probe,knn", n=20)
    assert res["n"] == 20
    assert 0.75 <= res["metrics"]["probe_accuracy"] <= 1.0
    assert 0.75 <= res["metrics"]["knn_accuracy"] <= 1.0


def test_cvae_reconstruction_metrics_use_the_true_labels():
    from genzoo.evaluate import suite
    from genzoo.evaluate.image_metrics import mse
    m = genzoo.train("cvae", "mnist-mini", preset="tiny", steps=3, settings=FAST)
    ds = genzoo.data.load("mnist-mini", "test").subset(slice(0, 40))
    got = suite.reconstruction_metrics(m, ds, batch_size=16)["mse"]
    with torch.no_grad():
        x = m.prepare(ds.x)
        onehot = torch.nn.functional.one_hot(ds.y, 10).float()
        z = m.encode(x, onehot)[0]
        ref = mse(m.to_unit(m.decode(z, onehot)), m.to_unit(x)).double().mean().item()
        wrong = (ds.y + 1) % 10
        wrong_mse = mse(m.to_unit(m.reconstruct(x, labels=wrong)), m.to_unit(x)).double().mean().item()
    assert got == pytest.approx(ref, rel=1e-5)
    assert abs(got - wrong_mse) > 1e-7  # the labels matter, so the check above can fail


# ---- registry discovery ---------------------------------------------------------------------------------
PLUGIN = textwrap.dedent("""
    from dataclasses import dataclass
    from genzoo.models.autoencoder import Autoencoder as AE, AEConfig
    from genzoo.registry import register

    @register("{name}", AEConfig, "a model from {where}")
    class {cls}(AE):
        pass
""")


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    before = set(sys.modules)
    yield
    for m in set(sys.modules) - before:
        sys.modules.pop(m, None)
    registry._imported = False  # monkeypatch then restores the shipped registry and entry points


def test_entry_point_plugins_are_registered(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "gz_plugin_pkg.py").write_text(PLUGIN.format(name="plugin-ae", where="a plug-in", cls="PluginAE"))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="plugin-ae", value="gz_plugin_pkg", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: [ep])
    registry.refresh()
    assert "plugin-ae" in registry.names()
    assert registry.get("plugin-ae").summary == "a model from a plug-in"
    m = genzoo.train("plugin-ae", preset="tiny", steps=1, settings=FAST)
    assert type(m).__name__ == "PluginAE"


def test_broken_entry_point_names_itself(monkeypatch, clean_registry):
    ep = EntryPoint(name="bad", value="no_such_module_gz:thing", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: [ep])
    with pytest.raises(ImportError, match=r"entry point 'bad' = 'no_such_module_gz:thing'"):
        registry.refresh()


def test_a_new_model_file_is_discovered_without_editing_the_registry(tmp_path, monkeypatch, clean_registry):
    import importlib
    pkg = importlib.import_module("genzoo.models")  # (genzoo.models the attribute is the models() function)
    (tmp_path / "zz_newfamily.py").write_text(PLUGIN.format(name="newfamily-ae", where="a new file",
                                                            cls="NewFamilyAE"))
    monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(tmp_path)])
    assert "genzoo.models.zz_newfamily" in registry.model_modules()
    registry.refresh()
    assert "newfamily-ae" in registry.names()
    # the shipped families are all found by discovery too
    assert {"ae", "vae", "cvae", "gan", "dcgan"} <= set(registry.names())
    assert "genzoo.models.base" not in registry.model_modules()


def test_np_reference_for_subset_union():
    """Independent check with numpy: per-class draws are without replacement and inside the class."""
    rng = np.random.default_rng(0)
    y = torch.from_numpy(np.sort(rng.integers(0, 7, 500)))
    idx = subset_indices(500, 123, y, seed=5).numpy()
    counts = np.bincount(y.numpy(), minlength=7)
    got = np.bincount(y.numpy()[idx], minlength=7)
    assert got.sum() == 123 and np.all(np.abs(got - 123 * counts / 500) < 1)
    assert random_subset(genzoo.data.load("digits", "test"), 10_000) is not None


# ---- the evaluators that took first-N subsets: OOD scores, paired and two-domain translation ---------------
LEVELS = np.array([40, 90, 160, 230])  # class k's images are all this intensity: an image's class is readable


def _blocks(n_per=25, shape=(1, 8, 8), name="blocks"):
    """A dataset whose classes come in sorted blocks (as an image folder is read), class k at LEVELS[k]."""
    y = np.repeat(np.arange(len(LEVELS)), n_per)
    x = torch.from_numpy(np.broadcast_to(LEVELS[y].astype(np.uint8)[:, None, None, None], (len(y), *shape)).copy())
    return genzoo.data.Dataset(name, "test", x, torch.from_numpy(y), [f"c{k}" for k in range(len(LEVELS))], {})


def _classes_of(x01):
    """Each image's class from its (constant) intensity in [0, 1], with numpy."""
    v = np.asarray(x01, dtype=np.float64).reshape(len(x01), -1).mean(1) * 255
    return np.abs(v[:, None] - LEVELS[None]).argmin(1)


def _assert_proportional(classes, n, labels):
    """Per-class counts (numpy) within 1 of n N_k / N, and every class present."""
    full = np.bincount(labels, minlength=len(LEVELS))
    got = np.bincount(classes, minlength=len(LEVELS))
    assert got.sum() == n and np.all(got > 0) and np.all(np.abs(got - n * full / full.sum()) < 1), got


class _Fake(torch.nn.Module):
    """A translator / reconstructor whose output is black (0 in [0, 1]) and which records its inputs."""
    input_range, device, model_type, data_kind = (-1.0, 1.0), torch.device("cpu"), "fake", "paired"
    directions = ("a2b", "b2a")

    def __init__(self):
        super().__init__()
        self.seen = []

    from genzoo.models.base import GenerativeModel as _G
    prepare, to_unit = _G.prepare, _G.to_unit

    def can(self, what):
        return what == "reconstruct"

    def _black(self, x):
        self.seen.append(self.to_unit(x))
        return torch.full_like(x, -1.0)

    def translate(self, x, direction=None):
        return self._black(x)

    reconstruct = _black


def test_ood_scores_sample_every_class_of_a_class_sorted_set():
    from genzoo.evaluate.ood import ood_detection, ood_scores
    ds, m = _blocks(), _Fake()
    s = ood_scores(m, ds, n=30, seed=0, which=("recon",))["recon"].numpy()  # recon MSE = intensity^2 here
    classes = np.abs(np.sqrt(s)[:, None] * 255 - LEVELS[None]).argmin(1)
    _assert_proportional(classes, 30, ds.y.numpy())
    # the mean score is the whole set's (numpy, all 100 images) to within the rounding of the class counts;
    # the first 30 (25 of class 0, 5 of class 1) gave 0.033 against 0.33
    full = ((ds.x.numpy().astype(np.float64) / 255) ** 2).reshape(100, -1).mean(1).mean()
    r = ood_detection(m, ds, _blocks(), n=30)
    assert abs(r["mean_recon_in"] - full) < 0.05 and abs(r["mean_recon_ood"] - full) < 0.05
    assert abs(r["auroc_recon"] - 0.5) < 0.1  # the same distribution on both sides


def test_paired_translation_metrics_sample_every_class_of_a_class_sorted_set(monkeypatch):
    from genzoo.evaluate import translation as T
    ds = _blocks()
    paired = genzoo.data.Dataset("blocks", "test", ds.x, ds.y, ds.classes, {}, target=ds.x.clone())
    monkeypatch.setattr(T.gdata, "load", lambda *a, **k: paired)
    m = _Fake()
    r = T.evaluate_translation(m, "blocks", metrics="l1", n=30, seed=0)
    assert r["n"] == 30
    _assert_proportional(_classes_of(torch.cat(m.seen)), 30, ds.y.numpy())
    # l1 of a black output = the targets' mean intensity: the whole set's (0.509), not class 0's (0.19)
    assert abs(r["metrics"]["l1"] - ds.x.numpy().mean() / 255) < 0.05


def test_cycle_metrics_sample_every_class_of_class_sorted_domains():
    from genzoo.evaluate.cycle import cycle_metrics
    a, b = _blocks(name="a"), _blocks(name="b")
    unpaired = genzoo.data.Dataset("ab", "test", a.x, a.y, a.classes, {}, domain_b=b)
    m = _Fake()
    r = cycle_metrics(m, unpaired, n=30, kid=False, seed=0)
    first = _classes_of(m.seen[0])  # a2b: domain A's sources (then their translations come back, then B's)
    _assert_proportional(first, 30, a.y.numpy())
    _assert_proportional(_classes_of(m.seen[2]), 30, b.y.numpy())
    # |T'(T(x)) - x| with T' T black = the sources' mean intensity: the whole domain's, not class 0's
    for d in ("a2b", "b2a"):
        assert abs(r["metrics"][f"cycle_l1_{d}"] - a.x.numpy().mean() / 255) < 0.05
