"""The explorer's API through FastAPI's TestClient: every route, bad input, the cache, concurrency.

References are independent of the explorer: the model called directly, the data set loaded directly, numpy's
SVD for the PCA plane, scipy for centres of mass, closed forms for lerp/slerp midpoints.
"""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")  # FastAPI's TestClient uses it (plain httpx is deprecated there)
from fastapi.testclient import TestClient  # noqa: E402

from genzoo import data as gd  # noqa: E402
from genzoo import registry  # noqa: E402
from genzoo.explorer import Explorer, create_app  # noqa: E402
from genzoo.explorer.limits import TOKEN_HEADER  # noqa: E402
from genzoo.explorer.uploads import MAX_BYTES  # noqa: E402
from genzoo.train import rundir as R  # noqa: E402
from genzoo.train import train  # noqa: E402

STEPS = 40
BYTES = {"content-type": "application/octet-stream"}  # what the page sends with an upload (or image/png, image/jpeg)
SETTINGS = {"log_every": 10, "sample_every": 0, "progress": False}
METRICS = {"model_type": "ae", "data": "mnist-mini", "n": 2000, "extractor": "mnist",  # as `genzoo evaluate` writes
           "metrics": {"mse": 0.0421, "psnr": 14.2, "class_histogram": [0.1] * 10}, "note": "domain FID ..."}


def _train(tmp_path_factory, name: str, data: str = "mnist-mini", steps: int = STEPS, **model_settings):
    out = tmp_path_factory.mktemp(name) / "run"
    model = train(name, data, out=out, settings={**SETTINGS, **model_settings}, steps=steps, preset="tiny")
    return model.eval(), out


def page_client(app, **kw) -> TestClient:
    """A client that sends the page's token, as the explorer's page does (tests/test_explorer_limits.py checks
    that requests without it are refused)."""
    return TestClient(app, headers={TOKEN_HEADER: app.state.token}, **kw)


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    model, out = _train(tmp_path_factory, "ae")
    (out / "metrics.json").write_text(json.dumps(METRICS))
    return model, out


@pytest.fixture(scope="module")
def client(ae_run):
    return page_client(create_app(ae_run[1], allowed_hosts=["testserver"]))


@pytest.fixture(scope="module")
def test_set():
    return gd.load("mnist-mini", "test")


