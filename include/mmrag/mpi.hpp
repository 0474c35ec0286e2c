#pragma once
/// @file mpi.hpp
/// mmrag across processes with MPI: the global-batch CLIP / ImageBind loss (open_clip's
/// gather-with-grad), the global-batch SigLIP loss by ring exchange, k-means over data split
/// across ranks, and sharded search with an exact merge. The only mmrag header that includes
/// <mpi.h>; include it only where MPI is available (link with `dependency('mpi', language :
/// 'cpp')` in Meson, or build with mpicxx).
///
/// Every function is collective over `comm`: every rank of `comm` must call it, in the same
/// order, with the same options; each rank passes only its local part. The results equal those
/// of one process holding the concatenation of the local parts in rank order, up to summation
/// order (see docs/distributed.md for the math and the tests that prove it).
///
/// Bad input: before the first collective of real work every function exchanges a small
/// "signature" (which function, scalar type, d, the options that must agree, the local row
/// count and whether the local arguments passed their checks) with one MPI_Allgather of
/// 16 doubles per rank. A rank whose arguments are wrong, options that differ between ranks,
/// a different scalar type or a different mmrag::mpi function on another rank make *every*
/// rank throw std::invalid_argument instead of hanging. (A rank that calls nothing at all
/// cannot be detected: MPI then waits, as it must.)
///
/// Thread safety: MPI collectives on one communicator must not run concurrently; call these
/// from one thread per rank (MPI_THREAD_SINGLE or FUNNELED suffices). OpenMP inside a rank is
/// used as by the single-process functions.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <mpi.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "mmrag/config.hpp"
#include "mmrag/kmeans.hpp"
#include "mmrag/loss/common.hpp"
#include "mmrag/loss/in_batch_info_nce.hpp"
#include "mmrag/loss/sigmoid_pairwise.hpp"
#include "mmrag/search/types.hpp"

namespace mmrag::mpi {

namespace detail {

template <class T>
inline constexpr bool dependent_false = false;

/// The MPI datatype of a C++ scalar.
template <class T>
[[nodiscard]] MPI_Datatype datatype() noexcept {
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>)
    return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return MPI_INT64_T;
  else
    static_assert(dependent_false<T>, "mmrag::mpi: unsupported scalar type");
}

/// InBatchOptions::decoupled (DCL) when the loss has it, else false.
template <class O>
[[nodiscard]] bool decoupled_of(const O& options) noexcept {
  if constexpr (requires { options.decoupled; })
    return static_cast<bool>(options.decoupled);
  else
    return false;
}

/// Which collective a signature belongs to (ranks calling different functions are detected).
enum class Op : int { in_batch_info_nce = 1, sigmoid_pairwise = 2, kmeans = 3, search = 4 };

inline const char* op_name(double op) {
  switch (static_cast<int>(op)) {
    case 1:
      return "mmrag::mpi::in_batch_info_nce";
    case 2:
      return "mmrag::mpi::sigmoid_pairwise";
    case 3:
      return "mmrag::mpi::kmeans";
    case 4:
      return "mmrag::mpi::search";
  }
  return "an unknown collective";
}

/// A value every rank must pass identically, with its name for the error message.
struct Field {
  const char* name;
  double value;
};

/// How the global rows are split: rows[q] on rank q, starting at global row offsets[q].
struct Layout {
  int rank = 0, size = 1;
  std::vector<Eigen::Index> rows, offsets;
  Eigen::Index total = 0;
};

inline void require_comm(const char* where, MPI_Comm comm) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized)
    throw std::invalid_argument(std::string(where) +
                                ": MPI must be initialized (MPI_Init) and not yet finalized");
  if (comm == MPI_COMM_NULL)
    throw std::invalid_argument(std::string(where) + ": comm must not be MPI_COMM_NULL");
}

inline constexpr int kSignatureSlots = 16;
inline constexpr int kFieldSlots = kSignatureSlots - 3;  // after op, ok, local rows

/// The signature check every function runs before its first collective of real work: one
/// MPI_Allgather of kSignatureSlots doubles per rank. Throws std::invalid_argument on every
/// rank when a rank called another function, a rank's local checks failed (`local_error` not
/// empty; that rank rethrows its own message) or a field differs between ranks. Returns the
/// row layout.
inline Layout agree(MPI_Comm comm, const char* where, Op op, std::initializer_list<Field> fields,
                    Eigen::Index local_rows, const std::string& local_error) {
  MMRAG_ASSERT(static_cast<int>(fields.size()) <= kFieldSlots);
  Layout layout;
  MPI_Comm_rank(comm, &layout.rank);
  MPI_Comm_size(comm, &layout.size);
  std::array<double, kSignatureSlots> mine{};
  mine[0] = static_cast<double>(op);
  mine[1] = local_error.empty() ? 1.0 : 0.0;
  mine[2] = local_error.empty() ? static_cast<double>(local_rows) : 0.0;
  int slot = 3;
  for (const Field& f : fields) mine[static_cast<std::size_t>(slot++)] = f.value;
  const auto p = static_cast<std::size_t>(layout.size);
  std::vector<double> all(p * kSignatureSlots);
  MPI_Allgather(mine.data(), kSignatureSlots, MPI_DOUBLE, all.data(), kSignatureSlots, MPI_DOUBLE,
                comm);
  auto at = [&](std::size_t q, int s) {
    return all[q * kSignatureSlots + static_cast<std::size_t>(s)];
  };
  for (std::size_t q = 0; q < p; ++q)
    if (at(q, 0) != at(0, 0))
      throw std::invalid_argument(std::string(where) + ": rank " + std::to_string(q) + " called " +
                                  op_name(at(q, 0)) + " while rank 0 called " + op_name(at(0, 0)) +
                                  ": every rank must call the same collective");
  if (!local_error.empty()) throw std::invalid_argument(local_error);
  for (std::size_t q = 0; q < p; ++q)
    if (at(q, 1) == 0.0)
      throw std::invalid_argument(std::string(where) + ": rank " + std::to_string(q) +
                                  " rejected its arguments (its exception names them); every "
                                  "rank throws");
  slot = 3;
  for (const Field& f : fields) {
    for (std::size_t q = 1; q < p; ++q)
      if (at(q, slot) != at(0, slot))
        throw std::invalid_argument(
            std::string(where) + ": " + f.name + " must be the same on every rank, got " +
            loss::detail::num(at(0, slot)) + " on rank 0 and " + loss::detail::num(at(q, slot)) +
            " on rank " + std::to_string(q));
    ++slot;
  }
  layout.rows.resize(p);
  layout.offsets.resize(p);
  for (std::size_t q = 0; q < p; ++q) {
    layout.rows[q] = static_cast<Eigen::Index>(at(q, 2));
    layout.offsets[q] = layout.total;
    layout.total += layout.rows[q];
  }
  return layout;
}

