// Tests for include/mmrag/flat_index.hpp: every metric against long-double brute force, both
// search strategies (SIMD scan for single queries, GEMM for batches), ids, k > n, empty
// index, filters, and bad input with the strong guarantee.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <string>

#include "brute_force.hpp"
#include "files.hpp"
#include "helpers.hpp"
#include "mmrag/flat_index.hpp"

using namespace mmrag;

namespace {
template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}
}  // namespace

TEST_CASE_TEMPLATE("FlatIndex equals brute force for every metric and strategy", T, float, double) {
  const Matrix<T> base = test::random_matrix<T>(2500, 19, 1);
  const Matrix<T> queries = test::random_matrix<T>(300, 19, 2);
  std::vector<Index> ids(2500);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(7 * i + 3);
  for (Metric m : {Metric::inner_product, Metric::cosine, Metric::l2}) {
    CAPTURE(to_string(m));
    FlatIndex<T> index(19, m);
    index.add(base.topRows(1000), std::span<const Index>(ids.data(), 1000));
    index.add(base.bottomRows(1500), std::span<const Index>(ids.data() + 1000, 1500));
    REQUIRE(index.size() == 2500);
    for (Eigen::Index nq : {1, 3, 300}) {  // 1 and 3: SIMD scan; 300: GEMM blocks
      CAPTURE(nq);
      const auto hits = index.search(queries.topRows(nq), 10);
      REQUIRE(hits.ids.rows() == nq);
      for (Eigen::Index i = 0; i < nq; ++i) {
        const auto ref = test::brute_force(base, ids, queries.row(i).data(), m);
        std::string why;
        CHECK_MESSAGE(test::matches<T>(hits, i, ref, tolerance<T>(), &why), why);
      }
    }
  }
}

TEST_CASE_TEMPLATE("FlatIndex: sequential ids, k > size, empty index, ties", T, float, double) {
  FlatIndex<T> index(4, Metric::l2);
  SUBCASE("empty index pads everything") {
    const auto hits = index.search(Matrix<T>::Ones(2, 4), 3);
    CHECK((hits.ids.array() == -1).all());
    CHECK((hits.scores.array() == std::numeric_limits<T>::infinity()).all());
    CHECK(hits.found(0) == 0);
  }
  SUBCASE("k > size pads the tail; sequential ids continue across adds") {
    index.add(Matrix<T>::Zero(2, 4));
    index.add(Matrix<T>::Ones(1, 4));
    CHECK(index.id(2) == 2);
    for (Eigen::Index nq : {1, 8}) {
      const auto hits = index.search(Matrix<T>::Zero(nq, 4), 5);
      CHECK(hits.found(0) == 3);
      CHECK(hits.ids(0, 0) == 0);  // tie between ids 0 and 1: the smaller first
      CHECK(hits.ids(0, 1) == 1);
      CHECK(hits.ids(0, 2) == 2);
      CHECK(double(hits.scores(0, 2)) == doctest::Approx(4.0));
      CHECK(hits.ids(0, 3) == -1);
      CHECK(hits.scores(0, 4) == std::numeric_limits<T>::infinity());
    }
  }
  SUBCASE("similarity padding is -inf") {
    FlatIndex<T> ip(4, Metric::inner_product);
    ip.add(Matrix<T>::Ones(1, 4));
    const auto hits = ip.search(Matrix<T>::Ones(1, 4), 2);
    CHECK(hits.scores(0, 1) == -std::numeric_limits<T>::infinity());
  }
  SUBCASE("cosine with a zero vector scores 0") {
    FlatIndex<T> cos(4, Metric::cosine);
    cos.add(Matrix<T>::Zero(1, 4));
    const auto hits = cos.search(Matrix<T>::Ones(1, 4), 1);
    CHECK(hits.scores(0, 0) == T(0));
  }
}

