/// @file module.cpp
/// `import mmrag`: the module object, names shared by every part (Metric, Storage, result
/// tuples, errors) and the io readers / writers. See docs/python.md.

#include <filesystem>

#include <pybind11/stl/filesystem.h>

#include "common.hpp"
#include "mmrag/io.hpp"

namespace mmrag::python {

namespace {
py::module_* the_module = nullptr;
}

py::object result_type(const char* name) {
  return the_module->attr(name);
}

namespace {

using namespace pybind11::literals;

template <class T>
py::array read_npy_as_array(const std::filesystem::path& path, bool convert) {
  Matrix<T> m;
  {
    py::gil_scoped_release unlocked;
    m = file_call([&] {
      if constexpr (std::is_floating_point_v<T>)
        return convert ? io::read_npy_as<T>(path) : io::read_npy<T>(path);
      else
        return io::read_npy<T>(path);
    });
  }
  return to_numpy(std::move(m));
}

void bind_io(py::module_& m) {
  m.def(
      "read_npy",
      [](const std::filesystem::path& path, const py::handle& dtype, bool convert) {
        const py::dtype d = py::dtype::from_args(py::reinterpret_borrow<py::object>(dtype));
        if (d.equal(py::dtype::of<std::int64_t>()))
          return read_npy_as_array<std::int64_t>(path, false);
        return is_double(dtype) ? read_npy_as_array<double>(path, convert)
                                : read_npy_as_array<float>(path, convert);
      },
      "path"_a, "dtype"_a = "float32", "convert"_a = false,
      "Reads a 1-D (as n × 1) or 2-D C-order .npy file of dtype float32, float64 or int64 into an\n"
      "(n, d) array. The file's dtype must be `dtype`, unless convert=True (float32 <-> float64).\n"
      "Raises OSError naming the file when it cannot be read or is malformed.");
  m.def(
      "write_npy",
      [](const std::filesystem::path& path, const py::handle& x) {
        py::array a = as_array(x, "mmrag.write_npy", "x");
        if (a.dtype().kind() == 'i' && a.itemsize() == 8) {
          const auto w =
              py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
          if (w.ndim() != 2)
            value_error("mmrag.write_npy: x must be 2-D, got shape " + shape_of(a));
          const Matrix<std::int64_t> mat =
              Eigen::Map<const Matrix<std::int64_t>>(w.data(), w.shape(0), w.shape(1));
          py::gil_scoped_release unlocked;
          file_call([&] { io::write_npy(path, mat); });
          return;
        }
        auto write = [&](auto tag) {
          using T = decltype(tag);
          const auto r = rows_of<T>(x, "mmrag.write_npy", "x");
          const Matrix<T> mat = r.map;
          py::gil_scoped_release unlocked;
          file_call([&] { io::write_npy(path, mat); });
        };
        if (first_is_double(x, "mmrag.write_npy", "x"))
          write(double{});
        else
          write(float{});
      },
      "path"_a, "x"_a, "Writes a 2-D float32, float64 or int64 array as .npy (np.load reads it).");
  m.def(
      "read_fvecs",
      [](const std::filesystem::path& path) {
        Matrix<float> mat;
        {
          py::gil_scoped_release unlocked;
          mat = file_call([&] { return io::read_fvecs(path); });
        }
        return to_numpy(std::move(mat));
      },
      "path"_a,
      "Reads a .fvecs file (the TEXMEX / ann-benchmarks format) as an (n, d) float32 array.");
  m.def(
      "read_ivecs",
      [](const std::filesystem::path& path) {
        Matrix<std::int32_t> mat;
        {
          py::gil_scoped_release unlocked;
          mat = file_call([&] { return io::read_ivecs(path); });
        }
        return to_numpy(std::move(mat));
      },
      "path"_a, "Reads an .ivecs file (e.g. ground-truth neighbour ids) as an (n, d) int32 array.");
  m.def(
      "write_fvecs",
      [](const std::filesystem::path& path, const py::handle& x) {
        const auto r = rows_of<float>(x, "mmrag.write_fvecs", "x");
        const Matrix<float> mat = r.map;
        py::gil_scoped_release unlocked;
        file_call([&] { io::write_fvecs(path, mat); });
      },
      "path"_a, "x"_a, "Writes an (n, d) floating array as .fvecs (float32).");
  m.def(
      "write_ivecs",
      [](const std::filesystem::path& path, const py::handle& x) {
        py::array a = as_array(x, "mmrag.write_ivecs", "x");
        if (kind_of(a) != 1)
          type_error("mmrag.write_ivecs: x must be an integer array of shape (n, d), got dtype " +
                     dtype_str(a));
        if (a.ndim() != 2)
          value_error("mmrag.write_ivecs: x must be 2-D, got shape " + shape_of(a));
        const auto w =
            py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>::ensure(a);
        const Matrix<std::int32_t> mat =
            Eigen::Map<const Matrix<std::int32_t>>(w.data(), w.shape(0), w.shape(1));
        py::gil_scoped_release unlocked;
        file_call([&] { io::write_ivecs(path, mat); });
      },
      "path"_a, "x"_a, "Writes an (n, d) integer array as .ivecs (int32).");
  m.def(
      "read_idx",
      [](const std::filesystem::path& path) {
        Matrix<float> mat;
        {
          py::gil_scoped_release unlocked;
          mat = file_call([&] { return io::read_idx(path); });
        }
        return to_numpy(std::move(mat));
      },
      "path"_a, "Reads an uncompressed IDX file (MNIST / Fashion-MNIST) as (n, features) float32.");
}

}  // namespace
}  // namespace mmrag::python

PYBIND11_MODULE(mmrag, m) {
  namespace mp = mmrag::python;
  namespace py = pybind11;
  mp::the_module = new py::module_(m);  // leaked on purpose: no decref after finalization
  m.doc() =
      "mmrag: multimodal retrieval math (indexes, k-means, contrastive losses) for NumPy.\n"
      "See docs/python.md.";
  m.attr("__version__") = MMRAG_PY_VERSION;

  py::enum_<mmrag::Metric>(m, "Metric")
      .value("inner_product", mmrag::Metric::inner_product)
      .value("cosine", mmrag::Metric::cosine)
      .value("l2", mmrag::Metric::l2);
  py::enum_<mmrag::Storage>(m, "Storage")
      .value("float32", mmrag::Storage::float32)
      .value("float16", mmrag::Storage::float16)
      .value("bfloat16", mmrag::Storage::bfloat16)
      .value("int8", mmrag::Storage::int8);

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const mp::FileError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    }
  });

  const py::object namedtuple = py::module_::import("collections").attr("namedtuple");
  auto tuple_type = [&](const char* name, const char* fields) {
    py::object t = namedtuple(name, fields);
    t.attr("__module__") = "mmrag";
    m.attr(name) = t;
  };
  tuple_type("PairLoss", "value grad_a grad_b grad_log_temperature grad_bias");
  tuple_type("NceLoss", "value grad_data grad_noise");
  tuple_type("ScoreLoss", "value grad_scores");
  tuple_type("EmbeddingLoss", "value grad grad_log_temperature");
  tuple_type("TripletLoss", "value grad_anchor grad_positive grad_negative");
  tuple_type("KMeansResult", "centroids assignment objective iterations");
  tuple_type("HardNegatives", "negatives scores");

  mp::bind_indexes(m);
  mp::bind_extra_indexes(m);
  mp::bind_losses(m);
  mp::bind_io(m);
}
