#pragma once
/// @file detail/sq8_code.hpp
/// The int8 storage's code: SQ8 (detail/int8.hpp) with two refinements of transform coding,
/// chosen at training on the data. Not API: namespace mmrag::detail.
///
/// 1. Refinement bytes. A row's code is dim coarse bytes plus `fine` = dim / 8 bytes that
///    quantize, for the `fine` coordinates that contribute most to the score error (weight
///    vdiff_j² · mean(z_j²): step² times the typical query coordinate²), the coarse residual
///    z_j − D_j(c_j) ∈ [−h_j, h_j], h_j = vdiff_j / 510, on a symmetric grid of 255 steps (code
///    127 ↔ 0: values the coarse byte hits stay exact to float rounding). Those coordinates
///    then err by h_j / 254 instead of h_j. Written as SQ8 over an augmented vector of dim + fine
///    coordinates (the residual coordinates have range [−h_j, h_j·255/254]), so the kernels and
///    error bounds of detail/int8.hpp apply unchanged to the query (q, q_fine).
/// 2. A PCA rotation. z = R·x with R (dim × dim, orthogonal, rows = principal axes of the
///    training rows, largest variance first): learned embeddings put most of their variance in
///    a few tens of directions, which then receive the refinement bytes, while the many
///    low-variance axes get narrow ranges. q·x = (Rq)·(Rx) and ‖q − x‖ = ‖Rq − Rx‖, so an index
///    scores rotated queries against rows in the rotated space (the "code space").
///    Transform coding with bit allocation by variance (Goyal, "Theoretical foundations of
///    transform coding", IEEE SPM 2001; FAISS's PCAMatrix + ScalarQuantizer in IndexPreTransform).
///
/// Training fits both variants (plain: R = I; PCA: only for 8 ≤ dim ≤ 512 and n ≥ 4·dim, so
/// the principal axes are not fitted to noise) and keeps PCA when its mean squared
/// reconstruction error on the training rows is below half the plain one's: the rotation
/// costs a dim × dim product per query and per added row (reading dim² floats: 2.4 MB at
/// dim 784), worth it for embeddings (error ÷ 10 and more) but not for Fashion-MNIST's IVF
/// residuals (0.62: IVF recall@10 0.9955 rotated, 0.996 plain, at 0.6× the single-query QPS;
/// dim 784 is above the dim ≤ 512 that Jacobi's O(dim³) sweeps are offered for anyway).
/// Data the plain grid already hits (pixels 0..255) keeps the plain code.
///
/// Thread safety: Sq8Code is a plain value; every function is reentrant.

#include "mmrag/detail/int8.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

#include <Eigen/Core>