def png_array(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def data_url_array(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return png_array(base64.b64decode(url.split(",", 1)[1]))


def to_png(a: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, **kw)
    return buf.getvalue()


def u8(x: torch.Tensor) -> np.ndarray:
    """(1, 1, H, W) in [0, 1] -> (H, W) uint8, the way a PNG stores it."""
    return (x[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def close(a: np.ndarray, b: np.ndarray, tol: int = 1) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= tol


def reference_codes(model, test_set, n=2000) -> np.ndarray:
    with torch.no_grad():
        return model.code(model.prepare(test_set.x[:n])).double().numpy()


def pca_plane(codes: np.ndarray):
    """Mean and top-2 principal directions by numpy's SVD (rows of vt)."""
    mean = codes.mean(0)
    _, _, vt = np.linalg.svd(codes - mean, full_matrices=False)
    return mean, vt[:2]


# ---- page, static files, headers ---------------------------------------------------------------------------
def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert '<script src="/static/app.js"' in r.text
    for name in ("app.js", "style.css", "favicon.svg"):
        assert client.get(f"/static/{name}").status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_page_refers_to_no_external_resource():
    from genzoo.explorer.app import STATIC
    for f in STATIC.iterdir():
        text = f.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, f.name


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                                  "/static/%2e%2e/%2e%2e/train/rundir.py", "/static//etc/passwd",
                                  "/config.json", "/model.safetensors", "/api/../config.json"])
def test_no_route_reads_a_client_path(client, path):
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code, r.text[:200])


def test_foreign_host_header_is_refused(ae_run):
    c = page_client(create_app(ae_run[1]), base_url="http://127.0.0.1:8000")
    assert c.get("/api/info").status_code == 200
    assert c.get("/api/info", headers={"host": "[::1]:8000"}).status_code == 200
    assert c.get("/api/info", headers={"host": "localhost"}).status_code == 200
    r = c.get("/api/info", headers={"host": "evil.example:8000"})  # a DNS-rebinding page
    assert r.status_code == 400 and "127.0.0.1" in r.json()["detail"]


# ---- info ------------------------------------------------------------------------------------------------------
def test_info_describes_the_run(client, ae_run):
    model, out = ae_run
    info = client.get("/api/info").json()
    assert info["model_type"] == "ae" and info["data"] == "mnist-mini"
    assert info["latent_dim"] == model.config.latent_dim == 8
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["panels"] == ["samples", "map", "draw", "interpolate", "attributes"]
    assert info["classes"] == [str(i) for i in range(10)] and not info["conditional"]
    assert info["background"] == "dark" and info["map_methods"] == ["pca", "tsne"]
    assert info["metrics"] == METRICS
    assert info["steps"] == STEPS and "temperature" in info["sample_options"]
    assert info["test_size"] == 2000 and info["noise"] is None


# ---- samples and test images ------------------------------------------------------------------------------
def test_samples_match_the_model_called_directly(client, ae_run):
    model, _ = ae_run
    r = client.get("/api/samples.png", params={"n": 1, "seed": 7, "temperature": 0.5})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with torch.no_grad():
        ref = model.sample(1, generator=torch.Generator().manual_seed(7), temperature=0.5)
    assert close(png_array(r.content), u8(ref))
    grid = png_array(client.get("/api/samples.png", params={"n": 16, "seed": 1}).content)
    assert grid.shape == (4 * 30 + 2, 4 * 30 + 2)  # 4 x 4 images of 28 px, 2 px padding
    again = png_array(client.get("/api/samples.png", params={"n": 16, "seed": 1}).content)
    other = png_array(client.get("/api/samples.png", params={"n": 16, "seed": 2}).content)
    assert np.array_equal(grid, again) and not np.array_equal(grid, other)
    big = png_array(client.get("/api/samples.png", params={"n": 1, "seed": 7, "scale": 4}).content)
    assert big.shape == (112, 112)


@pytest.mark.parametrize("params,status,words", [
    ({"n": 0}, 422, "n"), ({"n": 1000}, 422, "n"), ({"truncation": 1.0}, 400, "no truncation setting"),
    ({"label": 3}, 400, "not conditional"), ({"temperature": -1}, 422, "temperature"), ({"scale": 50}, 422, "scale"),
])
def test_bad_sample_requests(client, params, status, words):
    r = client.get("/api/samples.png", params=params)
    assert r.status_code == status and words in r.text


def test_test_images_and_codes(client, ae_run, test_set):
    model, _ = ae_run
    r = client.get("/api/test.png", params={"index": 5})
    assert np.array_equal(png_array(r.content), test_set.x[5, 0].numpy())
    j = client.get("/api/code", params={"index": 5}).json()
    assert j["label"] == int(test_set.y[5]) and j["xy"] is None
    with torch.no_grad():
        ref = model.code(model.prepare(test_set.x[5:6]))[0].numpy()
    np.testing.assert_allclose(j["z"], ref, rtol=1e-5, atol=1e-5)
    r = client.get("/api/test.png", params={"index": 2000})
    assert r.status_code == 404 and "0..1999" in r.json()["detail"]
    assert client.get("/api/code", params={"index": -1}).status_code == 422


# ---- the latent map -----------------------------------------------------------------------------------------
def test_pca_map_matches_numpy_svd(client, ae_run, test_set):
    model, _ = ae_run
    m = client.get("/api/map", params={"method": "pca"}).json()
    xy = np.array(m["xy"]).reshape(-1, 2)
    assert m["labels"] == test_set.y[:2000].tolist() and m["classes"] == test_set.classes
    codes = reference_codes(model, test_set)
    mean, v = pca_plane(codes)
    ref = (codes - mean) @ v.T
    signs = np.sign((xy * ref).sum(0))  # principal directions are defined up to sign
    np.testing.assert_allclose(xy, ref * signs, atol=2e-3 * np.abs(ref).max())
    x0, x1, y0, y1 = m["bounds"]
    assert x0 < xy[:, 0].min() and x1 > xy[:, 0].max() and y0 < xy[:, 1].min() and y1 > xy[:, 1].max()
    # a test image's place on the map is its projection
    j = client.get("/api/code", params={"index": 11, "method": "pca"}).json()
    np.testing.assert_allclose(j["xy"], xy[11], atol=1e-3 * np.abs(ref).max())


def test_any_map_point_decodes_to_the_plane_point(client, ae_run, test_set):
    model, _ = ae_run
    m = client.get("/api/map", params={"method": "pca"}).json()
    xy = np.array(m["xy"]).reshape(-1, 2)
    mean, v = pca_plane(reference_codes(model, test_set))
    ref_xy = (reference_codes(model, test_set)[:50] - mean) @ v.T
    signs = np.sign((xy[:50] * ref_xy).sum(0))
    far = 3 * np.abs(xy).max(0)  # far outside the cloud: an empty region
    for x, y in [(0.0, 0.0), (float(far[0]), float(-far[1])), (float(xy[3, 0]), float(xy[3, 1]))]:
        r = client.get("/api/map/decode.png", params={"method": "pca", "x": x, "y": y})
        assert r.status_code == 200
        z = mean + (np.array([x, y]) * signs) @ v
        with torch.no_grad():
            ref = model.decode(torch.tensor(z, dtype=torch.float32)[None])
        assert close(png_array(r.content), u8(ref))


def test_map_errors(client):
    r = client.get("/api/map", params={"method": "latent"})
    assert r.status_code == 400 and "pca, tsne" in r.json()["detail"]
    assert client.get("/api/map", params={"method": "umap"}).status_code == 400
    assert client.get("/api/map/decode.png", params={"method": "pca", "x": "nan", "y": 0}).status_code == 422
    assert client.get("/api/map/decode.png", params={"method": "pca", "x": 1}).status_code == 422


def test_map_is_cached_in_the_run_directory(ae_run, monkeypatch):
    model, out = ae_run
    ex = Explorer(out, map_points=300)
    first = ex.latent_map("pca")
    cache = out / "explorer" / "map-pca-mnist-mini-300-s0.npz"
    assert cache.exists() and not list(cache.parent.glob("*.tmp"))
    import genzoo.latent

    def boom(*a, **k):
        raise AssertionError("the map was computed again instead of read from the cache")

    monkeypatch.setattr(genzoo.latent, "project", boom)
    again = Explorer(out, map_points=300).latent_map("pca")
    np.testing.assert_array_equal(again.proj.xy, first.proj.xy)
    np.testing.assert_array_equal(again.labels, first.labels)
    monkeypatch.undo()
    cache.write_bytes(b"not an npz file")  # a damaged cache is recomputed and rewritten
    third = Explorer(out, map_points=300).latent_map("pca")
    np.testing.assert_allclose(third.proj.xy, first.proj.xy, rtol=1e-6, atol=1e-6)
    assert np.load(cache)["xy"].shape == (300, 2)


def test_tsne_map_decodes_near_its_points(ae_run, test_set):
    model, out = ae_run
    ex = Explorer(out, map_points=250)
    c = page_client(create_app(ex, allowed_hosts=["testserver"]))
    m = c.get("/api/map", params={"method": "tsne"}).json()
    xy = np.array(m["xy"]).reshape(-1, 2)
    assert xy.shape == (250, 2)
    # the points are a seeded class-stratified sample of the test images (25 of each digit, not the first 250)
    from genzoo.evaluate.subsets import random_subset
    sub = random_subset(test_set, 250, seed=0)
    assert np.bincount(m["labels"], minlength=10).tolist() == [25] * 10 == np.bincount(sub.y.numpy()).tolist()
    # exactly on a map point, the inverse-distance weighting returns (almost only) that point's code
    r = c.get("/api/map/decode.png", params={"method": "tsne", "x": xy[7, 0], "y": xy[7, 1]})
    with torch.no_grad():
        ref = model.decode(model.code(model.prepare(sub.x[7:8])))
    assert close(png_array(r.content), u8(ref), tol=2)


# ---- uploads ---------------------------------------------------------------------------------------------------
def test_upload_of_a_test_image_is_seen_unchanged(client, ae_run, test_set):
    model, _ = ae_run
    a = test_set.x[9, 0].numpy()
    j = client.post("/api/encode", headers=BYTES, params={"method": "pca"}, content=to_png(a)).json()
    assert np.array_equal(data_url_array(j["input"]), a)
    x = model.prepare(test_set.x[9:10])
    with torch.no_grad():
        z, rec = model.code(x), model.reconstruct(x)
    np.testing.assert_allclose(j["z"], z[0].numpy(), rtol=1e-5, atol=1e-5)
    assert close(data_url_array(j["reconstruction"]), u8(rec))
    ref_xy = client.get("/api/code", params={"index": 9, "method": "pca"}).json()["xy"]
    np.testing.assert_allclose(j["xy"], ref_xy, rtol=1e-4, atol=1e-4)


def test_upload_conversions(client, test_set):
    a = test_set.x[9, 0].numpy()
    # dark ink on white paper is inverted automatically for a white-on-black data set
    j = client.post("/api/encode", headers=BYTES, content=to_png(255 - a)).json()
    assert np.array_equal(data_url_array(j["input"]), a)
    j = client.post("/api/encode", headers=BYTES, params={"invert": False}, content=to_png(255 - a)).json()
    assert np.array_equal(data_url_array(j["input"]), 255 - a)
    # colour, JPEG, and a larger image are converted to the model's 28 x 28 grey
    rgb = np.stack([a, a, a], -1)
    j = client.post("/api/encode", headers=BYTES, content=to_png(rgb, "JPEG", quality=95)).json()
    assert np.abs(data_url_array(j["input"]).astype(int) - a).mean() < 6
    big = np.asarray(Image.fromarray(a).resize((112, 112), Image.NEAREST))
    j = client.post("/api/encode", headers=BYTES, content=to_png(big)).json()
    assert np.abs(data_url_array(j["input"]).astype(int) - a).mean() < 12


def test_fit_centres_a_drawing_like_mnist(client):
    from scipy import ndimage
    canvas = np.zeros((280, 280), np.uint8)
    canvas[20:120, 200:230] = 255  # a thick stroke in the top-right corner, 100 px tall
    j = client.post("/api/encode", headers=BYTES, params={"fit": True}, content=to_png(canvas)).json()
    seen = data_url_array(j["input"])
    cy, cx = ndimage.center_of_mass(seen.astype(float))
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75
    rows = np.nonzero(seen.max(1) > 25)[0]
    assert 18 <= rows.max() - rows.min() + 1 <= 21  # the longer side scaled to MNIST's 20-pixel box
    empty = client.post("/api/encode", headers=BYTES, params={"fit": True},
                        content=to_png(np.zeros((50, 50), np.uint8))).json()
    assert data_url_array(empty["input"]).max() == 0


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (1-bit grey), with a tiny IDAT: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (28, 28)).save(buf, format="GIF")
    return buf.getvalue()


