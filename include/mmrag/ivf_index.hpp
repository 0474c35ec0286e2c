#pragma once
/// @file ivf_index.hpp
/// Inverted-file (IVF) approximate search, as FAISS's IndexIVFFlat: k-means splits the space
/// into nlist cells; a query visits the nprobe cells whose centroids are closest and scans
/// their rows exactly (through the shared driver, search/driver.hpp). With nprobe >= nlist the
/// result is exact, as FlatIndex's.
///
/// Thread safety: `search` is const and keeps no state (nprobe and filters come per call):
/// any number of threads may search one index at once. `train`, `add`, `remove_ids` and
/// `clear` are not: never call them while another thread searches.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mmrag/codecs.hpp"
#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"
#include "mmrag/detail/nearest_centroids.hpp"
#include "mmrag/detail/persist.hpp"
#include "mmrag/kmeans.hpp"
#include "mmrag/search/driver.hpp"
#include "mmrag/search/types.hpp"
#include "mmrag/similarity.hpp"
#include "mmrag/store.hpp"

namespace mmrag {

/// IVF's per-call parameters are the common ones (nprobe, filter), as FAISS's
/// SearchParametersIVF.
using IvfSearchParams = SearchParams;

template <class T>
class IvfIndex : public detail::FileBacked<IvfIndex<T>, T> {
 public:
  using Scalar = T;

  /// An untrained index of `dim`-dimensional vectors with `nlist` cells.
  /// Throws std::invalid_argument when dim or nlist is 0 or the storage is not available.
  IvfIndex(std::size_t dim, std::size_t nlist, Metric metric, Storage storage = Storage::float32)
      : dim_(check_positive(dim, "dim")), nlist_(check_positive(nlist, "nlist")), metric_(metric),
        codec_(dim, storage), lists_(nlist, VectorStore<T>(codec_.code_size())) {}

  /// Learns the nlist centroids from `sample` (n × dim, n >= nlist) with k-means, and the
  /// storage's codec parameters (int8: per-dimension ranges of the residuals x − centroid)
  /// from the same rows. Fields of
  /// `params` left unset take IVF's defaults: 10 iterations (as FAISS's IVF training) and
  /// spherical k-means for the cosine metric; fields that are set are used as given.
  /// Throws std::invalid_argument on a wrong column count, nlist > n, NaN/Inf, or when the
  /// index already holds vectors; the index is then unchanged.
  void train(const Eigen::Ref<const Matrix<T>>& sample, KMeansParams params = {}) {
    constexpr const char* where = "mmrag::IvfIndex::train";
    detail::check_dim(where, "sample", sample.cols(), dim_);
    if (static_cast<std::size_t>(sample.rows()) < nlist_)
      throw std::invalid_argument(std::string(where) + ": nlist (" + std::to_string(nlist_) +
                                  ") must not exceed the training rows (" +
                                  std::to_string(sample.rows()) + ")");
    if (size() > 0)
      throw std::invalid_argument(std::string(where) + ": the index already holds " +
                                  std::to_string(size()) +
                                  " vectors; clear() it before training again");
    detail::check_finite_rows(where, "sample", sample);
    if (!params.iterations) params.iterations = 10;
    if (!params.spherical) params.spherical = metric_ == Metric::cosine;
    params.assign = false;
    KMeansResult<T> km;
    if (metric_ == Metric::cosine) {
      Matrix<T> s = sample;
      normalize_rows(s);
      km = kmeans<T>(s, nlist_, params);
    } else {
      km = kmeans<T>(sample, nlist_, params);
    }
    Vector<T> sq = km.centroids.rowwise().squaredNorm();
    Codec<T> codec = codec_;
    Matrix<T> s = sample;  // contiguous rows
    if (metric_ == Metric::cosine) normalize_rows(s);
    if (by_residual()) {  // the codec learns the residuals' ranges (cells as `add` assigns them)
      std::vector<Index> cell(static_cast<std::size_t>(s.rows()));
      detail::nearest_centroids<T>(s, km.centroids, sq, metric_ != Metric::l2, 1, cell.data());
      for (Eigen::Index r = 0; r < s.rows(); ++r)
        s.row(r) -= km.centroids.row(cell[static_cast<std::size_t>(r)]);
    }
    codec.train(s.data(), static_cast<std::size_t>(s.rows()));
    Matrix<T> code_centroids = rotated_centroids(codec, km.centroids);
    codec_ = std::move(codec);  // nothing below throws
    centroids_.swap(km.centroids);
    centroid_sq_.swap(sq);
    code_centroids_.swap(code_centroids);
  }

