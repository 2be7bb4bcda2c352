/* sg_random.h: counter-based random numbers for sg.random (SPEC section 11).
 *
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as
 * easy as 1, 2, 3", SC 2011): a bijection of a 128-bit counter under a 64-bit
 * key, ten rounds of two 32x32->64-bit products. A draw whose stream has key
 * `key` and whose base counter is `pos` numbers its Philox blocks c = 0, 1, ...:
 *
 *     counter = (lo32(c), hi32(c), lo32(pos), hi32(pos)),  key = (lo32(key), hi32(key))
 *
 * and every block's four 32-bit words w0..w3 serve consecutive elements: element
 * `idx` (its flat, C-order index in the sample) reads block idx / k, part idx % k,
 * k = 4 for 32-bit draws (float uniform and normal, bernoulli) and 2 for 64-bit ones (double
 * uniform, integers, double normal). An element is a function of (key, pos, idx) only,
 * so the loop that computes it -- fused with others, split among threads, rows in
 * any order, element by element (sg_rand_<dist>) or a run of them at once
 * (sg_rand_fill_<dist>, which makes each block once) -- cannot change a value.
 * symgrad/ops/random.py holds the NumPy reference of every function below (mode
 * "py"), operation for operation: the two give the same bits (tests/test_random.py
 * checks it).
 *
 * From a block's words:
 * - float uniform in [0, 1): the top 24 bits of word idx % 4 times 2^-24; double:
 *   the top 53 bits of (w1:w0) (idx even) or (w3:w2) (odd) times 2^-53 (both exact);
 * - normal: Box-Muller on u1 = (53 bits of w1:w0, + 1) 2^-53 in (0, 1] and
 *   u2 = 53 bits of (w3:w2) 2^-53 in [0, 1): r = sqrt(-2 log u1), r cos(2 pi u2)
 *   for the even element, r sin(2 pi u2) for the odd one, in double. A float normal
 *   is computed in float, four from a block (32-bit parts): pairs (w0, w1) and
 *   (w2, w3), u1 = (w + 1/2) 2^-32 rounded to float (in (0, 1]: |z| <= 6.8), u2 = the
 *   top 24 bits of the second word times 2^-24; elements r cos, r sin, r' cos', r' sin'.
 *   log, cos and sin are computed here with
 *   +, -, *, / and sqrt only, each correctly rounded in IEEE arithmetic (kernels
 *   are compiled with -ffp-contract=off: no fused multiply-add), in the same
 *   order as the NumPy reference, so both give the same bits; libm's and NumPy's
 *   may differ in the last bit. Their error is a few ulp (tests/test_random.py
 *   bounds it against NumPy);
 * - bernoulli(p): w 2^-32 < p for the word w = word idx % 4 (p resolved to 2^-32);
 * - integers in [low, high): low + the high 64 bits of x (high - low), x the 64-bit
 *   word of the element as for a double uniform, a bias below (high - low) 2^-64.
 */
#ifndef SG_RANDOM_H
#define SG_RANDOM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "sg_abi.h"
#include "sg_math.h" /* sg_u64_to_f64: a conversion that vectorises on AVX2 */

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

/* The four words of block c of the draw at counter pos of the stream with key `key`. */
SG__RINLINE sg_rand4 sg_rand_words(uint64_t key, uint64_t pos, uint64_t c)
{
    sg_rand4 w = {(uint32_t)c, (uint32_t)(c >> 32), (uint32_t)pos, (uint32_t)(pos >> 32)};
    return sg_philox4x32_10(w, (uint32_t)key, (uint32_t)(key >> 32));
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
    int32_t e = (int32_t)(b >> 52) - 1023; /* (double) of an int64 is scalar on AVX2 */
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

/* sin(2 pi u) and cos(2 pi u) for u in [0, 1): 4u = q + r, q the nearest integer, |r| <= 1/2
 * (both exact; adding and subtracting 1.5 2^52 rounds: floor is a call gcc does not
 * vectorise); t = r pi/2, |t| <= pi/4; sin and cos of q pi/2 + t are +-sin t or +-cos t,
 * each a Taylor series (to t^21 and t^20: tails < 2^-62). */
SG__RINLINE void sg_rand_sincos2pi(double u, double *sin_out, double *cos_out)
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
    /* q in 0..4 (exact), compared as doubles (a conversion to an integer would keep gcc
     * from vectorising the loop). cos: c, -s, -c, s, c; sin: s, c, -s, -c, s. */
    int odd = q == 1.0 || q == 3.0;
    double ca = odd ? s : c, sa = odd ? c : s;
    *cos_out = (q == 1.0 || q == 2.0) ? -ca : ca;
    *sin_out = (q == 2.0 || q == 3.0) ? -sa : sa;
}

