#pragma once
/// @file flat_index.hpp
/// Exact (brute-force) top-k search over stored embeddings, as FAISS's IndexFlat.
///
/// Exact means exact: at Storage::float32 the result is the true top-k of the metric for any
/// finite data (large coordinates included), ties to the smaller id, the same for a query alone
/// or in any batch (see search/driver.hpp for how the fast scans prove their candidates).
///
/// Exact search through screening (FlatIndex<float> at Storage::float32): `enable_screening()`
/// keeps an int8 (SQ8) copy of the rows; unfiltered searches then scan the codes with
/// vpdpbusd and rescore exactly every candidate the screen's error bound cannot exclude, so
/// ids and scores equal the float32 search's (detail/int8_screen.hpp has the bound).
///
/// Thread safety: `search` is const and keeps no state: any number of threads may search one
/// index at once. `add`, `remove_ids`, `clear` and the screening switches are not: never call
/// them while another thread searches.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "mmrag/codecs.hpp"
#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"
#include "mmrag/detail/int8_screen.hpp"
#include "mmrag/detail/persist.hpp"
#include "mmrag/search/driver.hpp"
#include "mmrag/search/types.hpp"
#include "mmrag/similarity.hpp"
#include "mmrag/store.hpp"

namespace mmrag {

/// Exact search. Metrics: inner_product (similarity), cosine (vectors and queries normalized,
/// then inner product; zero vectors score 0), l2 (squared Euclidean distance, lower is better).
template <class T>
class FlatIndex : public detail::FileBacked<FlatIndex<T>, T> {
 public:
  using Scalar = T;

  /// An empty index of `dim`-dimensional vectors. Throws std::invalid_argument when dim = 0 or
  /// the storage is not available (see codecs.hpp).
  FlatIndex(std::size_t dim, Metric metric, Storage storage = Storage::float32)
      : dim_(check_dim(dim)), metric_(metric), codec_(dim, storage), store_(codec_.code_size()) {}

  /// Adds the rows of `vectors` (n × dim, row-major). `ids`: one per row (any int64 >= 0), or
  /// empty for sequential ids starting one past the largest id ever added (0 for a new index),
  /// so an id is never reused after remove_ids. Ids are not checked for uniqueness (as FAISS):
  /// a repeated id is stored as another row, may be returned once per row, and `remove_ids`
  /// removes every row holding it. `modalities`: one tag per row, or empty for modality 0.
  /// Throws std::invalid_argument on a wrong column count, NaN/Inf values, a negative id, or
  /// ids / modalities whose count differs from the rows; the index is then unchanged (strong
  /// guarantee, also for std::bad_alloc).
  void add(const Eigen::Ref<const Matrix<T>>& vectors, std::span<const Index> ids = {},
           std::span<const Modality> modalities = {}) {
    constexpr const char* where = "mmrag::FlatIndex::add";
    detail::check_add<T>(where, vectors, dim_, ids, modalities);
    const auto n = static_cast<std::size_t>(vectors.rows());
    const auto id_of = detail::IdSequence::make(where, ids, stats_.next_id, n);
    Codec<T> codec = codec_;
    if (!codec.is_trained() && n > 0) train_codec(codec, vectors);
    detail::Sq8Params screen_ranges;  // the screen's ranges, when its first rows arrive now
    if constexpr (std::is_same_v<T, float>) {
      if (screen_ && !screen_->trained() && n > 0) {
        Matrix<T> prepared = vectors;
        if (metric_ == Metric::cosine) normalize_rows(prepared);
        screen_ranges = screen_->prepare_add(prepared.data(), n);
      } else if (screen_) {
        (void)screen_->prepare_add(nullptr, n);
      }
    }
    const std::size_t old = size();
    store_.reserve_more(n);  // after this nothing below can throw
    codec_ = std::move(codec);
    detail::RowEncoder<T> enc(codec_, metric_);
    for (std::size_t r = 0; r < n; ++r) {
      T sq;
      const std::uint8_t* code = enc.encode(vectors.row(static_cast<Eigen::Index>(r)).data(), sq);
      store_.push(code, sq, id_of[r], modalities.empty() ? Modality(0) : modalities[r]);
      stats_.max_sq_norm = std::max(stats_.max_sq_norm, sq);
    }
    if (screen_ && n > 0)  // the rows as stored (float32: the code bytes are the floats)
      screen_->add_reserved(reinterpret_cast<const float*>(store_.code(old)), n,
                            std::move(screen_ranges));  // (only FlatIndex<float> has a screen)
    stats_.next_id = id_of.after(n);
  }

