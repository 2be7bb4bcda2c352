"""Random draws: Philox4x32-10 samples as elementwise ops (SPEC section 11).

``sg.random.RandomStream`` (symgrad/random.py) builds graphs of these ops:

``random_index``
    The flat C-order index of every element of a sample of a given shape. In
    mode "py" it is that int64 array; in mode "c" it is never memory: its
    descriptor has a data pointer no code reads (``SG_RAND_BASE``), which the
    loop driver offsets like any operand's, so a fused loop's row function
    gets each element's index from the pointer itself (codegen/render_c.py,
    ``_row_prologue``) -- whatever the fusion, broadcasting, axis order or
    thread split.
``uniform``, ``normal``, ``bernoulli``, ``integers``
    One sample per element, a function of the stream's key, the draw's
    counter (the stream's counter plus the draw's ``slot``) and the element's
    index only (``include/sg_random.h``): elementwise ops the C backend fuses
    into the loops that use them. A Philox call's four 32-bit words serve four
    consecutive elements of a 32-bit draw, or two of a 64-bit one; a fused loop
    fills runs of a draw before its simd loop (``c_fill``, ``c_from_fill``), so
    each call is made once. ``uniform`` and ``normal`` are the standard
    ones; ``RandomStream`` writes ``low + (high - low) * u`` and
    ``loc + scale * z`` as ordinary ops, so the gradient with respect to
    ``low``, ``high``, ``loc`` and ``scale`` is the reparameterised one.
``random_check``
    A parameter's validity (``scale >= 0``, ``0 <= p <= 1``, ``low < high``)
    checked per element at call time: the value of its first input, or a
    ``ValueError`` naming the user's line (nothing is updated by that call).
``permutation``
    ``0..n-1`` sorted by one 64-bit random word per index.

Every function of ``include/sg_random.h`` has its NumPy reference here, the
same operations in the same order, so modes "py" and "c" give the same bits.
"""

import numpy as np

from ..codegen.ir import (Alloc, Array, Bin, Call, Cast, Check, Data, Declare, Elem, Int, Local,
                          Let, Shape, Arr)
from ..codegen.render_c import CTYPE
from ..graph import NOT_DIFFERENTIABLE, Op, TensorType
from .elemwise import broadcast_static

__all__ = ["philox4x32_10", "words", "bits32", "bits64", "uniform_f64", "uniform_f32",
           "normal_f64", "normal_f32", "rand_logf", "rand_sincos2pif", "bernoulli", "rand_log", "rand_sincos2pi", "rand_cos2pi", "rand_sin2pi",
           "integers", "permutation", "RandomIndex", "Draw", "RandomCheck",
           "Permutation", "DISTRIBUTIONS"]

_M32 = np.uint64(0xFFFFFFFF)


# --------------------------------------------------------------------------- NumPy reference

def philox4x32_10(counter, key):
    """Philox4x32-10 of ``counter`` (four arrays of uint32 values) under ``key`` (two ints):
    four uint32 arrays (Salmon et al., SC 2011)."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & _M32 for c in counter)
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ np.uint64(k0), p1 & _M32,
                          (p0 >> np.uint64(32)) ^ c3 ^ np.uint64(k1), p0 & _M32)
    return [c.astype(np.uint32) for c in (c0, c1, c2, c3)]


def words(key, pos, block):
    """The four words (uint64 arrays of uint32 values) of blocks ``block`` of the draw at
    counter ``pos`` of the stream with key ``key`` (sg_rand_words)."""
    key, pos = int(key) % 2**64, int(pos) % 2**64
    block = np.asarray(block).astype(np.uint64)
    counter = (block & _M32, block >> np.uint64(32), np.full_like(block, pos & 0xFFFFFFFF),
               np.full_like(block, pos >> 32))
    return [w.astype(np.uint64) for w in philox4x32_10(counter, (key, key >> 32))]


def _u64(lo, hi):
    return (hi << np.uint64(32)) | lo


def _to_double(u53):
    return u53.astype(np.float64)


def bits32(key, pos, idx):
    """The 32-bit word of elements ``idx`` of a draw of four elements a block
    (sg_rand_bits32): word idx % 4 of block idx // 4."""
    idx = np.asarray(idx).astype(np.uint64)
    w = words(key, pos, idx >> np.uint64(2))
    k = idx & np.uint64(3)
    return np.where(k == 0, w[0], np.where(k == 1, w[1], np.where(k == 2, w[2], w[3])))


