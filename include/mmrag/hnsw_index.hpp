#pragma once
/// @file hnsw_index.hpp
/// A graph index for one query at a time: Hierarchical Navigable Small World graphs.
///
/// Source: Yu. A. Malkov and D. A. Yashunin, "Efficient and robust approximate nearest neighbor
/// search using Hierarchical Navigable Small World graphs", IEEE TPAMI 42(4), 2020
/// (arXiv:1603.09320, 2016/2018). What is taken from the paper:
/// - every node gets a level l = floor(-ln(u) · mL), u uniform in (0, 1], mL = 1 / ln(M)
///   (section 4.1); levels above 0 hold at most M links per node, level 0 at most 2·M;
/// - insertion (Algorithm 1): greedy descent (ef = 1) to the node's level, then a search with
///   ef_construction per level, links chosen by the neighbour-selection heuristic (Algorithm 4,
///   without extendCandidates and keepPrunedConnections, as hnswlib); a neighbour that
///   overflows is pruned back with the same heuristic;
/// - search (Algorithms 2 and 5): greedy descent, then a beam of width ef at level 0.
///
/// Layout: every node is one 64-byte-aligned block holding its level-0 links (count + 2·M
/// slots, padded to whole cache lines) and then its vector (compressed storage: the squared
/// norm of its decoded row, then its code), so the prefetch issued before a
/// node is scored also brings in the links needed when it is expanded; the rare upper-level
/// links live in a separate pool. Large graphs sit on transparent huge pages (Linux). Neighbours
/// are scored four at a time (four independent memory streams) while the next four are prefetched.
/// The beam is a sorted array (no std::priority_queue); the visited set is a per-thread array of
/// 16-bit epoch tags, so starting a query clears nothing.
///
/// Results: the exact top-k (ties to the smaller id) of the ef best candidates the beam found,
/// with ef = max(ef_search, k). Scores are the metric's: squared L2 distance (lower is better),
/// inner product or cosine (higher is better); cosine normalizes stored vectors on `add` and
/// queries on `search` (zero vectors stay zero and score 0).
///
/// Filters (modality set, id set) act inside the traversal: every node is walked through, but
/// only allowed nodes enter the result beam, which keeps growing until it holds ef allowed items
/// (hnswlib's filtered search). **Exact-scan rule**: when the number of allowed items is at most
/// max(size() / 20, ef · M), the search scans the allowed rows exactly instead (as Lucene and
/// OpenSearch do), so filtered recall does not collapse at small allowed fractions and the
/// result is then the exact filtered top-k. The graph search also falls back to the exact scan
/// whenever it finds fewer than min(k, allowed) items.
///
/// Removal (`remove_ids`) repairs the graph: every node that linked to a removed node gets its
/// links chosen again by the heuristic among its remaining links and the removed node's
/// links (looking through removed neighbours of removed neighbours), the entry point moves to a
/// surviving node of the highest level, any survivor left with no level-0 in-link gets one
/// from its nearest out-neighbour, and the removed slots go to a free list that later
/// `add`s reuse. No link ever points to a removed node afterwards, so removed items are never
/// returned and the searches need no per-node "deleted" test.
///
/// Thread safety: `search` is const; any number of threads may search one index at once (each
/// thread keeps its own visited set and beam in thread-local storage). `add` and `remove_ids`
/// are not: never call them while another thread searches. `add` itself runs in parallel with
/// OpenMP (per-node spin locks): an insertion searches top-down and links bottom-up (nobody can
/// reach a node at a level before its lists below are written), in batches of at most a
/// quarter of the graph (so early items are not inserted blind to each other), and after an
/// add of at least 1/64 of the index items left with no level-0 in-link are linked back from
/// their nearest out-neighbour (adopt_orphans); with one thread
/// (OMP_NUM_THREADS=1 or no -fopenmp) the graph is a deterministic function of the seed and the
/// sequence of calls.
///
/// Storage (codecs.hpp; FAISS's IndexHNSWSQ): Storage::float32 keeps each vector as T in its
/// node block. Storage::float16, bfloat16 and int8 keep the codec's code there instead
/// (Codec::code_size() bytes: 2·dim, 2·dim, dim + dim/8) plus one T, the squared norm of the
/// decoded row: a node block is the level-0 links rounded up to whole 64-byte lines, then the
/// norm and the code, rounded up to whole lines (dim = 128, M = 16: 704 bytes at float32, 512
/// at float16 / bfloat16, 384 at int8).
/// int8 is trained on the rows of the first add to an empty index (normalized for cosine), or
/// by `train`. The traversal (build and search) scores in the codec's code space (int8 may
/// store rows rotated): a query or an inserted row is normalized for cosine and mapped there
/// once (Codec::to_code_space) and scored on the codes (Codec::dot_codes: inner products;
/// squared L2 as ‖q‖² + ‖x̂‖² − 2 q·x̂ with the stored norm; decoded rows when the codec does
/// not score codes, as for HnswIndex<double>); the selection heuristic compares decoded rows.
/// The final candidates (the ef the beam found, or the exact scan's k) are rescored exactly
/// against their decoded rows (products and sums in double, as the flat indexes' rescoring), so
/// returned scores are exact scores of the decoded rows, ties to the smaller id. Recall against
/// the float32 vectors then differs from float32 storage only by the codes' rounding (see the
/// tests for measured figures).

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <mutex>
#include <new>
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
#include "mmrag/detail/hnsw_kernels.hpp"
#include "mmrag/detail/persist.hpp"
#include "mmrag/detail/simd.hpp"
#include "mmrag/search_params.hpp"
#include "mmrag/similarity.hpp"

namespace mmrag {

/// How an HnswIndex builds its graph (hnswlib's names and defaults).
struct HnswParams {
  /// Links per node on levels >= 1; level 0 keeps up to 2·M (the paper's M_max0). Must be >= 2.
  /// 16 is hnswlib's default; 32-48 for high-dimensional data needing recall > 0.99.
  std::size_t M = 16;
  /// Beam width while inserting (hnswlib's default 200). Must be >= 1; larger builds a better
  /// graph more slowly.
  std::size_t ef_construction = 200;
  /// Seeds the level of each inserted node (the n-th insertion of an index draws from
  /// (seed, n), so the levels do not depend on threads).
  std::uint64_t seed = 42;
  /// Called as progress(done, total) during `add` after every 1024 insertions and at the end,
  /// from the calling thread. Optional. Must not throw (it is called from a noexcept context).
  std::function<void(std::size_t done, std::size_t total)> progress = {};
};

/// Per-call HNSW search parameters: nothing is stored in the index.
struct HnswSearchParams {
  /// Beam width at level 0 (hnswlib's `ef`); the search uses max(ef_search, k). Must be > 0.
  std::size_t ef_search = 64;
  /// Restricts results to allowed items (see the exact-scan rule in the file comment).
  Filter filter = {};
};

template <class T>
class HnswIndex {
 public:
  using Scalar = T;

  /// An empty graph of `dim`-dimensional vectors stored as `storage` (see the file comment).
  /// Throws std::invalid_argument when dim = 0, M < 2, M > 65536, ef_construction = 0, or for
  /// an unknown metric or storage.
  HnswIndex(std::size_t dim, Metric metric, HnswParams params = {},
            Storage storage = Storage::float32)
      : dim_(dim), metric_(metric), params_(std::move(params)), codec_(dim, storage) {
    constexpr const char* where = "mmrag::HnswIndex";
    if (dim == 0) throw std::invalid_argument(std::string(where) + ": dim must be > 0, got 0");
    if (dim > (std::size_t(1) << 28))
      throw std::invalid_argument(std::string(where) + ": dim must be <= 2^28, got " +
                                  std::to_string(dim));
    if (params_.M < 2 || params_.M > 65536)
      throw std::invalid_argument(std::string(where) + ": M must be in [2, 65536], got " +
                                  std::to_string(params_.M));
    if (params_.ef_construction == 0)
      throw std::invalid_argument(std::string(where) + ": ef_construction must be > 0, got 0");
    if (metric != Metric::l2 && metric != Metric::inner_product && metric != Metric::cosine)
      throw std::invalid_argument(std::string(where) + ": unknown metric");
    layout();
  }

