#pragma once
// Finite-difference helpers for the gradient tests.

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
