// The first program (docs/getting-started.md shows this file in full): four embeddings, a
// similarity, an exact search, and a contrastive loss with its gradient.
#include <cstdio>

#include <mmrag/mmrag.hpp>

int main() {
  using namespace mmrag;
  // Four 3-d embeddings, one per row (row-major, as every mmrag API takes them).
  Matrix<float> items(4, 3);
  // clang-format off
  items << 1, 0, 0,
           0, 1, 0,
           0.9f, 0.1f, 0,
           0, 0, 1;
  // clang-format on

  // Similarity of two embeddings (SIMD kernel): rows 0 and 2 point almost the same way.
  const float c = cosine(items.row(0).data(), items.row(2).data(), 3);

  // An exact index over all four, and the two nearest items to a query.
  FlatIndex<float> index(3, Metric::cosine);
  index.add(items);  // ids 0, 1, 2, 3
  Matrix<float> query(1, 3);
  query << 1, 0.05f, 0;
  const Hits<float> hits = index.search(query, 2);  // 1 × 2 ids and scores, best first

  // A contrastive loss over paired rows (row i of a with row i of b), with its gradients.
  const auto l = loss::in_batch_info_nce(items, items, {.temperature = 0.1});

  std::printf("cosine(item 0, item 2) = %.3f\n", c);
  std::printf("nearest to the query: ids %ld (score %.3f) and %ld (score %.3f)\n",
              long(hits.ids(0, 0)), double(hits.scores(0, 0)), long(hits.ids(0, 1)),
              double(hits.scores(0, 1)));
  std::printf("in-batch InfoNCE: %.3f, |d loss / d a| = %.3f\n", l.value, l.grad_a.norm());
  return (hits.ids(0, 0) == 0 && hits.ids(0, 1) == 2) ? 0 : 1;
}
