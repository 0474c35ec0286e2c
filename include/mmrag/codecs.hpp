#pragma once
/// @file codecs.hpp
/// How an index stores its rows: the `Storage` kind and the `Codec` that encodes rows into
/// codes, decodes them, and hands the search driver rows it can score. This is the only place
/// that knows the layout of a stored row (FAISS's `code_size` / `sa_encode` / `sa_decode` seam).
///
/// `Storage::float32` keeps rows at the index's own scalar type T, uncompressed (float32 for
/// `Index<float>`, float64 for `Index<double>`): the codec is the identity and search is exact.
/// The compressed kinds store fewer bytes per value; search is then exact *on the decoded
/// rows* (the codes are the data), which approximate the added vectors within the format's
/// rounding: float16 2^-11 relative, bfloat16 2^-8 relative, int8 (max - min) / 510 per
/// coordinate, / 129 540 (510 · 254) for the coordinates with a refinement byte.
///
/// Code space: int8 may store rows rotated (z = R·x, R orthogonal: detail/sq8_code.hpp). Then
/// `rows`, `dot_codes` and the stored squared norms are in the rotated space, and searches
/// first map each query there (`to_code_space`); `decode` returns the row in the caller's
/// space (Rᵀ·z). For every other storage both spaces are the same.
///
/// Thread safety: a trained codec is immutable; encode/decode/score are const and reentrant.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"
#include "mmrag/detail/bfloat16.hpp"
#include "mmrag/detail/float16.hpp"
#include "mmrag/detail/int8.hpp"
#include "mmrag/detail/sq8_code.hpp"

namespace mmrag {

/// Row storage of an index. Bytes per stored value: float32 4 (or 8 for a double index),
/// float16 2, bfloat16 2, int8 1 + 1/8 (SQ8: per-dimension min/max, as FAISS's QT_8bit, plus a
/// refinement byte for the eighth of the coordinates that err most; see detail/sq8_code.hpp).
enum class Storage : std::uint32_t { float32 = 0, float16 = 1, bfloat16 = 2, int8 = 3 };

/// The storage's name, as used in messages and files.
[[nodiscard]] inline const char* to_string(Storage s) noexcept {
  switch (s) {
    case Storage::float32:
      return "float32";
    case Storage::float16:
      return "float16";
    case Storage::bfloat16:
      return "bfloat16";
    case Storage::int8:
      return "int8";
  }
  return "unknown";
}

/// Encodes rows of dimension `dim` into `code_size()` bytes each and back.
/// - float32: the rows themselves (T values), exact.
/// - float16 / bfloat16: IEEE half / brain float, round to nearest even; values beyond the
///   format's range saturate (float16: ±65504). Rows are converted through float.
/// - int8: SQ8 with per-dimension [min, max] trained on data (FAISS QT_8bit, RS_minmax); a
///   value decodes to the nearest of 256 grid points, values outside the trained range clamp.
///   dim / 8 more bytes refine the coordinates that contribute most to the score error (their
///   error drops 254-fold), and when the training rows' principal axes quantize with a
///   clearly smaller error (learned embeddings: variance in a few tens of directions) the
///   rows are stored rotated onto those axes (detail/sq8_code.hpp has the rule and sources).
///   Needs `train` (the indexes train it on their first data; see their docs).
/// The kernels are in detail/float16.hpp, detail/bfloat16.hpp and detail/int8.hpp (one header
/// per instruction family, chosen by the consumer's compile flags, portable fallbacks).
template <class T>
class Codec {
 public:
  /// A codec for `dim`-dimensional rows. Throws std::invalid_argument for an unknown storage.
  Codec(std::size_t dim, Storage storage)
      : dim_(dim), storage_(storage), fine_count_(detail::sq8_fine_count(dim)) {
    if (static_cast<std::uint32_t>(storage) > static_cast<std::uint32_t>(Storage::int8))
      throw std::invalid_argument("mmrag::Codec: unknown storage " +
                                  std::to_string(static_cast<std::uint32_t>(storage)));
  }

  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  [[nodiscard]] Storage storage() const noexcept { return storage_; }
  /// Bytes one encoded row takes.
  [[nodiscard]] std::size_t code_size() const noexcept {
    switch (storage_) {
      case Storage::float16:
      case Storage::bfloat16:
        return 2 * dim_;
      case Storage::int8:
        return dim_ + fine_count_;
      default:
        return dim_ * sizeof(T);
    }
  }
  /// True when stored rows are the T values themselves (decode is free and exact).
  [[nodiscard]] bool is_identity() const noexcept { return storage_ == Storage::float32; }
  /// True when `encode` may be called: always, except int8 before `train`.
  [[nodiscard]] bool is_trained() const noexcept {
    return storage_ != Storage::int8 || sq8_.code_size() == dim_ + fine_count_;
  }
  /// True when rows are stored rotated (int8 only): queries go through `to_code_space`.
  [[nodiscard]] bool rotated() const noexcept { return sq8_.rotated(); }

