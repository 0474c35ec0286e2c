#pragma once
/// @file detail/int8.hpp
/// SQ8 scalar quantization (one byte per coordinate, per-dimension range, as FAISS's
/// ScalarQuantizer `QT_8bit`) and its scoring kernels: float × uint8 (exact-rescoring grade)
/// and the int8 × uint8 screen on AVX-512 VNNI / AVX-VNNI `vpdpbusd`. Not API:
/// namespace mmrag::detail.
///
/// Convention (differs from FAISS on purpose; same worst case): per dimension j a range
/// [vmin_j, vmin_j + vdiff_j], codes c ∈ {0..255} decode to the grid point
///     D_j(c) = vmin_j + c · vdiff_j / 255       (the two range ends are reproduced),
/// and encode rounds to the nearest grid point, clamping outside the range. FAISS truncates and
/// decodes to cell centres vmin + (c + 0.5)·vdiff/255; both have worst-case in-range error
/// vdiff_j / 510, but here a dimension's trained min and max are exact grid points.
///
/// Scoring a query q against codes (everything below is against the exact real D(c)):
///   - inner product: q · D(c) = Σ q_j vmin_j + Σ (q_j vdiff_j / 255) c_j = bias + Σ s_j c_j;
///     `prepare_sq8_query` computes s_j (float) and the bias (double) once per query, then
///     `dot_many_u8` computes Σ s_j c_j for a block of rows. Rigorous per-query bound (any c):
///       |bias + K − q·D(c)| ≤ Sq8Query::dot_error  (K the float kernel output, the sum in double)
///     with dot_error = (1 + 2^-40)·[γ53_{dim+4}·Σ|q_j vmin_j| + (u + 2^-52 + γ_{dim+1}·(1 + u +
///     2^-52))·Σ|q_j|·vdiff_j + 512·dim·2^-149], u = 2^-24, γ_n = n·u/(1 − n·u), γ53_n the same
///     with u = 2^-53 (the last term covers gradual underflow).
///   - squared L2: ‖q − D(c)‖² = Σ (a_j − t_j c_j)² with a_j = q_j − vmin_j, t_j = vdiff_j/255
///     (`l2sq_many_u8`). With S the kernel output, γ = γ_{dim+2}, E = Sq8Query::l2_error:
///       √‖q − D(c)‖² ∈ [ (√(S/(1+γ)) − E)/(1+u), (√(S/(1−γ)) + E)/(1−u) ]   (`sq8_l2_bounds`)
///     where E = (1 + 2^-40)·[(1+u)·‖(u·|q_j − vmin_j| + (2u + u²)·vdiff_j)_j‖₂·(1 + 2^-40) +
///     √dim·2^-74] (the last term: the underflow of S, dim·2^-149, moved under the square root).
///   - int8 screen: s_j ≈ scale8 · q8_j with q8_j = round(s_j / scale8) ∈ [−127, 127],
///     scale8 = max_j|s_j| / 127; residual e_j = s_j − scale8·q8_j. With I = Σ q8_j c_j
///     (`dot_many_s8u8`, exact int32 for dim ≤ 66311):
///       |bias8 + scale8·I − q·D(c)| ≤ screen_error   (left side evaluated in double)
///     with screen_error = (1 + 2^-40)·[127.5·Σ|e_j| + γ53_{dim+4}·(Σ|q_j vmin_j| +
///     4·Σ|q_j|·vdiff_j)] and bias8 = bias + 127.5·Σ e_j (centring the codes on 127.5 halves the
///     residual's worst case: Σ e_j c_j = 127.5·Σ e_j + Σ e_j (c_j − 127.5)). Expected size (|e_j|
///     ~ scale8/4): ≈ dim·max_j|q_j·vdiff_j| / 1020 — a screen, not a substitute for dot_many_u8.
///   - the codes against the original vector x (in range): |q·x − q·D(c)| ≤ Σ|q_j|·vdiff_j/510
///     (plus ~2^-50 relative), `sq8_code_error_bound`; for L2 by the triangle inequality
///     |‖q−x‖ − ‖q−D(c)‖| ≤ ‖x − D(c)‖ ≤ ‖(vdiff_j/510)_j‖₂. Vectors added after training may fall
///     outside the range: they clamp, and these code bounds do not hold for them.
///
/// vpdpbusd multiplies an *unsigned* byte by a *signed* byte. SQ8 codes are unsigned and the
/// quantized query signed, so they map onto it directly; no sign correction is needed. (A
/// signed × signed product would need the usual correction: (a + 128)·b − 128·Σb.)
///
/// Selection (consumer's compile flags): AVX-512 F+BW+VL for float × uint8 (16 lanes, masked
/// tails, 4 rows at a time); `__AVX512VNNI__` (+BW) for the 512-bit screen, else `__AVXVNNI__`
/// for 256-bit `vpdpbusd`; else AVX2 (`vpmaddwd` on 16-bit widened bytes, exact); else the
/// `*_portable` functions (scalar / xsimd), correct on any arch including SSE2.
/// Thread safety: every function is reentrant; Sq8Params / Sq8Query are plain values.
/// Source: FAISS `ScalarQuantizer` (QT_8bit, RS_minmax); Intel SDM (VPDPBUSD); bounds after
/// Higham, 2nd ed., §3.1.

