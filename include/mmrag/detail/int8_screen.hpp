#pragma once
/// @file detail/int8_screen.hpp
/// Exact search through int8 screening: an SQ8 copy of a float32 FlatIndex's rows, scanned with
/// `vpdpbusd` (detail/int8.hpp), whose every candidate the error bound cannot exclude is then
/// rescored by the driver's one exact formula. Not API: namespace mmrag::detail.
///
/// Bound. For a query q and a stored row x with codes c (SQ8 grid point D(c), detail/int8.hpp):
///     |q·x − (bias8 + scale8·I)| ≤ screen_error + ‖q‖·‖x − D(c)‖
/// where I = Σ q8_j c_j is exact in int32 and the first term is Sq8Query's bound for every code.
/// The second holds for any x, including rows added after training that clamp outside the
/// trained ranges: the copy keeps max_r ‖x_r − D(c_r)‖ (computed in double, rounded up). Keys
/// are evaluated in float from those doubles; `kEvalSlack` relative units cover that rounding.
/// The heap's margin (twice the bound, in key units; for l2 the key holds −2 q·x, so twice
/// that) is widened by this much on top of the driver's own rounding margin; the driver then
/// rescores every candidate inside it with the canonical double formula — so the result equals
/// the float32 exact search, ids and scores.
///
/// Memory: dim rounded up to a multiple of 4 bytes per row (rows in blocks of 16) plus 2 × dim
/// floats of ranges: +25 % over float32 rows when dim is a multiple of 4. Speed: the scan reads a quarter of the bytes and runs 64 multiply-adds per
/// instruction with AVX-512 VNNI (AVX-VNNI: 32; AVX2: exact 16-bit madd; else portable scalar).
/// Thread safety: `scan` is const and reentrant; `build`, `add_reserved`, `replace_codes` and
/// `clear` are not.
/// Source: FAISS ScalarQuantizer QT_8bit (the codes); the screen-then-rescore scheme of exact
/// reduced-precision search; bounds after Higham, 2nd ed., §3.1.

#include "mmrag/detail/int8.hpp"  // first among ours: it brings <immintrin.h> the safe way

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "mmrag/config.hpp"
#include "mmrag/detail/topk.hpp"

// Full unrolling of the per-query loops of the kernel, whatever the optimization level.
#if defined(__clang__)
#define MMRAG_SCREEN_UNROLL _Pragma("unroll")
#else
#define MMRAG_SCREEN_UNROLL _Pragma("GCC unroll 8")
#endif

namespace mmrag::detail {

class Int8Screen {
 public:
  Int8Screen() = default;
  explicit Int8Screen(std::size_t dim) : dim_(dim), groups_((dim + 3) / 4) {}

  /// A copy of `rows` (n × dim floats, as stored: normalized for cosine), SQ8 ranges trained on
  /// them (n = 0: trained by the first add_reserved). May throw std::bad_alloc.
  static Int8Screen build(const float* rows, std::size_t n, std::size_t dim) {
    Int8Screen s(dim);
    if (n == 0) return s;
    s.params_ = train_sq8(rows, n, dim);
    s.trained_ = true;
    s.codes_.resize(s.block_bytes() * blocks_for(n));
    s.encode(rows, n, 0);
    s.rows_ = n;
    return s;
  }

  [[nodiscard]] bool trained() const noexcept { return trained_; }
  [[nodiscard]] std::size_t size() const noexcept { return rows_; }

  /// Makes room for n more rows and, when untrained, returns the ranges to train on `rows`
  /// (n × dim as stored). May throw; changes nothing visible.
  [[nodiscard]] Sq8Params prepare_add(const float* rows, std::size_t n) {
    const std::size_t want = block_bytes() * blocks_for(rows_ + n);
    if (codes_.capacity() < want) codes_.reserve(std::max(want, 2 * codes_.size()));
    return trained_ || n == 0 ? Sq8Params{} : train_sq8(rows, n, dim_);
  }
  /// Appends rows after prepare_add (with its ranges if untrained): cannot throw.
  void add_reserved(const float* rows, std::size_t n, Sq8Params&& fresh) noexcept {
    if (n == 0) return;
    if (!trained_) {
      params_ = std::move(fresh);
      trained_ = true;
    }
    codes_.resize(block_bytes() * blocks_for(rows_ + n));  // within the reserved capacity
    encode(rows, n, rows_);
    rows_ += n;
  }

