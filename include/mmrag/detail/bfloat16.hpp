#pragma once
/// @file detail/bfloat16.hpp
/// bfloat16 codes (the upper 16 bits of a float32): conversion, scoring against float32 queries,
/// and bf16 × bf16 dot products with AVX-512 BF16 `vdpbf16ps`. Not API: namespace mmrag::detail.
///
/// Selection (the consumer's compile flags; no runtime dispatch):
///   - `__AVX512F__ && __AVX512BW__ && __AVX512VL__`: 16 float lanes, masked tails, 4 rows at a
///     time (conversion is integer shifts: bf16 → float is exact);
///   - plus `__AVX512BF16__`: `dot_many_bf16_bf16` uses `vdpbf16ps` (32 products per instruction);
///   - otherwise the `*_portable` functions (scalar conversion + xsimd float kernels), correct on
///     any arch including SSE2; always defined so tests compare both paths.
/// The encoder is integer round-to-nearest-even on every path (not `vcvtneps2bf16`, which
/// flushes subnormal inputs to zero), so codes are bit-identical everywhere.
///
/// Error bounds (u = 2^-24, γ_n = n·u/(1 − n·u), h = decode(code) exact in float32, results
/// finite; see detail/float16.hpp for the float accumulation lemmas):
///   - `dot_bf16`, `dot_many_bf16` (float query):
///       |s − Σ q_j h_j| ≤ γ_{dim+1}·Σ|q_j h_j| + dim·2^-149;
///   - `l2sq_bf16`, `l2sq_many_bf16`: |s − Σ (q_j − h_j)²| ≤ γ_{dim+2}·Σ (q_j − h_j)² + dim·2^-148;
///   - `dot_many_bf16_bf16` (query q̃ = encode_bf16(q) also bf16): against the exact q̃ · h,
///       |s − Σ q̃_j h_j| ≤ γ_{dim}·Σ|q̃_j h_j| + 2^-126·(‖q̃‖₁ + ‖h‖₁ + 2·dim)
///     (products of two bf16 are exact in float32; `vdpbf16ps` rounds each addition to nearest
///     even and treats subnormal inputs/outputs as zero: the 2^-126 term; a lane adds only
///     ~dim/16 + 4 terms in sequence, so γ_dim leaves ≥ 8× slack for dim ≥ 32 even under a
///     coarser rounding than the documented RNE). Against the float query q, with
///     |q̃_j − q_j| ≤ 2^-8|q_j| + 2^-134 (RNE to 8 significant bits; finite |q_j| ≤ bf16 max):
///       |s − Σ q_j h_j| ≤ (2^-8 + γ_{dim}(1 + 2^-8))·Σ|q_j h_j| + 2^-126·(2‖q‖₁ + 2‖h‖₁ + 3·dim)
///     — `bf16_screen_error_bound` evaluates it from ‖q‖₂, ‖h‖₂ (Cauchy–Schwarz, ‖v‖₁ ≤ √dim‖v‖₂).
///   - round trip: |decode(encode(x)) − x| ≤ 2^-8·|x| for normal |x| ≤ bf16 max (≈ 3.3895e38),
///     ≤ 2^-134 for subnormal results; larger |x| (and ±inf) saturate to ±3.3895314e38.
/// Thread safety: every function is reentrant.
/// Source: Intel SDM (VDPBF16PS, AVX512_BF16); Kalamkar et al., "A Study of BFLOAT16 for Deep
/// Learning Training" (2019); bounds after Higham, 2nd ed., §3.1.

// simd.hpp first: it includes <immintrin.h> through detail/intrinsics.hpp, with GCC 12's false
// -Wuninitialized alarms silenced, before anything else can.
#include "mmrag/detail/simd.hpp"

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

#include "mmrag/detail/float16.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define MMRAG_BF16_AVX512 1
#if defined(__AVX512BF16__)
#define MMRAG_BF16_DPBF16 1
#endif
#endif

