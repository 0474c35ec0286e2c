// Single-query ANN benchmark, ann-benchmarks protocol: one thread, one query per call, k = 10,
// Fashion-MNIST (60k × 784 base, the 10k test images as queries, L2). Compared in the same
// binary at the same flags: mmrag HnswIndex, hnswlib (Debian's libhnswlib-dev headers, when
// present: MMRAG_HAVE_HNSWLIB) at M = 16 and ef_construction = 200, and mmrag IvfIndex (nlist 256,
// nprobe sweep). Each search benchmark reports items_per_second (= QPS, one query per
// iteration) and recall@10 over the queries it ran; the build benchmarks report seconds
// (single-threaded when OMP_NUM_THREADS=1) and the index's bytes.
//
//   OMP_NUM_THREADS=1 ./build/bench/bench_hnsw [--hnsw_n=N] [--hnsw_queries=Q] [benchmark flags]
//   --hnsw_n        base rows (first N training images; default 60000)
//   --hnsw_queries  queries (first Q test images; default 2000)
//   MMRAG_HNSW_LOAD=FILE (environment): search a graph saved by HnswIndex::save instead of
//                   building one (the build benchmark then reports 0 s)
// Without the dataset the program runs on seeded Gaussian clusters of the same shape.
#include <malloc.h>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "fashion_mnist.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/hnsw_index.hpp"
#include "mmrag/ivf_index.hpp"

#ifdef MMRAG_HAVE_HNSWLIB
#include <hnswlib/hnswlib.h>
#endif

using namespace mmrag;

namespace {

std::size_t g_n = 60000, g_queries = 2000;
constexpr std::size_t kK = 10;
constexpr std::size_t kM = 16, kEfConstruction = 200;

/// Heap bytes in use (glibc): the memory of a structure is the growth while it is built.
std::size_t heap_in_use() {
  return mallinfo2().uordblks + mallinfo2().hblkhd;
}

/// This process's anonymous memory on transparent huge pages (Linux; 0 elsewhere), bytes.
double huge_page_bytes() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string key;
  double kb = 0;
  while (in >> key)
    if (key == "AnonHugePages:") {
      in >> kb;
      break;
    }
  return kb * 1024;
}

struct Data {
  Matrix<float> base, queries;
  Matrix<Index> truth;  // queries × k exact ids
  std::string name;
};

const Data& data() {
  static const Data d = [] {
    Data out;
    if (datasets::fashion_mnist_available()) {
      auto fm = datasets::load_fashion_mnist();
      const auto n = std::min<Eigen::Index>(fm.train_images.rows(), Eigen::Index(g_n));
      const auto q = std::min<Eigen::Index>(fm.test_images.rows(), Eigen::Index(g_queries));
      out.base = fm.train_images.topRows(n);
      out.queries = fm.test_images.topRows(q);
      out.name = "fashion-mnist";
    } else {
      std::mt19937_64 rng(7);
      std::normal_distribution<float> g(0.f, 1.f);
      const Matrix<float> centres = bench::random_matrix<float>(64, 784, 3) * 100.f;
      auto draw = [&](Eigen::Index rows) {
        Matrix<float> m(rows, 784);
        for (Eigen::Index r = 0; r < rows; ++r)
          m.row(r) = centres.row(Eigen::Index(rng() % 64)) +
                     Matrix<float>::NullaryExpr(1, 784, [&] { return 30.f * g(rng); });
        return m;
      };
      out.base = draw(Eigen::Index(g_n));
      out.queries = draw(Eigen::Index(g_queries));
      out.name = "gaussian-clusters";
    }
    FlatIndex<float> flat(784, Metric::l2);
    flat.add(out.base);
    out.truth = flat.search(out.queries, kK).ids;
    return out;
  }();
  return d;
}

/// Recall@10 of one result row against the truth row (ann-benchmarks' definition).
template <class Ids>
std::size_t hits(const Ids& got, std::size_t q) {
  const Data& d = data();
  std::size_t h = 0;
  for (std::size_t j = 0; j < kK; ++j)
    for (std::size_t l = 0; l < kK; ++l) h += got[j] == d.truth(Eigen::Index(q), Eigen::Index(l));
  return h;
}

struct Built {
  std::unique_ptr<HnswIndex<float>> hnsw;
  double hnsw_seconds = 0;
  std::size_t hnsw_heap = 0;
  std::unique_ptr<IvfIndex<float>> ivf;
#ifdef MMRAG_HAVE_HNSWLIB
  std::unique_ptr<hnswlib::L2Space> space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnswlib;
  double hnswlib_seconds = 0;
  std::size_t hnswlib_heap = 0;
#endif
};

Built& built() {
  static Built b;
  return b;
}

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void build_mmrag() {
  Built& b = built();
  if (b.hnsw) return;
  const Data& d = data();
  if (const char* file = std::getenv("MMRAG_HNSW_LOAD")) {  // skip the build: a saved graph
    b.hnsw = std::make_unique<HnswIndex<float>>(HnswIndex<float>::load(file));
    return;
  }
  const std::size_t before = heap_in_use();
  const auto t0 = std::chrono::steady_clock::now();
  b.hnsw = std::make_unique<HnswIndex<float>>(
      784, Metric::l2, HnswParams{.M = kM, .ef_construction = kEfConstruction});
  b.hnsw->add(d.base);
  b.hnsw_seconds = seconds(t0);
  b.hnsw_heap = heap_in_use() - before;
}

