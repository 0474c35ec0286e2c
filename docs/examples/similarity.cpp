// docs/similarity.md: one-to-one kernels, one-to-many scans, normalization, pairwise.
#include <cmath>
#include <cstdio>
#include <vector>

#include "mmrag/similarity.hpp"

int main() {
  using namespace mmrag;
  // [snippet:one_to_one]
  std::vector<float> a = {1, 2, 3, 4}, b = {4, 3, 2, 1};
  const float ip = dot(a.data(), b.data(), a.size());         // 20: similarity
  const float d2 = l2_squared(a.data(), b.data(), a.size());  // 20: squared distance
  const float cs = cosine(std::span<const float>(a), std::span<const float>(b));  // 20/30
  // [/snippet]

  // [snippet:one_to_many]
  Matrix<float> base(3, 4);
  // clang-format off
  base << 1, 0, 0, 0,
          0, 1, 0, 0,
          1, 2, 3, 4;
  // clang-format on
  std::vector<float> scores(3);
  one_to_many<float>(a.data(), base.data(), 3, 4, /*stride=*/4, Metric::l2, scores.data());
  // scores = {29, 27, 0}
  // [/snippet]

  // [snippet:pairwise]
  Matrix<float> queries = base.topRows(2);
  normalize_rows(queries);                                          // zero rows stay zero
  const Matrix<float> s = pairwise(queries, base, Metric::cosine);  // 2 × 3, one GEMM
  // [/snippet]

  std::printf("dot %.1f l2 %.1f cos %.4f scan %.0f %.0f %.0f pairwise(1,2) %.4f\n", ip, d2, cs,
              scores[0], scores[1], scores[2], s(1, 2));
  const bool ok = ip == 20 && d2 == 20 && std::abs(cs - 20.f / 30.f) < 1e-6f && scores[2] == 0 &&
                  scores[0] == 29 && scores[1] == 27 &&
                  std::abs(s(1, 2) - 2 / std::sqrt(30.f)) < 1e-6f;
  return ok ? 0 : 1;
}
