/// @file bind_losses.cpp
/// Every loss of include/mmrag/loss/ for Python: value and gradients as NumPy arrays, in the
/// dtype of the first array argument (float32 or float64; other arrays follow the array rule).

#include "common.hpp"
#include "mmrag/loss/contrastive.hpp"
#include "mmrag/loss/in_batch_info_nce.hpp"
#include "mmrag/loss/info_nce.hpp"
#include "mmrag/loss/nce.hpp"
#include "mmrag/loss/sigmoid_pairwise.hpp"
#if __has_include("mmrag/loss/supervised_contrastive.hpp")
#include "mmrag/loss/supervised_contrastive.hpp"
#define MMRAG_PY_SUPCON 1
#endif
#if __has_include("mmrag/loss/multi_positive_info_nce.hpp")
#include "mmrag/loss/multi_positive_info_nce.hpp"
#define MMRAG_PY_MULTI_POSITIVE 1
#endif
#if __has_include("mmrag/loss/triplet_margin.hpp")
#include "mmrag/loss/triplet_margin.hpp"
#define MMRAG_PY_TRIPLET 1
#endif
#if __has_include("mmrag/loss/max_hinge.hpp")
#include "mmrag/loss/max_hinge.hpp"
#define MMRAG_PY_MAX_HINGE 1
#endif

