#pragma once
/// @file io.hpp
/// Reading and writing embedding files: .fvecs / .ivecs (FAISS, TEXMEX), .npy (NumPy: float32,
/// float64, int64, C order) and uncompressed IDX (MNIST-style datasets).
///
/// Every format has the same pair: `read_X(path)` reads a file, `parse_X(bytes, path)` parses
/// bytes already in memory (`path` only labels the errors). Every reader checks what it reads
/// against the size before allocating, and throws std::runtime_error naming the file and the
/// byte offset of the problem (or, when a file cannot be opened, the OS reason: "cannot open
/// x.npy: No such file or directory"); a malformed file never reads out of bounds. Files are
/// little-endian (x86, ARM). All functions are reentrant; none keeps state.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mmrag/detail/intrinsics.hpp"  // first: see the file (GCC 12 false alarms)

#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"

namespace mmrag::io {

namespace detail {

// The byte toolkit lives in detail/bytes.hpp (below io in the layers); io's readers use it here.
using mmrag::detail::append;
using mmrag::detail::append_raw;
using mmrag::detail::checksum;
using mmrag::detail::Cursor;
using mmrag::detail::fail;
using mmrag::detail::read_all;
using mmrag::detail::write_all;

/// .fvecs / .ivecs: each row is an int32 dimension followed by that many 4-byte values; every
/// row must have the same dimension.
template <class T>
Matrix<T> parse_vecs(std::span<const char> bytes, const std::filesystem::path& path) {
  static_assert(sizeof(T) == 4);
  if (bytes.empty()) return Matrix<T>(0, 0);
  Cursor c(bytes, path);
  const auto d = c.get<std::int32_t>("dimension");
  if (d <= 0) fail(path, 0, "dimension must be > 0, got " + std::to_string(d));
  const std::uint64_t row_bytes = 4 + 4 * std::uint64_t(d);
  if (bytes.size() % row_bytes != 0)
    fail(path, bytes.size() - bytes.size() % row_bytes,
         "file size " + std::to_string(bytes.size()) + " is not a multiple of the row size " +
             std::to_string(row_bytes) + " (truncated or mixed dimensions)");
  const std::uint64_t n = bytes.size() / row_bytes;
  Matrix<T> m(static_cast<Eigen::Index>(n), d);
  Cursor r(bytes, path);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t at = r.offset();
    const auto di = r.get<std::int32_t>("dimension");
    if (di != d)
      fail(path, at,
           "row " + std::to_string(i) + " has dimension " + std::to_string(di) + ", expected " +
               std::to_string(d));
    r.copy_to(m.row(static_cast<Eigen::Index>(i)).data(), 4 * std::uint64_t(d), "row values");
  }
  return m;
}

template <class T>
void write_vecs(const std::filesystem::path& path, const Matrix<T>& m) {
  static_assert(sizeof(T) == 4);
  if (m.cols() > std::numeric_limits<std::int32_t>::max())
    throw std::invalid_argument("mmrag::io::write_fvecs / write_ivecs: m has " +
                                std::to_string(m.cols()) +
                                " columns, the format's int32 dimension holds at most 2^31 - 1");
  std::vector<char> out;
  out.reserve(static_cast<std::size_t>(m.rows()) * (4 + 4 * static_cast<std::size_t>(m.cols())));
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    append(out, static_cast<std::int32_t>(m.cols()));
    const char* p = reinterpret_cast<const char*>(m.row(i).data());
    out.insert(out.end(), p, p + 4 * m.cols());
  }
  write_all(path, out);
}

template <class T>
constexpr const char* npy_descr() {
  if constexpr (std::is_same_v<T, float>)
    return "<f4";
  else if constexpr (std::is_same_v<T, double>)
    return "<f8";
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return "<i8";
  else
    static_assert(sizeof(T) == 0, "npy supports float, double and int64");
}

