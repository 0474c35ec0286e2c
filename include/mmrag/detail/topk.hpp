#pragma once
/// @file detail/topk.hpp
/// Bounded top-k selection with a screening margin. Not API: namespace mmrag::detail.
///
/// Every score enters as a *key*, lower is better (a similarity s enters as -s), so one
/// comparison serves every metric (FAISS makes the direction a type, CMax/CMin; negating is
/// exact and keeps one type). Equal keys rank by the smaller id, so results do not depend on
/// the order candidates arrive in (tiles, threads, lists).
///
/// Screening: fast scans compute keys with a rounding error of at most `margin / 2`. The heap
/// keeps the k best screened keys; its worst is the threshold t. Every true top-k item has a
/// screened key <= t + margin (the k heap items' exact keys are <= t + margin/2, so the k-th
/// exact key is too, and an item that beats it was screened at most margin/2 above it). The
/// pool keeps every candidate under that bound; the caller rescores the pool exactly.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "mmrag/config.hpp"

namespace mmrag::detail {

/// A candidate: screened key (lower is better), id, and where its stored row lives (for the
/// exact rescoring after the scan): its code, plus the vector its decoded code is relative to
/// (an IVF cell's centroid for residual codes; null when the code is the row itself).
template <class T>
struct Candidate {
  T key;
  Index id;
  const std::uint8_t* code = nullptr;
  const T* offset = nullptr;
};

/// True when (key a, id a) ranks before (key b, id b).
template <class K>
[[nodiscard]] constexpr bool key_before(K ka, Index ida, K kb, Index idb) noexcept {
  return ka != kb ? ka < kb : ida < idb;
}

/// The k best screened candidates plus the pool of every candidate within `margin` of them.
template <class T>
class TopK {
 public:
  /// k: how many results are wanted (>= 1); margin: twice the screening error bound, in key
  /// units (0 when keys are exact; +inf keeps every candidate).
  TopK(std::size_t k, T margin) : k_(k), margin_(margin) {
    heap_.reserve(std::min<std::size_t>(k, 1024));
  }

  /// Adds `extra` to the margin, before the first push: a screen with its own error bound
  /// (detail/int8_screen.hpp) on top of the rounding the margin already covers.
  void widen(T extra) noexcept { margin_ += extra; }

  /// Keys above this cannot matter: skip them without calling push (SIMD pre-test).
  [[nodiscard]] T admit() const noexcept { return admit_; }

  void push(T key, Index id, const std::uint8_t* code, const T* offset = nullptr) {
    if (std::isnan(key)) key = -std::numeric_limits<T>::infinity();  // overflowed: rescore it
    if (key > admit_) return;
    pool_.push_back({key, id, code, offset});
    auto worse_first = [](const Entry& a, const Entry& b) { return key_before(a.key, a.id, b.key, b.id); };
    if (heap_.size() < k_) {
      heap_.push_back({key, id});
      std::push_heap(heap_.begin(), heap_.end(), worse_first);
    } else if (key_before(key, id, heap_.front().key, heap_.front().id)) {
      std::pop_heap(heap_.begin(), heap_.end(), worse_first);
      heap_.back() = {key, id};
      std::push_heap(heap_.begin(), heap_.end(), worse_first);
    } else if (margin_ == T(0)) {
      pool_.pop_back();  // exact keys: what the heap rejects can never come back
      return;
    }
    if (heap_.size() == k_) {
      admit_ = heap_.front().key + margin_;
      if (std::isnan(admit_)) admit_ = std::numeric_limits<T>::infinity();  // -inf + inf
    }
    if (pool_.size() >= prune_at_) {
      settle();
      prune_at_ = std::max<std::size_t>(2 * pool_.size(), 2 * k_ + 64);
    }
  }

  /// Drops pool entries above the current bound; returns the pool (unordered).
  std::vector<Candidate<T>>& settle() {
    const T a = admit_;
    pool_.erase(std::remove_if(pool_.begin(), pool_.end(),
                               [a](const Candidate<T>& c) { return c.key > a; }),
                pool_.end());
    return pool_;
  }

  [[nodiscard]] std::size_t k() const noexcept { return k_; }

 private:
  struct Entry {
    T key;
    Index id;
  };
  std::size_t k_;
  T margin_;
  T admit_ = std::numeric_limits<T>::infinity();
  std::size_t prune_at_ = 256;
  std::vector<Entry> heap_;  // max-heap on (key, id): front is the worst kept
  std::vector<Candidate<T>> pool_;
};

}  // namespace mmrag::detail
