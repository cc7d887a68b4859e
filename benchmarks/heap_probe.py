"""System time and page faults of DDPM sampling with glibc's default heap vs `genzoo._memory.steady_heap()`.

    OMP_NUM_THREADS=1 python benchmarks/heap_probe.py RUN default 250    # then: steady 250, default 500, steady 500

Draws 500 samples with 10 DDIM steps at the given batch from the run (a `ddpm` run) in this process and prints
user and system CPU seconds and minor page faults (getrusage). Run each setting in its own process: mallopt
settings last for the process.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("heap", choices=["default", "steady"])
    ap.add_argument("batch", type=int)
    args = ap.parse_args()
    if args.heap == "steady":
        from genzoo._memory import steady_heap
        assert steady_heap(), "this C library has no mallopt"
    import genzoo
    torch.set_num_threads(1)
    m = genzoo.load(args.run).eval()
    g = torch.Generator().manual_seed(0)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with torch.no_grad():
        for _ in range(max(1, 500 // args.batch)):
            m.sample(args.batch, generator=g, steps=10)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{args.heap} batch {args.batch}: user {r1.ru_utime - r0.ru_utime:.1f} s, system "
          f"{r1.ru_stime - r0.ru_stime:.1f} s, wall {time.perf_counter() - t0:.1f} s, minor faults "
          f"{r1.ru_minflt - r0.ru_minflt}")


if __name__ == "__main__":
    main()
