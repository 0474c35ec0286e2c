#pragma once
/// @file detail/float16.hpp
/// IEEE binary16 (float16) codes: conversion and scoring kernels against float32 queries, with
/// F16C / AVX-512F `vcvtph2ps`/`vcvtps2ph` fast paths. Not API: namespace mmrag::detail.
///
/// Also holds the float32 accumulation bounds (`float_gamma`, `float_dot_error_bound`,
/// `float_l2_relative_bound`) that detail/bfloat16.hpp and detail/int8.hpp reuse.
///
/// Selection (the consumer's compile flags, as in detail/simd.hpp; no runtime dispatch):
///   - `__AVX512F__ && __AVX512BW__ && __AVX512VL__`: 16 lanes, masked tails, 4 rows at a time;
///   - else `__F16C__ && __AVX__`: 8 lanes (`_mm256_cvtph_ps`), FMA when `__FMA__`;
///   - else the `*_portable` functions: scalar bit conversion + xsimd float kernels, correct on
///     any arch (SSE2 included). They are always defined so tests can compare both paths.
/// Every path gives results within the same documented bound (not bit-identical scores:
/// summation orders differ). `encode_f16` / `decode_f16` are bit-identical on every path.
///
/// Error bounds (u = 2^-24, the float32 unit roundoff; γ_n = n·u / (1 − n·u), n·u < 1; h =
/// decode(code), exact in float32; valid for any summation order, FMA or not, as long as the
/// result is finite — an overflow shows up as ±inf / NaN, never as a wrong finite value):
///   - `dot_f16`, `dot_many_f16`:  |s − Σ q_j h_j| ≤ γ_{dim+1}·Σ|q_j h_j| + dim·2^-149
///                                 (≤ γ_{dim+1}·‖q‖₂‖h‖₂ + dim·2^-149 by Cauchy–Schwarz);
///   - `l2sq_f16`, `l2sq_many_f16`: |s − Σ (q_j − h_j)²| ≤ γ_{dim+2}·Σ (q_j − h_j)² + dim·2^-148
///                                 (relative: the exact distance lies in
///                                 [(s − dim·2^-148)/(1+γ), (s + dim·2^-148)/(1−γ)]);
///   - round trip: |decode(encode(x)) − x| ≤ 2^-11·|x| for 2^-14 ≤ |x| ≤ 65504, ≤ 2^-25 below
///     2^-14 (subnormal halves), and |x| − 65504 for |x| > 65504 (saturation).
/// The additive (underflow) terms assume the default MXCSR; a program that sets FTZ/DAZ (as
/// -ffast-math's startup code does) must read 2^-126 for 2^-149 / 2^-148 in every bound.
/// Thread safety: every function is reentrant (no shared state).
/// Source: IEEE 754-2008 binary16; Intel SDM (VCVTPH2PS / VCVTPS2PH); bounds after Higham,
/// "Accuracy and Stability of Numerical Algorithms", 2nd ed., §3.1 and §4.2.

// simd.hpp first: it includes <immintrin.h> through detail/intrinsics.hpp, with GCC 12's false
// -Wuninitialized alarms silenced, before anything else can.
#include "mmrag/detail/simd.hpp"

#include <bit>
#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define MMRAG_F16_AVX512 1
#elif defined(__F16C__) && defined(__AVX__)
#define MMRAG_F16_F16C 1
#endif

