#pragma once
/// @file search/driver.hpp
/// The search loop every index shares. An index says only *which stored blocks each query
/// visits* (a plan); the driver does the rest, once for all indexes:
///   checks (columns, k, NaN/Inf) → query preparation (normalized for cosine) → query blocks,
///   parallel over blocks by one rule → scanning (SIMD for one to three queries on a block, a
///   GEMM for more; a filter compacts the block to its allowed rows first) → screened top-k
///   with a rounding margin → exact rescoring of every candidate the margin cannot rule out.
///
/// Exactness. Fast scans compute inner products in T through SIMD or GEMM, and l2 distances as
/// ||q||² + ||x||² - 2 q·x. Both err by at most γ·(terms) with γ = (d + 5)·u (u = unit round-off
/// of T; the bound of any summation order, Higham, "Accuracy and Stability of Numerical
/// Algorithms", §3.1): |q·x|-error <= γ ||q|| ||x||, l2-error <= γ (||q|| + ||x||)², using the
/// index's largest stored norm for ||x||, plus an absolute (4d + 16)·denorm_min/2 for gradual
/// underflow (tiny data). Compressed rows scanned one query at a time are scored on their codes
/// (Codec::dot_codes): for float16 / bfloat16 the same bound holds (they decode exactly to
/// float); for int8 the codec's extra bound (Codec::dot_codes_error) is added. Keys that overflow to -inf tie at the top of the heap and are all
/// rescored; a margin beyond T's range is +inf, and then every row is. Every candidate within twice that bound of the k-th
/// screened key is rescored with one canonical formula (products and sums in double: for float
/// data, exact products), and the top-k is chosen on those scores, ties to the smaller id. So
/// the result is the true top-k for any finite data, identical for a query alone or in any
/// batch; on embedding-like data the bound admits only a few extra candidates.
/// Not API: namespace mmrag::detail.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mmrag/codecs.hpp"
#include "mmrag/config.hpp"
#include "mmrag/detail/exact.hpp"
#include "mmrag/detail/simd.hpp"
#include "mmrag/detail/topk.hpp"
#include "mmrag/search/types.hpp"
#include "mmrag/similarity.hpp"
#include "mmrag/store.hpp"

namespace mmrag::detail {

/// A contiguous run of stored rows as the scanner sees it.
template <class T>
struct Block {
  const std::uint8_t* codes = nullptr;  ///< rows × code_size bytes
  const Index* ids = nullptr;           ///< rows
  const T* sq_norms = nullptr;          ///< rows: squared norms of the decoded rows
  const Modality* modality = nullptr;   ///< rows
  std::size_t rows = 0;
  /// For a compacted copy: where each row's code lives in the store (candidates keep that
  /// pointer for the exact rescoring, after the copy is gone). Null: rows are in place.
  const std::uint8_t* const* source = nullptr;
  /// Residual codes (IvfIndex, int8): every decoded row is this vector (dim values, the cell's
  /// centroid) plus its decoded code. Null: the decoded code is the row.
  const T* offset = nullptr;

  [[nodiscard]] const std::uint8_t* origin(std::size_t j, std::size_t code_size) const noexcept {
    return source ? source[j] : codes + j * code_size;
  }
};

/// Rows [first, first + rows) of a store as a block.
template <class T>
[[nodiscard]] Block<T> block_of(const VectorStore<T>& s, std::size_t first, std::size_t rows,
                                const T* offset = nullptr) noexcept {
  MMRAG_ASSERT(first + rows <= s.size());
  return {s.code(first), s.ids().data() + first, s.sq_norms().data() + first,
          s.modalities().data() + first, rows, nullptr, offset};
}
template <class T>
[[nodiscard]] Block<T> block_of(const VectorStore<T>& s, const T* offset = nullptr) noexcept {
  return block_of(s, 0, s.size(), offset);
}

/// The canonical exact key of a stored row (lower is better): the squared distance for l2,
/// minus the inner product otherwise (detail/exact.hpp). Every path ranks its final candidates
/// by this one formula.
template <class T>
[[nodiscard]] double exact_key(const T* q, const T* x, std::size_t d, Metric metric) noexcept {
  return metric == Metric::l2 ? exact_score<T>(q, x, d, true) : -exact_score<T>(q, x, d, false);
}

/// What the driver needs to know about an index for one search call.
template <class T>
struct SearchSetup {
  const char* where;          ///< "mmrag::FlatIndex::search", for messages
  std::size_t dim;
  Metric metric;
  const Codec<T>* codec;
  std::size_t size;           ///< stored rows (caps the heap)
  T max_sq_norm;              ///< an upper bound of every stored row's squared norm
  Eigen::Index query_block;   ///< queries per block (one block per task)
};

/// Prepared queries of one block and their heaps.
template <class T>
struct QueryBlock {
  const T* q = nullptr;       ///< nb × dim, row-major, normalized for cosine, in code space
  const T* q_input = nullptr; ///< the same queries in the caller's space (what centroids are in)
  const T* sq = nullptr;      ///< nb squared norms
  TopK<T>* tops = nullptr;    ///< nb heaps
  std::size_t nb = 0;
};

/// Scans blocks for some queries of a QueryBlock. One per thread: it owns the scratch.
template <class T>
class Scanner {
 public:
  Scanner(const Codec<T>& codec, Metric metric, const Filter& filter)
      : codec_(codec), metric_(metric), filter_(filter), dim_(codec.dim()) {}

