#pragma once
/// @file kmeans.hpp
/// k-means clustering: seeded k-means++ initialization, Lloyd iterations with GEMM assignment,
/// empty-cluster repair, FAISS-style subsampling, and a spherical variant for cosine / inner
/// product. IvfIndex trains its coarse quantizer with it.
///
/// Thread safety: reentrant (no state). Parallel over row blocks with OpenMP.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

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
#include <unordered_map>
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
  if (n > 0) nearest_centroids<T>(x, c, c_sq, spherical, 1, best.data(), key.data());
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

// The steps of `kmeans`, shared with mpi::kmeans (mmrag/mpi.hpp) so that k-means over rows split
// across processes makes exactly the same random choices as one process on all the rows.

/// The random source of every choice k-means makes (one per run, seeded by KMeansParams::seed).
struct KMeansRng {
  std::mt19937_64 engine;
  explicit KMeansRng(std::uint64_t seed) : engine(seed) {}
  std::size_t uniform_index(std::size_t n) { return static_cast<std::size_t>(engine() % n); }
  double uniform01() { return double(engine() >> 11) * 0x1.0p-53; }
};

/// True when `sample_rows(n, limit)` keeps every row (and draws no random number).
[[nodiscard]] inline bool samples_all(std::size_t n, std::size_t limit) noexcept {
  return limit == 0 || limit >= n;
}

/// A uniformly random subset of `limit` of the rows 0..n-1, in increasing order (a partial
/// Fisher-Yates shuffle, kept sparse: O(limit) memory whatever n), or all rows when
/// samples_all(n, limit).
[[nodiscard]] inline std::vector<Index> sample_rows(KMeansRng& rng, std::size_t n,
                                                    std::size_t limit) {
  std::vector<Index> rows;
  if (samples_all(n, limit)) {
    rows.resize(n);
    std::iota(rows.begin(), rows.end(), Index(0));
    return rows;
  }
  // The shuffled array is the identity except at the positions recorded in `moved`.
  std::unordered_map<std::size_t, std::size_t> moved;
  auto at = [&moved](std::size_t i) {
    const auto it = moved.find(i);
    return it == moved.end() ? i : it->second;
  };
  rows.resize(limit);
  for (std::size_t i = 0; i < limit; ++i) {
    const std::size_t j = i + rng.uniform_index(n - i);
    const std::size_t vi = at(i), vj = at(j);
    rows[i] = static_cast<Index>(vj);
    moved[j] = vi;  // position i is never read again
  }
  std::sort(rows.begin(), rows.end());
  return rows;
}

/// k-means++ seeding (Arthur & Vassilvitskii, 2007) on the rows xi (m × d, already normalized
/// when spherical): the first centroid uniformly at random, each next one with probability
/// ∝ D(x)², the squared distance to the nearest centroid so far. Returns k × d (normalized when
/// spherical).
template <class T>
[[nodiscard]] Matrix<double> kmeans_plus_plus(const Matrix<T>& xi, std::size_t k, bool spherical,
                                              KMeansRng& rng) {
  const auto m = static_cast<std::size_t>(xi.rows());
  const auto d = static_cast<std::size_t>(xi.cols());
  Matrix<double> centroids(static_cast<Eigen::Index>(k), xi.cols());
  std::vector<double> d2(m, std::numeric_limits<double>::infinity());
  std::vector<T> dist(m);
  std::size_t pick = rng.uniform_index(m);
  for (std::size_t c = 0; c < k; ++c) {
    centroids.row(static_cast<Eigen::Index>(c)) =
        xi.row(static_cast<Eigen::Index>(pick)).template cast<double>();
    one_to_many<T>(xi.row(static_cast<Eigen::Index>(pick)).data(), xi.data(), m, d, d, Metric::l2,
                   dist.data());
    double total = 0;
    for (std::size_t i = 0; i < m; ++i) total += (d2[i] = std::min(d2[i], double(dist[i])));
    if (c + 1 == k) break;
    if (total > 0) {
      double target = rng.uniform01() * total;
      pick = m - 1;
      for (std::size_t i = 0; i < m; ++i)
        if ((target -= d2[i]) < 0 && d2[i] > 0) {
          pick = i;
          break;
        }
      while (d2[pick] == 0 && pick > 0) --pick;  // rounding at the end: take a point with D > 0
    } else {
      pick = rng.uniform_index(m);  // every point coincides with a centroid: duplicates are fine
    }
  }
  if (spherical) normalize_centroids(centroids);
  return centroids;
}

/// Per-cluster sums (k × d, double) and counts of the rows x (n × d) assigned by `best`: the
/// statistics a Lloyd update needs (mpi::kmeans sums them over the ranks).
template <class T>
void cluster_sums(const Eigen::Ref<const Matrix<T>>& x, const std::vector<Index>& best,
                  std::size_t k, Matrix<double>& sums, std::vector<std::int64_t>& counts) {
  sums.setZero(static_cast<Eigen::Index>(k), x.cols());
  counts.assign(k, 0);
  for (Eigen::Index i = 0; i < x.rows(); ++i) {
    const auto j = static_cast<Eigen::Index>(best[static_cast<std::size_t>(i)]);
    sums.row(j) += x.row(i).template cast<double>();
    ++counts[static_cast<std::size_t>(j)];
  }
}

/// Number of clusters with no point.
[[nodiscard]] inline std::size_t empty_clusters(const std::vector<std::int64_t>& counts) {
  return static_cast<std::size_t>(std::count(counts.begin(), counts.end(), std::int64_t(0)));
}