namespace mmrag::detail {

/// Refinement bytes per row for a dim-dimensional int8 code.
[[nodiscard]] constexpr std::size_t sq8_fine_count(std::size_t dim) noexcept {
  return dim / 8;
}

/// An int8 storage code's parameters.
struct Sq8Code {
  Sq8Params ranges;  ///< dim + fine augmented coordinates (coarse, then residuals)
  std::vector<std::uint32_t>
      fine;                     ///< the coarse coordinate each residual byte refines (ascending)
  std::vector<float> rotation;  ///< dim × dim row-major R (z = R·x), or empty: z = x
  [[nodiscard]] std::size_t dim() const noexcept { return ranges.dim() - fine.size(); }
  [[nodiscard]] std::size_t code_size() const noexcept { return ranges.dim(); }
  [[nodiscard]] bool rotated() const noexcept { return !rotation.empty(); }
};

/// out (n × dim) = rows of x (n × dim) times Rᵀ (z = R·x), or times R with `inverse` (x = Rᵀ·z).
/// Row by row in a fixed order (dot_kernel per output coordinate; the inverse as a sum of scaled
/// rows of R), so a row's image does not depend on how many rows are rotated with it or where
/// they sit in memory: a query alone and in a batch, a row added alone or in a block, rotate
/// to the same floats. x and out must not overlap.
inline void sq8_rotate(const std::vector<float>& rotation, const float* x, std::size_t n,
                       std::size_t dim, float* out, bool inverse = false) noexcept {
  const float* r = rotation.data();
  for (std::size_t i = 0; i < n; ++i) {
    const float* in = x + i * dim;
    float* o = out + i * dim;
    if (!inverse) {
      for (std::size_t a = 0; a < dim; ++a) o[a] = dot_kernel<float>(r + a * dim, in, dim);
    } else {
      std::fill(o, o + dim, 0.0f);
      for (std::size_t a = 0; a < dim; ++a) {
        const float w = in[a];
        const float* row = r + a * dim;
        for (std::size_t j = 0; j < dim; ++j) o[j] += w * row[j];
      }
    }
  }
}

/// The same for training statistics only, where the rounding of a row does not matter: one
/// GEMM (Eigen) for a block of rows.
inline void sq8_rotate_block(const std::vector<float>& rotation, const float* x, std::size_t n,
                             std::size_t dim, float* out) {
  using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const auto d = static_cast<Eigen::Index>(dim);
  const Eigen::Map<const M> r(rotation.data(), d, d), in(x, static_cast<Eigen::Index>(n), d);
  Eigen::Map<M> o(out, static_cast<Eigen::Index>(n), d);
  o.noalias() = in * r.transpose();
}

/// Coarse byte of every coordinate, then the residual bytes, for n rows z (code space).
inline void encode_sq8_code(const Sq8Code& p, const float* z, std::size_t n,
                            std::uint8_t* codes) noexcept {
  const std::size_t dim = p.dim(), cs = p.code_size();
  const auto& vmin = p.ranges.vmin;
  const auto& vdiff = p.ranges.vdiff;
  for (std::size_t r = 0; r < n; ++r) {
    const float* row = z + r * dim;
    std::uint8_t* c = codes + r * cs;
    for (std::size_t j = 0; j < dim; ++j) c[j] = sq8_code(row[j], vmin[j], vdiff[j]);
    for (std::size_t i = 0; i < p.fine.size(); ++i) {
      const std::size_t j = p.fine[i], a = dim + i;
      const double coarse = double(vmin[j]) + double(c[j]) * (double(vdiff[j]) / 255.0);
      const double t = (double(row[j]) - coarse - double(vmin[a])) / double(vdiff[a]) * 255.0;
      c[a] = !(t > 0) ? 0 : t >= 255 ? 255 : static_cast<std::uint8_t>(std::nearbyint(t));
    }
  }
}

/// out (n × dim floats, code space) = the decoded rows: per coordinate the coarse grid point
/// plus, for refined coordinates, the residual's grid point, summed in double and rounded once
/// (|out − D| ≤ 2^-24·|D| + 2^-50·Σ(|vmin| + vdiff) over the coordinate's augmented terms).
inline void decode_sq8_code(const Sq8Code& p, const std::uint8_t* codes, std::size_t n,
                            float* out) {
  const std::size_t dim = p.dim(), cs = p.code_size();
  const auto& vmin = p.ranges.vmin;
  const auto& vdiff = p.ranges.vdiff;
  thread_local std::vector<double> acc;
  acc.resize(dim);
  for (std::size_t r = 0; r < n; ++r) {
    const std::uint8_t* c = codes + r * cs;
    for (std::size_t j = 0; j < dim; ++j)
      acc[j] = double(vmin[j]) + double(c[j]) * (double(vdiff[j]) / 255.0);
    for (std::size_t i = 0; i < p.fine.size(); ++i) {
      const std::size_t a = dim + i;
      acc[p.fine[i]] += double(vmin[a]) + double(c[a]) * (double(vdiff[a]) / 255.0);
    }
    for (std::size_t j = 0; j < dim; ++j) out[r * dim + j] = static_cast<float>(acc[j]);
  }
}

/// The query of the augmented coordinates: (q, q_fine) — what prepare_sq8_query takes so that
/// bias + Σ s_a c_a = q·D(c) for the code's decoded row D(c).
inline void sq8_code_query(const Sq8Code& p, const float* q, std::vector<float>& out) {
  const std::size_t dim = p.dim();
  out.resize(p.code_size());
  std::copy(q, q + dim, out.begin());
  for (std::size_t i = 0; i < p.fine.size(); ++i) out[dim + i] = q[p.fine[i]];
}

namespace sq8_code_impl {

// Per-coordinate minimum, maximum and Σ z² of rows z, accumulated a block at a time.
struct Stats {
  std::vector<float> lo, hi;
  std::vector<double> sumsq;
  void add(const float* z, std::size_t n, std::size_t dim) {
    if (lo.empty()) lo.assign(z, z + dim), hi.assign(z, z + dim), sumsq.assign(dim, 0.0);
    for (std::size_t r = 0; r < n; ++r)
      for (std::size_t j = 0; j < dim; ++j) {
        const float v = z[r * dim + j];
        lo[j] = std::min(lo[j], v);
        hi[j] = std::max(hi[j], v);
        sumsq[j] += double(v) * double(v);
      }
  }
};

// Coarse ranges from the statistics (train_sq8 on the two rows min and max: the same ranges as
// on all rows), then residual bytes for the `fine` heaviest coordinates.
inline Sq8Code fit(const Stats& st, std::size_t dim, std::size_t fine,
                   std::vector<float> rotation) {
  Sq8Code p;
  p.rotation = std::move(rotation);
  std::vector<float> ends(st.lo);
  ends.insert(ends.end(), st.hi.begin(), st.hi.end());
  const Sq8Params coarse = train_sq8(ends.data(), 2, dim);
  std::vector<double> weight(dim);
  for (std::size_t j = 0; j < dim; ++j)
    weight[j] = st.sumsq[j] * double(coarse.vdiff[j]) * double(coarse.vdiff[j]);
  std::vector<std::uint32_t> order(dim);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return weight[a] > weight[b]; });
  p.fine.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(fine));
  std::sort(p.fine.begin(), p.fine.end());
  p.ranges = coarse;
  for (std::uint32_t j : p.fine) {
    // [−h, h·255/254]: 255 steps of 2h/254, code 127 ↔ 0. Rounded outward to floats.
    const double h = double(coarse.vdiff[j]) / 510.0, width = 2 * h * 255.0 / 254.0;
    float lo = static_cast<float>(-h);
    if (double(lo) > -h) lo = std::nextafter(lo, -std::numeric_limits<float>::infinity());
    float w = static_cast<float>(width);
    if (double(w) < width) w = std::nextafter(w, std::numeric_limits<float>::infinity());
    if (!(w > 0) || !std::isfinite(w)) lo = 0, w = sq8_empty_range_vdiff(0);
    p.ranges.vmin.push_back(lo);
    p.ranges.vdiff.push_back(w);
  }
  return p;
}

