// Tests for include/mmrag/ivf_index.hpp: exactness at nprobe = nlist, recall on clustered
// data, ids, k > n, filters, remove_ids, save/load round trip and rejection of bad files,
// bad input with the strong guarantee.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "brute_force.hpp"
#include "files.hpp"
#include "helpers.hpp"
#include "mmrag/ivf_index.hpp"

using namespace mmrag;
namespace fs = std::filesystem;
using test::slurp;
using test::spit;
using test::TempFile;

namespace {
template <class T>
double tolerance() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

// A scratch file removed at the end of the test.

template <class T>
Matrix<T> clustered(Eigen::Index n, Eigen::Index centers, Eigen::Index d, std::uint64_t seed) {
  const Matrix<T> c = test::random_matrix<T>(centers, d, seed, T(3));
  Matrix<T> x = test::random_matrix<T>(n, d, seed + 1, T(0.5));
  std::mt19937_64 rng(seed + 2);
  for (Eigen::Index i = 0; i < n; ++i)
    x.row(i) += c.row(static_cast<Eigen::Index>(rng() % std::uint64_t(centers)));
  return x;
}
}  // namespace

TEST_CASE_TEMPLATE("IvfIndex with nprobe = nlist equals exact search", T, float, double) {
  const Matrix<T> base = clustered<T>(3000, 20, 16, 1);
  const Matrix<T> queries =
      clustered<T>(200, 20, 16, 1).topRows(200) + test::random_matrix<T>(200, 16, 9, T(0.1));
  std::vector<Index> ids(3000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(1000000 + 3 * i);
  for (Metric m : {Metric::inner_product, Metric::cosine, Metric::l2}) {
    CAPTURE(to_string(m));
    IvfIndex<T> index(16, 32, m);
    index.train(base);
    index.add(base, ids);
    CHECK(index.size() == 3000);
    for (Eigen::Index nq : {1, 200}) {
      const auto hits = index.search(queries.topRows(nq), 10, {.nprobe = 32});
      for (Eigen::Index i = 0; i < nq; ++i) {
        std::string why;
        CHECK_MESSAGE(
            test::matches<T>(hits, i, test::brute_force(base, ids, queries.row(i).data(), m),
                             tolerance<T>(), &why),
            why);
      }
      const auto more =
          index.search(queries.topRows(nq), 10, {.nprobe = 1000});  // > nlist means nlist
      CHECK(more.ids == hits.ids);
    }
  }
}

TEST_CASE("IvfIndex recall on clustered data at moderate nprobe") {
  const Matrix<float> base = clustered<float>(20000, 64, 32, 5);
  const Matrix<float> queries =
      clustered<float>(300, 64, 32, 5) + test::random_matrix<float>(300, 32, 77, 0.2f);
  IvfIndex<float> index(32, 64, Metric::l2);
  index.train(base);
  index.add(base);
  std::vector<Index> ids(20000);
  std::iota(ids.begin(), ids.end(), Index(0));
  std::size_t hit = 0;
  const auto hits = index.search(queries, 10, {.nprobe = 8});
  for (Eigen::Index i = 0; i < queries.rows(); ++i) {
    const auto ref = test::brute_force(base, ids, queries.row(i).data(), Metric::l2);
    for (int j = 0; j < 10; ++j)
      for (int l = 0; l < 10; ++l) hit += hits.ids(i, j) == ref[static_cast<std::size_t>(l)].id;
  }
  const double recall = double(hit) / (300.0 * 10);
  MESSAGE("recall@10 at nprobe 8 of 64: " << recall);
  CHECK(recall > 0.9);
}

TEST_CASE_TEMPLATE("IvfIndex: filters, k > n, remove_ids, clear", T, float, double) {
  const Matrix<T> base = clustered<T>(600, 6, 8, 3);
  std::vector<Modality> mods(600);
  for (std::size_t i = 0; i < 600; ++i) mods[i] = Modality(i % 4);
  std::vector<Index> ids(600);
  std::iota(ids.begin(), ids.end(), Index(0));
  IvfIndex<T> index(8, 8, Metric::l2);
  index.train(base);
  index.add(base, {}, mods);
  SUBCASE("filtered search with nprobe = nlist is exact over the allowed subset") {
    const IdSet odd = [] {
      IdSet s;
      for (Index i = 1; i < 600; i += 2) s.insert(i);
      return s;
    }();
    for (int which = 0; which < 2; ++which) {
      SearchParams p{.nprobe = 8};
      if (which == 0) p.filter.modalities = ModalitySet{2};
      if (which == 1) p.filter = {ModalitySet{1, 2}, &odd};
      auto ok = [&](std::size_t r) {
        return p.filter.modalities.contains(mods[r]) &&
               (!p.filter.ids || p.filter.ids->contains(ids[r]));
      };
      const Matrix<T> q = base.topRows(30) + test::random_matrix<T>(30, 8, 4, T(0.3));
      const auto hits = index.search(q, 5, p);
      for (Eigen::Index i = 0; i < 30; ++i) {
        std::string why;
        CHECK_MESSAGE(
            test::matches<T>(hits, i, test::brute_force(base, ids, q.row(i).data(), Metric::l2, ok),
                             tolerance<T>(), &why),
            why);
        for (int j = 0; j < 5; ++j) CHECK(mods[static_cast<std::size_t>(hits.ids(i, j))] != 0);
      }
    }
  }
  SUBCASE("k > n pads") {
    IvfIndex<T> small(8, 2, Metric::inner_product);
    small.train(base.topRows(10));
    small.add(base.topRows(3));
    const auto hits = small.search(base.topRows(2), 5, {.nprobe = 2});
    CHECK(hits.found(0) == 3);
    CHECK(hits.ids(0, 4) == -1);
    CHECK(hits.scores(0, 4) == -std::numeric_limits<T>::infinity());
  }
  SUBCASE("remove_ids removes exactly those ids") {
    std::vector<Index> gone = {0, 5, 7, 599, 12345};
    CHECK(index.remove_ids(gone) == 4);
    CHECK(index.size() == 596);
    const auto hits = index.search(base.topRows(10), 600, {.nprobe = 8});
    for (Eigen::Index i = 0; i < 10; ++i) {
      CHECK(hits.found(i) == 596);
      for (Eigen::Index j = 0; j < 600; ++j)
        CHECK((hits.ids(i, j) != 0 && hits.ids(i, j) != 5 && hits.ids(i, j) != 7 &&
               hits.ids(i, j) != 599));
    }
    index.clear();
    CHECK(index.size() == 0);
    CHECK(index.is_trained());
  }
}

TEST_CASE_TEMPLATE("IvfIndex: save / load round trip gives identical results", T, float, double) {
  const Matrix<T> base = clustered<T>(1500, 10, 12, 8);
  std::vector<Modality> mods(1500);
  for (std::size_t i = 0; i < mods.size(); ++i) mods[i] = Modality(i % 3);
  for (Metric m : {Metric::inner_product, Metric::cosine, Metric::l2}) {
    IvfIndex<T> index(12, 16, m);
    index.train(base);
    index.add(base, {}, mods);
    TempFile f("roundtrip.ivf");
    index.save(f.path);
    const IvfIndex<T> back = IvfIndex<T>::load(f.path);
    CHECK(back.size() == index.size());
    CHECK(back.metric() == m);
    CHECK(back.centroids() == index.centroids());
    for (std::size_t l = 0; l < 16; ++l) {
      CHECK(std::equal(back.list_modalities(l).begin(), back.list_modalities(l).end(),
                       index.list_modalities(l).begin()));
    }
    const Matrix<T> q = base.topRows(50);
    const SearchParams p{.nprobe = 4, .filter = {ModalitySet{1}, nullptr}};
    const auto a = index.search(q, 7, p), b = back.search(q, 7, p);
    CHECK(a.ids == b.ids);
    CHECK(a.scores == b.scores);
  }
  SUBCASE("an untrained index round-trips too") {
    IvfIndex<T> index(3, 4, Metric::l2);
    TempFile f("untrained.ivf");
    index.save(f.path);
    const auto back = IvfIndex<T>::load(f.path);
    CHECK(!back.is_trained());
    CHECK(back.nlist() == 4);
  }
}

TEST_CASE("IvfIndex::load rejects missing, truncated, garbage, bit-flipped and mismatched files") {
  const Matrix<float> base = clustered<float>(400, 4, 6, 2);
  IvfIndex<float> index(6, 4, Metric::l2);
  index.train(base);
  index.add(base);
  TempFile good("good.ivf"), bad("bad.ivf");
  index.save(good.path);
  const std::vector<char> bytes = slurp(good.path);

  CHECK_THROWS_WITH_AS((void)IvfIndex<float>::load(good.path.string() + ".missing"),
                       doctest::Contains("cannot open"), std::runtime_error);
  // Every truncation point fails cleanly (sampled densely at the head, sparsely after).
  for (std::size_t cut = 0; cut < bytes.size(); cut += (cut < 128 ? 1 : 97)) {
    spit(bad.path,
         std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut)));
    CHECK_THROWS_AS((void)IvfIndex<float>::load(bad.path), std::runtime_error);
  }
  // A flipped bit anywhere is caught (by the checksum or a header check).
  for (std::size_t at = 0; at < bytes.size(); at += 53) {
    std::vector<char> flipped = bytes;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
    spit(bad.path, flipped);
    CHECK_THROWS_AS((void)IvfIndex<float>::load(bad.path), std::runtime_error);
  }
  // Garbage of various sizes, and garbage behind a valid magic.
  std::mt19937_64 rng(3);
  for (std::size_t size : {1, 7, 8, 64, 1000, 100000}) {
    std::vector<char> junk(size);
    for (char& c : junk) c = static_cast<char>(rng());
    spit(bad.path, junk);
    CHECK_THROWS_AS((void)IvfIndex<float>::load(bad.path), std::runtime_error);
    if (size >= 8) {
      std::memcpy(junk.data(), "MMRAGIVF", 8);
      spit(bad.path, junk);
      CHECK_THROWS_AS((void)IvfIndex<float>::load(bad.path), std::runtime_error);
    }
  }
  // Wrong scalar type, with a valid checksum: rejected by name.
  CHECK_THROWS_WITH_AS((void)IvfIndex<double>::load(good.path), doctest::Contains("scalar type"),
                       std::runtime_error);
  // Trailing bytes.
  std::vector<char> longer = bytes;
  longer.push_back('x');
  spit(bad.path, longer);
  CHECK_THROWS_AS((void)IvfIndex<float>::load(bad.path), std::runtime_error);
}