// simd.hpp first: it includes <immintrin.h> through detail/intrinsics.hpp, with GCC 12's false
// -Wuninitialized alarms silenced, before anything else can.
#include "mmrag/detail/simd.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "mmrag/detail/float16.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define MMRAG_I8_AVX512 1
#if defined(__AVX512VNNI__)
#define MMRAG_I8_VNNI512 1
#endif
#endif
#if !defined(MMRAG_I8_VNNI512) && defined(__AVXVNNI__) && defined(__AVX2__)
#define MMRAG_I8_AVXVNNI 1
#endif
#if defined(__AVX2__) && defined(__FMA__)
#define MMRAG_I8_AVX2 1
#endif

namespace mmrag::detail {

/// How train_sq8 picks each dimension's range. Measured for cosine / inner product (bench_codecs
/// `quality/*`, 50k × 384 unit-norm clustered embeddings, recall@10 of the f32 × u8 scores):
/// min_max 0.962 vs symmetric 0.951 with per-dimension offsets (relative MSE 6.2e-5 vs 7.6e-5),
/// and still 0.975 vs 0.971 on zero-mean isotropic data (MSE 7.6e-5 vs 8.5e-5): the symmetric
/// range spans 2·max|x| ≥ max − min, so its step is never finer. min_max is the default.
enum class Sq8Range {
  min_max,    ///< [min_j, max_j] of the training rows (FAISS QT_8bit, RS_minmax)
  symmetric,  ///< [−m_j, m_j], m_j = max_j|x|, on 255 codes so that 0 ↔ code 127 (0 exact)
};

/// Per-dimension SQ8 ranges: dimension j spans [vmin[j], vmin[j] + vdiff[j]], vdiff[j] > 0.
struct Sq8Params {
  std::vector<float> vmin, vdiff;
  [[nodiscard]] std::size_t dim() const noexcept { return vmin.size(); }
};

/// Largest dim for which dot_many_s8u8's int32 sums cannot overflow: 127·255·dim < 2^31.
inline constexpr std::size_t kSq8MaxScreenDim = 66311;

/// vdiff for a dimension whose range is empty (all training values equal v): any positive vdiff
/// decodes code 0 to v exactly; this one keeps 255 / vdiff finite and the code bound tiny.
[[nodiscard]] inline float sq8_empty_range_vdiff(float v) noexcept {
  return std::max(std::fabs(v) * 0x1p-16f, 0x1p-60f);
}

/// Trains per-dimension ranges on x (n × dim, row-major, finite values).
/// min_max: vmin = min, vdiff = max − min (in double, rounded up to a float ≥ the exact range,
/// capped at FLT_MAX). symmetric: vmin = −m, vdiff = 2m·255/254 (code 127 ↔ 0, code 255 unused).
/// Empty ranges get sq8_empty_range_vdiff. Throws std::invalid_argument if n or dim is 0.
[[nodiscard]] inline Sq8Params train_sq8(const float* x, std::size_t n, std::size_t dim,
                                         Sq8Range range = Sq8Range::min_max) {
  if (n == 0) throw std::invalid_argument("mmrag::detail::train_sq8: n must be > 0");
  if (dim == 0) throw std::invalid_argument("mmrag::detail::train_sq8: dim must be > 0");
  std::vector<float> lo(x, x + dim), hi(x, x + dim);
  for (std::size_t i = 1; i < n; ++i) {
    const float* row = x + i * dim;
    for (std::size_t j = 0; j < dim; ++j) {
      lo[j] = std::min(lo[j], row[j]);
      hi[j] = std::max(hi[j], row[j]);
    }
  }
  Sq8Params p;
  p.vmin.resize(dim);
  p.vdiff.resize(dim);
  constexpr double fmax = std::numeric_limits<float>::max();
  for (std::size_t j = 0; j < dim; ++j) {
    double base, width;
    if (range == Sq8Range::symmetric) {
      const double m = std::max(std::fabs(double(lo[j])), std::fabs(double(hi[j])));
      base = -m;
      width = 2 * m * 255.0 / 254.0;
    } else {
      base = lo[j];
      width = double(hi[j]) - double(lo[j]);  // exact in double
    }
    p.vmin[j] = static_cast<float>(base);  // exact: ±a float value
    if (!(width > 0)) {
      p.vdiff[j] = sq8_empty_range_vdiff(p.vmin[j]);
      continue;
    }
    float w = static_cast<float>(std::min(width, fmax));
    if (double(w) < width && w < std::numeric_limits<float>::max())
      w = std::nextafter(w, std::numeric_limits<float>::infinity());
    p.vdiff[j] = w;
  }
  return p;
}

/// Code of one value: nearest grid point of [vmin, vmin + vdiff] (255 steps), clamped; NaN → 0.
[[nodiscard]] inline std::uint8_t sq8_code(float x, float vmin, float vdiff) noexcept {
  const double t = (double(x) - double(vmin)) / double(vdiff) * 255.0;
  if (!(t > 0)) return 0;
  if (t >= 255) return 255;
  return static_cast<std::uint8_t>(std::nearbyint(t));
}

/// codes (rows × dim, dim = p.dim()) of x (rows × dim, row-major).
inline void encode_sq8(const Sq8Params& p, const float* x, std::size_t rows,
                       std::uint8_t* codes) noexcept {
  const std::size_t dim = p.dim();
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < dim; ++j)
      codes[r * dim + j] = sq8_code(x[r * dim + j], p.vmin[j], p.vdiff[j]);
}

