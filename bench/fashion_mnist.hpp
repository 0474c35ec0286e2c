#pragma once
// Loads Fashion-MNIST from Debian's dataset-fashion-mnist package (gzip'ed IDX files) with
// zlib; shared by the ANN sweep and the docs' examples. Not part of the library (zlib is not a
// dependency of mmrag), which only parses the decompressed IDX bytes (io::read_idx_bytes).

#include <zlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmrag/io.hpp"

namespace mmrag::datasets {

/// Where Debian's dataset-fashion-mnist installs the files.
inline const std::filesystem::path fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

/// The ten class names, in label order.
inline const std::vector<std::string> fashion_mnist_classes = {
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal",      "shirt",   "sneaker",  "bag",   "ankle boot"};

/// Decompresses a .gz file. Throws std::runtime_error when it is missing or corrupt.
inline std::vector<char> gunzip(const std::filesystem::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw std::runtime_error("cannot open " + path.string());
  std::vector<char> out;
  char buf[1 << 16];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + got);
  const bool ok = got == 0;
  gzclose(f);
  if (!ok) throw std::runtime_error("corrupt gzip file " + path.string());
  return out;
}

struct FashionMnist {
  Matrix<float> train_images, test_images;  // 60000 × 784 and 10000 × 784, pixels 0..255
  std::vector<int> train_labels, test_labels;
};

inline bool fashion_mnist_available(const std::filesystem::path& dir = fashion_mnist_dir) {
  return std::filesystem::exists(dir / "train-images-idx3-ubyte.gz") &&
         std::filesystem::exists(dir / "t10k-images-idx3-ubyte.gz");
}

inline FashionMnist load_fashion_mnist(const std::filesystem::path& dir = fashion_mnist_dir) {
  auto images = [&](const char* name) {
    return io::read_idx_bytes(gunzip(dir / name), dir / name);
  };
  auto labels = [&](const char* name) {
    const Matrix<float> l = io::read_idx_bytes(gunzip(dir / name), dir / name);
    return std::vector<int>(l.data(), l.data() + l.size());
  };
  FashionMnist d;
  d.train_images = images("train-images-idx3-ubyte.gz");
  d.test_images = images("t10k-images-idx3-ubyte.gz");
  d.train_labels = labels("train-labels-idx1-ubyte.gz");
  d.test_labels = labels("t10k-labels-idx1-ubyte.gz");
  return d;
}

}  // namespace mmrag::datasets