namespace mmrag::detail {

/// Largest finite bfloat16 as bits (0x7F7F = 3.3895314e38).
inline constexpr std::uint16_t kBf16MaxBits = 0x7F7F;

/// float32 → bfloat16, round to nearest even. Values whose rounding would overflow (|x| ≥
/// 0x7F7F8000 as bits, ±inf included) saturate to ±3.3895314e38; NaN stays NaN (quiet bit set,
/// as `vcvtneps2bf16`). Subnormals round like any other value (no flush to zero).
[[nodiscard]] inline std::uint16_t f32_to_bf16(float x) noexcept {
  const std::uint32_t b = std::bit_cast<std::uint32_t>(x);
  const std::uint32_t a = b & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<std::uint16_t>((b >> 16) | 0x40u);
  if (a >= 0x7F7F8000u) return static_cast<std::uint16_t>(((b >> 16) & 0x8000u) | kBf16MaxBits);
  return static_cast<std::uint16_t>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

/// bfloat16 → float32, exact.
[[nodiscard]] inline float bf16_to_f32(std::uint16_t h) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

/// Bound of the whole `dot_many_bf16_bf16` screen against the exact q · h for the float query q
/// (before its rounding to bf16) and the decoded row h (formula in the file comment), from
/// Euclidean norms: (2^-8 + γ_dim(1 + 2^-8))·‖q‖‖h‖ + 2^-126·(2√dim(‖q‖ + ‖h‖) + 3·dim).
[[nodiscard]] inline double bf16_screen_error_bound(std::size_t dim, double q_norm,
                                                    double h_norm) noexcept {
  const double rel = 0x1p-8 + float_gamma(dim) * (1 + 0x1p-8);
  const double tiny =
      0x1p-126 * (2 * std::sqrt(static_cast<double>(dim)) * (q_norm + h_norm) + 3.0 * dim);
  return rel * q_norm * h_norm + tiny;
}

// ---------------------------------------------------------------------------------------------
// Portable kernels

/// out[i] = f32_to_bf16(x[i]) for i < n.
inline void encode_bf16_portable(const float* x, std::size_t n, std::uint16_t* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

/// out[i] = bf16_to_f32(code[i]) for i < n.
inline void decode_bf16_portable(const std::uint16_t* code, std::size_t n, float* out) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(code[i]);
}

/// q · decode(code) over dim elements (float accumulation).
template <class Arch = xsimd::default_arch>
[[nodiscard]] inline float dot_bf16_portable(const float* q, const std::uint16_t* code,
                                             std::size_t dim) noexcept {
  alignas(64) float buf[kCodecChunk];
  float s = 0;
  for (std::size_t i = 0; i < dim; i += kCodecChunk) {
    const std::size_t len = dim - i < kCodecChunk ? dim - i : kCodecChunk;
    decode_bf16_portable(code + i, len, buf);
    s += dot_kernel<float, Arch>(q + i, buf, len);
  }
  return s;
}

/// ‖q − decode(code)‖² over dim elements (float accumulation).
template <class Arch = xsimd::default_arch>
[[nodiscard]] inline float l2sq_bf16_portable(const float* q, const std::uint16_t* code,
                                              std::size_t dim) noexcept {
  alignas(64) float buf[kCodecChunk];
  float s = 0;
  for (std::size_t i = 0; i < dim; i += kCodecChunk) {
    const std::size_t len = dim - i < kCodecChunk ? dim - i : kCodecChunk;
    decode_bf16_portable(code + i, len, buf);
    s += l2_squared_kernel<float, Arch>(q + i, buf, len);
  }
  return s;
}

/// out[r] = q · decode(codes + r·dim).
template <class Arch = xsimd::default_arch>
inline void dot_many_bf16_portable(const float* q, const std::uint16_t* codes, std::size_t rows,
                                   std::size_t dim, float* out) noexcept {
  for (std::size_t r = 0; r < rows; ++r) out[r] = dot_bf16_portable<Arch>(q, codes + r * dim, dim);
}

/// out[r] = ‖q − decode(codes + r·dim)‖².
template <class Arch = xsimd::default_arch>
inline void l2sq_many_bf16_portable(const float* q, const std::uint16_t* codes, std::size_t rows,
                                    std::size_t dim, float* out) noexcept {
  for (std::size_t r = 0; r < rows; ++r) out[r] = l2sq_bf16_portable<Arch>(q, codes + r * dim, dim);
}

/// out[r] = decode(q_bf16) · decode(codes + r·dim): both operands bf16, float accumulation.
template <class Arch = xsimd::default_arch>
inline void dot_many_bf16_bf16_portable(const std::uint16_t* q_bf16, const std::uint16_t* codes,
                                        std::size_t rows, std::size_t dim, float* out) noexcept {
  alignas(64) float qbuf[kCodecChunk];
  alignas(64) float buf[kCodecChunk];
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint16_t* c = codes + r * dim;
    float s = 0;
    for (std::size_t i = 0; i < dim; i += kCodecChunk) {
      const std::size_t len = dim - i < kCodecChunk ? dim - i : kCodecChunk;
      decode_bf16_portable(q_bf16 + i, len, qbuf);  // cheap beside the row: shifts only
      decode_bf16_portable(c + i, len, buf);
      s += dot_kernel<float, Arch>(qbuf, buf, len);
    }
    out[r] = s;
  }
}

// ---------------------------------------------------------------------------------------------
// Fast paths

#if defined(MMRAG_BF16_AVX512)
inline __m512 bf16_load16(const std::uint16_t* p) noexcept {
  return _mm512_castsi512_ps(_mm512_slli_epi32(
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
inline __m512 bf16_load16(const std::uint16_t* p, __mmask16 m) noexcept {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
/// Integer RNE with saturation and NaN quieting on 16 lanes (same bits as f32_to_bf16).
inline __m256i bf16_round16(__m512 x) noexcept {
  const __m512i b = _mm512_castps_si512(x);
  const __m512i a = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF));
  const __m512i hi = _mm512_srli_epi32(b, 16);
  const __m512i bias =
      _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), _mm512_and_si512(hi, _mm512_set1_epi32(1)));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, bias), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7F800000));
  const __mmask16 big = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(0x7F7F8000)) & ~nan;
  r = _mm512_mask_mov_epi32(r, big,
                            _mm512_or_si512(_mm512_and_si512(hi, _mm512_set1_epi32(0x8000)),
                                            _mm512_set1_epi32(kBf16MaxBits)));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}