/// out (rows × dim floats) = D(codes): vmin_j + c·vdiff_j/255 evaluated in double and rounded
/// once, so |out − D| ≤ 2^-24·|D| + 2^-51·(|vmin_j| + vdiff_j).
inline void decode_sq8(const Sq8Params& p, const std::uint8_t* codes, std::size_t rows,
                       float* out) noexcept {
  const std::size_t dim = p.dim();
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < dim; ++j)
      out[r * dim + j] = static_cast<float>(double(p.vmin[j]) + double(codes[r * dim + j]) *
                                                                    (double(p.vdiff[j]) / 255.0));
}

/// Bound on |q·x − q·D(encode(x))| for every x inside the trained ranges:
/// Σ|q_j|·vdiff_j/510, inflated by 2^-40 for the encoder's double rounding near ties.
[[nodiscard]] inline double sq8_code_error_bound(const Sq8Params& p, const float* q) noexcept {
  double s = 0;
  for (std::size_t j = 0; j < p.dim(); ++j) s += std::fabs(double(q[j])) * double(p.vdiff[j]);
  return s / 510.0 * (1 + 0x1p-40);
}

/// γ_n for double arithmetic (u = 2^-53).
[[nodiscard]] constexpr double double_gamma(std::size_t n) noexcept {
  const double nu = static_cast<double>(n) * 0x1p-53;
  return nu / (1.0 - nu);
}

/// Everything one query needs to be scored against SQ8 codes (see the file comment).
struct Sq8Query {
  // inner product: q·D(c) ≈ bias + dot_many_u8(scaled, c)
  std::vector<float> scaled;  ///< s_j = q_j·vdiff_j/255 (float)
  double bias = 0;            ///< Σ q_j vmin_j (double)
  double abs_qvmin = 0;       ///< Σ |q_j vmin_j|
  double abs_qvdiff = 0;      ///< Σ |q_j| vdiff_j (≥ |Σ s_j c_j| / 255 for every code c)
  double dot_error = 0;       ///< bound on |bias + K − q·D(c)| for every code c
  // squared L2: ‖q − D(c)‖² ≈ l2sq_many_u8(shifted, step, c)
  std::vector<float> shifted;  ///< q_j − vmin_j (float)
  std::vector<float> step;     ///< vdiff_j/255 (float)
  double l2_error = 0;         ///< E in sq8_l2_bounds
  // int8 screen: q·D(c) ≈ bias8 + scale8·dot_many_s8u8(q8, c)
  std::vector<std::int8_t> q8;  ///< round(s_j / scale8) ∈ [−127, 127]
  double scale8 = 0;            ///< max_j|s_j| / 127 (0 when q·vdiff = 0)
  double bias8 = 0;             ///< bias + 127.5·Σ_j (s_j − scale8·q8_j)
  double screen_error = 0;      ///< bound on |bias8 + scale8·I − q·D(c)| for every code c
};

