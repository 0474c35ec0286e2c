// Benchmarks for search: FlatIndex (batched cosine over 200k × 128; one query over 1M × 128
// beside a streaming read), IvfIndex on synthetic data, and k-means, each beside a baseline in
// the same binary: FAISS when libfaiss-dev is installed, otherwise a plain Eigen version.
//   Time FAISS with OPENBLAS_CORETYPE=SkylakeX on this machine (Debian's OpenBLAS otherwise
//   misdetects the CPU) and one thread: OMP_NUM_THREADS=1.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <numeric>

#include "bench_common.hpp"
#ifdef MMRAG_HAVE_ZLIB
#include "fashion_mnist.hpp"
#endif
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"
#include "mmrag/kmeans.hpp"

#ifdef MMRAG_HAVE_FAISS
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#endif

using namespace mmrag;

namespace {

const Matrix<float>& base_200k() {
  static const Matrix<float> m = bench::random_matrix<float>(200000, 128, 11);
  return m;
}
const Matrix<float>& queries_1k() {
  static const Matrix<float> m = bench::random_matrix<float>(1000, 128, 12);
  return m;
}

void set_qps(benchmark::State& state, std::int64_t nq) {
  state.counters["QPS"] =
      benchmark::Counter(double(state.iterations() * nq), benchmark::Counter::kIsRate);
  state.SetItemsProcessed(state.iterations() * nq);
}

// ---- Flat, 1000 queries × 200k × 128, cosine, k = 10 ------------------------------------------
void BM_flat_batch_mmrag(benchmark::State& state) {
  FlatIndex<float> index(128, Metric::cosine);
  index.add(base_200k());
  for (auto _ : state) {
    auto hits = index.search(queries_1k(), 10);
    benchmark::DoNotOptimize(hits.ids.data());
  }
  set_qps(state, 1000);
  state.SetLabel("cosine " + bench::arch_label());
}
BENCHMARK(BM_flat_batch_mmrag)
    ->Name("flat_200kx128_cosine_batch1000/mmrag")
    ->Unit(benchmark::kMillisecond);

// Baseline without FAISS: the naive way with Eigen (normalize, one GEMM, partial sort per row).
void BM_flat_batch_eigen(benchmark::State& state) {
  Matrix<float> base = base_200k(), q = queries_1k();
  base.rowwise().normalize();
  q.rowwise().normalize();
  Matrix<float> s(250, base.rows());
  std::vector<Index> order(static_cast<std::size_t>(base.rows()));
  for (auto _ : state) {
    for (Eigen::Index b0 = 0; b0 < q.rows(); b0 += 250) {
      s.noalias() = q.middleRows(b0, 250) * base.transpose();
      for (Eigen::Index i = 0; i < 250; ++i) {
        std::iota(order.begin(), order.end(), Index(0));
        const float* row = s.row(i).data();
        std::partial_sort(order.begin(), order.begin() + 10, order.end(),
                          [row](Index a, Index b) { return row[a] > row[b]; });
        benchmark::DoNotOptimize(order.data());
      }
    }
  }
  set_qps(state, 1000);
  state.SetLabel("baseline: Eigen GEMM + partial_sort");
}
BENCHMARK(BM_flat_batch_eigen)
    ->Name("flat_200kx128_cosine_batch1000/eigen")
    ->Unit(benchmark::kMillisecond);

#ifdef MMRAG_HAVE_FAISS
void BM_flat_batch_faiss(benchmark::State& state) {
  Matrix<float> base = base_200k(), q = queries_1k();
  base.rowwise().normalize();
  faiss::IndexFlatIP index(128);
  index.add(base.rows(), base.data());
  std::vector<float> dist(10 * 1000);
  std::vector<faiss::Index::idx_t> ids(10 * 1000);
  for (auto _ : state) {
    Matrix<float> qn = q;  // cosine = normalized queries, as the mmrag side does per call
    qn.rowwise().normalize();
    index.search(1000, qn.data(), 10, dist.data(), ids.data());
    benchmark::DoNotOptimize(ids.data());
  }
  set_qps(state, 1000);
  state.SetLabel("baseline: FAISS IndexFlatIP (Debian build)");
}
BENCHMARK(BM_flat_batch_faiss)
    ->Name("flat_200kx128_cosine_batch1000/faiss")
    ->Unit(benchmark::kMillisecond);
#endif

// Exact search through int8 screening (FlatIndex::enable_screening): identical results (the
// label says so, checked against the float32 search once before timing), +25 % memory.
void BM_flat_batch_screened(benchmark::State& state) {
  FlatIndex<float> index(128, Metric::cosine);
  index.add(base_200k());
  const Hits<float> plain = index.search(queries_1k(), 10);
  index.enable_screening();
  const Hits<float> first = index.search(queries_1k(), 10);
  const bool same = first.ids == plain.ids && first.scores == plain.scores;
  for (auto _ : state) {
    auto hits = index.search(queries_1k(), 10);
    benchmark::DoNotOptimize(hits.ids.data());
  }
  set_qps(state, 1000);
  state.SetLabel(std::string("int8 screen + exact rescoring, ") +
                 (same ? "identical to float32" : "DIFFERS FROM FLOAT32"));
}
BENCHMARK(BM_flat_batch_screened)
    ->Name("flat_200kx128_cosine_batch1000/mmrag_int8_screen")
    ->Unit(benchmark::kMillisecond);

#ifdef MMRAG_HAVE_ZLIB
// ---- Flat on Fashion-MNIST: 1000 test images against the 60k training images, L2, k = 10 ------
void BM_flat_fmnist(benchmark::State& state) {
  if (!datasets::fashion_mnist_available()) {
    state.SkipWithError("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
    return;
  }
  static const datasets::FashionMnist fm = datasets::load_fashion_mnist();
  const Matrix<float> q = fm.test_images.topRows(1000);
  const int variant = static_cast<int>(state.range(0));  // 0 float32, 1 int8 screen, 2 FAISS
  if (variant < 2) {
    FlatIndex<float> index(784, Metric::l2);
    index.add(fm.train_images);
    const Hits<float> plain = index.search(q, 10);
    if (variant == 1) index.enable_screening();
    const Hits<float> first = index.search(q, 10);
    const bool same = first.ids == plain.ids && first.scores == plain.scores;
    for (auto _ : state) {
      auto hits = index.search(q, 10);
      benchmark::DoNotOptimize(hits.ids.data());
    }
    state.SetLabel(variant == 0 ? "float32"
                   : same       ? "int8 screen, identical to float32"
                                : "int8 screen, DIFFERS FROM FLOAT32");
  } else {
#ifdef MMRAG_HAVE_FAISS
    faiss::IndexFlatL2 index(784);
    index.add(fm.train_images.rows(), fm.train_images.data());
    std::vector<float> dist(10 * 1000);
    std::vector<faiss::Index::idx_t> ids(10 * 1000);
    for (auto _ : state) {
      index.search(1000, q.data(), 10, dist.data(), ids.data());
      benchmark::DoNotOptimize(ids.data());
    }
    state.SetLabel("baseline: FAISS IndexFlatL2 (Debian build)");
#else
    state.SkipWithError("built without FAISS");
    return;
#endif
  }
  set_qps(state, 1000);
}
BENCHMARK(BM_flat_fmnist)
    ->Name("flat_fmnist_l2_batch1000")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond);
#endif

// ---- Flat, one query over 1M × 128 (512 MB), memory-bound ---------------------------------
const Matrix<float>& base_1m() {
  static const Matrix<float> m = bench::random_matrix<float>(1 << 20, 128, 13);
  return m;
}

void BM_flat_single(benchmark::State& state) {
  const auto metric = static_cast<Metric>(state.range(0));
  FlatIndex<float> index(128, metric);
  index.add(base_1m());
  const Matrix<float> q = bench::random_matrix<float>(1, 128, 14);
  for (auto _ : state) {
    auto hits = index.search(q, 10);
    benchmark::DoNotOptimize(hits.ids.data());
  }
  set_qps(state, 1);
  state.SetBytesProcessed(state.iterations() * base_1m().size() * 4);
  state.SetLabel(to_string(metric));
}
BENCHMARK(BM_flat_single)
    ->Name("flat_1Mx128_single/mmrag")
    ->Arg(0)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond);