  /// Inserts the rows of `vectors` (n × dim). `ids`: one per row, each >= 0, or empty for
  /// ids continuing after the largest id ever added (0, 1, ... in a new index; as the vector
  /// store's IdSequence, so a removed id is never handed out again). `modalities`: one tag (<= 63)
  /// per row, or empty for 0. Slots freed by `remove_ids` are reused first. Runs in parallel
  /// with OpenMP; calls `params.progress`. int8 storage not yet trained is trained on these
  /// rows (normalized for cosine) first. Throws std::invalid_argument on a wrong column count,
  /// NaN/Inf, a negative id, or ids / modalities whose count differs from the rows; the index is
  /// then unchanged (strong guarantee: every allocation happens before the first change).
  void add(const Eigen::Ref<const Matrix<T>>& vectors, std::span<const Index> ids = {},
           std::span<const Modality> modalities = {}) {
    constexpr const char* where = "mmrag::HnswIndex::add";
    detail::check_add<T>(where, vectors, dim_, ids, modalities);  // ids >= 0 included
    const auto n = static_cast<std::size_t>(vectors.rows());
    if (n == 0) return;
    if (ids.empty() && max_id_ > std::numeric_limits<Index>::max() - static_cast<Index>(n))
      throw std::invalid_argument(std::string(where) + ": default ids would overflow int64");
    const std::size_t new_slots = n > free_.size() ? n - free_.size() : 0;
    if (slots() + new_slots > kMaxSlots)
      throw std::invalid_argument(std::string(where) + ": an index holds at most 2^31 - 2 items");

    // Slots (free ones first, smallest first), levels and upper-level space, all before any
    // change; after the reservations below nothing throws.
    std::vector<std::uint32_t> slot(n);
    std::vector<std::uint8_t> level(n);
    std::vector<std::uint32_t> free_sorted(free_);
    std::sort(free_sorted.begin(), free_sorted.end(), std::greater<>());
    std::size_t pool_extra = 0;
    for (std::size_t r = 0; r < n; ++r) {
      level[r] = sample_level(inserted_ + r);
      if (!free_sorted.empty()) {
        slot[r] = free_sorted.back();
        free_sorted.pop_back();
        if (level[r] > level_[slot[r]]) pool_extra += level[r] * upper_stride();
      } else {
        slot[r] = static_cast<std::uint32_t>(slots() + (r - (n - new_slots)));
        pool_extra += level[r] * upper_stride();
      }
    }
    if (upper_pool_.size() + pool_extra > std::numeric_limits<std::uint32_t>::max())
      throw std::invalid_argument(std::string(where) + ": the upper-level link pool is full");
    const std::size_t total = slots() + new_slots;
    grow(blocks_, total * lines_per_node_);
    grow(ids_, total);
    grow(modality_, total);
    grow(level_, total);
    grow(upper_off_, total);
    grow(upper_pool_, upper_pool_.size() + pool_extra);
    std::vector<std::atomic<std::uint8_t>> locks(total);
    // Compressed storage: the codec (trained aside on a first add), and every row's code, the
    // squared norm of its decoded row and the row the insertion searches with (normalized for
    // cosine, in code space), all computed before the commit.
    std::optional<Codec<T>> trained;
    if (!codec_.is_trained()) train_codec(trained.emplace(codec_), vectors);
    Encoded encoded;
    if (!codec_.is_identity()) encoded = encode_rows(trained ? *trained : codec_, vectors);

    // ---- no throw below ----
    blocks_.resize(total * lines_per_node_);
    ids_.resize(total, -1);
    modality_.resize(total, 0);
    level_.resize(total, 0);
    upper_off_.resize(total, 0);
    free_.assign(free_sorted.begin(), free_sorted.end());  // still descending: back() smallest
    if (trained) codec_ = std::move(*trained);
    const Index first_id = max_id_ + 1;
    const std::size_t cs = codec_.code_size();
    for (std::size_t r = 0; r < n; ++r) {
      const std::uint32_t s = slot[r];
      if (codec_.is_identity()) {
        T* v = vec(s);
        const T* src = vectors.row(static_cast<Eigen::Index>(r)).data();
        std::copy(src, src + dim_, v);
        if (metric_ == Metric::cosine) normalize(v);
      } else {
        std::memcpy(code(s), encoded.codes.data() + r * cs, cs);
        set_sq_norm(s, encoded.sq_norms[r]);
      }
      std::uint32_t* l0 = links(s, 0);
      l0[0] = 0;
      if (level[r] > level_[s]) {  // a new slot (capacity 0) or a free slot too small
        upper_off_[s] = static_cast<std::uint32_t>(upper_pool_.size());
        upper_pool_.resize(upper_pool_.size() + level[r] * upper_stride(), 0);
      }
      for (std::size_t l = 1; l <= level[r]; ++l) links(s, l)[0] = 0;
      level_[s] = level[r];
      const Index id = ids.empty() ? first_id + static_cast<Index>(r) : ids[r];
      ids_[s] = id;
      max_id_ = std::max(max_id_, id);
      modality_[s] = modalities.empty() ? Modality(0) : modalities[r];
      ++per_modality_[modality_[s]];
    }
    inserted_ += n;
    live_ += n;
    build(slot, locks, encoded.probes.empty() ? nullptr : encoded.probes.data());
    // Items the build left with no way in (heuristic pruning: about 1 in 1 000 at M = 8, none
    // measured at M = 16) are linked back. A whole pass over the links, so only after adds of
    // at least 1/64 of the index (amortized: 64·2M link reads per inserted item).
    if (n * 64 >= live_) link_back_orphans();
  }

  /// Trains the storage's codec on `sample` (n × dim; only int8 storage needs it: its
  /// per-dimension ranges, refined coordinates and rotation, learned from the rows normalized
  /// for cosine). Without it, the first `add` trains on its own rows; values added later
  /// outside the trained ranges are clamped. Throws std::invalid_argument on a wrong column
  /// count, NaN/Inf or an empty sample, or when the index holds items; the index is then
  /// unchanged.
  void train(const Eigen::Ref<const Matrix<T>>& sample) {
    constexpr const char* where = "mmrag::HnswIndex::train";
    detail::check_dim(where, "sample", sample.cols(), dim_);
    detail::check_finite_rows(where, "sample", sample);
    if (live_ > 0)
      throw std::invalid_argument(std::string(where) + ": the index already holds " +
                                  std::to_string(live_) + " items");
    if (sample.rows() == 0) throw std::invalid_argument(std::string(where) + ": sample is empty");
    Codec<T> codec = codec_;
    train_codec(codec, sample);
    codec_ = std::move(codec);
  }

  /// True when items can be added without training (always, except int8 storage before its
  /// first `train` or `add`).
  [[nodiscard]] bool is_trained() const noexcept { return codec_.is_trained(); }

  /// The k best stored items for each query. queries: nq × dim. Returns nq × k ids and scores,
  /// best first (ties to the smaller id), padded with id -1 and score -inf (similarity) or +inf
  /// (l2) when fewer than k allowed items exist. Approximate (see the file comment) except on
  /// the exact-scan path. Batches run their queries in parallel with OpenMP. Throws
  /// std::invalid_argument on a wrong column count, k = 0, ef_search = 0 or NaN/Inf queries.
  /// Thread-safe (const).
  [[nodiscard]] Hits<T> search(const Eigen::Ref<const Matrix<T>>& queries, std::size_t k,
                               const HnswSearchParams& params = {}) const {
    constexpr const char* where = "mmrag::HnswIndex::search";
    detail::check_dim(where, "queries", queries.cols(), dim_);
    detail::check_k<T>(where, k, queries.rows());
    if (params.ef_search == 0)
      throw std::invalid_argument(std::string(where) + ": ef_search must be > 0, got 0");
    detail::check_finite_rows(where, "queries", queries);
    if (codec_.rotated()) {  // queries whose rotation leaves float range: an error, not garbage
      Matrix<T> q = queries;
      if (metric_ == Metric::cosine) normalize_rows(q);
      codec_.check_code_space(where, "queries", q.data(), static_cast<std::size_t>(q.rows()));
    }
    const auto nq = queries.rows();
    Hits<T> hits;
    try {
      hits.ids.setConstant(nq, static_cast<Eigen::Index>(k), Index(-1));
      hits.scores.setConstant(nq, static_cast<Eigen::Index>(k),
                              higher_is_better(metric_) ? -std::numeric_limits<T>::infinity()
                                                        : std::numeric_limits<T>::infinity());
    } catch (const std::bad_alloc&) {
      throw std::invalid_argument(std::string(where) + ": k = " + std::to_string(k) +
                                  " is too large: the result cannot be allocated");
    }
    if (live_ == 0 || nq == 0) return hits;
    const bool parallel = static_cast<long long>(nq) * static_cast<long long>(dim_) *
                              static_cast<long long>(params.ef_search) >
                          detail::kParallelWork;
    detail::parallel_for<Eigen::Index>(0, nq, parallel, 1, [&](Eigen::Index q) {
      search_one(queries.row(q).data(), k, params, hits.ids.row(q).data(),
                 hits.scores.row(q).data());
    });
    return hits;
  }

  /// Removes every stored item whose id is in `ids` (all copies of a repeated id) and repairs
  /// the links that pointed to them (see the file comment), then links back any survivor left
  /// with no level-0 in-link (adopt_orphans); returns how many were removed.
  /// Strong guarantee: the repaired link lists are computed aside and committed only when all
  /// are ready. Cost: about (removed · 2M) link-list repairs, each a heuristic selection over
  /// at most 4·M candidates; runs in parallel with OpenMP.
  std::size_t remove_ids(std::span<const Index> ids) {
    if (ids.empty() || live_ == 0) return 0;
    std::vector<Index> sorted(ids.begin(), ids.end());
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::uint8_t> doomed(slots(), 0);
    std::size_t removed = 0;
    for (std::size_t s = 0; s < slots(); ++s)
      if (ids_[s] >= 0 && std::binary_search(sorted.begin(), sorted.end(), ids_[s])) {
        doomed[s] = 1;
        ++removed;
      }
    if (removed == 0) return 0;

    // Every (live node, level) with a link to a doomed node gets a new list, built aside.
    std::vector<LinkPatch> patches;
    for (std::size_t s = 0; s < slots(); ++s) {
      if (ids_[s] < 0 || doomed[s]) continue;
      for (std::size_t l = 0; l <= level_[s]; ++l) {
        const std::uint32_t* ls = links(static_cast<std::uint32_t>(s), l);
        for (std::uint32_t j = 0; j < ls[0]; ++j)
          if (doomed[ls[1 + j]]) {
            patches.push_back({static_cast<std::uint32_t>(s), static_cast<std::uint32_t>(l), {}});
            break;
          }
      }
    }
    for (auto& p : patches) p.links.reserve(max_links(p.level));
    std::vector<std::uint32_t> free_next(free_);
    free_next.reserve(free_.size() + removed);
    const auto np = static_cast<long long>(patches.size());
    detail::parallel_for<long long>(0, np, np > 64, 16, [&](long long i) {
      repair(patches[static_cast<std::size_t>(i)], doomed);
    });
    adopt_orphans(patches, doomed.data());

    // ---- commit (no throw below) ----
    apply(patches);
    for (std::size_t s = 0; s < slots(); ++s)
      if (doomed[s]) {
        --per_modality_[modality_[s]];
        ids_[s] = kFreeId;
        for (std::size_t l = 0; l <= level_[s]; ++l) links(static_cast<std::uint32_t>(s), l)[0] = 0;
        free_next.push_back(static_cast<std::uint32_t>(s));
      }
    std::sort(free_next.begin(), free_next.end(), std::greater<>());
    free_.swap(free_next);
    live_ -= removed;
    entry_ = kNone;
    max_level_ = 0;
    for (std::size_t s = 0; s < slots(); ++s) {
      if (ids_[s] < 0) continue;
      if (entry_ == kNone || level_[s] > max_level_) {
        entry_ = static_cast<std::uint32_t>(s);
        max_level_ = level_[s];
      }
    }
    return removed;
  }

