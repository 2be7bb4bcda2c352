/* sg_math.h: exp, expm1, log, log1p, tanh, sigmoid and softplus that vectorise,
 * and conversions between int64 and floats that vectorise on AVX2 too.
 *
 * glibc's expf, tanhf, ... are calls: a loop that makes one is not
 * vectorised, and a fused elementwise kernel then runs at the speed of the
 * scalar call (2 to 25 ns an element). These are always inlined and
 * branch-free (selects through sg__select, +, *, /, and integer operations
 * on the bits of floats), so gcc vectorises a `#pragma omp simd` loop of
 * them like a loop of arithmetic: SSE4, AVX2 or AVX-512, with or without FMA.
 *
 * Methods; the polynomials are Chebyshev fits made by bench/fit_sg_math.py,
 * which prints every constant below.
 * - exp, expm1: x = k ln2 + r, |r| <= ln2/2, k the nearest integer (adding
 *   1.5 * 2^52 rounds it into the low bits), r reduced in two parts
 *   (Cody-Waite) with its rounding error kept; exp(r) = 1 + r + r^2 q(r);
 *   2^k is built in the exponent bits, in two factors so that a subnormal
 *   result is rounded once. expm1 adds 2^k - 1 with the sum's rounding
 *   error caught (TwoSum).
 * - log: x = 2^e m, sqrt(1/2) <= m < sqrt(2), log(m) = 2 atanh(s),
 *   s = (m-1)/(m+1), the series' tail fitted in s^2. log1p adds back the
 *   rounding error c of u = 1 + x: log(u + c) ~ log(u) + c/u.
 * - tanh: an odd polynomial for small |x|; beyond, e / (e + 2) with
 *   e = expm1(2|x|) (double) or 1 - 2 / (e^2|x| + 1) (float). sigmoid:
 *   1 / (1 + e^-x), e^x / (1 + e^x) below 0. softplus: max(x, 0) +
 *   log1p(e^-|x|).
 *
 * expf, logf, tanhf and sigmoidf evaluate in float (a vector holds twice as
 * many lanes); over every float32 input their error is at most 0.97, 0.85,
 * 1.03 and 0.963 ulp (with FMA; without, tanhf reaches 1.08, and sigmoidf
 * evaluates in double). expm1f, log1pf and softplusf evaluate in double with
 * short polynomials and round once: within 0.500 ulp over every float32
 * input, correctly rounded as far as a double reference can tell. The double versions' errors over sweeps of 30
 * million points against long double: exp 0.81, expm1 1.05, log 0.87, log1p
 * 1.44, tanh 1.50, sigmoid 1.90, softplus 1.91 ulp. (bench/bench_math.py
 * measures these; tests/test_cmath.py checks bounds a little above them.)
 * Special values are libm's (C99 Annex F): NaN propagates, +-inf go to
 * their limits, signed zeros are kept (tanh(-0) = expm1(-0) = log1p(-0) =
 * -0), log(0) = log1p(-1) = -inf, the log of a negative number is NaN,
 * overflow gives inf, and underflow is gradual through the subnormals.
 *
 * sin and cos stay on libm: reducing a large argument accurately (x mod
 * pi/2 for |x| up to 2^128 or 2^1024) takes a Payne-Hanek reduction, with a
 * table of 2/pi's bits and multiword products; a Cody-Waite reduction alone
 * is accurate only to |x| ~ 2^20.
 *
 * Without -ffast-math the compiler keeps every operation as written; where
 * the CPU has FMA (-march=native), polynomials use it explicitly.
 */
#ifndef SG_MATH_H
#define SG_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define SG__INLINE static inline __attribute__((always_inline))
#else
#define SG__INLINE static inline
#endif

#if defined(__FMA__) || defined(__aarch64__)
#define SG__MA(a, b, c) fma(a, b, c)
#define SG__MAF(a, b, c) fmaf(a, b, c)
#else
#define SG__MA(a, b, c) ((a) * (b) + (c))
#define SG__MAF(a, b, c) ((a) * (b) + (c))
#endif

/* ---- constants (printed by bench/fit_sg_math.py) ---- */

