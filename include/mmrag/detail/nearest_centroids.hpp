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

#include <xsimd/xsimd.hpp>

#include "mmrag/config.hpp"
#include "mmrag/detail/topk.hpp"

namespace mmrag::detail {

/// Rows scored against all centroids per GEMM: 256 × 4096 centroids × 4 bytes = 4 MiB scratch.
inline constexpr Eigen::Index kNearestBlockRows = 256;

/// The p smallest of key[0, k) (p <= k), ascending, ties to the smaller index, into ids (and
/// their keys into out_key when not null). A bounded max-heap of (key, index) pairs; once it is
/// full, a SIMD compare against its worst key skips whole batches (keys arrive in index order,
/// so an equal key can never displace an earlier one).
template <class T>
void smallest_keys(const T* key, Eigen::Index k, std::size_t p, Index* ids, T* out_key,
                   std::vector<std::pair<T, Index>>& heap) {
  using Batch = xsimd::batch<T>;
  constexpr Eigen::Index W = Batch::size;
  heap.clear();
  auto worse_first = [](const std::pair<T, Index>& a, const std::pair<T, Index>& b) {
    return key_before(a.first, a.second, b.first, b.second);
  };
  Eigen::Index j = 0;
  for (; j < k && heap.size() < p; ++j) {
    heap.emplace_back(key[j], j);
    std::push_heap(heap.begin(), heap.end(), worse_first);
  }
  // Replaces the worst kept pair and sifts it down: one pass instead of pop_heap + push_heap.
  auto consider = [&](Eigen::Index i) {
    if (!(key[i] < heap.front().first)) return;
    const std::pair<T, Index> entry{key[i], i};
    const std::size_t size = heap.size();
    std::size_t at = 0;
    for (;;) {
      std::size_t child = 2 * at + 1;
      if (child >= size) break;
      if (child + 1 < size && worse_first(heap[child], heap[child + 1])) ++child;
      if (!worse_first(entry, heap[child])) break;
      heap[at] = heap[child];
      at = child;
    }
    heap[at] = entry;
  };
  for (; j < k && j % W != 0; ++j) consider(j);
  for (; j + W <= k; j += W)
    if (xsimd::any(Batch::load_unaligned(key + j) < Batch(heap.front().first)))
      for (Eigen::Index i = j; i < j + W; ++i) consider(i);
  for (; j < k; ++j) consider(j);
  std::sort_heap(heap.begin(), heap.end(), worse_first);
  for (std::size_t q = 0; q < p; ++q) {
    ids[q] = heap[q].second;
    if (out_key) out_key[q] = heap[q].first;
  }
}

/// The first index of the smallest of key[0, k) (k >= 1): a SIMD min over the keys, then a SIMD
/// search for its first occurrence (k-means assigns every row this way, every iteration).
template <class T>
[[nodiscard]] Eigen::Index argmin_key(const T* key, Eigen::Index k) noexcept {
  using Batch = xsimd::batch<T>;
  constexpr Eigen::Index W = Batch::size;
  if (k < 2 * W) {
    Eigen::Index arg = 0;
    for (Eigen::Index j = 1; j < k; ++j)
      if (key[j] < key[arg]) arg = j;
    return arg;
  }
  Batch m = Batch::load_unaligned(key);
  Eigen::Index j = W;
  for (; j + W <= k; j += W) m = xsimd::min(m, Batch::load_unaligned(key + j));
  alignas(64) T lanes[W];
  m.store_aligned(lanes);
  T best = lanes[0];
  for (Eigen::Index i = 1; i < W; ++i) best = std::min(best, lanes[i]);
  for (; j < k; ++j) best = std::min(best, key[j]);
  for (j = 0; j + W <= k; j += W)
    if (xsimd::any(Batch::load_unaligned(key + j) == Batch(best)))
      for (Eigen::Index i = j;; ++i)
        if (key[i] == best) return i;
  for (; j < k; ++j)
    if (key[j] == best) return j;
  return 0;  // NaN keys only (overflowed scores): any answer is as good
}

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
  const long long work = static_cast<long long>(n) * k * x.cols();
  parallel_for<Eigen::Index>(0, blocks, work > kParallelWork, 1, [&](Eigen::Index bi) {
    const Eigen::Index b0 = bi * kNearestBlockRows;
    const Eigen::Index rows = std::min(kNearestBlockRows, n - b0);
    Matrix<T> s(rows, k);
    // One key for both metrics, lower is better: the GEMM's alpha = -1 negates for free.
    if (by_inner_product)
      s.noalias() = (T(-1) * x.middleRows(b0, rows)) * c.transpose();
    else
      s.noalias() = (T(-2) * x.middleRows(b0, rows)) * c.transpose();
    std::vector<std::pair<T, Index>> heap;
    for (Eigen::Index r = 0; r < rows; ++r) {
      T* key = s.row(r).data();
      if (!by_inner_product) s.row(r) += c_sq.transpose();
      Index* out = ids + static_cast<std::size_t>(b0 + r) * p;
      T* out_key = keys ? keys + static_cast<std::size_t>(b0 + r) * p : nullptr;
      if (p == 1) {
        const Eigen::Index arg = argmin_key<T>(key, k);
        out[0] = arg;
        if (out_key) out_key[0] = key[arg];
        continue;
      }
      smallest_keys<T>(key, k, p, out, out_key, heap);
    }
  });
}

}  // namespace mmrag::detail
