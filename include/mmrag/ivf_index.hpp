#pragma once
/// @file ivf_index.hpp
/// Inverted-file (IVF) approximate search, as FAISS's IndexIVFFlat: k-means splits the space
/// into nlist cells; a query visits the nprobe cells whose centroids are closest and scans
/// their vectors exactly.
///
/// Thread safety: `search` is const and keeps no state (nprobe and filters come per call):
/// any number of threads may search one index at once. `train`, `add`, `remove_ids` and
/// `clear` are not: never call them while another thread searches.

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mmrag/config.hpp"
#include "mmrag/detail/persist.hpp"
#include "mmrag/detail/scan.hpp"
#include "mmrag/detail/topk.hpp"
#include "mmrag/io.hpp"
#include "mmrag/kmeans.hpp"
#include "mmrag/search_params.hpp"
#include "mmrag/similarity.hpp"

namespace mmrag {

template <class T>
class IvfIndex {
 public:
  using Scalar = T;

  /// An untrained index of `dim`-dimensional vectors with `nlist` cells.
  /// Throws std::invalid_argument when dim or nlist is 0.
  IvfIndex(std::size_t dim, std::size_t nlist, Metric metric)
      : dim_(dim), nlist_(nlist), metric_(metric), lists_(nlist) {
    if (dim == 0) throw std::invalid_argument("mmrag::IvfIndex: dim must be > 0, got 0");
    if (nlist == 0) throw std::invalid_argument("mmrag::IvfIndex: nlist must be > 0, got 0");
  }

  /// Learns the nlist centroids from `sample` (n × dim, n >= nlist) with k-means. Fields of
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
    centroids_ = std::move(km.centroids);
    centroid_sq_ = centroids_.rowwise().squaredNorm();
  }

  [[nodiscard]] bool is_trained() const noexcept { return centroids_.rows() > 0; }

  /// Adds the rows of `vectors` (n × dim) to their nearest cells. `ids`: one per row, or empty
  /// for sequential ids (the index size before the call, then +1 per row). `modalities`: one
  /// tag per row, or empty for 0. Throws std::invalid_argument before training, on a wrong
  /// column count, NaN/Inf, or ids / modalities whose count differs from the rows; the index
  /// is then unchanged (strong guarantee).
  void add(const Eigen::Ref<const Matrix<T>>& vectors, std::span<const Index> ids = {},
           std::span<const Modality> modalities = {}) {
    constexpr const char* where = "mmrag::IvfIndex::add";
    if (!is_trained())
      throw std::invalid_argument(std::string(where) + ": the index must be trained before add");
    detail::check_add<T>(where, vectors, dim_, ids, modalities);
    const auto n = static_cast<std::size_t>(vectors.rows());

    Matrix<T> x = vectors;
    if (metric_ == Metric::cosine) normalize_rows(x);
    const std::vector<Index> cell = assign(x);
    // Reserve every list first: after this, nothing below throws (strong guarantee).
    std::vector<std::size_t> extra(nlist_, 0);
    for (Index c : cell) ++extra[static_cast<std::size_t>(c)];
    for (std::size_t l = 0; l < nlist_; ++l)
      if (extra[l] > 0) lists_[l].reserve_more(extra[l], dim_);
    const auto first = static_cast<Index>(size_);
    for (std::size_t r = 0; r < n; ++r) {
      const T* v = x.row(static_cast<Eigen::Index>(r)).data();
      lists_[static_cast<std::size_t>(cell[r])].push(
          v, dim_, ids.empty() ? first + static_cast<Index>(r) : ids[r],
          modalities.empty() ? Modality(0) : modalities[r]);
    }
    size_ += n;
  }