namespace mmrag::python {

using namespace pybind11::literals;

namespace {

template <class T>
py::object pair_result(loss::PairLoss<T>&& r) {
  return result_type("PairLoss")(scalar<T>(r.value), to_numpy(std::move(r.grad_a)),
                                 to_numpy(std::move(r.grad_b)), scalar<T>(r.grad_log_temperature),
                                 scalar<T>(r.grad_bias));
}

/// Runs body(T{}) with T the dtype of `first` (float32 or float64).
template <class F>
py::object by_dtype(const py::handle& first, const char* where, const char* what, F&& body) {
  return first_is_double(first, where, what) ? body(double{}) : body(float{});
}

loss::InBatchOptions in_batch_options(double temperature, bool normalize, bool symmetric,
                                      const std::string& reduction, bool decoupled) {
  loss::InBatchOptions o;
  o.temperature = temperature;
  o.normalize = normalize;
  o.symmetric = symmetric;
  o.reduction = reduction_of(reduction);
  o.decoupled = decoupled;
  return o;
}

}  // namespace

void bind_losses(py::module_& m) {
  m.def(
      "contrastive",
      [](const py::handle& a, const py::handle& b, const py::handle& same, double margin,
         const std::string& reduction) {
        constexpr const char* where = "mmrag.contrastive";
        const auto labels = ints_of<int>(same, where, "same");
        loss::ContrastiveOptions o;
        o.margin = margin;
        o.reduction = reduction_of(reduction);
        return by_dtype(a, where, "a", [&](auto tag) {
          using T = decltype(tag);
          const auto ra = rows_of<T>(a, where, "a"), rb = rows_of<T>(b, where, "b");
          loss::PairLoss<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::contrastive(ra.map, rb.map, labels, o);
          }
          return pair_result(std::move(r));
        });
      },
      "a"_a, "b"_a, "same"_a, py::kw_only(), "margin"_a = 1.0, "reduction"_a = "mean",
      "Margin contrastive loss (Chopra, Hadsell & LeCun) over pairs a_i, b_i (B × d each) with\n"
      "same_i in {0, 1}: l_i = same d² + (1 - same) max(0, margin - d)², d = ||a_i - b_i||.\n"
      "reduction 'mean' or 'sum'.");
  m.def(
      "in_batch_info_nce",
      [](const py::handle& a, const py::handle& b, double temperature, bool normalize,
         bool symmetric, const std::string& reduction, bool decoupled) {
        constexpr const char* where = "mmrag.in_batch_info_nce";
        const auto o = in_batch_options(temperature, normalize, symmetric, reduction, decoupled);
        return by_dtype(a, where, "a", [&](auto tag) {
          using T = decltype(tag);
          const auto ra = rows_of<T>(a, where, "a"), rb = rows_of<T>(b, where, "b");
          loss::PairLoss<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::in_batch_info_nce(ra.map, rb.map, o);
          }
          return pair_result(std::move(r));
        });
      },
      "a"_a, "b"_a, py::kw_only(), "temperature"_a = 0.07, "normalize"_a = true,
      "symmetric"_a = true, "reduction"_a = "mean", "decoupled"_a = false,
      "Symmetric in-batch InfoNCE of CLIP / ImageBind: rows a_i, b_i (B × d) are positive pairs,\n"
      "every other row a negative; value L_ab + L_ba when symmetric (CLIP's loss is half).\n"
      "grad_log_temperature is d value / d log(temperature).");
  m.def(
      "sigmoid_pairwise",
      [](const py::handle& a, const py::handle& b, double temperature, double bias,
         bool normalize) {
        constexpr const char* where = "mmrag.sigmoid_pairwise";
        loss::SigmoidOptions o;
        o.temperature = temperature;
        o.bias = bias;
        o.normalize = normalize;
        return by_dtype(a, where, "a", [&](auto tag) {
          using T = decltype(tag);
          const auto ra = rows_of<T>(a, where, "a"), rb = rows_of<T>(b, where, "b");
          loss::PairLoss<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::sigmoid_pairwise(ra.map, rb.map, o);
          }
          return pair_result(std::move(r));
        });
      },
      "a"_a, "b"_a, py::kw_only(), "temperature"_a = 0.1, "bias"_a = -10.0, "normalize"_a = true,
      "SigLIP's pairwise sigmoid loss: z = s / temperature + bias, +1 labels on the diagonal.\n"
      "grad_log_temperature and grad_bias are the scalar gradients.");
  m.def(
      "info_nce",
      [](const py::handle& scores, const py::handle& positive, const std::string& reduction) {
        constexpr const char* where = "mmrag.info_nce";
        const auto pos = ints_of<int>(positive, where, "positive");
        const auto red = reduction_of(reduction);
        return by_dtype(scores, where, "scores", [&](auto tag) {
          using T = decltype(tag);
          const auto rs = rows_of<T>(scores, where, "scores");
          loss::ScoreLoss<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::info_nce(rs.map, pos, red);
          }
          return result_type("ScoreLoss")(scalar<T>(r.value), to_numpy(std::move(r.grad_scores)));
        });
      },
      "scores"_a, "positive"_a, py::kw_only(), "reduction"_a = "mean",
      "InfoNCE over scores S (n × m) with positive column p_i per row: mean_i [logsumexp_j S_ij -\n"
      "S_{i,p_i}]. Returns ScoreLoss(value, grad_scores (n, m)).");
  m.def(
      "nce",
      [](const py::handle& data_logits, const py::handle& noise_logits) {
        constexpr const char* where = "mmrag.nce";
        return by_dtype(data_logits, where, "data_logits", [&](auto tag) {
          using T = decltype(tag);
          const Vector<T> d = vector_of<T>(data_logits, where, "data_logits");
          const Vector<T> n = vector_of<T>(noise_logits, where, "noise_logits");
          loss::NceLoss<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::nce(d, n);
          }
          return result_type("NceLoss")(scalar<T>(r.value), to_numpy(std::move(r.grad_data)),
                                        to_numpy(std::move(r.grad_noise)));
        });
      },
      "data_logits"_a, "noise_logits"_a,
      "Noise-contrastive estimation (Gutmann & Hyvärinen) over 1-D logits. Returns\n"
      "NceLoss(value, grad_data, grad_noise).");
  m.def(
      "nce_logits",
      [](const py::handle& log_p_model, const py::handle& log_q, double k) {
        constexpr const char* where = "mmrag.nce_logits";
        return by_dtype(log_p_model, where, "log_p_model", [&](auto tag) -> py::object {
          using T = decltype(tag);
          const Vector<T> p = vector_of<T>(log_p_model, where, "log_p_model");
          const Vector<T> q = vector_of<T>(log_q, where, "log_q");
          Vector<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::nce_logits(p, q, k);
          }
          return to_numpy(std::move(r));
        });
      },
      "log_p_model"_a, "log_q"_a, "k"_a, "NCE logits log p_model(u) - log(k q(u)), 1-D.");
#ifdef MMRAG_PY_SUPCON
  m.def(
      "supervised_contrastive",
      [](const py::handle& x, const py::handle& labels, double temperature, bool normalize,
         const std::string& reduction) {
        constexpr const char* where = "mmrag.supervised_contrastive";
        const auto lab = ints_of<int>(labels, where, "labels");
        loss::SupConOptions o;
        o.temperature = temperature;
        o.normalize = normalize;
        o.reduction = reduction_of(reduction);
        return by_dtype(x, where, "x", [&](auto tag) {
          using T = decltype(tag);
          const auto rx = rows_of<T>(x, where, "x");
          loss::EmbeddingLoss<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::supervised_contrastive(rx.map, lab, o);
          }
          return result_type("EmbeddingLoss")(scalar<T>(r.value), to_numpy(std::move(r.grad)),
                                              scalar<T>(r.grad_log_temperature));
        });
      },
      "x"_a, "labels"_a, py::kw_only(), "temperature"_a = 0.1, "normalize"_a = true,
      "reduction"_a = "mean",
      "Supervised contrastive loss (Khosla et al. 2020, L_out) over x (B × d) with int labels.\n"
      "Returns EmbeddingLoss(value, grad (B, d), grad_log_temperature).");