void BM_streaming_read(benchmark::State& state) {
  const Matrix<float>& base = base_1m();
  for (auto _ : state) benchmark::DoNotOptimize(bench::streaming_read(base));
  state.SetBytesProcessed(state.iterations() * base.size() * 4);
  state.SetLabel("baseline: plain streaming read");
}
BENCHMARK(BM_streaming_read)
    ->Name("flat_1Mx128_single/streaming_read")
    ->Unit(benchmark::kMillisecond);

// ---- IVF on 200k × 128 synthetic, 1024 lists, 1000 queries ------------------------------------
void BM_ivf(benchmark::State& state) {
  static IvfIndex<float>* index = [] {
    auto* ix = new IvfIndex<float>(128, 1024, Metric::l2);
    ix->train(base_200k().topRows(100000));
    ix->add(base_200k());
    return ix;
  }();
  const auto nprobe = static_cast<std::size_t>(state.range(0));
  const auto nq = state.range(1);
  for (auto _ : state) {
    auto hits = index->search(queries_1k().topRows(nq), 10, {.nprobe = nprobe});
    benchmark::DoNotOptimize(hits.ids.data());
  }
  set_qps(state, nq);
  state.SetLabel("l2, nlist 1024");
}
BENCHMARK(BM_ivf)
    ->Name("ivf_200kx128/mmrag")
    ->Args({8, 1000})
    ->Args({32, 1000})
    ->Args({8, 1})
    ->Unit(benchmark::kMillisecond);

