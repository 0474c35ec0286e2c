#pragma once
/// @file multimodal.hpp
/// The multimodal layer: named modality tags, query composition (embedding arithmetic), and
/// hard-negative mining from an index back into the InfoNCE loss.
///
/// Thread safety: `compose` and `mine_hard_negatives` are reentrant (the index is only
/// searched). A `ModalityNames` object is not synchronized: fill it before sharing it.

#include "mmrag/detail/intrinsics.hpp"  // first: silences GCC 12's own intrinsics header

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "mmrag/config.hpp"
#include "mmrag/search/types.hpp"

namespace mmrag {

/// The built-in modality tags. User-defined ones start at `modality::first_user`.
namespace modality {
inline constexpr Modality text = 0;
inline constexpr Modality image = 1;
inline constexpr Modality audio = 2;
inline constexpr Modality video = 3;
inline constexpr Modality first_user = 4;
}  // namespace modality

/// Names of modality tags: the four built-ins plus any you add ("sketch", "depth", "imu"...).
/// An object, not a global registry: each application owns its names.
class ModalityNames {
 public:
  ModalityNames() : names_{"text", "image", "audio", "video"} {}

  /// Adds a modality and returns its tag; adding an existing name returns its tag.
  /// Throws std::invalid_argument on an empty name or when all 64 tags are taken.
  Modality add(const std::string& name) {
    if (name.empty())
      throw std::invalid_argument("mmrag::ModalityNames::add: name must not be empty");
    for (std::size_t i = 0; i < names_.size(); ++i)
      if (names_[i] == name) return static_cast<Modality>(i);
    if (names_.size() > max_modality)
      throw std::invalid_argument(
          "mmrag::ModalityNames::add: all 64 modality tags are taken, cannot add '" + name + "'");
    names_.push_back(name);
    return static_cast<Modality>(names_.size() - 1);
  }

  /// The tag of `name`. Throws std::invalid_argument naming an unknown modality.
  [[nodiscard]] Modality operator[](const std::string& name) const {
    for (std::size_t i = 0; i < names_.size(); ++i)
      if (names_[i] == name) return static_cast<Modality>(i);
    throw std::invalid_argument("mmrag::ModalityNames: unknown modality '" + name + "'");
  }

  /// The name of tag `m`. Throws std::invalid_argument on a tag that has no name.
  [[nodiscard]] const std::string& name(Modality m) const {
    if (m >= names_.size())
      throw std::invalid_argument("mmrag::ModalityNames::name: unknown modality tag " +
                                  std::to_string(m));
    return names_[m];
  }

  [[nodiscard]] std::size_t size() const noexcept { return names_.size(); }

  /// The set of the named modalities, for a search filter: `names.set({"image", "sketch"})`.
  [[nodiscard]] ModalitySet set(std::initializer_list<std::string> list) const {
    ModalitySet s = ModalitySet::none();
    for (const auto& n : list) s.add((*this)[n]);
    return s;
  }

 private:
  std::vector<std::string> names_;
};

/// One term of a composed query: an embedding and its weight (negative weights subtract).
template <class T>
struct ComposeTerm {
  std::span<const T> embedding;
  T weight = T(1);
};

/// The version-1 name of ComposeTerm.
template <class T>
using Term = ComposeTerm<T>;

/// Embedding arithmetic: normalize(sum_i w_i · normalize(e_i)), returned as a 1 × d query
/// usable with every index. Each input is normalized first, so its scale does not matter and
/// the weights alone say how much each contributes ("image of a pigeon" + "sound of an
/// engine" → pictures of pigeons with motorcycles).
/// Throws std::invalid_argument on an empty composition, terms of different sizes or size 0,
/// a zero or non-finite embedding or weight, or weights that cancel to a zero vector.
template <class T>
[[nodiscard]] Matrix<T> compose(std::span<const ComposeTerm<T>> terms) {
  constexpr const char* where = "mmrag::compose";
  if (terms.empty())
    throw std::invalid_argument(std::string(where) +
                                ": the composition must have at least one term");
  const std::size_t d = terms[0].embedding.size();
  if (d == 0) throw std::invalid_argument(std::string(where) + ": embeddings must not be empty");
  Eigen::Matrix<double, 1, Eigen::Dynamic> sum =
      Eigen::Matrix<double, 1, Eigen::Dynamic>::Zero(static_cast<Eigen::Index>(d));
  for (std::size_t i = 0; i < terms.size(); ++i) {
    const auto& t = terms[i];
    const std::string which = std::string(where) + ": term " + std::to_string(i);
    if (t.embedding.size() != d)
      throw std::invalid_argument(which + " has size " + std::to_string(t.embedding.size()) +
                                  ", expected " + std::to_string(d));
    if (!std::isfinite(double(t.weight)))
      throw std::invalid_argument(which + " has a non-finite weight");
    const Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>> e(t.embedding.data(),
                                                                  static_cast<Eigen::Index>(d));
    if (!e.allFinite()) throw std::invalid_argument(which + " holds NaN or Inf");
    const double n = e.template cast<double>().norm();
    if (n == 0)
      throw std::invalid_argument(which + " is a zero vector (it has no direction to compose)");
    sum += (double(t.weight) / n) * e.template cast<double>();
  }
  const double n = sum.norm();
  if (!(n > 1e-12))
    throw std::invalid_argument(std::string(where) +
                                ": the weighted terms cancel to a zero vector");
  return (sum / n).template cast<T>();
}

template <class T>
[[nodiscard]] Matrix<T> compose(std::initializer_list<ComposeTerm<T>> terms) {
  return compose<T>(std::span<const ComposeTerm<T>>(terms.begin(), terms.size()));
}

/// Options of `mine_hard_negatives`.
struct MiningOptions {
  /// Negatives per anchor.
  std::size_t negatives = 8;
  /// Optional: true when stored item `id` must not serve as a negative for anchor row `anchor`
  /// (e.g. it shares the anchor's label: a false negative). Called from the calling thread.
  std::function<bool(std::size_t anchor, Index id)> exclude = nullptr;
  /// Passed to the index's search (nprobe, modality / id filter).
  SearchParams search = {};
};

/// Mined hard negatives: per anchor the m most similar stored items that are not its positive.
template <class T>
struct HardNegatives {
  Matrix<Index> negatives;  ///< n × m ids, most similar first; -1 where fewer exist
  Matrix<T> scores;         ///< n × m index scores of those negatives

