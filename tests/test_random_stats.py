"""sg.random's distributions against scipy.stats, with fixed seeds (a test dependency only).

Kolmogorov-Smirnov for the continuous ones, chi-squared for the discrete ones, and
independence (correlation, and a joint chi-squared) of two streams, two draws of one call and
two calls. Every p-value must exceed 1e-4: with fixed seeds each test is deterministic, and a
broken transform (a wrong bit shift, a lost sign, a skewed range) gives p-values far below.
"""

import numpy as np
import pytest

import symgrad as sg

stats = pytest.importorskip("scipy.stats")

N = 200_000
P_MIN = 1e-4


def _sample(build, mode="c", calls=1):
    rng = sg.random.RandomStream(2024)
    f = sg.function([], build(rng), mode=mode)
    return [f() for _ in range(calls)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_ks(dtype):
    (u,) = _sample(lambda r: r.uniform(-1.5, 2.5, size=(N,), dtype=dtype))
    assert u.dtype == dtype and u.min() >= -1.5 and u.max() < 2.5
    assert stats.kstest(u, stats.uniform(-1.5, 4.0).cdf).pvalue > P_MIN


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_ks_and_moments(dtype):
    (z,) = _sample(lambda r: r.normal(0.5, 2.0, size=(N,), dtype=dtype))
    assert z.dtype == dtype
    assert stats.kstest(z, stats.norm(0.5, 2.0).cdf).pvalue > P_MIN
    assert abs(z.mean() - 0.5) < 5 * 2.0 / np.sqrt(N)
    assert abs(z.std() / 2.0 - 1) < 5 / np.sqrt(2 * N)
    # the tails: the counts beyond 3 sigma on each side, as a normal has them
    tail = stats.norm.sf(3.0) * N
    for side in ((z - 0.5) / 2.0 > 3, (z - 0.5) / 2.0 < -3):
        assert abs(side.sum() - tail) < 5 * np.sqrt(tail)


def test_normal_in_py_mode_too():
    (z,) = _sample(lambda r: r.normal(size=(20_000,)), mode="py")
    assert stats.kstest(z, stats.norm.cdf).pvalue > P_MIN


@pytest.mark.parametrize("p", [0.1, 0.5, 0.93])
def test_bernoulli_chi2(p):
    (b,) = _sample(lambda r: r.bernoulli(p, size=(N,)))
    counts = np.array([(b == 0).sum(), (b == 1).sum()])
    assert counts.sum() == N
    assert stats.chisquare(counts, [N * (1 - p), N * p]).pvalue > P_MIN


def test_integers_chi2():
    (k,) = _sample(lambda r: r.integers(-3, 10, size=(N,)))
    counts = np.bincount(k + 3, minlength=13)
    assert len(counts) == 13
    assert stats.chisquare(counts).pvalue > P_MIN


def test_permutation_positions_are_uniform():
    """Where element 0 lands, over many permutations of 10: uniform over the 10 places."""
    rng = sg.random.RandomStream(5)
    f = sg.function([], rng.permutation(10))
    places = np.array([int(np.argmax(f() == 0)) for _ in range(3000)])
    assert stats.chisquare(np.bincount(places, minlength=10)).pvalue > P_MIN


def _independent(a, b):
    """Correlation within a few standard errors of 0, and a joint 10x10 histogram of the
    ranks that is uniform (chi-squared)."""
    n = len(a)
    r = np.corrcoef(a, b)[0, 1]
    assert abs(r) < 5 / np.sqrt(n)
    ra = np.argsort(np.argsort(a)) * 10 // n
    rb = np.argsort(np.argsort(b)) * 10 // n
    joint = np.bincount(ra * 10 + rb, minlength=100)
    assert stats.chisquare(joint).pvalue > P_MIN


def test_two_draws_of_one_call_are_independent():
    (ab,) = _sample(lambda r: [r.normal(size=(N,)), r.normal(size=(N,))])
    _independent(*ab)


def test_two_calls_are_independent():
    first, second = _sample(lambda r: r.uniform(size=(N,)), calls=2)
    _independent(first, second)


def test_two_streams_are_independent():
    a = sg.function([], sg.random.RandomStream(0).normal(size=(N,)))()
    b = sg.function([], sg.random.RandomStream(1).normal(size=(N,)))()
    _independent(a, b)


def test_neighbouring_elements_are_independent():
    (u,) = _sample(lambda r: r.uniform(size=(N,)))
    _independent(u[:-1], u[1:])