/// Fills `out` for query q (dim = p.dim() floats, finite). Reuses out's buffers; allocates only
/// when they grow (may throw std::bad_alloc, leaving out unspecified but valid).
inline void prepare_sq8_query(const Sq8Params& p, const float* q, Sq8Query& out) {
  const std::size_t dim = p.dim();
  out.scaled.resize(dim);
  out.shifted.resize(dim);
  out.step.resize(dim);
  out.q8.resize(dim);
  constexpr double u = kFloatUnit;
  double bias = 0, abs_qvmin = 0, abs_qvdiff = 0, max_s = 0, e2 = 0;
  for (std::size_t j = 0; j < dim; ++j) {
    const double qj = q[j], vmin = p.vmin[j], vdiff = p.vdiff[j];
    bias += qj * vmin;  // products exact in double (24 × 24 bits)
    abs_qvmin += std::fabs(qj * vmin);
    abs_qvdiff += std::fabs(qj * vdiff);
    const double s = qj * vdiff / 255.0;
    out.scaled[j] = static_cast<float>(s);
    max_s = std::max(max_s, std::fabs(s));
    out.shifted[j] = static_cast<float>(qj - vmin);
    out.step[j] = static_cast<float>(vdiff / 255.0);
    const double ej = u * std::fabs(qj - vmin) + (2 * u + u * u) * vdiff;
    e2 += ej * ej;
  }
  out.bias = bias;
  out.abs_qvmin = abs_qvmin;
  out.abs_qvdiff = abs_qvdiff;
  const double gd = double_gamma(dim + 4);
  out.dot_error =
      (gd * abs_qvmin + (u + 0x1p-52 + float_gamma(dim + 1) * (1 + u + 0x1p-52)) * abs_qvdiff +
       2.0 * double(dim) * 0x1p-149 * 256.0) *
      (1 + 0x1p-40);
  out.l2_error =
      ((1 + u) * std::sqrt(e2) * (1 + 0x1p-40) + std::sqrt(double(dim)) * 0x1p-74) * (1 + 0x1p-40);

  out.scale8 = max_s / 127.0;
  double sum_e = 0, sum_abs_e = 0;
  for (std::size_t j = 0; j < dim; ++j) {
    const double s = q[j] * double(p.vdiff[j]) / 255.0;
    double k = out.scale8 > 0 ? std::nearbyint(s / out.scale8) : 0.0;
    k = std::clamp(k, -127.0, 127.0);
    out.q8[j] = static_cast<std::int8_t>(k);
    const double e = s - out.scale8 * k;
    sum_e += e;
    sum_abs_e += std::fabs(e);
  }
  out.bias8 = bias + 127.5 * sum_e;
  // Rounding of the double evaluations (bias, s_j, e_j, sums, scale8·I) is covered by
  // γ53_{dim+4} times the magnitudes involved (Σ|q vmin| and 255·Σ|s_j| ≤ Σ|q_j| vdiff_j).
  out.screen_error = (127.5 * sum_abs_e + gd * (abs_qvmin + 4 * abs_qvdiff)) * (1 + 0x1p-40);
}

/// Convenience form of prepare_sq8_query.
[[nodiscard]] inline Sq8Query prepare_sq8_query(const Sq8Params& p, const float* q) {
  Sq8Query out;
  prepare_sq8_query(p, q, out);
  return out;
}

/// q·D(c) estimated from the dot_many_u8 output k (in double): within qp.dot_error of the exact
/// value, plus 2^-52·|result| for this final double addition.
[[nodiscard]] inline double sq8_dot_score(const Sq8Query& qp, float k) noexcept {
  return qp.bias + double(k);
}

/// q·D(c) estimated from the dot_many_s8u8 output i (in double): within qp.screen_error.
[[nodiscard]] inline double sq8_screen_score(const Sq8Query& qp, std::int32_t i) noexcept {
  return qp.bias8 + qp.scale8 * double(i);
}

/// Interval [lo, hi] certain to contain the exact ‖q − D(c)‖² given the l2sq_many_u8 output s.
struct Sq8L2Bounds {
  double lo, hi;
};
[[nodiscard]] inline Sq8L2Bounds sq8_l2_bounds(const Sq8Query& qp, float s,
                                               std::size_t dim) noexcept {
  const double g = float_gamma(dim + 2), u = kFloatUnit, S = std::max(double(s), 0.0);
  const double lo = std::max((std::sqrt(S / (1 + g)) - qp.l2_error) / (1 + u), 0.0);
  const double hi = (std::sqrt(S / (1 - g)) + qp.l2_error) / (1 - u);
  return {lo * lo * (1 - 0x1p-50), hi * hi * (1 + 0x1p-50)};
}

// ---------------------------------------------------------------------------------------------
// Portable kernels (any arch; templates on Arch so tests can force xsimd::sse2)