  /// Candidate ids in the layout `loss::info_nce` takes: column 0 the positive, then the
  /// negatives. Score the candidates with your current model and pass `positive_columns()`.
  [[nodiscard]] Matrix<Index> candidates(std::span<const Index> positives) const {
    if (positives.size() != static_cast<std::size_t>(negatives.rows()))
      throw std::invalid_argument(
          "mmrag::HardNegatives::candidates: positives must have one id per anchor (" +
          std::to_string(negatives.rows()) + "), got " + std::to_string(positives.size()));
    Matrix<Index> c(negatives.rows(), negatives.cols() + 1);
    for (Eigen::Index i = 0; i < c.rows(); ++i) c(i, 0) = positives[static_cast<std::size_t>(i)];
    c.rightCols(negatives.cols()) = negatives;
    return c;
  }
  /// The `positive` argument of `loss::info_nce` for `candidates`: every positive in column 0.
  [[nodiscard]] std::vector<int> positive_columns() const {
    return std::vector<int>(static_cast<std::size_t>(negatives.rows()), 0);
  }
};

/// For each anchor (rows of `anchors`, n × d) with positive id positives[i], returns the
/// `negatives` most similar stored items of `index` (FlatIndex or IvfIndex) that are neither
/// the positive nor excluded, best first. Searches k = m + 1 first and widens (doubling k) only
/// for anchors that lost candidates to exclusions.
/// Throws std::invalid_argument when positives.size() != n or m = 0 (and whatever the
/// index's search throws for a bad query); nothing is modified.
template <SearchIndex I>
[[nodiscard]] HardNegatives<typename I::Scalar> mine_hard_negatives(
    const I& index, const Eigen::Ref<const Matrix<typename I::Scalar>>& anchors,
    std::span<const Index> positives, const MiningOptions& options = {}) {
  using T = typename I::Scalar;
  constexpr const char* where = "mmrag::mine_hard_negatives";
  const Eigen::Index n = anchors.rows();
  const std::size_t m = options.negatives;
  if (positives.size() != static_cast<std::size_t>(n))
    throw std::invalid_argument(std::string(where) + ": positives must have one id per anchor (" +
                                std::to_string(n) + "), got " + std::to_string(positives.size()));
  if (m == 0) throw std::invalid_argument(std::string(where) + ": negatives must be > 0, got 0");

  const bool higher = higher_is_better(index.metric());
  HardNegatives<T> out{Matrix<Index>::Constant(n, static_cast<Eigen::Index>(m), -1),
                       Matrix<T>::Constant(n, static_cast<Eigen::Index>(m),
                                           higher ? -std::numeric_limits<T>::infinity()
                                                  : std::numeric_limits<T>::infinity())};
  std::vector<Eigen::Index> pending(static_cast<std::size_t>(n));
  for (Eigen::Index i = 0; i < n; ++i) pending[static_cast<std::size_t>(i)] = i;
  std::size_t k = std::min(m + 1, std::max<std::size_t>(index.size(), 1));
  while (!pending.empty()) {
    Matrix<T> q(static_cast<Eigen::Index>(pending.size()), anchors.cols());
    for (std::size_t j = 0; j < pending.size(); ++j)
      q.row(static_cast<Eigen::Index>(j)) = anchors.row(pending[j]);
    const auto hits = index.search(q, k, options.search);
    std::vector<Eigen::Index> again;
    for (std::size_t j = 0; j < pending.size(); ++j) {
      const Eigen::Index a = pending[j];
      std::size_t got = 0;
      bool exhausted = false;
      for (Eigen::Index c = 0; c < hits.ids.cols() && got < m; ++c) {
        const Index id = hits.ids(static_cast<Eigen::Index>(j), c);
        if (id < 0) {
          exhausted = true;  // the index (or the filter) has nothing more to give
          break;
        }
        if (id == positives[static_cast<std::size_t>(a)]) continue;
        if (options.exclude && options.exclude(static_cast<std::size_t>(a), id)) continue;
        out.negatives(a, static_cast<Eigen::Index>(got)) = id;
        out.scores(a, static_cast<Eigen::Index>(got)) =
            hits.scores(static_cast<Eigen::Index>(j), c);
        ++got;
      }
      if (got < m && !exhausted && k < index.size()) again.push_back(a);
    }
    pending.swap(again);
    k = std::min(k * 2, index.size());
  }
  return out;
}

}  // namespace mmrag
