// docs/cookbook.md: a multimodal RAG recipe end to end, from .npy files to filtered, composed
// and batched queries, an IVF-vs-flat recall check and a few training steps of a projection
// head. Built and run by `meson test` (suite 'docs'); it fails when a result is wrong.
//
//   ./build/docs/examples/example_cookbook [scratch directory, default: the system temp dir]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmrag/mmrag.hpp"

using namespace mmrag;
namespace fs = std::filesystem;

namespace {

int failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

constexpr Eigen::Index kItems = 6000, kDim = 32, kTopics = 40;

// What a Python pipeline would have saved: float64 embeddings (NumPy's default dtype), int64
// ids that are not 0..n-1, and a modality tag per row (0 text, 1 image, 2 audio). Items of one
// topic cluster together in every modality.
void write_numpy_files(const fs::path& dir) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> g(0.0, 1.0);
  Matrix<double> topics(kTopics, kDim), modality_shift(3, kDim);
  for (Eigen::Index i = 0; i < topics.size(); ++i) topics.data()[i] = g(rng);
  for (Eigen::Index i = 0; i < modality_shift.size(); ++i) modality_shift.data()[i] = 0.3 * g(rng);
  Matrix<double> emb(kItems, kDim);
  Matrix<std::int64_t> ids(kItems, 1), tags(kItems, 1);
  for (Eigen::Index i = 0; i < kItems; ++i) {
    const Eigen::Index topic = i % kTopics, tag = (i / kTopics) % 3;
    for (Eigen::Index j = 0; j < kDim; ++j)
      emb(i, j) = topics(topic, j) + modality_shift(tag, j) + 1.0 * g(rng);
    ids(i, 0) = 100000 + 7 * i;  // e.g. database keys
    tags(i, 0) = tag;
  }
  io::write_npy(dir / "embeddings.npy", emb);  // '<f8', as np.save writes float64
  io::write_npy(dir / "ids.npy", ids);         // '<i8'
  io::write_npy(dir / "modalities.npy", tags);
}

