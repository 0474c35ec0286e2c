/// @file bind_indexes.cpp
/// FlatIndex, IvfIndex, kmeans, compose and mine_hard_negatives for Python.

#include <optional>

#include "index_box.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"
#include "mmrag/kmeans.hpp"
#include "mmrag/multimodal.hpp"

namespace mmrag::python {

using namespace pybind11::literals;
using FlatBox = Box<FlatIndex>;
using IvfBox = Box<IvfIndex>;

namespace {

/// A 2-D integer array as a row-major int64 matrix (a copy).
Matrix<Index> index_matrix(const py::handle& obj, const char* where, const char* what) {
  py::array a = as_array(obj, where, what);
  if (kind_of(a) != 1)
    type_error(std::string(where) + ": " + what +
               " must be an integer array of shape (nq, p), got dtype " + dtype_str(a));
  if (a.ndim() != 2)
    value_error(std::string(where) + ": " + what +
                " must be a 2-D array of shape (nq, p), got shape " + shape_of(a));
  auto w = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  return Eigen::Map<const Matrix<Index>>(w.data(), static_cast<Eigen::Index>(w.shape(0)),
                                         static_cast<Eigen::Index>(w.shape(1)));
}

/// Runs f(index) on the box's index with the GIL released and the index locked for writing
/// (searches in other threads finish first).
template <class B, class F>
void write_locked(B& b, F&& f) {
  b.visit([&](auto& index) {
    py::gil_scoped_release unlocked;
    auto lock = write_lock(b);
    f(index);
  });
}

KMeansParams kmeans_params(std::optional<std::size_t> iterations, std::uint64_t seed,
                           std::size_t max_points_per_centroid,
                           std::size_t init_points_per_centroid, std::optional<bool> spherical,
                           double tolerance, bool assign) {
  KMeansParams p;
  p.iterations = iterations;
  p.seed = seed;
  p.max_points_per_centroid = max_points_per_centroid;
  p.init_points_per_centroid = init_points_per_centroid;
  p.spherical = spherical;
  p.tolerance = tolerance;
  p.assign = assign;
  return p;
}

template <class BoxT>
void def_mine(py::module_& m) {
  m.def(
      "mine_hard_negatives",
      [](const BoxT& b, const py::handle& anchors, const py::handle& positives,
         std::size_t negatives, std::size_t nprobe, const py::handle& modalities,
         const py::handle& ids, const py::object& exclude) {
        constexpr const char* where = "mmrag.mine_hard_negatives";
        const auto pos = ints_of<Index>(positives, where, "positives");
        const PyFilter filter(modalities, ids, where);
        MiningOptions options;
        options.negatives = negatives;
        options.search.nprobe = nprobe;
        options.search.filter = filter.filter;
        if (!exclude.is_none())
          options.exclude = [&exclude](std::size_t anchor, Index id) {
            py::gil_scoped_acquire locked;
            return exclude(anchor, id).template cast<bool>();
          };
        return b.visit([&](const auto& index) {
          using T = scalar_of<decltype(index)>;
          const auto r = rows_of<T>(anchors, where, "anchors", static_cast<long long>(index.dim()));
          HardNegatives<T> h;
          {
            py::gil_scoped_release unlocked;
            auto lock = read_lock(b);
            h = mine_hard_negatives(index, r.map, pos, options);
          }
          return result_type("HardNegatives")(to_numpy(std::move(h.negatives)),
                                              to_numpy(std::move(h.scores)));
        });
      },
      "index"_a, "anchors"_a, "positives"_a, py::kw_only(), "negatives"_a = 8, "nprobe"_a = 8,
      "modalities"_a = py::none(), "ids"_a = py::none(), "exclude"_a = py::none(),
      "Per anchor row (anchors: n × dim) the `negatives` most similar stored items other than\n"
      "its positive id (positives: n ids) and not excluded (exclude(anchor_row, id) -> bool).\n"
      "Returns HardNegatives(negatives: (n, m) int64 ids, -1 where fewer exist; scores: (n, m)).");
}

}  // namespace

void bind_indexes(py::module_& m) {
  // ---- FlatIndex ------------------------------------------------------------------------------
  py::class_<FlatBox> flat(m, "FlatIndex", R"doc(
Exact (brute-force) top-k search, as FAISS's IndexFlat.

FlatIndex(dim, metric="l2", dtype="float32", storage="float32")

metric: "l2" (squared Euclidean distance, lower is better), "inner_product" or "cosine"
(similarities, higher is better). dtype: the scalar type of vectors, queries and scores
(float32 or float64). Thread safety: any number of Python threads may search at once (the
GIL is released); add / remove_ids wait for running searches.)doc");
  flat.def(py::init([](std::size_t dim, const py::handle& metric, const py::handle& dtype,
                       const py::handle& storage) {
             return FlatBox::make(is_double(dtype), dim, metric_of(metric), storage_of(storage));
           }),
           "dim"_a, "metric"_a = "l2", "dtype"_a = "float32", "storage"_a = "float32");
  def_common(flat, "FlatIndex");
  flat.def(
      "search",
      [](const FlatBox& b, const py::handle& q, long long k, std::size_t nprobe,
         const py::handle& modalities, const py::handle& ids) {
        return search_box(b, q, k, modalities, ids, "mmrag.FlatIndex.search", [&](const Filter& f) {
          SearchParams p;
          p.nprobe = nprobe;
          p.filter = f;
          return p;
        });
      },
      "queries"_a, "k"_a, "nprobe"_a = 8, "modalities"_a = py::none(), "ids"_a = py::none(),
      R"doc(The k best stored items per query: returns (scores, ids), two (nq, k) arrays, best first
(scores in the index's dtype, ids int64; -1 / ±inf pad rows with fewer than k results).
queries: (nq, dim). modalities: allowed tags (default all); ids: allowed ids (default all).
nprobe is accepted and ignored (exact search). Raises ValueError on a wrong shape, k = 0 or
NaN/Inf queries, TypeError on a non-floating dtype.)doc");
  flat.def(
      "clear",
      [](FlatBox& b) { write_locked(b, [](auto& index) { index.clear(); }); },
      "Removes every vector (ids keep counting).");
  flat.def(
      "enable_screening",
      [](FlatBox& b) { write_locked(b, [](auto& index) { index.enable_screening(); }); },
      R"doc(Exact search through int8 screening from now on: keeps an SQ8 copy of the rows (dim
bytes per row more) that unfiltered searches scan first, then rescores exactly every
candidate the screen's error bound cannot exclude: results equal the float32 search's. Not
part of save / serialize: call again after load or parse. Raises ValueError for dtype float64
or a compressed storage.)doc");
  flat.def(
      "disable_screening",
      [](FlatBox& b) { write_locked(b, [](auto& index) { index.disable_screening(); }); },
      "Back to the float32 scan only; frees the int8 copy.");
  flat.def_property_readonly(
      "screening",
      [](const FlatBox& b) -> py::object {
        const bool on = b.visit([](const auto& index) { return index.screening().has_value(); });
        return on ? py::object(py::str("int8")) : py::object(py::none());
      },
      "\"int8\" while screening is on, else None.");

  // ---- IvfIndex -------------------------------------------------------------------------------
  py::class_<IvfBox> ivf(m, "IvfIndex", R"doc(
Inverted-file index (FAISS's IndexIVFFlat): k-means cells, search visits the nprobe nearest.

IvfIndex(dim, nlist, metric="l2", dtype="float32", storage="float32")

train(x) before add. With nprobe = nlist the search is exact. Thread safety as FlatIndex.)doc");
  ivf.def(py::init([](std::size_t dim, std::size_t nlist, const py::handle& metric,
                      const py::handle& dtype, const py::handle& storage) {
            return IvfBox::make(is_double(dtype), dim, nlist, metric_of(metric),
                                storage_of(storage));
          }),
          "dim"_a, "nlist"_a, "metric"_a = "l2", "dtype"_a = "float32", "storage"_a = "float32");
  def_common(ivf, "IvfIndex");
  ivf.def(
      "train",
      [](IvfBox& b, const py::handle& x, std::optional<std::size_t> iterations,
         std::uint64_t seed) {
        b.visit([&](auto& index) {
          using T = scalar_of<decltype(index)>;
          const auto r =
              rows_of<T>(x, "mmrag.IvfIndex.train", "x", static_cast<long long>(index.dim()));
          KMeansParams p;
          p.iterations = iterations;
          p.seed = seed;
          py::gil_scoped_release unlocked;
          auto lock = write_lock(b);
          index.train(r.map, p);
        });
      },
      "x"_a, py::kw_only(), "iterations"_a = py::none(), "seed"_a = 1234,
      "Learns the nlist centroids from x (n × dim, n >= nlist) with k-means (10 iterations by\n"
      "default, as FAISS; spherical for cosine).");
  ivf.def(
      "search",
      [](const IvfBox& b, const py::handle& q, long long k, std::size_t nprobe,
         const py::handle& modalities, const py::handle& ids) {
        return search_box(b, q, k, modalities, ids, "mmrag.IvfIndex.search", [&](const Filter& f) {
          SearchParams p;
          p.nprobe = nprobe;
          p.filter = f;
          return p;
        });
      },
      "queries"_a, "k"_a, "nprobe"_a = 8, "modalities"_a = py::none(), "ids"_a = py::none(),
      "As FlatIndex.search, visiting the nprobe nearest cells per query (nprobe >= nlist: exact).");
  ivf.def(
      "search_preassigned",
      [](const IvfBox& b, const py::handle& q, long long k, const py::handle& probes,
         const py::handle& modalities, const py::handle& ids) {
        constexpr const char* where = "mmrag.IvfIndex.search_preassigned";
        if (k < 0) value_error(std::string(where) + ": k must be > 0, got " + std::to_string(k));
        const Matrix<Index> p = index_matrix(probes, where, "probes");
        const PyFilter filter(modalities, ids, where);
        return b.visit([&](const auto& index) -> py::tuple {
          using T = scalar_of<decltype(index)>;
          const auto r = rows_of<T>(q, where, "queries", static_cast<long long>(index.dim()));
          Hits<T> hits;
          {
            py::gil_scoped_release unlocked;
            auto lock = read_lock(b);
            SearchParams params;
            params.filter = filter.filter;
            hits = index.search_preassigned(r.map, static_cast<std::size_t>(k), p, params);
          }
          return hits_tuple(std::move(hits));
        });
      },
      "queries"_a, "k"_a, "probes"_a, "modalities"_a = py::none(), "ids"_a = py::none(),
      "Search in the cells the caller chose: probes (nq, p) int cell numbers, -1 skipped.");
  ivf.def(
      "probe_cells",
      [](const IvfBox& b, const py::handle& q, std::size_t nprobe) {
        return b.visit([&](const auto& index) {
          using T = scalar_of<decltype(index)>;
          const auto r = rows_of<T>(q, "mmrag.IvfIndex.probe_cells", "queries",
                                    static_cast<long long>(index.dim()));
          Matrix<Index> cells;
          {
            py::gil_scoped_release unlocked;
            auto lock = read_lock(b);
            cells = index.probe_cells(r.map, nprobe);
          }
          return to_numpy(std::move(cells));
        });
      },
      "queries"_a, "nprobe"_a = 8,
      "The nprobe best cells per query (nq, nprobe), as search picks them.");
  ivf.def_property_readonly("nlist", [](const IvfBox& b) {
    return b.visit([](const auto& index) { return index.nlist(); });
  });
  ivf.def_property_readonly("is_trained", [](const IvfBox& b) {
    return b.visit([&](const auto& index) {
      auto lock = read_lock(b);
      return index.is_trained();
    });
  });

  // ---- kmeans, compose, mine_hard_negatives ---------------------------------------------------
  m.def(
      "kmeans",
      [](const py::handle& x, std::size_t k, std::optional<std::size_t> iterations,
         std::uint64_t seed, std::size_t max_points_per_centroid,
         std::size_t init_points_per_centroid, std::optional<bool> spherical, double tolerance,
         bool assign) {
        constexpr const char* where = "mmrag.kmeans";
        const KMeansParams p =
            kmeans_params(iterations, seed, max_points_per_centroid, init_points_per_centroid,
                          spherical, tolerance, assign);
        auto run = [&](auto tag) {
          using T = decltype(tag);
          const auto r = rows_of<T>(x, where, "x");
          KMeansResult<T> res;
          {
            py::gil_scoped_release unlocked;
            res = kmeans<T>(r.map, k, p);
          }
          return result_type("KMeansResult")(
              to_numpy(std::move(res.centroids)), vector_to_numpy(std::move(res.assignment)),
              vector_to_numpy(std::move(res.objective)), res.iterations);
        };
        return first_is_double(x, where, "x") ? run(double{}) : run(float{});
      },
      "x"_a, "k"_a, py::kw_only(), "iterations"_a = py::none(), "seed"_a = 1234,
      "max_points_per_centroid"_a = 256, "init_points_per_centroid"_a = 32,
      "spherical"_a = py::none(), "tolerance"_a = 0.0, "assign"_a = true,
      "k-means (k-means++ seeding, Lloyd iterations; 25 by default as FAISS's Clustering) of x\n"
      "(n × d, float32 or float64). Returns KMeansResult(centroids (k, d), assignment (n,) int64,\n"
      "objective (iterations,) float64, iterations).");

  m.def(
      "compose",
      [](const py::sequence& terms) {
        constexpr const char* where = "mmrag.compose";
        if (py::len(terms) == 0)
          value_error(std::string(where) + ": the composition must have at least one term");
        auto first = py::reinterpret_borrow<py::sequence>(terms[0]);
        auto run = [&](auto tag) {
          using T = decltype(tag);
          std::vector<py::array_t<T, py::array::c_style>> keep;
          std::vector<Term<T>> t;
          for (const py::handle item : terms) {
            const auto pair = py::reinterpret_borrow<py::sequence>(item);
            if (py::len(pair) != 2)
              value_error(std::string(where) + ": each term must be (embedding, weight)");
            py::object e = pair[0];
            py::array a = as_array(e, where, "embedding");
            if (a.ndim() == 2 && a.shape(0) == 1) e = a.attr("reshape")(-1);
            keep.push_back(float_array<T>(e, where, "embedding", 1));
            t.push_back(Term<T>{std::span<const T>(keep.back().data(),
                                                   static_cast<std::size_t>(keep.back().shape(0))),
                                pair[1].template cast<T>()});
          }
          Matrix<T> out;
          {
            py::gil_scoped_release unlocked;
            out = compose<T>(std::span<const Term<T>>(t));
          }
          return to_numpy(std::move(out));
        };
        return first_is_double(first[0], where, "embedding") ? run(double{}) : run(float{});
      },
      "terms"_a,
      "Embedding arithmetic: terms is a sequence of (embedding (d,), weight); returns\n"
      "normalize(sum_i w_i normalize(e_i)) as a (1, d) query in the first embedding's dtype.");

  def_mine<FlatBox>(m);
  def_mine<IvfBox>(m);
}

}  // namespace mmrag::python
