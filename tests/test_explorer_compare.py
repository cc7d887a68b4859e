"""Two runs in one explorer (`genzoo explore RUN_A RUN_B`) and the training-curves panel, through TestClient.

References are independent of the explorer: the models called directly (a 2-D latent map decodes a point as
model.decode of that very code), hand-written CSV files with their values written out, the engine's own
metrics writer (MetricsCSV) appending a row, and PNG bytes compared with the file on disk.
"""
from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx2")
from fastapi.testclient import TestClient  # noqa: E402

from genzoo.explorer import create_app  # noqa: E402
from genzoo.explorer.curves import Curves, read_table  # noqa: E402
from genzoo.explorer.limits import TOKEN_HEADER  # noqa: E402
from genzoo.train import rundir as R  # noqa: E402
from genzoo.train import train  # noqa: E402
from genzoo.train.metrics_log import MetricsCSV  # noqa: E402

SETTINGS = {"log_every": 10, "sample_every": 0, "progress": False}


def _train(tmp_path_factory, name: str, data: str = "mnist-mini", steps: int = 30, **settings):
    out = tmp_path_factory.mktemp(name) / "run"
    model = train(name, data, out=out, settings={**SETTINGS, **settings}, steps=steps, preset="tiny")
    return model.eval(), out


def page_client(app) -> TestClient:
    return TestClient(app, headers={TOKEN_HEADER: app.state.token})


