/*
 * model_diff.kernel: the fused single-pass metric step (the fast path of metrics.py).
 *
 * pair_step(a, b, threshold, facc, cacc) and side_step(x, facc, cacc) have exactly the
 * contract of metrics.numpy_pair_step / numpy_side_step: they add one chunk of old (a) and
 * new (b) elements into float64 accumulators (facc, F_* slots) and int64 counters (cacc,
 * C_* slots). Sums cover positions where both sides are finite; NaN/Inf are counted per side.
 *
 * How: the chunk is walked in blocks of BLOCK elements. Each block runs a fast loop that
 * assumes every element is finite (no masks), computes differences and products in double
 * and keeps 4-lane partial sums; if the block's sums of squares come out non-finite (a NaN
 * or Inf is present, or float64 overflowed) the block is recomputed element by element with
 * masks. Block results are folded into float64 totals (16-bit floats, pairs and single
 * sides: float32 partial sums of 256 elements, see DEFINE_PAIR_SUMS_AVX2_PS and
 * DEFINE_SIDE_AVX2_PS; a block whose float32 values could overflow or underflow is redone in
 * double). f64/f32/bf16/f16 pairs of one dtype, and single sides of those dtypes, read
 * straight from the (possibly unaligned, possibly mmap'd) buffer with AVX2 when the CPU has
 * it (runtime dispatch), 16 elements per step; every other dtype or mixed-dtype pair converts
 * one block at a time into an L1-sized double buffer. No numpy headers: buffers come through the buffer
 * protocol. The caller names each input's dtype (``a_dtype``/``b_dtype``/``dtype``, a DTYPES
 * name), so bfloat16 and float8 arrive as plain uint16/uint8 storage views and no ml_dtypes
 * array is ever needed; without a name the array's ``dtype`` attribute decides. The GIL is
 * released while computing.
 *
 * What runs where: on x86-64 (GCC or clang) the CPU is asked once, at import, for AVX2, FMA
 * and F16C, and for AVX-512 F/BW/VL/BF16 (and POPCNT). With AVX2 the AVX2 loops run; with
 * AVX-512 as well, bf16 == bf16 pairs and bf16 single sides run the AVX-512 loops
 * (pair_avx512_bf16 / side_avx512_bf16: 32 elements per step, one pass, VDPBF16PS for the
 * products) and everything else the AVX2 loops; without
 * AVX2 (and on every other architecture) the portable loops over doubles. kernel.SIMD names
 * the best level ("avx512", "avx2", "none"), kernel.SIMD_LEVELS every level the CPU runs. A
 * caller may ask per call for a lower level (``simd="avx2"``/``"none"``, ``simd=False`` for
 * the portable loops), which the tests use to check every level on one machine.
 *
 * Threads: no global is written after import. The CPU level and the float8 tables live in the
 * module's state (multi-phase init, one state per interpreter), are filled by the exec slot
 * before any call, and are only read afterwards; each call copies what it needs into a Ctx on
 * its stack. So steps run in parallel without the GIL (the module declares Py_mod_gil
 * NOT_USED for free-threaded builds, and per-interpreter GIL support). Every error path
 * sets a Python exception.
 *
 * side_step_if_equal(x, other, facc, cacc) is side_step of x when x and other hold the same
 * bytes, in one pass: blocks of EQUAL_BLOCK elements are compared and, while still in cache,
 * read for statistics (an unchanged tensor's pair, read once per side; False at the first
 * difference).
 *
 * This module must not allocate per element, keep state between calls, or hold the GIL
 * while it reads tensor data (beyond the first EQUAL_PROBE bytes bytes_equal and
 * side_step_if_equal compare).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MD_X86 1
#include <immintrin.h>
#else
#define MD_X86 0
#endif
/* The AVX-512 bf16 loops need a compiler that knows avx512bf16 (GCC 10, clang 12 and later);
 * with an older one the module builds without them (SIMD is at most "avx2"). */
#if MD_X86 && (defined(__clang__) ? __clang_major__ >= 12 : __GNUC__ >= 10)
#define MD_AVX512 1
#else
#define MD_AVX512 0
#endif

/* Accumulator slots: must match metrics.py. */
enum {
    F_SUM_D2, F_SUM_ABS_D, F_MAX_ABS_D, F_SUM_D, F_SUM_AB, F_SUM_A2, F_SUM_B2, F_SUM_A, F_SUM_B,
    F_MIN_A, F_MAX_A, F_MIN_B, F_MAX_B, NF
};
enum {
    C_N, C_FINITE, C_CHANGED, C_SIGN_FLIPS, C_NAN_A, C_INF_A, C_NAN_B, C_INF_B, C_ZERO_A,
    C_ZERO_B, NC
};

enum {
    DT_F64, DT_F32, DT_F16, DT_BF16, DT_F8E4M3, DT_F8E5M2, DT_I8, DT_I16, DT_I32, DT_I64,
    DT_U8, DT_U16, DT_U32, DT_U64, DT_BOOL, DT_COUNT
};
static const int ITEMSIZE[DT_COUNT] = {8, 4, 2, 2, 1, 1, 1, 2, 4, 8, 1, 2, 4, 8, 1};

#define BLOCK 2048

typedef struct {
    double f[NF];
    int64_t c[NC];
} Acc;

/* Per-interpreter module state: written by the exec slot only, read-only afterwards. */
typedef struct {
    double f8_e4m3[256];
    double f8_e5m2[256];
    int cpu_level; /* the best SIMD_* level the CPU runs */
} KernelState;

/* Vector levels, in order: SIMD_AVX2 needs AVX2, FMA and F16C; SIMD_AVX512 needs those and
 * AVX-512 F/BW/VL/BF16 (and POPCNT), and adds the AVX-512 loops for bf16 pairs. */
enum { SIMD_NONE, SIMD_AVX2, SIMD_AVX512, SIMD_COUNT };
static const char *const SIMD_NAMES[SIMD_COUNT] = {"none", "avx2", "avx512"};

/* What one call computes with: copied from the state (and the caller's simd flag) onto the
 * stack before the GIL is released. */
typedef struct {
    const double *f8_e4m3;
    const double *f8_e5m2;
    int vec; /* the SIMD_* level this call runs */
} Ctx;

static void acc_init(Acc *a) {
    memset(a, 0, sizeof(*a));
    a->f[F_MIN_A] = a->f[F_MIN_B] = INFINITY;
    a->f[F_MAX_A] = a->f[F_MAX_B] = -INFINITY;
}

static void acc_merge(Acc *into, const Acc *x) {
    static const int sums[] = {F_SUM_D2, F_SUM_ABS_D, F_SUM_D, F_SUM_AB, F_SUM_A2, F_SUM_B2,
                               F_SUM_A, F_SUM_B};
    for (size_t i = 0; i < sizeof(sums) / sizeof(sums[0]); i++) into->f[sums[i]] += x->f[sums[i]];
    if (x->f[F_MAX_ABS_D] > into->f[F_MAX_ABS_D]) into->f[F_MAX_ABS_D] = x->f[F_MAX_ABS_D];
    if (x->f[F_MIN_A] < into->f[F_MIN_A]) into->f[F_MIN_A] = x->f[F_MIN_A];
    if (x->f[F_MAX_A] > into->f[F_MAX_A]) into->f[F_MAX_A] = x->f[F_MAX_A];
    if (x->f[F_MIN_B] < into->f[F_MIN_B]) into->f[F_MIN_B] = x->f[F_MIN_B];
    if (x->f[F_MAX_B] > into->f[F_MAX_B]) into->f[F_MAX_B] = x->f[F_MAX_B];
    for (int i = 0; i < NC; i++) into->c[i] += x->c[i];
}

/* ---- element conversion ----------------------------------------------------------------- */

