// docs/search.md: exact and IVF search, ids, nprobe, save / load.
#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"

int main() {
  using namespace mmrag;
  std::mt19937 rng(1);
  std::normal_distribution<float> g;
  Matrix<float> data(20000, 32), queries(100, 32);
  for (Eigen::Index i = 0; i < data.size(); ++i) data.data()[i] = g(rng);
  for (Eigen::Index i = 0; i < queries.size(); ++i) queries.data()[i] = g(rng);

  // [snippet:flat]
  FlatIndex<float> exact(32, Metric::l2);
  exact.add(data);                                      // ids 0, 1, 2, ...
  const Hits<float> truth = exact.search(queries, 10);  // 100 × 10 ids and squared distances
  // [/snippet]

  // [snippet:ivf]
  IvfIndex<float> ivf(32, /*nlist=*/128, Metric::l2);
  ivf.train(data);  // k-means, 10 iterations
  std::vector<Index> ids(20000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(1000 + i);  // your own ids
  ivf.add(data, ids);
  const Hits<float> approx = ivf.search(queries, 10, {.nprobe = 16});
  // [/snippet]

  // [snippet:persist]
  const auto path = std::filesystem::temp_directory_path() / "mmrag_example.ivf";
  ivf.save(path);                                              // versioned, checksummed
  const IvfIndex<float> loaded = IvfIndex<float>::load(path);  // throws on a corrupt file
  // [/snippet]
  std::filesystem::remove(path);

  std::size_t hit = 0;
  for (Eigen::Index i = 0; i < 100; ++i)
    for (Eigen::Index j = 0; j < 10; ++j)
      for (Eigen::Index l = 0; l < 10; ++l) hit += approx.ids(i, j) == truth.ids(i, l) + 1000;
  const double recall = double(hit) / 1000.0;
  const bool same = loaded.search(queries, 10, {.nprobe = 16}).ids == approx.ids;
  std::printf("recall@10 at nprobe 16 of 128: %.3f; reloaded index identical: %s\n", recall,
              same ? "yes" : "no");
  return recall > 0.3 && same ? 0 : 1;
}
