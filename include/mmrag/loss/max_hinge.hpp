#pragma once
/// @file loss/max_hinge.hpp
/// The max-of-hinges loss of VSE++ (Faghri et al. 2018): for each positive pair, only the
/// hardest in-batch negative in each direction (image → caption and caption → image) counts.

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "mmrag/loss/common.hpp"
#include "mmrag/loss/in_batch_info_nce.hpp"  // detail::logits_panel

namespace mmrag::loss {

/// Options of `max_hinge`.
struct MaxHingeOptions {
  /// Hinge margin alpha (VSE++ uses 0.2 on cosine similarities). Finite and >= 0.
  double margin = 0.2;
  /// L2-normalize the rows of a and b first (cosine similarities), as VSE++ does.
  bool normalize = true;
  /// mean divides by the batch size B.
  Reduction reduction = Reduction::mean;
  /// Rows per tile: the loss never holds more than tile_rows × B similarities.
  std::size_t tile_rows = 1024;
};

/// VSE++ max-hinge loss over a (B × d) and b (B × d), row-major, rows i a positive pair:
///   s = x_a x_bᵀ (rows L2-normalized when `normalize`: cosine similarities),
///   l_i = max_{j != i} [margin + s_ij − s_ii]_+ + max_{j != i} [margin + s_ji − s_ii]_+,
///   value = mean (or sum) of l_i. Ties in a max go to the smaller j; B = 1 has no negative
///   and costs 0. The gradient is that of the two chosen hinges (0 where a hinge is 0):
///   ∂l_i/∂s_ij* = 1, ∂l_i/∂s_ii = −1 per active hinge, pushed to the raw a and b through the
///   normalization (a zero row gets 0). grad_log_temperature and grad_bias are 0.
///   See docs/losses.md.
/// Cost: one B × B × d GEMM in row tiles plus O(B d); memory O(tile_rows × B).
/// Throws std::invalid_argument on a shape mismatch, an empty batch, a negative or
/// non-finite margin, or tile_rows == 0. Reentrant; parallel over a tile's rows with OpenMP.
template <class DA, class DB>
[[nodiscard]] PairLoss<typename DA::Scalar> max_hinge(const Eigen::MatrixBase<DA>& a,
                                                      const Eigen::MatrixBase<DB>& b,
                                                      const MaxHingeOptions& options = {}) {
  using T = typename DA::Scalar;
  constexpr const char* where = "mmrag::loss::max_hinge";
  detail::check_pairs(where, a, b);
  if (!(options.margin >= 0) || !std::isfinite(options.margin))
    throw std::invalid_argument(std::string(where) + ": margin must be finite and >= 0, got " +
                                detail::num(options.margin));
  if (options.tile_rows == 0)
    throw std::invalid_argument(std::string(where) + ": tile_rows must be > 0, got 0");

  const Eigen::Index n = a.rows(), dim = a.cols();
  const detail::Embeddings<T> ea(a, options.normalize), eb(b, options.normalize);
  const Eigen::Index tile = std::min<Eigen::Index>(n, static_cast<Eigen::Index>(options.tile_rows));
  const T lowest = -std::numeric_limits<T>::infinity();

  // Hardest negative of every row (over j != i) and of every column (over rows i != j);
  // scanning rows and columns in increasing order and replacing only on ">" keeps the smaller
  // index on ties. The diagonal s_ii is taken from the same GEMM as the negatives.
  Vector<T> diag(n), row_best(n), col_best = Vector<T>::Constant(n, lowest);
  std::vector<Eigen::Index> row_arg(std::size_t(n), -1);
  std::vector<int> col_arg(std::size_t(n), -1);
  Matrix<T> s;
  for (Eigen::Index first = 0; first < n; first += tile) {
    const Eigen::Index rows = std::min(tile, n - first);
    detail::logits_panel(ea.x, eb.x, first, rows, s);
    // Rows: take the diagonal out (-inf), a vectorized max, then the first column holding it.
    MMRAG_OMP(parallel for schedule(static) if (rows * n > mmrag::detail::kParallelWork))
    for (Eigen::Index r = 0; r < rows; ++r) {
      const Eigen::Index i = first + r;
      diag[i] = s(r, i);
      s(r, i) = lowest;
      const T best = s.row(r).maxCoeff();
      Eigen::Index arg = -1;
      if (best > lowest)
        for (Eigen::Index j = 0; j < n; ++j)
          if (s(r, j) == best) {
            arg = j;
            break;
          }
      row_best[i] = best;
      row_arg[std::size_t(i)] = arg;
    }
    // Columns: rows stream through a running max; ">" keeps the earlier (smaller) row on ties.
    // The diagonal is -inf by now, so it never wins.
    for (Eigen::Index r = 0; r < rows; ++r) {
      const T* sr = s.row(r).data();
      T* best = col_best.data();
      int* arg = col_arg.data();
      const int i = static_cast<int>(first + r);
      for (Eigen::Index j = 0; j < n; ++j) {
        const bool better = sr[j] > best[j];
        best[j] = better ? sr[j] : best[j];
        arg[j] = better ? i : arg[j];
      }
    }
  }

  // G = d value / d s: at most two +1 and one −2 per i. grad_xa = G x_b, grad_xb = Gᵀ x_a.
  const double scale = options.reduction == Reduction::mean ? 1.0 / double(n) : 1.0;
  const T w = static_cast<T>(scale);
  Matrix<T> grad_xa = Matrix<T>::Zero(n, dim), grad_xb = Matrix<T>::Zero(n, dim);
  double total = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    if (row_arg[std::size_t(i)] >= 0) {
      const double h = options.margin + double(row_best[i]) - double(diag[i]);
      if (h > 0) {  // hinge of anchor a_i against its hardest caption b_j
        const Eigen::Index j = row_arg[std::size_t(i)];
        total += h;
        grad_xa.row(i) += w * (eb.x.row(j) - eb.x.row(i));
        grad_xb.row(j) += w * ea.x.row(i);
        grad_xb.row(i) -= w * ea.x.row(i);
      }
    }
    if (col_arg[std::size_t(i)] >= 0) {
      const double h = options.margin + double(col_best[i]) - double(diag[i]);
      if (h > 0) {  // hinge of b_i against its hardest a_k: s_ki − s_ii
        const Eigen::Index k = col_arg[std::size_t(i)];
        total += h;
        grad_xa.row(k) += w * eb.x.row(i);
        grad_xa.row(i) -= w * eb.x.row(i);
        grad_xb.row(i) += w * (ea.x.row(k) - ea.x.row(i));
      }
    }
  }
  PairLoss<T> out;
  out.value = static_cast<T>(total * scale);
  detail::finish_pair_gradients(grad_xa, grad_xb, T(1), ea, eb, out);
  return out;
}

}  // namespace mmrag::loss
