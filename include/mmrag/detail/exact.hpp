#pragma once
/// @file detail/exact.hpp
/// The canonical scores search ranks its final candidates by: inner product and squared l2 of
/// float rows with products and sums in double (a product of two floats is exact in double, so
/// the only rounding left is the double sum's, ~d·2^-53 relative), and of double rows with the
/// double SIMD kernels. One formula per scalar type, so a pair scores the same on every path.
/// Not API: namespace mmrag::detail. Includes nothing of mmrag above detail/.

#include <cstddef>
#include <type_traits>

#include "mmrag/detail/intrinsics.hpp"

#include "mmrag/detail/simd.hpp"

namespace mmrag::detail {

#if defined(__AVX512F__)
inline double exact_sum_f32(const float* a, const float* b, std::size_t n, bool l2) noexcept {
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512d a0 = _mm512_cvtps_pd(_mm256_loadu_ps(a + i));
    const __m512d a1 = _mm512_cvtps_pd(_mm256_loadu_ps(a + i + 8));
    const __m512d b0 = _mm512_cvtps_pd(_mm256_loadu_ps(b + i));
    const __m512d b1 = _mm512_cvtps_pd(_mm256_loadu_ps(b + i + 8));
    if (l2) {
      const __m512d d0 = _mm512_sub_pd(a0, b0), d1 = _mm512_sub_pd(a1, b1);
      s0 = _mm512_fmadd_pd(d0, d0, s0);
      s1 = _mm512_fmadd_pd(d1, d1, s1);
    } else {
      s0 = _mm512_fmadd_pd(a0, b0, s0);
      s1 = _mm512_fmadd_pd(a1, b1, s1);
    }
  }
  double s = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
  for (; i < n; ++i) {
    const double x = a[i], y = b[i];
    s += l2 ? (x - y) * (x - y) : x * y;
  }
  return s;
}
#elif defined(__AVX__)
inline double exact_sum_f32(const float* a, const float* b, std::size_t n, bool l2) noexcept {
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256d a0 = _mm256_cvtps_pd(_mm_loadu_ps(a + i));
    const __m256d a1 = _mm256_cvtps_pd(_mm_loadu_ps(a + i + 4));
    const __m256d b0 = _mm256_cvtps_pd(_mm_loadu_ps(b + i));
    const __m256d b1 = _mm256_cvtps_pd(_mm_loadu_ps(b + i + 4));
    if (l2) {
      const __m256d d0 = _mm256_sub_pd(a0, b0), d1 = _mm256_sub_pd(a1, b1);
      s0 = _mm256_add_pd(s0, _mm256_mul_pd(d0, d0));
      s1 = _mm256_add_pd(s1, _mm256_mul_pd(d1, d1));
    } else {
      s0 = _mm256_add_pd(s0, _mm256_mul_pd(a0, b0));
      s1 = _mm256_add_pd(s1, _mm256_mul_pd(a1, b1));
    }
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(s0, s1));
  double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) {
    const double x = a[i], y = b[i];
    s += l2 ? (x - y) * (x - y) : x * y;
  }
  return s;
}
#else
inline double exact_sum_f32(const float* a, const float* b, std::size_t n, bool l2) noexcept {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  std::size_t i = 0;
  auto term = [l2](double x, double y) { return l2 ? (x - y) * (x - y) : x * y; };
  for (; i + 4 <= n; i += 4) {
    s0 += term(a[i], b[i]), s1 += term(a[i + 1], b[i + 1]);
    s2 += term(a[i + 2], b[i + 2]), s3 += term(a[i + 3], b[i + 3]);
  }
  for (; i < n; ++i) s0 += term(a[i], b[i]);
  return (s0 + s1) + (s2 + s3);
}
#endif

/// Canonical inner product (l2 = false) or squared Euclidean distance (l2 = true) of a and b.
template <class T>
[[nodiscard]] inline double exact_score(const T* a, const T* b, std::size_t n, bool l2) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return exact_sum_f32(a, b, n, l2);
  } else {
    return l2 ? double(l2_squared_kernel<T>(a, b, n)) : double(dot_kernel<T>(a, b, n));
  }
}

}  // namespace mmrag::detail