#define SG__LN2_HI 0.6931471805598903 /* 42 bits: k * SG__LN2_HI is exact for |k| < 2048 */
#define SG__LN2_LO 5.497923018708371e-14
#define SG__INV_LN2 1.4426950408889634
#define SG__SHIFT 0x1.8p52            /* x + SHIFT rounds x to an integer, kept in the low bits */
#define SG__SHIFT_BITS 0x4338000000000000ULL

/* _D: the double versions' polynomials; _S: shorter ones for the float versions that
 * evaluate in double; _F: float coefficients for those that evaluate in float. */

/* exp(r) = 1 + r + r^2 q(r), |r| <= ln2/2 (1 + 2^-10); relative error 2^-61.5, 2^-37.8, 2^-26.5 */
#define SG__EXPQ_D 0.5, 0.1666666666666667, 0.04166666666666667, 0.008333333333326084, \
    0.0013888888888883711, 0.00019841269874997539, 2.4801587325674076e-05,            \
    2.7557255176003713e-06, 2.7557273483005247e-07, 2.5105310235689788e-08,           \
    2.0914753544959484e-09
#define SG__EXPQ_S 0.5, 0.16666666719305082, 0.04166666671928829, 0.008333298347302861, \
    0.001388885391322335, 0.00019899387458318402, 2.4859691670632977e-05
#define SG__EXPQ_F 0.5f, 0.16666576f, 0.041666552f, 0.008363231f, 0.0013926249f

/* 2 atanh(s) = 2 s + s z p(z), z = s^2 <= (3 - 2 sqrt 2)^2; relative error 2^-57.6, 2^-35.8,
 * 2^-28.6 */
#define SG__LOGP_D 0.666666666666667, 0.39999999999899505, 0.28571428625975487, \
    0.2222221113479508, 0.18182889125261723, 0.15331721600556042, 0.14616449685043406
#define SG__LOGP_S 0.6666666655449709, 0.40000121839806124, 0.28550820815960665, \
    0.23330467216303835
#define SG__LOGP_F 0.66666687f, 0.3998878f, 0.2957995f

/* tanh(a) = a + a z p(z), z = a^2 <= 0.55^2 and 0.9^2; relative error 2^-57.5 and 2^-26.3 */
#define SG__TANHP_D -0.3333333333333333, 0.1333333333333331, -0.05396825396822037, \
    0.021869488534073906, -0.0088632354631468, 0.0035921267699626346, -0.001455819097151351, \
    0.0005899052969492733, -0.0002384727248015252, 9.455133052924858e-05, \
    -3.372080112046316e-05, 7.874274345344419e-06
#define SG__TANHP_F -0.33333334f, 0.13333327f, -0.05396652f, 0.021851901f, -0.008774217f, \
    0.0033403726f, -0.0010391204f, 0.0001820654f

#define SG__LN2_HIF 0.69314575f /* 16 bits: k * SG__LN2_HIF is exact for |k| < 256 */
#define SG__LN2_LOF 1.4286068e-06f
#define SG__INV_LN2F 1.442695f
#define SG__SHIFTF 0x1.8p23f
#define SG__SHIFTF_BITS 0x4b400000u

/* ---- helpers ---- */

