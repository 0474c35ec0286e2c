// Benchmarks for similarity.hpp: one-to-one kernels beside a scalar loop and Eigen, the
// one-to-many scan beside a plain streaming read, pairwise beside a bare Eigen GEMM.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_common.hpp"
#include "mmrag/similarity.hpp"

using namespace mmrag;

namespace {

const std::vector<long> kDims = {64, 128, 384, 768, 1024, 1536};

// A plain loop: without -ffast-math the compiler may not reorder the sum, so it stays scalar.
float scalar_dot(const float* a, const float* b, std::size_t n) {
  float s = 0;
  for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
float scalar_l2(const float* a, const float* b, std::size_t n) {
  float s = 0;
  for (std::size_t i = 0; i < n; ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s;
}

enum class Impl { mmrag, scalar, eigen };
enum class Op { dot, l2, cosine };

template <Op op, Impl impl>
void BM_one_to_one(benchmark::State& state) {
  const auto n = static_cast<Eigen::Index>(state.range(0));
  const Vector<float> a = bench::random_matrix<float>(n, 1, 1),
                      b = bench::random_matrix<float>(n, 1, 2);
  const std::size_t un = static_cast<std::size_t>(n);
  for (auto _ : state) {
    float r = 0;
    if constexpr (impl == Impl::mmrag) {
      if constexpr (op == Op::dot) r = mmrag::dot(a.data(), b.data(), un);
      if constexpr (op == Op::l2) r = mmrag::l2_squared(a.data(), b.data(), un);
      if constexpr (op == Op::cosine) r = mmrag::cosine(a.data(), b.data(), un);
    } else if constexpr (impl == Impl::scalar) {
      if constexpr (op == Op::dot) r = scalar_dot(a.data(), b.data(), un);
      if constexpr (op == Op::l2) r = scalar_l2(a.data(), b.data(), un);
      if constexpr (op == Op::cosine)
        r = scalar_dot(a.data(), b.data(), un) /
            std::sqrt(scalar_dot(a.data(), a.data(), un) * scalar_dot(b.data(), b.data(), un));
    } else {
      if constexpr (op == Op::dot) r = a.dot(b);
      if constexpr (op == Op::l2) r = (a - b).squaredNorm();
      if constexpr (op == Op::cosine) r = a.dot(b) / (a.norm() * b.norm());
    }
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 2 * n * static_cast<int64_t>(sizeof(float)));
  state.SetLabel(bench::arch_label());
}

void dims(benchmark::internal::Benchmark* b) {
  for (long d : kDims) b->Arg(d);
}

#define MMRAG_ONE_TO_ONE(op)                                                      \
  BENCHMARK(BM_one_to_one<Op::op, Impl::mmrag>)->Name(#op "/mmrag")->Apply(dims); \
  BENCHMARK(BM_one_to_one<Op::op, Impl::eigen>)->Name(#op "/eigen")->Apply(dims); \
  BENCHMARK(BM_one_to_one<Op::op, Impl::scalar>)->Name(#op "/scalar")->Apply(dims);
MMRAG_ONE_TO_ONE(dot)
MMRAG_ONE_TO_ONE(l2)
MMRAG_ONE_TO_ONE(cosine)

// One query against 1M × 128 floats (512 MB: far beyond any cache), so the scan is bound by
// DRAM reads; the baseline is the same bytes summed by a plain SIMD streaming read.
const Matrix<float>& big_base() {
  static const Matrix<float> m = bench::random_matrix<float>(1 << 20, 128, 7);
  return m;
}

void BM_scan_one_to_many(benchmark::State& state) {
  const Matrix<float>& base = big_base();
  const Vector<float> q = bench::random_matrix<float>(128, 1, 3);
  const auto metric = static_cast<Metric>(state.range(0));
  std::vector<float> out(static_cast<std::size_t>(base.rows()));
  for (auto _ : state) {
    one_to_many<float>(q.data(), base.data(), static_cast<std::size_t>(base.rows()), 128, 128,
                       metric, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * base.size() * static_cast<int64_t>(sizeof(float)));
  state.SetItemsProcessed(state.iterations() * base.rows());
  state.SetLabel(std::string(to_string(metric)) + " " + bench::arch_label());
}
BENCHMARK(BM_scan_one_to_many)
    ->Name("scan_1Mx128/mmrag")
    ->Arg(0)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond);

void BM_streaming_read(benchmark::State& state) {
  const Matrix<float>& base = big_base();
  for (auto _ : state) benchmark::DoNotOptimize(bench::streaming_read(base));
  state.SetBytesProcessed(state.iterations() * base.size() * static_cast<int64_t>(sizeof(float)));
  state.SetLabel("baseline: plain streaming read");
}
BENCHMARK(BM_streaming_read)->Name("scan_1Mx128/streaming_read")->Unit(benchmark::kMillisecond);

// pairwise(a, b) for na × nb × d beside the bare GEMM it is built on.
template <bool bare>
void BM_pairwise(benchmark::State& state) {
  const auto na = state.range(0), nb = state.range(1), d = state.range(2);
  const Matrix<float> a = bench::random_matrix<float>(na, d, 1),
                      b = bench::random_matrix<float>(nb, d, 2);
  const auto metric = static_cast<Metric>(state.range(3));
  Matrix<float> out(na, nb);
  for (auto _ : state) {
    if constexpr (bare) {
      out.noalias() = a * b.transpose();
    } else {
      out = pairwise(a, b, metric);
    }
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 2.0 * double(na) * double(nb) * double(d);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * double(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(bare ? "baseline: Eigen GEMM" : to_string(metric));
}
BENCHMARK(BM_pairwise<false>)
    ->Name("pairwise/mmrag")
    ->Args({1024, 1024, 256, 0})
    ->Args({1024, 1024, 256, 2})
    ->Args({1024, 1024, 256, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pairwise<true>)
    ->Name("pairwise/eigen_gemm")
    ->Args({1024, 1024, 256, 0})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