static double half_to_double(uint16_t h) {
    int e = (h >> 10) & 0x1f;
    int m = h & 0x3ff;
    double v;
    if (e == 0) v = ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp((double)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

static void build_f8_tables(KernelState *st) {
    for (int i = 0; i < 256; i++) {
        int s = i >> 7, e, m;
        double v;
        /* E4M3FN: bias 7, no infinities, S.1111.111 is NaN. */
        e = (i >> 3) & 0xf;
        m = i & 7;
        if (e == 15 && m == 7) v = NAN;
        else if (e == 0) v = ldexp((double)m, -9);
        else v = ldexp((double)(m | 8), e - 10);
        st->f8_e4m3[i] = s ? -v : v;
        /* E5M2: bias 15, IEEE-like infinities and NaNs. */
        e = (i >> 2) & 0x1f;
        m = i & 3;
        if (e == 31) v = m ? NAN : INFINITY;
        else if (e == 0) v = ldexp((double)m, -16);
        else v = ldexp((double)(m | 4), e - 17);
        st->f8_e5m2[i] = s ? -v : v;
    }
}

#define CONVERT_LOOP(T, EXPR)                                  \
    for (size_t i = 0; i < n; i++) {                          \
        T v_;                                                   \
        memcpy(&v_, src + i * sizeof(T), sizeof(T));            \
        dst[i] = (double)(EXPR);                                \
    }                                                           \
    break;

/* Convert n elements of dtype dt at src (any alignment) into doubles. */
static void convert_block(const Ctx *cx, int dt, const char *src, size_t n, double *dst) {
    switch (dt) {
    case DT_F64: memcpy(dst, src, n * sizeof(double)); break;
    case DT_F32: CONVERT_LOOP(float, v_)
    case DT_F16: CONVERT_LOOP(uint16_t, half_to_double(v_))
    case DT_BF16: {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t u = (uint32_t)h << 16;
            float f;
            memcpy(&f, &u, 4);
            dst[i] = f;
        }
        break;
    }
    case DT_F8E4M3: CONVERT_LOOP(uint8_t, cx->f8_e4m3[v_])
    case DT_F8E5M2: CONVERT_LOOP(uint8_t, cx->f8_e5m2[v_])
    case DT_I8: CONVERT_LOOP(int8_t, v_)
    case DT_I16: CONVERT_LOOP(int16_t, v_)
    case DT_I32: CONVERT_LOOP(int32_t, v_)
    case DT_I64: CONVERT_LOOP(int64_t, v_)
    case DT_U8: CONVERT_LOOP(uint8_t, v_)
    case DT_U16: CONVERT_LOOP(uint16_t, v_)
    case DT_U32: CONVERT_LOOP(uint32_t, v_)
    case DT_U64: CONVERT_LOOP(uint64_t, v_)
    case DT_BOOL: CONVERT_LOOP(uint8_t, v_ != 0)
    default: break;
    }
}

/* ---- portable loops over doubles ---------------------------------------------------------- */

/* Fast pair loop: assumes every element finite (the caller checks the sums afterwards). */
static void pair_fast_f64(const double *x, const double *y, size_t n, double thr, Acc *acc) {
    double sd2 = 0, sad = 0, sd = 0, sab = 0, sa2 = 0, sb2 = 0, sa = 0, sb = 0;
    double mxd = acc->f[F_MAX_ABS_D], mna = acc->f[F_MIN_A], mxa = acc->f[F_MAX_A];
    double mnb = acc->f[F_MIN_B], mxb = acc->f[F_MAX_B];
    int64_t ch = 0, fl = 0, za = 0, zb = 0;
    for (size_t i = 0; i < n; i++) {
        double a = x[i], b = y[i], d = b - a, ad = fabs(d);
        sd2 += d * d; sad += ad; sd += d; sab += a * b; sa2 += a * a; sb2 += b * b;
        sa += a; sb += b;
        if (ad > mxd) mxd = ad;
        if (a < mna) mna = a;
        if (a > mxa) mxa = a;
        if (b < mnb) mnb = b;
        if (b > mxb) mxb = b;
        ch += ad > thr;
        fl += (a < 0 && b > 0) || (a > 0 && b < 0);
        za += a == 0;
        zb += b == 0;
    }
    acc->f[F_SUM_D2] += sd2; acc->f[F_SUM_ABS_D] += sad; acc->f[F_SUM_D] += sd;
    acc->f[F_SUM_AB] += sab; acc->f[F_SUM_A2] += sa2; acc->f[F_SUM_B2] += sb2;
    acc->f[F_SUM_A] += sa; acc->f[F_SUM_B] += sb;
    acc->f[F_MAX_ABS_D] = mxd; acc->f[F_MIN_A] = mna; acc->f[F_MAX_A] = mxa;
    acc->f[F_MIN_B] = mnb; acc->f[F_MAX_B] = mxb;
    acc->c[C_N] += (int64_t)n; acc->c[C_FINITE] += (int64_t)n;
    acc->c[C_CHANGED] += ch; acc->c[C_SIGN_FLIPS] += fl;
    acc->c[C_ZERO_A] += za; acc->c[C_ZERO_B] += zb;
}

/* Masked pair loop: NaN/Inf counted per side, sums over positions finite on both sides. */
static void pair_slow_f64(const double *x, const double *y, size_t n, double thr, Acc *acc) {
    Acc t;
    acc_init(&t);
    for (size_t i = 0; i < n; i++) {
        double a = x[i], b = y[i];
        int fa = isfinite(a), fb = isfinite(b);
        t.c[C_NAN_A] += isnan(a) != 0; t.c[C_INF_A] += isinf(a) != 0;
        t.c[C_NAN_B] += isnan(b) != 0; t.c[C_INF_B] += isinf(b) != 0;
        if (fa && fb) pair_fast_f64(&x[i], &y[i], 1, thr, &t);
    }
    t.c[C_N] = (int64_t)n;
    acc_merge(acc, &t);
}

static void side_fast_f64(const double *x, size_t n, Acc *acc) {
    double s2 = 0, s = 0, mn = acc->f[F_MIN_A], mx = acc->f[F_MAX_A];
    int64_t z = 0;
    for (size_t i = 0; i < n; i++) {
        double a = x[i];
        s2 += a * a; s += a;
        if (a < mn) mn = a;
        if (a > mx) mx = a;
        z += a == 0;
    }
    acc->f[F_SUM_A2] += s2; acc->f[F_SUM_A] += s;
    acc->f[F_MIN_A] = mn; acc->f[F_MAX_A] = mx;
    acc->c[C_N] += (int64_t)n; acc->c[C_FINITE] += (int64_t)n; acc->c[C_ZERO_A] += z;
}

static void side_slow_f64(const double *x, size_t n, Acc *acc) {
    Acc t;
    acc_init(&t);
    for (size_t i = 0; i < n; i++) {
        double a = x[i];
        t.c[C_NAN_A] += isnan(a) != 0; t.c[C_INF_A] += isinf(a) != 0;
        if (isfinite(a)) side_fast_f64(&x[i], 1, &t);
    }
    t.c[C_N] = (int64_t)n;
    acc_merge(acc, &t);
}

/* ---- AVX2 loops reading the source dtype directly ----------------------------------------- */
#if MD_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

static inline AVX2 __m256d ld_f64(const char *p) { return _mm256_loadu_pd((const double *)p); }
static inline AVX2 __m256d ld_f32(const char *p) { return _mm256_cvtps_pd(_mm_loadu_ps((const float *)p)); }
/* 16 elements as two float32 vectors (lo, hi). Which element lands in which lane does not
 * matter to sums, extrema and counts as long as old and new are split the same way, so a
 * bf16 pair of vectors comes from ONE 32-byte load: the low halves of its 32-bit words
 * shifted up (even elements) and the high halves masked (odd elements), no shuffles. */
#define LD16_F32(p, lo, hi)                                                                   \
    do {                                                                                      \
        lo = _mm256_loadu_ps((const float *)(p));                                             \
        hi = _mm256_loadu_ps((const float *)(p) + 8);                                         \
    } while (0)
#define LD16_BF16(p, lo, hi)                                                                  \
    do {                                                                                      \
        __m256i w_ = _mm256_loadu_si256((const __m256i *)(p));                                \
        lo = _mm256_castsi256_ps(_mm256_slli_epi32(w_, 16));                                  \
        hi = _mm256_castsi256_ps(_mm256_and_si256(w_, _mm256_set1_epi32((int)0xffff0000u)));  \
    } while (0)
#define LD16_F16(p, lo, hi)                                                                   \
    do {                                                                                      \
        lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)));                          \
        hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p) + 1));                      \
    } while (0)

static inline AVX2 double hsum(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
static inline AVX2 double hmax(__m256d v) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
}
static inline AVX2 double hmin(__m256d v) {
    __m128d s = _mm_min_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_min_sd(s, _mm_unpackhi_pd(s, s)));
}
static inline AVX2 double hsum_ps(__m256 v) {
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    return hsum(_mm256_add_pd(lo, hi));
}
static inline AVX2 double hmin_ps(__m256 v) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    return (double)_mm_cvtss_f32(_mm_min_ss(s, _mm_shuffle_ps(s, s, 1)));
}
static inline AVX2 double hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return (double)_mm_cvtss_f32(_mm_max_ss(s, _mm_shuffle_ps(s, s, 1)));
}
/* Counters: lanes accumulate 0 - mask (a true compare is all ones, i.e. -1). */
static inline AVX2 int64_t hcount64(__m256i v) {
    int64_t t[4];
    _mm256_storeu_si256((__m256i *)t, v);
    return t[0] + t[1] + t[2] + t[3];
}
static inline AVX2 int64_t hcount32(__m256i v) {
    int32_t t[8];
    _mm256_storeu_si256((__m256i *)t, v);
    return (int64_t)t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

/* Vector part of one block, pass 1 (sums, max|d|, changed count) in double: differences and
 * products of float32 values are exact there. n4 is a multiple of 4; all assumed finite. */
#define DEFINE_PAIR_SUMS_AVX2(NAME, LD, ES)                                                   \
    static AVX2 void NAME(const char *pa, const char *pb, size_t n4, double thr, Acc *acc) {   \
        const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));\
        const __m256d vthr = _mm256_set1_pd(thr), zero = _mm256_setzero_pd();               \
        __m256d sd2 = zero, sad = zero, sd = zero, sab = zero, sa2 = zero, sb2 = zero;        \
        __m256d sa = zero, sb = zero, mxd = zero;                                             \
        __m256i ch = _mm256_setzero_si256();                                                  \
        for (size_t i = 0; i < n4; i += 4) {                                                  \
            __m256d a = LD(pa + i * ES), b = LD(pb + i * ES);                                 \
            __m256d d = _mm256_sub_pd(b, a), ad = _mm256_and_pd(d, absmask);                  \
            sd2 = _mm256_fmadd_pd(d, d, sd2);                                                 \
            sab = _mm256_fmadd_pd(a, b, sab);                                                 \
            sa2 = _mm256_fmadd_pd(a, a, sa2);                                                 \
            sb2 = _mm256_fmadd_pd(b, b, sb2);                                                 \
            sad = _mm256_add_pd(sad, ad);                                                     \
            sd = _mm256_add_pd(sd, d);                                                        \
            sa = _mm256_add_pd(sa, a);                                                        \
            sb = _mm256_add_pd(sb, b);                                                        \
            mxd = _mm256_max_pd(mxd, ad);                                                     \
            ch = _mm256_sub_epi64(ch, _mm256_castpd_si256(_mm256_cmp_pd(ad, vthr, _CMP_GT_OQ)));\
        }                                                                                     \
        acc->f[F_SUM_D2] += hsum(sd2); acc->f[F_SUM_ABS_D] += hsum(sad);                      \
        acc->f[F_SUM_D] += hsum(sd); acc->f[F_SUM_AB] += hsum(sab);                           \
        acc->f[F_SUM_A2] += hsum(sa2); acc->f[F_SUM_B2] += hsum(sb2);                         \
        acc->f[F_SUM_A] += hsum(sa); acc->f[F_SUM_B] += hsum(sb);                             \
        acc->f[F_MAX_ABS_D] = fmax(acc->f[F_MAX_ABS_D], hmax(mxd));                           \
        acc->c[C_N] += (int64_t)n4; acc->c[C_FINITE] += (int64_t)n4;                          \
        acc->c[C_CHANGED] += hcount64(ch);                                                    \
    }