/// Sums `count` values over the ranks and leaves the *bitwise identical* sum on every rank
/// (MPI_Reduce to rank 0, then MPI_Bcast: MPI_Allreduce does not promise identical results).
template <class T>
void sum_everywhere(MPI_Comm comm, T* data, int count) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::vector<T> in(data, data + count);
  MPI_Reduce(in.data(), data, count, datatype<T>(), MPI_SUM, 0, comm);
  MPI_Bcast(data, count, datatype<T>(), 0, comm);
}

/// Element counts of a row split with `cols` columns per row, as MPI's int counts and
/// displacements.
inline void counts_of(const Layout& layout, Eigen::Index cols, std::vector<int>& counts,
                      std::vector<int>& displs) {
  counts.resize(static_cast<std::size_t>(layout.size));
  displs.resize(static_cast<std::size_t>(layout.size));
  for (std::size_t q = 0; q < counts.size(); ++q) {
    counts[q] = static_cast<int>(layout.rows[q] * cols);
    displs[q] = static_cast<int>(layout.offsets[q] * cols);
  }
}

/// The local error message for an array MPI cannot address with int counts.
inline void check_int_count(const char* where, const char* what, Eigen::Index elements) {
  if (elements > static_cast<Eigen::Index>(INT_MAX))
    throw std::invalid_argument(std::string(where) + ": " + what + " has " +
                                std::to_string(elements) +
                                " elements, more than MPI's int counts address (2^31 - 1)");
}

/// Row log-sum-exp with the sum of exponentials in double (float keeps ~1e-7 of it).
template <class Row>
[[nodiscard]] auto row_lse(const Row& row) {
  using T = typename Row::Scalar;
  const T mx = row.maxCoeff();
  if (mx == -std::numeric_limits<T>::infinity()) return mx;
  const double s = (row.array() - mx).exp().template cast<double>().sum();
  return static_cast<T>(double(mx) + std::log(s));
}

/// Folds the rows of panel z (rows × m) into the column log-sum-exp state (max, sum in double).
template <class T>
void fold_columns(const Matrix<T>& z, Vector<T>& col_max, Eigen::VectorXd& col_sum) {
  if (z.rows() == 0) return;
  const Vector<T> new_max = col_max.cwiseMax(z.colwise().maxCoeff().transpose());
  for (Eigen::Index j = 0; j < z.cols(); ++j)
    if (col_max[j] != new_max[j])
      col_sum[j] = col_sum[j] == 0.0 ? 0.0 : col_sum[j] * std::exp(double(col_max[j] - new_max[j]));
  col_max = new_max;
  for (Eigen::Index r = 0; r < z.rows(); ++r)
    col_sum +=
        (z.row(r).transpose().array() - col_max.array()).exp().matrix().template cast<double>();
}

}  // namespace detail

// =============================================================================================
// Global-batch in-batch InfoNCE (CLIP / ImageBind), open_clip's gather-with-grad
// =============================================================================================