namespace mmrag::detail {

// ---------------------------------------------------------------------------------------------
// Float32 accumulation bounds (shared with bfloat16.hpp and int8.hpp)

/// Unit roundoff of float32 (round to nearest): 2^-24.
inline constexpr double kFloatUnit = 0x1p-24;

/// γ_n = n·u / (1 − n·u) with u = 2^-24 (Higham, Lemma 3.1): |Π(1+δ_i)^{±1} − 1| ≤ γ_n for n
/// roundings. Precondition: n < 2^24 (the kernels' dim is far below).
[[nodiscard]] constexpr double float_gamma(std::size_t n) noexcept {
  const double nu = static_cast<double>(n) * kFloatUnit;
  return nu / (1.0 - nu);
}

/// Rigorous bound on |computed − exact| for a float32 dot product of n terms x_j·y_j with exact
/// float inputs, in any summation order, with or without FMA: γ_{n+1}·abs_sum + n·2^-149, where
/// abs_sum = Σ|x_j y_j| (≤ ‖x‖₂‖y‖₂). The additive term covers gradual underflow.
[[nodiscard]] constexpr double float_dot_error_bound(std::size_t n, double abs_sum) noexcept {
  return float_gamma(n + 1) * abs_sum + static_cast<double>(n) * 0x1p-149;
}

/// γ_{n+2}: a float32 sum of n squared float differences s satisfies |s − l| ≤ γ_{n+2}·l +
/// n·2^-148 against the exact l = Σ (x_j − y_j)² (one rounding in each difference, counted
/// twice when squared, one in a non-fused square, ≤ n − 1 in the additions).
[[nodiscard]] constexpr double float_l2_relative_bound(std::size_t n) noexcept {
  return float_gamma(n + 2);
}

// ---------------------------------------------------------------------------------------------
// Scalar conversions (the reference semantics of every path)

/// float32 → float16, round to nearest even. Values whose rounding would overflow (|x| ≥ 65520,
/// ±inf included) saturate to ±65504 — a search code never turns a large coordinate into inf.
/// NaN stays NaN (quiet bit set, top payload bits kept: the same bits F16C produces).
[[nodiscard]] inline std::uint16_t f32_to_f16(float x) noexcept {
  const std::uint32_t b = std::bit_cast<std::uint32_t>(x);
  const auto sign = static_cast<std::uint16_t>((b >> 16) & 0x8000u);
  const std::uint32_t a = b & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7BFFu);  // >= 65520: saturate
  if (a >= 0x38800000u) {  // normal half: rebias the exponent (127 - 15 = 112), round at bit 13
    std::uint32_t m = a - 0x38000000u;
    m += 0xFFFu + ((m >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | (m >> 13));
  }
  if (a <= 0x33000000u) return sign;  // |x| <= 2^-25 rounds to ±0 (the tie goes to even 0)
  // Subnormal half: round |x| / 2^-24 to an integer (<= 1024, which is the smallest normal).
  const std::uint32_t e = a >> 23;  // 102..112
  const std::uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
  const std::uint32_t shift = 126u - e;  // 14..24
  std::uint32_t r = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (r & 1u))) ++r;
  return static_cast<std::uint16_t>(sign | r);
}

/// float16 → float32, exact (subnormals and infinities included; a signaling NaN comes back
/// quiet with its payload, the bits F16C produces).
[[nodiscard]] inline float f16_to_f32(std::uint16_t h) noexcept {
  // Branch-free selects, so the portable decode loops vectorize. Normal halves: rebias the
  // exponent by 112 (2 × 112 for inf / NaN, whose exponent field is all ones); subnormal halves:
  // m·2^-24 through a normal float (exact, and unaffected by a consumer's DAZ/FTZ flags).
  const std::uint32_t em = h & 0x7FFFu;
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t special = (0u - std::uint32_t(em >= 0x7C00u)) & 0x38000000u;
  const std::uint32_t quiet = (0u - std::uint32_t(em > 0x7C00u)) & 0x400000u;
  const std::uint32_t normal = ((em << 13) + 0x38000000u + special) | quiet;
  const std::uint32_t subnormal = std::bit_cast<std::uint32_t>(
      static_cast<float>(static_cast<std::int32_t>(em)) * 0x1p-24f);  // signed: cvtdq2ps
  const std::uint32_t is_sub = 0u - std::uint32_t(em < 0x400u);       // all ones or zero
  return std::bit_cast<float>(sign | (subnormal & is_sub) | (normal & ~is_sub));
}

// ---------------------------------------------------------------------------------------------
// Portable kernels: correct on any architecture (scalar conversion into a small buffer, then
// the xsimd float kernels of detail/simd.hpp). Templates on Arch so tests can force sse2.

/// Elements converted per chunk by the portable kernels (a stack buffer of floats).
inline constexpr std::size_t kCodecChunk = 256;

/// out[i] = f32_to_f16(x[i]) for i < n.
inline void encode_f16_portable(const float* x, std::size_t n, std::uint16_t* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_f16(x[i]);
}

/// out[i] = f16_to_f32(code[i]) for i < n.
inline void decode_f16_portable(const std::uint16_t* code, std::size_t n, float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = f16_to_f32(code[i]);
}

