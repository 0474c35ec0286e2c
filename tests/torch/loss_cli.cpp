// A command-line face of the losses for the PyTorch cross-check (compare_torch.py):
//   loss_cli DIR
// reads DIR/case.txt ("loss option=value ...") and DIR/a.npy, DIR/b.npy (float64; for
// info_nce a is the score matrix and b holds the positives; for nce a and b are the data and
// noise logits as n × 1; for triplet_margin a, b, DIR/c.npy are anchor, positive, negative;
// supervised_contrastive uses a alone), writes DIR/out_*.npy: value, grad_a, grad_b,
// grad_log_tau, grad_bias (and grad_c for triplet_margin). Label-based losses label row i of a
// with i % classes and row j of b with (2j + 1) % classes.
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "mmrag/io.hpp"
#include "mmrag/losses.hpp"

using namespace mmrag;
using M = Matrix<double>;

namespace {
void write_scalar(const std::string& path, double v) {
  io::write_npy(path, M(M::Constant(1, 1, v)));
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: loss_cli DIR\n";
    return 2;
  }
  const std::string dir = argv[1];
  std::ifstream spec(dir + "/case.txt");
  std::string name, kv;
  spec >> name;
  std::map<std::string, double> opt;
  while (spec >> kv) opt[kv.substr(0, kv.find('='))] = std::stod(kv.substr(kv.find('=') + 1));
  const M a = io::read_npy<double>(dir + "/a.npy"), b = io::read_npy<double>(dir + "/b.npy");
  const auto red = opt["sum"] != 0 ? loss::Reduction::sum : loss::Reduction::mean;

  // Labels for the label-based losses: row i of a has i % classes, row j of b (2j + 1) % classes.
  const int classes = opt.count("classes") ? int(opt["classes"]) : 1;
  std::vector<int> labels_a, labels_b;
  for (Eigen::Index i = 0; i < a.rows(); ++i) labels_a.push_back(int(i % classes));
  for (Eigen::Index j = 0; j < b.rows(); ++j) labels_b.push_back(int((2 * j + 1) % classes));

  loss::PairLoss<double> r;
  if (name == "in_batch_info_nce") {
    r = loss::in_batch_info_nce(a, b,
                                {.temperature = opt["tau"],
                                 .normalize = opt["normalize"] != 0,
                                 .symmetric = opt["symmetric"] != 0,
                                 .reduction = red,
                                 .decoupled = opt["decoupled"] != 0});
  } else if (name == "multi_positive_info_nce") {
    r = loss::multi_positive_info_nce(a, b, labels_a, labels_b,
                                      {.temperature = opt["tau"],
                                       .normalize = opt["normalize"] != 0,
                                       .symmetric = opt["symmetric"] != 0,
                                       .reduction = red,
                                       .decoupled = opt["decoupled"] != 0});
  } else if (name == "supervised_contrastive") {
    const auto e = loss::supervised_contrastive(
        a, labels_a,
        {.temperature = opt["tau"], .normalize = opt["normalize"] != 0, .reduction = red});
    r = {e.value, e.grad, M::Zero(1, 1), e.grad_log_temperature};
  } else if (name == "max_hinge") {
    r = loss::max_hinge(
        a, b, {.margin = opt["margin"], .normalize = opt["normalize"] != 0, .reduction = red});
  } else if (name == "triplet_margin") {
    const M c = io::read_npy<double>(dir + "/c.npy");
    const auto t = loss::triplet_margin(a, b, c, {.margin = opt["margin"], .reduction = red});
    io::write_npy(dir + "/out_grad_c.npy", t.grad_negative);
    r = {t.value, t.grad_anchor, t.grad_positive};
  } else if (name == "sigmoid_pairwise") {
    r = loss::sigmoid_pairwise(
        a, b, {.temperature = opt["tau"], .bias = opt["bias"], .normalize = opt["normalize"] != 0});
  } else if (name == "contrastive") {
    std::vector<int> same;
    for (Eigen::Index i = 0; i < a.rows(); ++i) same.push_back(int(i % 2));
    r = loss::contrastive(a, b, same, {.margin = opt["margin"], .reduction = red});
  } else if (name == "info_nce") {
    std::vector<int> pos;
    for (Eigen::Index i = 0; i < b.rows(); ++i) pos.push_back(int(b(i, 0)));
    const auto s = loss::info_nce(a, pos, red);
    r = {s.value, s.grad_scores, M::Zero(1, 1)};
  } else if (name == "nce") {
    const Vector<double> x = a.col(0), y = b.col(0);
    const auto n = loss::nce(x, y);
    r = {n.value, M(n.grad_data), M(n.grad_noise)};
  } else {
    std::cerr << "unknown loss " << name << "\n";
    return 2;
  }
  write_scalar(dir + "/out_value.npy", r.value);
  io::write_npy(dir + "/out_grad_a.npy", r.grad_a);
  io::write_npy(dir + "/out_grad_b.npy", r.grad_b);
  write_scalar(dir + "/out_grad_log_tau.npy", r.grad_log_temperature);
  write_scalar(dir + "/out_grad_bias.npy", r.grad_bias);
  return 0;
}
