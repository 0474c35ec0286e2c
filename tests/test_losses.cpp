// Tests for include/mmrag/loss/*: values against naive long-double formulations, gradients
// against central finite differences (double) of both mmrag's value and the naive value,
// properties, edge cases, tiled == direct, and bad input.
//
// Tolerances: gradients vs finite differences of the double value: 1e-8 relative
// (h = 1e-5: truncation ~1e-10, round-off ~1e-11); vs finite differences of the long-double
// naive value: 1e-9 relative; values vs the naive value: 1e-12 relative in double.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
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

// ------------------------------------------------------------------------------------------
// Naive formulations, written straight from the definitions in DESIGN.md, in long double.
// ------------------------------------------------------------------------------------------

MatL normalized(const MatL& x) {
  MatL y = x;
  for (Eigen::Index i = 0; i < y.rows(); ++i) {
    LD n = 0;
    for (Eigen::Index c = 0; c < y.cols(); ++c) n += y(i, c) * y(i, c);
    n = std::sqrt(n);
    if (n > 0) y.row(i) /= n;
  }
  return y;
}

MatL product_t(const MatL& a, const MatL& b) {
  MatL s(a.rows(), b.rows());
  for (Eigen::Index i = 0; i < a.rows(); ++i)
    for (Eigen::Index j = 0; j < b.rows(); ++j) {
      LD acc = 0;
      for (Eigen::Index c = 0; c < a.cols(); ++c) acc += a(i, c) * b(j, c);
      s(i, j) = acc;
    }
  return s;
}

LD naive_contrastive(const MatL& a, const MatL& b, const std::vector<int>& same, LD margin,
                     bool mean) {
  LD total = 0;
  for (Eigen::Index i = 0; i < a.rows(); ++i) {
    LD d2 = 0;
    for (Eigen::Index c = 0; c < a.cols(); ++c) d2 += (a(i, c) - b(i, c)) * (a(i, c) - b(i, c));
    const LD d = std::sqrt(d2);
    total += same[i] ? d2 : std::pow(std::max<LD>(0, margin - d), 2);
  }
  return mean ? total / a.rows() : total;
}

LD naive_nce(const Vector<LD>& x, const Vector<LD>& y) {
  LD total = 0;
  for (Eigen::Index i = 0; i < x.size(); ++i) total += std::log(1 / (1 + std::exp(-x[i])));
  for (Eigen::Index j = 0; j < y.size(); ++j) total += std::log(1 - 1 / (1 + std::exp(-y[j])));
  return -total / x.size();
}

LD naive_info_nce(const MatL& s, const std::vector<int>& pos, bool mean) {
  LD total = 0;
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    LD z = 0;
    for (Eigen::Index j = 0; j < s.cols(); ++j) z += std::exp(s(i, j));
    total += std::log(z) - s(i, pos[i]);
  }
  return mean ? total / s.rows() : total;
}

LD naive_in_batch(const MatL& a, const MatL& b, LD tau, bool normalize, bool symmetric, bool mean) {
  const MatL s = product_t(normalize ? normalized(a) : a, normalize ? normalized(b) : b);
  const Eigen::Index n = s.rows();
  LD lab = 0, lba = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    LD zr = 0, zc = 0;
    for (Eigen::Index j = 0; j < n; ++j) {
      zr += std::exp(s(i, j) / tau);
      zc += std::exp(s(j, i) / tau);
    }
    lab += -std::log(std::exp(s(i, i) / tau) / zr);
    lba += -std::log(std::exp(s(i, i) / tau) / zc);
  }
  if (mean) lab /= n, lba /= n;
  return symmetric ? lab + lba : lab;
}

LD naive_sigmoid(const MatL& a, const MatL& b, LD tau, LD bias, bool normalize) {
  const MatL s = product_t(normalize ? normalized(a) : a, normalize ? normalized(b) : b);
  LD total = 0;
  for (Eigen::Index i = 0; i < s.rows(); ++i)
    for (Eigen::Index j = 0; j < s.cols(); ++j) {
      const LD label = i == j ? 1 : -1;
      const LD z = s(i, j) / tau + bias;
      total += -std::log(1 / (1 + std::exp(-label * z)));
    }
  return total / s.rows();
}

