// mpi::in_batch_info_nce and mpi::sigmoid_pairwise equal the single-process losses on the
// concatenated batch: values and gradients within 1e-10 relative in double, 2e-4 in float,
// with uneven local sizes (37, 64, 5, 150) and a rank holding zero rows. Every rank builds the
// same global batch from one seed, passes its own rows, and compares its rows of the result.
#include <doctest/doctest.h>

#include <string>

#include "mmrag/loss/in_batch_info_nce.hpp"
#include "mmrag/loss/sigmoid_pairwise.hpp"
#include "mmrag/mpi.hpp"
#include "mpi_helpers.hpp"

using namespace mmrag;
using namespace mmrag::test;

namespace {

template <class T>
void check_pair_loss(const loss::PairLoss<T>& got, const loss::PairLoss<T>& ref,
                     const std::vector<Eigen::Index>& sizes, const std::string& label) {
  constexpr double tol = mpi_tolerance<T>();
  INFO(label);
  CHECK(rel_error(double(got.value), double(ref.value)) < tol);
  CHECK(rel_error(got.grad_a, ref.grad_a.middleRows(my_offset(sizes), got.grad_a.rows())) < tol);
  CHECK(rel_error(got.grad_b, ref.grad_b.middleRows(my_offset(sizes), got.grad_b.rows())) < tol);
  CHECK(got.grad_a.rows() == sizes[static_cast<std::size_t>(mpi_rank())]);
  CHECK(rel_error(double(got.grad_log_temperature), double(ref.grad_log_temperature)) < tol);
  CHECK(std::abs(double(got.grad_bias) - double(ref.grad_bias)) <=
        tol * std::max(1.0, std::abs(double(ref.grad_bias))));
  // The global values are bitwise the same on every rank.
  const T scalars[3] = {got.value, got.grad_log_temperature, got.grad_bias};
  CHECK(same_on_every_rank(scalars, sizeof scalars));
}

}  // namespace

TEST_CASE_TEMPLATE("mpi::in_batch_info_nce equals the single-process loss on the global batch", T,
                   float, double) {
  const Eigen::Index d = 12;
  for (int shift : {0, 1, 4}) {
    const auto sizes = split_sizes(shift);
    const Eigen::Index B = total(sizes);
    const Matrix<T> a = random_matrix<T>(B, d, 11 + shift);
    const Matrix<T> b = random_matrix<T>(B, d, 12 + shift);
    const Matrix<T> a_loc = local_rows(a, sizes), b_loc = local_rows(b, sizes);
    for (bool normalize : {true, false})
      for (bool symmetric : {true, false})
        for (auto reduction : {loss::Reduction::mean, loss::Reduction::sum})
          for (bool tiled : {false, true}) {
            loss::InBatchOptions o{.temperature = normalize ? 0.07 : 3.0,
                                   .normalize = normalize,
                                   .symmetric = symmetric,
                                   .reduction = reduction};
            if (tiled) o.max_logits_bytes = 0, o.tile_rows = 16;
            const auto ref = loss::in_batch_info_nce(a, b, o);
            const auto got = mpi::in_batch_info_nce(MPI_COMM_WORLD, a_loc, b_loc, o);
            check_pair_loss(got, ref, sizes,
                            "shift " + std::to_string(shift) + " normalize " +
                                std::to_string(normalize) + " symmetric " +
                                std::to_string(symmetric) + " sum " +
                                std::to_string(reduction == loss::Reduction::sum) + " tiled " +
                                std::to_string(tiled));
          }
  }
}

TEST_CASE("mpi::in_batch_info_nce supports decoupled when InBatchOptions has it") {
  loss::InBatchOptions o;
  if constexpr (requires { o.decoupled; }) {
    const auto sizes = split_sizes(1);
    const Eigen::Index B = total(sizes);
    const Matrix<double> a = random_matrix<double>(B, 9, 5), b = random_matrix<double>(B, 9, 6);
    for (bool tiled : {false, true}) {
      o.decoupled = true;
      if (tiled) o.max_logits_bytes = 0, o.tile_rows = 7;
      const auto got =
          mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(a, sizes), local_rows(b, sizes), o);
      const auto ref = loss::in_batch_info_nce(a, b, o);
      CHECK(rel_error(got.value, ref.value) < 1e-10);
      CHECK(rel_error(got.grad_a, ref.grad_a.middleRows(my_offset(sizes), got.grad_a.rows())) <
            1e-10);
      CHECK(rel_error(got.grad_b, ref.grad_b.middleRows(my_offset(sizes), got.grad_b.rows())) <
            1e-10);
      // d value / d log tau against central differences of the distributed value itself.
      const double h = 1e-6;
      loss::InBatchOptions op = o, om = o;
      op.temperature = o.temperature * std::exp(h);
      om.temperature = o.temperature * std::exp(-h);
      const double fd =
          (mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(a, sizes), local_rows(b, sizes), op)
               .value -
           mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(a, sizes), local_rows(b, sizes), om)
               .value) /
          (2 * h);
      CHECK(got.grad_log_temperature == doctest::Approx(fd).epsilon(1e-6));
    }
  }
}

