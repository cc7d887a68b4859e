"""End-to-end: `genzoo explore` on a free port with a tiny trained run, driven in headless Chromium by Playwright.

Playwright drives Debian's `chromium` through `executable_path` (`playwright install` cannot download browsers
here; `make browser` installs chromium when it is missing and the user is root). When chromium or playwright is
missing these tests are skipped and say why — except under CI=true, where that is a failure.
Screenshots are written to test-artifacts/explorer/.

Also a script: `python tests/test_explorer_browser.py RUN_DIR docs/img [PANEL ...]` writes the panel screenshots
used in docs/explorer.md for the run in RUN_DIR.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "explorer"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PANELS = ("samples", "map", "draw", "interpolate", "attributes", "denoise")


def unavailable(reason: str) -> None:
    """Skip, saying why; under CI=true a browser test that cannot run is a failure instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser test cannot run (CI=true makes this a failure): {reason}", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_explorer(runs: Path | list[Path], port: int, timeout: float = 90.0) -> tuple[subprocess.Popen, str]:
    """Start `genzoo explore RUN [RUN_B] --port PORT` and wait until it answers (for every run)."""
    runs = runs if isinstance(runs, list) else [runs]
    script = Path(sys.executable).with_name("genzoo")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from genzoo.cli import main; main()"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*cmd, "explore", *map(str, runs), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"genzoo explore exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/api/info?run={len(runs) - 1}", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"genzoo explore did not answer on {url} within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def launch(playwright):
    exe = find_chromium()
    if exe is None:
        unavailable("chromium is not installed: run `make browser` (installs Debian's chromium as root)")
    return playwright.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)


def image_of(locator) -> np.ndarray:
    """What an element shows on screen, as an RGB array."""
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB")).astype(int)


def updates(page, img_id: str) -> int:
    return int(page.eval_on_selector(f"#{img_id}", "e => Number(e.dataset.updates || 0)"))


def wait_updated(page, img_id: str, after: int, timeout: float = 30_000) -> None:
    """Wait until image `img_id` has been replaced more than `after` times and has loaded."""
    page.wait_for_function(
        "([id, n]) => { const e = document.getElementById(id); return Number(e.dataset.updates || 0) > n"
        " && e.complete && e.naturalWidth > 0; }", arg=[img_id, after], timeout=timeout)


def track_requests(page) -> None:
    """Keep `page.pending`, the set of the page's requests not answered yet (for `settle`)."""
    page.pending = set()
    page.on("request", lambda r: page.pending.add(r))
    page.on("requestfinished", lambda r: page.pending.discard(r))
    page.on("requestfailed", lambda r: page.pending.discard(r))