/// The in-batch InfoNCE of the *global* batch: rank q passes rows a_local (B_q × d) and b_local
/// (B_q × d), row-major; the global batch is their concatenation in rank order (B = sum B_q, a
/// rank may pass 0 rows). Returns, on every rank, `value` = loss::in_batch_info_nce of the
/// global batch (same definition and options: normalize, symmetric, reduction, temperature,
/// and `decoupled` when InBatchOptions has it), `grad_a` / `grad_b` (B_q × d) = the gradient
/// of that global value w.r.t. this rank's raw rows, and the global `grad_log_temperature`.
/// This is open_clip's `gather_with_grad=True, local_loss=True`; docs/distributed.md derives it.
///
/// Algorithm (rank r, s = sizeof(T)): normalize locally; MPI_Allgatherv the normalized b rows
/// (B × d); compute the logits panel Z_r = x_a[r] x_bᵀ / tau (B_r × B) in row tiles when
/// B_r × B × s exceeds `max_logits_bytes`; row log-sum-exp locally; column log-sum-exp (when
/// symmetric) by an MPI_Allreduce of the per-column max and of the rescaled sums (2 × B
/// values); gradient of this rank's a rows from its panel; gradient contributions to *every*
/// b row (B × d) reduced onto their owners by MPI_Reduce_scatter.
///
/// Bytes sent per call by rank r (P ranks, B = global batch, s = sizeof(T)), counting what the
/// rank hands to MPI for other ranks:
///   all-gather of x_b:         its B_r·d·s rows reach each of the P − 1 others: (P − 1)·B_r·d·s
///   reduce-scatter of grad x_b: its contributions to the other ranks' rows:     (B − B_r)·d·s
///   column LSE (symmetric):    B·s (max) + B·8 (sums, reduce + broadcast): O(B)
///   signature and scalars:     O(P)
/// Total 2·(P − 1)/P·B·d·s + O(B) for equal shares — independent of how many ranks share the
/// batch: 96 MiB per rank for B = 32768, d = 512, float, P = 4 (bench/bench_mpi.cpp measures
/// 96.9 MiB with PMPI counters). Wire bytes depend on OpenMPI's algorithms (a ring moves the
/// same (P − 1)/P·B·d·s per rank for each of the two large collectives).
///
/// Memory per rank: x_b gathered (B·d) + contributions (B·d) + the panel (B_r·B, or
/// tile_rows·B past `max_logits_bytes`) + the local copies (O(B_r·d)).
/// Throws std::invalid_argument (on every rank) on a local shape mismatch, d = 0, tau <= 0,
/// tile_rows = 0, options or d or scalar type differing between ranks, or an empty global
/// batch. Collective; see the file comment for thread safety.
template <class DA, class DB>
[[nodiscard]] loss::PairLoss<typename DA::Scalar> in_batch_info_nce(
    MPI_Comm comm, const Eigen::MatrixBase<DA>& a_local, const Eigen::MatrixBase<DB>& b_local,
    const loss::InBatchOptions& options = {}) {
  using T = typename DA::Scalar;
  static_assert(std::is_same_v<T, typename DB::Scalar>, "a and b must have the same scalar type");
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
  constexpr const char* where = "mmrag::mpi::in_batch_info_nce";
  detail::require_comm(where, comm);

  const bool decoupled = detail::decoupled_of(options);

  const Eigen::Index n = a_local.rows(), d = a_local.cols();
  std::string error;
  try {
    if (b_local.rows() != n || b_local.cols() != d)
      throw std::invalid_argument(
          std::string(where) + ": a_local and b_local must have the same shape, got " +
          std::to_string(n) + "x" + std::to_string(d) + " and " + std::to_string(b_local.rows()) +
          "x" + std::to_string(b_local.cols()));
    if (d == 0)
      throw std::invalid_argument(std::string(where) + ": a_local must have at least one column");
    loss::detail::check_temperature(where, options.temperature);
    if (options.tile_rows == 0)
      throw std::invalid_argument(std::string(where) + ": tile_rows must be > 0, got 0");
    detail::check_int_count(where, "a_local", n * d);
  } catch (const std::invalid_argument& e) {
    error = e.what();
  }
  const bool tau_ok = std::isfinite(options.temperature);
  const detail::Layout layout =
      detail::agree(comm, where, detail::Op::in_batch_info_nce,
                    {{"sizeof(scalar)", double(sizeof(T))},
                     {"d (columns)", double(d)},
                     {"temperature", tau_ok ? options.temperature : 0.0},
                     {"normalize", double(options.normalize)},
                     {"symmetric", double(options.symmetric)},
                     {"reduction", double(static_cast<int>(options.reduction))},
                     {"decoupled", double(decoupled)}},
                    n, error);
  const Eigen::Index B = layout.total;
  if (B == 0)
    throw std::invalid_argument(std::string(where) +
                                ": the global batch is empty (every rank passed 0 rows)");
  if (decoupled && B < 2)
    throw std::invalid_argument(std::string(where) +
                                ": decoupled needs a global batch of at least 2 rows");
  {
    std::string big;
    try {
      detail::check_int_count(where, "the gathered batch", B * d);
    } catch (const std::invalid_argument& e) {
      big = e.what();
    }
    if (!big.empty()) throw std::invalid_argument(big);  // the same on every rank
  }

  const Eigen::Index off = layout.offsets[static_cast<std::size_t>(layout.rank)];
  const loss::detail::Embeddings<T> ea(a_local, options.normalize), eb(b_local, options.normalize);
  const T inv_tau = static_cast<T>(1.0 / options.temperature);
  const Matrix<T> a_scaled = ea.x * inv_tau;

  // ---- all-gather the normalized b rows ----------------------------------------------------
  std::vector<int> counts, displs;
  detail::counts_of(layout, d, counts, displs);
  Matrix<T> xb_all(B, d);
  T send_dummy = 0;  // MPI may dislike a null buffer even with count 0
  MPI_Allgatherv(n > 0 ? eb.x.data() : &send_dummy, static_cast<int>(n * d), detail::datatype<T>(),
                 xb_all.data(), counts.data(), displs.data(), detail::datatype<T>(), comm);

  const T scale = options.reduction == loss::Reduction::mean ? T(1) / T(B) : T(1);
  const T col_weight = options.symmetric ? scale : T(0);
  const bool direct = double(n) * double(B) * double(sizeof(T)) <= double(options.max_logits_bytes);
  const Eigen::Index tile =
      direct ? std::max<Eigen::Index>(n, 1)
             : std::min<Eigen::Index>(std::max<Eigen::Index>(n, 1),
                                      static_cast<Eigen::Index>(options.tile_rows));
  const Eigen::Index tiles = (n + tile - 1) / tile;
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();

  // ---- forward: row LSE of own rows, column LSE state over own rows ------------------------
  Vector<T> row_lse(n), diag(n);
  Vector<T> col_max = Vector<T>::Constant(options.symmetric ? B : 0, neg_inf);
  Eigen::VectorXd col_sum = Eigen::VectorXd::Zero(options.symmetric ? B : 0);
  Matrix<T> z;  // the panel (direct) or the current tile
  auto panel = [&](Eigen::Index first, Eigen::Index rows) {
    z.resize(rows, B);
    z.noalias() = a_scaled.middleRows(first, rows) * xb_all.transpose();
    for (Eigen::Index r = 0; r < rows; ++r) {
      diag[first + r] = z(r, off + first + r);
      if (decoupled) z(r, off + first + r) = neg_inf;  // DCL: the positive leaves the denominators
    }
  };
  double diag_sum = 0;
  for (Eigen::Index t = 0; t < tiles; ++t) {
    const Eigen::Index first = t * tile, rows = std::min(tile, n - first);
    panel(first, rows);
    for (Eigen::Index r = 0; r < rows; ++r) {
      row_lse[first + r] = detail::row_lse(z.row(r));
      diag_sum += double(diag[first + r]);
    }
    if (options.symmetric) detail::fold_columns(z, col_max, col_sum);
  }
  Vector<T> col_lse;
  double local[2] = {0, 0};  // this rank's share of the value, and of sum G ∘ z
  local[0] = double(scale) * (row_lse.template cast<double>().sum() - diag_sum);
  if (options.symmetric) {
    // Global column LSE: the max of the maxima, then the sums rescaled to it.
    Vector<T> global_max(B);
    MPI_Allreduce(col_max.data(), global_max.data(), static_cast<int>(B), detail::datatype<T>(),
                  MPI_MAX, comm);
    for (Eigen::Index j = 0; j < B; ++j)
      col_sum[j] =
          col_sum[j] == 0.0 ? 0.0 : col_sum[j] * std::exp(double(col_max[j] - global_max[j]));
    detail::sum_everywhere(comm, col_sum.data(), static_cast<int>(B));
    col_lse.resize(B);
    for (Eigen::Index j = 0; j < B; ++j)
      col_lse[j] = static_cast<T>(double(global_max[j]) + std::log(col_sum[j]));
    local[0] += double(scale) * (col_lse.segment(off, n).template cast<double>().sum() - diag_sum);
  }

  // ---- backward: G = scale (softmax_row - I) + col_weight (softmax_col - I) ----------------
  Matrix<T> grad_xa(n, d);
  Matrix<T> contrib = Matrix<T>::Zero(B, d);  // d value / d x_b for every global b row
  const T diag_weight = scale + col_weight;
  for (Eigen::Index t = 0; t < tiles; ++t) {
    const Eigen::Index first = t * tile, rows = std::min(tile, n - first);
    if (!direct) panel(first, rows);
    for (Eigen::Index r = 0; r < rows; ++r) {
      auto row = z.row(r).array();
      Eigen::Array<T, 1, Eigen::Dynamic> zc = row;
      if (options.symmetric)
        row = scale * (zc - row_lse[first + r]).exp() +
              col_weight * (zc - col_lse.transpose().array()).exp();
      else
        row = scale * (zc - row_lse[first + r]).exp();
      const Eigen::Index dc = off + first + r;
      row(dc) -= diag_weight;
      zc(dc) = diag[first + r];
      local[1] += double((row * zc).sum());
    }
    grad_xa.middleRows(first, rows).noalias() = z * xb_all;
    contrib.noalias() += z.transpose() * ea.x.middleRows(first, rows);
  }
  Matrix<T> grad_xb(n, d);
  T dummy = 0;  // MPI may dislike a null buffer even with count 0
  MPI_Reduce_scatter(contrib.data(), n > 0 ? grad_xb.data() : &dummy, counts.data(),
                     detail::datatype<T>(), MPI_SUM, comm);
  detail::sum_everywhere(comm, local, 2);

  loss::PairLoss<T> out;
  out.value = static_cast<T>(local[0]);
  loss::detail::finish_pair_gradients(grad_xa, grad_xb, inv_tau, ea, eb, out);
  out.grad_log_temperature = static_cast<T>(-local[1]);  // dz/d log tau = -z
  return out;
}

