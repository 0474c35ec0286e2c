// Tests for include/mmrag/similarity.hpp and detail/simd.hpp.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "helpers.hpp"
#include "mmrag/similarity.hpp"

using namespace mmrag;

namespace {

struct Reference {
  long double dot = 0, l2 = 0, abs_dot = 0, aa = 0, bb = 0;
};

template <class T>
Reference reference(const std::vector<T>& a, const std::vector<T>& b) {
  Reference r;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const long double x = a[i], y = b[i];
    r.dot += x * y;
    r.abs_dot += std::fabs(x * y);
    r.l2 += (x - y) * (x - y);
    r.aa += x * x;
    r.bb += y * y;
  }
  return r;
}

template <class T>
std::vector<T> random_values(std::size_t n, std::uint64_t seed) {
  auto v = test::random_vector<T>(static_cast<Eigen::Index>(n), seed);
  return std::vector<T>(v.data(), v.data() + n);
}

// Checks every one-to-one kernel of one architecture against long double at the sizes that
// exercise the unrolled body, the single-batch loop and the scalar tail.
template <class T, class Arch>
void check_kernels_for_arch() {
  constexpr std::size_t W = xsimd::batch<T, Arch>::size;
  for (std::size_t n : {std::size_t(0), std::size_t(1), W - 1, W, W + 1, 2 * W + 1, 4 * W + 3,
                        std::size_t(1000), std::size_t(4099)}) {
    CAPTURE(n);
    CAPTURE(Arch::name());
    const auto a = random_values<T>(n, 11 + n), b = random_values<T>(n, 97 + n);
    const Reference r = reference(a, b);
    // Summation error bound: n * eps * sum|terms| (a loose multiple of the worst case).
    const double tol = (double(n) + 1) * test::eps<T>() * double(r.abs_dot + r.aa + r.bb) + 1e-30;
    CHECK(std::fabs(double(mmrag::dot<T, Arch>(a.data(), b.data(), n)) - double(r.dot)) <= tol);
    CHECK(std::fabs(double(mmrag::l2_squared<T, Arch>(a.data(), b.data(), n)) - double(r.l2)) <=
          tol * 4);
    const long double cos_ref = (r.aa == 0 || r.bb == 0) ? 0 : r.dot / std::sqrt(r.aa * r.bb);
    CHECK(std::fabs(double(mmrag::cosine<T, Arch>(a.data(), b.data(), n)) - double(cos_ref)) <=
          (double(n) + 4) * test::eps<T>() * 4);

    // one-to-many over 7 rows with a padded stride, every metric
    const std::size_t rows = 7, stride = n + 3;
    std::vector<T> base(rows * stride + 1, T(99));
    for (std::size_t row = 0; row < rows; ++row) {
      auto v = random_values<T>(n, 1000 + row);
      std::copy(v.begin(), v.end(), base.begin() + row * stride);
    }
    for (Metric m : {Metric::inner_product, Metric::cosine, Metric::l2}) {
      std::vector<T> out(rows);
      one_to_many<T, Arch>(a.data(), base.data(), rows, n, stride, m, out.data());
      for (std::size_t row = 0; row < rows; ++row) {
        std::vector<T> x(base.begin() + row * stride, base.begin() + row * stride + n);
        const Reference rr = reference(a, x);
        long double expect = m == Metric::inner_product   ? rr.dot
                             : m == Metric::l2            ? rr.l2
                             : (rr.aa == 0 || rr.bb == 0) ? 0
                                                          : rr.dot / std::sqrt(rr.aa * rr.bb);
        const double t =
            m == Metric::cosine
                ? (double(n) + 4) * test::eps<T>() * 4
                : (double(n) + 1) * test::eps<T>() * double(rr.abs_dot + rr.aa + rr.bb) * 4 + 1e-30;
        CHECK(std::fabs(double(out[row]) - double(expect)) <= t);
      }
    }
  }
}

}  // namespace

TEST_CASE_TEMPLATE("kernels match a long-double reference (default arch)", T, float, double) {
  check_kernels_for_arch<T, xsimd::default_arch>();
}

TEST_CASE_TEMPLATE("kernels match a long-double reference (sse2)", T, float, double) {
  check_kernels_for_arch<T, xsimd::sse2>();
}