def settle(page, ids: list[str], quiet_ms: int = 500, timeout_s: float = 30.0) -> None:
    """Wait until no request is pending, no canvas picture is being encoded for sending (pen.js's
    orderedBlobs), and none of the images `ids` has been replaced for `quiet_ms`."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        now = [updates(page, i) for i in ids]
        encoding = int(page.evaluate("() => Number(document.body.dataset.encoding || 0)"))
        if now != last or page.pending or encoding:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > quiet_ms / 1000:
            return
        page.wait_for_timeout(100)


def ready(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)


def shoot_panels(page, out_dir: Path, panels: tuple[str, ...] = PANELS) -> list[Path]:
    """Screenshot each visible panel of `panels` to OUT_DIR/explorer-PANEL.png (256-colour PNG: small files)."""
    from PIL import Image
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in panels:
        panel = page.locator(f"#panel-{name}")
        if panel.is_visible():
            paths.append(out_dir / f"explorer-{name}.png")
            im = Image.open(io.BytesIO(panel.screenshot())).convert("RGB")
            im.quantize(256, method=Image.Quantize.MEDIANCUT).save(paths[-1], optimize=True)
    return paths


def draw_stroke(page, points: list[tuple[float, float]], canvas_id: str = "draw") -> None:
    """Draw a polyline on a drawing canvas (the draw panel's by default); points in canvas fractions (0..1)."""
    canvas = page.locator(f"#{canvas_id}")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    xy = [(box["x"] + u * box["width"], box["y"] + v * box["height"]) for u, v in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p, steps=4)
    page.mouse.up()


# ---- fixtures: one trained run, one server, one browser for the module -------------------------------------------
@pytest.fixture(scope="module")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install 'genzoo[dev]'")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_api):
    b = launch(playwright_api)
    yield b
    b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from genzoo.train import train
    run = tmp_path_factory.mktemp("explorer-browser") / "ae"
    train("ae", "mnist-mini", out=run, preset="tiny", steps=60,
          settings={"log_every": 20, "sample_every": 0, "progress": False})
    (run / "metrics.json").write_text('{"n": 2000, "extractor": "mnist", "metrics": {"mse": 0.05, "psnr": 13.1}}')
    proc, url = start_explorer(run, free_port())
    yield url
    stop(proc)


@pytest.fixture()
def page(browser, server):
    """A fresh page that records every request, failure and error."""
    yield from logged_page(browser, server, {"width": 1280, "height": 900})


def logged_page(browser, url: str, viewport: dict):
    """A page on `url` that logs requests (pg.log["requests"]; pending ones in pg.pending), failures and errors;
    after the test (generator fixture body) it asserts there were no errors or failed requests."""
    pg = browser.new_page(viewport=viewport)
    pg.log = {"requests": [], "failed": [], "errors": []}
    track_requests(pg)
    pg.on("request", lambda r: pg.log["requests"].append(r.url))
    pg.on("requestfailed", lambda r: pg.log["failed"].append(f"{r.url}: {r.failure}"))
    pg.on("pageerror", lambda e: pg.log["errors"].append(str(e)))
    pg.on("console", lambda m: pg.log["errors"].append(m.text) if m.type == "error" else None)
    pg.on("response", lambda r: pg.log["failed"].append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None)
    ready(pg, url)
    yield pg
    assert not pg.log["errors"], pg.log["errors"]
    assert not pg.log["failed"], pg.log["failed"]
    pg.close()


# ---- tests ----------------------------------------------------------------------------------------------------
def test_page_loads_with_no_failed_or_external_requests(page, server):
    wait_updated(page, "samples-img", 0)
    wait_updated(page, "interp-strip", 0)
    wait_updated(page, "attr-img", 0)
    for name in ("samples", "map", "draw", "interpolate", "attributes"):
        assert page.locator(f"#panel-{name}").is_visible(), name
    assert not page.locator("#panel-denoise").is_visible()  # a plain AE is no denoiser
    assert "ae" in page.locator("#facts").inner_text()
    assert page.locator("#metrics-box summary").inner_text() == "metrics (2) · n = 2000, extractor: mnist"
    external = [u for u in page.log["requests"]
                if not (u.startswith(server + "/") or u.startswith(f"blob:{server}/") or u.startswith("data:"))]
    assert not external, external
    assert any("/api/map?" in u for u in page.log["requests"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)


def test_drawing_a_stroke_produces_a_reconstruction(page):
    before = updates(page, "draw-recon")
    draw_stroke(page, [(0.5, 0.15), (0.52, 0.5), (0.5, 0.85)])  # a "1"
    wait_updated(page, "draw-recon", before)
    page.wait_for_function("() => document.getElementById('draw-xy').textContent.includes('on the map')")
    seen = image_of(page.locator("#draw-input"))
    recon = image_of(page.locator("#draw-recon"))
    assert seen.max() > 200 and seen.mean() < 128  # white ink on black, as the model sees it
    assert recon.std() > 5  # an image, not a blank
    page.locator("#panel-draw").screenshot(path=str(ARTIFACTS / "draw.png"))


def test_moving_the_interpolation_slider_changes_the_image(page):
    wait_updated(page, "interp-frame", 0)
    frames = []
    for value in ("0", "100"):
        n = updates(page, "interp-frame")
        page.locator("#interp-t").fill(value)
        wait_updated(page, "interp-frame", n)
        frames.append(image_of(page.locator("#interp-frame")))
    assert page.locator("#interp-t-out").inner_text() == "1.00"
    assert np.abs(frames[0] - frames[1]).mean() > 2, "t=0 and t=1 show the same image"
    page.locator("#panel-interpolate").screenshot(path=str(ARTIFACTS / "interpolate.png"))


def test_clicking_the_latent_map_decodes_a_point(page):
    canvas = page.locator("#map")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    shown = []
    for u, v in ((0.3, 0.3), (0.95, 0.95)):  # the second is in an empty corner of the map
        n = updates(page, "map-img")
        page.mouse.click(box["x"] + u * box["width"], box["y"] + v * box["height"])
        wait_updated(page, "map-img", n)
        page.wait_for_timeout(100)  # the pointer moved too: let the last hover request settle
        shown.append((page.locator("#map-xy").inner_text(), image_of(page.locator("#map-img"))))
    assert shown[0][0] != shown[1][0] and shown[1][0].startswith("(")
    assert np.abs(shown[0][1] - shown[1][1]).mean() > 2
    page.locator("#panel-map").screenshot(path=str(ARTIFACTS / "map.png"))


def test_canvas_pictures_are_sent_in_the_order_they_were_taken(page):
    """The encoder may hand pictures back out of order; a stroke's last picture must be the one sent (an earlier
    one arriving later is dropped), and the page says how many are still being encoded."""
    got = page.evaluate("""() => {
        const callbacks = [], sent = [], counts = [];
        const fake = { toBlob: (cb) => callbacks.push(cb) };
        const encode = orderedBlobs(fake);
        for (let i = 1; i <= 3; i++) encode((b) => sent.push(b));
        counts.push(document.body.dataset.encoding);
        callbacks[1]("picture 2"); callbacks[0]("picture 1"); callbacks[2]("picture 3");
        counts.push(document.body.dataset.encoding);
        return { sent, counts };
    }""")
    assert got == {"sent": ["picture 2", "picture 3"], "counts": ["3", "0"]}


def test_bad_upload_shows_the_servers_message(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.log["failed"].clear()
    page.locator("#draw-upload").set_input_files(str(bad))
    page.wait_for_selector("#draw-error:not([hidden])")
    assert "not a PNG or JPEG" in page.locator("#draw-error").inner_text()
    assert any("HTTP 415" in f for f in page.log["failed"])
    page.log["failed"].clear()  # the 415 was expected
    page.log["errors"] = [e for e in page.log["errors"] if "415" not in e]


# ---- the translate panel on a CycleGAN run, both directions ------------------------------------------------------
def data_url_pixels(page, img_id: str) -> np.ndarray:
    """The exact pixels of an <img> whose src is a PNG data URL, as a float array in [0, 1] (grey)."""
    import base64

    from PIL import Image
    src = page.eval_on_selector(f"#{img_id}", "e => e.src")
    assert src.startswith("data:image/png;base64,"), src[:40]
    im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L")
    return np.asarray(im).astype(float) / 255


@pytest.fixture(scope="module")
def cyc_server(tmp_path_factory):
    """A tiny cyclegan trained 120 steps on mnist-mini <-> thick-mnist: enough that G thickens strokes and F
    thins them (measured: ink 0.11 -> 0.23 for G on domain A, 0.24 -> 0.14 for F on domain B)."""
    import torch

    from genzoo.train import train
    run = tmp_path_factory.mktemp("explorer-browser") / "cyc"
    torch.manual_seed(0)
    train("cyclegan", "mnist-mini-thick", out=run, preset="tiny", steps=120,
          settings={"log_every": 40, "sample_every": 0, "progress": False, "validate": False, "batch_size": 8,
                    "lr": 2e-3})
    proc, url = start_explorer(run, free_port())
    yield url
    stop(proc)


def test_translate_panel_runs_a_cyclegan_both_ways(browser, cyc_server):
    """The direction selector lists both directions by domain; each routes its own source domain's test images
    and the drawing; thick strokes have more ink, so the output's ink moves the way the target domain expects."""
    import genzoo.data as gd
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("response", lambda r: errors.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None)
    track_requests(pg)
    ready(pg, cyc_server)
    assert pg.locator("#panel-translate").is_visible()
    options = pg.locator("#tr-direction option")
    assert options.all_inner_texts() == ["mnist-mini → thick-mnist (a2b)", "thick-mnist → mnist-mini (b2a)"]
    test = gd.load("mnist-mini-thick", "test")

    def ink(img_id: str) -> float:
        return float(data_url_pixels(pg, img_id).mean())

    # a2b (the default): test image 0 of domain A, thickened
    wait_updated(pg, "tr-output", 0)
    assert np.array_equal(data_url_pixels(pg, "tr-source"), test.x[0, 0].numpy() / 255)
    assert pg.locator("#tr-output-cap").inner_text() == "output (thick-mnist)"
    src_a, out_a = ink("tr-source"), ink("tr-output")
    assert out_a > 1.3 * src_a, (src_a, out_a)
    # b2a: test image 0 of domain B (thick strokes), thinned
    n = updates(pg, "tr-output")
    pg.locator("#tr-direction").select_option("b2a")
    wait_updated(pg, "tr-output", n)
    assert np.array_equal(data_url_pixels(pg, "tr-source"), test.domain_b.x[0, 0].numpy() / 255)
    assert pg.locator("#tr-source-cap").inner_text() == "source (thick-mnist)"
    assert pg.locator("#tr-output-cap").inner_text() == "output (mnist-mini)"
    assert int(pg.eval_on_selector("#tr-index", "e => Number(e.max)")) == len(test.domain_b) - 1
    src_b, out_b = ink("tr-source"), ink("tr-output")
    assert out_b < 0.8 * src_b, (src_b, out_b)
    # a drawing in b2a, then the same drawing in a2b (changing direction re-sends the drawing, not a test image)
    n = updates(pg, "tr-output")
    draw_stroke(pg, [(0.35, 0.2), (0.6, 0.2), (0.5, 0.5), (0.45, 0.8)], canvas_id="tr-draw")  # a "7"
    wait_updated(pg, "tr-output", n)
    settle(pg, ["tr-output"])  # the stroke's later moves send more requests: wait for the last answer
    drawn, thinned = data_url_pixels(pg, "tr-source"), ink("tr-output")
    n = updates(pg, "tr-output")
    pg.locator("#tr-direction").select_option("a2b")
    wait_updated(pg, "tr-output", n)
    settle(pg, ["tr-output"])
    assert np.array_equal(data_url_pixels(pg, "tr-source"), drawn), "the direction change re-sends the drawing"
    thickened = ink("tr-output")
    assert thickened > 1.3 * thinned, (thinned, thickened)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.locator("#panel-translate").screenshot(path=str(ARTIFACTS / "translate-cyclegan.png"))
    assert not errors, errors
    pg.close()


# ---- docs screenshots ---------------------------------------------------------------------------------------------
def docs_screenshots(run_dir: Path, out_dir: Path, panels: tuple[str, ...] = PANELS) -> list[Path]:
    """Open the explorer on `run_dir` and write a screenshot of each of `panels` into `out_dir` (docs/explorer.md)."""
    from playwright.sync_api import sync_playwright
    proc, url = start_explorer(run_dir, free_port())
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
            pg = b.new_page(viewport={"width": 1280, "height": 900})
            ready(pg, url)
            draw_stroke(pg, [(0.3, 0.25), (0.5, 0.15), (0.68, 0.3), (0.6, 0.5), (0.35, 0.82), (0.72, 0.82)])  # a "2"
            wait_updated(pg, "draw-recon", 0)
            if pg.locator("#panel-map").is_visible():
                canvas = pg.locator("#map")
                canvas.scroll_into_view_if_needed()
                box = canvas.bounding_box()
                pg.mouse.click(box["x"] + 0.62 * box["width"], box["y"] + 0.4 * box["height"])
            if pg.locator("#panel-attributes").is_visible():
                pg.locator("#attr-sliders input[data-cls='8']").fill("1.5")
            pg.wait_for_timeout(1500)
            paths = shoot_panels(pg, out_dir, panels)
            b.close()
    finally:
        stop(proc)
    return paths


if __name__ == "__main__":
    if len(sys.argv) < 3 or not set(sys.argv[3:]) <= set(PANELS):
        sys.exit(f"usage: python tests/test_explorer_browser.py RUN_DIR OUT_DIR [PANEL ...]; panels: {', '.join(PANELS)}")
    for path in docs_screenshots(Path(sys.argv[1]), Path(sys.argv[2]), tuple(sys.argv[3:]) or PANELS):
        print(f"wrote {path}")