  /// The codes of the rows `keep` says to keep, built aside (may throw; nothing changes).
  /// ids: one per row, in row order.
  template <class Keep>
  [[nodiscard]] std::vector<std::uint8_t> kept_codes(std::span<const Index> ids, Keep&& keep) const {
    std::size_t n = 0;
    for (std::size_t r = 0; r < rows_; ++r) n += keep(ids[r]) ? 1 : 0;
    std::vector<std::uint8_t> out(block_bytes() * blocks_for(n), 0);
    std::size_t to = 0;
    for (std::size_t r = 0; r < rows_; ++r)
      if (keep(ids[r])) {
        for (std::size_t g = 0; g < groups_; ++g)
          std::copy_n(at(codes_.data(), r, g), 4, at(out.data(), to, g));
        ++to;
      }
    return out;
  }
  /// Installs what kept_codes built for `rows` kept rows (the residual bound stays valid: it is
  /// a max over a superset).
  void replace_codes(std::vector<std::uint8_t>&& codes, std::size_t rows) noexcept {
    codes_ = std::move(codes);
    rows_ = rows;
  }
  void clear() noexcept {
    codes_.clear();
    rows_ = 0;
  }

  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return codes_.capacity() + sizeof(float) * (params_.vmin.capacity() + params_.vdiff.capacity());
  }

  /// Scores the nb queries `q` (nb × dim, prepared as the driver prepares them; `sq` their
  /// squared norms) against every row and pushes the screened keys into tops[i], whose margin
  /// is first widened by this screen's bound. `stored(r)` is row r's code in the index's store
  /// and `sq_norms[r]` its squared norm (for l2): what the driver rescores. Queries whose
  /// magnitudes the float evaluation cannot bound (keys beyond 2^100, where float arithmetic
  /// could overflow) are not scanned: their indices go to `rest`, for the float32 scan.
  template <class StoredCode>
  void scan(const float* q, const float* sq, std::size_t nb, TopK<float>* tops,
            std::span<const Index> ids, const float* sq_norms, StoredCode&& stored, bool l2,
            std::vector<Eigen::Index>& rest) const {
    if (rows_ == 0 || nb == 0) return;
    // Per screened query: the SQ8 screen (detail/int8.hpp), its codes packed 4 per int32 lane.
    Sq8Query p;
    std::vector<std::int32_t> q4(nb * groups_, 0);
    std::vector<float> bias(nb), scale(nb), sq_sel(nb);
    std::vector<TopK<float>*> top_sel(nb);
    std::size_t ns = 0;  // screened queries
    for (std::size_t i = 0; i < nb; ++i) {
      prepare_sq8_query(params_, q + i * dim_, p);
      const float m = margin(p, sq[i], l2);
      if (!(m < kMaxMagnitude)) {
        rest.push_back(static_cast<Eigen::Index>(i));
        continue;
      }
      bias[ns] = static_cast<float>(p.bias8);
      scale[ns] = static_cast<float>(p.scale8);
      sq_sel[ns] = sq[i];
      top_sel[ns] = &tops[i];
      auto* bytes = reinterpret_cast<std::int8_t*>(q4.data() + ns * groups_);
      std::copy(p.q8.begin(), p.q8.end(), bytes);  // pad bytes stay 0
      tops[i].widen(m);
      ++ns;
    }
    if (ns == 0) return;
    nb = ns;
    Epilogue e{bias.data(), scale.data(), sq_sel.data(), l2 ? sq_norms : nullptr, ids,
               top_sel.data()};
    // Rows in chunks that stay in L2 while every query of the block passes over them.
    const std::size_t chunk = std::max<std::size_t>(1, kChunkBytes / block_bytes());
    const std::size_t blocks = blocks_for(rows_);
    std::int32_t dots[kQueries][kLanes];
    for (std::size_t b0 = 0; b0 < blocks; b0 += chunk) {
      const std::size_t b1 = std::min(blocks, b0 + chunk);
      for (std::size_t i0 = 0; i0 < nb; i0 += kQueries) {
        const std::size_t nq = std::min(kQueries, nb - i0);
        for (std::size_t b = b0; b < b1; ++b) {
          dots_block(codes_.data() + b * block_bytes(), q4.data() + i0 * groups_, nq, dots);
          const std::size_t first = b * kLanes, lanes = std::min(kLanes, rows_ - first);
          for (std::size_t j = 0; j < nq; ++j) e.push(i0 + j, dots[j], first, lanes, stored);
        }
      }
    }
  }

 private:
  static constexpr std::size_t kLanes = 16;      // rows per block: one int32 lane each
  static constexpr std::size_t kQueries = 8;     // queries per pass over a block (registers)
  static constexpr std::size_t kChunkBytes = 256 * 1024;  // codes per pass: fits L2
  // Relative rounding of the float key evaluation (a handful of float operations on values the
  // magnitudes in `margin` bound), generously: 16 units of 2^-24.
  static constexpr double kEvalSlack = 16 * 0x1p-24;
  // Beyond this a key's float evaluation could overflow: such queries take the float32 scan.
  static constexpr float kMaxMagnitude = 0x1p100f;