  [[nodiscard]] bool is_trained() const noexcept { return centroids_.rows() > 0; }

  /// Adds the rows of `vectors` (n × dim) to their nearest cells. `ids`, `modalities` and the
  /// rules for them are FlatIndex::add's (ids >= 0, sequential from one past the largest id
  /// ever added, not checked for uniqueness). Memory: the rows' codes plus n cell numbers and a
  /// bounded scratch — never an n × nlist matrix. Throws std::invalid_argument before
  /// training, on a wrong column count, NaN/Inf, a negative id, or ids / modalities whose count
  /// differs from the rows; the index is then unchanged (strong guarantee).
  void add(const Eigen::Ref<const Matrix<T>>& vectors, std::span<const Index> ids = {},
           std::span<const Modality> modalities = {}) {
    constexpr const char* where = "mmrag::IvfIndex::add";
    if (!is_trained())
      throw std::invalid_argument(std::string(where) + ": the index must be trained before add");
    detail::check_add<T>(where, vectors, dim_, ids, modalities);
    const auto n = static_cast<std::size_t>(vectors.rows());
    const std::vector<Index> cell = assign(vectors);
    // Reserve every list first: after this, nothing below throws (strong guarantee).
    std::vector<std::size_t> extra(nlist_, 0);
    for (Index c : cell) ++extra[static_cast<std::size_t>(c)];
    for (std::size_t l = 0; l < nlist_; ++l)
      if (extra[l] > 0) lists_[l].reserve_more(extra[l]);
    const auto id_of = detail::IdSequence::make(where, ids, stats_.next_id, n);
    detail::RowEncoder<T> enc(codec_, metric_);
    for (std::size_t r = 0; r < n; ++r) {
      T sq;
      const auto l = static_cast<std::size_t>(cell[r]);
      const std::uint8_t* code =
          enc.encode(vectors.row(static_cast<Eigen::Index>(r)).data(), sq, input_offset(l), offset(l));
      lists_[static_cast<std::size_t>(cell[r])].push(
          code, sq, id_of[r], modalities.empty() ? Modality(0) : modalities[r]);
      stats_.max_sq_norm = std::max(stats_.max_sq_norm, sq);
    }
    size_ += n;
    stats_.next_id = id_of.after(n);
  }

  /// The k best stored items per query among the nprobe probed cells. queries: nq × dim.
  /// Returns nq × k ids and scores (similarities, or squared distances for l2), best first,
  /// ties to the smaller id, padded with id -1 (score -inf, or +inf for l2) when fewer than k
  /// allowed items lie in the probed cells. With nprobe >= nlist the result is exact. Batches
  /// group the queries by cell, so each cell is read once per block of queries and scored
  /// through one GEMM; single queries use the SIMD scan. Throws std::invalid_argument before
  /// training, on a wrong column count, k = 0 (or a k whose result cannot be allocated),
  /// nprobe = 0 or NaN/Inf queries.
  [[nodiscard]] Hits<T> search(const Eigen::Ref<const Matrix<T>>& queries, std::size_t k,
                               const SearchParams& params = {}) const {
    constexpr const char* where = "mmrag::IvfIndex::search";
    check_search(where, params);
    const std::size_t nprobe = std::min(params.nprobe, nlist_);
    return detail::run_search(
        setup(where), queries, k, params.filter,
        [&](const detail::QueryBlock<T>& qb, Eigen::Index, detail::Scanner<T>& scanner) {
          const Eigen::Map<const Matrix<T>> q(qb.q_input, static_cast<Eigen::Index>(qb.nb),
                                              static_cast<Eigen::Index>(dim_));
          std::vector<Index> probes(qb.nb * nprobe);
          detail::nearest_centroids<T>(q, centroids_, centroid_sq_, metric_ != Metric::l2,
                                       nprobe, probes.data());
          scan_cells(qb, probes.data(), nprobe, scanner);
        });
  }

