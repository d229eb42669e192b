// faiss's scalar distance kernels, with four accumulators.
//
// faiss writes fvec_inner_product and fvec_L2sqr as one plain loop and
// leaves the vectorising to the compiler. GCC 12 (Debian's) compiles it to
// a single chain of FMAs into one accumulator, so each FMA waits for the
// one before it: 147 ns per 768-d product in cache, against 86 ns with
// four independent accumulators (measured in the performance issue). HNSW
// spends most of its time in these two functions, one call per neighbour
// visited, on inserts and searches alike.
//
// The linker redirects faiss's calls to them here (`-Wl,--wrap=<symbol>`,
// set by build.rs), so faiss itself is not patched or rebuilt: every call
// from another faiss object file (the flat storage's distance computer,
// the exhaustive search) comes here; calls inside distances_simd.cpp stay
// on faiss's own loop. The sums differ from faiss's only in the order of
// the additions (float rounding, ~1e-7 relative).

#include <cstddef>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace {

inline float horizontal_sum(__m256 v) {
    __m128 low = _mm256_castps256_ps128(v);
    __m128 high = _mm256_extractf128_ps(v, 1);
    low = _mm_add_ps(low, high);
    low = _mm_hadd_ps(low, low);
    low = _mm_hadd_ps(low, low);
    return _mm_cvtss_f32(low);
}

}  // namespace

extern "C" float lakehouse_inner_product(const float* x, const float* y, size_t d) {
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps();
    __m256 a3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= d; i += 8) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    }
    float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < d; ++i) {
        sum += x[i] * y[i];
    }
    return sum;
}

extern "C" float lakehouse_l2_squared(const float* x, const float* y, size_t d) {
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps();
    __m256 a3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24));
        a0 = _mm256_fmadd_ps(d0, d0, a0);
        a1 = _mm256_fmadd_ps(d1, d1, a1);
        a2 = _mm256_fmadd_ps(d2, d2, a2);
        a3 = _mm256_fmadd_ps(d3, d3, a3);
    }
    for (; i + 8 <= d; i += 8) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        a0 = _mm256_fmadd_ps(d0, d0, a0);
    }
    float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < d; ++i) {
        const float t = x[i] - y[i];
        sum += t * t;
    }
    return sum;
}

#else

// Without AVX2 and FMA at compile time: four scalar accumulators, which
// the compiler may vectorise at whatever level it targets.
extern "C" float lakehouse_inner_product(const float* x, const float* y, size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    float sum = (s0 + s1) + (s2 + s3);
    for (; i < d; ++i) {
        sum += x[i] * y[i];
    }
    return sum;
}

extern "C" float lakehouse_l2_squared(const float* x, const float* y, size_t d) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        const float t0 = x[i] - y[i], t1 = x[i + 1] - y[i + 1];
        const float t2 = x[i + 2] - y[i + 2], t3 = x[i + 3] - y[i + 3];
        s0 += t0 * t0;
        s1 += t1 * t1;
        s2 += t2 * t2;
        s3 += t3 * t3;
    }
    float sum = (s0 + s1) + (s2 + s3);
    for (; i < d; ++i) {
        const float t = x[i] - y[i];
        sum += t * t;
    }
    return sum;
}

#endif

// What the linker's --wrap turns faiss's calls into:
// faiss::fvec_inner_product(float const*, float const*, unsigned long) and
// faiss::fvec_L2sqr(float const*, float const*, unsigned long).
extern "C" float __wrap__ZN5faiss18fvec_inner_productEPKfS1_m(
        const float* x, const float* y, size_t d) {
    return lakehouse_inner_product(x, y, d);
}

extern "C" float __wrap__ZN5faiss10fvec_L2sqrEPKfS1_m(const float* x, const float* y, size_t d) {
    return lakehouse_l2_squared(x, y, d);
}
