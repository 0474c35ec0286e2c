// mpi::kmeans equals mmrag::kmeans on the concatenated rows: the same centroids (up to
// summation order) on every rank, bitwise identical across ranks, the objective within 1e-6
// relative at every iteration, with uneven local sizes and a rank holding zero rows.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <string>

#include "mmrag/kmeans.hpp"
#include "mmrag/mpi.hpp"
#include "mpi_helpers.hpp"

using namespace mmrag;
using namespace mmrag::test;

namespace {

/// Gaussian blobs around `centers` random centers: a data set with real cluster structure.
template <class T>
Matrix<T> blobs(Eigen::Index n, Eigen::Index d, Eigen::Index centers, std::uint64_t seed) {
  const Matrix<T> c = random_matrix<T>(centers, d, seed, T(4));
  Matrix<T> x = random_matrix<T>(n, d, seed + 1, T(0.5));
  for (Eigen::Index i = 0; i < n; ++i) x.row(i) += c.row(i % centers);
  return x;
}

/// Global sizes scaled up from the 37/64/5/150/0 pattern so that k-means subsamples.
std::vector<Eigen::Index> scaled_sizes(int shift, Eigen::Index factor) {
  auto s = split_sizes(shift);
  for (auto& v : s) v *= factor;
  return s;
}

template <class T>
void check_same_as_single(const Matrix<T>& x, const std::vector<Eigen::Index>& sizes, std::size_t k,
                          const KMeansParams& params, const std::string& label) {
  INFO(label);
  const auto ref = kmeans<T>(x, k, params);
  const auto got = mpi::kmeans<T>(MPI_COMM_WORLD, local_rows(x, sizes), k, params);
  CHECK(got.iterations == ref.iterations);
  // (CHECK, never REQUIRE, in collective code: a rank leaving a test case early would hang.)
  CHECK(got.objective.size() == ref.objective.size());
  for (std::size_t i = 0; i < std::min(ref.objective.size(), got.objective.size()); ++i)
    CHECK(rel_error(got.objective[i], ref.objective[i]) < 1e-6);
  CHECK(rel_error(got.centroids, ref.centroids) < (sizeof(T) == 8 ? 1e-10 : 1e-4));
  CHECK(same_on_every_rank(got.centroids.data(), sizeof(T) * std::size_t(got.centroids.size())));
  if (params.assign) {
    const Eigen::Index off = my_offset(sizes);
    CHECK(got.assignment.size() == std::size_t(sizes[std::size_t(mpi_rank())]));
    std::size_t same = 0;
    for (std::size_t i = 0;
         i < std::min(got.assignment.size(), ref.assignment.size() - std::size_t(off)); ++i)
      same += got.assignment[i] == ref.assignment[std::size_t(off) + i];
    CHECK(same == got.assignment.size());
  }
}

}  // namespace

TEST_CASE_TEMPLATE("mpi::kmeans equals kmeans on the concatenated rows", T, float, double) {
  for (int shift : {0, 1, 4}) {
    const auto sizes = scaled_sizes(shift, 8);  // 296, 512, 40, 1200, 0 rows
    const Matrix<T> x = blobs<T>(total(sizes), 6, 9, 100 + shift);
    const std::string s = "shift " + std::to_string(shift);
    check_same_as_single<T>(x, sizes, 9, {}, s + " defaults (all rows train)");
    check_same_as_single<T>(x, sizes, 12,
                            {.iterations = 15,
                             .seed = 77,
                             .max_points_per_centroid = 20,
                             .init_points_per_centroid = 4},
                            s + " subsampled");
    check_same_as_single<T>(x, sizes, 8, {.spherical = true}, s + " spherical");
    check_same_as_single<T>(x, sizes, 10, {.iterations = 50, .tolerance = 1e-4}, s + " tolerance");
  }
}

