// Tests for include/mmrag/loss/triplet_margin.hpp: value against a naive long-double
// formulation, the three gradients against central finite differences (double) of mmrag's value
// and of the naive value, zero distances, edge cases, float, and bad input.
//
// Tolerances: value vs naive 1e-12 relative (double); gradients vs FD 1e-8 (own value) and
// 1e-9 (naive, h = 1e-6). Random triplets are kept away from the hinge's kink.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "gradcheck.hpp"
#include "helpers.hpp"
#include "mmrag/losses.hpp"

using namespace mmrag;
using namespace mmrag::loss;
using LD = long double;
using MatD = Matrix<double>;
using MatL = Matrix<LD>;

namespace {

LD naive_triplet(const MatL& a, const MatL& p, const MatL& n, LD margin, bool mean) {
  LD total = 0;
  for (Eigen::Index i = 0; i < a.rows(); ++i) {
    LD dp = 0, dn = 0;
    for (Eigen::Index c = 0; c < a.cols(); ++c) {
      dp += (a(i, c) - p(i, c)) * (a(i, c) - p(i, c));
      dn += (a(i, c) - n(i, c)) * (a(i, c) - n(i, c));
    }
    total += std::max<LD>(0, std::sqrt(dp) - std::sqrt(dn) + margin);
  }
  return mean ? total / a.rows() : total;
}

double rel(double got, LD expect) {
  return std::abs(double(got - double(expect))) / std::max(1.0, std::abs(double(expect)));
}

}  // namespace

TEST_CASE("triplet_margin: value and the three gradients") {
  const MatD a = test::random_matrix<double>(10, 4, 70), p = test::random_matrix<double>(10, 4, 71),
             n = test::random_matrix<double>(10, 4, 72);
  for (double margin : {0.0, 0.2, 1.0, 5.0})
    for (Reduction red : {Reduction::mean, Reduction::sum}) {
      CAPTURE(margin);
      const TripletOptions opt{.margin = margin, .reduction = red};
      const bool mean = red == Reduction::mean;
      const auto got = triplet_margin(a, p, n, opt);
      const LD expect = naive_triplet(a.cast<LD>(), p.cast<LD>(), n.cast<LD>(), margin, mean);
      CHECK(rel(got.value, expect) < 1e-12);
      // Keep FD away from the kink: every l_i must be clearly nonzero or clearly zero.
      for (Eigen::Index i = 0; i < a.rows(); ++i) {
        const double l = (a.row(i) - p.row(i)).norm() - (a.row(i) - n.row(i)).norm() + margin;
        REQUIRE(std::abs(l) > 1e-3);
      }
      test::check_gradient(
          got.grad_anchor, a, [&](const MatD& x) { return triplet_margin(x, p, n, opt).value; },
          [&](const MatL& x) {
            return naive_triplet(x, p.cast<LD>(), n.cast<LD>(), margin, mean);
          });
      test::check_gradient(
          got.grad_positive, p, [&](const MatD& x) { return triplet_margin(a, x, n, opt).value; },
          [&](const MatL& x) {
            return naive_triplet(a.cast<LD>(), x, n.cast<LD>(), margin, mean);
          });
      test::check_gradient(
          got.grad_negative, n, [&](const MatD& x) { return triplet_margin(a, p, x, opt).value; },
          [&](const MatL& x) {
            return naive_triplet(a.cast<LD>(), p.cast<LD>(), x, margin, mean);
          });
      // Translation invariance: the three gradients of a row sum to 0.
      CHECK((got.grad_anchor + got.grad_positive + got.grad_negative).cwiseAbs().maxCoeff() <
            1e-15);
    }
}

TEST_CASE_TEMPLATE("triplet_margin: zero distances and edge cases", T, float, double) {
  SUBCASE("anchor == positive: value max(0, margin - d_an), grad_positive 0") {
    Matrix<T> a(1, 2), n(1, 2);
    a << 0, 0;
    n << 0.1, 0;
    const auto r = triplet_margin(a, a, n, {.margin = 0.5});
    CHECK(double(r.value) == doctest::Approx(0.4).epsilon(1e-6));
    CHECK(r.grad_positive.cwiseAbs().maxCoeff() == T(0));
    CHECK(double(r.grad_negative(0, 0)) == doctest::Approx(-1.0));  // (a - n)/d_an
    CHECK(double(r.grad_anchor(0, 0)) == doctest::Approx(1.0));
  }
  SUBCASE("anchor == negative: the negative's term has gradient 0") {
    Matrix<T> a(1, 2), p(1, 2);
    a << 1, 1;
    p << 1, 4;
    const auto r = triplet_margin(a, p, a, {.margin = 0.2});
    CHECK(double(r.value) == doctest::Approx(3.2).epsilon(1e-6));
    CHECK(r.grad_negative.cwiseAbs().maxCoeff() == T(0));
    CHECK(double(r.grad_positive(0, 1)) == doctest::Approx(1.0));  // -(a - p)/d_ap
    CHECK(r.grad_anchor.allFinite());
  }
  SUBCASE("identical rows: value = margin, every gradient 0") {
    const Matrix<T> a = Matrix<T>::Ones(3, 4);
    const auto r = triplet_margin(a, a, a);
    CHECK(double(r.value) == doctest::Approx(0.2).epsilon(1e-6));
    CHECK(r.grad_anchor.cwiseAbs().maxCoeff() == T(0));
    CHECK(r.grad_positive.cwiseAbs().maxCoeff() == T(0));
    CHECK(r.grad_negative.cwiseAbs().maxCoeff() == T(0));
  }
  SUBCASE("B = 1, d = 1, the hinge inactive") {
    Matrix<T> a(1, 1), p(1, 1), n(1, 1);
    a << 0;
    p << 0.1;
    n << 3;
    const auto r = triplet_margin(a, p, n, {.margin = 1.0});
    CHECK(r.value == T(0));
    CHECK(r.grad_anchor(0, 0) == T(0));
  }
  SUBCASE("margin 0 and sum") {
    Matrix<T> a(2, 1), p(2, 1), n(2, 1);
    a << 0, 0;
    p << 2, -1;
    n << 1, 3;
    const auto r = triplet_margin(a, p, n, {.margin = 0.0, .reduction = Reduction::sum});
    CHECK(double(r.value) == doctest::Approx(1.0));  // row 0: 2 - 1; row 1: 1 - 3 < 0
  }
}

TEST_CASE("triplet_margin: bad input throws and changes nothing") {
  const MatD a = MatD::Ones(3, 2), p = MatD::Zero(3, 2), n = MatD::Ones(3, 2) * 2;
  CHECK_THROWS_WITH_AS((void)triplet_margin(a, MatD::Ones(3, 3), n), doctest::Contains("shape"),
                       std::invalid_argument);
  CHECK_THROWS_AS((void)triplet_margin(a, p, MatD::Ones(2, 2)), std::invalid_argument);
  CHECK_THROWS_AS((void)triplet_margin(MatD::Ones(4, 2), p, n), std::invalid_argument);
  CHECK_THROWS_AS((void)triplet_margin(MatD(0, 2), MatD(0, 2), MatD(0, 2)), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)triplet_margin(a, p, n, {.margin = -0.1}), doctest::Contains("margin"),
                       std::invalid_argument);
  CHECK_THROWS_AS(
      (void)triplet_margin(a, p, n, {.margin = std::numeric_limits<double>::infinity()}),
      std::invalid_argument);
  CHECK(a == MatD::Ones(3, 2));
  CHECK(p == MatD::Zero(3, 2));
}
