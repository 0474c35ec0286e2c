// IVF-PQ fast-scan + refine against mmrag's IVF-Flat (and FAISS's IndexIVFPQFastScan +
// IndexRefineFlat when libfaiss-dev is installed) on Fashion-MNIST (60k × 784, L2, k = 10):
// one query per call, one thread (run with OMP_NUM_THREADS=1; FAISS with
// OPENBLAS_CORETYPE=SkylakeX). Each benchmark reports QPS, recall@10 against the exact top-10
// of the queries it ran, and the index's bytes relative to IVF-Flat's ("mem_vs_ivf").
//   --pq_n=N        base rows (default 60000; smoke runs use fewer)
//   --pq_queries=Q  queries (default 1000)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "bench_common.hpp"
#include "fashion_mnist.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"
#include "mmrag/ivf_pq_index.hpp"

#ifdef MMRAG_HAVE_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexRefine.h>
#endif

using namespace mmrag;

namespace {

Eigen::Index g_n = 60000, g_nq = 1000;

struct Data {
  Matrix<float> base, queries;
  Matrix<Index> truth;  // nq × 10, exact
};

const Data& data() {
  static const Data d = [] {
    Data out;
    if (datasets::fashion_mnist_available()) {
      auto fm = datasets::load_fashion_mnist();
      out.base = fm.train_images.topRows(std::min<Eigen::Index>(g_n, fm.train_images.rows()));
      out.queries = fm.test_images.topRows(std::min<Eigen::Index>(g_nq, fm.test_images.rows()));
    } else {  // no dataset: clustered stand-in of the same shape
      out.base = bench::random_matrix<float>(g_n, 784, 3);
      out.queries = bench::random_matrix<float>(g_nq, 784, 4);
    }
    FlatIndex<float> flat(784, Metric::l2);
    flat.add(out.base);
    out.truth = flat.search(out.queries, 10).ids;
    return out;
  }();
  return d;
}

const IvfIndex<float>& ivf_flat() {
  static const IvfIndex<float> index = [] {
    IvfIndex<float> i(784, 256, Metric::l2);
    i.train(data().base);
    i.add(data().base);
    return i;
  }();
  return index;
}

Storage refine_storage() {
  try {
    Codec<float> c(4, Storage::int8);
    return Storage::int8;
  } catch (const std::invalid_argument&) {
    return Storage::float32;  // int8 codec not in this build yet
  }
}

const IvfPqIndex<float>& ivf_pq(std::size_t m) {
  static std::map<std::size_t, IvfPqIndex<float>> cache;
  auto it = cache.find(m);
  if (it == cache.end()) {
    IvfPqIndex<float> i(784, 256, Metric::l2, {.m = m, .nbits = 4, .refine = refine_storage()});
    i.train(data().base);
    i.add(data().base);
    it = cache.emplace(m, std::move(i)).first;
  }
  return it->second;
}

template <class Search>
void run(benchmark::State& state, Search&& search, std::size_t bytes, const std::string& label) {
  const Data& d = data();
  std::size_t found = 0, asked = 0;
  Eigen::Index q = 0;
  for (auto _ : state) {
    const Matrix<Index> ids = search(d.queries.row(q));
    std::set<Index> truth(d.truth.row(q).data(), d.truth.row(q).data() + 10);
    for (Eigen::Index j = 0; j < 10; ++j) found += truth.count(ids(0, j));
    asked += 10;
    q = (q + 1) % d.queries.rows();
  }
  state.counters["QPS"] =
      benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["recall"] = asked ? double(found) / double(asked) : 0.0;
  state.counters["mem_vs_ivf"] = double(bytes) / double(ivf_flat().memory_bytes());
  state.counters["MB"] = double(bytes) / 1e6;
  state.SetLabel(label);
}

// mmrag IVF-Flat, nlist 256: the baseline (args: nprobe).
void BM_ivf_flat(benchmark::State& state) {
  const auto nprobe = static_cast<std::size_t>(state.range(0));
  const auto& index = ivf_flat();
  run(
      state, [&](const auto& q) { return index.search(q, 10, {.nprobe = nprobe}).ids; },
      index.memory_bytes(), "mmrag IVF-Flat nlist 256 " + bench::arch_label());
}
BENCHMARK(BM_ivf_flat)
    ->Name("fmnist_l2_k10/ivf_flat")
    ->Arg(4)
    ->Arg(8)
    ->Arg(9)
    ->Arg(10)
    ->Arg(12)
    ->Arg(16)
    ->Unit(benchmark::kMicrosecond);

// mmrag IVF-PQ 4-bit fast scan + refine (args: m, nprobe, k_factor).
void BM_ivf_pq(benchmark::State& state) {
  const auto m = static_cast<std::size_t>(state.range(0));
  const auto nprobe = static_cast<std::size_t>(state.range(1));
  const auto kf = static_cast<std::size_t>(state.range(2));
  const auto& index = ivf_pq(m);
  run(
      state,
      [&](const auto& q) { return index.search(q, 10, {.nprobe = nprobe, .k_factor = kf}).ids; },
      index.memory_bytes(),
      std::string("mmrag IVF-PQ4 fast-scan + ") + to_string(refine_storage()) + " refine");
}
BENCHMARK(BM_ivf_pq)
    ->Name("fmnist_l2_k10/ivf_pq4")
    ->ArgsProduct({{196, 392}, {8, 10, 12, 16}, {4, 10}})
    ->Unit(benchmark::kMicrosecond);

#ifdef MMRAG_HAVE_FAISS
// FAISS IndexIVFPQFastScan (nlist 256, 4-bit, m) + IndexRefineFlat (args: m, nprobe, k_factor).
void BM_faiss_ivf_pq(benchmark::State& state) {
  const auto m = static_cast<std::size_t>(state.range(0));
  const Data& d = data();
  static std::map<std::size_t, std::unique_ptr<faiss::IndexRefineFlat>> cache;
  static std::map<std::size_t, std::unique_ptr<faiss::IndexFlatL2>> quantizers;
  static std::map<std::size_t, std::unique_ptr<faiss::IndexIVFPQFastScan>> bases;
  if (!cache.count(m)) {
    quantizers[m] = std::make_unique<faiss::IndexFlatL2>(784);
    bases[m] = std::make_unique<faiss::IndexIVFPQFastScan>(quantizers[m].get(), 784, 256, m, 4);
    cache[m] = std::make_unique<faiss::IndexRefineFlat>(bases[m].get());
    cache[m]->train(d.base.rows(), d.base.data());
    cache[m]->add(d.base.rows(), d.base.data());
  }
  faiss::IndexRefineFlat& index = *cache[m];
  // Debian's FAISS 1.7 has no per-call refine parameters: set them on the index (one thread).
  bases[m]->nprobe = static_cast<std::size_t>(state.range(1));
  index.k_factor = static_cast<float>(state.range(2));
  std::vector<float> dist(10);
  // IndexRefineFlat keeps float32 rows (4 × 784 bytes) + 4-bit codes + ids.
  const std::size_t bytes = std::size_t(d.base.rows()) * (784 * 4 + m / 2 + 8) + 256 * 784 * 4;
  run(
      state,
      [&](const auto& q) {
        Matrix<Index> ids(1, 10);
        index.search(1, q.data(), 10, dist.data(),
                     reinterpret_cast<faiss::Index::idx_t*>(ids.data()));
        return ids;
      },
      bytes, "FAISS IndexIVFPQFastScan + IndexRefineFlat (float32 refine)");
}
BENCHMARK(BM_faiss_ivf_pq)
    ->Name("fmnist_l2_k10/faiss_ivf_pq4")
    ->ArgsProduct({{196, 392}, {8, 16}, {4, 10}})
    ->Unit(benchmark::kMicrosecond);
#endif

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--pq_n=", 7) == 0) g_n = std::atol(argv[i] + 7);
    if (std::strncmp(argv[i], "--pq_queries=", 13) == 0) g_nq = std::atol(argv[i] + 13);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
