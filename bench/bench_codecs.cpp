// Benchmarks for the code kernels (detail/float16.hpp, detail/bfloat16.hpp, detail/int8.hpp):
// one query against 100k rows at d = 128 and 768, one thread, for float32 (detail::dot_many_kernel,
// the baseline), float16, bfloat16 (float query and bf16 × bf16 with vdpbf16ps), SQ8 float × uint8
// and the int8 × uint8 VNNI screen, each beside its portable fallback. bytes/s counts the bytes of
// stored rows read, items/s the rows scored.
//
// The `quality/*` cases time nothing: they measure, on embedding-like data (clustered, unit-norm,
// per-dimension offsets and scales, 50k × 384, inner product), the SQ8 range choice (min/max vs
// symmetric) and each screen's rigorous bound: recall@10 of the code scores, and the fraction of
// rows an exact search must rescore because their bound cannot exclude them from the top 10.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

// mmrag's kernels before bench_common.hpp (which includes xsimd directly), so that <immintrin.h>
// arrives through detail/intrinsics.hpp with GCC 12's false -Wuninitialized alarms silenced.
#include "mmrag/detail/bfloat16.hpp"
#include "mmrag/detail/float16.hpp"
#include "mmrag/detail/int8.hpp"
#include "mmrag/detail/simd.hpp"

#include "bench_common.hpp"

using namespace mmrag;