TEST_CASE("kmeans' sparse row sampling equals a dense partial Fisher-Yates shuffle") {
  // mpi::kmeans draws the global sample on every rank: it must not need O(n) memory, and it
  // must be the sample one process draws. Reference: the dense shuffle, written out.
  for (std::size_t n : {std::size_t(1), std::size_t(7), std::size_t(1000), std::size_t(100003)})
    for (std::size_t limit : {std::size_t(1), std::size_t(5), std::size_t(640)}) {
      if (limit >= n) continue;
      mmrag::detail::KMeansRng rng(42 + n), ref_rng(42 + n);
      const auto got = mmrag::detail::sample_rows(rng, n, limit);
      std::vector<Index> dense(n);
      std::iota(dense.begin(), dense.end(), Index(0));
      for (std::size_t i = 0; i < limit; ++i)
        std::swap(dense[i], dense[i + ref_rng.uniform_index(n - i)]);
      dense.resize(limit);
      std::sort(dense.begin(), dense.end());
      CHECK(got == dense);
      CHECK(rng.engine() == ref_rng.engine());  // the same random numbers consumed
    }
}

TEST_CASE("mpi::kmeans repairs empty clusters as one process does") {
  // Few distinct points, more clusters than they fill: every iteration has empty clusters.
  const auto sizes = split_sizes(1);
  Matrix<double> x(total(sizes), 3);
  for (Eigen::Index i = 0; i < x.rows(); ++i)
    x.row(i) = random_matrix<double>(1, 3, std::uint64_t(i % 7)) * double(1 + i % 3);
  check_same_as_single<double>(x, sizes, 12, {.iterations = 6}, "duplicates");
}

TEST_CASE("mpi::kmeans calls progress on every rank with the global objective") {
  const auto sizes = split_sizes(0);
  const Matrix<double> x = blobs<double>(total(sizes), 4, 5, 3);
  std::vector<double> seen;
  const auto got = mpi::kmeans<double>(
      MPI_COMM_WORLD, local_rows(x, sizes), 5,
      {.iterations = 4, .progress = [&](std::size_t, double obj) { seen.push_back(obj); }});
  CHECK(seen == got.objective);
  CHECK(same_on_every_rank(seen.data(), seen.size() * sizeof(double)));
}

TEST_CASE("mpi::kmeans: bad input throws on every rank") {
  const int me = mpi_rank();
  const auto sizes = split_sizes(0);
  const Matrix<double> x = blobs<double>(total(sizes), 4, 5, 3);
  const Matrix<double> mine = local_rows(x, sizes);
  auto message = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  CHECK(message([&] {
          (void)mpi::kmeans<double>(MPI_COMM_WORLD, mine, me == 1 ? 6 : 5);
        }).find("k must be the same on every rank") != std::string::npos);
  CHECK(message([&] {
          (void)mpi::kmeans<double>(MPI_COMM_WORLD, mine, 5, {.seed = me == 2 ? 1u : 2u});
        }).find("seed") != std::string::npos);
  CHECK(message([&] {
          (void)mpi::kmeans<double>(MPI_COMM_WORLD, mine, std::size_t(total(sizes) + 1));
        }).find("must not exceed the number of rows over all ranks") != std::string::npos);
  Matrix<double> bad = mine;
  if (me == 1 && bad.rows() > 0) bad(0, 0) = std::nan("");
  const auto msg = message([&] { (void)mpi::kmeans<double>(MPI_COMM_WORLD, bad, 5); });
  CHECK(msg.find(me == 1 ? "holds NaN or Inf" : "rank 1 rejected") != std::string::npos);
  if (me == 0) {
    const Matrix<float> f = mine.cast<float>();
    CHECK(message([&] { (void)mpi::kmeans<float>(MPI_COMM_WORLD, f, 5); }).find("sizeof(scalar)") !=
          std::string::npos);
  } else {
    CHECK(message([&] {
            (void)mpi::kmeans<double>(MPI_COMM_WORLD, mine, 5);
          }).find("sizeof(scalar)") != std::string::npos);
  }
  // Still in step afterwards.
  CHECK(mpi::kmeans<double>(MPI_COMM_WORLD, mine, 5, {.iterations = 2}).iterations == 2);
}