  /// Maps n query rows (n × dim, already normalized for cosine) into the space that `rows`
  /// and `dot_codes` score in: out = q·Rᵀ when rotated(), else a copy. in and out may not
  /// overlap. Allocates only for T = double.
  void to_code_space(const T* in, std::size_t n, T* out) const {
    if (!rotated()) {
      std::copy(in, in + n * dim_, out);
      return;
    }
    rotate(in, n, out, false);
  }
  /// Throws std::invalid_argument naming `where`, `what` and the row (counted from `first`)
  /// when one of n rows (n × dim, as the index scores them: normalized for cosine) leaves
  /// float range once rotated into code space (the rotation runs in float; coordinates near
  /// FLT_MAX / √dim, or a double beyond float range). Nothing for a codec that does not rotate.
  void check_code_space(const char* where, const char* what, const T* rows, std::size_t n,
                        std::size_t first = 0) const {
    if (!rotated()) return;
    std::vector<T> z(dim_);
    for (std::size_t r = 0; r < n; ++r) {
      to_code_space(rows + r * dim_, 1, z.data());
      for (T v : z)
        if (!std::isfinite(v))
          throw std::invalid_argument(
              std::string(where) + ": " + what + " row " + std::to_string(first + r) +
              " leaves float range when rotated into the int8 code's space (coordinates near "
              "FLT_MAX / sqrt(dim), or beyond float range): scale the data");
    }
  }
  /// The inverse: rows in code space to the caller's space (out = z·R).
  void from_code_space(const T* in, std::size_t n, T* out) const {
    if (!rotated()) {
      std::copy(in, in + n * dim_, out);
      return;
    }
    rotate(in, n, out, true);
  }

  /// Learns what the storage needs from n rows (n × dim, finite): int8's ranges, refined
  /// coordinates and rotation (detail::train_sq8_code); nothing for the others. Throws
  /// std::invalid_argument when n = 0 for int8, or (double rows) a value beyond float range;
  /// the codec is then unchanged.
  void train(const T* rows, std::size_t n) {
    if (storage_ != Storage::int8) return;
    if (n == 0) throw std::invalid_argument("mmrag::Codec::train: int8 storage needs rows, got 0");
    std::vector<float> f(n * dim_);
    for (std::size_t i = 0; i < f.size(); ++i) {
      f[i] = static_cast<float>(rows[i]);
      if (!std::isfinite(f[i]))  // (a double beyond float range: the codes are of floats)
        throw std::invalid_argument(
            "mmrag::Codec::train: int8 codes float values, but training value " +
            std::to_string(double(rows[i])) + " (row " + std::to_string(i / dim_) +
            ") is beyond float range");
    }
    detail::Sq8Code p = detail::train_sq8_code(f.data(), n, dim_);
    sq8_ = std::move(p);
  }

