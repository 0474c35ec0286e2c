#pragma once
/// @file store.hpp
/// One vector store: encoded rows (the codec's `code_size` bytes each), their ids, modality tags
/// and squared norms, kept in insertion order. FlatIndex holds one; IvfIndex one per inverted
/// list (FAISS's InvertedLists). Appends have the strong guarantee (room is reserved before
/// anything changes); removal builds the kept rows aside and swaps them in.
///
/// Thread safety: const members are safe from any number of threads; mutating members are not
/// safe while another thread reads.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "mmrag/codecs.hpp"
#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"
#include "mmrag/detail/mapped_file.hpp"
#include "mmrag/detail/persist.hpp"
#include "mmrag/detail/simd.hpp"
#include "mmrag/search/types.hpp"
#include "mmrag/similarity.hpp"

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

/// How a store is read from a file.
struct StoreReadMode {
  /// 1: version-1 layout (ids, tags, codes; norms recomputed). 2: aligned layout with norms.
  std::uint32_t format = 2;
  /// When set, the rows are not copied: the store views them inside the file's bytes, and
  /// `keep_alive` keeps those bytes (a memory mapping) valid for as long as the store lives.
  std::shared_ptr<const void> keep_alive = nullptr;
  /// Check every row (finite values, recomputed norms equal the stored ones). Always done for
  /// copies; for views only on request, since it reads every page of the file.
  bool verify_rows = true;
};

/// Encoded rows with ids, modality tags and squared norms (of the decoded rows). The rows are
/// owned, or — after a read with `StoreReadMode::keep_alive` — a read-only view into a mapped
/// file; the first mutation of a view copies it into owned memory (copy on write).
template <class T>
class VectorStore {
 public:
  /// An empty store of rows `code_size` bytes long.
  explicit VectorStore(std::size_t code_size = 0) : code_size_(code_size) {}
  VectorStore(const VectorStore& o) : VectorStore(o.code_size_) { o.copy_into(*this); }
  VectorStore& operator=(const VectorStore& o) {
    if (this != &o) {
      VectorStore tmp(o);
      swap(tmp);
    }
    return *this;
  }
  VectorStore(VectorStore&& o) noexcept { swap(o); }
  VectorStore& operator=(VectorStore&& o) noexcept {
    swap(o);
    return *this;
  }

  [[nodiscard]] std::size_t size() const noexcept { return view_.size; }
  [[nodiscard]] bool empty() const noexcept { return view_.size == 0; }
  [[nodiscard]] std::size_t code_size() const noexcept { return code_size_; }
  /// True when the rows live in a mapped file (read-only view).
  [[nodiscard]] bool is_view() const noexcept { return keep_alive_ != nullptr; }
  [[nodiscard]] const std::uint8_t* codes() const noexcept { return view_.codes; }
  [[nodiscard]] const std::uint8_t* code(std::size_t i) const noexcept {
    return view_.codes + i * code_size_;
  }
  [[nodiscard]] std::span<const Index> ids() const noexcept { return {view_.ids, view_.size}; }
  [[nodiscard]] std::span<const Modality> modalities() const noexcept {
    return {view_.modality, view_.size};
  }
  [[nodiscard]] std::span<const T> sq_norms() const noexcept { return {view_.sq_norms, view_.size}; }

  /// Makes room for n more rows; may throw std::bad_alloc, and then nothing changed. A view is
  /// copied into owned memory first.
  void reserve_more(std::size_t n) {
    own();
    detail::reserve_more(codes_, n * code_size_);
    detail::reserve_more(ids_, n);
    detail::reserve_more(sq_norms_, n);
    detail::reserve_more(modality_, n);
    refresh();
  }

  /// Appends one row. After `reserve_more` covering it, this cannot throw.
  void push(const std::uint8_t* code, T sq_norm, Index id, Modality m) {
    MMRAG_ASSERT(!is_view() && codes_.size() + code_size_ <= codes_.capacity());
    codes_.insert(codes_.end(), code, code + code_size_);
    sq_norms_.push_back(sq_norm);
    ids_.push_back(id);
    modality_.push_back(m);
    refresh();
  }

