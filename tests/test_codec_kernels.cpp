// Tests for the code kernels of detail/float16.hpp, detail/bfloat16.hpp and detail/int8.hpp:
// conversions bit-exact between the fast and portable paths (and against an independent
// round-to-nearest-even check), scores against long-double references of the decoded values
// within the documented bounds, on random and adversarial data. The fast path is whatever the
// compile flags select; tests/meson.build also builds this file with -march=x86-64 (portable
// only) and -march=x86-64-v3 (F16C / AVX2 paths).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mmrag/detail/bfloat16.hpp"
#include "mmrag/detail/float16.hpp"
#include "mmrag/detail/int8.hpp"

using namespace mmrag::detail;

namespace {

using LD = long double;

// Sizes around every SIMD width in play (8/16 floats, 32 bf16, 32/64 bytes) and large ones.
const std::vector<std::size_t> kSizes = {0,  1,  7,  8,  9,   15,  16,  17,  31,  32,
                                         33, 63, 64, 65, 100, 129, 257, 768, 1000};

std::vector<float> normal_values(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(g(rng));
  return v;
}

// Values spread over many binades with mixed signs: |x| = 2^e, e uniform in [lo, hi].
std::vector<float> wide_values(std::size_t n, std::uint64_t seed, int lo, int hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> e(lo, hi);
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(((rng() & 1) ? -1.0 : 1.0) * std::exp2(e(rng)));
  return v;
}

std::uint32_t bits(float x) {
  return std::bit_cast<std::uint32_t>(x);
}

// ---------------------------------------------------------------------------------------------
// Independent round-to-nearest-even check: the code's value is at least as close to x as both
// neighbouring codes, and on a tie its last bit is 0. `dec` decodes, `max_bits` is the largest
// finite magnitude code.
template <class Dec>
void check_rne(float x, std::uint16_t h, Dec dec, std::uint16_t max_bits) {
  CAPTURE(x);
  CAPTURE(h);
  const std::uint16_t sign = h & 0x8000u, mag = h & 0x7FFFu;
  const LD v = dec(h), lx = x;
  if (std::fabs(lx) >= LD(dec(max_bits))) {
    CHECK(mag == max_bits);
    CHECK(std::signbit(x) == bool(sign));
    return;
  }
  if (mag != 0) CHECK(std::signbit(x) == bool(sign));
  const LD err = std::fabs(v - lx);
  for (int step : {-1, 1}) {
    const int m = int(mag) + step;
    if (m < 0 || m > int(max_bits)) continue;
    const LD w = dec(static_cast<std::uint16_t>(sign | m));
    const LD other = std::fabs(w - lx);
    CHECK(err <= other);
    if (err == other) CHECK((mag & 1u) == 0);
  }
}

}  // namespace