@pytest.mark.parametrize("body,status,words", [
    (b"", 400, "empty"),
    (b"hello, this is not an image", 415, "not a PNG or JPEG"),
    (b"%PDF-1.4 ...", 415, "not a PNG or JPEG"),
    ("gif", 415, "not a PNG or JPEG"),
    ("truncated", 400, "truncated or corrupt"),
    (_png_header_only(5000, 5000), 413, "25,000,000 pixels"),
    (_png_header_only(30000, 30000), 413, "too large"),  # beyond Pillow's own decompression-bomb limit
])
def test_bad_uploads_get_a_readable_4xx(client, test_set, body, status, words):
    if body == "gif":
        body = _gif()
    elif body == "truncated":
        full = to_png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
        body = full[: len(full) // 2]
    r = client.post("/api/encode", headers=BYTES, content=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_uploads_above_the_byte_limit_are_refused(client):
    r = client.post("/api/encode", headers=BYTES, content=b"\x89PNG" + b"\0" * MAX_BYTES)
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def stream():  # no Content-Length: the server counts while reading
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b"\0" * 65536

    r = client.post("/api/encode", headers=BYTES, content=stream())
    assert r.status_code == 413 and "limit" in r.json()["detail"]


# ---- decode, interpolate, attributes ------------------------------------------------------------------------
def _decode_ref(model, z) -> np.ndarray:
    with torch.no_grad():
        return u8(model.decode(torch.as_tensor(np.asarray(z), dtype=torch.float32).reshape(1, -1)))


def test_decode(client, ae_run):
    model, _ = ae_run
    z = np.linspace(-1, 1, 8)
    r = client.post("/api/decode.png", json={"z": [z.tolist()]})
    assert close(png_array(r.content), _decode_ref(model, z))
    r = client.post("/api/decode.png", json={"z": [[0.0] * 5]})
    assert r.status_code == 400 and "8 numbers" in r.json()["detail"]
    r = client.post("/api/decode.png", content=b'{"z": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}',
                    headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and "finite" in r.text
    assert client.post("/api/decode.png", json={"z": [[0.0] * 8] * 65}).status_code == 422
    assert client.post("/api/decode.png", json={"z": "zeros"}).status_code == 422


def test_interpolation_paths(client, ae_run):
    model, _ = ae_run
    g = np.random.default_rng(1)
    a, b = g.normal(size=8), g.normal(size=8)
    b *= np.linalg.norm(a) / np.linalg.norm(b)  # equal norms: slerp keeps the norm
    strip = png_array(client.post("/api/interpolate.png", json={"a": a.tolist(), "b": b.tolist(), "mode": "lerp",
                                                                "ts": [0, 0.5, 1]}).content)
    assert strip.shape == (32, 3 * 30 + 2)
    tiles = [strip[2:30, 2 + 30 * i: 30 + 30 * i] for i in range(3)]
    assert close(tiles[0], _decode_ref(model, a)) and close(tiles[2], _decode_ref(model, b))
    assert close(tiles[1], _decode_ref(model, (a + b) / 2))
    mid = png_array(client.post("/api/interpolate.png", json={"a": a.tolist(), "b": b.tolist(), "mode": "slerp",
                                                              "ts": [0.5]}).content)
    slerp_mid = (a + b) / np.linalg.norm(a + b) * np.linalg.norm(a)  # the great circle's midpoint
    assert close(mid, _decode_ref(model, slerp_mid))
    bad = client.post("/api/interpolate.png", json={"a": a.tolist(), "b": b.tolist(), "mode": "cubic", "ts": [0.5]})
    assert bad.status_code == 422
    assert client.post("/api/interpolate.png", json={"a": a.tolist(), "b": b.tolist(), "ts": []}).status_code == 422
    assert client.post("/api/interpolate.png", json={"a": [1.0], "b": b.tolist(), "ts": [0.5]}).status_code == 400


def test_attribute_shift_moves_along_the_class_direction(client, ae_run, test_set):
    model, _ = ae_run
    codes = reference_codes(model, test_set)
    y = test_set.y[:2000].numpy()
    d3 = codes[y == 3].mean(0) - codes[y != 3].mean(0)
    d7 = codes[y == 7].mean(0) - codes[y != 7].mean(0)
    z = codes[0]
    r = client.post("/api/attributes.png", json={"z": z.tolist(), "alphas": {"3": 1.5, "7": -0.5}})
    assert r.status_code == 200
    assert close(png_array(r.content), _decode_ref(model, z + 1.5 * d3 - 0.5 * d7))
    r = client.post("/api/attributes.png", json={"z": z.tolist(), "alphas": {"42": 1.0}})
    assert r.status_code == 400 and "class 42" in r.json()["detail"]


def test_denoise_needs_a_denoising_model(client):
    r = client.get("/api/denoise.png", params={"index": 0, "noise": 0.3})
    assert r.status_code == 400 and "not a denoising autoencoder" in r.json()["detail"]


# ---- concurrency -----------------------------------------------------------------------------------------------
def test_concurrent_requests_give_the_sequential_answers(client):
    reqs = [("/api/samples.png", {"n": 4, "seed": s % 5}) for s in range(12)]
    reqs += [("/api/map/decode.png", {"method": "pca", "x": 0.3 * i, "y": -0.2 * i}) for i in range(12)]
    seq = [client.get(u, params=p).content for u, p in reqs]
    with ThreadPoolExecutor(8) as pool:
        par = list(pool.map(lambda up: client.get(up[0], params=up[1]).content, reqs * 2))
    assert par == seq * 2


# ---- other kinds of model ----------------------------------------------------------------------------------------
def test_conditional_vae(tmp_path_factory):
    model, out = _train(tmp_path_factory, "cvae", steps=20)
    c = page_client(create_app(out, allowed_hosts=["testserver"]))
    info = c.get("/api/info").json()
    assert info["conditional"] and info["classes"] == [str(i) for i in range(10)]
    assert info["panels"] == ["samples", "map", "draw", "interpolate", "attributes"]
    r = c.get("/api/samples.png", params={"n": 1, "seed": 3, "label": 6})
    with torch.no_grad():
        ref = model.sample(1, labels=torch.tensor([6]), generator=torch.Generator().manual_seed(3))
    assert close(png_array(r.content), u8(ref))
    z = [0.1, -0.2, 0.3, 0.0]
    r = c.post("/api/decode.png", json={"z": [z], "label": 2})
    with torch.no_grad():
        ref = model.decode(torch.tensor([z]), labels=torch.tensor([2]))
    assert close(png_array(r.content), u8(ref))
    r = c.get("/api/samples.png", params={"label": 10})
    assert r.status_code == 400 and "0..9" in r.json()["detail"]
    assert c.get("/api/map", params={"method": "pca"}).status_code == 200


@pytest.mark.skipif("denoising-ae" not in registry.names(), reason="the denoising autoencoder is not registered")
def test_denoising_autoencoder(tmp_path_factory, test_set):
    from genzoo.models.autoencoder import corrupt
    model, out = _train(tmp_path_factory, "denoising-ae", steps=20, noise="masking", noise_level=0.4)
    c = page_client(create_app(out, allowed_hosts=["testserver"]))
    info = c.get("/api/info").json()
    assert "denoise" in info["panels"] and info["noise"] == ["masking", 0.4]
    strip = png_array(c.get("/api/denoise.png", params={"index": 4, "noise": 0.5, "seed": 9}).content)
    assert strip.shape == (32, 3 * 30 + 2)
    x = model.prepare(test_set.x[4:5])
    noisy = corrupt(x, "masking", 0.5, torch.Generator().manual_seed(9))
    with torch.no_grad():
        restored = model.reconstruct(noisy)
    tiles = [strip[2:30, 2 + 30 * i: 30 + 30 * i] for i in range(3)]
    assert np.array_equal(tiles[0], test_set.x[4, 0].numpy())
    assert close(tiles[1], u8(noisy)) and close(tiles[2], u8(restored))
    assert c.get("/api/denoise.png", params={"index": 4, "noise": 1.5}).status_code == 422


@pytest.mark.skipif("gan" not in registry.names(), reason="the GANs are not registered")
def test_gan_shows_samples_only(tmp_path_factory):
    model, out = _train(tmp_path_factory, "gan", steps=3, monitor_every=0)
    c = page_client(create_app(out, allowed_hosts=["testserver"]))
    info = c.get("/api/info").json()
    assert info["panels"] == ["samples"] and info["map_methods"] == []
    assert set(info["sample_options"]) == {"temperature", "truncation"}
    r = c.get("/api/samples.png", params={"n": 1, "seed": 5, "truncation": 0.5})
    with torch.no_grad():
        ref = model.to_unit(model.sample(1, generator=torch.Generator().manual_seed(5), truncation=0.5))
    assert close(png_array(r.content), u8(ref))
    assert c.get("/api/map", params={"method": "pca"}).status_code == 400
    assert c.post("/api/encode", headers=BYTES, content=to_png(np.zeros((28, 28), np.uint8))).status_code == 400


def test_a_run_without_its_test_set_still_opens(ae_run, tmp_path):
    import shutil
    out = tmp_path / "copy"
    shutil.copytree(ae_run[1], out, ignore=shutil.ignore_patterns("explorer"))
    info = json.loads((out / R.RUN).read_text())
    info["data"] = "folder:/nonexistent/images"
    (out / R.RUN).write_text(json.dumps(info))
    c = page_client(create_app(out, allowed_hosts=["testserver"]))
    j = c.get("/api/info").json()
    assert j["panels"] == ["samples", "draw"] and "/nonexistent/images" in j["data_error"]
    assert c.get("/api/test.png", params={"index": 0}).status_code == 400


# ---- the command -------------------------------------------------------------------------------------------------
def test_cli_help_and_errors(tmp_path):
    from typer.testing import CliRunner

    from genzoo.cli import commands  # noqa: F401
    from genzoo.cli._app import app
    runner = CliRunner()
    r = runner.invoke(app, ["explore", "--help"])
    assert r.exit_code == 0 and "Example: genzoo explore" in r.output and "--port" in r.output
    r = runner.invoke(app, ["explore", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such run directory" in r.output


def test_serve_binds_loopback_and_warns_otherwise(ae_run, monkeypatch, capsys):
    import uvicorn

    from genzoo.explorer import serve
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    serve(ae_run[1], port=8123)
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 8123
    assert "warning" not in capsys.readouterr().out
    serve(ae_run[1], host="0.0.0.0", port=8123)
    assert calls[-1]["host"] == "0.0.0.0"
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().out


def test_precision_auto_decodes_large_batches_in_bf16_where_native_and_single_codes_in_fp32(ae_run):
    """precision="auto": a batch of >= 64 codes decodes as the model does under bf16 autocast (on hardware with
    native bf16, read here from /proc/cpuinfo independently), a single code exactly as in fp32; "fp32" is fp32."""
    from genzoo.explorer.session import BF16_MIN_BATCH
    from genzoo.latent import decode

    _, out = ae_run
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        native = "avx512_bf16" in flags or "amx_bf16" in flags
    except (OSError, StopIteration):
        native = False
    auto, fp32 = Explorer(out, precision="auto"), Explorer(out, precision="fp32")
    z = torch.randn(BF16_MIN_BATCH, auto.model.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref32 = decode(fp32.model, z, None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref16 = decode(fp32.model, z, None).float()
    assert torch.equal(fp32.decode(z.numpy()), ref32)
    with torch.inference_mode():
        one32 = decode(fp32.model, z[:1], None)
    assert torch.equal(auto.decode(z[:1].numpy()), one32)  # one code: fp32, bitwise
    big = auto.decode(z.numpy())
    assert big.dtype == torch.float32
    assert torch.equal(big, ref16 if native else ref32)
    if native:
        assert not torch.equal(ref16, ref32)  # the test can tell the two apart
    with pytest.raises(ValueError, match="precision='fp8'.*auto, fp32, bf16"):
        Explorer(out, precision="fp8")
