#pragma once
/// @file flat_index.hpp
/// Exact (brute-force) top-k search over stored embeddings, as FAISS's IndexFlat.
///
/// Persistence: `save` / `load` (and `serialize` / `parse` for memory), with modality tags.
///
/// Thread safety: `search` is const and keeps no state: any number of threads may search one
/// index at once. `add` and `clear` are not: never call them while another thread searches.

#include <algorithm>
#include <cstring>
#include <filesystem>
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
#include "mmrag/search_params.hpp"
#include "mmrag/similarity.hpp"

namespace mmrag {

/// Exact search. Metrics: inner_product (similarity), cosine (vectors and queries normalized,
/// then inner product; zero vectors score 0), l2 (squared distance, lower is better).
template <class T>
class FlatIndex {
 public:
  using Scalar = T;

  /// An empty index of `dim`-dimensional vectors. Throws std::invalid_argument when dim = 0.
  FlatIndex(std::size_t dim, Metric metric) : dim_(dim), metric_(metric) {
    if (dim == 0) throw std::invalid_argument("mmrag::FlatIndex: dim must be > 0, got 0");
  }

  /// Adds the rows of `vectors` (n × dim, row-major). `ids`: one per row, or empty for
  /// sequential ids (the index size before the call, then +1 per row, as FAISS does).
  /// `modalities`: one tag per row, or empty for modality 0 (see multimodal.hpp).
  /// Throws std::invalid_argument on a wrong column count, NaN/Inf values, or ids / modalities
  /// whose count differs from the rows; the index is then unchanged (strong guarantee).
  void add(const Eigen::Ref<const Matrix<T>>& vectors, std::span<const Index> ids = {},
           std::span<const Modality> modalities = {}) {
    constexpr const char* where = "mmrag::FlatIndex::add";
    detail::check_add<T>(where, vectors, dim_, ids, modalities);
    const auto n = static_cast<std::size_t>(vectors.rows());

    // Reserve everything first: after this nothing below can throw, so a failure leaves the
    // index as it was.
    detail::grow(data_, n * dim_);
    detail::grow(ids_, n);
    detail::grow(sq_norms_, n);
    detail::grow(modality_, n);
    const auto first = static_cast<Index>(ids_.size());
    for (std::size_t r = 0; r < n; ++r) {
      const std::size_t at = data_.size();
      data_.insert(data_.end(), vectors.row(static_cast<Eigen::Index>(r)).data(),
                   vectors.row(static_cast<Eigen::Index>(r)).data() + dim_);
      T* v = data_.data() + at;
      if (metric_ == Metric::cosine) {
        const T n2 = detail::dot_kernel<T>(v, v, dim_);
        if (n2 > T(0))
          for (std::size_t c = 0; c < dim_; ++c) v[c] /= std::sqrt(n2);
      }
      sq_norms_.push_back(detail::dot_kernel<T>(v, v, dim_));
      ids_.push_back(ids.empty() ? first + static_cast<Index>(r) : ids[r]);
      modality_.push_back(modalities.empty() ? Modality(0) : modalities[r]);
    }
  }

  /// The k best stored items for each query. queries: nq × dim, row-major. Returns Hits with
  /// nq × k ids and scores, best first; rows are padded (id -1) when fewer than k items exist
  /// or pass `params.filter`. Batches of queries run as blocked GEMMs fused with the top-k
  /// selection (the nq × size score matrix is never materialized); one or a few queries run
  /// the SIMD scan. Parallel over query blocks with OpenMP.
  /// Throws std::invalid_argument on a wrong column count, k = 0 or NaN/Inf queries.
  [[nodiscard]] Hits<T> search(const Eigen::Ref<const Matrix<T>>& queries, std::size_t k,
                               const SearchParams& params = {}) const {
    constexpr const char* where = "mmrag::FlatIndex::search";
    detail::check_dim(where, "queries", queries.cols(), dim_);
    if (k == 0) throw std::invalid_argument(std::string(where) + ": k must be > 0, got 0");
    detail::check_finite_rows(where, "queries", queries);

    const Eigen::Index nq = queries.rows();
    Hits<T> hits{Matrix<Index>(nq, static_cast<Eigen::Index>(k)),
                 Matrix<T>(nq, static_cast<Eigen::Index>(k))};
    Matrix<T> q = queries;
    if (metric_ == Metric::cosine) normalize_rows(q);
    const bool higher = higher_is_better(metric_);
    const bool exact_l2 = metric_ == Metric::l2;

    if (nq < kGemmMinQueries) {
      std::vector<T> scratch;
      for (Eigen::Index i = 0; i < nq; ++i) {
        detail::TopK<T> top(k, higher);
        for (std::size_t first = 0; first < size(); first += kScanRows)
          detail::scan_simd(q.row(i).data(), q.row(i).squaredNorm(), dim_,
                            block(first, std::min(kScanRows, size() - first)), metric_,
                            params.filter, top, scratch);
        detail::finish(&top, 1, i, hits, exact_l2 ? q.row(i).data() : nullptr, dim_);
      }
      return hits;
    }

    const Eigen::Index blocks = (nq + kQueryBlock - 1) / kQueryBlock;
    MMRAG_OMP(parallel for schedule(dynamic) if (blocks > 1))
    for (Eigen::Index bi = 0; bi < blocks; ++bi) {
      const Eigen::Index first_q = bi * kQueryBlock;
      const auto nb = static_cast<std::size_t>(std::min(kQueryBlock, nq - first_q));
      std::vector<detail::TopK<T>> tops(nb, detail::TopK<T>(k, higher));
      std::vector<detail::TopK<T>*> top_ptrs(nb);
      std::vector<T> sq_query(nb);
      for (std::size_t i = 0; i < nb; ++i) {
        top_ptrs[i] = &tops[i];
        sq_query[i] = q.row(first_q + static_cast<Eigen::Index>(i)).squaredNorm();
      }
      Matrix<T> scratch;
      detail::Compacted<T> compacted;
      const bool filtered = !params.filter.is_trivial();
      for (std::size_t first = 0; first < size(); first += kBaseTile) {
        const auto tile = block(first, std::min(kBaseTile, size() - first));
        // A filter shrinks the GEMM to the tile's allowed rows: filtered costs less, not more.
        const auto b = filtered ? detail::compact(tile, params.filter, compacted) : tile;
        detail::scan_gemm(q.row(first_q).data(), nb, dim_, b, metric_, Filter{}, top_ptrs.data(),
                          sq_query.data(), scratch);
      }
      detail::finish(tops.data(), nb, first_q, hits, exact_l2 ? q.row(first_q).data() : nullptr,
                     dim_);
    }
    return hits;
  }