// =============================================================================================
TEST_CASE("float16 conversions: exhaustive decode, round trip, fast == portable, RNE") {
  std::vector<std::uint16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  std::vector<float> fast(all.size()), port(all.size());
  decode_f16(all.data(), all.size(), fast.data());
  decode_f16_portable(all.data(), all.size(), port.data());
  std::vector<std::uint16_t> back(all.size()), back_port(all.size());
  encode_f16(fast.data(), fast.size(), back.data());
  encode_f16_portable(fast.data(), fast.size(), back_port.data());
  std::size_t bad_decode = 0, bad_round_trip = 0, bad_value = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const std::uint16_t h = all[i];
    bad_decode += bits(fast[i]) != bits(port[i]);
    const bool inf = (h & 0x7FFFu) == 0x7C00u, nan = (h & 0x7FFFu) > 0x7C00u;
    // NaN keeps its payload, with the quiet bit set
    const std::uint16_t expect = nan ? static_cast<std::uint16_t>(h | 0x200u) : h;
    if (!inf) bad_round_trip += back[i] != expect || back_port[i] != expect;
    if (inf) bad_round_trip += back[i] != ((h & 0x8000u) | 0x7BFFu);  // inf saturates
    if (!inf && !nan) {
      // Independent value: (-1)^s 2^(e-15) (1 + m/1024), or 2^-24 m for subnormals.
      const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
      const LD mag = e ? std::ldexp(LD(1024 + m), e - 25) : std::ldexp(LD(m), -24);
      bad_value += LD(fast[i]) != ((h & 0x8000u) ? -mag : mag);
    }
  }
  CHECK(bad_decode == 0);
  CHECK(bad_round_trip == 0);
  CHECK(bad_value == 0);

  // Random bit patterns (NaN, inf, subnormal, huge): fast and portable encoders agree bitwise,
  // and finite inputs round to nearest even with saturation.
  std::mt19937_64 rng(5);
  std::vector<float> x(100003);
  for (auto& v : x) v = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
  // plus values concentrated on the float16 range, ties and the saturation edge
  for (std::size_t i = 0; i < 20000; ++i)
    x[i] = std::ldexp(float(rng() % (1u << 24)) / float(1u << 24), int(rng() % 44) - 28) *
           ((rng() & 1) ? -1.f : 1.f);
  const float edge[] = {65504.f,     65519.f,    65520.f,    -65520.f,
                        65536.f,     1e30f,      -1e30f,     std::numeric_limits<float>::infinity(),
                        0x1p-24f,    0x1p-25f,   0x1.8p-25f, 0x1p-26f,
                        -0.f,        0x1.002p0f, 0x1.006p0f, 0x1p-14f,
                        0x1.ffcp-15f};
  std::copy(std::begin(edge), std::end(edge), x.begin() + 20000);
  std::vector<std::uint16_t> ef(x.size()), ep(x.size());
  encode_f16(x.data(), x.size(), ef.data());
  encode_f16_portable(x.data(), x.size(), ep.data());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < x.size(); ++i) mismatches += ef[i] != ep[i];
  CHECK(mismatches == 0);
  for (std::size_t i = 0; i < 20000 + std::size(edge); ++i) {
    if (std::isnan(x[i])) continue;
    check_rne(x[i], ef[i], f16_to_f32, 0x7BFF);
    // documented round-trip bound
    const LD v = f16_to_f32(ef[i]), lx = x[i];
    if (std::fabs(lx) <= 65504) {
      const LD bound = std::fabs(lx) >= 0x1p-14L ? 0x1p-11L * std::fabs(lx) : 0x1p-25L;
      CHECK(std::fabs(v - lx) <= bound);
    }
  }
  CHECK(ef[20000 + 2] == 0x7BFF);   // 65520 saturates instead of becoming inf
  CHECK(ef[20000 + 7] == 0x7BFF);   // +inf saturates
  CHECK(ef[20000 + 9] == 0x0000);   // 2^-25: tie between 0 and 2^-24 goes to even 0
  CHECK(ef[20000 + 10] == 0x0001);  // 1.5·2^-25 = 0.75·2^-24 rounds up to 2^-24
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::uint16_t hn = 0;
  encode_f16(&nan, 1, &hn);
  CHECK((hn & 0x7C00u) == 0x7C00u);
  CHECK((hn & 0x3FFu) != 0);
}

