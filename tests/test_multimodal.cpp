// Tests for include/mmrag/multimodal.hpp (and the umbrella header compiling as a whole).
#include <doctest/doctest.h>

#include <numeric>

#include "helpers.hpp"
#include "mmrag/mmrag.hpp"

using namespace mmrag;

TEST_CASE("ModalityNames: built-ins, user modalities, unknown names") {
  ModalityNames names;
  CHECK(names["text"] == modality::text);
  CHECK(names["image"] == modality::image);
  CHECK(names.name(modality::video) == "video");
  const Modality sketch = names.add("sketch");
  CHECK(sketch == modality::first_user);
  CHECK(names.add("sketch") == sketch);
  CHECK(names["sketch"] == sketch);
  const ModalitySet s = names.set({"image", "sketch"});
  CHECK(s.contains(modality::image));
  CHECK(s.contains(sketch));
  CHECK(!s.contains(modality::text));
  CHECK_THROWS_WITH_AS((void)names["smell"], doctest::Contains("unknown modality 'smell'"),
                       std::invalid_argument);
  CHECK_THROWS_AS((void)names.name(60), std::invalid_argument);
  CHECK_THROWS_AS(names.add(""), std::invalid_argument);
  for (int i = 0; i < 59; ++i) {
    std::string name = "m";  // (not "m" + ...: GCC 12 warns falsely, -Wrestrict)
    name += std::to_string(i);
    names.add(name);
  }
  CHECK(names.size() == 64);
  CHECK_THROWS_WITH_AS(names.add("one-too-many"), doctest::Contains("64"), std::invalid_argument);
  CHECK(names.size() == 64);
}

TEST_CASE_TEMPLATE("compose: hand computation and scale invariance", T, float, double) {
  const std::vector<T> a = {3, 4, 0}, b = {0, 0, 2};
  // normalize(a) = (0.6, 0.8, 0), normalize(b) = (0, 0, 1); 1·â + 2·b̂ = (0.6, 0.8, 2), norm sqrt(5)
  const Matrix<T> q = compose<T>({{a, T(1)}, {b, T(2)}});
  REQUIRE(q.rows() == 1);
  REQUIRE(q.cols() == 3);
  const double r5 = std::sqrt(5.0);
  CHECK(double(q(0, 0)) == doctest::Approx(0.6 / r5));
  CHECK(double(q(0, 1)) == doctest::Approx(0.8 / r5));
  CHECK(double(q(0, 2)) == doctest::Approx(2.0 / r5));
  const std::vector<T> a_big = {300, 400, 0}, b_small = {0, 0, T(0.001)};
  const Matrix<T> q2 = compose<T>({{a_big, T(1)}, {b_small, T(2)}});
  CHECK((q2 - q).cwiseAbs().maxCoeff() < T(1e-6));
  // A negative weight subtracts a direction.
  const Matrix<T> q3 = compose<T>({{a, T(1)}, {b, T(-1)}});
  CHECK(q3(0, 2) < T(0));
}

TEST_CASE("compose: bad input") {
  const std::vector<double> a = {1, 0}, b = {2, 0}, c = {1, 0, 0}, zero = {0, 0},
                            nan = {std::nan(""), 1};
  CHECK_THROWS_WITH_AS((void)compose<double>(std::span<const Term<double>>()),
                       doctest::Contains("at least one term"), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)compose<double>({{a, 1.0}, {b, -1.0}}), doctest::Contains("cancel"),
                       std::invalid_argument);
  CHECK_THROWS_AS((void)compose<double>({{a, 1.0}, {c, 1.0}}), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)compose<double>({{zero, 1.0}}), doctest::Contains("zero vector"),
                       std::invalid_argument);
  CHECK_THROWS_AS((void)compose<double>({{nan, 1.0}}), std::invalid_argument);
  CHECK_THROWS_AS((void)compose<double>({{a, std::nan("")}}), std::invalid_argument);
  CHECK_THROWS_AS((void)compose<double>({{a, 0.0}}), std::invalid_argument);
}

