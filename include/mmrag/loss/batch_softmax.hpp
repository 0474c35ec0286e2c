#pragma once
/// @file loss/batch_softmax.hpp
/// The engine behind every in-batch softmax loss (in_batch_info_nce, its decoupled form,
/// multi_positive_info_nce, supervised_contrastive): logits z = x_a x_bᵀ / tau, row (and column)
/// log-sum-exp over a denominator set, the mean logit of each anchor's positives, and the
/// gradient with respect to the logits, pushed through the two GEMMs G x_b and Gᵀ x_a.
/// Not API: namespace mmrag::loss::detail. Derivation: docs/losses.md.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <new>
#include <numeric>
#include <span>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "mmrag/loss/common.hpp"

namespace mmrag::loss::detail {

/// Sum of the n floats (or doubles) at p, accumulated in double (16 independent lanes, which
/// the compiler vectorizes): a float sum of e^{z - max} loses the small terms beside the 1.
template <class T>
[[nodiscard]] inline double wide_sum(const T* p, Eigen::Index n) noexcept {
  double acc[16] = {};
  Eigen::Index j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) acc[k] += double(p[j + k]);
  double tail = 0;
  for (; j < n; ++j) tail += double(p[j]);
  for (int k = 0; k < 8; ++k) acc[k] += acc[k + 8];
  for (int k = 0; k < 4; ++k) acc[k] += acc[k + 4];
  return (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail;
}

/// sum += v (T) elementwise, into double.
template <class T>
inline void wide_add(double* sum, const T* v, Eigen::Index n) noexcept {
  for (Eigen::Index j = 0; j < n; ++j) sum[j] += double(v[j]);
}

/// A logit taken out of every denominator: finite (so no −inf − −inf = NaN in max/shift
/// arithmetic) and far below any real logit, so it never becomes a row or column maximum and
/// its e^(masked − max) is negligible (Eigen's exp clamps, so not exactly 0: the backward pass
/// removes the masked entries' terms explicitly).
template <class T>
inline constexpr T kMaskedLogit = std::numeric_limits<T>::lowest() / 2;

/// Rows per panel on the direct path: a multiple of Eigen's 48-row float micro-kernel, and
/// few enough panels that re-packing x_b for each panel's GEMM stays cheap.
inline constexpr Eigen::Index kDirectPanelRows = 384;

/// The B × B logit buffer of the direct path: uninitialized (every entry is written by a GEMM
/// before it is read), 64-byte aligned, and on Linux advised to use transparent huge pages
/// when large (a fresh 64 MiB buffer otherwise costs 16384 page faults per call).
template <class T>
class LogitBuffer {
 public:
  explicit LogitBuffer(std::size_t count) {
    if (count == 0) return;
    const std::size_t bytes = count * sizeof(T);
    const std::size_t align = bytes >= kHuge ? kHuge : 64;
    const std::size_t rounded = (bytes + align - 1) / align * align;
    data_ = static_cast<T*>(std::aligned_alloc(align, rounded));
    if (data_ == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align == kHuge) (void)madvise(data_, rounded, MADV_HUGEPAGE);
#endif
  }
  ~LogitBuffer() {
    std::free(data_);
  }
  LogitBuffer(const LogitBuffer&) = delete;
  LogitBuffer& operator=(const LogitBuffer&) = delete;
  [[nodiscard]] T* data() const noexcept {
    return data_;
  }