// Mean squared reconstruction error of p over rows z (code space; the rotation keeps norms).
inline double mse(const Sq8Code& p, const float* z, std::size_t n) {
  const std::size_t dim = p.dim();
  std::vector<std::uint8_t> code(p.code_size());
  std::vector<float> back(dim);
  double s = 0;
  for (std::size_t r = 0; r < n; ++r) {
    encode_sq8_code(p, z + r * dim, 1, code.data());
    decode_sq8_code(p, code.data(), 1, back.data());
    for (std::size_t j = 0; j < dim; ++j) {
      const double e = double(back[j]) - double(z[r * dim + j]);
      s += e * e;
    }
  }
  return s / double(std::max<std::size_t>(n, 1));
}

// Principal axes of x (n × dim) from at most 65 536 evenly spaced rows (covariance summed a
// block at a time), largest variance first, as the rows of a float dim × dim matrix; empty if
// the rotation is not finite.
inline std::vector<float> principal_axes(const float* x, std::size_t n, std::size_t dim) {
  const std::size_t take = std::min<std::size_t>(n, 65536), stride = n / take;
  const auto d = static_cast<Eigen::Index>(dim);
  Eigen::VectorXd mean = Eigen::VectorXd::Zero(d);
  for (std::size_t r = 0; r < take; ++r)
    for (std::size_t j = 0; j < dim; ++j)
      mean[static_cast<Eigen::Index>(j)] += x[r * stride * dim + j];
  mean /= double(take);
  Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(d, d);
  constexpr std::size_t kBlock = 1024;
  Eigen::MatrixXd b;
  for (std::size_t r0 = 0; r0 < take; r0 += kBlock) {
    const std::size_t nb = std::min(kBlock, take - r0);
    b.resize(static_cast<Eigen::Index>(nb), d);
    for (std::size_t r = 0; r < nb; ++r)
      for (std::size_t j = 0; j < dim; ++j)
        b(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(j)) =
            x[(r0 + r) * stride * dim + j] - mean[static_cast<Eigen::Index>(j)];
    cov.noalias() += b.transpose() * b;
  }
  cov /= double(take);
  // Eigen-decomposition by cyclic Jacobi rotations (Golub & Van Loan, Matrix Computations,
  // §8.5): a few dozen lines instead of Eigen's SelfAdjointEigenSolver, whose instantiation
  // doubled the compile time of every translation unit that includes an index.
  std::vector<double> a(dim * dim), v(dim * dim, 0.0);
  for (std::size_t i = 0; i < dim; ++i) {
    v[i * dim + i] = 1;
    for (std::size_t j = 0; j < dim; ++j)
      a[i * dim + j] = cov(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
  }
  for (int sweep = 0; sweep < 60; ++sweep) {
    double off = 0, diag = 0;
    for (std::size_t p = 0; p < dim; ++p) {
      diag += a[p * dim + p] * a[p * dim + p];
      for (std::size_t q = p + 1; q < dim; ++q) off += a[p * dim + q] * a[p * dim + q];
    }
    if (!(off > 1e-26 * diag)) break;  // off-diagonal mass negligible (or all zero)
    for (std::size_t p = 0; p + 1 < dim; ++p)
      for (std::size_t q = p + 1; q < dim; ++q) {
        const double apq = a[p * dim + q];
        if (apq == 0) continue;
        // t = tan of the angle that zeroes a_pq: the smaller root of t² + 2θt − 1 = 0
        const double theta = (a[q * dim + q] - a[p * dim + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (std::size_t k = 0; k < dim; ++k) {  // A ← A·J (columns p, q)
          const double x = a[k * dim + p], y = a[k * dim + q];
          a[k * dim + p] = c * x - s * y;
          a[k * dim + q] = s * x + c * y;
        }
        for (std::size_t k = 0; k < dim; ++k) {  // A ← Jᵀ·A (rows p, q)
          const double x = a[p * dim + k], y = a[q * dim + k];
          a[p * dim + k] = c * x - s * y;
          a[q * dim + k] = s * x + c * y;
        }
        for (std::size_t k = 0; k < dim; ++k) {  // V ← V·J: columns are the eigenvectors
          const double x = v[k * dim + p], y = v[k * dim + q];
          v[k * dim + p] = c * x - s * y;
          v[k * dim + q] = s * x + c * y;
        }
      }
  }
  std::vector<std::size_t> order(dim);
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    return a[x * dim + x] > a[y * dim + y];
  });
  std::vector<float> r(dim * dim);
  for (std::size_t i = 0; i < dim; ++i)  // row i of R: the i-th largest eigenvalue's vector
    for (std::size_t j = 0; j < dim; ++j) r[i * dim + j] = static_cast<float>(v[j * dim + order[i]]);
  for (float f : r)
    if (!std::isfinite(f)) return {};
  return r;
}

}  // namespace sq8_code_impl