  /// Scores queries `who` (indices into qb; empty = all of qb) against block b and feeds their
  /// heaps. One to three queries: the SIMD one-to-many kernel (memory-bound); more: GEMM tiles.
  void scan(const QueryBlock<T>& qb, std::span<const Eigen::Index> who, const Block<T>& b) {
    if (b.rows == 0) return;
    const std::size_t nw = who.empty() ? qb.nb : who.size();
    if (nw == 0) return;
    if (nw < kGemmMinQueries) {
      for (std::size_t w = 0; w < nw; ++w) {
        const auto i = static_cast<std::size_t>(who.empty() ? Eigen::Index(w) : who[w]);
        for (std::size_t first = 0; first < b.rows; first += kScanRows)
          scan_one(qb.q + i * dim_, qb.sq[i], sub(b, first, std::min(kScanRows, b.rows - first)),
                   qb.tops[i]);
      }
      return;
    }
    // Gather the visiting queries once (contiguous for the GEMM).
    const T* q = qb.q;
    const T* sq = qb.sq;
    tops_.resize(nw);
    if (who.empty()) {
      for (std::size_t w = 0; w < nw; ++w) tops_[w] = &qb.tops[w];
    } else {
      gathered_.resize(nw * dim_);
      gathered_sq_.resize(nw);
      for (std::size_t w = 0; w < nw; ++w) {
        const auto i = static_cast<std::size_t>(who[w]);
        std::copy(qb.q + i * dim_, qb.q + (i + 1) * dim_, gathered_.data() + w * dim_);
        gathered_sq_[w] = qb.sq[i];
        tops_[w] = &qb.tops[i];
      }
      q = gathered_.data();
      sq = gathered_sq_.data();
    }
    for (std::size_t first = 0; first < b.rows; first += kTileRows) {
      const Block<T> tile = sub(b, first, std::min(kTileRows, b.rows - first));
      // A filter shrinks the GEMM to the tile's allowed rows: filtered costs less, not more.
      scan_many(q, sq, nw, filter_.is_trivial() ? tile : compact(tile));
    }
  }

 private:
  static constexpr std::size_t kGemmMinQueries = 4;  // below: SIMD scan per query
  static constexpr std::size_t kScanRows = 4096;     // rows per SIMD chunk (decode scratch)
  static constexpr std::size_t kTileRows = 1024;     // rows per GEMM tile: 1 MB of scores

  [[nodiscard]] Block<T> sub(const Block<T>& b, std::size_t first, std::size_t rows) const noexcept {
    const std::size_t cs = codec_.code_size();
    return {b.codes + first * cs, b.ids + first, b.sq_norms + first, b.modality + first, rows,
            b.source ? b.source + first : nullptr, b.offset};
  }