SG__RINLINE double sg_rand_cos2pi(double u)
{
    double s, c;
    sg_rand_sincos2pi(u, &s, &c);
    return c;
}

SG__RINLINE double sg_rand_sin2pi(double u)
{
    double s, c;
    sg_rand_sincos2pi(u, &s, &c);
    return s;
}

/* ---- one element of each distribution (element idx: see the top of this file) ---- */

/* 53 random bits: the top bits of (hi:lo) */
SG__RINLINE uint64_t sg__rand_53(uint32_t lo, uint32_t hi)
{
    return ((uint64_t)hi << 32 | lo) >> 11;
}

/* The 32-bit word of element idx of a draw of 32-bit parts, and the 64-bit one of a draw
 * of 64-bit parts (selects, not an array index: gcc vectorises loops of them). */
SG__RINLINE uint32_t sg_rand_bits32(uint64_t key, uint64_t pos, uint64_t idx)
{
    sg_rand4 w = sg_rand_words(key, pos, idx >> 2);
    uint32_t k = (uint32_t)idx & 3;
    return k == 0 ? w.w0 : k == 1 ? w.w1 : k == 2 ? w.w2 : w.w3;
}

SG__RINLINE uint64_t sg_rand_bits64(uint64_t key, uint64_t pos, uint64_t idx)
{
    sg_rand4 w = sg_rand_words(key, pos, idx >> 1);
    return (idx & 1) ? (uint64_t)w.w3 << 32 | w.w2 : (uint64_t)w.w1 << 32 | w.w0;
}

SG__RINLINE float sg_rand_f32_of(uint32_t w)
{
    return (float)(int32_t)(w >> 8) * 0x1p-24f;
}

SG__RINLINE double sg_rand_f64_of(uint64_t x)
{
    return sg_u64_to_f64(x >> 11) * 0x1p-53;
}

SG__RINLINE float sg_rand_uniform_f32(uint64_t key, uint64_t pos, uint64_t idx)
{
    return sg_rand_f32_of(sg_rand_bits32(key, pos, idx));
}

SG__RINLINE double sg_rand_uniform_f64(uint64_t key, uint64_t pos, uint64_t idx)
{
    return sg_rand_f64_of(sg_rand_bits64(key, pos, idx));
}

/* Box-Muller of one block: its two normals (r cos, r sin). */
SG__RINLINE void sg__rand_normal_pair(sg_rand4 w, double *even, double *odd)
{
    double u1 = sg_u64_to_f64(sg__rand_53(w.w0, w.w1) + 1) * 0x1p-53;
    double u2 = sg_u64_to_f64(sg__rand_53(w.w2, w.w3)) * 0x1p-53;
    double r = sqrt(-2.0 * sg_rand_log(u1)), sn, cs;
    sg_rand_sincos2pi(u2, &sn, &cs);
    *even = r * cs;
    *odd = r * sn;
}

SG__RINLINE double sg_rand_normal_f64(uint64_t key, uint64_t pos, uint64_t idx)
{
    double even, odd;
    sg__rand_normal_pair(sg_rand_words(key, pos, idx >> 1), &even, &odd);
    return (idx & 1) ? odd : even;
}

/* ---- float normals, in float ---- */

#define SG__R_LN2_HI_F 0x1.62e4p-1f           /* 16 bits: e * LN2_HI_F is exact */
#define SG__R_LN2_LO_F 0x1.7f7d1cp-20f
#define SG__R_SQRT2_F 0x1.6a09e6p+0f
#define SG__R_PI_2_F 0x1.921fb6p+0f

/* log(x) for a normal float x > 0: as sg_rand_log, the series to s^11 (relative tail
 * < 2^-28). */
