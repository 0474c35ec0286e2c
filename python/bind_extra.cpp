/// @file bind_extra.cpp
/// The indexes that land after the search core: HnswIndex (MMRAG_PY_HNSW) and IvfPqIndex
/// (MMRAG_PY_IVF_PQ). python/meson.build defines each macro only when a probe using every call
/// made here compiles against the headers in the tree, so a header in flux never breaks the
/// module: the class is then simply absent (hasattr(mmrag, "HnswIndex") is False). Also the
/// C++ timing baseline of bench/bench_python.py.

#include <chrono>

#include "index_box.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"

#if defined(MMRAG_PY_HNSW)
#include "mmrag/hnsw_index.hpp"
#endif
#if defined(MMRAG_PY_IVF_PQ)
#include "mmrag/ivf_pq_index.hpp"
#endif

namespace mmrag::python {

using namespace pybind11::literals;

namespace {
/// bench/bench_python.py's baseline: `repeats` calls of the C++ search on the same arrays, timed
/// in C++ (GIL released); returns seconds per call. Not API (leading underscore).
template <class BoxT>
void def_time_search(py::module_& m) {
  m.def(
      "_time_search",
      [](const BoxT& b, const py::handle& q, std::size_t k, std::size_t repeats,
         std::size_t nprobe) {
        return b.visit([&](const auto& index) {
          using T = scalar_of<decltype(index)>;
          const auto r =
              rows_of<T>(q, "mmrag._time_search", "queries", static_cast<long long>(index.dim()));
          py::gil_scoped_release unlocked;
          SearchParams p;
          p.nprobe = nprobe;
          const auto start = std::chrono::steady_clock::now();
          std::size_t sink = 0;
          for (std::size_t i = 0; i < repeats; ++i) {
            const Hits<T> h = index.search(r.map, k, p);
            sink += static_cast<std::size_t>(h.ids(0, 0) & 1);
          }
          const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
          return took.count() / static_cast<double>(repeats) + 0.0 * static_cast<double>(sink);
        });
      },
      "index"_a, "queries"_a, "k"_a, "repeats"_a, "nprobe"_a = 8);
}

}  // namespace

void bind_extra_indexes([[maybe_unused]] py::module_& m) {
  def_time_search<Box<FlatIndex>>(m);
  def_time_search<Box<IvfIndex>>(m);
#if defined(MMRAG_PY_HNSW)
  using HnswBox = Box<HnswIndex>;
  py::class_<HnswBox> hnsw(m, "HnswIndex", R"doc(
Graph index for one query at a time (Malkov & Yashunin, HNSW; hnswlib's parameters).

HnswIndex(dim, metric="l2", M=16, ef_construction=200, seed=42, dtype="float32", storage="float32")

No training; add builds the graph (in parallel with OpenMP, deterministic per seed).
Thread safety as FlatIndex.)doc");
  hnsw.def(py::init([](std::size_t dim, const py::handle& metric, std::size_t M,
                       std::size_t ef_construction, std::uint64_t seed, const py::handle& dtype,
                       const py::handle& storage) {
             HnswParams p;
             p.M = M;
             p.ef_construction = ef_construction;
             p.seed = seed;
             return HnswBox::make(is_double(dtype), dim, metric_of(metric), p, storage_of(storage));
           }),
           "dim"_a, "metric"_a = "l2", "M"_a = 16, "ef_construction"_a = 200, "seed"_a = 42,
           "dtype"_a = "float32", "storage"_a = "float32");
  def_common(hnsw, "HnswIndex");
  hnsw.def(
      "search",
      [](const HnswBox& b, const py::handle& q, long long k, std::size_t ef_search,
         const py::handle& modalities, const py::handle& ids) {
        return search_box(b, q, k, modalities, ids, "mmrag.HnswIndex.search", [&](const Filter& f) {
          HnswSearchParams p;
          p.ef_search = ef_search;
          p.filter = f;
          return p;
        });
      },
      "queries"_a, "k"_a, "ef_search"_a = 64, "modalities"_a = py::none(), "ids"_a = py::none(),
      "As FlatIndex.search; ef_search is the beam width (max(ef_search, k) is used).");
#endif

#if defined(MMRAG_PY_IVF_PQ)
  using PqBox = Box<IvfPqIndex>;
  py::class_<PqBox> pq(m, "IvfPqIndex", R"doc(
IVF with product quantization (FAISS's IndexIVFPQFastScan) and an optional refine store.

IvfPqIndex(dim, nlist, metric="l2", m=0, nbits=4, refine="int8", dtype="float32")

m: sub-quantizers (0 = dim / 2); refine: storage of the exact rescoring store, or None.)doc");
  pq.def(py::init([](std::size_t dim, std::size_t nlist, const py::handle& metric, std::size_t msub,
                     std::size_t nbits, const py::handle& refine, const py::handle& dtype) {
           PqParams p;
           p.m = msub;
           p.nbits = nbits;
           if (refine.is_none())
             p.refine = std::nullopt;
           else
             p.refine = storage_of(refine);
           return PqBox::make(is_double(dtype), dim, nlist, metric_of(metric), p);
         }),
         "dim"_a, "nlist"_a, "metric"_a = "l2", "m"_a = 0, "nbits"_a = 4, "refine"_a = "int8",
         "dtype"_a = "float32");
  def_common(pq, "IvfPqIndex");
  pq.def(
      "train",
      [](PqBox& b, const py::handle& x) {
        b.visit([&](auto& index) {
          using T = scalar_of<decltype(index)>;
          const auto r =
              rows_of<T>(x, "mmrag.IvfPqIndex.train", "x", static_cast<long long>(index.dim()));
          py::gil_scoped_release unlocked;
          auto lock = write_lock(b);
          index.train(r.map);
        });
      },
      "x"_a, "Learns the coarse centroids and the PQ codebooks from x (n × dim).");
  pq.def(
      "search",
      [](const PqBox& b, const py::handle& q, long long k, std::size_t nprobe, std::size_t k_factor,
         const py::handle& modalities, const py::handle& ids) {
        return search_box(b, q, k, modalities, ids, "mmrag.IvfPqIndex.search",
                          [&](const Filter& f) {
                            SearchParams p;
                            p.nprobe = nprobe;
                            p.k_factor = k_factor;
                            p.filter = f;
                            return p;
                          });
      },
      "queries"_a, "k"_a, "nprobe"_a = 8, "k_factor"_a = 4, "modalities"_a = py::none(),
      "ids"_a = py::none(),
      "As IvfIndex.search; the refine store rescores k * k_factor candidates exactly.");
#endif
}

}  // namespace mmrag::python
