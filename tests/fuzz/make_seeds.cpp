// Writes the seed corpus of the fuzz targets (small valid files of each format) into the
// folder given as argv[1]. Run by tests/fuzz/run.sh when the corpus folders are empty.
#include <filesystem>
#include <fstream>
#include <string>

#include "mmrag/flat_index.hpp"
#include "mmrag/io.hpp"
#include "mmrag/ivf_index.hpp"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path root = argc > 1 ? argv[1] : "corpus";
  for (const char* d : {"ivf", "npy", "vecs"}) fs::create_directories(root / d);
  mmrag::Matrix<float> x(12, 3);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float((i * 7) % 11) - 5.f;
  for (auto metric : {mmrag::Metric::l2, mmrag::Metric::cosine}) {
    mmrag::IvfIndex<float> f(3, 2, metric);
    f.train(x);
    const std::vector<mmrag::Modality> mods = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
    f.add(x, {}, mods);
    f.save(root / "ivf" / (std::string("float_") + mmrag::to_string(metric) + ".ivf"));
  }
  mmrag::FlatIndex<float> flat(3, mmrag::Metric::l2);
  flat.add(x);
  flat.save(root / "ivf" / "flat.idx");
  // int8 codes: plain (3 dims) and rotated with refinement bytes (16 dims of rank 3).
  mmrag::FlatIndex<float> sq8(3, mmrag::Metric::l2, mmrag::Storage::int8);
  sq8.add(x);
  sq8.save(root / "ivf" / "flat_int8.idx");
  mmrag::Matrix<float> wide(80, 16);
  for (Eigen::Index i = 0; i < wide.rows(); ++i)
    for (Eigen::Index j = 0; j < wide.cols(); ++j)
      wide(i, j) = x(i % 12, j % 3) * float(1 + j) + 0.01f * float((i * 13 + j * 5) % 7);
  mmrag::FlatIndex<float> rotated(16, mmrag::Metric::cosine, mmrag::Storage::int8);
  rotated.add(wide);
  rotated.save(root / "ivf" / "flat_int8_rotated.idx");
  mmrag::IvfIndex<float> ivf8(16, 2, mmrag::Metric::l2, mmrag::Storage::int8);
  ivf8.train(wide);
  ivf8.add(wide.topRows(20));
  ivf8.save(root / "ivf" / "ivf_int8.ivf");
  mmrag::IvfIndex<double> d(3, 2, mmrag::Metric::inner_product);
  d.save(root / "ivf" / "double_untrained.ivf");
  mmrag::io::write_npy(root / "npy" / "f4.npy", x);
  mmrag::io::write_npy(root / "npy" / "f8.npy", mmrag::Matrix<double>(x.cast<double>()));
  mmrag::Matrix<std::int64_t> ids(2, 2);
  ids << 1, 2, 3, 4;
  mmrag::io::write_npy(root / "npy" / "i8.npy", ids);
  // Shapes beyond Eigen's index range that hold no data (regressions: must be rejected).
  for (const char* shape : {"(9223372036854775808, 0)", "(4611686018427387904, 0)"}) {
    std::string header =
        std::string("{'descr': '<f4', 'fortran_order': False, 'shape': ") + shape + ", }";
    while ((10 + header.size() + 1) % 64) header.push_back(' ');
    header.push_back('\n');
    std::ofstream npy(
        root / "npy" / (std::string("empty_") + (shape[1] == '9' ? "2e63" : "2e62") + ".npy"),
        std::ios::binary);
    npy.write("\x93NUMPY\x01\x00", 8);
    const char len[2] = {char(header.size() & 0xff), char(header.size() >> 8)};
    npy.write(len, 2);
    npy.write(header.data(), static_cast<std::streamsize>(header.size()));
  }
  mmrag::io::write_fvecs(root / "vecs" / "a.fvecs", x);
  mmrag::io::write_ivecs(root / "vecs" / "a.ivecs",
                         mmrag::Matrix<std::int32_t>(x.cast<std::int32_t>()));
  std::ofstream idx(root / "vecs" / "labels.idx", std::ios::binary);
  idx.write("\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03", 11);
  return 0;
}
