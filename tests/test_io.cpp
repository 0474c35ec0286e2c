// Tests for include/mmrag/io.hpp: round trips, and malformed files rejected with clear errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

#include "files.hpp"
#include "helpers.hpp"
#include "mmrag/io.hpp"

using namespace mmrag;
namespace fs = std::filesystem;
using test::slurp;
using test::spit;
using test::TempFile;

TEST_CASE("fvecs / ivecs round trip and reject malformed files") {
  TempFile f("a.fvecs"), g("a.ivecs"), bad("bad.fvecs");
  const Matrix<float> m = test::random_matrix<float>(17, 9, 1);
  io::write_fvecs(f.path, m);
  CHECK(io::read_fvecs(f.path) == m);
  Matrix<std::int32_t> ids(3, 4);
  ids << 1, 2, 3, 4, 5, 6, 7, 8, -1, 0, 99, 100000;
  io::write_ivecs(g.path, ids);
  CHECK(io::read_ivecs(g.path) == ids);
  spit(bad.path, std::string());
  CHECK(io::read_fvecs(bad.path).size() == 0);

  const std::vector<char> bytes = slurp(f.path);
  for (std::size_t cut :
       {std::size_t(1), std::size_t(3), std::size_t(4), std::size_t(39), bytes.size() - 1}) {
    spit(bad.path,
         std::vector<char>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut)));
    CHECK_THROWS_AS((void)io::read_fvecs(bad.path), std::runtime_error);
  }
  std::vector<char> mixed = bytes;
  mixed[40] = 8;  // second row claims dimension 8
  spit(bad.path, mixed);
  CHECK_THROWS_WITH_AS((void)io::read_fvecs(bad.path), doctest::Contains("dimension"),
                       std::runtime_error);
  std::vector<char> negative = bytes;
  negative[3] = char(0x80);
  spit(bad.path, negative);
  CHECK_THROWS_AS((void)io::read_fvecs(bad.path), std::runtime_error);
  CHECK_THROWS_WITH_AS(
      (void)io::read_fvecs("/nonexistent/x.fvecs"),
      doctest::Contains("cannot open /nonexistent/x.fvecs: No such file or directory"),
      std::runtime_error);
  // parse_X is the in-memory half of every read_X
  CHECK(io::parse_fvecs(bytes, "mem") == m);
  CHECK(io::parse_ivecs(slurp(g.path)) == ids);
}

TEST_CASE("npy round trip for float32, float64 and int64") {
  TempFile f("a.npy");
  const Matrix<float> a = test::random_matrix<float>(5, 3, 2);
  io::write_npy(f.path, a);
  CHECK(io::read_npy<float>(f.path) == a);
  CHECK((slurp(f.path).size() - 5 * 3 * 4) % 64 == 0);  // data starts 64-aligned
  const Matrix<double> b = test::random_matrix<double>(4, 6, 3);
  io::write_npy(f.path, b);
  CHECK(io::read_npy<double>(f.path) == b);
  Matrix<std::int64_t> c(2, 2);
  c << 1, -2, 3, 1LL << 40;
  io::write_npy(f.path, c);
  CHECK(io::read_npy<std::int64_t>(f.path) == c);
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path),
                       doctest::Contains("dtype is int64 (std::int64_t), expected float32 (float)"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS((void)io::read_npy_as<double>(f.path),
                       doctest::Contains("io::read_npy<std::int64_t>"), std::runtime_error);
}

TEST_CASE_TEMPLATE("npy: read_npy_as converts float32 <-> float64, read_npy says how", T, float,
                   double) {
  using Other = std::conditional_t<std::is_same_v<T, float>, double, float>;
  TempFile f("conv.npy");
  const Matrix<Other> stored = test::random_matrix<Other>(7, 5, 4);
  io::write_npy(f.path, stored);
  const Matrix<T> got = io::read_npy_as<T>(f.path);
  CHECK(got == stored.template cast<T>());  // each value converted exactly as static_cast does
  CHECK(io::parse_npy_as<T>(slurp(f.path)) == got);
  // The same type passes through unchanged.
  io::write_npy(f.path, got);
  CHECK(io::read_npy_as<T>(f.path) == got);
  // Without the request, the dtype is checked and the message names both types and the way out.
  io::write_npy(f.path, stored);
  const std::string file_type = std::is_same_v<T, float> ? "float64 (double)" : "float32 (float)";
  const std::string want_type = std::is_same_v<T, float> ? "float32 (float)" : "float64 (double)";
  const std::string name = std::is_same_v<T, float> ? "float" : "double";
  try {
    (void)io::read_npy<T>(f.path);
    FAIL("read_npy accepted a file of the other float type");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK(what.find(f.path.string()) != std::string::npos);
    CHECK(what.find("dtype is " + file_type + ", expected " + want_type) != std::string::npos);
    CHECK(what.find("io::read_npy_as<" + name + ">") != std::string::npos);
  }
  // A truncated float64 file read as float: the size check uses the file's 8-byte items.
  std::vector<char> cut = slurp(f.path);
  cut.pop_back();
  CHECK_THROWS_WITH_AS((void)io::parse_npy_as<T>(cut, "cut.npy"), doctest::Contains("shape needs"),
                       std::runtime_error);
  // A 1-D array converts to n × 1.
  Matrix<Other> column(3, 1);
  column << Other(0.5), Other(-2), Other(1e3);
  io::write_npy(f.path, column);
  const Matrix<T> c = io::read_npy_as<T>(f.path);
  CHECK(c.rows() == 3);
  CHECK(c.cols() == 1);
  CHECK(c(2, 0) == T(1e3));
}