TEST_CASE("bfloat16 conversions: exhaustive decode, round trip, fast == portable, RNE") {
  std::vector<std::uint16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  std::vector<float> fast(all.size()), port(all.size());
  decode_bf16(all.data(), all.size(), fast.data());
  decode_bf16_portable(all.data(), all.size(), port.data());
  std::vector<std::uint16_t> back(all.size());
  encode_bf16(fast.data(), fast.size(), back.data());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const std::uint16_t h = all[i];
    bad += bits(fast[i]) != (std::uint32_t(h) << 16) || bits(port[i]) != bits(fast[i]);
    const bool inf = (h & 0x7FFFu) == 0x7F80u, nan = (h & 0x7FFFu) > 0x7F80u;
    if (inf)
      bad += back[i] != ((h & 0x8000u) | kBf16MaxBits);
    else if (nan)
      bad += back[i] != (h | 0x40u);  // quiet bit set, payload kept
    else
      bad += back[i] != h;
  }
  CHECK(bad == 0);

  std::mt19937_64 rng(7);
  std::vector<float> x(100003);
  for (auto& v : x) v = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
  const float edge[] = {std::numeric_limits<float>::max(),
                        -std::numeric_limits<float>::max(),
                        std::numeric_limits<float>::infinity(),
                        0x1.fe8p127f,
                        0x1.fdp127f,
                        std::numeric_limits<float>::denorm_min(),
                        0x1.01p0f,
                        0x1.03p0f,
                        0x1.0101p0f,
                        -0.f,
                        0x1p-130f,
                        0x1.0cp-133f};
  std::copy(std::begin(edge), std::end(edge), x.begin());
  std::vector<std::uint16_t> ef(x.size()), ep(x.size());
  encode_bf16(x.data(), x.size(), ef.data());
  encode_bf16_portable(x.data(), x.size(), ep.data());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < x.size(); ++i) mismatches += ef[i] != ep[i];
  CHECK(mismatches == 0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      CHECK(std::isnan(bf16_to_f32(ef[i])));
      continue;
    }
    check_rne(x[i], ef[i], bf16_to_f32, kBf16MaxBits);
    const LD v = bf16_to_f32(ef[i]), lx = x[i];
    if (std::fabs(lx) <= LD(bf16_to_f32(kBf16MaxBits))) {
      const LD bound = std::fabs(lx) >= 0x1p-126L ? 0x1p-8L * std::fabs(lx) : 0x1p-134L;
      CHECK(std::fabs(v - lx) <= bound);
    }
  }
  CHECK(ef[0] == kBf16MaxBits);              // FLT_MAX saturates
  CHECK(ef[1] == (0x8000u | kBf16MaxBits));  // -FLT_MAX saturates
  CHECK(ef[2] == kBf16MaxBits);              // inf saturates
  CHECK(ef[6] == 0x3F80u);                   // 1 + 2^-8: tie to even (1)
  CHECK(ef[7] == 0x3F82u);                   // 1 + 3·2^-8: tie to even (1 + 2^-6)
  CHECK(ef[8] == 0x3F81u);                   // just above the tie rounds up
}

// =============================================================================================
namespace {

struct Ref {
  LD dot = 0, abs_dot = 0, l2 = 0;
};

Ref reference(const float* q, const float* h, std::size_t n) {
  Ref r;
  for (std::size_t i = 0; i < n; ++i) {
    const LD a = q[i], b = h[i];
    r.dot += a * b;
    r.abs_dot += std::fabs(a * b);
    r.l2 += (a - b) * (a - b);
  }
  return r;
}

// Checks one float-query family (f16 or bf16) at every size on a data set (q, x: rows × n).
template <class Enc, class Dec, class Dot, class L2, class DotMany, class L2Many>
void check_float_query_kernels(const std::string& what, Enc encode, Dec decode, Dot dot, L2 l2,
                               DotMany dot_many, L2Many l2_many, double scale_q, double scale_x,
                               std::uint64_t seed) {
  for (std::size_t n : kSizes) {
    CAPTURE(what);
    CAPTURE(n);
    const std::size_t rows = 7;  // 4-row block + 3 single rows
    const auto q = normal_values(n, seed + n, scale_q);
    auto x = normal_values(rows * n, seed + 1000 + n, scale_x);
    // Row 1: cancellation (x = ±q, alternating, so q·h ≈ 0 with large terms).
    for (std::size_t j = 0; j < n; ++j) x[n + j] = (j % 2 ? -1.f : 1.f) * q[j];
    std::vector<std::uint16_t> codes(rows * n);
    encode(x.data(), rows * n, codes.data());
    std::vector<float> h(rows * n);
    decode(codes.data(), rows * n, h.data());
    std::vector<float> out_dot(rows), out_l2(rows);
    dot_many(q.data(), codes.data(), rows, n, out_dot.data());
    l2_many(q.data(), codes.data(), rows, n, out_l2.data());
    for (std::size_t r = 0; r < rows; ++r) {
      CAPTURE(r);
      const Ref ref = reference(q.data(), h.data() + r * n, n);
      const double bd = float_dot_error_bound(n, double(ref.abs_dot));
      const double bl = float_l2_relative_bound(n) * double(ref.l2) + double(n) * 0x1p-148;
      CHECK(double(std::fabs(LD(dot(q.data(), codes.data() + r * n, n)) - ref.dot)) <= bd);
      CHECK(double(std::fabs(LD(out_dot[r]) - ref.dot)) <= bd);
      CHECK(double(std::fabs(LD(l2(q.data(), codes.data() + r * n, n)) - ref.l2)) <= bl);
      CHECK(double(std::fabs(LD(out_l2[r]) - ref.l2)) <= bl);
    }
  }
}

}  // namespace