TEST_CASE_TEMPLATE("mine_hard_negatives: never the positive, ordered, exclusions respected", T,
                   float, double) {
  const Matrix<T> base = test::random_matrix<T>(500, 6, 1);
  std::vector<int> label(500);
  for (std::size_t i = 0; i < 500; ++i) label[i] = int(i % 5);
  FlatIndex<T> flat(6, Metric::cosine);
  flat.add(base);
  IvfIndex<T> ivf(6, 8, Metric::cosine);
  ivf.train(base);
  ivf.add(base);
  const Matrix<T> anchors = base.topRows(40) + test::random_matrix<T>(40, 6, 2, T(0.05));
  std::vector<Index> positives(40);
  std::iota(positives.begin(), positives.end(), Index(0));  // anchor i's positive is item i

  auto check = [&](const HardNegatives<T>& hn, bool excluded_labels) {
    REQUIRE(hn.negatives.rows() == 40);
    REQUIRE(hn.negatives.cols() == 7);
    for (Eigen::Index i = 0; i < 40; ++i) {
      for (Eigen::Index j = 0; j < 7; ++j) {
        const Index id = hn.negatives(i, j);
        REQUIRE(id >= 0);
        CHECK(id != positives[std::size_t(i)]);
        if (excluded_labels) CHECK(label[std::size_t(id)] != label[std::size_t(i)]);
        if (j > 0) CHECK(hn.scores(i, j) <= hn.scores(i, j - 1));
      }
    }
  };
  SUBCASE("flat, plain") {
    const auto hn = mine_hard_negatives(flat, anchors, positives, {.negatives = 7});
    check(hn, false);
    // They are exactly the top of an exact search with the positive removed.
    const auto hits = flat.search(anchors, 8);
    for (Eigen::Index i = 0; i < 40; ++i) {
      std::vector<Index> expect;
      for (Eigen::Index c = 0; c < 8 && expect.size() < 7; ++c)
        if (hits.ids(i, c) != positives[std::size_t(i)]) expect.push_back(hits.ids(i, c));
      for (std::size_t j = 0; j < 7; ++j) CHECK(hn.negatives(i, Eigen::Index(j)) == expect[j]);
    }
    const Matrix<Index> cand = hn.candidates(positives);
    CHECK(cand.cols() == 8);
    CHECK(cand(3, 0) == 3);
    CHECK(hn.positive_columns() == std::vector<int>(40, 0));
  }
  SUBCASE("flat and ivf, excluding same-label items (forces widening)") {
    MiningOptions opt{.negatives = 7};
    opt.exclude = [&](std::size_t anchor, Index id) {
      return label[std::size_t(id)] == label[anchor];
    };
    check(mine_hard_negatives(flat, anchors, positives, opt), true);
    opt.search.nprobe = 8;
    check(mine_hard_negatives(ivf, anchors, positives, opt), true);
  }
  SUBCASE("fewer items than asked: padded with -1") {
    FlatIndex<T> tiny(6, Metric::l2);
    tiny.add(base.topRows(3));
    const std::vector<Index> pos = {0};
    const auto hn = mine_hard_negatives(tiny, base.topRows(1), pos, {.negatives = 5});
    CHECK(hn.negatives(0, 1) >= 0);
    CHECK(hn.negatives(0, 2) == -1);
  }
  SUBCASE("bad input") {
    const std::vector<Index> short_pos = {0, 1};
    CHECK_THROWS_AS((void)mine_hard_negatives(flat, anchors, short_pos), std::invalid_argument);
    CHECK_THROWS_AS((void)mine_hard_negatives(flat, anchors, positives, {.negatives = 0}),
                    std::invalid_argument);
  }
}

TEST_CASE("the loop closes: mined candidates feed info_nce") {
  const Matrix<double> items = test::random_matrix<double>(200, 4, 9);
  FlatIndex<double> index(4, Metric::inner_product);
  index.add(items);
  const Matrix<double> anchors = items.topRows(5);
  const std::vector<Index> positives = {0, 1, 2, 3, 4};
  const auto hn = mine_hard_negatives(index, anchors, positives, {.negatives = 3});
  const Matrix<Index> cand = hn.candidates(positives);
  Matrix<double> scores(5, 4);
  for (Eigen::Index i = 0; i < 5; ++i)
    for (Eigen::Index j = 0; j < 4; ++j) scores(i, j) = anchors.row(i).dot(items.row(cand(i, j)));
  const auto l = loss::info_nce(scores, hn.positive_columns());
  CHECK(std::isfinite(l.value));
  CHECK(l.grad_scores.rows() == 5);
}