MatL to_ld(const MatD& m) {
  return m.cast<LD>();
}

// Checks analytic gradients of a pair loss against finite differences of (1) mmrag's own
// double value and (2) the naive long-double value.
void check_pair_gradients(const MatD& a, const MatD& b, const PairLoss<double>& got,
                          const std::function<double(const MatD&, const MatD&)>& value,
                          const std::function<LD(const MatL&, const MatL&)>& naive) {
  const std::function<double(const MatD&)> fa = [&](const MatD& x) { return value(x, b); };
  const std::function<double(const MatD&)> fb = [&](const MatD& x) { return value(a, x); };
  CHECK(test::relative_error(got.grad_a, test::numeric_gradient(fa, a)) < 1e-8);
  CHECK(test::relative_error(got.grad_b, test::numeric_gradient(fb, b)) < 1e-8);
  const std::function<LD(const MatL&)> na = [&](const MatL& x) { return naive(x, to_ld(b)); };
  const std::function<LD(const MatL&)> nb = [&](const MatL& x) { return naive(to_ld(a), x); };
  CHECK(test::relative_error(got.grad_a.cast<LD>(), test::numeric_gradient(na, to_ld(a), 1e-6)) <
        1e-9);
  CHECK(test::relative_error(got.grad_b.cast<LD>(), test::numeric_gradient(nb, to_ld(b), 1e-6)) <
        1e-9);
}

double rel(double got, LD expect) {
  return std::abs(double(got - double(expect))) / std::max(1.0, std::abs(double(expect)));
}

}  // namespace

// ==========================================================================================
// contrastive
// ==========================================================================================

TEST_CASE("contrastive: value and gradients match the naive form and finite differences") {
  const MatD a = test::random_matrix<double>(9, 5, 1, 0.4),
             b = test::random_matrix<double>(9, 5, 2, 0.4);
  const std::vector<int> same = {1, 0, 0, 1, 0, 1, 0, 0, 1};
  for (Reduction red : {Reduction::mean, Reduction::sum}) {
    for (double margin : {0.5, 1.0, 3.0}) {
      CAPTURE(margin);
      const ContrastiveOptions opt{.margin = margin, .reduction = red};
      const auto got = contrastive(a, b, same, opt);
      const bool mean = red == Reduction::mean;
      CHECK(rel(got.value, naive_contrastive(to_ld(a), to_ld(b), same, margin, mean)) < 1e-12);
      check_pair_gradients(
          a, b, got,
          [&](const MatD& x, const MatD& y) { return contrastive(x, y, same, opt).value; },
          [&](const MatL& x, const MatL& y) {
            return naive_contrastive(x, y, same, margin, mean);
          });
    }
  }
}

TEST_CASE_TEMPLATE("contrastive: edge cases", T, float, double) {
  SUBCASE("a zero-distance dissimilar pair has gradient 0 and value margin^2") {
    Matrix<T> a(1, 3);
    a << 1, 2, 3;
    const std::vector<int> same = {0};
    const auto r = contrastive(a, a, same, {.margin = 2.0});
    CHECK(double(r.value) == doctest::Approx(4.0));
    CHECK(r.grad_a.cwiseAbs().maxCoeff() == T(0));
    CHECK(r.grad_b.cwiseAbs().maxCoeff() == T(0));
  }
  SUBCASE("dissimilar pairs beyond the margin cost nothing") {
    Matrix<T> a(1, 1), b(1, 1);
    a << 0;
    b << 5;
    const std::vector<int> same = {0};
    const auto r = contrastive(a, b, same);
    CHECK(r.value == T(0));
    CHECK(r.grad_a(0, 0) == T(0));
  }
  SUBCASE("B = 1, d = 1 similar pair") {
    Matrix<T> a(1, 1), b(1, 1);
    a << 3;
    b << 1;
    const std::vector<int> same = {1};
    const auto r = contrastive(a, b, same);
    CHECK(double(r.value) == doctest::Approx(4.0));
    CHECK(double(r.grad_a(0, 0)) == doctest::Approx(4.0));
    CHECK(double(r.grad_b(0, 0)) == doctest::Approx(-4.0));
  }
}