TEST_CASE("float16 kernels against long double, fast and portable (default arch and sse2)") {
  for (double sx : {1.0, 3e3}) {  // 3e3: coordinates up to ~2e4 (large, still inside float16)
    check_float_query_kernels("f16 fast", encode_f16, decode_f16, dot_f16, l2sq_f16, dot_many_f16,
                              l2sq_many_f16, 1.0, sx, 11);
    check_float_query_kernels("f16 portable", encode_f16_portable, decode_f16_portable,
                              dot_f16_portable<>, l2sq_f16_portable<>, dot_many_f16_portable<>,
                              l2sq_many_f16_portable<>, 1.0, sx, 12);
#if defined(__SSE2__)
    check_float_query_kernels("f16 sse2", encode_f16_portable, decode_f16_portable,
                              dot_f16_portable<xsimd::sse2>, l2sq_f16_portable<xsimd::sse2>,
                              dot_many_f16_portable<xsimd::sse2>,
                              l2sq_many_f16_portable<xsimd::sse2>, 1.0, sx, 13);
#endif
  }
}

TEST_CASE("bfloat16 kernels against long double, fast and portable (default arch and sse2)") {
  for (double sx : {1.0, 1e15}) {  // 1e15: large coordinates, mixed signs
    check_float_query_kernels("bf16 fast", encode_bf16, decode_bf16, dot_bf16, l2sq_bf16,
                              dot_many_bf16, l2sq_many_bf16, 1.0, sx, 21);
    check_float_query_kernels("bf16 portable", encode_bf16_portable, decode_bf16_portable,
                              dot_bf16_portable<>, l2sq_bf16_portable<>, dot_many_bf16_portable<>,
                              l2sq_many_bf16_portable<>, 1.0, sx, 22);
#if defined(__SSE2__)
    check_float_query_kernels("bf16 sse2", encode_bf16_portable, decode_bf16_portable,
                              dot_bf16_portable<xsimd::sse2>, l2sq_bf16_portable<xsimd::sse2>,
                              dot_many_bf16_portable<xsimd::sse2>,
                              l2sq_many_bf16_portable<xsimd::sse2>, 1.0, sx, 23);
#endif
  }
}

TEST_CASE("bfloat16 x bfloat16 (vdpbf16ps where enabled): bounds against q~·h and q·h") {
  for (int data = 0; data < 3; ++data) {
    for (std::size_t n : kSizes) {
      CAPTURE(data);
      CAPTURE(n);
      const std::size_t rows = 9;
      std::vector<float> q, x;
      if (data == 0) q = normal_values(n, 31 + n), x = normal_values(rows * n, 32 + n);
      if (data == 1)
        q = wide_values(n, 33 + n, -60, 60), x = wide_values(rows * n, 34 + n, -60, 60);
      if (data == 2) {  // subnormal-range values: exercises the DAZ/FTZ term of the bound
        q = wide_values(n, 35 + n, -140, -100);
        x = wide_values(rows * n, 36 + n, -30, 30);
      }
      std::vector<std::uint16_t> qb(n), codes(rows * n);
      encode_bf16(q.data(), n, qb.data());
      encode_bf16(x.data(), rows * n, codes.data());
      std::vector<float> qt(n), h(rows * n);
      decode_bf16(qb.data(), n, qt.data());
      decode_bf16(codes.data(), rows * n, h.data());
      std::vector<float> fast(rows), port(rows), sse(rows);
      dot_many_bf16_bf16(qb.data(), codes.data(), rows, n, fast.data());
      dot_many_bf16_bf16_portable(qb.data(), codes.data(), rows, n, port.data());
#if defined(__SSE2__)
      dot_many_bf16_bf16_portable<xsimd::sse2>(qb.data(), codes.data(), rows, n, sse.data());
#else
      sse = port;
#endif
      for (std::size_t r = 0; r < rows; ++r) {
        CAPTURE(r);
        const float* hr = h.data() + r * n;
        const Ref ref_t = reference(qt.data(), hr, n);  // against the bf16 query
        const Ref ref = reference(q.data(), hr, n);     // against the float query
        LD q1 = 0, h1 = 0, q2 = 0, h2 = 0, qt1 = 0;
        for (std::size_t j = 0; j < n; ++j) {
          q1 += std::fabs(LD(q[j]));
          qt1 += std::fabs(LD(qt[j]));
          h1 += std::fabs(LD(hr[j]));
          q2 += LD(q[j]) * q[j];
          h2 += LD(hr[j]) * hr[j];
        }
        const double b_t =
            float_gamma(n) * double(ref_t.abs_dot) + 0x1p-126 * double(qt1 + h1 + 2.0L * n);
        const double b_q = (0x1p-8 + float_gamma(n) * (1 + 0x1p-8)) * double(ref.abs_dot) +
                           0x1p-126 * double(2 * q1 + 2 * h1 + 3.0L * n);
        const double b_norms =
            bf16_screen_error_bound(n, double(std::sqrt(q2)), double(std::sqrt(h2)));
        for (float s : {fast[r], port[r], sse[r]}) {
          CHECK(double(std::fabs(LD(s) - ref_t.dot)) <= b_t);
          CHECK(double(std::fabs(LD(s) - ref.dot)) <= b_q);
          CHECK(double(std::fabs(LD(s) - ref.dot)) <= b_norms);
        }
      }
    }
  }
}