/* Pass 1 for 16-bit floats (bf16, f16) in float32 lanes, 16 elements per step: products of two 8- or
 * 11-bit significands are exact in float32, differences are exact or rounded once (2^-24),
 * and partial sums run over sub-blocks of 256 elements before they are folded into double,
 * so results stay within ~1e-6 relative: far inside the inputs' own rounding (2^-8, 2^-11).
 * Overflow shows as a non-finite sum (the block is redone in double); blocks whose values
 * are all tiny enough to underflow float32 products are redone in double by the driver.
 * |d| > threshold is decided exactly: t is the largest float32 <= threshold. */
#define SUB 256
#define PS_SUMS_STEP(a, b)                                                                    \
    do {                                                                                      \
        __m256 d_ = _mm256_sub_ps(b, a), ad_ = _mm256_and_ps(d_, absmask);                    \
        sd2 = _mm256_fmadd_ps(d_, d_, sd2);                                                   \
        sab = _mm256_fmadd_ps(a, b, sab);                                                     \
        sa2 = _mm256_fmadd_ps(a, a, sa2);                                                     \
        sb2 = _mm256_fmadd_ps(b, b, sb2);                                                     \
        sad = _mm256_add_ps(sad, ad_);                                                        \
        sd = _mm256_add_ps(sd, d_);                                                           \
        sa = _mm256_add_ps(sa, a);                                                            \
        sb = _mm256_add_ps(sb, b);                                                            \
        mxd = _mm256_max_ps(mxd, ad_);                                                        \
        ch = _mm256_sub_epi32(ch, _mm256_castps_si256(_mm256_cmp_ps(ad_, vthr, _CMP_GT_OQ)));\
    } while (0)
#define DEFINE_PAIR_SUMS_AVX2_PS(NAME, LD16, ES)                                              \
    static AVX2 void NAME(const char *pa, const char *pb, size_t n16, double thr, Acc *acc) {  \
        const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));            \
        float tf = (float)thr;                                                                 \
        if ((double)tf > thr) tf = nextafterf(tf, -INFINITY);                                  \
        const __m256 vthr = _mm256_set1_ps(tf), zero = _mm256_setzero_ps();                   \
        __m256 mxd = zero;                                                                     \
        __m256i ch = _mm256_setzero_si256();                                                   \
        double t[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                \
        for (size_t i0 = 0; i0 < n16; i0 += SUB) {                                             \
            size_t i1 = n16 - i0 < SUB ? n16 : i0 + SUB;                                       \
            __m256 sd2 = zero, sad = zero, sd = zero, sab = zero, sa2 = zero, sb2 = zero;      \
            __m256 sa = zero, sb = zero;                                                       \
            for (size_t i = i0; i < i1; i += 16) {                                             \
                __m256 a0, a1, b0, b1;                                                         \
                LD16(pa + i * ES, a0, a1);                                                     \
                LD16(pb + i * ES, b0, b1);                                                     \
                PS_SUMS_STEP(a0, b0);                                                          \
                PS_SUMS_STEP(a1, b1);                                                          \
            }                                                                                  \
            t[0] += hsum_ps(sd2); t[1] += hsum_ps(sad); t[2] += hsum_ps(sd);                   \
            t[3] += hsum_ps(sab); t[4] += hsum_ps(sa2); t[5] += hsum_ps(sb2);                  \
            t[6] += hsum_ps(sa); t[7] += hsum_ps(sb);                                          \
        }                                                                                      \
        acc->f[F_SUM_D2] += t[0]; acc->f[F_SUM_ABS_D] += t[1]; acc->f[F_SUM_D] += t[2];        \
        acc->f[F_SUM_AB] += t[3]; acc->f[F_SUM_A2] += t[4]; acc->f[F_SUM_B2] += t[5];          \
        acc->f[F_SUM_A] += t[6]; acc->f[F_SUM_B] += t[7];                                      \
        acc->f[F_MAX_ABS_D] = fmax(acc->f[F_MAX_ABS_D], hmax_ps(mxd));                         \
        acc->c[C_N] += (int64_t)n16; acc->c[C_FINITE] += (int64_t)n16;                         \
        acc->c[C_CHANGED] += hcount32(ch);                                                     \
    }

/* Pass 2 (min/max, zeros, sign flips): exact in the source precision, so float32 lanes serve
 * f32/bf16/f16, 16 elements per step. Elements are finite here (non-finite blocks are redone
 * by the masked loop), so a sign flip is a set sign bit in a XOR b with neither side zero
 * (-0 == 0, so a signed zero never counts). */
#define PS_ORDER_STEP(a, b)                                                                   \
    do {                                                                                      \
        mna = _mm256_min_ps(mna, a); mxa = _mm256_max_ps(mxa, a);                             \
        mnb = _mm256_min_ps(mnb, b); mxb = _mm256_max_ps(mxb, b);                             \
        __m256i a0_ = _mm256_castps_si256(_mm256_cmp_ps(a, zero, _CMP_EQ_OQ));                \
        __m256i b0_ = _mm256_castps_si256(_mm256_cmp_ps(b, zero, _CMP_EQ_OQ));                \
        __m256i sx_ = _mm256_srai_epi32(_mm256_castps_si256(_mm256_xor_ps(a, b)), 31);        \
        za = _mm256_sub_epi32(za, a0_);                                                       \
        zb = _mm256_sub_epi32(zb, b0_);                                                       \
        fl = _mm256_sub_epi32(fl, _mm256_andnot_si256(_mm256_or_si256(a0_, b0_), sx_));       \
    } while (0)
#define DEFINE_PAIR_ORDER_AVX2_PS(NAME, LD16, ES)                                             \
    static AVX2 void NAME(const char *pa, const char *pb, size_t n16, Acc *acc) {             \
        const __m256 zero = _mm256_setzero_ps();                                              \
        __m256 mna = _mm256_set1_ps(INFINITY), mnb = mna;                                     \
        __m256 mxa = _mm256_set1_ps(-INFINITY), mxb = mxa;                                    \
        __m256i fl = _mm256_setzero_si256(), za = fl, zb = fl;                                \
        for (size_t i = 0; i < n16; i += 16) {                                                \
            __m256 a0, a1, b0, b1;                                                            \
            LD16(pa + i * ES, a0, a1);                                                        \
            LD16(pb + i * ES, b0, b1);                                                        \
            PS_ORDER_STEP(a0, b0);                                                            \
            PS_ORDER_STEP(a1, b1);                                                            \
        }                                                                                     \
        acc->f[F_MIN_A] = fmin(acc->f[F_MIN_A], hmin_ps(mna));                                \
        acc->f[F_MAX_A] = fmax(acc->f[F_MAX_A], hmax_ps(mxa));                                \
        acc->f[F_MIN_B] = fmin(acc->f[F_MIN_B], hmin_ps(mnb));                                \
        acc->f[F_MAX_B] = fmax(acc->f[F_MAX_B], hmax_ps(mxb));                                \
        acc->c[C_SIGN_FLIPS] += hcount32(fl);                                                 \
        acc->c[C_ZERO_A] += hcount32(za); acc->c[C_ZERO_B] += hcount32(zb);                   \
    }

/* Pass 2 for float64 sources, 4 lanes. */
static AVX2 void pair_order_avx2_f64(const char *pa, const char *pb, size_t n4, Acc *acc) {
    const __m256d zero = _mm256_setzero_pd();
    __m256d mna = _mm256_set1_pd(INFINITY), mnb = mna;
    __m256d mxa = _mm256_set1_pd(-INFINITY), mxb = mxa;
    __m256i fl = _mm256_setzero_si256(), za = fl, zb = fl;
    for (size_t i = 0; i < n4; i += 4) {
        __m256d a = ld_f64(pa + i * 8), b = ld_f64(pb + i * 8);
        mna = _mm256_min_pd(mna, a); mxa = _mm256_max_pd(mxa, a);
        mnb = _mm256_min_pd(mnb, b); mxb = _mm256_max_pd(mxb, b);
        __m256d a0 = _mm256_cmp_pd(a, zero, _CMP_EQ_OQ), b0 = _mm256_cmp_pd(b, zero, _CMP_EQ_OQ);
        __m256d sx = _mm256_xor_pd(_mm256_cmp_pd(a, zero, _CMP_LT_OQ),
                                   _mm256_cmp_pd(b, zero, _CMP_LT_OQ));
        __m256d flip = _mm256_andnot_pd(_mm256_or_pd(a0, b0), sx);
        za = _mm256_sub_epi64(za, _mm256_castpd_si256(a0));
        zb = _mm256_sub_epi64(zb, _mm256_castpd_si256(b0));
        fl = _mm256_sub_epi64(fl, _mm256_castpd_si256(flip));
    }
    acc->f[F_MIN_A] = fmin(acc->f[F_MIN_A], hmin(mna));
    acc->f[F_MAX_A] = fmax(acc->f[F_MAX_A], hmax(mxa));
    acc->f[F_MIN_B] = fmin(acc->f[F_MIN_B], hmin(mnb));
    acc->f[F_MAX_B] = fmax(acc->f[F_MAX_B], hmax(mxb));
    acc->c[C_SIGN_FLIPS] += hcount64(fl);
    acc->c[C_ZERO_A] += hcount64(za); acc->c[C_ZERO_B] += hcount64(zb);
}

