#pragma once
// Helpers shared by the benchmark programs: seeded data and the label naming the SIMD arch.

#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include <xsimd/xsimd.hpp>

#include "mmrag/config.hpp"

namespace mmrag::bench {

template <class T>
Matrix<T> random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Matrix<T> m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(u(rng));
  return m;
}

inline std::string arch_label() {
  return std::string("xsimd:") + xsimd::default_arch::name();
}

}  // namespace mmrag::bench
