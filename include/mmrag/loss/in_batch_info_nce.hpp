#pragma once
/// @file loss/in_batch_info_nce.hpp
/// The symmetric in-batch InfoNCE of CLIP (Radford et al., 2021) and ImageBind (Girdhar et
/// al., 2023): row i of a and row i of b are a positive pair, every other row a negative.

#include <algorithm>
#include <limits>
#include <vector>

#include "mmrag/loss/batch_softmax.hpp"
#include "mmrag/loss/common.hpp"

namespace mmrag::loss {

/// Options of `in_batch_info_nce`.
struct InBatchOptions {
  /// Softmax temperature tau (CLIP initializes 0.07). Must be finite and > 0.
  double temperature = 0.07;
  /// L2-normalize the rows of a and b first (cosine similarities), as CLIP and ImageBind do.
  bool normalize = true;
  /// value = L_ab + L_ba (ImageBind's sum; CLIP reports half of it); false: L_ab alone.
  bool symmetric = true;
  /// mean divides each direction's sum by the batch size B.
  Reduction reduction = Reduction::mean;
  /// When B × B logits would take more bytes than this, the loss runs in row tiles with
  /// online column log-sum-exp and recomputes tiles in the backward pass (extra memory
  /// O(B · tile_rows + B · d) instead of O(B²)). 256 MiB holds B = 8192 floats directly.
  std::size_t max_logits_bytes = std::size_t(256) << 20;
  /// Rows per tile on the tiled path.
  std::size_t tile_rows = 256;
  /// Decoupled contrastive learning (Yeh et al. 2022): the positive leaves the denominator,
  /// L_ab = mean_i [ logsumexp_{j != i} z_ij - z_ii ] (and likewise L_ba). Helps small batches.
  bool decoupled = false;
};

namespace detail {

/// One row panel of the logits: Z = (x_a[rows] / tau) · x_bᵀ.
template <class T>
void logits_panel(const Matrix<T>& a_scaled, const Matrix<T>& b, Eigen::Index first,
                  Eigen::Index rows, Matrix<T>& z) {
  z.resize(rows, b.rows());
  z.noalias() = a_scaled.middleRows(first, rows) * b.transpose();
}

/// Online log-sum-exp state of every column: max and sum of exp(z - max).
template <class T>
struct ColumnLse {
  Vector<T> max, sum;
  explicit ColumnLse(Eigen::Index n)
      : max(Vector<T>::Constant(n, -std::numeric_limits<T>::infinity())), sum(Vector<T>::Zero(n)) {}

  /// Folds the rows of z (any row panel) into the state.
  void add(const Matrix<T>& z) {
    const Eigen::Index m = z.cols();
    // Columns are independent: split them across threads, rows stream through each range.
    constexpr Eigen::Index chunk = 512;
    MMRAG_OMP(parallel for schedule(static) if (z.size() > mmrag::detail::kParallelWork))
    for (Eigen::Index c0 = 0; c0 < m; c0 += chunk) {
      const Eigen::Index w = std::min(chunk, m - c0);
      auto mx = max.segment(c0, w).array();
      auto sm = sum.segment(c0, w).array();
      const auto new_max =
          mx.max(z.middleCols(c0, w).colwise().maxCoeff().transpose().array()).eval();
      sm *= (mx - new_max).exp();  // -inf - finite = -inf: an empty state contributes 0
      mx = new_max;
      for (Eigen::Index r = 0; r < z.rows(); ++r)
        sm += (z.row(r).segment(c0, w).transpose().array() - mx).exp();
    }
  }

  void merge(const ColumnLse& o) {
    for (Eigen::Index j = 0; j < max.size(); ++j) {
      const T m = std::max(max[j], o.max[j]);
      if (m == -std::numeric_limits<T>::infinity()) continue;
      sum[j] = sum[j] * std::exp(max[j] - m) + o.sum[j] * std::exp(o.max[j] - m);
      max[j] = m;
    }
  }

  [[nodiscard]] Vector<T> lse() const { return (max.array() + sum.array().log()).matrix(); }
};

}  // namespace detail

/// In-batch InfoNCE over a (B × d) and b (B × d), row-major, rows i of a and b a positive pair:
///   x_a, x_b = a, b with rows L2-normalized when `normalize`;  s = x_a x_bᵀ;  z = s / tau;
///   L_ab = (1/B) sum_i [ logsumexp_j z_ij - z_ii ],  L_ba = the same over columns;
///   value = L_ab + L_ba when `symmetric`, else L_ab (Reduction::sum drops the 1/B).
/// With `decoupled` (DCL, Yeh et al. 2022) the positive leaves the denominator:
///   L_ab = (1/B) sum_i [ logsumexp_{j != i} z_ij - z_ii ]  (B = 1: nothing to contrast, 0).
/// Gradients w.r.t. the raw a and b (through the normalization; a zero row gets 0) and
/// d value / d log tau. Derivation and the tiled algorithm: docs/losses.md.
/// Float inputs: sums of exponentials and per-row terms are accumulated in double, so the
/// float error stays at the level of the float logits themselves.
/// Extra memory: B² logits, or O(B · tile_rows + B · d) past `max_logits_bytes`.
/// Throws std::invalid_argument on a shape mismatch, an empty batch, tau <= 0 or
/// tile_rows == 0. Reentrant; parallel with OpenMP when enabled.
template <class DA, class DB>
[[nodiscard]] PairLoss<typename DA::Scalar> in_batch_info_nce(const Eigen::MatrixBase<DA>& a,
                                                              const Eigen::MatrixBase<DB>& b,
                                                              const InBatchOptions& options = {}) {
  using T = typename DA::Scalar;
  constexpr const char* where = "mmrag::loss::in_batch_info_nce";
  detail::check_pairs(where, a, b);
  detail::check_temperature(where, options.temperature);
  if (options.tile_rows == 0)
    throw std::invalid_argument(std::string(where) + ": tile_rows must be > 0, got 0");

  const detail::Embeddings<T> ea(a, options.normalize), eb(b, options.normalize);
  const T inv_tau = static_cast<T>(1.0 / options.temperature);
  const Matrix<T> a_scaled = ea.x * inv_tau;  // scaling B × d once is cheaper than B × B
  detail::BatchSoftmaxSpec spec;
  spec.decoupled = options.decoupled;
  spec.symmetric = options.symmetric;
  spec.reduction = options.reduction;
  spec.max_logits_bytes = options.max_logits_bytes;
  spec.tile_rows = options.tile_rows;
  auto r = detail::batch_softmax_xent(a_scaled, ea.x, eb.x, spec);

  PairLoss<T> out;
  out.value = static_cast<T>(r.value);
  // z = x_a x_bᵀ / tau, so dz/dx_a = x_b / tau and dz/dx_b = x_a / tau.
  detail::finish_pair_gradients(r.grad_xa, r.grad_xb, inv_tau, ea, eb, out);
  // z = s e^{-log tau}: dz/d log tau = -z.
  out.grad_log_temperature = static_cast<T>(-r.g_dot_z);
  return out;
}

}  // namespace mmrag::loss