#define DEFINE_PAIR_AVX2(NAME, SUMS, ORDER)                                                  \
    static AVX2 void NAME(const char *pa, const char *pb, size_t n16, double thr, Acc *acc) { \
        SUMS(pa, pb, n16, thr, acc);                                                          \
        ORDER(pa, pb, n16, acc);                                                              \
    }

#define DEFINE_SIDE_AVX2(NAME, LD, ES)                                                        \
    static AVX2 void NAME(const char *px, size_t n4, Acc *acc) {                              \
        const __m256d zero = _mm256_setzero_pd();                                             \
        __m256d s2 = zero, s = zero, s2b = zero, sb = zero;                                   \
        __m256d mn = _mm256_set1_pd(INFINITY), mx = _mm256_set1_pd(-INFINITY);                \
        __m256i z = _mm256_setzero_si256();                                                   \
        size_t i = 0;                                                                         \
        for (; i + 8 <= n4; i += 8) {                                                         \
            __m256d a = LD(px + i * ES), b = LD(px + (i + 4) * ES);                           \
            s2 = _mm256_fmadd_pd(a, a, s2); s2b = _mm256_fmadd_pd(b, b, s2b);                 \
            s = _mm256_add_pd(s, a); sb = _mm256_add_pd(sb, b);                               \
            mn = _mm256_min_pd(mn, _mm256_min_pd(a, b));                                      \
            mx = _mm256_max_pd(mx, _mm256_max_pd(a, b));                                      \
            z = _mm256_sub_epi64(z, _mm256_castpd_si256(_mm256_cmp_pd(a, zero, _CMP_EQ_OQ))); \
            z = _mm256_sub_epi64(z, _mm256_castpd_si256(_mm256_cmp_pd(b, zero, _CMP_EQ_OQ))); \
        }                                                                                     \
        for (; i < n4; i += 4) {                                                              \
            __m256d a = LD(px + i * ES);                                                      \
            s2 = _mm256_fmadd_pd(a, a, s2); s = _mm256_add_pd(s, a);                          \
            mn = _mm256_min_pd(mn, a); mx = _mm256_max_pd(mx, a);                             \
            z = _mm256_sub_epi64(z, _mm256_castpd_si256(_mm256_cmp_pd(a, zero, _CMP_EQ_OQ))); \
        }                                                                                     \
        acc->f[F_SUM_A2] += hsum(_mm256_add_pd(s2, s2b));                                     \
        acc->f[F_SUM_A] += hsum(_mm256_add_pd(s, sb));                                        \
        acc->f[F_MIN_A] = fmin(acc->f[F_MIN_A], hmin(mn));                                    \
        acc->f[F_MAX_A] = fmax(acc->f[F_MAX_A], hmax(mx));                                    \
        acc->c[C_N] += (int64_t)n4; acc->c[C_FINITE] += (int64_t)n4;                          \
        acc->c[C_ZERO_A] += hcount64(z);                                                        \
    }

/* One side of 16-bit floats (bf16, f16) in float32 lanes, 16 elements per step: squares of
 * 8- or 11-bit significands are exact in float32 and partial sums run over SUB elements
 * before they are folded into double (as in pass 1 above); the driver redoes a block in
 * double when its squares overflow or could underflow float32. */
#define DEFINE_SIDE_AVX2_PS(NAME, LD16, ES)                                                   \
    static AVX2 void NAME(const char *px, size_t n16, Acc *acc) {                             \
        const __m256 zero = _mm256_setzero_ps();                                              \
        __m256 mn = _mm256_set1_ps(INFINITY), mx = _mm256_set1_ps(-INFINITY);                 \
        __m256i z = _mm256_setzero_si256();                                                   \
        double t2 = 0, t1 = 0;                                                                \
        for (size_t i0 = 0; i0 < n16; i0 += SUB) {                                            \
            size_t i1 = n16 - i0 < SUB ? n16 : i0 + SUB;                                      \
            __m256 s2 = zero, s = zero;                                                       \
            for (size_t i = i0; i < i1; i += 16) {                                            \
                __m256 a, b;                                                                  \
                LD16(px + i * ES, a, b);                                                      \
                s2 = _mm256_fmadd_ps(a, a, s2); s2 = _mm256_fmadd_ps(b, b, s2);               \
                s = _mm256_add_ps(s, _mm256_add_ps(a, b));                                    \
                mn = _mm256_min_ps(mn, _mm256_min_ps(a, b));                                  \
                mx = _mm256_max_ps(mx, _mm256_max_ps(a, b));                                  \
                z = _mm256_sub_epi32(z, _mm256_castps_si256(_mm256_cmp_ps(a, zero, _CMP_EQ_OQ)));\
                z = _mm256_sub_epi32(z, _mm256_castps_si256(_mm256_cmp_ps(b, zero, _CMP_EQ_OQ)));\
            }                                                                                 \
            t2 += hsum_ps(s2); t1 += hsum_ps(s);                                              \
        }                                                                                     \
        acc->f[F_SUM_A2] += t2; acc->f[F_SUM_A] += t1;                                        \
        acc->f[F_MIN_A] = fmin(acc->f[F_MIN_A], hmin_ps(mn));                                 \
        acc->f[F_MAX_A] = fmax(acc->f[F_MAX_A], hmax_ps(mx));                                 \
        acc->c[C_N] += (int64_t)n16; acc->c[C_FINITE] += (int64_t)n16;                        \
        acc->c[C_ZERO_A] += hcount32(z);                                                      \
    }

DEFINE_PAIR_SUMS_AVX2(pair_sums_avx2_f64, ld_f64, 8)
DEFINE_PAIR_SUMS_AVX2(pair_sums_avx2_f32, ld_f32, 4)
DEFINE_PAIR_ORDER_AVX2_PS(pair_order_avx2_f32, LD16_F32, 4)
DEFINE_PAIR_ORDER_AVX2_PS(pair_order_avx2_bf16, LD16_BF16, 2)
DEFINE_PAIR_ORDER_AVX2_PS(pair_order_avx2_f16, LD16_F16, 2)
DEFINE_PAIR_AVX2(pair_avx2_f64, pair_sums_avx2_f64, pair_order_avx2_f64)
DEFINE_PAIR_AVX2(pair_avx2_f32, pair_sums_avx2_f32, pair_order_avx2_f32)
DEFINE_PAIR_SUMS_AVX2_PS(pair_sums_ps_avx2_bf16, LD16_BF16, 2)
DEFINE_PAIR_SUMS_AVX2_PS(pair_sums_ps_avx2_f16, LD16_F16, 2)
DEFINE_PAIR_AVX2(pair_avx2_bf16, pair_sums_ps_avx2_bf16, pair_order_avx2_bf16)
DEFINE_PAIR_AVX2(pair_avx2_f16, pair_sums_ps_avx2_f16, pair_order_avx2_f16)
DEFINE_SIDE_AVX2(side_avx2_f64, ld_f64, 8)
DEFINE_SIDE_AVX2(side_avx2_f32, ld_f32, 4)
DEFINE_SIDE_AVX2_PS(side_avx2_bf16, LD16_BF16, 2)
DEFINE_SIDE_AVX2_PS(side_avx2_f16, LD16_F16, 2)

#if MD_AVX512
/* ---- AVX-512 loops for bfloat16 (avx512f/bw/vl + avx512bf16) ----------------------------- */

/* One zmm load holds 32 bf16 words per side. VDPBF16PS (_mm512_dpbf16_ps) multiplies the
 * bf16 words pairwise and adds both products of a 32-bit lane into a float32 lane, straight
 * from the raw words: a*b, a*a, b*b, and a*1, b*1 for the plain sums. A product of two bf16
 * values is exact in float32, so this is the float32-partial-sums scheme of
 * DEFINE_PAIR_SUMS_AVX2_PS (partial sums of SUB512 elements, 32 per lane, folded into
 * double). d = b - a, min/max and |d| > t use float32 halves of the words (shift / and, as
 * LD16_BF16); zero counts and sign flips come from the raw words with mask compares and
 * popcount. One pass computes everything.
 *
 * Denormals: VDPBF16PS treats denormal inputs as zero and flushes denormal results (DAZ,
 * FTZ), whatever MXCSR says. Only the five dot-product sums see this; everything else (d,
 * |d|, extrema, zeros, sign flips) is exact as on the AVX2 path. Rule: a block holding any
 * bf16 denormal (exponent bits zero, mantissa non-zero) on either side is redone on the AVX2
 * path (pair_avx512_bf16 returns 0 for it), so such a block's result is the AVX2 path's.
 * Products of normal values that fall below 2^-126 are still flushed: at most 2^-126 each,
 * 2^-115 per block, which is below float32 rounding (2^-24 relative) of any block whose sum
 * of squares is at least 2^-90; so the driver redoes in double every AVX-512 block whose
 * largest magnitude is below TINY_AVX512 = 2^-45 (the AVX2 path's limit is 2^-50). Non-finite
 * values make the dot-product sums of squares non-finite, and the driver redoes the block with
 * the masked loop, as for the other paths. */
