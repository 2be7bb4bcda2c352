/* sg_random.h: counter-based random numbers for sg.random (SPEC section 11).
 *
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as
 * easy as 1, 2, 3", SC 2011): a bijection of a 128-bit counter under a 64-bit
 * key, ten rounds of two 32x32->64-bit products. Element `idx` (its flat,
 * C-order index in the sample) of a draw whose stream has key `key` and whose
 * base counter is `pos` is a function of those three numbers only:
 *
 *     counter = (lo32(idx), hi32(idx), lo32(pos), hi32(pos)),  key = (lo32(key), hi32(key))
 *
 * so the loop that computes it -- fused with others, split among threads,
 * rows in any order -- cannot change a value. symgrad/ops/random.py holds the
 * NumPy reference of every function below (mode "py"), operation for
 * operation: the two give the same bits (tests/test_random.py checks it).
 *
 * From the four 32-bit words w0..w3 of a counter:
 * - uniform double in [0, 1): the top 53 bits of (w1:w0) times 2^-53; float:
 *   the top 24 bits of w0 times 2^-24 (both exact);
 * - normal: Box-Muller on u1 = (53 bits of w1:w0, + 1) 2^-53 in (0, 1] and
 *   u2 = 53 bits of (w3:w2) 2^-53 in [0, 1): sqrt(-2 log u1) cos(2 pi u2),
 *   in double (a float result is that double rounded once). log and cos are
 *   computed here with +, -, *, / and sqrt only, each correctly rounded in
 *   IEEE arithmetic (kernels are compiled with -ffp-contract=off: no fused
 *   multiply-add), in the same order as the NumPy reference, so both give the
 *   same bits; libm's and NumPy's log and cos may differ in the last bit.
 *   Their error is a few ulp (tests/test_random.py bounds it against NumPy);
 * - bernoulli(p): the uniform double u < p;
 * - integers in [low, high): low + the high 64 bits of (w1:w0) (high - low),
 *   a bias below (high - low) 2^-64.
 */
#ifndef SG_RANDOM_H
#define SG_RANDOM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "sg_abi.h"

#if defined(__GNUC__)
#define SG__RINLINE static inline __attribute__((always_inline))
#else
#define SG__RINLINE static inline
#endif

#define SG__PHILOX_M0 0xD2511F53u
#define SG__PHILOX_M1 0xCD9E8D57u
#define SG__PHILOX_W0 0x9E3779B9u
#define SG__PHILOX_W1 0xBB67AE85u

/* One Philox round: two 32x32 -> 64-bit products, then a permutation mixing in the key. */
#define SG__PHILOX_ROUND(c0, c1, c2, c3, k0, k1)                                        \
    do {                                                                               \
        uint64_t p0_ = (uint64_t)SG__PHILOX_M0 * (c0), p1_ = (uint64_t)SG__PHILOX_M1 * (c2); \
        (c0) = (uint32_t)(p1_ >> 32) ^ (c1) ^ (k0);                                    \
        (c1) = (uint32_t)p1_;                                                          \
        (c2) = (uint32_t)(p0_ >> 32) ^ (c3) ^ (k1);                                    \
        (c3) = (uint32_t)p0_;                                                          \
    } while (0)

/* Four 32-bit words: a Philox counter or its output (a struct, not an array: gcc keeps
 * it in registers and vectorises loops of the functions below). */
typedef struct {
    uint32_t w0, w1, w2, w3;
} sg_rand4;

/* Philox4x32-10 of the counter c under the key (k0, k1): ten rounds, the key bumped by the
 * Weyl constants between rounds, written out. */
SG__RINLINE sg_rand4 sg_philox4x32_10(sg_rand4 c, uint32_t k0, uint32_t k1)
{
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0, k1);
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0 + 1 * SG__PHILOX_W0, k1 + 1 * SG__PHILOX_W1);
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0 + 2 * SG__PHILOX_W0, k1 + 2 * SG__PHILOX_W1);
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0 + 3 * SG__PHILOX_W0, k1 + 3 * SG__PHILOX_W1);
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0 + 4 * SG__PHILOX_W0, k1 + 4 * SG__PHILOX_W1);
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0 + 5 * SG__PHILOX_W0, k1 + 5 * SG__PHILOX_W1);
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0 + 6 * SG__PHILOX_W0, k1 + 6 * SG__PHILOX_W1);
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0 + 7 * SG__PHILOX_W0, k1 + 7 * SG__PHILOX_W1);
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0 + 8 * SG__PHILOX_W0, k1 + 8 * SG__PHILOX_W1);
    SG__PHILOX_ROUND(c.w0, c.w1, c.w2, c.w3, k0 + 9 * SG__PHILOX_W0, k1 + 9 * SG__PHILOX_W1);
    return c;
}