  /// How many rows keep(id) rejects.
  template <class Keep>
  [[nodiscard]] std::size_t count_rejected(Keep&& keep) const {
    std::size_t n = 0;
    for (Index id : ids()) n += keep(id) ? 0 : 1;
    return n;
  }

  /// An owned copy holding only the rows for which keep(id) is true (this store is unchanged).
  template <class Keep>
  [[nodiscard]] VectorStore filtered(Keep&& keep) const {
    VectorStore kept(code_size_);
    kept.reserve_more(size() - count_rejected(keep));
    for (std::size_t i = 0; i < size(); ++i)
      if (keep(view_.ids[i])) kept.push(code(i), view_.sq_norms[i], view_.ids[i], view_.modality[i]);
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
    std::swap(view_, o.view_);
    keep_alive_.swap(o.keep_alive_);
  }

  void clear() noexcept {
    codes_.clear();
    ids_.clear();
    sq_norms_.clear();
    modality_.clear();
    keep_alive_.reset();
    refresh();
  }

  /// Bytes held in memory (capacity, not just size: what the process actually pays). A view
  /// holds none: its rows are pages of the mapped file.
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return codes_.capacity() + ids_.capacity() * sizeof(Index) + sq_norms_.capacity() * sizeof(T) +
           modality_.capacity() * sizeof(Modality);
  }

  // ---- persistence ---------------------------------------------------------------------------
  //
  // Format 2 (aligned, so a mapped file can be searched in place): u64 count, count × i64 ids,
  // count × T squared norms, count × u8 modality tags, zeros up to a 64-byte file offset,
  // count × code_size code bytes, zeros up to an 8-byte file offset.
  // Format 1 (version-1 files, read only): u64 count, ids, tags, codes; norms recomputed.

  /// Appends u64 count, then the rows (format 2). `out` is the whole file so far (padding is
  /// relative to its start, which must be 8-byte aligned at this point).
  void write_counted(std::vector<char>& out) const {
    MMRAG_ASSERT(out.size() % 8 == 0);
    detail::append(out, static_cast<std::uint64_t>(size()));
    detail::append_raw(out, view_.ids, sizeof(Index) * size());
    detail::append_raw(out, view_.sq_norms, sizeof(T) * size());
    detail::append_raw(out, view_.modality, size());
    out.resize((out.size() + 63) / 64 * 64, 0);
    detail::append_raw(out, view_.codes, code_size_ * size());
    out.resize((out.size() + 7) / 8 * 8, 0);
  }

  /// Reads what write_counted wrote into an empty store. Every count is checked against the
  /// bytes left before anything is allocated; ids (>= 0) and modality tags are always checked;
  /// with mode.verify_rows also finiteness and the stored norms. Throws std::runtime_error naming
  /// the file and offset. `what` names the rows in messages.
  /// `offset`: the vector residual codes are relative to (Codec::rows), or null.
  void read_counted(detail::Cursor& c, const Codec<T>& codec, const std::string& what,
                    const StoreReadMode& mode = {}, const T* offset = nullptr) {
    const std::filesystem::path& path = c.path();
    const std::uint64_t at = c.offset();
    const auto count = c.get<std::uint64_t>("row count");
    const std::uint64_t per_row =
        sizeof(Index) + 1 + code_size_ + (mode.format >= 2 ? sizeof(T) : 0);
    if (count > c.left() / per_row)
      detail::fail(path, at,
                   what + ": " + std::to_string(count) + " rows claimed, more than the file holds");
    const auto n = static_cast<std::size_t>(count);
    const std::uint64_t ids_at = c.offset();
    const auto* ids = reinterpret_cast<const Index*>(c.here());
    c.skip(sizeof(Index) * count, "ids");
    const T* norms = nullptr;
    if (mode.format >= 2) {
      norms = reinterpret_cast<const T*>(c.here());
      c.skip(sizeof(T) * count, "norms");
    }
    const std::uint64_t mod_at = c.offset();
    const auto* mods = reinterpret_cast<const Modality*>(c.here());
    c.skip(count, "modality tags");
    if (mode.format >= 2) skip_padding(c, 64, what);
    const std::uint64_t codes_at = c.offset();
    const auto* codes = reinterpret_cast<const std::uint8_t*>(c.here());
    c.skip(code_size_ * count, "codes");
    if (mode.format >= 2) skip_padding(c, 8, what);

    // Validate what every search relies on (cheap: ids and tags only).
    for (std::size_t i = 0; i < n; ++i) {
      Index id;
      std::memcpy(&id, reinterpret_cast<const char*>(ids) + i * sizeof(Index), sizeof(Index));
      if (id < 0) detail::fail(path, ids_at, what + ": negative id " + std::to_string(id));
      if (mods[i] > max_modality)
        detail::fail(path, mod_at,
                     what + ": modality tag " + std::to_string(mods[i]) + " > " +
                         std::to_string(max_modality));
    }
    if (mode.keep_alive && mode.format >= 2) {
      // A view: sections are aligned in the file, and mappings are page-aligned.
      MMRAG_ASSERT(reinterpret_cast<std::uintptr_t>(ids) % alignof(Index) == 0);
      view_ = {codes, ids, norms, mods, n};
      keep_alive_ = mode.keep_alive;
      if (mode.verify_rows) verify(codec, path, codes_at, what, offset);
      return;
    }
    ids_.resize(n);
    modality_.resize(n);
    codes_.resize(n * code_size_);
    sq_norms_.resize(n);
    if (n > 0) {
      std::memcpy(ids_.data(), ids, sizeof(Index) * n);
      std::memcpy(modality_.data(), mods, n);
      std::memcpy(codes_.data(), codes, code_size_ * n);
    }
    refresh();
    // Norms are derived data: recompute them from the rows (and so check every row).
    for_each_row_norm(codec, path, codes_at, what, offset,
                      [&](std::size_t r, T sq) { sq_norms_[r] = sq; });
  }

 private:
  struct View {
    const std::uint8_t* codes = nullptr;
    const Index* ids = nullptr;
    const T* sq_norms = nullptr;
    const Modality* modality = nullptr;
    std::size_t size = 0;
  };

  void refresh() noexcept {
    view_ = {codes_.data(), ids_.data(), sq_norms_.data(), modality_.data(), ids_.size()};
  }

  /// A view becomes owned memory (built aside, then swapped in: strong guarantee).
  void own() {
    if (!is_view()) return;
    VectorStore copy(code_size_);
    copy_into(copy);
    swap(copy);
  }

  void copy_into(VectorStore& out) const {
    out.codes_.assign(view_.codes, view_.codes + code_size_ * size());
    out.ids_.assign(view_.ids, view_.ids + size());
    out.sq_norms_.assign(view_.sq_norms, view_.sq_norms + size());
    out.modality_.assign(view_.modality, view_.modality + size());
    out.refresh();
  }

  static void skip_padding(detail::Cursor& c, std::uint64_t align, const std::string& what) {
    const std::uint64_t pad = (align - c.offset() % align) % align;
    c.need(pad, "padding");
    for (std::uint64_t i = 0; i < pad; ++i)
      if (c.here()[i] != 0) detail::fail(c.path(), c.offset() + i, what + ": padding is not zero");
    c.skip(pad, "padding");
  }

  /// Every row finite and its stored norm equal to the recomputed one.
  void verify(const Codec<T>& codec, const std::filesystem::path& path, std::uint64_t codes_at,
              const std::string& what, const T* offset) const {
    for_each_row_norm(codec, path, codes_at, what, offset, [&](std::size_t r, T sq) {
      if (view_.sq_norms[r] != sq)
        detail::fail(path, codes_at, what + ": a stored norm does not match its row");
    });
  }

  /// Decodes every row, fails on NaN/Inf, and hands its squared norm to use(row, norm).
  template <class Use>
  void for_each_row_norm(const Codec<T>& codec, const std::filesystem::path& path,
                         std::uint64_t codes_at, const std::string& what, const T* offset,
                         Use&& use) const {
    std::vector<T> scratch;
    for (std::size_t r = 0; r < size(); ++r) {
      const T* row = codec.rows(code(r), 1, scratch, offset);
      for (std::size_t j = 0; j < codec.dim(); ++j)
        if (!std::isfinite(row[j])) detail::fail(path, codes_at, what + " hold NaN or Inf");
      use(r, detail::dot_kernel<T>(row, row, codec.dim()));
    }
  }

  std::size_t code_size_ = 0;
  std::vector<std::uint8_t> codes_;  // owned rows: size() × code_size_
  std::vector<Index> ids_;
  std::vector<T> sq_norms_;
  std::vector<Modality> modality_;
  View view_;                              // what every reader uses: owned rows or the mapping
  std::shared_ptr<const void> keep_alive_;  // the mapping a view reads from
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

  /// Encodes row x (dim values); the result stays valid until the next call. With an
  /// `offset` (an IVF cell's centroid) the code is of the residual x − offset, and sq_norm is
  /// that of the stored row as searches decode it: fl(code_offset + decoded residual), with
  /// `code_offset` the same centroid in the codec's code space (Codec::to_code_space).
  const std::uint8_t* encode(const T* x, T& sq_norm, const T* offset = nullptr,
                             const T* code_offset = nullptr) {
    if (!code_offset) code_offset = offset;
    const std::size_t d = codec_.dim();
    std::copy(x, x + d, row_.begin());
    if (metric_ == Metric::cosine) normalize_row(row_.data(), d);
    if (offset)
      for (std::size_t j = 0; j < d; ++j) row_[j] -= offset[j];
    codec_.encode(row_.data(), 1, code_.data());
    const T* stored = codec_.rows(code_.data(), 1, decoded_, code_offset);  // as searches see it
    sq_norm = dot_kernel<T>(stored, stored, d);
    return code_.data();
  }

 private:
  const Codec<T>& codec_;
  Metric metric_;
  std::vector<T> row_;
  std::vector<std::uint8_t> code_;
  std::vector<T> decoded_;
};

