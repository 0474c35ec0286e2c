// Tests for include/mmrag/loss/supervised_contrastive.hpp: value against a naive long-double
// formulation of Khosla et al. (2020) eq. 2 (L_out), gradients against central finite
// differences (double) of both mmrag's value and the naive value, the temperature gradient,
// edge cases, tiled == direct, float against double, and bad input.
//
// Tolerances: value vs naive 1e-12 relative (double); gradients vs FD of the double value 1e-8,
// vs FD of the long-double naive value 1e-9 (h = 1e-6); tiled vs direct 1e-13 (double),
// 2e-6 (float); float vs double 1e-5 relative (float logits carry ~1e-7 · |z| each).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "gradcheck.hpp"
#include "helpers.hpp"
#include "mmrag/losses.hpp"

using namespace mmrag;
using namespace mmrag::loss;
using LD = long double;
using MatD = Matrix<double>;
using MatL = Matrix<LD>;

namespace {

// Straight from the definition: A(i) = j != i, P(i) = j != i with the same label.
LD naive_supcon(const MatL& x, const std::vector<int>& labels, LD tau, bool normalize, bool mean) {
  const MatL xn = normalize ? test::normalized_rows(x) : x;
  const MatL s = test::gram(xn, xn);
  const Eigen::Index n = x.rows();
  LD total = 0;
  int counted = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    LD denom = 0;
    for (Eigen::Index a = 0; a < n; ++a)
      if (a != i) denom += std::exp(s(i, a) / tau);
    LD li = 0;
    int np = 0;
    for (Eigen::Index p = 0; p < n; ++p)
      if (p != i && labels[p] == labels[i]) {
        li += -std::log(std::exp(s(i, p) / tau) / denom);
        ++np;
      }
    if (np == 0) continue;
    total += li / np;
    ++counted;
  }
  if (counted == 0) return 0;
  return mean ? total / counted : total;
}

double rel(double got, LD expect) {
  return std::abs(double(got - double(expect))) / std::max(1.0, std::abs(double(expect)));
}

}  // namespace

TEST_CASE("supervised_contrastive: value and gradients against the naive form") {
  const MatD x = test::random_matrix<double>(9, 5, 7);
  // Labels 2 and 3 are singletons: those anchors have no positive and are not counted.
  const std::vector<int> labels = {0, 1, 0, 2, 1, 0, 3, 1, 1};
  for (bool normalize : {true, false})
    for (Reduction red : {Reduction::mean, Reduction::sum})
      for (double tau : {0.07, 0.5, 1.0}) {
        CAPTURE(normalize);
        CAPTURE(tau);
        const double t = normalize ? tau : tau * 4;
        const SupConOptions opt{.temperature = t, .normalize = normalize, .reduction = red};
        const bool mean = red == Reduction::mean;
        const auto got = supervised_contrastive(x, labels, opt);
        CHECK(rel(got.value, naive_supcon(x.cast<LD>(), labels, t, normalize, mean)) < 1e-12);
        test::check_gradient(
            got.grad, x,
            [&](const MatD& y) { return supervised_contrastive(y, labels, opt).value; },
            [&](const MatL& y) { return naive_supcon(y, labels, t, normalize, mean); });
        const std::function<LD(const Vector<LD>&)> ft = [&](const Vector<LD>& lt) {
          return naive_supcon(x.cast<LD>(), labels, std::exp(lt[0]), normalize, mean);
        };
        Vector<LD> lt(1);
        lt << std::log(LD(t));
        CHECK(rel(got.grad_log_temperature, test::numeric_gradient(ft, lt, 1e-6)[0]) < 1e-9);
      }
}

TEST_CASE("supervised_contrastive: properties") {
  const MatD x = test::random_matrix<double>(8, 4, 8);
  const std::vector<int> labels = {0, 1, 2, 0, 1, 2, 0, 1};
  SUBCASE("scale invariance with normalize, gradient orthogonal to each row") {
    MatD x2 = x;
    x2.row(3) *= 4.0;
    const auto r1 = supervised_contrastive(x, labels), r2 = supervised_contrastive(x2, labels);
    CHECK(rel(r2.value, r1.value) < 1e-13);
    CHECK(test::relative_error(MatD(r2.grad.row(3) * 4.0), MatD(r1.grad.row(3))) < 1e-12);
    for (Eigen::Index i = 0; i < x.rows(); ++i)
      CHECK(std::abs(r1.grad.row(i).dot(x.row(i))) < 1e-12);
  }
  SUBCASE("relabelling with other values changes nothing") {
    const std::vector<int> other = {70, -5, 3, 70, -5, 3, 70, -5};
    const auto r1 = supervised_contrastive(x, labels), r2 = supervised_contrastive(x, other);
    CHECK(r1.value == r2.value);
    CHECK(test::relative_error(r1.grad, r2.grad) < 1e-15);
  }
}

