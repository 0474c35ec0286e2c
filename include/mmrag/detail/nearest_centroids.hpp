#pragma once
/// @file detail/nearest_centroids.hpp
/// The one blocked nearest-centroid routine: k-means assignment, IVF add (nearest cell) and IVF
/// search (the nprobe best cells) all call it. Rows are scored against the centroids through a
/// GEMM one block of rows at a time, so the n × k score matrix never exists: the scratch is
/// kRows × k per thread. Not API: namespace mmrag::detail.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <cstddef>
#include <vector>

#include <Eigen/Core>

#include "mmrag/config.hpp"

namespace mmrag::detail {

/// Rows scored against all centroids per GEMM: 256 × 4096 centroids × 4 bytes = 4 MiB scratch.
inline constexpr Eigen::Index kNearestBlockRows = 256;

/// For every row i of `x` (n × d), the `p` best centroids of `c` (k × d, p <= k), best first,
/// ties to the smaller centroid index: written to ids[i * p .. i * p + p). With
/// `by_inner_product` the best is the largest x·c, else the smallest ||x - c||². When `keys` is
/// not null it receives the ranking key of each pick: ||c||² - 2 x·c (add ||x||² for the squared
/// distance) or -x·c. `c_sq` holds ||c_j||² (unused by inner product). Parallel over row blocks
/// with OpenMP above kParallelWork. Memory: kNearestBlockRows × k scalars per thread.
template <class T>
void nearest_centroids(const Eigen::Ref<const Matrix<T>>& x, const Eigen::Ref<const Matrix<T>>& c,
                       const Eigen::Ref<const Vector<T>>& c_sq, bool by_inner_product,
                       std::size_t p, Index* ids, T* keys = nullptr) {
  const Eigen::Index n = x.rows(), k = c.rows();
  MMRAG_ASSERT(p >= 1 && static_cast<Eigen::Index>(p) <= k);
  const Eigen::Index blocks = (n + kNearestBlockRows - 1) / kNearestBlockRows;
  [[maybe_unused]] const long long work = static_cast<long long>(n) * k * x.cols();
  MMRAG_OMP(parallel for schedule(dynamic) if (blocks > 1 && work > kParallelWork))
  for (Eigen::Index bi = 0; bi < blocks; ++bi) {
    const Eigen::Index b0 = bi * kNearestBlockRows;
    const Eigen::Index rows = std::min(kNearestBlockRows, n - b0);
    Matrix<T> s(rows, k);
    s.noalias() = x.middleRows(b0, rows) * c.transpose();
    std::vector<Index> order;
    for (Eigen::Index r = 0; r < rows; ++r) {
      T* key = s.row(r).data();
      // One key for both metrics, lower is better.
      for (Eigen::Index j = 0; j < k; ++j)
        key[j] = by_inner_product ? -key[j] : c_sq[j] - T(2) * key[j];
      Index* out = ids + static_cast<std::size_t>(b0 + r) * p;
      T* out_key = keys ? keys + static_cast<std::size_t>(b0 + r) * p : nullptr;
      if (p == 1) {
        Eigen::Index arg = 0;
        for (Eigen::Index j = 1; j < k; ++j)
          if (key[j] < key[arg]) arg = j;
        out[0] = arg;
        if (out_key) out_key[0] = key[arg];
        continue;
      }
      order.resize(static_cast<std::size_t>(k));
      for (Eigen::Index j = 0; j < k; ++j) order[static_cast<std::size_t>(j)] = j;
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(p), order.end(),
                        [key](Index a, Index b) { return key[a] != key[b] ? key[a] < key[b] : a < b; });
      for (std::size_t q = 0; q < p; ++q) {
        out[q] = order[q];
        if (out_key) out_key[q] = key[order[q]];
      }
    }
  }
}

}  // namespace mmrag::detail
