"""Image-folder cache benchmark (issue 17): decode once, memory-map afterwards.

1. Speed: the first load of a 20,000-image folder (decode every PNG in parallel threads into the uint8 cache)
   vs the second load (list + stat the files, memory-map the cache). Target: second >= 20x faster.
2. Memory: train one epoch of a small autoencoder from a folder whose decoded size S exceeds a stated memory
   limit L, in a subprocess, and poll its private (anonymous) resident memory from /proc/PID/status. The
   memory-mapped dataset keeps it bounded (the batch, not the folder); the same run with the data copied into
   RAM needs about S more. File-backed pages of the map are page cache the kernel reclaims under pressure;
   their peak (RssFile) and VmHWM (which counts them) are reported too. The baseline is the same training on
   256 of the images. Bound stated: peak RssAnon <= baseline + L (L = 128 MB by default, below S).
3. The first load's private memory (decoding into the cache file from an empty cache, in a subprocess): the
   decoded images go to the file's pages, not to an array in RAM, so it stays within L above a cached load.

Usage: python benchmarks/folder_cache.py [--n 20000] [--size 64] [--folder /tmp/genzoo-bench-folder]
The folder is generated in /tmp (10 class sub-folders of smooth random colour PNGs) and kept for reruns;
GENZOO_HOME is pointed at a temp folder so the cache does not land in ~/.cache.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, sys, time
import torch
torch.set_num_threads(1)
import genzoo, genzoo.data as gd
mode, folder = sys.argv[1], sys.argv[2]
t = time.perf_counter()
ds = gd.load(f"folder:{folder}", "train")
if mode in ("decode", "load"):  # the first load (every PNG decoded into the cache file), or a cached one
    assert ds.meta["cached"] is (mode == "load"), ds.meta
    status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    print(json.dumps({"seconds": time.perf_counter() - t, "VmHWM_MB": int(status["VmHWM"].split()[0]) / 1024,
                      "n": len(ds)}))
    sys.exit()
if mode == "ram":
    ds = gd.Dataset(ds.name, ds.split, ds.x.clone(), ds.y, ds.classes, {})  # the whole folder in private memory
t = time.perf_counter()
if mode != "baseline":
    genzoo.train("ae", ds, preset="tiny", epochs=1,
                 settings={"batch_size": 128, "progress": False, "sample_every": 0, "validate": False,
                           "log_every": 1000})
else:
    genzoo.train("ae", ds.subset(torch.arange(256)), preset="tiny", steps=2,
                 settings={"batch_size": 128, "progress": False, "sample_every": 0, "validate": False})
status = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
print(json.dumps({"seconds": time.perf_counter() - t, "VmHWM_MB": int(status["VmHWM"].split()[0]) / 1024,
                  "n": len(ds)}))
"""


def make_folder(root: Path, n: int, size: int) -> None:
    import numpy as np
    from PIL import Image
    if root.exists() and sum(1 for _ in root.rglob("*.png")) == n:
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small, "RGB").resize((size, size), Image.BILINEAR)
        im.save(d / f"{i:06d}.png")


def timed_load(folder: Path) -> tuple[float, dict]:
    import genzoo.data as gd
    t = time.perf_counter()
    train = gd.load(f"folder:{folder}", "train")
    test = gd.load(f"folder:{folder}", "test")
    return time.perf_counter() - t, {"n_train": len(train), "n_test": len(test), "shape": list(train.shape),
                                     "cached": train.meta.get("cached"), "cache": train.meta.get("cache")}


