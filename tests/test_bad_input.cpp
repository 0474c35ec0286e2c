// The bad-input sweep: every public function with wrong shapes, NaN / Inf, empty inputs,
// k = 0 and k > n, tau <= 0, out-of-range labels and positives. Each must throw
// std::invalid_argument (or return its documented value), and no object may change:
// indexes are compared field by field (FlatIndex) or byte by byte (IvfIndex::serialize)
// before and after every failing call.
#include <doctest/doctest.h>

#include <limits>
#include <numeric>

#include "helpers.hpp"
#include "mmrag/mmrag.hpp"

using namespace mmrag;
using M = Matrix<float>;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

M with(M m, Eigen::Index r, Eigen::Index c, float v) {
  m(r, c) = v;
  return m;
}

// Everything observable about a FlatIndex, for before / after comparison.
struct FlatSnapshot {
  std::size_t size;
  std::vector<float> vectors;
  std::vector<Index> ids;
  std::vector<Modality> modality;
  explicit FlatSnapshot(const FlatIndex<float>& f) : size(f.size()) {
    for (std::size_t i = 0; i < f.size(); ++i) {
      const auto v = f.vector(i);
      vectors.insert(vectors.end(), v.data(), v.data() + v.size());
      ids.push_back(f.id(i));
      modality.push_back(f.modality(i));
    }
  }
  bool operator==(const FlatSnapshot&) const = default;
};

}  // namespace

TEST_CASE("sweep: similarity") {
  std::vector<float> a(4, 1.f), b(5, 1.f);
  CHECK_THROWS_AS((void)dot(std::span<const float>(a), std::span<const float>(b)),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)l2_squared(std::span<const float>(a), std::span<const float>(b)),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)cosine(std::span<const float>(a), std::span<const float>(b)),
                  std::invalid_argument);
  CHECK(dot(std::span<const float>(), std::span<const float>()) == 0.f);  // empty: documented 0
  CHECK(cosine(std::span<const float>(), std::span<const float>()) == 0.f);
  CHECK_THROWS_AS((void)pairwise(M::Ones(2, 3), M::Ones(2, 4), Metric::l2), std::invalid_argument);
  CHECK(pairwise(M(0, 3), M::Ones(2, 3), Metric::l2).rows() == 0);
  CHECK_THROWS_AS(
      (void)one_to_many<float>(std::span<const float>(a), M::Ones(3, 5), Metric::cosine),
      std::invalid_argument);
}

TEST_CASE("sweep: losses") {
  const M a = test::random_matrix<float>(4, 3, 1), b = test::random_matrix<float>(4, 3, 2);
  const std::vector<int> same = {1, 0, 1, 0};
  // Wrong shapes and empty batches, for every pair loss.
  for (const M& bad : {M(M::Ones(3, 3)), M(M::Ones(4, 2)), M(0, 3)}) {
    CHECK_THROWS_AS((void)loss::contrastive(a, bad, same), std::invalid_argument);
    CHECK_THROWS_AS((void)loss::in_batch_info_nce(a, bad), std::invalid_argument);
    CHECK_THROWS_AS((void)loss::sigmoid_pairwise(a, bad), std::invalid_argument);
  }
  CHECK_THROWS_AS((void)loss::in_batch_info_nce(M(0, 3), M(0, 3)), std::invalid_argument);
  // Labels and positives.
  CHECK_THROWS_AS((void)loss::contrastive(a, b, std::vector<int>{1, 0, 1}), std::invalid_argument);
  CHECK_THROWS_AS((void)loss::contrastive(a, b, std::vector<int>{1, 0, -1, 0}),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)loss::info_nce(a, std::vector<int>{0, 1, 2, 3}),
                  std::invalid_argument);  // 3 >= cols
  CHECK_THROWS_AS((void)loss::info_nce(a, std::vector<int>{0, 1, 2}), std::invalid_argument);
  // Temperatures, margins, bias.
  for (double tau : {0.0, -0.1, double(kNaN), double(kInf)}) {
    CAPTURE(tau);
    CHECK_THROWS_AS((void)loss::in_batch_info_nce(a, b, {.temperature = tau}),
                    std::invalid_argument);
    CHECK_THROWS_AS((void)loss::sigmoid_pairwise(a, b, {.temperature = tau}),
                    std::invalid_argument);
  }
  CHECK_THROWS_AS((void)loss::contrastive(a, b, same, {.margin = -0.5}), std::invalid_argument);
  CHECK_THROWS_AS((void)loss::sigmoid_pairwise(a, b, {.bias = double(kNaN)}),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)loss::in_batch_info_nce(a, b, {.tile_rows = 0}), std::invalid_argument);
  const Vector<float> empty(0), two = Vector<float>::Ones(2);
  CHECK_THROWS_AS((void)loss::nce(empty, two), std::invalid_argument);
  CHECK_THROWS_AS((void)loss::nce_logits(two, Vector<float>(Vector<float>::Ones(3)), 1.0),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)loss::nce_logits(two, two, 0.0), std::invalid_argument);
}

