#pragma once
/// @file detail/hnsw_kernels.hpp
/// What the HNSW traversal needs below the index: distance kernels that score one row or four
/// scattered rows against a query with the *same* rounding (so a pair's distance never depends
/// on which kernel computed it), a per-thread visited set that costs nothing to
/// reset between queries, and a test-and-set spin lock for the per-node locks of the parallel
/// build. Not API: namespace mmrag::detail. Includes nothing of mmrag above detail/.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <xsimd/xsimd.hpp>

#include "mmrag/config.hpp"  // detail::prefetch
#include "mmrag/detail/simd.hpp"

namespace mmrag::detail {

/// The traversal distance, lower is better: squared L2 when `kL2`, else the negated inner
/// product. Two accumulators (even and odd SIMD blocks), then one horizontal sum, then the
/// scalar tail: `hnsw_dist4` below computes exactly these roundings for each of its rows.
template <class T, bool kL2, class Arch = xsimd::default_arch>
inline T hnsw_dist(const T* q, const T* x, std::size_t n) noexcept {
  using B = xsimd::batch<T, Arch>;
  constexpr std::size_t W = B::size;
  B a(T(0)), b(T(0));
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    const B q0 = B::load_unaligned(q + i), q1 = B::load_unaligned(q + i + W);
    if constexpr (kL2) {
      const B d0 = q0 - B::load_unaligned(x + i), d1 = q1 - B::load_unaligned(x + i + W);
      a = xsimd::fma(d0, d0, a);
      b = xsimd::fma(d1, d1, b);
    } else {
      a = xsimd::fma(q0, B::load_unaligned(x + i), a);
      b = xsimd::fma(q1, B::load_unaligned(x + i + W), b);
    }
  }
  if (i + W <= n) {
    const B q0 = B::load_unaligned(q + i);
    if constexpr (kL2) {
      const B d0 = q0 - B::load_unaligned(x + i);
      a = xsimd::fma(d0, d0, a);
    } else {
      a = xsimd::fma(q0, B::load_unaligned(x + i), a);
    }
    i += W;
  }
  T s = reduce_add(a + b);
  for (; i < n; ++i) {
    if constexpr (kL2) {
      const T d = q[i] - x[i];
      s += d * d;
    } else {
      s += q[i] * x[i];
    }
  }
  return kL2 ? s : -s;
}

/// out[r] = hnsw_dist(q, x[r], n) for four scattered rows at once: one query load feeds eight
/// independent FMA chains, and the four rows stream from memory in parallel.
template <class T, bool kL2, class Arch = xsimd::default_arch>
inline void hnsw_dist4(const T* q, const T* const* x, std::size_t n, T* out) noexcept {
  using B = xsimd::batch<T, Arch>;
  constexpr std::size_t W = B::size;
  const T *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
  B a0(T(0)), a1(T(0)), a2(T(0)), a3(T(0)), b0(T(0)), b1(T(0)), b2(T(0)), b3(T(0));
  std::size_t i = 0;
  auto step = [&](B& acc, const B& qv, const T* p) {
    if constexpr (kL2) {
      const B d = qv - B::load_unaligned(p);
      acc = xsimd::fma(d, d, acc);
    } else {
      acc = xsimd::fma(qv, B::load_unaligned(p), acc);
    }
  };
  for (; i + 2 * W <= n; i += 2 * W) {
    const B q0 = B::load_unaligned(q + i), q1 = B::load_unaligned(q + i + W);
    step(a0, q0, x0 + i);
    step(a1, q0, x1 + i);
    step(a2, q0, x2 + i);
    step(a3, q0, x3 + i);
    step(b0, q1, x0 + i + W);
    step(b1, q1, x1 + i + W);
    step(b2, q1, x2 + i + W);
    step(b3, q1, x3 + i + W);
  }
  if (i + W <= n) {
    const B q0 = B::load_unaligned(q + i);
    step(a0, q0, x0 + i);
    step(a1, q0, x1 + i);
    step(a2, q0, x2 + i);
    step(a3, q0, x3 + i);
    i += W;
  }
  T s[4] = {reduce_add(a0 + b0), reduce_add(a1 + b1), reduce_add(a2 + b2), reduce_add(a3 + b3)};
  for (int r = 0; r < 4; ++r) {
    const T* p = x[r];
    for (std::size_t j = i; j < n; ++j) {
      if constexpr (kL2) {
        const T d = q[j] - p[j];
        s[r] += d * d;
      } else {
        s[r] += q[j] * p[j];
      }
    }
    out[r] = kL2 ? s[r] : -s[r];
  }
}

/// An allocator for big, randomly accessed arrays (the HNSW node blocks): allocations of 2 MiB
/// or more are 2 MiB-aligned and advised to use transparent huge pages (Linux `madvise`), so a
/// graph walk that touches a few hundred random nodes does not also miss the TLB on each (with
/// 4 KiB pages a 200 MB graph spans 50 000 pages, far beyond the TLB). Smaller allocations,
/// and other systems, use the ordinary aligned operator new.
template <class V>
struct HugePageAllocator {
  using value_type = V;
  static constexpr std::size_t kHuge = std::size_t(1) << 21;
  HugePageAllocator() noexcept = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}
  /// Bytes actually reserved for n values.
  static std::size_t reserved_bytes(std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(V);
    return bytes >= kHuge ? (bytes + kHuge - 1) / kHuge * kHuge : bytes;
  }
  V* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(V);
    if (n > std::size_t(-1) / 2 / sizeof(V)) throw std::bad_array_new_length();
    if (bytes >= kHuge) {
      void* p = std::aligned_alloc(kHuge, reserved_bytes(n));
      if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      (void)madvise(p, reserved_bytes(n), MADV_HUGEPAGE);
#endif
      return static_cast<V*>(p);
    }
    return static_cast<V*>(::operator new(bytes, std::align_val_t(alignof(V))));
  }
  void deallocate(V* p, std::size_t n) noexcept {
    if (n * sizeof(V) >= kHuge)
      std::free(p);
    else
      ::operator delete(p, std::align_val_t(alignof(V)));
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

/// A visited set over node slots: `tags[s] == epoch` means visited in the current query.
/// Starting a query bumps the epoch, so nothing is cleared between queries; the tags are
/// zeroed only when the 16-bit epoch wraps (once per 65 535 queries).
struct VisitedSet {
  std::vector<std::uint16_t> tags;
  std::uint16_t epoch = 0;

  /// Starts a query over `n` slots; returns the epoch to compare with.
  std::uint16_t start(std::size_t n) {
    if (tags.size() < n) tags.resize(n, 0);
    if (++epoch == 0) {
      std::memset(tags.data(), 0, tags.size() * sizeof(std::uint16_t));
      epoch = 1;
    }
    return epoch;
  }
};

/// A one-byte test-and-set spin lock (the parallel build holds one for a few hundred
/// nanoseconds while it rewrites a node's links).
inline void spin_lock(std::atomic<std::uint8_t>& l) noexcept {
  while (l.exchange(1, std::memory_order_acquire) != 0)
    while (l.load(std::memory_order_relaxed) != 0) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
}
inline void spin_unlock(std::atomic<std::uint8_t>& l) noexcept {
  l.store(0, std::memory_order_release);
}

}  // namespace mmrag::detail
