"""End-to-end: `genzoo explore RUN_A RUN_B` (an AE and a VAE with 2-D latents) driven in headless Chromium.

The issue's target: a hover on one latent map decodes in both runs. Also: a stroke on one canvas reaches both
models, and the training-curves panel of a run that is still training picks up a row appended after the page
loaded. The harness (chromium, playwright, skips) is tests/test_explorer_browser.py's.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_explorer_browser import (ARTIFACTS, browser, draw_stroke, free_port, image_of, logged_page,  # noqa: F401
                                   playwright_api, ready, settle, start_explorer, stop, track_requests, updates, wait_updated)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from genzoo.train import rundir as R
    from genzoo.train import train
    root = tmp_path_factory.mktemp("explorer-compare")
    settings = {"log_every": 10, "sample_every": 30, "progress": False, "latent_dim": 2}
    a, b = root / "ae", root / "vae"
    train("ae", "mnist-mini", out=a, preset="tiny", steps=60, settings=settings)
    train("vae", "mnist-mini", out=b, preset="tiny", steps=60, settings=settings)
    info = json.loads((b / R.RUN).read_text())  # B looks like a run still training: the page follows it
    (b / R.RUN).write_text(json.dumps({**info, "status": "running"}))
    return a, b


@pytest.fixture(scope="module")
def server(runs):
    proc, url = start_explorer(list(runs), free_port())
    yield url
    stop(proc)


@pytest.fixture()
def page(browser, server):
    yield from logged_page(browser, server, {"width": 1500, "height": 1000})


def natural_pixels(page, img_id: str) -> np.ndarray:
    """The picture an <img> holds, at its own size (grey levels of the red channel)."""
    data = page.evaluate("""(id) => { const im = document.getElementById(id);
        const c = document.createElement('canvas'); c.width = im.naturalWidth; c.height = im.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(im, 0, 0);
        return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width, c.height).data)]; }""", img_id)
    w, h, px = data
    return np.array(px, dtype=int).reshape(h, w, 4)[..., 0]


def map_bounds(page, run: int) -> list[float]:
    """The map's box as the page draws it (a 2-D latent: squared around the points' bounds)."""
    b = page.evaluate("(i) => fetch(`/api/map?method=latent&run=${i}`, {headers: {'X-Genzoo-Token': "
                      "document.querySelector('meta[name=genzoo-token]').content}}).then(r => r.json())"
                      ".then(j => j.bounds)", run)
    x0, x1, y0, y1 = b
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2
    return [cx - r, cx + r, cy - r, cy + r]


def test_both_runs_sit_side_by_side(page):
    for name in ("samples", "map", "draw", "interpolate", "curves"):
        assert page.locator(f"#panel-{name}").is_visible() and page.locator(f"#panel-{name}-r1").is_visible(), name
    assert page.locator("#panel-map h2").get_attribute("data-run").startswith("A: ae")
    assert page.locator("#panel-map-r1 h2").get_attribute("data-run").startswith("B: vae")
    assert "vae" in page.locator("#facts-r1").inner_text() and "ae" in page.locator("#facts").inner_text()
    a, b = page.locator("#panel-map").bounding_box(), page.locator("#panel-map-r1").bounding_box()
    assert abs(a["y"] - b["y"]) < 2 and b["x"] > a["x"] + a["width"] - 1  # next to each other
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)


def test_a_linked_hover_decodes_in_both(page, runs):
    import genzoo
    models = [genzoo.load(r) for r in runs]
    canvas = page.locator("#map")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    bounds = [map_bounds(page, i) for i in (0, 1)]
    shown = []
    for u, w in ((0.3, 0.35), (0.75, 0.7)):
        n = [updates(page, "map-img"), updates(page, "map-img-r1")]
        mx, my = round(box["x"] + u * box["width"]), round(box["y"] + w * box["height"])
        page.mouse.move(mx, my)
        wait_updated(page, "map-img", n[0])
        wait_updated(page, "map-img-r1", n[1])
        settle(page, ["map-img", "map-img-r1"])  # the pointer moved on its way too: let the last requests end
        u, w = (mx - box["x"]) / box["width"], (my - box["y"]) / box["height"]  # where it really is
        pics = [natural_pixels(page, "map-img"), natural_pixels(page, "map-img-r1")]
        for i, (model, (x0, x1, y0, y1)) in enumerate(zip(models, bounds)):
            z = torch.tensor([[x0 + u * (x1 - x0), y1 - w * (y1 - y0)]], dtype=torch.float32)
            with torch.no_grad():
                ref = (model.to_unit(model.decode(z))[0, 0].clamp(0, 1) * 255).round().numpy()
            assert np.abs(pics[i] - ref).mean() < 3, (i, np.abs(pics[i] - ref).mean())  # that run's own point
        assert np.abs(pics[0] - pics[1]).mean() > 2  # the AE and the VAE decode it differently
        shown.append(pics)
    assert all(np.abs(shown[0][i] - shown[1][i]).mean() > 2 for i in (0, 1))  # both followed the pointer
    page.locator("#pair-map").screenshot(path=str(ARTIFACTS / "compare-map.png"))


def test_the_maps_can_be_linked_by_coordinates(page):
    page.locator("#link-map").select_option("coords")
    canvas = page.locator("#map")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    n = updates(page, "map-img-r1")
    page.mouse.click(box["x"] + 0.4 * box["width"], box["y"] + 0.5 * box["height"])
    wait_updated(page, "map-img-r1", n)
    settle(page, ["map-img", "map-img-r1"])
    shown = page.locator("#map-xy").inner_text()
    assert shown.startswith("(") and page.locator("#map-xy-r1").inner_text() == shown  # the same (x, y) in both


def test_the_interpolation_pair_goes_to_both(page):
    for img in ("interp-strip", "interp-strip-r1"):
        wait_updated(page, img, 0)
    n = [updates(page, "interp-strip"), updates(page, "interp-strip-r1")]
    end_b = page.locator("#interp-b .index")
    end_b.fill("7")
    end_b.dispatch_event("change")
    wait_updated(page, "interp-strip", n[0])
    wait_updated(page, "interp-strip-r1", n[1])
    assert page.locator("#interp-b-r1 .index").input_value() == "7"
    n = updates(page, "interp-frame-r1")
    page.locator("#interp-t").fill("100")
    wait_updated(page, "interp-frame-r1", n)
    assert page.locator("#interp-t-out-r1").inner_text() == "1.00"


def test_a_stroke_reaches_both_models(page):
    n = [updates(page, "draw-recon"), updates(page, "draw-recon-r1")]
    draw_stroke(page, [(0.5, 0.15), (0.52, 0.5), (0.5, 0.85)])
    wait_updated(page, "draw-recon", n[0])
    wait_updated(page, "draw-recon-r1", n[1])
    settle(page, ["draw-input", "draw-input-r1"])
    seen = [natural_pixels(page, "draw-input"), natural_pixels(page, "draw-input-r1")]
    assert np.abs(seen[0] - seen[1]).max() <= 1 and seen[0].max() > 200  # the same drawing, as each model sees it
    ink = page.evaluate("() => { const c = document.getElementById('draw-r1'); const d = c.getContext('2d')"
                        ".getImageData(0, 0, c.width, c.height).data; let s = 0; for (let i = 0; i < d.length; i += 4)"
                        " s += d[i] > 128; return s; }")
    assert ink > 500  # the stroke was copied onto B's canvas


def test_the_curves_follow_a_row_appended_after_the_page_loaded(page, runs):
    from genzoo.train import rundir as R
    from genzoo.train.metrics_log import MetricsCSV
    page.wait_for_selector("#panel-curves[data-rows='6']")
    page.wait_for_selector("#panel-curves-r1[data-rows='6']")
    assert page.locator("#panel-curves-r1 figure.chart[data-group='losses']").is_visible()
    assert page.locator("#curves-grid-r1").get_attribute("src")  # the newest progress grid
    assert "step 60" in page.locator("#curves-step-out-r1").inner_text()
    w = MetricsCSV(runs[1] / R.METRICS)
    w.add({"step": 70, "loss": 50.0, "recon": 40.0, "kl": 10.0})
    w.close()
    page.wait_for_selector("#panel-curves-r1[data-rows='7']", timeout=15_000)
    assert "step 60 of 60 · running (followed live)" in page.locator("#curves-status-r1").inner_text()
    assert page.locator("#panel-curves").get_attribute("data-rows") == "6"  # A is finished: not followed
    page.locator("#pair-curves").screenshot(path=str(ARTIFACTS / "compare-curves.png"))


def test_a_ring8_gan_shows_real_and_generated_points_over_d(browser, tmp_path_factory):
    """A run of 2-D points: no image panels; GAN Lab's view and the curves with D(x) / D(G(z))."""
    from genzoo.train import train
    out = tmp_path_factory.mktemp("ring8") / "gan"
    train("gan", "ring8", out=out, preset="tiny", steps=40,
          settings={"log_every": 10, "sample_every": 20, "progress": False, "monitor_every": 0})
    proc, url = start_explorer([out, out], free_port())  # the same run twice: the page still works
    try:
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        ready(pg, url)
        pg.wait_for_function("() => Number(document.getElementById('points').dataset.updates || 0) > 0")
        assert "modes covered" in pg.locator("#points-status").inner_text()
        assert not pg.locator("#panel-map").is_visible() and not pg.locator("#panel-samples").is_visible()
        pg.wait_for_selector("#panel-curves figure.chart[data-group='D(x) and D(G(z))']")
        canvas = pg.locator("#points")
        box = canvas.bounding_box()
        pg.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        pg.wait_for_function("() => document.getElementById('points-at').textContent.startsWith('D(x) at (')")
        px = image_of(canvas)
        blue = (px[..., 2] > 150) & (px[..., 0] < 100)
        red = (px[..., 0] > 150) & (px[..., 2] < 100)
        assert blue.sum() > 50 and red.sum() > 50
        pg.locator("#pair-points").screenshot(path=str(ARTIFACTS / "compare-points.png"))
        assert not errors, errors
        pg.close()
    finally:
        stop(proc)


