#pragma once
/// @file ivf_pq_index.hpp
/// Inverted file with product quantization (IVF-PQ), 4-bit codes scanned fast-scan style, and
/// an optional refine store for exact rescoring — as FAISS's IndexIVFPQFastScan wrapped in
/// IndexRefine, written independently from the papers:
///  - PQ (Jégou, Douze & Schmid, "Product quantization for nearest neighbor search", TPAMI
///    2011): the residual r = x − c(x) of a row against its IVF centroid is cut into m
///    sub-vectors of dsub = dim / m values; sub-vector j is replaced by the nearest of the
///    2^nbits centroids of codebook j (trained by the library's k-means on training residuals).
///  - Fast scan (André, Kermarrec & Le Scouarnec, VLDB 2015): with nbits = 4, per query and
///    probed list a look-up table of m × 16 distances is quantized to uint8 (per-sub-quantizer
///    bias, one global scale: detail/pq_fastscan.hpp) and summed into uint16 by in-register
///    byte shuffles over codes packed 32 vectors per block. With nbits = 8 the scan sums a
///    float table (m × 256).
///  - Refine (FAISS IndexRefine): the k × k_factor best candidates by the PQ estimate are
///    rescored exactly (detail::exact_score) against rows kept in the refine store (`Codec<T>`
///    at `PqParams::refine`), or against the PQ reconstruction c + r̂ when refine is none. Final
///    results are ranked by that score, ties to the smaller id.
///
/// Metrics: l2 (squared distances; the table holds ||(q − c)_j − b_jk||²), inner_product (the
/// table holds −q_j·b_jk, shared by every list, plus −q·c per list) and cosine (rows and queries
/// normalized; candidates chosen with the l2 tables, which rank unit rows as cosine does with a
/// smaller PQ error, then rescored by inner product).
///
/// Memory per row: m·nbits/8 code bytes + refine code (dim + dim/8 bytes for int8, 4·dim for float32) +
/// 8 (id) + 1 (tag) + sizeof(T) (squared norm), plus nlist·dim + m·2^nbits·dsub scalars.
///
/// Thread safety: `search` is const and keeps no state: any number of threads may search one
/// index at once. `train`, `add`, `remove_ids` and `clear` must not run concurrently with
/// anything else on the same index.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "mmrag/codecs.hpp"
#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"
#include "mmrag/detail/exact.hpp"
#include "mmrag/detail/nearest_centroids.hpp"
#include "mmrag/detail/persist.hpp"
#include "mmrag/detail/pq_fastscan.hpp"
#include "mmrag/kmeans.hpp"
#include "mmrag/search/types.hpp"
#include "mmrag/similarity.hpp"
#include "mmrag/store.hpp"

namespace mmrag {

/// Product-quantizer parameters of an IvfPqIndex.
struct PqParams {
  /// Sub-quantizers; 0 = dim / 2 (dsub = 2). Must divide dim.
  std::size_t m = 0;
  /// Bits per sub-quantizer code: 4 (fast scan, 16 centroids) or 8 (plain scan, 256 centroids).
  std::size_t nbits = 4;
  /// Storage of the rows kept for exact rescoring, or std::nullopt for none (rescoring then
  /// uses the PQ reconstruction).
  std::optional<Storage> refine = Storage::int8;
};

template <class T>
class IvfPqIndex : public detail::FileBacked<IvfPqIndex<T>, T> {
 public:
  using Scalar = T;

  /// An untrained index of `dim`-dimensional rows with `nlist` cells and the given product
  /// quantizer. Throws std::invalid_argument when dim or nlist is 0, params.m does not divide
  /// dim, params.nbits is not 4 or 8, or the refine storage is not available.
  IvfPqIndex(std::size_t dim, std::size_t nlist, Metric metric, PqParams params = {})
      : dim_(check_positive(dim, "dim")),
        nlist_(check_positive(nlist, "nlist")),
        metric_(metric),
        m_(check_m(dim, params.m)),
        nbits_(check_nbits(params.nbits)),
        ksub_(std::size_t(1) << nbits_),
        dsub_(dim / m_),
        refine_(make_refine(dim, params.refine)),
        lists_(nlist, List{VectorStore<T>(refine_ ? refine_->code_size() : 0), {}}) {}