#define AVX512 __attribute__((target("avx2,fma,f16c,popcnt,avx512f,avx512bw,avx512vl,avx512bf16")))
#define SUB512 512
#define TINY_AVX512 0x1p-45

static inline AVX512 double hsum512_ps(__m512 v) {
    __m512d s = _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)),
                              _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    return _mm512_reduce_add_pd(s);
}

/* n32 elements (a multiple of 32) of a bf16 pair into acc; 0 (acc untouched) when the block
 * holds a bf16 denormal and must run on the AVX2 path instead. */
static AVX512 int pair_avx512_bf16(const char *pa, const char *pb, size_t n32, double thr,
                                   Acc *acc) {
    const __m512i hi16 = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i mag = _mm512_set1_epi16(0x7fff), expo = _mm512_set1_epi16(0x7f80);
    const __m512i sign = _mm512_set1_epi16((short)0x8000);
    const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3f80); /* bf16 1.0 */
    float tf = (float)thr;
    if ((double)tf > thr) tf = nextafterf(tf, -INFINITY);
    const __m512 vthr = _mm512_set1_ps(tf), zero = _mm512_setzero_ps();
    __m512 mxd = zero, mna = _mm512_set1_ps(INFINITY), mnb = mna;
    __m512 mxa = _mm512_set1_ps(-INFINITY), mxb = mxa;
    uint64_t ch = 0, fl = 0, za = 0, zb = 0, ez = 0;
    double t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i0 = 0; i0 < n32; i0 += SUB512) {
        size_t i1 = n32 - i0 < SUB512 ? n32 : i0 + SUB512;
        __m512 sd2 = zero, sd2b = zero, sad = zero, sd = zero, sab = zero, sa2 = zero;
        __m512 sb2 = zero, sa = zero, sb = zero;
        for (size_t i = i0; i < i1; i += 32) {
            __m512i wa = _mm512_loadu_si512((const void *)(pa + 2 * i));
            __m512i wb = _mm512_loadu_si512((const void *)(pb + 2 * i));
            __m512 a0 = _mm512_castsi512_ps(_mm512_slli_epi32(wa, 16));
            __m512 a1 = _mm512_castsi512_ps(_mm512_and_si512(wa, hi16));
            __m512 b0 = _mm512_castsi512_ps(_mm512_slli_epi32(wb, 16));
            __m512 b1 = _mm512_castsi512_ps(_mm512_and_si512(wb, hi16));
            sab = _mm512_dpbf16_ps(sab, (__m512bh)wa, (__m512bh)wb);
            sa2 = _mm512_dpbf16_ps(sa2, (__m512bh)wa, (__m512bh)wa);
            sb2 = _mm512_dpbf16_ps(sb2, (__m512bh)wb, (__m512bh)wb);
            sa = _mm512_dpbf16_ps(sa, (__m512bh)wa, one);
            sb = _mm512_dpbf16_ps(sb, (__m512bh)wb, one);
            __m512 d0 = _mm512_sub_ps(b0, a0), d1 = _mm512_sub_ps(b1, a1);
            __m512 ad0 = _mm512_abs_ps(d0), ad1 = _mm512_abs_ps(d1);
            sd2 = _mm512_fmadd_ps(d0, d0, sd2);
            sd2b = _mm512_fmadd_ps(d1, d1, sd2b);
            sd = _mm512_add_ps(sd, _mm512_add_ps(d0, d1));
            sad = _mm512_add_ps(sad, _mm512_add_ps(ad0, ad1));
            mxd = _mm512_max_ps(mxd, _mm512_max_ps(ad0, ad1));
            __mmask16 c0 = _mm512_cmp_ps_mask(ad0, vthr, _CMP_GT_OQ);
            __mmask16 c1 = _mm512_cmp_ps_mask(ad1, vthr, _CMP_GT_OQ);
            ch += (uint64_t)__builtin_popcount((unsigned)c0 | ((unsigned)c1 << 16));
            mna = _mm512_min_ps(mna, _mm512_min_ps(a0, a1));
            mxa = _mm512_max_ps(mxa, _mm512_max_ps(a0, a1));
            mnb = _mm512_min_ps(mnb, _mm512_min_ps(b0, b1));
            mxb = _mm512_max_ps(mxb, _mm512_max_ps(b0, b1));
            __mmask32 zam = _mm512_testn_epi16_mask(wa, mag), zbm = _mm512_testn_epi16_mask(wb, mag);
            __mmask32 flm = _mm512_mask_test_epi16_mask((__mmask32) ~(zam | zbm),
                                                        _mm512_xor_si512(wa, wb), sign);
            za += (uint64_t)__builtin_popcount(zam);
            zb += (uint64_t)__builtin_popcount(zbm);
            fl += (uint64_t)__builtin_popcount(flm);
            /* exponent bits zero: a zero or a denormal (counted, not masked: fewer mask
             * operations in the loop; the block has a denormal when ez exceeds the zeros) */
            ez += (uint64_t)__builtin_popcount(_mm512_testn_epi16_mask(wa, expo));
            ez += (uint64_t)__builtin_popcount(_mm512_testn_epi16_mask(wb, expo));
        }
        t[0] += hsum512_ps(_mm512_add_ps(sd2, sd2b)); t[1] += hsum512_ps(sad);
        t[2] += hsum512_ps(sd); t[3] += hsum512_ps(sab); t[4] += hsum512_ps(sa2);
        t[5] += hsum512_ps(sb2); t[6] += hsum512_ps(sa); t[7] += hsum512_ps(sb);
    }
    if (ez != za + zb) return 0;
    acc->f[F_SUM_D2] += t[0]; acc->f[F_SUM_ABS_D] += t[1]; acc->f[F_SUM_D] += t[2];
    acc->f[F_SUM_AB] += t[3]; acc->f[F_SUM_A2] += t[4]; acc->f[F_SUM_B2] += t[5];
    acc->f[F_SUM_A] += t[6]; acc->f[F_SUM_B] += t[7];
    acc->f[F_MAX_ABS_D] = fmax(acc->f[F_MAX_ABS_D], (double)_mm512_reduce_max_ps(mxd));
    acc->f[F_MIN_A] = fmin(acc->f[F_MIN_A], (double)_mm512_reduce_min_ps(mna));
    acc->f[F_MAX_A] = fmax(acc->f[F_MAX_A], (double)_mm512_reduce_max_ps(mxa));
    acc->f[F_MIN_B] = fmin(acc->f[F_MIN_B], (double)_mm512_reduce_min_ps(mnb));
    acc->f[F_MAX_B] = fmax(acc->f[F_MAX_B], (double)_mm512_reduce_max_ps(mxb));
    acc->c[C_N] += (int64_t)n32; acc->c[C_FINITE] += (int64_t)n32;
    acc->c[C_CHANGED] += (int64_t)ch; acc->c[C_SIGN_FLIPS] += (int64_t)fl;
    acc->c[C_ZERO_A] += (int64_t)za; acc->c[C_ZERO_B] += (int64_t)zb;
    return 1;
}

/* One bf16 side, as pair_avx512_bf16 (same denormal rule): sum a*a and a by VDPBF16PS,
 * extrema on float32 halves, zeros by a mask compare. */
static AVX512 int side_avx512_bf16(const char *px, size_t n32, Acc *acc) {
    const __m512i hi16 = _mm512_set1_epi32((int)0xffff0000u);
    const __m512i mag = _mm512_set1_epi16(0x7fff), expo = _mm512_set1_epi16(0x7f80);
    const __m512bh one = (__m512bh)_mm512_set1_epi16(0x3f80); /* bf16 1.0 */
    const __m512 zero = _mm512_setzero_ps();
    __m512 mn = _mm512_set1_ps(INFINITY), mx = _mm512_set1_ps(-INFINITY);
    uint64_t z = 0, ez = 0;
    double t2 = 0, t1 = 0;
    for (size_t i0 = 0; i0 < n32; i0 += SUB512) {
        size_t i1 = n32 - i0 < SUB512 ? n32 : i0 + SUB512;
        __m512 s2 = zero, s = zero;
        for (size_t i = i0; i < i1; i += 32) {
            __m512i w = _mm512_loadu_si512((const void *)(px + 2 * i));
            __m512 a0 = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
            __m512 a1 = _mm512_castsi512_ps(_mm512_and_si512(w, hi16));
            s2 = _mm512_dpbf16_ps(s2, (__m512bh)w, (__m512bh)w);
            s = _mm512_dpbf16_ps(s, (__m512bh)w, one);
            mn = _mm512_min_ps(mn, _mm512_min_ps(a0, a1));
            mx = _mm512_max_ps(mx, _mm512_max_ps(a0, a1));
            __mmask32 zm = _mm512_testn_epi16_mask(w, mag);
            z += (uint64_t)__builtin_popcount(zm);
            ez += (uint64_t)__builtin_popcount(_mm512_testn_epi16_mask(w, expo));
        }
        t2 += hsum512_ps(s2); t1 += hsum512_ps(s);
    }
    if (ez != z) return 0;
    acc->f[F_SUM_A2] += t2; acc->f[F_SUM_A] += t1;
    acc->f[F_MIN_A] = fmin(acc->f[F_MIN_A], (double)_mm512_reduce_min_ps(mn));
    acc->f[F_MAX_A] = fmax(acc->f[F_MAX_A], (double)_mm512_reduce_max_ps(mx));
    acc->c[C_N] += (int64_t)n32; acc->c[C_FINITE] += (int64_t)n32;
    acc->c[C_ZERO_A] += (int64_t)z;
    return 1;
}