def test_two_translation_runs_each_have_a_linked_translate_panel(browser, tmp_path_factory):
    """Two cyclegan runs side by side (different seeds and steps, so their outputs differ): each has its own
    translate panel, each panel shows what the server's translate route answers for its run, and a test index
    chosen in A's panel goes to B's too."""
    import base64

    import genzoo.data as gd
    from PIL import Image
    from genzoo.train import train
    root = tmp_path_factory.mktemp("compare-translate")
    a, b = root / "cyc-a", root / "cyc-b"
    for out, steps, seed in ((a, 40, 0), (b, 10, 1)):
        train("cyclegan", "mnist-mini-thick", out=out, preset="tiny", steps=steps, seed=seed,
              settings={"log_every": 10, "sample_every": 0, "progress": False, "validate": False, "batch_size": 8})
    test = gd.load("mnist-mini-thick", "test")
    proc, url = start_explorer([a, b], free_port())
    try:
        pg = browser.new_page(viewport={"width": 1500, "height": 1000})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("response", lambda r: errors.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None)
        track_requests(pg)
        ready(pg, url)
        assert pg.locator("#panel-translate").is_visible() and pg.locator("#panel-translate-r1").is_visible()

        def pixels(img_id: str) -> np.ndarray:
            src = pg.eval_on_selector(f"#{img_id}", "e => e.src")
            return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))

        def served(run: int, index: int) -> np.ndarray:
            src = pg.evaluate("([i, k]) => fetch(`/api/translate/test?index=${k}&run=${i}`, {headers: "
                              "{'X-Genzoo-Token': document.querySelector('meta[name=genzoo-token]').content}})"
                              ".then(r => r.json()).then(j => j.output)", [run, index])
            return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))

        wait_updated(pg, "tr-output", 0)
        wait_updated(pg, "tr-output-r1", 0)
        n = [updates(pg, "tr-output"), updates(pg, "tr-output-r1")]
        pg.locator("#tr-index").fill("5")
        pg.locator("#tr-index").dispatch_event("change")
        wait_updated(pg, "tr-output", n[0])
        wait_updated(pg, "tr-output-r1", n[1])
        settle(pg, ["tr-output", "tr-output-r1"])
        assert pg.locator("#tr-index-r1").input_value() == "5"  # linked
        for img in ("tr-source", "tr-source-r1"):  # both panels translate test image 5 of domain A
            assert np.array_equal(pixels(img), test.x[5, 0].numpy())
        out_a, out_b = pixels("tr-output"), pixels("tr-output-r1")
        assert np.array_equal(out_a, served(0, 5)) and np.array_equal(out_b, served(1, 5))
        assert np.abs(out_a.astype(int) - out_b.astype(int)).mean() > 1  # B's panel is B's model, not A's
        pg.locator("#pair-translate").screenshot(path=str(ARTIFACTS / "compare-translate.png"))
        assert not errors, errors
        pg.close()
    finally:
        stop(proc)


