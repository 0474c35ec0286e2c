#pragma once
/// @file store.hpp
/// One vector store: encoded rows (the codec's `code_size` bytes each), their ids, modality tags
/// and squared norms, kept in insertion order. FlatIndex holds one; IvfIndex one per inverted
/// list (FAISS's InvertedLists). Appends have the strong guarantee (room is reserved before
/// anything changes); removal builds the kept rows aside and swaps them in.
///
/// Thread safety: const members are safe from any number of threads; mutating members are not
/// safe while another thread reads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "mmrag/codecs.hpp"
#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"
#include "mmrag/detail/simd.hpp"
#include "mmrag/search/types.hpp"

namespace mmrag {

namespace detail {
/// Reserves room for `extra` more elements, growing geometrically so repeated small adds stay
/// amortized O(1). May throw (std::bad_alloc) before anything changes.
template <class V>
void reserve_more(V& v, std::size_t extra) {
  const std::size_t need = v.size() + extra;
  if (need > v.capacity()) v.reserve(std::max(need, v.capacity() + v.capacity() / 2));
}
}  // namespace detail

/// Encoded rows with ids, modality tags and squared norms (of the decoded rows).
template <class T>
class VectorStore {
 public:
  /// An empty store of rows `code_size` bytes long.
  explicit VectorStore(std::size_t code_size = 0) : code_size_(code_size) {}

  [[nodiscard]] std::size_t size() const noexcept { return ids_.size(); }
  [[nodiscard]] bool empty() const noexcept { return ids_.empty(); }
  [[nodiscard]] std::size_t code_size() const noexcept { return code_size_; }
  [[nodiscard]] const std::uint8_t* codes() const noexcept { return codes_.data(); }
  [[nodiscard]] const std::uint8_t* code(std::size_t i) const noexcept {
    return codes_.data() + i * code_size_;
  }
  [[nodiscard]] std::span<const Index> ids() const noexcept { return ids_; }
  [[nodiscard]] std::span<const Modality> modalities() const noexcept { return modality_; }
  [[nodiscard]] std::span<const T> sq_norms() const noexcept { return sq_norms_; }

  /// Makes room for n more rows; may throw std::bad_alloc, and then nothing changed.
  void reserve_more(std::size_t n) {
    detail::reserve_more(codes_, n * code_size_);
    detail::reserve_more(ids_, n);
    detail::reserve_more(sq_norms_, n);
    detail::reserve_more(modality_, n);
  }

  /// Appends one row. After `reserve_more` covering it, this cannot throw.
  void push(const std::uint8_t* code, T sq_norm, Index id, Modality m) {
    codes_.insert(codes_.end(), code, code + code_size_);
    sq_norms_.push_back(sq_norm);
    ids_.push_back(id);
    modality_.push_back(m);
  }

  /// How many rows keep(id) rejects.
  template <class Keep>
  [[nodiscard]] std::size_t count_rejected(Keep&& keep) const {
    std::size_t n = 0;
    for (Index id : ids_) n += keep(id) ? 0 : 1;
    return n;
  }

  /// A copy holding only the rows for which keep(id) is true (this store is unchanged).
  template <class Keep>
  [[nodiscard]] VectorStore filtered(Keep&& keep) const {
    VectorStore kept(code_size_);
    kept.reserve_more(size() - count_rejected(keep));
    for (std::size_t i = 0; i < size(); ++i)
      if (keep(ids_[i])) kept.push(code(i), sq_norms_[i], ids_[i], modality_[i]);
    return kept;
  }

  /// Keeps the rows for which keep(id) is true; returns how many were removed. The kept rows
  /// are built aside and swapped in (strong guarantee).
  template <class Keep>
  std::size_t keep_if(Keep&& keep) {
    const std::size_t removed = count_rejected(keep);
    if (removed == 0) return 0;
    VectorStore kept = filtered(keep);
    swap(kept);
    return removed;
  }

  void swap(VectorStore& o) noexcept {
    std::swap(code_size_, o.code_size_);
    codes_.swap(o.codes_);
    ids_.swap(o.ids_);
    sq_norms_.swap(o.sq_norms_);
    modality_.swap(o.modality_);
  }

  void clear() noexcept {
    codes_.clear();
    ids_.clear();
    sq_norms_.clear();
    modality_.clear();
  }

  /// Bytes held (capacity, not just size: what the process actually pays).
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return codes_.capacity() + ids_.capacity() * sizeof(Index) + sq_norms_.capacity() * sizeof(T) +
           modality_.capacity() * sizeof(Modality);
  }

  // ---- persistence: count × i64 ids, count × u8 modality, count × code_size bytes ----------

  /// Bytes one row takes in a file. `code_size` must be bounded by the caller (<= 2^43).
  [[nodiscard]] static constexpr std::uint64_t row_bytes(std::uint64_t code_size) noexcept {
    return sizeof(Index) + 1 + code_size;
  }

  /// Appends the rows (not their count) to `out`.
  void write(std::vector<char>& out) const {
    detail::append_raw(out, ids_.data(), sizeof(Index) * ids_.size());
    detail::append_raw(out, modality_.data(), modality_.size());
    detail::append_raw(out, codes_.data(), codes_.size());
  }

  /// Appends u64 count, then the rows.
  void write_counted(std::vector<char>& out) const {
    detail::append(out, static_cast<std::uint64_t>(size()));
    write(out);
  }