// recall@k of `got` against the exact `truth`: the fraction of true neighbours found.
double recall(const Hits<float>& got, const Hits<float>& truth) {
  std::size_t hit = 0;
  for (Eigen::Index q = 0; q < truth.ids.rows(); ++q)
    for (Eigen::Index j = 0; j < truth.ids.cols(); ++j)
      hit += (got.ids.row(q).array() == truth.ids(q, j)).any();
  return double(hit) / double(truth.ids.size());
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path dir = (argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path()) /
                       ("mmrag_cookbook_" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  write_numpy_files(dir);

  // [snippet:load]
  // NumPy writes float64 unless told otherwise: read_npy_as<float> converts on reading.
  // (io::read_npy<float> insists on float32 and its error says to use read_npy_as.)
  const Matrix<float> emb = io::read_npy_as<float>(dir / "embeddings.npy");  // n × d
  // int64 .npy arrays come back as n × 1 matrices of std::int64_t; mmrag::Index is std::int64_t,
  // so the column is the id list as it stands.
  const Matrix<std::int64_t> id_column = io::read_npy<std::int64_t>(dir / "ids.npy");
  const std::span<const Index> ids(id_column.data(), static_cast<std::size_t>(id_column.size()));
  // Modality tags are one byte each (0..63): convert, checking the range.
  const Matrix<std::int64_t> tag_column = io::read_npy<std::int64_t>(dir / "modalities.npy");
  std::vector<Modality> tags;
  for (const std::int64_t t : tag_column.reshaped())
    if (t < 0 || t > max_modality)
      throw std::runtime_error("modality tag out of range");
    else
      tags.push_back(static_cast<Modality>(t));
  // [/snippet]
  expect(emb.rows() == kItems && emb.cols() == kDim && tags.size() == std::size_t(kItems),
         "loaded shapes");

  // [snippet:ivf]
  // nlist ≈ 4·sqrt(n) cells; train on the data (or a sample of it), then add with ids and tags.
  // Cosine: vectors are normalized on add, queries on search.
  IvfIndex<float> index(kDim, /*nlist=*/64, Metric::cosine);
  index.train(emb, {.iterations = 10, .seed = 7});  // KMeansParams: see kmeans.hpp
  index.add(emb, ids, tags);

  // Save once, load in the service: the file is checksummed and verified on load.
  index.save(dir / "collection.ivf");
  const auto served = IvfIndex<float>::load(dir / "collection.ivf");
  // [/snippet]
  expect(served.size() == index.size() && served.nlist() == 64, "loaded index");

  const Matrix<float> queries = emb.topRows(200);  // stand-ins for encoded user queries
  // [snippet:queries]
  // One query, all modalities: the default nprobe is 8 cells of 64.
  const Hits<float> any = served.search(queries.topRows(1), 5);

  // Filter by modality (the exact top-k among images of the probed cells). SearchParams's
  // fields are nprobe, filter, k_factor: designated initializers must follow that order.
  const ModalitySet images{modality::image};
  const Hits<float> pictures =
      served.search(queries.topRows(1), 5, {.nprobe = 16, .filter = {.modalities = images}});

  // An id allow-list (e.g. what this user may see) together with the modality filter.
  IdSet visible;
  for (Index id : ids.subspan(0, 3000)) visible.insert(id);
  const Hits<float> mine = served.search(
      queries.topRows(1), 5, {.nprobe = 16, .filter = {.modalities = images, .ids = &visible}});

  // Embedding arithmetic: a text query plus an audio clip, answered with images only.
  const Eigen::RowVectorXf text = emb.row(0), audio = emb.row(2 * kTopics + 1);
  const Matrix<float> mixed =
      compose<float>({{{text.data(), kDim}, 1.0f}, {{audio.data(), kDim}, 0.5f}});
  const Hits<float> context = served.search(mixed, 5, {.filter = {.modalities = images}});

  // Batches: one call, nq × k results; queries are grouped by cell and scored by GEMM.
  const Hits<float> batch = served.search(queries, 10, {.nprobe = 16});
  // [/snippet]
  std::printf("nearest to query 0: id %ld (modality %d), score %.3f\n", long(any.ids(0, 0)),
              int(tags[std::size_t((any.ids(0, 0) - 100000) / 7)]), double(any.scores(0, 0)));
  for (Eigen::Index j = 0; j < 5; ++j) {
    const Index id = pictures.ids(0, j);
    expect(id >= 0 && tags[std::size_t((id - 100000) / 7)] == modality::image, "image filter");
    expect(mine.ids(0, j) >= 0 && visible.contains(mine.ids(0, j)) &&
               tags[std::size_t((mine.ids(0, j) - 100000) / 7)] == modality::image,
           "id and modality filter");
    expect(context.ids(0, j) >= 0, "composed query");
  }
  expect(any.ids(0, 0) == ids[0], "a stored vector finds itself");
  expect(batch.ids.rows() == 200 && batch.ids.cols() == 10, "batch shape");

  // [snippet:recall]
  // How much does IVF miss? Compare with exact search (FlatIndex) at a few nprobe values.
  FlatIndex<float> exact(kDim, Metric::cosine);
  exact.add(emb, ids, tags);
  const Hits<float> truth = exact.search(queries, 10);
  for (const std::size_t nprobe : {1, 4, 16, 64}) {
    const double r = recall(served.search(queries, 10, {.nprobe = nprobe}), truth);
    std::printf("recall@10 at nprobe %2zu of 64: %.3f\n", nprobe, r);
  }
  // [/snippet]
  expect(recall(served.search(queries, 10, {.nprobe = 64}), truth) == 1.0,
         "nprobe = nlist is exact");
  expect(recall(served.search(queries, 10, {.nprobe = 16}), truth) > 0.9, "recall at nprobe 16");

  // [snippet:remove]
  // Deleting: remove_ids returns how many rows went; ids are never reused.
  const std::vector<Index> gone = {ids[0], ids[1], 42};  // 42 was never added: ignored
  IvfIndex<float> editable = IvfIndex<float>::load(dir / "collection.ivf");
  const std::size_t removed = editable.remove_ids(gone);
  // [/snippet]
  expect(removed == 2 && editable.size() == index.size() - 2, "remove_ids");

  // ---- a projection head trained with in_batch_info_nce --------------------------------------
  // Raw features of a new modality (say 48-d audio descriptors) of the first 64 items, paired
  // with the items' embeddings in the shared space; a linear head W (48 × 32) maps one into
  // the other.
  std::mt19937_64 rng(3);
  std::normal_distribution<float> g(0.f, 1.f);
  const Eigen::Index B = 64, in = 48;
  Matrix<float> mix(kDim, in);
  for (Eigen::Index i = 0; i < mix.size(); ++i) mix.data()[i] = g(rng);
  Matrix<float> X = emb.topRows(B) * mix;  // features that carry the items' content
  for (Eigen::Index i = 0; i < X.size(); ++i) X.data()[i] += 0.5f * g(rng);
  const Matrix<float> target = emb.topRows(B);
  Matrix<float> W(in, kDim);
  for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = 0.1f * g(rng);

  // [snippet:head]
  // E = X·W (B × d). The loss gives dL/dE (grad_a, B × d); since E_ij = sum_k X_ik W_kj,
  // dL/dW_kj = sum_i X_ik · dL/dE_ij, i.e. dL/dW = Xᵀ · dL/dE (in × d).
  const loss::InBatchOptions opt{.temperature = 0.1, .symmetric = true};
  const float lr = 0.5f;
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    const Matrix<float> E = X * W;
    const auto l = loss::in_batch_info_nce(E, target, opt);  // target rows: fixed positives
    const Matrix<float> grad_W = X.transpose() * l.grad_a;
    W -= lr * grad_W;  // plain SGD; use Adam in practice (multimodal_rag.cpp has one)
    if (step == 0) first = l.value;
    last = l.value;
  }
  std::printf("projection head: in-batch InfoNCE %.3f -> %.3f in 30 steps\n", first, last);
  // [/snippet]
  expect(last < 0.5f * first, "the head learns");

  // The gradient Xᵀ·grad_a against a central finite difference, in double, for a few entries.
  {
    const Matrix<double> Xd = X.cast<double>(), Td = target.cast<double>();
    Matrix<double> Wd = W.cast<double>();
    const loss::InBatchOptions od{.temperature = 0.1};
    const Matrix<double> grad = Xd.transpose() * loss::in_batch_info_nce(Xd * Wd, Td, od).grad_a;
    double worst = 0;
    for (const auto& [k, j] : {std::pair{0, 0}, std::pair{5, 17}, std::pair{47, 31}}) {
      const double h = 1e-6, keep = Wd(k, j);
      Wd(k, j) = keep + h;
      const double up = loss::in_batch_info_nce(Xd * Wd, Td, od).value;
      Wd(k, j) = keep - h;
      const double down = loss::in_batch_info_nce(Xd * Wd, Td, od).value;
      Wd(k, j) = keep;
      worst = std::max(worst, std::abs((up - down) / (2 * h) - grad(k, j)) /
                                  std::max(1e-3, std::abs(grad(k, j))));
    }
    std::printf("d loss / d W: largest relative difference from finite differences %.1e\n", worst);
    expect(worst < 1e-5, "Xᵀ·grad_a matches finite differences");
  }

  fs::remove_all(dir);
  std::printf("%s\n", failures == 0 ? "cookbook: all checks passed" : "cookbook: FAILED");
  return failures == 0 ? 0 : 1;
}
