"""Derive the polynomial coefficients and split constants of symgrad/include/sg_math.h.

    pip install mpmath   # a development tool only: symgrad does not need it
    python bench/fit_sg_math.py

Each polynomial is a Chebyshev interpolant (near-minimax) computed at 50
digits by mpmath and rounded to double or float; the script prints it as C
and the worst relative error of the rounded polynomial over a dense grid, so
a degree can be chosen by its accuracy. The double versions need about
2^-58 (what remains is the rounding of the last few operations), the float
versions that evaluate in double about 2^-34, those in float about 2^-26.
"""

import mpmath as mp
import numpy as np

mp.mp.dps = 50
LN2 = mp.log(2)
LOG_Z = ((mp.sqrt(2) - 1) / (mp.sqrt(2) + 1)) ** 2    # s**2 at m = sqrt(2), s = (m-1)/(m+1)
EXP_R = LN2 / 2 * (1 + mp.mpf(2) ** -10)               # |r| bound, with room for a wrong-way k


def split(c, bits):
    """``c`` as hi + lo, hi on ``bits`` bits: in a p-bit format, hi * k is exact for
    |k| < 2**(p - bits)."""
    e = mp.floor(mp.log(abs(c), 2)) + 1
    hi = mp.floor(c * mp.mpf(2) ** (bits - e)) / mp.mpf(2) ** (bits - e)
    return float(hi), float(c - hi)


def expq(r):
    """exp(r) = 1 + r + r**2 q(r)   (and expm1(r) = r + r**2 q(r))."""
    return mp.mpf(1) / 2 + r / 6 if abs(r) < mp.mpf(10) ** -20 else (mp.exp(r) - 1 - r) / r ** 2


def logp(z):
    """2 atanh(s) = 2 s + s z p(z), z = s**2 (so log(m) = 2 atanh((m-1)/(m+1)))."""
    if z < mp.mpf(10) ** -40:
        return mp.mpf(2) / 3 + 2 * z / 5
    s = mp.sqrt(z)
    return (2 * mp.atanh(s) / s - 2) / z


def tanhp(z):
    """tanh(a) = a + a z p(z), z = a**2."""
    if z < mp.mpf(10) ** -40:
        return -mp.mpf(1) / 3 + 2 * z / 15
    a = mp.sqrt(z)
    return (mp.tanh(a) - a) / (a * z)


# name, function, interval, number of coefficients, C type of the coefficients, and the
# whole approximation from the polynomial's value (its relative error is printed).
# _D: double versions; _S: the short ones the float versions evaluating in double use;
# _F: float versions evaluating in float.
FITS = [
    ("SG__EXPQ_D", expq, (-EXP_R, EXP_R), 11, "double", lambda r, q: 1 + r + r * r * q),
    ("SG__EXPQ_S", expq, (-EXP_R, EXP_R), 7, "double", lambda r, q: 1 + r + r * r * q),
    ("SG__EXPQ_F", expq, (-EXP_R, EXP_R), 5, "float", lambda r, q: 1 + r + r * r * q),
    ("SG__LOGP_D", logp, (0, LOG_Z), 7, "double", lambda z, p: 2 + z * p),
    ("SG__LOGP_S", logp, (0, LOG_Z), 4, "double", lambda z, p: 2 + z * p),
    ("SG__LOGP_F", logp, (0, LOG_Z), 3, "float", lambda z, p: 2 + z * p),
    ("SG__TANHP_D", tanhp, (0, mp.mpf(0.55) ** 2), 12, "double", lambda z, p: 1 + z * p),
    ("SG__TANHP_F", tanhp, (0, mp.mpf(0.9) ** 2), 8, "float", lambda z, p: 1 + z * p),
]


def fit(fn, interval, n, ctype):
    """The Chebyshev interpolant's coefficients, lowest degree first, rounded to ``ctype``."""
    rnd = (lambda c: float(np.float32(c))) if ctype == "float" else float
    return [rnd(c) for c in mp.chebyfit(fn, interval, n)[::-1]]


def worst(fn, interval, coeffs, whole, points=2000):
    a, b = interval
    err = mp.mpf(0)
    for i in range(points + 1):
        t = a + (b - a) * i / points
        got = mp.polyval([mp.mpf(c) for c in coeffs[::-1]], t)
        want = fn(t)
        err = max(err, abs(whole(t, got) - whole(t, want)) / abs(whole(t, want)))
    return err


def literal(c, ctype):
    return f"{str(np.float32(c))}f" if ctype == "float" else repr(c)


def main():
    for ctype, bits in (("double", 42), ("float", 16)):
        hi, lo = split(LN2, bits)
        suffix = "" if ctype == "double" else "F"
        print(f"#define SG__LN2_HI{suffix} {literal(hi, ctype)}  /* {bits} bits */")
        print(f"#define SG__LN2_LO{suffix} {literal(lo, ctype)}")
        print(f"#define SG__INV_LN2{suffix} {literal(float(1 / LN2), ctype)}")
    for name, fn, interval, n, ctype, whole in FITS:
        coeffs = fit(fn, interval, n, ctype)
        err = worst(fn, interval, coeffs, whole)
        body = ", ".join(literal(c, ctype) for c in coeffs)
        print(f"/* max relative error {mp.nstr(err, 3)} (2^{mp.nstr(mp.log(err, 2), 3)}) */")
        print(f"#define {name} {body}")


if __name__ == "__main__":
    main()