def bits64(key, pos, idx):
    """The 64-bit word of elements ``idx`` of a draw of two elements a block (sg_rand_bits64):
    (w1:w0) of block idx // 2 for an even idx, (w3:w2) for an odd one."""
    idx = np.asarray(idx).astype(np.uint64)
    w = words(key, pos, idx >> np.uint64(1))
    return np.where((idx & np.uint64(1)) == 1, _u64(w[2], w[3]), _u64(w[0], w[1]))


def uniform_f64(key, pos, idx):
    return _to_double(bits64(key, pos, idx) >> np.uint64(11)) * 2.0 ** -53


def uniform_f32(key, pos, idx):
    return (bits32(key, pos, idx) >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)


def bernoulli(key, pos, idx, p):
    """``w 2^-32 < p`` for each element's 32-bit word (sg_rand_bernoulli)."""
    return bits32(key, pos, idx).astype(np.float64) * 2.0 ** -32 < p


_SQRT2 = float.fromhex("0x1.6a09e667f3bcdp+0")
_LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
_LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
_PI_2 = float.fromhex("0x1.921fb54442d18p+0")
# 2/(2k+1), k = 10 down to 1 (sg_rand_log's series); 1/n! of sg_rand_cos2pi's sine (odd n
# from 21 down to 3, signs alternating) and cosine (even n from 20 down to 2)
_LOG_C = [float.fromhex(h) for h in (
    "0x1.8618618618618p-4", "0x1.af286bca1af28p-4", "0x1.e1e1e1e1e1e1ep-4",
    "0x1.1111111111111p-3", "0x1.3b13b13b13b14p-3", "0x1.745d1745d1746p-3",
    "0x1.c71c71c71c71cp-3", "0x1.2492492492492p-2", "0x1.999999999999ap-2",
    "0x1.5555555555555p-1")]
_SIN_C = [float.fromhex(h) for h in (
    "0x1.71b8ef6dcf572p-66", "-0x1.2f49b46814157p-57", "0x1.952c77030ad4ap-49",
    "-0x1.ae7f3e733b81fp-41", "0x1.6124613a86d09p-33", "-0x1.ae64567f544e4p-26",
    "0x1.71de3a556c734p-19", "-0x1.a01a01a01a01ap-13", "0x1.1111111111111p-7",
    "-0x1.5555555555555p-3")]
_COS_C = [float.fromhex(h) for h in (
    "0x1.e542ba4020225p-62", "-0x1.6827863b97d97p-53", "0x1.ae7f3e733b81fp-45",
    "-0x1.93974a8c07c9dp-37", "0x1.1eed8eff8d898p-29", "-0x1.27e4fb7789f5cp-22",
    "0x1.a01a01a01a01ap-16", "-0x1.6c16c16c16c17p-10", "0x1.5555555555555p-5", "-0x1p-1", "0x1p+0")]


def _horner(coefs, z):
    p = np.full_like(z, coefs[0])
    for c in coefs[1:]:
        p = c + z * p
    return p


def rand_log(x):
    """log(x) for normal x > 0, exactly as sg_rand_log computes it."""
    x = np.asarray(x, dtype=np.float64)
    b = x.view(np.uint64)
    e = (b >> np.uint64(52)).astype(np.int64) - 1023
    m = ((b & np.uint64(0x000FFFFFFFFFFFFF)) | np.uint64(0x3FF0000000000000)).view(np.float64)
    big = m > _SQRT2
    m = np.where(big, m * 0.5, m)
    fe = (e + big).astype(np.float64)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    logm = 2.0 * s + s * (z * _horner(_LOG_C, z))
    return fe * _LN2_HI + (fe * _LN2_LO + logm)


def rand_sincos2pi(u):
    """sin(2 pi u) and cos(2 pi u) for u in [0, 1), exactly as sg_rand_sincos2pi computes
    them."""
    v = np.asarray(u, dtype=np.float64) * 4.0
    q = (v + 6755399441055744.0) - 6755399441055744.0  # 1.5 * 2**52: rounds to an integer
    t = (v - q) * _PI_2
    z = t * t
    s = t + t * (z * _horner(_SIN_C, z))
    c = _horner(_COS_C, z)
    odd = (q == 1.0) | (q == 3.0)
    ca, sa = np.where(odd, s, c), np.where(odd, c, s)
    return (np.where((q == 2.0) | (q == 3.0), -sa, sa),
            np.where((q == 1.0) | (q == 2.0), -ca, ca))


