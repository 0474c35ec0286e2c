// Concurrent const searches on one index: 8 threads, each with its own nprobe and filter,
// must return exactly what the same searches return one at a time. CI runs this suite under
// ThreadSanitizer (with OpenMP off: libgomp is not TSan-instrumented).
#include <doctest/doctest.h>

#include <numeric>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"

using namespace mmrag;

namespace {

template <class Index_>
void hammer(const Index_& index, const Matrix<float>& queries,
            const std::vector<SearchParams>& params) {
  // Expected results, computed sequentially.
  std::vector<Hits<float>> expect;
  for (const auto& p : params) expect.push_back(index.search(queries, 5, p));
  std::vector<int> mismatches(params.size(), 0);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < params.size(); ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 4; ++round) {
        // Alternate single queries (SIMD scan) and the batch (GEMM path).
        const auto batch = index.search(queries, 5, params[t]);
        const auto single = index.search(queries.topRows(1), 5, params[t]);
        if (batch.ids != expect[t].ids) ++mismatches[t];
        if (single.ids.row(0) != expect[t].ids.row(0)) ++mismatches[t];
      }
    });
  for (auto& th : threads) th.join();
  for (std::size_t t = 0; t < params.size(); ++t) CHECK(mismatches[t] == 0);
}

}  // namespace

TEST_CASE("concurrent searches on one FlatIndex and one IvfIndex are safe and consistent") {
  const Matrix<float> base = test::random_matrix<float>(3000, 16, 1);
  const Matrix<float> queries = test::random_matrix<float>(40, 16, 2);
  std::vector<Modality> mods(3000);
  for (std::size_t i = 0; i < mods.size(); ++i) mods[i] = Modality(i % 4);
  IdSet even;
  for (Index i = 0; i < 3000; i += 2) even.insert(i);

  FlatIndex<float> flat(16, Metric::cosine);
  flat.add(base, {}, mods);
  IvfIndex<float> ivf(16, 32, Metric::l2);
  ivf.train(base);
  ivf.add(base, {}, mods);

  std::vector<SearchParams> params;
  for (int t = 0; t < 8; ++t) {
    SearchParams p{.nprobe = std::size_t(1) << (t % 6)};
    if (t % 3 == 1) p.filter.modalities = ModalitySet{Modality(t % 4)};
    if (t % 3 == 2) p.filter.ids = &even;
    params.push_back(p);
  }
  hammer(flat, queries, params);
  hammer(ivf, queries, params);
}
