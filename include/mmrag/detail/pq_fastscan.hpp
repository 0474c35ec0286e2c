#pragma once
/// @file detail/pq_fastscan.hpp
/// 4-bit product-quantization fast-scan kernels (André, Kermarrec & Le Scouarnec, "Cache locality
/// is not enough: high-performance nearest neighbor search with product quantization fast scan",
/// VLDB 2015; the layout idea of FAISS's IndexPQFastScan, written independently here).
/// Not API: namespace mmrag::detail.
///
/// Block layout: codes of 32 vectors per block; a block holds `mp` (a multiple of 4) groups of 16
/// bytes, one group per sub-quantizer j: byte i (0..15) of group j holds the 4-bit code of vector
/// i in its low nibble and that of vector i + 16 in its high nibble. Sub-quantizers m..mp-1 are
/// padding (code 0, look-up entries 0).
///
/// Look-up table: mp × 16 uint8 entries; the sum over j of lut[j][code_j] is accumulated in
/// uint16 (the quantization below keeps every sum <= 65535, so no lane ever wraps). With
/// AVX-512BW four sub-quantizers are looked up per `vpshufb` (one per 128-bit lane), with AVX2
/// two; the portable path gives bit-identical sums.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "mmrag/detail/intrinsics.hpp"

namespace mmrag::detail {

/// Vectors per fast-scan block.
inline constexpr std::size_t kPqBlock = 32;

/// Sub-quantizers padded to a multiple of 4 (one 512-bit register of look-ups).
[[nodiscard]] constexpr std::size_t pq4_padded(std::size_t m) noexcept {
  return (m + 3) / 4 * 4;
}

/// Bytes of one block of 32 codes.
[[nodiscard]] constexpr std::size_t pq4_block_bytes(std::size_t m) noexcept {
  return pq4_padded(m) * 16;
}

/// Sets the 4-bit code of vector i (0..31) for sub-quantizer j in a block.
inline void pq4_set(std::uint8_t* block, std::size_t j, std::size_t i, std::uint8_t code) noexcept {
  std::uint8_t& b = block[j * 16 + (i & 15)];
  b = i < 16 ? static_cast<std::uint8_t>((b & 0xF0) | (code & 0x0F))
             : static_cast<std::uint8_t>((b & 0x0F) | ((code & 0x0F) << 4));
}

/// The 4-bit code of vector i (0..31) for sub-quantizer j in a block.
[[nodiscard]] inline std::uint8_t pq4_get(const std::uint8_t* block, std::size_t j,
                                          std::size_t i) noexcept {
  const std::uint8_t b = block[j * 16 + (i & 15)];
  return i < 16 ? static_cast<std::uint8_t>(b & 0x0F) : static_cast<std::uint8_t>(b >> 4);
}

/// The quantized table's scale: entry = round(a · (v − min_j)); estimate = sum / a + bias.
struct QuantizedLut {
  double inv_a = 1;  ///< 1 / a
  double bias = 0;   ///< sum over j of min_j
  double a = 1;
};

/// Quantizes a float table (m × 16, row j = sub-quantizer j) to uint8 (mp × 16, padding rows
/// zero) with per-sub-quantizer bias min_j and one global scale a = min(255 / max_j span_j,
/// (65535 − mp) / sum_j span_j), as FAISS's round_uniform_LUT: every entry fits 8 bits and every
/// sum of m entries fits 16 bits. Rounding error: |sum/a + bias − float sum| <= m / (2a).
inline QuantizedLut pq4_quantize_lut(const float* lut, std::size_t m, std::uint8_t* out) noexcept {
  const std::size_t mp = pq4_padded(m);
  double max_span = 0, sum_span = 0, bias = 0;
  // Branch-free loops over each row's 16 entries (the compiler vectorizes them): this runs once
  // per probed list, and m × 16 scalar branches cost as much as scanning the list.
  for (std::size_t j = 0; j < m; ++j) {
    const float* row = lut + j * 16;
    float lo = row[0], hi = row[0];
    for (std::size_t c = 1; c < 16; ++c) lo = std::min(lo, row[c]), hi = std::max(hi, row[c]);
    const double span = double(hi) - double(lo);
    max_span = std::max(max_span, span);
    sum_span += span;
    bias += lo;
  }
  double a = 1;
  if (max_span > 0) a = std::min(255.0 / max_span, (65535.0 - double(mp)) / sum_span);
  for (std::size_t j = 0; j < m; ++j) {
    const float* row = lut + j * 16;
    float lo = row[0];
    for (std::size_t c = 1; c < 16; ++c) lo = std::min(lo, row[c]);
    double v[16];
    for (std::size_t c = 0; c < 16; ++c)
      v[c] = std::min(std::max(std::nearbyint((double(row[c]) - double(lo)) * a), 0.0), 255.0);
    for (std::size_t c = 0; c < 16; ++c) out[j * 16 + c] = static_cast<std::uint8_t>(v[c]);
  }
  std::fill(out + m * 16, out + mp * 16, std::uint8_t(0));
  return {1.0 / a, bias, a};
}

/// Portable reference: out[i] = sum over j < mp of lut[j][code of vector i], in uint16.
inline void pq4_accumulate_portable(const std::uint8_t* lut, const std::uint8_t* block,
                                    std::size_t mp, std::uint16_t* out) noexcept {
  for (std::size_t i = 0; i < kPqBlock; ++i) out[i] = 0;
  for (std::size_t j = 0; j < mp; ++j) {
    const std::uint8_t* t = lut + j * 16;
    const std::uint8_t* g = block + j * 16;
    for (std::size_t i = 0; i < 16; ++i) {
      out[i] = static_cast<std::uint16_t>(out[i] + t[g[i] & 0x0F]);
      out[i + 16] = static_cast<std::uint16_t>(out[i + 16] + t[g[i] >> 4]);
    }
  }
}

#if defined(__AVX2__)  // (AVX-512BW implies it: both kernels share this)
/// Stores a block's 32 sums from the folded 16-bit halves: lane s of an "e" sum is vector 2s,
/// of an "o" sum vector 2s + 1 (lo: vectors 0-15, hi: 16-31), so they are interleaved back.
inline void pq4_store_sums(__m128i lo_e, __m128i lo_o, __m128i hi_e, __m128i hi_o,
                           std::uint16_t* out) noexcept {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_unpacklo_epi16(lo_e, lo_o));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 8), _mm_unpackhi_epi16(lo_e, lo_o));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm_unpacklo_epi16(hi_e, hi_o));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 24), _mm_unpackhi_epi16(hi_e, hi_o));
}