/// Finds `'key':` in a NumPy header dict and returns what follows, trimmed.
inline std::string npy_field(const std::string& header, const std::string& key) {
  const auto k = header.find("'" + key + "'");
  if (k == std::string::npos) return {};
  auto v = header.find(':', k);
  if (v == std::string::npos) return {};
  ++v;
  while (v < header.size() && header[v] == ' ') ++v;
  return header.substr(v);
}

/// The NumPy dtype string of a header's 'descr' ('<f4'), without quotes; empty when absent.
inline std::string npy_dtype(const std::string& header) {
  const std::string d = npy_field(header, "descr");
  if (d.size() < 2 || (d[0] != '\'' && d[0] != '"')) return {};
  const auto end = d.find(d[0], 1);
  return end == std::string::npos ? std::string() : d.substr(1, end - 1);
}

/// The C++ / NumPy name of a dtype string, for messages: "<f8" -> "float64 (double)".
inline std::string dtype_name(const std::string& dtype) {
  if (dtype == "<f4") return "float32 (float)";
  if (dtype == "<f8") return "float64 (double)";
  if (dtype == "<i8") return "int64 (std::int64_t)";
  return "'" + dtype + "'";
}

template <class T>
const char* scalar_name() {
  if constexpr (std::is_same_v<T, float>)
    return "float";
  else if constexpr (std::is_same_v<T, double>)
    return "double";
  else
    return "std::int64_t";
}

/// What parse_npy_header found: the dtype, the shape (a 1-D array of n is n × 1) and where the
/// data starts.
struct NpyHeader {
  std::string dtype;
  std::uint64_t rows = 0, cols = 0;
  std::uint64_t data_at = 0;
};