  /// Searches with cells chosen by the caller (FAISS's search_preassigned): `probes` is
  /// nq × p (row-major) cell numbers in [0, nlist), -1 entries skipped; the queries visit exactly
  /// those cells. Throws std::invalid_argument as `search`, and when probes has the wrong shape
  /// or a cell number out of range.
  [[nodiscard]] Hits<T> search_preassigned(const Eigen::Ref<const Matrix<T>>& queries, std::size_t k,
                                           const Eigen::Ref<const Matrix<Index>>& probes,
                                           const SearchParams& params = {}) const {
    constexpr const char* where = "mmrag::IvfIndex::search_preassigned";
    check_search(where, params);
    if (probes.rows() != queries.rows() || probes.cols() == 0)
      throw std::invalid_argument(std::string(where) + ": probes must be nq × p with nq = " +
                                  std::to_string(queries.rows()) + " and p > 0, got " +
                                  std::to_string(probes.rows()) + " × " +
                                  std::to_string(probes.cols()));
    for (Eigen::Index i = 0; i < probes.size(); ++i)
      if (probes.data()[i] < -1 || probes.data()[i] >= static_cast<Index>(nlist_))
        throw std::invalid_argument(std::string(where) + ": probes must hold cells in [0, " +
                                    std::to_string(nlist_) + ") or -1, got " +
                                    std::to_string(probes.data()[i]));
    const Matrix<Index> p = probes;  // contiguous rows
    const auto np = static_cast<std::size_t>(p.cols());
    return detail::run_search(
        setup(where), queries, k, params.filter,
        [&](const detail::QueryBlock<T>& qb, Eigen::Index first_q, detail::Scanner<T>& scanner) {
          scan_cells(qb, p.row(first_q).data(), np, scanner);
        });
  }

  /// The nprobe best cells for each query (nq × nprobe, best first, ties to the smaller cell),
  /// as `search` chooses them: input for search_preassigned. Throws as `search`.
  [[nodiscard]] Matrix<Index> probe_cells(const Eigen::Ref<const Matrix<T>>& queries,
                                          std::size_t nprobe) const {
    constexpr const char* where = "mmrag::IvfIndex::probe_cells";
    check_search(where, {.nprobe = nprobe});
    detail::check_dim(where, "queries", queries.cols(), dim_);
    detail::check_finite_rows(where, "queries", queries);
    const std::size_t p = std::min(nprobe, nlist_);
    Matrix<Index> out(queries.rows(), static_cast<Eigen::Index>(p));
    Matrix<T> q = queries;
    if (metric_ == Metric::cosine) normalize_rows(q);
    detail::nearest_centroids<T>(q, centroids_, centroid_sq_, metric_ != Metric::l2, p, out.data());
    return out;
  }

  /// Removes every stored item whose id is in `ids`; returns how many were removed. Ids are
  /// not reused by later adds. Strong guarantee: the changed lists are built aside and swapped
  /// in only when all are complete.
  std::size_t remove_ids(std::span<const Index> ids) {
    const IdSet doomed = detail::removal_set(ids);
    auto keep = [&](Index id) { return !doomed.contains(id); };
    std::vector<std::pair<std::size_t, VectorStore<T>>> changed;
    std::size_t removed = 0;
    for (std::size_t l = 0; l < nlist_; ++l) {
      const std::size_t r = lists_[l].count_rejected(keep);
      if (r == 0) continue;
      removed += r;
      changed.emplace_back(l, lists_[l].filtered(keep));
    }
    for (auto& [l, kept] : changed) lists_[l].swap(kept);  // noexcept from here
    size_ -= removed;
    return removed;
  }