  /// Pushes keys[j] of rows [0, b.rows) into `top`. Once the heap is full almost no key is
  /// admitted, so a SIMD compare against the admit bound skips W keys at a time; only batches
  /// holding a possible entrant go through the scalar path (and the filter).
  template <bool Filtered>
  void select(const T* keys, const Block<T>& b, TopK<T>& top) const {
    using Batch = xsimd::batch<T>;
    constexpr std::size_t W = Batch::size;
    const std::size_t cs = codec_.code_size();
    auto consider = [&](std::size_t j) {
      if (!(keys[j] <= top.admit()) && !std::isnan(keys[j])) return;
      if constexpr (Filtered) {
        if (!filter_.allows(b.modality[j], b.ids[j])) return;
      }
      top.push(keys[j], b.ids[j], b.origin(j, cs), b.offset);
    };
    std::size_t j = 0;
    for (; j + W <= b.rows; j += W) {
      const Batch v = Batch::load_unaligned(keys + j), t(top.admit());
      if (xsimd::any(!(v > t))) // NaN keys (overflow) fall through to `consider` too
        for (std::size_t i = j; i < j + W; ++i) consider(i);
    }
    for (; j < b.rows; ++j) consider(j);
  }

  void scan_one(const T* query, T sq_query, const Block<T>& b, TopK<T>& top) {
    keys_.resize(b.rows);
    T* s = keys_.data();
    if (codec_.scores_codes() && prepared(query).on_codes) {
      // Compressed rows are scored on their codes (a quarter or half of the bytes, one pass);
      // the heap's margin includes the codec's extra error (run_search).
      codec_.dot_codes(query, prepared_, b.codes, b.rows, b.offset, s);
    } else {
      const T* x = codec_.rows(b.codes, b.rows, decoded_, b.offset);
      dot_many_kernel<T>(query, x, b.rows, dim_, dim_, s);
    }
    if (metric_ == Metric::l2)
      for (std::size_t j = 0; j < b.rows; ++j) s[j] = std::max(T(0), sq_query + b.sq_norms[j] - T(2) * s[j]);
    else
      for (std::size_t j = 0; j < b.rows; ++j) s[j] = -s[j];
    if (filter_.is_trivial())
      select<false>(s, b, top);
    else
      select<true>(s, b, top);
  }

  /// The codec's per-query scan state for `query`, made once for consecutive blocks.
  const typename Codec<T>::ScanQuery& prepared(const T* query) {
    if (prepared_for_ != query) {
      codec_.prepare_scan(query, prepared_);
      prepared_for_ = query;
    }
    return prepared_;
  }

  void scan_many(const T* queries, const T* sq_queries, std::size_t nq, const Block<T>& b) {
    if (b.rows == 0) return;
    using ConstMap = Eigen::Map<const Matrix<T>>;
    const T* xrows = codec_.rows(b.codes, b.rows, decoded_, b.offset);
    const ConstMap q(queries, static_cast<Eigen::Index>(nq), static_cast<Eigen::Index>(dim_));
    const ConstMap x(xrows, static_cast<Eigen::Index>(b.rows), static_cast<Eigen::Index>(dim_));
    scores_.resize(static_cast<Eigen::Index>(nq), static_cast<Eigen::Index>(b.rows));
    const bool l2 = metric_ == Metric::l2;
    // Keys are lower-is-better: for similarities the GEMM's alpha = -1 negates for free.
    if (l2)
      scores_.noalias() = q * x.transpose();
    else
      scores_.noalias() = (T(-1) * q) * x.transpose();
    using Arr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
    const Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>> xn(b.sq_norms,
                                                                   static_cast<Eigen::Index>(b.rows));
    for (std::size_t i = 0; i < nq; ++i) {
      Arr r(scores_.row(static_cast<Eigen::Index>(i)).data(), static_cast<Eigen::Index>(b.rows));
      if (l2) r = (sq_queries[i] + xn - T(2) * r).max(T(0));
      select<false>(r.data(), b, *tops_[i]);  // compacted blocks hold allowed rows only
    }
  }

  /// The rows of b that pass the filter, copied into a contiguous block (reused storage).
  Block<T> compact(const Block<T>& b) {
    const std::size_t cs = codec_.code_size();
    c_codes_.clear(), c_norms_.clear(), c_ids_.clear(), c_mod_.clear(), c_source_.clear();
    for (std::size_t j = 0; j < b.rows; ++j) {
      if (!filter_.allows(b.modality[j], b.ids[j])) continue;
      c_codes_.insert(c_codes_.end(), b.codes + j * cs, b.codes + (j + 1) * cs);
      c_norms_.push_back(b.sq_norms[j]);
      c_ids_.push_back(b.ids[j]);
      c_mod_.push_back(b.modality[j]);
      c_source_.push_back(b.origin(j, cs));
    }
    return {c_codes_.data(), c_ids_.data(), c_norms_.data(), c_mod_.data(), c_ids_.size(),
            c_source_.data(), b.offset};
  }