#ifdef MMRAG_HAVE_HNSWLIB
void build_hnswlib() {
  Built& b = built();
  if (b.hnswlib) return;
  const Data& d = data();
  const std::size_t before = heap_in_use();
  const auto t0 = std::chrono::steady_clock::now();
  b.space = std::make_unique<hnswlib::L2Space>(784);
  b.hnswlib = std::make_unique<hnswlib::HierarchicalNSW<float>>(
      b.space.get(), std::size_t(d.base.rows()), kM, kEfConstruction, 42);
  for (Eigen::Index i = 0; i < d.base.rows(); ++i)
    b.hnswlib->addPoint(d.base.row(i).data(), hnswlib::labeltype(i));
  b.hnswlib_seconds = seconds(t0);
  b.hnswlib_heap = heap_in_use() - before;
}
#endif

void build_ivf() {
  Built& b = built();
  if (b.ivf) return;
  b.ivf = std::make_unique<IvfIndex<float>>(784, 256, Metric::l2);
  b.ivf->train(data().base);
  b.ivf->add(data().base);
}

// ---- builds (one iteration each: the figure is the build time) ----------------------------

void BM_build_mmrag_hnsw(benchmark::State& state) {
  for (auto _ : state) build_mmrag();
  const Built& b = built();
  state.SetIterationTime(b.hnsw_seconds);
  state.counters["build_s"] = b.hnsw_seconds;
  state.counters["memory_bytes"] = double(b.hnsw->memory_bytes());
  state.counters["heap_bytes"] = double(b.hnsw_heap);
  state.counters["huge_page_bytes"] = huge_page_bytes();
  state.counters["rows"] = double(data().base.rows());
  state.SetLabel(data().name + " M=16 efC=200 " + bench::arch_label());
}
BENCHMARK(BM_build_mmrag_hnsw)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

#ifdef MMRAG_HAVE_HNSWLIB
void BM_build_hnswlib(benchmark::State& state) {
  for (auto _ : state) build_hnswlib();
  const Built& b = built();
  state.SetIterationTime(b.hnswlib_seconds);
  state.counters["build_s"] = b.hnswlib_seconds;
  // hnswlib has no memory_bytes: its level-0 block plus per-element bookkeeping as measured
  // by the heap growth during construction and build.
  state.counters["heap_bytes"] = double(b.hnswlib_heap);
  state.counters["rows"] = double(data().base.rows());
  state.SetLabel(data().name + " M=16 efC=200 hnswlib");
}
BENCHMARK(BM_build_hnswlib)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);
#endif

// ---- single-query searches ------------------------------------------------------------------

template <class Search>
void run_queries(benchmark::State& state, Search&& search) {
  const Data& d = data();
  const auto nq = std::size_t(d.queries.rows());
  std::size_t q = 0, found = 0, asked = 0;
  for (auto _ : state) {
    found += search(q);
    asked += kK;
    if (++q == nq) q = 0;
  }
  state.SetItemsProcessed(std::int64_t(state.iterations()));
  state.counters["recall"] = asked ? double(found) / double(asked) : 0.0;
}

void BM_mmrag_hnsw(benchmark::State& state) {
  build_mmrag();
  const Data& d = data();
  const HnswIndex<float>& index = *built().hnsw;
  const HnswSearchParams params{.ef_search = std::size_t(state.range(0))};
  run_queries(state, [&](std::size_t q) {
    const Hits<float> h = index.search(d.queries.row(Eigen::Index(q)), kK, params);
    return hits(h.ids.data(), q);
  });
  state.SetLabel("ef=" + std::to_string(state.range(0)));
}

#ifdef MMRAG_HAVE_HNSWLIB
void BM_hnswlib(benchmark::State& state) {
  build_hnswlib();
  const Data& d = data();
  auto& index = *built().hnswlib;
  index.setEf(std::size_t(state.range(0)));
  std::vector<Index> ids(kK);
  run_queries(state, [&](std::size_t q) {
    auto top = index.searchKnn(d.queries.row(Eigen::Index(q)).data(), kK);
    std::fill(ids.begin(), ids.end(), Index(-1));
    for (std::size_t j = top.size(); j-- > 0; top.pop()) ids[j] = Index(top.top().second);
    return hits(ids.data(), q);
  });
  state.SetLabel("ef=" + std::to_string(state.range(0)));
}
#endif

void BM_mmrag_ivf(benchmark::State& state) {
  build_ivf();
  const Data& d = data();
  const IvfIndex<float>& index = *built().ivf;
  const SearchParams params{.nprobe = std::size_t(state.range(0))};
  run_queries(state, [&](std::size_t q) {
    const Hits<float> h = index.search(d.queries.row(Eigen::Index(q)), kK, params);
    return hits(h.ids.data(), q);
  });
  state.SetLabel("nlist=256 nprobe=" + std::to_string(state.range(0)));
}

void ef_sweep(benchmark::internal::Benchmark* b) {
  for (int ef : {10, 16, 24, 32, 48, 64, 96, 128, 256}) b->Arg(ef);
}

}  // namespace

BENCHMARK(BM_mmrag_hnsw)->Apply(ef_sweep);
#ifdef MMRAG_HAVE_HNSWLIB
BENCHMARK(BM_hnswlib)->Apply(ef_sweep);
#endif
BENCHMARK(BM_mmrag_ivf)->Arg(1)->Arg(2)->Arg(4)->Arg(8)->Arg(16)->Arg(32);

int main(int argc, char** argv) {
  // Our own flags first; the rest go to Google Benchmark.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--hnsw_n=", 0) == 0)
      g_n = std::stoul(a.substr(9));
    else if (a.rfind("--hnsw_queries=", 0) == 0)
      g_queries = std::stoul(a.substr(15));
    else
      rest.push_back(argv[i]);
  }
  int rest_argc = int(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
