#pragma once
/// @file index_box.hpp
/// One Python class per index family: a variant of the float32 and float64 C++ index (chosen by
/// the constructor's dtype, or by the file for load / parse) behind a reader-writer lock, so
/// Python threads may call anything at any time: searches run in parallel (shared lock, GIL
/// released), add / train / remove_ids wait for them (exclusive lock). Not installed; not API.

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <variant>

#include <pybind11/stl/filesystem.h>

#include "common.hpp"

namespace mmrag::python {

template <template <class> class I>
struct Box {
  std::variant<I<float>, I<double>> index;
  // Searches share the index, add / remove_ids / train / clear own it. glibc's rwlock lets new
  // readers in while a writer waits, so back-to-back searches could hold off an add for
  // minutes: readers step aside while a writer waits (read_lock / write_lock below).
  mutable std::shared_mutex mu;
  mutable std::atomic<int> writers_waiting{0};

  template <std::size_t N, class... A>
  explicit Box(std::in_place_index_t<N> tag, A&&... a) : index(tag, std::forward<A>(a)...) {}

  template <class... A>
  static std::unique_ptr<Box> make(bool dbl, A&&... a) {
    if (dbl) return std::make_unique<Box>(std::in_place_index<1>, std::forward<A>(a)...);
    return std::make_unique<Box>(std::in_place_index<0>, std::forward<A>(a)...);
  }
  template <class F>
  decltype(auto) visit(F&& f) {
    return std::visit(std::forward<F>(f), index);
  }
  template <class F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), index);
  }
  [[nodiscard]] bool is_double() const noexcept { return index.index() == 1; }
};

/// A shared (search) lock on b's index that first lets any waiting writer through.
template <class B>
std::shared_lock<std::shared_mutex> read_lock(const B& b) {
  while (b.writers_waiting.load(std::memory_order_acquire) > 0) std::this_thread::yield();
  return std::shared_lock<std::shared_mutex>(b.mu);
}
/// An exclusive (mutating) lock on b's index; new searches wait while it is wanted.
template <class B>
std::unique_lock<std::shared_mutex> write_lock(const B& b) {
  b.writers_waiting.fetch_add(1, std::memory_order_acq_rel);
  std::unique_lock<std::shared_mutex> lock(b.mu);
  b.writers_waiting.fetch_sub(1, std::memory_order_acq_rel);
  return lock;
}

template <class X>
using scalar_of = typename std::decay_t<X>::Scalar;

/// The scalar code at offset 12 of an index file's header (2 = float64); 1 when absent.
inline bool header_says_double(const char* bytes, std::size_t n) {
  if (n < 16) return false;
  std::uint32_t code;
  std::memcpy(&code, bytes + 12, 4);
  return code == 2;
}

inline bool file_says_double(const std::filesystem::path& path) {
  char head[16] = {};
  std::ifstream in(path, std::ios::binary);
  in.read(head, 16);
  return header_says_double(head, static_cast<std::size_t>(in.gcount()));
}

