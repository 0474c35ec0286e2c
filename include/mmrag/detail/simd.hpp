#pragma once
/// @file detail/simd.hpp
/// The xsimd kernels behind the similarity functions. Not API: namespace mmrag::detail.
///
/// Each kernel is written once on `xsimd::batch<T, Arch>`; `Arch` defaults to the best
/// architecture the *consumer's* compile flags enable (`-march=native`, `-march=x86-64-v3`).
/// Four independent accumulators hide FMA latency; a scalar tail handles n % W.
/// Preconditions (not checked, the kernels are noexcept): pointers valid for n elements.

#include <cstddef>
#include <type_traits>

// First, before xsimd pulls in <immintrin.h>: GCC 12's false -Wuninitialized alarms, silenced
// for the intrinsics header's text only.
#include "mmrag/detail/intrinsics.hpp"

#include <xsimd/xsimd.hpp>

namespace mmrag::detail {

/// Horizontal sum of a batch: the one shim over xsimd's horizontal add. xsimd 8.1 calls it
/// `hadd` (9.0 renamed it `reduce_add`), and its AVX-512 version needs DQ, so AVX-512 batches
/// use the AVX512F `_mm512_reduce_add_*` sequence instead; other widths use xsimd's shuffles.
template <class T, class Arch>
inline T reduce_add(const xsimd::batch<T, Arch>& v) noexcept {
#if defined(__AVX512F__)
  // Fold the upper 256 bits onto the lower with a lane shuffle (AVX512F; the extract
  // intrinsics would need DQ or trip GCC's -Wuninitialized), then finish on 256-bit batches.
  if constexpr (std::is_base_of_v<xsimd::avx512f, Arch>) {
    if constexpr (std::is_same_v<T, float>) {
      const __m512 hi = _mm512_shuffle_f32x4(v, v, 0xEE);
      return xsimd::hadd(
          xsimd::batch<float, xsimd::avx2>(_mm512_castps512_ps256(_mm512_add_ps(v, hi))));
    }
    if constexpr (std::is_same_v<T, double>) {
      const __m512d hi = _mm512_shuffle_f64x2(v, v, 0xEE);
      return xsimd::hadd(
          xsimd::batch<double, xsimd::avx2>(_mm512_castpd512_pd256(_mm512_add_pd(v, hi))));
    }
  }
#endif
  return xsimd::hadd(v);
}

/// sum_i a[i] * b[i]
template <class T, class Arch = xsimd::default_arch>
inline T dot_kernel(const T* a, const T* b, std::size_t n) noexcept {
  using B = xsimd::batch<T, Arch>;
  constexpr std::size_t W = B::size;
  std::size_t i = 0;
  B acc0(T(0)), acc1(T(0)), acc2(T(0)), acc3(T(0));
  for (; i + 4 * W <= n; i += 4 * W) {
    acc0 = xsimd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), acc0);
    acc1 = xsimd::fma(B::load_unaligned(a + i + W), B::load_unaligned(b + i + W), acc1);
    acc2 = xsimd::fma(B::load_unaligned(a + i + 2 * W), B::load_unaligned(b + i + 2 * W), acc2);
    acc3 = xsimd::fma(B::load_unaligned(a + i + 3 * W), B::load_unaligned(b + i + 3 * W), acc3);
  }
  for (; i + W <= n; i += W)
    acc0 = xsimd::fma(B::load_unaligned(a + i), B::load_unaligned(b + i), acc0);
  T s = reduce_add((acc0 + acc1) + (acc2 + acc3));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

/// sum_i (a[i] - b[i])^2
template <class T, class Arch = xsimd::default_arch>
inline T l2_squared_kernel(const T* a, const T* b, std::size_t n) noexcept {
  using B = xsimd::batch<T, Arch>;
  constexpr std::size_t W = B::size;
  std::size_t i = 0;
  B acc0(T(0)), acc1(T(0)), acc2(T(0)), acc3(T(0));
  for (; i + 4 * W <= n; i += 4 * W) {
    const B d0 = B::load_unaligned(a + i) - B::load_unaligned(b + i);
    const B d1 = B::load_unaligned(a + i + W) - B::load_unaligned(b + i + W);
    const B d2 = B::load_unaligned(a + i + 2 * W) - B::load_unaligned(b + i + 2 * W);
    const B d3 = B::load_unaligned(a + i + 3 * W) - B::load_unaligned(b + i + 3 * W);
    acc0 = xsimd::fma(d0, d0, acc0);
    acc1 = xsimd::fma(d1, d1, acc1);
    acc2 = xsimd::fma(d2, d2, acc2);
    acc3 = xsimd::fma(d3, d3, acc3);
  }
  for (; i + W <= n; i += W) {
    const B d = B::load_unaligned(a + i) - B::load_unaligned(b + i);
    acc0 = xsimd::fma(d, d, acc0);
  }
  T s = reduce_add((acc0 + acc1) + (acc2 + acc3));
  for (; i < n; ++i) {
    const T d = a[i] - b[i];
    s += d * d;
  }
  return s;
}

/// Fused pass for cosine: returns {a·b, a·a, b·b}.
template <class T>
struct DotNorms {
  T ab, aa, bb;
};