  /// Learns the nlist IVF centroids from `sample` (n × dim) with k-means (params as
  /// IvfIndex::train: 10 iterations and spherical for cosine unless set), then the m codebooks
  /// of 2^nbits centroids on the sample's residuals (25 Lloyd iterations, Euclidean, same
  /// seed), and the refine codec's parameters when it has any. Needs n >= max(nlist, 2^nbits).
  /// Throws std::invalid_argument on a wrong column count, too few rows, NaN/Inf, or when the
  /// index holds vectors; the index is then unchanged.
  void train(const Eigen::Ref<const Matrix<T>>& sample, KMeansParams params = {}) {
    constexpr const char* where = "mmrag::IvfPqIndex::train";
    detail::check_dim(where, "sample", sample.cols(), dim_);
    const auto n = static_cast<std::size_t>(sample.rows());
    if (n < std::max(nlist_, ksub_))
      throw std::invalid_argument(std::string(where) + ": sample must have at least max(nlist, " +
                                  "2^nbits) = " + std::to_string(std::max(nlist_, ksub_)) +
                                  " rows, got " + std::to_string(n));
    if (size() > 0)
      throw std::invalid_argument(std::string(where) + ": the index already holds " +
                                  std::to_string(size()) + " vectors; clear() it before training");
    detail::check_finite_rows(where, "sample", sample);
    Matrix<T> x = sample;
    if (metric_ == Metric::cosine) normalize_rows(x);
    KMeansParams coarse = params;
    if (!coarse.iterations) coarse.iterations = 10;
    if (!coarse.spherical) coarse.spherical = metric_ == Metric::cosine;
    coarse.assign = false;
    KMeansResult<T> km = kmeans<T>(x, nlist_, coarse);
    const Vector<T> csq = km.centroids.rowwise().squaredNorm();
    std::vector<Index> cell(n);
    detail::nearest_centroids<T>(x, km.centroids, csq, metric_ != Metric::l2, 1, cell.data());
    Matrix<T> residual(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(dim_));
    for (std::size_t r = 0; r < n; ++r)
      residual.row(static_cast<Eigen::Index>(r)) =
          x.row(static_cast<Eigen::Index>(r)) - km.centroids.row(cell[r]);
    KMeansParams sub = params;
    if (!sub.iterations) sub.iterations = 25;
    sub.spherical = false;
    sub.assign = false;
    Matrix<T> books(static_cast<Eigen::Index>(m_ * ksub_), static_cast<Eigen::Index>(dsub_));
    for (std::size_t j = 0; j < m_; ++j) {
      const Matrix<T> part = residual.middleCols(static_cast<Eigen::Index>(j * dsub_),
                                                 static_cast<Eigen::Index>(dsub_));
      KMeansResult<T> kj = kmeans<T>(part, ksub_, sub);
      books.middleRows(static_cast<Eigen::Index>(j * ksub_), static_cast<Eigen::Index>(ksub_)) =
          kj.centroids;
    }
    std::optional<Codec<T>> refine = refine_;
    if (refine) refine->train(x.data(), n);  // int8's ranges; nothing for the others
    Matrix<T> books_t = transposed_books(books, m_, ksub_, dsub_);
    // Nothing below throws.
    centroids_.swap(km.centroids);
    centroid_sq_ = csq;
    codebooks_.swap(books);
    codebooks_t_.swap(books_t);
    refine_.swap(refine);
  }

  [[nodiscard]] bool is_trained() const noexcept { return centroids_.rows() > 0; }

  /// Adds the rows of `vectors` (n × dim): each goes to its nearest cell with the PQ code of its
  /// residual and, with refine, its refine code. `ids` / `modalities` follow IvfIndex::add (ids
  /// >= 0, default ids sequential from one past the largest id ever added). Throws
  /// std::invalid_argument before training, on a wrong column count, NaN/Inf, a negative id or
  /// ids / modalities whose count differs from the rows; the index is then unchanged.
  void add(const Eigen::Ref<const Matrix<T>>& vectors, std::span<const Index> ids = {},
           std::span<const Modality> modalities = {}) {
    constexpr const char* where = "mmrag::IvfPqIndex::add";
    if (!is_trained())
      throw std::invalid_argument(std::string(where) + ": the index must be trained before add");
    detail::check_add<T>(where, vectors, dim_, ids, modalities);
    const auto n = static_cast<std::size_t>(vectors.rows());
    if (n == 0) return;
    Matrix<T> x = vectors;
    if (metric_ == Metric::cosine) normalize_rows(x);
    std::vector<Index> cell(n);
    detail::nearest_centroids<T>(x, centroids_, centroid_sq_, metric_ != Metric::l2, 1,
                                 cell.data());
    const std::vector<std::uint8_t> codes = encode(x, cell);  // n × m, one byte per code
    // Reserve everything first: after this nothing throws (strong guarantee).
    std::vector<std::size_t> extra(nlist_, 0);
    for (Index c : cell) ++extra[static_cast<std::size_t>(c)];
    for (std::size_t l = 0; l < nlist_; ++l) {
      if (extra[l] == 0) continue;
      List& L = lists_[l];
      L.rows.reserve_more(extra[l]);
      detail::reserve_more(L.codes, code_bytes(L.rows.size() + extra[l]) - L.codes.size());
    }
    std::vector<T> scratch_row(dim_);
    std::vector<std::uint8_t> refine_code(refine_ ? refine_->code_size() : 0);
    const auto id_of = detail::IdSequence::make(where, ids, next_id_, n);
    for (std::size_t r = 0; r < n; ++r) {
      List& L = lists_[static_cast<std::size_t>(cell[r])];
      const T* row = x.row(static_cast<Eigen::Index>(r)).data();
      T sq = T(0);
      if (refine_) {
        refine_->encode(row, 1, refine_code.data());
        // the norm of the row as rescoring sees it (in the codec's code space)
        const T* stored = refine_->rows(refine_code.data(), 1, scratch_row);
        sq = detail::dot_kernel<T>(stored, stored, dim_);
      }
      append_code(L, L.rows.size(), codes.data() + r * m_);
      L.rows.push(refine_code.data(), sq, id_of[r],
                  modalities.empty() ? Modality(0) : modalities[r]);
    }
    size_ += n;
    next_id_ = id_of.after(n);
  }