  /// Encodes n rows (n × dim, row-major, contiguous) into n × code_size() bytes. Requires
  /// is_trained().
  void encode(const T* rows, std::size_t n, std::uint8_t* codes) const {
    MMRAG_ASSERT(is_trained());
    if (n == 0) return;
    if (is_identity()) {
      std::memcpy(codes, rows, n * code_size());
      return;
    }
    const float* f = as_float(rows, n);
    switch (storage_) {
      case Storage::float16:
        detail::encode_f16(f, n * dim_, reinterpret_cast<std::uint16_t*>(codes));
        break;
      case Storage::bfloat16:
        detail::encode_bf16(f, n * dim_, reinterpret_cast<std::uint16_t*>(codes));
        break;
      default:
        if (rotated()) {
          thread_local std::vector<float> z;  // per thread, reused: adds encode row by row
          z.resize(n * dim_);
          detail::sq8_rotate(sq8_.rotation, f, n, dim_, z.data());
          detail::encode_sq8_code(sq8_, z.data(), n, codes);
        } else {
          detail::encode_sq8_code(sq8_, f, n, codes);
        }
    }
  }

  /// Rows [0, n) of `codes` as T values in code space: a pointer into `codes` itself for the
  /// identity codec, else decoded into `scratch` (resized as needed). With an `offset` (dim
  /// values in code space: an IVF cell's centroid, for residual codes) each row is
  /// fl(offset + decoded code) — the one rounding every path (scan, rescoring, norms, files)
  /// sees.
  [[nodiscard]] const T* rows(const std::uint8_t* codes, std::size_t n, std::vector<T>& scratch,
                              const T* offset = nullptr) const {
    if (is_identity() && offset == nullptr) return reinterpret_cast<const T*>(codes);
    scratch.resize(n * dim_);
    decode_code_space(codes, n, scratch.data());
    if (offset)
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t j = 0; j < dim_; ++j) scratch[r * dim_ + j] += offset[j];
    return scratch.data();
  }

  /// Decodes n codes into n × dim T values in the caller's space (rotated back for a rotated
  /// int8 code: one dim × dim product, within a few float roundings of Rᵀ·z).
  void decode(const std::uint8_t* codes, std::size_t n, T* out) const {
    decode_code_space(codes, n, out);
    if (rotated() && n > 0) {
      std::vector<T> z(out, out + n * dim_);
      from_code_space(z.data(), n, out);
    }
  }

  /// Decodes n codes into n × dim T values in code space.
  void decode_code_space(const std::uint8_t* codes, std::size_t n, T* out) const {
    if (n == 0) return;
    if (is_identity()) {
      std::memcpy(out, codes, n * code_size());
      return;
    }
    float* f = std::is_same_v<T, float> ? reinterpret_cast<float*>(out) : float_scratch(n);
    switch (storage_) {
      case Storage::float16:
        detail::decode_f16(reinterpret_cast<const std::uint16_t*>(codes), n * dim_, f);
        break;
      case Storage::bfloat16:
        detail::decode_bf16(reinterpret_cast<const std::uint16_t*>(codes), n * dim_, f);
        break;
      default:
        detail::decode_sq8_code(sq8_, codes, n, f);
    }
    if constexpr (!std::is_same_v<T, float>)
      for (std::size_t i = 0; i < n * dim_; ++i) out[i] = static_cast<T>(f[i]);
  }

  /// True when `dot_codes` scores this storage on the codes themselves: a float index with
  /// float16, bfloat16 or int8 storage (the kernels of detail/ are float-only).
  [[nodiscard]] bool scores_codes() const noexcept {
    return std::is_same_v<T, float> && !is_identity() && is_trained();
  }

