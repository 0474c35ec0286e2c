#pragma once
/// @file detail/topk.hpp
/// Bounded top-k selection for search. Not API: namespace mmrag::detail.
///
/// Order: a better score first; equal scores by the smaller id, so results are deterministic
/// whatever order candidates arrive in (tiles, threads, lists).

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

#include "mmrag/config.hpp"

namespace mmrag::detail {

template <class T>
struct Candidate {
  T score;
  Index id;
  const T* vector = nullptr;  ///< the stored vector, for an exact final rescoring
};

/// Keeps the k best (score, id) pairs seen so far in a heap whose top is the worst kept.
template <class T>
class TopK {
 public:
  TopK(std::size_t k, bool higher_is_better) : k_(k), higher_(higher_is_better) {
    heap_.reserve(k);
  }

  /// True when `a` ranks before `b`.
  [[nodiscard]] bool better(const Candidate<T>& a, const Candidate<T>& b) const noexcept {
    if (a.score != b.score) return higher_ ? a.score > b.score : a.score < b.score;
    return a.id < b.id;
  }

  /// The score a candidate must beat (or tie with a smaller id) to enter; ±inf until full.
  [[nodiscard]] T threshold() const noexcept {
    if (heap_.size() < k_)
      return higher_ ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    return heap_.front().score;
  }

  /// Cheap pre-test used in scan loops: can `score` possibly enter?
  [[nodiscard]] bool may_enter(T score) const noexcept {
    const T t = threshold();
    return higher_ ? score >= t : score <= t;
  }

  void push(T score, Index id, const T* vector = nullptr) {
    const Candidate<T> c{score, id, vector};
    auto worse_first = [this](const Candidate<T>& a, const Candidate<T>& b) {
      return better(a, b);
    };
    if (heap_.size() < k_) {
      heap_.push_back(c);
      std::push_heap(heap_.begin(), heap_.end(), worse_first);
    } else if (k_ > 0 && better(c, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), worse_first);
      heap_.back() = c;
      std::push_heap(heap_.begin(), heap_.end(), worse_first);
    }
  }

  [[nodiscard]] std::size_t size() const noexcept { return heap_.size(); }

  /// Writes the kept candidates best first into ids/scores (k slots each), padding missing
  /// slots with id -1 and score -inf (similarity) or +inf (distance). Empties the heap.
  void finish(Index* ids, T* scores) {
    std::sort(heap_.begin(), heap_.end(),
              [this](const Candidate<T>& a, const Candidate<T>& b) { return better(a, b); });
    const T pad =
        higher_ ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    for (std::size_t i = 0; i < k_; ++i) {
      ids[i] = i < heap_.size() ? heap_[i].id : Index(-1);
      scores[i] = i < heap_.size() ? heap_[i].score : pad;
    }
    heap_.clear();
  }

  [[nodiscard]] std::vector<Candidate<T>>& items() noexcept { return heap_; }

 private:
  std::size_t k_;
  bool higher_;
  std::vector<Candidate<T>> heap_;
};

/// Reserves room for `extra` more elements, growing geometrically so repeated small adds stay
/// amortized O(1). May throw (std::bad_alloc) before anything changes.
template <class V>
void grow(V& v, std::size_t extra) {
  const std::size_t need = v.size() + extra;
  if (need > v.capacity()) v.reserve(std::max(need, v.capacity() * 2));
}

}  // namespace mmrag::detail