// =============================================================================================
namespace {

LD sq8_decoded(const Sq8Params& p, std::size_t j, std::uint8_t c) {
  return LD(p.vmin[j]) + LD(c) * (LD(p.vdiff[j]) / 255);
}

// Every SQ8 scoring path for one query against rows of codes, checked against long double.
void check_sq8_scores(const Sq8Params& p, const std::vector<float>& q,
                      const std::vector<std::uint8_t>& codes, std::size_t rows,
                      const std::vector<float>* originals) {
  const std::size_t n = p.dim();
  const Sq8Query qp = prepare_sq8_query(p, q.data());
  std::vector<float> dot_fast(rows), dot_port(rows), dot_sse(rows), l2_fast(rows), l2_port(rows),
      l2_sse(rows);
  std::vector<std::int32_t> i_fast(rows), i_port(rows);
  dot_many_u8(qp.scaled.data(), codes.data(), rows, n, dot_fast.data());
  dot_many_u8_portable(qp.scaled.data(), codes.data(), rows, n, dot_port.data());
  l2sq_many_u8(qp.shifted.data(), qp.step.data(), codes.data(), rows, n, l2_fast.data());
  l2sq_many_u8_portable(qp.shifted.data(), qp.step.data(), codes.data(), rows, n, l2_port.data());
#if defined(__SSE2__)
  dot_many_u8_portable<xsimd::sse2>(qp.scaled.data(), codes.data(), rows, n, dot_sse.data());
  l2sq_many_u8_portable<xsimd::sse2>(qp.shifted.data(), qp.step.data(), codes.data(), rows, n,
                                     l2_sse.data());
#else
  dot_sse = dot_port;
  l2_sse = l2_port;
#endif
  dot_many_s8u8(qp.q8.data(), codes.data(), rows, n, i_fast.data());
  dot_many_s8u8_portable(qp.q8.data(), codes.data(), rows, n, i_port.data());
  const double code_bound = originals ? sq8_code_error_bound(p, q.data()) : 0;
  for (std::size_t r = 0; r < rows; ++r) {
    CAPTURE(r);
    const std::uint8_t* c = codes.data() + r * n;
    LD dot = 0, l2 = 0, dot_x = 0;
    std::int64_t isum = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const LD d = sq8_decoded(p, j, c[j]);
      dot += LD(q[j]) * d;
      l2 += (LD(q[j]) - d) * (LD(q[j]) - d);
      isum += std::int64_t(qp.q8[j]) * c[j];
      if (originals) dot_x += LD(q[j]) * LD((*originals)[r * n + j]);
    }
    CHECK(i_fast[r] == isum);
    CHECK(i_port[r] == isum);
    for (float k : {dot_fast[r], dot_port[r], dot_sse[r]}) {
      const double est = sq8_dot_score(qp, k);
      CHECK(double(std::fabs(LD(est) - dot)) <= qp.dot_error + 0x1p-52 * std::fabs(est));
    }
    const double screen = sq8_screen_score(qp, i_fast[r]);
    CHECK(double(std::fabs(LD(screen) - dot)) <= qp.screen_error);
    for (float s : {l2_fast[r], l2_port[r], l2_sse[r]}) {
      const Sq8L2Bounds b = sq8_l2_bounds(qp, s, n);
      CHECK(LD(b.lo) <= l2);
      CHECK(l2 <= LD(b.hi));
    }
    if (originals) CHECK(double(std::fabs(dot_x - dot)) <= code_bound);
  }
}

}  // namespace