/// out[r] = Σ_j w[j]·codes[r·dim + j] (float accumulation; bound: float_dot_error_bound).
template <class Arch = xsimd::default_arch>
inline void dot_many_u8_portable(const float* w, const std::uint8_t* codes, std::size_t rows,
                                 std::size_t dim, float* out) noexcept {
  alignas(64) float buf[kCodecChunk];
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint8_t* c = codes + r * dim;
    float s = 0;
    for (std::size_t i = 0; i < dim; i += kCodecChunk) {
      const std::size_t len = dim - i < kCodecChunk ? dim - i : kCodecChunk;
      for (std::size_t k = 0; k < len; ++k) buf[k] = static_cast<float>(c[i + k]);
      s += dot_kernel<float, Arch>(w + i, buf, len);
    }
    out[r] = s;
  }
}

/// out[r] = Σ_j (a[j] − t[j]·codes[r·dim + j])² (float accumulation).
template <class Arch = xsimd::default_arch>
inline void l2sq_many_u8_portable(const float* a, const float* t, const std::uint8_t* codes,
                                  std::size_t rows, std::size_t dim, float* out) noexcept {
  alignas(64) float buf[kCodecChunk];
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint8_t* c = codes + r * dim;
    float s = 0;
    for (std::size_t i = 0; i < dim; i += kCodecChunk) {
      const std::size_t len = dim - i < kCodecChunk ? dim - i : kCodecChunk;
      for (std::size_t k = 0; k < len; ++k) buf[k] = t[i + k] * static_cast<float>(c[i + k]);
      s += l2_squared_kernel<float, Arch>(a + i, buf, len);
    }
    out[r] = s;
  }
}

/// out[r] = Σ_j q8[j]·codes[r·dim + j], exact (int32; dim ≤ kSq8MaxScreenDim).
inline void dot_many_s8u8_portable(const std::int8_t* q8, const std::uint8_t* codes,
                                   std::size_t rows, std::size_t dim, std::int32_t* out) noexcept {
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint8_t* c = codes + r * dim;
    std::int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t j = 0;
    for (; j + 4 <= dim; j += 4) {
      s0 += std::int32_t(q8[j]) * std::int32_t(c[j]);
      s1 += std::int32_t(q8[j + 1]) * std::int32_t(c[j + 1]);
      s2 += std::int32_t(q8[j + 2]) * std::int32_t(c[j + 2]);
      s3 += std::int32_t(q8[j + 3]) * std::int32_t(c[j + 3]);
    }
    for (; j < dim; ++j) s0 += std::int32_t(q8[j]) * std::int32_t(c[j]);
    out[r] = (s0 + s1) + (s2 + s3);
  }
}

// ---------------------------------------------------------------------------------------------
// Fast paths

#if defined(MMRAG_I8_AVX512)
inline __m512 u8_load16(const std::uint8_t* p) noexcept {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
inline __m512 u8_load16(const std::uint8_t* p, __mmask16 m) noexcept {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)));
}
#endif
#if defined(MMRAG_I8_AVX512) || defined(MMRAG_I8_AVXVNNI) || defined(MMRAG_I8_AVX2)
inline std::int32_t codec_hsum_epi32(__m256i v) noexcept {
  __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0x4E));
  x = _mm_add_epi32(x, _mm_shuffle_epi32(x, 0xB1));
  return _mm_cvtsi128_si32(x);
}
#endif
#if defined(MMRAG_I8_AVX512)
inline std::int32_t codec_hsum_epi32(__m512i v) noexcept {
  const __m512i hi = _mm512_shuffle_i32x4(v, v, 0xEE);
  return codec_hsum_epi32(_mm512_castsi512_si256(_mm512_add_epi32(v, hi)));
}
#endif
#if defined(MMRAG_I8_AVX2)
inline __m256 u8_load8(const std::uint8_t* p) noexcept {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
#endif

/// out[r] = Σ_j w[j]·codes[r·dim + j] for r < rows (codes rows × dim, contiguous): the SQ8
/// inner-product kernel with w = Sq8Query::scaled. Bound: float_dot_error_bound(dim, Σ|w_j| c_j).
inline void dot_many_u8(const float* w, const std::uint8_t* codes, std::size_t rows,
                        std::size_t dim, float* out) noexcept {
#if defined(MMRAG_I8_AVX512)
  const std::size_t tail = dim % 16, body = dim - tail;
  const __mmask16 tm = codec_mask16(tail);
  // Row blocks of 4, then the tail from `full` (an explicit start: GCC 12 otherwise raises a
  // false -Waggressive-loop-optimizations on the tail when rows is a known multiple of 4).
  const std::size_t full = rows - rows % 4;
  std::size_t r = 0;
  for (; r < full; r += 4) {
    const std::uint8_t* c0 = codes + r * dim;
    const std::uint8_t *c1 = c0 + dim, *c2 = c1 + dim, *c3 = c2 + dim;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
           a3 = _mm512_setzero_ps();
    for (std::size_t i = 0; i < body; i += 16) {
      const __m512 wv = _mm512_loadu_ps(w + i);
      a0 = _mm512_fmadd_ps(wv, u8_load16(c0 + i), a0);
      a1 = _mm512_fmadd_ps(wv, u8_load16(c1 + i), a1);
      a2 = _mm512_fmadd_ps(wv, u8_load16(c2 + i), a2);
      a3 = _mm512_fmadd_ps(wv, u8_load16(c3 + i), a3);
    }
    if (tail) {
      const __m512 wv = _mm512_maskz_loadu_ps(tm, w + body);
      a0 = _mm512_fmadd_ps(wv, u8_load16(c0 + body, tm), a0);
      a1 = _mm512_fmadd_ps(wv, u8_load16(c1 + body, tm), a1);
      a2 = _mm512_fmadd_ps(wv, u8_load16(c2 + body, tm), a2);
      a3 = _mm512_fmadd_ps(wv, u8_load16(c3 + body, tm), a3);
    }
    out[r] = codec_hsum(a0);
    out[r + 1] = codec_hsum(a1);
    out[r + 2] = codec_hsum(a2);
    out[r + 3] = codec_hsum(a3);
  }
  for (r = full; r < rows; ++r) {
    const std::uint8_t* c = codes + r * dim;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= body; i += 32) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), u8_load16(c + i), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), u8_load16(c + i + 16), a1);
    }
    if (i < body) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), u8_load16(c + i), a0);
    if (tail)
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, w + body), u8_load16(c + body, tm), a1);
    out[r] = codec_hsum(_mm512_add_ps(a0, a1));
  }
