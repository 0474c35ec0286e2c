// Tests for include/mmrag/loss/multi_positive_info_nce.hpp and the decoupled option of
// in_batch_info_nce: values against naive long-double formulations written from the
// definitions in DESIGN.md, gradients (raw inputs and log tau) against central finite
// differences (double) of both mmrag's value and the naive value, the reduction to
// in_batch_info_nce for labels 0..B-1, edge cases, tiled == direct, and bad input.
//
// Tolerances: value vs naive 1e-12 relative (double); gradients vs FD of the double value 1e-8,
// vs FD of the long-double naive value 1e-9 (h = 1e-6); tiled vs direct 1e-13 (double),
// 2e-6 (float).
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

struct NaiveOpt {
  LD tau = 0.07;
  bool normalize = true, symmetric = true, mean = true, decoupled = false;
};

// One direction: anchors are the rows of z; candidates its columns.
LD naive_direction(const MatL& z, const std::vector<int>& la, const std::vector<int>& lb, bool mean,
                   bool decoupled) {
  LD total = 0;
  int counted = 0;
  for (Eigen::Index i = 0; i < z.rows(); ++i) {
    LD denom = 0;
    int np = 0, nn = 0;
    for (Eigen::Index j = 0; j < z.cols(); ++j) {
      const bool pos = lb[j] == la[i];
      np += pos;
      nn += !pos;
      if (!(decoupled && pos)) denom += std::exp(z(i, j));
    }
    if (np == 0 || (decoupled && nn == 0)) continue;
    LD li = 0;
    for (Eigen::Index j = 0; j < z.cols(); ++j)
      if (lb[j] == la[i]) li += -(z(i, j) - std::log(denom));
    total += li / np;
    ++counted;
  }
  if (counted == 0) return 0;
  return mean ? total / counted : total;
}

LD naive_multi(const MatL& a, const MatL& b, const std::vector<int>& la, const std::vector<int>& lb,
               const NaiveOpt& o) {
  const MatL xa = o.normalize ? test::normalized_rows(a) : a;
  const MatL xb = o.normalize ? test::normalized_rows(b) : b;
  const MatL z = test::gram(xa, xb) / o.tau;
  LD v = naive_direction(z, la, lb, o.mean, o.decoupled);
  if (o.symmetric) v += naive_direction(MatL(z.transpose()), lb, la, o.mean, o.decoupled);
  return v;
}

// DCL straight from Yeh et al.: L_ab = mean_i [ logsumexp_{j != i} z_ij - z_ii ].
LD naive_decoupled(const MatL& a, const MatL& b, LD tau, bool normalize, bool symmetric) {
  const MatL xa = normalize ? test::normalized_rows(a) : a;
  const MatL xb = normalize ? test::normalized_rows(b) : b;
  const MatL z = test::gram(xa, xb) / tau;
  const Eigen::Index n = z.rows();
  LD lab = 0, lba = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    LD r = 0, c = 0;
    for (Eigen::Index j = 0; j < n; ++j)
      if (j != i) r += std::exp(z(i, j)), c += std::exp(z(j, i));
    lab += std::log(r) - z(i, i);
    lba += std::log(c) - z(i, i);
  }
  return symmetric ? (lab + lba) / n : lab / n;
}

double rel(double got, LD expect) {
  return std::abs(double(got - double(expect))) / std::max(1.0, std::abs(double(expect)));
}

void check_all(const MatD& a, const MatD& b, const std::vector<int>& la, const std::vector<int>& lb,
               const InBatchOptions& opt) {
  const NaiveOpt no{opt.temperature, opt.normalize, opt.symmetric, opt.reduction == Reduction::mean,
                    opt.decoupled};
  const auto got = multi_positive_info_nce(a, b, la, lb, opt);
  CHECK(rel(got.value, naive_multi(a.cast<LD>(), b.cast<LD>(), la, lb, no)) < 1e-12);
  test::check_gradient(
      got.grad_a, a,
      [&](const MatD& x) { return multi_positive_info_nce(x, b, la, lb, opt).value; },
      [&](const MatL& x) { return naive_multi(x, b.cast<LD>(), la, lb, no); });
  test::check_gradient(
      got.grad_b, b,
      [&](const MatD& x) { return multi_positive_info_nce(a, x, la, lb, opt).value; },
      [&](const MatL& x) { return naive_multi(a.cast<LD>(), x, la, lb, no); });
  const std::function<LD(const Vector<LD>&)> ft = [&](const Vector<LD>& lt) {
    NaiveOpt o = no;
    o.tau = std::exp(lt[0]);
    return naive_multi(a.cast<LD>(), b.cast<LD>(), la, lb, o);
  };
  Vector<LD> lt(1);
  lt << std::log(LD(opt.temperature));
  CHECK(rel(got.grad_log_temperature, test::numeric_gradient(ft, lt, 1e-6)[0]) < 1e-9);
}

}  // namespace

