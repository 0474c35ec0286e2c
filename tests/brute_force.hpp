#pragma once
// Brute-force search in long double: the reference every index test compares with.

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "mmrag/config.hpp"

namespace mmrag::test {

struct Ref {
  long double score;
  Index id;
};

/// All (score, id) of `base` rows against query q, sorted best first (ties: smaller id),
/// keeping only rows for which allowed(row) is true.
template <class T>
std::vector<Ref> brute_force(const Matrix<T>& base, const std::vector<Index>& ids, const T* q,
                             Metric m, const std::function<bool(std::size_t)>& allowed = nullptr) {
  std::vector<Ref> out;
  const auto d = base.cols();
  long double qn = 0;
  for (Eigen::Index c = 0; c < d; ++c) qn += (long double)q[c] * q[c];
  for (Eigen::Index r = 0; r < base.rows(); ++r) {
    if (allowed && !allowed(static_cast<std::size_t>(r))) continue;
    long double dot = 0, xn = 0, l2 = 0;
    for (Eigen::Index c = 0; c < d; ++c) {
      const long double x = base(r, c), y = q[c];
      dot += x * y, xn += x * x, l2 += (x - y) * (x - y);
    }
    const long double s = m == Metric::inner_product ? dot
                          : m == Metric::l2          ? l2
                          : (xn == 0 || qn == 0)     ? 0
                                                     : dot / std::sqrt(xn * qn);
    out.push_back({s, ids[static_cast<std::size_t>(r)]});
  }
  const bool higher = m != Metric::l2;
  std::sort(out.begin(), out.end(), [&](const Ref& a, const Ref& b) {
    if (a.score != b.score) return higher ? a.score > b.score : a.score < b.score;
    return a.id < b.id;
  });
  return out;
}

/// Checks one row of hits against the reference: the scores agree within `tol` (relative to
/// the score scale) and every returned id has a reference score within tol of the returned one
/// (so near-ties may swap, but nothing worse can sneak in).
template <class T, class Hits>
bool matches(const Hits& hits, Eigen::Index row, const std::vector<Ref>& ref, double tol,
             std::string* why = nullptr) {
  const auto k = static_cast<std::size_t>(hits.ids.cols());
  for (std::size_t j = 0; j < k; ++j) {
    const Index id = hits.ids(row, static_cast<Eigen::Index>(j));
    const double got = double(hits.scores(row, static_cast<Eigen::Index>(j)));
    if (j >= ref.size()) {
      if (id != -1 || !std::isinf(got)) {
        if (why) *why = "expected padding at " + std::to_string(j);
        return false;
      }
      continue;
    }
    const double expect = double(ref[j].score);
    const double scale = std::max(1.0, std::abs(expect));
    if (std::abs(got - expect) > tol * scale) {
      if (why)
        *why = "score " + std::to_string(got) + " vs " + std::to_string(expect) + " at " +
               std::to_string(j);
      return false;
    }
    if (id != ref[j].id) {  // allowed only for a near-tie: the id's true score must match
      auto it = std::find_if(ref.begin(), ref.end(), [&](const Ref& r) { return r.id == id; });
      if (it == ref.end() || std::abs(double(it->score) - expect) > tol * scale) {
        if (why)
          *why = "id " + std::to_string(id) + " vs " + std::to_string(ref[j].id) + " at " +
                 std::to_string(j);
        return false;
      }
    }
  }
  return true;
}

}  // namespace mmrag::test