  /// Exact search through int8 screening, from now on: keeps an SQ8 copy of the stored rows
  /// (per-dimension ranges trained on them, or on the first rows added to an empty index) —
  /// dim bytes per row more, +25 % over float32 rows. Unfiltered searches then scan the codes
  /// (AVX-512 VNNI `vpdpbusd` when the consumer compiles for it: a quarter of the bytes and four
  /// times the multiply-adds per instruction of float32) and rescore exactly every candidate
  /// the screen's error bound cannot exclude: ids and scores equal the float32 search's for
  /// any finite data (where the bound is loose — large coordinates, adversarial near-ties —
  /// more rows are rescored, never fewer than needed). Filtered searches use the float32 scan.
  /// The copy follows add, remove_ids and clear; it is not saved: call this again after load
  /// or map. `codes` must be Storage::int8. Throws std::invalid_argument for FlatIndex<double>,
  /// compressed storage, dim > 66311 or another `codes`; std::bad_alloc leaves it unchanged.
  void enable_screening(Storage codes = Storage::int8) {
    constexpr const char* where = "mmrag::FlatIndex::enable_screening";
    if (codes != Storage::int8)
      throw std::invalid_argument(std::string(where) + ": screening codes must be int8, got " +
                                  to_string(codes));
    if constexpr (!std::is_same_v<T, float>) {
      throw std::invalid_argument(std::string(where) +
                                  ": screening needs FlatIndex<float> (rows stored as float32)");
    } else {
      if (!codec_.is_identity())
        throw std::invalid_argument(std::string(where) + ": screening needs Storage::float32, got " +
                                    to_string(storage()));
      if (dim_ > detail::kSq8MaxScreenDim)
        throw std::invalid_argument(std::string(where) + ": dim " + std::to_string(dim_) +
                                    " exceeds " + std::to_string(detail::kSq8MaxScreenDim) +
                                    " (the int32 sums could overflow)");
      const auto* rows = size() ? reinterpret_cast<const float*>(store_.code(0)) : nullptr;
      screen_ = detail::Int8Screen::build(rows, size(), dim_);
    }
  }
  /// Back to the float32 scan only; frees the copy.
  void disable_screening() noexcept { screen_.reset(); }
  /// The screening codes (Storage::int8) while screening is on, else std::nullopt.
  [[nodiscard]] std::optional<Storage> screening() const noexcept {
    return screen_ ? std::optional<Storage>(Storage::int8) : std::nullopt;
  }

  /// Trains the storage's codec on `sample` (n × dim; only int8 storage needs it: its
  /// per-dimension ranges). Without it, the first `add` trains on its own rows; values added
  /// later outside the trained ranges are clamped. Throws std::invalid_argument on a wrong
  /// column count, NaN/Inf or an empty sample, or when the index already holds rows.
  void train(const Eigen::Ref<const Matrix<T>>& sample) {
    constexpr const char* where = "mmrag::FlatIndex::train";
    detail::check_dim(where, "sample", sample.cols(), dim_);
    detail::check_finite_rows(where, "sample", sample);
    if (size() > 0)
      throw std::invalid_argument(std::string(where) + ": the index already holds " +
                                  std::to_string(size()) + " rows");
    if (sample.rows() == 0) throw std::invalid_argument(std::string(where) + ": sample is empty");
    Codec<T> codec = codec_;
    train_codec(codec, sample);
    codec_ = std::move(codec);
  }

  /// True when rows can be added without training (always, except int8 storage before its
  /// first `train` or `add`).
  [[nodiscard]] bool is_trained() const noexcept { return codec_.is_trained(); }

  /// The k best stored items for each query. queries: nq × dim, row-major. Returns Hits with
  /// nq × k ids and scores (similarities, or squared distances for l2), best first, ties to the
  /// smaller id; rows are padded (id -1) when fewer than k items exist or pass
  /// `params.filter` (params.nprobe is ignored). Batches run as blocked GEMMs fused with the
  /// top-k selection; one to three queries run the SIMD scan. Parallel over query blocks with
  /// OpenMP. Throws std::invalid_argument on a wrong column count, NaN/Inf queries, k = 0 or a
  /// k whose nq × k result cannot be allocated.
  [[nodiscard]] Hits<T> search(const Eigen::Ref<const Matrix<T>>& queries, std::size_t k,
                               const SearchParams& params = {}) const {
    const detail::SearchSetup<T> setup{"mmrag::FlatIndex::search", dim_, metric_, &codec_,
                                       size(), stats_.max_sq_norm, kQueryBlock};
    if constexpr (std::is_same_v<T, float>) {
      if (screen_ && params.filter.is_trivial())
        return detail::run_search(
            setup, queries, k, params.filter,
            [&](const detail::QueryBlock<T>& qb, Eigen::Index, detail::Scanner<T>& scanner) {
              std::vector<Eigen::Index> rest;  // queries too large for the screen's float keys
              screen_->scan(qb.q, qb.sq, qb.nb, qb.tops, store_.ids(), store_.sq_norms().data(),
                            [&](std::size_t r) { return store_.code(r); }, metric_ == Metric::l2,
                            rest);
              if (!rest.empty()) scanner.scan(qb, rest, detail::block_of(store_));
            });
    }
    const detail::Block<T> all = detail::block_of(store_);
    return detail::run_search(setup, queries, k, params.filter,
                              [&](const detail::QueryBlock<T>& qb, Eigen::Index,
                                  detail::Scanner<T>& scanner) { scanner.scan(qb, {}, all); });
  }