  /// The k best stored items per query among the nprobe probed cells. queries: nq × dim.
  /// Returns nq × k ids and scores, best first, padded with id -1 (score -inf, or +inf for
  /// l2) when fewer than k allowed items lie in the probed cells. With nprobe >= nlist the
  /// result is exact. Batches group the queries by cell, so each cell is read once per block
  /// of queries and scored through one GEMM; single queries use the SIMD scan.
  /// Throws std::invalid_argument before training, on a wrong column count, k = 0,
  /// nprobe = 0 or NaN/Inf queries.
  [[nodiscard]] Hits<T> search(const Eigen::Ref<const Matrix<T>>& queries, std::size_t k,
                               const SearchParams& params = {}) const {
    constexpr const char* where = "mmrag::IvfIndex::search";
    if (!is_trained())
      throw std::invalid_argument(std::string(where) + ": the index must be trained before search");
    detail::check_dim(where, "queries", queries.cols(), dim_);
    if (k == 0) throw std::invalid_argument(std::string(where) + ": k must be > 0, got 0");
    if (params.nprobe == 0)
      throw std::invalid_argument(std::string(where) + ": nprobe must be > 0, got 0");
    detail::check_finite_rows(where, "queries", queries);

    const Eigen::Index nq = queries.rows();
    const std::size_t nprobe = std::min(params.nprobe, nlist_);
    Hits<T> hits{Matrix<Index>(nq, static_cast<Eigen::Index>(k)),
                 Matrix<T>(nq, static_cast<Eigen::Index>(k))};
    Matrix<T> q = queries;
    if (metric_ == Metric::cosine) normalize_rows(q);
    const Vector<T> q_sq = q.rowwise().squaredNorm();
    const bool higher = higher_is_better(metric_);

    const Eigen::Index blocks = (nq + kQueryBlock - 1) / kQueryBlock;
    MMRAG_OMP(parallel for schedule(dynamic) if (blocks > 1))
    for (Eigen::Index bi = 0; bi < blocks; ++bi) {
      const Eigen::Index first_q = bi * kQueryBlock;
      const Eigen::Index nb = std::min(kQueryBlock, nq - first_q);
      const auto probes = coarse(q.middleRows(first_q, nb), nprobe);  // nb × nprobe cells
      std::vector<detail::TopK<T>> tops(static_cast<std::size_t>(nb), detail::TopK<T>(k, higher));

      // Invert: for each cell, the queries of this block that probe it.
      std::vector<std::vector<Eigen::Index>> by_cell(nlist_);
      for (Eigen::Index i = 0; i < nb; ++i)
        for (std::size_t p = 0; p < nprobe; ++p)
          by_cell[static_cast<std::size_t>(probes(i, static_cast<Eigen::Index>(p)))].push_back(i);

      std::vector<T> simd_scratch;
      Matrix<T> gemm_scratch, gathered;
      std::vector<detail::TopK<T>*> top_ptrs;
      std::vector<T> sq;
      detail::Compacted<T> compacted;
      const bool filtered = !params.filter.is_trivial();
      for (std::size_t l = 0; l < nlist_; ++l) {
        const auto& who = by_cell[l];
        if (who.empty() || lists_[l].ids.empty()) continue;
        if (who.size() < kGemmMinQueries) {
          for (Eigen::Index i : who)
            detail::scan_simd(q.row(first_q + i).data(), q_sq[first_q + i], dim_,
                              lists_[l].block(dim_), metric_, params.filter,
                              tops[static_cast<std::size_t>(i)], simd_scratch);
          continue;
        }
        // Several queries share this cell: score only its allowed rows, once for all of them.
        const auto b = filtered ? detail::compact(lists_[l].block(dim_), params.filter, compacted)
                                : lists_[l].block(dim_);
        if (b.rows == 0) continue;
        gathered.resize(static_cast<Eigen::Index>(who.size()), static_cast<Eigen::Index>(dim_));
        top_ptrs.resize(who.size());
        sq.resize(who.size());
        for (std::size_t j = 0; j < who.size(); ++j) {
          gathered.row(static_cast<Eigen::Index>(j)) = q.row(first_q + who[j]);
          top_ptrs[j] = &tops[static_cast<std::size_t>(who[j])];
          sq[j] = q_sq[first_q + who[j]];
        }
        detail::scan_gemm(gathered.data(), who.size(), dim_, b, metric_, Filter{}, top_ptrs.data(),
                          sq.data(), gemm_scratch);
      }
      detail::finish(tops.data(), static_cast<std::size_t>(nb), first_q, hits,
                     metric_ == Metric::l2 ? q.row(first_q).data() : nullptr, dim_);
    }
    return hits;
  }

  /// Removes every stored item whose id is in `ids`; returns how many were removed.
  /// Strong guarantee: the new lists are built aside and swapped in only when complete.
  std::size_t remove_ids(std::span<const Index> ids) {
    std::vector<Index> sorted(ids.begin(), ids.end());
    std::sort(sorted.begin(), sorted.end());
    auto doomed = [&](Index id) { return std::binary_search(sorted.begin(), sorted.end(), id); };
    std::vector<List> kept(nlist_);
    std::size_t removed = 0;
    for (std::size_t l = 0; l < nlist_; ++l) {
      const List& src = lists_[l];
      for (std::size_t r = 0; r < src.ids.size(); ++r) {
        if (doomed(src.ids[r])) {
          ++removed;
          continue;
        }
        kept[l].push(src.vectors.data() + r * dim_, dim_, src.ids[r], src.modality[r]);
      }
    }
    lists_.swap(kept);
    size_ -= removed;
    return removed;
  }