def rand_cos2pi(u):
    """cos(2 pi u) for u in [0, 1), exactly as sg_rand_cos2pi computes it."""
    return rand_sincos2pi(u)[1]


def rand_sin2pi(u):
    """sin(2 pi u) for u in [0, 1), exactly as sg_rand_sin2pi computes it."""
    return rand_sincos2pi(u)[0]


def normal_f64(key, pos, idx):
    """Box-Muller on block idx // 2: r cos(2 pi u2) for an even idx, r sin for an odd one."""
    idx = np.asarray(idx).astype(np.uint64)
    w = words(key, pos, idx >> np.uint64(1))
    u1 = _to_double((_u64(w[0], w[1]) >> np.uint64(11)) + np.uint64(1)) * 2.0 ** -53
    u2 = _to_double(_u64(w[2], w[3]) >> np.uint64(11)) * 2.0 ** -53
    r = np.sqrt(-2.0 * rand_log(u1))
    sn, cs = rand_sincos2pi(u2)
    return np.where((idx & np.uint64(1)) == 1, r * sn, r * cs)


_F = np.float32
_LN2_HI_F, _LN2_LO_F = _F(float.fromhex("0x1.62e4p-1")), _F(float.fromhex("0x1.7f7d1cp-20"))
_SQRT2_F, _PI_2_F = _F(float.fromhex("0x1.6a09e6p+0")), _F(float.fromhex("0x1.921fb6p+0"))
_LOG_CF = [_F(float.fromhex(h)) for h in (
    "0x1.745d18p-3", "0x1.c71c72p-3", "0x1.24924ap-2", "0x1.99999ap-2", "0x1.555556p-1")]
_SIN_CF = [_F(float.fromhex(h)) for h in (
    "-0x1.ae6456p-26", "0x1.71de3ap-19", "-0x1.a01a02p-13", "0x1.111112p-7", "-0x1.555556p-3")]
_COS_CF = [_F(float.fromhex(h)) for h in (
    "-0x1.27e4fcp-22", "0x1.a01a02p-16", "-0x1.6c16c2p-10", "0x1.555556p-5", "-0x1p-1", "0x1p+0")]


def rand_logf(x):
    """log(x) in float32 for normal x > 0, exactly as sg_rand_logf computes it."""
    x = np.asarray(x, dtype=np.float32)
    b = x.view(np.uint32)
    e = (b >> np.uint32(23)).astype(np.int32) - 127
    m = ((b & np.uint32(0x007FFFFF)) | np.uint32(0x3F800000)).view(np.float32)
    big = m > _SQRT2_F
    m = np.where(big, m * _F(0.5), m)
    fe = (e + big).astype(np.float32)
    f = m - _F(1)
    s = f / (_F(2) + f)
    z = s * s
    logm = _F(2) * s + s * (z * _horner(_LOG_CF, z))
    return fe * _LN2_HI_F + (fe * _LN2_LO_F + logm)


def rand_sincos2pif(u):
    """sin(2 pi u) and cos(2 pi u) in float32, exactly as sg_rand_sincos2pif."""
    v = np.asarray(u, dtype=np.float32) * _F(4)
    q = (v + _F(12582912.0)) - _F(12582912.0)  # 1.5 * 2**23: rounds to an integer
    t = (v - q) * _PI_2_F
    z = t * t
    s = t + t * (z * _horner(_SIN_CF, z))
    c = _horner(_COS_CF, z)
    odd = (q == 1) | (q == 3)
    ca, sa = np.where(odd, s, c), np.where(odd, c, s)
    return (np.where((q == 2) | (q == 3), -sa, sa), np.where((q == 1) | (q == 2), -ca, ca))