// =============================================================================================
// Global-batch SigLIP by ring exchange
// =============================================================================================

/// The SigLIP loss of the *global* batch (loss::sigmoid_pairwise on the concatenation of the
/// ranks' rows in rank order; a rank may pass 0 rows): value, d value / d log tau and
/// d value / d bias on every rank, grad_a / grad_b (B_r × d) for this rank's raw rows.
///
/// Algorithm (as big_vision's chunked sigmoid loss): the normalized b blocks travel around the
/// ring of ranks; at step t rank r holds block (r − t) mod P with the gradient accumulated for
/// it so far, adds its panel x_a[r] x_b[q]ᵀ / tau + bias (B_r × B_q, in tiles of `tile_rows`
/// rows) to the loss, its gradient to x_a[r] and its contribution to the block's gradient, and
/// passes both on. After P steps every block's gradient is back at its owner. No rank ever
/// holds more than tile_rows × max_q B_q logits (≤ B_r × B_max) and 4 blocks of B_max × d.
///
/// Bytes sent per call by rank r (P ≥ 2 ranks, s = sizeof(T), B = global batch):
///   (2·B − B_{(r+1) mod P})·d·s  — every b block but one forwarded once with its gradient
///   accumulator, plus the last accumulator home — plus O(P) for the signature and 3 scalars.
/// For equal blocks that is (2 − 1/P)·B·d·s: 112 MiB per rank for B = 32768, d = 512, float,
/// P = 4 (bench/bench_mpi.cpp measures exactly that with PMPI counters).
///
/// Throws std::invalid_argument (on every rank) on a local shape mismatch, d = 0, tau <= 0, a
/// non-finite bias, tile_rows = 0, options or d or scalar type differing between ranks, or an
/// empty global batch. Collective; see the file comment for thread safety.
template <class DA, class DB>
[[nodiscard]] loss::PairLoss<typename DA::Scalar> sigmoid_pairwise(
    MPI_Comm comm, const Eigen::MatrixBase<DA>& a_local, const Eigen::MatrixBase<DB>& b_local,
    const loss::SigmoidOptions& options = {}) {
  using T = typename DA::Scalar;
  static_assert(std::is_same_v<T, typename DB::Scalar>, "a and b must have the same scalar type");
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
  constexpr const char* where = "mmrag::mpi::sigmoid_pairwise";
  detail::require_comm(where, comm);

  const Eigen::Index n = a_local.rows(), d = a_local.cols();
  std::string error;
  try {
    if (b_local.rows() != n || b_local.cols() != d)
      throw std::invalid_argument(
          std::string(where) + ": a_local and b_local must have the same shape, got " +
          std::to_string(n) + "x" + std::to_string(d) + " and " + std::to_string(b_local.rows()) +
          "x" + std::to_string(b_local.cols()));
    if (d == 0)
      throw std::invalid_argument(std::string(where) + ": a_local must have at least one column");
    loss::detail::check_temperature(where, options.temperature);
    if (!std::isfinite(options.bias))
      throw std::invalid_argument(std::string(where) + ": bias must be finite, got " +
                                  loss::detail::num(options.bias));
    if (options.tile_rows == 0)
      throw std::invalid_argument(std::string(where) + ": tile_rows must be > 0, got 0");
    detail::check_int_count(where, "a_local", n * d);
  } catch (const std::invalid_argument& e) {
    error = e.what();
  }
  const bool ok = error.empty();
  const detail::Layout layout = detail::agree(comm, where, detail::Op::sigmoid_pairwise,
                                              {{"sizeof(scalar)", double(sizeof(T))},
                                               {"d (columns)", double(d)},
                                               {"temperature", ok ? options.temperature : 0.0},
                                               {"bias", ok ? options.bias : 0.0},
                                               {"normalize", double(options.normalize)}},
                                              n, error);
  const Eigen::Index B = layout.total;
  if (B == 0)
    throw std::invalid_argument(std::string(where) +
                                ": the global batch is empty (every rank passed 0 rows)");

  const int P = layout.size, me = layout.rank;
  const int next = (me + 1) % P, prev = (me + P - 1) % P;
  const loss::detail::Embeddings<T> ea(a_local, options.normalize), eb(b_local, options.normalize);
  const T inv_tau = static_cast<T>(1.0 / options.temperature);
  const T bias = static_cast<T>(options.bias);
  const Matrix<T> a_scaled = ea.x * inv_tau;
  const T scale = T(1) / T(B);
  const Eigen::Index tile = std::min<Eigen::Index>(std::max<Eigen::Index>(n, 1),
                                                   static_cast<Eigen::Index>(options.tile_rows));
  const Eigen::Index tiles = (n + tile - 1) / tile;
  const Eigen::Index b_max = *std::max_element(layout.rows.begin(), layout.rows.end());

  // Two block buffers (current, incoming) for the rows and for their gradient accumulators.
  Matrix<T> x_cur = eb.x, x_next(b_max, d);
  Matrix<T> acc_cur = Matrix<T>::Zero(n, d), acc_next(b_max, d);
  Matrix<T> grad_xa = Matrix<T>::Zero(n, d), g;
  double sums[3] = {0, 0, 0};  // value · B, sum G, sum G ∘ (s / tau)
  T dummy[1] = {0};
  auto buf = [&](Matrix<T>& m) { return m.size() > 0 ? m.data() : dummy; };

  for (int step = 0; step < P; ++step) {
    const int owner = (me - step + P) % P;             // whose block we hold
    const int incoming = (me - step - 1 + 2 * P) % P;  // whose block arrives next
    const Eigen::Index nq = layout.rows[static_cast<std::size_t>(owner)];
    const Eigen::Index nin = layout.rows[static_cast<std::size_t>(incoming)];
    const bool last = step == P - 1;
    MPI_Request req[2];
    int nreq = 0;
    if (!last) {  // the rows move on while we compute on them (read-only)
      x_next.resize(nin, d);
      MPI_Irecv(buf(x_next), static_cast<int>(nin * d), detail::datatype<T>(), prev, 0, comm,
                &req[nreq++]);
      MPI_Isend(buf(x_cur), static_cast<int>(nq * d), detail::datatype<T>(), next, 0, comm,
                &req[nreq++]);
    }
    for (Eigen::Index t = 0; t < tiles; ++t) {
      const Eigen::Index first = t * tile, rows = std::min(tile, n - first);
      g.resize(rows, nq);
      g.noalias() = a_scaled.middleRows(first, rows) * x_cur.transpose();  // s / tau
      for (Eigen::Index r = 0; r < rows; ++r) {
        auto row = g.row(r).array();
        const auto s_tau = row.eval();
        const auto zv = (s_tau + bias).eval();
        const auto e = (-zv.abs()).exp().eval();
        sums[0] += double((zv.max(T(0)) + e.log1p()).sum());  // softplus(z): label -1
        row = (zv >= T(0)).select(T(1) / (T(1) + e), e / (T(1) + e));
        if (owner == me) {  // the positive pair: softplus(-z) = softplus(z) - z
          const Eigen::Index dc = first + r;
          sums[0] -= double(zv(dc));
          row(dc) -= T(1);
        }
        row *= scale;
        sums[1] += double(row.sum());
        sums[2] += double((row * s_tau).sum());
      }
      grad_xa.middleRows(first, rows).noalias() += g * x_cur;
      acc_cur.noalias() += g.transpose() * ea.x.middleRows(first, rows);
    }
    if (P > 1) {  // the block's gradient follows it (after the last step: home to its owner)
      acc_next.resize(last ? n : nin, d);
      MPI_Sendrecv(buf(acc_cur), static_cast<int>(nq * d), detail::datatype<T>(), next, 1,
                   buf(acc_next), static_cast<int>(acc_next.size()), detail::datatype<T>(), prev, 1,
                   comm, MPI_STATUS_IGNORE);
      MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
      std::swap(acc_cur, acc_next);
      if (!last) std::swap(x_cur, x_next);
    }
  }
  detail::sum_everywhere(comm, sums, 3);

  loss::PairLoss<T> out;
  out.value = static_cast<T>(sums[0] * double(scale));
  Matrix<T> grad_xb = std::move(acc_cur);  // our own block's gradient, home from the ring
  loss::detail::finish_pair_gradients(grad_xa, grad_xb, inv_tau, ea, eb, out);
  out.grad_bias = static_cast<T>(sums[1]);
  out.grad_log_temperature = static_cast<T>(-sums[2]);  // dz/d log tau = -s / tau
  return out;
}

