"""Explorer response times: how long the page waits for each kind of request, over real HTTP on 127.0.0.1.

For each MNIST model (trained briefly on mnist-mini unless run directories are given: response time does not
depend on how well a model is trained) the explorer is served by uvicorn in this process and an HTTP client
sends each request N times, one at a time; then the decode request again from 4 clients at once. Prints the
median, 95th percentile and maximum wall time per request in milliseconds, and the server process's CPU
time per request. Target (issue 7): a decode answers in under 100 ms on 2 cores.

    OMP_NUM_THREADS=2 python benchmarks/explorer_latency.py            # ae, vae (MLP 784-400-20) and conv ae, vae
    python benchmarks/explorer_latency.py --runs runs/demo -n 300
"""
from __future__ import annotations

import argparse
import io
import os
import re
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import numpy as np
import uvicorn
from PIL import Image

from genzoo.explorer import create_app
from genzoo.explorer.limits import TOKEN_HEADER

MODELS = [("ae", "mlp-784-400-20"), ("vae", "mlp-784-400-20"), ("ae", "conv"), ("vae", "conv")]
TARGET_MS = 100.0


def train_runs(folder: Path, steps: int) -> list[Path]:
    from genzoo.train import train
    runs = []
    for name, preset in MODELS:
        out = folder / f"{name}-{preset}"
        train(name, "mnist-mini", out=out, preset=preset, steps=steps,
              settings={"log_every": 50, "sample_every": 0, "progress": False, "validate": False})
        runs.append(out)
    return runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """uvicorn serving the explorer for `run` in a thread of this process."""

    def __init__(self, run: Path):
        self.port = free_port()
        config = uvicorn.Config(create_app(run), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join()


def canvas_png() -> bytes:
    """A 280 x 280 drawing of a stroke, as the page's canvas sends it."""
    a = np.zeros((280, 280), np.uint8)
    a[40:240, 130:150] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def page_token(client: httpx2.Client) -> str:
    """The token the explorer's page carries (every /api/ request but /api/info must send it)."""
    m = re.search(r'<meta name="genzoo-token" content="([^"]+)">', client.get("/").text)
    if not m:
        raise RuntimeError("the explorer's page carries no genzoo-token")
    return m.group(1)


def requests_for(client: httpx2.Client, info: dict) -> dict[str, callable]:
    L = info["latent_dim"]
    method = info["map_methods"][0]
    client.get("/api/map", params={"method": method}).raise_for_status()  # built (or read from cache) once
    z = [[0.1] * L]
    png = canvas_png()
    return {
        "map hover decode (GET)": lambda i: client.get("/api/map/decode.png",
                                                       params={"method": method, "x": 0.01 * (i % 50), "y": 0.3}),
        "decode one code (POST)": lambda i: client.post("/api/decode.png", json={"z": z}),
        "interpolation strip, 8 images": lambda i: client.post(
            "/api/interpolate.png", json={"a": [0.0] * L, "b": [1.0] * L, "mode": "slerp",
                                          "ts": [k / 7 for k in range(8)]}),
        "attribute sliders": lambda i: client.post("/api/attributes.png", json={"z": z[0], "alphas": {3: 1.0}}),
        "canvas upload: encode + reconstruct": lambda i: client.post("/api/encode",
                                                                     params={"fit": True, "method": method},
                                                                     content=png,
                                                                     headers={"content-type": "image/png"}),
        "16 samples": lambda i: client.get("/api/samples.png", params={"n": 16, "seed": i}),
    }


def timed(fn, i: int) -> float:
    t = time.perf_counter()
    r = fn(i)
    dt = time.perf_counter() - t
    r.raise_for_status()
    return dt * 1000


def summary(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=20)
    return f"median {statistics.median(ms):6.1f}  p95 {q[18]:6.1f}  max {max(ms):6.1f}"


def bench(run: Path, n: int) -> list[tuple[str, list[float], float]]:
    rows = []
    with Served(run) as url, httpx2.Client(base_url=url, timeout=60) as client:
        client.headers[TOKEN_HEADER] = page_token(client)
        info = client.get("/api/info").json()
        print(f"\n{run.name}: {info['model_type']}, latent {info['latent_dim']}, "
              f"{info['parameters']:,} parameters")
        for name, fn in requests_for(client, info).items():
            for i in range(10):  # warm-up
                timed(fn, i)
            cpu = time.process_time()
            ms = [timed(fn, i) for i in range(n)]
            cpu_ms = (time.process_time() - cpu) * 1000 / n
            rows.append((name, ms, cpu_ms))
            print(f"  {name:<38} {summary(ms)} ms   process CPU {cpu_ms:5.1f} ms/request")
        decode = requests_for(client, info)["map hover decode (GET)"]
        with ThreadPoolExecutor(4) as pool:
            ms = list(pool.map(lambda i: timed(decode, i), range(n)))
        rows.append(("map hover decode, 4 clients at once", ms, float("nan")))
        print(f"  {'map hover decode, 4 clients at once':<38} {summary(ms)} ms")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="*", type=Path, help="run directories (default: train the four models)")
    ap.add_argument("-n", type=int, default=200, help="requests per kind")
    ap.add_argument("--steps", type=int, default=50, help="training steps when training the models")
    args = ap.parse_args()
    import torch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f} (1 min); wall-clock milliseconds per request")
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or train_runs(Path(tmp), args.steps)
        worst = 0.0
        for run in runs:
            for name, ms, _ in bench(run, args.n):
                if "decode" in name and "clients" not in name:
                    worst = max(worst, statistics.median(ms))
    print(f"\nslowest median decode: {worst:.1f} ms (target < {TARGET_MS:.0f} ms): "
          f"{'met' if worst < TARGET_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