def png_array(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def u8(x: torch.Tensor) -> np.ndarray:
    return (x[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def close(a: np.ndarray, b: np.ndarray, tol: int = 1) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= tol


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """An AE and a VAE with 2-D latents on mnist-mini (the lectures' comparison), a few steps each."""
    ae = _train(tmp_path_factory, "ae", latent_dim=2)
    vae = _train(tmp_path_factory, "vae", latent_dim=2)
    return ae, vae


@pytest.fixture(scope="module")
def client(two_runs):
    (_, a), (_, b) = two_runs
    return page_client(create_app([a, b], allowed_hosts=["testserver"]))


# ---- two runs ----------------------------------------------------------------------------------------------------
def test_both_runs_answer(client, two_runs):
    (ae, _), (vae, _) = two_runs
    runs = client.get("/api/runs").json()["runs"]
    assert [(r["index"], r["model_type"], r["latent_dim"]) for r in runs] == [(0, "ae", 2), (1, "vae", 2)]
    assert client.get("/api/info", params={"run": 1}).json()["model_type"] == "vae"
    assert client.get("/api/info").json()["model_type"] == "ae"  # no run parameter: the first run
    for i, model in enumerate((ae, vae)):
        r = client.get("/api/samples.png", params={"run": i, "n": 1, "seed": 3})
        assert r.status_code == 200
        with torch.no_grad():
            ref = model.to_unit(model.sample(1, generator=torch.Generator().manual_seed(3)))
        assert close(png_array(r.content), u8(ref)), f"run {i}"


def test_a_linked_hover_decodes_an_image_per_run(client, two_runs):
    """The page links a hover by the same place in each map's box: each run decodes its own point there."""
    models = [m for m, _ in two_runs]
    images = []
    for i, model in enumerate(models):
        m = client.get("/api/map", params={"run": i, "method": "latent"}).json()
        x0, x1, y0, y1 = m["bounds"]
        u, w = 0.3, 0.6  # fractions of the box from the left and from the top, as the page sends them
        x, y = x0 + u * (x1 - x0), y1 - w * (y1 - y0)
        r = client.get("/api/map/decode.png", params={"run": i, "method": "latent", "x": x, "y": y})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        with torch.no_grad():
            ref = model.to_unit(model.decode(torch.tensor([[x, y]], dtype=torch.float32)))
        assert close(png_array(r.content), u8(ref)), f"run {i}"
        images.append(png_array(r.content))
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 1  # two models, two pictures
    # the same test image and interpolation pair go to both: each run encodes them with its own encoder
    for i, model in enumerate(models):
        za, zb = (client.get("/api/code", params={"run": i, "index": k}).json()["z"] for k in (4, 9))
        r = client.post("/api/interpolate.png", params={"run": i}, json={"a": za, "b": zb, "ts": [0.5]})
        assert r.status_code == 200
        with torch.no_grad():
            ref = model.to_unit(model.decode(torch.tensor([[(p + q) / 2 for p, q in zip(za, zb)]])))
        assert close(png_array(r.content), u8(ref)), f"run {i}"


def test_a_bad_run_index_is_a_clear_error(client, two_runs):
    r = client.get("/api/map/decode.png", params={"run": 2, "method": "latent", "x": 0, "y": 0})
    assert r.status_code == 404
    assert "run 2 does not exist" in r.json()["detail"] and "run=0..1" in r.json()["detail"]
    assert str(two_runs[1][1]) in r.json()["detail"]  # names the runs it has
    r = client.post("/api/decode.png", params={"run": 7}, json={"z": [[0, 0]]})
    assert r.status_code == 404 and "run 7 does not exist" in r.json()["detail"]
    r = client.get("/api/info", params={"run": -1})
    assert r.status_code == 422 and "allowed: >= 0" in r.json()["detail"]
    assert client.get("/api/metrics", params={"run": "b"}).status_code == 422
    # the limits hold for every run: the token, the counts
    anon = TestClient(client.app)
    assert anon.get("/api/runs").status_code == 403 and anon.get("/api/metrics", params={"run": 1}).status_code == 403
    r = client.get("/api/samples.png", params={"run": 1, "n": 1000})
    assert r.status_code == 422 and "allowed: 1..64" in r.json()["detail"]


def test_one_run_is_unchanged_and_has_no_run_1(two_runs):
    c = page_client(create_app(two_runs[0][1], allowed_hosts=["testserver"]))
    assert [r["model_type"] for r in c.get("/api/runs").json()["runs"]] == ["ae"]
    r = c.get("/api/code", params={"run": 1, "index": 0})
    assert r.status_code == 404 and "shows 1 run " in r.json()["detail"]


def test_explore_takes_two_runs_and_refuses_three(two_runs, monkeypatch):
    from typer.testing import CliRunner

    import genzoo.explorer.app as A
    from genzoo.cli import commands  # noqa: F401
    from genzoo.cli._app import app as cli
    seen = {}
    monkeypatch.setattr(A, "_run_uvicorn", lambda app, host, port: seen.update(app=app))
    (_, a), (_, b) = two_runs
    r = CliRunner().invoke(cli, ["explore", str(a), str(b)])
    assert r.exit_code == 0, r.output
    assert [e.run_dir for e in seen["app"].state.explorers] == [a, b] and f"{a} and {b}" in r.output
    r = CliRunner().invoke(cli, ["explore", str(a), str(b), str(a)])
    assert r.exit_code == 2 and "3 run directories given" in r.output


# ---- metrics.csv, read tolerantly ----------------------------------------------------------------------------------
HAND_WRITTEN = (
    "step,loss,phase,val/loss\n"
    "10,1.5,train,\n"
    "\n"                      # a blank line
    "20,1.25,train,1.4\n"
    "30,nan\n"                # cells missing at the end; nan is no number
    "40,1,2,3,4,5\n"          # more cells than the header: skipped
    "50,0.875,tr"             # torn: the writer has not finished the line
)


def test_metrics_csv_is_read_tolerantly(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(HAND_WRITTEN)
    t = read_table(path)
    assert t.columns == ["step", "loss", "phase", "val/loss"]
    assert t.rows == [[10.0, 1.5, None, None], [20.0, 1.25, None, 1.4], [30.0, None, None, None]]
    assert t.skipped == 1 and t.torn and t.text == {2}
    a = Curves(tmp_path).answer()
    assert a["x"] == "step" and a["xs"] == [10.0, 20.0, 30.0] and a["rows"] == 3
    assert a["series"] == {"loss": [1.5, 1.25, None], "val/loss": [None, 1.4, None]}  # "phase" is text
    assert a["text_columns"] == ["phase"] and a["skipped_rows"] == 1 and a["torn"]
    assert a["last_row"] == {"step": 30.0, "loss": 1.25, "val/loss": 1.4}


def test_a_torn_line_is_read_once_it_is_complete_and_a_replaced_file_again(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(HAND_WRITTEN)
    curves = Curves(tmp_path)
    assert curves.answer()["rows"] == 3
    with open(path, "a") as f:
        f.write("ain,0.9\n")  # the torn line is now "50,0.875,train,0.9"
    a = curves.answer()
    assert a["rows"] == 4 and not a["torn"] and a["series"]["loss"][-1] == 0.875 and a["series"]["val/loss"][-1] == 0.9
    # a widened header, written by rename (what MetricsCSV does): a new file, read from its start
    tmp = tmp_path / "new.csv"
    tmp.write_text("step,loss,kl\n10,2.0,0.5\n")
    os.replace(tmp, path)
    a = curves.answer()
    assert a["rows"] == 1 and a["series"] == {"loss": [2.0], "kl": [0.5]}
    # no step column, no file
    path.write_text("loss\n3\n2\n")
    assert Curves(tmp_path).answer()["x"] == "row" and Curves(tmp_path).answer()["xs"] == [1.0, 2.0]
    path.unlink()
    assert Curves(tmp_path).answer()["exists"] is False and Curves(tmp_path).answer()["rows"] == 0


def test_many_rows_are_thinned_to_max_points(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,loss\n" + "".join(f"{i},{1 / i}\n" for i in range(1, 101)))
    a = Curves(tmp_path).answer(max_points=10)
    assert a["rows"] == 100 and a["shown"] == 10 and a["xs"][0] == 1 and a["xs"][-1] == 100
    assert a["series"]["loss"] == [1 / x for x in a["xs"]]


# ---- following a run that trains -----------------------------------------------------------------------------------
def test_live_follow_picks_up_an_appended_row_and_a_new_grid(two_runs, tmp_path):
    out = tmp_path / "live"
    shutil.copytree(two_runs[1][1], out)
    info = json.loads((out / R.RUN).read_text())
    (out / R.RUN).write_text(json.dumps({**info, "status": "running"}))
    c = page_client(create_app(out, allowed_hosts=["testserver"]))
    first = c.get("/api/metrics").json()
    assert first["live"] and first["status"] == "running" and first["rows"] == 3 and first["grids"] == [30]  # the final grid
    assert set(first["series"]) >= {"loss", "recon", "kl", "images_per_s"}
    same = c.get("/api/metrics", params={"known": first["etag"]}).json()
    assert same == {"changed": False, "etag": first["etag"]}  # the cheap poll
    w = MetricsCSV(out / R.METRICS)  # the engine's own writer appends a row
    w.add({"step": 40, "loss": 123.5, "recon": 100.0, "kl": 23.5})
    w.close()
    now = c.get("/api/metrics", params={"known": first["etag"]}).json()
    assert now["changed"] and now["rows"] == 4 and now["xs"][-1] == 40 and now["series"]["loss"][-1] == 123.5
    assert now["series"]["images_per_s"][-1] is None  # a column the new row lacks
    # a progress grid written by training
    grid = np.zeros((20, 30, 3), np.uint8)
    grid[5:9, 10:20] = 255
    Image.fromarray(grid).save(out / R.SAMPLES / "step_000040.png")
    (out / R.SAMPLES / ".step_000060.png.genzoo-tmp-abcd1234").write_bytes(b"half written")  # ignored
    later = c.get("/api/metrics", params={"known": now["etag"]}).json()
    assert later["changed"] and later["grids"] == [30, 40]
    r = c.get("/api/progress.png")
    assert r.status_code == 200 and r.headers["x-genzoo-step"] == "40"
    assert r.content == (out / R.SAMPLES / "step_000040.png").read_bytes()
    r = c.get("/api/progress.png", params={"step": 7})
    assert r.status_code == 404 and "no progress grid at step 7" in r.json()["detail"] and "at steps 30, 40" in r.json()["detail"]


def test_a_run_without_a_checkpoint_yet_shows_curves_then_its_model(two_runs, tmp_path):
    src, out = two_runs[0][1], tmp_path / "starting"
    out.mkdir()
    for name in (R.CONFIG, R.METRICS):
        shutil.copy(src / name, out / name)
    info = json.loads((src / R.RUN).read_text())
    (out / R.RUN).write_text(json.dumps({**info, "status": "started", "step": 0}))
    c = page_client(create_app(out, allowed_hosts=["testserver"]))
    j = c.get("/api/info").json()
    assert j["panels"] == [] and j["curves"] and j["model_type"] == "ae" and "no checkpoint" in j["waiting"]
    assert c.get("/api/metrics").json()["rows"] == 3
    r = c.get("/api/samples.png", params={"n": 1})
    assert r.status_code == 400 and "no checkpoint" in r.json()["detail"]
    shutil.copy(src / R.WEIGHTS, out / R.WEIGHTS)  # the first checkpoint
    j = c.get("/api/info").json()
    assert j["waiting"] is None and j["panels"] == ["samples", "map", "draw", "interpolate", "attributes"]
    assert c.get("/api/samples.png", params={"n": 1}).status_code == 200


@pytest.fixture(scope="module")
def ring8_runs(tmp_path_factory):
    """Two GANs on ring8 with the same config: 20 steps, and 40 (a later checkpoint of the same run, as it were)."""
    return [_train(tmp_path_factory, "gan", data="ring8", steps=k, sample_every=10, monitor_every=0) for k in (20, 40)]


def test_a_point_gan_run_opens_with_curves_and_its_pictures_of_d(ring8_runs):
    model, out = ring8_runs[0]
    c = page_client(create_app(out, allowed_hosts=["testserver"]))
    j = c.get("/api/info").json()
    assert j["points"] and j["panels"] == ["points"] and j["curves"]
    a = c.get("/api/metrics").json()
    assert a["grids"] == [10, 20] and {"discriminator/d_real", "discriminator/d_fake"} <= set(a["series"])
    r = c.get("/api/progress.png")
    assert r.content == (out / R.SAMPLES / "step_000020.png").read_bytes()
    # the picture is D's output with real (blue) and generated (red) points, as the engine's preview draws it
    im = png_array(r.content).astype(int)
    blue = (im[..., 2] > 200) & (im[..., 0] < 80)
    red = (im[..., 0] > 200) & (im[..., 2] < 80)
    assert blue.sum() > 10 and red.sum() > 10


def test_a_metrics_file_over_its_limit_is_refused_with_a_message(tmp_path, two_runs, monkeypatch):
    import genzoo.explorer.curves as C
    out = tmp_path / "big"
    shutil.copytree(two_runs[0][1], out)
    monkeypatch.setattr(C, "MAX_METRICS_BYTES", 100)
    c = page_client(create_app(out, allowed_hosts=["testserver"]))
    r = c.get("/api/metrics")
    assert r.status_code == 400 and "the explorer reads metrics files of at most 100 bytes" in r.json()["detail"]


def test_the_points_view_is_d_and_g_of_the_newest_checkpoint(ring8_runs, two_runs, tmp_path):
    from genzoo import data as gd
    from genzoo.data.toy import mode_quality
    (m20, run20), (m40, run40) = ring8_runs
    out = tmp_path / "ring8"
    shutil.copytree(run20, out)
    c = page_client(create_app(out, allowed_hosts=["testserver"]))
    test = gd.load("ring8", "test")
    modes = torch.tensor(test.meta["modes"], dtype=torch.float32)
    lim = float(modes.abs().max()) + 1.0
    for model, step in ((m20, 20), (m40, 40)):
        j = c.get("/api/points", params={"n": 300, "seed": 4, "res": 16}).json()
        with torch.no_grad():
            field = model.discriminator_field(lim, 16)
            fake = model.sample(300, generator=torch.Generator().manual_seed(4)).reshape(-1, 2)
        assert j["lim"] == lim and j["checkpoint_step"] == step and j["probability"]
        np.testing.assert_allclose(j["field"], field.numpy().ravel(), atol=1e-4)
        np.testing.assert_allclose(j["fake"], fake.numpy().ravel(), atol=1e-4)
        np.testing.assert_allclose(j["real"], test.x[:300].reshape(-1).numpy(), atol=1e-4)
        assert j["modes_covered"] == mode_quality(fake, modes, float(test.meta["std"]))["modes_covered"]
        shutil.copy(run40 / R.WEIGHTS, out / R.WEIGHTS)  # training writes its next checkpoint
    r = c.get("/api/points", params={"n": 5000})
    assert r.status_code == 422 and "allowed: 1..4096" in r.json()["detail"]
    r = page_client(create_app(two_runs[0][1], allowed_hosts=["testserver"])).get("/api/points")
    assert r.status_code == 400 and "not a GAN of 2-D points" in r.json()["detail"]
