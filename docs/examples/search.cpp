// docs/search.md: exact, IVF, IVF-PQ and HNSW search, ids, nprobe, save / load.
#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include "mmrag/flat_index.hpp"
#include "mmrag/hnsw_index.hpp"
#include "mmrag/ivf_index.hpp"
#include "mmrag/ivf_pq_index.hpp"

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

  // [snippet:ivf_pq]
  // 32 dims as 16 sub-vectors of 4-bit codes: 8 bytes per row, plus an int8 copy (36 bytes)
  // that rescores the k × k_factor best candidates exactly.
  IvfPqIndex<float> pq(32, /*nlist=*/128, Metric::l2, {.m = 16, .nbits = 4});
  pq.train(data);
  pq.add(data);
  const Hits<float> compressed = pq.search(queries, 10, {.nprobe = 16, .k_factor = 8});
  // [/snippet]

  // [snippet:hnsw]
  HnswIndex<float> graph(32, Metric::l2, {.M = 16, .ef_construction = 200});
  graph.add(data);  // in parallel with OpenMP; no training
  for (Eigen::Index i = 0; i < 3; ++i) {
    const Hits<float> one = graph.search(queries.row(i), 10, {.ef_search = 128});  // one query
    std::printf("query %ld: nearest id %ld, squared distance %.3f\n", long(i),
                long(one.ids(0, 0)), double(one.scores(0, 0)));
  }
  // [/snippet]
  const Hits<float> walked = graph.search(queries, 10, {.ef_search = 128});

  // recall@10 against the exact answer; `offset` maps the index's ids to FlatIndex's.
  const auto recall = [&](const Hits<float>& h, Index offset) {
    std::size_t hit = 0;
    for (Eigen::Index i = 0; i < 100; ++i)
      for (Eigen::Index j = 0; j < 10; ++j)
        for (Eigen::Index l = 0; l < 10; ++l) hit += h.ids(i, j) == truth.ids(i, l) + offset;
    return double(hit) / 1000.0;
  };
  const double r_ivf = recall(approx, 1000), r_pq = recall(compressed, 0),
               r_hnsw = recall(walked, 0);
  const bool same = loaded.search(queries, 10, {.nprobe = 16}).ids == approx.ids;
  std::printf("recall@10: IVF (nprobe 16 of 128) %.3f, IVF-PQ %.3f, HNSW (ef 128) %.3f; "
              "reloaded index identical: %s\n",
              r_ivf, r_pq, r_hnsw, same ? "yes" : "no");
  // Gaussian data in 32 dims is a hard case for every approximate index; the floors are loose.
  return r_ivf > 0.3 && r_pq > 0.3 && r_hnsw > 0.8 && same ? 0 : 1;
}
