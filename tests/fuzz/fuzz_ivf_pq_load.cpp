// libFuzzer target: IvfPqIndex::parse (what load runs) on arbitrary bytes must either return a
// usable index or throw std::runtime_error — never crash, leak or read out of bounds. A file
// that parses must also search, remove and serialize.
// Built with -DMMRAG_FUZZ_WRITE_SEEDS it is instead a program writing seed files (4- and
// 8-bit codes, with and without refine, every metric) into the directory argv[1].
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "mmrag/ivf_pq_index.hpp"

template <class T>
static void try_parse(const std::vector<char>& bytes) {
  try {
    auto index = mmrag::IvfPqIndex<T>::parse(bytes);
    if (index.is_trained() && index.size() > 0) {
      const mmrag::Matrix<T> q = mmrag::Matrix<T>::Ones(1, static_cast<Eigen::Index>(index.dim()));
      (void)index.search(q, 3, {.nprobe = 2, .k_factor = 2});
      (void)index.serialize();
      const std::vector<mmrag::Index> ids{0, 1};
      index.remove_ids(ids);
      (void)index.search(q, 3, {.nprobe = 2});
    } else {
      (void)index.serialize();
    }
  } catch (const std::runtime_error&) {
  }
}

#ifdef MMRAG_FUZZ_WRITE_SEEDS
int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path dir = argc > 1 ? argv[1] : "seeds/ivfpq";
  fs::create_directories(dir);
  mmrag::Matrix<float> x(64, 8);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float((i * 37) % 23) - 11.0f;
  int n = 0;
  for (mmrag::Metric metric :
       {mmrag::Metric::l2, mmrag::Metric::inner_product, mmrag::Metric::cosine})
    for (std::size_t nbits : {4, 8})
      for (bool refine : {true, false}) {
        mmrag::IvfPqIndex<float> index(
            8, 2, metric,
            {.m = 4,
             .nbits = nbits,
             .refine =
                 refine ? std::optional<mmrag::Storage>(mmrag::Storage::float32) : std::nullopt});
        if (nbits == 8) {  // 256 codebook centroids need 256 training rows
          mmrag::Matrix<float> big(256, 8);
          for (Eigen::Index i = 0; i < big.size(); ++i)
            big.data()[i] = float((i * 53) % 101) - 50.0f;
          index.train(big);
        } else {
          index.train(x);
        }
        index.add(x.topRows(40));
        index.save(dir / ("seed_" + std::to_string(n++) + ".ivfpq"));
      }
  mmrag::IvfPqIndex<double>(8, 3, mmrag::Metric::l2, {.m = 2, .refine = std::nullopt})
      .save(dir / "double_untrained.ivfpq");
  return 0;
}
#else
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<char> bytes(reinterpret_cast<const char*>(data),
                                reinterpret_cast<const char*>(data) + size);
  try_parse<float>(bytes);
  try_parse<double>(bytes);
  return 0;
}
#endif