TEST_CASE("contrastive: bad input") {
  const MatD a = MatD::Ones(3, 2), b = MatD::Ones(3, 2);
  const std::vector<int> same = {1, 0, 1}, short_same = {1, 0}, bad_label = {1, 2, 0};
  CHECK_THROWS_AS((void)contrastive(a, MatD::Ones(3, 3), same), std::invalid_argument);
  CHECK_THROWS_AS((void)contrastive(a, MatD::Ones(2, 2), same), std::invalid_argument);
  CHECK_THROWS_AS((void)contrastive(MatD(0, 2), MatD(0, 2), std::vector<int>{}),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)contrastive(a, b, short_same), std::invalid_argument);
  CHECK_THROWS_AS((void)contrastive(a, b, bad_label), std::invalid_argument);
  CHECK_THROWS_AS((void)contrastive(a, b, same, {.margin = -1}), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)contrastive(a, b, same, {.margin = -1}), doctest::Contains("margin"),
                       std::invalid_argument);
}

// ==========================================================================================
// nce
// ==========================================================================================

TEST_CASE("nce: value and gradients") {
  const Vector<double> x = test::random_vector<double>(7, 3, 2.0),
                       y = test::random_vector<double>(11, 4, 2.0);
  const auto got = nce(x, y);
  CHECK(rel(got.value, naive_nce(x.cast<LD>(), y.cast<LD>())) < 1e-12);
  const std::function<double(const Vector<double>&)> fx = [&](const Vector<double>& v) {
    return nce(v, y).value;
  };
  const std::function<double(const Vector<double>&)> fy = [&](const Vector<double>& v) {
    return nce(x, v).value;
  };
  CHECK(test::relative_error(got.grad_data, test::numeric_gradient(fx, x)) < 1e-8);
  CHECK(test::relative_error(got.grad_noise, test::numeric_gradient(fy, y)) < 1e-8);
  const std::function<LD(const Vector<LD>&)> nx = [&](const Vector<LD>& v) {
    return naive_nce(v, y.cast<LD>());
  };
  const std::function<LD(const Vector<LD>&)> ny = [&](const Vector<LD>& v) {
    return naive_nce(x.cast<LD>(), v);
  };
  CHECK(test::relative_error(got.grad_data.cast<LD>(),
                             test::numeric_gradient(nx, Vector<LD>(x.cast<LD>()), 1e-6)) < 1e-9);
  CHECK(test::relative_error(got.grad_noise.cast<LD>(),
                             test::numeric_gradient(ny, Vector<LD>(y.cast<LD>()), 1e-6)) < 1e-9);
}

TEST_CASE_TEMPLATE("nce: edge cases and stability", T, float, double) {
  SUBCASE("an empty noise set") {
    Vector<T> x(2);
    x << 0, 0;
    const auto r = nce(x, Vector<T>(0));
    CHECK(double(r.value) == doctest::Approx(std::log(2.0)));
    CHECK(r.grad_noise.size() == 0);
    CHECK(double(r.grad_data[0]) == doctest::Approx(-0.25));
  }
  SUBCASE("logits of +-1e4 and +-1e30 stay finite and exact in the limit") {
    for (T big : {T(1e4), T(1e30)}) {
      Vector<T> x(2), y(2);
      x << big, -big;
      y << -big, big;
      const auto r = nce(x, y);
      // -log s(big) = 0, -log s(-big) = big, -log(1-s(-big)) = 0, -log(1-s(big)) = big
      CHECK(std::isfinite(double(r.value)));
      CHECK(double(r.value) == doctest::Approx(double(big)).epsilon(1e-6));
      CHECK(r.grad_data.allFinite());
      CHECK(r.grad_noise.allFinite());
      CHECK(double(r.grad_data[1]) == doctest::Approx(-0.5));
      CHECK(double(r.grad_noise[1]) == doctest::Approx(0.5));
      CHECK(r.grad_data[0] == T(0));
    }
  }
  SUBCASE("nce_logits subtracts log k q") {
    Vector<T> lp(2), lq(2);
    lp << 1, 2;
    lq << 0.5, -1;
    const Vector<T> l = nce_logits(lp, lq, 4.0);
    CHECK(double(l[0]) == doctest::Approx(0.5 - std::log(4.0)));
    CHECK(double(l[1]) == doctest::Approx(3 - std::log(4.0)));
  }
}