  // Layout: blocks of 16 rows; in a block, group g (dims 4g..4g+3) is 64 bytes: row l's four
  // codes at 4l. So one 512-bit load feeds vpdpbusd 16 rows × 4 dims against one query's four
  // codes broadcast. Padding (dims past dim, rows past size) is zero.
  [[nodiscard]] std::size_t block_bytes() const noexcept { return groups_ * 64; }
  [[nodiscard]] static std::size_t blocks_for(std::size_t n) noexcept {
    return (n + kLanes - 1) / kLanes;
  }
  [[nodiscard]] std::uint8_t* at(std::uint8_t* base, std::size_t r, std::size_t g) const noexcept {
    return base + (r / kLanes) * block_bytes() + g * 64 + (r % kLanes) * 4;
  }
  [[nodiscard]] const std::uint8_t* at(const std::uint8_t* base, std::size_t r,
                                       std::size_t g) const noexcept {
    return base + (r / kLanes) * block_bytes() + g * 64 + (r % kLanes) * 4;
  }

  /// dots[j][l] = Σ_d q8_j[d]·c_l[d] for the nq ≤ 8 queries and the 16 rows of one block
  /// (exact int32).
  void dots_block(const std::uint8_t* block, const std::int32_t* q4, std::size_t nq,
                  std::int32_t (*dots)[kLanes]) const noexcept {
#if defined(MMRAG_I8_VNNI512)
    switch (nq) {
      case 8: return dots_vnni<8>(block, q4, dots);
      case 7: return dots_vnni<7>(block, q4, dots);
      case 6: return dots_vnni<6>(block, q4, dots);
      case 5: return dots_vnni<5>(block, q4, dots);
      case 4: return dots_vnni<4>(block, q4, dots);
      case 3: return dots_vnni<3>(block, q4, dots);
      case 2: return dots_vnni<2>(block, q4, dots);
      default: return dots_vnni<1>(block, q4, dots);
    }
#else
    dots_portable(block, q4, nq, dots);
#endif
  }

#if defined(MMRAG_I8_VNNI512)
  template <std::size_t Q>
  void dots_vnni(const std::uint8_t* block, const std::int32_t* q4,
                 std::int32_t (*dots)[kLanes]) const noexcept {
    // The j loops must unroll (at -O2 too) so that the Q accumulators live in registers.
    __m512i acc[Q];
MMRAG_SCREEN_UNROLL
    for (std::size_t j = 0; j < Q; ++j) acc[j] = _mm512_setzero_si512();
    for (std::size_t g = 0; g < groups_; ++g) {
      const __m512i rows = _mm512_loadu_si512(block + g * 64);  // unsigned codes
MMRAG_SCREEN_UNROLL
      for (std::size_t j = 0; j < Q; ++j)  // signed query codes, broadcast
        acc[j] = _mm512_dpbusd_epi32(acc[j], rows, _mm512_set1_epi32(q4[j * groups_ + g]));
    }
MMRAG_SCREEN_UNROLL
    for (std::size_t j = 0; j < Q; ++j) _mm512_storeu_si512(dots[j], acc[j]);
  }
#endif

 public:
  /// The portable form of dots_block (any arch; the tests compare it with the VNNI one).
  void dots_portable(const std::uint8_t* block, const std::int32_t* q4, std::size_t nq,
                     std::int32_t (*dots)[kLanes]) const noexcept {
    for (std::size_t j = 0; j < nq; ++j) {
      const auto* qb = reinterpret_cast<const std::int8_t*>(q4 + j * groups_);
      for (std::size_t l = 0; l < kLanes; ++l) {
        std::int32_t s = 0;
        for (std::size_t g = 0; g < groups_; ++g) {
          const std::uint8_t* c = block + g * 64 + l * 4;
          for (std::size_t t = 0; t < 4; ++t) s += std::int32_t(qb[4 * g + t]) * std::int32_t(c[t]);
        }
        dots[j][l] = s;
      }
    }
  }