template <class T, class Arch = xsimd::default_arch>
inline DotNorms<T> dot_norms_kernel(const T* a, const T* b, std::size_t n) noexcept {
  using B = xsimd::batch<T, Arch>;
  constexpr std::size_t W = B::size;
  std::size_t i = 0;
  B ab0(T(0)), ab1(T(0)), aa0(T(0)), aa1(T(0)), bb0(T(0)), bb1(T(0));
  for (; i + 2 * W <= n; i += 2 * W) {
    const B x0 = B::load_unaligned(a + i), y0 = B::load_unaligned(b + i);
    const B x1 = B::load_unaligned(a + i + W), y1 = B::load_unaligned(b + i + W);
    ab0 = xsimd::fma(x0, y0, ab0);
    aa0 = xsimd::fma(x0, x0, aa0);
    bb0 = xsimd::fma(y0, y0, bb0);
    ab1 = xsimd::fma(x1, y1, ab1);
    aa1 = xsimd::fma(x1, x1, aa1);
    bb1 = xsimd::fma(y1, y1, bb1);
  }
  for (; i + W <= n; i += W) {
    const B x = B::load_unaligned(a + i), y = B::load_unaligned(b + i);
    ab0 = xsimd::fma(x, y, ab0);
    aa0 = xsimd::fma(x, x, aa0);
    bb0 = xsimd::fma(y, y, bb0);
  }
  DotNorms<T> r{reduce_add(ab0 + ab1), reduce_add(aa0 + aa1), reduce_add(bb0 + bb1)};
  for (; i < n; ++i) {
    r.ab += a[i] * b[i];
    r.aa += a[i] * a[i];
    r.bb += b[i] * b[i];
  }
  return r;
}

/// out[r] = q · base[r*stride .. r*stride+n) for r in [0, rows). Four rows at a time, so each
/// query load feeds four FMAs and the base rows stream through once (memory-bound scans).
template <class T, class Arch = xsimd::default_arch>
inline void dot_many_kernel(const T* q, const T* base, std::size_t rows, std::size_t n,
                            std::size_t stride, T* out) noexcept {
  using B = xsimd::batch<T, Arch>;
  constexpr std::size_t W = B::size;
  std::size_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const T* x0 = base + r * stride;
    const T* x1 = x0 + stride;
    const T* x2 = x1 + stride;
    const T* x3 = x2 + stride;
    B a0(T(0)), a1(T(0)), a2(T(0)), a3(T(0));
    std::size_t i = 0;
    for (; i + W <= n; i += W) {
      const B qv = B::load_unaligned(q + i);
      a0 = xsimd::fma(qv, B::load_unaligned(x0 + i), a0);
      a1 = xsimd::fma(qv, B::load_unaligned(x1 + i), a1);
      a2 = xsimd::fma(qv, B::load_unaligned(x2 + i), a2);
      a3 = xsimd::fma(qv, B::load_unaligned(x3 + i), a3);
    }
    T s0 = reduce_add(a0), s1 = reduce_add(a1), s2 = reduce_add(a2), s3 = reduce_add(a3);
    for (; i < n; ++i) {
      s0 += q[i] * x0[i];
      s1 += q[i] * x1[i];
      s2 += q[i] * x2[i];
      s3 += q[i] * x3[i];
    }
    out[r] = s0;
    out[r + 1] = s1;
    out[r + 2] = s2;
    out[r + 3] = s3;
  }
  for (; r < rows; ++r) out[r] = dot_kernel<T, Arch>(q, base + r * stride, n);
}

/// out[r] = ||q - base_r||^2, four rows at a time (see dot_many_kernel).
template <class T, class Arch = xsimd::default_arch>
inline void l2_many_kernel(const T* q, const T* base, std::size_t rows, std::size_t n,
                           std::size_t stride, T* out) noexcept {
  using B = xsimd::batch<T, Arch>;
  constexpr std::size_t W = B::size;
  std::size_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const T* x0 = base + r * stride;
    const T* x1 = x0 + stride;
    const T* x2 = x1 + stride;
    const T* x3 = x2 + stride;
    B a0(T(0)), a1(T(0)), a2(T(0)), a3(T(0));
    std::size_t i = 0;
    for (; i + W <= n; i += W) {
      const B qv = B::load_unaligned(q + i);
      const B d0 = qv - B::load_unaligned(x0 + i);
      const B d1 = qv - B::load_unaligned(x1 + i);
      const B d2 = qv - B::load_unaligned(x2 + i);
      const B d3 = qv - B::load_unaligned(x3 + i);
      a0 = xsimd::fma(d0, d0, a0);
      a1 = xsimd::fma(d1, d1, a1);
      a2 = xsimd::fma(d2, d2, a2);
      a3 = xsimd::fma(d3, d3, a3);
    }
    T s0 = reduce_add(a0), s1 = reduce_add(a1), s2 = reduce_add(a2), s3 = reduce_add(a3);
    for (; i < n; ++i) {
      const T d0 = q[i] - x0[i], d1 = q[i] - x1[i], d2 = q[i] - x2[i], d3 = q[i] - x3[i];
      s0 += d0 * d0;
      s1 += d1 * d1;
      s2 += d2 * d2;
      s3 += d3 * d3;
    }
    out[r] = s0;
    out[r + 1] = s1;
    out[r + 2] = s2;
    out[r + 3] = s3;
  }
  for (; r < rows; ++r) out[r] = l2_squared_kernel<T, Arch>(q, base + r * stride, n);
}

}  // namespace mmrag::detail
