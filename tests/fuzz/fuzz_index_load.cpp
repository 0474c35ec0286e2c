// libFuzzer target: the index loaders (IvfIndex::parse, FlatIndex::parse) (what load runs) on arbitrary bytes
// must either return a usable index or throw std::runtime_error — never crash, leak or read
// out of bounds.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"

template <class T>
static void try_parse(const std::vector<char>& bytes) {
  try {
    const auto index = mmrag::IvfIndex<T>::parse(bytes);
    if (index.is_trained() && index.size() > 0) {  // a file that loads must also search
      const mmrag::Matrix<T> q = mmrag::Matrix<T>::Zero(1, static_cast<Eigen::Index>(index.dim()));
      (void)index.search(q, 3, {.nprobe = 2});
    }
    (void)index.serialize();
  } catch (const std::runtime_error&) {
  }
}

template <class T>
static void try_parse_flat(const std::vector<char>& bytes) {
  try {
    const auto index = mmrag::FlatIndex<T>::parse(bytes);
    const mmrag::Matrix<T> q = mmrag::Matrix<T>::Zero(1, static_cast<Eigen::Index>(index.dim()));
    (void)index.search(q, 3);
  } catch (const std::runtime_error&) {
  }
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<char> bytes(reinterpret_cast<const char*>(data),
                                reinterpret_cast<const char*>(data) + size);
  try_parse<float>(bytes);
  try_parse<double>(bytes);
  try_parse_flat<float>(bytes);
  try_parse_flat<double>(bytes);
  return 0;
}
