#pragma once
/// @file search/types.hpp
/// What every index shares: the Hits result, modality tags, the Filter (allowed modalities and
/// an id allow-list) applied inside the scan, per-call SearchParams, the exact merge of
/// per-shard results (`merge_hits`, as FAISS's `merge_knn_results`) and the `SearchIndex`
/// concept that code generic over indexes checks against.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmrag/config.hpp"

namespace mmrag {

/// Search results for nq queries: `ids` and `scores` are nq × k, best first. Scores are in the
/// index's metric: similarities (inner_product, cosine; higher is better) or squared Euclidean
/// distances (l2; lower is better). Missing results (fewer than k candidates) are id -1 with
/// score -inf (similarity) or +inf (distance).
template <class T>
struct Hits {
  Matrix<Index> ids;
  Matrix<T> scores;

  /// Number of real (non-padding) results in row q.
  [[nodiscard]] std::size_t found(Eigen::Index q) const {
    return static_cast<std::size_t>((ids.row(q).array() >= 0).count());
  }
};

/// A modality tag: which encoder an embedding came from. Values 0..max_modality; see
/// multimodal.hpp for the named ones (text, image, audio, video) and for naming your own.
using Modality = std::uint8_t;

/// The largest modality value an index can store (tags are bits of a 64-bit mask).
inline constexpr Modality max_modality = 63;

/// A set of modalities, as a bit mask: bit m set = modality m allowed.
class ModalitySet {
 public:
  /// Every modality (so `ModalitySet{}` allows everything).
  constexpr ModalitySet() noexcept = default;
  /// Exactly the listed modalities. Throws std::invalid_argument on a value > max_modality.
  ModalitySet(std::initializer_list<Modality> allowed) : bits_(0) {
    for (Modality m : allowed) add(m);
  }
  [[nodiscard]] static constexpr ModalitySet all() noexcept { return ModalitySet(); }
  /// The empty set, to fill with add().
  [[nodiscard]] static constexpr ModalitySet none() noexcept {
    ModalitySet s;
    s.bits_ = 0;
    return s;
  }
  /// Allows modality m. Throws std::invalid_argument when m > max_modality.
  ModalitySet& add(Modality m) {
    if (m > max_modality)
      throw std::invalid_argument("mmrag::ModalitySet: modality must be <= " +
                                  std::to_string(max_modality) + ", got " + std::to_string(m));
    bits_ |= std::uint64_t(1) << m;
    return *this;
  }
  [[nodiscard]] constexpr bool contains(Modality m) const noexcept {
    return (bits_ >> (m & max_modality)) & 1U;
  }
  [[nodiscard]] constexpr bool is_all() const noexcept { return bits_ == ~std::uint64_t(0); }
  [[nodiscard]] constexpr std::uint64_t bits() const noexcept { return bits_; }

 private:
  std::uint64_t bits_ = ~std::uint64_t(0);
};

/// A set of ids (any int64 >= 0: hashes and timestamps included) for filtering. Open-addressing
/// hash table: memory is about 16 bytes per id whatever the ids' values (never per largest id);
/// `contains` is one multiply and, almost always, one probe.
class IdSet {
 public:
  IdSet() = default;
  /// The listed ids. Throws std::invalid_argument on a negative id.
  explicit IdSet(std::span<const Index> ids) {
    reserve(ids.size());
    for (Index id : ids) insert(id);
  }
  IdSet(std::initializer_list<Index> ids) : IdSet(std::span<const Index>(ids.begin(), ids.size())) {}

  /// Adds `id`. Throws std::invalid_argument when id < 0 (the set is then unchanged).
  void insert(Index id) {
    if (id < 0)
      throw std::invalid_argument("mmrag::IdSet::insert: ids must be >= 0, got " +
                                  std::to_string(id));
    if (2 * (size_ + 1) > slots_.size()) rehash(std::max<std::size_t>(16, 2 * slots_.size()));
    std::size_t s = slot(id);
    while (slots_[s] != kEmpty) {
      if (slots_[s] == id) return;
      s = (s + 1) & mask_;
    }
    slots_[s] = id;
    ++size_;
  }
  /// Makes room for `n` ids in total (optional; insert grows as needed).
  void reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (cap > slots_.size()) rehash(cap);
  }
  [[nodiscard]] bool contains(Index id) const noexcept {
    if (size_ == 0 || id < 0) return false;
    std::size_t s = slot(id);
    while (slots_[s] != kEmpty) {
      if (slots_[s] == id) return true;
      s = (s + 1) & mask_;
    }
    return false;
  }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// Bytes held by the table.
  [[nodiscard]] std::size_t memory_bytes() const noexcept { return slots_.size() * sizeof(Index); }

