"""Rows for the random ops (sg.random): each built so that its value does not depend on the
numbers drawn, and so has an independent NumPy formula; tests/test_random.py checks the
numbers themselves (known answers, distributions, bit-identity across modes)."""

import numpy as np

import symgrad as sg

from . import Arg as A
from . import Case

_RNG = sg.random.RandomStream(0)


def _index_build(x):
    # a uniform sample is finite: u * 0 is 0, so the value is x (and the gradient 1)
    return x + _RNG.uniform(size=x.shape, dtype=x.dtype) * 0


def _check_build(x):
    # a symbolic scale is checked per element at call time (random_check)
    return x + _RNG.normal(0.0, x, size=x.shape, dtype=x.dtype) * 0


def _permutation_build(n):
    # every index appears once
    return sg.one_hot(_RNG.permutation(n), n).sum(axis=0)


CASES = [
    Case("random_index", _index_build, lambda x: x, [A((3, 4))]),
    Case("random_index", _index_build, lambda x: x, [A((5,), static=True)], id="random_index[5-static]"),
    Case("random_check", _check_build, lambda x: x, [A((2, 3), low=0.5, high=2.0)]),
    Case("permutation", _permutation_build, lambda n: np.ones(int(n)),
         [A(value=np.int64(7), dtype="int64")], grad=False),
]