  /// Number of stored (not removed) items.
  [[nodiscard]] std::size_t size() const noexcept { return live_; }
  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  [[nodiscard]] Metric metric() const noexcept { return metric_; }
  [[nodiscard]] Storage storage() const noexcept { return codec_.storage(); }
  [[nodiscard]] const HnswParams& params() const noexcept { return params_; }
  /// The highest level of the graph (0 when empty).
  [[nodiscard]] std::size_t max_level() const noexcept { return max_level_; }

  /// Bytes the index holds: node blocks (vectors or codes and norms, and level-0 links), ids,
  /// modality tags, levels, upper-level links, the free list (allocated capacity) and the codec's
  /// parameters. The per-thread search scratch (2 bytes per node per searching thread) is not
  /// counted.
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return detail::HugePageAllocator<CacheLine>::reserved_bytes(blocks_.capacity()) +
           codec_.memory_bytes() + ids_.capacity() * sizeof(Index) + modality_.capacity() +
           level_.capacity() + upper_off_.capacity() * sizeof(std::uint32_t) +
           upper_pool_.capacity() * sizeof(std::uint32_t) +
           free_.capacity() * sizeof(std::uint32_t) + sizeof(*this);
  }

  // ---- persistence --------------------------------------------------------------------------
  //
  // File format, version 2, little-endian (removed slots are compacted away on write):
  //   "MMRAGHNS"  u32 version  u32 scalar (1 = float32, 2 = float64)  u32 metric  u32 storage
  //   u64 dim  u64 M  u64 ef_construction  u64 seed  u64 insertions so far
  //   i64 largest id ever added (-1 for none)
  //   u64 count  u64 entry (node number; 2^64-1 when count = 0)  u64 max level
  //   the codec's parameters (Codec::write: u64 flag 0, or 2 and an int8 code; 8-byte padded)
  //   count × i64 ids, count × u8 modality, count × u8 level,
  //   count × code_size code bytes (float32 storage: dim scalars; norms are recomputed on load)
  //   level 0:      count × (u32 n, 2M × u32 links)   (n <= 2M, each link < count)
  //   levels >= 1:  for each node, for each of its levels: (u32 n, M × u32 links)
  //   u64 checksum: FNV-1a (64-bit words) over every byte before it.
  // Version 1 (float32 storage only) had no codec parameters; it still loads.

  /// Writes the index to `path`. Throws std::runtime_error when the file cannot be written.
  void save(const std::filesystem::path& path) const { detail::write_all(path, serialize()); }

  /// Reads an index written by `save` (the progress callback is not stored). Throws
  /// std::runtime_error naming the file and offset on a missing, truncated, corrupt or
  /// mismatched file; never reads out of bounds.
  [[nodiscard]] static HnswIndex load(const std::filesystem::path& path) {
    return parse(detail::read_all(path), path);
  }

  /// The bytes `save` writes.
  [[nodiscard]] std::vector<char> serialize() const {
    std::vector<char> out;
    std::vector<std::uint32_t> number(slots(), kNone);  // slot -> node number in the file
    std::uint32_t count = 0;
    for (std::size_t s = 0; s < slots(); ++s)
      if (ids_[s] >= 0) number[s] = count++;
    detail::write_header<T>(out, kMagic, kVersion, metric_, static_cast<std::uint32_t>(storage()));
    for (std::uint64_t v :
         {std::uint64_t(dim_), std::uint64_t(params_.M), std::uint64_t(params_.ef_construction),
          params_.seed, inserted_, static_cast<std::uint64_t>(max_id_), std::uint64_t(count),
          count ? std::uint64_t(number[entry_]) : ~std::uint64_t(0), std::uint64_t(max_level_)})
      detail::append(out, v);
    codec_.write(out);
    auto each_live = [&](auto&& f) {
      for (std::size_t s = 0; s < slots(); ++s)
        if (ids_[s] >= 0) f(static_cast<std::uint32_t>(s));
    };
    each_live([&](std::uint32_t s) { detail::append(out, ids_[s]); });
    each_live([&](std::uint32_t s) { detail::append(out, modality_[s]); });
    each_live([&](std::uint32_t s) { detail::append(out, level_[s]); });
    each_live([&](std::uint32_t s) { detail::append_raw(out, code(s), codec_.code_size()); });
    auto write_links = [&](std::uint32_t s, std::size_t l) {
      const std::uint32_t* ls = links(s, l);
      std::vector<std::uint32_t> buf(1 + max_links(l), 0);
      buf[0] = ls[0];
      for (std::uint32_t j = 0; j < ls[0]; ++j) buf[1 + j] = number[ls[1 + j]];
      detail::append_raw(out, buf.data(), buf.size() * sizeof(std::uint32_t));
    };
    each_live([&](std::uint32_t s) { write_links(s, 0); });
    each_live([&](std::uint32_t s) {
      for (std::size_t l = 1; l <= level_[s]; ++l) write_links(s, l);
    });
    detail::write_checksum(out);
    return out;
  }