#elif defined(MMRAG_I8_AVX2)
  // Row blocks of 4, then the tail from `full` (an explicit start: GCC 12 otherwise raises a
  // false -Waggressive-loop-optimizations on the tail when rows is a known multiple of 4).
  const std::size_t full = rows - rows % 4;
  std::size_t r = 0;
  for (; r < full; r += 4) {
    const std::uint8_t* c0 = codes + r * dim;
    const std::uint8_t *c1 = c0 + dim, *c2 = c1 + dim, *c3 = c2 + dim;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 8 <= dim; i += 8) {
      const __m256 wv = _mm256_loadu_ps(w + i);
      a0 = _mm256_fmadd_ps(wv, u8_load8(c0 + i), a0);
      a1 = _mm256_fmadd_ps(wv, u8_load8(c1 + i), a1);
      a2 = _mm256_fmadd_ps(wv, u8_load8(c2 + i), a2);
      a3 = _mm256_fmadd_ps(wv, u8_load8(c3 + i), a3);
    }
    float s0 = codec_hsum(a0), s1 = codec_hsum(a1), s2 = codec_hsum(a2), s3 = codec_hsum(a3);
    for (; i < dim; ++i) {
      s0 += w[i] * float(c0[i]);
      s1 += w[i] * float(c1[i]);
      s2 += w[i] * float(c2[i]);
      s3 += w[i] * float(c3[i]);
    }
    out[r] = s0;
    out[r + 1] = s1;
    out[r + 2] = s2;
    out[r + 3] = s3;
  }
  if (full < rows) dot_many_u8_portable(w, codes + full * dim, rows - full, dim, out + full);
#else
  dot_many_u8_portable(w, codes, rows, dim, out);
#endif
}