TEST_CASE("sq8: training, encode/decode round trip within vdiff/510") {
  CHECK_THROWS_AS((void)train_sq8(nullptr, 0, 4), std::invalid_argument);
  const float one = 1;
  CHECK_THROWS_AS((void)train_sq8(&one, 1, 0), std::invalid_argument);

  for (Sq8Range range : {Sq8Range::min_max, Sq8Range::symmetric}) {
    for (double scale : {1.0, 1e-20, 1e20}) {
      CAPTURE(int(range));
      CAPTURE(scale);
      const std::size_t n = 300, dim = 37;
      auto x = normal_values(n * dim, 41, scale);
      for (std::size_t i = 0; i < n; ++i) x[i * dim + 5] = 2.5f;                  // constant dim
      for (std::size_t i = 0; i < n; ++i) x[i * dim + 6] = float(i % 3) * 1e-3f;  // 3 levels
      const Sq8Params p = train_sq8(x.data(), n, dim, range);
      REQUIRE(p.dim() == dim);
      for (std::size_t j = 0; j < dim; ++j) {
        CHECK(p.vdiff[j] > 0);
        CHECK(std::isfinite(p.vdiff[j]));
        CHECK(std::isfinite(255.0f / p.vdiff[j]));
      }
      std::vector<std::uint8_t> codes(n * dim);
      encode_sq8(p, x.data(), n, codes.data());
      std::vector<float> dec(n * dim);
      decode_sq8(p, codes.data(), n, dec.data());
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < dim; ++j) {
          const LD exact = sq8_decoded(p, j, codes[i * dim + j]);
          const LD xv = x[i * dim + j];
          // the grid point is the nearest: within half a step (+ double rounding in encode)
          CHECK(double(std::fabs(exact - xv)) <= p.vdiff[j] / 510.0 * (1 + 0x1p-40));
          // decode_sq8's float rounding
          CHECK(double(std::fabs(LD(dec[i * dim + j]) - exact)) <=
                0x1p-24 * double(std::fabs(exact)) +
                    0x1p-51 * (std::fabs(double(p.vmin[j])) + p.vdiff[j]));
        }
      if (range == Sq8Range::min_max) {
        CHECK(codes[5] == 0);  // the constant dimension decodes exactly
        CHECK(dec[5] == 2.5f);
      } else {
        // zero is (up to vdiff's rounding) the grid point 127
        for (std::size_t j = 0; j < dim; ++j) {
          const float z = 0;
          CHECK(sq8_code(z, p.vmin[j], p.vdiff[j]) == 127);
        }
      }
    }
  }
  // out-of-range values clamp; NaN encodes as 0
  Sq8Params p{{-1.f}, {2.f}};
  CHECK(sq8_code(5.f, -1.f, 2.f) == 255);
  CHECK(sq8_code(-5.f, -1.f, 2.f) == 0);
  CHECK(sq8_code(std::numeric_limits<float>::quiet_NaN(), -1.f, 2.f) == 0);
  CHECK(sq8_code(0.f, -1.f, 2.f) == 128);  // 127.5 rounds to even
  (void)p;
}