TEST_CASE("multi_positive_info_nce: value and gradients for every option") {
  const MatD a = test::random_matrix<double>(7, 4, 50), b = test::random_matrix<double>(7, 4, 51);
  // Label 3 has no partner in b and label 5 none in a: those anchors are skipped.
  const std::vector<int> la = {0, 1, 0, 2, 1, 3, 2}, lb = {1, 0, 2, 0, 5, 1, 1};
  for (bool normalize : {true, false})
    for (bool symmetric : {true, false})
      for (bool decoupled : {false, true})
        for (Reduction red : {Reduction::mean, Reduction::sum})
          for (double tau : {0.07, 0.5}) {
            CAPTURE(normalize);
            CAPTURE(symmetric);
            CAPTURE(decoupled);
            CAPTURE(tau);
            const double t = normalize ? tau : tau * 4;
            check_all(a, b, la, lb,
                      {.temperature = t,
                       .normalize = normalize,
                       .symmetric = symmetric,
                       .reduction = red,
                       .decoupled = decoupled});
          }
}

TEST_CASE("multi_positive_info_nce: different batch sizes (several captions per image)") {
  const MatD a = test::random_matrix<double>(3, 5, 52), b = test::random_matrix<double>(8, 5, 53);
  const std::vector<int> la = {0, 1, 2}, lb = {0, 0, 1, 1, 1, 2, 2, 0};
  for (bool decoupled : {false, true}) {
    CAPTURE(decoupled);
    check_all(a, b, la, lb, {.temperature = 0.2, .decoupled = decoupled});
  }
}

TEST_CASE("multi_positive_info_nce: labels 0..B-1 give in_batch_info_nce") {
  const MatD a = test::random_matrix<double>(6, 5, 54), b = test::random_matrix<double>(6, 5, 55);
  const std::vector<int> ids = {0, 1, 2, 3, 4, 5}, shuffled = {5, 3, 1, 0, 2, 4};
  for (bool symmetric : {true, false})
    for (bool decoupled : {false, true}) {
      const InBatchOptions opt{.temperature = 0.1, .symmetric = symmetric, .decoupled = decoupled};
      const auto m = multi_positive_info_nce(a, b, ids, ids, opt);
      const auto r = in_batch_info_nce(a, b, opt);
      CHECK(rel(m.value, r.value) < 1e-14);
      CHECK(test::relative_error(m.grad_a, r.grad_a) < 1e-14);
      CHECK(test::relative_error(m.grad_b, r.grad_b) < 1e-14);
      CHECK(rel(m.grad_log_temperature, r.grad_log_temperature) < 1e-14);
      // The same labels in another order on both sides: rows i, j still pair by label.
      const auto p = multi_positive_info_nce(a, b, shuffled, shuffled, opt);
      CHECK(rel(p.value, r.value) < 1e-14);
    }
}

TEST_CASE("in_batch_info_nce: decoupled against the naive DCL form") {
  const MatD a = test::random_matrix<double>(7, 4, 56), b = test::random_matrix<double>(7, 4, 57);
  for (bool normalize : {true, false})
    for (bool symmetric : {true, false})
      for (double tau : {0.07, 0.5}) {
        CAPTURE(normalize);
        CAPTURE(symmetric);
        const double t = normalize ? tau : tau * 4;
        const InBatchOptions opt{
            .temperature = t, .normalize = normalize, .symmetric = symmetric, .decoupled = true};
        const auto got = in_batch_info_nce(a, b, opt);
        CHECK(rel(got.value, naive_decoupled(a.cast<LD>(), b.cast<LD>(), t, normalize, symmetric)) <
              1e-12);
        test::check_gradient(
            got.grad_a, a, [&](const MatD& x) { return in_batch_info_nce(x, b, opt).value; },
            [&](const MatL& x) {
              return naive_decoupled(x, b.cast<LD>(), t, normalize, symmetric);
            });
        test::check_gradient(
            got.grad_b, b, [&](const MatD& x) { return in_batch_info_nce(a, x, opt).value; },
            [&](const MatL& x) {
              return naive_decoupled(a.cast<LD>(), x, t, normalize, symmetric);
            });
        const std::function<LD(const Vector<LD>&)> ft = [&](const Vector<LD>& lt) {
          return naive_decoupled(a.cast<LD>(), b.cast<LD>(), std::exp(lt[0]), normalize, symmetric);
        };
        Vector<LD> lt(1);
        lt << std::log(LD(t));
        CHECK(rel(got.grad_log_temperature, test::numeric_gradient(ft, lt, 1e-6)[0]) < 1e-9);
      }
}

