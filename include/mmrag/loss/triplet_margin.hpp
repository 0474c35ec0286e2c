#pragma once
/// @file loss/triplet_margin.hpp
/// The triplet margin loss (Weinberger & Saul 2009; Schroff et al. 2015, FaceNet) with
/// Euclidean distances: the positive must be closer to the anchor than the negative by a margin.

#include <cmath>
#include <string>

#include "mmrag/loss/common.hpp"

namespace mmrag::loss {

/// Options of `triplet_margin`.
struct TripletOptions {
  /// Required gap between the anchor–negative and anchor–positive distances (FaceNet uses
  /// 0.2 on unit vectors; torch's TripletMarginLoss defaults to 1). Finite and >= 0.
  double margin = 0.2;
  /// mean divides by the number of triplets.
  Reduction reduction = Reduction::mean;
};

/// Value and gradients of a loss over triplets: each gradient has the shape of its input.
template <class T>
struct TripletLoss {
  T value;
  Matrix<T> grad_anchor, grad_positive, grad_negative;
};

/// Triplet margin loss over anchor, positive, negative (each B × d, row-major, row i one
/// triplet), Euclidean distances (not squared) d(x, y) = ||x − y||_2:
///   l_i = max(0, d(a_i, p_i) − d(a_i, n_i) + margin),  value = mean (or sum) of l_i.
/// Gradients where l_i > 0: ∂/∂p_i = −(a_i − p_i)/d_ap, ∂/∂n_i = (a_i − n_i)/d_an,
/// ∂/∂a_i = −∂/∂p_i − ∂/∂n_i; the gradient of ||v|| at v = 0 is taken as 0, and l_i = 0
/// (the hinge's kink included) gives 0. Unlike torch.nn.TripletMarginLoss no eps is added to
/// the difference. See docs/losses.md.
/// Throws std::invalid_argument when the three shapes differ, the batch is empty, or the
/// margin is negative or not finite. Reentrant.
template <class DA, class DP, class DN>
[[nodiscard]] TripletLoss<typename DA::Scalar> triplet_margin(const Eigen::MatrixBase<DA>& anchor,
                                                              const Eigen::MatrixBase<DP>& positive,
                                                              const Eigen::MatrixBase<DN>& negative,
                                                              const TripletOptions& options = {}) {
  using T = typename DA::Scalar;
  constexpr const char* where = "mmrag::loss::triplet_margin";
  auto shape = [](const auto& m) {
    return std::to_string(m.rows()) + "x" + std::to_string(m.cols());
  };
  if (anchor.rows() != positive.rows() || anchor.cols() != positive.cols() ||
      anchor.rows() != negative.rows() || anchor.cols() != negative.cols())
    throw std::invalid_argument(std::string(where) +
                                ": anchor, positive and negative must have the same shape, got " +
                                shape(anchor) + ", " + shape(positive) + " and " + shape(negative));
  if (anchor.rows() == 0 || anchor.cols() == 0)
    throw std::invalid_argument(std::string(where) +
                                ": anchor must have at least one row and one column, got " +
                                shape(anchor));
  if (!(options.margin >= 0) || !std::isfinite(options.margin))
    throw std::invalid_argument(std::string(where) + ": margin must be finite and >= 0, got " +
                                detail::num(options.margin));

  const Eigen::Index n = anchor.rows(), dim = anchor.cols();
  const double scale = options.reduction == Reduction::mean ? 1.0 / double(n) : 1.0;
  TripletLoss<T> out{T(0), Matrix<T>(n, dim), Matrix<T>(n, dim), Matrix<T>(n, dim)};
  double total = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const auto dp = (anchor.row(i) - positive.row(i)).eval();
    const auto dn = (anchor.row(i) - negative.row(i)).eval();
    const double d_ap = std::sqrt(double(dp.squaredNorm()));
    const double d_an = std::sqrt(double(dn.squaredNorm()));
    const double l = d_ap - d_an + options.margin;
    if (l > 0) {
      total += l;
      // d ||v|| / dv = v / ||v||, and 0 at v = 0.
      out.grad_positive.row(i) = d_ap > 0 ? (dp * T(-scale / d_ap)).eval() : (dp * T(0)).eval();
      out.grad_negative.row(i) = d_an > 0 ? (dn * T(scale / d_an)).eval() : (dn * T(0)).eval();
      out.grad_anchor.row(i) = -(out.grad_positive.row(i) + out.grad_negative.row(i));
    } else {
      out.grad_anchor.row(i).setZero();
      out.grad_positive.row(i).setZero();
      out.grad_negative.row(i).setZero();
    }
  }
  out.value = static_cast<T>(total * scale);
  return out;
}

}  // namespace mmrag::loss