/// out[r] = Σ_j (a[j] − t[j]·codes[r·dim + j])² for r < rows: the SQ8 squared-L2 kernel with
/// a = Sq8Query::shifted, t = Sq8Query::step; sq8_l2_bounds turns it into a certain interval.
inline void l2sq_many_u8(const float* a, const float* t, const std::uint8_t* codes,
                         std::size_t rows, std::size_t dim, float* out) noexcept {
#if defined(MMRAG_I8_AVX512)
  const std::size_t tail = dim % 16, body = dim - tail;
  const __mmask16 tm = codec_mask16(tail);
  // Row blocks of 4, then the tail from `full` (an explicit start: GCC 12 otherwise raises a
  // false -Waggressive-loop-optimizations on the tail when rows is a known multiple of 4).
  const std::size_t full = rows - rows % 4;
  std::size_t r = 0;
  for (; r < full; r += 4) {
    const std::uint8_t* c0 = codes + r * dim;
    const std::uint8_t *c1 = c0 + dim, *c2 = c1 + dim, *c3 = c2 + dim;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
           a3 = _mm512_setzero_ps();
    const auto step = [&](__m512 av, __m512 tv, __m512 x0, __m512 x1, __m512 x2, __m512 x3) {
      const __m512 d0 = _mm512_fnmadd_ps(tv, x0, av), d1 = _mm512_fnmadd_ps(tv, x1, av),
                   d2 = _mm512_fnmadd_ps(tv, x2, av), d3 = _mm512_fnmadd_ps(tv, x3, av);
      a0 = _mm512_fmadd_ps(d0, d0, a0);
      a1 = _mm512_fmadd_ps(d1, d1, a1);
      a2 = _mm512_fmadd_ps(d2, d2, a2);
      a3 = _mm512_fmadd_ps(d3, d3, a3);
    };
    for (std::size_t i = 0; i < body; i += 16)
      step(_mm512_loadu_ps(a + i), _mm512_loadu_ps(t + i), u8_load16(c0 + i), u8_load16(c1 + i),
           u8_load16(c2 + i), u8_load16(c3 + i));
    if (tail)
      step(_mm512_maskz_loadu_ps(tm, a + body), _mm512_maskz_loadu_ps(tm, t + body),
           u8_load16(c0 + body, tm), u8_load16(c1 + body, tm), u8_load16(c2 + body, tm),
           u8_load16(c3 + body, tm));
    out[r] = codec_hsum(a0);
    out[r + 1] = codec_hsum(a1);
    out[r + 2] = codec_hsum(a2);
    out[r + 3] = codec_hsum(a3);
  }
  for (r = full; r < rows; ++r) {
    const std::uint8_t* c = codes + r * dim;
    __m512 acc = _mm512_setzero_ps();
    for (std::size_t i = 0; i < body; i += 16) {
      const __m512 d =
          _mm512_fnmadd_ps(_mm512_loadu_ps(t + i), u8_load16(c + i), _mm512_loadu_ps(a + i));
      acc = _mm512_fmadd_ps(d, d, acc);
    }
    if (tail) {
      const __m512 d =
          _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(tm, t + body), u8_load16(c + body, tm),
                           _mm512_maskz_loadu_ps(tm, a + body));
      acc = _mm512_fmadd_ps(d, d, acc);
    }
    out[r] = codec_hsum(acc);
  }
#elif defined(MMRAG_I8_AVX2)
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint8_t* c = codes + r * dim;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    std::size_t i = 0;
    for (; i + 16 <= dim; i += 16) {
      const __m256 d0 =
          _mm256_fnmadd_ps(_mm256_loadu_ps(t + i), u8_load8(c + i), _mm256_loadu_ps(a + i));
      const __m256 d1 = _mm256_fnmadd_ps(_mm256_loadu_ps(t + i + 8), u8_load8(c + i + 8),
                                         _mm256_loadu_ps(a + i + 8));
      a0 = _mm256_fmadd_ps(d0, d0, a0);
      a1 = _mm256_fmadd_ps(d1, d1, a1);
    }
    for (; i + 8 <= dim; i += 8) {
      const __m256 d =
          _mm256_fnmadd_ps(_mm256_loadu_ps(t + i), u8_load8(c + i), _mm256_loadu_ps(a + i));
      a0 = _mm256_fmadd_ps(d, d, a0);
    }
    float s = codec_hsum(_mm256_add_ps(a0, a1));
    for (; i < dim; ++i) {
      const float d = a[i] - t[i] * float(c[i]);
      s += d * d;
    }
    out[r] = s;
  }
#else
  l2sq_many_u8_portable(a, t, codes, rows, dim, out);
#endif
}

