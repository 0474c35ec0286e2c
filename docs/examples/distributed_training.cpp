// docs/distributed.md: ImageBind-style binding of three modalities with the batch split over MPI
// ranks, then sharded serving. Run with
//   mpirun -np 4 ./build/tests/mpi/example_distributed_training
// (as root add --allow-run-as-root; on a small machine add --oversubscribe).
//
// The demo's modalities, synthesized so that the program needs no data set: an "image" (a
// noisy view of its class), a "sketch" (a nonlinear function of its own image, so it exists
// only paired with one) and a "text" (a noisy description of the class). Linear projection
// heads map each into one 32-d space. Training binds text↔image and sketch↔image, the image as
// the anchor, never sketch↔text — as ImageBind does. Every rank generates only its own rows of
// each global batch; the global-batch loss (mpi::in_batch_info_nce) gives each rank the
// gradients of its rows, and the heads' gradients are summed over the ranks (data parallel), so
// every rank takes the same step as one process on the whole batch. Then each rank indexes its
// shard of the image embeddings with global ids, and mpi::search answers sketch → text and
// text → image queries, including the pairing it never trained on.
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"
#include "mmrag/mpi.hpp"

using namespace mmrag;
using Mat = Matrix<double>;

namespace {

constexpr int kClasses = 10, kDimImage = 40, kDimText = 24, kEmbed = 32;

/// The fixed world: class prototypes for images and texts, and the sketch map.
struct World {
  Mat image_proto, text_proto, sketch_map;
  World() {
    std::mt19937_64 rng(2023);
    std::normal_distribution<double> g;
    auto fill = [&](Mat& m, Eigen::Index r, Eigen::Index c) {
      m.resize(r, c);
      for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = g(rng);
    };
    fill(image_proto, kClasses, kDimImage);
    fill(text_proto, kClasses, kDimText);
    fill(sketch_map, kDimImage, kDimImage);
  }
  /// Rows first .. first + n of a global sample stream: example i has class i % kClasses and
  /// noise seeded by (seed, i), so any split over ranks sees the same global rows.
  void rows(std::uint64_t seed, Eigen::Index first, Eigen::Index n, Mat& image, Mat& sketch,
            Mat& text, std::vector<int>& label) const {
    image.resize(n, kDimImage), sketch.resize(n, kDimImage), text.resize(n, kDimText);
    label.resize(std::size_t(n));
    for (Eigen::Index r = 0; r < n; ++r) {
      const Eigen::Index i = first + r;
      std::mt19937_64 rng(seed * 1000003u + std::uint64_t(i));
      std::normal_distribution<double> g;
      const int c = int(i % kClasses);
      label[std::size_t(r)] = c;
      for (Eigen::Index j = 0; j < kDimImage; ++j) image(r, j) = image_proto(c, j) + 0.8 * g(rng);
      sketch.row(r) = (image.row(r) * sketch_map).array().abs().matrix();
      for (Eigen::Index j = 0; j < kDimText; ++j) text(r, j) = text_proto(c, j) + 0.8 * g(rng);
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const World world;

  // Projection heads, the same initial values on every rank (same seed).
  std::mt19937_64 init(7);
  std::normal_distribution<double> g(0.0, 0.1);
  Mat w_image(kDimImage, kEmbed), w_sketch(kDimImage, kEmbed), w_text(kDimText, kEmbed);
  for (Mat* w : {&w_image, &w_sketch, &w_text})
    for (Eigen::Index i = 0; i < w->size(); ++i) w->data()[i] = g(init);

  const Eigen::Index global_batch = 512;
  // This rank's share of every global batch (uneven when ranks do not divide it).
  const Eigen::Index local = global_batch / ranks + (rank < global_batch % ranks ? 1 : 0);
  const Eigen::Index offset =
      rank * (global_batch / ranks) + std::min<Eigen::Index>(rank, global_batch % ranks);
  Mat image, sketch, text;
  std::vector<int> label;
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step < 100; ++step) {
    world.rows(std::uint64_t(step) + 1, offset, local, image, sketch, text, label);
    // [snippet:step]
    // This rank's rows of the global batch, through the projection heads.
    const Mat e_image = image * w_image, e_sketch = sketch * w_sketch, e_text = text * w_text;
    // Global-batch losses: every rank gets the value of the whole batch and the gradients of
    // its own rows (open_clip's gather-with-grad). The image is the anchor of both pairings.
    const loss::InBatchOptions clip{.temperature = 0.1};
    const auto it = mpi::in_batch_info_nce(MPI_COMM_WORLD, e_image, e_text, clip);
    const auto is = mpi::in_batch_info_nce(MPI_COMM_WORLD, e_image, e_sketch, clip);
    // Heads' gradients from this rank's rows, summed over the ranks: the whole batch's gradient.
    Mat grads[3] = {image.transpose() * (it.grad_a + is.grad_a), sketch.transpose() * is.grad_b,
                    text.transpose() * it.grad_b};
    for (Mat& gr : grads)
      MPI_Allreduce(MPI_IN_PLACE, gr.data(), int(gr.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    const double lr = 0.05;
    w_image -= lr * grads[0], w_sketch -= lr * grads[1], w_text -= lr * grads[2];
    // [/snippet]
    if (step == 0) first_loss = it.value + is.value;
    last_loss = it.value + is.value;
  }

  // ---- sharded serving: each rank holds its shard of a held-out image set --------------------
  const Eigen::Index n_images = 2000;
  const Eigen::Index shard_rows = n_images / ranks + (rank < n_images % ranks ? 1 : 0);
  const Eigen::Index shard_first =
      rank * (n_images / ranks) + std::min<Eigen::Index>(rank, n_images % ranks);
  world.rows(999, shard_first, shard_rows, image, sketch, text, label);
  // [snippet:serve]
  // Each rank indexes its shard with *global* ids; every rank passes the same queries and
  // gets the same merged top-k, equal to one index holding every shard.
  FlatIndex<double> shard(kEmbed, Metric::cosine);
  std::vector<Index> ids(static_cast<std::size_t>(shard_rows));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = shard_first + Index(i);
  shard.add(image * w_image, ids);
  const Mat queries = world.text_proto * w_text;  // one text query per class
  const Hits<double> hits = mpi::search(MPI_COMM_WORLD, shard, queries, 10);
  // [/snippet]
  // [snippet:ivf]
  // IVF shards must share their coarse centroids: train once (here on rank 0; or everywhere
  // with mpi::kmeans) and broadcast the trained, empty index as bytes.
  std::vector<char> bytes;
  if (rank == 0) {
    IvfIndex<double> trained(kEmbed, 16, Metric::cosine);
    trained.train(image * w_image);  // rank 0's shard is a fine training sample
    bytes = trained.serialize();
  }
  std::uint64_t size = bytes.size();
  MPI_Bcast(&size, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  bytes.resize(size);
  MPI_Bcast(bytes.data(), int(size), MPI_CHAR, 0, MPI_COMM_WORLD);
  IvfIndex<double> ivf_shard = IvfIndex<double>::parse(bytes);
  ivf_shard.add(image * w_image, ids);
  const Hits<double> ivf_hits = mpi::search(MPI_COMM_WORLD, ivf_shard, queries, 10, {.nprobe = 16});
  // [/snippet]
  // nprobe = nlist visits every list: the IVF shards then return exactly the flat result.
  const bool ivf_exact = (ivf_hits.ids.array() == hits.ids.array()).all();

  // text → image: the retrieved image's class is id % kClasses.
  int correct = 0;
  for (Eigen::Index q = 0; q < hits.ids.rows(); ++q)
    for (Eigen::Index j = 0; j < hits.ids.cols(); ++j) correct += hits.ids(q, j) % kClasses == q;
  const double text_to_image = double(correct) / double(hits.ids.size());

  // sketch → text, never trained as a pair: each rank's sketches against the 10 class texts.
  FlatIndex<double> texts(kEmbed, Metric::cosine);
  if (rank == 0) texts.add(world.text_proto * w_text);  // rank 0 holds the whole (tiny) shard
  // The query set must be the same on every rank: rank 0's first 50 sketches, broadcast.
  Mat sk_q = (sketch * w_sketch).topRows(std::min<Eigen::Index>(50, sketch.rows()));
  std::vector<int> sk_label(label.begin(), label.begin() + sk_q.rows());
  Eigen::Index nq = sk_q.rows();
  MPI_Bcast(&nq, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
  sk_q.conservativeResize(nq, kEmbed);
  sk_label.resize(std::size_t(nq));
  MPI_Bcast(sk_q.data(), int(sk_q.size()), MPI_DOUBLE, 0, MPI_COMM_WORLD);
  MPI_Bcast(sk_label.data(), int(nq), MPI_INT, 0, MPI_COMM_WORLD);
  const Hits<double> sk = mpi::search(MPI_COMM_WORLD, texts, sk_q, 1);
  int hit = 0;
  for (Eigen::Index q = 0; q < nq; ++q) hit += sk.ids(q, 0) == sk_label[std::size_t(q)];
  const double sketch_to_text = double(hit) / double(nq);

  if (rank == 0)
    std::printf(
        "%d ranks, global batch %lld: loss %.3f -> %.3f; text->image precision@10 %.2f; "
        "sketch->text (never trained) accuracy %.2f; IVF shards at nprobe = nlist %s the flat "
        "result\n",
        ranks, static_cast<long long>(global_batch), first_loss, last_loss, text_to_image,
        sketch_to_text, ivf_exact ? "equal" : "DIFFER FROM");
  const bool ok =
      last_loss < 0.7 * first_loss && text_to_image > 0.5 && sketch_to_text > 0.3 && ivf_exact;
  MPI_Finalize();
  return ok ? 0 : 1;
}