def normal_f32(key, pos, idx):
    """Float normals, four a block, in float32 (sg_rand_normal_f32): elements 4c .. 4c + 3
    are r cos, r sin of the words (w0, w1) and r' cos', r' sin' of (w2, w3)."""
    idx = np.asarray(idx).astype(np.uint64)
    w = words(key, pos, idx >> np.uint64(2))
    k = idx & np.uint64(3)
    a, b = np.where(k < 2, w[0], w[2]), np.where(k < 2, w[1], w[3])
    u1 = ((a >> np.uint64(8)).astype(np.float32) * _F(2.0 ** -24)
          + ((a & np.uint64(0xFF)).astype(np.float32) * _F(2.0 ** -32) + _F(2.0 ** -33)))
    u2 = (b >> np.uint64(8)).astype(np.float32) * _F(2.0 ** -24)
    r = np.sqrt(_F(-2) * rand_logf(u1))
    sn, cs = rand_sincos2pif(u2)
    return np.where((k & np.uint64(1)) == 1, r * sn, r * cs).astype(np.float32)


def _mulhi64(a, b):
    """The high 64 bits of the 128-bit products of uint64 arrays."""
    s32 = np.uint64(32)
    a_lo, a_hi, b_lo, b_hi = a & _M32, a >> s32, b & _M32, b >> s32
    lo_lo, hi_lo, lo_hi, hi_hi = a_lo * b_lo, a_hi * b_lo, a_lo * b_hi, a_hi * b_hi
    cross = (lo_lo >> s32) + (hi_lo & _M32) + lo_hi
    return hi_hi + (hi_lo >> s32) + (cross >> s32)


