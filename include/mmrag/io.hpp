#pragma once
/// @file io.hpp
/// Reading and writing embedding files: .fvecs / .ivecs (FAISS, TEXMEX), .npy (NumPy: float32,
/// float64, int64, C order) and uncompressed IDX (MNIST-style datasets).
///
/// Every reader checks what it reads against the file's size before allocating, and throws
/// std::runtime_error naming the file and the byte offset of the problem; a malformed file
/// never reads out of bounds. Files are little-endian (x86, ARM).

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mmrag/config.hpp"
#include "mmrag/detail/bytes.hpp"

namespace mmrag::io {

namespace detail {

// The byte toolkit lives in detail/bytes.hpp (below io in the layers); io's readers use it here.
using mmrag::detail::append;
using mmrag::detail::checksum;
using mmrag::detail::Cursor;
using mmrag::detail::fail;
using mmrag::detail::read_all;
using mmrag::detail::write_all;

/// .fvecs / .ivecs: each row is an int32 dimension followed by that many 4-byte values; every
/// row must have the same dimension.
template <class T>
Matrix<T> parse_vecs(const std::vector<char>& bytes, const std::filesystem::path& path) {
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
    throw std::invalid_argument("mmrag::io: too many columns for the vecs format");
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

}  // namespace detail

/// Parses .fvecs bytes (float32 rows): n × d; `name` labels errors. Empty bytes give 0 × 0.
inline Matrix<float> parse_fvecs(const std::vector<char>& bytes,
                                 const std::filesystem::path& name = "<memory>") {
  return detail::parse_vecs<float>(bytes, name);
}
/// Parses .ivecs bytes (int32 rows): n × d.
inline Matrix<std::int32_t> parse_ivecs(const std::vector<char>& bytes,
                                        const std::filesystem::path& name = "<memory>") {
  return detail::parse_vecs<std::int32_t>(bytes, name);
}
/// Reads a .fvecs file (float32 rows): n × d. An empty file gives 0 × 0.
inline Matrix<float> read_fvecs(const std::filesystem::path& path) {
  return parse_fvecs(detail::read_all(path), path);
}
/// Reads an .ivecs file (int32 rows), e.g. ground-truth neighbour ids: n × d.
inline Matrix<std::int32_t> read_ivecs(const std::filesystem::path& path) {
  return parse_ivecs(detail::read_all(path), path);
}
/// Writes rows as .fvecs.
inline void write_fvecs(const std::filesystem::path& path, const Matrix<float>& m) {
  detail::write_vecs(path, m);
}
/// Writes rows as .ivecs.
inline void write_ivecs(const std::filesystem::path& path, const Matrix<std::int32_t>& m) {
  detail::write_vecs(path, m);
}

/// Writes a 2-D .npy file (format 1.0, C order) of float, double or int64.
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
  out.insert(out.end(), header.begin(), header.end());
  const char* p = reinterpret_cast<const char*>(m.data());
  out.insert(out.end(), p, p + sizeof(T) * static_cast<std::size_t>(m.size()));
  detail::write_all(path, out);
}

/// Parses the bytes of a 1-D (n → n × 1) or 2-D .npy file in C order whose dtype is exactly T's
/// (float: '<f4', double: '<f8', std::int64_t: '<i8'). Throws std::runtime_error on a bad magic,
/// an unsupported version, dtype or layout, or a size that does not match the shape.
template <class T>
Matrix<T> parse_npy(const std::vector<char>& bytes,
                    const std::filesystem::path& path = "<memory>") {
  detail::Cursor c(bytes, path);
  char magic[6];
  c.copy_to(magic, 6, "magic");
  if (std::memcmp(magic, "\x93NUMPY", 6) != 0) detail::fail(path, 0, "not a .npy file (bad magic)");
  const auto major = c.get<std::uint8_t>("version");
  (void)c.get<std::uint8_t>("version");
  std::uint64_t header_len = 0;
  if (major == 1)
    header_len = c.get<std::uint16_t>("header length");
  else if (major == 2 || major == 3)
    header_len = c.get<std::uint32_t>("header length");
  else
    detail::fail(path, 6, "unsupported .npy version " + std::to_string(major));
  c.need(header_len, "header");
  const std::string header(c.here(), static_cast<std::size_t>(header_len));
  const std::uint64_t data_at = c.offset() + header_len;
  c.skip(header_len);

  const std::string descr = detail::npy_field(header, "descr");
  const std::string want = std::string("'") + detail::npy_descr<T>() + "'";
  if (descr.rfind(want, 0) != 0)
    detail::fail(path, 10, "dtype must be " + want + ", got " + descr.substr(0, descr.find(',')));
  if (detail::npy_field(header, "fortran_order").rfind("False", 0) != 0)
    detail::fail(path, 10, "only C order (fortran_order False) is supported");
  const std::string shape = detail::npy_field(header, "shape");
  if (shape.empty() || shape[0] != '(') detail::fail(path, 10, "missing or malformed shape");
  std::vector<std::uint64_t> dims;
  std::size_t i = 1;
  while (i < shape.size() && shape[i] != ')') {
    if (shape[i] == ' ' || shape[i] == ',') {
      ++i;
      continue;
    }
    if (shape[i] < '0' || shape[i] > '9')
      detail::fail(path, 10, "malformed shape " + shape.substr(0, shape.find(')') + 1));
    std::uint64_t v = 0;
    while (i < shape.size() && shape[i] >= '0' && shape[i] <= '9') {
      if (v > (std::numeric_limits<std::uint64_t>::max() - 9) / 10)
        detail::fail(path, 10, "shape overflows");
      v = v * 10 + std::uint64_t(shape[i++] - '0');
    }
    dims.push_back(v);
  }
  if (i >= shape.size()) detail::fail(path, 10, "malformed shape");
  if (dims.size() == 0 || dims.size() > 2)
    detail::fail(
        path, 10,
        "only 1-D and 2-D arrays are supported, got " + std::to_string(dims.size()) + "-D");
  const std::uint64_t rows = dims[0], cols = dims.size() == 2 ? dims[1] : 1;
  // Each extent must fit Eigen's signed index, whatever the other one is (a 2^63 × 0 shape
  // holds no bytes but is still no matrix).
  constexpr auto max_extent = static_cast<std::uint64_t>(std::numeric_limits<Eigen::Index>::max());
  if (rows > max_extent || cols > max_extent)
    detail::fail(path, 10,
                 "shape (" + std::to_string(rows) + ", " + std::to_string(cols) +
                     ") is beyond the largest matrix extent (" + std::to_string(max_extent) + ")");
  if (cols != 0 && rows > std::numeric_limits<std::uint64_t>::max() / cols / sizeof(T))
    detail::fail(path, 10, "shape overflows");
  if (cols == 0 && rows > (std::uint64_t(1) << 40))
    detail::fail(path, 10,
                 "shape (" + std::to_string(rows) + ", 0): an empty array this long is not data");
  const std::uint64_t payload = rows * cols * sizeof(T);
  if (c.left() != payload)
    detail::fail(path, data_at,
                 "data holds " + std::to_string(c.left()) + " bytes, shape needs " +
                     std::to_string(payload));
  Matrix<T> m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  c.copy_to(m.data(), payload, "data");
  return m;
}

/// Reads a .npy file: see parse_npy.
template <class T>
Matrix<T> read_npy(const std::filesystem::path& path) {
  return parse_npy<T>(detail::read_all(path), path);
}

/// Parses an uncompressed IDX file (the MNIST / Fashion-MNIST format) of unsigned bytes:
/// magic 0x0000_08_NN (NN = number of dimensions), big-endian int32 sizes, then the bytes.
/// Returns n × (product of the other sizes) as float (labels: n × 1).
inline Matrix<float> read_idx_bytes(const std::vector<char>& bytes,
                                    const std::filesystem::path& path) {
  detail::Cursor c(bytes, path);
  auto be32 = [&](const char* what) {
    const auto v = c.get<std::uint32_t>(what);
    return (v >> 24) | ((v >> 8) & 0xff00U) | ((v << 8) & 0xff0000U) | (v << 24);
  };
  const std::uint32_t magic = be32("magic");
  if ((magic >> 8) != 0x08)
    detail::fail(path, 0, "not an unsigned-byte IDX file (magic " + std::to_string(magic) + ")");
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

}  // namespace mmrag::io
