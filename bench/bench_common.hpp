#pragma once
// Helpers shared by the benchmark programs: seeded data and the label naming the SIMD arch.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include <xsimd/xsimd.hpp>

#include "mmrag/config.hpp"
#include "mmrag/detail/simd.hpp"

namespace mmrag::bench {

template <class T>
Matrix<T> random_matrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Matrix<T> m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<T>(u(rng));
  return m;
}

/// Sums every float of m with the SIMD width in four accumulators: the "plain streaming read"
/// baseline that a memory-bound scan is measured against (bytes/s of the same data).
inline float streaming_read(const Matrix<float>& m) {
  using B = xsimd::batch<float>;
  B a0(0.f), a1(0.f), a2(0.f), a3(0.f);
  const float* p = m.data();
  const auto n = static_cast<std::size_t>(m.size());
  for (std::size_t i = 0; i + 4 * B::size <= n; i += 4 * B::size) {
    a0 += B::load_unaligned(p + i);
    a1 += B::load_unaligned(p + i + B::size);
    a2 += B::load_unaligned(p + i + 2 * B::size);
    a3 += B::load_unaligned(p + i + 3 * B::size);
  }
  return detail::reduce_add((a0 + a1) + (a2 + a3));
}

inline std::string arch_label() {
  return std::string("xsimd:") + xsimd::default_arch::name();
}

}  // namespace mmrag::bench