def integers(key, pos, idx, low, high):
    x = bits64(key, pos, idx)
    low = np.asarray(low, dtype=np.int64).view(np.uint64)
    high = np.asarray(high, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        return (low + _mulhi64(x, high - low)).view(np.int64)


def permutation(key, pos, n):
    w = words(key, pos, np.arange(n, dtype=np.int64))
    return np.argsort(_u64(w[0], w[1]), kind="stable").astype(np.int64)


# --------------------------------------------------------------------------- ops

class RandomIndex(Op):
    """The flat C-order index of each element of an array of the given lengths (see the
    module docstring: in mode "c" a descriptor whose memory is never read)."""

    __props__ = ("ndim", "start")
    name = "random_index"
    flops_per_element = 0
    flat_index = True  # codegen: an element of it is its index, computed, never loaded
    never_fold = True  # rewrite/fold.py: a constant would be read as memory
    virtual = True     # codegen/lower.py: no memory to probe in mode "debug"

    def __init__(self, ndim, start=False):
        # start: one more input, a 0-d int64 added to every index (the flat position of a
        # shard's first element in the global batch's sample: symgrad/distributed.py)
        self.ndim, self.start = int(ndim), bool(start)

    def infer(self, *sizes):
        from ..graph import Constant
        if len(sizes) != self.ndim + self.start:
            raise TypeError(f"takes {self.ndim} lengths{' and a start' * self.start}, got "
                            f"{len(sizes)} inputs")
        shape = tuple(int(s.data) if isinstance(s, Constant) else None
                      for s in sizes[:self.ndim])
        return [TensorType("int64", shape)]

    def perform(self, node, *sizes):
        shape = tuple(int(s) for s in sizes[:self.ndim])
        if any(n < 0 for n in shape):
            raise ValueError(f"{node.op} at {node.trace}: a sample's size must not be "
                             f"negative, got {shape}")
        first = int(sizes[-1]) if self.start else 0
        return [np.arange(first, first + int(np.prod(shape, dtype=np.int64)),
                          dtype=np.int64).reshape(shape)]

    def grad(self, node, inputs, outputs, gouts):
        return [None] * len(inputs)

    def __str__(self):
        return "random_index{from start}" if self.start else "random_index"

    def lower(self, node):
        out = node.outputs[0]
        first = [Cast("int64", Elem(node.inputs[-1]))] if self.start else []
        fn = "sg_rand_index_from" if self.start else "sg_rand_index"
        if not self.ndim:
            t = Local("shp", length=1)
            return [Array(t, [Int(1)]), Declare(out),
                    Call(fn, [Arr(out), Int(0), Shape(t)] + first, can_fail=False)]
        t = Local("shp", length=self.ndim)
        sizes = node.inputs[:self.ndim]
        checks = [Check(Bin("<", Elem(s), Int(0)), "value",
                        "a sample's size must not be negative, got %lld on axis " + str(k),
                        [Elem(s)]) for k, s in enumerate(sizes)]
        return checks + [Array(t, [Cast("int64", Elem(s)) for s in sizes]), Declare(out),
                         Call(fn, [Arr(out), Int(self.ndim), Shape(t)] + first,
                              can_fail=False)]


DISTRIBUTIONS = {
    # name: its number of parameters (none of them differentiable)
    "uniform": 0, "normal": 0, "bernoulli": 1, "integers": 2,
}


class Draw(Op):
    """One sample per element of ``dist`` (see the module docstring).

    Inputs: the stream's key and counter (0-d int64), a ``random_index`` of the sample's
    shape, then the parameters (``bernoulli``: p; ``integers``: low, high as int64),
    broadcast against it. ``stream`` and ``slot`` make every draw an op of its own: two
    draws are never merged (a stream numbers its draws), and a compiled function advances
    each stream's counter past the highest slot it uses (symgrad/random.py).
    """

    __props__ = ("dist", "dtype", "stream", "slot")
    register = False
    random_draw = True
    never_fold = True
    flops_per_element = 1  # integer work (Philox) is not counted; the conversion is

    def __init__(self, dist, dtype, stream, slot):
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {dist!r}")
        self.dist, self.dtype, self.stream, self.slot = dist, dtype, int(stream), int(slot)

    @property
    def name(self):
        return self.dist

    def __str__(self):
        return self.dist

    def infer(self, key, ctr, index, *params):
        if len(params) != DISTRIBUTIONS[self.dist]:
            raise TypeError(f"takes {DISTRIBUTIONS[self.dist]} parameters, got {len(params)}")
        return [TensorType(self.dtype, broadcast_static([index.type.shape] +
                                                         [p.type.shape for p in params],
                                                         self.dist))]

    def perform(self, node, key, ctr, index, *params):
        pos = int(ctr) + self.slot
        shape = np.broadcast_shapes(index.shape, *[p.shape for p in params])
        idx = np.broadcast_to(index, shape)
        if self.dist == "uniform":
            u = uniform_f64(key, pos, idx) if self.dtype == "float64" else uniform_f32(key, pos, idx)
            return [np.asarray(u, dtype=self.dtype)]
        if self.dist == "normal":
            z = normal_f64(key, pos, idx) if self.dtype == "float64" else normal_f32(key, pos, idx)
            return [np.asarray(z, dtype=self.dtype)]
        if self.dist == "bernoulli":
            p = np.broadcast_to(np.asarray(params[0], dtype=np.float64), shape)
            return [np.asarray(bernoulli(key, pos, idx, p)).astype(self.dtype)]
        low, high = (np.broadcast_to(p, shape) for p in params)
        return [integers(key, pos, idx, low, high).astype(self.dtype)]

    def grad(self, node, inputs, outputs, gouts):
        return [None, None, None] + [NOT_DIFFERENTIABLE] * (len(inputs) - 3)

    def cost(self, node):
        """Work units of one element (Row.cost's scale): ten Philox rounds, and for a
        normal a log, a cosine and a square root."""
        return 60 if self.dist == "normal" else 30

    def c_scalar(self, node, args, bad):
        key, ctr, idx, *params = args
        where = f"(uint64_t){key}, (uint64_t){ctr} + {self.slot}u, (uint64_t){idx}"
        sfx = "f32" if self.dtype == "float32" else "f64"
        if self.dist in ("uniform", "normal"):
            return f"sg_rand_{self.dist}_{sfx}({where})"
        ct = CTYPE[self.dtype]
        if self.dist == "bernoulli":
            return f"(({ct})sg_rand_bernoulli({where}, (double){params[0]}))"
        return f"(({ct})sg_rand_integers({where}, (int64_t){params[0]}, (int64_t){params[1]}))"

    def c_fill(self, node, key, ctr, start, stride, n):
        """A run of ``n`` elements from flat index ``start`` by ``stride`` filled at once
        (codegen/render_c.py's ``_draw_fills``): ``(C type of the buffer, the statement
        filling it with {out} for its name)``; ``c_from_fill`` finishes an element."""
        sfx = "f32" if self.dtype == "float32" else "f64"
        ctype, fn = {"uniform": (CTYPE[self.dtype], f"sg_rand_fill_uniform_{sfx}"),
                     "normal": (CTYPE[self.dtype], f"sg_rand_fill_normal_{sfx}"),
                     "bernoulli": ("uint32_t", "sg_rand_fill_bits32"),
                     "integers": ("uint64_t", "sg_rand_fill_bits64")}[self.dist]
        return ctype, (f"{fn}((uint64_t){key}, (uint64_t){ctr} + {self.slot}u, {start}, "
                       f"{stride}, {n}, {{out}});")

    def c_from_fill(self, node, raw, args, bad):
        params = args[3:]
        if self.dist in ("uniform", "normal"):
            return raw
        ct = CTYPE[self.dtype]
        if self.dist == "bernoulli":
            return f"(({ct})sg_rand_bernoulli_of({raw}, (double){params[0]}))"
        return f"(({ct})sg_rand_integers_of({raw}, (int64_t){params[0]}, (int64_t){params[1]}))"


_CHECKS = {
    # kind: (arity, NumPy test of a bad element, C test of a bad element, message)
    "scale": (1, lambda x: ~(x >= 0), "!({0} >= 0)", "scale must be >= 0 (not negative or NaN)"),
    "prob": (1, lambda x: ~((x >= 0) & (x <= 1)), "!({0} >= 0 && {0} <= 1)",
             "p must be in [0, 1]"),
    "less": (2, lambda x, y: ~(x < y), "!({0} < {1})", "low must be < high"),
}


class RandomCheck(Op):
    """``x`` (broadcast against the other inputs), or a ``ValueError`` at call time naming
    the user's line when a parameter is out of its range (``_CHECKS``)."""

    __props__ = ("what", "kind")
    name = "random_check"
    flops_per_element = 1  # a comparison

    def __init__(self, what, kind):
        self.what, self.kind = what, kind

    def __str__(self):
        return self.what

    @property
    def message(self):
        return _CHECKS[self.kind][3]

    def infer(self, *inputs):
        if len(inputs) != _CHECKS[self.kind][0]:
            raise TypeError(f"takes {_CHECKS[self.kind][0]} inputs, got {len(inputs)}")
        return [TensorType(inputs[0].dtype, broadcast_static([i.type.shape for i in inputs],
                                                             self.what))]

    def perform(self, node, *values):
        with np.errstate(invalid="ignore"):
            bad = _CHECKS[self.kind][1](*values)
        if np.any(bad):
            raise ValueError(f"{self} at {node.trace}: {self.message}")
        shape = np.broadcast_shapes(*[v.shape for v in values])
        return [np.array(np.broadcast_to(values[0], shape))]

    def grad(self, node, inputs, outputs, gouts):
        from .shape import sum_to
        g, x = gouts[0], inputs[0]
        gx = None if g is None else (g if g.type.shape == x.type.shape and None not in x.type.shape
                                     else sum_to(g, x))
        return [gx] + [None] * (len(inputs) - 1)

    def cost(self, node):
        return 1

    def scalar_can_fail(self, node):
        return True

    def value_error_message(self, node):
        return self.message

    def c_scalar(self, node, args, bad):
        test = _CHECKS[self.kind][2].format(*args)
        return f"({bad} |= {test}, {args[0]})"


class Permutation(Op):
    """A random permutation of ``0..n-1`` (int64): indices sorted by a 64-bit word each."""

    __props__ = ("stream", "slot")
    name = "permutation"
    random_draw = True
    never_fold = True
    flops_per_element = 0

    def __init__(self, stream, slot):
        self.stream, self.slot = int(stream), int(slot)

    def __str__(self):
        return "permutation"

    def infer(self, key, ctr, n):
        from ..graph import Constant
        size = int(n.data) if isinstance(n, Constant) else None
        return [TensorType("int64", (size,))]

    def perform(self, node, key, ctr, n):
        if int(n) < 0:
            raise ValueError(f"permutation at {node.trace}: n must be >= 0, got {int(n)}")
        return [permutation(key, int(ctr) + self.slot, int(n))]

    def grad(self, node, inputs, outputs, gouts):
        return [None, None, NOT_DIFFERENTIABLE]

    def lower(self, node):
        key, ctr, n = node.inputs
        out = node.outputs[0]
        k = Local("n")
        return [Let(k, Cast("int64", Elem(n))),
                Check(Bin("<", k, Int(0)), "value", "n must be >= 0, got %lld", [k]),
                Alloc(out, [k]),
                Call("sg_rand_permutation", [Data(out), k, Elem(key), Elem(ctr), Int(self.slot)])]
