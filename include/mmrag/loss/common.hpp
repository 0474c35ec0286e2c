#pragma once
/// @file loss/common.hpp
/// What every contrastive loss shares: result types, the Reduction enum, numerically stable
/// scalar functions (softplus, log-sigmoid, sigmoid) and backprop through row normalization.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

#include "mmrag/config.hpp"

namespace mmrag::loss {

/// How per-example losses combine: `mean` divides by the number of examples, `sum` does not.
enum class Reduction { mean, sum };

/// Value and gradients of a loss over paired embeddings a (B × d) and b (B × d).
/// grad_a, grad_b: B × d, with respect to the *raw* inputs (through any normalization).
/// grad_log_temperature: d value / d log(tau) (0 when the loss has no temperature).
/// grad_bias: d value / d bias (0 when the loss has no bias).
template <class T>
struct PairLoss {
  T value;
  Matrix<T> grad_a, grad_b;
  T grad_log_temperature = 0;
  T grad_bias = 0;
};

/// Value and gradients of NCE with respect to the data logits (N) and noise logits (M).
template <class T>
struct NceLoss {
  T value;
  Vector<T> grad_data, grad_noise;
};

/// Value and gradient of a loss over a score matrix S (n × m); grad_scores is n × m.
template <class T>
struct ScoreLoss {
  T value;
  Matrix<T> grad_scores;
};

namespace detail {

/// softplus(x) = log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|).
template <class T>
[[nodiscard]] inline T softplus(T x) noexcept {
  return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x)));
}

/// log sigmoid(x) = -softplus(-x).
template <class T>
[[nodiscard]] inline T log_sigmoid(T x) noexcept {
  return -softplus(-x);
}

/// sigmoid(x) = 1 / (1 + e^-x), evaluated so that e^(|x|) never overflows.
template <class T>
[[nodiscard]] inline T sigmoid(T x) noexcept {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

inline std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

/// Checks that a (B × d) and b (B × d) describe a non-empty batch of pairs.
template <class DA, class DB>
void check_pairs(const char* where, const Eigen::MatrixBase<DA>& a,
                 const Eigen::MatrixBase<DB>& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols())
    throw std::invalid_argument(std::string(where) + ": a and b must have the same shape, got " +
                                std::to_string(a.rows()) + "x" + std::to_string(a.cols()) +
                                " and " + std::to_string(b.rows()) + "x" +
                                std::to_string(b.cols()));
  if (a.rows() == 0 || a.cols() == 0)
    throw std::invalid_argument(std::string(where) +
                                ": a and b must have at least one row and one column, got " +
                                std::to_string(a.rows()) + "x" + std::to_string(a.cols()));
}

inline void check_temperature(const char* where, double tau) {
  if (!(tau > 0) || !std::isfinite(tau))
    throw std::invalid_argument(std::string(where) + ": temperature must be finite and > 0, got " +
                                num(tau));
}

/// Embeddings as the loss sees them: `x` is the (optionally) row-normalized copy of the input
/// and `norm` the input's row norms, kept for the backward pass.
template <class T>
struct Embeddings {
  Matrix<T> x;
  Vector<T> norm;
  bool normalized = false;

  template <class D>
  Embeddings(const Eigen::MatrixBase<D>& in, bool normalize) : x(in), normalized(normalize) {
    if (!normalize) return;
    norm = x.rowwise().norm();
    for (Eigen::Index i = 0; i < x.rows(); ++i)
      if (norm[i] > T(0)) x.row(i) /= norm[i];
  }

  /// Turns g = d value / d x into d value / d input. Through x = in / ||in||:
  /// d value / d in = (g - x (x · g)) / ||in||. A zero row has no direction; its gradient is 0.
  void backward(Matrix<T>& g) const {
    if (!normalized) return;
    for (Eigen::Index i = 0; i < g.rows(); ++i) {
      if (norm[i] > T(0)) {
        const T proj = x.row(i).dot(g.row(i));
        g.row(i) = (g.row(i) - proj * x.row(i)) / norm[i];
      } else {
        g.row(i).setZero();
      }
    }
  }
};

/// The last step every pair loss shares: g_x = d value / d x (x = a or b after normalization)
/// still lacks the 1/tau of z = x_a x_bᵀ / tau; scale, backprop through the normalization, and
/// move into `out`.
template <class T>
void finish_pair_gradients(Matrix<T>& grad_xa, Matrix<T>& grad_xb, T inv_tau,
                           const Embeddings<T>& ea, const Embeddings<T>& eb, PairLoss<T>& out) {
  grad_xa *= inv_tau;
  grad_xb *= inv_tau;
  ea.backward(grad_xa);
  eb.backward(grad_xb);
  out.grad_a = std::move(grad_xa);
  out.grad_b = std::move(grad_xb);
}

}  // namespace detail
}  // namespace mmrag::loss