TEST_CASE_TEMPLATE("FlatIndex: filters give the exact top-k of the allowed subset", T, float,
                   double) {
  const Matrix<T> base = test::random_matrix<T>(1200, 8, 5);
  const Matrix<T> queries = test::random_matrix<T>(40, 8, 6);
  std::vector<Index> ids(1200);
  std::iota(ids.begin(), ids.end(), Index(0));
  std::vector<Modality> mods(1200);
  for (std::size_t i = 0; i < mods.size(); ++i) mods[i] = Modality(i % 3);
  std::vector<Index> allow;
  for (Index i = 0; i < 1200; i += 5) allow.push_back(i);
  const IdSet allow_set{std::span<const Index>(allow)};
  for (Metric m : {Metric::inner_product, Metric::l2}) {
    FlatIndex<T> index(8, m);
    index.add(base, ids, mods);
    for (int which = 0; which < 3; ++which) {
      SearchParams p;
      if (which == 0) p.filter.modalities = ModalitySet{1};
      if (which == 1) p.filter.ids = &allow_set;
      if (which == 2) p.filter = {ModalitySet{0, 2}, &allow_set};
      auto ok = [&](std::size_t r) {
        return p.filter.modalities.contains(mods[r]) &&
               (!p.filter.ids || p.filter.ids->contains(ids[r]));
      };
      for (Eigen::Index nq : {1, 40}) {
        const auto hits = index.search(queries.topRows(nq), 7, p);
        for (Eigen::Index i = 0; i < nq; ++i) {
          std::string why;
          CHECK_MESSAGE(
              test::matches<T>(hits, i, test::brute_force(base, ids, queries.row(i).data(), m, ok),
                               tolerance<T>(), &why),
              why);
        }
      }
    }
  }
}

TEST_CASE_TEMPLATE("FlatIndex: bad input throws and leaves the index unchanged", T, float, double) {
  FlatIndex<T> index(3, Metric::l2);
  index.add(Matrix<T>::Ones(2, 3));
  Matrix<T> bad = Matrix<T>::Ones(4, 3);
  bad(2, 1) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_WITH_AS(index.add(bad), doctest::Contains("NaN"), std::invalid_argument);
  bad(2, 1) = std::numeric_limits<T>::infinity();
  CHECK_THROWS_AS(index.add(bad), std::invalid_argument);
  CHECK_THROWS_AS(index.add(Matrix<T>::Ones(2, 4)), std::invalid_argument);
  const std::vector<Index> one_id = {5};
  CHECK_THROWS_AS(index.add(Matrix<T>::Ones(2, 3), one_id), std::invalid_argument);
  const std::vector<Modality> bad_mod = {1, 64};
  CHECK_THROWS_AS(index.add(Matrix<T>::Ones(2, 3), {}, bad_mod), std::invalid_argument);
  CHECK(index.size() == 2);
  CHECK_THROWS_WITH_AS((void)index.search(Matrix<T>::Ones(1, 3), 0),
                       doctest::Contains("k must be > 0"), std::invalid_argument);
  CHECK_THROWS_AS((void)index.search(Matrix<T>::Ones(1, 2), 1), std::invalid_argument);
  Matrix<T> nanq = Matrix<T>::Ones(1, 3);
  nanq(0, 0) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_AS((void)index.search(nanq, 1), std::invalid_argument);
  CHECK_THROWS_AS(FlatIndex<T>(0, Metric::l2), std::invalid_argument);
  const auto hits = index.search(Matrix<T>::Ones(1, 3), 3);
  CHECK(hits.found(0) == 2);
}

TEST_CASE_TEMPLATE("FlatIndex: save / load keeps vectors, ids and modality tags; bad files throw",
                   T, float, double) {
  const Matrix<T> base = test::random_matrix<T>(300, 7, 3);
  std::vector<Index> ids(300);
  std::vector<Modality> mods(300);
  for (std::size_t i = 0; i < 300; ++i) ids[i] = Index(5 * i), mods[i] = Modality(i % 5);
  for (Metric m : {Metric::inner_product, Metric::cosine, Metric::l2}) {
    FlatIndex<T> index(7, m);
    index.add(base, ids, mods);
    const auto bytes = index.serialize();
    const FlatIndex<T> back = FlatIndex<T>::parse(bytes);
    CHECK(back.size() == 300);
    CHECK(back.metric() == m);
    CHECK(back.serialize() == bytes);
    const SearchParams p{.filter = {.modalities = ModalitySet{2, 3}}};
    const auto a = index.search(base.topRows(20), 6, p), b = back.search(base.topRows(20), 6, p);
    CHECK(a.ids == b.ids);
    CHECK(a.scores == b.scores);
  }
  FlatIndex<T> empty(9, Metric::l2);
  CHECK(FlatIndex<T>::parse(empty.serialize()).dim() == 9);

  FlatIndex<T> index(7, Metric::l2);
  index.add(base.topRows(10));
  const auto bytes = index.serialize();
  for (std::size_t cut = 0; cut < bytes.size(); cut += 7)
    CHECK_THROWS_AS((void)FlatIndex<T>::parse(
                        std::vector<char>(bytes.begin(), bytes.begin() + std::ptrdiff_t(cut))),
                    std::runtime_error);
  for (std::size_t at = 0; at < bytes.size(); at += 11) {
    std::vector<char> flipped = bytes;
    flipped[at] = char(flipped[at] ^ 0x04);
    CHECK_THROWS_AS((void)FlatIndex<T>::parse(flipped), std::runtime_error);
  }
  using Other = std::conditional_t<std::is_same_v<T, float>, double, float>;
  CHECK_THROWS_WITH_AS((void)FlatIndex<Other>::parse(bytes), doctest::Contains("scalar type"),
                       std::runtime_error);
  CHECK_THROWS_AS((void)FlatIndex<T>::load("/nonexistent/flat.idx"), std::runtime_error);
}