#endif

/// out[i] = f32_to_bf16(x[i]) for i < n (bit-identical on every path).
inline void encode_bf16(const float* x, std::size_t n, std::uint16_t* out) noexcept {
#if defined(MMRAG_BF16_AVX512)
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), bf16_round16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = codec_mask16(n - i);
    _mm256_mask_storeu_epi16(out + i, m, bf16_round16(_mm512_maskz_loadu_ps(m, x + i)));
  }
#else
  encode_bf16_portable(x, n, out);
#endif
}

/// out[i] = bf16_to_f32(code[i]) for i < n (exact).
inline void decode_bf16(const std::uint16_t* code, std::size_t n, float* out) noexcept {
#if defined(MMRAG_BF16_AVX512)
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, bf16_load16(code + i));
  if (i < n) {
    const __mmask16 m = codec_mask16(n - i);
    _mm512_mask_storeu_ps(out + i, m, bf16_load16(code + i, m));
  }
#else
  decode_bf16_portable(code, n, out);
#endif
}

/// q · decode(code) for a float query (bound in the file comment).
[[nodiscard]] inline float dot_bf16(const float* q, const std::uint16_t* code,
                                    std::size_t dim) noexcept {
#if defined(MMRAG_BF16_AVX512)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), bf16_load16(code + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i + 16), bf16_load16(code + i + 16), a1);
  }
  for (; i + 16 <= dim; i += 16)
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), bf16_load16(code + i), a0);
  if (i < dim) {
    const __mmask16 m = codec_mask16(dim - i);
    a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), bf16_load16(code + i, m), a1);
  }
  return codec_hsum(_mm512_add_ps(a0, a1));