TEST_CASE_TEMPLATE("IvfIndex: bad input throws and leaves the index unchanged", T, float, double) {
  const Matrix<T> base = clustered<T>(100, 4, 5, 6);
  IvfIndex<T> index(5, 4, Metric::l2);
  CHECK_THROWS_WITH_AS(index.add(base), doctest::Contains("trained"), std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)index.search(base, 3), doctest::Contains("trained"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(index.train(base.topRows(3)), doctest::Contains("nlist"),
                       std::invalid_argument);
  CHECK_THROWS_AS(index.train(Matrix<T>::Ones(10, 4)), std::invalid_argument);
  CHECK(!index.is_trained());
  index.train(base);
  index.add(base.topRows(50));
  Matrix<T> bad = base.topRows(10);
  bad(9, 4) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_AS(index.add(bad), std::invalid_argument);
  const std::vector<Index> three = {1, 2, 3};
  CHECK_THROWS_AS(index.add(base.topRows(10), three), std::invalid_argument);
  CHECK_THROWS_AS(index.add(Matrix<T>::Ones(2, 6)), std::invalid_argument);
  CHECK(index.size() == 50);
  CHECK_THROWS_WITH_AS((void)index.search(base, 3, {.nprobe = 0}), doctest::Contains("nprobe"),
                       std::invalid_argument);
  CHECK_THROWS_AS((void)index.search(base, 0), std::invalid_argument);
  CHECK_THROWS_WITH_AS(index.train(base), doctest::Contains("already holds"),
                       std::invalid_argument);
  CHECK_THROWS_AS(IvfIndex<T>(5, 0, Metric::l2), std::invalid_argument);
  const auto hits = index.search(base.topRows(1), 100, {.nprobe = 4});
  CHECK(hits.found(0) == 50);
}

TEST_CASE("IvfIndex::train: unset KMeansParams fields take IVF's defaults, set ones are kept") {
  const Matrix<float> x = test::random_matrix<float>(400, 8, 2);
  std::size_t calls = 0;
  IvfIndex<float> a(8, 4, Metric::l2);
  a.train(x, {.progress = [&](std::size_t, double) { ++calls; }});
  CHECK(calls == 10);  // IVF's 10 iterations, not k-means' 25
  calls = 0;
  IvfIndex<float> b(8, 4, Metric::l2);
  b.train(x, {.iterations = 3, .progress = [&](std::size_t, double) { ++calls; }});
  CHECK(calls == 3);
  // spherical = false passed for cosine is used (centroids not renormalized)...
  IvfIndex<float> c(8, 4, Metric::cosine);
  c.train(x, {.iterations = 5, .spherical = false});
  IvfIndex<float> d(8, 4, Metric::cosine);
  d.train(x, {.iterations = 5});  // ...and unset means spherical: unit centroids
  for (Eigen::Index j = 0; j < 4; ++j) CHECK(d.centroids().row(j).norm() == doctest::Approx(1.0));
  bool any_short = false;
  for (Eigen::Index j = 0; j < 4; ++j) any_short |= c.centroids().row(j).norm() < 0.99f;
  CHECK(any_short);
}

TEST_CASE_TEMPLATE("IvfIndex: negative ids, huge k, default ids after remove; unchanged on error", T, float, double) {
  const Matrix<T> x = test::random_matrix<T>(300, 6, 4);
  IvfIndex<T> index(6, 5, Metric::l2);
  index.train(x);
  index.add(x.topRows(100));
  const std::vector<char> before = index.serialize();
  std::vector<Index> ids(50, 3);
  ids[49] = -1;
  CHECK_THROWS_WITH_AS(index.add(x.middleRows(100, 50), ids), doctest::Contains("ids must be >= 0"),
                       std::invalid_argument);
  CHECK_THROWS_AS((void)index.search(x.topRows(2), SIZE_MAX), std::invalid_argument);
  CHECK_THROWS_AS((void)index.search(x.topRows(2), std::size_t(1) << 40), std::invalid_argument);
  CHECK(index.serialize() == before);
  CHECK(index.remove_ids(std::vector<Index>{99, 98}) == 2);
  index.add(x.middleRows(100, 1));
  bool found_100 = false;
  for (std::size_t l = 0; l < index.nlist(); ++l)
    for (Index id : index.list_ids(l)) {
      CHECK(id != 98);
      found_100 |= id == 100;
    }
  CHECK(found_100);  // the new row got id 100, not a removed 98 or 99
}

TEST_CASE("IvfIndex::search_preassigned equals search with the same cells") {
  const Matrix<float> x = test::random_matrix<float>(2000, 16, 8);
  IvfIndex<float> index(16, 20, Metric::inner_product);
  index.train(x);
  index.add(x);
  const Matrix<float> q = test::random_matrix<float>(50, 16, 9);
  const Matrix<Index> probes = index.probe_cells(q, 3);
  CHECK(probes.cols() == 3);
  const auto a = index.search_preassigned(q, 10, probes);
  const auto b = index.search(q, 10, {.nprobe = 3});
  CHECK(a.ids == b.ids);
  CHECK(a.scores == b.scores);
  Matrix<Index> bad = probes;
  bad(0, 0) = 20;
  CHECK_THROWS_AS((void)index.search_preassigned(q, 10, bad), std::invalid_argument);
  CHECK_THROWS_AS((void)index.search_preassigned(q, 10, probes.topRows(3)), std::invalid_argument);
  Matrix<Index> partial = probes;
  partial.col(2).setConstant(-1);  // -1: no cell
  const auto c = index.search_preassigned(q, 10, partial);
  CHECK(c.ids == index.search(q, 10, {.nprobe = 2}).ids);
}

namespace {
// Resident-set figures of this process from /proc/self/status, in bytes (0 when unavailable).
std::size_t proc_status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(std::strlen(key))) * 1024;
  return 0;
}
// Resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0); false when not permitted.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return bool(out);
}
}  // namespace

