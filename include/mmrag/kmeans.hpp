#pragma once
/// @file kmeans.hpp
/// k-means clustering: seeded k-means++ initialization, Lloyd iterations with GEMM assignment,
/// empty-cluster repair, FAISS-style subsampling, and a spherical variant for cosine / inner
/// product. IvfIndex trains its coarse quantizer with it.
///
/// Thread safety: reentrant (no state). Parallel over row blocks with OpenMP.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mmrag/config.hpp"
#include "mmrag/detail/nearest_centroids.hpp"
#include "mmrag/similarity.hpp"

namespace mmrag {

/// Parameters of `kmeans`.
struct KMeansParams {
  /// Lloyd iterations. Unset: the caller's default — 25 for `kmeans` (FAISS's Clustering),
  /// 10 for IvfIndex::train (FAISS's IVF training). A value set here is always used.
  std::optional<std::size_t> iterations = std::nullopt;
  /// Seed of every random choice: the same seed and input give the same centroids.
  std::uint64_t seed = 1234;
  /// Train on at most k × this many points, sampled at random (FAISS uses 256); 0 = all.
  std::size_t max_points_per_centroid = 256;
  /// k-means++ runs on at most k × this many of the training points: its k sequential
  /// passes are memory-bound, and seeding from a subsample costs little quality; 0 = all.
  std::size_t init_points_per_centroid = 32;
  /// Spherical k-means for cosine / inner product: centroids are renormalized to unit length
  /// after each update and points go to the centroid of largest inner product. Unset: false for
  /// `kmeans`; IvfIndex::train uses true for the cosine metric. A value set here is always used.
  std::optional<bool> spherical = std::nullopt;
  /// Stop early when the objective improves by less than this fraction (0: never).
  double tolerance = 0.0;
  /// Compute `assignment` for every input row after training (one more GEMM pass).
  bool assign = true;
  /// Called after each iteration's assignment step with (iteration, objective).
  std::function<void(std::size_t, double)> progress = nullptr;
};

/// Result of `kmeans`.
template <class T>
struct KMeansResult {
  Matrix<T> centroids;            ///< k × d
  std::vector<Index> assignment;  ///< cluster of each input row (empty unless params.assign)
  std::vector<double> objective;  ///< per iteration: sum of squared distances (l2) or of
                                  ///< ||x|| - x·c (spherical), before that iteration's update
  std::size_t iterations = 0;     ///< iterations run
};

namespace detail {

/// For rows x (n × d) and centroids c (k × d): best[i] = argmin_j ||x_i - c_j||² (or argmax
/// x_i·c_j when spherical) and cost[i] its squared distance (or ||x_i|| - x_i·c_j), through the
/// shared blocked routine (detail/nearest_centroids.hpp). Ties go to the smaller centroid.
template <class T>
void assign_nearest(const Eigen::Ref<const Matrix<T>>& x, const Vector<T>& x_sq, const Matrix<T>& c,
                    bool spherical, std::vector<Index>& best, std::vector<double>& cost) {
  const auto n = static_cast<std::size_t>(x.rows());
  best.assign(n, 0);
  std::vector<T> key(n);
  const Vector<T> c_sq = c.rowwise().squaredNorm();
  nearest_centroids<T>(x, c, c_sq, spherical, 1, best.data(), key.data());
  cost.assign(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    const auto xi = static_cast<Eigen::Index>(i);
    cost[i] = spherical ? std::max(0.0, std::sqrt(double(x_sq[xi])) + double(key[i]))
                        : std::max(0.0, double(x_sq[xi]) + double(key[i]));
  }
}

inline void normalize_centroids(Matrix<double>& c) {
  for (Eigen::Index j = 0; j < c.rows(); ++j) {
    const double n = c.row(j).norm();
    if (n > 0) c.row(j) /= n;
  }
}

}  // namespace detail

/// Clusters the rows of x (n × d, row-major) into k centroids.
/// Throws std::invalid_argument when k = 0, k > n, x has NaN/Inf or no columns.
template <class T>
[[nodiscard]] KMeansResult<T> kmeans(const Eigen::Ref<const Matrix<T>>& x, std::size_t k,
                                     const KMeansParams& params = {}) {
  constexpr const char* where = "mmrag::kmeans";
  const auto n_all = static_cast<std::size_t>(x.rows());
  if (k == 0) throw std::invalid_argument(std::string(where) + ": k must be > 0, got 0");
  if (k > n_all)
    throw std::invalid_argument(std::string(where) + ": k (" + std::to_string(k) +
                                ") must not exceed the number of rows (" + std::to_string(n_all) +
                                ")");
  if (x.cols() == 0)
    throw std::invalid_argument(std::string(where) + ": x must have at least one column");
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    if (!x.row(r).allFinite())
      throw std::invalid_argument(std::string(where) + ": x row " + std::to_string(r) +
                                  " holds NaN or Inf");

  const std::size_t iterations = params.iterations.value_or(25);
  const bool spherical = params.spherical.value_or(false);
  std::mt19937_64 rng(params.seed);
  auto uniform_index = [&rng](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  auto uniform01 = [&rng]() { return double(rng() >> 11) * 0x1.0p-53; };

  // A random subset of rows, in increasing order (partial Fisher-Yates), or all rows.
  auto sample_rows = [&](std::size_t n, std::size_t limit) {
    std::vector<Index> rows(n);
    std::iota(rows.begin(), rows.end(), Index(0));
    if (limit == 0 || limit >= n) return rows;
    for (std::size_t i = 0; i < limit; ++i) std::swap(rows[i], rows[i + uniform_index(n - i)]);
    rows.resize(limit);
    std::sort(rows.begin(), rows.end());
    return rows;
  };

  const std::vector<Index> train_rows = sample_rows(n_all, params.max_points_per_centroid * k);
  Matrix<T> xs(static_cast<Eigen::Index>(train_rows.size()), x.cols());
  for (std::size_t i = 0; i < train_rows.size(); ++i)
    xs.row(static_cast<Eigen::Index>(i)) = x.row(train_rows[i]);
  const Eigen::Index n = xs.rows(), d = xs.cols();
  const Vector<T> xs_sq = xs.rowwise().squaredNorm();

  // ---- k-means++ seeding on a subsample: next centroid drawn with probability ∝ D(x)² -----
  Matrix<double> centroids(static_cast<Eigen::Index>(k), d);
  {
    const std::vector<Index> init_rows =
        sample_rows(static_cast<std::size_t>(n), params.init_points_per_centroid * k);
    Matrix<T> xi(static_cast<Eigen::Index>(init_rows.size()), d);
    for (std::size_t i = 0; i < init_rows.size(); ++i)
      xi.row(static_cast<Eigen::Index>(i)) = xs.row(init_rows[i]);
    if (spherical) normalize_rows(xi);
    const auto m = static_cast<std::size_t>(xi.rows());
    std::vector<double> d2(m, std::numeric_limits<double>::infinity());
    std::vector<T> dist(m);
    std::size_t pick = uniform_index(m);
    for (std::size_t c = 0; c < k; ++c) {
      centroids.row(static_cast<Eigen::Index>(c)) =
          xi.row(static_cast<Eigen::Index>(pick)).template cast<double>();
      one_to_many<T>(xi.row(static_cast<Eigen::Index>(pick)).data(), xi.data(), m,
                     static_cast<std::size_t>(d), static_cast<std::size_t>(d), Metric::l2,
                     dist.data());
      double total = 0;
      for (std::size_t i = 0; i < m; ++i) total += (d2[i] = std::min(d2[i], double(dist[i])));
      if (c + 1 == k) break;
      if (total > 0) {
        double target = uniform01() * total;
        pick = m - 1;
        for (std::size_t i = 0; i < m; ++i)
          if ((target -= d2[i]) < 0 && d2[i] > 0) {
            pick = i;
            break;
          }
        while (d2[pick] == 0 && pick > 0) --pick;  // rounding at the end: take a point with D > 0
      } else {
        pick = uniform_index(m);  // every point coincides with a centroid: duplicates are fine
      }
    }
    if (spherical) detail::normalize_centroids(centroids);
  }

  // ---- Lloyd iterations -------------------------------------------------------------------
  KMeansResult<T> result;
  std::vector<Index> best;
  std::vector<double> cost;
  Matrix<T> c_t = centroids.cast<T>();
  for (std::size_t it = 0; it < iterations; ++it) {
    detail::assign_nearest<T>(xs, xs_sq, c_t, spherical, best, cost);
    const double objective = std::accumulate(cost.begin(), cost.end(), 0.0);
    result.objective.push_back(objective);
    result.iterations = it + 1;
    if (params.progress) params.progress(it, objective);

    // Update: centroid = mean of its points (renormalized when spherical).
    Matrix<double> sums = Matrix<double>::Zero(static_cast<Eigen::Index>(k), d);
    std::vector<std::size_t> counts(k, 0);
    for (Eigen::Index i = 0; i < n; ++i) {
      const auto j = static_cast<Eigen::Index>(best[static_cast<std::size_t>(i)]);
      sums.row(j) += xs.row(i).template cast<double>();
      ++counts[static_cast<std::size_t>(j)];
    }
    // Empty clusters take the points that cost the most, farthest first: each such point now
    // costs 0, so the objective still cannot increase.
    std::vector<std::size_t> by_cost;
    std::size_t next_far = 0;
    for (std::size_t j = 0; j < k; ++j) {
      if (counts[j] > 0) {
        centroids.row(static_cast<Eigen::Index>(j)) =
            sums.row(static_cast<Eigen::Index>(j)) / double(counts[j]);
        continue;
      }
      if (by_cost.empty()) {
        by_cost.resize(static_cast<std::size_t>(n));
        std::iota(by_cost.begin(), by_cost.end(), std::size_t(0));
        std::sort(by_cost.begin(), by_cost.end(), [&](std::size_t a, std::size_t b) {
          return cost[a] != cost[b] ? cost[a] > cost[b] : a < b;
        });
      }
      const std::size_t far = by_cost[std::min(next_far++, by_cost.size() - 1)];
      centroids.row(static_cast<Eigen::Index>(j)) =
          xs.row(static_cast<Eigen::Index>(far)).template cast<double>();
    }
    if (spherical) detail::normalize_centroids(centroids);
    c_t = centroids.cast<T>();
    if (params.tolerance > 0 && it > 0) {
      const double prev = result.objective[it - 1];
      if (prev - objective <= params.tolerance * prev) break;
    }
  }
  result.centroids = std::move(c_t);
  if (params.assign) {
    const Vector<T> x_sq = x.rowwise().squaredNorm();
    std::vector<double> unused;
    detail::assign_nearest<T>(x, x_sq, result.centroids, spherical, result.assignment, unused);
  }
  return result;
}

}  // namespace mmrag