TEST_CASE("mpi::in_batch_info_nce gradients match central finite differences (float64)") {
  // Independent of the single-process loss: perturb one global entry, recompute the global
  // value collectively.
  const auto sizes = split_sizes(1);
  const Eigen::Index B = total(sizes), d = 5;
  const Matrix<double> a = random_matrix<double>(B, d, 21), b = random_matrix<double>(B, d, 22);
  const loss::InBatchOptions o{.temperature = 0.3};
  const auto base =
      mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(a, sizes), local_rows(b, sizes), o);
  const double h = 1e-6;
  for (Eigen::Index row : {Eigen::Index(0), Eigen::Index(40), B - 1})
    for (int side = 0; side < 2; ++side) {
      Matrix<double> ap = a, am = a, bp = b, bm = b;
      (side == 0 ? ap : bp)(row, 2) += h;
      (side == 0 ? am : bm)(row, 2) -= h;
      const double fp =
          mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(ap, sizes), local_rows(bp, sizes), o)
              .value;
      const double fm =
          mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(am, sizes), local_rows(bm, sizes), o)
              .value;
      const Eigen::Index off = my_offset(sizes), n = sizes[std::size_t(mpi_rank())];
      if (row >= off && row < off + n) {
        const double analytic = side == 0 ? base.grad_a(row - off, 2) : base.grad_b(row - off, 2);
        CHECK(analytic == doctest::Approx((fp - fm) / (2 * h)).epsilon(1e-6));
      }
    }
  loss::InBatchOptions op = o, om = o;
  op.temperature = o.temperature * std::exp(h);
  om.temperature = o.temperature * std::exp(-h);
  const double fp =
      mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(a, sizes), local_rows(b, sizes), op).value;
  const double fm =
      mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(a, sizes), local_rows(b, sizes), om).value;
  CHECK(base.grad_log_temperature == doctest::Approx((fp - fm) / (2 * h)).epsilon(1e-6));
}

TEST_CASE_TEMPLATE("mpi::sigmoid_pairwise equals the single-process loss on the global batch", T,
                   float, double) {
  const Eigen::Index d = 10;
  for (int shift : {0, 1, 4}) {
    const auto sizes = split_sizes(shift);
    const Eigen::Index B = total(sizes);
    const Matrix<T> a = random_matrix<T>(B, d, 31 + shift);
    const Matrix<T> b = random_matrix<T>(B, d, 32 + shift);
    const Matrix<T> a_loc = local_rows(a, sizes), b_loc = local_rows(b, sizes);
    for (bool normalize : {true, false})
      for (std::size_t tile_rows : {std::size_t(1024), std::size_t(7)}) {
        const loss::SigmoidOptions o{.temperature = normalize ? 0.1 : 2.0,
                                     .bias = normalize ? -10.0 : -1.5,
                                     .normalize = normalize,
                                     .tile_rows = tile_rows};
        const auto ref = loss::sigmoid_pairwise(a, b, o);
        const auto got = mpi::sigmoid_pairwise(MPI_COMM_WORLD, a_loc, b_loc, o);
        check_pair_loss(got, ref, sizes,
                        "shift " + std::to_string(shift) + " normalize " +
                            std::to_string(normalize) + " tile_rows " + std::to_string(tile_rows));
      }
  }
}

TEST_CASE("mpi losses: one rank holding the whole batch equals the single-process call") {
  // Rank 0 holds everything, the others nothing: the degenerate split.
  const Eigen::Index B = 20, d = 6;
  const Matrix<double> a = random_matrix<double>(B, d, 41), b = random_matrix<double>(B, d, 42);
  std::vector<Eigen::Index> sizes(static_cast<std::size_t>(mpi_size()), 0);
  sizes[0] = B;
  check_pair_loss(
      mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(a, sizes), local_rows(b, sizes)),
      loss::in_batch_info_nce(a, b), sizes, "in_batch_info_nce");
  check_pair_loss(mpi::sigmoid_pairwise(MPI_COMM_WORLD, local_rows(a, sizes), local_rows(b, sizes)),
                  loss::sigmoid_pairwise(a, b), sizes, "sigmoid_pairwise");
}

// ---- bad input: every rank throws, nobody hangs, and the next collective still works --------