#else
  return dot_bf16_portable(q, code, dim);
#endif
}

/// ‖q − decode(code)‖² for a float query (bound in the file comment).
[[nodiscard]] inline float l2sq_bf16(const float* q, const std::uint16_t* code,
                                     std::size_t dim) noexcept {
#if defined(MMRAG_BF16_AVX512)
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= dim; i += 32) {
    const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(q + i), bf16_load16(code + i));
    const __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(q + i + 16), bf16_load16(code + i + 16));
    a0 = _mm512_fmadd_ps(d0, d0, a0);
    a1 = _mm512_fmadd_ps(d1, d1, a1);
  }
  for (; i + 16 <= dim; i += 16) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(q + i), bf16_load16(code + i));
    a0 = _mm512_fmadd_ps(d, d, a0);
  }
  if (i < dim) {
    const __mmask16 m = codec_mask16(dim - i);
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, q + i), bf16_load16(code + i, m));
    a1 = _mm512_fmadd_ps(d, d, a1);
  }
  return codec_hsum(_mm512_add_ps(a0, a1));
#else
  return l2sq_bf16_portable(q, code, dim);
#endif
}

/// out[r] = q · decode(codes + r·dim) for r < rows (codes: rows × dim, contiguous).
inline void dot_many_bf16(const float* q, const std::uint16_t* codes, std::size_t rows,
                          std::size_t dim, float* out) noexcept {
#if defined(MMRAG_BF16_AVX512)
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
      a0 = _mm512_fmadd_ps(qv, bf16_load16(c0 + i), a0);
      a1 = _mm512_fmadd_ps(qv, bf16_load16(c1 + i), a1);
      a2 = _mm512_fmadd_ps(qv, bf16_load16(c2 + i), a2);
      a3 = _mm512_fmadd_ps(qv, bf16_load16(c3 + i), a3);
    }
    if (i < dim) {
      const __mmask16 m = codec_mask16(dim - i);
      const __m512 qv = _mm512_maskz_loadu_ps(m, q + i);
      a0 = _mm512_fmadd_ps(qv, bf16_load16(c0 + i, m), a0);
      a1 = _mm512_fmadd_ps(qv, bf16_load16(c1 + i, m), a1);
      a2 = _mm512_fmadd_ps(qv, bf16_load16(c2 + i, m), a2);
      a3 = _mm512_fmadd_ps(qv, bf16_load16(c3 + i, m), a3);
    }
    out[r] = codec_hsum(a0);
    out[r + 1] = codec_hsum(a1);
    out[r + 2] = codec_hsum(a2);
    out[r + 3] = codec_hsum(a3);
  }
  for (r = full; r < rows; ++r) out[r] = dot_bf16(q, codes + r * dim, dim);
#else
  dot_many_bf16_portable(q, codes, rows, dim, out);
#endif
}

/// out[r] = ‖q − decode(codes + r·dim)‖² for r < rows.
inline void l2sq_many_bf16(const float* q, const std::uint16_t* codes, std::size_t rows,
                           std::size_t dim, float* out) noexcept {
  for (std::size_t r = 0; r < rows; ++r) out[r] = l2sq_bf16(q, codes + r * dim, dim);
}