/* The four words of element idx of the draw at counter pos of the stream with key `key`. */
SG__RINLINE sg_rand4 sg_rand_words(uint64_t key, uint64_t pos, uint64_t idx)
{
    sg_rand4 c = {(uint32_t)idx, (uint32_t)(idx >> 32), (uint32_t)pos, (uint32_t)(pos >> 32)};
    return sg_philox4x32_10(c, (uint32_t)key, (uint32_t)(key >> 32));
}

/* ---- log and cos(2 pi u) from correctly rounded operations only ---- */

#define SG__R_SQRT2 0x1.6a09e667f3bcdp+0
#define SG__R_LN2_HI 0x1.62e42fee00000p-1 /* 32 bits: e * LN2_HI is exact */
#define SG__R_LN2_LO 0x1.a39ef35793c76p-33
#define SG__R_PI_2 0x1.921fb54442d18p+0

/* log(x) for a normal x > 0: x = 2^e m, sqrt(1/2) < m <= sqrt(2); log(m) = 2 atanh(s),
 * s = (m - 1) / (m + 1), |s| < 0.1716, the series to s^21 (its tail < 2^-60 relative). */
SG__RINLINE double sg_rand_log(double x)
{
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    int64_t e = (int64_t)(b >> 52) - 1023;
    b = (b & 0x000FFFFFFFFFFFFFULL) | 0x3FF0000000000000ULL;
    double m;
    memcpy(&m, &b, sizeof m);
    int big = m > SG__R_SQRT2;
    m = big ? m * 0.5 : m;
    double fe = (double)(e + big);
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s;
    double p = 0x1.8618618618618p-4;     /* 2/21 */
    p = 0x1.af286bca1af28p-4 + z * p;    /* 2/19 */
    p = 0x1.e1e1e1e1e1e1ep-4 + z * p;    /* 2/17 */
    p = 0x1.1111111111111p-3 + z * p;    /* 2/15 */
    p = 0x1.3b13b13b13b14p-3 + z * p;    /* 2/13 */
    p = 0x1.745d1745d1746p-3 + z * p;    /* 2/11 */
    p = 0x1.c71c71c71c71cp-3 + z * p;    /* 2/9 */
    p = 0x1.2492492492492p-2 + z * p;    /* 2/7 */
    p = 0x1.999999999999ap-2 + z * p;    /* 2/5 */
    p = 0x1.5555555555555p-1 + z * p;    /* 2/3 */
    double logm = 2.0 * s + s * (z * p);
    return fe * SG__R_LN2_HI + (fe * SG__R_LN2_LO + logm);
}

/* cos(2 pi u) for u in [0, 1): 4u = q + r, q the nearest integer, |r| <= 1/2 (both exact;
 * adding and subtracting 1.5 2^52 rounds: floor is a call gcc does not vectorise);
 * t = r pi/2, |t| <= pi/4; cos(q pi/2 + t) is +-cos t or +-sin t, each a Taylor series
 * (to t^21 and t^20: tails < 2^-62). */
SG__RINLINE double sg_rand_cos2pi(double u)
{
    double v = u * 4.0;
    double q = (v + 0x1.8p52) - 0x1.8p52; /* v rounded to the nearest integer (even at .5) */
    double t = (v - q) * SG__R_PI_2;
    double z = t * t;
    double s = 0x1.71b8ef6dcf572p-66;      /* 1/21! */
    s = -0x1.2f49b46814157p-57 + z * s;  /* -1/19! */
    s = 0x1.952c77030ad4ap-49 + z * s;   /* 1/17! */
    s = -0x1.ae7f3e733b81fp-41 + z * s;  /* -1/15! */
    s = 0x1.6124613a86d09p-33 + z * s;   /* 1/13! */
    s = -0x1.ae64567f544e4p-26 + z * s;  /* -1/11! */
    s = 0x1.71de3a556c734p-19 + z * s;   /* 1/9! */
    s = -0x1.a01a01a01a01ap-13 + z * s;  /* -1/7! */
    s = 0x1.1111111111111p-7 + z * s;    /* 1/5! */
    s = -0x1.5555555555555p-3 + z * s;   /* -1/3! */
    s = t + t * (z * s);
    double c = 0x1.e542ba4020225p-62;    /* 1/20! */
    c = -0x1.6827863b97d97p-53 + z * c;  /* -1/18! */
    c = 0x1.ae7f3e733b81fp-45 + z * c;   /* 1/16! */
    c = -0x1.93974a8c07c9dp-37 + z * c;  /* -1/14! */
    c = 0x1.1eed8eff8d898p-29 + z * c;   /* 1/12! */
    c = -0x1.27e4fb7789f5cp-22 + z * c;  /* -1/10! */
    c = 0x1.a01a01a01a01ap-16 + z * c;   /* 1/8! */
    c = -0x1.6c16c16c16c17p-10 + z * c;  /* -1/6! */
    c = 0x1.5555555555555p-5 + z * c;    /* 1/4! */
    c = -0.5 + z * c;                    /* -1/2! */
    c = 1.0 + z * c;
    /* q in 0..4 (exact): q = 1, 3: +-sin t; q = 1, 2: negated (compared as doubles: a
     * conversion to an integer would keep gcc from vectorising the loop) */
    double a = (q == 1.0 || q == 3.0) ? s : c;
    return (q == 1.0 || q == 2.0) ? -a : a;
}