TEST_CASE("sq8 kernels: float x uint8 and the VNNI int8 screen within their bounds") {
  for (Sq8Range range : {Sq8Range::min_max, Sq8Range::symmetric}) {
    for (std::size_t n : kSizes) {
      if (n == 0) continue;
      CAPTURE(int(range));
      CAPTURE(n);
      const std::size_t rows = 11, train_rows = 64;
      // random data: train, encode the same distribution, compare
      auto train = normal_values(train_rows * n, 51 + n);
      for (std::size_t j = 0; j < n; j += 3) train[j] += 2.0f;  // off-centre dimensions
      const Sq8Params p = train_sq8(train.data(), train_rows, n, range);
      std::vector<float> x(train.begin(), train.begin() + rows * n);
      std::vector<std::uint8_t> codes(rows * n);
      encode_sq8(p, x.data(), rows, codes.data());
      // adversarial rows: all 0, all 255, alternating
      for (std::size_t j = 0; j < n; ++j) {
        codes[8 * n + j] = 0;
        codes[9 * n + j] = 255;
        codes[10 * n + j] = (j % 2) ? 255 : 0;
      }
      std::vector<float> x_in(x);  // rows 8..10 no longer encode x: only check codes 0..7
      const auto q = normal_values(n, 61 + n);
      {
        std::vector<std::uint8_t> head(codes.begin(), codes.begin() + 8 * n);
        std::vector<float> xh(x.begin(), x.begin() + 8 * n);
        check_sq8_scores(p, q, head, 8, &xh);
      }
      check_sq8_scores(p, q, codes, rows, nullptr);
      // large magnitudes, mixed signs: query 1e6-scale against data at 1e4, and the reverse
      auto qbig = wide_values(n, 71 + n, -20, 20);
      check_sq8_scores(p, qbig, codes, rows, nullptr);
      auto big = wide_values(train_rows * n, 81 + n, 10, 30);
      const Sq8Params pb = train_sq8(big.data(), train_rows, n, range);
      std::vector<std::uint8_t> cb(rows * n);
      encode_sq8(pb, big.data(), rows, cb.data());
      std::vector<float> xb(big.begin(), big.begin() + rows * n);
      check_sq8_scores(pb, q, cb, rows, &xb);
      check_sq8_scores(pb, qbig, cb, rows, &xb);
    }
  }
}

TEST_CASE("sq8 int8 screen: exact int32 at the extreme codes and a large dim") {
  for (std::size_t n : {std::size_t(4096), std::size_t(1000), std::size_t(65)}) {
    CAPTURE(n);
    std::vector<std::int8_t> q8(n);
    std::vector<std::uint8_t> codes(3 * n);
    for (std::size_t j = 0; j < n; ++j) {
      q8[j] = (j % 5 == 0) ? -127 : 127;
      codes[j] = 255;
      codes[n + j] = (j % 5 == 0) ? 0 : 255;
      codes[2 * n + j] = static_cast<std::uint8_t>(j * 37);
    }
    std::vector<std::int32_t> fast(3), port(3);
    dot_many_s8u8(q8.data(), codes.data(), 3, n, fast.data());
    dot_many_s8u8_portable(q8.data(), codes.data(), 3, n, port.data());
    for (std::size_t r = 0; r < 3; ++r) {
      std::int64_t ref = 0;
      for (std::size_t j = 0; j < n; ++j) ref += std::int64_t(q8[j]) * codes[r * n + j];
      CHECK(fast[r] == ref);
      CHECK(port[r] == ref);
    }
  }
}

TEST_CASE("codec kernels: the paths this build selected") {
  std::string paths;
#if defined(MMRAG_F16_AVX512)
  paths += "f16:avx512 ";
#elif defined(MMRAG_F16_F16C)
  paths += "f16:f16c ";
#else
  paths += "f16:portable ";
#endif
#if defined(MMRAG_BF16_DPBF16)
  paths += "bf16:avx512+vdpbf16ps ";
#elif defined(MMRAG_BF16_AVX512)
  paths += "bf16:avx512 ";
#else
  paths += "bf16:portable ";
#endif
#if defined(MMRAG_I8_VNNI512)
  paths += "s8u8:avx512-vnni ";
#elif defined(MMRAG_I8_AVXVNNI)
  paths += "s8u8:avx-vnni ";
#elif defined(MMRAG_I8_AVX2)
  paths += "s8u8:avx2-vpmaddwd ";
#else
  paths += "s8u8:portable ";
#endif
  MESSAGE(paths);
  CHECK(!paths.empty());
}