 private:
  void encode(const float* rows, std::size_t n, std::size_t first) noexcept {
    std::uint8_t c[4];
    for (std::size_t r = 0; r < n; ++r) {
      const float* x = rows + r * dim_;
      double e2 = 0, x2 = 0;
      for (std::size_t g = 0; g < groups_; ++g) {
        for (std::size_t t = 0; t < 4; ++t) {
          const std::size_t j = 4 * g + t;
          c[t] = 0;
          if (j >= dim_) continue;
          c[t] = sq8_code(x[j], params_.vmin[j], params_.vdiff[j]);
          const double d =
              double(params_.vmin[j]) + double(c[t]) * (double(params_.vdiff[j]) / 255.0);
          const double e = double(x[j]) - d;
          e2 += e * e;
          x2 += double(x[j]) * double(x[j]);
        }
        std::copy_n(c, 4, at(codes_.data(), first + r, g));
      }
      // Rounding in the lines above: relative 2^-50 of the magnitudes involved, covered by the
      // 2^-40 of ‖x‖ and the 2^-30 inflation.
      max_resid_ = std::max(max_resid_, (std::sqrt(e2) + 0x1p-40 * std::sqrt(x2)) * (1 + 0x1p-30));
      max_sq_ = std::max(max_sq_, x2 * (1 + 0x1p-40));
    }
  }

  /// Twice the screen's bound in key units for one query (see the file comment); +inf when a
  /// magnitude involved exceeds kMaxMagnitude (the query then takes the float32 scan). The
  /// float evaluation of a key rounds a few times on values at most E = |bias8| + scale8·max|I|
  /// (the estimate) and, for l2, the two squared norms: kEvalSlack of those magnitudes covers
  /// it while they are normal floats; an absolute 2^-148 per operation and per term of a sum
  /// (the float squared norms' own sums included) covers gradual underflow, where float's
  /// rounding error is absolute (2^-150 at most) rather than relative.
  [[nodiscard]] float margin(const Sq8Query& p, float sq_q, bool l2) const noexcept {
    const double qn = std::sqrt(double(sq_q));
    const double bound = p.screen_error + qn * max_resid_;
    const double est = std::fabs(p.bias8) + p.scale8 * 127.0 * 255.0 * double(dim_);
    const double big = double(kMaxMagnitude);
    if (!(est < big) || !(bound < big) || !(double(sq_q) < big) || (l2 && !(max_sq_ < big)))
      return std::numeric_limits<float>::infinity();
    const double underflow = (127.0 * 255.0 * double(dim_) + 2.0 * double(dim_) + 64.0) * 0x1p-148;
    const double slack =
        kEvalSlack * (l2 ? double(sq_q) + max_sq_ + 2 * (est + bound) : est + bound) + underflow;
    return static_cast<float>(((l2 ? 4 : 2) * bound + 2 * slack) * (1 + 0x1p-20));
  }

  /// Keys (lower is better) from one block's int32 dots — −(bias + scale·I) for similarities,
  /// ‖q‖² + ‖x‖² − 2 (bias + scale·I) for l2 — and the pushes of those that may enter the
  /// heap (a SIMD pre-test against its admit bound, as the driver's scanner does).
  struct Epilogue {
    const float* bias;
    const float* scale;
    const float* sq_q;
    const float* sq_x;  // null: not l2
    std::span<const Index> ids;
    TopK<float>* const* tops;

    template <class StoredCode>
    void push(std::size_t i, const std::int32_t* dots, std::size_t first, std::size_t lanes,
              StoredCode& stored) const {
      float keys[kLanes];
      using F = xsimd::batch<float>;
      using I = xsimd::batch<std::int32_t>;
      constexpr std::size_t W = F::size;  // divides 16 on every arch xsimd 8 supports
      const F b(bias[i]), s(scale[i]);
      TopK<float>& top = *tops[i];
      bool any = false;
      for (std::size_t l = 0; l < kLanes; l += W) {
        const F est = xsimd::fma(xsimd::batch_cast<float>(I::load_unaligned(dots + l)), s, b);
        F key = -est;
        if (sq_x) {
          F sx;
          if (lanes == kLanes) {
            sx = F::load_unaligned(sq_x + first + l);
          } else {  // the last block: lanes past the end are 0 (and never pushed below)
            alignas(64) float part[W];
            for (std::size_t t = 0; t < W; ++t) part[t] = l + t < lanes ? sq_x[first + l + t] : 0.f;
            sx = F::load_aligned(part);
          }
          key = F(sq_q[i]) + sx - F(2.f) * est;
        }
        key.store_unaligned(keys + l);
        any = any || xsimd::any(!(key > F(top.admit())));
      }
      if (!any) return;
      for (std::size_t l = 0; l < lanes; ++l)
        if (keys[l] <= top.admit() || std::isnan(keys[l]))
          top.push(keys[l], ids[first + l], stored(first + l));
    }
  };

  std::size_t dim_ = 0, groups_ = 0;
  bool trained_ = false;
  Sq8Params params_;
  std::vector<std::uint8_t> codes_;  // blocks of 16 rows (see block_bytes), in store row order
  std::size_t rows_ = 0;
  double max_resid_ = 0;             // max over rows ever added of ‖x − D(c)‖, rounded up
  double max_sq_ = 0;                // max over rows ever added of ‖x‖²
};

}  // namespace mmrag::detail
