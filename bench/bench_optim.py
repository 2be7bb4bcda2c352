"""Optimizer steps written in place against the same steps into fresh memory.

The MLP of ``bench_mlp.py`` (float32, 784 -> 512 -> 512 -> 10) trained by
``sg.train_step`` with Adam and with SGD + momentum, batch 32 and 256. The
same compiled step runs twice: as it is, when every parameter and state
array is written over itself, and with every array also held by the caller,
which makes each update take fresh memory (what a call does when you keep a
``get_value(borrow=True)`` result). Both loops do the same bookkeeping.

    python bench/bench_optim.py
    SYMGRAD_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python bench/bench_optim.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from bench_mlp import init, symgrad_model  # noqa: E402
from common import best_time, rng, table  # noqa: E402

import symgrad as sg  # noqa: E402


def main():
    r = rng()
    X, y, flat, loss = symgrad_model(init(r))
    rows = []
    for name, opt in (("Adam", sg.optim.Adam(lr=1e-3)),
                      ("SGD, momentum 0.9", sg.optim.SGD(lr=0.01, momentum=0.9))):
        step = sg.train_step(loss, [X, y], optimizer=opt)
        svs = flat + list(opt.state)
        held = []

        def in_place(Xv, yv):
            held[:] = svs  # the same bookkeeping as below, no array held
            return step(Xv, yv)

        def fresh(Xv, yv):
            held[:] = [v.get_value(borrow=True) for v in svs]
            return step(Xv, yv)

        for n in (32, 256):
            Xv = r.standard_normal((n, 784)).astype("float32")
            yv = r.integers(0, 10, n)
            t_in = t_fresh = float("inf")
            for _ in range(3):  # interleaved rounds
                t_in = min(t_in, best_time(in_place, Xv, yv))
                t_fresh = min(t_fresh, best_time(fresh, Xv, yv))
            held.clear()
            rows.append([name, n, f"{t_in * 1e3:.3f}", f"{t_fresh * 1e3:.3f}",
                         f"{t_fresh / t_in:.2f}x"])
    print(f"threads: {sg.config.threads()}")
    table(rows, ["optimizer", "batch", "in place ms", "fresh memory ms", "fresh / in place"])


if __name__ == "__main__":
    main()