  /// The k best stored items per query (queries: nq × dim) among the nprobe probed cells:
  /// the k × k_factor best by the PQ estimate (filtered inside the scan), rescored exactly
  /// against the refine store (or the PQ reconstruction). Returns nq × k ids and scores
  /// (similarities; squared distances for l2), best first, ties to the smaller id, padded with
  /// id -1 (score -inf, or +inf for l2). Queries run in parallel with OpenMP when nq > 1.
  /// Throws std::invalid_argument before training, on a wrong column count, k = 0 (or a k whose
  /// result cannot be allocated), nprobe = 0, k_factor = 0 or NaN/Inf queries.
  [[nodiscard]] Hits<T> search(const Eigen::Ref<const Matrix<T>>& queries, std::size_t k,
                               const SearchParams& params = {}) const {
    constexpr const char* where = "mmrag::IvfPqIndex::search";
    if (!is_trained())
      throw std::invalid_argument(std::string(where) + ": the index must be trained before search");
    detail::check_dim(where, "queries", queries.cols(), dim_);
    detail::check_k<T>(where, k, queries.rows());
    if (params.nprobe == 0)
      throw std::invalid_argument(std::string(where) + ": nprobe must be > 0, got 0");
    if (params.k_factor == 0)
      throw std::invalid_argument(std::string(where) + ": k_factor must be > 0, got 0");
    detail::check_finite_rows(where, "queries", queries);
    if (refine_ && refine_->rotated()) {  // a rotation leaving float range: an error, not garbage
      Matrix<T> q = queries;
      if (metric_ == Metric::cosine)
        for (Eigen::Index r = 0; r < q.rows(); ++r) detail::normalize_row(q.row(r).data(), dim_);
      refine_->check_code_space(where, "queries", q.data(), static_cast<std::size_t>(q.rows()));
    }
    const Eigen::Index nq = queries.rows();
    const bool higher = higher_is_better(metric_);
    const T pad = higher ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    const auto kk = static_cast<Eigen::Index>(k);
    Hits<T> out{Matrix<Index>::Constant(nq, kk, Index(-1)), Matrix<T>::Constant(nq, kk, pad)};
    if (nq == 1) {  // no OpenMP region at all: entering one costs microseconds (config.hpp)
      Scratch s;
      search_one(queries.row(0).data(), k, params, s, out.ids.row(0).data(), out.scores.row(0).data());
      return out;
    }
    MMRAG_OMP(parallel) {
      Scratch s;
      MMRAG_OMP(for schedule(dynamic))
      for (Eigen::Index q = 0; q < nq; ++q)
        search_one(queries.row(q).data(), k, params, s, out.ids.row(q).data(),
                   out.scores.row(q).data());
    }
    return out;
  }

  /// Removes every stored item whose id is in `ids` (negative ids ignored); returns how many
  /// were removed. Ids are not reused by later adds. Strong guarantee: changed lists are built
  /// aside and swapped in when all are complete.
  std::size_t remove_ids(std::span<const Index> ids) {
    const IdSet doomed = detail::removal_set(ids);
    auto keep = [&](Index id) { return !doomed.contains(id); };
    std::vector<std::pair<std::size_t, List>> changed;
    std::size_t removed = 0;
    for (std::size_t l = 0; l < nlist_; ++l) {
      const List& L = lists_[l];
      const std::size_t r = L.rows.count_rejected(keep);
      if (r == 0) continue;
      removed += r;
      List kept{L.rows.filtered(keep), {}};
      kept.codes.reserve(code_bytes(kept.rows.size()));
      std::vector<std::uint8_t> code(m_);
      const auto lid = L.rows.ids();
      for (std::size_t i = 0, at = 0; i < L.rows.size(); ++i)
        if (keep(lid[i])) {
          get_code(L, i, code.data());
          append_code(kept, at++, code.data());
        }
      changed.emplace_back(l, std::move(kept));
    }
    for (auto& [l, kept] : changed) {  // noexcept from here
      lists_[l].rows.swap(kept.rows);
      lists_[l].codes.swap(kept.codes);
    }
    size_ -= removed;
    return removed;
  }

