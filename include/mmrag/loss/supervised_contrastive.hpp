#pragma once
/// @file loss/supervised_contrastive.hpp
/// The supervised contrastive loss of Khosla et al. (2020), L_out (their eq. 2): every other
/// sample of the batch with the same label is a positive of the anchor.

#include <span>
#include <string>

#include "mmrag/loss/batch_softmax.hpp"
#include "mmrag/loss/common.hpp"

namespace mmrag::loss {

/// Value and gradients of a loss over one set of embeddings x (B × d).
/// grad: B × d, with respect to the *raw* x (through any normalization).
/// grad_log_temperature: d value / d log(tau).
template <class T>
struct EmbeddingLoss {
  T value;
  Matrix<T> grad;
  T grad_log_temperature = 0;
};

/// Options of `supervised_contrastive`.
struct SupConOptions {
  /// Softmax temperature tau (Khosla et al. use 0.1). Must be finite and > 0.
  double temperature = 0.1;
  /// L2-normalize the rows of x first, as Khosla et al. do (projection head output).
  bool normalize = true;
  /// mean averages over the anchors that have a positive; sum adds them.
  Reduction reduction = Reduction::mean;
  /// Past this many bytes of B × B logits the loss runs in row tiles (never forms B × B).
  std::size_t max_logits_bytes = std::size_t(256) << 20;
  /// Rows per tile on the tiled path.
  std::size_t tile_rows = 256;
};

/// Supervised contrastive loss (L_out) over x (B × d, row-major) and one label per row:
///   x_n = rows of x L2-normalized when `normalize`;  z = x_n x_nᵀ / tau;
///   A(i) = { j != i },  P(i) = { j != i : labels[j] == labels[i] },
///   l_i = -(1/|P(i)|) sum_{p in P(i)} [ z_ip - logsumexp_{a in A(i)} z_ia ];
///   value = mean of l_i over the anchors with P(i) nonempty (Reduction::sum: their sum).
/// Anchors without a positive contribute nothing and are not counted; when no anchor has a
/// positive (B = 1, all labels distinct) value and gradients are 0.
/// Gradient w.r.t. the raw x (through the normalization; a zero row gets 0) and
/// d value / d log tau. Sums of exponentials are kept in double. Large batches run in row
/// tiles past `max_logits_bytes` (B × B never formed). See docs/losses.md.
/// Throws std::invalid_argument on an empty x, labels.size() != B, tau <= 0 or
/// tile_rows == 0. Reentrant; parallel with OpenMP when enabled.
template <class D>
[[nodiscard]] EmbeddingLoss<typename D::Scalar> supervised_contrastive(
    const Eigen::MatrixBase<D>& x, std::span<const int> labels, const SupConOptions& options = {}) {
  using T = typename D::Scalar;
  constexpr const char* where = "mmrag::loss::supervised_contrastive";
  if (x.rows() == 0 || x.cols() == 0)
    throw std::invalid_argument(std::string(where) +
                                ": x must have at least one row and one column, got " +
                                std::to_string(x.rows()) + "x" + std::to_string(x.cols()));
  if (labels.size() != static_cast<std::size_t>(x.rows()))
    throw std::invalid_argument(std::string(where) + ": labels must have one label per row (" +
                                std::to_string(x.rows()) + "), got " +
                                std::to_string(labels.size()));
  detail::check_temperature(where, options.temperature);
  if (options.tile_rows == 0)
    throw std::invalid_argument(std::string(where) + ": tile_rows must be > 0, got 0");

  const detail::Embeddings<T> e(x, options.normalize);
  const T inv_tau = static_cast<T>(1.0 / options.temperature);
  const Matrix<T> x_scaled = e.x * inv_tau;
  detail::BatchSoftmaxSpec spec;
  spec.labels_a = labels;
  spec.labels_b = labels;
  spec.exclude_self = true;
  spec.symmetric = false;
  spec.reduction = options.reduction;
  spec.max_logits_bytes = options.max_logits_bytes;
  spec.tile_rows = options.tile_rows;
  auto r = detail::batch_softmax_xent(x_scaled, e.x, e.x, spec);

  EmbeddingLoss<T> out;
  out.value = static_cast<T>(r.value);
  // z = x_n x_nᵀ / tau: x_n enters both sides, d value / d x_n = (G + Gᵀ) x_n / tau.
  r.grad_xa += r.grad_xb;
  r.grad_xa *= inv_tau;
  e.backward(r.grad_xa);
  out.grad = std::move(r.grad_xa);
  out.grad_log_temperature = static_cast<T>(-r.g_dot_z);
  return out;
}

}  // namespace mmrag::loss