#ifdef MMRAG_HAVE_FAISS
void BM_ivf_faiss(benchmark::State& state) {
  static faiss::IndexFlatL2 quantizer(128);
  static faiss::IndexIVFFlat* index = [] {
    auto* ix = new faiss::IndexIVFFlat(&quantizer, 128, 1024);
    ix->train(100000, base_200k().data());
    ix->add(base_200k().rows(), base_200k().data());
    return ix;
  }();
  index->nprobe = static_cast<std::size_t>(state.range(0));
  const auto nq = state.range(1);
  std::vector<float> dist(10 * nq);
  std::vector<faiss::Index::idx_t> ids(10 * nq);
  for (auto _ : state) {
    index->search(nq, queries_1k().data(), 10, dist.data(), ids.data());
    benchmark::DoNotOptimize(ids.data());
  }
  set_qps(state, nq);
  state.SetLabel("baseline: FAISS IndexIVFFlat (Debian build)");
}
BENCHMARK(BM_ivf_faiss)
    ->Name("ivf_200kx128/faiss")
    ->Args({8, 1000})
    ->Args({32, 1000})
    ->Args({8, 1})
    ->Unit(benchmark::kMillisecond);
#endif

// ---- k-means: 256 centroids on 60k × 784, 10 iterations -------------------------------------
const Matrix<float>& kmeans_data() {
  static const Matrix<float> m = bench::random_matrix<float>(60000, 784, 15);
  return m;
}

void BM_kmeans(benchmark::State& state) {
  for (auto _ : state) {
    auto r = kmeans<float>(kmeans_data(), 256, {.iterations = 10, .assign = false});
    benchmark::DoNotOptimize(r.centroids.data());
  }
  state.SetItemsProcessed(state.iterations() * 60000 * 10);
  state.SetLabel("k-means++ init + 10 Lloyd iterations");
}
BENCHMARK(BM_kmeans)
    ->Name("kmeans_60kx784_k256/mmrag")
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

#ifdef MMRAG_HAVE_FAISS
void BM_kmeans_faiss(benchmark::State& state) {
  for (auto _ : state) {
    faiss::ClusteringParameters cp;
    cp.niter = 10;
    faiss::Clustering clus(784, 256, cp);
    faiss::IndexFlatL2 idx(784);
    clus.train(60000, kmeans_data().data(), idx);
    benchmark::DoNotOptimize(clus.centroids.data());
  }
  state.SetItemsProcessed(state.iterations() * 60000 * 10);
  state.SetLabel("baseline: FAISS Clustering (random init)");
}
BENCHMARK(BM_kmeans_faiss)
    ->Name("kmeans_60kx784_k256/faiss")
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);
#endif

// ---- Filtered against unfiltered search on the same index (modality tags 0..3, cycling) ----
// The filter keeps one modality (a quarter of the items); the result is the exact top-k
// among them. Filtering happens inside the scan, so it must never cost more than no filter.
std::vector<Modality> cycling_modalities(std::size_t n) {
  std::vector<Modality> m(n);
  for (std::size_t i = 0; i < n; ++i) m[i] = Modality(i % 4);
  return m;
}