TEST_CASE_TEMPLATE("supervised_contrastive: edge cases", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  SUBCASE("B = 1: no positive, value and gradients 0") {
    const Matrix<T> x = test::random_matrix<T>(1, 4, 1);
    const std::vector<int> labels = {3};
    const auto r = supervised_contrastive(x, labels);
    CHECK(r.value == T(0));
    CHECK(r.grad.cwiseAbs().maxCoeff() == T(0));
    CHECK(r.grad_log_temperature == T(0));
  }
  SUBCASE("all labels distinct: nothing counted") {
    const Matrix<T> x = test::random_matrix<T>(4, 3, 2);
    const std::vector<int> labels = {0, 1, 2, 3};
    const auto r = supervised_contrastive(x, labels);
    CHECK(r.value == T(0));
    CHECK(r.grad.cwiseAbs().maxCoeff() == T(0));
  }
  SUBCASE("one label (all equal): every other row a positive") {
    const Matrix<T> x = test::random_matrix<T>(5, 3, 3);
    const std::vector<int> labels(5, 7);
    const auto r = supervised_contrastive(x, labels, {.temperature = 0.2});
    CHECK(rel(double(r.value), naive_supcon(x.template cast<LD>(), labels, 0.2, true, true)) < tol);
    CHECK(r.grad.allFinite());
  }
  SUBCASE("identical rows, tau = 0.01: l_i = log(B - 1)") {
    const Matrix<T> x = Matrix<T>::Ones(4, 6);
    const std::vector<int> labels = {0, 0, 1, 1};
    const auto r = supervised_contrastive(x, labels, {.temperature = 0.01});
    CHECK(double(r.value) == doctest::Approx(std::log(3.0)).epsilon(1e-5));
    CHECK(r.grad.allFinite());
    CHECK(std::isfinite(double(r.grad_log_temperature)));
  }
  SUBCASE("d = 1 with normalize: logits are +-1/tau, the gradient is 0") {
    Matrix<T> x(4, 1);
    x << 1, -2, 3, 0.5;
    const std::vector<int> labels = {0, 1, 0, 1};
    const auto r = supervised_contrastive(x, labels, {.temperature = 0.5});
    CHECK(rel(double(r.value), naive_supcon(x.template cast<LD>(), labels, 0.5, true, true)) < tol);
    CHECK(r.grad.cwiseAbs().maxCoeff() < T(1e-6));
  }
  SUBCASE("a zero row gets a zero gradient") {
    Matrix<T> x = test::random_matrix<T>(4, 3, 4);
    x.row(2).setZero();
    const std::vector<int> labels = {0, 1, 0, 1};
    const auto r = supervised_contrastive(x, labels);
    CHECK(r.grad.row(2).cwiseAbs().maxCoeff() == T(0));
    CHECK(r.grad.allFinite());
  }
}

TEST_CASE_TEMPLATE("supervised_contrastive: the tiled path equals the direct path", T, float,
                   double) {
  const Matrix<T> x = test::random_matrix<T>(29, 5, 9);
  std::vector<int> labels;
  for (int i = 0; i < 29; ++i) labels.push_back((i * 7) % 5);
  labels[28] = 99;  // a singleton anchor
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  const auto d = supervised_contrastive(x, labels);
  for (std::size_t tile : {1, 4, 16, 28, 29, 64}) {
    CAPTURE(tile);
    const auto t = supervised_contrastive(x, labels, {.max_logits_bytes = 0, .tile_rows = tile});
    CHECK(rel(double(t.value), double(d.value)) < tol);
    CHECK(test::relative_error(t.grad, d.grad) < tol);
    CHECK(rel(double(t.grad_log_temperature), double(d.grad_log_temperature)) < tol);
  }
}

TEST_CASE("supervised_contrastive: float against double") {
  const MatD x = test::random_matrix<double>(64, 32, 11);
  std::vector<int> labels;
  for (int i = 0; i < 64; ++i) labels.push_back(i % 8);
  for (double tau : {0.01, 0.1}) {
    const Matrix<float> xf = x.cast<float>();
    const auto f = supervised_contrastive(xf, labels, {.temperature = tau});
    const auto d = supervised_contrastive(MatD(xf.cast<double>()), labels, {.temperature = tau});
    CHECK(std::abs(double(f.value) - d.value) / d.value < 1e-5);
    CHECK(std::abs(double(f.grad_log_temperature) - d.grad_log_temperature) /
              std::abs(d.grad_log_temperature) <
          1e-4);
    CHECK(test::relative_error(f.grad.cast<double>(), d.grad) < 1e-4);
  }
}

TEST_CASE("supervised_contrastive: bad input throws and changes nothing") {
  const MatD x = test::random_matrix<double>(3, 2, 1);
  const MatD before = x;
  const std::vector<int> labels = {0, 1, 0};
  CHECK_THROWS_WITH_AS((void)supervised_contrastive(x, std::vector<int>{0, 1}),
                       doctest::Contains("labels"), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)supervised_contrastive(x, labels, {.temperature = 0}),
                       doctest::Contains("temperature"), std::invalid_argument);
  CHECK_THROWS_AS((void)supervised_contrastive(x, labels, {.temperature = -0.1}),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)supervised_contrastive(x, labels, {.temperature = std::nan("")}),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)supervised_contrastive(MatD(0, 2), std::vector<int>{}),
                  std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)supervised_contrastive(x, labels, {.tile_rows = 0}),
                       doctest::Contains("tile_rows"), std::invalid_argument);
  CHECK(x == before);
}