/// out[r] = decode(q_bf16) · decode(codes + r·dim) for r < rows: both operands bf16 (encode the
/// query with encode_bf16), float accumulation; `vdpbf16ps` when the consumer enables
/// AVX512_BF16. Bounds (against q̃ · h and against the float query): see the file comment.
inline void dot_many_bf16_bf16(const std::uint16_t* q_bf16, const std::uint16_t* codes,
                               std::size_t rows, std::size_t dim, float* out) noexcept {
#if defined(MMRAG_BF16_DPBF16)
  // 32 bf16 per register. The tail uses zero-masked loads: 0 × 0 adds nothing.
  const auto load = [](const std::uint16_t* p) {
    return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p));
  };
  const auto load_masked = [](const std::uint16_t* p, __mmask32 m) {
    return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, p));
  };
  const std::size_t tail = dim % 32, body = dim - tail;
  const __mmask32 tm = static_cast<__mmask32>((std::uint64_t(1) << tail) - 1);
  // Row blocks of 4, then the tail from `full` (an explicit start: GCC 12 otherwise raises a
  // false -Waggressive-loop-optimizations on the tail when rows is a known multiple of 4).
  const std::size_t full = rows - rows % 4;
  std::size_t r = 0;
  for (; r < full; r += 4) {
    const std::uint16_t* c0 = codes + r * dim;
    const std::uint16_t *c1 = c0 + dim, *c2 = c1 + dim, *c3 = c2 + dim;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
           a3 = _mm512_setzero_ps();
    // Two accumulators per row (b*) halve the dependency chains of vdpbf16ps.
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps(),
           b3 = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 64 <= body; i += 64) {
      const __m512bh qv = load(q_bf16 + i), qw = load(q_bf16 + i + 32);
      a0 = _mm512_dpbf16_ps(a0, qv, load(c0 + i));
      a1 = _mm512_dpbf16_ps(a1, qv, load(c1 + i));
      a2 = _mm512_dpbf16_ps(a2, qv, load(c2 + i));
      a3 = _mm512_dpbf16_ps(a3, qv, load(c3 + i));
      b0 = _mm512_dpbf16_ps(b0, qw, load(c0 + i + 32));
      b1 = _mm512_dpbf16_ps(b1, qw, load(c1 + i + 32));
      b2 = _mm512_dpbf16_ps(b2, qw, load(c2 + i + 32));
      b3 = _mm512_dpbf16_ps(b3, qw, load(c3 + i + 32));
    }
    if (i < body) {
      const __m512bh qv = load(q_bf16 + i);
      a0 = _mm512_dpbf16_ps(a0, qv, load(c0 + i));
      a1 = _mm512_dpbf16_ps(a1, qv, load(c1 + i));
      a2 = _mm512_dpbf16_ps(a2, qv, load(c2 + i));
      a3 = _mm512_dpbf16_ps(a3, qv, load(c3 + i));
    }
    a0 = _mm512_add_ps(a0, b0);
    a1 = _mm512_add_ps(a1, b1);
    a2 = _mm512_add_ps(a2, b2);
    a3 = _mm512_add_ps(a3, b3);
    if (tail) {
      const __m512bh qv = load_masked(q_bf16 + body, tm);
      a0 = _mm512_dpbf16_ps(a0, qv, load_masked(c0 + body, tm));
      a1 = _mm512_dpbf16_ps(a1, qv, load_masked(c1 + body, tm));
      a2 = _mm512_dpbf16_ps(a2, qv, load_masked(c2 + body, tm));
      a3 = _mm512_dpbf16_ps(a3, qv, load_masked(c3 + body, tm));
    }
    out[r] = codec_hsum(a0);
    out[r + 1] = codec_hsum(a1);
    out[r + 2] = codec_hsum(a2);
    out[r + 3] = codec_hsum(a3);
  }
  for (r = full; r < rows; ++r) {
    const std::uint16_t* c = codes + r * dim;
    __m512 a = _mm512_setzero_ps();
    for (std::size_t i = 0; i < body; i += 32)
      a = _mm512_dpbf16_ps(a, load(q_bf16 + i), load(c + i));
    if (tail) a = _mm512_dpbf16_ps(a, load_masked(q_bf16 + body, tm), load_masked(c + body, tm));
    out[r] = codec_hsum(a);
  }
#else
  dot_many_bf16_bf16_portable(q_bf16, codes, rows, dim, out);
#endif
}

}  // namespace mmrag::detail
