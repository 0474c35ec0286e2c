// docs/losses.md: every loss on a small batch, and one SGD step that lowers it.
#include <cstdio>
#include <vector>

#include "mmrag/losses.hpp"

int main() {
  using namespace mmrag;
  Matrix<double> a = Matrix<double>::Random(8, 16), b = a + 0.3 * Matrix<double>::Random(8, 16);

  // [snippet:clip]
  // CLIP / ImageBind: row i of a and of b are a positive pair, the rest of the batch negatives.
  const loss::PairLoss<double> l = loss::in_batch_info_nce(a, b, {.temperature = 0.07});
  // l.value, l.grad_a (8 × 16), l.grad_b, l.grad_log_temperature
  a -= 0.1 * l.grad_a;  // one SGD step on the raw embeddings
  b -= 0.1 * l.grad_b;
  const double after = loss::in_batch_info_nce(a, b, {.temperature = 0.07}).value;
  // [/snippet]

  // [snippet:others]
  const auto siglip = loss::sigmoid_pairwise(a, b, {.temperature = 0.1, .bias = -10});
  const std::vector<int> same = {1, 0, 1, 0, 1, 0, 1, 0};
  const auto margin = loss::contrastive(a, b, same, {.margin = 1.0});
  Matrix<double> scores = a * b.transpose();  // any score matrix: anchor rows × candidates
  const std::vector<int> positive = {0, 1, 2, 3, 4, 5, 6, 7};
  const auto infonce = loss::info_nce(scores, positive);
  Vector<double> data(3), noise(5);
  data << 2, 1, 3;
  noise << -1, 0, -2, 1, -3;
  const auto nce = loss::nce(data, noise);  // logits from loss::nce_logits(log_p, log_q, k)
  // [/snippet]

  // [snippet:family]
  // Several positives per anchor: rows with equal labels (here 4 classes of 2 rows each).
  const std::vector<int> labels = {0, 1, 2, 3, 0, 1, 2, 3};
  const auto supcon = loss::supervised_contrastive(a, labels, {.temperature = 0.1});
  const auto multi = loss::multi_positive_info_nce(a, b, labels, labels, {.temperature = 0.07});
  // Decoupled (DCL): the positive leaves the denominator; suits small batches.
  const auto dcl = loss::in_batch_info_nce(a, b, {.temperature = 0.1, .decoupled = true});
  // Hardest in-batch negative in both directions (VSE++), and explicit triplets.
  const auto vse = loss::max_hinge(a, b, {.margin = 0.2});
  const Matrix<double> negative = b.colwise().reverse();  // any B × d negatives
  const auto triplet = loss::triplet_margin(a, b, negative, {.margin = 0.2});
  // supcon.grad (8 × 16); triplet.grad_anchor, .grad_positive, .grad_negative
  // [/snippet]
  std::printf("SupCon %.4f, multi-positive %.4f, DCL %.4f, VSE++ %.4f, triplet %.4f\n",
              supcon.value, multi.value, dcl.value, vse.value, triplet.value);

  std::printf(
      "InfoNCE %.4f -> %.4f after one step; SigLIP %.4f, contrastive %.4f, info_nce %.4f, nce "
      "%.4f\n",
      l.value, after, siglip.value, margin.value, infonce.value, nce.value);
  return after < l.value ? 0 : 1;
}