 private:
  static constexpr Index kEmpty = -1;
  [[nodiscard]] std::size_t slot(Index id) const noexcept {
    // Fibonacci hashing: the high bits of id × 2^64/φ spread consecutive and strided ids alike.
    return static_cast<std::size_t>((static_cast<std::uint64_t>(id) * 0x9E3779B97F4A7C15ULL) >>
                                    shift_);
  }
  void rehash(std::size_t cap) {
    std::vector<Index> old(cap, kEmpty);
    old.swap(slots_);
    mask_ = cap - 1;
    shift_ = 64 - std::countr_zero(cap);
    for (Index id : old)
      if (id != kEmpty) {
        std::size_t s = slot(id);
        while (slots_[s] != kEmpty) s = (s + 1) & mask_;
        slots_[s] = id;
      }
  }
  std::vector<Index> slots_;
  std::size_t mask_ = 0;
  int shift_ = 64;
  std::size_t size_ = 0;
};

/// Which stored items a search may return. The default allows everything and costs nothing.
struct Filter {
  /// Allowed modalities (default: all).
  ModalitySet modalities = ModalitySet::all();
  /// When set, only these ids are allowed. Not owned: must outlive the search call.
  const IdSet* ids = nullptr;

  [[nodiscard]] bool is_trivial() const noexcept { return modalities.is_all() && ids == nullptr; }
  [[nodiscard]] bool allows(Modality m, Index id) const noexcept {
    return modalities.contains(m) && (ids == nullptr || ids->contains(id));
  }
};

/// Per-call search parameters (as FAISS's SearchParametersIVF): nothing is stored in the index,
/// so concurrent searches with different parameters are safe. Fields in declaration order, for
/// designated initializers: `{.nprobe = 16, .filter = f}`.
struct SearchParams {
  /// Inverted lists visited per query (IVF indexes; FlatIndex ignores it). FAISS's default is 1,
  /// ours 8: recall ≈ 0.99 at nlist = 256 on Fashion-MNIST. Must be > 0; above nlist means nlist.
  std::size_t nprobe = 8;
  /// Restricts the results to allowed items; the result is the exact top-k among them (for IVF,
  /// among the allowed items of the probed lists).
  Filter filter = {};
  /// Indexes with a refine store (IvfPqIndex) rescore k × k_factor candidates exactly (FAISS's
  /// IndexRefine k_factor). Must be >= 1. Exact indexes ignore it.
  std::size_t k_factor = 4;
};

/// An index that code generic over indexes (hard-negative mining, sharded search) can use:
/// `Scalar`, `dim()`, `size()`, `metric()` and `search(queries, k)` returning `Hits<Scalar>`.
template <class I>
concept SearchIndex = requires(const I& index, const Matrix<typename I::Scalar>& q, std::size_t k) {
  typename I::Scalar;
  { index.dim() } -> std::convertible_to<std::size_t>;
  { index.size() } -> std::convertible_to<std::size_t>;
  { index.metric() } -> std::convertible_to<Metric>;
  { index.search(q, k) } -> std::same_as<Hits<typename I::Scalar>>;
};

/// True when (score a, id a) ranks before (score b, id b): the better score, ties to the
/// smaller id. Padding (id -1) ranks after every real result.
template <class T>
[[nodiscard]] constexpr bool ranks_before(T sa, Index ida, T sb, Index idb, bool higher) noexcept {
  if ((ida < 0) != (idb < 0)) return idb < 0;
  if (sa != sb) return higher ? sa > sb : sa < sb;
  return ida < idb;
}

