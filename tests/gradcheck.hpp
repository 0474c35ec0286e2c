#pragma once
// Finite-difference helpers for the gradient tests.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "mmrag/config.hpp"

namespace mmrag::test {

/// Central differences of f at x, entry by entry: (f(x + h e) - f(x - h e)) / 2h, with h
/// scaled to the entry's magnitude. R is the scalar f returns (double or long double).
template <class R, class M>
M numeric_gradient(const std::function<R(const M&)>& f, const M& x, double h = 1e-5) {
  M g(x.rows(), x.cols());
  M xp = x;
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    const auto orig = xp.data()[i];
    const double step = h * std::max(1.0, std::abs(double(orig)));
    xp.data()[i] = orig + step;
    const R up = f(xp);
    xp.data()[i] = orig - step;
    const R down = f(xp);
    xp.data()[i] = orig;
    g.data()[i] = static_cast<typename M::Scalar>((up - down) / R(2 * step));
  }
  return g;
}

/// max |a - b| / max(1, max |b|): the relative error the tolerances in the tests refer to.
template <class A, class B>
double relative_error(const A& a, const B& b) {
  const double scale = std::max(1.0, double(b.cwiseAbs().maxCoeff()));
  return double((a - b).cwiseAbs().maxCoeff()) / scale;
}

}  // namespace mmrag::test

namespace mmrag::test {

/// Rows divided by their L2 norm (zero rows stay zero), in the matrix's own precision.
template <class R>
Matrix<R> normalized_rows(const Matrix<R>& x) {
  Matrix<R> y = x;
  for (Eigen::Index i = 0; i < y.rows(); ++i) {
    R n = 0;
    for (Eigen::Index c = 0; c < y.cols(); ++c) n += y(i, c) * y(i, c);
    n = std::sqrt(n);
    if (n > 0) y.row(i) /= n;
  }
  return y;
}

/// a bᵀ by plain loops (no Eigen GEMM): the naive references' similarity matrix.
template <class R>
Matrix<R> gram(const Matrix<R>& a, const Matrix<R>& b) {
  Matrix<R> s(a.rows(), b.rows());
  for (Eigen::Index i = 0; i < a.rows(); ++i)
    for (Eigen::Index j = 0; j < b.rows(); ++j) {
      R acc = 0;
      for (Eigen::Index c = 0; c < a.cols(); ++c) acc += a(i, c) * b(j, c);
      s(i, j) = acc;
    }
  return s;
}

/// Checks an analytic gradient `got` of a function of x against central finite differences of
/// (1) the library's own double value (tolerance tol_self) and (2) an independent long-double
/// formulation (tolerance tol_naive, h = 1e-6). Both relative to max(1, max |FD|).
template <class FD, class FL>
void check_gradient(const Matrix<double>& got, const Matrix<double>& x, FD&& value, FL&& naive,
                    double tol_self = 1e-8, double tol_naive = 1e-9) {
  using LDM = Matrix<long double>;
  const std::function<double(const Matrix<double>&)> f = value;
  const std::function<long double(const LDM&)> g = naive;
  CHECK(relative_error(got, numeric_gradient(f, x)) < tol_self);
  CHECK(relative_error(got.cast<long double>(),
                       numeric_gradient(g, LDM(x.cast<long double>()), 1e-6)) < tol_naive);
}

}  // namespace mmrag::test
