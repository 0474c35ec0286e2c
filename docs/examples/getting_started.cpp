// docs/getting-started.md: the first program — similarity, a loss with its gradient, a search.
#include <cstdio>

#include "mmrag/mmrag.hpp"

int main() {
  // [snippet:first]
  using namespace mmrag;
  // Four 3-d embeddings, one per row (row-major, as every mmrag API takes them).
  Matrix<float> items(4, 3);
  // clang-format off
  items << 1, 0, 0,
           0, 1, 0,
           0.9f, 0.1f, 0,
           0, 0, 1;
  // clang-format on

  // Similarity of two embeddings (SIMD kernel).
  const float c = cosine(items.row(0).data(), items.row(2).data(), 3);

  // An index over all four, and the two nearest items to a query.
  FlatIndex<float> index(3, Metric::cosine);
  index.add(items);
  Matrix<float> query(1, 3);
  query << 1, 0.05f, 0;
  const Hits<float> hits = index.search(query, 2);  // ids and scores, best first

  // A contrastive loss over paired rows, with its gradients.
  const auto l = loss::in_batch_info_nce(items, items, {.temperature = 0.1});
  std::printf("cosine %.3f, nearest ids %ld %ld, loss %.3f, |grad| %.3f\n", c, long(hits.ids(0, 0)),
              long(hits.ids(0, 1)), l.value, l.grad_a.norm());
  // [/snippet]
  return (hits.ids(0, 0) == 0 && hits.ids(0, 1) == 2) ? 0 : 1;
}