  /// Removes every stored vector; the trained centroids stay.
  void clear() noexcept {
    for (auto& l : lists_) l = List{};
    size_ = 0;
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  [[nodiscard]] std::size_t nlist() const noexcept { return nlist_; }
  [[nodiscard]] Metric metric() const noexcept { return metric_; }
  [[nodiscard]] const Matrix<T>& centroids() const noexcept { return centroids_; }
  [[nodiscard]] std::size_t list_size(std::size_t l) const { return lists_.at(l).ids.size(); }
  /// Ids stored in cell l, in storage order.
  [[nodiscard]] std::span<const Index> list_ids(std::size_t l) const { return lists_.at(l).ids; }
  /// Modality tags stored in cell l, in storage order.
  [[nodiscard]] std::span<const Modality> list_modalities(std::size_t l) const {
    return lists_.at(l).modality;
  }

  // ---- persistence --------------------------------------------------------------------------
  //
  // File format, version 1, little-endian:
  //   "MMRAGIVF"  u32 version  u32 scalar (1 = float32, 2 = float64)  u32 metric  u32 0
  //   u64 dim  u64 nlist  u64 size  u8 trained
  //   centroids: nlist × dim scalars (when trained)
  //   per list: u64 count, count × i64 ids, count × u8 modality, count × dim scalars
  //   u64 checksum: FNV-1a (64-bit words) over every byte before it.

  /// Writes the index to `path`. Throws std::runtime_error when the file cannot be written.
  void save(const std::filesystem::path& path) const { detail::write_all(path, serialize()); }

 private:
  void write_to(std::vector<char>& out) const {
    detail::write_header<T>(out, kMagic, kVersion, metric_);
    detail::append(out, static_cast<std::uint64_t>(dim_));
    detail::append(out, static_cast<std::uint64_t>(nlist_));
    detail::append(out, static_cast<std::uint64_t>(size_));
    detail::append(out, static_cast<std::uint8_t>(is_trained() ? 1 : 0));
    if (is_trained()) detail::append_raw(out, centroids_.data(), sizeof(T) * nlist_ * dim_);
    for (const List& l : lists_) {
      detail::append(out, static_cast<std::uint64_t>(l.ids.size()));
      detail::write_rows(out, l.ids, l.modality, l.vectors);
    }
    detail::write_checksum(out);
  }

 public:
  /// Reads an index written by `save`. Verifies the magic, version, scalar type (must be T's),
  /// metric, sizes against the file length, the checksum, modality tags and finiteness.
  /// Throws std::runtime_error naming the file and offset on a missing, truncated, corrupt or
  /// mismatched file; never reads out of bounds.
  [[nodiscard]] static IvfIndex load(const std::filesystem::path& path) {
    return parse(detail::read_all(path), path);
  }

  /// The bytes `save` writes, as a buffer (for sending over a network or storing in a blob).
  [[nodiscard]] std::vector<char> serialize() const {
    std::vector<char> out;
    write_to(out);
    return out;
  }

  /// Rebuilds an index from `serialize` / `save` bytes, with every check `load` makes;
  /// `name` labels the errors.
  [[nodiscard]] static IvfIndex parse(const std::vector<char>& bytes,
                                      const std::filesystem::path& path = "<memory>") {
    detail::Cursor c(bytes, path);
    const Metric metric = detail::read_header<T>(c, bytes, path, kMagic, kVersion, "IvfIndex");
    const auto dim = c.get<std::uint64_t>("dim");
    const auto nlist = c.get<std::uint64_t>("nlist");
    const auto total = c.get<std::uint64_t>("size");
    const auto trained = c.get<std::uint8_t>("trained flag");
    const std::uint64_t left = c.left();
    if (dim == 0 || nlist == 0 || trained > 1)
      detail::fail(path, 24, "dim and nlist must be > 0");
    // Every count is bounded by the bytes left, so nothing below can allocate absurdly.
    if (dim > (std::uint64_t(1) << 40) || nlist > left / 8 ||
        (trained && (dim > left / sizeof(T) || nlist > left / sizeof(T) / dim)))
      detail::fail(path, 24,
                       "dim " + std::to_string(dim) + " and nlist " + std::to_string(nlist) +
                           " do not fit the file size");
    if (!trained && total > 0) detail::fail(path, 40, "an untrained index cannot hold vectors");

    IvfIndex index(static_cast<std::size_t>(dim), static_cast<std::size_t>(nlist), metric);
    if (trained) {
      index.centroids_.resize(static_cast<Eigen::Index>(nlist), static_cast<Eigen::Index>(dim));
      c.copy_to(index.centroids_.data(), sizeof(T) * nlist * dim, "centroids");
      if (!index.centroids_.allFinite())
        detail::fail(path, c.offset(), "centroids hold NaN or Inf");
      index.centroid_sq_ = index.centroids_.rowwise().squaredNorm();
    }
    std::uint64_t seen = 0;
    for (std::uint64_t l = 0; l < nlist; ++l) {
      const std::uint64_t at = c.offset();
      const auto count = c.get<std::uint64_t>("list size");
      if (count > c.left() / detail::row_bytes<T>(dim))
        detail::fail(path, at,
                         "list " + std::to_string(l) + " claims " + std::to_string(count) +
                             " vectors, more than the file holds");
      List& list = index.lists_[static_cast<std::size_t>(l)];
      detail::read_rows(c, path, count, dim, "list " + std::to_string(l) + " vectors", list.ids,
                        list.modality, list.vectors, list.sq_norms);
      seen += count;
    }
    if (seen != total)
      detail::fail(
          path, 40,
          "header says " + std::to_string(total) + " vectors, lists hold " + std::to_string(seen));
    if (c.left() != 8)
      detail::fail(path, c.offset(),
                       "expected the 8-byte checksum after the lists, found " +
                           std::to_string(c.left()) + " bytes");
    index.size_ = static_cast<std::size_t>(total);
    return index;
  }

 private:
  struct List {
    std::vector<T> vectors;  // count × dim, row-major (normalized for cosine)
    std::vector<Index> ids;
    std::vector<T> sq_norms;
    std::vector<Modality> modality;

    void reserve_more(std::size_t n, std::size_t dim) {
      detail::grow(vectors, n * dim);
      detail::grow(ids, n);
      detail::grow(sq_norms, n);
      detail::grow(modality, n);
    }
    void push(const T* v, std::size_t dim, Index id, Modality m) {
      vectors.insert(vectors.end(), v, v + dim);
      ids.push_back(id);
      sq_norms.push_back(detail::dot_kernel<T>(v, v, dim));
      modality.push_back(m);
    }
    [[nodiscard]] detail::Block<T> block(std::size_t dim) const noexcept {
      return {vectors.data(), ids.data(), sq_norms.data(), modality.data(), ids.size(), dim};
    }
  };

  static constexpr char kMagic[9] = "MMRAGIVF";
  static constexpr std::uint32_t kVersion = 1;
  static constexpr Eigen::Index kQueryBlock = 2048;  // queries grouped per pass over the cells
  static constexpr std::size_t kGemmMinQueries = 4;  // fewer queries on a cell: SIMD scan

  /// Nearest cell of every row of x (already normalized for cosine).
  [[nodiscard]] std::vector<Index> assign(const Matrix<T>& x) const {
    const Matrix<Index> best = coarse(x, 1);
    return std::vector<Index>(best.data(), best.data() + best.size());
  }

  /// The nprobe best cells per row of q (nq × nprobe), best first, ties to the smaller cell.
  [[nodiscard]] Matrix<Index> coarse(const Eigen::Ref<const Matrix<T>>& q,
                                     std::size_t nprobe) const {
    Matrix<Index> out(q.rows(), static_cast<Eigen::Index>(nprobe));
    Matrix<T> s(q.rows(), centroids_.rows());
    s.noalias() = q * centroids_.transpose();
    const bool l2 = metric_ == Metric::l2;
    std::vector<Index> order(nlist_);
    for (Eigen::Index i = 0; i < q.rows(); ++i) {
      T* row = s.row(i).data();
      // One key for every metric, lower is better: ||c||² - 2 q·c for l2, -q·c otherwise.
      for (std::size_t j = 0; j < nlist_; ++j)
        row[j] = l2 ? centroid_sq_[static_cast<Eigen::Index>(j)] - T(2) * row[j] : -row[j];
      std::iota(order.begin(), order.end(), Index(0));
      std::partial_sort(
          order.begin(), order.begin() + static_cast<std::ptrdiff_t>(nprobe), order.end(),
          [row](Index a, Index b) { return row[a] != row[b] ? row[a] < row[b] : a < b; });
      for (std::size_t p = 0; p < nprobe; ++p) out(i, static_cast<Eigen::Index>(p)) = order[p];
    }
    return out;
  }

  std::size_t dim_, nlist_;
  Metric metric_;
  Matrix<T> centroids_;  // nlist × dim once trained, else 0 × 0
  Vector<T> centroid_sq_;
  std::vector<List> lists_;
  std::size_t size_ = 0;
};

}  // namespace mmrag
