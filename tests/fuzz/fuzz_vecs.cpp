// libFuzzer target: io::parse_fvecs / parse_ivecs / parse_idx on arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "mmrag/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<char> bytes(reinterpret_cast<const char*>(data),
                                reinterpret_cast<const char*>(data) + size);
  try {
    (void)mmrag::io::parse_fvecs(bytes);
  } catch (const std::runtime_error&) {
  }
  try {
    (void)mmrag::io::parse_ivecs(bytes);
  } catch (const std::runtime_error&) {
  }
  try {
    (void)mmrag::io::parse_idx(bytes, "<fuzz>");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
