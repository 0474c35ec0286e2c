// A downstream program: uses mmrag the way a user project would and checks the answers, so a
// build that compiles but computes wrong (say, with no -march flag) fails loudly.
#include <cmath>
#include <cstdio>
#include <vector>

#include <mmrag/mmrag.hpp>

int main() {
  const std::size_t n = 1001;
  std::vector<float> a(n), b(n);
  double ref = 0;
  for (std::size_t i = 0; i < n; ++i) {
    a[i] = std::sin(0.1f * float(i));
    b[i] = std::cos(0.05f * float(i));
    ref += double(a[i]) * double(b[i]);
  }
  const float got = mmrag::dot(a.data(), b.data(), n);
  mmrag::Matrix<float> m(3, 4);
  m << 3, 4, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1;
  mmrag::normalize_rows(m);
  const bool ok = std::fabs(got - ref) < 1e-3 && std::fabs(m(0, 0) - 0.6f) < 1e-6f &&
                  m.row(1).squaredNorm() == 0.f;
  std::printf("consumer: arch %s, dot %.6f (reference %.6f): %s\n", xsimd::default_arch::name(),
              double(got), ref, ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
