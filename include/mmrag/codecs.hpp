#pragma once
/// @file codecs.hpp
/// How an index stores its rows: the `Storage` kind and the `Codec` that encodes rows into
/// codes, decodes them, and hands the search driver rows it can score. This is the only place
/// that knows the layout of a stored row (FAISS's `code_size` / `sa_encode` / `sa_decode` seam).
///
/// `Storage::float32` keeps rows at the index's own scalar type T, uncompressed (float32 for
/// `Index<float>`, float64 for `Index<double>`): the codec is the identity and search is exact.
/// The compressed kinds (float16, bfloat16, int8) are declared here so that files and APIs
/// carry them; an index constructed with one whose kernels are not built into this version
/// throws std::invalid_argument naming the storage.
///
/// Thread safety: a trained codec is immutable; encode/decode/score are const and reentrant.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"

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
template <class T>
class Codec {
 public:
  /// A codec for `dim`-dimensional rows. Throws std::invalid_argument for a storage this
  /// version cannot encode.
  Codec(std::size_t dim, Storage storage) : dim_(dim), storage_(storage) {
    if (storage != Storage::float32)
      throw std::invalid_argument(std::string("mmrag::Codec: storage ") + to_string(storage) +
                                  " is not available in this version (use Storage::float32)");
  }

  [[nodiscard]] std::size_t dim() const noexcept { return dim_; }
  [[nodiscard]] Storage storage() const noexcept { return storage_; }
  /// Bytes one encoded row takes.
  [[nodiscard]] std::size_t code_size() const noexcept { return dim_ * sizeof(T); }
  /// True when stored rows are the T values themselves (decode is free and exact).
  [[nodiscard]] bool is_identity() const noexcept { return storage_ == Storage::float32; }
  /// True when the codec needs `train` before `encode` (int8's per-dimension ranges).
  [[nodiscard]] bool needs_training() const noexcept { return false; }

  /// Encodes n rows (n × dim, row-major, contiguous) into n × code_size() bytes.
  void encode(const T* rows, std::size_t n, std::uint8_t* codes) const noexcept {
    if (n > 0) std::memcpy(codes, rows, n * code_size());
  }

  /// Rows [0, n) of `codes` as T values: a pointer into `codes` itself for the identity codec,
  /// else decoded into `scratch` (resized as needed).
  [[nodiscard]] const T* rows(const std::uint8_t* codes, std::size_t n,
                              std::vector<T>& scratch) const {
    if (is_identity()) return reinterpret_cast<const T*>(codes);
    scratch.resize(n * dim_);
    decode(codes, n, scratch.data());
    return scratch.data();
  }

  /// Decodes n codes into n × dim T values.
  void decode(const std::uint8_t* codes, std::size_t n, T* out) const noexcept {
    if (n > 0) std::memcpy(out, codes, n * code_size());
  }

  /// Bytes of codec parameters (0 for float32).
  [[nodiscard]] std::size_t memory_bytes() const noexcept { return 0; }

 private:
  std::size_t dim_;
  Storage storage_;
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