  /// Reads what write_counted wrote into an empty store: the count is checked against the bytes
  /// left before anything is allocated.
  void read_counted(detail::Cursor& c, const Codec<T>& codec, const std::string& what) {
    const std::uint64_t at = c.offset();
    const auto count = c.get<std::uint64_t>("row count");
    if (count > c.left() / row_bytes(code_size_))
      detail::fail(c.path(), at,
                   what + ": " + std::to_string(count) + " rows claimed, more than the file holds");
    read(c, count, codec, what);
  }

  /// Reads `count` rows written by `write` into an empty store, checking ids (>= 0), modality
  /// tags and (for the identity codec) finiteness; recomputes the squared norms of the decoded
  /// rows. Throws std::runtime_error naming the file and offset; the caller has checked that
  /// count rows fit in the bytes left. `what` names the rows in messages.
  void read(detail::Cursor& c, std::uint64_t count, const Codec<T>& codec, const std::string& what) {
    const std::filesystem::path& path = c.path();
    const auto n = static_cast<std::size_t>(count);
    ids_.resize(n);
    modality_.resize(n);
    codes_.resize(n * code_size_);
    sq_norms_.resize(n);
    const std::uint64_t ids_at = c.offset();
    c.copy_to(ids_.data(), sizeof(Index) * count, "ids");
    for (Index id : ids_)
      if (id < 0) detail::fail(path, ids_at, what + ": negative id " + std::to_string(id));
    const std::uint64_t mod_at = c.offset();
    c.copy_to(modality_.data(), count, "modality tags");
    for (Modality m : modality_)
      if (m > max_modality)
        detail::fail(path, mod_at,
                     what + ": modality tag " + std::to_string(m) + " > " +
                         std::to_string(max_modality));
    const std::uint64_t codes_at = c.offset();
    c.copy_to(codes_.data(), codes_.size(), "codes");
    std::vector<T> row(codec.dim());
    for (std::size_t r = 0; r < n; ++r) {
      codec.decode(code(r), 1, row.data());
      for (T v : row)
        if (!std::isfinite(v)) detail::fail(path, codes_at, what + " hold NaN or Inf");
      sq_norms_[r] = detail::dot_kernel<T>(row.data(), row.data(), row.size());
    }
  }

 private:
  std::size_t code_size_;
  std::vector<std::uint8_t> codes_;  // size() × code_size_
  std::vector<Index> ids_;
  std::vector<T> sq_norms_;
  std::vector<Modality> modality_;
};

namespace detail {

/// Turns caller rows into stored rows for one index: normalized for cosine (zero rows stay
/// zero), encoded by the codec, with the squared norm of the decoded row (what l2 scans and the
/// screening bound use). Reuses its buffers: one per thread.
template <class T>
class RowEncoder {
 public:
  RowEncoder(const Codec<T>& codec, Metric metric)
      : codec_(codec), metric_(metric), row_(codec.dim()), code_(codec.code_size()),
        decoded_(codec.dim()) {}

  /// Encodes row x (dim values); the result stays valid until the next call.
  const std::uint8_t* encode(const T* x, T& sq_norm) {
    const std::size_t d = codec_.dim();
    std::copy(x, x + d, row_.begin());
    if (metric_ == Metric::cosine) {
      const T n2 = dot_kernel<T>(row_.data(), row_.data(), d);
      if (n2 > T(0)) {
        const T inv = T(1) / std::sqrt(n2);
        for (T& v : row_) v *= inv;
      }
    }
    codec_.encode(row_.data(), 1, code_.data());
    codec_.decode(code_.data(), 1, decoded_.data());
    sq_norm = dot_kernel<T>(decoded_.data(), decoded_.data(), d);
    return code_.data();
  }

 private:
  const Codec<T>& codec_;
  Metric metric_;
  std::vector<T> row_;
  std::vector<std::uint8_t> code_;
  std::vector<T> decoded_;
};

/// What an index derives from its stored rows: an upper bound of their squared norms (for the
/// screening bound) and the next sequential id. Kept up to date by add, rebuilt on load.
template <class T>
struct StoreStats {
  T max_sq_norm = 0;
  Index next_id = 0;
  void include(const VectorStore<T>& s) {
    for (T sq : s.sq_norms()) max_sq_norm = std::max(max_sq_norm, sq);
    constexpr Index top = std::numeric_limits<Index>::max();
    for (Index id : s.ids()) next_id = std::max(next_id, id == top ? top : id + 1);
  }
};

/// The ids remove_ids was given, as a set; negative ids (never stored) are skipped.
inline IdSet removal_set(std::span<const Index> ids) {
  IdSet set;
  set.reserve(ids.size());
  for (Index id : ids)
    if (id >= 0) set.insert(id);
  return set;
}

/// Ids for the rows of one add: the caller's, or sequential from `next` — one past the largest
/// id ever added, so an id is never reused after remove_ids (FAISS counts from ntotal instead).
struct IdSequence {
  std::span<const Index> given;
  Index next;
  [[nodiscard]] Index operator[](std::size_t r) const noexcept {
    return given.empty() ? next + static_cast<Index>(r) : given[r];
  }
  /// The next sequential id after this add.
  [[nodiscard]] Index after(std::size_t n) const noexcept {
    Index m = given.empty() ? next + static_cast<Index>(n) : next;
    constexpr Index top = std::numeric_limits<Index>::max();
    for (Index id : given) m = std::max(m, id == top ? top : id + 1);
    return m;
  }
};

}  // namespace detail
}  // namespace mmrag