TEST_CASE_TEMPLATE("multi_positive_info_nce and decoupled: edge cases", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  SUBCASE("B = 1: the positive alone (0); decoupled has nothing to contrast (0)") {
    const Matrix<T> a = test::random_matrix<T>(1, 4, 1), b = test::random_matrix<T>(1, 4, 2);
    const std::vector<int> l = {4};
    const auto m = multi_positive_info_nce(a, b, l, l);
    CHECK(std::abs(double(m.value)) < 1e-6);
    const auto d = in_batch_info_nce(a, b, {.decoupled = true});
    CHECK(d.value == T(0));
    CHECK(d.grad_a.cwiseAbs().maxCoeff() == T(0));
    CHECK(d.grad_log_temperature == T(0));
  }
  SUBCASE("one label on both sides: every pair positive; decoupled skips every anchor") {
    const Matrix<T> a = test::random_matrix<T>(4, 3, 3), b = test::random_matrix<T>(4, 3, 4);
    const std::vector<int> l(4, 1);
    const auto m = multi_positive_info_nce(a, b, l, l, {.temperature = 0.3});
    CHECK(rel(double(m.value),
              naive_multi(a.template cast<LD>(), b.template cast<LD>(), l, l, {.tau = 0.3})) < tol);
    CHECK(m.grad_a.allFinite());
    const auto d = multi_positive_info_nce(a, b, l, l, {.decoupled = true});
    CHECK(d.value == T(0));
    CHECK(d.grad_b.cwiseAbs().maxCoeff() == T(0));
  }
  SUBCASE("no label in common: nothing counted") {
    const Matrix<T> a = test::random_matrix<T>(3, 3, 5), b = test::random_matrix<T>(2, 3, 6);
    const std::vector<int> la = {0, 1, 2}, lb = {7, 8};
    const auto m = multi_positive_info_nce(a, b, la, lb);
    CHECK(m.value == T(0));
    CHECK(m.grad_a.cwiseAbs().maxCoeff() == T(0));
    CHECK(m.grad_b.cwiseAbs().maxCoeff() == T(0));
  }
  SUBCASE("identical rows, tau = 0.01") {
    const Matrix<T> a = Matrix<T>::Ones(4, 8);
    const std::vector<int> l = {0, 0, 1, 1};
    const auto m = multi_positive_info_nce(a, a, l, l, {.temperature = 0.01});
    // Every logit equal: each direction costs log 4.
    CHECK(double(m.value) == doctest::Approx(2 * std::log(4.0)).epsilon(1e-5));
    const auto d = in_batch_info_nce(a, a, {.temperature = 0.01, .decoupled = true});
    CHECK(double(d.value) == doctest::Approx(2 * std::log(3.0)).epsilon(1e-5));
    CHECK(d.grad_a.allFinite());
  }
  SUBCASE("d = 1: the gradient through the normalization is 0") {
    Matrix<T> a(3, 1), b(3, 1);
    a << 1, -2, 3;
    b << 2, 1, -1;
    const std::vector<int> l = {0, 1, 0};
    const auto m = multi_positive_info_nce(a, b, l, l, {.temperature = 0.5});
    CHECK(std::isfinite(double(m.value)));
    CHECK(m.grad_a.cwiseAbs().maxCoeff() < T(1e-5));
  }
}