  /// Inner products of query q (dim floats, finite) with n stored rows, computed on the codes
  /// without decoding them (one pass over code_size() bytes a row instead of a decode to dim
  /// floats and a second pass): out[r] ≈ q · rows(codes + r·code_size(), offset). `prepared`
  /// is per-query scratch that `prepare_scan(q, prepared)` fills once (int8 only). The error
  /// against the decoded row is at most `dot_codes_error`. Requires scores_codes().
  /// Sources: detail/float16.hpp, detail/bfloat16.hpp (exact decode, float accumulation) and
  /// detail/int8.hpp (q·D(c) = bias + Σ s_j c_j, FAISS's ScalarQuantizer distance computer).
  /// `on_codes` is false when this query cannot be scored on the codes without risk of
  /// overflow (int8: the kernel's partial sums reach Σ|q_j|·vdiff_j, which for huge data can
  /// pass FLT_MAX while q·x̂ does not); the caller then decodes.
  struct ScanQuery {
    detail::Sq8Query sq8;
    std::vector<float> augmented;  // int8: (q, q at the refined coordinates)
    bool on_codes = true;
  };
  void prepare_scan(const T* q, ScanQuery& prepared) const {
    prepared.on_codes = scores_codes();
    if constexpr (std::is_same_v<T, float>) {
      if (storage_ == Storage::int8 && prepared.on_codes) {
        detail::sq8_code_query(sq8_, q, prepared.augmented);
        detail::prepare_sq8_query(sq8_.ranges, prepared.augmented.data(), prepared.sq8);
        const double reach = std::fabs(prepared.sq8.bias) + prepared.sq8.abs_qvdiff;
        prepared.on_codes = reach < 0x1p-4 * double(std::numeric_limits<float>::max());
      }
    }
  }
  void dot_codes(const T* q, const ScanQuery& prepared, const std::uint8_t* codes, std::size_t n,
                 const T* offset, T* out) const {
    MMRAG_ASSERT(scores_codes());
    if constexpr (std::is_same_v<T, float>) {
      const auto* h = reinterpret_cast<const std::uint16_t*>(codes);
      switch (storage_) {
        case Storage::float16:
          detail::dot_many_f16(q, h, n, dim_, out);
          break;
        case Storage::bfloat16:
          detail::dot_many_bf16(q, h, n, dim_, out);
          break;
        default: {
          // q·(o + D(c)) = q·o + bias + Σ s_j c_j; the constant part in double.
          double base = prepared.sq8.bias;
          if (offset)
            for (std::size_t j = 0; j < dim_; ++j) base += double(q[j]) * double(offset[j]);
          detail::dot_many_u8(prepared.sq8.scaled.data(), codes, n, code_size(), out);
          for (std::size_t r = 0; r < n; ++r) out[r] = static_cast<float>(base + double(out[r]));
        }
      }
    } else {
      (void)q, (void)prepared, (void)codes, (void)n, (void)offset, (void)out;
    }
  }

  /// Bound on |dot_codes − q·x̂| for every row x̂ as `rows` decodes it, given an upper bound
  /// `max_norm` of ‖x̂‖, beyond the error of an ordinary float dot product of q and x̂ (which
  /// the search driver's margin already covers; float16 and bfloat16 decode exactly to float,
  /// so their kernels add nothing). int8: the kernel's bound (Sq8Query::dot_error) plus the
  /// roundings of the decoded row (D_j to float, then o_j + D_j: relative, and absolute up to
  /// 2^-150 each where they underflow) and of the final sum:
  /// 4u·(Σ|q_j|(|vmin_j| + vdiff_j) + ‖q‖·max_norm) + 4·2^-149·‖q‖₁, u = 2^-24 (2u and
  /// 2·2^-149 suffice). Only meaningful when prepared.on_codes.
  [[nodiscard]] double dot_codes_error(const T* q, const ScanQuery& prepared,
                                       double max_norm) const noexcept {
    if (storage_ != Storage::int8 || !std::is_same_v<T, float>) return 0;
    double qn = 0, q1 = 0;
    for (std::size_t j = 0; j < dim_; ++j) {
      const double qj = std::fabs(double(q[j]));
      qn += qj * qj;
      q1 += qj;
    }
    const detail::Sq8Query& p = prepared.sq8;  // Σ|q_j|(|vmin_j| + vdiff_j) = its two sums
    return p.dot_error +
           4 * detail::kFloatUnit * (p.abs_qvmin + p.abs_qvdiff + std::sqrt(qn) * max_norm) +
           4 * 0x1p-149 * q1;
  }

