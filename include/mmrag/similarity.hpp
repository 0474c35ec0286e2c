#pragma once
/// @file similarity.hpp
/// Similarity and distance between embeddings: one-to-one SIMD kernels (dot, l2_squared,
/// cosine), the one-to-many scan that search is built on, row normalization, and the
/// many-to-many `pairwise` through Eigen's GEMM.
///
/// Thread safety: every function here is reentrant; none keeps state.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include "mmrag/config.hpp"
#include "mmrag/detail/simd.hpp"

namespace mmrag {

// ---------------------------------------------------------------------------------------------
// One-to-one. Preconditions: `a` and `b` valid for `n` elements (not checked: noexcept).
// ---------------------------------------------------------------------------------------------

/// Inner product a · b (a similarity).
template <class T, class Arch = xsimd::default_arch>
[[nodiscard]] inline T dot(const T* a, const T* b, std::size_t n) noexcept {
  return detail::dot_kernel<T, Arch>(a, b, n);
}

/// Squared Euclidean distance ||a - b||² (a distance: lower is closer).
template <class T, class Arch = xsimd::default_arch>
[[nodiscard]] inline T l2_squared(const T* a, const T* b, std::size_t n) noexcept {
  return detail::l2_squared_kernel<T, Arch>(a, b, n);
}

/// Cosine similarity a·b / (||a|| ||b||) in [-1, 1]; 0 when either vector is zero (as usearch
/// does), so a zero embedding matches nothing instead of producing NaN.
template <class T, class Arch = xsimd::default_arch>
[[nodiscard]] inline T cosine(const T* a, const T* b, std::size_t n) noexcept {
  const auto r = detail::dot_norms_kernel<T, Arch>(a, b, n);
  if (r.aa == T(0) || r.bb == T(0)) return T(0);
  return r.ab / (std::sqrt(r.aa) * std::sqrt(r.bb));
}

namespace detail {
inline void check_same_size(const char* where, std::size_t a, std::size_t b) {
  if (a != b)
    throw std::invalid_argument(std::string(where) + ": a and b must have the same size, got " +
                                std::to_string(a) + " and " + std::to_string(b));
}
}  // namespace detail

/// Span overloads: throw std::invalid_argument when the sizes differ.
template <class T>
[[nodiscard]] inline T dot(std::span<const T> a, std::span<const T> b) {
  detail::check_same_size("mmrag::dot", a.size(), b.size());
  return dot(a.data(), b.data(), a.size());
}
template <class T>
[[nodiscard]] inline T l2_squared(std::span<const T> a, std::span<const T> b) {
  detail::check_same_size("mmrag::l2_squared", a.size(), b.size());
  return l2_squared(a.data(), b.data(), a.size());
}
template <class T>
[[nodiscard]] inline T cosine(std::span<const T> a, std::span<const T> b) {
  detail::check_same_size("mmrag::cosine", a.size(), b.size());
  return cosine(a.data(), b.data(), a.size());
}

/// Score of a pair under `metric` (similarity for inner_product / cosine, squared distance
/// for l2).
template <class T, class Arch = xsimd::default_arch>
[[nodiscard]] inline T score(const T* a, const T* b, std::size_t n, Metric metric) noexcept {
  switch (metric) {
    case Metric::inner_product:
      return dot<T, Arch>(a, b, n);
    case Metric::cosine:
      return cosine<T, Arch>(a, b, n);
    case Metric::l2:
      return l2_squared<T, Arch>(a, b, n);
  }
  return T(0);
}

// ---------------------------------------------------------------------------------------------
// One-to-many: one query against every row of a row-major block.
// ---------------------------------------------------------------------------------------------

/// out[r] = score(query, base row r) for r in [0, rows).
/// query: dim values; base: rows × dim, row r starting at base + r * stride; out: rows values.
/// Cosine normalizes on the fly (zero rows score 0); for stored, pre-normalized vectors use
/// inner_product instead, which is what the indexes do. Preconditions: stride >= dim, buffers
/// valid (not checked: noexcept).
template <class T, class Arch = xsimd::default_arch>
inline void one_to_many(const T* query, const T* base, std::size_t rows, std::size_t dim,
                        std::size_t stride, Metric metric, T* out) noexcept {
  switch (metric) {
    case Metric::inner_product:
      detail::dot_many_kernel<T, Arch>(query, base, rows, dim, stride, out);
      return;
    case Metric::l2:
      detail::l2_many_kernel<T, Arch>(query, base, rows, dim, stride, out);
      return;
    case Metric::cosine: {
      const T qn = std::sqrt(detail::dot_kernel<T, Arch>(query, query, dim));
      for (std::size_t r = 0; r < rows; ++r) {
        const auto s = detail::dot_norms_kernel<T, Arch>(query, base + r * stride, dim);
        out[r] = (qn == T(0) || s.bb == T(0)) ? T(0) : s.ab / (qn * std::sqrt(s.bb));
      }
      return;
    }
  }
}

/// Eigen-facing one-to-many: `query` (dim values) against every row of `base` (rows × dim,
/// row-major); returns rows scores. Throws std::invalid_argument when query.size() != base.cols().
template <class T>
[[nodiscard]] inline Vector<T> one_to_many(std::span<const T> query,
                                           const Eigen::Ref<const Matrix<T>>& base, Metric metric) {
  if (query.size() != static_cast<std::size_t>(base.cols()))
    throw std::invalid_argument("mmrag::one_to_many: query size must equal base.cols() (" +
                                std::to_string(base.cols()) + "), got " +
                                std::to_string(query.size()));
  Vector<T> out(base.rows());
  one_to_many<T>(query.data(), base.data(), static_cast<std::size_t>(base.rows()), query.size(),
                 static_cast<std::size_t>(base.outerStride()), metric, out.data());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Normalization and many-to-many.
// ---------------------------------------------------------------------------------------------

namespace detail {
/// Scales row (d values) to unit length; a zero row stays zero. Finite rows whose squared norm
/// would underflow or overflow T (|x| ~ 1e-20 or 1e20 in float) are first divided by their
/// largest magnitude, so every finite nonzero row comes out unit length.
template <class T>
inline void normalize_row(T* row, std::size_t d) noexcept {
  T n2 = dot_kernel<T>(row, row, d);
  // Below this the squares lose precision to underflow (and a zero n2 may hide a nonzero row).
  constexpr T safe_min = std::numeric_limits<T>::min() / std::numeric_limits<T>::epsilon();
  if (!(n2 > safe_min) || !std::isfinite(n2)) {
    T big = 0;
    for (std::size_t i = 0; i < d; ++i) big = std::max(big, std::abs(row[i]));
    if (big == T(0)) return;
    for (std::size_t i = 0; i < d; ++i) row[i] /= big;
    n2 = dot_kernel<T>(row, row, d);
  }
  const T inv = T(1) / std::sqrt(n2);
  for (std::size_t i = 0; i < d; ++i) row[i] *= inv;
}
}  // namespace detail

/// Scales every row of `m` to unit L2 norm in place; zero rows stay zero.
template <class T>
inline void normalize_rows(Matrix<T>& m) noexcept {
  const std::size_t d = static_cast<std::size_t>(m.cols());
  for (Eigen::Index r = 0; r < m.rows(); ++r) detail::normalize_row(m.row(r).data(), d);
}

/// A row-normalized copy of `m` (zero rows stay zero).
template <class D>
[[nodiscard]] inline Matrix<typename D::Scalar> normalized_rows(const Eigen::MatrixBase<D>& m) {
  Matrix<typename D::Scalar> out = m;
  normalize_rows(out);
  return out;
}

/// All-pairs scores: a (na × d) against b (nb × d) gives na × nb, entry (i, j) the score of
/// a_i and b_j. One GEMM: inner_product is a·bᵀ; cosine normalizes copies first (zero rows
/// score 0); l2 is ||a_i||² + ||b_j||² - 2 a_i·b_j clamped at 0 (cancellation can make it
/// slightly negative). Throws std::invalid_argument when a.cols() != b.cols().
template <class DA, class DB>
[[nodiscard]] Matrix<typename DA::Scalar> pairwise(const Eigen::MatrixBase<DA>& a,
                                                   const Eigen::MatrixBase<DB>& b, Metric metric) {
  using T = typename DA::Scalar;
  static_assert(std::is_same_v<T, typename DB::Scalar>, "a and b must share a scalar type");
  if (a.cols() != b.cols())
    throw std::invalid_argument("mmrag::pairwise: a.cols() and b.cols() must match, got " +
                                std::to_string(a.cols()) + " and " + std::to_string(b.cols()));
  Matrix<T> out(a.rows(), b.rows());
  switch (metric) {
    case Metric::inner_product:
      out.noalias() = a * b.transpose();
      break;
    case Metric::cosine: {
      const Matrix<T> an = normalized_rows(a), bn = normalized_rows(b);
      out.noalias() = an * bn.transpose();
      break;
    }
    case Metric::l2: {
      out.noalias() = a * b.transpose();
      const Vector<T> na = a.rowwise().squaredNorm();
      const Vector<T> nb = b.rowwise().squaredNorm();
      for (Eigen::Index i = 0; i < out.rows(); ++i) {
        T* row = out.row(i).data();
        const T ni = na[i];
        for (Eigen::Index j = 0; j < out.cols(); ++j)
          row[j] = std::max(T(0), ni + nb[j] - T(2) * row[j]);
      }
      break;
    }
  }
  return out;
}

}  // namespace mmrag