void BM_filtered(benchmark::State& state) {
  const bool filtered = state.range(0) == 1;
  const int kind = static_cast<int>(state.range(1));  // 0: flat batch, 1: flat single, 2: IVF batch
  static FlatIndex<float>* flat_batch = nullptr;
  static FlatIndex<float>* flat_single = nullptr;
  static IvfIndex<float>* ivf = nullptr;
  if (kind == 0 && !flat_batch) {
    flat_batch = new FlatIndex<float>(128, Metric::cosine);
    flat_batch->add(base_200k(), {}, cycling_modalities(200000));
  }
  if (kind == 1 && !flat_single) {
    flat_single = new FlatIndex<float>(128, Metric::inner_product);
    flat_single->add(base_1m(), {}, cycling_modalities(std::size_t(base_1m().rows())));
  }
  if (kind == 2 && !ivf) {
    ivf = new IvfIndex<float>(128, 1024, Metric::l2);
    ivf->train(base_200k().topRows(100000));
    ivf->add(base_200k(), {}, cycling_modalities(200000));
  }
  SearchParams params{.nprobe = 8};
  if (filtered) params.filter.modalities = ModalitySet{Modality(2)};
  const Eigen::Index nq = kind == 1 ? 1 : 1000;
  const Matrix<float> q = queries_1k().topRows(nq);
  for (auto _ : state) {
    auto hits = kind == 0   ? flat_batch->search(q, 10, params)
                : kind == 1 ? flat_single->search(q, 10, params)
                            : ivf->search(q, 10, params);
    benchmark::DoNotOptimize(hits.ids.data());
  }
  set_qps(state, nq);
  static const char* const what[] = {"flat 200k cosine, 1000 queries", "flat 1M ip, 1 query",
                                     "ivf 200k nprobe 8, 1000 queries"};
  state.SetLabel(std::string(what[kind]) +
                 (filtered ? ", filter: 1 of 4 modalities" : ", no filter"));
}
BENCHMARK(BM_filtered)
    ->Name("filter")
    ->ArgsProduct({{0, 1}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond);

// Guard pair for CI (bench/guard.py): IVF against exact search on clustered data, with the
// IVF's recall@10 reported so the guard compares speed at a known recall.
struct GuardData {
  Matrix<float> base, queries;
  Matrix<Index> truth;
  FlatIndex<float> flat{64, Metric::l2};
  IvfIndex<float> ivf{64, 128, Metric::l2};
  GuardData() {
    const Matrix<float> centers = bench::random_matrix<float>(100, 64, 21) * 4.f;
    base = bench::random_matrix<float>(50000, 64, 22);
    queries = bench::random_matrix<float>(1000, 64, 23);
    for (Eigen::Index i = 0; i < base.rows(); ++i) base.row(i) += centers.row(i % 100);
    for (Eigen::Index i = 0; i < queries.rows(); ++i) queries.row(i) += centers.row((i * 7) % 100);
    flat.add(base);
    truth = flat.search(queries, 10).ids;
    ivf.train(base);
    ivf.add(base);
  }
};
const GuardData& guard_data() {
  static const GuardData g;
  return g;
}

void BM_guard_search(benchmark::State& state) {
  const GuardData& g = guard_data();
  const bool use_ivf = state.range(0) == 1;
  Matrix<Index> ids;
  for (auto _ : state) {
    ids = use_ivf ? g.ivf.search(g.queries, 10, {.nprobe = 16}).ids
                  : g.flat.search(g.queries, 10).ids;
    benchmark::DoNotOptimize(ids.data());
  }
  std::size_t hit = 0;
  for (Eigen::Index i = 0; i < ids.rows(); ++i)
    for (Eigen::Index j = 0; j < 10; ++j)
      for (Eigen::Index l = 0; l < 10; ++l) hit += ids(i, j) == g.truth(i, l);
  state.counters["recall"] = double(hit) / double(ids.size());
  set_qps(state, g.queries.rows());
  state.SetLabel(use_ivf ? "ivf nlist 128 nprobe 16" : "flat");
}
BENCHMARK(BM_guard_search)->Name("guard/search")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