/* ---- one element of each distribution ---- */

/* 53 random bits: the top bits of (hi:lo) */
SG__RINLINE uint64_t sg__rand_53(uint32_t lo, uint32_t hi)
{
    return ((uint64_t)hi << 32 | lo) >> 11;
}

SG__RINLINE double sg_rand_uniform_f64(uint64_t key, uint64_t pos, uint64_t idx)
{
    sg_rand4 w = sg_rand_words(key, pos, idx);
    return (double)(int64_t)sg__rand_53(w.w0, w.w1) * 0x1p-53;
}

SG__RINLINE float sg_rand_uniform_f32(uint64_t key, uint64_t pos, uint64_t idx)
{
    sg_rand4 w = sg_rand_words(key, pos, idx);
    return (float)(int32_t)(w.w0 >> 8) * 0x1p-24f;
}

SG__RINLINE double sg_rand_normal_f64(uint64_t key, uint64_t pos, uint64_t idx)
{
    sg_rand4 w = sg_rand_words(key, pos, idx);
    double u1 = (double)(int64_t)(sg__rand_53(w.w0, w.w1) + 1) * 0x1p-53;
    double u2 = (double)(int64_t)sg__rand_53(w.w2, w.w3) * 0x1p-53;
    return sqrt(-2.0 * sg_rand_log(u1)) * sg_rand_cos2pi(u2);
}

SG__RINLINE float sg_rand_normal_f32(uint64_t key, uint64_t pos, uint64_t idx)
{
    return (float)sg_rand_normal_f64(key, pos, idx);
}

/* u < p for the uniform double u = x 2^-53: x < p 2^53 (exact), x < ceil(p 2^53) as
 * integers; for a p the loop reads once, the threshold is computed once. */
SG__RINLINE int32_t sg_rand_bernoulli(uint64_t key, uint64_t pos, uint64_t idx, double p)
{
    sg_rand4 w = sg_rand_words(key, pos, idx);
    return (int64_t)sg__rand_53(w.w0, w.w1) < (int64_t)ceil(p * 0x1p53);
}

SG__RINLINE int64_t sg_rand_integers(uint64_t key, uint64_t pos, uint64_t idx, int64_t low,
                                     int64_t high)
{
    sg_rand4 w = sg_rand_words(key, pos, idx);
    uint64_t range = (uint64_t)high - (uint64_t)low;
    uint64_t x = (uint64_t)w.w1 << 32 | w.w0;
    uint64_t v = (uint64_t)(((unsigned __int128)x * range) >> 64);
    return (int64_t)((uint64_t)low + v);
}

/* ---- in the support library (sg_random.c) ---- */

/* A random permutation of 0..n-1 into out: the indices sorted by their 64-bit words
 * (w1:w0) under (key, ctr + slot), ties by index. Fails only when out of memory. */
int sg_rand_permutation(sg_err *err, const char *where, int64_t *out, int64_t n, int64_t key,
                        int64_t ctr, int64_t slot);

/* The descriptor of an index carrier (ops/random.py's random_index): lengths `shape`, C
 * strides, and a data pointer that is never read: a fused loop's driver offsets it like any
 * operand's, so its address minus SG_RAND_BASE is an element's flat index in the sample. */
#define SG_RAND_BASE ((uintptr_t)4096)
void sg_rand_index(sg_arr *v, int nd, const int64_t *shape);

#endif
