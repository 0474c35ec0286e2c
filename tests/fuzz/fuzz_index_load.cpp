// libFuzzer target: the index loaders (IvfIndex::parse, FlatIndex::parse) (what load runs) on arbitrary bytes
// must either return a usable index or throw std::runtime_error — never crash, leak or read
// out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
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
    if (index.size() == 0 && index.dim() > 4096) return;  // an empty index may claim any dim
    const mmrag::Matrix<T> q = mmrag::Matrix<T>::Zero(1, static_cast<Eigen::Index>(index.dim()));
    (void)index.search(q, 3);
  } catch (const std::runtime_error&) {
  }
}

// The view path (what map runs): the same bytes viewed in place from an 8-byte aligned buffer.
template <class Index>
static void try_view(const std::uint8_t* data, std::size_t size) {
  auto buffer = std::make_shared<std::vector<std::uint64_t>>((size + 7) / 8);
  if (size > 0) std::memcpy(buffer->data(), data, size);
  const std::span<const char> bytes(reinterpret_cast<const char*>(buffer->data()), size);
  for (bool verify : {false, true}) {
    try {
      const auto index = Index::view(bytes, buffer, "<fuzz>", verify);
      if constexpr (requires { index.is_trained(); }) {
        if (!index.is_trained()) continue;
      }
      // An empty index may claim any dim (up to 2^32): do not allocate a query for it.
      if (index.size() == 0 && index.dim() > 4096) continue;
      const mmrag::Matrix<typename Index::Scalar> q =
          mmrag::Matrix<typename Index::Scalar>::Zero(1, static_cast<Eigen::Index>(index.dim()));
      (void)index.search(q, 3);
    } catch (const std::runtime_error&) {
    }
  }
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<char> bytes(reinterpret_cast<const char*>(data),
                                reinterpret_cast<const char*>(data) + size);
  try_parse<float>(bytes);
  try_parse<double>(bytes);
  try_parse_flat<float>(bytes);
  try_parse_flat<double>(bytes);
  try_view<mmrag::FlatIndex<float>>(data, size);
  try_view<mmrag::IvfIndex<float>>(data, size);
  return 0;
}
