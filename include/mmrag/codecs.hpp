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
/// dimension.
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

namespace mmrag {

/// Row storage of an index. Bytes per stored value: float32 4 (or 8 for a double index),
/// float16 2, bfloat16 2, int8 1 (SQ8: per-dimension min/max, as FAISS's QT_8bit).
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
///   Needs `train` (the indexes train it on their first data; see their docs).
/// The kernels are in detail/float16.hpp, detail/bfloat16.hpp and detail/int8.hpp (one header
/// per instruction family, chosen by the consumer's compile flags, portable fallbacks).
template <class T>
class Codec {
 public:
  /// A codec for `dim`-dimensional rows. Throws std::invalid_argument for an unknown storage.
  Codec(std::size_t dim, Storage storage) : dim_(dim), storage_(storage) {
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
        return dim_;
      default:
        return dim_ * sizeof(T);
    }
  }
  /// True when stored rows are the T values themselves (decode is free and exact).
  [[nodiscard]] bool is_identity() const noexcept { return storage_ == Storage::float32; }
  /// True when `encode` may be called: always, except int8 before `train`.
  [[nodiscard]] bool is_trained() const noexcept {
    return storage_ != Storage::int8 || sq8_.dim() == dim_;
  }

  /// Learns what the storage needs from n rows (n × dim, finite): int8's per-dimension ranges;
  /// nothing for the others. Throws std::invalid_argument when n = 0 for int8.
  void train(const T* rows, std::size_t n) {
    if (storage_ != Storage::int8) return;
    if (n == 0) throw std::invalid_argument("mmrag::Codec::train: int8 storage needs rows, got 0");
    std::vector<float> f(n * dim_);
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(rows[i]);
    sq8_ = detail::train_sq8(f.data(), n, dim_);
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
        detail::encode_sq8(sq8_, f, n, codes);
    }
  }

  /// Rows [0, n) of `codes` as T values: a pointer into `codes` itself for the identity codec,
  /// else decoded into `scratch` (resized as needed). With an `offset` (dim values: an IVF
  /// cell's centroid, for residual codes) each row is fl(offset + decoded code) — the one
  /// rounding every path (scan, rescoring, norms, files) sees.
  [[nodiscard]] const T* rows(const std::uint8_t* codes, std::size_t n, std::vector<T>& scratch,
                              const T* offset = nullptr) const {
    if (is_identity() && offset == nullptr) return reinterpret_cast<const T*>(codes);
    scratch.resize(n * dim_);
    decode(codes, n, scratch.data());
    if (offset)
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t j = 0; j < dim_; ++j) scratch[r * dim_ + j] += offset[j];
    return scratch.data();
  }

  /// Decodes n codes into n × dim T values.
  void decode(const std::uint8_t* codes, std::size_t n, T* out) const {
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
        detail::decode_sq8(sq8_, codes, n, f);
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
    bool on_codes = true;
  };
  void prepare_scan(const T* q, ScanQuery& prepared) const {
    prepared.on_codes = scores_codes();
    if constexpr (std::is_same_v<T, float>) {
      if (storage_ == Storage::int8 && prepared.on_codes) {
        detail::prepare_sq8_query(sq8_, q, prepared.sq8);
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
          detail::dot_many_u8(prepared.sq8.scaled.data(), codes, n, dim_, out);
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

  /// Bytes of codec parameters (int8: two floats per dimension).
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    return (sq8_.vmin.capacity() + sq8_.vdiff.capacity()) * sizeof(float);
  }

  /// Appends the parameters: u64 trained flag, then for int8 dim × f32 vmin and dim × f32
  /// vdiff, zero-padded to 8 bytes.
  void write(std::vector<char>& out) const {
    const bool has = storage_ == Storage::int8 && is_trained();
    detail::append(out, static_cast<std::uint64_t>(has ? 1 : 0));
    if (!has) return;
    detail::append_raw(out, sq8_.vmin.data(), sizeof(float) * dim_);
    detail::append_raw(out, sq8_.vdiff.data(), sizeof(float) * dim_);
    out.resize((out.size() + 7) / 8 * 8, 0);
  }

  /// Reads what `write` wrote; throws std::runtime_error (via detail::fail) on a bad flag,
  /// truncation, or ranges that are not finite and positive.
  void read(detail::Cursor& c) {
    const std::uint64_t at = c.offset();
    const auto has = c.get<std::uint64_t>("codec flag");
    if (has > 1 || (has == 1 && storage_ != Storage::int8))
      detail::fail(c.path(), at, "bad codec parameter flag " + std::to_string(has));
    if (has == 0) return;
    c.need(2 * sizeof(float) * std::uint64_t(dim_), "int8 ranges");
    detail::Sq8Params p;
    p.vmin.resize(dim_);
    p.vdiff.resize(dim_);
    c.copy_to(p.vmin.data(), sizeof(float) * dim_, "int8 minima");
    c.copy_to(p.vdiff.data(), sizeof(float) * dim_, "int8 ranges");
    for (std::size_t j = 0; j < dim_; ++j)
      if (!std::isfinite(p.vmin[j]) || !std::isfinite(p.vdiff[j]) || !(p.vdiff[j] > 0))
        detail::fail(c.path(), at, "int8 range of dimension " + std::to_string(j) + " is invalid");
    c.skip((8 - c.offset() % 8) % 8, "padding");
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

  std::size_t dim_;
  Storage storage_;
  detail::Sq8Params sq8_;  // int8 only, once trained
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