/// q · decode(code) over dim elements (float accumulation; bound in the file comment).
template <class Arch = xsimd::default_arch>
[[nodiscard]] inline float dot_f16_portable(const float* q, const std::uint16_t* code,
                                            std::size_t dim) noexcept {
  alignas(64) float buf[kCodecChunk];
  float s = 0;
  for (std::size_t i = 0; i < dim; i += kCodecChunk) {
    const std::size_t len = dim - i < kCodecChunk ? dim - i : kCodecChunk;
    decode_f16_portable(code + i, len, buf);
    s += dot_kernel<float, Arch>(q + i, buf, len);
  }
  return s;
}

/// ‖q − decode(code)‖² over dim elements (float accumulation).
template <class Arch = xsimd::default_arch>
[[nodiscard]] inline float l2sq_f16_portable(const float* q, const std::uint16_t* code,
                                             std::size_t dim) noexcept {
  alignas(64) float buf[kCodecChunk];
  float s = 0;
  for (std::size_t i = 0; i < dim; i += kCodecChunk) {
    const std::size_t len = dim - i < kCodecChunk ? dim - i : kCodecChunk;
    decode_f16_portable(code + i, len, buf);
    s += l2_squared_kernel<float, Arch>(q + i, buf, len);
  }
  return s;
}

/// out[r] = q · decode(codes + r·dim) for r < rows.
template <class Arch = xsimd::default_arch>
inline void dot_many_f16_portable(const float* q, const std::uint16_t* codes, std::size_t rows,
                                  std::size_t dim, float* out) noexcept {
  for (std::size_t r = 0; r < rows; ++r) out[r] = dot_f16_portable<Arch>(q, codes + r * dim, dim);
}

/// out[r] = ‖q − decode(codes + r·dim)‖² for r < rows.
template <class Arch = xsimd::default_arch>
inline void l2sq_many_f16_portable(const float* q, const std::uint16_t* codes, std::size_t rows,
                                   std::size_t dim, float* out) noexcept {
  for (std::size_t r = 0; r < rows; ++r) out[r] = l2sq_f16_portable<Arch>(q, codes + r * dim, dim);
}

// ---------------------------------------------------------------------------------------------
// Fast paths

// Small intrinsic helpers shared with bfloat16.hpp and int8.hpp.
#if defined(__AVX__)
/// Horizontal sum of 8 floats (AVX).
inline float codec_hsum(__m256 v) noexcept {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
/// x·y + acc, fused when the consumer enables FMA.
inline __m256 codec_fmadd(__m256 x, __m256 y, __m256 acc) noexcept {
#if defined(__FMA__)
  return _mm256_fmadd_ps(x, y, acc);
#else
  return _mm256_add_ps(_mm256_mul_ps(x, y), acc);
#endif
}
#endif

#if defined(__AVX512F__)
/// Horizontal sum of 16 floats (AVX512F only: no DQ extract).
inline float codec_hsum(__m512 v) noexcept {
  const __m512 hi = _mm512_shuffle_f32x4(v, v, 0xEE);
  return codec_hsum(_mm512_castps512_ps256(_mm512_add_ps(v, hi)));
}
/// Mask of the first k < 16 lanes.
inline __mmask16 codec_mask16(std::size_t k) noexcept {
  return static_cast<__mmask16>((1u << k) - 1u);
}
#endif

#if defined(MMRAG_F16_AVX512)
inline __m512 f16_load16(const std::uint16_t* p) noexcept {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 f16_load16(const std::uint16_t* p, __mmask16 m) noexcept {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
#endif

/// out[i] = f32_to_f16(x[i]) for i < n (bit-identical to the portable conversion).
inline void encode_f16(const float* x, std::size_t n, std::uint16_t* out) noexcept {
#if defined(MMRAG_F16_AVX512)
  // Clamp first (min/max return the NaN operand when it is the second one, so NaN survives),
  // then convert with round to nearest even: RNE(clamp(x)) == saturate(RNE(x)).
  const __m512 hi = _mm512_set1_ps(65504.f), lo = _mm512_set1_ps(-65504.f);
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_max_ps(lo, _mm512_min_ps(hi, _mm512_loadu_ps(x + i)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  if (i < n) {
    const __mmask16 m = codec_mask16(n - i);
    const __m512 v = _mm512_max_ps(lo, _mm512_min_ps(hi, _mm512_maskz_loadu_ps(m, x + i)));
    _mm256_mask_storeu_epi16(out + i, m,
                             _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#elif defined(MMRAG_F16_F16C)
  const __m256 hi = _mm256_set1_ps(65504.f), lo = _mm256_set1_ps(-65504.f);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_max_ps(lo, _mm256_min_ps(hi, _mm256_loadu_ps(x + i)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  encode_f16_portable(x + i, n - i, out + i);
#else
  encode_f16_portable(x, n, out);
#endif
}

/// out[i] = f16_to_f32(code[i]) for i < n (exact on every path).
inline void decode_f16(const std::uint16_t* code, std::size_t n, float* out) noexcept {
#if defined(MMRAG_F16_AVX512)
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, f16_load16(code + i));
  if (i < n) {
    const __mmask16 m = codec_mask16(n - i);
    _mm512_mask_storeu_ps(out + i, m, f16_load16(code + i, m));
  }
#elif defined(MMRAG_F16_F16C)
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(code + i))));
  decode_f16_portable(code + i, n - i, out + i);
#else
  decode_f16_portable(code, n, out);
#endif
}

#if defined(MMRAG_F16_F16C)
inline __m256 f16_load8(const std::uint16_t* p) noexcept {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
#endif

/// q · decode(code): q is dim floats, code dim float16 codes. Bound: see the file comment.
[[nodiscard]] inline float dot_f16(const float* q, const std::uint16_t* code,
                                   std::size_t dim) noexcept {
#if defined(MMRAG_F16_AVX512)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), f16_load16(code + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), f16_load16(code + i + 16), a1);
  }
  for (; i + 16 <= dim; i += 16)
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), f16_load16(code + i), a0);
  if (i < dim) {
    const __mmask16 m = codec_mask16(dim - i);
    a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), f16_load16(code + i, m), a1);
  }
  return codec_hsum(_mm512_add_ps(a0, a1));
#elif defined(MMRAG_F16_F16C)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    a0 = codec_fmadd(_mm256_loadu_ps(q + i), f16_load8(code + i), a0);
    a1 = codec_fmadd(_mm256_loadu_ps(q + i + 8), f16_load8(code + i + 8), a1);
  }
  for (; i + 8 <= dim; i += 8) a0 = codec_fmadd(_mm256_loadu_ps(q + i), f16_load8(code + i), a0);
  float s = codec_hsum(_mm256_add_ps(a0, a1));
  for (; i < dim; ++i) s += q[i] * f16_to_f32(code[i]);
  return s;
#else
  return dot_f16_portable(q, code, dim);
#endif
}

