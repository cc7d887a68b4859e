"""The latent toolbox against independent references: closed-form geometry, scikit-learn, scipy, planted
structure, and a stub model whose decoder is the identity (so decoded pictures are known exactly)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from genzoo import data as gd
from genzoo import latent as lt
from genzoo.data import Dataset
from genzoo.models.base import GenerativeModel, ModelConfig
from genzoo.train import train


@dataclass(frozen=True)
class StubConfig(ModelConfig):
    latent_dim: int = 2


class Identity(GenerativeModel):
    """encode = flatten, decode = reshape: a latent point *is* its picture. Pixels live in [-10, 10] so that
    `to_unit` maps them linearly: picture = (z + 10) / 20."""

    config_class = StubConfig
    input_range = (-10.0, 10.0)

    def __init__(self, latent_dim: int = 2, shape: tuple[int, int, int] | None = None, step: bool = False):
        super().__init__(StubConfig(image_shape=shape or (1, 1, latent_dim), num_classes=0, latent_dim=latent_dim))
        self.dummy = nn.Parameter(torch.zeros(()))
        self.step = step

    def encode(self, x):
        return x.reshape(len(x), -1)

    def decode(self, z):
        z = torch.where(z > 0, 5.0, -5.0) if self.step else z
        return z.reshape(len(z), *self.config.image_shape)


def unit(z):
    return (z + 10) / 20


def _fit(name: str, steps: int, **settings):
    s = {"log_every": 10, "sample_every": 0, "progress": False, "validate": False, **settings}
    return train(name, "mnist-mini", preset="tiny", settings=s, steps=steps)


@pytest.fixture(scope="module")
def tiny_vae():
    torch.set_num_threads(1)
    return _fit("vae", 60)


# ---- interpolation ------------------------------------------------------------------------------------
def test_lerp_and_slerp_endpoints_norms_and_angles():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    b = b / b.norm() * a.norm()  # equal norms
    t = torch.linspace(0, 1, 9)
    s = lt.slerp(a, b, t)
    assert torch.allclose(s[0], a, atol=1e-5) and torch.allclose(s[-1], b, atol=1e-5)
    assert torch.allclose(s.norm(dim=1), a.norm().expand(9), atol=1e-4)  # stays on the sphere
    theta = torch.arccos(torch.dot(a, b) / a.norm() ** 2)
    angles = torch.arccos((s @ a / (s.norm(dim=1) * a.norm())).clamp(-1, 1))
    assert torch.allclose(angles, t * theta, atol=1e-3)  # constant angular speed
    mid = lt.lerp(a, b, 0.5)[0]
    assert torch.allclose(mid, (a + b) / 2) and mid.norm() < a.norm()  # the straight line cuts inside
    assert torch.allclose(lt.slerp(a, 2 * a, t), lt.lerp(a, 2 * a, t))  # parallel: falls back to lerp
    p = lt.path(a, b, 5, "slerp")
    assert p.shape == (5, 16)
    with pytest.raises(ValueError, match="mode"):
        lt.path(a, b, 5, "cubic")
    with pytest.raises(ValueError, match="steps"):
        lt.path(a, b, 1)


def test_interpolate_decodes_the_path():
    m = Identity(3)
    xa, xb = torch.tensor([[[[1.0, -2.0, 3.0]]]]), torch.tensor([[[[-1.0, 4.0, 0.0]]]])
    imgs, z = lt.interpolate(m, xa, xb, steps=5)
    expected = torch.stack([(1 - t) * xa.flatten() + t * xb.flatten() for t in torch.linspace(0, 1, 5)])
    assert torch.allclose(z, expected, atol=1e-6)
    assert torch.allclose(imgs.reshape(5, 3), unit(expected), atol=1e-6)


# ---- manifold grid --------------------------------------------------------------------------------------
def test_manifold_grid_layout_and_spacings():
    imgs, z = lt.manifold_grid(Identity(2), n=3, span=1.0)
    rows = z.reshape(3, 3, 2)
    assert rows[0].tolist() == [[-1, 1], [0, 1], [1, 1]]  # top row: largest v, u left to right
    assert rows[2].tolist() == [[-1, -1], [0, -1], [1, -1]]
    assert torch.allclose(imgs.reshape(9, 2), unit(z))
    from scipy.stats import norm
    q = lt.grid_values(7, spacing="quantile")
    assert np.allclose(q.numpy(), norm.ppf(np.linspace(0.05, 0.95, 7)), atol=1e-5)
    with pytest.raises(ValueError, match="spacing"):
        lt.grid_values(5, spacing="log")


def test_pca_plane_matches_sklearn_and_grid_lies_on_it():
    from sklearn.decomposition import PCA
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(500, 3, generator=g) @ torch.tensor([[3.0, 0, 0], [1, 1, 0], [0, 0, 0.2]]) + 4
    origin, basis = lt.pca_plane(codes)
    p = PCA(2).fit(codes.numpy())
    assert np.allclose(origin.numpy(), p.mean_, atol=1e-4)
    scaled = p.components_ * np.sqrt(p.explained_variance_)[:, None]
    assert np.allclose(np.abs((basis.numpy() * scaled).sum(1)), (scaled ** 2).sum(1), rtol=1e-3)  # same up to sign
    _, z = lt.manifold_grid(Identity(3), n=4, plane=(origin, basis))
    resid = (z - origin) - ((z - origin) @ basis.T) @ torch.linalg.pinv(basis.T)  # off-plane component
    assert resid.abs().max() < 1e-4
    with pytest.raises(ValueError, match="dims"):
        lt.axis_plane(3, (0, 0))


# ---- projections ------------------------------------------------------------------------------------------
def test_projection_pca_round_trip_and_tsne_inverse():
    from sklearn.decomposition import PCA
    g = torch.Generator().manual_seed(1)
    codes = torch.randn(300, 5, generator=g)
    proj = lt.project(codes, "pca")
    assert np.allclose(np.abs(proj.xy), np.abs(PCA(2).fit_transform(codes.numpy())), atol=1e-4)
    assert np.allclose(proj.to_plane(codes.numpy()), proj.xy, atol=1e-5)
    on_plane = proj.to_latent(proj.xy[:10])
    assert np.allclose(proj.to_plane(on_plane), proj.xy[:10], atol=1e-5)
    assert lt.project(codes[:, :2]).method == "latent"
    ts = lt.project(codes[:120], "tsne")
    assert ts.xy.shape == (120, 2) and not ts.linear
    assert np.allclose(ts.to_latent(ts.xy[:5]), codes[:5].numpy(), atol=1e-3)  # a map point decodes to its code
    assert np.allclose(ts.to_plane(codes[:5].numpy()), ts.xy[:5], atol=1e-3)
    with pytest.raises(ValueError, match="2-D latent"):
        lt.project(codes, "latent")


def test_save_latent_map(tmp_path):
    xy = np.random.default_rng(0).normal(size=(50, 2))
    p = lt.save_latent_map(tmp_path / "m.png", xy, np.arange(50) % 3, ["a", "b", "c"], "t")
    from PIL import Image
    assert Image.open(p).size[0] > 100


# ---- attributes and arithmetic ------------------------------------------------------------------------------
def test_planted_attribute_direction_is_recovered():
    g = torch.Generator().manual_seed(2)
    d = torch.randn(16, generator=g)
    d = d / d.norm()
    codes = torch.randn(4000, 16, generator=g)
    mask = torch.rand(4000, generator=g) < 0.3
    codes[mask] += 3 * d
    found = lt.attribute_direction(codes, mask)
    assert torch.dot(found / found.norm(), d) > 0.99
    assert found.norm() == pytest.approx(3.0, abs=0.2)
    labels = mask.long() * 4  # as classes 0 and 4
    assert torch.allclose(lt.class_direction(codes, labels, 4), found, atol=1e-5)
    with pytest.raises(ValueError, match="with and"):
        lt.attribute_direction(codes, torch.ones(4000, dtype=torch.bool))


def test_class_means_match_numpy():
    g = torch.Generator().manual_seed(3)
    codes, y = torch.randn(100, 4, generator=g), torch.randint(0, 3, (100,), generator=g)
    means = lt.class_means(codes, y, num_classes=4)
    for k in range(3):
        assert np.allclose(means[k].numpy(), codes.numpy()[y.numpy() == k].mean(0), atol=1e-5)
    assert torch.isnan(means[3]).all()


def test_shift_codes_and_images():
    z, d = torch.zeros(2, 3), torch.tensor([1.0, 0.0, -1.0])
    assert torch.allclose(lt.shift(z, d, 2.0), torch.tensor([[2.0, 0, -2]] * 2))
    many = lt.shift(z, d, [-1, 0, 1])
    assert many.shape == (2, 3, 3) and torch.allclose(many[:, 0], -d.expand(2, 3))
    imgs = lt.shift(z.reshape(2, 1, 1, 3), d, [0.0, 1.0], model=Identity(3))
    assert imgs.shape == (2, 2, 1, 1, 3) and torch.allclose(imgs[1, 1].flatten(), unit(d))


def test_arithmetic_expressions():
    assert lt.parse_expression("a - b + 0.5*c") == [(1.0, "a"), (-1.0, "b"), (0.5, "c")]
    assert lt.parse_expression("-2*x+class:7-12") == [(-2.0, "x"), (1.0, "class:7"), (-1.0, "12")]
    v = {"a": torch.tensor([1.0, 2]), "b": torch.tensor([0.5, 0]), "c": torch.tensor([4.0, 4])}
    assert torch.allclose(lt.arithmetic("a - b + 0.5*c", v), torch.tensor([2.5, 4.0]))
    for bad in ("a b", "a + ", "", "a * b"):
        with pytest.raises(ValueError):
            lt.arithmetic(bad, v)
    with pytest.raises(ValueError, match="no code given for d"):
        lt.arithmetic("a + d", v)


def test_read_attributes_txt_and_csv(tmp_path):
    txt = tmp_path / "list_attr_celeba.txt"
    txt.write_text("2\nSmiling Male\n000001.jpg  1 -1\n000002.jpg -1  1\n")
    names, ids, vals = lt.read_attributes(txt)
    assert names == ["Smiling", "Male"] and ids == ["000001.jpg", "000002.jpg"]
    assert vals.tolist() == [[True, False], [False, True]]
    csv = tmp_path / "a.csv"
    csv.write_text("image_id,Smiling,Male\n000001.jpg,1,-1\n000002.jpg,-1,1\n")
    assert lt.read_attributes(csv)[2].tolist() == vals.tolist()
    (tmp_path / "bad.txt").write_text("Smiling Male\nx.jpg 1\n")
    with pytest.raises(ValueError, match="row 1"):
        lt.read_attributes(tmp_path / "bad.txt")


def test_file_attribute_direction_reads_images(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    pix = rng.integers(0, 256, size=(6, 2, 2), dtype=np.uint8)
    smiling = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    lines = ["6", "Smiling"]
    for i, p in enumerate(pix):
        Image.fromarray(p).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png {1 if smiling[i] else -1}")
    (tmp_path / "attr.txt").write_text("\n".join(lines) + "\n")
    d = lt.file_attribute_direction(Identity(4, shape=(1, 2, 2)), tmp_path / "attr.txt", tmp_path, "Smiling")
    x = pix.reshape(6, 4) / 255 * 20 - 10  # the stub's model inputs
    assert np.allclose(d.numpy(), x[smiling].mean(0) - x[~smiling].mean(0), atol=1e-4)


def test_file_attribute_direction_samples_both_sides_of_a_rare_attribute(tmp_path):
    """Only the last 2 of 10 listed images have the attribute: the first 4 rows would hold none of them; n=4
    takes both and 2 of the 8 without, so the direction is mean(with) - the mean of some pair without."""
    from itertools import combinations
    from PIL import Image
    rng = np.random.default_rng(1)
    pix = rng.integers(0, 256, size=(10, 2, 2), dtype=np.uint8)
    bald = np.arange(10) >= 8
    lines = ["10", "Bald"]
    for i, p in enumerate(pix):
        Image.fromarray(p).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png {1 if bald[i] else -1}")
    (tmp_path / "attr.txt").write_text("\n".join(lines) + "\n")
    d = lt.file_attribute_direction(Identity(4, shape=(1, 2, 2)), tmp_path / "attr.txt", tmp_path, "Bald", n=4)
    x = pix.reshape(10, 4) / 255 * 20 - 10
    rest = x[bald].mean(0) - d.numpy()  # the mean of the images without the attribute that were used
    assert any(np.allclose(rest, x[[i, j]].mean(0), atol=1e-4) for i, j in combinations(range(8), 2))
    rows = lt.attributes.balanced_rows(torch.tensor(bald), 9).tolist()
    assert len(rows) == len(set(rows)) == 9 and rows == sorted(rows)
    counts = [int(torch.tensor(bald)[lt.attributes.balanced_rows(torch.tensor(bald), m)].sum()) for m in (4, 9, 10)]
    assert counts == [2, 2, 2]  # both rare rows whenever n allows; n = 10 is every row


# ---- sampling ----------------------------------------------------------------------------------------------
def test_fit_gaussian_samples_have_the_codes_statistics():
    g = torch.Generator().manual_seed(4)
    codes = torch.randn(2000, 3, generator=g) @ torch.tensor([[2.0, 0, 0], [1, 1, 0], [0, 0.5, 0.3]]) + 1
    mean, chol = lt.fit_gaussian(codes)
    s = lt.sample_gaussian(mean, chol, 100_000, generator=g)
    assert torch.allclose(s.mean(0), codes.mean(0), atol=0.03)
    assert torch.allclose(torch.cov(s.T), torch.cov(codes.T), atol=0.05)


def test_sampling_and_toolbox_on_vae_and_ae(tiny_vae):
    test = gd.load("mnist-mini", "test")
    ae = _fit("ae", 30)
    for m in (tiny_vae, ae):  # the same functions for both: capabilities, not model types
        s = lt.sample_prior(m, 5)
        assert s.shape == (5, 1, 28, 28) and 0 <= float(s.min()) and float(s.max()) <= 1
        g = lt.sample_code_gaussian(m, test, 4, max_codes=300)
        assert g.shape == (4, 1, 28, 28)
        imgs, z = lt.interpolate(m, test.x[0], test.x[1], steps=6, mode="slerp")
        assert imgs.shape == (6, 1, 28, 28) and z.shape == (6, m.latent_dim)
        codes, y = lt.encode_dataset(m, test, 200)
        grid, _ = lt.manifold_grid(m, 4, plane=lt.pca_plane(codes))
        assert grid.shape == (16, 1, 28, 28)
        r = lt.smoothness(m, test, n_pairs=8, steps=5)
        assert r["path_ratio"] >= 1 - 1e-5 and 0.25 - 1e-6 <= r["max_step_share"] <= 1


def test_cvae_toolbox_needs_and_uses_labels():
    m = _fit("cvae", 20)
    test = gd.load("mnist-mini", "test")
    s = lt.sample_prior(m, 3, labels=torch.tensor([1, 1, 8]))
    assert s.shape == (3, 1, 28, 28)
    imgs, _ = lt.interpolate(m, test.x[0], test.x[1], steps=4, labels=(int(test.y[0]), int(test.y[1])))
    assert imgs.shape == (4, 1, 28, 28)
    with pytest.raises(ValueError, match="labels"):
        lt.decode(m, torch.zeros(2, m.latent_dim))


# ---- smoothness ---------------------------------------------------------------------------------------------
def test_random_pairs_differ():
    y = torch.arange(50) % 5
    p = lt.random_pairs(50, 500, seed=1, labels=y)
    assert (p[:, 0] != p[:, 1]).all() and (y[p[:, 0]] != y[p[:, 1]]).all()


def test_smoothness_known_values():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(40, 1, 1, 1, generator=g) * 2  # well inside [-10, 10]: no clamping in to_unit
    ds = Dataset("points", "test", z, (z.flatten() > 0).long())  # classes by sign: every pair crosses 0
    K = 6
    straight = lt.smoothness(Identity(1), ds, n_pairs=30, steps=K)
    assert straight["path_ratio"] == pytest.approx(1.0, abs=1e-5)  # a straight line in pixel space
    assert straight["max_step_share"] == pytest.approx(1 / (K - 1), abs=1e-5)  # even steps
    pairs = lt.random_pairs(40, 30, 0, ds.y)
    gap = (unit(z.flatten()[pairs[:, 1]]) - unit(z.flatten()[pairs[:, 0]])).abs()
    assert straight["mean_step_change"] == pytest.approx(float(gap.mean()) / (K - 1), rel=1e-4)
    jumpy = lt.smoothness(Identity(1, step=True), ds, n_pairs=30, steps=K)
    assert jumpy["max_step_share"] == pytest.approx(1.0)  # the picture changes in a single jump

    class Confident:  # "recognises" an image when its pixel is far from the middle grey
        def probs(self, x):
            p = x.reshape(len(x), 1)
            return torch.cat([p, 1 - p], 1)

    r = lt.smoothness(Identity(1), ds, n_pairs=30, steps=K, classifier=Confident(), threshold=0.7)
    t = torch.linspace(0, 1, K)[1:-1]
    za, zb = z.flatten()[pairs[:, 0]], z.flatten()[pairs[:, 1]]
    pix = unit((1 - t) * za[:, None] + t * zb[:, None])
    assert r["confident_fraction"] == pytest.approx(float((torch.maximum(pix, 1 - pix) >= 0.7).float().mean()))


# ---- command line ----------------------------------------------------------------------------------------
def test_cli_latent_commands(tmp_path, tiny_train):
    from PIL import Image
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401
    from genzoo.cli._app import app

    _, run = tiny_train("vae", steps=20)
    img = tmp_path / "digit.png"
    Image.fromarray(gd.load("mnist-mini", "test").x[5, 0].numpy()).resize((40, 40)).save(img)
    cli = CliRunner()

    def ok(*args):
        r = cli.invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, r.output
        return r.output

    out = ok("interpolate", run, "--from", 0, "--to", img, "--steps", 7, "--mode", "slerp", "--out",
             tmp_path / "i.npy")
    assert f"wrote {tmp_path / 'i.npy'}" in out and np.load(tmp_path / "i.npy").shape == (7, 28, 28)
    ok("latent", "grid", run, "-n", 4, "--plane", "dims:0,1", "--spacing", "quantile", "--out", tmp_path / "g.npy")
    assert np.load(tmp_path / "g.npy").shape == (16, 28, 28)
    ok("latent", "map", run, "--method", "pca", "-n", 200, "--out", tmp_path / "m.png", "--points", tmp_path / "m.csv")
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 201
    ok("latent", "shift", run, "--images", "0,1", "--attribute", "7", "--alphas", "-1,0,1", "-n", 500,
       "--out", tmp_path / "s.npy")
    assert np.load(tmp_path / "s.npy").shape == (6, 28, 28)
    out = ok("latent", "arithmetic", run, "a - class:1 + class:7", "--let", "a=3", "-n", 500, "--out",
             tmp_path / "a.npy")
    got = np.load(tmp_path / "a.npy")
    assert got.shape == (4, 28, 28)
    # independent: posterior means in numpy, class means over the documented stratified sample of 500
    import genzoo
    from genzoo.evaluate.subsets import subset_indices
    model, test = genzoo.load(run), gd.load("mnist-mini", "test")
    idx = subset_indices(len(test), 500, test.y, seed=0)
    with torch.no_grad():
        codes = model.encode(model.prepare(test.x[idx]))[0].double().numpy()
        z_a = model.encode(model.prepare(test.x[3:4]))[0].double().numpy()[0]
    y = test.y[idx].numpy()
    m1, m7 = codes[y == 1].mean(0), codes[y == 7].mean(0)
    z = np.stack([z_a, m1, m7, z_a - m1 + m7])
    with torch.no_grad():
        ref = model.to_unit(model.decode(torch.from_numpy(z).float())).numpy()[:, 0]  # (4, 28, 28) in [0, 1]
    assert np.abs(got.astype(np.float64) / 255 - ref).max() <= 1 / 255 + 1e-6
    assert np.abs(ref[3] - ref[0]).max() > 0.01  # the sum differs from `a` alone (the check can fail)
    out = ok("latent", "smoothness", run, "--pairs", 5, "--steps", 4, "--classifier", "none", "--out",
             tmp_path / "s.json")
    assert '"path_ratio"' in out

    r = cli.invoke(app, ["interpolate", str(run), "--from", "0", "--to", "99999", "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "out of range" in r.output
    r = cli.invoke(app, ["latent", "grid", str(run), "--plane", "diagonal", "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "--plane" in r.output


def test_cli_latent_map_and_pca_plane_sample_every_class(tmp_path, tiny_train, monkeypatch):
    """On a class-sorted split the first n images are one class: `latent map` showed one colour and the
    `latent grid` PCA plane was one class's. Both now encode a seeded sample, stratified by class."""
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401
    from genzoo.cli import latent as cli_latent
    from genzoo.cli._app import app

    _, run = tiny_train("vae", steps=5)
    test = gd.load("mnist-mini", "test")
    # class k: 300 + 40 k images (the class's test images repeated, cut), in class blocks: 4,800 in all
    idx = torch.cat([torch.nonzero(test.y == k).flatten().repeat(4)[:300 + 40 * k] for k in range(10)])
    sorted_ds = test.subset(idx)
    assert sorted_ds.y[:2000].max() < 7  # a first-2000 slice would miss classes 7, 8, 9
    monkeypatch.setattr(cli_latent, "_dataset", lambda run, data, split: sorted_ds)
    pop = np.bincount(sorted_ds.y.numpy(), minlength=10)

    def proportional(labels, n):
        got = np.bincount(np.asarray(labels, dtype=int), minlength=10)
        assert got.sum() == n and (got > 0).all(), got
        assert np.abs(got - n * pop / pop.sum()).max() < 1, (got, n * pop / pop.sum())

    cli = CliRunner()
    picked = {}
    for seed in (0, 1):
        csv = tmp_path / f"m{seed}.csv"
        r = cli.invoke(app, ["latent", "map", str(run), "--method", "pca", "-n", "300", "--seed", str(seed),
                             "--out", str(tmp_path / "m.png"), "--points", str(csv)])
        assert r.exit_code == 0, r.output
        rows = np.loadtxt(csv, delimiter=",", skiprows=1)
        proportional(rows[:, 2], 300)
        picked[seed] = rows[:, :2]
    assert not np.allclose(picked[0], picked[1])  # --seed draws another sample
    seen = []
    real_encode = lt.encode_dataset

    def encode_dataset(*args, **kw):
        codes, y = real_encode(*args, **kw)
        seen.append(y)
        return codes, y

    monkeypatch.setattr(lt, "encode_dataset", encode_dataset)
    r = cli.invoke(app, ["latent", "grid", str(run), "-n", "3", "--plane", "pca", "--out", str(tmp_path / "g.npy")])
    assert r.exit_code == 0, r.output
    assert len(seen) == 1
    proportional(seen[0], 2000)  # the plane's 2,000 test codes
