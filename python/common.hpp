#pragma once
/// @file common.hpp
/// What every part of the Python module shares: the array conversion rule, the metric / storage
/// / dtype names, result tuples, and the error mapping. Not installed; not API.
///
/// The array rule (docs/python.md, "Arrays"): an argument of vectors is a 2-D NumPy array (or
/// anything np.asarray accepts). A C-contiguous array of the expected dtype (the index's, or for
/// a free function the dtype of its first array) is used in place, without a copy; any other
/// *floating* array (float16, the other float width, non-contiguous, Fortran order) is copied
/// once as np.ascontiguousarray(x, dtype=expected); any non-floating dtype is rejected with
/// TypeError naming the expected dtype and shape; a wrong number of dimensions is a ValueError.
/// Ids and labels take integer arrays only (floats are rejected, values are range-checked).

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <Eigen/Core>

#include "mmrag/codecs.hpp"
#include "mmrag/config.hpp"
#include "mmrag/loss/common.hpp"
#include "mmrag/search/types.hpp"

namespace mmrag::python {

namespace py = pybind11;

/// Thrown for a file that cannot be read or written; the module maps it to OSError.
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Runs `f`, turning a std::runtime_error (file missing, unreadable, corrupt) into FileError so
/// Python sees OSError with the C++ message. std::invalid_argument passes through (ValueError).
template <class F>
decltype(auto) file_call(F&& f) {
  try {
    return f();
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::runtime_error& e) {
    throw FileError(e.what());
  }
}

[[noreturn]] inline void type_error(const std::string& message) {
  throw py::type_error(message);
}
[[noreturn]] inline void value_error(const std::string& message) {
  throw py::value_error(message);
}

template <class T>
constexpr const char* dtype_name() noexcept {
  return sizeof(T) == 4 ? "float32" : "float64";
}

inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline std::string dtype_str(const py::array& a) {
  return py::str(py::object(a.dtype())).cast<std::string>();
}

/// np.asarray(obj) without copying an array.
inline py::array as_array(const py::handle& obj, const char* where, const char* what) {
  if (py::isinstance<py::array>(obj)) return py::reinterpret_borrow<py::array>(obj);
  try {
    return py::module_::import("numpy").attr("asarray")(obj);
  } catch (py::error_already_set&) {
    type_error(std::string(where) + ": " + what + " must be a NumPy array");
  }
}

/// 0 = floating, 1 = integer (signed or unsigned), 2 = anything else.
inline int kind_of(const py::array& a) {
  const char k = a.dtype().kind();
  return k == 'f' ? 0 : (k == 'i' || k == 'u') ? 1 : 2;
}

/// A row-major view of an n × d array of T (d = -1: any), by the array rule above. `keep` holds
/// the array (the caller's, or the one copy) for as long as `map` is used.
template <class T>
struct Rows {
  py::array_t<T, py::array::c_style> keep;
  Eigen::Map<const Matrix<T>> map;
};

/// "(n, 128)", "(n, dim)" or "(n,)" for messages.
inline std::string expected_shape(int ndim, long long dim) {
  if (ndim == 1) return "(n,)";
  return dim < 0 ? "(n, dim)" : "(n, " + std::to_string(dim) + ")";
}

template <class T>
py::array_t<T, py::array::c_style> float_array(const py::handle& obj, const char* where,
                                               const char* what, int ndim, long long dim = -1) {
  using Out = py::array_t<T, py::array::c_style>;
  if (py::isinstance<Out>(obj)) {  // the fast path: right dtype, C order
    auto a = py::reinterpret_borrow<Out>(obj);
    if (a.ndim() == ndim) return a;
  }
  py::array a = as_array(obj, where, what);
  if (kind_of(a) != 0)
    type_error(std::string(where) + ": " + what + " must be a " + dtype_name<T>() +
               " array of shape " + expected_shape(ndim, dim) + ", got dtype " + dtype_str(a) +
               " (floating arrays are converted, other dtypes are not)");
  if (a.ndim() != ndim)
    value_error(std::string(where) + ": " + what + " must be a " + std::to_string(ndim) +
                "-D array of shape " + expected_shape(ndim, dim) + ", got shape " + shape_of(a) +
                (ndim == 2 && a.ndim() == 1 ? " (use x.reshape(1, -1) for one vector)" : ""));
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);  // one copy
}