#endif /* MD_AVX512 */

typedef void (*pair_vec_fn)(const char *, const char *, size_t, double, Acc *);
typedef void (*side_vec_fn)(const char *, size_t, Acc *);

static pair_vec_fn pair_vec_for(const Ctx *cx, int dt) {
    if (!cx->vec) return NULL;
    switch (dt) {
    case DT_F64: return pair_avx2_f64;
    case DT_F32: return pair_avx2_f32;
    case DT_BF16: return pair_avx2_bf16;
    case DT_F16: return pair_avx2_f16;
    default: return NULL;
    }
}
static side_vec_fn side_vec_for(const Ctx *cx, int dt) {
    if (!cx->vec) return NULL;
    switch (dt) {
    case DT_F64: return side_avx2_f64;
    case DT_F32: return side_avx2_f32;
    case DT_BF16: return side_avx2_bf16;
    case DT_F16: return side_avx2_f16;
    default: return NULL;
    }
}
#endif /* MD_X86 */

/* A block's fast result is trustworthy when its sums of squares and products are finite:
 * any NaN/Inf element makes a^2 or b^2 non-finite, and overflow shows the same way. */
static int pair_ok(const Acc *t) {
    return isfinite(t->f[F_SUM_D2]) && isfinite(t->f[F_SUM_AB]) && isfinite(t->f[F_SUM_A2]) &&
           isfinite(t->f[F_SUM_B2]);
}

/* True when the block's largest magnitude is non-zero but below ``limit`` (2^-50 for the
 * AVX2 loops, whose float32 squares below 2^-100 would lose terms near the float32
 * underflow (2^-149) that matter; TINY_AVX512 for the AVX-512 loops, which flush products
 * below 2^-126). */
static int tiny_block(const Acc *t, double limit) {
    double m = fmax(fmax(fabs(t->f[F_MIN_A]), fabs(t->f[F_MAX_A])),
                    fmax(fabs(t->f[F_MIN_B]), fabs(t->f[F_MAX_B])));
    return m > 0 && m < limit;
}

/* tiny_block for one side. */
static int tiny_side(const Acc *t, double limit) {
    double m = fmax(fabs(t->f[F_MIN_A]), fabs(t->f[F_MAX_A]));
    return m > 0 && m < limit;
}

/* ---- the chunk drivers ---------------------------------------------------------------------- */

static void pair_run(const Ctx *cx, int dta, const char *pa, int dtb, const char *pb, size_t n,
                     double thr, Acc *total) {
    double xa[BLOCK], xb[BLOCK];
    const size_t ea = (size_t)ITEMSIZE[dta], eb = (size_t)ITEMSIZE[dtb];
#if MD_X86
    pair_vec_fn vec = dta == dtb ? pair_vec_for(cx, dta) : NULL;
#if MD_AVX512
    const int v512 = cx->vec >= SIMD_AVX512 && dta == DT_BF16 && dtb == DT_BF16;
#endif
#endif
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t len = n - start < BLOCK ? n - start : BLOCK;
        const char *ba = pa + start * ea, *bb = pb + start * eb;
        Acc t;
        acc_init(&t);
        size_t done = 0;
        double tiny = 0x1p-50;
#if MD_X86
        int vectored = 0;
#if MD_AVX512
        if (v512) {
            done = len & ~(size_t)31; /* 32 elements per step */
            if (pair_avx512_bf16(ba, bb, done, thr, &t)) {
                vectored = 1;
                tiny = TINY_AVX512;
            } else {
                done = 0; /* a bf16 denormal: this block runs the AVX2 loops */
            }
        }
#endif
        if (!vectored && vec) {
            done = len & ~(size_t)15; /* the AVX2 loops take 16 elements per step */
            vec(ba, bb, done, thr, &t);
            vectored = 1;
        }
        if (vectored) {
            if (len > done) {
                convert_block(cx, dta, ba + done * ea, len - done, xa);
                convert_block(cx, dtb, bb + done * eb, len - done, xb);
                pair_fast_f64(xa, xb, len - done, thr, &t);
            }
            done = len;
        }
#endif
        if (!done) {
            convert_block(cx, dta, ba, len, xa);
            convert_block(cx, dtb, bb, len, xb);
            pair_fast_f64(xa, xb, len, thr, &t);
        }
        if (pair_ok(&t) && (dta == DT_BF16 || dta == DT_F16) && dta == dtb &&
            tiny_block(&t, tiny)) {
            /* float32 products of these values could underflow: redo the block in double */
            acc_init(&t);
            convert_block(cx, dta, ba, len, xa);
            convert_block(cx, dtb, bb, len, xb);
            pair_fast_f64(xa, xb, len, thr, &t);
        }
        if (!pair_ok(&t)) {
            acc_init(&t);
            convert_block(cx, dta, ba, len, xa);
            convert_block(cx, dtb, bb, len, xb);
            pair_slow_f64(xa, xb, len, thr, &t);
        }
        acc_merge(total, &t);
    }
}

static void side_run(const Ctx *cx, int dt, const char *px, size_t n, Acc *total) {
    double xa[BLOCK];
    const size_t es = (size_t)ITEMSIZE[dt];
#if MD_X86
    side_vec_fn vec = side_vec_for(cx, dt);
#if MD_AVX512
    const int v512 = cx->vec >= SIMD_AVX512 && dt == DT_BF16;
#endif
#endif
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t len = n - start < BLOCK ? n - start : BLOCK;
        const char *bx = px + start * es;
        Acc t;
        acc_init(&t);
        size_t done = 0;
        double tiny = 0x1p-50;
#if MD_X86
        int vectored = 0;
#if MD_AVX512
        if (v512) {
            done = len & ~(size_t)31; /* 32 elements per step */
            if (side_avx512_bf16(bx, done, &t)) {
                vectored = 1;
                tiny = TINY_AVX512;
            } else {
                done = 0; /* a bf16 denormal: this block runs the AVX2 loops */
            }
        }
#endif
        if (!vectored && vec) {
            done = len & ~(size_t)15; /* the AVX2 loops take 16 elements per step */
            vec(bx, done, &t);
            vectored = 1;
        }
        if (vectored) {
            if (len > done) {
                convert_block(cx, dt, bx + done * es, len - done, xa);
                side_fast_f64(xa, len - done, &t);
            }
            done = len;
        }
#endif
        if (!done) {
            convert_block(cx, dt, bx, len, xa);
            side_fast_f64(xa, len, &t);
        }
        if (isfinite(t.f[F_SUM_A2]) && (dt == DT_BF16 || dt == DT_F16) && tiny_side(&t, tiny)) {
            /* float32 squares of these values could underflow: redo the block in double */
            acc_init(&t);
            convert_block(cx, dt, bx, len, xa);
            side_fast_f64(xa, len, &t);
        }
        if (!isfinite(t.f[F_SUM_A2])) {
            acc_init(&t);
            convert_block(cx, dt, bx, len, xa);
            side_slow_f64(xa, len, &t);
        }
        acc_merge(total, &t);
    }
}

/* ---- Python glue ------------------------------------------------------------------------------ */

/* Canonical dtype names (model_diff/dtypes.py spelling), in DT_* order: what the dtype
 * keywords of pair_step/side_step accept, exported as DTYPES. */
static const char *const DTYPE_NAMES[DT_COUNT] = {
    "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int8",
    "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"};

/* The dtype code of a numpy array (native byte order only), or -1 with an exception set.
 *
 * With ``logical`` (a DTYPE_NAMES entry, given by the caller) the array is a storage view
 * of that dtype: its bytes are read as ``logical`` whatever numpy calls them (uint16 for
 * bfloat16, uint8 for float8, so that no ml_dtypes array is needed); only its item size and
 * byte order are checked. Without it the code comes from the numpy dtype's kind, item size
 * and, for the ml_dtypes types, name. */
static int dtype_code(PyObject *arr, const char *logical) {
    int want = -1;
    if (logical) {
        for (int i = 0; i < DT_COUNT; i++)
            if (strcmp(logical, DTYPE_NAMES[i]) == 0) want = i;
        if (want < 0) {
            PyErr_Format(PyExc_ValueError, "model_diff.kernel: unknown dtype name %s", logical);
            return -1;
        }
    }
    PyObject *dt = PyObject_GetAttrString(arr, "dtype");
    if (!dt) return -1;
    PyObject *kind = PyObject_GetAttrString(dt, "kind");
    PyObject *size = kind ? PyObject_GetAttrString(dt, "itemsize") : NULL;
    PyObject *order = size ? PyObject_GetAttrString(dt, "byteorder") : NULL;
    /* numpy's dtype.name is a Python-level property (~8 us): asked only when no logical
     * name says what the elements are (the engine always names them). */
    PyObject *name = order && want < 0 ? PyObject_GetAttrString(dt, "name") : NULL;
    int code = -1;
    if (order && PyUnicode_Check(kind) && PyUnicode_Check(order) &&
        (want >= 0 || (name && PyUnicode_Check(name)))) {
        const char *k = PyUnicode_AsUTF8(kind), *o = PyUnicode_AsUTF8(order);
        const char *nm = name ? PyUnicode_AsUTF8(name) : "";
        long sz = PyLong_AsLong(size);
        if (k && o && nm && !(sz == -1 && PyErr_Occurred()) && strcmp(o, ">") != 0) {
            if (want >= 0) {
                if (sz == ITEMSIZE[want] && k[0] != 'O' && k[0] != 'U' && k[0] != 'S')
                    code = want;
                else
                    PyErr_Format(PyExc_TypeError,
                                 "model_diff.kernel: a %s view needs %d-byte elements, not %R",
                                 logical, ITEMSIZE[want], dt);
            }
            else if (strcmp(nm, "bfloat16") == 0) code = DT_BF16;
            else if (strcmp(nm, "float8_e4m3fn") == 0) code = DT_F8E4M3;
            else if (strcmp(nm, "float8_e5m2") == 0) code = DT_F8E5M2;
            else if (k[0] == 'f') code = sz == 8 ? DT_F64 : sz == 4 ? DT_F32 : sz == 2 ? DT_F16 : -1;
            else if (k[0] == 'i')
                code = sz == 1 ? DT_I8 : sz == 2 ? DT_I16 : sz == 4 ? DT_I32 : sz == 8 ? DT_I64 : -1;
            else if (k[0] == 'u')
                code = sz == 1 ? DT_U8 : sz == 2 ? DT_U16 : sz == 4 ? DT_U32 : sz == 8 ? DT_U64 : -1;
            else if (k[0] == 'b' && sz == 1) code = DT_BOOL;
        }
    }
    /* Whatever failed above (a missing attribute, a non-string, an unknown dtype): an
     * exception is set before -1 goes back. */
    if (code < 0 && !PyErr_Occurred())
        PyErr_Format(PyExc_TypeError, "model_diff.kernel: unsupported dtype %R", dt);
    Py_XDECREF(kind); Py_XDECREF(size); Py_XDECREF(order); Py_XDECREF(name);
    Py_DECREF(dt);
    return code;
}