  /// Removes every stored vector; the trained quantizers stay (ids keep counting).
  void clear() noexcept {
    for (auto& L : lists_) {
      L.rows.clear();
      L.codes.clear();
    }
    size_ = 0;
  }

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  [[nodiscard]] std::size_t nlist() const noexcept { return nlist_; }
  [[nodiscard]] Metric metric() const noexcept { return metric_; }
  /// The product quantizer's parameters (m resolved: never 0).
  [[nodiscard]] PqParams params() const {
    return {m_, nbits_, refine_ ? std::optional<Storage>(refine_->storage()) : std::nullopt};
  }
  /// The refine store's storage, or float32 when there is none (what index files record).
  [[nodiscard]] Storage storage() const noexcept {
    return refine_ ? refine_->storage() : Storage::float32;
  }
  [[nodiscard]] const Matrix<T>& centroids() const noexcept { return centroids_; }
  /// Codebooks: (m · 2^nbits) × dsub, codebook j in rows [j·2^nbits, (j+1)·2^nbits).
  [[nodiscard]] const Matrix<T>& codebooks() const noexcept { return codebooks_; }
  [[nodiscard]] std::size_t list_size(std::size_t l) const { return list(l).rows.size(); }
  /// Ids stored in cell l, in storage order. Throws std::out_of_range.
  [[nodiscard]] std::span<const Index> list_ids(std::size_t l) const { return list(l).rows.ids(); }

  /// Bytes the index holds: centroids, codebooks, codes, refine codes, ids, tags, norms.
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    std::size_t b = sizeof(*this) + (refine_ ? refine_->memory_bytes() : 0) +
                    sizeof(T) * static_cast<std::size_t>(centroids_.size() + centroid_sq_.size() +
                                                         codebooks_.size() + codebooks_t_.size());
    for (const auto& L : lists_) b += sizeof(L) + L.rows.memory_bytes() + L.codes.capacity();
    return b;
  }

  // ---- persistence --------------------------------------------------------------------------
  //
  // File format, version 2, little-endian: the 24-byte header of detail/persist.hpp (magic
  // "MMRAGIPQ", storage = the refine storage, float32 when none), u64 dim, u64 nlist, u64 m,
  // u64 nbits, u64 has_refine, u64 size, u64 trained, with refine the codec's parameters
  // (Codec::write: int8's ranges), then when trained: centroids (nlist ×
  // dim scalars of T) and codebooks (m · 2^nbits × dim/m scalars); zeros to an 8-byte offset;
  // then per list: with refine the rows as VectorStore::write_counted writes them, without:
  // u64 count, count × i64 ids, count × u8 modality, zeros to an 8-byte offset; then the PQ
  // codes (4-bit: ceil(count / 32) blocks of pq4_block_bytes(m) bytes; 8-bit: count × m bytes)
  // and zeros to an 8-byte offset. Then the u64 checksum. serialize / parse / save / load (and
  // map / view, where the refine rows are viewed in place and the PQ codes copied) come from
  // detail::FileBacked.

 private:
  friend struct detail::FileBacked<IvfPqIndex, T>;
  static constexpr char kMagic[9] = "MMRAGIPQ";
  static constexpr std::uint32_t kVersion = 2;  // store layout 2 (aligned, with norms)
  static constexpr const char* kKind = "IvfPqIndex";

  struct List {
    VectorStore<T> rows;              // ids, tags, refine codes, squared norms
    std::vector<std::uint8_t> codes;  // PQ codes: 4-bit blocks of 32, or size × m bytes
  };

  struct Cand {
    double key;  // lower is better
    Index id;
    std::uint32_t list;
    std::uint32_t pos;
  };
  static bool cand_less(const Cand& a, const Cand& b) noexcept {
    return a.key != b.key ? a.key < b.key : a.id < b.id;
  }

  struct Scratch {
    std::vector<T> q, qr, row;
    std::vector<T> q_code;  // q in the refine codec's code space (a rotated int8 code)
    std::vector<Index> probes;
    std::vector<T> probe_keys;
    std::vector<float> lut;
    std::vector<std::uint8_t> lutq;
    std::vector<Cand> heap;
    std::vector<std::pair<double, Index>> final_;
    std::vector<std::uint8_t> code;
  };

  static std::size_t check_positive(std::size_t v, const char* what) {
    if (v == 0)
      throw std::invalid_argument(std::string("mmrag::IvfPqIndex: ") + what +
                                  " must be > 0, got 0");
    return v;
  }
  static std::size_t check_m(std::size_t dim, std::size_t m) {
    if (m == 0) {
      if (dim % 2 != 0)
        throw std::invalid_argument("mmrag::IvfPqIndex: params.m = 0 means dim / 2, but dim (" +
                                    std::to_string(dim) + ") is odd: set params.m");
      return dim / 2;
    }
    if (dim % m != 0)
      throw std::invalid_argument("mmrag::IvfPqIndex: params.m (" + std::to_string(m) +
                                  ") must divide dim (" + std::to_string(dim) + ")");
    if (m > 16384)
      throw std::invalid_argument("mmrag::IvfPqIndex: params.m must be <= 16384, got " +
                                  std::to_string(m));
    return m;
  }
  static std::size_t check_nbits(std::size_t nbits) {
    if (nbits != 4 && nbits != 8)
      throw std::invalid_argument("mmrag::IvfPqIndex: params.nbits must be 4 or 8, got " +
                                  std::to_string(nbits));
    return nbits;
  }
  static std::optional<Codec<T>> make_refine(std::size_t dim, std::optional<Storage> s) {
    if (!s) return std::nullopt;
    return Codec<T>(dim, *s);
  }