TEST_CASE("nce: bad input") {
  const Vector<double> empty(0), two = Vector<double>::Ones(2), three = Vector<double>::Ones(3);
  CHECK_THROWS_AS((void)nce(empty, three), std::invalid_argument);
  CHECK_THROWS_AS((void)nce_logits(two, three, 1.0), std::invalid_argument);
  CHECK_THROWS_AS((void)nce_logits(two, two, 0.0), std::invalid_argument);
  CHECK_THROWS_AS((void)nce_logits(two, two, -2.0), std::invalid_argument);
}

// ==========================================================================================
// info_nce
// ==========================================================================================

TEST_CASE("info_nce: value, gradient, rows of dS sum to 0") {
  const MatD s = test::random_matrix<double>(6, 9, 5, 2.0);
  const std::vector<int> pos = {0, 3, 8, 2, 2, 5};
  for (Reduction red : {Reduction::mean, Reduction::sum}) {
    const bool mean = red == Reduction::mean;
    const auto got = info_nce(s, pos, red);
    CHECK(rel(got.value, naive_info_nce(to_ld(s), pos, mean)) < 1e-12);
    const std::function<double(const MatD&)> f = [&](const MatD& x) {
      return info_nce(x, pos, red).value;
    };
    CHECK(test::relative_error(got.grad_scores, test::numeric_gradient(f, s)) < 1e-8);
    const std::function<LD(const MatL&)> nf = [&](const MatL& x) {
      return naive_info_nce(x, pos, mean);
    };
    CHECK(test::relative_error(got.grad_scores.cast<LD>(),
                               test::numeric_gradient(nf, to_ld(s), 1e-6)) < 1e-9);
    for (Eigen::Index i = 0; i < s.rows(); ++i)
      CHECK(std::abs(got.grad_scores.row(i).sum()) < 1e-15);
  }
}

TEST_CASE_TEMPLATE("info_nce: edge cases and stability", T, float, double) {
  SUBCASE("K = 1: a single candidate costs nothing") {
    Matrix<T> s(3, 1);
    s << 5, -2, 100;
    const std::vector<int> pos = {0, 0, 0};
    const auto r = info_nce(s, pos);
    CHECK(double(r.value) == doctest::Approx(0.0));
    CHECK(r.grad_scores.cwiseAbs().maxCoeff() <= T(1e-7));
  }
  SUBCASE("scores of +-1e4 and +-1e30") {
    for (T big : {T(1e4), T(1e30)}) {
      Matrix<T> s(2, 3);
      s << big, -big, 0, -big, big, big;
      const std::vector<int> pos = {1, 2};
      const auto r = info_nce(s, pos);
      CHECK(std::isfinite(double(r.value)));
      CHECK(r.grad_scores.allFinite());
      // row 0: lse = big, loss 2 big; row 1: lse = big + log 2, loss log 2.
      CHECK(double(r.value) ==
            doctest::Approx((2.0 * double(big) + std::log(2.0)) / 2).epsilon(1e-6));
    }
  }
}

TEST_CASE("info_nce: bad input") {
  const MatD s = MatD::Ones(2, 3);
  CHECK_THROWS_AS((void)info_nce(s, std::vector<int>{0}), std::invalid_argument);
  CHECK_THROWS_AS((void)info_nce(s, std::vector<int>{0, 3}), std::invalid_argument);
  CHECK_THROWS_AS((void)info_nce(s, std::vector<int>{-1, 0}), std::invalid_argument);
  CHECK_THROWS_AS((void)info_nce(MatD(0, 0), std::vector<int>{}), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)info_nce(s, std::vector<int>{0, 3}), doctest::Contains("positive[1]"),
                       std::invalid_argument);
}