// GCC says __SANITIZE_ADDRESS__; clang says __has_feature(address_sanitizer).
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MMRAG_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MMRAG_TEST_SANITIZED 1
#endif

TEST_CASE("IvfIndex::add of 400k × 64 rows at nlist 4096 peaks below 3× the rows' bytes") {
#if defined(MMRAG_TEST_SANITIZED)
  MESSAGE("skipped under sanitizers: their shadow memory changes the resident set");
#else
  const Eigen::Index n = 400000, d = 64;
  const Matrix<float> x = test::random_matrix<float>(n, d, 42);
  IvfIndex<float> index(d, 4096, Metric::l2);
  index.train(x.topRows(4096 * 10), {.iterations = 2});
  if (!reset_peak_rss() || proc_status_kb("VmHWM:") == 0) {
    MESSAGE("skipped: /proc/self/clear_refs is not writable here");
    return;
  }
  const std::size_t before = proc_status_kb("VmRSS:");
  index.add(x);
  const std::size_t peak = proc_status_kb("VmHWM:");
  const double rows_bytes = double(n) * double(d) * sizeof(float);
  MESSAGE("add peak above the resident set before it: " << double(peak - before) / rows_bytes
                                                        << " × the added rows' bytes");
  CHECK(double(peak - before) < 3.0 * rows_bytes);
  CHECK(index.size() == std::size_t(n));
#endif
}

TEST_CASE_TEMPLATE("IvfIndex::map equals load; views survive add and remove by copying", T, float, double) {
  const test::TempFile file("ivf_map.idx");
  const Matrix<T> x = test::random_matrix<T>(2500, 12, 31);
  IvfIndex<T> index(12, 10, Metric::inner_product);
  index.train(x);
  index.add(x);
  index.save(file.path);
  const Matrix<T> q = test::random_matrix<T>(30, 12, 32);
  const IvfIndex<T> mapped = IvfIndex<T>::map(file.path);
  for (std::size_t nprobe : {1, 4, 10}) {
    const auto a = mapped.search(q, 5, {.nprobe = nprobe});
    const auto b = index.search(q, 5, {.nprobe = nprobe});
    CHECK(a.ids == b.ids);
    CHECK(a.scores == b.scores);
  }
  CHECK(mapped.serialize() == index.serialize());
  IvfIndex<T> changed = IvfIndex<T>::map(file.path, true);
  CHECK(changed.remove_ids(std::vector<Index>{0, 1, 2}) == 3);
  changed.add(x.topRows(3));
  CHECK(changed.size() == index.size());
  CHECK(IvfIndex<T>::load(file.path).serialize() == index.serialize());  // file untouched
}
