// mpi::search over shards built from a split of one data set (global ids) returns exactly what
// one index holding everything returns: ids and scores identical, for FlatIndex shards in every
// metric and for IVF shards that share their trained centroids (broadcast with serialize /
// parse) at the same nprobe; with uneven shards and an empty one.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"
#include "mmrag/mpi.hpp"
#include "mpi_helpers.hpp"

using namespace mmrag;
using namespace mmrag::test;

namespace {

/// Global ids that are neither positions nor sorted by shard: 7 + 3 · (N - 1 - i).
std::vector<Index> global_ids(Eigen::Index n) {
  std::vector<Index> ids(static_cast<std::size_t>(n));
  for (Eigen::Index i = 0; i < n; ++i) ids[std::size_t(i)] = 7 + 3 * (n - 1 - i);
  return ids;
}

template <class T>
void check_identical(const Hits<T>& got, const Hits<T>& ref, const std::string& label) {
  INFO(label);
  CHECK(got.ids.rows() == ref.ids.rows());
  CHECK(got.ids.cols() == ref.ids.cols());
  if (got.ids.rows() != ref.ids.rows() || got.ids.cols() != ref.ids.cols()) return;
  CHECK((got.ids.array() == ref.ids.array()).all());
  CHECK((got.scores.array() == ref.scores.array()).all());  // bitwise, padding included
  CHECK(same_on_every_rank(got.ids.data(), std::size_t(got.ids.size()) * sizeof(Index)));
}

/// Trains on rank 0 and broadcasts the trained, empty index to every rank (serialize / parse).
template <class T>
IvfIndex<T> trained_everywhere(const Matrix<T>& sample, std::size_t d, std::size_t nlist,
                               Metric metric) {
  std::vector<char> bytes;
  if (mpi_rank() == 0) {
    IvfIndex<T> index(d, nlist, metric);
    index.train(sample);
    bytes = index.serialize();
  }
  std::uint64_t size = bytes.size();
  MPI_Bcast(&size, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  bytes.resize(size);
  MPI_Bcast(bytes.data(), static_cast<int>(size), MPI_CHAR, 0, MPI_COMM_WORLD);
  return IvfIndex<T>::parse(bytes);
}

}  // namespace

TEST_CASE_TEMPLATE("mpi::search over FlatIndex shards equals one FlatIndex", T, float, double) {
  const Eigen::Index d = 16;
  for (int shift : {0, 1, 4}) {
    const auto sizes = split_sizes(shift);
    const Eigen::Index n = total(sizes);
    const Matrix<T> x = random_matrix<T>(n, d, 50 + shift);
    const auto ids = global_ids(n);
    const Matrix<T> queries = random_matrix<T>(23, d, 60 + shift);
    const Eigen::Index off = my_offset(sizes), mine = sizes[std::size_t(mpi_rank())];
    for (Metric metric : {Metric::l2, Metric::inner_product, Metric::cosine}) {
      FlatIndex<T> shard(std::size_t(d), metric), all(std::size_t(d), metric);
      if (mine > 0)
        shard.add(local_rows(x, sizes),
                  std::span<const Index>(ids).subspan(std::size_t(off), std::size_t(mine)));
      all.add(x, ids);
      for (std::size_t k : {std::size_t(1), std::size_t(10), std::size_t(n + 5)})
        check_identical(mpi::search(MPI_COMM_WORLD, shard, queries, k), all.search(queries, k),
                        "flat shift " + std::to_string(shift) + " metric " + to_string(metric) +
                            " k " + std::to_string(k));
    }
  }
}

TEST_CASE_TEMPLATE("mpi::search over IVF shards sharing centroids equals one IVF", T, float,
                   double) {
  const Eigen::Index d = 8;
  const auto sizes = split_sizes(1);
  const Eigen::Index n = total(sizes) * 4;  // 4 global rows per unit of the split
  std::vector<Eigen::Index> big(sizes);
  for (auto& s : big) s *= 4;
  const Matrix<T> x = random_matrix<T>(n, d, 70);
  const auto ids = global_ids(n);
  const Matrix<T> queries = random_matrix<T>(17, d, 71);
  const Eigen::Index off = my_offset(big), mine = big[std::size_t(mpi_rank())];
  for (Metric metric : {Metric::l2, Metric::cosine}) {
    IvfIndex<T> shard = trained_everywhere<T>(x, std::size_t(d), 8, metric);
    IvfIndex<T> all = trained_everywhere<T>(x, std::size_t(d), 8, metric);
    if (mine > 0)
      shard.add(local_rows(x, big),
                std::span<const Index>(ids).subspan(std::size_t(off), std::size_t(mine)));
    all.add(x, ids);
    for (std::size_t nprobe : {std::size_t(1), std::size_t(3), std::size_t(8)}) {
      const SearchParams p{.nprobe = nprobe};
      check_identical(
          mpi::search(MPI_COMM_WORLD, shard, queries, 12, p), all.search(queries, 12, p),
          "ivf metric " + std::string(to_string(metric)) + " nprobe " + std::to_string(nprobe));
    }
  }
}

TEST_CASE("mpi::search: mismatched queries, k or dimension throw on every rank") {
  const int me = mpi_rank();
  FlatIndex<float> shard(8, Metric::l2);
  shard.add(random_matrix<float>(10, 8, std::uint64_t(me)),
            std::vector<Index>{10 * me + 0, 10 * me + 1, 10 * me + 2, 10 * me + 3, 10 * me + 4,
                               10 * me + 5, 10 * me + 6, 10 * me + 7, 10 * me + 8, 10 * me + 9});
  const Matrix<float> q = random_matrix<float>(3, 8, 5);
  auto message = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  Matrix<float> q_other = q;
  if (me == 2) q_other(1, 1) += 1.0f;
  CHECK(message([&] {
          (void)mpi::search(MPI_COMM_WORLD, shard, q_other, 4);
        }).find("queries (fingerprint") != std::string::npos);
  CHECK(message([&] {
          (void)mpi::search(MPI_COMM_WORLD, shard, q, me == 1 ? 5 : 4);
        }).find("k must be the same on every rank") != std::string::npos);
  const Matrix<float> q_wide = random_matrix<float>(3, me == 1 ? 9 : 8, 5);
  const auto msg = message([&] { (void)mpi::search(MPI_COMM_WORLD, shard, q_wide, 4); });
  CHECK(msg.find(me == 1 ? "columns" : "rank 1 rejected") != std::string::npos);
  CHECK(message([&] { (void)mpi::search(MPI_COMM_WORLD, shard, q, 0); }).find("k must be > 0") !=
        std::string::npos);
  // Still in step afterwards.
  CHECK(mpi::search(MPI_COMM_WORLD, shard, q, 4).ids.rows() == 3);
}
