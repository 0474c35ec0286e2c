// Choosing a storage: recall, memory and QPS of FlatIndex and IvfIndex with each Storage, beside
// the float32 index in the same run, on two data sets:
//   fmnist      Fashion-MNIST, 60k × 784 pixels, l2 (a clustered stand-in when the dataset
//               package is missing);
//   embeddings  200k × 384 clustered, CLIP-like embeddings (low intrinsic dimension,
//               per-dimension offsets and spreads, unit norm), cosine;
//   isotropic   the same size with full-rank Gaussian clusters: the near-tie stress case.
// Recall@10 is against the exact float32 top 10 of the same queries; "mem_vs_f32" is the
// index's memory_bytes() over the float32 index's (Flat rows against FlatIndex<float>, IVF rows
// against IVF-Flat). One thread: run with OMP_NUM_THREADS=1.
//   --storage_n=N        rows of the embedding set (default 200000; smoke runs use fewer)
//   --storage_queries=Q  queries per data set (default 200)
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>

#include "bench_common.hpp"
#include "fashion_mnist.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"

#ifdef MMRAG_HAVE_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexScalarQuantizer.h>
#endif

using namespace mmrag;

namespace {

Eigen::Index g_n = 200000, g_nq = 200;

struct DataSet {
  std::string name;
  Metric metric;
  Matrix<float> base, queries;
  Matrix<Index> truth;  // nq × 10, exact (float32 FlatIndex)
};

// Clustered embeddings, CLIP-like: learned embeddings have a low intrinsic dimension (tens of
// directions carry most of the variance), per-dimension offsets and unequal spreads, unit norm.
// A row is normalize(offset + spread ⊙ (A·z) + 0.05·noise), z = one of 1000 cluster centres in
// 48 latent dimensions plus 0.5·N(0, 1) each, A a fixed random 384 × 48 map. `isotropic`: each row
// is instead a centre plus full-rank 384-d Gaussian noise (all of a cluster nearly equidistant
// from a query: the near-tie stress case for 8-bit codes).
Matrix<float> embeddings(Eigen::Index rows, std::uint64_t seed, bool isotropic) {
  constexpr Eigen::Index dim = 384, latent = 48, clusters = 1000;
  struct Shape {
    std::vector<double> offset, spread, map, centres, iso_centres;
  };
  static const Shape shape = [] {
    std::mt19937_64 rng(99);
    std::normal_distribution<double> g(0.0, 1.0);
    Shape s;
    s.offset.resize(dim), s.spread.resize(dim), s.map.resize(dim * latent);
    s.centres.resize(clusters * latent), s.iso_centres.resize(clusters * dim);
    for (Eigen::Index j = 0; j < dim; ++j) s.offset[j] = 0.7 * g(rng), s.spread[j] = std::exp(0.5 * g(rng));
    for (auto& v : s.map) v = g(rng) / std::sqrt(double(latent));
    for (auto& v : s.centres) v = g(rng);
    for (auto& v : s.iso_centres) v = g(rng);
    return s;
  }();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::uniform_int_distribution<Eigen::Index> pick(0, clusters - 1);
  Matrix<float> m(rows, dim);
  std::vector<double> z(latent), v(dim);
  for (Eigen::Index r = 0; r < rows; ++r) {
    const Eigen::Index c = pick(rng);
    if (isotropic) {
      for (Eigen::Index j = 0; j < dim; ++j)
        v[j] = shape.offset[j] + shape.spread[j] * (shape.iso_centres[c * dim + j] + 0.6 * g(rng));
    } else {
      for (Eigen::Index t = 0; t < latent; ++t) z[t] = shape.centres[c * latent + t] + 0.5 * g(rng);
      for (Eigen::Index j = 0; j < dim; ++j) {
        double a = 0;
        for (Eigen::Index t = 0; t < latent; ++t) a += shape.map[j * latent + t] * z[t];
        v[j] = shape.offset[j] + shape.spread[j] * a + 0.05 * g(rng);
      }
    }
    double norm = 0;
    for (double x : v) norm += x * x;
    for (Eigen::Index j = 0; j < dim; ++j) m(r, j) = static_cast<float>(v[j] / std::sqrt(norm));
  }
  return m;
}

const DataSet& data(int which) {
  static std::map<int, DataSet> cache;
  auto it = cache.find(which);
  if (it != cache.end()) return it->second;
  DataSet d;
  if (which == 0) {
    d.name = "fmnist 60k x 784 l2";
    d.metric = Metric::l2;
    if (datasets::fashion_mnist_available()) {
      auto fm = datasets::load_fashion_mnist();
      d.base = fm.train_images;
      d.queries = fm.test_images.topRows(std::min<Eigen::Index>(g_nq, fm.test_images.rows()));
    } else {
      d.name = "stand-in 60k x 784 l2 (no dataset-fashion-mnist)";
      d.base = bench::random_matrix<float>(60000, 784, 3).array().abs() * 255.f;
      d.queries = bench::random_matrix<float>(g_nq, 784, 4).array().abs() * 255.f;
    }
  } else {
    const bool iso = which == 2;
    d.name = std::string(iso ? "isotropic clusters " : "embeddings ") + std::to_string(g_n / 1000) +
             "k x 384 cosine";
    d.metric = Metric::cosine;
    d.base = embeddings(g_n, 1, iso);
    d.queries = embeddings(g_nq, 2, iso);
  }
  FlatIndex<float> exact(static_cast<std::size_t>(d.base.cols()), d.metric);
  exact.add(d.base);
  d.truth = exact.search(d.queries, 10).ids;
  return cache.emplace(which, std::move(d)).first->second;
}

double recall(const Matrix<Index>& got, const Matrix<Index>& truth) {
  std::size_t found = 0;
  for (Eigen::Index q = 0; q < truth.rows(); ++q) {
    const std::set<Index> t(truth.row(q).data(), truth.row(q).data() + truth.cols());
    for (Eigen::Index j = 0; j < got.cols(); ++j) found += t.count(got(q, j));
  }
  return double(found) / double(truth.size());
}

const Storage kStorages[] = {Storage::float32, Storage::float16, Storage::bfloat16, Storage::int8};

std::size_t flat_f32_bytes(int which) {
  static std::map<int, std::size_t> bytes;
  if (!bytes.count(which)) {
    const DataSet& d = data(which);
    FlatIndex<float> f(static_cast<std::size_t>(d.base.cols()), d.metric);
    f.add(d.base);
    bytes[which] = f.memory_bytes();
  }
  return bytes[which];
}

// Args: {data set, storage}. The whole query set per call (a batch), exact over decoded rows.
void BM_flat(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  const Storage storage = kStorages[state.range(1)];
  const DataSet& d = data(which);
  FlatIndex<float> index(static_cast<std::size_t>(d.base.cols()), d.metric, storage);
  index.add(d.base);
  Matrix<Index> ids;
  for (auto _ : state) {
    ids = index.search(d.queries, 10).ids;
    benchmark::DoNotOptimize(ids.data());
  }
  state.counters["QPS"] = benchmark::Counter(double(state.iterations() * d.queries.rows()),
                                             benchmark::Counter::kIsRate);
  state.counters["recall@10"] = recall(ids, d.truth);
  state.counters["mem_vs_f32"] = double(index.memory_bytes()) / double(flat_f32_bytes(which));
  state.counters["MB"] = double(index.memory_bytes()) / 1e6;
  state.SetLabel(d.name + ", " + to_string(storage) + " " + bench::arch_label());
}
BENCHMARK(BM_flat)
    ->Name("flat")
    ->ArgsProduct({{0, 1, 2}, {0, 1, 2, 3}})
    ->Unit(benchmark::kMillisecond);

// Args: {data set, storage}: nlist 256, nprobe 16, one query per call (as a RAG service asks).
void BM_ivf(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  const Storage storage = kStorages[state.range(1)];
  const DataSet& d = data(which);
  static std::map<int, std::size_t> f32_bytes;
  IvfIndex<float> index(static_cast<std::size_t>(d.base.cols()), 256, d.metric, storage);
  index.train(d.base.topRows(std::min<Eigen::Index>(d.base.rows(), 50000)));
  index.add(d.base);
  if (storage == Storage::float32) f32_bytes[which] = index.memory_bytes();
  Matrix<Index> ids(d.queries.rows(), 10);
  Eigen::Index q = 0;
  for (auto _ : state) {
    ids.row(q) = index.search(d.queries.row(q), 10, {.nprobe = 16}).ids;
    q = (q + 1) % d.queries.rows();
  }
  // Recall over every query, outside the timed loop.
  ids = index.search(d.queries, 10, {.nprobe = 16}).ids;
  state.counters["QPS"] = benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["recall@10"] = recall(ids, d.truth);
  if (f32_bytes.count(which))
    state.counters["mem_vs_f32"] = double(index.memory_bytes()) / double(f32_bytes[which]);
  state.counters["MB"] = double(index.memory_bytes()) / 1e6;
  state.SetLabel(d.name + ", IVF nlist 256 nprobe 16, " + to_string(storage) + " " +
                 bench::arch_label());
}
BENCHMARK(BM_ivf)
    ->Name("ivf")
    ->ArgsProduct({{0, 1, 2}, {0, 1, 2, 3}})
    ->Unit(benchmark::kMicrosecond);

#ifdef MMRAG_HAVE_FAISS
// Baseline: FAISS's SQ8 (QT_8bit, per-dimension min/max), flat and IVF with residuals, on the
// same data (cosine as inner product on normalized rows). Args: {data set, ivf}.
void BM_faiss_sq8(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  const bool ivf = state.range(1) == 1;
  const DataSet& d = data(which);
  const int dim = static_cast<int>(d.base.cols());
  Matrix<float> base = d.base, queries = d.queries;
  if (d.metric == Metric::cosine) normalize_rows(base), normalize_rows(queries);
  const faiss::MetricType mt = d.metric == Metric::l2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
  faiss::IndexFlat quantizer(dim, mt);
  std::unique_ptr<faiss::Index> index;
  if (ivf) {
    auto* i = new faiss::IndexIVFScalarQuantizer(&quantizer, dim, 256,
                                                 faiss::ScalarQuantizer::QT_8bit, mt, true);
    i->nprobe = 16;
    index.reset(i);
    index->train(std::min<Eigen::Index>(base.rows(), 50000), base.data());
  } else {
    index.reset(new faiss::IndexScalarQuantizer(dim, faiss::ScalarQuantizer::QT_8bit, mt));
    index->train(base.rows(), base.data());
  }
  index->add(base.rows(), base.data());
  const Eigen::Index nq = queries.rows();
  Matrix<Index> ids(nq, 10);
  std::vector<float> dist(10 * nq);
  std::vector<faiss::Index::idx_t> fids(10 * nq);
  for (auto _ : state) {
    index->search(nq, queries.data(), 10, dist.data(), fids.data());
    benchmark::DoNotOptimize(fids.data());
  }
  for (Eigen::Index i = 0; i < ids.size(); ++i) ids.data()[i] = fids[std::size_t(i)];
  state.counters["QPS"] =
      benchmark::Counter(double(state.iterations() * nq), benchmark::Counter::kIsRate);
  state.counters["recall@10"] = recall(ids, d.truth);
  state.SetLabel(d.name + (ivf ? ", baseline: FAISS IVF-SQ8 nlist 256 nprobe 16 (batch)"
                               : ", baseline: FAISS IndexScalarQuantizer QT_8bit"));
}
BENCHMARK(BM_faiss_sq8)
    ->Name("faiss_sq8")
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond);
#endif

}  // namespace

int main(int argc, char** argv) {
  // Our own flags first (Google Benchmark rejects unknown ones).
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--storage_n=", 12) == 0)
      g_n = std::atol(argv[i] + 12);
    else if (std::strncmp(argv[i], "--storage_queries=", 18) == 0)
      g_nq = std::atol(argv[i] + 18);
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