/// Reads and checks a .npy header (magic, version, C order, a 1-D or 2-D shape whose extents
/// fit Eigen's index). The data size is checked by check_npy_payload, once the item size is
/// known.
inline NpyHeader parse_npy_header(std::span<const char> bytes, const std::filesystem::path& path) {
  Cursor c(bytes, path);
  char magic[6];
  c.copy_to(magic, 6, "magic");
  if (std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(path, 0, "not a .npy file (bad magic)");
  const auto major = c.get<std::uint8_t>("version");
  (void)c.get<std::uint8_t>("version");
  std::uint64_t header_len = 0;
  if (major == 1)
    header_len = c.get<std::uint16_t>("header length");
  else if (major == 2 || major == 3)
    header_len = c.get<std::uint32_t>("header length");
  else
    fail(path, 6, "unsupported .npy version " + std::to_string(major));
  c.need(header_len, "header");
  const std::string header(c.here(), static_cast<std::size_t>(header_len));
  NpyHeader h;
  h.data_at = c.offset() + header_len;
  c.skip(header_len, "header");

  h.dtype = npy_dtype(header);
  if (h.dtype.empty()) fail(path, 10, "missing or malformed 'descr' (dtype)");
  if (npy_field(header, "fortran_order").rfind("False", 0) != 0)
    fail(path, 10,
         "only C order (fortran_order False) is supported; in NumPy: np.ascontiguousarray(a)");
  const std::string shape = npy_field(header, "shape");
  if (shape.empty() || shape[0] != '(') fail(path, 10, "missing or malformed shape");
  std::vector<std::uint64_t> dims;
  std::size_t i = 1;
  while (i < shape.size() && shape[i] != ')') {
    if (shape[i] == ' ' || shape[i] == ',') {
      ++i;
      continue;
    }
    if (shape[i] < '0' || shape[i] > '9')
      fail(path, 10, "malformed shape " + shape.substr(0, shape.find(')') + 1));
    std::uint64_t v = 0;
    while (i < shape.size() && shape[i] >= '0' && shape[i] <= '9') {
      if (v > (std::numeric_limits<std::uint64_t>::max() - 9) / 10)
        fail(path, 10, "shape overflows");
      v = v * 10 + std::uint64_t(shape[i++] - '0');
    }
    dims.push_back(v);
  }
  if (i >= shape.size()) fail(path, 10, "malformed shape");
  if (dims.size() == 0 || dims.size() > 2)
    fail(path, 10,
         "only 1-D and 2-D arrays are supported, got " + std::to_string(dims.size()) + "-D");
  h.rows = dims[0];
  h.cols = dims.size() == 2 ? dims[1] : 1;
  // Each extent must fit Eigen's signed index, whatever the other one is (a 2^63 × 0 shape
  // holds no bytes but is still no matrix).
  constexpr auto max_extent = static_cast<std::uint64_t>(std::numeric_limits<Eigen::Index>::max());
  if (h.rows > max_extent || h.cols > max_extent)
    fail(path, 10,
         "shape (" + std::to_string(h.rows) + ", " + std::to_string(h.cols) +
             ") is beyond the largest matrix extent (" + std::to_string(max_extent) + ")");
  if (h.cols == 0 && h.rows > (std::uint64_t(1) << 40))
    fail(path, 10,
         "shape (" + std::to_string(h.rows) + ", 0): an empty array this long is not data");
  return h;
}

/// Checks that the data after the header holds exactly rows × cols items of item_size bytes.
inline void check_npy_payload(const NpyHeader& h, std::span<const char> bytes,
                              const std::filesystem::path& path, std::size_t item_size) {
  if (h.cols != 0 && h.rows > std::numeric_limits<std::uint64_t>::max() / h.cols / item_size)
    fail(path, 10, "shape overflows");
  const std::uint64_t payload = h.rows * h.cols * item_size;
  const std::uint64_t left = bytes.size() - h.data_at;
  if (left != payload)
    fail(path, h.data_at,
         "data holds " + std::to_string(left) + " bytes, shape needs " + std::to_string(payload));
}

/// Copies n values of type S from unaligned bytes into `out`, converting each to T.
template <class T, class S>
void convert_from(const char* p, std::uint64_t n, T* out) {
  for (std::uint64_t i = 0; i < n; ++i) {
    S v;
    std::memcpy(&v, p + i * sizeof(S), sizeof(S));
    out[i] = static_cast<T>(v);
  }
}

template <class T>
Matrix<T> parse_npy(std::span<const char> bytes, const std::filesystem::path& path, bool convert) {
  const NpyHeader h = parse_npy_header(bytes, path);
  const std::string want = npy_descr<T>();
  const bool floats = std::is_floating_point_v<T> && (h.dtype == "<f4" || h.dtype == "<f8");
  if (h.dtype != want && !(convert && floats)) {
    std::string how;
    if (h.dtype == "<f4" || h.dtype == "<f8") {
      const char* other = h.dtype == "<f4" ? "float" : "double";
      how = std::string("; read it as ") + other + " with io::read_npy<" + other + ">";
      if (std::is_floating_point_v<T>)
        how += std::string(", or convert while reading with io::read_npy_as<") + scalar_name<T>() +
               ">";
      how += std::string(" (or in NumPy: a.astype(np.") +
             (std::is_same_v<T, float> ? "float32" : "float64") + "))";
    } else if (h.dtype == "<i8") {
      how = "; read it with io::read_npy<std::int64_t>";
    } else if (h.dtype.size() == 3 && h.dtype[0] == '>') {
      how = "; big-endian data: in NumPy, a.astype(a.dtype.newbyteorder('<'))";
    }
    fail(path, 10,
         "dtype is " + dtype_name(h.dtype) + ", expected " + dtype_name(want) + " for " +
             scalar_name<T>() + how);
  }
  check_npy_payload(h, bytes, path, h.dtype == "<f4" ? 4 : 8);
  Matrix<T> m(static_cast<Eigen::Index>(h.rows), static_cast<Eigen::Index>(h.cols));
  const std::uint64_t n = h.rows * h.cols;
  const char* p = bytes.data() + h.data_at;
  if (h.dtype == want) {
    if (n > 0) std::memcpy(m.data(), p, static_cast<std::size_t>(n * sizeof(T)));
  } else if (h.dtype == "<f4") {
    convert_from<T, float>(p, n, m.data());
  } else {
    convert_from<T, double>(p, n, m.data());
  }
  return m;
}

}  // namespace detail