  const List& list(std::size_t l) const {
    if (l >= nlist_)
      throw std::out_of_range("mmrag::IvfPqIndex: list " + std::to_string(l) +
                              " is out of range (nlist " + std::to_string(nlist_) + ")");
    return lists_[l];
  }

  /// Bytes of PQ codes for `count` rows of one list.
  [[nodiscard]] std::size_t code_bytes(std::size_t count) const noexcept {
    return nbits_ == 4
               ? (count + detail::kPqBlock - 1) / detail::kPqBlock * detail::pq4_block_bytes(m_)
               : count * m_;
  }

  /// Appends one row's m codes to a list's code array (capacity reserved by the caller for add).
  /// Writes the m codes of row i (== the rows coded so far) at the end of a list's codes.
  void append_code(List& L, std::size_t i, const std::uint8_t* code) const {
    if (nbits_ == 8) {
      L.codes.insert(L.codes.end(), code, code + m_);
      return;
    }
    if (i % detail::kPqBlock == 0) L.codes.resize(L.codes.size() + detail::pq4_block_bytes(m_), 0);
    std::uint8_t* block = L.codes.data() + (i / detail::kPqBlock) * detail::pq4_block_bytes(m_);
    for (std::size_t j = 0; j < m_; ++j) detail::pq4_set(block, j, i % detail::kPqBlock, code[j]);
  }

  void get_code(const List& L, std::size_t i, std::uint8_t* code) const {
    if (nbits_ == 8) {
      std::copy_n(L.codes.data() + i * m_, m_, code);
      return;
    }
    const std::uint8_t* block =
        L.codes.data() + (i / detail::kPqBlock) * detail::pq4_block_bytes(m_);
    for (std::size_t j = 0; j < m_; ++j) code[j] = detail::pq4_get(block, j, i % detail::kPqBlock);
  }