/// The next sequential id after `id` (saturating at the largest int64; IdSequence::make
/// refuses to hand out ids past it).
[[nodiscard]] constexpr Index one_past(Index id) noexcept {
  return id == std::numeric_limits<Index>::max() ? id : id + 1;
}

/// What an index derives from its stored rows: an upper bound of their squared norms (for the
/// screening bound) and the next sequential id. Kept up to date by add, rebuilt on load.
template <class T>
struct StoreStats {
  T max_sq_norm = 0;
  Index next_id = 0;
  void include(const VectorStore<T>& s) {
    for (T sq : s.sq_norms()) max_sq_norm = std::max(max_sq_norm, sq);
    for (Index id : s.ids()) next_id = std::max(next_id, one_past(id));
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
  /// The sequence for n rows; throws std::invalid_argument when sequential ids would run past
  /// the largest int64 (only after someone added an id near it).
  static IdSequence make(const char* where, std::span<const Index> ids, Index next, std::size_t n) {
    if (ids.empty() && n > 0 &&
        static_cast<std::uint64_t>(std::numeric_limits<Index>::max() - next) < n)
      throw std::invalid_argument(std::string(where) + ": sequential ids from " +
                                  std::to_string(next) + " would pass the largest id; give ids");
    return {ids, next};
  }
  [[nodiscard]] Index operator[](std::size_t r) const noexcept {
    return given.empty() ? next + static_cast<Index>(r) : given[r];
  }
  /// The next sequential id after this add.
  [[nodiscard]] Index after(std::size_t n) const noexcept {
    Index m = given.empty() ? next + static_cast<Index>(n) : next;  // checked by make()
    for (Index id : given) m = std::max(m, one_past(id));
    return m;
  }
};

/// serialize / parse / save / load / map for an index (CRTP). The index provides kMagic,
/// kVersion, kKind, metric(), storage(), dim(), `write_body(out)` (what follows dim) and
/// `static Index read_body(Cursor&, const FileHeader&, const StoreReadMode&)`; this writes and
/// checks the header, dim and the trailing checksum around them.
template <class Derived, class T>
struct FileBacked {
  /// The bytes `save` writes, as a buffer (for sending over a network or storing in a blob).
  [[nodiscard]] std::vector<char> serialize() const {
    const Derived& self = static_cast<const Derived&>(*this);
    std::vector<char> out;
    write_index_start<T>(out, Derived::kMagic, Derived::kVersion, self.metric(),
                         static_cast<std::uint32_t>(self.storage()), self.dim());
    self.write_body(out);
    write_checksum(out);
    return out;
  }
  /// Rebuilds an index from `serialize` / `save` bytes (this version's and version-1 files).
  /// Verifies the checksum first, then the magic, version, scalar type (must be T's), metric,
  /// storage, every size against the bytes present, ids, modality tags and finiteness. Throws
  /// std::runtime_error naming `path` and the offset on a truncated, corrupt or mismatched
  /// input; never reads out of bounds.
  [[nodiscard]] static Derived parse(std::span<const char> bytes,
                                   const std::filesystem::path& path = "<memory>") {
    return read(bytes, path, StoreReadMode{});
  }
  /// Writes `serialize()` to `path`. Throws std::runtime_error naming the file and OS reason.
  void save(const std::filesystem::path& path) const {
    write_all(path, static_cast<const Derived&>(*this).serialize());
  }
  /// Reads a file written by `save` into memory, with every check of `parse`.
  [[nodiscard]] static Derived load(const std::filesystem::path& path) {
    return parse(read_all(path), path);
  }
  /// Maps a file written by `save` (this version) read-only and returns an index whose rows
  /// are views into the mapping: opening takes milliseconds whatever the size, pages become
  /// resident as searches touch them, and processes mapping the same file share them. The
  /// header, every count and offset, ids and modality tags are checked as by `load`; the
  /// checksum and the rows' values (finite, stored norms) only when `verify` is true, since
  /// that reads the whole file. Searching a mapped index gives the same results as a loaded
  /// one; the first `add` / `remove_ids` copies the rows it changes into memory. The file must
  /// not be modified while mapped. Throws std::runtime_error naming the file.
  [[nodiscard]] static Derived map(const std::filesystem::path& path, bool verify = false) {
    auto file = std::make_shared<const MappedFile>(path);
    return read(file->bytes(), path, StoreReadMode{.format = Derived::kVersion, .keep_alive = file,
                                                   .verify_rows = verify});
  }
  /// As `map`, over bytes the caller provides (shared memory, its own mapping): the index views
  /// `bytes`, which `keep_alive` must keep valid and unchanged for the index's lifetime.
  /// Throws std::invalid_argument when bytes.data() is not 8-byte aligned or keep_alive is
  /// null, and std::runtime_error as `map`.
  [[nodiscard]] static Derived view(std::span<const char> bytes, std::shared_ptr<const void> keep_alive,
                                    const std::filesystem::path& path = "<memory>",
                                    bool verify = false) {
    if (keep_alive == nullptr)
      throw std::invalid_argument(std::string("mmrag::") + Derived::kKind +
                                  "::view: keep_alive must own the bytes, got null");
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % 8 != 0)
      throw std::invalid_argument(std::string("mmrag::") + Derived::kKind +
                                  "::view: bytes must be 8-byte aligned");
    return read(bytes, path, StoreReadMode{.format = Derived::kVersion,
                                           .keep_alive = std::move(keep_alive),
                                           .verify_rows = verify});
  }

 private:
  static Derived read(std::span<const char> bytes, const std::filesystem::path& path,
                    StoreReadMode mode) {
    Cursor c(bytes, path);
    const bool verify = mode.keep_alive == nullptr || mode.verify_rows;
    const FileHeader h =
        read_index_start<T>(c, bytes, Derived::kMagic, Derived::kVersion, Derived::kKind, verify);
    if (mode.keep_alive && h.version != Derived::kVersion)
      fail(path, 8, "version " + std::to_string(h.version) + " files cannot be mapped: load() it and save() it again");
    mode.format = h.version;
    // A constructor's invalid_argument here means the file names something this build cannot
    // hold (e.g. a storage kind): a file error, so std::runtime_error like every other.
    auto body = [&] {
      try {
        return Derived::read_body(c, h, mode);
      } catch (const std::invalid_argument& e) {
        fail(path, kHeaderBytes, e.what());
      }
    };
    Derived index = body();
    if (c.left() != 8)
      fail(path, c.offset(),
           "expected the 8-byte checksum here, found " + std::to_string(c.left()) + " bytes");
    return index;
  }
};

}  // namespace detail
}  // namespace mmrag
