#pragma once
/// @file loss/in_batch_info_nce.hpp
/// The symmetric in-batch InfoNCE of CLIP (Radford et al., 2021) and ImageBind (Girdhar et
/// al., 2023): row i of a and row i of b are a positive pair, every other row a negative.

#include <algorithm>
#include <limits>
#include <vector>

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
/// Gradients w.r.t. the raw a and b (through the normalization; a zero row gets 0) and
/// d value / d log tau. Derivation and the tiled algorithm: docs/losses.md.
/// Extra memory: B² logits, or O(B · tile_rows + B · d) past `max_logits_bytes`.
/// Throws std::invalid_argument on a shape mismatch, an empty batch or tau <= 0.
/// Reentrant; parallel with OpenMP when enabled.
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

  const Eigen::Index n = a.rows();
  const detail::Embeddings<T> ea(a, options.normalize), eb(b, options.normalize);
  const T inv_tau = static_cast<T>(1.0 / options.temperature);
  const Matrix<T> a_scaled = ea.x * inv_tau;  // scaling B × d once is cheaper than B × B
  const T scale = options.reduction == Reduction::mean ? T(1) / T(n) : T(1);
  const T col_weight = options.symmetric ? scale : T(0);

  const double logits_bytes = double(n) * double(n) * double(sizeof(T));
  const bool direct = logits_bytes <= double(options.max_logits_bytes);
  const Eigen::Index tile =
      direct ? n : std::min<Eigen::Index>(n, static_cast<Eigen::Index>(options.tile_rows));
  const Eigen::Index tiles = (n + tile - 1) / tile;

  // ---- forward: row log-sum-exp per tile, column log-sum-exp online across tiles ----------
  Vector<T> row_lse(n);
  detail::ColumnLse<T> columns(n);
  Matrix<T> z_direct;  // the whole logit matrix on the direct path, reused by the backward pass
  double diag_sum = 0;
  MMRAG_OMP(parallel if (!direct && n * n > mmrag::detail::kParallelWork) reduction(+ : diag_sum)) {
    detail::ColumnLse<T> local(n);
    Matrix<T> z_tile;
    MMRAG_OMP(for schedule(dynamic))
    for (Eigen::Index t = 0; t < tiles; ++t) {
      const Eigen::Index first = t * tile, rows = std::min(tile, n - first);
      Matrix<T>& z = direct ? z_direct : z_tile;
      detail::logits_panel(a_scaled, eb.x, first, rows, z);
      MMRAG_OMP(parallel for schedule(static) reduction(+ : diag_sum) if (rows * n > mmrag::detail::kParallelWork))
      for (Eigen::Index r = 0; r < rows; ++r) {
        const T mx = z.row(r).maxCoeff();
        row_lse[first + r] = mx + std::log((z.row(r).array() - mx).exp().sum());
        diag_sum += double(z(r, first + r));
      }
      local.add(z);
    }
    MMRAG_OMP(critical)
    columns.merge(local);
  }
  const Vector<T> col_lse = columns.lse();
  const double row_total = row_lse.template cast<double>().sum() - diag_sum;
  const double col_total = col_lse.template cast<double>().sum() - diag_sum;

  PairLoss<T> out;
  out.value = static_cast<T>(double(scale) * row_total +
                             (options.symmetric ? double(scale) * col_total : 0.0));

  // ---- backward: G = dvalue/dz = scale (softmax_row - I) + col_weight (softmax_col - I) ------
  Matrix<T> grad_xa(n, a.cols()), grad_xb = Matrix<T>::Zero(n, a.cols());
  double dz_dot_z = 0;  // sum_ij G_ij z_ij, for d value / d log tau = -sum G ∘ z
  const T diag_weight = scale + col_weight;
  MMRAG_OMP(parallel if (!direct && n * n > mmrag::detail::kParallelWork) reduction(+ : dz_dot_z)) {
    Matrix<T> z_tile, grad_xb_local = Matrix<T>::Zero(direct ? 0 : n, a.cols());
    MMRAG_OMP(for schedule(dynamic))
    for (Eigen::Index t = 0; t < tiles; ++t) {
      const Eigen::Index first = t * tile, rows = std::min(tile, n - first);
      Matrix<T>& g = direct ? z_direct : z_tile;
      if (!direct) detail::logits_panel(a_scaled, eb.x, first, rows, g);
      MMRAG_OMP(parallel for schedule(static) reduction(+ : dz_dot_z) if (rows * n > mmrag::detail::kParallelWork))
      for (Eigen::Index r = 0; r < rows; ++r) {
        auto row = g.row(r).array();
        const auto z_copy = row.eval();
        if (options.symmetric)
          row = scale * (z_copy - row_lse[first + r]).exp() +
                col_weight * (z_copy - col_lse.transpose().array()).exp();
        else
          row = scale * (z_copy - row_lse[first + r]).exp();
        row(first + r) -= diag_weight;
        dz_dot_z += double((row * z_copy).sum());
      }
      grad_xa.middleRows(first, rows).noalias() = g * eb.x;
      if (direct)
        grad_xb.noalias() = g.transpose() * ea.x;
      else
        grad_xb_local.noalias() += g.transpose() * ea.x.middleRows(first, rows);
    }
    if (!direct) {
      MMRAG_OMP(critical)
      grad_xb += grad_xb_local;
    }
  }
  // z = x_a x_bᵀ / tau, so dz/dx_a = x_b / tau and dz/dx_b = x_a / tau.
  detail::finish_pair_gradients(grad_xa, grad_xb, inv_tau, ea, eb, out);
  // z = s e^{-log tau}: dz/d log tau = -z.
  out.grad_log_temperature = static_cast<T>(-dz_dot_z);
  return out;
}

}  // namespace mmrag::loss
