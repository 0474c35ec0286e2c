#pragma once
/// @file loss/multi_positive_info_nce.hpp
/// In-batch InfoNCE with several positives per anchor: every cross pair with equal labels is a
/// positive (several captions per image, several views per object). The multi-positive form of
/// the SupCon L_out average (Khosla et al. 2020) applied across two modalities, as in CLIP
/// fine-tuning with duplicate captions; with labels 0..B−1 it is `in_batch_info_nce`.

#include <span>
#include <string>

#include "mmrag/loss/batch_softmax.hpp"
#include "mmrag/loss/common.hpp"
#include "mmrag/loss/in_batch_info_nce.hpp"

namespace mmrag::loss {

/// Multi-positive InfoNCE over a (B_a × d) and b (B_b × d), row-major, with one label per row:
///   x_a, x_b = rows L2-normalized when `normalize`;  z = x_a x_bᵀ / tau;
///   P(i) = { j : labels_b[j] == labels_a[i] },
///   L_ab = mean over the rows i with P(i) nonempty of
///          -(1/|P(i)|) sum_{p in P(i)} [ z_ip - logsumexp_j z_ij ],
///   L_ba = the same over the columns (anchors b_j, candidates a_i, positives of equal label);
///   value = L_ab + L_ba when `symmetric`, else L_ab. Reduction::sum sums over the counted
///   anchors instead of averaging. With labels 0..B−1 on both sides it equals
///   `in_batch_info_nce`. B_a and B_b may differ (e.g. 5 captions per image).
/// With `decoupled`, every positive of an anchor leaves its denominator:
///   logsumexp over j not in P(i); anchors left without any negative are skipped.
/// Anchors without a positive contribute nothing and are not counted; when no anchor counts,
/// value and gradients are 0.
/// Gradients w.r.t. the raw a and b (through the normalization; a zero row gets 0) and
/// d value / d log tau. Sums of exponentials are kept in double (float error at the level of
/// the float logits). Large batches run in row tiles past `max_logits_bytes`, as
/// `in_batch_info_nce`: the B_a × B_b logits are never formed. See docs/losses.md.
/// Throws std::invalid_argument when a and b differ in columns, either is empty,
/// labels_a.size() != B_a, labels_b.size() != B_b, tau <= 0 or tile_rows == 0.
/// Reentrant; parallel with OpenMP when enabled.
template <class DA, class DB>
[[nodiscard]] PairLoss<typename DA::Scalar> multi_positive_info_nce(
    const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b, std::span<const int> labels_a,
    std::span<const int> labels_b, const InBatchOptions& options = {}) {
  using T = typename DA::Scalar;
  constexpr const char* where = "mmrag::loss::multi_positive_info_nce";
  if (a.cols() != b.cols())
    throw std::invalid_argument(std::string(where) +
                                ": a and b must have the same number of columns, got " +
                                std::to_string(a.cols()) + " and " + std::to_string(b.cols()));
  if (a.rows() == 0 || b.rows() == 0 || a.cols() == 0)
    throw std::invalid_argument(
        std::string(where) + ": a and b must have at least one row and one column, got " +
        std::to_string(a.rows()) + "x" + std::to_string(a.cols()) + " and " +
        std::to_string(b.rows()) + "x" + std::to_string(b.cols()));
  if (labels_a.size() != static_cast<std::size_t>(a.rows()))
    throw std::invalid_argument(
        std::string(where) + ": labels_a must have one label per row of a (" +
        std::to_string(a.rows()) + "), got " + std::to_string(labels_a.size()));
  if (labels_b.size() != static_cast<std::size_t>(b.rows()))
    throw std::invalid_argument(
        std::string(where) + ": labels_b must have one label per row of b (" +
        std::to_string(b.rows()) + "), got " + std::to_string(labels_b.size()));
  detail::check_temperature(where, options.temperature);
  if (options.tile_rows == 0)
    throw std::invalid_argument(std::string(where) + ": tile_rows must be > 0, got 0");

  const detail::Embeddings<T> ea(a, options.normalize), eb(b, options.normalize);
  const T inv_tau = static_cast<T>(1.0 / options.temperature);
  const Matrix<T> a_scaled = ea.x * inv_tau;
  detail::BatchSoftmaxSpec spec;
  spec.labels_a = labels_a;
  spec.labels_b = labels_b;
  spec.decoupled = options.decoupled;
  spec.symmetric = options.symmetric;
  spec.reduction = options.reduction;
  spec.max_logits_bytes = options.max_logits_bytes;
  spec.tile_rows = options.tile_rows;
  auto r = detail::batch_softmax_xent(a_scaled, ea.x, eb.x, spec);

  PairLoss<T> out;
  out.value = static_cast<T>(r.value);
  detail::finish_pair_gradients(r.grad_xa, r.grad_xb, inv_tau, ea, eb, out);
  out.grad_log_temperature = static_cast<T>(-r.g_dot_z);  // dz/d log tau = -z
  return out;
}

}  // namespace mmrag::loss