  /// Removes every stored vector; the trained centroids stay (ids keep counting).
  void clear() noexcept {
    for (auto& l : lists_) l.clear();
    size_ = 0;
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  [[nodiscard]] std::size_t nlist() const noexcept { return nlist_; }
  [[nodiscard]] Metric metric() const noexcept { return metric_; }
  [[nodiscard]] Storage storage() const noexcept { return codec_.storage(); }
  /// Whether stored codes are of residuals x − centroid (int8, as FAISS's
  /// IndexIVFScalarQuantizer with by_residual): the codec's ranges then span a cell's spread
  /// rather than the whole data's, so the same 8 bits resolve finer. False for the other
  /// storages, and for an int8 index loaded from a version-2 file (it keeps coding rows).
  [[nodiscard]] bool by_residual() const noexcept { return residual_codes_; }
  [[nodiscard]] const Matrix<T>& centroids() const noexcept { return centroids_; }
  [[nodiscard]] std::size_t list_size(std::size_t l) const { return list(l).size(); }
  /// Ids stored in cell l, in storage order. Throws std::out_of_range.
  [[nodiscard]] std::span<const Index> list_ids(std::size_t l) const { return list(l).ids(); }
  /// Stored row i of cell l as searches score it (dim values; decoded, plus the centroid for
  /// residual codes; normalized for cosine; a rotated int8 code rotated back), as FAISS's
  /// reconstruct. Throws std::out_of_range.
  [[nodiscard]] Vector<T> list_vector(std::size_t l, std::size_t i) const {
    const VectorStore<T>& s = list(l);
    if (i >= s.size())
      throw std::out_of_range("mmrag::IvfIndex::list_vector: row " + std::to_string(i) +
                              " is out of range (list " + std::to_string(l) + " holds " +
                              std::to_string(s.size()) + ")");
    std::vector<T> scratch;
    const T* row = codec_.rows(s.code(i), 1, scratch, offset(l));
    Vector<T> v(static_cast<Eigen::Index>(dim_));
    codec_.from_code_space(row, 1, v.data());
    return v;
  }
  /// Modality tags stored in cell l, in storage order. Throws std::out_of_range.
  [[nodiscard]] std::span<const Modality> list_modalities(std::size_t l) const {
    return list(l).modalities();
  }
  /// Bytes the index holds: centroids, codes, ids, tags, norms, codec parameters.
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    std::size_t b = sizeof(*this) + codec_.memory_bytes() +
                    sizeof(T) * static_cast<std::size_t>(centroids_.size() + centroid_sq_.size() +
                                                          code_centroids_.size());
    for (const auto& l : lists_) b += sizeof(l) + l.memory_bytes();
    return b;
  }

  // ---- persistence --------------------------------------------------------------------------
  //
  // File format, version 3, little-endian: the 24-byte header of detail/persist.hpp (magic
  // "MMRAGIVF"), u64 dim, u64 nlist, u64 size, u64 trained, u64 residual (1: codes are of
  // x − centroid; int8 only), centroids (nlist × dim scalars of T, when trained), the codec's
  // parameters, then per list the rows as VectorStore::write_counted writes them (count, ids,
  // norms, modality tags, 64-byte aligned codes); then the u64 checksum. Version-2 files (no
  // residual field: codes of the rows themselves) and version-1 files (u8 trained flag, rows
  // without norms or alignment) still load, and an index loaded from them keeps coding rows
  // (saving writes residual = 0); only version 3 maps.

  // serialize(), parse(bytes, path), save(path), load(path) and map(path, verify) — a read-only
  // view of a saved file, searched in place — come from detail::FileBacked (store.hpp).

 private:
  friend struct detail::FileBacked<IvfIndex, T>;
  static constexpr char kMagic[9] = "MMRAGIVF";
  // 2: aligned sections with norms (mappable); 3: + residual flag (int8 codes of x − centroid)
  static constexpr std::uint32_t kVersion = 3;
  static constexpr const char* kKind = "IvfIndex";

  void write_body(std::vector<char>& out) const {
    detail::append(out, static_cast<std::uint64_t>(nlist_));
    detail::append(out, static_cast<std::uint64_t>(size_));
    detail::append(out, static_cast<std::uint64_t>(is_trained() ? 1 : 0));
    detail::append(out, static_cast<std::uint64_t>(residual_codes_ ? 1 : 0));
    if (is_trained()) detail::append_raw(out, centroids_.data(), sizeof(T) * nlist_ * dim_);
    out.resize((out.size() + 7) / 8 * 8, 0);  // what follows starts 8-byte aligned
    codec_.write(out);
    for (const auto& l : lists_) l.write_counted(out);
  }