// ==========================================================================================
// in_batch_info_nce
// ==========================================================================================

TEST_CASE("in_batch_info_nce: value and gradients for every option") {
  const MatD a = test::random_matrix<double>(7, 4, 10), b = test::random_matrix<double>(7, 4, 11);
  for (bool normalize : {true, false})
    for (bool symmetric : {true, false})
      for (Reduction red : {Reduction::mean, Reduction::sum})
        for (double tau : {0.07, 0.5, 1.0}) {
          CAPTURE(normalize);
          CAPTURE(symmetric);
          CAPTURE(tau);
          const double t = normalize ? tau : tau * 4;  // keep raw logits moderate for the FD
          const InBatchOptions opt{
              .temperature = t, .normalize = normalize, .symmetric = symmetric, .reduction = red};
          const bool mean = red == Reduction::mean;
          const auto got = in_batch_info_nce(a, b, opt);
          CHECK(rel(got.value, naive_in_batch(to_ld(a), to_ld(b), t, normalize, symmetric, mean)) <
                1e-12);
          check_pair_gradients(
              a, b, got,
              [&](const MatD& x, const MatD& y) { return in_batch_info_nce(x, y, opt).value; },
              [&](const MatL& x, const MatL& y) {
                return naive_in_batch(x, y, t, normalize, symmetric, mean);
              });
          // d value / d log tau
          const std::function<LD(const Vector<LD>&)> ft = [&](const Vector<LD>& lt) {
            return naive_in_batch(to_ld(a), to_ld(b), std::exp(lt[0]), normalize, symmetric, mean);
          };
          Vector<LD> lt(1);
          lt << std::log(LD(t));
          CHECK(rel(got.grad_log_temperature, test::numeric_gradient(ft, lt, 1e-6)[0]) < 1e-9);
        }
}

TEST_CASE("in_batch_info_nce: properties") {
  const MatD a = test::random_matrix<double>(6, 5, 20), b = test::random_matrix<double>(6, 5, 21);
  SUBCASE("scale invariance with normalize") {
    MatD a2 = a;
    a2.row(2) *= 7.5;
    const auto r1 = in_batch_info_nce(a, b), r2 = in_batch_info_nce(a2, b);
    CHECK(rel(r2.value, r1.value) < 1e-13);
    CHECK(test::relative_error(r2.grad_a.row(2) * 7.5, r1.grad_a.row(2)) < 1e-12);
    CHECK(test::relative_error(r2.grad_b, r1.grad_b) < 1e-12);
    // The gradient is orthogonal to the row (moving along it changes nothing).
    for (Eigen::Index i = 0; i < a.rows(); ++i)
      CHECK(std::abs(r1.grad_a.row(i).dot(a.row(i))) < 1e-12);
  }
  SUBCASE("the symmetric loss is symmetric in a and b") {
    const auto ab = in_batch_info_nce(a, b), ba = in_batch_info_nce(b, a);
    CHECK(rel(ab.value, ba.value) < 1e-13);
    CHECK(test::relative_error(ab.grad_a, ba.grad_b) < 1e-12);
    CHECK(test::relative_error(ab.grad_b, ba.grad_a) < 1e-12);
  }
  SUBCASE("CLIP's average is half of ImageBind's sum") {
    const auto sym = in_batch_info_nce(a, b);
    const auto ab = in_batch_info_nce(a, b, {.symmetric = false});
    const auto ba = in_batch_info_nce(b, a, {.symmetric = false});
    CHECK(rel(sym.value, LD(ab.value) + LD(ba.value)) < 1e-13);
  }
}

