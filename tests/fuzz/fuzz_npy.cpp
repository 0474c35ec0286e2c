// libFuzzer target: io::parse_npy on arbitrary bytes, for every supported dtype.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "mmrag/io.hpp"

template <class T>
static void try_parse(const std::vector<char>& bytes) {
  try {
    (void)mmrag::io::parse_npy<T>(bytes);
  } catch (const std::runtime_error&) {
  }
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<char> bytes(reinterpret_cast<const char*>(data),
                                reinterpret_cast<const char*>(data) + size);
  try_parse<float>(bytes);
  try_parse<double>(bytes);
  try_parse<std::int64_t>(bytes);
  return 0;
}