/// ‖q − decode(code)‖² (squared Euclidean distance). Bound: see the file comment.
[[nodiscard]] inline float l2sq_f16(const float* q, const std::uint16_t* code,
                                    std::size_t dim) noexcept {
#if defined(MMRAG_F16_AVX512)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(q + i), f16_load16(code + i));
    const __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16), f16_load16(code + i + 16));
    a0 = _mm512_fmadd_ps(d0, d0, a0);
    a1 = _mm512_fmadd_ps(d1, d1, a1);
  }
  for (; i + 16 <= dim; i += 16) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(q + i), f16_load16(code + i));
    a0 = _mm512_fmadd_ps(d, d, a0);
  }
  if (i < dim) {
    const __mmask16 m = codec_mask16(dim - i);
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, q + i), f16_load16(code + i, m));
    a1 = _mm512_fmadd_ps(d, d, a1);
  }
  return codec_hsum(_mm512_add_ps(a0, a1));
#elif defined(MMRAG_F16_F16C)
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= dim; i += 16) {
    const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), f16_load8(code + i));
    const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), f16_load8(code + i + 8));
    a0 = codec_fmadd(d0, d0, a0);
    a1 = codec_fmadd(d1, d1, a1);
  }
  for (; i + 8 <= dim; i += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(q + i), f16_load8(code + i));
    a0 = codec_fmadd(d, d, a0);
  }
  float s = codec_hsum(_mm256_add_ps(a0, a1));
  for (; i < dim; ++i) {
    const float d = q[i] - f16_to_f32(code[i]);
    s += d * d;
  }
  return s;
#else
  return l2sq_f16_portable(q, code, dim);
#endif
}

