#pragma once
/// @file search_params.hpp
/// What every index shares: the Hits result, per-call SearchParams, modality tags and the
/// filter (allowed modalities and an id allow-list) applied inside the scan.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmrag/config.hpp"

namespace mmrag {

/// Search results for nq queries: ids and scores are nq × k, best first. Missing results (fewer
/// than k candidates) are id -1 with score -inf (similarity) or +inf (l2 distance).
template <class T>
struct Hits {
  Matrix<Index> ids;
  Matrix<T> scores;

  /// Number of real (non-padding) results in row q.
  [[nodiscard]] std::size_t found(Eigen::Index q) const {
    return static_cast<std::size_t>((ids.row(q).array() >= 0).count());
  }
};

/// A modality tag: which encoder an embedding came from. Values 0..63; see multimodal.hpp for
/// the named ones (text, image, audio, video) and for registering your own.
using Modality = std::uint8_t;

/// The largest modality value an index can store (tags are bits of a 64-bit mask).
inline constexpr Modality max_modality = 63;

/// A set of modalities, as a bit mask: bit m set = modality m allowed.
class ModalitySet {
 public:
  /// Every modality.
  constexpr ModalitySet() noexcept = default;
  /// Exactly the listed modalities. Throws std::invalid_argument on a value > max_modality.
  ModalitySet(std::initializer_list<Modality> allowed) : bits_(0) {
    for (Modality m : allowed) add(m);
  }
  [[nodiscard]] static constexpr ModalitySet all() noexcept { return ModalitySet(); }
  /// The empty set, to fill with add(). (Note `ModalitySet{}` is the default: every modality.)
  [[nodiscard]] static constexpr ModalitySet none() noexcept {
    ModalitySet s;
    s.bits_ = 0;
    return s;
  }
  ModalitySet& add(Modality m) {
    if (m > max_modality)
      throw std::invalid_argument("mmrag::ModalitySet: modality must be <= 63, got " +
                                  std::to_string(m));
    bits_ |= std::uint64_t(1) << m;
    return *this;
  }
  [[nodiscard]] constexpr bool contains(Modality m) const noexcept {
    return (bits_ >> (m & 63)) & 1U;
  }
  [[nodiscard]] constexpr bool is_all() const noexcept { return bits_ == ~std::uint64_t(0); }
  [[nodiscard]] constexpr std::uint64_t bits() const noexcept { return bits_; }

 private:
  std::uint64_t bits_ = ~std::uint64_t(0);
};

/// An id allow-list as a bitset over id values: `contains(id)` is one shift and a load.
/// Ids outside [0, capacity) are not allowed.
class IdSet {
 public:
  IdSet() = default;
  /// The listed ids. Throws std::invalid_argument on a negative id.
  explicit IdSet(std::span<const Index> ids) {
    for (Index id : ids) insert(id);
  }
  void insert(Index id) {
    if (id < 0)
      throw std::invalid_argument("mmrag::IdSet: ids must be >= 0, got " + std::to_string(id));
    const auto word = static_cast<std::size_t>(id >> 6);
    if (word >= words_.size()) words_.resize(word + 1, 0);
    words_[word] |= std::uint64_t(1) << (id & 63);
  }
  [[nodiscard]] bool contains(Index id) const noexcept {
    const auto word = static_cast<std::size_t>(static_cast<std::uint64_t>(id) >> 6);
    return id >= 0 && word < words_.size() && ((words_[word] >> (id & 63)) & 1U);
  }

 private:
  std::vector<std::uint64_t> words_;
};

/// Which stored items a search may return. The default allows everything and costs nothing.
struct Filter {
  /// Allowed modalities (default: all).
  ModalitySet modalities = ModalitySet::all();
  /// When set, only these ids are allowed. Not owned: must outlive the search call.
  const IdSet* ids = nullptr;

  [[nodiscard]] bool is_trivial() const noexcept { return modalities.is_all() && ids == nullptr; }
};

/// Per-call search parameters (as FAISS's SearchParametersIVF): nothing is stored in the index,
/// so concurrent searches with different parameters are safe.
struct SearchParams {
  /// Inverted lists visited per query (IvfIndex only; FAISS's default is 1, ours 8: recall
  /// ≈ 0.99 at nlist = 256 on Fashion-MNIST). Must be > 0; values above nlist mean nlist.
  std::size_t nprobe = 8;
  /// Restricts the results to allowed items; the result is the exact top-k among them (for IVF,
  /// among the allowed items of the probed lists).
  Filter filter = {};
};

namespace detail {

template <class D>
void check_finite_rows(const char* where, const char* what, const Eigen::MatrixBase<D>& m) {
  for (Eigen::Index r = 0; r < m.rows(); ++r)
    if (!m.row(r).allFinite())
      throw std::invalid_argument(std::string(where) + ": " + what + " row " + std::to_string(r) +
                                  " holds NaN or Inf");
}

inline void check_dim(const char* where, const char* what, Eigen::Index got, std::size_t dim) {
  if (got != static_cast<Eigen::Index>(dim))
    throw std::invalid_argument(std::string(where) + ": " + what + " must have " +
                                std::to_string(dim) + " columns (the index dimension), got " +
                                std::to_string(got));
}

/// The checks every index's add() makes before touching anything: column count, one id and
/// one modality tag (<= 63) per row when given, no NaN or Inf.
template <class T>
void check_add(const char* where, const Eigen::Ref<const Matrix<T>>& vectors, std::size_t dim,
               std::span<const Index> ids, std::span<const Modality> modalities) {
  check_dim(where, "vectors", vectors.cols(), dim);
  const auto n = static_cast<std::size_t>(vectors.rows());
  if (!ids.empty() && ids.size() != n)
    throw std::invalid_argument(std::string(where) + ": ids must have one id per row (" +
                                std::to_string(n) + "), got " + std::to_string(ids.size()));
  if (!modalities.empty() && modalities.size() != n)
    throw std::invalid_argument(std::string(where) + ": modalities must have one tag per row (" +
                                std::to_string(n) + "), got " + std::to_string(modalities.size()));
  for (Modality m : modalities)
    if (m > max_modality)
      throw std::invalid_argument(std::string(where) + ": modality must be <= 63, got " +
                                  std::to_string(m));
  check_finite_rows(where, "vectors", vectors);
}

}  // namespace detail
}  // namespace mmrag
