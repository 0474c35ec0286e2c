#pragma once
/// @file loss/nce.hpp
/// Noise-contrastive estimation (Gutmann & Hyvärinen, 2010): tell data from noise samples.

#include "mmrag/loss/common.hpp"

namespace mmrag::loss {

/// NCE logits l(u) = log p_model(u) - log(k q(u)) for samples u, where q is the noise
/// density and k the number of noise samples per data sample. Inputs: n values each.
/// Throws std::invalid_argument when the sizes differ or k is not finite and > 0.
template <class T>
[[nodiscard]] Vector<T> nce_logits(const Vector<T>& log_p_model, const Vector<T>& log_q, double k) {
  if (log_p_model.size() != log_q.size())
    throw std::invalid_argument(
        "mmrag::loss::nce_logits: log_p_model and log_q must have the "
        "same size, got " +
        std::to_string(log_p_model.size()) + " and " + std::to_string(log_q.size()));
  if (!(k > 0) || !std::isfinite(k))
    throw std::invalid_argument("mmrag::loss::nce_logits: k must be finite and > 0, got " +
                                detail::num(k));
  return (log_p_model.array() - log_q.array() - static_cast<T>(std::log(k))).matrix();
}

/// NCE loss over N data logits x and M noise logits y (logits from `nce_logits`):
///   value = -(1/N) [ sum_i log s(x_i) + sum_j log(1 - s(y_j)) ],  s = sigmoid.
/// Gradients: d/dx_i = -(1/N) s(-x_i), d/dy_j = (1/N) s(y_j). Stable for any finite logit (softplus
/// form). M may be 0. Throws std::invalid_argument when N = 0. Reentrant.
template <class T>
[[nodiscard]] NceLoss<T> nce(const Vector<T>& data_logits, const Vector<T>& noise_logits) {
  if (data_logits.size() == 0)
    throw std::invalid_argument(
        "mmrag::loss::nce: data_logits must hold at least one logit, got 0");
  const T inv_n = T(1) / T(data_logits.size());
  NceLoss<T> out{T(0), Vector<T>(data_logits.size()), Vector<T>(noise_logits.size())};
  double total = 0;
  for (Eigen::Index i = 0; i < data_logits.size(); ++i) {
    const T x = data_logits[i];
    total += detail::softplus(-x);  // -log s(x)
    out.grad_data[i] = -inv_n * detail::sigmoid(-x);
  }
  for (Eigen::Index j = 0; j < noise_logits.size(); ++j) {
    const T y = noise_logits[j];
    total += detail::softplus(y);  // -log(1 - s(y))
    out.grad_noise[j] = inv_n * detail::sigmoid(y);
  }
  out.value = static_cast<T>(total) * inv_n;
  return out;
}

}  // namespace mmrag::loss