  const Codec<T>& codec_;
  Metric metric_;
  const Filter& filter_;
  std::size_t dim_;
  const T* prepared_for_ = nullptr;  // the query prepared_ was made for (queries outlive us)
  typename Codec<T>::ScanQuery prepared_;
  std::vector<T> keys_, decoded_, gathered_, gathered_sq_;
  std::vector<TopK<T>*> tops_;
  Matrix<T> scores_;
  // compaction storage
  std::vector<std::uint8_t> c_codes_;
  std::vector<T> c_norms_;
  std::vector<Index> c_ids_;
  std::vector<Modality> c_mod_;
  std::vector<const std::uint8_t*> c_source_;
};

/// Twice the screening error bound for one query, in key units (see the file comment).
template <class T>
[[nodiscard]] T screening_margin(Metric metric, std::size_t dim, T sq_query, T max_sq_norm) noexcept {
  const double u = std::numeric_limits<T>::epsilon() / 2;
  const double gamma = 2.02 * (double(dim) + 5) * u;  // 2×: rescoring in T=double also rounds
  const double nq = std::sqrt(double(sq_query)), nx = std::sqrt(double(max_sq_norm));
  // Gradual underflow: below T's smallest normal, rounding errs by up to half the smallest
  // subnormal per operation, absolutely — (4d + 16) operations' worth covers a key's products,
  // sums and squared norms.
  const double tiny = double(std::numeric_limits<T>::denorm_min()) / 2;
  const double underflow = (4 * double(dim) + 16) * tiny;
  const double bound = (metric == Metric::l2 ? gamma * (nq + nx) * (nq + nx) : gamma * nq * nx) +
                       underflow;
  const double margin = 2 * bound;
  return margin > double(std::numeric_limits<T>::max()) ? std::numeric_limits<T>::infinity()
                                                         : static_cast<T>(margin);
}

/// Runs a search. `plan(qb, first_q, scanner)` visits, for the queries of one block, the blocks
/// they must see, by calling `scanner.scan(qb, who, block)`; it may be called from several
/// threads at once (one per query block) and must be safe for that. Returns nq × k Hits, best
/// first, ties to the smaller id, padded. Throws std::invalid_argument on a wrong column count,
/// k = 0 or a k whose result cannot be allocated, and NaN/Inf queries.
template <class T, class Plan>
[[nodiscard]] Hits<T> run_search(const SearchSetup<T>& s, const Eigen::Ref<const Matrix<T>>& queries,
                                 std::size_t k, const Filter& filter, Plan&& plan) {
  check_dim(s.where, "queries", queries.cols(), s.dim);
  check_k<T>(s.where, k, queries.rows());
  check_finite_rows(s.where, "queries", queries);

  const Eigen::Index nq = queries.rows();
  const auto kk = static_cast<Eigen::Index>(k);
  Hits<T> hits;
  try {
    hits.ids.resize(nq, kk);
    hits.scores.resize(nq, kk);
  } catch (const std::bad_alloc&) {
    throw std::invalid_argument(std::string(s.where) + ": k = " + std::to_string(k) +
                                " is too large: the result cannot be allocated");
  }
  Matrix<T> q_input = queries;
  if (s.metric == Metric::cosine) normalize_rows(q_input);
  // Scans and rescoring work in the codec's code space (a rotation for some int8 codes).
  Matrix<T> q_rotated;
  if (s.codec->rotated()) {
    q_rotated.resize(nq, queries.cols());
    s.codec->to_code_space(q_input.data(), static_cast<std::size_t>(nq), q_rotated.data());
    // The rotation runs in float: a query whose image leaves float range cannot be scored.
    for (Eigen::Index r = 0; r < nq; ++r)
      if (!q_rotated.row(r).allFinite())
        s.codec->check_code_space(s.where, "queries", q_input.row(r).data(), 1,
                                  static_cast<std::size_t>(r));  // throws, naming the row
  }
  const Matrix<T>& q = s.codec->rotated() ? q_rotated : q_input;
  const Vector<T> q_sq = q.rowwise().squaredNorm();
  const bool higher = higher_is_better(s.metric);
  const T pad = higher ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  const std::size_t heap_k = std::max<std::size_t>(1, std::min(k, s.size));

  const Eigen::Index blocks = (nq + s.query_block - 1) / s.query_block;
  // One rule for going parallel: more than one block and enough work to pay for the threads.
  const double work = double(nq) * double(s.size) * double(s.dim);
  parallel_for<Eigen::Index>(0, blocks, work > double(kParallelWork), 1, [&](Eigen::Index bi) {
    const Eigen::Index first_q = bi * s.query_block;
    const auto nb = static_cast<std::size_t>(std::min(s.query_block, nq - first_q));
    std::vector<TopK<T>> tops;
    tops.reserve(nb);
    typename Codec<T>::ScanQuery prepared;
    for (std::size_t i = 0; i < nb; ++i) {
      const Eigen::Index r = first_q + static_cast<Eigen::Index>(i);
      T margin = screening_margin<T>(s.metric, s.dim, q_sq[r], s.max_sq_norm);
      if (s.codec->scores_codes()) {
        // Scans that score codes directly err by up to dot_codes_error more per inner product
        // (twice that per l2 key); the margin is twice the bound.
        s.codec->prepare_scan(q.row(r).data(), prepared);
        if (prepared.on_codes) {
          const double e = s.codec->dot_codes_error(q.row(r).data(), prepared,
                                                    std::sqrt(double(s.max_sq_norm)));
          const double total =
              double(margin) + (s.metric == Metric::l2 ? 4 : 2) * e * (1 + 0x1p-20);
          margin = total > double(std::numeric_limits<T>::max())
                       ? std::numeric_limits<T>::infinity()
                       : static_cast<T>(total);
        }
      }
      tops.emplace_back(heap_k, margin);
    }
    const QueryBlock<T> qb{q.row(first_q).data(), q_input.row(first_q).data(),
                           q_sq.data() + first_q, tops.data(), nb};
    Scanner<T> scanner(*s.codec, s.metric, filter);
    plan(qb, first_q, scanner);

    // Exact rescoring of every candidate the margin could not rule out; the next query's rows
    // are fetched while this one's are scored.
    std::vector<T> row;  // decode scratch for compressed codecs
    std::vector<std::pair<double, Index>> ranked;
    auto prefetch_pool = [&](std::vector<Candidate<T>>& pool) {
      for (const Candidate<T>& c : pool) prefetch(c.code, s.codec->code_size());
    };
    if (nb > 0) prefetch_pool(tops[0].settle());
    for (std::size_t i = 0; i < nb; ++i) {
      const T* qi = qb.q + i * s.dim;
      ranked.clear();
      if (i + 1 < nb) prefetch_pool(tops[i + 1].settle());
      for (const Candidate<T>& c : tops[i].settle()) {
        // The identity codec hands out the stored row itself: no copy per candidate.
        const double key =
            exact_key<T>(qi, s.codec->rows(c.code, 1, row, c.offset), s.dim, s.metric);
        // NaN only from a mapped file's unchecked rows: rank it last, keep the sort well-defined.
        ranked.emplace_back(std::isnan(key) ? std::numeric_limits<double>::infinity() : key, c.id);
      }
      const std::size_t keep = std::min(k, ranked.size());
      std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(keep),
                        ranked.end(), [](const auto& a, const auto& b) {
                          return key_before(a.first, a.second, b.first, b.second);
                        });
      const Eigen::Index r = first_q + static_cast<Eigen::Index>(i);
      for (std::size_t j = 0; j < k; ++j) {
        const auto c = static_cast<Eigen::Index>(j);
        if (j < keep) {
          hits.ids(r, c) = ranked[j].second;
          hits.scores(r, c) = static_cast<T>(higher ? -ranked[j].first : ranked[j].first);
        } else {
          hits.ids(r, c) = -1;
          hits.scores(r, c) = pad;
        }
      }
    }
  });
  return hits;
}

}  // namespace mmrag::detail
