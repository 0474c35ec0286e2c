#pragma once
/// @file detail/persist.hpp
/// The header and trailer every index file shares. Not API: namespace mmrag::detail.
///
/// Header, 24 bytes, little-endian:
///   offset 0   char[8] magic        ("MMRAGFLT", "MMRAGIVF", ...: which index)
///   offset 8   u32     version      (the index's format version)
///   offset 12  u32     scalar       (1 = float32, 2 = float64: the index's T)
///   offset 16  u32     metric       (0 inner_product, 1 cosine, 2 l2)
///   offset 20  u32     storage      (0 float32, 1 float16, 2 bfloat16, 3 int8; version-1
///                                     files wrote 0 here, which reads as float32)
/// Trailer: u64 checksum (detail::checksum, FNV-1a over every byte before it).

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"

namespace mmrag::detail {

/// Bytes of the common header.
inline constexpr std::uint64_t kHeaderBytes = 24;

/// 1 = float32, 2 = float64, as written in index files.
template <class T>
constexpr std::uint32_t scalar_code() noexcept {
  return sizeof(T) == 4 ? 1 : 2;
}

/// The scalar type's name for messages.
inline const char* scalar_name(std::uint32_t code) noexcept {
  return code == 1 ? "float" : code == 2 ? "double" : "unknown";
}

/// What read_header found.
struct FileHeader {
  std::uint32_t version;
  Metric metric;
  std::uint32_t storage;  ///< raw code: the index checks it against its codecs
  std::uint64_t dim = 0;  ///< read by read_index_start only
};

/// Writes the 24-byte header.
template <class T>
void write_header(std::vector<char>& out, const char* magic, std::uint32_t version, Metric metric,
                  std::uint32_t storage) {
  append_raw(out, magic, 8);
  append(out, version);
  append(out, scalar_code<T>());
  append(out, static_cast<std::uint32_t>(metric));
  append(out, storage);
}

/// Appends the checksum over everything before it.
inline void write_checksum(std::vector<char>& out) { append(out, checksum(out.data(), out.size())); }

/// Reads and verifies what `write_header` and `write_checksum` wrote — magic, version, then the
/// checksum before anything else is trusted, then the scalar type (must be T's) and the metric —
/// leaving `c` after the header. `kind` names the index in messages.
template <class T>
FileHeader read_header(Cursor& c, std::span<const char> bytes, const char* magic,
                       std::uint32_t version, const char* kind, bool verify_checksum = true) {
  const std::filesystem::path& path = c.path();
  char found[8];
  c.copy_to(found, 8, "magic");
  if (std::memcmp(found, magic, 8) != 0)
    fail(path, 0, std::string("not an mmrag ") + kind + " file (bad magic)");
  const auto v = c.get<std::uint32_t>("version");
  if (v == 0 || v > version)
    fail(path, 8,
         "unsupported version " + std::to_string(v) + " (this build reads 1 to " +
             std::to_string(version) + ")");
  if (bytes.size() < kHeaderBytes + 8) fail(path, bytes.size(), "truncated: no checksum");
  if (verify_checksum) {
    std::uint64_t stored;
    std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
    if (stored != checksum(bytes.data(), bytes.size() - 8))
      fail(path, bytes.size() - 8, "checksum mismatch: the file is corrupt or truncated");
  }
  const auto scalar = c.get<std::uint32_t>("scalar type");
  if (scalar != scalar_code<T>())
    fail(path, 12,
         std::string("scalar type ") + scalar_name(scalar) + " (" + std::to_string(scalar) +
             ") does not match this " + kind + "<" + scalar_name(scalar_code<T>()) +
             ">: load it as " + kind + "<" + scalar_name(scalar) + ">");
  const auto metric = c.get<std::uint32_t>("metric");
  if (metric > static_cast<std::uint32_t>(Metric::l2))
    fail(path, 16, "unknown metric " + std::to_string(metric));
  const auto storage = c.get<std::uint32_t>("storage");
  return {v, static_cast<Metric>(metric), storage};
}

/// Every index file starts with the header and then u64 dim.
template <class T>
void write_index_start(std::vector<char>& out, const char* magic, std::uint32_t version,
                       Metric metric, std::uint32_t storage, std::size_t dim) {
  write_header<T>(out, magic, version, metric, storage);
  append(out, static_cast<std::uint64_t>(dim));
}

/// Reads what write_index_start wrote (verifying the checksum on the way); dim must be in
/// [1, 2^32].
template <class T>
FileHeader read_index_start(Cursor& c, std::span<const char> bytes, const char* magic,
                            std::uint32_t version, const char* kind, bool verify_checksum = true) {
  FileHeader h = read_header<T>(c, bytes, magic, version, kind, verify_checksum);
  h.dim = c.get<std::uint64_t>("dim");
  if (h.dim == 0 || h.dim > (std::uint64_t(1) << 32))
    fail(c.path(), kHeaderBytes, "dim " + std::to_string(h.dim) + " is out of range");
  return h;
}

}  // namespace mmrag::detail