/// Exact k-way merge of per-shard results: each part is nq × k_i (k_i may differ), best first,
/// as returned by any index's `search` over the same queries with the same metric. Returns
/// nq × k, best first, ties to the smaller id, padded with id -1 (score -inf for similarities,
/// +inf for l2 distances). Shards must hold disjoint ids; an id found in several parts is
/// kept once (its best score). Throws std::invalid_argument when k = 0 or the parts disagree on
/// nq. Thread-safe (pure). Follows FAISS's `merge_knn_results`.
template <class T>
[[nodiscard]] Hits<T> merge_hits(std::span<const Hits<T>> parts, std::size_t k, Metric metric) {
  constexpr const char* where = "mmrag::merge_hits";
  if (k == 0) throw std::invalid_argument(std::string(where) + ": k must be > 0, got 0");
  if (k > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    throw std::invalid_argument(std::string(where) + ": k is too large (" + std::to_string(k) +
                                ")");
  const Eigen::Index nq = parts.empty() ? 0 : parts[0].ids.rows();
  for (std::size_t p = 0; p < parts.size(); ++p)
    if (parts[p].ids.rows() != nq || parts[p].scores.rows() != nq ||
        parts[p].scores.cols() != parts[p].ids.cols())
      throw std::invalid_argument(std::string(where) + ": part " + std::to_string(p) + " has " +
                                  std::to_string(parts[p].ids.rows()) + " query rows, part 0 has " +
                                  std::to_string(nq));
  const bool higher = higher_is_better(metric);
  const T pad = higher ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  const auto kk = static_cast<Eigen::Index>(k);
  Hits<T> out{Matrix<Index>::Constant(nq, kk, Index(-1)), Matrix<T>::Constant(nq, kk, pad)};
  std::vector<Eigen::Index> pos(parts.size());
  for (Eigen::Index q = 0; q < nq; ++q) {
    std::fill(pos.begin(), pos.end(), 0);
    Eigen::Index filled = 0;
    while (filled < kk) {
      // The best head among the parts (few parts: a linear pass beats a heap).
      std::size_t best = parts.size();
      for (std::size_t p = 0; p < parts.size(); ++p) {
        if (pos[p] >= parts[p].ids.cols() || parts[p].ids(q, pos[p]) < 0) continue;
        if (best == parts.size() ||
            ranks_before(parts[p].scores(q, pos[p]), parts[p].ids(q, pos[p]),
                         parts[best].scores(q, pos[best]), parts[best].ids(q, pos[best]), higher))
          best = p;
      }
      if (best == parts.size()) break;
      const Index id = parts[best].ids(q, pos[best]);
      const T score = parts[best].scores(q, pos[best]);
      ++pos[best];
      bool seen = false;  // a duplicate id across parts: keep its first (best) occurrence
      for (Eigen::Index j = 0; j < filled && !seen; ++j) seen = out.ids(q, j) == id;
      if (seen) continue;
      out.ids(q, filled) = id;
      out.scores(q, filled) = score;
      ++filled;
    }
  }
  return out;
}

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

/// k must be > 0, and the nq × k result (ids and scores) must be allocatable: k above the
/// index size is legal (padded rows), but a k whose result cannot exist is a caller mistake.
template <class T>
void check_k(const char* where, std::size_t k, Eigen::Index nq) {
  if (k == 0) throw std::invalid_argument(std::string(where) + ": k must be > 0, got 0");
  // Result bytes per query row are k × (8 + sizeof(T)); cap the whole result at 2^40 bytes.
  constexpr std::uint64_t max_bytes = std::uint64_t(1) << 40;
  const std::uint64_t per = sizeof(Index) + sizeof(T);
  const auto rows = static_cast<std::uint64_t>(std::max<Eigen::Index>(nq, 1));
  if (k > max_bytes / per / rows)
    throw std::invalid_argument(std::string(where) + ": k = " + std::to_string(k) +
                                " is too large: the " + std::to_string(nq) + " × k result cannot " +
                                "be allocated");
}

/// The checks every index's add() makes before touching anything: column count, one id and one
/// modality tag (<= max_modality) per row when given, ids >= 0 (-1 means "no result"), no NaN
/// or Inf.
template <class T>
void check_add(const char* where, const Eigen::Ref<const Matrix<T>>& vectors, std::size_t dim,
               std::span<const Index> ids, std::span<const Modality> modalities) {
  check_dim(where, "vectors", vectors.cols(), dim);
  const auto n = static_cast<std::size_t>(vectors.rows());
  if (!ids.empty() && ids.size() != n)
    throw std::invalid_argument(std::string(where) + ": ids must have one id per row (" +
                                std::to_string(n) + "), got " + std::to_string(ids.size()));
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0)
      throw std::invalid_argument(std::string(where) + ": ids must be >= 0 (-1 means no result), " +
                                  "got " + std::to_string(ids[i]) + " at row " + std::to_string(i));
  if (!modalities.empty() && modalities.size() != n)
    throw std::invalid_argument(std::string(where) + ": modalities must have one tag per row (" +
                                std::to_string(n) + "), got " + std::to_string(modalities.size()));
  for (Modality m : modalities)
    if (m > max_modality)
      throw std::invalid_argument(std::string(where) + ": modality must be <= " +
                                  std::to_string(max_modality) + ", got " + std::to_string(m));
  check_finite_rows(where, "vectors", vectors);
}

}  // namespace detail
}  // namespace mmrag