SG__RINLINE float sg_rand_logf(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    int32_t e = (int32_t)(b >> 23) - 127;
    b = (b & 0x007FFFFFu) | 0x3F800000u;
    float m;
    memcpy(&m, &b, sizeof m);
    int32_t big = m > SG__R_SQRT2_F;
    m = big ? m * 0.5f : m;
    float fe = (float)(e + big);
    float f = m - 1.0f;
    float s = f / (2.0f + f);
    float z = s * s;
    float p = 0x1.745d18p-3f;           /* 2/11 */
    p = 0x1.c71c72p-3f + z * p;         /* 2/9 */
    p = 0x1.24924ap-2f + z * p;         /* 2/7 */
    p = 0x1.99999ap-2f + z * p;         /* 2/5 */
    p = 0x1.555556p-1f + z * p;         /* 2/3 */
    float logm = 2.0f * s + s * (z * p);
    return fe * SG__R_LN2_HI_F + (fe * SG__R_LN2_LO_F + logm);
}

/* sin(2 pi u) and cos(2 pi u) for u in [0, 1) a multiple of 2^-24, in float: as
 * sg_rand_sincos2pi, the series to t^11 and t^10 (tails < 2^-33). */
SG__RINLINE void sg_rand_sincos2pif(float u, float *sin_out, float *cos_out)
{
    float v = u * 4.0f;
    float q = (v + 0x1.8p23f) - 0x1.8p23f;
    float t = (v - q) * SG__R_PI_2_F;
    float z = t * t;
    float s = -0x1.ae6456p-26f;         /* -1/11! */
    s = 0x1.71de3ap-19f + z * s;        /* 1/9! */
    s = -0x1.a01a02p-13f + z * s;       /* -1/7! */
    s = 0x1.111112p-7f + z * s;         /* 1/5! */
    s = -0x1.555556p-3f + z * s;        /* -1/3! */
    s = t + t * (z * s);
    float c = -0x1.27e4fcp-22f;         /* -1/10! */
    c = 0x1.a01a02p-16f + z * c;        /* 1/8! */
    c = -0x1.6c16c2p-10f + z * c;       /* -1/6! */
    c = 0x1.555556p-5f + z * c;         /* 1/4! */
    c = -0.5f + z * c;                  /* -1/2! */
    c = 1.0f + z * c;
    int odd = q == 1.0f || q == 3.0f;
    float ca = odd ? s : c, sa = odd ? c : s;
    *cos_out = (q == 1.0f || q == 2.0f) ? -ca : ca;
    *sin_out = (q == 2.0f || q == 3.0f) ? -sa : sa;
}

/* Box-Muller in float of the words (a, b): (r cos, r sin). u1 = (a + 1/2) 2^-32 rounded
 * once: its top 24 bits, then the low 8 and the half (both exact) added. */
SG__RINLINE void sg__rand_normal_pairf(uint32_t a, uint32_t b, float *even, float *odd)
{
    float u1 = (float)(int32_t)(a >> 8) * 0x1p-24f
               + ((float)(int32_t)(a & 0xFFu) * 0x1p-32f + 0x1p-33f);
    float u2 = (float)(int32_t)(b >> 8) * 0x1p-24f;
    float r = sqrtf(-2.0f * sg_rand_logf(u1)), sn, cs;
    sg_rand_sincos2pif(u2, &sn, &cs);
    *even = r * cs;
    *odd = r * sn;
}

SG__RINLINE float sg_rand_normal_f32(uint64_t key, uint64_t pos, uint64_t idx)
{
    sg_rand4 w = sg_rand_words(key, pos, idx >> 2);
    uint32_t k = (uint32_t)idx & 3;
    float even, odd;
    sg__rand_normal_pairf(k < 2 ? w.w0 : w.w2, k < 2 ? w.w1 : w.w3, &even, &odd);
    return (k & 1) ? odd : even;
}

/* w 2^-32 < p (exact in double), from an element's 32-bit word */
SG__RINLINE int32_t sg_rand_bernoulli_of(uint32_t w, double p)
{
    return (double)w * 0x1p-32 < p;
}

SG__RINLINE int32_t sg_rand_bernoulli(uint64_t key, uint64_t pos, uint64_t idx, double p)
{
    return sg_rand_bernoulli_of(sg_rand_bits32(key, pos, idx), p);
}

