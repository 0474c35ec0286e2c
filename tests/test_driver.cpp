// search/driver.hpp: "exact means exact". FlatIndex and IvfIndex (nprobe = nlist) against a
// long-double brute force on large-coordinate data and on ties, single queries and batches,
// every metric; the same answer for a query alone or inside any batch.
#include <doctest/doctest.h>

#include <limits>
#include <random>
#include <vector>

#include "brute_force.hpp"
#include "helpers.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"

using namespace mmrag;

namespace {

// Earth-centred coordinates (metres) of points a few metres to a few km apart.
template <class T>
Matrix<T> earth_points(Eigen::Index n, std::uint64_t seed, double spread) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, spread);
  Matrix<T> x(n, 3);
  for (Eigen::Index i = 0; i < n; ++i) {
    x(i, 0) = T(4208848 + std::round(g(rng)));
    x(i, 1) = T(2334863.5 + std::round(g(rng)));
    x(i, 2) = T(4171170 + std::round(g(rng)));
  }
  return x;
}

// Every query's ids equal the reference's ids exactly, and scores within rel (of the scale).
template <class T>
void require_exact(const Hits<T>& hits, const Matrix<T>& base, const std::vector<Index>& ids,
                   const Matrix<T>& q, Metric metric, double rel) {
  for (Eigen::Index i = 0; i < q.rows(); ++i) {
    const auto ref = test::brute_force<T>(base, ids, q.row(i).data(), metric);
    for (Eigen::Index j = 0; j < hits.ids.cols(); ++j) {
      CAPTURE(i);
      CAPTURE(j);
      if (static_cast<std::size_t>(j) >= ref.size()) {
        REQUIRE(hits.ids(i, j) == -1);
        continue;
      }
      REQUIRE(hits.ids(i, j) == ref[static_cast<std::size_t>(j)].id);
      const double e = double(ref[static_cast<std::size_t>(j)].score);
      REQUIRE(std::abs(double(hits.scores(i, j)) - e) <= rel * std::max(1.0, std::abs(e)));
    }
  }
}

}  // namespace

TEST_CASE("the reported case: l2 on Earth-centred coordinates is exact") {
  FlatIndex<float> f(3, Metric::l2);
  Matrix<float> x(2, 3);
  x << 4209848, 2334863.5, 4171170, 4208855, 2334863.5, 4171170;
  f.add(x);
  Matrix<float> q(1, 3);
  q << 4208848, 2334863.5, 4171170;
  const auto alone = f.search(q, 1);
  CHECK(alone.ids(0, 0) == 1);
  CHECK(alone.scores(0, 0) == 49.0f);
  const Matrix<float> batch = q.replicate(8, 1);
  const auto many = f.search(batch, 1);
  for (Eigen::Index i = 0; i < 8; ++i) CHECK(many.ids(i, 0) == 1);

  IvfIndex<float> ivf(3, 1, Metric::l2);
  ivf.train(x);
  ivf.add(x);
  CHECK(ivf.search(q, 1).ids(0, 0) == 1);
  CHECK(ivf.search(batch, 1).ids(7, 0) == 1);
}

TEST_CASE("the reported case: identical rows tie to the smaller id in a batch too") {
  const Matrix<float> row = test::random_matrix<float>(1, 37, 11);
  FlatIndex<float> f(37, Metric::inner_product);
  f.add(row.replicate(5, 1));
  const auto alone = f.search(row, 3);
  CHECK(alone.ids(0, 0) == 0);
  CHECK(alone.ids(0, 1) == 1);
  CHECK(alone.ids(0, 2) == 2);
  const auto batch = f.search(row.replicate(8, 1), 3);
  for (Eigen::Index i = 0; i < 8; ++i) {
    CHECK(batch.ids(i, 0) == 0);
    CHECK(batch.ids(i, 1) == 1);
    CHECK(batch.ids(i, 2) == 2);
    CHECK(batch.scores(i, 0) == alone.scores(0, 0));
    CHECK(batch.scores(i, 2) == alone.scores(0, 2));
  }
}

TEST_CASE_TEMPLATE("flat and IVF at nprobe = nlist are exact on large coordinates", T, float, double) {
  for (double spread : {3.0, 300.0, 30000.0}) {
    CAPTURE(spread);
    const Matrix<T> x = earth_points<T>(3000, 1, spread);
    const Matrix<T> q = earth_points<T>(20, 2, spread);
    std::vector<Index> ids(3000);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(i);
    for (Metric metric : {Metric::l2, Metric::inner_product}) {
      CAPTURE(std::string(to_string(metric)));
      FlatIndex<T> f(3, metric);
      f.add(x);
      IvfIndex<T> ivf(3, 8, metric);
      ivf.train(x);
      ivf.add(x);
      // Scores are rounded to T once at the end: that is the only error left.
      const double rel = 4 * test::eps<T>();
      for (Eigen::Index n : {Eigen::Index(1), Eigen::Index(3), Eigen::Index(20)}) {
        CAPTURE(n);
        const Matrix<T> qs = q.topRows(n);
        require_exact(f.search(qs, 10), x, ids, qs, metric, rel);
        require_exact(ivf.search(qs, 10, {.nprobe = 8}), x, ids, qs, metric, rel);
      }
    }
  }
}

