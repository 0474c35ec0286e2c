// Exact search through int8 screening (FlatIndex::enable_screening, detail/int8_screen.hpp):
// ids and scores equal the float32 search's — every metric, one query and batches (including a
// tail of fewer than 8 queries and rows not filling a block of 16), dims not a multiple of 4,
// k > n — and on adversarial data: exact ties, near-ties one ulp apart, large coordinates,
// huge and tiny norms, rows added after training far outside the trained ranges. The copy
// follows add / remove_ids / clear; filters, load, bad input and the strong guarantee.
// Also compiled at -march=x86-64 and x86-64-v3 (tests/meson.build): the portable kernel.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "brute_force.hpp"
#include "helpers.hpp"
#include "mmrag/flat_index.hpp"

using namespace mmrag;

namespace {

// Both indexes hold the same rows; `screened` searches through its int8 copy.
void require_same(const FlatIndex<float>& plain, const FlatIndex<float>& screened,
                  const Matrix<float>& q, std::size_t k, const SearchParams& p = {}) {
  const Hits<float> a = plain.search(q, k, p), b = screened.search(q, k, p);
  for (Eigen::Index i = 0; i < q.rows(); ++i) {
    CAPTURE(i);
    REQUIRE(a.ids.row(i) == b.ids.row(i));
    REQUIRE(a.scores.row(i) == b.scores.row(i));
  }
}

struct Pair {
  FlatIndex<float> plain, screened;
  Pair(std::size_t dim, Metric m) : plain(dim, m), screened(dim, m) { screened.enable_screening(); }
  void add(const Matrix<float>& x, std::span<const Index> ids = {}) {
    plain.add(x, ids);
    screened.add(x, ids);
  }
};

}  // namespace

TEST_CASE("screening: ids and scores equal the float32 search, every metric, any batch") {
  const Matrix<float> x = test::random_matrix<float>(3001, 41, 1);  // 41: dims padded to 44
  const Matrix<float> q = test::random_matrix<float>(37, 41, 2);    // 37 = 4 × 8 + 5 queries
  for (Metric m : {Metric::l2, Metric::inner_product, Metric::cosine}) {
    CAPTURE(int(m));
    Pair p(41, m);
    p.add(x.topRows(1000));  // ranges trained on these rows (screening was on before any add)
    p.add(x.bottomRows(2001));
    REQUIRE(p.screened.screening() == Storage::int8);
    for (std::size_t k : {1, 10, 3100}) require_same(p.plain, p.screened, q, k);
    require_same(p.plain, p.screened, q.topRows(1), 10);
    require_same(p.plain, p.screened, q.topRows(3), 10);
    // ...and it is the true top-k (long-double brute force).
    const Hits<float> h = p.screened.search(q.topRows(5), 10);
    std::vector<Index> ids(3001);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(i);
    for (Eigen::Index i = 0; i < 5; ++i) {
      const auto ref = test::brute_force<float>(x, ids, q.row(i).data(), m);
      for (Eigen::Index j = 0; j < 10; ++j) CHECK(h.ids(i, j) == ref[std::size_t(j)].id);
    }
  }
}

TEST_CASE("screening on adversarial data equals the float32 search") {
  SUBCASE("exact ties: duplicates under shuffled ids go to the smaller id") {
    Matrix<float> x = test::random_matrix<float>(64, 24, 3);
    Matrix<float> dup(320, 24);
    for (Eigen::Index i = 0; i < dup.rows(); ++i) dup.row(i) = x.row(i % 64);
    std::vector<Index> ids(320);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index((i * 7919) % 1000 + 5);
    for (Metric m : {Metric::l2, Metric::inner_product, Metric::cosine}) {
      Pair p(24, m);
      p.add(dup, ids);
      require_same(p.plain, p.screened, x.topRows(20), 17);
    }
  }
  SUBCASE("near-ties: rows one ulp apart in one coordinate") {
    Matrix<float> x = test::random_matrix<float>(200, 16, 4);
    Matrix<float> near(800, 16);
    for (Eigen::Index i = 0; i < near.rows(); ++i) {
      near.row(i) = x.row(i % 200);
      float& c = near(i, i % 16);
      for (Eigen::Index t = 0; t < i / 200; ++t) c = std::nextafter(c, 10.f);
    }
    for (Metric m : {Metric::l2, Metric::inner_product, Metric::cosine}) {
      Pair p(16, m);
      p.add(near);
      require_same(p.plain, p.screened, x.topRows(30), 12);
    }
  }
  SUBCASE("large coordinates: Earth-centred points metres apart (l2)") {
    std::mt19937_64 rng(5);
    std::normal_distribution<double> g(0.0, 300.0);
    Matrix<float> x(2000, 3), q(20, 3);
    for (Eigen::Index i = 0; i < x.rows() + q.rows(); ++i) {
      Matrix<float>& m = i < x.rows() ? x : q;
      const Eigen::Index r = i < x.rows() ? i : i - x.rows();
      m(r, 0) = float(4208848 + std::round(g(rng)));
      m(r, 1) = float(2334863.5 + std::round(g(rng)));
      m(r, 2) = float(4171170 + std::round(g(rng)));
    }
    Pair p(3, Metric::l2);
    p.add(x);
    require_same(p.plain, p.screened, q, 10);
  }
  SUBCASE("huge and tiny norms side by side; products overflowing float") {
    Matrix<float> x = test::random_matrix<float>(600, 20, 6);
    for (Eigen::Index i = 0; i < 600; i += 3) x.row(i) *= 1e18f;
    for (Eigen::Index i = 1; i < 600; i += 3) x.row(i) *= 1e-18f;
    const Matrix<float> q = test::random_matrix<float>(9, 20, 7, 1e18f);
    for (Metric m : {Metric::inner_product, Metric::cosine}) {
      Pair p(20, m);
      p.add(x);
      require_same(p.plain, p.screened, q, 10);
    }
    Pair p(20, Metric::l2);
    p.add(x / 1e6f);  // squared norms near 1e24: finite in float
    require_same(p.plain, p.screened, q / 1e6f, 10);
  }
  SUBCASE("rows added after training, far outside the trained ranges (clamped codes)") {
    for (Metric m : {Metric::l2, Metric::inner_product, Metric::cosine}) {
      Pair p(32, m);
      p.add(test::random_matrix<float>(500, 32, 8, 0.01f));  // ranges about ±0.03
      p.add(test::random_matrix<float>(500, 32, 9, 100.f));  // every code clamps
      require_same(p.plain, p.screened, test::random_matrix<float>(25, 32, 10, 50.f), 10);
    }
  }
}