// =============================================================================================
// k-means over rows split across ranks
// =============================================================================================

/// k-means of the concatenation (in rank order) of every rank's rows x_local (B_r × d,
/// row-major; a rank may hold 0 rows): the same steps and random choices as mmrag::kmeans on
/// the concatenated rows, so the same centroids up to summation order, on every rank
/// (bitwise identical across ranks), and the same objective (the tests hold it within 1e-6
/// relative). Every rank draws the same global sample of row numbers; the k-means++ seeding
/// subsample (at most k × init_points_per_centroid rows) is all-gathered and seeded
/// identically on every rank; each Lloyd step assigns the local training rows, then sums the
/// per-cluster sums and counts (k × d + k doubles) and the objective over the ranks; empty
/// clusters take the globally costliest rows (each rank offers its m costliest, m = number of
/// empty clusters). `progress` is called on every rank with the global objective; `assignment`
/// holds the clusters of this rank's rows (B_r).
///
/// Bytes sent per Lloyd iteration by each rank: a reduce + broadcast of (k·d + k + 1) doubles
/// (plus m·(d + 2) doubles all-gathered in the rare iteration with m empty clusters); once:
/// the seeding subsample (its local rows, at most k · init_points_per_centroid · d · s overall)
/// and the signature.
/// Memory per rank: the local training rows, the seeding subsample, k × d sums, and the sorted
/// sample of global row numbers (8 bytes per sampled row; none when every row trains).
/// Throws std::invalid_argument (on every rank) when k = 0, k exceeds the global row count, d
/// = 0, a local row holds NaN or Inf, or k, d, the scalar type or a parameter (iterations,
/// seed, max_points_per_centroid, init_points_per_centroid, spherical, tolerance, assign)
/// differs between ranks. Collective.
template <class T>
[[nodiscard]] KMeansResult<T> kmeans(MPI_Comm comm, const Eigen::Ref<const Matrix<T>>& x_local,
                                     std::size_t k, const KMeansParams& params = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
  constexpr const char* where = "mmrag::mpi::kmeans";
  detail::require_comm(where, comm);
  const Eigen::Index n_local = x_local.rows(), d = x_local.cols();
  std::string error;
  try {
    if (k == 0) throw std::invalid_argument(std::string(where) + ": k must be > 0, got 0");
    if (d == 0)
      throw std::invalid_argument(std::string(where) + ": x_local must have at least one column");
    for (Eigen::Index r = 0; r < n_local; ++r)
      if (!x_local.row(r).allFinite())
        throw std::invalid_argument(std::string(where) + ": x_local row " + std::to_string(r) +
                                    " holds NaN or Inf");
    detail::check_int_count(where, "x_local", n_local * d);
  } catch (const std::invalid_argument& e) {
    error = e.what();
  }
  const std::size_t iterations = mmrag::detail::kmeans_iterations(params);
  const bool spherical = mmrag::detail::kmeans_spherical(params);
  const bool tol_ok = std::isfinite(params.tolerance);
  const detail::Layout layout =
      detail::agree(comm, where, detail::Op::kmeans,
                    {{"sizeof(scalar)", double(sizeof(T))},
                     {"d (columns)", double(d)},
                     {"k", double(k)},
                     {"iterations", double(iterations)},
                     {"seed (low 32 bits)", double(params.seed & 0xffffffffu)},
                     {"seed (high 32 bits)", double(params.seed >> 32)},
                     {"max_points_per_centroid", double(params.max_points_per_centroid)},
                     {"init_points_per_centroid", double(params.init_points_per_centroid)},
                     {"spherical", double(spherical)},
                     {"tolerance", tol_ok ? params.tolerance : -1.0},
                     {"assign", double(params.assign)}},
                    n_local, error);
  const auto n_all = static_cast<std::size_t>(layout.total);
  if (k > n_all)
    throw std::invalid_argument(std::string(where) + ": k (" + std::to_string(k) +
                                ") must not exceed the number of rows over all ranks (" +
                                std::to_string(n_all) + ")");
  const auto me = static_cast<std::size_t>(layout.rank);
  const auto P = static_cast<std::size_t>(layout.size);
  const Index off = layout.offsets[me];

  // ---- the global training sample: the same row numbers on every rank ----------------------
  mmrag::detail::KMeansRng rng(params.seed);
  const std::size_t train_limit = params.max_points_per_centroid * k;
  const bool all_train = mmrag::detail::samples_all(n_all, train_limit);
  std::vector<Index> train_rows;  // global row numbers (empty when every row trains)
  if (!all_train) train_rows = mmrag::detail::sample_rows(rng, n_all, train_limit);
  const std::size_t n_train = all_train ? n_all : train_rows.size();
  auto global_row = [&](std::size_t i) { return all_train ? Index(i) : train_rows[i]; };
  // This rank's training rows are the contiguous run of the sorted sample inside its range.
  std::size_t t_first = 0, t_end = 0;
  if (all_train) {
    t_first = static_cast<std::size_t>(off);
    t_end = t_first + static_cast<std::size_t>(n_local);
  } else {
    t_first = static_cast<std::size_t>(std::lower_bound(train_rows.begin(), train_rows.end(), off) -
                                       train_rows.begin());
    t_end = static_cast<std::size_t>(
        std::lower_bound(train_rows.begin(), train_rows.end(), off + n_local) - train_rows.begin());
  }
  Matrix<T> xs(static_cast<Eigen::Index>(t_end - t_first), d);
  for (std::size_t i = t_first; i < t_end; ++i)
    xs.row(static_cast<Eigen::Index>(i - t_first)) = x_local.row(global_row(i) - off);
  const Vector<T> xs_sq = xs.rowwise().squaredNorm();

  // ---- k-means++ on the all-gathered seeding subsample, identically on every rank -----------
  Matrix<double> centroids;
  {
    const std::vector<Index> init_rows =
        mmrag::detail::sample_rows(rng, n_train, params.init_points_per_centroid * k);
    // Positions into the training sample, increasing: each rank owns a contiguous run.
    std::vector<int> counts(P, 0), displs(P, 0);
    std::size_t q = 0;
    for (const Index i : init_rows) {
      const Index g = global_row(static_cast<std::size_t>(i));
      while (g >= layout.offsets[q] + layout.rows[q]) ++q;
      counts[q] += static_cast<int>(d);
    }
    for (std::size_t r = 1; r < P; ++r) displs[r] = displs[r - 1] + counts[r - 1];
    Matrix<T> mine(counts[me] / d, d);
    {
      Eigen::Index row = 0;
      for (const Index i : init_rows) {
        const Index g = global_row(static_cast<std::size_t>(i));
        if (g >= off && g < off + n_local) mine.row(row++) = x_local.row(g - off);
      }
    }
    Matrix<T> xi(static_cast<Eigen::Index>(init_rows.size()), d);
    T dummy = 0;
    MPI_Allgatherv(mine.size() ? mine.data() : &dummy, counts[me], detail::datatype<T>(), xi.data(),
                   counts.data(), displs.data(), detail::datatype<T>(), comm);
    if (spherical) normalize_rows(xi);
    centroids = mmrag::detail::kmeans_plus_plus(xi, k, spherical, rng);
  }

  // ---- Lloyd iterations: local assignment, global sums ---------------------------------------
  KMeansResult<T> result;
  std::vector<Index> best;
  std::vector<double> cost;
  Matrix<double> sums, far(0, d);
  std::vector<std::int64_t> counts;
  std::vector<double> packed(k * static_cast<std::size_t>(d) + k + 1);
  Matrix<T> c_t = centroids.cast<T>();
  for (std::size_t it = 0; it < iterations; ++it) {
    mmrag::detail::assign_nearest<T>(xs, xs_sq, c_t, spherical, best, cost);
    mmrag::detail::cluster_sums<T>(xs, best, k, sums, counts);
    // One reduction for sums (k × d), counts (k) and the objective.
    std::copy(sums.data(), sums.data() + sums.size(), packed.begin());
    for (std::size_t j = 0; j < k; ++j)
      packed[static_cast<std::size_t>(sums.size()) + j] = double(counts[j]);
    packed.back() = std::accumulate(cost.begin(), cost.end(), 0.0);
    detail::sum_everywhere(comm, packed.data(), static_cast<int>(packed.size()));
    std::copy(packed.begin(), packed.begin() + sums.size(), sums.data());
    for (std::size_t j = 0; j < k; ++j)
      counts[j] = static_cast<std::int64_t>(packed[static_cast<std::size_t>(sums.size()) + j]);
    const double objective = packed.back();
    result.objective.push_back(objective);
    result.iterations = it + 1;
    if (params.progress) params.progress(it, objective);

    // Empty clusters: the m globally costliest training rows (cost desc, global row asc).
    const std::size_t m = mmrag::detail::empty_clusters(counts);
    far.resize(static_cast<Eigen::Index>(m), d);
    if (m > 0) {
      const std::vector<std::size_t> local = mmrag::detail::costliest(cost, m);
      const auto w = static_cast<std::size_t>(d) + 2;  // cost, global row, coordinates
      std::vector<double> offer(m * w, 0.0), offers(P * m * w);
      for (std::size_t i = 0; i < m; ++i) {
        double* o = offer.data() + i * w;
        if (i < local.size()) {
          o[0] = cost[local[i]];
          o[1] = double(global_row(t_first + local[i]));
          for (Eigen::Index c = 0; c < d; ++c)
            o[2 + c] = double(xs(static_cast<Eigen::Index>(local[i]), c));
        } else {
          o[0] = -1.0;  // no row: ranks after every real one
          o[1] = -1.0;
        }
      }
      MPI_Allgather(offer.data(), static_cast<int>(m * w), MPI_DOUBLE, offers.data(),
                    static_cast<int>(m * w), MPI_DOUBLE, comm);
      std::vector<std::size_t> order(P * m);
      std::iota(order.begin(), order.end(), std::size_t(0));
      std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const double* oa = offers.data() + a * w;
        const double* ob = offers.data() + b * w;
        if ((oa[1] < 0) != (ob[1] < 0)) return ob[1] < 0;
        return oa[0] != ob[0] ? oa[0] > ob[0] : oa[1] < ob[1];
      });
      for (std::size_t i = 0; i < m; ++i)
        for (Eigen::Index c = 0; c < d; ++c)
          far(static_cast<Eigen::Index>(i), c) =
              offers[order[i] * w + 2 + static_cast<std::size_t>(c)];
    }
    mmrag::detail::update_centroids(sums, counts, far, spherical, centroids);
    c_t = centroids.cast<T>();
    if (mmrag::detail::kmeans_converged(params, result.objective)) break;
  }
  result.centroids = std::move(c_t);
  if (params.assign) {
    const Vector<T> x_sq = x_local.rowwise().squaredNorm();
    std::vector<double> unused;
    mmrag::detail::assign_nearest<T>(x_local, x_sq, result.centroids, spherical, result.assignment,
                                     unused);
  }
  return result;
}