namespace {

constexpr std::size_t kRows = 100000;

// One data set per dim, every code form of it, built on first use.
struct ScanData {
  std::size_t dim = 0;
  Matrix<float> base;  // kRows × dim, uniform [-1, 1]
  std::vector<float> q;
  std::vector<std::uint16_t> f16, bf16, q_bf16;
  std::vector<std::uint8_t> u8;
  detail::Sq8Query sq8_query;
};

const ScanData& scan_data(std::size_t dim) {
  static std::map<std::size_t, ScanData> cache;
  auto it = cache.find(dim);
  if (it != cache.end()) return it->second;
  ScanData& d = cache[dim];
  d.dim = dim;
  d.base = bench::random_matrix<float>(static_cast<Eigen::Index>(kRows),
                                       static_cast<Eigen::Index>(dim), 1);
  const Matrix<float> q = bench::random_matrix<float>(1, static_cast<Eigen::Index>(dim), 2);
  d.q.assign(q.data(), q.data() + dim);
  const std::size_t n = kRows * dim;
  d.f16.resize(n);
  d.bf16.resize(n);
  d.u8.resize(n);
  d.q_bf16.resize(dim);
  detail::encode_f16(d.base.data(), n, d.f16.data());
  detail::encode_bf16(d.base.data(), n, d.bf16.data());
  detail::encode_bf16(d.q.data(), dim, d.q_bf16.data());
  const detail::Sq8Params p = detail::train_sq8(d.base.data(), kRows, dim);
  detail::encode_sq8(p, d.base.data(), kRows, d.u8.data());
  detail::prepare_sq8_query(p, d.q.data(), d.sq8_query);
  return d;
}

enum class Kind {
  f32,
  f32_l2,
  f16,
  f16_portable,
  f16_l2,
  bf16,
  bf16_portable,
  bf16_bf16,
  bf16_bf16_portable,
  u8,
  u8_portable,
  u8_l2,
  s8u8,
  s8u8_portable,
};

template <Kind K>
void BM_scan(benchmark::State& state) {
  const auto dim = static_cast<std::size_t>(state.range(0));
  const ScanData& d = scan_data(dim);
  std::vector<float> out(kRows);
  std::vector<std::int32_t> iout(kRows);
  const detail::Sq8Query& sq = d.sq8_query;
  // rows read from the data (not the constant) so GCC does not analyse the kernels' tail loops
  // for a known trip count (a false -Waggressive-loop-optimizations on the row-tail loops).
  const auto rows = static_cast<std::size_t>(d.base.rows());
  std::size_t code_bytes = 0;
  for (auto _ : state) {
    if constexpr (K == Kind::f32) {
      detail::dot_many_kernel<float>(d.q.data(), d.base.data(), rows, dim, dim, out.data());
      code_bytes = 4;
    } else if constexpr (K == Kind::f32_l2) {
      detail::l2_many_kernel<float>(d.q.data(), d.base.data(), rows, dim, dim, out.data());
      code_bytes = 4;
    } else if constexpr (K == Kind::f16) {
      detail::dot_many_f16(d.q.data(), d.f16.data(), rows, dim, out.data());
      code_bytes = 2;
    } else if constexpr (K == Kind::f16_portable) {
      detail::dot_many_f16_portable(d.q.data(), d.f16.data(), rows, dim, out.data());
      code_bytes = 2;
    } else if constexpr (K == Kind::f16_l2) {
      detail::l2sq_many_f16(d.q.data(), d.f16.data(), rows, dim, out.data());
      code_bytes = 2;
    } else if constexpr (K == Kind::bf16) {
      detail::dot_many_bf16(d.q.data(), d.bf16.data(), rows, dim, out.data());
      code_bytes = 2;
    } else if constexpr (K == Kind::bf16_portable) {
      detail::dot_many_bf16_portable(d.q.data(), d.bf16.data(), rows, dim, out.data());
      code_bytes = 2;
    } else if constexpr (K == Kind::bf16_bf16) {
      detail::dot_many_bf16_bf16(d.q_bf16.data(), d.bf16.data(), rows, dim, out.data());
      code_bytes = 2;
    } else if constexpr (K == Kind::bf16_bf16_portable) {
      detail::dot_many_bf16_bf16_portable(d.q_bf16.data(), d.bf16.data(), rows, dim, out.data());
      code_bytes = 2;
    } else if constexpr (K == Kind::u8) {
      detail::dot_many_u8(sq.scaled.data(), d.u8.data(), rows, dim, out.data());
      code_bytes = 1;
    } else if constexpr (K == Kind::u8_portable) {
      detail::dot_many_u8_portable(sq.scaled.data(), d.u8.data(), rows, dim, out.data());
      code_bytes = 1;
    } else if constexpr (K == Kind::u8_l2) {
      detail::l2sq_many_u8(sq.shifted.data(), sq.step.data(), d.u8.data(), rows, dim, out.data());
      code_bytes = 1;
    } else if constexpr (K == Kind::s8u8) {
      detail::dot_many_s8u8(sq.q8.data(), d.u8.data(), rows, dim, iout.data());
      code_bytes = 1;
    } else {
      detail::dot_many_s8u8_portable(sq.q8.data(), d.u8.data(), rows, dim, iout.data());
      code_bytes = 1;
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(iout.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kRows));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(kRows * dim * code_bytes));
  state.SetLabel(bench::arch_label());
}

#define MMRAG_SCAN(kind, name)   \
  BENCHMARK(BM_scan<Kind::kind>) \
      ->Name("scan_100k/" name)  \
      ->Arg(128)                 \
      ->Arg(768)                 \
      ->Unit(benchmark::kMicrosecond);
MMRAG_SCAN(f32, "f32_dot/baseline")
MMRAG_SCAN(f32_l2, "f32_l2/baseline")
MMRAG_SCAN(f16, "f16_dot")
MMRAG_SCAN(f16_portable, "f16_dot/portable")
MMRAG_SCAN(f16_l2, "f16_l2")
MMRAG_SCAN(bf16, "bf16_dot")
MMRAG_SCAN(bf16_portable, "bf16_dot/portable")
MMRAG_SCAN(bf16_bf16, "bf16xbf16_dot")
MMRAG_SCAN(bf16_bf16_portable, "bf16xbf16_dot/portable")
MMRAG_SCAN(u8, "sq8_dot_f32xu8")
MMRAG_SCAN(u8_portable, "sq8_dot_f32xu8/portable")
MMRAG_SCAN(u8_l2, "sq8_l2_f32xu8")
MMRAG_SCAN(s8u8, "sq8_screen_s8xu8")
MMRAG_SCAN(s8u8_portable, "sq8_screen_s8xu8/portable")

// ---------------------------------------------------------------------------------------------
// Quality: embedding-like data, inner product, k = 10.

struct Embeddings {
  std::size_t n = 50000, dim = 384, nq = 100;
  std::vector<float> x, q;
};

// centred = false: CLIP-like per-dimension offsets and anisotropic spreads; true: zero-mean,
// isotropic clusters (the case a symmetric range is made for).
Embeddings make_embeddings(bool centred) {
  Embeddings e;
  std::mt19937_64 rng(17);
  std::normal_distribution<double> g(0.0, 1.0);
  const std::size_t clusters = 200;
  std::vector<double> mean(e.dim), scale(e.dim), centers(clusters * e.dim);
  for (auto& m : mean) m = centred ? 0.0 : 0.7 * g(rng);             // per-dimension offsets...
  for (auto& s : scale) s = centred ? 1.0 : std::exp(0.5 * g(rng));  // ...and spreads
  for (auto& c : centers) c = g(rng);
  auto make = [&](std::size_t rows, std::vector<float>& out) {
    out.resize(rows * e.dim);
    std::uniform_int_distribution<std::size_t> pick(0, clusters - 1);
    for (std::size_t r = 0; r < rows; ++r) {
      const double* c = centers.data() + pick(rng) * e.dim;
      double norm = 0;
      std::vector<double> v(e.dim);
      for (std::size_t j = 0; j < e.dim; ++j) {
        v[j] = mean[j] + scale[j] * (c[j] + 0.6 * g(rng));
        norm += v[j] * v[j];
      }
      for (std::size_t j = 0; j < e.dim; ++j)
        out[r * e.dim + j] = static_cast<float>(v[j] / std::sqrt(norm));
    }
  };
  make(e.n, e.x);
  make(e.nq, e.q);
  return e;
}

const Embeddings& embeddings(bool centred) {
  static const Embeddings offset = make_embeddings(false), zero_mean = make_embeddings(true);
  return centred ? zero_mean : offset;
}

// Recall@10 of `est` against the exact top 10, and the number of rows whose interval
// [est − err, est + err] reaches the 10th best lower bound (what an exact search rescores).
struct ScreenStats {
  double recall = 0, rescored = 0;
};
void screen_stats(const std::vector<double>& exact, const std::vector<double>& est,
                  const std::vector<double>& err, ScreenStats& acc) {
  const std::size_t n = exact.size(), k = 10;
  std::vector<std::size_t> ie(n), ic(n);
  for (std::size_t i = 0; i < n; ++i) ie[i] = ic[i] = i;
  const auto by = [](const std::vector<double>& s) {
    return [&s](std::size_t a, std::size_t b) { return s[a] > s[b] || (s[a] == s[b] && a < b); };
  };
  std::partial_sort(ie.begin(), ie.begin() + k, ie.end(), by(exact));
  std::partial_sort(ic.begin(), ic.begin() + k, ic.end(), by(est));
  std::size_t hit = 0;
  for (std::size_t a = 0; a < k; ++a)
    for (std::size_t b = 0; b < k; ++b) hit += ie[a] == ic[b];
  acc.recall += double(hit) / double(k);
  std::vector<double> lower(n);
  for (std::size_t i = 0; i < n; ++i) lower[i] = est[i] - err[i];
  std::nth_element(lower.begin(), lower.begin() + (k - 1), lower.end(), std::greater<>());
  const double threshold = lower[k - 1];
  std::size_t survivors = 0;
  for (std::size_t i = 0; i < n; ++i) survivors += est[i] + err[i] >= threshold;
  acc.rescored += double(survivors);
}

// Args: {codes, data}: codes 0 = SQ8 min/max, 1 = SQ8 symmetric, 2 = float16, 3 = bfloat16 ×
// bfloat16; data 0 = with per-dimension offsets, 1 = zero-mean isotropic.
void BM_quality(benchmark::State& state) {
  const Embeddings& e = embeddings(state.range(1) == 1);
  const int which = static_cast<int>(state.range(0));
  const std::size_t n = e.n, dim = e.dim;
  detail::Sq8Params p;
  std::vector<std::uint8_t> codes;
  std::vector<std::uint16_t> h16;
  if (which <= 1) {
    p = detail::train_sq8(e.x.data(), n, dim,
                          which == 0 ? detail::Sq8Range::min_max : detail::Sq8Range::symmetric);
    codes.resize(n * dim);
    detail::encode_sq8(p, e.x.data(), n, codes.data());
  } else {
    h16.resize(n * dim);
    if (which == 2)
      detail::encode_f16(e.x.data(), n * dim, h16.data());
    else
      detail::encode_bf16(e.x.data(), n * dim, h16.data());
  }
  // reconstruction error relative to the data's energy
  double err2 = 0, energy = 0;
  {
    std::vector<float> dec(dim);
    for (std::size_t r = 0; r < n; ++r) {
      if (which <= 1)
        detail::decode_sq8(p, codes.data() + r * dim, 1, dec.data());
      else if (which == 2)
        detail::decode_f16(h16.data() + r * dim, dim, dec.data());
      else
        detail::decode_bf16(h16.data() + r * dim, dim, dec.data());
      for (std::size_t j = 0; j < dim; ++j) {
        const double dx = double(dec[j]) - e.x[r * dim + j];
        err2 += dx * dx;
        energy += double(e.x[r * dim + j]) * e.x[r * dim + j];
      }
    }
  }
  ScreenStats u8_stats, s8_stats;
  for (auto _ : state) {
    u8_stats = s8_stats = {};
    std::vector<double> exact(n), est(n), err(n), est8(n), err8(n);
    std::vector<float> out(n);
    std::vector<std::int32_t> iout(n);
    std::vector<std::uint16_t> qb(dim);
    detail::Sq8Query qp;
    for (std::size_t qi = 0; qi < e.nq; ++qi) {
      const float* q = e.q.data() + qi * dim;
      for (std::size_t r = 0; r < n; ++r) {
        double s = 0;
        for (std::size_t j = 0; j < dim; ++j) s += double(q[j]) * e.x[r * dim + j];
        exact[r] = s;
      }
      double qn = 0;
      for (std::size_t j = 0; j < dim; ++j) qn += double(q[j]) * q[j];
      qn = std::sqrt(qn);
      if (which <= 1) {
        detail::prepare_sq8_query(p, q, qp);
        const double code_err = detail::sq8_code_error_bound(p, q);
        detail::dot_many_u8(qp.scaled.data(), codes.data(), n, dim, out.data());
        detail::dot_many_s8u8(qp.q8.data(), codes.data(), n, dim, iout.data());
        for (std::size_t r = 0; r < n; ++r) {
          est[r] = detail::sq8_dot_score(qp, out[r]);
          err[r] = qp.dot_error + code_err + 0x1p-52 * std::fabs(est[r]);
          est8[r] = detail::sq8_screen_score(qp, iout[r]);
          err8[r] = qp.screen_error + code_err;
        }
        screen_stats(exact, est8, err8, s8_stats);
      } else if (which == 2) {
        // |q·x − s| ≤ 2^-11 Σ|q_j x_j| (codes) + float_dot_error_bound (kernel); ‖x‖ = 1 here,
        // ‖h‖ ≤ (1 + 2^-11)‖x‖.
        detail::dot_many_f16(q, h16.data(), n, dim, out.data());
        // (+ 2^-25 per coordinate for float16 subnormals: ≤ 2^-25·√dim·‖q‖).
        const double b = (0x1p-11 + 0x1p-25 * std::sqrt(double(dim))) * qn +
                         detail::float_dot_error_bound(dim, qn * (1 + 0x1p-11) + 0x1p-20);
        for (std::size_t r = 0; r < n; ++r) est[r] = out[r], err[r] = b;
      } else {
        detail::encode_bf16(q, dim, qb.data());
        detail::dot_many_bf16_bf16(qb.data(), h16.data(), n, dim, out.data());
        // the screen bound against q·h, plus the codes' 2^-8 Σ|q_j x_j| against q·x
        const double b = detail::bf16_screen_error_bound(dim, qn, 1 + 0x1p-8) + 0x1p-8 * qn;
        for (std::size_t r = 0; r < n; ++r) est[r] = out[r], err[r] = b;
      }
      screen_stats(exact, est, err, u8_stats);
    }
  }
  const double nq = double(e.nq);
  state.counters["recall@10"] = u8_stats.recall / nq;
  state.counters["rescored_frac"] = u8_stats.rescored / nq / double(n);
  if (which <= 1) {
    state.counters["s8_recall@10"] = s8_stats.recall / nq;
    state.counters["s8_rescored_frac"] = s8_stats.rescored / nq / double(n);
  }
  state.counters["rel_mse"] = err2 / energy;
  static const char* names[] = {"sq8 min/max, f32 x u8", "sq8 symmetric, f32 x u8", "float16",
                                "bf16 x bf16"};
  state.SetLabel(std::string(names[which]) +
                 (state.range(1) == 1 ? "; 50k x 384 zero-mean" : "; 50k x 384 offset dims") +
                 " embedding-like, IP");
}
BENCHMARK(BM_quality)
    ->Name("quality/embeddings_50k_384")
    ->ArgsProduct({{0, 1, 2, 3}, {0, 1}})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
