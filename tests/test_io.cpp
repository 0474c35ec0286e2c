// Tests for include/mmrag/io.hpp: round trips, and malformed files rejected with clear errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>

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
  CHECK_THROWS_WITH_AS((void)io::read_fvecs("/nonexistent/x.fvecs"),
                       doctest::Contains("cannot open"), std::runtime_error);
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
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path), doctest::Contains("dtype"),
                       std::runtime_error);
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
  CHECK_THROWS_AS((void)io::read_npy<float>(f.path), std::runtime_error);
  spit(f.path, std::string("\x93NUMPY\x01\x00\xff\xff", 10));
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path), doctest::Contains("truncated"),
                       std::runtime_error);
  spit(f.path, std::string("NOTNUMPY"));
  CHECK_THROWS_WITH_AS((void)io::read_npy<float>(f.path), doctest::Contains("magic"),
                       std::runtime_error);
  // Random garbage never crashes.
  std::mt19937_64 rng(1);
  for (int trial = 0; trial < 200; ++trial) {
    std::string junk = make("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 16);
    for (int k = 0; k < 4; ++k) junk[rng() % junk.size()] = char(rng());
    junk.resize(rng() % (junk.size() + 1));
    spit(f.path, junk);
    try {
      (void)io::read_npy<float>(f.path);
    } catch (const std::runtime_error&) {
    }
  }
}

TEST_CASE("idx: MNIST-style files") {
  std::string raw = std::string("\x00\x00\x08\x03", 4) + std::string("\x00\x00\x00\x02", 4) +
                    std::string("\x00\x00\x00\x02", 4) + std::string("\x00\x00\x00\x03", 4);
  for (int i = 0; i < 12; ++i) raw.push_back(char(i * 20));
  const std::vector<char> bytes(raw.begin(), raw.end());
  const auto m = io::read_idx_bytes(bytes, "mem");
  CHECK(m.rows() == 2);
  CHECK(m.cols() == 6);
  CHECK(m(1, 5) == 220.f);
  CHECK_THROWS_AS(
      (void)io::read_idx_bytes(std::vector<char>(bytes.begin(), bytes.end() - 1), "mem"),
      std::runtime_error);
  // Regression (found by fuzz_vecs): zero items whose other sizes overflow when multiplied.
  const std::string overflow("\x00\x00\x08\x03\x00\x00\x00\x00\xff\x7a\x7a\x00\xfb\x7a\x7a\x7a",
                             16);
  CHECK_THROWS_AS(
      (void)io::read_idx_bytes(std::vector<char>(overflow.begin(), overflow.end()), "mem"),
      std::runtime_error);
  std::vector<char> wrong = bytes;
  wrong[2] = 0x0d;  // float IDX: not supported
  CHECK_THROWS_AS((void)io::read_idx_bytes(wrong, "mem"), std::runtime_error);
}
