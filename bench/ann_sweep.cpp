// ANN sweep: recall@k and QPS of IvfIndex for nprobe in {1, 2, 4, 8, 16, 32}, with training and
// add times, on Fashion-MNIST (Debian's dataset-fashion-mnist: 60k training images as the base,
// 10k test images as queries, L2) or on any .fvecs triplet. Exact ground truth comes from
// FlatIndex (or a given .ivecs file). When built with FAISS, IndexFlatL2 and IndexIVFFlat run on
// the same data in the same run and the ratios are printed.
//
//   OMP_NUM_THREADS=1 OPENBLAS_CORETYPE=SkylakeX ./build/bench/ann_sweep [options]
//   --nlist N        cells (default 256)          --k N        neighbours (default 10)
//   --queries N      use the first N queries      --fvecs BASE QUERIES [GT.ivecs]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fashion_mnist.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/io.hpp"
#include "mmrag/ivf_index.hpp"

#ifdef MMRAG_HAVE_FAISS
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#endif

using namespace mmrag;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Fraction of the true top-k ids found among the returned k (recall@k, as ann-benchmarks).
double recall(const Matrix<Index>& got, const Matrix<Index>& truth, std::size_t k) {
  std::size_t hit = 0;
  for (Eigen::Index i = 0; i < got.rows(); ++i)
    for (std::size_t j = 0; j < k; ++j)
      for (std::size_t l = 0; l < k; ++l)
        hit += got(i, Eigen::Index(j)) == truth(i, Eigen::Index(l));
  return double(hit) / double(got.rows() * Eigen::Index(k));
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t nlist = 256, k = 10, max_queries = 0;
  std::string base_path, query_path, gt_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ann_sweep: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--nlist")
      nlist = std::stoul(next());
    else if (a == "--k")
      k = std::stoul(next());
    else if (a == "--queries")
      max_queries = std::stoul(next());
    else if (a == "--fvecs") {
      base_path = next();
      query_path = next();
      if (i + 1 < argc && argv[i + 1][0] != '-') gt_path = argv[++i];
    } else {
      std::fprintf(
          stderr,
          "usage: ann_sweep [--nlist N] [--k N] [--queries N] [--fvecs BASE QUERIES [GT]]\n");
      return 2;
    }
  }

  Matrix<float> base, queries;
  std::string name;
  if (!base_path.empty()) {
    base = io::read_fvecs(base_path);
    queries = io::read_fvecs(query_path);
    name = base_path;
  } else {
    if (!datasets::fashion_mnist_available()) {
      std::fprintf(stderr,
                   "ann_sweep: Fashion-MNIST not found in %s\n  install it: sudo apt-get install "
                   "dataset-fashion-mnist\n",
                   datasets::fashion_mnist_dir.c_str());
      return 1;
    }
    auto d = datasets::load_fashion_mnist();
    base = std::move(d.train_images);
    queries = std::move(d.test_images);
    name = "Fashion-MNIST";
  }
  if (max_queries > 0 && Eigen::Index(max_queries) < queries.rows())
    queries.conservativeResize(Eigen::Index(max_queries), queries.cols());
  const auto nq = queries.rows();
  const auto dim = static_cast<std::size_t>(base.cols());
  std::printf("dataset: %s, base %ld x %zu, queries %ld, L2, k = %zu, nlist = %zu\n", name.c_str(),
              long(base.rows()), dim, long(nq), k, nlist);

  // Exact ground truth (and the flat index's own QPS).
  FlatIndex<float> flat(dim, Metric::l2);
  flat.add(base);
  auto t0 = Clock::now();
  Matrix<Index> truth = flat.search(queries, k).ids;
  const double flat_s = seconds_since(t0);
  std::printf("flat (exact):   %8.0f QPS\n", double(nq) / flat_s);
  if (!gt_path.empty()) truth = io::read_ivecs(gt_path).leftCols(Eigen::Index(k)).cast<Index>();

  IvfIndex<float> ivf(dim, nlist, Metric::l2);
  t0 = Clock::now();
  ivf.train(base);
  const double train_s = seconds_since(t0);
  t0 = Clock::now();
  ivf.add(base);
  const double add_s = seconds_since(t0);
  std::printf(
      "ivf train:      %8.3f s (k-means, %zu centroids, 10 iterations)\nivf add:        %8.3f s\n",
      train_s, nlist, add_s);

#ifdef MMRAG_HAVE_FAISS
  faiss::IndexFlatL2 faiss_flat{static_cast<faiss::Index::idx_t>(dim)};
  faiss_flat.add(base.rows(), base.data());
  std::vector<float> fd(std::size_t(nq) * k);
  std::vector<faiss::Index::idx_t> fi(std::size_t(nq) * k);
  t0 = Clock::now();
  faiss_flat.search(nq, queries.data(), long(k), fd.data(), fi.data());
  const double faiss_flat_s = seconds_since(t0);
  std::printf("faiss flat:     %8.0f QPS   (mmrag / faiss = %.2fx)\n", double(nq) / faiss_flat_s,
              faiss_flat_s / flat_s);
  faiss::IndexFlatL2 quantizer{static_cast<faiss::Index::idx_t>(dim)};
  faiss::IndexIVFFlat faiss_ivf(&quantizer, long(dim), nlist);
  faiss_ivf.verbose = false;
  t0 = Clock::now();
  faiss_ivf.train(base.rows(), base.data());
  const double faiss_train_s = seconds_since(t0);
  t0 = Clock::now();
  faiss_ivf.add(base.rows(), base.data());
  const double faiss_add_s = seconds_since(t0);
  std::printf("faiss train:    %8.3f s     (mmrag / faiss time = %.2fx)\nfaiss add:      %8.3f s\n",
              faiss_train_s, train_s / faiss_train_s, faiss_add_s);
#endif

  std::printf("\n| nprobe | recall@%zu | QPS mmrag |", k);
#ifdef MMRAG_HAVE_FAISS
  std::printf(" recall@%zu FAISS | QPS FAISS | speedup |", k);
#endif
  std::printf("\n|---|---|---|");
#ifdef MMRAG_HAVE_FAISS
  std::printf("---|---|---|");
#endif
  std::printf("\n");
  for (std::size_t nprobe : {1, 2, 4, 8, 16, 32}) {
    t0 = Clock::now();
    const auto hits = ivf.search(queries, k, {.nprobe = nprobe});
    const double s = seconds_since(t0);
    std::printf("| %zu | %.4f | %.0f |", nprobe, recall(hits.ids, truth, k), double(nq) / s);
#ifdef MMRAG_HAVE_FAISS
    faiss_ivf.nprobe = nprobe;
    t0 = Clock::now();
    faiss_ivf.search(nq, queries.data(), long(k), fd.data(), fi.data());
    const double fs = seconds_since(t0);
    Matrix<Index> fids =
        Eigen::Map<Matrix<faiss::Index::idx_t>>(fi.data(), nq, Eigen::Index(k)).cast<Index>();
    std::printf(" %.4f | %.0f | %.2fx |", recall(fids, truth, k), double(nq) / fs, fs / s);
#endif
    std::printf("\n");
  }
  return 0;
}
