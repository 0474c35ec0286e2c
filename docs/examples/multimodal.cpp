// docs/multimodal.md: modality tags, filtered search, composition, hard negatives.
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "mmrag/mmrag.hpp"

int main() {
  using namespace mmrag;
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  auto random_rows = [&](Eigen::Index n) {
    Matrix<float> m(n, 16);
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = g(rng);
    return m;
  };
  const Matrix<float> images = random_rows(300), captions = random_rows(300),
                      audio = random_rows(50);

  // [snippet:tags]
  ModalityNames names;                         // text, image, audio, video built in
  const Modality depth = names.add("depth");   // your own modalities get tags 4, 5, ...
  FlatIndex<float> index(16, Metric::cosine);  // one index, one space, every modality
  std::vector<Index> ids(300);
  std::iota(ids.begin(), ids.end(), Index(0));
  index.add(images, ids, std::vector<Modality>(300, modality::image));
  std::iota(ids.begin(), ids.end(), Index(300));
  index.add(captions, ids, std::vector<Modality>(300, modality::text));
  // [/snippet]
  (void)depth;

  // [snippet:filter]
  // The exact top-5 among images only: the filter runs inside the scan.
  const Hits<float> pictures =
      index.search(captions.topRows(2), 5, {.filter = {.modalities = names.set({"image"})}});
  // An id allow-list too (a bitset): e.g. the items this user may see.
  IdSet visible;
  for (Index id = 0; id < 600; id += 3) visible.insert(id);
  const Hits<float> mine = index.search(captions.topRows(2), 5, {.filter = {.ids = &visible}});
  // [/snippet]

  // [snippet:compose]
  // "image of a pigeon" + "sound of an engine": each input normalized, weighted, renormalized.
  const Eigen::RowVectorXf pigeon = images.row(0), engine = audio.row(0);
  const Matrix<float> query = compose<float>({{std::span<const float>(pigeon.data(), 16), 1.0f},
                                              {std::span<const float>(engine.data(), 16), 0.5f}});
  const Hits<float> mixed =
      index.search(query, 3, {.filter = {.modalities = ModalitySet{modality::image}}});
  // [/snippet]

  // [snippet:mine]
  // Hard negatives for caption anchors whose positive is their image (id i), straight into
  // the InfoNCE score matrix layout: column 0 the positive, then the negatives.
  std::vector<Index> positives(8);
  std::iota(positives.begin(), positives.end(), Index(0));
  const auto hard = mine_hard_negatives(
      index, captions.topRows(8), positives,
      {.negatives = 4, .search = {.filter = {.modalities = ModalitySet{modality::image}}}});
  const Matrix<Index> candidates = hard.candidates(positives);  // 8 × 5 ids
  Matrix<float> scores(8, 5);  // score them with your current model:
  for (Eigen::Index i = 0; i < 8; ++i)
    for (Eigen::Index j = 0; j < 5; ++j)
      scores(i, j) = captions.row(i).dot(images.row(candidates(i, j)));
  const auto l = loss::info_nce(scores, hard.positive_columns());
  // [/snippet]

  bool ok = mixed.found(0) == 3 && l.grad_scores.rows() == 8;
  for (Eigen::Index j = 0; j < 5; ++j)
    ok = ok && pictures.ids(0, j) < 300 && mine.ids(0, j) % 3 == 0;
  std::printf("filtered, composed and mined: %s (info_nce %.3f)\n", ok ? "ok" : "WRONG", l.value);
  return ok ? 0 : 1;
}
