// search/types.hpp: merge_hits (exact k-way merge of shards), IdSet (memory per id, any int64
// >= 0), ModalitySet{} meaning "all", the SearchIndex concept.
#include <doctest/doctest.h>

#include <limits>
#include <vector>

#include "brute_force.hpp"
#include "helpers.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"
#include "mmrag/search/types.hpp"

using namespace mmrag;

static_assert(SearchIndex<FlatIndex<float>>);
static_assert(SearchIndex<IvfIndex<double>>);
static_assert(!SearchIndex<Matrix<float>>);

TEST_CASE("IdSet: any int64 >= 0, memory per id, not per largest id") {
  IdSet s;
  s.insert(1700000000000);  // a millisecond timestamp
  s.insert(Index(1) << 33);
  s.insert(std::numeric_limits<Index>::max());
  s.insert(0);
  s.insert(0);  // again: a set
  CHECK(s.size() == 4);
  CHECK(s.contains(1700000000000));
  CHECK(s.contains(Index(1) << 33));
  CHECK(s.contains(std::numeric_limits<Index>::max()));
  CHECK(s.contains(0));
  CHECK_FALSE(s.contains(1));
  CHECK_FALSE(s.contains(-1));
  CHECK(s.memory_bytes() < 1024);
  CHECK_THROWS_WITH_AS(s.insert(-5), doctest::Contains("ids must be >= 0"), std::invalid_argument);
  CHECK(s.size() == 4);  // unchanged by the failed insert

  // Many ids: membership is exact and memory stays ~16 bytes per id.
  IdSet big;
  for (Index i = 0; i < 100000; ++i) big.insert(i * 7919 + (Index(1) << 40));
  CHECK(big.size() == 100000);
  for (Index i = 0; i < 100000; ++i) {
    REQUIRE(big.contains(i * 7919 + (Index(1) << 40)));
    REQUIRE_FALSE(big.contains(i * 7919 + (Index(1) << 40) + 1));
  }
  CHECK(big.memory_bytes() <= 100000 * 24);
}

TEST_CASE("ModalitySet{} allows every modality; none() allows nothing") {
  const ModalitySet all{};
  for (int m = 0; m <= max_modality; ++m) CHECK(all.contains(Modality(m)));
  CHECK(all.is_all());
  const ModalitySet none = ModalitySet::none();
  for (int m = 0; m <= max_modality; ++m) CHECK_FALSE(none.contains(Modality(m)));
  CHECK_THROWS_AS(ModalitySet({Modality(64)}), std::invalid_argument);
}

TEST_CASE_TEMPLATE("merge_hits over shards equals one index holding everything", T, float, double) {
  for (Metric metric : {Metric::l2, Metric::inner_product, Metric::cosine}) {
    CAPTURE(std::string(to_string(metric)));
    const Matrix<T> x = test::random_matrix<T>(600, 16, 5);
    const Matrix<T> q = test::random_matrix<T>(40, 16, 6);
    std::vector<Index> ids(600);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(i) * 1000003 % 1000033;
    FlatIndex<T> whole(16, metric);
    whole.add(x, ids);
    // Uneven shards, one empty.
    const std::vector<std::pair<Eigen::Index, Eigen::Index>> cuts = {{0, 37}, {37, 400}, {437, 0}, {437, 163}};
    std::vector<Hits<T>> parts;
    for (auto [first, n] : cuts) {
      FlatIndex<T> shard(16, metric);
      shard.add(x.middleRows(first, n), std::span<const Index>(ids).subspan(std::size_t(first), std::size_t(n)));
      parts.push_back(shard.search(q, 10));
    }
    const Hits<T> merged = merge_hits<T>(parts, 10, metric);
    const Hits<T> single = whole.search(q, 10);
    CHECK(merged.ids == single.ids);
    CHECK(merged.scores == single.scores);
    // A larger k than any part holds pads.
    const Hits<T> wide = merge_hits<T>(parts, 35, metric);  // the parts hold 30 results
    CHECK(wide.ids.cols() == 35);
    CHECK(wide.found(0) == 30);
    CHECK(wide.ids(0, 34) == -1);
  }
}

TEST_CASE("merge_hits: ties go to the smaller id; bad input throws") {
  Hits<float> a{Matrix<Index>(1, 2), Matrix<float>(1, 2)};
  Hits<float> b{Matrix<Index>(1, 2), Matrix<float>(1, 2)};
  a.ids << 9, 3;
  a.scores << 0.5f, 0.25f;
  b.ids << 4, -1;
  b.scores << 0.5f, -std::numeric_limits<float>::infinity();
  const std::vector<Hits<float>> parts = {a, b};
  const Hits<float> m = merge_hits<float>(parts, 3, Metric::inner_product);
  CHECK(m.ids(0, 0) == 4);
  CHECK(m.ids(0, 1) == 9);
  CHECK(m.ids(0, 2) == 3);
  CHECK_THROWS_AS((void)merge_hits<float>(parts, 0, Metric::l2), std::invalid_argument);
  Hits<float> c{Matrix<Index>(2, 2), Matrix<float>(2, 2)};
  const std::vector<Hits<float>> bad = {a, c};
  CHECK_THROWS_WITH_AS((void)merge_hits<float>(bad, 2, Metric::l2), doctest::Contains("query rows"),
                       std::invalid_argument);
}