template <class T>
Rows<T> rows_of(const py::handle& obj, const char* where, const char* what, long long dim = -1) {
  auto keep = float_array<T>(obj, where, what, 2, dim);
  const T* data = keep.data();
  const auto n = static_cast<Eigen::Index>(keep.shape(0)),
             d = static_cast<Eigen::Index>(keep.shape(1));
  return Rows<T>{std::move(keep), Eigen::Map<const Matrix<T>>(data, n, d)};
}

/// A 1-D float array as an Eigen vector (a copy: the C++ functions taking vectors own them).
template <class T>
Vector<T> vector_of(const py::handle& obj, const char* where, const char* what) {
  auto a = float_array<T>(obj, where, what, 1);
  Vector<T> v(static_cast<Eigen::Index>(a.shape(0)));
  std::copy(a.data(), a.data() + a.shape(0), v.data());
  return v;
}

/// A 1-D integer array (or sequence) as std::vector<Int>, range-checked. None gives {}.
template <class Int>
std::vector<Int> ints_of(const py::handle& obj, const char* where, const char* what) {
  if (obj.is_none()) return {};
  py::array a = as_array(obj, where, what);
  if (a.size() == 0 && a.ndim() == 1) return {};
  if (kind_of(a) != 1)
    type_error(std::string(where) + ": " + what +
               " must be an integer array of shape (n,), got dtype " + dtype_str(a));
  if (a.ndim() != 1)
    value_error(std::string(where) + ": " + what +
                " must be a 1-D array of shape (n,), got shape " + shape_of(a));
  auto wide = py::array_t<long long, py::array::c_style | py::array::forcecast>::ensure(a);
  const bool unsigned_big = a.dtype().kind() == 'u' && a.itemsize() == 8;
  std::vector<Int> out(static_cast<std::size_t>(wide.shape(0)));
  for (std::size_t i = 0; i < out.size(); ++i) {
    const long long v = wide.data()[i];
    if ((unsigned_big && v < 0) || v < static_cast<long long>(std::numeric_limits<Int>::min()) ||
        v > static_cast<long long>(std::numeric_limits<Int>::max()))
      value_error(
          std::string(where) + ": " + what + "[" + std::to_string(i) + "] = " +
          (unsigned_big ? std::to_string(static_cast<unsigned long long>(v)) : std::to_string(v)) +
          " is out of range for " +
          (sizeof(Int) == 1   ? "uint8"
           : sizeof(Int) == 4 ? "int32"
                              : "int64"));
    out[i] = static_cast<Int>(v);
  }
  return out;
}

/// Moves an Eigen matrix into a NumPy array without copying (the array owns it).
template <class M>
py::array to_numpy(M&& m) {
  using Plain = std::decay_t<M>;
  using S = typename Plain::Scalar;
  auto* owner = new Plain(std::forward<M>(m));
  py::capsule free_it(owner, [](void* p) { delete static_cast<Plain*>(p); });
  if constexpr (Plain::ColsAtCompileTime == 1)
    return py::array_t<S>({static_cast<py::ssize_t>(owner->rows())}, owner->data(), free_it);
  else
    return py::array_t<S>(
        {static_cast<py::ssize_t>(owner->rows()), static_cast<py::ssize_t>(owner->cols())},
        owner->data(), free_it);
}

template <class V>
py::array vector_to_numpy(std::vector<V>&& v) {
  auto* owner = new std::vector<V>(std::move(v));
  py::capsule free_it(owner, [](void* p) { delete static_cast<std::vector<V>*>(p); });
  return py::array_t<V>({static_cast<py::ssize_t>(owner->size())}, owner->data(), free_it);
}

/// A NumPy scalar of T (np.float32 / np.float64), so a loss value keeps the input's dtype.
template <class T>
py::object scalar(T v) {
  return py::module_::import("numpy").attr(dtype_name<T>())(v);
}

inline Metric metric_of(const py::handle& obj) {
  if (py::isinstance<Metric>(obj)) return obj.cast<Metric>();
  const std::string s = py::str(obj).cast<std::string>();
  if (s == "l2") return Metric::l2;
  if (s == "inner_product") return Metric::inner_product;
  if (s == "cosine") return Metric::cosine;
  value_error("mmrag: metric must be 'l2', 'inner_product' or 'cosine', got '" + s + "'");
}