/// Positions of the `m` rows of largest cost, largest first, ties to the smaller position.
[[nodiscard]] inline std::vector<std::size_t> costliest(const std::vector<double>& cost,
                                                        std::size_t m) {
  std::vector<std::size_t> order(cost.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  m = std::min(m, order.size());
  std::partial_sort(
      order.begin(), order.begin() + static_cast<std::ptrdiff_t>(m), order.end(),
      [&](std::size_t a, std::size_t b) { return cost[a] != cost[b] ? cost[a] > cost[b] : a < b; });
  order.resize(m);
  return order;
}

/// The Lloyd update: each centroid becomes the mean of its points (renormalized when
/// spherical). Empty clusters take the points that cost the most, farthest first (`far`: one
/// row per empty cluster, in order, as from `costliest`): each such point then costs 0, so the
/// objective still cannot increase.
inline void update_centroids(const Matrix<double>& sums, const std::vector<std::int64_t>& counts,
                             const Matrix<double>& far, bool spherical, Matrix<double>& centroids) {
  Eigen::Index next_far = 0;
  for (std::size_t j = 0; j < counts.size(); ++j) {
    const auto r = static_cast<Eigen::Index>(j);
    if (counts[j] > 0)
      centroids.row(r) = sums.row(r) / double(counts[j]);
    else
      centroids.row(r) = far.row(std::min(next_far++, far.rows() - 1));
  }
  if (spherical) normalize_centroids(centroids);
}

/// Resolved iteration count and spherical flag of `params` for `kmeans`.
[[nodiscard]] inline std::size_t kmeans_iterations(const KMeansParams& p) {
  return p.iterations.value_or(25);
}
[[nodiscard]] inline bool kmeans_spherical(const KMeansParams& p) {
  return p.spherical.value_or(false);
}

/// True when the objective improved by less than `params.tolerance` (relative) at iteration it.
[[nodiscard]] inline bool kmeans_converged(const KMeansParams& params,
                                           const std::vector<double>& objective) {
  if (!(params.tolerance > 0) || objective.size() < 2) return false;
  const double prev = objective[objective.size() - 2], now = objective.back();
  return prev - now <= params.tolerance * prev;
}

}  // namespace detail

/// Clusters the rows of x (n × d, row-major) into k centroids: FAISS-style subsampling to at
/// most k × max_points_per_centroid rows, k-means++ seeding (Arthur & Vassilvitskii, 2007) on a
/// further subsample, then Lloyd iterations (Lloyd, 1982) with GEMM assignment and empty-cluster
/// repair; spherical k-means (Dhillon & Modha, 2001) when asked. mpi::kmeans runs the same steps
/// over rows split across processes.
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

  const std::size_t iterations = detail::kmeans_iterations(params);
  const bool spherical = detail::kmeans_spherical(params);
  detail::KMeansRng rng(params.seed);

  const std::vector<Index> train_rows =
      detail::sample_rows(rng, n_all, params.max_points_per_centroid * k);
  Matrix<T> xs(static_cast<Eigen::Index>(train_rows.size()), x.cols());
  for (std::size_t i = 0; i < train_rows.size(); ++i)
    xs.row(static_cast<Eigen::Index>(i)) = x.row(train_rows[i]);
  const Eigen::Index n = xs.rows(), d = xs.cols();
  const Vector<T> xs_sq = xs.rowwise().squaredNorm();

  // ---- k-means++ seeding on a subsample of the training rows ------------------------------
  Matrix<double> centroids;
  {
    const std::vector<Index> init_rows =
        detail::sample_rows(rng, static_cast<std::size_t>(n), params.init_points_per_centroid * k);
    Matrix<T> xi(static_cast<Eigen::Index>(init_rows.size()), d);
    for (std::size_t i = 0; i < init_rows.size(); ++i)
      xi.row(static_cast<Eigen::Index>(i)) = xs.row(init_rows[i]);
    if (spherical) normalize_rows(xi);
    centroids = detail::kmeans_plus_plus(xi, k, spherical, rng);
  }

  // ---- Lloyd iterations -------------------------------------------------------------------
  KMeansResult<T> result;
  std::vector<Index> best;
  std::vector<double> cost;
  Matrix<double> sums, far(0, d);
  std::vector<std::int64_t> counts;
  Matrix<T> c_t = centroids.cast<T>();
  for (std::size_t it = 0; it < iterations; ++it) {
    detail::assign_nearest<T>(xs, xs_sq, c_t, spherical, best, cost);
    const double objective = std::accumulate(cost.begin(), cost.end(), 0.0);
    result.objective.push_back(objective);
    result.iterations = it + 1;
    if (params.progress) params.progress(it, objective);

    detail::cluster_sums<T>(xs, best, k, sums, counts);
    const std::vector<std::size_t> far_rows =
        detail::costliest(cost, detail::empty_clusters(counts));
    far.resize(static_cast<Eigen::Index>(far_rows.size()), d);
    for (std::size_t i = 0; i < far_rows.size(); ++i)
      far.row(static_cast<Eigen::Index>(i)) =
          xs.row(static_cast<Eigen::Index>(far_rows[i])).template cast<double>();
    detail::update_centroids(sums, counts, far, spherical, centroids);
    c_t = centroids.cast<T>();
    if (detail::kmeans_converged(params, result.objective)) break;
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