def child_peak(mode: str, folder: Path, **env: str) -> dict:
    """Run CHILD, polling /proc/PID/status every 2 ms for the peak RssAnon (private resident memory) and
    RssFile (pages of files mapped, the memory map's included: page cache the kernel can reclaim)."""
    p = subprocess.Popen([sys.executable, "-c", CHILD, mode, str(folder)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    peak = {"RssAnon": 0, "RssFile": 0}
    while p.poll() is None:
        try:
            for line in open(f"/proc/{p.pid}/status"):
                k = line.split(":", 1)[0]
                if k in peak:
                    peak[k] = max(peak[k], int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.002)
    out = json.loads(p.stdout.read().strip().splitlines()[-1])
    if p.returncode:
        raise SystemExit(f"child {mode} failed ({p.returncode})")
    return {**out, "peak_RssAnon_MB": round(peak["RssAnon"] / 1024, 1),
            "peak_RssFile_MB": round(peak["RssFile"] / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/genzoo-bench-folder"))
    ap.add_argument("--limit-mb", type=float, default=128.0, help="stated memory limit above the baseline")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="genzoo-bench-home-"))
    os.environ["GENZOO_HOME"] = str(home)
    t = time.perf_counter()
    make_folder(args.folder, args.n, args.size)
    print(f"folder: {args.n} PNGs of 3x{args.size}x{args.size} in {args.folder} ({time.perf_counter() - t:.1f} s to "
          f"make or find)", flush=True)
    first, info = timed_load(args.folder)
    second, info2 = timed_load(args.folder)
    third, _ = timed_load(args.folder)
    assert info2["cached"] is True, info2
    cache_mb = sum(f.stat().st_size for f in (home / "folders").glob("*.u8")) / 2 ** 20
    print(f"first load {first:.2f} s (decode {info['n_train'] + info['n_test']} images, workers "
          f"min(8, cpus={os.cpu_count()}), affinity {len(os.sched_getaffinity(0))} core(s)); second {second:.3f} s; "
          f"third {third:.3f} s; speed-up {first / second:.1f}x; cache {cache_mb:.1f} MB", flush=True)
    base = child_peak("baseline", args.folder)
    mm = child_peak("memmap", args.folder)
    ram = child_peak("ram", args.folder)
    fresh = Path(tempfile.mkdtemp(prefix="genzoo-bench-home-"))  # an empty cache: the child decodes every image
    decode = child_peak("decode", args.folder, GENZOO_HOME=str(fresh))
    shutil.rmtree(fresh, ignore_errors=True)
    load = child_peak("load", args.folder)  # the reference for decode: the same load from the cache
    train_mb = info["n_train"] * 3 * args.size * args.size / 2 ** 20
    res = {"n_images": args.n, "image": f"3x{args.size}x{args.size} PNG", "first_load_s": round(first, 2),
           "second_load_s": round(second, 3), "third_load_s": round(third, 3),
           "speedup": round(first / second, 1), "cache_MB": round(cache_mb, 1), "train_split_MB": round(train_mb, 1),
           "limit_MB_above_baseline": args.limit_mb, "baseline": base, "memmap": mm, "ram": ram,
           "decode": decode, "load": load,
           "memmap_extra_anon_MB": round(mm["peak_RssAnon_MB"] - base["peak_RssAnon_MB"], 1),
           "ram_extra_anon_MB": round(ram["peak_RssAnon_MB"] - base["peak_RssAnon_MB"], 1),
           "decode_extra_anon_MB": round(decode["peak_RssAnon_MB"] - load["peak_RssAnon_MB"], 1)}
    print(json.dumps(res, indent=2))
    ok_speed = first / second >= 20
    ok_mem = res["memmap_extra_anon_MB"] < args.limit_mb < train_mb
    ok_decode = res["decode_extra_anon_MB"] < args.limit_mb
    print(f"speed-up >= 20x: {'yes' if ok_speed else 'NO'}; training from the memory map stays within "
          f"{args.limit_mb:.0f} MB of private memory above the baseline while the training split is "
          f"{train_mb:.0f} MB: {'yes' if ok_mem else 'NO'}; the first load (decoding into the cache) within "
          f"{args.limit_mb:.0f} MB above a cached load: "
          f"{'yes' if ok_decode else 'NO'}")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
