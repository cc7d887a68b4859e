"""The explorer's translate panel API on tiny pix2pix and SR runs: the panel is offered, a test example and an
upload go through the model (compared with the model called directly), SR answers carry the bicubic image."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")
from fastapi.testclient import TestClient  # noqa: E402

import genzoo  # noqa: E402
from genzoo.data.paired import area_downsample  # noqa: E402
from genzoo.explorer import create_app  # noqa: E402
from genzoo.explorer.limits import TOKEN_HEADER  # noqa: E402

SETTINGS = {"log_every": 10, "sample_every": 0, "progress": False, "batch_size": 16, "validate": False}


def _client(run):
    app = create_app(run, allowed_hosts=["testserver"])
    return TestClient(app, headers={TOKEN_HEADER: app.state.token}), app


def _img(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sr") / "run"
    genzoo.train("srgan", "mnist-mini-sr4", out=out, preset="tiny", steps=3, settings=SETTINGS)
    return out


@pytest.fixture(scope="module")
def p2p_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("p2p") / "run"
    genzoo.train("pix2pix", "mnist-mini-edges", out=out, preset="tiny", steps=3, settings=SETTINGS)
    return out


def test_sr_panel_test_example_matches_the_model(sr_run):
    client, app = _client(sr_run)
    info = client.get("/api/info").json()
    assert "translate" in info["panels"]
    t = client.get("/api/translate/info").json()
    assert t["super_resolution"] and t["task"] == "sr4" and t["target_shape"] == [1, 28, 28]
    r = client.get("/api/translate/test", params={"index": 3})
    assert r.status_code == 200, r.text
    j = r.json()
    model = genzoo.load(sr_run)
    ds = genzoo.data.load("mnist-mini-sr4", "test")
    with torch.no_grad():
        ref = model.to_unit(model.translate(model.prepare(ds.x[3:4])))[0, 0]
    got = _img(j["output"])
    assert got.shape == (28, 28)
    assert np.abs(got.astype(float) - (ref.numpy() * 255)).max() <= 1.0  # rounding to uint8 only
    assert np.array_equal(_img(j["target"]), ds.target[3, 0].numpy())
    assert _img(j["source"]).shape == (7, 7) and _img(j["bicubic"]).shape == (28, 28)
    assert client.get("/api/translate/test", params={"index": 10 ** 6}).status_code == 404
    assert client.get("/api/translate/test", params={"index": 0, "direction": "b2a"}).status_code == 400


def test_sr_upload_is_downsampled_like_the_data(sr_run):
    client, _ = _client(sr_run)
    a = np.zeros((28, 28), np.uint8)
    a[6:22, 12:16] = 255  # a bar, already 28x28
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    r = client.post("/api/translate", params={"fit": "false"}, content=buf.getvalue(),
                    headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    j = r.json()
    src = _img(j["source"])
    assert src.shape == (7, 7)
    assert np.array_equal(src, area_downsample(torch.from_numpy(a)[None, None], 4)[0, 0].numpy())
    assert _img(j["output"]).shape == (28, 28) and j["bicubic"] is not None
    bad = client.post("/api/translate", content=b"not an image", headers={"content-type": "image/png"})
    assert bad.status_code in (400, 415)


def test_pix2pix_upload_takes_edges(p2p_run):
    client, _ = _client(p2p_run)
    t = client.get("/api/translate/info").json()
    assert not t["super_resolution"] and t["derive"] and t["task"] == "edges"
    a = np.zeros((28, 28), np.uint8)
    a[8:20, 8:20] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    j = client.post("/api/translate", params={"fit": "false"}, content=buf.getvalue(),
                    headers={"content-type": "image/png"}).json()
    src = _img(j["source"])
    assert src.shape == (28, 28) and src[14, 14] == 0 and src[8, 14] == 255  # the square's outline, not its inside
    j2 = client.post("/api/translate", params={"fit": "false", "derive": "false"}, content=buf.getvalue(),
                     headers={"content-type": "image/png"}).json()
    assert _img(j2["source"])[14, 14] == 255 and j2["bicubic"] is None
    assert client.get("/api/translate/test", params={"index": 0}).status_code == 200


@pytest.fixture(scope="module")
def cyc_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cyc") / "run"
    genzoo.train("cyclegan", "mnist-mini-digits", out=out, preset="tiny", steps=2, settings=SETTINGS)
    return out


def test_cyclegan_panel_names_both_directions_and_routes_each_source_domain(cyc_run):
    """Both directions, each with its source and target domain; b2a's test images are domain B's (digits28,
    with digits28's labels), a2b's domain A's, and each output is the model's own translation of that source."""
    import genzoo.data as gd
    client, app = _client(cyc_run)
    t = client.get("/api/translate/info").json()
    mini, digits = gd.load("mnist-mini", "test"), gd.load("digits28", "test")
    assert t["directions"] == ["a2b", "b2a"]
    assert t["domains"] == {"a2b": {"source": "mnist-mini", "target": "digits28", "test_size": len(mini)},
                            "b2a": {"source": "digits28", "target": "mnist-mini", "test_size": len(digits)}}
    model = genzoo.load(cyc_run)
    for direction, dom in (("a2b", mini), ("b2a", digits)):
        i = 7
        j = client.get("/api/translate/test", params={"index": i, "direction": direction}).json()
        assert np.array_equal(_img(j["source"]), dom.x[i, 0].numpy()) and j["label"] == int(dom.y[i])
        with torch.no_grad():
            ref = model.to_unit(model.translate(model.prepare(dom.x[i:i + 1]), direction))[0, 0]
        assert np.abs(_img(j["output"]).astype(float) - (ref.numpy() * 255)).max() <= 1  # PNG rounding
    # domain B is the smaller test set: an index past it is an error naming the domain, not a wrap-around
    r = client.get("/api/translate/test", params={"index": len(digits), "direction": "b2a"})
    assert r.status_code == 404 and "digits28" in r.json()["detail"]
    assert client.get("/api/translate/test", params={"index": len(digits), "direction": "a2b"}).status_code == 200
    r = client.get("/api/translate/test", params={"index": 0, "direction": "c2d"})
    assert r.status_code == 400 and "a2b, b2a" in r.json()["detail"]
    buf = io.BytesIO()
    Image.fromarray(digits.x[3, 0].numpy()).save(buf, format="PNG")
    j = client.post("/api/translate", params={"fit": "false", "direction": "b2a"}, content=buf.getvalue(),
                    headers={"content-type": "image/png"}).json()
    assert np.array_equal(_img(j["source"]), digits.x[3, 0].numpy())  # an upload of domain B, as it is
