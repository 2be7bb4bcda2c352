"""Shared helpers for the benchmarks: timing with repeats, a small table printer."""

import time

import numpy as np


def best_time(fn, *args, repeat=7, min_time=0.2):
    """The best per-call time in seconds over ``repeat`` rounds of enough calls to last ``min_time``."""
    fn(*args)
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn(*args)
        t = time.perf_counter() - t0
        if t >= min_time / repeat or n >= 1 << 20:
            break
        n *= 2
    best = t / n
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(*args)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(f"{str(c):<{w}}" for c, w in zip(r, widths)))


def rng(seed=0):
    return np.random.default_rng(seed)