/// AVX2: two sub-quantizers per 256-bit `vpshufb`.
inline void pq4_accumulate_avx2(const std::uint8_t* lut, const std::uint8_t* block, std::size_t mp,
                                std::uint16_t* out) noexcept {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i even = _mm256_set1_epi16(0x00FF);
  __m256i lo_e = _mm256_setzero_si256(), lo_o = lo_e, hi_e = lo_e, hi_o = lo_e;
  for (std::size_t j = 0; j < mp; j += 2) {
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + j * 16));
    const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut + j * 16));
    const __m256i lo = _mm256_shuffle_epi8(t, _mm256_and_si256(c, low4));
    const __m256i hi = _mm256_shuffle_epi8(t, _mm256_and_si256(_mm256_srli_epi16(c, 4), low4));
    lo_e = _mm256_add_epi16(lo_e, _mm256_and_si256(lo, even));
    lo_o = _mm256_add_epi16(lo_o, _mm256_srli_epi16(lo, 8));
    hi_e = _mm256_add_epi16(hi_e, _mm256_and_si256(hi, even));
    hi_o = _mm256_add_epi16(hi_o, _mm256_srli_epi16(hi, 8));
  }
  auto fold = [](__m256i v) {
    return _mm_add_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  };
  pq4_store_sums(fold(lo_e), fold(lo_o), fold(hi_e), fold(hi_o), out);
}
#endif

#if defined(__AVX512BW__)
/// AVX-512BW: four sub-quantizers per 512-bit `vpshufb`.
inline void pq4_accumulate_avx512(const std::uint8_t* lut, const std::uint8_t* block,
                                  std::size_t mp, std::uint16_t* out) noexcept {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i even = _mm512_set1_epi16(0x00FF);
  __m512i lo_e = _mm512_setzero_si512(), lo_o = lo_e, hi_e = lo_e, hi_o = lo_e;
  for (std::size_t j = 0; j < mp; j += 4) {
    const __m512i c = _mm512_loadu_si512(block + j * 16);
    const __m512i t = _mm512_loadu_si512(lut + j * 16);
    const __m512i lo = _mm512_shuffle_epi8(t, _mm512_and_si512(c, low4));
    const __m512i hi = _mm512_shuffle_epi8(t, _mm512_and_si512(_mm512_srli_epi16(c, 4), low4));
    lo_e = _mm512_add_epi16(lo_e, _mm512_and_si512(lo, even));
    lo_o = _mm512_add_epi16(lo_o, _mm512_srli_epi16(lo, 8));
    hi_e = _mm512_add_epi16(hi_e, _mm512_and_si512(hi, even));
    hi_o = _mm512_add_epi16(hi_o, _mm512_srli_epi16(hi, 8));
  }
  auto fold = [](__m512i v) {
    // Lanes (0 + 2, 1 + 3), then the two halves (shuffle, not extract: GCC 12 warns on those).
    const __m256i h = _mm512_castsi512_si256(_mm512_add_epi16(v, _mm512_shuffle_i64x2(v, v, 0x4E)));
    return _mm_add_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  };
  pq4_store_sums(fold(lo_e), fold(lo_o), fold(hi_e), fold(hi_o), out);
}
#endif

/// The widest kernel the consumer's compile flags allow (mp must be a multiple of 4).
inline void pq4_accumulate(const std::uint8_t* lut, const std::uint8_t* block, std::size_t mp,
                           std::uint16_t* out) noexcept {
#if defined(__AVX512BW__)
  pq4_accumulate_avx512(lut, block, mp, out);
#elif defined(__AVX2__)
  pq4_accumulate_avx2(lut, block, mp, out);
#else
  pq4_accumulate_portable(lut, block, mp, out);
#endif
}

}  // namespace mmrag::detail