inline Storage storage_of(const py::handle& obj) {
  if (py::isinstance<Storage>(obj)) return obj.cast<Storage>();
  const std::string s = py::str(obj).cast<std::string>();
  for (Storage st : {Storage::float32, Storage::float16, Storage::bfloat16, Storage::int8})
    if (s == to_string(st)) return st;
  value_error("mmrag: storage must be 'float32', 'float16', 'bfloat16' or 'int8', got '" + s + "'");
}

/// true for float64, false for float32; anything else is a TypeError.
inline bool is_double(const py::handle& dtype) {
  const py::dtype d = py::dtype::from_args(py::reinterpret_borrow<py::object>(dtype));
  if (d.is(py::dtype::of<float>()) || d.equal(py::dtype::of<float>())) return false;
  if (d.equal(py::dtype::of<double>())) return true;
  type_error("mmrag: dtype must be float32 or float64, got " +
             py::str(py::object(d)).cast<std::string>());
}

/// The dtype a free function computes in: the first array's (float32 or float64).
inline bool first_is_double(const py::handle& obj, const char* where, const char* what) {
  py::array a = as_array(obj, where, what);
  if (a.dtype().kind() != 'f')
    type_error(std::string(where) + ": " + what +
               " must be a float32 or float64 array, got dtype " + dtype_str(a));
  return a.itemsize() == 8;
}

inline loss::Reduction reduction_of(const std::string& s) {
  if (s == "mean") return loss::Reduction::mean;
  if (s == "sum") return loss::Reduction::sum;
  value_error("mmrag: reduction must be 'mean' or 'sum', got '" + s + "'");
}

/// A filter built from Python arguments; owns its IdSet.
struct PyFilter {
  IdSet ids;
  Filter filter;
  PyFilter(const py::handle& modalities, const py::handle& allowed_ids, const char* where) {
    if (!modalities.is_none()) {
      ModalitySet set = ModalitySet::none();
      for (auto m : ints_of<std::int64_t>(modalities, where, "modalities")) {
        if (m < 0 || m > max_modality)
          value_error(std::string(where) + ": modalities must be in [0, " +
                      std::to_string(max_modality) + "], got " + std::to_string(m));
        set.add(static_cast<Modality>(m));
      }
      filter.modalities = set;
    }
    if (!allowed_ids.is_none()) {
      const auto v = ints_of<Index>(allowed_ids, where, "ids");
      ids = IdSet(std::span<const Index>(v));
      filter.ids = &ids;
    }
  }
  PyFilter(const PyFilter&) = delete;
};

/// (scores, ids) as FAISS returns them: two (nq, k) arrays. A small result (a few queries'
/// top-k) is copied into arrays NumPy allocates: cheaper per call than handing memory over.
/// A large one is handed over without a copy, both arrays sharing one owner of the Hits.
template <class T>
py::tuple hits_tuple(Hits<T>&& h) {
  const std::array<py::ssize_t, 2> shape{static_cast<py::ssize_t>(h.ids.rows()),
                                         static_cast<py::ssize_t>(h.ids.cols())};
  constexpr Eigen::Index kCopyUpTo = 4096;  // elements: 48 KB of scores and ids, about 2 µs
  if (h.ids.size() <= kCopyUpTo) {
    py::array_t<T> scores(shape);
    py::array_t<Index> ids(shape);
    std::copy_n(h.scores.data(), h.scores.size(), scores.mutable_data());
    std::copy_n(h.ids.data(), h.ids.size(), ids.mutable_data());
    return py::make_tuple(std::move(scores), std::move(ids));
  }
  auto* owner = new Hits<T>(std::move(h));
  py::capsule free_it(owner, [](void* p) { delete static_cast<Hits<T>*>(p); });
  py::array scores = py::array_t<T>(shape, owner->scores.data(), free_it);
  py::array ids = py::array_t<Index>(shape, owner->ids.data(), free_it);
  return py::make_tuple(std::move(scores), std::move(ids));
}

/// A namedtuple type created at import (module attribute `name`).
py::object result_type(const char* name);

void bind_indexes(py::module_& m);
void bind_losses(py::module_& m);
void bind_extra_indexes(py::module_& m);

}  // namespace mmrag::python