TEST_CASE("sweep: FlatIndex mutating calls leave it unchanged") {
  FlatIndex<float> index(3, Metric::l2);
  const std::vector<Index> ids = {10, 11};
  const std::vector<Modality> mods = {1, 2};
  index.add(M::Ones(2, 3), ids, mods);
  const FlatSnapshot before(index);
  const M good = test::random_matrix<float>(3, 3, 5);
  CHECK_THROWS_AS(index.add(with(good, 2, 2, kNaN)), std::invalid_argument);
  CHECK_THROWS_AS(index.add(with(good, 0, 0, kInf)), std::invalid_argument);
  CHECK_THROWS_AS(index.add(with(good, 1, 1, -kInf)), std::invalid_argument);
  CHECK_THROWS_AS(index.add(M::Ones(3, 4)), std::invalid_argument);
  CHECK_THROWS_AS(index.add(good, std::vector<Index>{1, 2}), std::invalid_argument);
  CHECK_THROWS_AS(index.add(good, {}, std::vector<Modality>{1}), std::invalid_argument);
  CHECK_THROWS_AS(index.add(good, {}, std::vector<Modality>{1, 2, 99}), std::invalid_argument);
  CHECK(FlatSnapshot(index) == before);
  // Searches: bad queries and k.
  CHECK_THROWS_AS((void)index.search(M::Ones(1, 2), 1), std::invalid_argument);
  CHECK_THROWS_AS((void)index.search(with(M::Ones(2, 3), 1, 1, kNaN), 1), std::invalid_argument);
  CHECK_THROWS_AS((void)index.search(M::Ones(1, 3), 0), std::invalid_argument);
  CHECK(index.search(M(0, 3), 4).ids.rows() == 0);      // no queries: an empty result
  CHECK(index.search(M::Ones(1, 3), 9).found(0) == 2);  // k > n: padded
  index.add(M(0, 3));                                   // adding nothing is a no-op
  CHECK(FlatSnapshot(index) == before);
}

TEST_CASE("sweep: IvfIndex mutating calls leave it unchanged") {
  const M base = test::random_matrix<float>(200, 4, 3);
  IvfIndex<float> index(4, 8, Metric::cosine);
  const std::vector<char> untrained = index.serialize();
  CHECK_THROWS_AS(index.add(base), std::invalid_argument);
  CHECK_THROWS_AS(index.train(base.topRows(7)), std::invalid_argument);  // nlist > rows
  CHECK_THROWS_AS(index.train(with(base, 5, 1, kNaN)), std::invalid_argument);
  CHECK_THROWS_AS(index.train(M::Ones(100, 3)), std::invalid_argument);
  CHECK(index.serialize() == untrained);
  index.train(base);
  index.add(base.topRows(100));
  const std::vector<char> before = index.serialize();
  CHECK_THROWS_AS(index.add(with(base, 150, 0, kNaN)), std::invalid_argument);
  CHECK_THROWS_AS(index.add(base, std::vector<Index>{1}), std::invalid_argument);
  CHECK_THROWS_AS(index.add(base, {}, std::vector<Modality>(200, 64)), std::invalid_argument);
  CHECK_THROWS_AS(index.add(M::Ones(2, 5)), std::invalid_argument);
  CHECK_THROWS_AS(index.train(base), std::invalid_argument);  // already holds vectors
  CHECK_THROWS_AS((void)index.search(base, 0), std::invalid_argument);
  CHECK_THROWS_AS((void)index.search(base, 3, {.nprobe = 0}), std::invalid_argument);
  CHECK_THROWS_AS((void)index.search(with(base, 0, 0, kInf), 3), std::invalid_argument);
  CHECK(index.remove_ids(std::vector<Index>{-5, 100000}) == 0);  // unknown ids: nothing removed
  CHECK(index.serialize() == before);
  CHECK_THROWS_AS(IvfIndex<float>(0, 4, Metric::l2), std::invalid_argument);
  CHECK_THROWS_AS(IvfIndex<float>(4, 0, Metric::l2), std::invalid_argument);
}

TEST_CASE("sweep: kmeans, io, multimodal") {
  CHECK_THROWS_AS((void)kmeans<float>(M::Ones(3, 2), 0), std::invalid_argument);
  CHECK_THROWS_AS((void)kmeans<float>(M::Ones(3, 2), 4), std::invalid_argument);
  CHECK_THROWS_AS((void)kmeans<float>(with(M::Ones(3, 2), 0, 0, kNaN), 2), std::invalid_argument);
  CHECK_THROWS_AS((void)kmeans<float>(M(3, 0), 2), std::invalid_argument);
  CHECK_THROWS_AS((void)io::read_npy<float>("/nonexistent.npy"), std::runtime_error);
  CHECK_THROWS_AS((void)IvfIndex<float>::load("/nonexistent.ivf"), std::runtime_error);
  CHECK_THROWS_AS((void)IvfIndex<float>::parse(std::vector<char>()), std::runtime_error);

  ModalityNames names;
  const std::size_t n = names.size();
  CHECK_THROWS_AS((void)names["unknown"], std::invalid_argument);
  CHECK_THROWS_AS(names.add(""), std::invalid_argument);
  CHECK(names.size() == n);
  CHECK_THROWS_AS(ModalitySet{64}, std::invalid_argument);
  CHECK_THROWS_AS(IdSet(std::vector<Index>{3, -1}), std::invalid_argument);

  FlatIndex<float> index(2, Metric::cosine);
  index.add(M::Ones(3, 2));
  const std::vector<Index> pos = {0};
  CHECK_THROWS_AS((void)mine_hard_negatives(index, M::Ones(2, 2), pos), std::invalid_argument);
  CHECK_THROWS_AS((void)mine_hard_negatives(index, M::Ones(1, 3), pos),
                  std::invalid_argument);  // dim
  CHECK_THROWS_AS((void)mine_hard_negatives(index, M::Ones(1, 2), pos, {.negatives = 0}),
                  std::invalid_argument);
  const std::vector<float> e = {1, 0};
  CHECK_THROWS_AS((void)compose<float>(std::span<const Term<float>>()), std::invalid_argument);
  CHECK_THROWS_AS((void)compose<float>({{e, 1.f}, {e, -1.f}}), std::invalid_argument);
}