SG__INLINE uint64_t sg__bits(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

SG__INLINE double sg__double(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* c ? a : b, both computed, as bit operations. gcc if-converts a plain ?: whose
 * arm computes something only where it can mask that arm (AVX-512); elsewhere it
 * keeps the branch, since computing the arm anyway could raise an FP exception
 * the program would not have (-ftrapping-math, the default: kernels compile with
 * -fno-trapping-math, the support library does not), and a branch stops
 * vectorisation. Conditions are combined with & and |, never && and ||. */
SG__INLINE double sg__select(int c, double a, double b)
{
    uint64_t m = (uint64_t)0 - (uint64_t)(c != 0);
    return sg__double((sg__bits(a) & m) | (sg__bits(b) & ~m));
}

/* Horner's rule, lowest coefficient first. */
SG__INLINE double sg__poly4(double x, double c0, double c1, double c2, double c3)
{
    return SG__MA(SG__MA(SG__MA(c3, x, c2), x, c1), x, c0);
}

SG__INLINE double sg__poly7(double x, double c0, double c1, double c2, double c3, double c4,
                            double c5, double c6)
{
    return SG__MA(SG__MA(SG__MA(sg__poly4(x, c3, c4, c5, c6), x, c2), x, c1), x, c0);
}

SG__INLINE double sg__poly11(double x, double c0, double c1, double c2, double c3, double c4,
                             double c5, double c6, double c7, double c8, double c9, double c10)
{
    double t = sg__poly7(x, c4, c5, c6, c7, c8, c9, c10);
    return SG__MA(SG__MA(SG__MA(SG__MA(t, x, c3), x, c2), x, c1), x, c0);
}

SG__INLINE uint32_t sg__bitsf(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

SG__INLINE float sg__float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

SG__INLINE float sg__selectf(int c, float a, float b)
{
    uint32_t m = (uint32_t)0 - (uint32_t)(c != 0);
    return sg__float((sg__bitsf(a) & m) | (sg__bitsf(b) & ~m));
}

/* ---- int64 to double and float, in a loop that vectorises ----
 *
 * x86 converts a vector of int64 only with AVX-512DQ (vcvtqq2pd): on AVX2 gcc leaves
 * a loop with `(double)i` scalar ("no vectype"). These give the conversion's bits
 * (rounded to nearest, ties to even) from operations every vector unit has: a 32-bit
 * half h placed in a double's mantissa under a fixed exponent is 2^52 + h exactly
 * (or 2^84 + h 2^32), so a subtraction of that power of two leaves h, exact too. */

#if defined(__AVX512DQ__) || !(defined(__x86_64__) || defined(__i386__))
#define SG__NATIVE_I64_CONVERT 1
#endif

/* (double)x for any uint64 x: hi 2^32 + lo, both parts exact, one rounding in the sum */
SG__INLINE double sg_u64_to_f64(uint64_t x)
{
#ifdef SG__NATIVE_I64_CONVERT
    return (double)x;
#else
    double hi = sg__double((x >> 32) | 0x4530000000000000ULL) - 0x1p84;
    double lo = sg__double((x & 0xFFFFFFFFu) | 0x4330000000000000ULL) - 0x1p52;
    return hi + lo;
#endif
}

/* (double)x: the high half signed, as 2^84 + 2^63 + h 2^32 (h + 2^31 is the unsigned
 * half with its top bit flipped); minus 2^84 + 2^63 + 2^52 that is h 2^32 - 2^52
 * exactly, and adding 2^52 + lo rounds once. */
SG__INLINE double sg_i64_to_f64(int64_t x)
{
#ifdef SG__NATIVE_I64_CONVERT
    return (double)x;
#else
    uint64_t u = (uint64_t)x;
    double hi = sg__double((u >> 32) ^ 0x4530000080000000ULL) - 0x1.00000801p84;
    return hi + sg__double((u & 0xFFFFFFFFu) | 0x4330000000000000ULL);
#endif
}

/* (float)x: through a double that is exact, so that float rounds once. Below 2^53 in
 * magnitude x has at most 53 significant bits; above, the float's last bit is 2^30 or
 * more, and x is first rounded to odd at 2^11: its bits below 2^11 cleared and bit 11 set
 * if any of them was (two's complement: floor(x / 2^11) 2^11, made odd if x was not a
 * multiple). That value has at most 53 significant bits and lies, as x does, strictly
 * between the same two multiples of 2^12, on the same side of every float's midpoint. */
SG__INLINE float sg_i64_to_f32(int64_t x)
{
#ifdef SG__NATIVE_I64_CONVERT
    return (float)x;
#else
    uint64_t u = (uint64_t)x;
    uint64_t odd = (u | ((u & 0x7FFu) + 0x7FFu)) & ~(uint64_t)0x7FF;
    uint64_t v = ((u + ((uint64_t)1 << 53)) >> 54) ? odd : u; /* |x| >= 2^53 (about) */
    return (float)sg_i64_to_f64((int64_t)v);
#endif
}

/* (int64_t)x, truncated, for |x| < 2^63 (the caller checks the range): the mantissa m
 * (53 bits, with its leading 1) shifted by the exponent, x = m 2^e; on AVX2, whose vector
 * shifts take a count per lane. The shifts are clamped to 63 (a zero, a subnormal or
 * |x| < 1 give m >> 63 = 0; an out-of-range e is the caller's to discard). */
SG__INLINE int64_t sg_f64_to_i64(double x)
{
#ifdef SG__NATIVE_I64_CONVERT
    return (int64_t)x;
#else
    uint64_t b = sg__bits(x);
    int64_t e = (int64_t)((b >> 52) & 0x7FF) - 1075;
    uint64_t m = (b & 0xFFFFFFFFFFFFFULL) | 0x10000000000000ULL;
    uint64_t up = m << (e > 63 ? 63 : e < 0 ? 0 : e), down = m >> (-e > 63 ? 63 : -e < 0 ? 0 : -e);
    uint64_t a = e >= 0 ? up : down;
    return (int64_t)((b >> 63) ? (uint64_t)0 - a : a);
#endif
}

SG__INLINE float sg__poly3f(float x, float c0, float c1, float c2)
{
    return SG__MAF(SG__MAF(c2, x, c1), x, c0);
}

SG__INLINE float sg__poly5f(float x, float c0, float c1, float c2, float c3, float c4)
{
    return SG__MAF(SG__MAF(sg__poly3f(x, c2, c3, c4), x, c1), x, c0);
}

SG__INLINE float sg__poly8f(float x, float c0, float c1, float c2, float c3, float c4, float c5,
                            float c6, float c7)
{
    return SG__MAF(SG__MAF(SG__MAF(sg__poly5f(x, c3, c4, c5, c6, c7), x, c2), x, c1), x, c0);
}

SG__INLINE double sg__poly12(double x, double c0, double c1, double c2, double c3, double c4,
                             double c5, double c6, double c7, double c8, double c9, double c10,
                             double c11)
{
    return SG__MA(sg__poly11(x, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11), x, c0);
}

/* `single` is a constant after inlining: 1 selects the short polynomials of the float versions. */
SG__INLINE double sg__expq(double r, int single)
{
    return single ? sg__poly7(r, SG__EXPQ_S) : sg__poly11(r, SG__EXPQ_D);
}

SG__INLINE double sg__logp(double z, int single)
{
    return single ? sg__poly4(z, SG__LOGP_S) : sg__poly7(z, SG__LOGP_D);
}

/* x = k ln2 + r + rlo with k the nearest integer to x / ln2 (|k| < 2^51) and rlo the
 * rounding error of r. Returns r; *k gets k as a double and *kbits the bits of
 * SHIFT + k (so k + SHIFT_BITS, modulo 2^64). */
SG__INLINE double sg__exp_reduce(double x, double *k, uint64_t *kbits, double *rlo)
{
    double shifted = x * SG__INV_LN2 + SG__SHIFT;
    *kbits = sg__bits(shifted);
    *k = shifted - SG__SHIFT;
    double r0 = x - *k * SG__LN2_HI; /* exact: k * LN2_HI is, and x is close to it */
    double klo = *k * SG__LN2_LO;
    double r = r0 - klo;
    *rlo = (r0 - r) - klo; /* Fast2Sum; where |r0| < |klo| the error is below 2^-100 anyway */
    return r;
}

/* 2^k from kbits of sg__exp_reduce, for -1022 <= k <= 1023. */
SG__INLINE double sg__pow2(uint64_t kbits)
{
    return sg__double((kbits + 1023) << 52); /* SHIFT_BITS << 52 is 0 modulo 2^64 */
}

/* ---- exp ---- */

SG__INLINE double sg__exp(double x, int single)
{
    /* Beyond these the result is inf or 0 anyway (float: 2^137 or 2^-158);
     * inside them k stays small. NaN passes: its comparisons are false. */
    double hi = single ? 95.0 : 710.0, lo = single ? -110.0 : -746.0;
    x = sg__select(x > hi, hi, x);
    x = sg__select(x < lo, lo, x);
    double k, rlo;
    uint64_t kbits;
    double r = sg__exp_reduce(x, &k, &kbits, &rlo);
    /* exp(r + rlo) = 1 + r + r^2 q(r) + rlo (1 + r) */
    double p = 1.0 + (r + (r * r * sg__expq(r, single) + SG__MA(rlo, r, rlo)));
    if (single) /* -159 <= k <= 138: one normal scale, and the float conversion rounds once */
        return p * sg__pow2(kbits);
    /* -1077 <= k <= 1025: scale by 2^k1 (exact) then 2^k2, so that a subnormal result is
     * rounded once; h = k1 + 1024 with k1 = floor(k / 2), computed unsigned. */
    uint64_t kk = kbits - SG__SHIFT_BITS + 2048, h = kk >> 1;
    return p * sg__double((h - 1) << 52) * sg__double((kk - h - 1) << 52);
}

SG__INLINE double sg_exp(double x) { return sg__exp(x, 0); }

/* ---- expm1 ---- */

SG__INLINE double sg__expm1(double x, int single)
{
    /* below -40 the result rounds to -1; above 710 it overflows; k <= 1024 */
    x = sg__select(x > 710.0, 710.0, x);
    x = sg__select(x < -40.0, -40.0, x);
    double k, rlo;
    uint64_t kbits;
    double r = sg__exp_reduce(x, &k, &kbits, &rlo);
    /* expm1(r + rlo) as ehi + elo (Fast2Sum: the second-order part is below |r|) */
    double second = r * r * sg__expq(r, single) + SG__MA(rlo, r, rlo);
    double ehi = r + second, elo = (r - ehi) + second;
    /* expm1(x) = 2^k e + (2^k - 1), computed halved so that 2^(k-1) is finite at k = 1024.
     * 2^(k-1) - 1/2 is exact for k >= -52 (below, the result is -1 anyway) and 2^(k-1) ehi
     * is exact, so their sum's rounding error is caught exactly (TwoSum): for k = 1 or 2
     * the sum cancels up to two bits, and a rounded term would cost an ulp or more. */
    double half = sg__pow2(kbits - 1);
    double a = half - 0.5, b = half * ehi;
    double sum = a + b, bb = sum - a, aa = sum - bb;
    double err = (a - aa) + (b - bb);
    double y = 2.0 * (sum + (err + half * elo));
    return sg__select(fabs(x) < 0x1p-54, x, y); /* x itself, then: -0 stays -0, subnormals exact */
}

SG__INLINE double sg_expm1(double x) { return sg__expm1(x, 0); }
SG__INLINE float sg_expm1f(float x) { return (float)sg__expm1(x, 1); }

/* ---- log ---- */

/* log(x) for finite x > 0 (subnormal included when !single); garbage otherwise. */
SG__INLINE double sg__log_finite(double x, int single)
{
    int sub = !single & (x < 0x1p-1022); /* float inputs are normal doubles */
    double xs = sg__select(sub, x * 0x1p54, x);
    /* x = 2^e m with sqrt(1/2) <= m < sqrt(2): offsetting the bits by those of sqrt(1/2)
     * makes the exponent field step where m crosses sqrt(1/2); eb = e + 1024. */
    uint64_t u = sg__bits(xs);
    uint64_t eb = (u - 0x3fe6a09e667f3bcdULL + (1ULL << 62)) >> 52;
    double m = sg__double(u - ((eb - 1024) << 52));
    double e = sg__double(0x4330000000000000ULL | eb) - 0x1p52; /* eb, converted exactly */
    e -= sg__select(sub, 1078.0, 1024.0);
    double f = m - 1.0; /* exact */
    double s = f / (2.0 + f), z = s * s;
    double hfsq = 0.5 * f * f;
    double tail = s * (hfsq + z * sg__logp(z, single)); /* log(m) = f - hfsq + tail */
    return e * SG__LN2_HI + (f - (hfsq - (tail + e * SG__LN2_LO)));
}

/* libm's special values around a log computed for finite x > 0. */
SG__INLINE double sg__log_special(double x, double y)
{
    y = sg__select(x == INFINITY, x, y);
    y = sg__select(x == 0, -INFINITY, y);
    return sg__select((x < 0) | (x != x), NAN, y);
}

SG__INLINE double sg_log(double x) { return sg__log_special(x, sg__log_finite(x, 0)); }

/* ---- log1p ---- */

SG__INLINE double sg__log1p(double x, int single)
{
    double u = 1.0 + x;
    /* the rounding error of 1 + x, exactly (TwoSum) */
    double xb = u - 1.0, ua = u - xb;
    double c = (1.0 - ua) + (x - xb);
    double corr = sg__select((u > 0) & (u < INFINITY), c / u, 0.0);
    double y = sg__log_special(u, sg__log_finite(u, single)) + corr;
    return sg__select(x == 0, x, y); /* log1p(-0) = -0 */
}

SG__INLINE double sg_log1p(double x) { return sg__log1p(x, 0); }
SG__INLINE float sg_log1pf(float x) { return (float)sg__log1p(x, 1); }

/* ---- tanh, sigmoid, softplus ---- */

SG__INLINE double sg_tanh(double x)
{
    /* below 0.55 an odd polynomial; above, e / (e + 2) with e = expm1(2|x|) >= 2, which
     * halves e's error and lands in [0.5, 1); beyond 20 the result rounds to 1 */
    double a = fabs(x), z = a * a;
    double small = SG__MA(a * z, sg__poly12(z, SG__TANHP_D), a);
    double e = sg__expm1(2.0 * sg__select(a > 20.0, 20.0, a), 0);
    return copysign(sg__select(a < 0.55, small, e / (e + 2.0)), x);
}

SG__INLINE double sg__sigmoid(double x, int single)
{
    /* 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: e never overflows */
    double e = sg__exp(-fabs(x), single);
    double q = sg__select(x >= 0, 1.0, e) / (1.0 + e);
    if (single)
        return q;
    /* 1 + e = d + t exactly (Fast2Sum), and n / (d + t) = (n / d)(1 - t / d): the
     * rounding of 1 + e, up to an ulp of the result, is taken back */
    double d = 1.0 + e, t = (1.0 - d) + e;
    return q - q * (t / d);
}

SG__INLINE double sg_sigmoid(double x) { return sg__sigmoid(x, 0); }

SG__INLINE double sg__softplus(double x, int single)
{
    /* log(1 + e^x) = max(x, 0) + log1p(e^-|x|); NaN reaches the result through e */
    double e = sg__exp(-fabs(x), single);
    return sg__select(x > 0, x, 0.0) + sg__log1p(e, single);
}

SG__INLINE double sg_softplus(double x) { return sg__softplus(x, 0); }
SG__INLINE float sg_softplusf(float x) { return (float)sg__softplus(x, 1); }

/* ---- exp, log and tanh of floats, in float ----
 *
 * The float versions above evaluate in double, so a vector holds half as
 * many lanes. These three, the most used, evaluate in float, with the same
 * methods and polynomials fitted for float. */

/* exp(x) for -104 <= x <= 89 (the clamps of sg_expf; NaN passes): 2^k (1 + s), returned
 * as 2^k and s, with |s| < 0.42. */
SG__INLINE float sg__expf_reduce(float x, float *s1, float *s2)
{
    float shifted = x * SG__INV_LN2F + SG__SHIFTF;
    uint32_t kbits = sg__bitsf(shifted);
    float k = shifted - SG__SHIFTF;
    float r0 = x - k * SG__LN2_HIF, klo = k * SG__LN2_LOF;
    float r = r0 - klo, rlo = (r0 - r) - klo; /* as in sg__exp_reduce */
    /* -150 <= k <= 128: 2^k = 2^k1 2^k2, so that a subnormal result is rounded once */
    uint32_t kk = kbits - SG__SHIFTF_BITS + 256, h = kk >> 1;
    *s1 = sg__float((h - 1) << 23);
    *s2 = sg__float((kk - h - 1) << 23);
    return r + (r * r * sg__poly5f(r, SG__EXPQ_F) + rlo);
}

SG__INLINE float sg__expf_core(float x)
{
    float s1, s2;
    float s = sg__expf_reduce(x, &s1, &s2);
    return (1.0f + s) * s1 * s2;
}

SG__INLINE float sg_expf(float x)
{
    x = sg__selectf(x > 89.0f, 89.0f, x);     /* exp(89) overflows */
    x = sg__selectf(x < -104.0f, -104.0f, x); /* exp(-104) < 2^-150 rounds to 0 */
    return sg__expf_core(x);
}

SG__INLINE float sg_logf(float x)
{
    int sub = x < 0x1p-126f;
    float xs = sg__selectf(sub, x * 0x1p23f, x);
    uint32_t u = sg__bitsf(xs);
    uint32_t eb = (u - 0x3f3504f3u + (1u << 30)) >> 23; /* as in sg__log_finite: e + 128 */
    float m = sg__float(u - ((eb - 128) << 23));
    float e = (float)(int32_t)eb - sg__selectf(sub, 151.0f, 128.0f);
    float f = m - 1.0f;
    float s = f / (2.0f + f), z = s * s;
    float hfsq = 0.5f * f * f;
    float tail = s * (hfsq + z * sg__poly3f(z, SG__LOGP_F));
    float y = e * SG__LN2_HIF + (f - (hfsq - (tail + e * SG__LN2_LOF)));
    y = sg__selectf(x == INFINITY, x, y);
    y = sg__selectf(x == 0, -INFINITY, y);
    return sg__selectf((x < 0) | (x != x), NAN, y);
}

SG__INLINE float sg_tanhf(float x)
{
    /* below 0.9 an odd polynomial; above, 1 - 2 / (e^2|x| + 1), whose error is at most
     * that of 2 / (...) <= 0.29; beyond 10 the result rounds to 1 */
    float a = fabsf(x), z = a * a;
    float small = SG__MAF(a * z, sg__poly8f(z, SG__TANHP_F), a);
    float e = sg__expf_core(2.0f * sg__selectf(a > 10.0f, 10.0f, a));
    float large = 1.0f - 2.0f / (e + 1.0f);
    return copysignf(sg__selectf(a < 0.9f, small, large), x);
}

/* sigmoid in float: n / (1 + e) with e = e^-|x| and n = 1 (x >= 0) or e. Computed plainly,
 * e / (1 + e) reaches 2 ulp: e's error passes into the quotient whole, and counts double
 * where the quotient falls a binade below e. So e is kept in two parts (1 + s is split
 * exactly before it is scaled by 2^k), 1 + e in two parts (Fast2Sum), and the quotient q
 * corrected by the remainder n - q d, exact through an FMA. What is left is the error of
 * s and the final rounding: within 0.963 ulp over every float32 input, in 0.65x the time
 * of the double evaluation (bench/bench_math.py). One division: q = n (1/d) may be an
 * ulp off, which the correction takes back. Without FMA the remainder would not be
 * exact, so there sigmoidf evaluates in double (0.500 ulp). */
#if defined(__FMA__) || defined(__aarch64__)
SG__INLINE float sg_sigmoidf(float x)
{
    float a = fabsf(x), s1, s2;
    float s = sg__expf_reduce(-sg__selectf(a > 104.0f, 104.0f, a), &s1, &s2);
    float ph = 1.0f + s, pl = (1.0f - ph) + s;     /* 1 + s = ph + pl exactly */
    float eh = ph * s1 * s2, el = pl * s1 * s2;    /* e = eh + el */
    float d = 1.0f + eh, t = ((1.0f - d) + eh) + el; /* 1 + e = d + t */
    int pos = x >= 0;
    float n = sg__selectf(pos, 1.0f, eh), nl = sg__selectf(pos, 0.0f, el);
    float rcp = 1.0f / d, q = n * rcp;
    float rem = fmaf(-q, d, n);                    /* n - q d, exactly */
    float y = q + (rem + nl - q * t) * rcp;
    return sg__selectf(x != x, x, y);
}
#else
SG__INLINE float sg_sigmoidf(float x) { return (float)sg__sigmoid(x, 1); }
#endif

#endif