typedef struct {
    Py_buffer f, c;
    int have_f, have_c;
} AccBufs;

static int is_format(const Py_buffer *b, const char *a, const char *alt) {
    const char *f = b->format ? b->format : "B"; /* NULL means unsigned bytes */
    return strcmp(f, a) == 0 || (alt && strcmp(f, alt) == 0);
}

static int get_accs(PyObject *fo, PyObject *co, AccBufs *ab) {
    ab->have_f = ab->have_c = 0;
    if (PyObject_GetBuffer(fo, &ab->f, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    ab->have_f = 1;
    if (PyObject_GetBuffer(co, &ab->c, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    ab->have_c = 1;
    if (ab->f.len != (Py_ssize_t)(NF * sizeof(double)) || !is_format(&ab->f, "d", NULL)) {
        PyErr_SetString(PyExc_ValueError, "facc must be a float64 array of metrics.NF slots");
        return -1;
    }
    if (ab->c.len != (Py_ssize_t)(NC * sizeof(int64_t)) || ab->c.itemsize != 8 ||
        !is_format(&ab->c, "l", "q")) {
        PyErr_SetString(PyExc_ValueError, "cacc must be an int64 array of metrics.NC slots");
        return -1;
    }
    return 0;
}

static void release_accs(AccBufs *ab) {
    if (ab->have_f) PyBuffer_Release(&ab->f);
    if (ab->have_c) PyBuffer_Release(&ab->c);
}

/* Add a chunk's result into the caller's accumulators (same folding as the numpy step). */
static void store(const Acc *t, AccBufs *ab) {
    Acc cur;
    memcpy(cur.f, ab->f.buf, sizeof(cur.f));
    memcpy(cur.c, ab->c.buf, sizeof(cur.c));
    acc_merge(&cur, t);
    memcpy(ab->f.buf, cur.f, sizeof(cur.f));
    memcpy(ab->c.buf, cur.c, sizeof(cur.c));
}

/* Both objects' buffers (PyBUF_SIMPLE): 0, or -1 with neither held and an exception set. */
static int get_two_buffers(PyObject *a, PyObject *b, Py_buffer *va, Py_buffer *vb) {
    if (PyObject_GetBuffer(a, va, PyBUF_SIMPLE) < 0) return -1;
    if (PyObject_GetBuffer(b, vb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(va);
        return -1;
    }
    return 0;
}

/* The elements in a buffer of dtype dt, or -1 with ValueError set when the byte length is not
 * a whole number of elements. */
static Py_ssize_t element_count(const Py_buffer *v, int dt, const char *what) {
    if (v->len % ITEMSIZE[dt] != 0) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %d-byte elements",
                     what, v->len, ITEMSIZE[dt]);
        return -1;
    }
    return v->len / ITEMSIZE[dt];
}

/* The call's context: the module state's tables, and the SIMD level the caller's ``simd``
 * asks for: True (or any true object but a string) the best the CPU has, False the portable
 * loops, a SIMD_NAMES string that level, which the CPU must have (ValueError otherwise).
 * Returns 0, or -1 with an exception set. */
static int make_ctx(PyObject *module, PyObject *simd, Ctx *cx) {
    const KernelState *st = (const KernelState *)PyModule_GetState(module);
    cx->f8_e4m3 = st->f8_e4m3;
    cx->f8_e5m2 = st->f8_e5m2;
    cx->vec = st->cpu_level;
    if (!simd) return 0;
    if (PyUnicode_Check(simd)) {
        const char *name = PyUnicode_AsUTF8(simd);
        if (!name) return -1;
        for (int i = 0; i < SIMD_COUNT; i++) {
            if (strcmp(name, SIMD_NAMES[i]) == 0) {
                if (i > st->cpu_level) {
                    PyErr_Format(PyExc_ValueError,
                                 "model_diff.kernel: simd=%R is not available on this CPU "
                                 "(kernel.SIMD is '%s')",
                                 simd, SIMD_NAMES[st->cpu_level]);
                    return -1;
                }
                cx->vec = i;
                return 0;
            }
        }
        PyErr_Format(PyExc_ValueError,
                     "model_diff.kernel: simd must be True, False, 'avx512', 'avx2' or 'none', "
                     "not %R",
                     simd);
        return -1;
    }
    int on = PyObject_IsTrue(simd);
    if (on < 0) return -1;
    if (!on) cx->vec = SIMD_NONE;
    return 0;
}

/* The set-up every step call shares: the element count of vx read as dtype dt, the caller's
 * accumulators and the call's context. Returns the count, or -1 with an exception set (ab
 * may hold buffers either way: the caller releases them). */
static Py_ssize_t step_setup(PyObject *self, PyObject *simd, const Py_buffer *vx, int dt,
                             const char *what, PyObject *fo, PyObject *co, AccBufs *ab,
                             Ctx *cx) {
    Py_ssize_t n = element_count(vx, dt, what);
    if (n < 0 || get_accs(fo, co, ab) < 0 || make_ctx(self, simd, cx) < 0) return -1;
    return n;
}

/* Below this many bytes, releasing the GIL costs more than it gains. */
#define NOGIL_BYTES (64 * 1024)

static PyObject *py_pair_step(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"a", "b", "threshold", "facc", "cacc", "simd", "a_dtype", "b_dtype",
                             NULL};
    PyObject *a, *b, *fo, *co, *simd = NULL;
    double thr;
    const char *a_dtype = NULL, *b_dtype = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOdOO|$Ozz:pair_step", kwlist, &a, &b, &thr,
                                     &fo, &co, &simd, &a_dtype, &b_dtype))
        return NULL;
    int dta = dtype_code(a, a_dtype);
    if (dta < 0) return NULL;
    int dtb = dtype_code(b, b_dtype);
    if (dtb < 0) return NULL;
    Py_buffer va, vb;
    if (get_two_buffers(a, b, &va, &vb) < 0) return NULL;
    PyObject *ret = NULL;
    AccBufs ab = {0};
    Ctx cx;
    Py_ssize_t na = step_setup(self, simd, &va, dta, "pair_step", fo, co, &ab, &cx), nb;
    if (na < 0) goto done;
    if ((nb = element_count(&vb, dtb, "pair_step")) < 0) goto done;
    if (na != nb) {
        PyErr_Format(PyExc_ValueError, "pair_step: length mismatch: %zd vs %zd", na, nb);
        goto done;
    }
    const size_t n = (size_t)na;
    Acc t;
    acc_init(&t);
    if ((size_t)(va.len + vb.len) >= NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        pair_run(&cx, dta, (const char *)va.buf, dtb, (const char *)vb.buf, n, thr, &t);
        Py_END_ALLOW_THREADS
    } else {
        pair_run(&cx, dta, (const char *)va.buf, dtb, (const char *)vb.buf, n, thr, &t);
    }
    store(&t, &ab);
    ret = Py_None;
    Py_INCREF(ret);
done:
    release_accs(&ab);
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    return ret;
}

