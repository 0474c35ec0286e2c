#pragma once
// Helpers of the MPI suites: the rank layout, uneven splits of one global data set, and
// comparisons against the single-process result.

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "helpers.hpp"
#include "mmrag/config.hpp"

namespace mmrag::test {

inline int mpi_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int mpi_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

/// Local row counts of rank q for layout `shift`: the sizes 37, 64, 5, 150, 0 taken cyclically,
/// so that every run has uneven ranks and (for shift >= 1 at np 4, any shift at np 3 but 0)
/// a rank with zero rows.
inline std::vector<Eigen::Index> split_sizes(int shift) {
  static constexpr Eigen::Index pattern[] = {37, 64, 5, 150, 0};
  std::vector<Eigen::Index> sizes(static_cast<std::size_t>(mpi_size()));
  for (std::size_t q = 0; q < sizes.size(); ++q) sizes[q] = pattern[(q + std::size_t(shift)) % 5];
  return sizes;
}

/// First global row of this rank.
inline Eigen::Index my_offset(const std::vector<Eigen::Index>& sizes) {
  Eigen::Index off = 0;
  for (int q = 0; q < mpi_rank(); ++q) off += sizes[static_cast<std::size_t>(q)];
  return off;
}

inline Eigen::Index total(const std::vector<Eigen::Index>& sizes) {
  Eigen::Index t = 0;
  for (auto s : sizes) t += s;
  return t;
}

/// This rank's rows of a global matrix.
template <class T>
Matrix<T> local_rows(const Matrix<T>& global, const std::vector<Eigen::Index>& sizes) {
  return global.middleRows(my_offset(sizes), sizes[static_cast<std::size_t>(mpi_rank())]);
}

/// max |a - b| / max(max |b|, tiny): a relative error over the whole array.
template <class DA, class DB>
double rel_error(const Eigen::MatrixBase<DA>& a, const Eigen::MatrixBase<DB>& b) {
  if (a.size() == 0 && b.size() == 0) return 0;
  const double scale = std::max(b.template cast<double>().cwiseAbs().maxCoeff(), 1e-300);
  return (a.template cast<double>() - b.template cast<double>()).cwiseAbs().maxCoeff() / scale;
}

inline double rel_error(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-300);
}

/// The tolerance the issue states: 1e-10 relative in double, 2e-4 in float.
template <class T>
constexpr double mpi_tolerance() {
  return sizeof(T) == 8 ? 1e-10 : 2e-4;
}

/// True on every rank when `v` (bytes of a trivially copyable value) is bitwise the same on
/// every rank.
inline bool same_on_every_rank(const void* data, std::size_t bytes) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  std::uint64_t lo = h, hi = h;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

}  // namespace mmrag::test