TEST_CASE_TEMPLATE("in_batch_info_nce: edge cases", T, float, double) {
  SUBCASE("B = 1: the only candidate is the positive") {
    const Matrix<T> a = test::random_matrix<T>(1, 4, 1), b = test::random_matrix<T>(1, 4, 2);
    const auto r = in_batch_info_nce(a, b);
    CHECK(std::abs(double(r.value)) < 1e-6);
    CHECK(r.grad_a.cwiseAbs().maxCoeff() < T(1e-5));
  }
  SUBCASE("d = 1 with normalize: every logit is +-1/tau") {
    Matrix<T> a(3, 1), b(3, 1);
    a << 1, -2, 3;
    b << 2, 1, -1;
    const auto r = in_batch_info_nce(a, b, {.temperature = 0.5});
    CHECK(std::isfinite(double(r.value)));
    CHECK(r.grad_a.cwiseAbs().maxCoeff() < T(1e-5));  // direction of a 1-d vector cannot change
  }
  SUBCASE("identical rows, tau = 0.01") {
    Matrix<T> a = Matrix<T>::Ones(4, 8);
    const auto r = in_batch_info_nce(a, a, {.temperature = 0.01});
    CHECK(double(r.value) == doctest::Approx(2 * std::log(4.0)).epsilon(1e-5));
    CHECK(r.grad_a.allFinite());
  }
  SUBCASE("tau = 0.01 and huge raw logits stay finite") {
    const Matrix<T> a = test::random_matrix<T>(5, 3, 1, T(1e14)),
                    b = test::random_matrix<T>(5, 3, 2, T(1e14));
    for (bool normalize : {true, false}) {
      const auto r = in_batch_info_nce(a, b, {.temperature = 0.01, .normalize = normalize});
      CHECK(std::isfinite(double(r.value)));
      CHECK(r.grad_a.allFinite());
      CHECK(r.grad_b.allFinite());
      CHECK(std::isfinite(double(r.grad_log_temperature)));
    }
  }
  SUBCASE("a zero row gets a zero gradient") {
    Matrix<T> a = test::random_matrix<T>(4, 3, 1), b = test::random_matrix<T>(4, 3, 2);
    a.row(1).setZero();
    const auto r = in_batch_info_nce(a, b);
    CHECK(r.grad_a.row(1).cwiseAbs().maxCoeff() == T(0));
    CHECK(r.grad_a.allFinite());
  }
}

TEST_CASE_TEMPLATE("in_batch_info_nce: the tiled path equals the direct path", T, float, double) {
  const Matrix<T> a = test::random_matrix<T>(37, 6, 30), b = test::random_matrix<T>(37, 6, 31);
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  for (bool symmetric : {true, false})
    for (bool normalize : {true, false})
      for (std::size_t tile : {1, 5, 16, 36, 37, 100}) {
        CAPTURE(tile);
        const InBatchOptions direct{
            .temperature = 0.1, .normalize = normalize, .symmetric = symmetric};
        InBatchOptions tiled = direct;
        tiled.max_logits_bytes = 0;
        tiled.tile_rows = tile;
        const auto d = in_batch_info_nce(a, b, direct), t = in_batch_info_nce(a, b, tiled);
        CHECK(rel(double(t.value), double(d.value)) < tol);
        CHECK(test::relative_error(t.grad_a, d.grad_a) < tol);
        CHECK(test::relative_error(t.grad_b, d.grad_b) < tol);
        CHECK(rel(double(t.grad_log_temperature), double(d.grad_log_temperature)) < tol);
      }
}

TEST_CASE("in_batch_info_nce: bad input") {
  const MatD a = MatD::Ones(3, 2);
  CHECK_THROWS_AS((void)in_batch_info_nce(a, MatD::Ones(4, 2)), std::invalid_argument);
  CHECK_THROWS_AS((void)in_batch_info_nce(a, MatD::Ones(3, 3)), std::invalid_argument);
  CHECK_THROWS_AS((void)in_batch_info_nce(MatD(0, 2), MatD(0, 2)), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)in_batch_info_nce(a, a, {.temperature = 0}),
                       doctest::Contains("temperature"), std::invalid_argument);
  CHECK_THROWS_AS((void)in_batch_info_nce(a, a, {.temperature = -1}), std::invalid_argument);
  CHECK_THROWS_AS((void)in_batch_info_nce(a, a, {.temperature = std::nan("")}),
                  std::invalid_argument);
}

// ==========================================================================================
// sigmoid_pairwise
// ==========================================================================================