/* low + the high 64 bits of x (high - low), the product in 32-bit pieces (a loop of
 * 128-bit products does not vectorise) */
SG__RINLINE int64_t sg_rand_integers_of(uint64_t x, int64_t low, int64_t high)
{
    uint64_t range = (uint64_t)high - (uint64_t)low;
    uint64_t xl = x & 0xFFFFFFFFu, xh = x >> 32, rl = range & 0xFFFFFFFFu, rh = range >> 32;
    uint64_t ll = xl * rl, hl = xh * rl, lh = xl * rh, hh = xh * rh;
    uint64_t cross = (ll >> 32) + (hl & 0xFFFFFFFFu) + lh;
    return (int64_t)((uint64_t)low + hh + (hl >> 32) + (cross >> 32));
}

SG__RINLINE int64_t sg_rand_integers(uint64_t key, uint64_t pos, uint64_t idx, int64_t low,
                                     int64_t high)
{
    return sg_rand_integers_of(sg_rand_bits64(key, pos, idx), low, high);
}

/* ---- runs of elements: each block made once ----
 *
 * sg_rand_fill_<x>(key, pos, i0, s, n, out): out[j] = element i0 + j s of the draw, the
 * same values as the functions above. A fused loop (codegen/render_c.py) fills up to
 * SG_RAND_BLOCK elements of each of its draws at once, then reads them with the rest of
 * its work; for s = 1 the blocks the run touches are made once each, four or two elements
 * apiece, in a loop that vectorises (by hand for AVX-512 and AVX2, sixteen and eight
 * blocks at a time, two independent chains of products in flight): sg_rand_blocks.
 *
 * A kernel calls the support library's sg_rand_blocks (SG_RAND_BLOCKS_EXTERN, defined by
 * sg_prelude.h), which runs the variant for the CPU: the intrinsics need <immintrin.h>,
 * whose text was most of what a kernel's headers cost the C compiler (0.5 s of the 0.6 s
 * it took to read them, 16 of 43 ms a unit precompiled), and a call per run of up to
 * SG_RAND_BLOCK elements costs nothing measurable. The library compiles the body below
 * once per instruction set (SG_RAND_BLOCKS_BODY: sg_random.c for the baseline and the
 * dispatch, sg_random_v3.c and sg_random_v4.c under `#pragma GCC target`, which defines
 * __AVX2__ / __AVX512F__ as -march=native does on such a CPU), naming it SG_RAND_BLOCKS.
 * A program using this header alone gets it inline. */

#define SG_RAND_BLOCK 256

/* The words of blocks c0 .. c0 + m - 1: w[4k + q] = word q of block c0 + k. */
#if defined(SG_RAND_BLOCKS_EXTERN) || defined(SG_RAND_BLOCKS_BODY)
void sg_rand_blocks(uint64_t key, uint64_t pos, uint64_t c0, int64_t m, uint32_t *restrict w);
#endif

#if !defined(SG_RAND_BLOCKS_EXTERN) || defined(SG_RAND_BLOCKS_BODY)
#ifndef SG_RAND_BLOCKS
#define SG_RAND_BLOCKS sg_rand_blocks
#define SG_RAND_BLOCKS_DECL SG__RINLINE
#endif

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define SG__RV __m512i
#define SG__RV_SET1(x) _mm512_set1_epi64((long long)(x))
#define SG__RV_MUL(a, b) _mm512_mul_epu32(a, b)
#define SG__RV_SRL(a) _mm512_srli_epi64(a, 32)
#define SG__RV_XOR3(a, b, c) _mm512_ternarylogic_epi64(a, b, c, 0x96)
#define SG__RV_LANES 8
#elif defined(__AVX2__)
#define SG__RV __m256i
#define SG__RV_SET1(x) _mm256_set1_epi64x((long long)(x))
#define SG__RV_MUL(a, b) _mm256_mul_epu32(a, b)
#define SG__RV_SRL(a) _mm256_srli_epi64(a, 32)
#define SG__RV_XOR3(a, b, c) _mm256_xor_si256(_mm256_xor_si256(a, b), c)
#define SG__RV_LANES 4
#endif

