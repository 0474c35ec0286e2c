#pragma once
/// @file loss/info_nce.hpp
/// InfoNCE (van den Oord et al., 2018) on a score matrix: a softmax cross-entropy per row.

#include <span>

#include "mmrag/loss/common.hpp"

namespace mmrag::loss {

/// InfoNCE over scores S (n × m, row i the scores of anchor i against m candidates) and the
/// index p_i of each anchor's positive:
///   value = mean_i [ logsumexp_j S_ij - S_{i, p_i} ]   (sum with Reduction::sum),
///   d value / d S_ij = (softmax(S_i)_j - [j = p_i]) / n.
/// Max-subtracted log-sum-exp: finite for any finite scores. Throws std::invalid_argument on an
/// empty S, positive.size() != n, or a positive outside [0, m). Reentrant.
template <class D>
[[nodiscard]] ScoreLoss<typename D::Scalar> info_nce(const Eigen::MatrixBase<D>& scores,
                                                     std::span<const int> positive,
                                                     Reduction reduction = Reduction::mean) {
  using T = typename D::Scalar;
  constexpr const char* where = "mmrag::loss::info_nce";
  const Eigen::Index n = scores.rows(), m = scores.cols();
  if (n == 0 || m == 0)
    throw std::invalid_argument(std::string(where) + ": scores must be non-empty, got " +
                                std::to_string(n) + "x" + std::to_string(m));
  if (positive.size() != static_cast<std::size_t>(n))
    throw std::invalid_argument(std::string(where) + ": positive must have one index per row (" +
                                std::to_string(n) + "), got " + std::to_string(positive.size()));
  for (std::size_t i = 0; i < positive.size(); ++i)
    if (positive[i] < 0 || positive[i] >= m)
      throw std::invalid_argument(std::string(where) + ": positive[" + std::to_string(i) +
                                  "] must be in [0, " + std::to_string(m) + "), got " +
                                  std::to_string(positive[i]));

  const T scale = reduction == Reduction::mean ? T(1) / T(n) : T(1);
  ScoreLoss<T> out{T(0), Matrix<T>(scores)};
  double total = 0;
  MMRAG_OMP(parallel for reduction(+ : total) schedule(static) if (n * m > mmrag::detail::kParallelWork))
  for (Eigen::Index i = 0; i < n; ++i) {
    auto g = out.grad_scores.row(i);
    const T mx = g.maxCoeff();
    const T pos = g(positive[static_cast<std::size_t>(i)]);
    g.array() = (g.array() - mx).exp();
    const T sum = g.sum();
    total += double(mx + std::log(sum) - pos);
    g *= scale / sum;
    g(positive[static_cast<std::size_t>(i)]) -= scale;
  }
  out.value = static_cast<T>(total) * scale;
  return out;
}

}  // namespace mmrag::loss
