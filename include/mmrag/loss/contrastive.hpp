#pragma once
/// @file loss/contrastive.hpp
/// The margin contrastive loss of Chopra, Hadsell and LeCun (2005, 2006) over paired rows.

#include <span>

#include "mmrag/loss/common.hpp"

namespace mmrag::loss {

/// Options of `contrastive`.
struct ContrastiveOptions {
  /// Dissimilar pairs closer than this are pushed apart (Hadsell et al. use 1). Must be >= 0.
  double margin = 1.0;
  /// mean divides by the number of pairs.
  Reduction reduction = Reduction::mean;
};

/// Margin contrastive loss over pairs (a_i, b_i), a and b: B × d row-major, same[i] ∈ {0, 1}:
///   d_i = ||a_i - b_i||,  l_i = same_i d_i² + (1 - same_i) max(0, margin - d_i)²,
/// value = mean (or sum) of l_i. Gradients w.r.t. a and b; at d_i = 0 for a dissimilar pair the
/// gradient is 0 (the direction is undefined). See docs/losses.md.
/// Throws std::invalid_argument on a shape mismatch, an empty batch, same.size() != B, a label
/// other than 0 or 1, or a negative or non-finite margin. Reentrant.
template <class DA, class DB>
[[nodiscard]] PairLoss<typename DA::Scalar> contrastive(const Eigen::MatrixBase<DA>& a,
                                                        const Eigen::MatrixBase<DB>& b,
                                                        std::span<const int> same,
                                                        const ContrastiveOptions& options = {}) {
  using T = typename DA::Scalar;
  constexpr const char* where = "mmrag::loss::contrastive";
  detail::check_pairs(where, a, b);
  if (same.size() != static_cast<std::size_t>(a.rows()))
    throw std::invalid_argument(std::string(where) + ": same must have one label per row (" +
                                std::to_string(a.rows()) + "), got " + std::to_string(same.size()));
  for (std::size_t i = 0; i < same.size(); ++i)
    if (same[i] != 0 && same[i] != 1)
      throw std::invalid_argument(std::string(where) + ": same[" + std::to_string(i) +
                                  "] must be 0 or 1, got " + std::to_string(same[i]));
  if (!(options.margin >= 0) || !std::isfinite(options.margin))
    throw std::invalid_argument(std::string(where) + ": margin must be finite and >= 0, got " +
                                detail::num(options.margin));

  const Eigen::Index n = a.rows();
  const T margin = static_cast<T>(options.margin);
  const T scale = options.reduction == Reduction::mean ? T(1) / T(n) : T(1);
  PairLoss<T> out{T(0), Matrix<T>(a.rows(), a.cols()), Matrix<T>(b.rows(), b.cols())};
  double total = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto diff = (a.row(i) - b.row(i)).eval();
    const T d2 = diff.squaredNorm();
    if (same[static_cast<std::size_t>(i)] == 1) {
      total += d2;
      out.grad_a.row(i) = (T(2) * scale) * diff;  // d(d²)/da = 2 (a - b)
    } else {
      const T d = std::sqrt(d2);
      const T gap = margin - d;
      if (gap > T(0) && d > T(0)) {
        total += gap * gap;
        // d/da (m - d)² = -2 (m - d) (a - b) / d
        out.grad_a.row(i) = (-T(2) * gap / d * scale) * diff;
      } else {
        if (gap > T(0)) total += gap * gap;  // d = 0: value margin², gradient 0 by convention
        out.grad_a.row(i).setZero();
      }
    }
  }
  out.grad_b = -out.grad_a;
  out.value = static_cast<T>(total) * scale;
  return out;
}

}  // namespace mmrag::loss