/// Parses .fvecs bytes (float32 rows): n × d. `path` only labels errors. Empty bytes give
/// 0 × 0. Throws std::runtime_error on a non-positive or inconsistent row dimension or a
/// truncated row.
[[nodiscard]] inline Matrix<float> parse_fvecs(std::span<const char> bytes,
                                               const std::filesystem::path& path = "<memory>") {
  return detail::parse_vecs<float>(bytes, path);
}
/// Parses .ivecs bytes (int32 rows): n × d; as parse_fvecs.
[[nodiscard]] inline Matrix<std::int32_t> parse_ivecs(
    std::span<const char> bytes, const std::filesystem::path& path = "<memory>") {
  return detail::parse_vecs<std::int32_t>(bytes, path);
}
/// Reads a .fvecs file (float32 rows): n × d. An empty file gives 0 × 0. Throws
/// std::runtime_error when the file cannot be read (with the OS reason) or is malformed.
[[nodiscard]] inline Matrix<float> read_fvecs(const std::filesystem::path& path) {
  return parse_fvecs(detail::read_all(path), path);
}
/// Reads an .ivecs file (int32 rows), e.g. ground-truth neighbour ids: n × d; as read_fvecs.
[[nodiscard]] inline Matrix<std::int32_t> read_ivecs(const std::filesystem::path& path) {
  return parse_ivecs(detail::read_all(path), path);
}
/// Writes rows as .fvecs. Throws std::runtime_error when the file cannot be written.
inline void write_fvecs(const std::filesystem::path& path, const Matrix<float>& m) {
  detail::write_vecs(path, m);
}
/// Writes rows as .ivecs. Throws std::runtime_error when the file cannot be written.
inline void write_ivecs(const std::filesystem::path& path, const Matrix<std::int32_t>& m) {
  detail::write_vecs(path, m);
}

/// Writes a 2-D .npy file (format 1.0, C order, data 64-byte aligned) of float ('<f4'), double
/// ('<f8') or std::int64_t ('<i8'): NumPy reads it with np.load. Throws std::runtime_error when
/// the file cannot be written.
template <class T>
void write_npy(const std::filesystem::path& path, const Matrix<T>& m) {
  std::string header = std::string("{'descr': '") + detail::npy_descr<T>() +
                       "', 'fortran_order': False, 'shape': (" + std::to_string(m.rows()) + ", " +
                       std::to_string(m.cols()) + "), }";
  // magic (6) + version (2) + length (2) + header + '\n' padded to a multiple of 64
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::vector<char> out = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  detail::append(out, static_cast<std::uint16_t>(header.size()));
  detail::append_raw(out, header.data(), header.size());
  detail::append_raw(out, m.data(), sizeof(T) * static_cast<std::size_t>(m.size()));
  detail::write_all(path, out);
}

/// Parses the bytes of a 1-D (n → n × 1) or 2-D .npy array in C order whose dtype is exactly
/// T's: float '<f4' (np.float32), double '<f8' (np.float64, NumPy's default), std::int64_t
/// '<i8' (np.int64, e.g. ids). `path` only labels errors. Throws std::runtime_error on a bad
/// magic, an unsupported version, dtype or layout, or a size that does not match the shape; a
/// dtype mismatch says how to read the file instead (read_npy<other type>, read_npy_as).
template <class T>
[[nodiscard]] Matrix<T> parse_npy(std::span<const char> bytes,
                                  const std::filesystem::path& path = "<memory>") {
  return detail::parse_npy<T>(bytes, path, false);
}

/// Reads a .npy file whose dtype is exactly T's: see parse_npy. Throws std::runtime_error
/// when the file cannot be read (with the OS reason) or is malformed.
template <class T>
[[nodiscard]] Matrix<T> read_npy(const std::filesystem::path& path) {
  return detail::parse_npy<T>(detail::read_all(path), path, false);
}