/// Members every index class shares: add, remove_ids, persistence, sizes, names, pickling.
template <template <class> class I>
void def_common(py::class_<Box<I>>& c, const std::string& name) {
  using B = Box<I>;
  using namespace pybind11::literals;
  const std::string add_where = "mmrag." + name + ".add";
  c.def(
      "add",
      [add_where](B& b, const py::handle& x, const py::handle& ids, const py::handle& modalities) {
        const char* where = add_where.c_str();
        const auto id = ints_of<Index>(ids, where, "ids");
        const auto mo = ints_of<Modality>(modalities, where, "modalities");
        b.visit([&](auto& index) {
          using T = scalar_of<decltype(index)>;
          const auto r = rows_of<T>(x, where, "x", static_cast<long long>(index.dim()));
          py::gil_scoped_release unlocked;
          auto lock = write_lock(b);
          index.add(r.map, id, mo);
        });
      },
      "x"_a, "ids"_a = py::none(), "modalities"_a = py::none(),
      "Adds the rows of x (n × dim). ids: n int64 >= 0 (default: continue after the largest id\n"
      "ever added); modalities: n tags in [0, 63] (default 0). Raises ValueError (the C++\n"
      "message) on a wrong shape, NaN/Inf, a negative id or a count mismatch; the index is\n"
      "then unchanged.");
  c.def(
      "remove_ids",
      [](B& b, const py::handle& ids) {
        const auto id = ints_of<Index>(ids, "remove_ids", "ids");
        return b.visit([&](auto& index) {
          py::gil_scoped_release unlocked;
          auto lock = write_lock(b);
          return index.remove_ids(id);
        });
      },
      "ids"_a, "Removes every row whose id is listed; returns how many rows were removed.");
  c.def(
      "save",
      [](const B& b, const std::filesystem::path& path) {
        b.visit([&](const auto& index) {
          py::gil_scoped_release unlocked;
          auto lock = read_lock(b);
          file_call([&] { index.save(path); });
        });
      },
      "path"_a, "Writes the index to path. Raises OSError naming the file on failure.");
  c.def_static(
      "load",
      [](const std::filesystem::path& path) {
        py::gil_scoped_release unlocked;
        return file_call([&] {
          if (file_says_double(path))
            return std::make_unique<B>(std::in_place_index<1>, I<double>::load(path));
          return std::make_unique<B>(std::in_place_index<0>, I<float>::load(path));
        });
      },
      "path"_a,
      "Reads a file written by save (float32 or float64, as saved). Raises OSError naming the\n"
      "file when it cannot be read or is truncated, corrupt or of another kind.");
  c.def(
      "serialize",
      [](const B& b) {
        std::vector<char> bytes = b.visit([&](const auto& index) {
          py::gil_scoped_release unlocked;
          auto lock = read_lock(b);
          return index.serialize();
        });
        return py::bytes(bytes.data(), bytes.size());
      },
      "The bytes save writes.");
  auto parse = [](const py::bytes& data) {
    const std::string_view v = data;
    const std::vector<char> bytes(v.begin(), v.end());
    py::gil_scoped_release unlocked;
    return file_call([&] {
      if (header_says_double(bytes.data(), bytes.size()))
        return std::make_unique<B>(std::in_place_index<1>, I<double>::parse(bytes));
      return std::make_unique<B>(std::in_place_index<0>, I<float>::parse(bytes));
    });
  };
  c.def_static("parse", parse, "data"_a,
               "Rebuilds an index from serialize() bytes. Raises OSError on corrupt bytes.");
  c.def(py::pickle(
      [](const B& b) {
        std::vector<char> bytes = b.visit([&](const auto& index) {
          py::gil_scoped_release unlocked;
          auto lock = read_lock(b);
          return index.serialize();
        });
        return py::bytes(bytes.data(), bytes.size());
      },
      parse));
  c.def(
      "memory_bytes",
      [](const B& b) {
        return b.visit([&](const auto& index) {
          auto lock = read_lock(b);
          return index.memory_bytes();
        });
      },
      "Bytes the index holds (vectors or codes, ids, tags, and structure).");
  c.def("__len__", [](const B& b) {
    return b.visit([&](const auto& index) {
      auto lock = read_lock(b);
      return index.size();
    });
  });
  c.def_property_readonly(
      "ntotal",
      [](const B& b) {
        return b.visit([&](const auto& index) {
          auto lock = read_lock(b);
          return index.size();
        });
      },
      "Stored vectors (FAISS's name; same as len(index)).");
  c.def_property_readonly(
      "dim", [](const B& b) { return b.visit([](const auto& index) { return index.dim(); }); });
  c.def_property_readonly(
      "d", [](const B& b) { return b.visit([](const auto& index) { return index.dim(); }); },
      "FAISS's name for dim.");
  c.def_property_readonly(
      "metric",
      [](const B& b) {
        return std::string(b.visit([](const auto& index) { return to_string(index.metric()); }));
      },
      "'l2', 'inner_product' or 'cosine'.");
  c.def_property_readonly("storage", [](const B& b) {
    return std::string(b.visit([](const auto& index) -> const char* {
      if constexpr (requires { index.storage(); })
        return to_string(index.storage());
      else
        return "float32";
    }));
  });
  c.def_property_readonly(
      "dtype",
      [](const B& b) { return b.is_double() ? py::dtype::of<double>() : py::dtype::of<float>(); },
      "numpy.float32 or numpy.float64: the dtype of vectors, queries and scores.");
  c.def("__repr__", [name](const B& b) {
    return b.visit([&](const auto& index) {
      using T = scalar_of<decltype(index)>;
      auto lock = read_lock(b);
      return "<mmrag." + name + " dim=" + std::to_string(index.dim()) +
             " metric=" + to_string(index.metric()) + " dtype=" + dtype_name<T>() +
             " size=" + std::to_string(index.size()) + ">";
    });
  });
}

/// The shared search path: checks, GIL released, shared lock, (scores, ids).
template <template <class> class I, class MakeParams>
py::tuple search_box(const Box<I>& b, const py::handle& q, long long k,
                     const py::handle& modalities, const py::handle& ids, const char* where,
                     MakeParams&& make_params) {
  if (k < 0) value_error(std::string(where) + ": k must be > 0, got " + std::to_string(k));
  const PyFilter filter(modalities, ids, where);
  return b.visit([&](const auto& index) -> py::tuple {
    using T = scalar_of<decltype(index)>;
    const auto r = rows_of<T>(q, where, "queries", static_cast<long long>(index.dim()));
    Hits<T> hits;
    {
      py::gil_scoped_release unlocked;
      auto lock = read_lock(b);
      hits = index.search(r.map, static_cast<std::size_t>(k), make_params(filter.filter));
    }
    return hits_tuple(std::move(hits));
  });
}

}  // namespace mmrag::python