TEST_CASE("screening and the float32 scan are exact at the ends of float's range") {
  // Found by a break-it review. (1) Every score finite, but the screen's bias q·vmin (4e38)
  // overflows float: such queries must take the float32 scan. (2) Tiny data: float's rounding
  // there is absolute, not relative; both bounds carry an underflow term. (3) Scores beyond
  // FLT_MAX: every row is rescored in double. Each against the long-double brute force.
  const auto check = [](const Matrix<float>& x, const Matrix<float>& q, Metric m, std::size_t k) {
    Pair p(std::size_t(x.cols()), m);
    p.add(x);
    require_same(p.plain, p.screened, q, k);
    std::vector<Index> ids(std::size_t(x.rows()));
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(i);
    const Hits<float> h = p.screened.search(q, k);
    for (Eigen::Index i = 0; i < q.rows(); ++i) {
      const auto ref = test::brute_force<float>(x, ids, q.row(i).data(), m);
      for (Eigen::Index j = 0; j < Eigen::Index(k); ++j) {
        CAPTURE(i);
        CAPTURE(j);
        CHECK(h.ids(i, j) == ref[std::size_t(j)].id);
      }
    }
  };
  Matrix<float> x(3, 2), q(1, 2);
  x << -1e19f, 1e19f, 1e19f, -1e19f, -1e19f, -0.5e19f;  // inner products 0, 0, 3e38
  q << -2e19f, -2e19f;
  check(x, q, Metric::inner_product, 1);
  for (float scale : {1e-22f, 1e-30f, 1e-40f, 1e20f})
    for (Metric m : {Metric::l2, Metric::inner_product}) {
      CAPTURE(scale);
      CAPTURE(int(m));
      check(test::random_matrix<float>(200, 7, 21, scale), test::random_matrix<float>(6, 7, 22, scale),
            m, 5);
    }
}

TEST_CASE("screening follows add, remove_ids and clear; filters, load, memory") {
  const Matrix<float> x = test::random_matrix<float>(1500, 64, 11);
  const Matrix<float> q = test::random_matrix<float>(12, 64, 12);
  std::vector<Modality> mods(1500);
  for (std::size_t i = 0; i < mods.size(); ++i) mods[i] = Modality(i % 3);
  FlatIndex<float> plain(64, Metric::cosine), screened(64, Metric::cosine);
  plain.add(x, {}, mods);
  screened.add(x, {}, mods);
  const std::size_t before = screened.memory_bytes();
  screened.enable_screening();  // on an index that already holds rows
  CHECK(screened.memory_bytes() >= before + 1500 * 64);
  require_same(plain, screened, q, 10);

  std::vector<Index> doomed;
  for (Index i = 0; i < 1500; i += 4) doomed.push_back(i);
  CHECK(plain.remove_ids(doomed) == screened.remove_ids(doomed));
  require_same(plain, screened, q, 10);
  SearchParams filtered;  // filtered searches take the float32 scan: same answer
  filtered.filter.modalities = ModalitySet{1};
  require_same(plain, screened, q, 10, filtered);

  const auto bytes = screened.serialize();  // the copy is not saved
  FlatIndex<float> loaded = FlatIndex<float>::parse(bytes);
  CHECK_FALSE(loaded.screening().has_value());
  loaded.enable_screening();
  require_same(plain, loaded, q, 10);

  plain.clear();
  screened.clear();
  const Hits<float> empty = screened.search(q, 3);
  CHECK((empty.ids.array() == -1).all());
  plain.add(x.topRows(100));
  screened.add(x.topRows(100));
  require_same(plain, screened, q, 5);

  screened.disable_screening();
  CHECK_FALSE(screened.screening().has_value());
  require_same(plain, screened, q, 5);
}

TEST_CASE("screening: bad input throws std::invalid_argument and changes nothing") {
  FlatIndex<double> d(8, Metric::l2);
  CHECK_THROWS_AS(d.enable_screening(), std::invalid_argument);
  FlatIndex<float> coded(8, Metric::l2, Storage::int8);
  CHECK_THROWS_AS(coded.enable_screening(), std::invalid_argument);
  CHECK_FALSE(coded.screening().has_value());
  FlatIndex<float> f(8, Metric::l2);
  CHECK_THROWS_WITH_AS(f.enable_screening(Storage::bfloat16),
                       doctest::Contains("screening codes must be int8"), std::invalid_argument);
  CHECK_FALSE(f.screening().has_value());

  // Strong guarantee on add: a NaN row leaves rows, copy and results as they were.
  Pair p(8, Metric::inner_product);
  p.add(test::random_matrix<float>(300, 8, 13));
  Matrix<float> bad = test::random_matrix<float>(5, 8, 14);
  bad(3, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(p.screened.add(bad), std::invalid_argument);
  CHECK(p.screened.size() == 300);
  require_same(p.plain, p.screened, test::random_matrix<float>(9, 8, 15), 10);
}