/// Trains an int8 code on x (n × dim, row-major, finite): see the file comment. Throws
/// std::invalid_argument if n or dim is 0; std::bad_alloc on memory.
[[nodiscard]] inline Sq8Code train_sq8_code(const float* x, std::size_t n, std::size_t dim) {
  if (n == 0) throw std::invalid_argument("mmrag::detail::train_sq8_code: n must be > 0");
  if (dim == 0) throw std::invalid_argument("mmrag::detail::train_sq8_code: dim must be > 0");
  const std::size_t fine = sq8_fine_count(dim);
  sq8_code_impl::Stats plain_stats;
  plain_stats.add(x, n, dim);
  Sq8Code plain = sq8_code_impl::fit(plain_stats, dim, fine, {});
  if (dim < 8 || dim > 512 || n < 4 * dim) return plain;
  std::vector<float> rotation = sq8_code_impl::principal_axes(x, n, dim);
  if (rotation.empty()) return plain;
  // Statistics of the rotated rows, a block at a time (no n × dim copy).
  constexpr std::size_t kBlock = 4096;
  std::vector<float> z(std::min(n, kBlock) * dim);
  sq8_code_impl::Stats pca_stats;
  for (std::size_t r0 = 0; r0 < n; r0 += kBlock) {
    const std::size_t nb = std::min(kBlock, n - r0);
    sq8_rotate_block(rotation, x + r0 * dim, nb, dim, z.data());
    pca_stats.add(z.data(), nb, dim);
  }
  Sq8Code pca = sq8_code_impl::fit(pca_stats, dim, fine, std::move(rotation));
  // The comparison on at most 4096 evenly spaced rows (encode + decode: O(dim) each).
  const std::size_t m = std::min<std::size_t>(n, 4096), stride = n / m;
  std::vector<float> xs(m * dim), zs(m * dim);
  for (std::size_t r = 0; r < m; ++r)
    std::copy_n(x + r * stride * dim, dim, xs.begin() + static_cast<std::ptrdiff_t>(r * dim));
  sq8_rotate(pca.rotation, xs.data(), m, dim, zs.data());
  const double e_plain = sq8_code_impl::mse(plain, xs.data(), m);
  const double e_pca = sq8_code_impl::mse(pca, zs.data(), m);
  return e_pca < 0.5 * e_plain ? pca : plain;
}

}  // namespace mmrag::detail
