#pragma once
// Shared test helpers: seeded random matrices and tolerance-aware comparisons.

#include <cstdint>
#include <random>

#include "mmrag/config.hpp"

namespace mmrag::test {

template <class T>
Matrix<T> random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed, T scale = 1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  Matrix<T> m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(scale * g(rng));
  return m;
}

template <class T>
Vector<T> random_vector(Eigen::Index n, std::uint64_t seed, T scale = 1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  Vector<T> v(n);
  for (Eigen::Index i = 0; i < n; ++i) v[i] = static_cast<T>(scale * g(rng));
  return v;
}

/// Machine epsilon of T as a double.
template <class T>
constexpr double eps() {
  return static_cast<double>(std::numeric_limits<T>::epsilon());
}

}  // namespace mmrag::test
