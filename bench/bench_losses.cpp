// Benchmarks for the contrastive losses: forward + backward of in_batch_info_nce (and its
// decoupled form), multi_positive_info_nce, supervised_contrastive and sigmoid_pairwise beside
// the three GEMMs they cannot avoid (s = a bᵀ, G b, Gᵀ a); max_hinge beside its one GEMM;
// triplet_margin beside a streaming baseline; all timed in the same binary. And the tiled path
// at B = 32768 with its peak resident memory.
//   Run the tiled case alone for a meaningful peak: --benchmark_filter=tiled
#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <vector>

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

// The new members of the family, each beside the GEMM work it cannot avoid (three_gemms for
// the softmax losses, one_gemm for max_hinge, a streaming baseline for triplet_margin).
std::vector<int> class_labels(long n, int classes) {
  std::vector<int> l(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i)
    l[static_cast<std::size_t>(i)] = static_cast<int>((i * 7919) % classes);
  return l;
}

void BM_in_batch_decoupled(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      b = bench::random_matrix<float>(B, d, 2);
  for (auto _ : state) {
    auto r = loss::in_batch_info_nce(a, b, {.decoupled = true});
    benchmark::DoNotOptimize(r.grad_a.data());
  }
  set_flops(state, double(B), double(d));
  state.SetLabel("decoupled, normalize+symmetric");
}

void BM_multi_positive(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      b = bench::random_matrix<float>(B, d, 2);
  const auto labels = class_labels(B, static_cast<int>(B / 4));  // 4 positives per anchor
  for (auto _ : state) {
    auto r = loss::multi_positive_info_nce(a, b, labels, labels);
    benchmark::DoNotOptimize(r.grad_a.data());
  }
  set_flops(state, double(B), double(d));
  state.SetLabel("B/4 labels, normalize+symmetric");
}

void BM_supervised_contrastive(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> x = bench::random_matrix<float>(B, d, 1);
  const auto labels = class_labels(B, 100);
  for (auto _ : state) {
    auto r = loss::supervised_contrastive(x, labels);
    benchmark::DoNotOptimize(r.grad.data());
  }
  set_flops(state, double(B), double(d));
  state.SetLabel("100 classes, normalize");
}

void BM_one_gemm(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      b = bench::random_matrix<float>(B, d, 2);
  Matrix<float> s(B, B);
  for (auto _ : state) {
    s.noalias() = a * b.transpose();
    benchmark::DoNotOptimize(s.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * double(B) * double(B) * double(d) * double(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
  state.SetItemsProcessed(state.iterations() * B);
  state.SetLabel("baseline: s = a bT");
}

void BM_max_hinge(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      b = bench::random_matrix<float>(B, d, 2);
  for (auto _ : state) {
    auto r = loss::max_hinge(a, b);
    benchmark::DoNotOptimize(r.grad_a.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * double(B) * double(B) * double(d) * double(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
  state.SetItemsProcessed(state.iterations() * B);
  state.SetLabel("normalize");
}

void BM_triplet_streaming(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      p = bench::random_matrix<float>(B, d, 2),
                      n = bench::random_matrix<float>(B, d, 3);
  Matrix<float> ga(B, d), gp(B, d), gn(B, d);
  for (auto _ : state) {  // read three inputs, write three outputs: the least any triplet loss does
    gp = a - p;
    gn = a - n;
    ga = gp + gn;
    benchmark::DoNotOptimize(ga.data());
  }
  state.SetBytesProcessed(state.iterations() * 6 * B * d * int64_t(sizeof(float)));
  state.SetLabel("baseline: 3 reads + 3 writes");
}

void BM_triplet_margin(benchmark::State& state) {
  const auto B = state.range(0), d = state.range(1);
  const Matrix<float> a = bench::random_matrix<float>(B, d, 1),
                      p = bench::random_matrix<float>(B, d, 2),
                      n = bench::random_matrix<float>(B, d, 3);
  for (auto _ : state) {
    auto r = loss::triplet_margin(a, p, n);
    benchmark::DoNotOptimize(r.grad_anchor.data());
  }
  state.SetBytesProcessed(state.iterations() * 6 * B * d * int64_t(sizeof(float)));
  state.SetLabel("margin 0.2");
}

void grid(benchmark::internal::Benchmark* b) {
  for (long B : {256, 1024, 4096})
    for (long d : {128, 512, 1024}) b->Args({B, d});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_three_gemms)->Name("loss/three_gemms")->Apply(grid);
BENCHMARK(BM_in_batch_info_nce)->Name("loss/in_batch_info_nce")->Apply(grid);
BENCHMARK(BM_sigmoid_pairwise)->Name("loss/sigmoid_pairwise")->Apply(grid);
BENCHMARK(BM_in_batch_decoupled)->Name("loss/in_batch_decoupled")->Apply(grid);
BENCHMARK(BM_multi_positive)->Name("loss/multi_positive_info_nce")->Apply(grid);
BENCHMARK(BM_supervised_contrastive)->Name("loss/supervised_contrastive")->Apply(grid);
BENCHMARK(BM_one_gemm)->Name("loss/one_gemm")->Apply(grid);
BENCHMARK(BM_max_hinge)->Name("loss/max_hinge")->Apply(grid);
BENCHMARK(BM_triplet_streaming)->Name("loss/triplet_streaming")->Apply(grid);
BENCHMARK(BM_triplet_margin)->Name("loss/triplet_margin")->Apply(grid);

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
  state.counters["peak_RSS_MiB"] = peak_rss_mib();
  set_flops(state, double(B), double(d));
  // 8 B² d for the tiled InfoNCE: it recomputes the logits in the backward pass (one GEMM
  // more); SigLIP's single pass stays at 6 B² d.
  if (state.range(2) == 0)
    state.counters["GFLOP/s"] = benchmark::Counter(
        8.0 * double(B) * double(B) * double(d) * double(state.iterations()) * 1e-9,
        benchmark::Counter::kIsRate);
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