  static IvfIndex read_body(detail::Cursor& c, const detail::FileHeader& h,
                            const StoreReadMode& mode) {
    const std::filesystem::path& path = c.path();
    const std::uint64_t dim = h.dim;
    const auto nlist = c.get<std::uint64_t>("nlist");
    const auto total = c.get<std::uint64_t>("size");
    const std::uint64_t trained =
        h.version == 1 ? c.get<std::uint8_t>("trained flag") : c.get<std::uint64_t>("trained flag");
    if (trained > 1)
      detail::fail(path, 48, "trained flag must be 0 or 1, got " + std::to_string(trained));
    // Version 3 says whether codes are residuals; older files coded the rows themselves.
    const std::uint64_t residual = h.version >= 3 ? c.get<std::uint64_t>("residual flag") : 0;
    if (residual > 1 || (residual == 1 && h.storage != 3))
      detail::fail(path, 56,
                   "residual flag must be 0, or 1 with int8 storage, got " + std::to_string(residual));
    const std::uint64_t left = c.left();
    // Every count is bounded by the bytes left, so nothing below can allocate absurdly.
    if (nlist == 0 || nlist > left / 8 ||
        (trained && (dim > left / sizeof(T) || nlist > left / sizeof(T) / dim)))
      detail::fail(path, 32,
                   "nlist " + std::to_string(nlist) + " with dim " + std::to_string(dim) +
                       " does not fit the file size");
    if (!trained && total > 0) detail::fail(path, 40, "an untrained index cannot hold vectors");
    IvfIndex index(static_cast<std::size_t>(dim), static_cast<std::size_t>(nlist), h.metric,
                   detail::storage_from_code(h.storage, path));
    index.residual_codes_ = residual == 1;
    if (trained) {
      index.centroids_.resize(static_cast<Eigen::Index>(nlist), static_cast<Eigen::Index>(dim));
      c.copy_to(index.centroids_.data(), sizeof(T) * nlist * dim, "centroids");
      if (!index.centroids_.allFinite()) detail::fail(path, c.offset(), "centroids hold NaN or Inf");
      index.centroid_sq_ = index.centroids_.rowwise().squaredNorm();
    }
    if (h.version >= 2) {
      c.skip((8 - c.offset() % 8) % 8, "padding");
      index.codec_.read(c);
      if (trained && !index.codec_.is_trained())
        detail::fail(path, c.offset(), "a trained int8 index needs the codec's parameters");
      // A file's codec decides the code size (int8 written before the refinement bytes).
      index.lists_.assign(static_cast<std::size_t>(nlist), VectorStore<T>(index.codec_.code_size()));
      if (trained) index.code_centroids_ = rotated_centroids(index.codec_, index.centroids_);
    }
    std::uint64_t seen = 0;
    for (std::uint64_t l = 0; l < nlist; ++l) {
      VectorStore<T>& list = index.lists_[static_cast<std::size_t>(l)];
      list.read_counted(c, index.codec_, "list " + std::to_string(l), mode,
                        index.offset(static_cast<std::size_t>(l)));
      index.stats_.include(list);
      seen += list.size();
    }
    if (seen != total)
      detail::fail(path, 40,
                   "header says " + std::to_string(total) + " vectors, lists hold " +
                       std::to_string(seen));
    index.size_ = static_cast<std::size_t>(total);
    return index;
  }
  static constexpr Eigen::Index kQueryBlock = 2048;  // queries grouped per pass over the cells
  static constexpr Eigen::Index kAssignRows = 4096;  // rows normalized at a time on add

  static std::size_t check_positive(std::size_t v, const char* what) {
    if (v == 0) throw std::invalid_argument(std::string("mmrag::IvfIndex: ") + what + " must be > 0, got 0");
    return v;
  }

  const VectorStore<T>& list(std::size_t l) const {
    if (l >= nlist_)
      throw std::out_of_range("mmrag::IvfIndex: list " + std::to_string(l) +
                              " is out of range (nlist " + std::to_string(nlist_) + ")");
    return lists_[l];
  }

  void check_search(const char* where, const SearchParams& params) const {
    if (!is_trained())
      throw std::invalid_argument(std::string(where) + ": the index must be trained before search");
    if (params.nprobe == 0)
      throw std::invalid_argument(std::string(where) + ": nprobe must be > 0, got 0");
  }

  [[nodiscard]] detail::SearchSetup<T> setup(const char* where) const {
    return {where, dim_, metric_, &codec_, size_, stats_.max_sq_norm, kQueryBlock};
  }