TEST_CASE("npy and IDX: missing files and directories give the OS reason") {
  CHECK_THROWS_WITH_AS(
      (void)io::read_npy<float>("/nonexistent/e.npy"),
      doctest::Contains("cannot open /nonexistent/e.npy: No such file or directory"),
      std::runtime_error);
  CHECK_THROWS_WITH_AS((void)io::read_npy_as<float>(fs::temp_directory_path()),
                       doctest::Contains("Is a directory"), std::runtime_error);
  CHECK_THROWS_WITH_AS((void)io::read_idx("/nonexistent/t10k-labels-idx1-ubyte"),
                       doctest::Contains("No such file or directory"), std::runtime_error);
}

TEST_CASE("npy: a 1-D array and hand-written headers (NumPy's own spelling)") {
  TempFile f("h.npy");
  auto make = [](const std::string& dict, std::size_t payload_bytes, char version = 1) {
    std::string header = dict;
    while ((10 + header.size() + 1) % 64) header.push_back(' ');
    header.push_back('\n');
    std::string out = std::string("\x93NUMPY", 6) + char(version) + char(0);
    out.push_back(char(header.size() & 0xff));
    out.push_back(char(header.size() >> 8));
    return out + header + std::string(payload_bytes, '\0');
  };
  spit(f.path, make("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12));
  const auto v = io::read_npy<float>(f.path);
  CHECK(v.rows() == 3);
  CHECK(v.cols() == 1);
  spit(f.path, make("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16));
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path), doctest::Contains("C order"),
                       std::runtime_error);
  spit(f.path, make("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 15));
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path), doctest::Contains("shape needs"),
                       std::runtime_error);
  spit(f.path, make("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", 32));
  CHECK_THROWS_AS((void)io::read_npy<float>(f.path), std::runtime_error);
  spit(f.path,
       make("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 2), }", 0));
  CHECK_THROWS_AS((void)io::read_npy<float>(f.path), std::runtime_error);
  spit(f.path,
       make("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", 0));
  CHECK_THROWS_AS((void)io::read_npy<float>(f.path), std::runtime_error);
  spit(f.path, make("{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1), }", 4));
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path), doctest::Contains("big-endian"),
                       std::runtime_error);
  spit(f.path, make("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1), }", 1));
  CHECK_THROWS_WITH_AS((void)io::read_npy_as<float>(f.path),
                       doctest::Contains("dtype is '|u1', expected float32 (float)"),
                       std::runtime_error);
  spit(f.path, std::string("\x93NUMPY\x01\x00\xff\xff", 10));
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path), doctest::Contains("truncated"),
                       std::runtime_error);
  spit(f.path, std::string("NOTNUMPY"));
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path), doctest::Contains("magic"),
                       std::runtime_error);
  // Shapes beyond Eigen's index range with no data at all: no matrix, whatever the dtype.
  // (Arbitrary bytes are covered by tests/fuzz/fuzz_npy.cpp, whose seeds include these two.)
  for (const char* shape : {"(9223372036854775808, 0)", "(4611686018427387904, 0)",
                            "(0, 9223372036854775808)", "(18446744073709551615,)"}) {
    CAPTURE(shape);
    spit(
        f.path,
        make(std::string("{'descr': '<f4', 'fortran_order': False, 'shape': ") + shape + ", }", 0));
    CHECK_THROWS_AS((void)io::read_npy<float>(f.path), std::runtime_error);
    CHECK_THROWS_AS((void)io::read_npy_as<double>(f.path), std::runtime_error);
  }
  spit(f.path,
       make("{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775808, 0), }", 0));
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path),
                       doctest::Contains("beyond the largest matrix extent"), std::runtime_error);
  // (0, 3) and (3, 0) are legitimate empty arrays.
  spit(f.path, make("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 0), }", 0));
  CHECK(io::read_npy<double>(f.path).rows() == 3);
  spit(f.path, make("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3), }", 0));
  CHECK(io::read_npy<double>(f.path).cols() == 3);
}

TEST_CASE("idx: MNIST-style files, read_idx / parse_idx and the old read_idx_bytes name") {
  std::string raw = std::string("\x00\x00\x08\x03", 4) + std::string("\x00\x00\x00\x02", 4) +
                    std::string("\x00\x00\x00\x02", 4) + std::string("\x00\x00\x00\x03", 4);
  for (int i = 0; i < 12; ++i) raw.push_back(char(i * 20));
  const std::vector<char> bytes(raw.begin(), raw.end());
  const auto m = io::parse_idx(bytes, "mem");
  CHECK(m.rows() == 2);
  CHECK(m.cols() == 6);
  CHECK(m(1, 5) == 220.f);
  TempFile f("images-idx3-ubyte");
  spit(f.path, bytes);
  CHECK(io::read_idx(f.path) == m);
  CHECK(io::read_idx_bytes(bytes, "mem") == m);  // deprecated alias, same result
  CHECK_THROWS_WITH_AS(
      (void)io::parse_idx(std::vector<char>(bytes.begin(), bytes.end() - 1), "mem"),
      doctest::Contains("mem at byte 16"), std::runtime_error);
  // Regression (found by fuzz_vecs): zero items whose other sizes overflow when multiplied.
  const std::string overflow("\x00\x00\x08\x03\x00\x00\x00\x00\xff\x7a\x7a\x00\xfb\x7a\x7a\x7a",
                             16);
  CHECK_THROWS_AS((void)io::parse_idx(std::vector<char>(overflow.begin(), overflow.end())),
                  std::runtime_error);
  std::vector<char> wrong = bytes;
  wrong[2] = 0x0d;  // float IDX: not supported, and the message says which type it found
  spit(f.path, wrong);
  CHECK_THROWS_WITH_AS((void)io::read_idx(f.path), doctest::Contains("type byte 13, expected 8"),
                       std::runtime_error);
}