/// Parses a float32 or float64 .npy array as T (float or double), converting each value when
/// the dtypes differ (float64 → float rounds to nearest; float32 → double is exact). Other
/// dtypes, and the checks, as parse_npy.
template <class T>
[[nodiscard]] Matrix<T> parse_npy_as(std::span<const char> bytes,
                                     const std::filesystem::path& path = "<memory>") {
  static_assert(std::is_floating_point_v<T>, "read_npy_as converts between float and double");
  return detail::parse_npy<T>(bytes, path, true);
}

/// Reads a float32 or float64 .npy file as T (float or double), converting on request: see
/// parse_npy_as. E.g. `io::read_npy_as<float>("emb.npy")` for NumPy's default float64 output.
template <class T>
[[nodiscard]] Matrix<T> read_npy_as(const std::filesystem::path& path) {
  static_assert(std::is_floating_point_v<T>, "read_npy_as converts between float and double");
  return detail::parse_npy<T>(detail::read_all(path), path, true);
}

/// Parses an uncompressed IDX file (the MNIST / Fashion-MNIST format) of unsigned bytes:
/// magic 0x0000_08_NN (NN = number of dimensions, 1 to 4), big-endian uint32 sizes, then the
/// bytes. Returns n × (product of the other sizes) as float (labels: n × 1). `path` only labels
/// errors. Throws std::runtime_error on another element type, a truncated file or sizes that
/// do not match the data.
[[nodiscard]] inline Matrix<float> parse_idx(std::span<const char> bytes,
                                             const std::filesystem::path& path = "<memory>") {
  detail::Cursor c(bytes, path);
  auto be32 = [&](const char* what) {
    const auto v = c.get<std::uint32_t>(what);
    return (v >> 24) | ((v >> 8) & 0xff00U) | ((v << 8) & 0xff0000U) | (v << 24);
  };
  const std::uint32_t magic = be32("magic");
  if ((magic >> 8) != 0x08)
    detail::fail(path, 0,
                 "not an unsigned-byte IDX file: type byte " + std::to_string((magic >> 8) & 0xff) +
                     ", expected 8 (uint8; float, int and short IDX are not supported)");
  const std::uint32_t ndim = magic & 0xff;
  if (ndim == 0 || ndim > 4)
    detail::fail(path, 3, "IDX files must have 1 to 4 dimensions, got " + std::to_string(ndim));
  const std::uint64_t n = be32("size");
  std::uint64_t per_row = 1;
  for (std::uint32_t k = 1; k < ndim; ++k) {
    per_row *= be32("size");  // each size < 2^32 and the product is checked as it grows
    if (per_row > (std::uint64_t(1) << 32))
      detail::fail(path, c.offset(), "the sizes multiply to more than 2^32 values per item");
  }
  if (n > 0 && per_row > c.left() / n + 1)
    detail::fail(path, c.offset(), "the sizes need more bytes than the file holds");
  if (c.left() != n * per_row)
    detail::fail(path, c.offset(),
                 "data holds " + std::to_string(c.left()) + " bytes, sizes need " +
                     std::to_string(n * per_row));
  Matrix<float> m(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(per_row));
  const auto* p = reinterpret_cast<const unsigned char*>(c.here());
  for (std::uint64_t i = 0; i < n * per_row; ++i) m.data()[i] = float(p[i]);
  return m;
}

/// Reads an uncompressed IDX file: see parse_idx. (Debian ships them gzip'ed: decompress
/// first, e.g. with zlib, and call parse_idx.) Throws std::runtime_error when the file cannot
/// be read (with the OS reason) or is malformed.
[[nodiscard]] inline Matrix<float> read_idx(const std::filesystem::path& path) {
  return parse_idx(detail::read_all(path), path);
}

/// Deprecated: the old name of parse_idx (every other format names this `parse_X`). Kept so
/// existing code compiles; it will gain [[deprecated]] once no caller in this repository is left.
[[nodiscard]] inline Matrix<float> read_idx_bytes(std::span<const char> bytes,
                                                  const std::filesystem::path& path) {
  return parse_idx(bytes, path);
}

}  // namespace mmrag::io