// =============================================================================================
// Sharded search
// =============================================================================================

namespace detail {

/// FNV-1a over bytes: a cheap fingerprint of the queries, compared between ranks.
inline std::uint64_t fingerprint(std::uint64_t h, const void* data, std::size_t bytes) noexcept {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace detail

/// Sharded search: each rank holds one shard of the collection (any index of the library —
/// FlatIndex, IvfIndex, IvfPqIndex, HnswIndex — or anything with `Scalar`, `dim()`,
/// `metric()` and `search(queries, k, params)` returning Hits), with *global* ids, disjoint
/// between shards. Every rank passes the same queries (nq × d, row-major), k and params; each
/// searches its shard, the per-shard top-k are all-gathered and merged exactly with
/// `merge_hits` (ties to the smaller id), and every rank returns the same merged nq × k Hits.
/// With exact shards (FlatIndex at float32) the result equals one index holding everything;
/// with IVF shards that share their centroids (train with mpi::kmeans, or on one rank and
/// broadcast the trained index via serialize / parse) it equals one IVF over everything at the
/// same nprobe. An empty shard is fine (it contributes padding).
///
/// Bytes sent per call by each rank: its nq × k results, nq·k·(8 + sizeof(T)), all-gathered
/// (each rank receives P times that), plus the signature. Memory: P·nq·k·(8 + sizeof(T)).
/// Throws std::invalid_argument on every rank when a shard's own search rejects its input
/// (that rank rethrows the shard's message), when k, d, nq, the metric, the scalar type or the
/// queries (compared by a 64-bit fingerprint) differ between ranks. Another exception of a
/// shard's search (std::bad_alloc, ...) is rethrown as std::runtime_error on its rank, and the
/// other ranks throw std::invalid_argument naming that rank: nobody hangs.
/// Collective; the shard is only read (concurrent const searches on it stay safe).
template <class Shard, class Params = SearchParams>
[[nodiscard]] Hits<typename Shard::Scalar> search(
    MPI_Comm comm, const Shard& shard,
    const Eigen::Ref<const Matrix<typename Shard::Scalar>>& queries, std::size_t k,
    const Params& params = {}) {
  using T = typename Shard::Scalar;
  constexpr const char* where = "mmrag::mpi::search";
  detail::require_comm(where, comm);
  const Eigen::Index nq = queries.rows();
  const Metric metric = shard.metric();
  Hits<T> local;
  std::string error;
  bool runtime = false;
  try {
    if (k == 0) throw std::invalid_argument(std::string(where) + ": k must be > 0, got 0");
    detail::check_int_count(where, "the results (nq × k)", nq * static_cast<Eigen::Index>(k));
    local = shard.search(queries, k, params);
  } catch (const std::invalid_argument& e) {
    error = e.what();
  } catch (const std::exception& e) {
    error = std::string(where) + ": the shard's search failed on this rank: " + e.what();
    runtime = true;
  }
  std::uint64_t q_fp = 1469598103934665603ull;  // the queries' bytes, row by row
  for (Eigen::Index r = 0; r < nq; ++r)
    q_fp = detail::fingerprint(q_fp, queries.row(r).data(),
                               static_cast<std::size_t>(queries.cols()) * sizeof(T));
  try {
    (void)detail::agree(comm, where, detail::Op::search,
                        {{"sizeof(scalar)", double(sizeof(T))},
                         {"d (query columns)", double(queries.cols())},
                         {"shard dim()", double(shard.dim())},
                         {"nq (query rows)", double(nq)},
                         {"k", double(k)},
                         {"metric", double(static_cast<int>(metric))},
                         {"queries (fingerprint, low 32 bits)", double(q_fp & 0xffffffffu)},
                         {"queries (fingerprint, high 32 bits)", double(q_fp >> 32)}},
                        nq, error);
  } catch (const std::invalid_argument& e) {
    if (runtime && !error.empty() && error == e.what()) throw std::runtime_error(error);
    throw;
  }

  // Every rank's nq × k block, padded to exactly k columns.
  const auto kk = static_cast<Eigen::Index>(k);
  const T pad = higher_is_better(metric) ? -std::numeric_limits<T>::infinity()
                                         : std::numeric_limits<T>::infinity();
  Hits<T> mine{Matrix<Index>::Constant(nq, kk, Index(-1)), Matrix<T>::Constant(nq, kk, pad)};
  const Eigen::Index cols = std::min(kk, local.ids.cols());
  mine.ids.leftCols(cols) = local.ids.leftCols(cols);
  mine.scores.leftCols(cols) = local.scores.leftCols(cols);
  const auto P = static_cast<std::size_t>([&] {
    int p = 1;
    MPI_Comm_size(comm, &p);
    return p;
  }());
  const int count = static_cast<int>(nq * kk);
  Matrix<Index> all_ids(static_cast<Eigen::Index>(P) * nq, kk);
  Matrix<T> all_scores(static_cast<Eigen::Index>(P) * nq, kk);
  Index id_dummy = 0;
  T score_dummy = 0;
  MPI_Allgather(count ? mine.ids.data() : &id_dummy, count, detail::datatype<Index>(),
                count ? all_ids.data() : &id_dummy, count, detail::datatype<Index>(), comm);
  MPI_Allgather(count ? mine.scores.data() : &score_dummy, count, detail::datatype<T>(),
                count ? all_scores.data() : &score_dummy, count, detail::datatype<T>(), comm);
  std::vector<Hits<T>> parts(P);
  for (std::size_t q = 0; q < P; ++q) {
    const auto r0 = static_cast<Eigen::Index>(q) * nq;
    parts[q].ids = all_ids.middleRows(r0, nq);
    parts[q].scores = all_scores.middleRows(r0, nq);
  }
  return merge_hits<T>(std::span<const Hits<T>>(parts), k, metric);
}

}  // namespace mmrag::mpi
