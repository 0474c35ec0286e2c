// Benchmarks for the contrastive losses: forward + backward of in_batch_info_nce and
// sigmoid_pairwise beside the three GEMMs they cannot avoid (s = a bᵀ, G b, Gᵀ a), timed in the
// same binary; and the tiled path at B = 32768 with its peak resident memory.
//   Run the tiled case alone for a meaningful peak: --benchmark_filter=tiled
#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include "bench_common.hpp"
#include "mmrag/losses.hpp"

using namespace mmrag;

namespace {

void set_flops(benchmark::State& state, double b, double d) {
  // 6 B² d: the three B × B × d GEMMs of forward + backward.
  state.counters["GFLOP/s"] = benchmark::Counter(
      6.0 * b * b * d * double(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(b));
}

void BM_three_gemms(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      b = bench::random_matrix<float>(B, d, 2);
  Matrix<float> s(B, B), ga(B, d), gb(B, d);
  for (auto _ : state) {
    s.noalias() = a * b.transpose();
    ga.noalias() = s * b;
    gb.noalias() = s.transpose() * a;
    benchmark::DoNotOptimize(ga.data());
    benchmark::DoNotOptimize(gb.data());
  }
  set_flops(state, double(B), double(d));
  state.SetLabel("baseline: the three GEMMs");
}

void BM_in_batch_info_nce(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      b = bench::random_matrix<float>(B, d, 2);
  for (auto _ : state) {
    auto r = loss::in_batch_info_nce(a, b);  // normalize + symmetric, the CLIP/ImageBind setting
    benchmark::DoNotOptimize(r.grad_a.data());
  }
  set_flops(state, double(B), double(d));
  state.SetLabel("normalize+symmetric");
}

void BM_sigmoid_pairwise(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      b = bench::random_matrix<float>(B, d, 2);
  for (auto _ : state) {
    auto r = loss::sigmoid_pairwise(a, b);
    benchmark::DoNotOptimize(r.grad_a.data());
  }
  set_flops(state, double(B), double(d));
  state.SetLabel("normalize");
}

void grid(benchmark::internal::Benchmark* b) {
  for (long B : {256, 1024, 4096})
    for (long d : {128, 512, 1024}) b->Args({B, d});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_three_gemms)->Name("loss/three_gemms")->Apply(grid);
BENCHMARK(BM_in_batch_info_nce)->Name("loss/in_batch_info_nce")->Apply(grid);
BENCHMARK(BM_sigmoid_pairwise)->Name("loss/sigmoid_pairwise")->Apply(grid);

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

// B = 32768: the logits alone would take 4 GiB; the tiled path keeps O(B · tile + B · d).
void BM_tiled(benchmark::State& state) {
  const long B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      b = bench::random_matrix<float>(B, d, 2);
  for (auto _ : state) {
    auto r = state.range(2) == 0 ? loss::in_batch_info_nce(a, b) : loss::sigmoid_pairwise(a, b);
    benchmark::DoNotOptimize(r.grad_a.data());
  }
  // 8 B² d: the tiled InfoNCE recomputes the logits in the backward pass (one GEMM more).
  state.counters["peak_RSS_MiB"] = peak_rss_mib();
  set_flops(state, double(B), double(d));
  state.SetLabel(state.range(2) == 0 ? "in_batch_info_nce tiled" : "sigmoid_pairwise tiled");
}
BENCHMARK(BM_tiled)
    ->Name("loss/tiled")
    ->Args({32768, 512, 0})
    ->Args({32768, 512, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// Guard pair for CI (bench/guard.py): the tiled path against the direct one at the same size.
void BM_guard_in_batch(benchmark::State& state) {
  const Matrix<float> a = bench::random_matrix<float>(2048, 256, 1),
                      b = bench::random_matrix<float>(2048, 256, 2);
  loss::InBatchOptions opt;
  if (state.range(0) == 1) opt.max_logits_bytes = 0;  // force tiles of 256 rows
  for (auto _ : state) {
    auto r = loss::in_batch_info_nce(a, b, opt);
    benchmark::DoNotOptimize(r.grad_a.data());
  }
  set_flops(state, 2048, 256);
  state.SetLabel(state.range(0) == 1 ? "tiled" : "direct");
}
BENCHMARK(BM_guard_in_batch)
    ->Name("guard/in_batch_info_nce")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
