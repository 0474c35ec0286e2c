// libFuzzer target: HnswIndex::parse (what load runs) on arbitrary bytes must either return a
// usable index or throw std::runtime_error — never crash, leak, loop or read out of bounds. Each
// input is tried twice: as given (almost always stopped by the checksum) and with a valid
// checksum written over its last 8 bytes, so the structural checks behind the checksum (counts,
// levels, links, entry point) are fuzzed too. A parsed index must then search (plain and
// filtered), add, remove and serialize. The seeds cover every storage (codes and codec
// parameters in the file).
//
// Built with -DMMRAG_FUZZ_WRITE_SEEDS it is instead a program writing the seed corpus (small
// valid files) into the folder given as argv[1] (tests/fuzz/run.sh does this).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmrag/hnsw_index.hpp"

template <class T>
static void try_parse(const std::vector<char>& bytes) {
  try {
    auto index = mmrag::HnswIndex<T>::parse(bytes);
    if (index.dim() > 4096) {  // an empty index may claim any dim: do not allocate for it
      (void)index.serialize();
      return;
    }
    const mmrag::Matrix<T> q = mmrag::Matrix<T>::Ones(1, static_cast<Eigen::Index>(index.dim()));
    if (index.size() > 0) {
      (void)index.search(q, 3, {.ef_search = 4});
      mmrag::HnswSearchParams p{.ef_search = 2};
      p.filter.modalities = mmrag::ModalitySet{1};
      (void)index.search(q, 2, p);
      const auto first = index.search(q, 1).ids(0, 0);
      if (first >= 0) index.remove_ids(std::vector<mmrag::Index>{first});
    }
    index.add(q);
    (void)index.search(q, 2);
    (void)index.serialize();
  } catch (const std::runtime_error&) {
  } catch (const std::invalid_argument&) {  // add() after a file with ids near INT64_MAX
  }
}

#ifdef MMRAG_FUZZ_WRITE_SEEDS
int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path dir = argc > 1 ? argv[1] : "seeds/hnsw";
  fs::create_directories(dir);
  mmrag::Matrix<float> x(40, 3);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float((i * 7) % 11) - 5.f;
  std::vector<mmrag::Modality> mods(40);
  for (std::size_t i = 0; i < mods.size(); ++i) mods[i] = mmrag::Modality(i % 3);
  for (auto metric : {mmrag::Metric::l2, mmrag::Metric::cosine, mmrag::Metric::inner_product}) {
    mmrag::HnswIndex<float> f(3, metric, {.M = 2, .ef_construction = 8});
    f.add(x, {}, mods);
    f.remove_ids(std::vector<mmrag::Index>{3, 17});
    f.save(dir / (std::string("float_") + mmrag::to_string(metric) + ".hnsw"));
  }
  mmrag::HnswIndex<double> d(3, mmrag::Metric::l2, {.M = 4, .ef_construction = 8});
  d.add(x.cast<double>().topRows(10));
  d.save(dir / "double.hnsw");
  mmrag::HnswIndex<float> empty(5, mmrag::Metric::l2);
  empty.save(dir / "empty.hnsw");
  // Compressed storage: codes in the node blocks, the codec's parameters in the file (int8:
  // ranges, refined coordinates; an empty int8 index has none).
  for (auto storage : {mmrag::Storage::float16, mmrag::Storage::bfloat16, mmrag::Storage::int8}) {
    mmrag::HnswIndex<float> c(3, mmrag::Metric::cosine, {.M = 2, .ef_construction = 8}, storage);
    c.add(x, {}, mods);
    c.remove_ids(std::vector<mmrag::Index>{5});
    c.save(dir / (std::string("float_") + mmrag::to_string(storage) + ".hnsw"));
  }
  mmrag::HnswIndex<float> wide(16, mmrag::Metric::l2, {.M = 2, .ef_construction = 8},
                               mmrag::Storage::int8);  // dim 16: two refinement bytes
  wide.add(mmrag::Matrix<float>::Random(30, 16));
  wide.save(dir / "int8_dim16.hnsw");
  mmrag::HnswIndex<float>(4, mmrag::Metric::l2, {}, mmrag::Storage::int8)
      .save(dir / "empty_int8.hnsw");
  mmrag::HnswIndex<double> dc(3, mmrag::Metric::l2, {.M = 4, .ef_construction = 8},
                              mmrag::Storage::float16);
  dc.add(x.cast<double>().topRows(10));
  dc.save(dir / "double_float16.hnsw");
  return 0;
}
#else
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<char> bytes(reinterpret_cast<const char*>(data),
                          reinterpret_cast<const char*>(data) + size);
  try_parse<float>(bytes);
  try_parse<double>(bytes);
  if (bytes.size() >= 8) {
    bytes.resize(bytes.size() - 8);
    mmrag::detail::write_checksum(bytes);
    try_parse<float>(bytes);
    try_parse<double>(bytes);
  }
  return 0;
}
#endif