  /// Rebuilds an index from `serialize` / `save` bytes with every check `load` makes; `path`
  /// labels the errors.
  [[nodiscard]] static HnswIndex parse(const std::vector<char>& bytes,
                                       const std::filesystem::path& path = "<memory>") {
    detail::Cursor c(bytes, path);
    const detail::FileHeader header =
        detail::read_header<T>(c, bytes, kMagic, kVersion, "HnswIndex");
    const Metric metric = header.metric;
    const Storage storage = detail::storage_from_code(header.storage, path);
    if (header.version < 2 && storage != Storage::float32)
      detail::fail(path, 20, std::string("storage ") + to_string(storage) + " in a version-1 file");
    const std::uint64_t at = c.offset();
    const auto dim = c.get<std::uint64_t>("dim");
    const auto M = c.get<std::uint64_t>("M");
    const auto efc = c.get<std::uint64_t>("ef_construction");
    const auto seed = c.get<std::uint64_t>("seed");
    const auto inserted = c.get<std::uint64_t>("insertions");
    const auto max_id = c.get<Index>("largest id");
    const auto count = c.get<std::uint64_t>("count");
    const auto entry = c.get<std::uint64_t>("entry");
    const auto max_level = c.get<std::uint64_t>("max level");
    if (dim == 0 || dim > (std::uint64_t(1) << 28))
      detail::fail(path, at, "dim " + std::to_string(dim) + " out of range");
    if (M < 2 || M > 65536) detail::fail(path, at + 8, "M " + std::to_string(M) + " out of range");
    if (efc == 0 || efc > (std::uint64_t(1) << 32))
      detail::fail(path, at + 16, "ef_construction out of range");
    if (count == 0 ? (entry != ~std::uint64_t(0) || max_level != 0)
                   : (entry >= count || max_level > kMaxLevel))
      detail::fail(path, at + 56, "bad entry point or max level");
    if (max_id < -1) detail::fail(path, at + 40, "bad largest id");

    HnswIndex index(static_cast<std::size_t>(dim), metric,
                    HnswParams{.M = static_cast<std::size_t>(M),
                               .ef_construction = static_cast<std::size_t>(efc),
                               .seed = seed},
                    storage);
    if (header.version >= 2) {
      const std::uint64_t codec_at = c.offset();
      const std::size_t expect = index.codec_.code_size();
      index.codec_.read(c);
      // HnswIndex writes only codes with refinement bytes (flag 2 with dim / 8 of them), and
      // int8 codes need their parameters.
      if (index.codec_.code_size() != expect)
        detail::fail(path, codec_at, "int8 code without the refinement bytes this index writes");
      if (!index.codec_.is_trained() && count > 0)
        detail::fail(path, codec_at, "int8 codes without the codec's parameters");
      index.layout();  // node blocks sized by the codec as read
    }
    const std::size_t cs = index.codec_.code_size();
    // Each node takes at least its id, tag, level, code and level-0 list: bounds count.
    const std::uint64_t node_bytes = 8 + 1 + 1 + cs + 4 * (1 + 2 * M);
    if (count > c.left() / node_bytes || count >= kMaxSlots || inserted < count)
      detail::fail(path, at + 48, "count " + std::to_string(count) + " does not fit the file");
    const auto n = static_cast<std::size_t>(count);
    index.inserted_ = inserted;
    index.ids_.resize(n);
    index.modality_.resize(n);
    index.level_.resize(n);
    index.upper_off_.resize(n, 0);
    index.blocks_.resize(n * index.lines_per_node_);
    c.copy_to(index.ids_.data(), 8 * count, "ids");
    for (Index id : index.ids_)
      if (id < 0 || id > max_id)
        detail::fail(path, c.offset(), "id " + std::to_string(id) + " out of range");
    const std::uint64_t mod_at = c.offset();
    c.copy_to(index.modality_.data(), count, "modality tags");
    for (Modality m : index.modality_)
      if (m > max_modality)
        detail::fail(path, mod_at, "modality tag " + std::to_string(m) + " > 63");
    const std::uint64_t level_at = c.offset();
    c.copy_to(index.level_.data(), count, "levels");
    std::uint64_t upper_total = 0, top = 0;
    for (std::uint8_t l : index.level_) {
      if (l > max_level) detail::fail(path, level_at, "a node level exceeds the max level");
      upper_total += l;
      top = std::max<std::uint64_t>(top, l);
    }
    if (n > 0 && (top != max_level || index.level_[entry] != max_level))
      detail::fail(path, level_at, "the entry point is not on the top level");
    const std::uint64_t vec_at = c.offset();
    std::vector<T> buf;
    for (std::size_t s = 0; s < n; ++s) {
      const auto v = static_cast<std::uint32_t>(s);
      c.copy_to(index.code(v), cs, "vectors");
      const T* row = index.row_of(v, buf);  // the row as searches see it (code space)
      for (std::size_t j = 0; j < dim; ++j)
        if (!std::isfinite(row[j])) detail::fail(path, vec_at, "vectors hold NaN or Inf");
      if (!index.codec_.is_identity())
        index.set_sq_norm(v, index.decoded_sq_norm(index.codec_, index.code(v), buf));
    }
    auto read_links = [&](std::uint32_t* ls, std::size_t cap) {
      const std::uint64_t here = c.offset();
      c.copy_to(ls, 4 * (1 + cap), "links");
      if (ls[0] > cap)
        detail::fail(path, here, "link count " + std::to_string(ls[0]) + " too large");
      for (std::uint32_t j = 0; j < ls[0]; ++j)
        if (ls[1 + j] >= count) detail::fail(path, here, "link to a node that does not exist");
    };
    for (std::size_t s = 0; s < n; ++s)
      read_links(index.links(static_cast<std::uint32_t>(s), 0), 2 * M);
    const std::uint64_t ustride = 1 + M;
    if (upper_total > c.left() / 4 / ustride)
      detail::fail(path, c.offset(), "upper-level links do not fit the file");
    index.upper_pool_.resize(static_cast<std::size_t>(upper_total * ustride));
    std::size_t off = 0;
    for (std::size_t s = 0; s < n; ++s) {
      index.upper_off_[s] = static_cast<std::uint32_t>(off);
      off += index.level_[s] * ustride;
      for (std::size_t l = 1; l <= index.level_[s]; ++l)
        read_links(index.links(static_cast<std::uint32_t>(s), l), M);
    }
    // Links at level l must point to nodes that have level l.
    for (std::size_t s = 0; s < n; ++s)
      for (std::size_t l = 1; l <= index.level_[s]; ++l) {
        const std::uint32_t* ls = index.links(static_cast<std::uint32_t>(s), l);
        for (std::uint32_t j = 0; j < ls[0]; ++j)
          if (index.level_[ls[1 + j]] < l)
            detail::fail(path, c.offset(), "an upper-level link to a node below that level");
      }
    if (c.left() != 8) detail::fail(path, c.offset(), "unexpected bytes before the checksum");
    index.live_ = n;
    index.entry_ = n > 0 ? static_cast<std::uint32_t>(entry) : kNone;
    index.max_level_ = static_cast<std::size_t>(max_level);
    index.max_id_ = max_id;
    for (std::size_t s = 0; s < n; ++s) ++index.per_modality_[index.modality_[s]];
    return index;
  }

 private:
  struct alignas(64) CacheLine {
    unsigned char bytes[64];
  };
  static constexpr char kMagic[9] = "MMRAGHNS";
  static constexpr std::uint32_t kVersion = 2;  // 2: codec parameters, codes
  static constexpr std::uint32_t kNone = ~std::uint32_t(0);
  static constexpr Index kFreeId = -1;
  static constexpr std::size_t kMaxSlots = (std::size_t(1) << 31) - 2;
  static constexpr std::size_t kMaxLevel = 31;
  static constexpr std::uint32_t kChecked = std::uint32_t(1) << 31;
  /// Insertions between progress reports (the most a parallel batch inserts).
  static constexpr std::size_t kProgressChunk = 1024;
  /// Vector cache lines (after the links) of each of the next four neighbours prefetched while
  /// the current four are scored; the hardware prefetcher streams the rest.
  static constexpr std::size_t kPrefetchLines = 16;

  /// The per-thread scratch of a search: visited set, beam, neighbour buffers, query copy.
  struct Scratch {
    detail::VisitedSet visited;
    std::vector<T> beam_d;
    std::vector<std::uint32_t> beam_s;
    std::vector<std::uint32_t> fresh;
    std::vector<std::uint32_t> nbr;
    std::vector<T> fresh_d;
    std::vector<T> query;
    std::vector<T> query_code;                       // compressed storage: query in code space
    typename Codec<T>::ScanQuery prepared;           // compressed storage: the query's scan state
    std::vector<T> row_q, row_a, row_b;              // decoded rows (compressed storage)
    std::vector<std::pair<T, std::uint32_t>> found;  // final candidates: (distance, slot)
    std::vector<std::pair<double, Index>> ranked;    // their exact keys (compressed storage)
  };
  static Scratch& scratch() {
    thread_local Scratch s;
    return s;
  }

  // ---- layout -------------------------------------------------------------------------------

  void layout() {
    const std::size_t line = sizeof(CacheLine);
    links_bytes_ = (4 * (1 + 2 * params_.M) + line - 1) / line * line;
    norm_bytes_ = codec_.is_identity() ? 0 : sizeof(T);
    const std::size_t bytes = links_bytes_ + norm_bytes_ + codec_.code_size();
    lines_per_node_ = (bytes + sizeof(CacheLine) - 1) / sizeof(CacheLine);
  }
  [[nodiscard]] std::size_t slots() const noexcept { return ids_.size(); }
  [[nodiscard]] std::size_t upper_stride() const noexcept { return 1 + params_.M; }
  [[nodiscard]] std::size_t max_links(std::size_t level) const noexcept {
    return level == 0 ? 2 * params_.M : params_.M;
  }
  [[nodiscard]] unsigned char* block(std::uint32_t s) noexcept {
    return reinterpret_cast<unsigned char*>(blocks_.data()) +
           std::size_t(s) * lines_per_node_ * sizeof(CacheLine);
  }
  [[nodiscard]] const unsigned char* block(std::uint32_t s) const noexcept {
    return reinterpret_cast<const unsigned char*>(blocks_.data()) +
           std::size_t(s) * lines_per_node_ * sizeof(CacheLine);
  }
  /// Node s's vector (float32 storage only: the code is the vector).
  [[nodiscard]] T* vec(std::uint32_t s) noexcept {
    return reinterpret_cast<T*>(block(s) + links_bytes_);
  }
  [[nodiscard]] const T* vec(std::uint32_t s) const noexcept {
    return reinterpret_cast<const T*>(block(s) + links_bytes_);
  }
  /// Node s's code (codec_.code_size() bytes).
  [[nodiscard]] std::uint8_t* code(std::uint32_t s) noexcept {
    return block(s) + links_bytes_ + norm_bytes_;
  }
  [[nodiscard]] const std::uint8_t* code(std::uint32_t s) const noexcept {
    return block(s) + links_bytes_ + norm_bytes_;
  }
  /// Compressed storage: the squared norm of node s's decoded row (code space).
  [[nodiscard]] T sq_norm(std::uint32_t s) const noexcept {
    return *reinterpret_cast<const T*>(block(s) + links_bytes_);
  }
  void set_sq_norm(std::uint32_t s, T v) noexcept {
    *reinterpret_cast<T*>(block(s) + links_bytes_) = v;
  }
  /// Node s's list at `level`: [count, link...].
  [[nodiscard]] std::uint32_t* links(std::uint32_t s, std::size_t level) noexcept {
    if (level == 0) return reinterpret_cast<std::uint32_t*>(block(s));
    return upper_pool_.data() + upper_off_[s] + (level - 1) * upper_stride();
  }
  [[nodiscard]] const std::uint32_t* links(std::uint32_t s, std::size_t level) const noexcept {
    if (level == 0) return reinterpret_cast<const std::uint32_t*>(block(s));
    return upper_pool_.data() + upper_off_[s] + (level - 1) * upper_stride();
  }
  /// Capacity growth for add: exact for the first fill, then at least 1.5× (amortized O(1)).
  template <class V>
  static void grow(V& v, std::size_t need) {
    if (need > v.capacity()) v.reserve(std::max(need, v.capacity() + v.capacity() / 2));
  }