  /// Removes every stored row whose id is in `ids`; returns how many rows were removed. Ids
  /// are not reused by later adds. Strong guarantee: the kept rows are built aside and
  /// swapped in.
  std::size_t remove_ids(std::span<const Index> ids) {
    const IdSet doomed = detail::removal_set(ids);
    const auto keep = [&](Index id) { return !doomed.contains(id); };
    std::vector<std::uint8_t> screen_codes;  // built aside, like the store's kept rows
    if (screen_) screen_codes = screen_->kept_codes(store_.ids(), keep);
    const std::size_t removed = store_.keep_if(keep);
    if (screen_) screen_->replace_codes(std::move(screen_codes), size());
    return removed;
  }

  // ---- persistence --------------------------------------------------------------------------
  //
  // File format, version 2, little-endian: the 24-byte header of detail/persist.hpp (magic
  // "MMRAGFLT"), u64 dim, then the rows as VectorStore::write_counted writes them (u64 size,
  // ids, norms, modality tags, codes 64-byte aligned — float32 storage: dim scalars of T), then
  // the u64 checksum. Version-1 files (no norms, no alignment) still load.

  // serialize(), parse(bytes, path), save(path), load(path) and map(path, verify) — a read-only
  // view of a saved file, searched in place — come from detail::FileBacked (store.hpp).


  /// Removes everything (dimension, metric and storage stay; ids keep counting).
  void clear() noexcept {
    store_.clear();
    if (screen_) screen_->clear();
  }

  [[nodiscard]] std::size_t size() const noexcept { return store_.size(); }
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  [[nodiscard]] Metric metric() const noexcept { return metric_; }
  [[nodiscard]] Storage storage() const noexcept { return codec_.storage(); }
  /// Bytes the index holds: codes, ids, tags, norms, codec parameters and the screening copy.
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return store_.memory_bytes() + codec_.memory_bytes() + sizeof(*this) +
           (screen_ ? screen_->memory_bytes() : 0);
  }
  /// Stored vector at position i (0 <= i < size(), insertion order; normalized for cosine;
  /// decoded for compressed storage). Throws std::out_of_range.
  [[nodiscard]] Vector<T> vector(std::size_t i) const {
    check_position(i);
    Vector<T> v(static_cast<Eigen::Index>(dim_));
    codec_.decode(store_.code(i), 1, v.data());
    return v;
  }
  /// Id of the row at position i. Throws std::out_of_range.
  [[nodiscard]] Index id(std::size_t i) const { return store_.ids()[check_position(i)]; }
  /// Modality tag of the row at position i. Throws std::out_of_range.
  [[nodiscard]] Modality modality(std::size_t i) const {
    return store_.modalities()[check_position(i)];
  }

 private:
  static constexpr Eigen::Index kQueryBlock = 256;  // queries per GEMM block (one task)
  friend struct detail::FileBacked<FlatIndex, T>;
  static constexpr char kMagic[9] = "MMRAGFLT";
  static constexpr std::uint32_t kVersion = 2;  // 2: aligned rows with norms (mappable)
  static constexpr const char* kKind = "FlatIndex";

  void write_body(std::vector<char>& out) const {
    codec_.write(out);
    store_.write_counted(out);
  }
  // The codec learns from the rows as they will be stored (normalized for cosine).
  void train_codec(Codec<T>& codec, const Eigen::Ref<const Matrix<T>>& rows) const {
    Matrix<T> prepared = rows;
    if (metric_ == Metric::cosine) normalize_rows(prepared);
    codec.train(prepared.data(), static_cast<std::size_t>(prepared.rows()));
  }
  static FlatIndex read_body(detail::Cursor& c, const detail::FileHeader& h,
                             const StoreReadMode& mode) {
    FlatIndex index(static_cast<std::size_t>(h.dim), h.metric,
                    detail::storage_from_code(h.storage, c.path()));
    if (h.version >= 2) index.codec_.read(c);
    index.store_ = VectorStore<T>(index.codec_.code_size());  // as the file's codec has it
    index.store_.read_counted(c, index.codec_, "vectors", mode);
    if (index.size() > 0 && !index.codec_.is_trained())
      detail::fail(c.path(), c.offset(), "int8 rows without the codec's parameters");
    index.stats_.include(index.store_);
    return index;
  }

  static std::size_t check_dim(std::size_t dim) {
    if (dim == 0) throw std::invalid_argument("mmrag::FlatIndex: dim must be > 0, got 0");
    return dim;
  }
  std::size_t check_position(std::size_t i) const {
    if (i >= size())
      throw std::out_of_range("mmrag::FlatIndex: position " + std::to_string(i) +
                              " is out of range (size " + std::to_string(size()) + ")");
    return i;
  }

  std::size_t dim_;
  Metric metric_;
  Codec<T> codec_;
  VectorStore<T> store_;
  detail::StoreStats<T> stats_;  // norm bound for screening; one past the largest id ever added
  std::optional<detail::Int8Screen> screen_;  // the int8 copy while screening is on
};

}  // namespace mmrag