 private:
  static constexpr std::size_t kHuge = std::size_t(2) << 20;
  T* data_ = nullptr;
};

/// Which pairs (i, j) of an in-batch softmax loss are positives and what enters the softmax.
struct BatchSoftmaxSpec {
  /// Labels of the rows of a and of b: (i, j) is a positive when labels_a[i] == labels_b[j].
  /// Both empty: the diagonal (i, i) is the only positive of row i and of column i.
  std::span<const int> labels_a, labels_b;
  /// a and b are the same rows (SupCon): (i, i) is neither a positive nor in a denominator.
  bool exclude_self = false;
  /// Positives leave the denominators (DCL, Yeh et al. 2022).
  bool decoupled = false;
  /// Add the column term (b anchors against a) to the row term.
  bool symmetric = true;
  Reduction reduction = Reduction::mean;
  std::size_t max_logits_bytes = std::size_t(256) << 20;
  std::size_t tile_rows = 256;
};

/// Positive sets as label groups: the rows of one side sorted by label, and for a label its
/// range in that order. Costs O(B log B) and no per-pair storage.
class LabelGroups {
 public:
  LabelGroups() = default;
  explicit LabelGroups(std::span<const int> labels) : order_(labels.size()) {
    std::iota(order_.begin(), order_.end(), 0);
    std::stable_sort(order_.begin(), order_.end(),
                     [&](int x, int y) { return labels[std::size_t(x)] < labels[std::size_t(y)]; });
    sorted_.reserve(labels.size());
    for (int i : order_) sorted_.push_back(labels[std::size_t(i)]);
  }
  /// The indices carrying `label`, ascending.
  [[nodiscard]] std::span<const int> members(int label) const {
    const auto lo = std::lower_bound(sorted_.begin(), sorted_.end(), label);
    const auto hi = std::upper_bound(lo, sorted_.end(), label);
    return {order_.data() + (lo - sorted_.begin()), std::size_t(hi - lo)};
  }

 private:
  std::vector<int> order_, sorted_;
};

/// Result of the engine: value, G x_b, Gᵀ x_a (x_a unscaled: the caller applies 1/tau) and
/// Σ_ij G_ij z_ij (d value / d log tau is its negative). G = d value / d z.
template <class T>
struct BatchSoftmaxResult {
  double value = 0;
  Matrix<T> grad_xa, grad_xb;
  double g_dot_z = 0;
};

/// Online log-sum-exp of every column over row panels, sums in double.
template <class T>
struct WideColumnLse {
  Vector<T> max;
  Eigen::VectorXd sum;
  explicit WideColumnLse(Eigen::Index n)
      : max(Vector<T>::Constant(n, -std::numeric_limits<T>::infinity())),
        sum(Eigen::VectorXd::Zero(n)) {}

  /// Folds the rows of the panel w (masked logits) into the state.
  template <class M>
  void add(const M& w) {
    const Eigen::Index m = w.cols();
    constexpr Eigen::Index chunk = 512;
    for (Eigen::Index c0 = 0; c0 < m; c0 += chunk) {
      const Eigen::Index cw = std::min(chunk, m - c0);
      Vector<T> new_max = max.segment(c0, cw);
      for (Eigen::Index r = 0; r < w.rows(); ++r)
        new_max = new_max.cwiseMax(w.row(r).segment(c0, cw).transpose());
      for (Eigen::Index j = 0; j < cw; ++j)
        if (new_max[j] > max[c0 + j])
          sum[c0 + j] *= std::exp(double(max[c0 + j]) - double(new_max[j]));
      max.segment(c0, cw) = new_max;
      Eigen::Array<T, Eigen::Dynamic, 1> e(cw);
      for (Eigen::Index r = 0; r < w.rows(); ++r) {
        e = (w.row(r).segment(c0, cw).transpose().array() - new_max.array()).exp();
        wide_add(sum.data() + c0, e.data(), cw);
      }
    }
  }