TEST_CASE("sigmoid_pairwise: value and gradients") {
  const MatD a = test::random_matrix<double>(6, 4, 40), b = test::random_matrix<double>(6, 4, 41);
  for (bool normalize : {true, false})
    for (double tau : {0.1, 1.0})
      for (double bias : {-10.0, 0.0, 2.5}) {
        CAPTURE(normalize);
        CAPTURE(tau);
        CAPTURE(bias);
        const double t = normalize ? tau : tau * 4;
        const SigmoidOptions opt{.temperature = t, .bias = bias, .normalize = normalize};
        const auto got = sigmoid_pairwise(a, b, opt);
        CHECK(rel(got.value, naive_sigmoid(to_ld(a), to_ld(b), t, bias, normalize)) < 1e-12);
        check_pair_gradients(
            a, b, got,
            [&](const MatD& x, const MatD& y) { return sigmoid_pairwise(x, y, opt).value; },
            [&](const MatL& x, const MatL& y) { return naive_sigmoid(x, y, t, bias, normalize); });
        const std::function<LD(const Vector<LD>&)> fp = [&](const Vector<LD>& p) {
          return naive_sigmoid(to_ld(a), to_ld(b), std::exp(p[0]), p[1], normalize);
        };
        Vector<LD> p(2);
        p << std::log(LD(t)), LD(bias);
        const Vector<LD> g = test::numeric_gradient(fp, p, 1e-6);
        CHECK(rel(got.grad_log_temperature, g[0]) < 1e-9);
        CHECK(rel(got.grad_bias, g[1]) < 1e-9);
      }
}

TEST_CASE_TEMPLATE("sigmoid_pairwise: tiles, edge cases, stability", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  SUBCASE("tiled equals one tile") {
    const Matrix<T> a = test::random_matrix<T>(23, 5, 1), b = test::random_matrix<T>(23, 5, 2);
    const auto d = sigmoid_pairwise(a, b, {.tile_rows = 23});
    for (std::size_t tile : {1, 4, 22, 64}) {
      const auto t = sigmoid_pairwise(a, b, {.tile_rows = tile});
      CHECK(rel(double(t.value), double(d.value)) < tol);
      CHECK(test::relative_error(t.grad_a, d.grad_a) < tol);
      CHECK(test::relative_error(t.grad_b, d.grad_b) < tol);
      CHECK(rel(double(t.grad_bias), double(d.grad_bias)) < tol);
      CHECK(rel(double(t.grad_log_temperature), double(d.grad_log_temperature)) < tol);
    }
  }
  SUBCASE("B = 1") {
    const Matrix<T> a = test::random_matrix<T>(1, 3, 1);
    const auto r = sigmoid_pairwise(a, a, {.temperature = 1, .bias = 0});
    CHECK(double(r.value) == doctest::Approx(std::log1p(std::exp(-1.0))).epsilon(1e-6));
  }
  SUBCASE("huge logits, tau = 0.01") {
    const Matrix<T> a = test::random_matrix<T>(4, 3, 1, T(1e14)),
                    b = test::random_matrix<T>(4, 3, 2, T(1e14));
    for (bool normalize : {true, false}) {
      const auto r = sigmoid_pairwise(a, b, {.temperature = 0.01, .normalize = normalize});
      CHECK(std::isfinite(double(r.value)));
      CHECK(r.grad_a.allFinite());
      CHECK(std::isfinite(double(r.grad_bias)));
      CHECK(std::isfinite(double(r.grad_log_temperature)));
    }
  }
}

TEST_CASE("sigmoid_pairwise: bad input") {
  const MatD a = MatD::Ones(3, 2);
  CHECK_THROWS_AS((void)sigmoid_pairwise(a, MatD::Ones(2, 2)), std::invalid_argument);
  CHECK_THROWS_AS((void)sigmoid_pairwise(a, a, {.temperature = 0}), std::invalid_argument);
  CHECK_THROWS_AS((void)sigmoid_pairwise(a, a, {.bias = INFINITY}), std::invalid_argument);
  CHECK_THROWS_AS((void)sigmoid_pairwise(a, a, {.tile_rows = 0}), std::invalid_argument);
}
