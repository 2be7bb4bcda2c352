"""A test helper (tests/ is on sys.path, conftest.py): a function's outputs on 1, 2 and 3
of symgrad's threads, which must be the same bits."""
import numpy as np

import symgrad as sg

THREADS = (1, 2, 3)


def by_threads(monkeypatch, ins, outs, vals):
    """The outputs of ``sg.function(ins, outs)(*vals)`` compiled and run on each count of
    THREADS, checked equal bit for bit; returns those of one thread."""
    results = []
    for n in THREADS:
        monkeypatch.setattr(sg.config, "_num_threads", n)
        results.append(sg.function(ins, outs)(*vals))
    for n, res in zip(THREADS[1:], results[1:]):
        for i, (got, first) in enumerate(zip(res, results[0])):
            np.testing.assert_array_equal(got, first, err_msg=f"output {i} on {n} threads")
    return results[0]