# ---- docs screenshots ---------------------------------------------------------------------------------------------
def docs_screenshots(run_a: Path, run_b: Path, out_dir: Path) -> list[Path]:
    """Open `genzoo explore RUN_A RUN_B`, pin a point on A's map, and write the map and curves pairs into `out_dir`
    (docs/explorer.md)."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from test_explorer_browser import CHROMIUM_ARGS, find_chromium
    proc, url = start_explorer([run_a, run_b], free_port())
    paths = []
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
            pg = b.new_page(viewport={"width": 1400, "height": 900})
            track_requests(pg)
            ready(pg, url)
            canvas = pg.locator("#map")
            canvas.scroll_into_view_if_needed()
            box = canvas.bounding_box()
            pg.mouse.click(box["x"] + 0.55 * box["width"], box["y"] + 0.45 * box["height"])
            settle(pg, ["map-img", "map-img-r1"])
            out_dir.mkdir(parents=True, exist_ok=True)
            for pair, name in (("#pair-map", "explorer-compare-map.png"), ("#pair-curves", "explorer-compare-curves.png")):
                paths.append(out_dir / name)
                im = Image.open(io.BytesIO(pg.locator(pair).screenshot())).convert("RGB")
                im.quantize(256, method=Image.Quantize.MEDIANCUT).save(paths[-1], optimize=True)
            b.close()
    finally:
        stop(proc)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python tests/test_explorer_compare_browser.py RUN_A RUN_B OUT_DIR")
    for path in docs_screenshots(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])):
        print(f"wrote {path}")