static PyObject *py_side_step(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"x", "facc", "cacc", "simd", "dtype", NULL};
    PyObject *x, *fo, *co, *simd = NULL;
    const char *x_dtype = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|$Oz:side_step", kwlist, &x, &fo, &co,
                                     &simd, &x_dtype))
        return NULL;
    int dt = dtype_code(x, x_dtype);
    if (dt < 0) return NULL;
    Py_buffer vx;
    if (PyObject_GetBuffer(x, &vx, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *ret = NULL;
    AccBufs ab = {0};
    Ctx cx;
    Py_ssize_t nx = step_setup(self, simd, &vx, dt, "side_step", fo, co, &ab, &cx);
    if (nx < 0) goto done;
    const size_t n = (size_t)nx;
    Acc t;
    acc_init(&t);
    if ((size_t)vx.len >= NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        side_run(&cx, dt, (const char *)vx.buf, n, &t);
        Py_END_ALLOW_THREADS
    } else {
        side_run(&cx, dt, (const char *)vx.buf, n, &t);
    }
    store(&t, &ab);
    ret = Py_None;
    Py_INCREF(ret);
done:
    release_accs(&ab);
    PyBuffer_Release(&vx);
    return ret;
}

/* Elements side_step_if_equal compares before side_run reads them: a multiple of BLOCK, so
 * the statistics fold exactly as one side_run over the whole, and small enough (64 KiB of
 * bfloat16 per side) that the block is still in cache when side_run reads it. */
#define EQUAL_BLOCK (16 * BLOCK)

/* side_run over px when px and py hold the same n elements' bytes (1), else 0 at the first
 * block that differs (total then holds a partial sum the caller discards). */
static int equal_side_run(const Ctx *cx, int dt, const char *px, const char *py, size_t n,
                          Acc *total) {
    const size_t es = (size_t)ITEMSIZE[dt];
    for (size_t start = 0; start < n; start += EQUAL_BLOCK) {
        size_t len = n - start < EQUAL_BLOCK ? n - start : EQUAL_BLOCK;
        if (memcmp(px + start * es, py + start * es, len * es) != 0) return 0;
        side_run(cx, dt, px + start * es, len, total);
    }
    return 1;
}

/* Bytes bytes_equal compares before it lets go of the GIL: a modified tensor usually differs
 * in its first bytes, and letting go of the GIL for that would hand it to a waiting thread
 * and queue this one behind that thread's Python. */
#define EQUAL_PROBE 4096

static PyObject *py_bytes_equal(PyObject *self, PyObject *args) {
    PyObject *a, *b;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO:bytes_equal", &a, &b)) return NULL;
    Py_buffer va, vb;
    if (get_two_buffers(a, b, &va, &vb) < 0) return NULL;
    int eq = va.len == vb.len;
    if (eq) {
        size_t n = (size_t)va.len, probe = n < EQUAL_PROBE ? n : EQUAL_PROBE;
        eq = memcmp(va.buf, vb.buf, probe) == 0;
        if (eq && n > probe) {
            const char *pa = (const char *)va.buf + probe, *pb = (const char *)vb.buf + probe;
            Py_BEGIN_ALLOW_THREADS
            eq = memcmp(pa, pb, n - probe) == 0;
            Py_END_ALLOW_THREADS
        }
    }
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    return PyBool_FromLong(eq);
}

/* side_step of x when x and other hold the same bytes, in one pass: each block is compared,
 * then read for statistics while it is still in cache. Returns True with the accumulators
 * updated (exactly as side_step would), or False with them untouched. */
static PyObject *py_side_step_if_equal(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"x", "other", "facc", "cacc", "simd", "dtype", NULL};
    PyObject *x, *y, *fo, *co, *simd = NULL;
    const char *x_dtype = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO|$Oz:side_step_if_equal", kwlist, &x,
                                     &y, &fo, &co, &simd, &x_dtype))
        return NULL;
    int dt = dtype_code(x, x_dtype);
    if (dt < 0) return NULL;
    Py_buffer vx, vy;
    if (get_two_buffers(x, y, &vx, &vy) < 0) return NULL;
    PyObject *ret = NULL;
    AccBufs ab = {0};
    Ctx cx;
    Py_ssize_t nx = step_setup(self, simd, &vx, dt, "side_step_if_equal", fo, co, &ab, &cx);
    if (nx < 0) goto done;
    const char *px = (const char *)vx.buf, *py = (const char *)vy.buf;
    /* a modified tensor differs in its first bytes: answered before letting go of the GIL */
    size_t probe = (size_t)vx.len < EQUAL_PROBE ? (size_t)vx.len : EQUAL_PROBE;
    int eq = vx.len == vy.len && memcmp(px, py, probe) == 0;
    if (eq) {
        Acc t;
        acc_init(&t);
        if ((size_t)vx.len >= NOGIL_BYTES) {
            Py_BEGIN_ALLOW_THREADS
            eq = equal_side_run(&cx, dt, px, py, (size_t)nx, &t);
            Py_END_ALLOW_THREADS
        } else {
            eq = equal_side_run(&cx, dt, px, py, (size_t)nx, &t);
        }
        if (eq) store(&t, &ab);
    }
    ret = PyBool_FromLong(eq);
done:
    release_accs(&ab);
    PyBuffer_Release(&vx);
    PyBuffer_Release(&vy);
    return ret;
}

#ifdef MADV_DONTNEED
/* madvise(MADV_DONTNEED) of bytes [start, start + length) of a read-only file mapping (an
 * mmap.mmap; start page-aligned), without the GIL: unmapping thousands of pages takes a
 * while, and the other workers run their Python meanwhile. Holding the buffer keeps the
 * mapping from being closed during the call. */
static PyObject *py_madvise_dontneed(PyObject *self, PyObject *args) {
    PyObject *obj;
    Py_ssize_t start, length;
    (void)self;
    if (!PyArg_ParseTuple(args, "Onn:madvise_dontneed", &obj, &start, &length)) return NULL;
    Py_buffer v;
    if (PyObject_GetBuffer(obj, &v, PyBUF_SIMPLE) < 0) return NULL;
    if (start < 0 || length < 0 || start > v.len || length > v.len - start) {
        PyBuffer_Release(&v);
        PyErr_SetString(PyExc_ValueError, "madvise_dontneed: range outside the mapping");
        return NULL;
    }
    int rc = 0, err = 0;
    if (length > 0) {
        char *at = (char *)v.buf + start;
        Py_BEGIN_ALLOW_THREADS
        rc = madvise(at, (size_t)length, MADV_DONTNEED);
        err = errno;
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&v);
    if (rc != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}
#endif

static PyMethodDef methods[] = {
    {"pair_step", (PyCFunction)(void (*)(void))py_pair_step, METH_VARARGS | METH_KEYWORDS,
     "pair_step(a, b, threshold, facc, cacc, *, simd=True, a_dtype=None, b_dtype=None): add "
     "one chunk of an old/new pair into the accumulators (same contract as "
     "metrics.numpy_pair_step); simd=True runs the best SIMD level the CPU has (SIMD), "
     "simd=False the portable loops, simd='avx512'|'avx2'|'none' that level (ValueError "
     "when the CPU lacks it); a_dtype/b_dtype (a DTYPES name) read that side's bytes as that dtype (a storage "
     "view: uint16 for bfloat16, uint8 for float8), else the array's numpy dtype decides."},
    {"side_step", (PyCFunction)(void (*)(void))py_side_step, METH_VARARGS | METH_KEYWORDS,
     "side_step(x, facc, cacc, *, simd=True, dtype=None): single-side statistics into the A "
     "slots (same contract as metrics.numpy_side_step); simd as pair_step's; dtype as "
     "pair_step's a_dtype."},
    {"side_step_if_equal", (PyCFunction)(void (*)(void))py_side_step_if_equal,
     METH_VARARGS | METH_KEYWORDS,
     "side_step_if_equal(x, other, facc, cacc, *, simd=True, dtype=None): side_step of x when "
     "x and other (C-contiguous buffers) hold the same bytes, in one pass that compares each "
     "block and then reads it for statistics while it is in cache; returns True, or False "
     "with the accumulators untouched. simd and dtype as side_step's."},
    {"bytes_equal", py_bytes_equal, METH_VARARGS,
     "bytes_equal(a, b): True when both C-contiguous buffers hold the same bytes."},
#ifdef MADV_DONTNEED
    {"madvise_dontneed", py_madvise_dontneed, METH_VARARGS,
     "madvise_dontneed(mm, start, length): madvise(MADV_DONTNEED) of that byte range of a "
     "read-only file mapping (an mmap.mmap; start page-aligned), without the GIL. Only where "
     "the platform has MADV_DONTNEED."},
#endif
    {NULL, NULL, 0, NULL},
};

/* The exec slot: fill this interpreter's state before any call can run, then publish SIMD. */
static int kernel_exec(PyObject *m) {
    KernelState *st = (KernelState *)PyModule_GetState(m);
    if (!st) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "kernel: no module state");
        return -1;
    }
    build_f8_tables(st);
    st->cpu_level = SIMD_NONE;
#if MD_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c")) {
        st->cpu_level = SIMD_AVX2;
#if MD_AVX512
        if (__builtin_cpu_supports("popcnt") && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512bf16"))
            st->cpu_level = SIMD_AVX512;
#endif
    }
#endif
    PyObject *names = PyTuple_New(DT_COUNT);
    if (!names) return -1;
    for (int i = 0; i < DT_COUNT; i++) {
        PyObject *nm = PyUnicode_FromString(DTYPE_NAMES[i]);
        if (!nm) {
            Py_DECREF(names);
            return -1;
        }
        PyTuple_SET_ITEM(names, i, nm);
    }
    int added = PyModule_AddObjectRef(m, "DTYPES", names);
    Py_DECREF(names);
    if (added < 0) return -1;
    /* SIMD_LEVELS: the levels this CPU runs, best first (each a valid simd= argument). */
    PyObject *levels = PyTuple_New(st->cpu_level + 1);
    if (!levels) return -1;
    for (int i = st->cpu_level; i >= 0; i--) {
        PyObject *nm = PyUnicode_FromString(SIMD_NAMES[i]);
        if (!nm) {
            Py_DECREF(levels);
            return -1;
        }
        PyTuple_SET_ITEM(levels, st->cpu_level - i, nm);
    }
    added = PyModule_AddObjectRef(m, "SIMD_LEVELS", levels);
    Py_DECREF(levels);
    if (added < 0) return -1;
    return PyModule_AddStringConstant(m, "SIMD", SIMD_NAMES[st->cpu_level]);
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)kernel_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "kernel",
    "Fused single-pass metric step for model_diff.metrics (see the C source's header).",
    sizeof(KernelState),
    methods,
    slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit_kernel(void) { return PyModuleDef_Init(&module); }