TEST_CASE_TEMPLATE("ties and near-ties: every metric, alone or in a batch, flat and IVF", T, float, double) {
  // Rows drawn from a few distinct vectors, so most scores tie exactly; ids shuffled.
  const Matrix<T> distinct = test::random_matrix<T>(7, 24, 3);
  std::mt19937_64 rng(4);
  Matrix<T> x(700, 24);
  std::vector<Index> ids(700);
  for (Eigen::Index i = 0; i < 700; ++i) {
    x.row(i) = distinct.row(static_cast<Eigen::Index>(rng() % 7));
    ids[static_cast<std::size_t>(i)] = Index((i * 379) % 700) + 5;
  }
  const Matrix<T> q = test::random_matrix<T>(33, 24, 5);
  for (Metric metric : {Metric::l2, Metric::inner_product, Metric::cosine}) {
    CAPTURE(std::string(to_string(metric)));
    FlatIndex<T> f(24, metric);
    f.add(x, ids);
    IvfIndex<T> ivf(24, 4, metric);
    ivf.train(x);
    ivf.add(x, ids);
    const Hits<T> batch = f.search(q, 25);
    const Hits<T> ivf_batch = ivf.search(q, 25, {.nprobe = 4});
    CHECK(ivf_batch.ids == batch.ids);
    CHECK(ivf_batch.scores == batch.scores);
    for (Eigen::Index i = 0; i < q.rows(); ++i) {
      const Matrix<T> one = q.row(i);
      const Hits<T> alone = f.search(one, 25);
      REQUIRE(alone.ids.row(0) == batch.ids.row(i));
      REQUIRE(alone.scores.row(0) == batch.scores.row(i));
      REQUIRE(ivf.search(one, 25, {.nprobe = 4}).ids.row(0) == batch.ids.row(i));
    }
    if (metric != Metric::cosine) require_exact(batch, x, ids, q, metric, 8 * test::eps<T>());
    // Within a tie the ids ascend.
    for (Eigen::Index i = 0; i < q.rows(); ++i)
      for (Eigen::Index j = 1; j < 25; ++j)
        if (batch.scores(i, j) == batch.scores(i, j - 1)) REQUIRE(batch.ids(i, j) > batch.ids(i, j - 1));
  }
}

TEST_CASE("filtered exact search on large coordinates (compacted GEMM and SIMD paths)") {
  const Matrix<float> x = earth_points<float>(2000, 7, 50.0);
  std::vector<Index> ids(2000);
  std::vector<Modality> mod(2000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(i), mod[i] = Modality(i % 3);
  FlatIndex<float> f(3, Metric::l2);
  f.add(x, ids, mod);
  const Matrix<float> q = earth_points<float>(9, 8, 50.0);
  const Hits<float> h = f.search(q, 5, {.filter = {.modalities = {2}}});
  for (Eigen::Index i = 0; i < q.rows(); ++i) {
    const auto ref = test::brute_force<float>(x, ids, q.row(i).data(), Metric::l2,
                                              [&](std::size_t r) { return mod[r] == 2; });
    for (Eigen::Index j = 0; j < 5; ++j) CHECK(h.ids(i, j) == ref[std::size_t(j)].id);
  }
}

TEST_CASE("cosine ranks finite vectors of tiny or huge norm correctly (break-it review)") {
  FlatIndex<float> c(2, Metric::cosine);
  Matrix<float> x(3, 2);
  x << 1e-30f, 0, 0.5f, 0.866f, 3e38f, 0;
  c.add(x);
  Matrix<float> q(1, 2);
  q << 1, 0;
  const auto h = c.search(q, 3);
  CHECK(h.ids(0, 0) == 0);
  CHECK(h.ids(0, 1) == 2);
  CHECK(h.ids(0, 2) == 1);
  CHECK(h.scores(0, 0) == doctest::Approx(1.0));
  CHECK(h.scores(0, 1) == doctest::Approx(1.0));
  Matrix<float> tiny(1, 2);
  tiny << 1e-30f, 0;
  CHECK(c.search(tiny, 1).scores(0, 0) == doctest::Approx(1.0));
}

TEST_CASE("sequential ids never run past the largest int64 (break-it review)") {
  FlatIndex<float> g(4, Metric::l2);
  const std::vector<Index> id{std::numeric_limits<Index>::max()};
  g.add(Matrix<float>::Ones(1, 4), id);
  const std::vector<char> before = g.serialize();
  CHECK_THROWS_WITH_AS(g.add(Matrix<float>::Ones(2, 4)), doctest::Contains("largest id"),
                       std::invalid_argument);
  CHECK(g.serialize() == before);
  const std::vector<Index> more{5, 6};
  g.add(Matrix<float>::Ones(2, 4), more);  // explicit ids still work
  CHECK(g.size() == 3);
}