  std::uint8_t sample_level(std::uint64_t n) const noexcept {
    // splitmix64 of (seed, n): a uniform draw that does not depend on threads or call order.
    std::uint64_t z = params_.seed + 0x9E3779B97F4A7C15ULL * (n + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    const double u = (static_cast<double>(z >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double mult = 1.0 / std::log(static_cast<double>(params_.M));
    const double l = std::floor(-std::log(u) * mult);
    return static_cast<std::uint8_t>(std::min<double>(l, kMaxLevel));
  }

  // The flat indexes' normalization (similarity.hpp): rows of tiny or huge norm are scaled by
  // their largest magnitude first, so their squared norm neither underflows nor overflows.
  void normalize(T* v) const noexcept { detail::normalize_row(v, dim_); }

  // ---- codes --------------------------------------------------------------------------------

  /// The codec learns from the rows as they will be stored (normalized for cosine), as
  /// FlatIndex's does.
  void train_codec(Codec<T>& codec, const Eigen::Ref<const Matrix<T>>& rows) const {
    Matrix<T> prepared = rows;
    if (metric_ == Metric::cosine) normalize_rows(prepared);
    codec.train(prepared.data(), static_cast<std::size_t>(prepared.rows()));
  }

  /// What `add` stores for compressed storage, computed before anything changes.
  struct Encoded {
    std::vector<std::uint8_t> codes;  ///< n × code_size
    std::vector<T> sq_norms;          ///< n: squared norms of the decoded rows (code space)
    std::vector<T> probes;            ///< n × dim: the rows normalized for cosine, in code space
  };
  /// Encodes the rows of `vectors` with `codec` (trained).
  Encoded encode_rows(const Codec<T>& codec, const Eigen::Ref<const Matrix<T>>& vectors) const {
    const auto n = static_cast<std::size_t>(vectors.rows());
    const std::size_t cs = codec.code_size();
    Encoded e;
    e.codes.resize(n * cs);
    e.sq_norms.resize(n);
    e.probes.resize(n * dim_);
    // One row at a time, as queries are mapped and as the flat indexes encode (detail::RowEncoder):
    // a rotation of a block of rows may round differently from that of one row, and a row's
    // code must not depend on how the adds were split.
    std::vector<T> row(dim_), buf;
    for (std::size_t r = 0; r < n; ++r) {
      const T* src = vectors.row(static_cast<Eigen::Index>(r)).data();
      std::copy(src, src + dim_, row.begin());
      if (metric_ == Metric::cosine) normalize(row.data());
      std::uint8_t* c = e.codes.data() + r * cs;
      codec.encode(row.data(), 1, c);
      e.sq_norms[r] = decoded_sq_norm(codec, c, buf);
      T* probe = e.probes.data() + r * dim_;
      codec.to_code_space(row.data(), 1, probe);
      if (!std::all_of(probe, probe + dim_, [](T v) { return std::isfinite(v); }))
        codec.check_code_space("mmrag::HnswIndex::add", "vectors", row.data(), 1, r);  // throws
    }
    return e;
  }
  /// The squared norm of a code's decoded row (code space), as the flat indexes' stores keep
  /// it (detail::RowEncoder): what l2 on codes and files use.
  T decoded_sq_norm(const Codec<T>& codec, const std::uint8_t* c, std::vector<T>& buf) const {
    const T* x = codec.rows(c, 1, buf);
    return detail::dot_kernel<T>(x, x, dim_);
  }

  // ---- distances ----------------------------------------------------------------------------
  //
  // Two kinds. A probe (a query, or a row being inserted, normalized for cosine and in the
  // codec's code space) against a stored node: `dist`, on the codes when the codec scores
  // them. A stored node against a stored node (the selection heuristic, removal repairs,
  // orphans): `row_dist` on rows as stored (`row_of`: the vector itself for float32, else the
  // decoded code-space row).

  /// What scoring one probe needs. Float32 storage uses only q.
  struct Probe {
    const T* q = nullptr;  ///< dim values, normalized for cosine, in code space
    T sq = 0;              ///< ‖q‖² (compressed storage, l2)
    const typename Codec<T>::ScanQuery* prepared = nullptr;  ///< null: score decoded rows
  };

  /// The probe for q (dim values, normalized for cosine, in code space); `prepared` is the
  /// scan state it points to (filled here for compressed storage).
  Probe make_probe(const T* q, typename Codec<T>::ScanQuery& prepared) const {
    Probe p{q, T(0), nullptr};
    if (codec_.is_identity()) return p;
    if (metric_ == Metric::l2) p.sq = detail::dot_kernel<T>(q, q, dim_);
    codec_.prepare_scan(q, prepared);
    if (prepared.on_codes) p.prepared = &prepared;
    return p;
  }

  template <bool kL2>
  [[nodiscard]] T dist(const Probe& p, std::uint32_t s) const {
    if (codec_.is_identity()) return detail::hnsw_dist<T, kL2>(p.q, vec(s), dim_);
    return code_dist<kL2>(p, s);
  }
  /// Compressed storage: the traversal distance of probe p to node s. On the codes: −q·x̂, or
  /// ‖q‖² + ‖x̂‖² − 2 q·x̂ for l2; on the decoded row when the codec cannot score this probe on
  /// codes (or the expansion overflowed to NaN).
  template <bool kL2>
  [[nodiscard]] T code_dist(const Probe& p, std::uint32_t s) const {
    if (p.prepared) {
      T ip;
      codec_.dot_codes(p.q, *p.prepared, code(s), 1, nullptr, &ip);
      const T d = kL2 ? p.sq + sq_norm(s) - 2 * ip : -ip;
      if (!std::isnan(d)) return d;
    }
    std::vector<T>& buf = scratch().row_q;
    return detail::hnsw_dist<T, kL2>(p.q, codec_.rows(code(s), 1, buf), dim_);
  }
  [[nodiscard]] T dist_any(const Probe& p, std::uint32_t s) const {
    return metric_ == Metric::l2 ? dist<true>(p, s) : dist<false>(p, s);
  }
  /// Node s's row as stored: its vector (float32), else its code decoded into `buf` (code space).
  [[nodiscard]] const T* row_of(std::uint32_t s, std::vector<T>& buf) const {
    return codec_.is_identity() ? vec(s) : codec_.rows(code(s), 1, buf);
  }
  /// The traversal distance between two stored rows.
  [[nodiscard]] T row_dist(const T* a, const T* b) const noexcept {
    return metric_ == Metric::l2 ? detail::hnsw_dist<T, true>(a, b, dim_)
                                 : detail::hnsw_dist<T, false>(a, b, dim_);
  }
  /// The traversal distance from row a (as stored) to node s.
  [[nodiscard]] T row_dist(const T* a, std::uint32_t s) const {
    return row_dist(a, row_of(s, scratch().row_b));
  }
  [[nodiscard]] T score_of(T d) const noexcept { return metric_ == Metric::l2 ? d : -d; }

  /// Prefetches the first lines of node s's block: its links, then the start of its vector.
  void prefetch_vec(std::uint32_t s) const noexcept {
    const unsigned char* p = block(s);
    const std::size_t lines =
        std::min(links_bytes_ / sizeof(CacheLine) + kPrefetchLines, lines_per_node_);
    for (std::size_t i = 0; i < lines; ++i) detail::prefetch(p + i * sizeof(CacheLine));
  }

  /// Scores fresh[0..m) against q into fresh_d, four at a time with the next four prefetched.
  template <bool kL2>
  void score_fresh(const Probe& p, const std::uint32_t* fresh, std::size_t m, T* out) const {
    for (std::size_t i = 0; i < m && i < 4; ++i) prefetch_vec(fresh[i]);
    std::size_t i = 0;
    if (!codec_.is_identity()) {  // codes: one at a time, the next four prefetched
      for (; i < m; ++i) {
        if (i + 4 < m) prefetch_vec(fresh[i + 4]);
        out[i] = code_dist<kL2>(p, fresh[i]);
      }
      return;
    }
    const T* q = p.q;
    for (; i + 4 <= m; i += 4) {
      for (std::size_t j = i + 4; j < std::min(m, i + 8); ++j) prefetch_vec(fresh[j]);
      const T* x[4] = {vec(fresh[i]), vec(fresh[i + 1]), vec(fresh[i + 2]), vec(fresh[i + 3])};
      detail::hnsw_dist4<T, kL2>(q, x, dim_, out + i);
    }
    for (; i < m; ++i) out[i] = dist<kL2>(p, fresh[i]);
  }

  // ---- search -------------------------------------------------------------------------------

  /// Greedy descent from the entry point to level `stop` + 1 .. (ef = 1, Algorithm 2 with
  /// ef = 1); returns the node reached and its distance.
  template <bool kL2, bool kLocked>
  std::pair<std::uint32_t, T> descend(const Probe& q, std::uint32_t cur, T dcur, std::size_t from,
                                      std::size_t stop,
                                      std::vector<std::atomic<std::uint8_t>>* locks) const {
    Scratch& sc = scratch();
    sc.nbr.resize(1 + params_.M);
    for (std::size_t l = from; l > stop; --l) {
      bool changed = true;
      while (changed) {
        changed = false;
        const std::uint32_t* ls = read_links<kLocked>(cur, l, sc.nbr.data(), locks);
        for (std::uint32_t j = 0; j < ls[0]; ++j) {
          const std::uint32_t v = ls[1 + j];
          const T d = dist<kL2>(q, v);
          if (d < dcur || (d == dcur && v < cur)) {
            dcur = d;
            cur = v;
            changed = true;
          }
        }
      }
    }
    return {cur, dcur};
  }

  /// Node s's list at `level`, copied under its lock during the build (kLocked), else read in
  /// place.
  template <bool kLocked>
  const std::uint32_t* read_links(std::uint32_t s, std::size_t level, std::uint32_t* buf,
                                  std::vector<std::atomic<std::uint8_t>>* locks) const noexcept {
    const std::uint32_t* ls = links(s, level);
    if constexpr (!kLocked) {
      (void)buf;
      (void)locks;
      return ls;
    } else {
      detail::spin_lock((*locks)[s]);
      const std::uint32_t cnt = ls[0];
      std::memcpy(buf, ls, 4 * (1 + std::size_t(cnt)));
      detail::spin_unlock((*locks)[s]);
      return buf;
    }
  }

  /// The beam search of one level (Algorithm 2): a sorted array of at most ef (distance, node)
  /// pairs; a node's high bit marks it expanded. Ends when every node in the beam is expanded.
  /// Returns the beam size; the beam is in sc.beam_d / sc.beam_s (flags cleared), best first.
  template <bool kL2, bool kLocked>
  std::size_t beam_search(const Probe& q, std::uint32_t ep, T dep, std::size_t level,
                          std::size_t ef, std::vector<std::atomic<std::uint8_t>>* locks) const {
    // The beam never holds more nodes than the graph has: a larger ef (say, read from a
    // corrupted file) gives the same search, so it must not size the scratch.
    ef = std::min(ef, slots());
    Scratch& sc = scratch();
    const std::uint16_t epoch = sc.visited.start(slots());
    std::uint16_t* tags = sc.visited.tags.data();
    sc.beam_d.resize(ef + 1);
    sc.beam_s.resize(ef + 1);
    const std::size_t cap = max_links(level);
    sc.fresh.resize(cap);
    sc.fresh_d.resize(cap);
    sc.nbr.resize(1 + cap);
    T* bd = sc.beam_d.data();
    std::uint32_t* bs = sc.beam_s.data();
    std::uint32_t* fresh = sc.fresh.data();
    T* fd = sc.fresh_d.data();
    std::size_t size = 1, cur = 0;
    bd[0] = dep;
    bs[0] = ep;
    tags[ep] = epoch;
    while (true) {
      while (cur < size && (bs[cur] & kChecked)) ++cur;
      if (cur >= size) break;
      const std::uint32_t u = bs[cur];
      bs[cur] |= kChecked;
      const std::uint32_t* ls = read_links<kLocked>(u, level, sc.nbr.data(), locks);
      const std::uint32_t cnt = ls[0];
      std::size_t m = 0;
      for (std::uint32_t j = 0; j < cnt; ++j) detail::prefetch(tags + ls[1 + j]);
      for (std::uint32_t j = 0; j < cnt; ++j) {
        const std::uint32_t v = ls[1 + j];
        if (tags[v] != epoch) {
          tags[v] = epoch;
          fresh[m++] = v;
        }
      }
      score_fresh<kL2>(q, fresh, m, fd);
      for (std::size_t j = 0; j < m; ++j) {
        const T d = fd[j];
        if (size == ef && !(d < bd[size - 1])) continue;
        const std::size_t pos = static_cast<std::size_t>(std::upper_bound(bd, bd + size, d) - bd);
        const std::size_t move = (size == ef ? size - 1 : size) - pos;
        std::memmove(bd + pos + 1, bd + pos, move * sizeof(T));
        std::memmove(bs + pos + 1, bs + pos, move * sizeof(std::uint32_t));
        bd[pos] = d;
        bs[pos] = fresh[j];
        if (size < ef) ++size;
        if (pos < cur) cur = pos;
      }
    }
    for (std::size_t i = 0; i < size; ++i) bs[i] &= ~kChecked;
    return size;
  }

  [[nodiscard]] bool allowed(std::uint32_t s, const Filter& f) const noexcept {
    return f.allows(modality_[s], ids_[s]);
  }

  /// Allowed items, counted until `limit` is exceeded (then limit + 1).
  [[nodiscard]] std::size_t count_allowed(const Filter& f, std::size_t limit) const noexcept {
    if (f.ids == nullptr) {
      std::size_t n = 0;
      for (std::size_t m = 0; m <= max_modality; ++m)
        if (f.modalities.contains(static_cast<Modality>(m))) n += per_modality_[m];
      return std::min(n, limit + 1);
    }
    if (f.ids->size() <= limit) return f.ids->size();  // an upper bound is enough here
    std::size_t n = 0;
    for (std::size_t s = 0; s < slots() && n <= limit; ++s)
      if (ids_[s] >= 0 && allowed(static_cast<std::uint32_t>(s), f)) ++n;
    return n;
  }

  /// (distance, id) ordering: smaller distance first, ties to the smaller id.
  static bool better(T da, Index ia, T db, Index ib) noexcept {
    return da < db || (da == db && ia < ib);
  }

  void search_one(const T* query, std::size_t k, const HnswSearchParams& p, Index* out_ids,
                  T* out_scores) const {
    Scratch& sc = scratch();
    sc.query.assign(query, query + dim_);
    if (metric_ == Metric::cosine) normalize(sc.query.data());
    const T* q = sc.query.data();
    if (!codec_.is_identity()) {  // the query once into code space
      sc.query_code.resize(dim_);
      codec_.to_code_space(q, 1, sc.query_code.data());
      q = sc.query_code.data();
    }
    const Probe probe = make_probe(q, sc.prepared);
    const std::size_t ef = std::max(p.ef_search, k);
    std::vector<std::pair<T, std::uint32_t>>& found = sc.found;
    found.clear();
    if (p.filter.is_trivial()) {
      metric_ == Metric::l2 ? graph_search<true>(probe, ef, found)
                            : graph_search<false>(probe, ef, found);
    } else {
      const std::size_t limit = std::max(live_ / 20, std::min(ef, live_) * params_.M);
      const std::size_t n_allowed = count_allowed(p.filter, limit);
      if (n_allowed == 0) return;
      if (n_allowed > limit) {
        metric_ == Metric::l2 ? filtered_search<true>(probe, ef, p.filter, found)
                              : filtered_search<false>(probe, ef, p.filter, found);
        if (found.size() < std::min(k, n_allowed)) found.clear();
      }
      if (found.empty()) exact_scan(probe, k, p.filter, found);
    }
    if (!codec_.is_identity()) {
      rescore(q, k, found, out_ids, out_scores);
      return;
    }
    const std::size_t take = std::min(k, found.size());
    std::partial_sort(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(take), found.end(),
                      [this](const auto& a, const auto& b) {
                        return better(a.first, ids_[a.second], b.first, ids_[b.second]);
                      });
    for (std::size_t j = 0; j < take; ++j) {
      out_ids[j] = ids_[found[j].second];
      out_scores[j] = score_of(found[j].first);
    }
  }

  /// The canonical exact key (lower is better) of query q (code space) against node s's
  /// decoded row: squared L2, or minus the inner product, with products and sums in double
  /// (detail/exact.hpp; search/driver.hpp's exact_key). NaN (never for rows that passed the
  /// checks) ranks last.
  [[nodiscard]] double exact_key(const T* q, std::uint32_t s, std::vector<T>& buf) const {
    const T* x = row_of(s, buf);
    const double key = metric_ == Metric::l2 ? detail::exact_score<T>(q, x, dim_, true)
                                             : -detail::exact_score<T>(q, x, dim_, false);
    return std::isnan(key) ? std::numeric_limits<double>::infinity() : key;
  }

  /// Compressed storage: the k best of the candidates by their exact keys against the decoded
  /// rows, ties to the smaller id; the scores are those exact scores.
  void rescore(const T* q, std::size_t k, const std::vector<std::pair<T, std::uint32_t>>& found,
               Index* out_ids, T* out_scores) const {
    Scratch& sc = scratch();
    std::vector<std::pair<double, Index>>& ranked = sc.ranked;
    ranked.clear();
    for (const auto& [d, s] : found) ranked.emplace_back(exact_key(q, s, sc.row_a), ids_[s]);
    const std::size_t take = std::min(k, ranked.size());
    std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(take),
                      ranked.end(), [](const auto& a, const auto& b) {
                        return a.first < b.first || (a.first == b.first && a.second < b.second);
                      });
    const bool l2 = metric_ == Metric::l2;
    for (std::size_t j = 0; j < take; ++j) {
      out_ids[j] = ranked[j].second;
      out_scores[j] = static_cast<T>(l2 ? ranked[j].first : -ranked[j].first);
    }
  }

  template <bool kL2>
  void graph_search(const Probe& q, std::size_t ef,
                    std::vector<std::pair<T, std::uint32_t>>& out) const {
    auto [ep, dep] = descend<kL2, false>(q, entry_, dist<kL2>(q, entry_), max_level_, 0, nullptr);
    const std::size_t size = beam_search<kL2, false>(q, ep, dep, 0, ef, nullptr);
    const Scratch& sc = scratch();
    out.resize(size);
    for (std::size_t i = 0; i < size; ++i) out[i] = {sc.beam_d[i], sc.beam_s[i]};
  }

  /// Filtered beam search at level 0 (hnswlib's): candidates are every reached node, the result
  /// heap only allowed ones; it stops when the nearest unexpanded candidate is farther than the
  /// ef-th allowed result.
  template <bool kL2>
  void filtered_search(const Probe& q, std::size_t ef, const Filter& f,
                       std::vector<std::pair<T, std::uint32_t>>& out) const {
    auto [ep, dep] = descend<kL2, false>(q, entry_, dist<kL2>(q, entry_), max_level_, 0, nullptr);
    Scratch& sc = scratch();
    const std::uint16_t epoch = sc.visited.start(slots());
    std::uint16_t* tags = sc.visited.tags.data();
    using Item = std::pair<T, std::uint32_t>;
    std::vector<Item> cand, res;  // cand: min-heap on distance; res: max-heap
    auto cand_cmp = [](const Item& a, const Item& b) { return a.first > b.first; };
    auto res_cmp = [this](const Item& a, const Item& b) {
      return better(a.first, ids_[a.second], b.first, ids_[b.second]);
    };
    sc.fresh.resize(2 * params_.M);
    sc.fresh_d.resize(2 * params_.M);
    tags[ep] = epoch;
    cand.push_back({dep, ep});
    if (allowed(ep, f)) res.push_back({dep, ep});
    while (!cand.empty()) {
      const Item c = cand.front();
      if (res.size() >= ef && c.first > res.front().first) break;
      std::pop_heap(cand.begin(), cand.end(), cand_cmp);
      cand.pop_back();
      const std::uint32_t* ls = links(c.second, 0);
      std::size_t m = 0;
      for (std::uint32_t j = 0; j < ls[0]; ++j) {
        const std::uint32_t v = ls[1 + j];
        if (tags[v] != epoch) {
          tags[v] = epoch;
          sc.fresh[m++] = v;
        }
      }
      score_fresh<kL2>(q, sc.fresh.data(), m, sc.fresh_d.data());
      for (std::size_t j = 0; j < m; ++j) {
        const T d = sc.fresh_d[j];
        const std::uint32_t v = sc.fresh[j];
        if (res.size() < ef || d < res.front().first) {
          cand.push_back({d, v});
          std::push_heap(cand.begin(), cand.end(), cand_cmp);
          if (allowed(v, f)) {
            res.push_back({d, v});
            std::push_heap(res.begin(), res.end(), res_cmp);
            if (res.size() > ef) {
              std::pop_heap(res.begin(), res.end(), res_cmp);
              res.pop_back();
            }
          }
        }
      }
    }
    out.resize(res.size());
    for (std::size_t i = 0; i < res.size(); ++i) out[i] = res[i];
  }

  /// Exact top-k over the allowed stored rows, as (distance, slot): the traversal distance for
  /// float32 storage, the exact key against the decoded row otherwise (rescored once more by
  /// `rescore`, to the same value).
  void exact_scan(const Probe& q, std::size_t k, const Filter& f,
                  std::vector<std::pair<T, std::uint32_t>>& out) const {
    struct Item {
      double key;
      Index id;
      std::uint32_t slot;
    };
    std::vector<Item> heap;  // max-heap: worst on top
    auto cmp = [](const Item& a, const Item& b) {
      return a.key < b.key || (a.key == b.key && a.id < b.id);
    };
    heap.reserve(k + 1);
    std::vector<T>& buf = scratch().row_a;
    for (std::size_t s = 0; s < slots(); ++s) {
      const auto v = static_cast<std::uint32_t>(s);
      if (ids_[s] < 0 || !allowed(v, f)) continue;
      const double d = codec_.is_identity() ? double(dist_any(q, v)) : exact_key(q.q, v, buf);
      const Item item{d, ids_[s], v};
      if (heap.size() == k && !cmp(item, heap.front())) continue;
      heap.push_back(item);
      std::push_heap(heap.begin(), heap.end(), cmp);
      if (heap.size() > k) {
        std::pop_heap(heap.begin(), heap.end(), cmp);
        heap.pop_back();
      }
    }
    out.clear();
    for (const Item& it : heap) out.push_back({static_cast<T>(it.key), it.slot});
  }

  // ---- build --------------------------------------------------------------------------------

  /// The neighbour-selection heuristic (Algorithm 4): walking the candidates nearest first,
  /// keep one when it is closer to the base than to every node kept so far; at most `m` kept.
  /// `cand` holds (distance to base, node), sorted ascending.
  void select_heuristic(const std::vector<std::pair<T, std::uint32_t>>& cand, std::size_t m,
                        std::vector<std::uint32_t>& out) const {
    out.clear();
    Scratch& sc = scratch();
    for (const auto& [d, c] : cand) {
      if (out.size() >= m) break;
      bool good = true;
      const T* vc = row_of(c, sc.row_a);
      for (std::uint32_t r : out)
        if (row_dist(vc, r) < d) {
          good = false;
          break;
        }
      if (good) out.push_back(c);
    }
  }

  static bool pair_less(const std::pair<T, std::uint32_t>& a,
                        const std::pair<T, std::uint32_t>& b) noexcept {
    return a.first < b.first || (a.first == b.first && a.second < b.second);
  }

  /// Inserts node s (vector or code, and level already stored) into the graph (Algorithm 1).
  /// `row`: the row it searches with (dim values, normalized for cosine, in code space).
  template <bool kL2>
  void insert(std::uint32_t s, const T* row, std::vector<std::atomic<std::uint8_t>>& locks,
              std::mutex& top) {
    const std::size_t level = level_[s];
    std::unique_lock<std::mutex> guard(top);
    const std::uint32_t ep = entry_;
    const std::size_t top_level = max_level_;
    if (ep == kNone) {
      entry_ = s;
      max_level_ = level;
      return;
    }
    if (level <= top_level) guard.unlock();  // a new top level keeps the lock to the end
    typename Codec<T>::ScanQuery prepared;
    const Probe q = make_probe(row, prepared);
    auto [cur, dcur] = descend<kL2, true>(q, ep, dist<kL2>(q, ep), top_level, level, &locks);
    // Search top-down, link bottom-up: another thread can reach s at level l only after s has
    // linked itself there, and by then s's lists below l are written. Linking top-down let a
    // concurrent insertion descend to s and start its level-0 search from s's still-empty list,
    // leaving it with one link and sometimes unreachable (1 in 1 600 items with 8 threads).
    const std::size_t linked = std::min(level, top_level);
    std::vector<std::vector<std::uint32_t>> chosen(linked + 1);
    std::vector<std::pair<T, std::uint32_t>> cand;
    for (std::size_t l = linked + 1; l-- > 0;) {
      const std::size_t size =
          beam_search<kL2, true>(q, cur, dcur, l, params_.ef_construction, &locks);
      const Scratch& sc = scratch();
      cand.clear();
      for (std::size_t i = 0; i < size; ++i)
        if (sc.beam_s[i] != s) cand.push_back({sc.beam_d[i], sc.beam_s[i]});
      std::sort(cand.begin(), cand.end(), pair_less);
      if (cand.empty()) continue;
      cur = cand[0].second;
      dcur = cand[0].first;
      select_heuristic(cand, params_.M, chosen[l]);
    }
    for (std::size_t l = 0; l <= linked; ++l) {
      std::vector<std::uint32_t>& out = chosen[l];
      if (out.empty()) continue;
      // Links other nodes already made to s at this level (possible only when a level holds
      // nodes inserted meanwhile) are kept beside the chosen ones, pruned by the heuristic if
      // the list overflows: overwriting them could leave such a node with no way in.
      detail::spin_lock(locks[s]);
      std::uint32_t* ls = links(s, l);
      const std::uint32_t had = ls[0];
      for (std::uint32_t j = 0; j < had; ++j)
        if (std::find(out.begin(), out.end(), ls[1 + j]) == out.end()) out.push_back(ls[1 + j]);
      const std::size_t cap = max_links(l);
      if (out.size() > cap) {
        cand.clear();
        for (std::uint32_t v : out) cand.push_back({dist_any(q, v), v});
        std::sort(cand.begin(), cand.end(), pair_less);
        select_heuristic(cand, cap, out);
      }
      ls[0] = static_cast<std::uint32_t>(out.size());
      std::copy(out.begin(), out.end(), ls + 1);
      detail::spin_unlock(locks[s]);
      for (std::uint32_t e : out) connect(e, s, l, locks);
    }
    if (level > top_level) {
      entry_ = s;
      max_level_ = level;
    }
  }

  /// Adds the link e -> s at `level`; when e's list is full, prunes it back with the heuristic.
  void connect(std::uint32_t e, std::uint32_t s, std::size_t level,
               std::vector<std::atomic<std::uint8_t>>& locks) {
    const std::size_t cap = max_links(level);
    detail::spin_lock(locks[e]);
    std::uint32_t* ls = links(e, level);
    const std::uint32_t cnt = ls[0];
    if (std::find(ls + 1, ls + 1 + cnt, s) == ls + 1 + cnt) {
      if (cnt < cap) {
        ls[1 + cnt] = s;
        ls[0] = cnt + 1;
      } else {
        std::vector<std::pair<T, std::uint32_t>> cand;
        cand.reserve(cnt + 1);
        const T* ve = row_of(e, scratch().row_a);
        for (std::uint32_t j = 0; j < cnt; ++j)
          cand.push_back({row_dist(ve, ls[1 + j]), ls[1 + j]});
        cand.push_back({row_dist(ve, s), s});
        std::sort(cand.begin(), cand.end(), pair_less);
        std::vector<std::uint32_t> kept;
        select_heuristic(cand, cap, kept);
        ls[0] = static_cast<std::uint32_t>(kept.size());
        std::copy(kept.begin(), kept.end(), ls + 1);
      }
    }
    detail::spin_unlock(locks[e]);
  }

  /// Inserts the given slots in order: the first alone when the graph is empty, then the rest
  /// in parallel batches, with a progress report every kProgressChunk insertions and at the end.
  /// `rows`: slot.size() × dim rows the insertions search with (compressed storage: the added
  /// rows normalized for cosine, in code space), or null to search with the stored vectors.
  void build(const std::vector<std::uint32_t>& slot, std::vector<std::atomic<std::uint8_t>>& locks,
             const T* rows) noexcept {
    std::mutex top;
    const std::size_t n = slot.size();
    std::size_t done = 0;
    const bool l2 = metric_ == Metric::l2;
    auto one = [&](std::size_t r) {
      const std::uint32_t s = slot[r];
      const T* row = rows ? rows + r * dim_ : vec(s);
      l2 ? insert<true>(s, row, locks, top) : insert<false>(s, row, locks, top);
    };
    if (entry_ == kNone) one(done++);
    std::size_t reported = 0;
    const std::size_t before = live_ - n;  // items already in the graph
    while (done < n) {
      // A batch adds at most a quarter of the graph's size: an insertion running in parallel
      // with others (or preempted in the middle) misses their links, which costs nothing in a
      // large graph but in a small one leaves early items with one link and no way in (ParlayANN's
      // prefix doubling follows the same reasoning). Batches of 16 or fewer run serially.
      const std::size_t grown = std::max<std::size_t>(16, (before + done) / 4);
      const std::size_t end = std::min({n, done + kProgressChunk, done + grown});
      const auto lo = static_cast<long long>(done), hi = static_cast<long long>(end);
      detail::parallel_for<long long>(lo, hi, hi - lo > 16, 8,
                                      [&](long long i) { one(static_cast<std::size_t>(i)); });
      done = end;
      if (params_.progress && done - reported >= kProgressChunk)
        params_.progress(reported = done, n);
    }
    if (reported != n && params_.progress) params_.progress(n, n);  // the end (even of one row)
  }

  /// A new link list for one (node, level), computed aside and written by `apply`.
  struct LinkPatch {
    std::uint32_t slot;
    std::uint32_t level;
    std::vector<std::uint32_t> links;
  };

  /// Writes the patched lists (each fits its list's capacity). No throw.
  void apply(const std::vector<LinkPatch>& patches) noexcept {
    for (const auto& p : patches) {
      std::uint32_t* ls = links(p.slot, p.level);
      ls[0] = static_cast<std::uint32_t>(p.links.size());
      std::copy(p.links.begin(), p.links.end(), ls + 1);
    }
  }

  /// adopt_orphans over the whole graph after a build. Best effort: without the memory for the
  /// pass the graph stays as built (valid, just without these extra links).
  void link_back_orphans() noexcept {
    try {
      std::vector<LinkPatch> patches;
      adopt_orphans(patches, nullptr);
      apply(patches);
    } catch (const std::bad_alloc&) {
    }
  }

  /// A live node whose level-0 in-links were all pruned (by the build's heuristic, or by the
  /// repairs of remove_ids, or whose in-links came from removed nodes) has no way in and no
  /// search finds it (seen on tight clusters: 2 of 1 822 survivors of a removal). Each such
  /// orphan gets a link from the nearest of its own out-neighbours: appended when that list has
  /// room, else in place of the list's farthest link whose target keeps another in-link. Works
  /// on (and adds) patches only: nothing in the graph changes before the caller applies them.
  /// Upper levels only shortcut; level 0 is where every item must be reachable.
  /// `doomed`: one flag per slot, nodes about to be removed (null: none).
  void adopt_orphans(std::vector<LinkPatch>& patches, const std::uint8_t* doomed) const {
    const std::size_t n = slots();
    std::vector<std::int64_t> patch_of(n, -1);
    for (std::size_t i = 0; i < patches.size(); ++i)
      if (patches[i].level == 0) patch_of[patches[i].slot] = static_cast<std::int64_t>(i);
    auto live = [&](std::size_t s) { return ids_[s] >= 0 && !(doomed && doomed[s]); };
    auto list0 = [&](std::uint32_t s) -> std::span<const std::uint32_t> {
      if (patch_of[s] >= 0) return patches[static_cast<std::size_t>(patch_of[s])].links;
      const std::uint32_t* ls = links(s, 0);
      return {ls + 1, ls[0]};
    };
    std::vector<std::uint32_t> indeg(n, 0);
    for (std::size_t s = 0; s < n; ++s)
      if (live(s))
        for (std::uint32_t t : list0(static_cast<std::uint32_t>(s))) ++indeg[t];
    const std::size_t cap = max_links(0);
    std::vector<std::pair<T, std::uint32_t>> near;
    for (std::size_t s = 0; s < n; ++s) {
      if (!live(s) || indeg[s] > 0) continue;
      const auto v = static_cast<std::uint32_t>(s);
      near.clear();
      const T* vv = row_of(v, scratch().row_a);
      for (std::uint32_t u : list0(v)) near.push_back({row_dist(vv, u), u});
      std::sort(near.begin(), near.end(), pair_less);
      for (const auto& [d, u] : near) {
        if (patch_of[u] < 0) {  // copy u's list aside to change it
          const std::uint32_t* ls = links(u, 0);
          patches.push_back({u, 0, std::vector<std::uint32_t>(ls + 1, ls + 1 + ls[0])});
          patch_of[u] = static_cast<std::int64_t>(patches.size() - 1);
        }
        std::vector<std::uint32_t>& lu = patches[static_cast<std::size_t>(patch_of[u])].links;
        if (lu.size() < cap) {
          lu.push_back(v);
        } else {
          std::size_t far = lu.size();
          T far_d = T(0);
          const T* vu = row_of(u, scratch().row_a);
          for (std::size_t j = 0; j < lu.size(); ++j) {
            const T dj = row_dist(vu, lu[j]);
            if (indeg[lu[j]] >= 2 && (far == lu.size() || dj > far_d)) far = j, far_d = dj;
          }
          if (far == lu.size()) continue;  // every link is some node's only way in
          --indeg[lu[far]];
          lu[far] = v;
        }
        ++indeg[v];
        break;
      }
    }
  }

  /// Computes the repaired list of one (node, level) whose links reach removed nodes.
  void repair(LinkPatch& p, const std::vector<std::uint8_t>& doomed) const {
    const std::size_t cap = max_links(p.level);
    std::vector<std::uint32_t> pool;
    std::vector<std::uint32_t> through;  // removed nodes to look through
    const std::uint32_t* ls = links(p.slot, p.level);
    auto consider = [&](std::uint32_t v) {
      if (v == p.slot) return;
      if (doomed[v]) {
        if (std::find(through.begin(), through.end(), v) == through.end()) through.push_back(v);
      } else if (std::find(pool.begin(), pool.end(), v) == pool.end()) {
        pool.push_back(v);
      }
    };
    for (std::uint32_t j = 0; j < ls[0]; ++j) consider(ls[1 + j]);
    for (std::size_t i = 0; i < through.size() && pool.size() < 4 * params_.M && i < 4 * cap; ++i) {
      const std::uint32_t* ld = links(through[i], p.level);
      for (std::uint32_t j = 0; j < ld[0]; ++j) consider(ld[1 + j]);
    }
    std::vector<std::pair<T, std::uint32_t>> cand;
    cand.reserve(pool.size());
    const T* vb = row_of(p.slot, scratch().row_a);
    for (std::uint32_t v : pool) cand.push_back({row_dist(vb, v), v});
    std::sort(cand.begin(), cand.end(), pair_less);
    if (cand.size() > 4 * params_.M) cand.resize(4 * params_.M);
    select_heuristic(cand, cap, p.links);
  }

  std::size_t dim_;
  Metric metric_;
  HnswParams params_;
  Codec<T> codec_;                  // how node blocks store rows (identity for float32)
  std::size_t links_bytes_ = 0;     // bytes of the level-0 list, rounded up to whole lines
  std::size_t norm_bytes_ = 0;      // compressed storage: the decoded row's squared norm (a T)
  std::size_t lines_per_node_ = 0;  // cache lines per node block
  // slots × lines_per_node_ lines: level-0 list, then vector (or norm and code); on huge pages
  // when large
  std::vector<CacheLine, detail::HugePageAllocator<CacheLine>> blocks_;
  std::vector<Index> ids_;                 // per slot; kFreeId for a free slot
  std::vector<Modality> modality_;         // per slot
  std::vector<std::uint8_t> level_;        // per slot (for a free slot: its upper-level capacity)
  std::vector<std::uint32_t> upper_off_;   // per slot: offset of its level-1 list in upper_pool_
  std::vector<std::uint32_t> upper_pool_;  // level × (1 + M) u32 per node with level >= 1
  std::vector<std::uint32_t> free_;        // free slots, descending (back() is the smallest)
  std::size_t per_modality_[max_modality + 1] = {};
  std::size_t live_ = 0;
  Index max_id_ = -1;           // the largest id ever added: default ids continue after it
  std::uint64_t inserted_ = 0;  // insertions ever made: the level draw's counter
  std::uint32_t entry_ = kNone;
  std::size_t max_level_ = 0;
};

}  // namespace mmrag