  /// Visits, for the queries of one block, their cells (`probes`: nb × p, -1 = none), each cell
  /// once for all of its visitors. The (cell, query) pairs are grouped by cell with a counting
  /// sort when they are many (O(nlist + pairs)), else sorted (O(pairs log pairs)): a single
  /// query costs O(p), whatever nlist is.
  void scan_cells(const detail::QueryBlock<T>& qb, const Index* probes, std::size_t p,
                  detail::Scanner<T>& scanner) const {
    std::vector<Eigen::Index> who;
    auto visit = [&](Index cell) {
      // A query listing a cell twice visits it once (its entries are adjacent here).
      who.erase(std::unique(who.begin(), who.end()), who.end());
      const VectorStore<T>& list = lists_[static_cast<std::size_t>(cell)];
      if (!list.empty())
        scanner.scan(qb, who, detail::block_of(list, offset(static_cast<std::size_t>(cell))));
    };
    const std::size_t pairs = qb.nb * p;
    if (pairs * 4 >= nlist_) {
      std::vector<std::size_t> start(nlist_ + 1, 0);
      for (std::size_t v = 0; v < pairs; ++v)
        if (probes[v] >= 0) ++start[static_cast<std::size_t>(probes[v]) + 1];
      for (std::size_t l = 0; l < nlist_; ++l) start[l + 1] += start[l];
      std::vector<Eigen::Index> by_cell(start[nlist_]);
      std::vector<std::size_t> fill(start.begin(), start.end() - 1);
      for (std::size_t v = 0; v < pairs; ++v)  // queries in order: each cell's list is sorted
        if (probes[v] >= 0)
          by_cell[fill[static_cast<std::size_t>(probes[v])]++] = static_cast<Eigen::Index>(v / p);
      for (std::size_t l = 0; l < nlist_; ++l) {
        if (start[l] == start[l + 1]) continue;
        who.assign(by_cell.begin() + static_cast<std::ptrdiff_t>(start[l]),
                   by_cell.begin() + static_cast<std::ptrdiff_t>(start[l + 1]));
        visit(static_cast<Index>(l));
      }
      return;
    }
    std::vector<std::pair<Index, Eigen::Index>> visits;
    visits.reserve(pairs);
    for (std::size_t v = 0; v < pairs; ++v)
      if (probes[v] >= 0) visits.emplace_back(probes[v], static_cast<Eigen::Index>(v / p));
    std::sort(visits.begin(), visits.end());
    for (std::size_t v = 0; v < visits.size();) {
      const Index cell = visits[v].first;
      who.clear();
      for (; v < visits.size() && visits[v].first == cell; ++v) who.push_back(visits[v].second);
      visit(cell);
    }
  }

  /// Nearest cell of every row, a block of rows at a time (normalized for cosine first).
  [[nodiscard]] std::vector<Index> assign(const Eigen::Ref<const Matrix<T>>& x) const {
    std::vector<Index> cell(static_cast<std::size_t>(x.rows()));
    const bool ip = metric_ != Metric::l2;
    if (metric_ != Metric::cosine) {
      detail::nearest_centroids<T>(x, centroids_, centroid_sq_, ip, 1, cell.data());
      return cell;
    }
    Matrix<T> chunk;
    for (Eigen::Index b0 = 0; b0 < x.rows(); b0 += kAssignRows) {
      chunk = x.middleRows(b0, std::min(kAssignRows, x.rows() - b0));
      normalize_rows(chunk);
      detail::nearest_centroids<T>(chunk, centroids_, centroid_sq_, ip, 1,
                                   cell.data() + static_cast<std::size_t>(b0));
    }
    return cell;
  }

  /// The vector cell l's codes are relative to, in code space (where rows are decoded and
  /// scored), or null when codes are the rows.
  [[nodiscard]] const T* offset(std::size_t l) const noexcept {
    if (!residual_codes_ || !is_trained()) return nullptr;
    const Matrix<T>& c = code_centroids_.rows() > 0 ? code_centroids_ : centroids_;
    return c.row(static_cast<Eigen::Index>(l)).data();
  }
  /// The same in the caller's space (what add subtracts before encoding).
  [[nodiscard]] const T* input_offset(std::size_t l) const noexcept {
    return residual_codes_ && is_trained() ? centroids_.row(static_cast<Eigen::Index>(l)).data()
                                           : nullptr;
  }
  /// The centroids in a rotated codec's code space, else empty (offsets are the centroids).
  static Matrix<T> rotated_centroids(const Codec<T>& codec, const Matrix<T>& centroids) {
    if (!codec.rotated()) return {};
    Matrix<T> out(centroids.rows(), centroids.cols());
    codec.to_code_space(centroids.data(), static_cast<std::size_t>(centroids.rows()), out.data());
    return out;
  }

  std::size_t dim_, nlist_;
  Metric metric_;
  Codec<T> codec_;
  bool residual_codes_ = codec_.storage() == Storage::int8;
  Matrix<T> centroids_;  // nlist × dim once trained, else 0 × 0
  Matrix<T> code_centroids_;  // centroids in code space when the codec is rotated, else 0 × 0
  Vector<T> centroid_sq_;
  std::vector<VectorStore<T>> lists_;
  std::size_t size_ = 0;
  detail::StoreStats<T> stats_;  // norm bound for screening; one past the largest id ever added
};

}  // namespace mmrag