TEST_CASE_TEMPLATE("cosine with a zero vector is 0", T, float, double) {
  std::vector<T> zero(37, T(0)), x = random_values<T>(37, 5);
  CHECK(mmrag::cosine(zero.data(), x.data(), 37) == T(0));
  CHECK(mmrag::cosine(x.data(), zero.data(), 37) == T(0));
  CHECK(mmrag::cosine(zero.data(), zero.data(), 37) == T(0));
  CHECK(mmrag::cosine(x.data(), x.data(), 37) == doctest::Approx(1.0).epsilon(10 * test::eps<T>()));
}

TEST_CASE_TEMPLATE("span overloads check sizes", T, float, double) {
  std::vector<T> a(5, T(1)), b(6, T(1));
  std::span<const T> sa(a), sb(b), sb5(b.data(), 5);
  CHECK_THROWS_AS((void)mmrag::dot(sa, sb), std::invalid_argument);
  CHECK_THROWS_AS((void)mmrag::l2_squared(sa, sb), std::invalid_argument);
  CHECK_THROWS_AS((void)mmrag::cosine(sa, sb), std::invalid_argument);
  CHECK(mmrag::dot(sa, sb5) == T(5));
  CHECK(mmrag::l2_squared(sa, sb5) == T(0));
  CHECK(mmrag::cosine(sa, sb5) == doctest::Approx(1.0));
}

TEST_CASE_TEMPLATE("Eigen one_to_many checks the query size", T, float, double) {
  const Matrix<T> base = test::random_matrix<T>(9, 16, 3);
  std::vector<T> q(16, T(1)), bad(15, T(1));
  const Vector<T> s = one_to_many<T>(std::span<const T>(q), base, Metric::inner_product);
  for (Eigen::Index r = 0; r < 9; ++r)
    CHECK(double(s[r]) == doctest::Approx(double(base.row(r).sum())).epsilon(1e-5));
  CHECK_THROWS_AS((void)one_to_many<T>(std::span<const T>(bad), base, Metric::l2),
                  std::invalid_argument);
}

TEST_CASE_TEMPLATE("normalize_rows keeps zero rows zero", T, float, double) {
  Matrix<T> m = test::random_matrix<T>(5, 33, 8);
  m.row(2).setZero();
  normalize_rows(m);
  for (Eigen::Index r = 0; r < 5; ++r) {
    if (r == 2) {
      CHECK(m.row(r).squaredNorm() == T(0));
    } else {
      CHECK(double(m.row(r).norm()) == doctest::Approx(1.0).epsilon(10 * test::eps<T>()));
    }
  }
}

TEST_CASE_TEMPLATE("pairwise matches naive loops for every metric", T, float, double) {
  Matrix<T> a = test::random_matrix<T>(13, 21, 1), b = test::random_matrix<T>(17, 21, 2);
  b.row(3).setZero();
  b.row(4) = a.row(5);  // exact duplicate: l2 must clamp to a non-negative value
  for (Metric m : {Metric::inner_product, Metric::cosine, Metric::l2}) {
    CAPTURE(to_string(m));
    const Matrix<T> p = pairwise(a, b, m);
    REQUIRE(p.rows() == 13);
    REQUIRE(p.cols() == 17);
    for (Eigen::Index i = 0; i < 13; ++i)
      for (Eigen::Index j = 0; j < 17; ++j) {
        long double ab = 0, aa = 0, bb = 0, l2 = 0;
        for (Eigen::Index c = 0; c < 21; ++c) {
          const long double x = a(i, c), y = b(j, c);
          ab += x * y, aa += x * x, bb += y * y, l2 += (x - y) * (x - y);
        }
        const long double expect = m == Metric::inner_product ? ab
                                   : m == Metric::l2          ? l2
                                   : (aa == 0 || bb == 0)     ? 0
                                                              : ab / std::sqrt(aa * bb);
        CHECK(std::fabs(double(p(i, j)) - double(expect)) <=
              100 * test::eps<T>() * double(1 + aa + bb));
        if (m == Metric::l2) CHECK(p(i, j) >= T(0));
      }
  }
  CHECK_THROWS_AS((void)pairwise(a, Matrix<T>(3, 20), Metric::l2), std::invalid_argument);
}