  void merge(const WideColumnLse& o) {
    for (Eigen::Index j = 0; j < max.size(); ++j) {
      if (o.max[j] == -std::numeric_limits<T>::infinity()) continue;
      if (max[j] == -std::numeric_limits<T>::infinity()) {
        max[j] = o.max[j];
        sum[j] = o.sum[j];
        continue;
      }
      const T m = std::max(max[j], o.max[j]);
      sum[j] = sum[j] * std::exp(double(max[j]) - double(m)) +
               o.sum[j] * std::exp(double(o.max[j]) - double(m));
      max[j] = m;
    }
  }
};

/// The in-batch softmax cross-entropy over x_a (n_a × d, already divided by tau) and x_b
/// (n_b × d): z = a_scaled x_bᵀ. For row i with positives P(i) and denominator D(i):
///   l_i = logsumexp_{j in D(i)} z_ij − (1/|P(i)|) Σ_{p in P(i)} z_ip,
/// rows with an empty P(i) or D(i) skipped and not counted; the same over columns when
/// symmetric; value = Σ_rows w_r l_i + Σ_cols w_c l_j with w = 1/count (mean) or 1 (sum).
/// Direct (B × B logits held) when they fit in max_logits_bytes, else row tiles with online
/// column state and a recomputed GEMM in the backward pass.
template <class T>
BatchSoftmaxResult<T> batch_softmax_xent(const Matrix<T>& a_scaled, const Matrix<T>& xa,
                                         const Matrix<T>& xb, const BatchSoftmaxSpec& spec) {
  const Eigen::Index na = a_scaled.rows(), nb = xb.rows(), dim = xb.cols();
  const bool diagonal = spec.labels_a.empty();
  MMRAG_ASSERT(!diagonal || na == nb);
  MMRAG_ASSERT(!spec.exclude_self || na == nb);
  const LabelGroups groups_b = diagonal ? LabelGroups() : LabelGroups(spec.labels_b);
  const LabelGroups groups_a = diagonal ? LabelGroups() : LabelGroups(spec.labels_a);
  const Eigen::Index self = spec.exclude_self ? 1 : 0;

  // Positive counts, denominator sizes and the weight of every row and column.
  std::vector<Eigen::Index> pos_row(std::size_t(na), 1), pos_col(std::size_t(nb), 1);
  if (!diagonal) {
    for (Eigen::Index i = 0; i < na; ++i)
      pos_row[std::size_t(i)] =
          Eigen::Index(groups_b.members(spec.labels_a[std::size_t(i)]).size()) - self;
    for (Eigen::Index j = 0; j < nb; ++j)
      pos_col[std::size_t(j)] =
          Eigen::Index(groups_a.members(spec.labels_b[std::size_t(j)]).size()) - self;
  } else if (spec.exclude_self) {
    std::fill(pos_row.begin(), pos_row.end(), 0);
    std::fill(pos_col.begin(), pos_col.end(), 0);
  }
  auto counted = [&](Eigen::Index pos, Eigen::Index others) {
    const Eigen::Index den = others - self - (spec.decoupled ? pos : 0);
    return pos > 0 && den > 0;
  };
  Eigen::Index rows_counted = 0, cols_counted = 0;
  for (Eigen::Index i = 0; i < na; ++i) rows_counted += counted(pos_row[std::size_t(i)], nb);
  if (spec.symmetric)
    for (Eigen::Index j = 0; j < nb; ++j) cols_counted += counted(pos_col[std::size_t(j)], na);
  const bool mean = spec.reduction == Reduction::mean;
  const double row_w = rows_counted == 0 ? 0.0 : (mean ? 1.0 / double(rows_counted) : 1.0);
  const double col_w = cols_counted == 0 ? 0.0 : (mean ? 1.0 / double(cols_counted) : 1.0);
  Vector<T> rs(na), cs = Vector<T>::Zero(nb);
  Eigen::VectorXd pos_w_col = Eigen::VectorXd::Zero(nb);  // cs_j / |P'(j)|
  for (Eigen::Index i = 0; i < na; ++i)
    rs[i] = counted(pos_row[std::size_t(i)], nb) ? T(row_w) : T(0);
  if (spec.symmetric)
    for (Eigen::Index j = 0; j < nb; ++j)
      if (counted(pos_col[std::size_t(j)], na)) {
        cs[j] = T(col_w);
        pos_w_col[j] = col_w / double(pos_col[std::size_t(j)]);
      }

  // Calls f(j) for every positive j of row i.
  auto for_each_positive = [&](Eigen::Index i, auto&& f) {
    if (diagonal) {
      if (!spec.exclude_self) f(i);
      return;
    }
    for (int j : groups_b.members(spec.labels_a[std::size_t(i)]))
      if (!(spec.exclude_self && j == i)) f(Eigen::Index(j));
  };

  const double logits_bytes = double(na) * double(nb) * double(sizeof(T));
  const bool direct = logits_bytes <= double(spec.max_logits_bytes);
  // Both paths run in row panels, so every elementwise pass reads a panel the GEMM just wrote
  // (still in cache). The direct path keeps the panels side by side in one buffer, reused by
  // the backward pass; the tiled path recomputes them.
  const Eigen::Index tile =
      std::min<Eigen::Index>(na, direct ? kDirectPanelRows : Eigen::Index(spec.tile_rows));
  const Eigen::Index tiles = (na + tile - 1) / tile;
  [[maybe_unused]] const bool threaded = tiles > 1 && na * nb > mmrag::detail::kParallelWork;
  LogitBuffer<T> store(direct ? std::size_t(na) * std::size_t(nb) : 0);
  using Panel = Eigen::Map<Matrix<T>>;

  // Rows [first, first + rows) of z = a_scaled x_bᵀ, in the store (direct) or in scratch.
  auto make_panel = [&](Eigen::Index first, Eigen::Index rows, Matrix<T>& scratch) {
    T* p = direct ? store.data() + std::size_t(first) * std::size_t(nb)
                  : (scratch.resize(rows, nb), scratch.data());
    return Panel(p, rows, nb);
  };
  auto compute_panel = [&](Eigen::Index first, Panel& w) {
    w.noalias() = a_scaled.middleRows(first, w.rows()) * xb.transpose();
  };
  // Takes the pairs out of the denominators of row i (and of their columns): kMaskedLogit.
  auto mask_row = [&](Eigen::Index i, T* w) {
    if (spec.exclude_self) w[i] = kMaskedLogit<T>;
    if (spec.decoupled) for_each_positive(i, [&](Eigen::Index j) { w[j] = kMaskedLogit<T>; });
  };

  // ---- forward ------------------------------------------------------------------------------
  Vector<T> row_max(na), row_log(na);
  Eigen::VectorXd row_value(na);  // w_r (lse_i − mean_p z_ip)
  Eigen::VectorXd row_const(na);  // w_r (max_i − mean_p z_ip)
  WideColumnLse<T> columns(spec.symmetric ? nb : 0);
  double col_pos = 0;
  MMRAG_OMP(parallel if (threaded) reduction(+ : col_pos)) {
    WideColumnLse<T> local(spec.symmetric ? nb : 0);
    Matrix<T> scratch;
    Eigen::Array<T, 1, Eigen::Dynamic> e(nb);
    MMRAG_OMP(for schedule(dynamic))
    for (Eigen::Index t = 0; t < tiles; ++t) {
      const Eigen::Index first = t * tile, rows = std::min(tile, na - first);
      Panel w = make_panel(first, rows, scratch);
      compute_panel(first, w);
      for (Eigen::Index r = 0; r < rows; ++r) {
        const Eigen::Index i = first + r;
        T* wr = w.row(r).data();
        double ps = 0;
        for_each_positive(i, [&](Eigen::Index j) {
          ps += double(wr[j]);
          col_pos += pos_w_col[j] * double(wr[j]);
        });
        mask_row(i, wr);
        const T mx = w.row(r).maxCoeff();
        e = (w.row(r).array() - mx).exp();
        double sum = wide_sum(e.data(), nb);
        if (spec.exclude_self) sum -= double(e[i]);  // masked: e^(masked − max) is not quite 0
        if (spec.decoupled) for_each_positive(i, [&](Eigen::Index j) { sum -= double(e[j]); });
        const double lg = sum > 0 ? std::log(sum) : 0.0;  // 0: all masked, row not counted
        row_max[i] = mx;
        row_log[i] = T(lg);
        const Eigen::Index np = pos_row[std::size_t(i)];
        const double mean_pos = np > 0 ? ps / double(np) : 0.0;
        row_value[i] = rs[i] != T(0) ? double(rs[i]) * (double(mx) + lg - mean_pos) : 0.0;
        row_const[i] = rs[i] != T(0) ? double(rs[i]) * (double(mx) - mean_pos) : 0.0;
      }
      if (spec.symmetric) local.add(w);
    }
    if (spec.symmetric) {
      MMRAG_OMP(critical)
      columns.merge(local);
    }
  }
  Vector<T> col_max, col_log;
  double col_value = 0, col_const = 0;
  if (spec.symmetric) {
    col_max = columns.max;
    col_log.resize(nb);
    for (Eigen::Index j = 0; j < nb; ++j) {
      const double lg = std::log(columns.sum[j]);
      col_log[j] = T(lg);
      if (cs[j] != T(0)) {
        col_value += double(cs[j]) * (double(col_max[j]) + lg);
        col_const += double(cs[j]) * double(col_max[j]);
      }
    }
  }

  BatchSoftmaxResult<T> out;
  out.value = row_value.sum() + col_value - col_pos;

  // ---- backward: G = rs_i (P_ij − [j ∈ P(i)]/|P(i)|) + cs_j (Q_ij − [i ∈ P'(j)]/|P'(j)|) ----
  out.grad_xa.resize(na, dim);
  if (!direct) out.grad_xb = Matrix<T>::Zero(nb, dim);
  double g_dot_z = row_const.sum() + col_const - col_pos;
  MMRAG_OMP(parallel if (threaded) reduction(+ : g_dot_z)) {
    Matrix<T> scratch, grad_xb_local = Matrix<T>::Zero(direct ? 0 : nb, dim);
    Eigen::Array<T, 1, Eigen::Dynamic> p(nb), q(nb), t(nb);
    std::vector<T> saved;
    MMRAG_OMP(for schedule(dynamic))
    for (Eigen::Index k = 0; k < tiles; ++k) {
      const Eigen::Index first = k * tile, rows = std::min(tile, na - first);
      Panel g = make_panel(first, rows, scratch);
      if (!direct) {
        compute_panel(first, g);
        for (Eigen::Index r = 0; r < rows; ++r) mask_row(first + r, g.row(r).data());
      }
      for (Eigen::Index r = 0; r < rows; ++r) {
        const Eigen::Index i = first + r;
        T* gr = g.row(r).data();
        // The positives' logits, before the row turns into G.
        saved.clear();
        if (!spec.decoupled) for_each_positive(i, [&](Eigen::Index j) { saved.push_back(gr[j]); });
        auto row = g.row(r).array();
        const T mi = row_max[i], li = row_log[i], ri = rs[i];
        // One pass per array over a row in L1: P (row softmax, weighted), Q (column softmax,
        // weighted), the terms of Σ G∘z in the form Σ P (z − max_i) + Σ Q (z − max_j), then G.
        p = ri * ((row - mi) - li).exp();
        if (spec.symmetric) {
          q = cs.transpose().array() *
              ((row - col_max.transpose().array()) - col_log.transpose().array()).exp();
          t = p * (row - mi) + q * (row - col_max.transpose().array());
          row = p + q;
        } else {
          t = p * (row - mi);
          row = p;
        }
        // Masked entries are out of every denominator. Eigen's exp clamps its argument, so
        // e^(masked) is tiny rather than 0: drop their terms from G and from Σ G∘z exactly.
        double t_sum = wide_sum(t.data(), nb);
        auto unmask = [&](Eigen::Index j) {
          t_sum -= double(t[j]);
          gr[j] = T(0);
        };
        if (spec.exclude_self) unmask(i);
        if (spec.decoupled) for_each_positive(i, unmask);
        g_dot_z += t_sum;
        // Positives: subtract 1/|P| (as expm1 when P_ip is a single term close to 1).
        std::size_t n_saved = 0;
        const Eigen::Index npr = pos_row[std::size_t(i)];
        for_each_positive(i, [&](Eigen::Index j) {
          const Eigen::Index npc = pos_col[std::size_t(j)];
          T gij = 0;
          if (spec.decoupled) {
            gij = -ri / T(npr);
            if (spec.symmetric) gij -= cs[j] / T(npc);
          } else {
            const T wij = saved[n_saved++];
            const T uij = wij - mi;
            gij = npr == 1 ? ri * std::expm1(uij - li) : ri * (std::exp(uij - li) - T(1) / T(npr));
            if (spec.symmetric) {
              const T vij = wij - col_max[j];
              gij += npc == 1 ? cs[j] * std::expm1(vij - col_log[j])
                              : cs[j] * (std::exp(vij - col_log[j]) - T(1) / T(npc));
            }
          }
          gr[j] = gij;
        });
      }
      out.grad_xa.middleRows(first, rows).noalias() = g * xb;
      if (!direct) grad_xb_local.noalias() += g.transpose() * xa.middleRows(first, rows);
    }
    if (!direct) {
      MMRAG_OMP(critical)
      out.grad_xb += grad_xb_local;
    }
  }
  if (direct) out.grad_xb.noalias() = Panel(store.data(), na, nb).transpose() * xa;
  out.g_dot_z = g_dot_z;
  return out;
}

}  // namespace mmrag::loss::detail