TEST_CASE_TEMPLATE("multi_positive_info_nce and decoupled: tiled equals direct", T, float, double) {
  const Matrix<T> a = test::random_matrix<T>(31, 6, 60), b = test::random_matrix<T>(27, 6, 61);
  std::vector<int> la, lb;
  for (int i = 0; i < 31; ++i) la.push_back(i % 6);
  for (int j = 0; j < 27; ++j) lb.push_back((j * 5) % 7);  // label 6 only in b
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  for (bool symmetric : {true, false})
    for (bool decoupled : {false, true})
      for (std::size_t tile : {1, 5, 16, 30, 31, 100}) {
        CAPTURE(tile);
        const InBatchOptions direct{
            .temperature = 0.1, .symmetric = symmetric, .decoupled = decoupled};
        InBatchOptions tiled = direct;
        tiled.max_logits_bytes = 0;
        tiled.tile_rows = tile;
        const auto d = multi_positive_info_nce(a, b, la, lb, direct);
        const auto t = multi_positive_info_nce(a, b, la, lb, tiled);
        CHECK(rel(double(t.value), double(d.value)) < tol);
        CHECK(test::relative_error(t.grad_a, d.grad_a) < tol);
        CHECK(test::relative_error(t.grad_b, d.grad_b) < tol);
        CHECK(rel(double(t.grad_log_temperature), double(d.grad_log_temperature)) < tol);
        if (a.rows() == b.rows()) continue;
        const Matrix<T> sq = b.topRows(27);
        const auto dd = in_batch_info_nce(sq, b, direct), td = in_batch_info_nce(sq, b, tiled);
        CHECK(rel(double(td.value), double(dd.value)) < tol);
        CHECK(test::relative_error(td.grad_a, dd.grad_a) < tol);
        CHECK(rel(double(td.grad_log_temperature), double(dd.grad_log_temperature)) < tol);
      }
}

TEST_CASE("multi_positive_info_nce: bad input throws and changes nothing") {
  const MatD a = test::random_matrix<double>(3, 2, 1), b = test::random_matrix<double>(4, 2, 2);
  const MatD a0 = a, b0 = b;
  const std::vector<int> la = {0, 1, 0}, lb = {0, 1, 1, 0};
  CHECK_THROWS_WITH_AS((void)multi_positive_info_nce(a, b, std::vector<int>{0, 1}, lb),
                       doctest::Contains("labels_a"), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)multi_positive_info_nce(a, b, la, std::vector<int>{0}),
                       doctest::Contains("labels_b"), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)multi_positive_info_nce(a, MatD::Ones(4, 3), la, lb),
                       doctest::Contains("columns"), std::invalid_argument);
  CHECK_THROWS_AS((void)multi_positive_info_nce(MatD(0, 2), b, std::vector<int>{}, lb),
                  std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)multi_positive_info_nce(a, b, la, lb, {.temperature = 0}),
                       doctest::Contains("temperature"), std::invalid_argument);
  CHECK_THROWS_AS((void)multi_positive_info_nce(a, b, la, lb, {.temperature = -1}),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)multi_positive_info_nce(a, b, la, lb, {.tile_rows = 0}),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)in_batch_info_nce(a, a, {.temperature = 0, .decoupled = true}),
                  std::invalid_argument);
  CHECK(a == a0);
  CHECK(b == b0);
}

TEST_CASE("multi_positive_info_nce: several direct panels and the threaded path") {
  // B = 400 spans two direct panels (384 rows each); B = 600 also crosses the OpenMP threshold.
  for (Eigen::Index n : {400, 600}) {
    CAPTURE(n);
    const MatD a = test::random_matrix<double>(n, 4, 90), b = test::random_matrix<double>(n, 4, 91);
    std::vector<int> la, lb;
    for (Eigen::Index i = 0; i < n; ++i) {
      la.push_back(int(i % 37));
      lb.push_back(int((i * 3) % 41));
    }
    for (bool decoupled : {false, true}) {
      const InBatchOptions opt{.temperature = 0.1, .decoupled = decoupled};
      InBatchOptions tiled = opt;
      tiled.max_logits_bytes = 0;
      tiled.tile_rows = 128;
      const auto d = multi_positive_info_nce(a, b, la, lb, opt);
      const auto t = multi_positive_info_nce(a, b, la, lb, tiled);
      const NaiveOpt no{.tau = 0.1, .decoupled = decoupled};
      CHECK(rel(d.value, naive_multi(a.cast<LD>(), b.cast<LD>(), la, lb, no)) < 1e-12);
      CHECK(rel(t.value, d.value) < 1e-13);
      CHECK(test::relative_error(t.grad_a, d.grad_a) < 1e-13);
      CHECK(test::relative_error(t.grad_b, d.grad_b) < 1e-13);
      CHECK(rel(t.grad_log_temperature, d.grad_log_temperature) < 1e-13);
      const auto ib = in_batch_info_nce(a, b, opt), ibt = in_batch_info_nce(a, b, tiled);
      CHECK(rel(ibt.value, ib.value) < 1e-13);
      CHECK(test::relative_error(ibt.grad_a, ib.grad_a) < 1e-13);
      CHECK(rel(ibt.grad_log_temperature, ib.grad_log_temperature) < 1e-13);
    }
  }
}
