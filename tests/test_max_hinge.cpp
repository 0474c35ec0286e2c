// Tests for include/mmrag/loss/max_hinge.hpp (VSE++): value against a naive long-double
// formulation, gradients against central finite differences (double) of mmrag's value and of
// the naive value, ties to the smaller index, tiles, edge cases, and bad input.
//
// Tolerances: value vs naive 1e-12 relative (double); gradients vs FD 1e-8 (own value) and
// 1e-9 (naive, h = 1e-6); the loss is piecewise smooth, and random data keeps FD off the kinks.
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

LD naive_max_hinge(const MatL& a, const MatL& b, LD margin, bool normalize, bool mean) {
  const MatL s = test::gram(normalize ? test::normalized_rows(a) : a,
                            normalize ? test::normalized_rows(b) : b);
  const Eigen::Index n = s.rows();
  LD total = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    LD r = 0, c = 0;
    for (Eigen::Index j = 0; j < n; ++j) {
      if (j == i) continue;
      r = std::max(r, std::max<LD>(0, margin + s(i, j) - s(i, i)));
      c = std::max(c, std::max<LD>(0, margin + s(j, i) - s(i, i)));
    }
    total += r + c;
  }
  return mean ? total / n : total;
}

double rel(double got, LD expect) {
  return std::abs(double(got - double(expect))) / std::max(1.0, std::abs(double(expect)));
}

}  // namespace

TEST_CASE("max_hinge: value and gradients") {
  const MatD a = test::random_matrix<double>(8, 5, 80), b = test::random_matrix<double>(8, 5, 81);
  for (bool normalize : {true, false})
    for (double margin : {0.0, 0.2, 0.6})
      for (Reduction red : {Reduction::mean, Reduction::sum}) {
        CAPTURE(normalize);
        CAPTURE(margin);
        const MaxHingeOptions opt{.margin = margin, .normalize = normalize, .reduction = red};
        const bool mean = red == Reduction::mean;
        const auto got = max_hinge(a, b, opt);
        CHECK(rel(got.value, naive_max_hinge(a.cast<LD>(), b.cast<LD>(), margin, normalize, mean)) <
              1e-12);
        test::check_gradient(
            got.grad_a, a, [&](const MatD& x) { return max_hinge(x, b, opt).value; },
            [&](const MatL& x) {
              return naive_max_hinge(x, b.cast<LD>(), margin, normalize, mean);
            });
        test::check_gradient(
            got.grad_b, b, [&](const MatD& x) { return max_hinge(a, x, opt).value; },
            [&](const MatL& x) {
              return naive_max_hinge(a.cast<LD>(), x, margin, normalize, mean);
            });
        CHECK(got.grad_log_temperature == 0);
        CHECK(got.grad_bias == 0);
      }
}

TEST_CASE("max_hinge: ties go to the smaller index") {
  // Rows 1 and 2 of b are identical: for anchor a_0 both are the hardest negative.
  MatD a(3, 2), b(3, 2);
  a << 1, 0, 0, 1, 0, 1;
  b << 1, 0, 0.6, 0.8, 0.6, 0.8;
  const auto r = max_hinge(a, b, {.margin = 0.5, .normalize = false, .reduction = Reduction::sum});
  // Row hinge of a_0: 0.5 + 0.6 - 1 = 0.1, with b_1 and b_2 tied as the hardest negative.
  const LD expect = naive_max_hinge(a.cast<LD>(), b.cast<LD>(), 0.5, false, false);
  CHECK(rel(r.value, expect) < 1e-14);
  // The tie must go to j = 1: the gradient equals that of the same loss with b_2 shrunk a hair,
  // which makes j = 1 the strict maximum for a_0 and leaves every other hinge's choice alone.
  MatD b_shift = b;
  b_shift.row(2) *= 1 - 1e-9;  // makes j = 1 the strict maximum for a_0, same hinges elsewhere
  const auto s =
      max_hinge(a, b_shift, {.margin = 0.5, .normalize = false, .reduction = Reduction::sum});
  CHECK(test::relative_error(r.grad_b, s.grad_b) < 1e-8);
  CHECK(test::relative_error(r.grad_a, s.grad_a) < 1e-8);
}

TEST_CASE_TEMPLATE("max_hinge: tiles and edge cases", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  SUBCASE("tiled equals one tile") {
    const Matrix<T> a = test::random_matrix<T>(21, 4, 1), b = test::random_matrix<T>(21, 4, 2);
    const auto d = max_hinge(a, b, {.tile_rows = 21});
    for (std::size_t tile : {1, 4, 20, 64}) {
      const auto t = max_hinge(a, b, {.tile_rows = tile});
      CHECK(rel(double(t.value), double(d.value)) < tol);
      CHECK(test::relative_error(t.grad_a, d.grad_a) < tol);
      CHECK(test::relative_error(t.grad_b, d.grad_b) < tol);
    }
  }
  SUBCASE("B = 1: no negative, value 0") {
    const Matrix<T> a = test::random_matrix<T>(1, 3, 3);
    const auto r = max_hinge(a, a);
    CHECK(r.value == T(0));
    CHECK(r.grad_a.cwiseAbs().maxCoeff() == T(0));
  }
  SUBCASE("identical rows: every hinge is the margin") {
    const Matrix<T> a = Matrix<T>::Ones(4, 3);
    const auto r = max_hinge(a, a, {.margin = 0.2});
    CHECK(double(r.value) == doctest::Approx(0.4).epsilon(1e-6));
    CHECK(r.grad_a.allFinite());
    CHECK(r.grad_b.allFinite());
  }
  SUBCASE("d = 1 with normalize: the gradient is 0") {
    Matrix<T> a(3, 1), b(3, 1);
    a << 1, -2, 3;
    b << 2, 1, -1;
    const auto r = max_hinge(a, b);
    CHECK(std::isfinite(double(r.value)));
    CHECK(r.grad_a.cwiseAbs().maxCoeff() < T(1e-6));
  }
  SUBCASE("a zero row gets a zero gradient") {
    Matrix<T> a = test::random_matrix<T>(4, 3, 4), b = test::random_matrix<T>(4, 3, 5);
    a.row(1).setZero();
    const auto r = max_hinge(a, b, {.margin = 1.0});
    CHECK(r.grad_a.row(1).cwiseAbs().maxCoeff() == T(0));
    CHECK(r.grad_a.allFinite());
  }
}

TEST_CASE("max_hinge: bad input throws and changes nothing") {
  const MatD a = MatD::Ones(3, 2);
  CHECK_THROWS_AS((void)max_hinge(a, MatD::Ones(2, 2)), std::invalid_argument);
  CHECK_THROWS_AS((void)max_hinge(a, MatD::Ones(3, 3)), std::invalid_argument);
  CHECK_THROWS_AS((void)max_hinge(MatD(0, 2), MatD(0, 2)), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)max_hinge(a, a, {.margin = -1}), doctest::Contains("margin"),
                       std::invalid_argument);
  CHECK_THROWS_AS((void)max_hinge(a, a, {.margin = std::nan("")}), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)max_hinge(a, a, {.tile_rows = 0}), doctest::Contains("tile_rows"),
                       std::invalid_argument);
  CHECK(a == MatD::Ones(3, 2));
}