TEST_CASE_TEMPLATE("FlatIndex: negative ids, huge k; the index is unchanged afterwards", T, float, double) {
  FlatIndex<T> index(4, Metric::inner_product);
  index.add(test::random_matrix<T>(3, 4, 1), std::vector<Index>{7, 8, 9});
  const std::vector<char> before = index.serialize();
  const std::vector<Index> negative = {1, -1};
  CHECK_THROWS_WITH_AS(index.add(test::random_matrix<T>(2, 4, 2), negative),
                       doctest::Contains("ids must be >= 0"), std::invalid_argument);
  CHECK(index.serialize() == before);
  const Matrix<T> q = test::random_matrix<T>(2, 4, 3);
  CHECK_THROWS_WITH_AS((void)index.search(q, SIZE_MAX), doctest::Contains("k ="),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)index.search(q, std::size_t(1) << 40), doctest::Contains("k ="),
                       std::invalid_argument);
  // k above the size stays legal: padded.
  const auto wide = index.search(q, 1000);
  CHECK(wide.found(0) == 3);
  CHECK(wide.ids(1, 999) == -1);
  CHECK(index.serialize() == before);
}

TEST_CASE_TEMPLATE("FlatIndex: default ids continue after the largest id in use, never reused", T, float, double) {
  FlatIndex<T> index(2, Metric::l2);
  index.add(Matrix<T>::Ones(3, 2));  // 0, 1, 2
  CHECK(index.id(2) == 2);
  index.add(Matrix<T>::Ones(1, 2), std::vector<Index>{1700000000000});
  index.add(Matrix<T>::Ones(1, 2));
  CHECK(index.id(4) == 1700000000001);
  CHECK(index.remove_ids(std::vector<Index>{1700000000001, 2}) == 2);
  index.add(Matrix<T>::Ones(1, 2));
  CHECK(index.id(index.size() - 1) == 1700000000002);  // not a removed id
  // Duplicate ids are stored as rows (documented); remove_ids removes every row holding one.
  index.add(Matrix<T>::Ones(2, 2), std::vector<Index>{5, 5});
  const std::size_t n = index.size();
  CHECK(index.remove_ids(std::vector<Index>{5}) == 2);
  CHECK(index.size() == n - 2);
  // After save / load the sequence continues too.
  const auto loaded = FlatIndex<T>::parse(index.serialize());
  FlatIndex<T> again = loaded;
  again.add(Matrix<T>::Ones(1, 2));
  CHECK(again.id(again.size() - 1) == 1700000000003);
}

TEST_CASE("FlatIndex: an IdSet filter with timestamp ids") {
  FlatIndex<float> index(2, Metric::l2);
  const std::vector<Index> ids = {1700000000000, 1700000000001, 1700000000002};
  index.add(test::random_matrix<float>(3, 2, 9), ids);
  const IdSet allow{1700000000001};
  const auto hits = index.search(Matrix<float>::Zero(1, 2), 3, {.filter = {.ids = &allow}});
  CHECK(hits.found(0) == 1);
  CHECK(hits.ids(0, 0) == 1700000000001);
}

TEST_CASE("FlatIndex: memory_bytes counts the stored rows") {
  FlatIndex<float> index(64, Metric::l2);
  index.add(test::random_matrix<float>(1000, 64, 1));
  CHECK(index.memory_bytes() >= 1000 * (64 * 4 + 8 + 4 + 1));
  CHECK(index.memory_bytes() < 2 * 1000 * (64 * 4 + 8 + 4 + 1) + 4096);
  CHECK(index.storage() == Storage::float32);
}

namespace {
std::size_t resident_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  return 0;
}
}  // namespace