#endif
#ifdef MMRAG_PY_MULTI_POSITIVE
  m.def(
      "multi_positive_info_nce",
      [](const py::handle& a, const py::handle& b, const py::handle& labels_a,
         const py::handle& labels_b, double temperature, bool normalize, bool symmetric,
         const std::string& reduction, bool decoupled) {
        constexpr const char* where = "mmrag.multi_positive_info_nce";
        const auto la = ints_of<int>(labels_a, where, "labels_a");
        const auto lb = ints_of<int>(labels_b, where, "labels_b");
        const auto o = in_batch_options(temperature, normalize, symmetric, reduction, decoupled);
        return by_dtype(a, where, "a", [&](auto tag) {
          using T = decltype(tag);
          const auto ra = rows_of<T>(a, where, "a"), rb = rows_of<T>(b, where, "b");
          loss::PairLoss<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::multi_positive_info_nce(ra.map, rb.map, la, lb, o);
          }
          return pair_result(std::move(r));
        });
      },
      "a"_a, "b"_a, "labels_a"_a, "labels_b"_a, py::kw_only(), "temperature"_a = 0.07,
      "normalize"_a = true, "symmetric"_a = true, "reduction"_a = "mean", "decoupled"_a = false,
      "In-batch InfoNCE where every b_j with labels_b[j] == labels_a[i] is a positive of a_i.\n"
      "With labels 0..B-1 on both sides it equals in_batch_info_nce.");
#endif
#ifdef MMRAG_PY_TRIPLET
  m.def(
      "triplet_margin",
      [](const py::handle& anchor, const py::handle& positive, const py::handle& negative,
         double margin, const std::string& reduction) {
        constexpr const char* where = "mmrag.triplet_margin";
        loss::TripletOptions o;
        o.margin = margin;
        o.reduction = reduction_of(reduction);
        return by_dtype(anchor, where, "anchor", [&](auto tag) {
          using T = decltype(tag);
          const auto ra = rows_of<T>(anchor, where, "anchor");
          const auto rp = rows_of<T>(positive, where, "positive");
          const auto rn = rows_of<T>(negative, where, "negative");
          loss::TripletLoss<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::triplet_margin(ra.map, rp.map, rn.map, o);
          }
          return result_type("TripletLoss")(scalar<T>(r.value), to_numpy(std::move(r.grad_anchor)),
                                            to_numpy(std::move(r.grad_positive)),
                                            to_numpy(std::move(r.grad_negative)));
        });
      },
      "anchor"_a, "positive"_a, "negative"_a, py::kw_only(), "margin"_a = 0.2,
      "reduction"_a = "mean",
      "Triplet margin loss max(0, ||a-p|| - ||a-n|| + margin) (Euclidean, not squared). Returns\n"
      "TripletLoss(value, grad_anchor, grad_positive, grad_negative).");
#endif
#ifdef MMRAG_PY_MAX_HINGE
  m.def(
      "max_hinge",
      [](const py::handle& a, const py::handle& b, double margin, bool normalize,
         const std::string& reduction) {
        constexpr const char* where = "mmrag.max_hinge";
        loss::MaxHingeOptions o;
        o.margin = margin;
        o.normalize = normalize;
        o.reduction = reduction_of(reduction);
        return by_dtype(a, where, "a", [&](auto tag) {
          using T = decltype(tag);
          const auto ra = rows_of<T>(a, where, "a"), rb = rows_of<T>(b, where, "b");
          loss::PairLoss<T> r;
          {
            py::gil_scoped_release unlocked;
            r = loss::max_hinge(ra.map, rb.map, o);
          }
          return pair_result(std::move(r));
        });
      },
      "a"_a, "b"_a, py::kw_only(), "margin"_a = 0.2, "normalize"_a = true, "reduction"_a = "mean",
      "VSE++ max-hinge loss (Faghri et al. 2018): the hardest in-batch negative per direction.");
#endif
}

}  // namespace mmrag::python
