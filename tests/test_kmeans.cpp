// Tests for include/mmrag/kmeans.hpp.
#include <doctest/doctest.h>

#include <set>

#include "helpers.hpp"
#include "mmrag/kmeans.hpp"

using namespace mmrag;

namespace {
// n points around `centers` well-separated cluster centers (spread 0.05, centers 10 apart).
template <class T>
Matrix<T> clustered(Eigen::Index n, Eigen::Index centers, Eigen::Index d, std::uint64_t seed,
                    std::vector<int>* label = nullptr) {
  const Matrix<T> c = test::random_matrix<T>(centers, d, seed, T(10));
  Matrix<T> x = test::random_matrix<T>(n, d, seed + 1, T(0.05));
  for (Eigen::Index i = 0; i < n; ++i) {
    x.row(i) += c.row(i % centers);
    if (label) label->push_back(int(i % centers));
  }
  return x;
}
}  // namespace

TEST_CASE_TEMPLATE("kmeans recovers well-separated clusters", T, float, double) {
  std::vector<int> label;
  const Matrix<T> x = clustered<T>(800, 8, 5, 3, &label);
  const auto r = kmeans<T>(x, 8, {.iterations = 20, .seed = 7});
  REQUIRE(r.centroids.rows() == 8);
  REQUIRE(r.assignment.size() == 800);
  // Same true cluster <=> same found cluster.
  for (int i = 0; i < 800; i += 13)
    for (int j = 0; j < 800; j += 17)
      CHECK((label[i] == label[j]) == (r.assignment[i] == r.assignment[j]));
  CHECK(r.objective.back() < 800 * 5 * 0.05 * 0.05 * 2);
}

TEST_CASE_TEMPLATE("kmeans is deterministic for a seed and its objective never increases", T, float,
                   double) {
  const Matrix<T> x = test::random_matrix<T>(3000, 12, 11);
  std::vector<std::pair<std::size_t, double>> progress;
  KMeansParams p{.iterations = 15, .seed = 99, .max_points_per_centroid = 100};
  p.progress = [&](std::size_t it, double obj) { progress.emplace_back(it, obj); };
  const auto a = kmeans<T>(x, 20, p);
  p.progress = nullptr;
  const auto b = kmeans<T>(x, 20, p);
  CHECK(a.centroids == b.centroids);
  CHECK(a.assignment == b.assignment);
  REQUIRE(progress.size() == 15);
  CHECK(progress[3].first == 3);
  const double slack = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  for (std::size_t i = 1; i < a.objective.size(); ++i)
    CHECK(a.objective[i] <= a.objective[i - 1] * (1 + slack));
  CHECK(a.objective.back() < a.objective.front());
  const auto c = kmeans<T>(x, 20, {.iterations = 15, .seed = 100, .max_points_per_centroid = 100});
  CHECK(c.centroids != a.centroids);
}

TEST_CASE_TEMPLATE("kmeans: spherical variant, empty clusters, k = n", T, float, double) {
  SUBCASE("spherical centroids have unit norm and the objective never increases") {
    const Matrix<T> x = test::random_matrix<T>(500, 6, 4);
    const auto r = kmeans<T>(x, 10, {.iterations = 10, .spherical = true});
    for (Eigen::Index j = 0; j < 10; ++j)
      CHECK(double(r.centroids.row(j).norm()) == doctest::Approx(1.0).epsilon(1e-5));
    for (std::size_t i = 1; i < r.objective.size(); ++i)
      CHECK(r.objective[i] <= r.objective[i - 1] * (1 + 1e-5));
  }
  SUBCASE("duplicate points force empty clusters, which are repaired") {
    Matrix<T> x(40, 2);
    for (Eigen::Index i = 0; i < 40; ++i) x.row(i) << T(i % 4), T(0);  // 4 distinct points
    const auto r = kmeans<T>(x, 6, {.iterations = 5});
    CHECK(r.centroids.allFinite());
    std::set<Index> used(r.assignment.begin(), r.assignment.end());
    CHECK(used.size() == 4);
    CHECK(r.objective.back() == doctest::Approx(0.0));
  }
  SUBCASE("k = n puts every point in its own cluster") {
    const Matrix<T> x = test::random_matrix<T>(7, 3, 8);
    const auto r = kmeans<T>(x, 7, {.iterations = 5});
    std::set<Index> used(r.assignment.begin(), r.assignment.end());
    CHECK(used.size() == 7);
    CHECK(r.objective.back() == doctest::Approx(0.0).epsilon(1e-6));
  }
}

TEST_CASE("kmeans: bad input") {
  const Matrix<double> x = Matrix<double>::Ones(5, 2);
  CHECK_THROWS_AS((void)kmeans<double>(x, 0), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)kmeans<double>(x, 6), doctest::Contains("must not exceed"),
                       std::invalid_argument);
  Matrix<double> bad = x;
  bad(3, 1) = std::nan("");
  CHECK_THROWS_AS((void)kmeans<double>(bad, 2), std::invalid_argument);
}