  /// PQ codes (n × m bytes) of the residuals of rows x against their cells.
  [[nodiscard]] std::vector<std::uint8_t> encode(const Matrix<T>& x,
                                                 const std::vector<Index>& cell) const {
    const auto n = static_cast<Eigen::Index>(x.rows());
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(n) * m_);
    Matrix<T> part(n, static_cast<Eigen::Index>(dsub_));
    std::vector<Index> best(static_cast<std::size_t>(n));
    for (std::size_t j = 0; j < m_; ++j) {
      const auto c0 = static_cast<Eigen::Index>(j * dsub_);
      for (Eigen::Index r = 0; r < n; ++r)
        part.row(r) = x.row(r).segment(c0, static_cast<Eigen::Index>(dsub_)) -
                      centroids_.row(cell[static_cast<std::size_t>(r)])
                          .segment(c0, static_cast<Eigen::Index>(dsub_));
      const auto book = codebooks_.middleRows(static_cast<Eigen::Index>(j * ksub_),
                                              static_cast<Eigen::Index>(ksub_));
      const Vector<T> bsq = book.rowwise().squaredNorm();
      detail::nearest_centroids<T>(part, book, bsq, false, 1, best.data());
      for (Eigen::Index r = 0; r < n; ++r)
        codes[static_cast<std::size_t>(r) * m_ + j] =
            static_cast<std::uint8_t>(best[static_cast<std::size_t>(r)]);
    }
    return codes;
  }

  /// The codebooks laid out for the table build: sub-quantizer j's dsub × ksub block, each
  /// coordinate's ksub entries contiguous (so one SIMD pass computes many entries at once).
  static Matrix<T> transposed_books(const Matrix<T>& books, std::size_t m, std::size_t ksub,
                                    std::size_t dsub) {
    Matrix<T> t(static_cast<Eigen::Index>(m * dsub), static_cast<Eigen::Index>(ksub));
    for (std::size_t j = 0; j < m; ++j)
      t.middleRows(static_cast<Eigen::Index>(j * dsub), static_cast<Eigen::Index>(dsub)) =
          books.middleRows(static_cast<Eigen::Index>(j * ksub), static_cast<Eigen::Index>(ksub))
              .transpose();
    return t;
  }

  /// Float table for one query: m × ksub entries, lower is better. For l2 `qv` is the residual
  /// query q − c (entries ||qv_j − b_jk||²); for inner product `qv` is q (entries −q_j·b_jk).
  /// Entries are summed over the dsub coordinates in order, vectorized across the ksub entries.
  void build_lut(const T* qv, float* lut, bool l2) const {
    std::array<T, 256> acc;
    for (std::size_t j = 0; j < m_; ++j) {
      const T* qs = qv + j * dsub_;
      const T* bt = codebooks_t_.data() + j * dsub_ * ksub_;
      std::fill_n(acc.begin(), ksub_, T(0));
      for (std::size_t t = 0; t < dsub_; ++t) {
        const T qt = qs[t];
        const T* b = bt + t * ksub_;
        if (l2) {
          for (std::size_t c = 0; c < ksub_; ++c) {
            const T d = qt - b[c];
            acc[c] += d * d;
          }
        } else {
          for (std::size_t c = 0; c < ksub_; ++c) acc[c] -= qt * b[c];
        }
      }
      for (std::size_t c = 0; c < ksub_; ++c) lut[j * ksub_ + c] = static_cast<float>(acc[c]);
    }
  }

  void push_cand(std::vector<Cand>& heap, std::size_t cap, const Cand& c) const {
    if (heap.size() < cap) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), cand_less);
    } else if (cand_less(c, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), cand_less);
      heap.back() = c;
      std::push_heap(heap.begin(), heap.end(), cand_less);
    }
  }

  /// Scans list l with the prepared table; `base` is added to every estimate.
  void scan_list(std::size_t l, double base, const Filter& filter, std::size_t cap,
                 Scratch& s) const {
    const List& L = lists_[l];
    const std::size_t n = L.rows.size();
    const auto ids = L.rows.ids();
    const auto mods = L.rows.modalities();
    const bool trivial = filter.is_trivial();
    if (nbits_ == 4) {
      const detail::QuantizedLut ql = detail::pq4_quantize_lut(s.lut.data(), m_, s.lutq.data());
      const double b0 = base + ql.bias;
      const std::size_t mp = detail::pq4_padded(m_), bb = detail::pq4_block_bytes(m_);
      alignas(64) std::uint16_t sums[detail::kPqBlock];
      for (std::size_t i0 = 0; i0 < n; i0 += detail::kPqBlock) {
        detail::pq4_accumulate(s.lutq.data(), L.codes.data() + (i0 / detail::kPqBlock) * bb, mp,
                               sums);
        const std::size_t nb = std::min(detail::kPqBlock, n - i0);
        // Rows whose quantized sum cannot beat the current worst are skipped without a float.
        const double worst =
            s.heap.size() < cap ? std::numeric_limits<double>::infinity() : s.heap.front().key;
        for (std::size_t i = 0; i < nb; ++i) {
          const double est = double(sums[i]) * ql.inv_a + b0;
          if (est > worst) continue;
          const std::size_t p = i0 + i;
          if (!trivial && !filter.allows(mods[p], ids[p])) continue;
          push_cand(s.heap, cap,
                    {est, ids[p], static_cast<std::uint32_t>(l), static_cast<std::uint32_t>(p)});
        }
      }
      return;
    }
    const float* lut = s.lut.data();
    for (std::size_t p = 0; p < n; ++p) {
      if (!trivial && !filter.allows(mods[p], ids[p])) continue;
      const std::uint8_t* code = L.codes.data() + p * m_;
      float acc = 0;
      for (std::size_t j = 0; j < m_; ++j) acc += lut[j * 256 + code[j]];
      const double est = double(acc) + base;
      if (s.heap.size() == cap && est > s.heap.front().key) continue;
      push_cand(s.heap, cap,
                {est, ids[p], static_cast<std::uint32_t>(l), static_cast<std::uint32_t>(p)});
    }
  }

  void search_one(const T* q_in, std::size_t k, const SearchParams& params, Scratch& s,
                  Index* out_ids, T* out_scores) const {
    const bool l2 = metric_ == Metric::l2;
    // Cosine scans with the l2 tables: for unit rows ||q − x||² = 2 − 2 q·x ranks as cosine,
    // and its PQ error involves (q − c)·(r − r̂) only, where the inner-product estimate's
    // involves q·(r − r̂), dominated by the centroid's direction.
    const bool l2_scan = metric_ != Metric::inner_product;
    s.q.assign(q_in, q_in + dim_);
    // The library's one normalization (scaled first: norms near 1e20 or 1e-25 neither overflow
    // nor underflow), as normalize_rows does for the rows.
    if (metric_ == Metric::cosine) detail::normalize_row(s.q.data(), dim_);
    const std::size_t nprobe = std::min(params.nprobe, nlist_);
    s.probes.resize(nprobe);
    s.probe_keys.resize(nprobe);
    const Eigen::Map<const Matrix<T>> qm(s.q.data(), 1, static_cast<Eigen::Index>(dim_));
    detail::nearest_centroids<T>(qm, centroids_, centroid_sq_, !l2, nprobe, s.probes.data(),
                                 s.probe_keys.data());
    const std::size_t most = std::max<std::size_t>(size_, 1);
    const std::size_t cap = params.k_factor > most / k ? most : std::min(most, k * params.k_factor);
    s.heap.clear();
    s.lut.resize(m_ * ksub_);
    s.lutq.resize(detail::pq4_padded(m_) * 16);
    if (!l2_scan) build_lut(s.q.data(), s.lut.data(), false);
    s.qr.resize(dim_);
    for (std::size_t pi = 0; pi < nprobe; ++pi) {
      const auto l = static_cast<std::size_t>(s.probes[pi]);
      if (lists_[l].rows.empty()) continue;
      double base = 0;
      if (l2_scan) {
        const T* c = centroids_.row(static_cast<Eigen::Index>(l)).data();
        for (std::size_t t = 0; t < dim_; ++t) s.qr[t] = s.q[t] - c[t];
        build_lut(s.qr.data(), s.lut.data(), true);
      } else {
        base = double(s.probe_keys[pi]);  // −q·c
      }
      scan_list(l, base, params.filter, cap, s);
    }
    // Exact rescoring of the candidates.
    s.final_.clear();
    s.row.resize(dim_);
    s.code.resize(m_);
    std::vector<T>& dec = s.qr;  // reused as decode scratch
    const T* q_rescore = s.q.data();
    if (refine_ && refine_->rotated()) {
      s.q_code.resize(dim_);
      refine_->to_code_space(s.q.data(), 1, s.q_code.data());
      q_rescore = s.q_code.data();
    }
    // The refine rows are cold (one per candidate, anywhere in the index): fetch a few
    // candidates ahead.
    constexpr std::size_t kAhead = 4;
    auto prefetch = [&](std::size_t i) {
      if (refine_ && i < s.heap.size())
        detail::prefetch(lists_[s.heap[i].list].rows.code(s.heap[i].pos), refine_->code_size());
    };
    for (std::size_t i = 0; i < kAhead; ++i) prefetch(i);
    for (std::size_t ci = 0; ci < s.heap.size(); ++ci) {
      const Cand& c = s.heap[ci];
      prefetch(ci + kAhead);
      const List& L = lists_[c.list];
      const T* row;
      if (refine_) {
        row = refine_->rows(L.rows.code(c.pos), 1, dec);
      } else {
        get_code(L, c.pos, s.code.data());
        const T* cen = centroids_.row(c.list).data();
        for (std::size_t j = 0; j < m_; ++j) {
          const T* b = codebooks_.row(static_cast<Eigen::Index>(j * ksub_ + s.code[j])).data();
          for (std::size_t t = 0; t < dsub_; ++t) s.row[j * dsub_ + t] = cen[j * dsub_ + t] + b[t];
        }
        row = s.row.data();
      }
      const double score = detail::exact_score<T>(refine_ ? q_rescore : s.q.data(), row, dim_, l2);
      s.final_.emplace_back(l2 ? score : -score, c.id);
    }
    const std::size_t kept = std::min(k, s.final_.size());
    std::partial_sort(s.final_.begin(), s.final_.begin() + static_cast<std::ptrdiff_t>(kept),
                      s.final_.end());
    for (std::size_t i = 0; i < kept; ++i) {
      out_ids[i] = s.final_[i].second;
      out_scores[i] = static_cast<T>(l2 ? s.final_[i].first : -s.final_[i].first);
    }
  }

  static void pad8(std::vector<char>& out) { out.resize((out.size() + 7) / 8 * 8, 0); }

  /// Skips the zero padding up to the next 8-byte file offset (non-zero padding is corrupt).
  static void skip_pad8(detail::Cursor& c) {
    const std::uint64_t pad = (8 - c.offset() % 8) % 8;
    c.need(pad, "padding");
    for (std::uint64_t i = 0; i < pad; ++i)
      if (c.here()[i] != 0) detail::fail(c.path(), c.offset() + i, "padding is not zero");
    c.skip(pad, "padding");
  }

  void write_body(std::vector<char>& out) const {
    for (std::size_t v : {nlist_, m_, nbits_, std::size_t(refine_ ? 1 : 0), size_,
                          std::size_t(is_trained() ? 1 : 0)})
      detail::append(out, static_cast<std::uint64_t>(v));
    if (refine_) refine_->write(out);  // int8's ranges (8-byte aligned)
    if (is_trained()) {
      detail::append_raw(out, centroids_.data(),
                         sizeof(T) * static_cast<std::size_t>(centroids_.size()));
      detail::append_raw(out, codebooks_.data(),
                         sizeof(T) * static_cast<std::size_t>(codebooks_.size()));
    }
    pad8(out);
    for (const auto& L : lists_) {
      if (refine_) {
        L.rows.write_counted(out);
      } else {
        detail::append(out, static_cast<std::uint64_t>(L.rows.size()));
        detail::append_raw(out, L.rows.ids().data(), sizeof(Index) * L.rows.size());
        detail::append_raw(out, L.rows.modalities().data(), L.rows.size());
        pad8(out);
      }
      detail::append_raw(out, L.codes.data(), L.codes.size());
      pad8(out);
    }
  }

  static IvfPqIndex read_body(detail::Cursor& c, const detail::FileHeader& h,
                              const StoreReadMode& mode) {
    const std::filesystem::path& path = c.path();
    const std::uint64_t dim = h.dim;
    if (h.version != kVersion)
      detail::fail(path, 8, "unsupported IvfPqIndex version " + std::to_string(h.version));
    const std::uint64_t at = c.offset();
    const auto nlist = c.get<std::uint64_t>("nlist");
    const auto m = c.get<std::uint64_t>("m");
    const auto nbits = c.get<std::uint64_t>("nbits");
    const auto has_refine = c.get<std::uint64_t>("refine flag");
    const auto total = c.get<std::uint64_t>("size");
    const auto trained = c.get<std::uint64_t>("trained flag");
    const std::uint64_t left = c.left();
    if (has_refine > 1 || trained > 1)
      detail::fail(path, at, "refine / trained flags must be 0 or 1");
    if (nbits != 4 && nbits != 8)
      detail::fail(path, at, "nbits must be 4 or 8, got " + std::to_string(nbits));
    if (m == 0 || m > 16384 || dim % m != 0)
      detail::fail(path, at,
                   "m " + std::to_string(m) + " does not divide dim " + std::to_string(dim));
    // Every count is bounded by the bytes left, so nothing below can allocate absurdly.
    const std::uint64_t ksub = std::uint64_t(1) << nbits;
    if (nlist == 0 || nlist > left / 8 || dim > left / sizeof(T) ||
        (trained && (nlist > left / sizeof(T) / dim || ksub * dim > left / sizeof(T))))
      detail::fail(path, at,
                   "nlist " + std::to_string(nlist) + " with dim " + std::to_string(dim) +
                       " does not fit the file size");
    if (!trained && total > 0) detail::fail(path, at, "an untrained index cannot hold vectors");
    std::optional<Storage> refine;
    if (has_refine) refine = detail::storage_from_code(h.storage, path);
    IvfPqIndex index(
        static_cast<std::size_t>(dim), static_cast<std::size_t>(nlist), h.metric,
        PqParams{static_cast<std::size_t>(m), static_cast<std::size_t>(nbits), refine});
    if (index.refine_) {
      index.refine_->read(c);  // int8's ranges
      if (trained && !index.refine_->is_trained())
        detail::fail(path, c.offset(), "a trained index needs the refine codec's parameters");
      for (List& L : index.lists_)  // the file's codec decides the code size
        L.rows = VectorStore<T>(index.refine_->code_size());
    }
    if (trained) {
      index.centroids_.resize(static_cast<Eigen::Index>(nlist), static_cast<Eigen::Index>(dim));
      c.copy_to(index.centroids_.data(), sizeof(T) * nlist * dim, "centroids");
      index.codebooks_.resize(static_cast<Eigen::Index>(m * ksub),
                              static_cast<Eigen::Index>(dim / m));
      c.copy_to(index.codebooks_.data(), sizeof(T) * ksub * dim, "codebooks");
      if (!index.centroids_.allFinite() || !index.codebooks_.allFinite())
        detail::fail(path, c.offset(), "centroids or codebooks hold NaN or Inf");
      index.centroid_sq_ = index.centroids_.rowwise().squaredNorm();
      index.codebooks_t_ = transposed_books(index.codebooks_, index.m_, index.ksub_, index.dsub_);
    }
    skip_pad8(c);
    std::uint64_t seen = 0;
    for (std::uint64_t l = 0; l < nlist; ++l) {
      List& L = index.lists_[static_cast<std::size_t>(l)];
      const std::string what = "list " + std::to_string(l);
      if (index.refine_) {
        L.rows.read_counted(c, *index.refine_, what, mode);
      } else {
        const std::uint64_t count_at = c.offset();
        const auto count = c.get<std::uint64_t>("row count");
        if (count > c.left() / (sizeof(Index) + 1))
          detail::fail(
              path, count_at,
              what + ": " + std::to_string(count) + " rows claimed, more than the file holds");
        const auto n = static_cast<std::size_t>(count);
        std::vector<Index> ids(n);
        std::vector<Modality> mods(n);
        const std::uint64_t ids_at = c.offset();
        c.copy_to(ids.data(), sizeof(Index) * count, "ids");
        c.copy_to(mods.data(), count, "modality tags");
        skip_pad8(c);
        L.rows.reserve_more(n);
        for (std::size_t i = 0; i < n; ++i) {
          if (ids[i] < 0)
            detail::fail(path, ids_at, what + ": negative id " + std::to_string(ids[i]));
          if (mods[i] > max_modality)
            detail::fail(path, ids_at,
                         what + ": modality tag " + std::to_string(mods[i]) + " > " +
                             std::to_string(max_modality));
          L.rows.push(nullptr, T(0), ids[i], mods[i]);
        }
      }
      const std::uint64_t cb = index.code_bytes(L.rows.size());
      if (cb > c.left()) detail::fail(path, c.offset(), what + ": codes truncated");
      L.codes.resize(static_cast<std::size_t>(cb));
      c.copy_to(L.codes.data(), cb, "codes");
      skip_pad8(c);
      for (Index id : L.rows.ids()) {
        constexpr Index top = std::numeric_limits<Index>::max();
        index.next_id_ = std::max(index.next_id_, id == top ? top : id + 1);
      }
      seen += L.rows.size();
    }
    if (seen != total)
      detail::fail(
          path, at,
          "header says " + std::to_string(total) + " vectors, lists hold " + std::to_string(seen));
    index.size_ = static_cast<std::size_t>(total);
    return index;
  }

  std::size_t dim_, nlist_;
  Metric metric_;
  std::size_t m_, nbits_, ksub_, dsub_;
  std::optional<Codec<T>> refine_;
  Matrix<T> centroids_;  // nlist × dim once trained, else 0 × 0
  Vector<T> centroid_sq_;
  Matrix<T> codebooks_;  // (m · ksub) × dsub
  Matrix<T> codebooks_t_;  // (m · dsub) × ksub: the table build's layout (derived, not saved)
  std::vector<List> lists_;
  std::size_t size_ = 0;
  Index next_id_ = 0;  // one past the largest id ever added
};

}  // namespace mmrag