/// out[r] = Σ_j q8[j]·codes[r·dim + j] for r < rows, exact in int32 (precondition:
/// dim ≤ kSq8MaxScreenDim). `vpdpbusd` (codes unsigned, query signed) on AVX-512 VNNI or AVX-VNNI.
inline void dot_many_s8u8(const std::int8_t* q8, const std::uint8_t* codes, std::size_t rows,
                          std::size_t dim, std::int32_t* out) noexcept {
#if defined(MMRAG_I8_VNNI512)
  const std::size_t tail = dim % 64, body = dim - tail;
  const __mmask64 tm = tail ? (~std::uint64_t(0) >> (64 - tail)) : 0;
  const auto ld = [](const void* p) { return _mm512_loadu_si512(p); };
  // Row blocks of 4, then the tail from `full` (an explicit start: GCC 12 otherwise raises a
  // false -Waggressive-loop-optimizations on the tail when rows is a known multiple of 4).
  const std::size_t full = rows - rows % 4;
  std::size_t r = 0;
  for (; r < full; r += 4) {
    const std::uint8_t* c0 = codes + r * dim;
    const std::uint8_t *c1 = c0 + dim, *c2 = c1 + dim, *c3 = c2 + dim;
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512(), a2 = _mm512_setzero_si512(),
            a3 = _mm512_setzero_si512();
    for (std::size_t i = 0; i < body; i += 64) {
      const __m512i qv = ld(q8 + i);
      a0 = _mm512_dpbusd_epi32(a0, ld(c0 + i), qv);
      a1 = _mm512_dpbusd_epi32(a1, ld(c1 + i), qv);
      a2 = _mm512_dpbusd_epi32(a2, ld(c2 + i), qv);
      a3 = _mm512_dpbusd_epi32(a3, ld(c3 + i), qv);
    }
    if (tail) {
      const __m512i qv = _mm512_maskz_loadu_epi8(tm, q8 + body);
      a0 = _mm512_dpbusd_epi32(a0, _mm512_maskz_loadu_epi8(tm, c0 + body), qv);
      a1 = _mm512_dpbusd_epi32(a1, _mm512_maskz_loadu_epi8(tm, c1 + body), qv);
      a2 = _mm512_dpbusd_epi32(a2, _mm512_maskz_loadu_epi8(tm, c2 + body), qv);
      a3 = _mm512_dpbusd_epi32(a3, _mm512_maskz_loadu_epi8(tm, c3 + body), qv);
    }
    out[r] = codec_hsum_epi32(a0);
    out[r + 1] = codec_hsum_epi32(a1);
    out[r + 2] = codec_hsum_epi32(a2);
    out[r + 3] = codec_hsum_epi32(a3);
  }
  for (r = full; r < rows; ++r) {
    const std::uint8_t* c = codes + r * dim;
    __m512i a = _mm512_setzero_si512();
    for (std::size_t i = 0; i < body; i += 64) a = _mm512_dpbusd_epi32(a, ld(c + i), ld(q8 + i));
    if (tail)
      a = _mm512_dpbusd_epi32(a, _mm512_maskz_loadu_epi8(tm, c + body),
                              _mm512_maskz_loadu_epi8(tm, q8 + body));
    out[r] = codec_hsum_epi32(a);
  }
#elif defined(MMRAG_I8_AVXVNNI)
  const auto ld = [](const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); };
  // Row blocks of 4, then the tail from `full` (an explicit start: GCC 12 otherwise raises a
  // false -Waggressive-loop-optimizations on the tail when rows is a known multiple of 4).
  const std::size_t full = rows - rows % 4;
  std::size_t r = 0;
  for (; r < full; r += 4) {
    const std::uint8_t* c0 = codes + r * dim;
    const std::uint8_t *c1 = c0 + dim, *c2 = c1 + dim, *c3 = c2 + dim;
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256(), a2 = _mm256_setzero_si256(),
            a3 = _mm256_setzero_si256();
    std::size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
      const __m256i qv = ld(q8 + i);
      a0 = _mm256_dpbusd_avx_epi32(a0, ld(c0 + i), qv);
      a1 = _mm256_dpbusd_avx_epi32(a1, ld(c1 + i), qv);
      a2 = _mm256_dpbusd_avx_epi32(a2, ld(c2 + i), qv);
      a3 = _mm256_dpbusd_avx_epi32(a3, ld(c3 + i), qv);
    }
    std::int32_t s0 = codec_hsum_epi32(a0), s1 = codec_hsum_epi32(a1), s2 = codec_hsum_epi32(a2),
                 s3 = codec_hsum_epi32(a3);
    for (; i < dim; ++i) {
      const std::int32_t qi = q8[i];
      s0 += qi * c0[i];
      s1 += qi * c1[i];
      s2 += qi * c2[i];
      s3 += qi * c3[i];
    }
    out[r] = s0;
    out[r + 1] = s1;
    out[r + 2] = s2;
    out[r + 3] = s3;
  }
  if (full < rows) dot_many_s8u8_portable(q8, codes + full * dim, rows - full, dim, out + full);
#elif defined(MMRAG_I8_AVX2)
  // No VNNI: widen bytes to 16 bits and use vpmaddwd (exact: |q·c| ≤ 127·255, pair sums fit
  // int32). vpmaddubsw would saturate its 16-bit pair sums (2·255·127 > 32767).
  for (std::size_t r = 0; r < rows; ++r) {
    const std::uint8_t* c = codes + r * dim;
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    std::size_t i = 0;
    for (; i + 32 <= dim; i += 32) {
      const __m256i qa =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q8 + i)));
      const __m256i qb =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q8 + i + 16)));
      const __m256i ca =
          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i)));
      const __m256i cb =
          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i + 16)));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(qa, ca));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(qb, cb));
    }
    std::int32_t s = codec_hsum_epi32(_mm256_add_epi32(a0, a1));
    for (; i < dim; ++i) s += std::int32_t(q8[i]) * std::int32_t(c[i]);
    out[r] = s;
  }
#else
  dot_many_s8u8_portable(q8, codes, rows, dim, out);
#endif
}

}  // namespace mmrag::detail
