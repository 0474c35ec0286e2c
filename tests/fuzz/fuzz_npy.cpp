// libFuzzer target: io::parse_npy on arbitrary bytes, for every supported dtype, and
// io::parse_npy_as (float32 <-> float64 conversion) for float and double.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "mmrag/io.hpp"

template <class T>
static void try_parse(const std::vector<char>& bytes) {
  try {
    (void)mmrag::io::parse_npy<T>(bytes);
  } catch (const std::runtime_error&) {
  }
  if constexpr (std::is_floating_point_v<T>) {
    try {
      (void)mmrag::io::parse_npy_as<T>(bytes);
    } catch (const std::runtime_error&) {
    }
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
