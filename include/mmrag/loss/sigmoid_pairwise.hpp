#pragma once
/// @file loss/sigmoid_pairwise.hpp
/// The pairwise sigmoid loss of SigLIP (Zhai et al., 2023): every pair of the batch is an
/// independent binary classification, positive on the diagonal.

#include <algorithm>

#include "mmrag/loss/batch_softmax.hpp"  // detail::wide_sum
#include "mmrag/loss/common.hpp"
#include "mmrag/loss/in_batch_info_nce.hpp"  // detail::logits_panel

namespace mmrag::loss {

/// Options of `sigmoid_pairwise`.
struct SigmoidOptions {
  /// tau: logits are s / tau + bias. SigLIP initializes t' = log 10, i.e. tau = 0.1. > 0.
  double temperature = 0.1;
  /// Logit bias b; SigLIP initializes -10 so that the many negatives start near probability 0.
  double bias = -10.0;
  /// L2-normalize the rows of a and b first, as SigLIP does.
  bool normalize = true;
  /// Rows per tile: the loss never holds more than tile_rows × B logits per thread, whatever B.
  /// (Each logit's gradient depends on that logit alone, so one pass does forward + backward.)
  std::size_t tile_rows = 1024;
};

/// SigLIP loss over a (B × d) and b (B × d), row-major, rows i of a and b a positive pair:
///   z_ij = s_ij / tau + bias,  s = x_a x_bᵀ (rows normalized when `normalize`),
///   label_ij = +1 if i = j else -1,  value = -(1/B) sum_ij log sigmoid(label_ij z_ij).
/// Gradients w.r.t. the raw a and b, d value / d log tau and d value / d bias:
///   d value / d z_ij = (sigmoid(z_ij) - [i = j]) / B. See docs/losses.md.
/// Throws std::invalid_argument on a shape mismatch, an empty batch, tau <= 0 or a non-finite
/// bias. Reentrant; parallel over tiles with OpenMP when enabled.
template <class DA, class DB>
[[nodiscard]] PairLoss<typename DA::Scalar> sigmoid_pairwise(const Eigen::MatrixBase<DA>& a,
                                                             const Eigen::MatrixBase<DB>& b,
                                                             const SigmoidOptions& options = {}) {
  using T = typename DA::Scalar;
  constexpr const char* where = "mmrag::loss::sigmoid_pairwise";
  detail::check_pairs(where, a, b);
  detail::check_temperature(where, options.temperature);
  if (!std::isfinite(options.bias))
    throw std::invalid_argument(std::string(where) + ": bias must be finite, got " +
                                detail::num(options.bias));
  if (options.tile_rows == 0)
    throw std::invalid_argument(std::string(where) + ": tile_rows must be > 0, got 0");

  const Eigen::Index n = a.rows();
  const detail::Embeddings<T> ea(a, options.normalize), eb(b, options.normalize);
  const T inv_tau = static_cast<T>(1.0 / options.temperature);
  const T bias = static_cast<T>(options.bias);
  const Matrix<T> a_scaled = ea.x * inv_tau;
  const T scale = T(1) / T(n);
  const Eigen::Index tile = std::min<Eigen::Index>(n, static_cast<Eigen::Index>(options.tile_rows));
  const Eigen::Index tiles = (n + tile - 1) / tile;

  Matrix<T> grad_xa(n, a.cols()), grad_xb = Matrix<T>::Zero(n, a.cols());
  double total = 0, g_sum = 0, g_dot_s = 0;  // value, sum G, sum G ∘ (s / tau)
  MMRAG_OMP(parallel if (tiles > 1 && n * n > mmrag::detail::kParallelWork) reduction(+ : total, g_sum, g_dot_s))
  {
    Matrix<T> g, grad_xb_local = Matrix<T>::Zero(tiles > 1 ? n : 0, a.cols());
    MMRAG_OMP(for schedule(dynamic))
    for (Eigen::Index t = 0; t < tiles; ++t) {
      const Eigen::Index first = t * tile, rows = std::min(tile, n - first);
      detail::logits_panel(a_scaled, eb.x, first, rows, g);  // g holds s / tau
      MMRAG_OMP(parallel for schedule(static) reduction(+ : total, g_sum, g_dot_s) if (rows * n > mmrag::detail::kParallelWork))
      for (Eigen::Index r = 0; r < rows; ++r) {
        auto row = g.row(r).array();
        const Eigen::Index diag = first + r;
        // Off-diagonal (label -1): loss softplus(z), gradient sigmoid(z).
        // Diagonal (label +1): loss softplus(-z), gradient sigmoid(z) - 1.
        const auto s_tau = row.eval();
        const auto zv = (s_tau + bias).eval();
        const auto e = (-zv.abs()).exp().eval();  // e^-|z| in (0, 1]: never overflows
        const auto sp = (zv.max(T(0)) + e.log1p()).eval();
        const T z_diag = zv(diag), e_diag = e(diag);
        // Sum in double, and the diagonal's softplus(-z) formed directly: as softplus(z) - z
        // after a float row sum it cancels to 0 and takes the small terms with it.
        total +=
            detail::wide_sum(sp.data(), n) - double(sp(diag)) + double(detail::softplus(-z_diag));
        row = (zv >= T(0)).select(T(1) / (T(1) + e), e / (T(1) + e));
        // Diagonal: sigmoid(z) - 1 = -sigmoid(-z), without the cancellation.
        row(diag) = z_diag >= T(0) ? -e_diag / (T(1) + e_diag) : -T(1) / (T(1) + e_diag);
        row *= scale;
        g_sum += detail::wide_sum(row.data(), n);
        const auto gs = (row * s_tau).eval();
        g_dot_s += detail::wide_sum(gs.data(), n);
      }
      grad_xa.middleRows(first, rows).noalias() = g * eb.x;
      if (tiles > 1)
        grad_xb_local.noalias() += g.transpose() * ea.x.middleRows(first, rows);
      else
        grad_xb.noalias() = g.transpose() * ea.x;
    }
    if (tiles > 1) {
      MMRAG_OMP(critical)
      grad_xb += grad_xb_local;
    }
  }
  PairLoss<T> out;
  out.value = static_cast<T>(total * double(scale));
  detail::finish_pair_gradients(grad_xa, grad_xb, inv_tau, ea, eb, out);
  out.grad_bias = static_cast<T>(g_sum);
  // z = s e^{-log tau} + bias: dz/d log tau = -s / tau.
  out.grad_log_temperature = static_cast<T>(-g_dot_s);
  return out;
}

}  // namespace mmrag::loss