  // ---- persistence --------------------------------------------------------------------------
  //
  // File format, version 1, little-endian:
  //   "MMRAGFLT"  u32 version  u32 scalar (1 = float32, 2 = float64)  u32 metric  u32 0
  //   u64 dim  u64 size  then size × i64 ids, size × u8 modality, size × dim scalars
  //   u64 checksum (detail::checksum over every byte before it).

  /// The bytes `save` writes.
  [[nodiscard]] std::vector<char> serialize() const {
    std::vector<char> out;
    detail::write_header<T>(out, kMagic, kVersion, metric_);
    detail::append(out, static_cast<std::uint64_t>(dim_));
    detail::append(out, static_cast<std::uint64_t>(size()));
    detail::write_rows(out, ids_, modality_, data_);
    detail::write_checksum(out);
    return out;
  }

  /// Writes the index to `path`. Throws std::runtime_error when the file cannot be written.
  void save(const std::filesystem::path& path) const { detail::write_all(path, serialize()); }

  /// Reads an index written by `save`; see `parse`.
  [[nodiscard]] static FlatIndex load(const std::filesystem::path& path) {
    return parse(detail::read_all(path), path);
  }

  /// Rebuilds an index from `serialize` bytes. Verifies the checksum first, then the magic,
  /// version, scalar type (must be T's), metric, sizes against the byte count, modality tags
  /// and finiteness; throws std::runtime_error naming `path` and the offset otherwise.
  [[nodiscard]] static FlatIndex parse(const std::vector<char>& bytes,
                                       const std::filesystem::path& path = "<memory>") {
    detail::Cursor c(bytes, path);
    const Metric metric = detail::read_header<T>(c, bytes, path, kMagic, kVersion, "FlatIndex");
    const auto dim = c.get<std::uint64_t>("dim");
    const auto n = c.get<std::uint64_t>("size");
    c.need(8, "checksum");
    const std::uint64_t left = c.left() - 8;  // the checksum is not payload
    if (dim == 0 || dim > (std::uint64_t(1) << 40) || n > left / detail::row_bytes<T>(dim) ||
        n * detail::row_bytes<T>(dim) != left)
      detail::fail(path, 24,
                       "dim " + std::to_string(dim) + " and size " + std::to_string(n) +
                           " do not match the file size");
    FlatIndex index(static_cast<std::size_t>(dim), metric);
    detail::read_rows(c, path, n, dim, "vectors", index.ids_, index.modality_, index.data_,
                      index.sq_norms_);
    return index;
  }

  /// Removes everything (dimension and metric stay).
  void clear() noexcept {
    data_.clear();
    ids_.clear();
    sq_norms_.clear();
    modality_.clear();
  }

  [[nodiscard]] std::size_t size() const noexcept { return ids_.size(); }
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  [[nodiscard]] Metric metric() const noexcept { return metric_; }
  /// Stored vector at position i (normalized for cosine): a dim-long row view.
  [[nodiscard]] Eigen::Map<const Vector<T>> vector(std::size_t i) const {
    return Eigen::Map<const Vector<T>>(data_.data() + i * dim_, static_cast<Eigen::Index>(dim_));
  }
  [[nodiscard]] Index id(std::size_t i) const { return ids_.at(i); }
  [[nodiscard]] Modality modality(std::size_t i) const { return modality_.at(i); }

 private:
  // Below this many queries, the SIMD scan (one pass over memory per query) beats a GEMM.
  static constexpr Eigen::Index kGemmMinQueries = 4;
  static constexpr Eigen::Index kQueryBlock = 256;  // queries per GEMM block
  static constexpr std::size_t kBaseTile = 1024;    // stored rows per GEMM tile: 1 MB of scores
  static constexpr std::size_t kScanRows = 4096;
  static constexpr char kMagic[9] = "MMRAGFLT";
  static constexpr std::uint32_t kVersion = 1;  // rows per SIMD scan chunk

  detail::Block<T> block(std::size_t first, std::size_t rows) const noexcept {
    return {data_.data() + first * dim_,
            ids_.data() + first,
            sq_norms_.data() + first,
            modality_.data() + first,
            rows,
            dim_};
  }

  std::size_t dim_;
  Metric metric_;
  std::vector<T> data_;  // size() × dim_, row-major
  std::vector<Index> ids_;
  std::vector<T> sq_norms_;
  std::vector<Modality> modality_;
};

}  // namespace mmrag
