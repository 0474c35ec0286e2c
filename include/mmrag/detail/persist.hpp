#pragma once
/// @file detail/persist.hpp
/// The file format pieces FlatIndex and IvfIndex share: the header (magic, version, scalar
/// type, metric), the trailing checksum, and blocks of stored rows (ids, modality tags,
/// vectors) with every check a reader must make. Not API: namespace mmrag::detail.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "mmrag/config.hpp"
#include "mmrag/detail/simd.hpp"
#include "mmrag/detail/bytes.hpp"
#include "mmrag/search_params.hpp"

namespace mmrag::detail {

/// 1 = float32, 2 = float64, as written in index files.
template <class T>
constexpr std::uint32_t scalar_code() noexcept {
  return sizeof(T) == 4 ? 1 : 2;
}

/// Writes "magic  u32 version  u32 scalar  u32 metric  u32 0".
template <class T>
void write_header(std::vector<char>& out, const char* magic, std::uint32_t version, Metric metric) {
  append_raw(out, magic, 8);
  append(out, version);
  append(out, scalar_code<T>());
  append(out, static_cast<std::uint32_t>(metric));
  append(out, std::uint32_t(0));
}

/// Appends the checksum over everything before it.
inline void write_checksum(std::vector<char>& out) {
  append(out, checksum(out.data(), out.size()));
}

/// Reads and verifies what `write_header` and `write_checksum` wrote — magic, version, then the
/// checksum before anything else is trusted, then the scalar type (must be T's) and the metric
/// — and returns the metric, leaving `c` after the header. `kind` names the index in messages.
template <class T>
Metric read_header(Cursor& c, const std::vector<char>& bytes,
                   const std::filesystem::path& path, const char* magic, std::uint32_t version,
                   const char* kind) {
  char found[8];
  c.copy_to(found, 8, "magic");
  if (std::memcmp(found, magic, 8) != 0)
    fail(path, 0, std::string("not an mmrag ") + kind + " file (bad magic)");
  const auto v = c.get<std::uint32_t>("version");
  if (v != version)
    fail(path, 8,
                     "unsupported version " + std::to_string(v) + " (this build reads " +
                         std::to_string(version) + ")");
  if (bytes.size() < 8 + 8) fail(path, bytes.size(), "truncated: no checksum");
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != checksum(bytes.data(), bytes.size() - 8))
    fail(path, bytes.size() - 8, "checksum mismatch: the file is corrupt or truncated");
  const auto scalar = c.get<std::uint32_t>("scalar type");
  if (scalar != scalar_code<T>())
    fail(path, 12,
                     "scalar type " + std::to_string(scalar) + " does not match this " + kind +
                         "<" + (sizeof(T) == 4 ? "float" : "double") + "> (" +
                         std::to_string(scalar_code<T>()) + ")");
  const auto metric = c.get<std::uint32_t>("metric");
  if (metric > 2) fail(path, 16, "unknown metric " + std::to_string(metric));
  (void)c.get<std::uint32_t>("reserved");
  return static_cast<Metric>(metric);
}

/// Bytes one stored row takes in a file: id, modality tag, vector. `dim` must be bounded by
/// the caller (<= 2^40) so that this cannot overflow.
template <class T>
constexpr std::uint64_t row_bytes(std::uint64_t dim) noexcept {
  return sizeof(Index) + 1 + sizeof(T) * dim;
}

/// Writes rows as count × i64 ids, count × u8 modality, count × dim scalars.
template <class T>
void write_rows(std::vector<char>& out, const std::vector<Index>& ids,
                const std::vector<Modality>& modality, const std::vector<T>& vectors) {
  append_raw(out, ids.data(), sizeof(Index) * ids.size());
  append_raw(out, modality.data(), modality.size());
  append_raw(out, vectors.data(), sizeof(T) * vectors.size());
}

/// Reads `count` rows written by `write_rows` (the caller has checked that they fit), checking
/// modality tags and finiteness, and recomputes their squared norms. `what` names the rows in
/// messages.
template <class T>
void read_rows(Cursor& c, const std::filesystem::path& path, std::uint64_t count,
               std::uint64_t dim, const std::string& what, std::vector<Index>& ids,
               std::vector<Modality>& modality, std::vector<T>& vectors, std::vector<T>& sq_norms) {
  ids.resize(static_cast<std::size_t>(count));
  modality.resize(static_cast<std::size_t>(count));
  vectors.resize(static_cast<std::size_t>(count * dim));
  sq_norms.resize(static_cast<std::size_t>(count));
  c.copy_to(ids.data(), sizeof(Index) * count, "ids");
  const std::uint64_t mod_at = c.offset();
  c.copy_to(modality.data(), count, "modality tags");
  for (Modality m : modality)
    if (m > max_modality)
      fail(path, mod_at, "modality tag " + std::to_string(m) + " > 63");
  const std::uint64_t vec_at = c.offset();
  c.copy_to(vectors.data(), sizeof(T) * count * dim, "vectors");
  for (std::size_t r = 0; r < count; ++r) {
    const T* v = vectors.data() + r * dim;
    for (std::size_t j = 0; j < dim; ++j)
      if (!std::isfinite(v[j])) fail(path, vec_at, what + " hold NaN or Inf");
    sq_norms[r] = dot_kernel<T>(v, v, static_cast<std::size_t>(dim));
  }
}

}  // namespace mmrag::detail
