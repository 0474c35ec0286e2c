#pragma once
/// @file config.hpp
/// Core aliases (Matrix, Vector, Index), the Metric enum and the MMRAG_ASSERT macro.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <cassert>
#include <cstddef>
#include <cstdint>

#include <Eigen/Core>

/// Internal invariant check. Defaults to `assert` (off under NDEBUG); define it before
/// including mmrag to route failures elsewhere.
#ifndef MMRAG_ASSERT
#define MMRAG_ASSERT(cond) assert(cond)
#endif

/// OpenMP pragmas that vanish when OpenMP is off (no -Wunknown-pragmas noise, same code).
#define MMRAG_STRINGIFY(x) #x
#if defined(_OPENMP)
#define MMRAG_OMP(...) _Pragma(MMRAG_STRINGIFY(omp __VA_ARGS__))
#else
#define MMRAG_OMP(...)
#endif

namespace mmrag {

namespace detail {
/// Below about this many scalar operations a parallel region costs more than it saves (and
/// OpenMP's spinning threads slow everything around them), so loops stay serial.
inline constexpr long long kParallelWork = 1LL << 18;

/// Runs body(i) for every i in [first, last): an OpenMP loop (dynamic schedule, `chunk`
/// iterations per grab) when `parallel`, else a plain loop. Why not `omp parallel for if(...)`:
/// entering a region costs microseconds even when its if clause is false (GCC's libgomp still
/// builds a team of one: measured 10 of a 30 µs IVF query), which single queries cannot afford.
template <class I, class F>
inline void parallel_for(I first, I last, bool parallel, I chunk, F&& body) {
#if defined(_OPENMP)
  if (parallel && last - first > 1) {
    MMRAG_OMP(parallel for schedule(dynamic, chunk))
    for (I i = first; i < last; ++i) body(i);
    return;
  }
#endif
  (void)parallel, (void)chunk;
  for (I i = first; i < last; ++i) body(i);
}

/// Hint that `p` will be read soon (into every cache level). A no-op where unsupported.
inline void prefetch(const void* p) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

/// Asks for the 64-byte lines of [p, p + bytes) ahead of use: candidates' rows that a scan has
/// long evicted are fetched together, so their misses overlap instead of stalling one by one.
inline void prefetch(const void* p, std::size_t bytes) noexcept {
  for (std::size_t b = 0; b < bytes; b += 64) prefetch(static_cast<const char*>(p) + b);
}
}  // namespace detail

/// Embeddings are the rows of a row-major matrix: n × d.
template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A column vector of scalars (logits, norms, per-row values).
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// Vector ids stored in indexes (any value >= 0); -1 marks "no result". `Id` is the preferred
/// name (FAISS's idx_t, usearch's key_t): it does not read like Eigen::Index, a row position.
/// `Index` is the version-1 name and stays.
using Index = std::int64_t;
using Id = Index;

/// How two embeddings are compared.
/// - `inner_product`, `cosine`: similarities, higher is better.
/// - `l2`: squared Euclidean distance, lower is better.
enum class Metric { inner_product, cosine, l2 };

/// True when a larger score is a better match.
[[nodiscard]] constexpr bool higher_is_better(Metric m) noexcept {
  return m != Metric::l2;
}

/// The metric's name, as used in messages and files.
[[nodiscard]] inline const char* to_string(Metric m) noexcept {
  switch (m) {
    case Metric::inner_product:
      return "inner_product";
    case Metric::cosine:
      return "cosine";
    case Metric::l2:
      return "l2";
  }
  return "unknown";
}

}  // namespace mmrag