/// out[r] = q · decode(codes + r·dim) for r < rows (codes: rows × dim, contiguous). Four rows
/// at a time on AVX-512 so each query load feeds four FMAs.
inline void dot_many_f16(const float* q, const std::uint16_t* codes, std::size_t rows,
                         std::size_t dim, float* out) noexcept {
#if defined(MMRAG_F16_AVX512)
  // Row blocks of 4, then the tail from `full` (an explicit start: GCC 12 otherwise raises a
  // false -Waggressive-loop-optimizations on the tail when rows is a known multiple of 4).
  const std::size_t full = rows - rows % 4;
  std::size_t r = 0;
  for (; r < full; r += 4) {
    const std::uint16_t* c0 = codes + r * dim;
    const std::uint16_t *c1 = c0 + dim, *c2 = c1 + dim, *c3 = c2 + dim;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
           a3 = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 16 <= dim; i += 16) {
      const __m512 qv = _mm512_loadu_ps(q + i);
      a0 = _mm512_fmadd_ps(qv, f16_load16(c0 + i), a0);
      a1 = _mm512_fmadd_ps(qv, f16_load16(c1 + i), a1);
      a2 = _mm512_fmadd_ps(qv, f16_load16(c2 + i), a2);
      a3 = _mm512_fmadd_ps(qv, f16_load16(c3 + i), a3);
    }
    if (i < dim) {
      const __mmask16 m = codec_mask16(dim - i);
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
      a0 = _mm512_fmadd_ps(qv, f16_load16(c0 + i, m), a0);
      a1 = _mm512_fmadd_ps(qv, f16_load16(c1 + i, m), a1);
      a2 = _mm512_fmadd_ps(qv, f16_load16(c2 + i, m), a2);
      a3 = _mm512_fmadd_ps(qv, f16_load16(c3 + i, m), a3);
    }
    out[r] = codec_hsum(a0);
    out[r + 1] = codec_hsum(a1);
    out[r + 2] = codec_hsum(a2);
    out[r + 3] = codec_hsum(a3);
  }
  for (r = full; r < rows; ++r) out[r] = dot_f16(q, codes + r * dim, dim);
#else
  for (std::size_t r = 0; r < rows; ++r) out[r] = dot_f16(q, codes + r * dim, dim);
#endif
}

/// out[r] = ‖q − decode(codes + r·dim)‖² for r < rows (codes: rows × dim, contiguous).
inline void l2sq_many_f16(const float* q, const std::uint16_t* codes, std::size_t rows,
                          std::size_t dim, float* out) noexcept {
#if defined(MMRAG_F16_AVX512)
  // Row blocks of 4, then the tail from `full` (an explicit start: GCC 12 otherwise raises a
  // false -Waggressive-loop-optimizations on the tail when rows is a known multiple of 4).
  const std::size_t full = rows - rows % 4;
  std::size_t r = 0;
  for (; r < full; r += 4) {
    const std::uint16_t* c0 = codes + r * dim;
    const std::uint16_t *c1 = c0 + dim, *c2 = c1 + dim, *c3 = c2 + dim;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
           a3 = _mm512_setzero_ps();
    std::size_t i = 0;
    const auto step = [&](__m512 qv, __m512 x0, __m512 x1, __m512 x2, __m512 x3) {
      const __m512 d0 = _mm512_sub_ps(qv, x0), d1 = _mm512_sub_ps(qv, x1),
                   d2 = _mm512_sub_ps(qv, x2), d3 = _mm512_sub_ps(qv, x3);
      a0 = _mm512_fmadd_ps(d0, d0, a0);
      a1 = _mm512_fmadd_ps(d1, d1, a1);
      a2 = _mm512_fmadd_ps(d2, d2, a2);
      a3 = _mm512_fmadd_ps(d3, d3, a3);
    };
    for (; i + 16 <= dim; i += 16)
      step(_mm512_loadu_ps(q + i), f16_load16(c0 + i), f16_load16(c1 + i), f16_load16(c2 + i),
           f16_load16(c3 + i));
    if (i < dim) {
      const __mmask16 m = codec_mask16(dim - i);
      step(_mm512_maskz_loadu_ps(m, q + i), f16_load16(c0 + i, m), f16_load16(c1 + i, m),
           f16_load16(c2 + i, m), f16_load16(c3 + i, m));
    }
    out[r] = codec_hsum(a0);
    out[r + 1] = codec_hsum(a1);
    out[r + 2] = codec_hsum(a2);
    out[r + 3] = codec_hsum(a3);
  }
  for (r = full; r < rows; ++r) out[r] = l2sq_f16(q, codes + r * dim, dim);
#else
  for (std::size_t r = 0; r < rows; ++r) out[r] = l2sq_f16(q, codes + r * dim, dim);
#endif
}

}  // namespace mmrag::detail
