#pragma once
/// @file detail/scan.hpp
/// The scan step shared by FlatIndex and IvfIndex: score queries against a contiguous block of
/// stored vectors and feed the per-query top-k heaps, with the filter applied inside the loop.
/// Not API: namespace mmrag::detail.
///
/// Two strategies:
/// - `scan_simd`: one query, the SIMD one-to-many kernel (memory-bound; single queries).
/// - `scan_gemm`: a block of queries against a block of rows through one GEMM (compute-bound;
///   batches). For l2 the distance is ||q||² + ||x||² - 2 q·x, as FAISS computes it for batches.

#include <algorithm>
#include <cmath>
#include <vector>

#include <Eigen/Core>

#include "mmrag/config.hpp"
#include "mmrag/detail/simd.hpp"
#include "mmrag/detail/topk.hpp"
#include "mmrag/search_params.hpp"

namespace mmrag::detail {

/// A contiguous block of stored vectors with their ids, squared norms and modality tags.
template <class T>
struct Block {
  const T* vectors = nullptr;          ///< rows × dim, row-major
  const Index* ids = nullptr;          ///< rows
  const T* sq_norms = nullptr;         ///< rows (l2 only; may be null otherwise)
  const Modality* modality = nullptr;  ///< rows
  std::size_t rows = 0;
  std::size_t dim = 0;
  /// For a compacted copy: where each row lives in the index (the heaps keep that pointer
  /// for the final exact l2 rescoring, after the copy is gone). Null: rows are in place.
  const T* const* source = nullptr;
};

template <class T>
inline bool allowed(const Block<T>& b, std::size_t j, const Filter& f) noexcept {
  return f.modalities.contains(b.modality[j]) && (f.ids == nullptr || f.ids->contains(b.ids[j]));
}

/// Pushes scores[j] of block rows [0, rows) into `top`. Once the heap is full almost no score
/// can enter, so a SIMD compare against the threshold skips W scores at a time and only
/// batches holding a possible entrant go through the scalar path (and the filter).
template <class T, bool Filtered>
inline void select(const T* scores, const Block<T>& b, const Filter& f, bool higher, TopK<T>& top) {
  using Batch = xsimd::batch<T>;
  constexpr std::size_t W = Batch::size;
  T thr = top.threshold();
  auto consider = [&](std::size_t j) {
    const T s = scores[j];
    if (higher ? s >= thr : s <= thr) {
      if constexpr (Filtered) {
        if (!allowed(b, j, f)) return;
      }
      top.push(s, b.ids[j], b.source ? b.source[j] : b.vectors + j * b.dim);
      thr = top.threshold();
    }
  };
  std::size_t j = 0;
  for (; j + W <= b.rows; j += W) {
    const Batch v = Batch::load_unaligned(scores + j), t(thr);
    if (xsimd::any(higher ? (v >= t) : (v <= t)))
      for (std::size_t i = j; i < j + W; ++i) consider(i);
  }
  for (; j < b.rows; ++j) consider(j);
}

/// Scores one query against block `b` with the SIMD kernels: inner products (cosine: vectors
/// and query pre-normalized), or for l2 ||q||² + ||x||² - 2 q·x from the stored norms, which
/// reads each stored vector once with one FMA per element; `finish` rescores the kept ones.
template <class T>
void scan_simd(const T* query, T sq_query, std::size_t dim, const Block<T>& b, Metric metric,
               const Filter& f, TopK<T>& top, std::vector<T>& scratch) {
  if (b.rows == 0) return;
  scratch.resize(b.rows);
  T* s = scratch.data();
  dot_many_kernel<T>(query, b.vectors, b.rows, dim, dim, s);
  if (metric == Metric::l2)
    for (std::size_t j = 0; j < b.rows; ++j)
      s[j] = std::max(T(0), sq_query + b.sq_norms[j] - T(2) * s[j]);
  const bool higher = metric != Metric::l2;
  if (f.is_trivial())
    select<T, false>(s, b, f, higher, top);
  else
    select<T, true>(s, b, f, higher, top);
}

/// Scores queries (nq × dim, row-major, contiguous) against block `b` through one GEMM and
/// feeds *tops[0..nq). For l2 the pushed score is ||q||² + ||x||² - 2 q·x (sq_queries holds
/// ||q||²), clamped at 0 against cancellation, so keys from scan_simd and scan_gemm mix freely.
template <class T>
void scan_gemm(const T* queries, std::size_t nq, std::size_t dim, const Block<T>& b, Metric metric,
               const Filter& f, TopK<T>* const* tops, const T* sq_queries, Matrix<T>& scratch) {
  if (b.rows == 0 || nq == 0) return;
  using ConstMap = Eigen::Map<const Matrix<T>>;
  const ConstMap q(queries, static_cast<Eigen::Index>(nq), static_cast<Eigen::Index>(dim));
  const ConstMap x(b.vectors, static_cast<Eigen::Index>(b.rows), static_cast<Eigen::Index>(dim));
  scratch.resize(static_cast<Eigen::Index>(nq), static_cast<Eigen::Index>(b.rows));
  scratch.noalias() = q * x.transpose();
  const bool higher = metric != Metric::l2;
  const bool trivial = f.is_trivial();
  for (std::size_t i = 0; i < nq; ++i) {
    T* row = scratch.row(static_cast<Eigen::Index>(i)).data();
    if (metric == Metric::l2) {
      using Arr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
      Arr r(row, static_cast<Eigen::Index>(b.rows));
      const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> xn(
          b.sq_norms, static_cast<Eigen::Index>(b.rows));
      r = (sq_queries[i] + xn - T(2) * r).max(T(0));
    }
    if (trivial)
      select<T, false>(row, b, f, higher, *tops[i]);
    else
      select<T, true>(row, b, f, higher, *tops[i]);
  }
}

/// Writes tops[0..nq) into rows [first, first + nq) of `hits`, best first, padded.
/// For l2, `queries` (nq × dim) is given and the kept candidates are rescored with the exact
/// SIMD distance: ||q||² + ||x||² - 2 q·x loses digits to cancellation when the distance is
/// small next to the norms, and those are exactly the results a caller looks at.
template <class T>
void finish(TopK<T>* tops, std::size_t nq, Eigen::Index first, Hits<T>& hits,
            const T* queries = nullptr, std::size_t dim = 0) {
  for (std::size_t i = 0; i < nq; ++i) {
    if (queries != nullptr)
      for (auto& c : tops[i].items())
        c.score = l2_squared_kernel<T>(queries + i * dim, c.vector, dim);
    const Eigen::Index r = first + static_cast<Eigen::Index>(i);
    tops[i].finish(hits.ids.row(r).data(), hits.scores.row(r).data());
  }
}

/// Storage for a compacted block (see `compact`), reused across calls.
template <class T>
struct Compacted {
  std::vector<T> vectors, sq_norms;
  std::vector<Index> ids;
  std::vector<Modality> modality;
  std::vector<const T*> source;
};

/// The rows of `b` that pass `f`, copied into `out` as a contiguous block. Scoring the compact
/// block does only the allowed rows' arithmetic, so a filtered batch search costs less than an
/// unfiltered one instead of scoring everything and discarding most of it.
template <class T>
Block<T> compact(const Block<T>& b, const Filter& f, Compacted<T>& out) {
  out.vectors.clear(), out.sq_norms.clear(), out.ids.clear(), out.modality.clear(),
      out.source.clear();
  for (std::size_t j = 0; j < b.rows; ++j) {
    if (!allowed(b, j, f)) continue;
    out.vectors.insert(out.vectors.end(), b.vectors + j * b.dim, b.vectors + (j + 1) * b.dim);
    out.sq_norms.push_back(b.sq_norms[j]);
    out.ids.push_back(b.ids[j]);
    out.modality.push_back(b.modality[j]);
    out.source.push_back(b.source ? b.source[j] : b.vectors + j * b.dim);
  }
  return {out.vectors.data(), out.ids.data(), out.sq_norms.data(), out.modality.data(),
          out.ids.size(),     b.dim,          out.source.data()};
}

}  // namespace mmrag::detail