  /// Bytes of codec parameters (int8: two floats per coded coordinate, the refined
  /// coordinates' indices, and dim² floats when rotated).
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return (sq8_.ranges.vmin.capacity() + sq8_.ranges.vdiff.capacity() +
            sq8_.rotation.capacity()) * sizeof(float) +
           sq8_.fine.capacity() * sizeof(std::uint32_t);
  }

  /// Appends the parameters: u64 flag (0: none, 2: an int8 code), then for int8 u64 refined
  /// coordinates f, u64 rotated (0 / 1), (dim + f) × f32 minima, (dim + f) × f32 ranges,
  /// f × u32 refined coordinates (ascending), with rotation dim × dim f32 (row-major R),
  /// zero-padded to 8 bytes. (Flag 1, read only: the dim minima and ranges of a plain SQ8 code
  /// without refinement bytes, as files written before the refinement bytes hold.)
  void write(std::vector<char>& out) const {
    const bool has = storage_ == Storage::int8 && is_trained();
    detail::append(out, static_cast<std::uint64_t>(has ? 2 : 0));
    if (!has) return;
    detail::append(out, static_cast<std::uint64_t>(sq8_.fine.size()));
    detail::append(out, static_cast<std::uint64_t>(rotated() ? 1 : 0));
    detail::append_raw(out, sq8_.ranges.vmin.data(), sizeof(float) * code_size());
    detail::append_raw(out, sq8_.ranges.vdiff.data(), sizeof(float) * code_size());
    detail::append_raw(out, sq8_.fine.data(), sizeof(std::uint32_t) * sq8_.fine.size());
    if (rotated()) detail::append_raw(out, sq8_.rotation.data(), sizeof(float) * dim_ * dim_);
    out.resize((out.size() + 7) / 8 * 8, 0);
  }

  /// Reads what `write` wrote; throws std::runtime_error (via detail::fail) on a bad flag,
  /// truncation, a refinement count other than dim / 8 or 0 (a re-saved flag-1 code), refined coordinates not
  /// ascending below dim, ranges that are not finite and positive, or a rotation that is not
  /// finite and orthogonal (|R·Rᵀ − I| ≤ 1e-4 entrywise). The codec is unchanged on error.
  /// code_size() follows what was read: callers size their stores after this.
  void read(detail::Cursor& c) {
    const std::uint64_t at = c.offset();
    const auto has = c.get<std::uint64_t>("codec flag");
    if (has > 2 || (has != 0 && storage_ != Storage::int8))
      detail::fail(c.path(), at, "bad codec parameter flag " + std::to_string(has));
    if (has == 0) return;
    std::uint64_t fine = 0, rot = 0;
    if (has == 2) {
      fine = c.get<std::uint64_t>("int8 refinement count");
      rot = c.get<std::uint64_t>("int8 rotation flag");
      if ((fine != 0 && fine != detail::sq8_fine_count(dim_)) || rot > 1)
        detail::fail(c.path(), at, "int8 refinement count " + std::to_string(fine) +
                                       " (expected " + std::to_string(detail::sq8_fine_count(dim_)) +
                                       ") or rotation flag " + std::to_string(rot) + " is invalid");
    }
    const std::size_t coords = dim_ + static_cast<std::size_t>(fine);
    c.need((2 * sizeof(float) + (has == 2 ? sizeof(std::uint32_t) : 0)) * std::uint64_t(coords) +
               (rot ? sizeof(float) * std::uint64_t(dim_) * dim_ : 0),
           "int8 code parameters");
    detail::Sq8Code p;
    p.ranges.vmin.resize(coords);
    p.ranges.vdiff.resize(coords);
    p.fine.resize(static_cast<std::size_t>(fine));
    c.copy_to(p.ranges.vmin.data(), sizeof(float) * coords, "int8 minima");
    c.copy_to(p.ranges.vdiff.data(), sizeof(float) * coords, "int8 ranges");
    c.copy_to(p.fine.data(), sizeof(std::uint32_t) * p.fine.size(), "int8 refined coordinates");
    for (std::size_t j = 0; j < coords; ++j)
      if (!std::isfinite(p.ranges.vmin[j]) || !std::isfinite(p.ranges.vdiff[j]) ||
          !(p.ranges.vdiff[j] > 0))
        detail::fail(c.path(), at, "int8 range of coordinate " + std::to_string(j) + " is invalid");
    for (std::size_t i = 0; i < p.fine.size(); ++i)
      if (p.fine[i] >= dim_ || (i > 0 && p.fine[i] <= p.fine[i - 1]))
        detail::fail(c.path(), at, "int8 refined coordinates are not ascending below dim");
    if (rot) {
      p.rotation.resize(dim_ * dim_);
      c.copy_to(p.rotation.data(), sizeof(float) * dim_ * dim_, "int8 rotation");
      using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      const auto d = static_cast<Eigen::Index>(dim_);
      const Eigen::Map<const M> r(p.rotation.data(), d, d);
      if (!r.allFinite() ||
          ((r * r.transpose()).template cast<double>() - Eigen::MatrixXd::Identity(d, d))
                  .cwiseAbs()
                  .maxCoeff() > 1e-4)
        detail::fail(c.path(), at, "int8 rotation is not a finite orthogonal matrix");
    }
    c.skip((8 - c.offset() % 8) % 8, "padding");
    fine_count_ = static_cast<std::size_t>(fine);
    sq8_ = std::move(p);
  }

 private:
  /// T rows as float (a view for float, a converted copy for double).
  const float* as_float(const T* rows, std::size_t n) const {
    if constexpr (std::is_same_v<T, float>) {
      (void)n;
      return rows;
    } else {
      float* f = float_scratch(n);
      for (std::size_t i = 0; i < n * dim_; ++i) f[i] = static_cast<float>(rows[i]);
      return f;
    }
  }
  float* float_scratch(std::size_t n) const {
    thread_local std::vector<float> buf;  // per thread: codecs are shared by searching threads
    buf.resize(n * dim_);
    return buf.data();
  }

  // rows (n × dim) times Rᵀ (into code space) or R (back), converted through float for double.
  void rotate(const T* in, std::size_t n, T* out, bool inverse) const {
    if constexpr (std::is_same_v<T, float>) {
      detail::sq8_rotate(sq8_.rotation, in, n, dim_, out, inverse);
    } else {
      std::vector<float> a(in, in + n * dim_), b(n * dim_);
      detail::sq8_rotate(sq8_.rotation, a.data(), n, dim_, b.data(), inverse);
      std::copy(b.begin(), b.end(), out);
    }
  }

  std::size_t dim_;
  Storage storage_;
  std::size_t fine_count_;  // int8: refinement bytes per row (dim / 8; 0 in files of flag 1)
  detail::Sq8Code sq8_;     // int8 only, once trained
};

namespace detail {
/// The Storage a file names, or std::runtime_error naming the file.
inline Storage storage_from_code(std::uint32_t code, const std::filesystem::path& path) {
  if (code > static_cast<std::uint32_t>(Storage::int8))
    fail(path, 20, "unknown storage " + std::to_string(code));
  return static_cast<Storage>(code);
}
}  // namespace detail

}  // namespace mmrag