#ifdef SG__RV
/* Philox rounds on words kept in 64-bit lanes: the products read the low halves only, so
 * the high halves may hold garbage until the words are written out. */
#define SG__RV_ROUND(c0, c1, c2, c3, k0, k1)                                          \
    do {                                                                             \
        SG__RV p0_ = SG__RV_MUL(m0, c0), p1_ = SG__RV_MUL(m1, c2);                   \
        c0 = SG__RV_XOR3(SG__RV_SRL(p1_), c1, k0);                                   \
        c1 = p1_;                                                                    \
        c2 = SG__RV_XOR3(SG__RV_SRL(p0_), c3, k1);                                   \
        c3 = p0_;                                                                    \
    } while (0)

/* the low words of four vectors of lanes, block by block: w[4k + q] = low32(c_q[k]) */
SG__RINLINE void sg__rand_store(uint32_t *w, SG__RV c0, SG__RV c1, SG__RV c2, SG__RV c3)
{
#if defined(__AVX512F__)
    /* a: (w0, w1) of each block, b: (w2, w3); then blocks 0-3 and 4-7 in order */
    __m512i a = _mm512_mask_shuffle_epi32(c0, 0xAAAA, c1, _MM_PERM_CDAB);
    __m512i b = _mm512_mask_shuffle_epi32(c2, 0xAAAA, c3, _MM_PERM_CDAB);
    _mm512_storeu_si512((void *)w,
                        _mm512_permutex2var_epi64(a, _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0), b));
    _mm512_storeu_si512((void *)(w + 16),
                        _mm512_permutex2var_epi64(a, _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4), b));
#else
    const __m256i lo = _mm256_set1_epi64x(0xFFFFFFFFu);
    __m256i a = _mm256_or_si256(_mm256_and_si256(c0, lo), _mm256_slli_epi64(c1, 32));
    __m256i b = _mm256_or_si256(_mm256_and_si256(c2, lo), _mm256_slli_epi64(c3, 32));
    __m256i x = _mm256_unpacklo_epi64(a, b), y = _mm256_unpackhi_epi64(a, b);
    _mm256_storeu_si256((__m256i *)w, _mm256_permute2x128_si256(x, y, 0x20));
    _mm256_storeu_si256((__m256i *)(w + 8), _mm256_permute2x128_si256(x, y, 0x31));
#endif
}
#endif