namespace {

/// After a failed call, a good call must still succeed on every rank (no rank left inside a
/// collective, no message left in flight).
void check_still_in_step() {
  const auto sizes = split_sizes(0);
  const Matrix<double> a = random_matrix<double>(total(sizes), 4, 1);
  const auto got =
      mpi::in_batch_info_nce(MPI_COMM_WORLD, local_rows(a, sizes), local_rows(a, sizes));
  CHECK(std::isfinite(got.value));
}

std::string message_of(auto&& call) {
  try {
    call();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("mpi losses: mismatched d, temperature, options or scalar type throw on every rank") {
  const int me = mpi_rank();
  const auto sizes = split_sizes(0);
  const Eigen::Index n = sizes[std::size_t(me)];
  SUBCASE("d differs") {
    const Matrix<double> a = random_matrix<double>(n, me == 1 ? 9 : 8, 1);
    const auto msg = message_of([&] { (void)mpi::in_batch_info_nce(MPI_COMM_WORLD, a, a); });
    CHECK(msg.find("d (columns) must be the same on every rank") != std::string::npos);
    const auto msg2 = message_of([&] { (void)mpi::sigmoid_pairwise(MPI_COMM_WORLD, a, a); });
    CHECK(msg2.find("d (columns)") != std::string::npos);
  }
  SUBCASE("temperature differs") {
    const Matrix<float> a = random_matrix<float>(n, 8, 1);
    const loss::InBatchOptions o{.temperature = me == 2 ? 0.05 : 0.07};
    const auto msg = message_of([&] { (void)mpi::in_batch_info_nce(MPI_COMM_WORLD, a, a, o); });
    CHECK(msg.find("temperature must be the same on every rank") != std::string::npos);
    const loss::SigmoidOptions s{.bias = me == 1 ? -9.0 : -10.0};
    CHECK(message_of([&] { (void)mpi::sigmoid_pairwise(MPI_COMM_WORLD, a, a, s); }).find("bias") !=
          std::string::npos);
  }
  SUBCASE("symmetric differs") {
    const Matrix<double> a = random_matrix<double>(n, 8, 1);
    const loss::InBatchOptions o{.symmetric = me != 0};
    CHECK(message_of([&] {
            (void)mpi::in_batch_info_nce(MPI_COMM_WORLD, a, a, o);
          }).find("symmetric") != std::string::npos);
  }
  SUBCASE("scalar type differs") {
    std::string msg;
    if (me == 0) {
      const Matrix<float> a = random_matrix<float>(n, 8, 1);
      msg = message_of([&] { (void)mpi::in_batch_info_nce(MPI_COMM_WORLD, a, a); });
    } else {
      const Matrix<double> a = random_matrix<double>(n, 8, 1);
      msg = message_of([&] { (void)mpi::in_batch_info_nce(MPI_COMM_WORLD, a, a); });
    }
    CHECK(msg.find("sizeof(scalar)") != std::string::npos);
  }
  SUBCASE("one rank's arguments are wrong") {
    const Matrix<double> a = random_matrix<double>(n, 8, 1);
    const Matrix<double> b = random_matrix<double>(me == 1 ? n + 1 : n, 8, 2);
    const auto msg = message_of([&] { (void)mpi::in_batch_info_nce(MPI_COMM_WORLD, a, b); });
    if (me == 1)
      CHECK(msg.find("a_local and b_local must have the same shape") != std::string::npos);
    else
      CHECK(msg.find("rank 1 rejected its arguments") != std::string::npos);
    const loss::SigmoidOptions s{.temperature = me == 2 ? -1.0 : 0.1};
    const auto msg2 = message_of([&] { (void)mpi::sigmoid_pairwise(MPI_COMM_WORLD, a, a, s); });
    CHECK(msg2.find(me == 2 ? "temperature must be finite and > 0" : "rank 2 rejected") !=
          std::string::npos);
  }
  SUBCASE("ranks call different collectives") {
    const Matrix<double> a = random_matrix<double>(n, 8, 1);
    const auto msg = message_of([&] {
      if (me == 0)
        (void)mpi::sigmoid_pairwise(MPI_COMM_WORLD, a, a);
      else
        (void)mpi::in_batch_info_nce(MPI_COMM_WORLD, a, a);
    });
    CHECK(msg.find("every rank must call the same collective") != std::string::npos);
  }
  SUBCASE("empty global batch") {
    const Matrix<double> a(0, 8);
    CHECK(message_of([&] {
            (void)mpi::in_batch_info_nce(MPI_COMM_WORLD, a, a);
          }).find("global batch is empty") != std::string::npos);
    CHECK(message_of([&] {
            (void)mpi::sigmoid_pairwise(MPI_COMM_WORLD, a, a);
          }).find("global batch is empty") != std::string::npos);
  }
  check_still_in_step();
}
