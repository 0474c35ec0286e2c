#pragma once
/// @file detail/bytes.hpp
/// The byte toolkit every file reader and writer shares: whole-file read and write with OS
/// errors in the message, little-endian append, a bounds-checked cursor over a byte span, and
/// the FNV-1a checksum index files end with. Not API: namespace mmrag::detail. Includes nothing
/// of mmrag.

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace mmrag::detail {

/// Throws std::runtime_error "mmrag: <path> at byte <offset>: <what>" (corrupt or truncated data).
[[noreturn]] inline void fail(const std::filesystem::path& path, std::uint64_t offset,
                              const std::string& what) {
  throw std::runtime_error("mmrag: " + path.string() + " at byte " + std::to_string(offset) +
                           ": " + what);
}

/// "<verb> <path>: <OS reason>" for the errno left by a failed open/read/write.
inline std::string os_error(const char* verb, const std::filesystem::path& path, int err) {
  return std::string("mmrag: cannot ") + verb + " " + path.string() + ": " +
         std::generic_category().message(err);
}

/// The whole file. Throws std::runtime_error naming the file and the OS reason when it cannot
/// be opened or read.
inline std::vector<char> read_all(const std::filesystem::path& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(os_error("open", path, errno ? errno : ENOENT));
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw std::runtime_error(os_error("read", path, EISDIR));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw std::runtime_error(os_error("read", path, errno ? errno : EIO));
  in.seekg(0);
  std::vector<char> bytes(static_cast<std::size_t>(size));
  if (size > 0 && !in.read(bytes.data(), size))
    throw std::runtime_error(os_error("read", path, errno ? errno : EIO));
  return bytes;
}

/// Writes `bytes` to `path` (truncating). Throws std::runtime_error with the OS reason.
inline void write_all(const std::filesystem::path& path, std::span<const char> bytes) {
  errno = 0;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(os_error("create", path, errno ? errno : EACCES));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out.flush()) throw std::runtime_error(os_error("write", path, errno ? errno : EIO));
}

/// Appends n raw bytes (resize + memcpy: GCC 12 warns falsely on insert into an empty vector).
inline void append_raw(std::vector<char>& out, const void* p, std::size_t n) {
  if (n == 0) return;
  const std::size_t at = out.size();
  out.resize(at + n);
  std::memcpy(out.data() + at, p, n);
}

/// Appends the bytes of a trivially copyable value (little-endian on the platforms we support).
template <class V>
void append(std::vector<char>& out, const V& v) {
  append_raw(out, &v, sizeof(V));
}

/// FNV-1a over 64-bit words (then the tail bytes), mixed with the length: the checksum index
/// files end with. Not cryptographic; it catches truncation and flipped bits.
inline std::uint64_t checksum(const char* p, std::size_t n) noexcept {
  std::uint64_t h = 14695981039346656037ULL;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 1099511628211ULL;
  }
  for (; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 1099511628211ULL;
  return h ^ n;
}

/// A bounds-checked reader over a byte span: every read first checks that the bytes are there
/// and throws (via `fail`, with the path and offset) when they are not.
class Cursor {
 public:
  Cursor(std::span<const char> bytes, const std::filesystem::path& path)
      : bytes_(bytes), path_(path) {}
  [[nodiscard]] std::uint64_t offset() const noexcept { return pos_; }
  [[nodiscard]] std::uint64_t left() const noexcept { return bytes_.size() - pos_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  void need(std::uint64_t n, const char* what) const {
    if (n > left())
      fail(path_, pos_,
           std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
               std::to_string(left()) + " left");
  }
  template <class V>
  V get(const char* what) {
    need(sizeof(V), what);
    V v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(V));
    pos_ += sizeof(V);
    return v;
  }
  void copy_to(void* dst, std::uint64_t n, const char* what) {
    need(n, what);
    if (n > 0) std::memcpy(dst, bytes_.data() + pos_, static_cast<std::size_t>(n));
    pos_ += n;
  }
  [[nodiscard]] const char* here() const noexcept { return bytes_.data() + pos_; }
  void skip(std::uint64_t n, const char* what = "data") {
    need(n, what);
    pos_ += n;
  }

 private:
  std::span<const char> bytes_;
  const std::filesystem::path& path_;
  std::uint64_t pos_ = 0;
};

}  // namespace mmrag::detail