SG_RAND_BLOCKS_DECL void SG_RAND_BLOCKS(uint64_t key, uint64_t pos, uint64_t c0, int64_t m,
                                        uint32_t *restrict w)
{
    int64_t k0 = 0;
#ifdef SG__RV
    if (m >= 2 * SG__RV_LANES) {
        const SG__RV m0 = SG__RV_SET1(0xD2511F53u), m1 = SG__RV_SET1(0xCD9E8D57u);
        const SG__RV lo = SG__RV_SET1(0xFFFFFFFFu);
        SG__RV kk0[10], kk1[10];
        for (int r = 0; r < 10; r++) {
            kk0[r] = SG__RV_SET1((uint32_t)((uint32_t)key + (uint32_t)r * SG__PHILOX_W0));
            kk1[r] = SG__RV_SET1((uint32_t)((uint32_t)(key >> 32) + (uint32_t)r * SG__PHILOX_W1));
        }
        const SG__RV pl = SG__RV_SET1((uint32_t)pos), ph = SG__RV_SET1(pos >> 32);
        for (; k0 + 2 * SG__RV_LANES <= m; k0 += 2 * SG__RV_LANES) {
            /* blocks c .. c + 2 LANES - 1: the low halves of c + lane, then the high ones */
            uint64_t c = c0 + (uint64_t)k0;
#if defined(__AVX512F__)
            SG__RV ci = _mm512_add_epi64(SG__RV_SET1(c), _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
            SG__RV di = _mm512_add_epi64(ci, SG__RV_SET1(8));
            SG__RV a0 = _mm512_and_si512(ci, lo), b0 = _mm512_and_si512(di, lo);
#else
            SG__RV ci = _mm256_add_epi64(SG__RV_SET1(c), _mm256_set_epi64x(3, 2, 1, 0));
            SG__RV di = _mm256_add_epi64(ci, SG__RV_SET1(4));
            SG__RV a0 = _mm256_and_si256(ci, lo), b0 = _mm256_and_si256(di, lo);
#endif
            SG__RV a1 = SG__RV_SRL(ci), b1 = SG__RV_SRL(di);
            SG__RV a2 = pl, a3 = ph, b2 = pl, b3 = ph;
            for (int r = 0; r < 10; r++) {
                SG__RV_ROUND(a0, a1, a2, a3, kk0[r], kk1[r]);
                SG__RV_ROUND(b0, b1, b2, b3, kk0[r], kk1[r]);
            }
            sg__rand_store(w + 4 * k0, a0, a1, a2, a3);
            sg__rand_store(w + 4 * (k0 + SG__RV_LANES), b0, b1, b2, b3);
        }
    }
#endif
#pragma omp simd
    for (int64_t k = k0; k < m; k++) {
        sg_rand4 r = sg_rand_words(key, pos, c0 + (uint64_t)k);
        w[4 * k] = r.w0;
        w[4 * k + 1] = r.w1;
        w[4 * k + 2] = r.w2;
        w[4 * k + 3] = r.w3;
    }
}
#endif

/* A run of a draw of `per` elements a block, element by element unless s = 1: `one` is
 * sg_rand_<x>, `conv(w, i)` the value of element i of the words w from the first block. */
#define SG__RAND_FILL(T, per, one, conv)                                                  \
    if (s != 1) {                                                                        \
        if (s == 0) {                                                                    \
            T v_ = one(key, pos, i0);                                                    \
            for (int64_t j = 0; j < n; j++)                                              \
                out[j] = v_;                                                             \
        } else                                                                           \
            for (int64_t j = 0; j < n; j++)                                              \
                out[j] = one(key, pos, i0 + (uint64_t)j * (uint64_t)s);                  \
        return;                                                                          \
    }                                                                                    \
    uint32_t w[4 * (SG_RAND_BLOCK / (per) + 2)];                                         \
    for (int64_t jb = 0; jb < n; jb += SG_RAND_BLOCK) {                                  \
        int64_t m = n - jb < SG_RAND_BLOCK ? n - jb : SG_RAND_BLOCK;                     \
        uint64_t a = i0 + (uint64_t)jb;                                                  \
        int64_t off = (int64_t)(a % (per));                                              \
        sg_rand_blocks(key, pos, a / (per), (off + m + (per) - 1) / (per), w);           \
        T *restrict o_ = out + jb;                                                       \
        _Pragma("omp simd") for (int64_t j = 0; j < m; j++) o_[j] = conv(w, off + j);    \
    }

#define SG__RAND_W32(w, i) ((w)[i])
#define SG__RAND_W64(w, i) ((uint64_t)(w)[2 * (i) + 1] << 32 | (w)[2 * (i)])

SG__RINLINE void sg_rand_fill_bits32(uint64_t key, uint64_t pos, uint64_t i0, int64_t s,
                                     int64_t n, uint32_t *restrict out)
{
    SG__RAND_FILL(uint32_t, 4, sg_rand_bits32, SG__RAND_W32)
}

SG__RINLINE void sg_rand_fill_bits64(uint64_t key, uint64_t pos, uint64_t i0, int64_t s,
                                     int64_t n, uint64_t *restrict out)
{
    SG__RAND_FILL(uint64_t, 2, sg_rand_bits64, SG__RAND_W64)
}

#define SG__RAND_U32(w, i) sg_rand_f32_of((w)[i])
#define SG__RAND_U64(w, i) sg_rand_f64_of(SG__RAND_W64(w, i))

SG__RINLINE void sg_rand_fill_uniform_f32(uint64_t key, uint64_t pos, uint64_t i0, int64_t s,
                                          int64_t n, float *restrict out)
{
    SG__RAND_FILL(float, 4, sg_rand_uniform_f32, SG__RAND_U32)
}

SG__RINLINE void sg_rand_fill_uniform_f64(uint64_t key, uint64_t pos, uint64_t i0, int64_t s,
                                          int64_t n, double *restrict out)
{
    SG__RAND_FILL(double, 2, sg_rand_uniform_f64, SG__RAND_U64)
}

/* Normals: the pairs of the blocks a run touches, then the run's part of them. */
#define SG__RAND_FILL_NORMAL(T, one)                                                      \
    if (s != 1) {                                                                        \
        for (int64_t j = 0; j < n; j++)                                                  \
            out[j] = one(key, pos, i0 + (uint64_t)j * (uint64_t)s);                      \
        return;                                                                          \
    }                                                                                    \
    uint32_t w[4 * (SG_RAND_BLOCK / 2 + 2)];                                             \
    double z[2 * (SG_RAND_BLOCK / 2 + 2)];                                               \
    for (int64_t jb = 0; jb < n; jb += SG_RAND_BLOCK) {                                  \
        int64_t m = n - jb < SG_RAND_BLOCK ? n - jb : SG_RAND_BLOCK;                     \
        uint64_t a = i0 + (uint64_t)jb;                                                  \
        int64_t off = (int64_t)(a & 1), nb = (off + m + 1) / 2;                          \
        sg_rand_blocks(key, pos, a / 2, nb, w);                                          \
        _Pragma("omp simd") for (int64_t k = 0; k < nb; k++) {                           \
            sg_rand4 r = {w[4 * k], w[4 * k + 1], w[4 * k + 2], w[4 * k + 3]};           \
            double e_, o2_;                                                              \
            sg__rand_normal_pair(r, &e_, &o2_);                                          \
            z[2 * k] = e_;                                                               \
            z[2 * k + 1] = o2_;                                                          \
        }                                                                                \
        T *restrict o_ = out + jb;                                                       \
        _Pragma("omp simd") for (int64_t j = 0; j < m; j++) o_[j] = (T)z[off + j];       \
    }

SG__RINLINE void sg_rand_fill_normal_f64(uint64_t key, uint64_t pos, uint64_t i0, int64_t s,
                                         int64_t n, double *restrict out)
{
    SG__RAND_FILL_NORMAL(double, sg_rand_normal_f64)
}

SG__RINLINE void sg_rand_fill_normal_f32(uint64_t key, uint64_t pos, uint64_t i0, int64_t s,
                                         int64_t n, float *restrict out)
{
    if (s != 1) {
        for (int64_t j = 0; j < n; j++)
            out[j] = sg_rand_normal_f32(key, pos, i0 + (uint64_t)j * (uint64_t)s);
        return;
    }
    uint32_t w[SG_RAND_BLOCK + 8];
    float z[SG_RAND_BLOCK + 8];
    for (int64_t jb = 0; jb < n; jb += SG_RAND_BLOCK) {
        int64_t m = n - jb < SG_RAND_BLOCK ? n - jb : SG_RAND_BLOCK;
        uint64_t a = i0 + (uint64_t)jb;
        int64_t off = (int64_t)(a & 3), np = (off + m + 1) / 2; /* pairs */
        sg_rand_blocks(key, pos, a / 4, (off + m + 3) / 4, w);
#pragma omp simd
        for (int64_t k = 0; k < np; k++) {
            float e_, o_;
            sg__rand_normal_pairf(w[2 * k], w[2 * k + 1], &e_, &o_);
            z[2 * k] = e_;
            z[2 * k + 1] = o_;
        }
        float *restrict oj = out + jb;
#pragma omp simd
        for (int64_t j = 0; j < m; j++)
            oj[j] = z[off + j];
    }
}

/* ---- in the support library (sg_random.c) ---- */

/* A random permutation of 0..n-1 into out: the indices sorted by their 64-bit words
 * (w1:w0) of block i under (key, ctr + slot), ties by index. Fails only when out of memory. */
int sg_rand_permutation(sg_err *err, const char *where, int64_t *out, int64_t n, int64_t key,
                        int64_t ctr, int64_t slot);

/* The descriptor of an index carrier (ops/random.py's random_index): lengths `shape`, C
 * strides, and a data pointer that is never read: a fused loop's driver offsets it like any
 * operand's, so its address minus SG_RAND_BASE is an element's flat index in the sample. */
#define SG_RAND_BASE ((uintptr_t)4096)
void sg_rand_index(sg_arr *v, int nd, const int64_t *shape);
/* The same, the index of every element `start` more: a shard's rows of a sample of the
 * global batch (symgrad/distributed.py) */
void sg_rand_index_from(sg_arr *v, int nd, const int64_t *shape, int64_t start);

#endif