TEST_CASE_TEMPLATE("FlatIndex::map: a read-only view of the file, searched in place", T, float, double) {
  const test::TempFile file("flat_map.idx");
  const Matrix<T> x = test::random_matrix<T>(3000, 40, 21);
  std::vector<Modality> mods(3000);
  for (std::size_t i = 0; i < mods.size(); ++i) mods[i] = Modality(i % 4);
  for (Metric metric : {Metric::l2, Metric::cosine}) {
    FlatIndex<T> index(40, metric);
    index.add(x, {}, mods);
    index.save(file.path);
    const Matrix<T> q = test::random_matrix<T>(17, 40, 22);
    const FlatIndex<T> mapped = FlatIndex<T>::map(file.path);
    CHECK(mapped.size() == index.size());
    CHECK(mapped.memory_bytes() < index.memory_bytes() / 10);  // the rows stay in the file
    const auto a = mapped.search(q, 7, {.filter = {.modalities = {1, 3}}});
    const auto b = index.search(q, 7, {.filter = {.modalities = {1, 3}}});
    CHECK(a.ids == b.ids);
    CHECK(a.scores == b.scores);
    CHECK(FlatIndex<T>::map(file.path, /*verify=*/true).search(q, 3).ids == index.search(q, 3).ids);
    // Mutating a mapped index copies it first: the file is never written.
    FlatIndex<T> copy = FlatIndex<T>::map(file.path);
    copy.add(x.topRows(2));
    CHECK(copy.remove_ids(std::vector<Index>{0, 1}) == 2);
    CHECK(copy.size() == index.size());
    CHECK(FlatIndex<T>::load(file.path).size() == index.size());
  }
  CHECK_THROWS_WITH_AS((void)FlatIndex<T>::map(file.path.string() + ".missing"),
                       doctest::Contains("No such file"), std::runtime_error);
}

TEST_CASE("FlatIndex::map: opening adds almost nothing resident; verify finds bad rows") {
  const test::TempFile file("flat_map_big.idx");
  {
    FlatIndex<float> index(256, Metric::inner_product);
    index.add(test::random_matrix<float>(60000, 256, 3));  // ~62 MB
    index.save(file.path);
  }
  const std::size_t before = resident_kb();
  const FlatIndex<float> mapped = FlatIndex<float>::map(file.path);
  const std::size_t after = resident_kb();
  MESSAGE("resident after map: +" << (after - before) / 1024.0 << " MiB for a 62 MB file");
  CHECK(after - before < 16 * 1024);
  CHECK(mapped.size() == 60000);

  // A NaN written into a row (checksum fixed up) passes a plain map but not map(verify).
  std::vector<char> bytes = test::slurp(file.path);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bytes.data() + bytes.size() - 8 - 4 * 256, &nan, 4);
  const std::uint64_t sum = detail::checksum(bytes.data(), bytes.size() - 8);
  std::memcpy(bytes.data() + bytes.size() - 8, &sum, 8);
  test::spit(file.path, bytes);
  CHECK_NOTHROW((void)FlatIndex<float>::map(file.path));
  CHECK_THROWS_WITH_AS((void)FlatIndex<float>::map(file.path, true), doctest::Contains("NaN"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS((void)FlatIndex<float>::load(file.path), doctest::Contains("NaN"),
                       std::runtime_error);
}

TEST_CASE("FlatIndex: version-1 files still load") {
  // Version 1 layout: header (version 1), dim, count, ids, modality tags, vectors, checksum.
  std::vector<char> v1;
  detail::write_header<float>(v1, "MMRAGFLT", 1, Metric::l2, 0);
  detail::append(v1, std::uint64_t(2));                   // dim
  detail::append(v1, std::uint64_t(3));                   // size
  for (Index id : {Index(10), Index(20), Index(30)}) detail::append(v1, id);
  for (Modality m : {Modality(0), Modality(1), Modality(2)}) detail::append(v1, m);
  for (float v : {0.f, 0.f, 1.f, 0.f, 0.f, 5.f}) detail::append(v1, v);
  detail::write_checksum(v1);
  const auto index = FlatIndex<float>::parse(v1);
  CHECK(index.size() == 3);
  CHECK(index.id(2) == 30);
  CHECK(index.modality(1) == 1);
  const auto hits = index.search(Matrix<float>::Zero(1, 2), 3);
  CHECK(hits.ids(0, 0) == 10);
  CHECK(hits.ids(0, 1) == 20);
  CHECK(hits.scores(0, 2) == 25.0f);
}
