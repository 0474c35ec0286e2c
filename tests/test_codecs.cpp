// codecs.hpp through the indexes: every Storage round-trips within its bound, searches exactly
// over its decoded rows, keeps recall on clustered data, saves / loads / maps, and rejects bad
// input. (The kernels themselves: test_codec_kernels.cpp.)
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "brute_force.hpp"
#include "files.hpp"
#include "helpers.hpp"
#include "mmrag/flat_index.hpp"
#include "mmrag/ivf_index.hpp"

using namespace mmrag;

namespace {

// n points around c clusters in d dimensions (embedding-like: unit-ish norms).
template <class T>
Matrix<T> clustered(Eigen::Index n, Eigen::Index d, Eigen::Index c, std::uint64_t seed) {
  const Matrix<T> centers = test::random_matrix<T>(c, d, seed);
  const Matrix<T> noise = test::random_matrix<T>(n, d, seed + 1, T(0.3));
  Matrix<T> x(n, d);
  for (Eigen::Index i = 0; i < n; ++i) x.row(i) = centers.row(i % c) + noise.row(i);
  return x;
}

template <class T>
double recall(const Hits<T>& got, const Hits<T>& truth) {
  double hit = 0;
  for (Eigen::Index i = 0; i < got.ids.rows(); ++i)
    for (Eigen::Index j = 0; j < got.ids.cols(); ++j)
      for (Eigen::Index l = 0; l < truth.ids.cols(); ++l) hit += got.ids(i, j) == truth.ids(i, l);
  return hit / double(truth.ids.size());
}

// Relative round-trip bound of each storage for values inside its range.
double storage_bound(Storage s) {
  switch (s) {
    case Storage::float16:
      return 0x1p-11;
    case Storage::bfloat16:
      return 0x1p-8;
    default:
      return 0;
  }
}

}  // namespace

TEST_CASE_TEMPLATE("Codec: round trip within the storage's bound", T, float, double) {
  const Matrix<T> x = test::random_matrix<T>(50, 33, 7, T(3));
  for (Storage s : {Storage::float32, Storage::float16, Storage::bfloat16, Storage::int8}) {
    CAPTURE(std::string(to_string(s)));
    Codec<T> codec(33, s);
    codec.train(x.data(), 50);
    REQUIRE(codec.is_trained());
    std::vector<std::uint8_t> codes(50 * codec.code_size());
    codec.encode(x.data(), 50, codes.data());
    Matrix<T> back(50, 33);
    codec.decode(codes.data(), 50, back.data());
    for (Eigen::Index j = 0; j < 33; ++j) {
      const double lo = double(x.col(j).minCoeff()), hi = double(x.col(j).maxCoeff());
      for (Eigen::Index i = 0; i < 50; ++i) {
        const double err = std::abs(double(back(i, j)) - double(x(i, j)));
        if (s == Storage::int8)
          REQUIRE(err <= (hi - lo) / 510 * (1 + 1e-6) + 1e-12);
        else if (s == Storage::float32)
          REQUIRE(err == 0);
        else
          // relative in the normal range; float16 subnormals (< 2^-14) are spaced 2^-24
          REQUIRE(err <= storage_bound(s) * std::abs(double(x(i, j))) * (1 + 1e-12) + 0x1p-25);
      }
    }
  }
  CHECK(Codec<T>(10, Storage::float16).code_size() == 20);
  CHECK(Codec<T>(10, Storage::int8).code_size() == 11);  // + dim / 8 refinement bytes
  CHECK(Codec<T>(384, Storage::int8).code_size() == 432);
  CHECK_FALSE(Codec<T>(10, Storage::int8).is_trained());
  CHECK_THROWS_AS(Codec<T>(10, static_cast<Storage>(9)), std::invalid_argument);
}

TEST_CASE_TEMPLATE("Compressed FlatIndex: exact over the decoded rows, recall floors, memory", T, float, double) {
  const Matrix<T> x = clustered<T>(6000, 96, 24, 3);
  const Matrix<T> q = clustered<T>(60, 96, 24, 9);
  for (Metric metric : {Metric::l2, Metric::inner_product, Metric::cosine}) {
    CAPTURE(std::string(to_string(metric)));
    FlatIndex<T> exact(96, metric);
    exact.add(x);
    const Hits<T> truth = exact.search(q, 10);
    for (Storage s : {Storage::float16, Storage::bfloat16, Storage::int8}) {
      CAPTURE(std::string(to_string(s)));
      FlatIndex<T> index(96, metric, s);
      index.add(x);
      const Hits<T> batch = index.search(q, 10);
      // Regression floors on this hard synthetic set (24 tight clusters: many near-ties); the
      // issue's targets are measured on Fashion-MNIST and embeddings by bench_search.
      const double floor = s == Storage::int8 ? 0.95 : s == Storage::bfloat16 ? 0.98 : 0.99;
      CHECK(recall(batch, truth) >= floor);
      // Exact over what is stored: brute force on the decoded rows (the codes are the data).
      Matrix<T> decoded(x.rows(), 96);
      for (std::size_t i = 0; i < index.size(); ++i) decoded.row(Eigen::Index(i)) = index.vector(i).transpose();
      std::vector<Index> ids(std::size_t(x.rows()));
      for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(i);
      for (Eigen::Index i = 0; i < 5; ++i) {
        const Matrix<T> one = q.row(i);
        const Hits<T> alone = index.search(one, 10);
        REQUIRE(alone.ids.row(0) == batch.ids.row(i));
        // cosine's decoded rows are normalized already: compare as inner products
        const auto ref = test::brute_force<T>(decoded, ids, one.data(),
                                              metric == Metric::cosine ? Metric::inner_product : metric);
        if (metric != Metric::cosine)
          for (Eigen::Index j = 0; j < 10; ++j) CHECK(alone.ids(0, j) == ref[std::size_t(j)].id);
      }
      const double ratio = double(index.memory_bytes()) / double(exact.memory_bytes());
      // Per row: int8 dim + dim/8 code bytes + 13 (id, tag, norm) against 4·dim + 13: 0.305 at
      // dim 96, plus the rotation's dim² floats (1.5 % of 6000 rows here). The issue's ≤ 0.30
      // is at dim 384 and 784 with 200k and 60k rows: bench_storage.
      if (std::is_same_v<T, float>) CHECK(ratio <= (s == Storage::int8 ? 0.33 : 0.55));
    }
  }
}

TEST_CASE("Compressed IvfIndex: recall within 0.01 of IVF-Flat at the same nprobe; files") {
  const Matrix<float> x = clustered<float>(8000, 64, 32, 5);
  const Matrix<float> q = clustered<float>(100, 64, 32, 11);
  for (Metric metric : {Metric::l2, Metric::cosine}) {
    CAPTURE(std::string(to_string(metric)));
    FlatIndex<float> exact(64, metric);
    exact.add(x);
    const Hits<float> truth = exact.search(q, 10);
    IvfIndex<float> flat_ivf(64, 32, metric);
    flat_ivf.train(x);
    flat_ivf.add(x);
    CHECK_FALSE(flat_ivf.by_residual());
    const double base = recall(flat_ivf.search(q, 10, {.nprobe = 8}), truth);
    const test::TempFile file("ivf_sq8.idx");
    for (Storage s : {Storage::float16, Storage::bfloat16, Storage::int8}) {
      CAPTURE(std::string(to_string(s)));
      IvfIndex<float> ivf(64, 32, metric, s);
      CHECK(ivf.by_residual() == (s == Storage::int8));  // int8 codes residuals, as FAISS's IVF-SQ8
      ivf.train(x);
      ivf.add(x);
      const Hits<float> h = ivf.search(q, 10, {.nprobe = 8});
      // This set is hard for 8 bits (uniform noise in tight clusters: the 10th and 11th
      // neighbours nearly tie). Residual codes measured 0.987 (l2) and 0.978 (cosine) against
      // 1.000 and 0.993; codes of the rows themselves lost 0.021 (l2). The target
      // (within 0.01, nlist 256, nprobe 16) is measured on Fashion-MNIST and embeddings by
      // bench_storage.
      CHECK(recall(h, truth) >= base - (s == Storage::int8 ? 0.02 : 0.01));
      ivf.save(file.path);
      const auto loaded = IvfIndex<float>::load(file.path);
      const auto mapped = IvfIndex<float>::map(file.path, true);
      CHECK(loaded.storage() == s);
      CHECK(loaded.by_residual() == ivf.by_residual());
      CHECK(loaded.search(q, 10, {.nprobe = 8}).ids == h.ids);
      CHECK(mapped.search(q, 10, {.nprobe = 8}).ids == h.ids);
      // dim 64: (64 + 8 + 13) / (256 + 13) = 0.316 per row (0.32 is the target at dim 384)
      if (s == Storage::int8) CHECK(double(ivf.memory_bytes()) <= 0.34 * double(flat_ivf.memory_bytes()));
    }
  }
}

TEST_CASE("Compressed IvfIndex: exact over its decoded rows (residuals plus centroid) when every cell is probed") {
  const Matrix<float> x = clustered<float>(3000, 48, 16, 21);
  const Matrix<float> q = clustered<float>(20, 48, 16, 23);
  for (Metric metric : {Metric::l2, Metric::inner_product, Metric::cosine}) {
    for (Storage s : {Storage::bfloat16, Storage::int8}) {
      CAPTURE(std::string(to_string(metric)));
      CAPTURE(std::string(to_string(s)));
      IvfIndex<float> ivf(48, 16, metric, s);
      ivf.train(x);
      ivf.add(x);
      // The stored rows as the index decodes them, and their ids.
      Matrix<float> decoded(x.rows(), 48);
      std::vector<Index> ids;
      for (std::size_t l = 0; l < ivf.nlist(); ++l)
        for (std::size_t i = 0; i < ivf.list_size(l); ++i) {
          decoded.row(Eigen::Index(ids.size())) = ivf.list_vector(l, i).transpose();
          ids.push_back(ivf.list_ids(l)[i]);
        }
      REQUIRE(ids.size() == std::size_t(x.rows()));
      const Hits<float> batch = ivf.search(q, 10, {.nprobe = 16});
      for (Eigen::Index i = 0; i < q.rows(); ++i) {
        const Matrix<float> one = q.row(i);
        const Hits<float> alone = ivf.search(one, 10, {.nprobe = 16});
        REQUIRE(alone.ids.row(0) == batch.ids.row(i));
        Matrix<float> qn = one;
        if (metric == Metric::cosine) normalize_rows(qn);  // the index's own normalization
        // cosine's decoded rows are normalized rows plus rounding: rank them as inner products
        const auto ref = test::brute_force<float>(decoded, ids, qn.data(),
                                                  metric == Metric::cosine ? Metric::inner_product : metric);
        for (Eigen::Index j = 0; j < 10; ++j) CHECK(alone.ids(0, j) == ref[std::size_t(j)].id);
      }
    }
  }
  IvfIndex<float> ivf(48, 16, Metric::l2, Storage::int8);
  ivf.train(x);
  ivf.add(x);
  CHECK_THROWS_AS((void)ivf.list_vector(16, 0), std::out_of_range);
  CHECK_THROWS_AS((void)ivf.list_vector(0, ivf.list_size(0)), std::out_of_range);
}

TEST_CASE("Codec::dot_codes: within dot_codes_error of q·x̂ (x̂ as rows() decodes it)") {
  // The driver's margin relies on this bound: checked in long double against the decoded rows,
  // with and without an offset (IVF residuals), on clustered, one-hot (wide ranges, small
  // norms) and huge / tiny data.
  const std::size_t d = 130;
  std::mt19937_64 rng(5);
  std::normal_distribution<double> g(0.0, 1.0);
  for (int kind = 0; kind < 5; ++kind) {
    // kind 4: low-rank rows, enough of them (≥ 4·dim) for the int8 code to rotate
    Matrix<float> x(kind == 4 ? 700 : 300, static_cast<Eigen::Index>(d));
    const Matrix<float> latent = test::random_matrix<float>(x.rows(), 6, 77);
    const Matrix<float> mix = test::random_matrix<float>(6, x.cols(), 78);
    for (Eigen::Index i = 0; i < x.rows(); ++i)
      for (Eigen::Index j = 0; j < x.cols(); ++j)
        x(i, j) = kind == 1 ? float(j == i % Eigen::Index(d))
                  : kind == 4 ? latent.row(i).dot(mix.col(j)) + float(0.01 * g(rng))
                              : float(g(rng) + (j % 3 == 0 ? 40 : 0));
    if (kind == 2) x *= 1e18f;
    if (kind == 3) x *= 1e-18f;
    Vector<float> offset(static_cast<Eigen::Index>(d));
    for (Eigen::Index j = 0; j < offset.size(); ++j) offset[j] = x(0, j) * 0.5f;
    for (Storage s : {Storage::float16, Storage::bfloat16, Storage::int8}) {
      if (s == Storage::float16 && kind >= 2) continue;
      for (const float* off : {static_cast<const float*>(nullptr), static_cast<const float*>(offset.data())}) {
        if (off && s != Storage::int8) continue;  // only int8 codes residuals
        CAPTURE(kind);
        CAPTURE(std::string(to_string(s)));
        Codec<float> codec(d, s);
        Matrix<float> r = x;
        if (off) r.rowwise() -= offset.transpose();
        codec.train(r.data(), std::size_t(r.rows()));
        CHECK(codec.rotated() == (kind == 4 && s == Storage::int8));
        std::vector<std::uint8_t> codes(std::size_t(r.rows()) * codec.code_size());
        codec.encode(r.data(), std::size_t(r.rows()), codes.data());
        std::vector<float> scratch;
        const float* dec = codec.rows(codes.data(), std::size_t(r.rows()), scratch, off);
        double max_norm = 0;
        for (Eigen::Index i = 0; i < r.rows(); ++i) {
          double n2 = 0;
          for (std::size_t j = 0; j < d; ++j) n2 += double(dec[std::size_t(i) * d + j]) * dec[std::size_t(i) * d + j];
          max_norm = std::max(max_norm, std::sqrt(n2));
        }
        for (int t = 0; t < 5; ++t) {
          std::vector<float> q(d);
          for (auto& v : q) v = float(g(rng) * (kind == 2 ? 1e-3 : kind == 3 ? 1e-18 : 1.0));
          Codec<float>::ScanQuery prep;
          codec.prepare_scan(q.data(), prep);
          std::vector<float> out(std::size_t(r.rows()));
          codec.dot_codes(q.data(), prep, codes.data(), std::size_t(r.rows()), off, out.data());
          const double bound = codec.dot_codes_error(q.data(), prep, max_norm);
          // plus the float dot product's own error, which the driver's margin covers
          long double qx_abs = 0;
          for (std::size_t j = 0; j < d; ++j) qx_abs += std::fabs((long double)q[j]) * max_norm;
          for (Eigen::Index i = 0; i < r.rows(); ++i) {
            long double exact = 0, mag = 0;
            for (std::size_t j = 0; j < d; ++j) {
              exact += (long double)q[j] * dec[std::size_t(i) * d + j];
              mag += std::fabs((long double)q[j] * dec[std::size_t(i) * d + j]);
            }
            const double ordinary = double(d + 2) * 0x1p-24 * double(mag) + double(d) * 0x1p-149;
            CHECK(double(std::fabs(out[std::size_t(i)] - exact)) <= bound + ordinary);
          }
          if (s == Storage::int8) CHECK(bound > 0);
          else CHECK(bound == 0);
        }
      }
    }
  }
}

TEST_CASE("Single queries scored on the codes: exact over the decoded rows on adversarial data") {
  // One query at a time, compressed rows are scored on their codes (Codec::dot_codes) with the
  // codec's error added to the rescoring margin. On near-ties (rows one code step apart),
  // duplicates and huge or tiny coordinates the answer must still be the brute-force top-k of
  // the decoded rows, ties to the smaller id, and equal the batch (GEMM on decoded rows).
  const Eigen::Index d = 40, n = 600;
  const Matrix<float> base = clustered<float>(n, d, 3, 41);
  for (const double scale : {1.0, 1e15, 1e-18}) {
    Matrix<float> x = base;
    // Rows 0..199: row 0 plus at most one small change, so many decode one code step apart.
    for (Eigen::Index i = 1; i < 200; ++i) {
      x.row(i) = x.row(0);
      x(i, i % d) += float(0.02 * double(i % 7));
    }
    x.row(300) = x.row(0);  // exact duplicates under different ids
    x.row(301) = x.row(0);
    x *= float(scale);
    const Matrix<float> q = (clustered<float>(6, d, 3, 43) * float(scale)).eval();
    for (Storage s : {Storage::float16, Storage::bfloat16, Storage::int8}) {
      if (s == Storage::float16 && scale != 1.0) continue;  // beyond / below half's range
      for (Metric metric : {Metric::l2, Metric::inner_product, Metric::cosine}) {
        CAPTURE(scale);
        CAPTURE(std::string(to_string(s)));
        CAPTURE(std::string(to_string(metric)));
        FlatIndex<float> flat(std::size_t(d), metric, s);
        flat.add(x);
        IvfIndex<float> ivf(std::size_t(d), 4, metric, s);
        ivf.train(x);
        ivf.add(x);
        // Decoded rows and ids of both indexes.
        Matrix<float> fdec(n, d), idec(n, d);
        std::vector<Index> fids(static_cast<std::size_t>(n)), iids;
        for (Eigen::Index i = 0; i < n; ++i) {
          fdec.row(i) = flat.vector(std::size_t(i)).transpose();
          fids[std::size_t(i)] = i;
        }
        for (std::size_t l = 0; l < ivf.nlist(); ++l)
          for (std::size_t i = 0; i < ivf.list_size(l); ++i) {
            idec.row(Eigen::Index(iids.size())) = ivf.list_vector(l, i).transpose();
            iids.push_back(ivf.list_ids(l)[i]);
          }
        const Metric ref_metric = metric == Metric::cosine ? Metric::inner_product : metric;
        const Hits<float> fbatch = flat.search(q, 12), ibatch = ivf.search(q, 12, {.nprobe = 4});
        for (Eigen::Index i = 0; i < q.rows(); ++i) {
          Matrix<float> qi = q.row(i);
          const Hits<float> fa = flat.search(qi, 12), ia = ivf.search(qi, 12, {.nprobe = 4});
          CHECK(fa.ids.row(0) == fbatch.ids.row(i));
          CHECK(ia.ids.row(0) == ibatch.ids.row(i));
          if (metric == Metric::cosine) normalize_rows(qi);
          const auto fref = test::brute_force<float>(fdec, fids, qi.data(), ref_metric);
          const auto iref = test::brute_force<float>(idec, iids, qi.data(), ref_metric);
          for (Eigen::Index j = 0; j < 12; ++j) {
            CHECK(fa.ids(0, j) == fref[std::size_t(j)].id);
            CHECK(ia.ids(0, j) == iref[std::size_t(j)].id);
          }
        }
      }
    }
  }
}

TEST_CASE("Single queries on int8 codes: subnormal rows and kernel overflow (break-it review)") {
  SUBCASE("a decoded subnormal coordinate rounds absolutely, not relatively") {
    // dot_codes scores the grid point D(c) = c·vdiff/255 (≈ 1.02 subnormal ulp here), the
    // decoded row holds 1 ulp: with a 1.5e19 query that gap once flipped the answer.
    const float ulp = std::numeric_limits<float>::denorm_min();
    Matrix<float> train(2, 2), x(2, 2), q(1, 2);
    train << 0, 0, 10 * ulp, 1e-24f;
    x << ulp, 0, 0, 1e-24f;
    q << 1.5e19f, float(1.5e19 * double(ulp) * 1.0098 / 1e-24);
    FlatIndex<float> index(2, Metric::inner_product, Storage::int8);
    index.train(train);
    index.add(x);
    CHECK(index.search(q, 1).ids(0, 0) == 1);
    CHECK(index.search(q.replicate(8, 1), 1).ids(0, 0) == 1);
  }
  SUBCASE("partial sums beyond FLT_MAX while q·x̂ is finite: the query is decoded instead") {
    const float r = 1.2e19f, s = 1.5e18f;
    Matrix<float> x(4, 2), q(1, 2);
    x << -r, -s, r, s, -r + 250.f / 255 * 2 * r, s, -r + 235.f / 255 * 2 * r, -s;
    q << -1.5e19f, 1e19f;
    FlatIndex<float> index(2, Metric::inner_product, Storage::int8), exact(2, Metric::inner_product);
    index.add(x);
    exact.add(x);
    const Hits<float> one = index.search(q, 2);
    CHECK(one.ids == index.search(q.replicate(8, 1), 2).ids.topRows(1));
    CHECK(one.ids == exact.search(q, 2).ids);  // ids 0, 2
  }
}

TEST_CASE("IvfIndex: a version-2 int8 file (codes of the rows) loads, searches as written, and saves back as rows") {
  // Written by version 2 (commit 9d574bd): IvfIndex<float>(4, 2, l2, int8), 24 rows (below)
  // trained and added; its search of the first three rows with nprobe 2, k 3 gave `want`.
  const std::vector<unsigned char> v2 = {
    77,77,82,65,71,73,86,70,2,0,0,0,1,0,0,0,2,0,0,0,3,0,0,0,4,0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,24,0,
    0,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,190,0,0,128,189,0,0,0,0,0,0,128,61,0,128,30,65,0,128,31,65,
    0,128,32,65,0,128,33,65,1,0,0,0,0,0,0,0,0,0,0,192,0,0,0,192,0,0,0,192,0,0,224,191,0,0,96,65,0,
    0,96,65,0,0,96,65,0,0,92,65,16,0,0,0,0,0,0,0,1,0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,4,0,0,0,0,0,0,0,
    5,0,0,0,0,0,0,0,7,0,0,0,0,0,0,0,8,0,0,0,0,0,0,0,10,0,0,0,0,0,0,0,11,0,0,0,0,0,0,0,13,0,0,0,0,
    0,0,0,14,0,0,0,0,0,0,0,16,0,0,0,0,0,0,0,17,0,0,0,0,0,0,0,19,0,0,0,0,0,0,0,20,0,0,0,0,0,0,0,22,
    0,0,0,0,0,0,0,23,0,0,0,0,0,0,0,36,107,211,64,98,221,160,64,168,85,199,64,71,192,185,64,152,
    251,166,64,0,120,194,64,218,81,188,64,71,71,185,64,150,90,194,64,214,140,166,64,218,134,188,
    64,220,255,195,64,98,221,160,64,24,210,211,64,71,192,185,64,36,91,212,64,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    32,14,73,51,64,46,27,5,50,32,14,70,5,64,46,23,68,50,32,9,23,5,64,42,9,68,50,28,41,23,5,60,27,
    9,68,46,59,41,23,0,46,27,9,65,0,59,41,19,64,46,27,5,18,0,59,37,5,64,46,23,36,18,0,56,8,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,3,0,0,0,0,0,0,0,6,0,0,0,0,0,0,0,9,0,0,0,0,0,0,0,12,0,0,0,0,0,0,0,15,0,
    0,0,0,0,0,0,18,0,0,0,0,0,0,0,21,0,0,0,0,0,0,0,88,64,190,67,156,29,188,67,2,185,185,67,106,68,
    183,67,83,48,223,67,222,13,221,67,200,32,218,67,172,138,215,67,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,182,241,223,204,200,182,241,223,219,200,182,241,237,219,200,181,255,237,219,
    199,196,255,237,218,214,196,255,236,232,214,196,255,37,152,161,8,7,10,171,247};
  Matrix<float> x(24, 4);
  for (int i = 0; i < 24; ++i)
    for (int j = 0; j < 4; ++j)
      x(i, j) = float(((i * 7 + j * 13) % 17) - 8) * 0.25f + (i % 3 == 0 ? 10.f : 0.f);
  const Matrix<Index> want_ids = (Matrix<Index>(3, 3) << 0, 15, 3, 1, 13, 8, 2, 19, 7).finished();
  const Matrix<float> want_scores = (Matrix<float>(3, 3) << 0.000455580099f, 2.29145455f, 13.5874224f, 0.000455594156f, 0.280910254f, 0.935481548f, 0.00153403089f, 0.00153403089f, 0.23585929f).finished();
  const std::vector<char> bytes(v2.begin(), v2.end());
  const auto old = IvfIndex<float>::parse(bytes, "v2.ivf");
  CHECK_FALSE(old.by_residual());
  const Hits<float> h = old.search(x.topRows(3), 3, {.nprobe = 2});
  CHECK(h.ids == want_ids);
  for (Eigen::Index i = 0; i < h.scores.size(); ++i)
    CHECK(h.scores.data()[i] == doctest::Approx(want_scores.data()[i]).epsilon(1e-6));
  // Saved again (version 3, residual flag 0) and re-read: the same rows, the same answers; rows
  // added after loading are coded the same way.
  auto again = IvfIndex<float>::parse(old.serialize(), "v3.ivf");
  CHECK_FALSE(again.by_residual());
  CHECK(again.search(x.topRows(3), 3, {.nprobe = 2}).ids == want_ids);
  for (std::size_t l = 0; l < old.nlist(); ++l)
    for (std::size_t i = 0; i < old.list_size(l); ++i) CHECK(again.list_vector(l, i) == old.list_vector(l, i));
  again.add(x.bottomRows(4));
  const auto third = IvfIndex<float>::parse(again.serialize(), "v3b.ivf");
  CHECK(third.search(x, 5, {.nprobe = 2}).ids == again.search(x, 5, {.nprobe = 2}).ids);
  // A version-3 file claiming residual codes for a storage other than int8 is rejected.
  IvfIndex<float> f16(4, 2, Metric::l2, Storage::float16);
  f16.train(x);
  std::vector<char> bad = f16.serialize();
  bad[56] = 1;  // the residual flag (after dim, nlist, size, trained)
  const std::uint64_t sum = detail::checksum(bad.data(), bad.size() - 8);
  std::memcpy(bad.data() + bad.size() - 8, &sum, 8);
  CHECK_THROWS_AS((void)IvfIndex<float>::parse(bad, "bad.ivf"), std::runtime_error);
}

TEST_CASE("Compressed storage: bad input throws and changes nothing") {
  FlatIndex<float> index(4, Metric::l2, Storage::int8);
  CHECK_FALSE(index.is_trained());
  Matrix<float> bad = Matrix<float>::Ones(3, 4);
  bad(1, 2) = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_AS(index.add(bad), std::invalid_argument);
  CHECK_FALSE(index.is_trained());  // a failed add does not train either
  CHECK_THROWS_AS(index.train(Matrix<float>(0, 4)), std::invalid_argument);
  CHECK_THROWS_AS(index.train(bad), std::invalid_argument);
  index.add(test::random_matrix<float>(10, 4, 1));
  CHECK(index.is_trained());
  const std::vector<char> before = index.serialize();
  CHECK_THROWS_AS(index.train(test::random_matrix<float>(10, 4, 2)), std::invalid_argument);
  CHECK(index.serialize() == before);
  // A file naming an unknown storage, or int8 ranges that are not positive, is rejected.
  std::vector<char> bytes = before;
  bytes[20] = 7;
  const std::uint64_t sum = detail::checksum(bytes.data(), bytes.size() - 8);
  std::memcpy(bytes.data() + bytes.size() - 8, &sum, 8);
  CHECK_THROWS_WITH_AS((void)FlatIndex<float>::parse(bytes), doctest::Contains("storage"), std::runtime_error);
  bytes = before;
  const float zero = 0;
  std::memcpy(bytes.data() + 32 + 24 + 16, &zero, 4);  // vdiff[0] (after flag, count, rotation flag, vmin)
  const std::uint64_t sum2 = detail::checksum(bytes.data(), bytes.size() - 8);
  std::memcpy(bytes.data() + bytes.size() - 8, &sum2, 8);
  CHECK_THROWS_WITH_AS((void)FlatIndex<float>::parse(bytes), doctest::Contains("int8 range"), std::runtime_error);
}

namespace {

// Embedding-like rows (as bench_storage's "embeddings"): a low intrinsic dimension (`latent`
// directions), per-dimension offsets and spreads, small full-rank noise, around `clusters`
// centres.
Matrix<float> low_rank(Eigen::Index n, Eigen::Index d, Eigen::Index latent, Eigen::Index clusters,
                       std::uint64_t seed) {
  const Matrix<float> map = test::random_matrix<float>(latent, d, 901);
  const Matrix<float> centres = test::random_matrix<float>(clusters, latent, 902, 2.f);
  const Matrix<float> offset = test::random_matrix<float>(1, d, 903);
  const Matrix<float> spread = test::random_matrix<float>(n, latent, seed, 0.5f);
  const Matrix<float> noise = test::random_matrix<float>(n, d, seed + 1, 0.02f);
  Matrix<float> x(n, d);
  for (Eigen::Index i = 0; i < n; ++i)
    x.row(i) = offset.row(0) + (centres.row(i % clusters) + spread.row(i)) * map + noise.row(i);
  return x;
}

}  // namespace

TEST_CASE("int8 code: rotated onto principal axes for low-rank data, plain where the grid is exact") {
  const Eigen::Index d = 96;
  const Matrix<float> x = low_rank(2000, d, 10, 20, 31);
  Codec<float> codec(std::size_t(d), Storage::int8);
  codec.train(x.data(), std::size_t(x.rows()));
  REQUIRE(codec.rotated());
  CHECK(codec.code_size() == std::size_t(d + d / 8));
  std::vector<std::uint8_t> codes(std::size_t(x.rows()) * codec.code_size());
  codec.encode(x.data(), std::size_t(x.rows()), codes.data());
  // In code space every coordinate is within half a step of its range; the refined ones 255
  // times closer.
  Matrix<float> z(x.rows(), d), zhat(x.rows(), d), back(x.rows(), d);
  codec.to_code_space(x.data(), std::size_t(x.rows()), z.data());
  codec.decode_code_space(codes.data(), std::size_t(x.rows()), zhat.data());
  codec.decode(codes.data(), std::size_t(x.rows()), back.data());
  std::size_t refined = 0;
  for (Eigen::Index j = 0; j < d; ++j) {
    const double range = double(z.col(j).maxCoeff()) - double(z.col(j).minCoeff());
    const double err = double((z.col(j) - zhat.col(j)).cwiseAbs().maxCoeff());
    CHECK(err <= range / 510 * (1 + 1e-4) + 1e-5);  // + the two rotations' rounding
    refined += err <= range / 510 / 100 + 1e-5;
  }
  CHECK(refined >= std::size_t(d / 8));
  // Back in the caller's space the error is the code-space error (R is orthogonal).
  for (Eigen::Index i = 0; i < x.rows(); ++i)
    CHECK((x.row(i) - back.row(i)).norm() <= (z.row(i) - zhat.row(i)).norm() * (1 + 1e-3) + 1e-4 * x.row(i).norm());
  // Queries: q·x̂ in the caller's space = (Rq)·ẑ in code space.
  const Matrix<float> q = low_rank(5, d, 10, 20, 77);
  Matrix<float> qz(5, d);
  codec.to_code_space(q.data(), 5, qz.data());
  for (Eigen::Index i = 0; i < 5; ++i)
    for (Eigen::Index r = 0; r < 50; ++r)
      CHECK(double(qz.row(i).dot(zhat.row(r))) ==
            doctest::Approx(double(q.row(i).dot(back.row(r)))).epsilon(1e-4));

  // Pixel-like integer data in [0, 255]: the plain grid reproduces it exactly, so no rotation.
  Matrix<float> pixels(1000, d);
  for (Eigen::Index i = 0; i < pixels.rows(); ++i)
    for (Eigen::Index j = 0; j < d; ++j) pixels(i, j) = float((i * 37 + j * 11 + (i * j) % 7) % 256);
  pixels.row(0).setConstant(0), pixels.row(1).setConstant(255);
  Codec<float> plain(std::size_t(d), Storage::int8);
  plain.train(pixels.data(), std::size_t(pixels.rows()));
  CHECK_FALSE(plain.rotated());
  std::vector<std::uint8_t> pc(std::size_t(pixels.rows()) * plain.code_size());
  plain.encode(pixels.data(), std::size_t(pixels.rows()), pc.data());
  Matrix<float> pb(pixels.rows(), d);
  plain.decode(pc.data(), std::size_t(pixels.rows()), pb.data());
  // refinement bytes of exact values decode to 0 within the grid's float rounding
  CHECK((pb - pixels).cwiseAbs().maxCoeff() <= 255 * 0x1p-22f);

  // Too few rows for the principal axes (n < 4·dim): plain.
  Codec<float> few(std::size_t(d), Storage::int8);
  few.train(x.data(), 300);
  CHECK_FALSE(few.rotated());
}

TEST_CASE("int8 on low-rank embeddings: recall, exact over the decoded rows, files") {
  const Eigen::Index d = 96;
  const Matrix<float> x = low_rank(6000, d, 12, 60, 41);
  const Matrix<float> q = low_rank(80, d, 12, 60, 43);
  for (Metric metric : {Metric::cosine, Metric::l2, Metric::inner_product}) {
    CAPTURE(std::string(to_string(metric)));
    FlatIndex<float> exact(std::size_t(d), metric);
    exact.add(x);
    const Hits<float> truth = exact.search(q, 10);
    FlatIndex<float> index(std::size_t(d), metric, Storage::int8);
    index.add(x);
    const Hits<float> batch = index.search(q, 10);
    CHECK(recall(batch, truth) >= 0.99);
    CHECK(double(index.memory_bytes()) <= 0.33 * double(exact.memory_bytes()));  // (see above)
    // Exact over the stored rows: one query at a time (scored on the codes) = batch, and the
    // scores are those of the decoded rows (rotated back: equal up to the rotation's rounding).
    for (Eigen::Index i = 0; i < 8; ++i) {
      const Matrix<float> one = q.row(i);
      const Hits<float> alone = index.search(one, 10);
      REQUIRE(alone.ids.row(0) == batch.ids.row(i));
      Matrix<float> qn = one;
      if (metric == Metric::cosine) normalize_rows(qn);
      for (Eigen::Index j = 0; j < 10; ++j) {
        const Vector<float> v = index.vector(std::size_t(alone.ids(0, j)));
        const double want = metric == Metric::l2 ? double((qn.row(0).transpose() - v).squaredNorm())
                                                 : double(qn.row(0).dot(v.transpose()));
        CHECK(double(alone.scores(0, j)) == doctest::Approx(want).epsilon(1e-4).scale(1));
      }
    }
    // Files keep the rotation: loaded and mapped copies answer identically.
    const test::TempFile file("int8_rot.idx");
    index.save(file.path);
    const auto loaded = FlatIndex<float>::load(file.path);
    const auto mapped = FlatIndex<float>::map(file.path, true);
    CHECK(loaded.search(q, 10).ids == batch.ids);
    CHECK(loaded.search(q, 10).scores == batch.scores);
    CHECK(mapped.search(q, 10).ids == batch.ids);

    // IVF-SQ8 (residual codes, rotated): within 0.01 of IVF-Flat at the same nprobe.
    IvfIndex<float> flat_ivf(std::size_t(d), 32, metric);
    flat_ivf.train(x);
    flat_ivf.add(x);
    IvfIndex<float> ivf(std::size_t(d), 32, metric, Storage::int8);
    ivf.train(x);
    ivf.add(x);
    const Hits<float> h = ivf.search(q, 10, {.nprobe = 8});
    CHECK(recall(h, truth) >= recall(flat_ivf.search(q, 10, {.nprobe = 8}), truth) - 0.01);
    for (Eigen::Index i = 0; i < 4; ++i)
      CHECK(ivf.search(q.row(i), 10, {.nprobe = 8}).ids.row(0) == h.ids.row(i));
    const auto ivf_loaded = IvfIndex<float>::parse(ivf.serialize(), "ivf.idx");
    CHECK(ivf_loaded.search(q, 10, {.nprobe = 8}).ids == h.ids);
    // list_vector is in the caller's space: close to the (normalized) row it stores.
    Matrix<float> xn = x;
    if (metric == Metric::cosine) normalize_rows(xn);
    for (std::size_t i = 0; i < std::min<std::size_t>(ivf.list_size(0), 5); ++i) {
      const Index id = ivf.list_ids(0)[i];
      CHECK((ivf.list_vector(0, i) - xn.row(Eigen::Index(id)).transpose()).norm() <=
            2e-3 * (1 + xn.row(Eigen::Index(id)).norm()));
    }
  }
}

TEST_CASE("int8 files: a rotation that is not orthogonal, or a wrong refinement count, is rejected") {
  const Eigen::Index d = 96;
  const Matrix<float> x = low_rank(1000, d, 10, 20, 51);
  FlatIndex<float> index(std::size_t(d), Metric::l2, Storage::int8);
  index.add(x);
  const std::vector<char> good = index.serialize();
  REQUIRE_NOTHROW((void)FlatIndex<float>::parse(good));
  auto forged = [&](std::size_t at, const void* v, std::size_t n) {
    std::vector<char> b = good;
    std::memcpy(b.data() + at, v, n);
    const std::uint64_t sum = detail::checksum(b.data(), b.size() - 8);
    std::memcpy(b.data() + b.size() - 8, &sum, 8);
    return b;
  };
  // Layout after the 32-byte header: flag, refinement count, rotation flag, minima, ranges,
  // refined coordinates, rotation.
  const std::uint64_t flag = 2, count = 7, rot = 1;  // count: dim / 8 = 12 expected
  std::uint64_t got = 0;
  std::memcpy(&got, good.data() + 32, 8);
  CHECK(got == flag);
  std::memcpy(&got, good.data() + 48, 8);
  REQUIRE(got == rot);
  CHECK_THROWS_WITH_AS((void)FlatIndex<float>::parse(forged(40, &count, 8)),
                       doctest::Contains("refinement count"), std::runtime_error);
  const std::size_t coords = std::size_t(d + d / 8);
  const std::size_t rotation_at = 56 + 8 * coords + 4 * std::size_t(d / 8);
  const float two = 2.f;
  CHECK_THROWS_WITH_AS((void)FlatIndex<float>::parse(forged(rotation_at, &two, 4)),
                       doctest::Contains("orthogonal"), std::runtime_error);
  const std::uint32_t big = 1000;
  CHECK_THROWS_WITH_AS((void)FlatIndex<float>::parse(forged(56 + 8 * coords, &big, 4)),
                       doctest::Contains("refined coordinates"), std::runtime_error);
}

TEST_CASE("int8 break-it regressions: rotated queries beyond float range, doubles beyond float, untrained codes with rows") {
  const Eigen::Index d = 32;
  const Matrix<float> x = low_rank(1000, d, 6, 10, 61);
  // A finite query whose rotation leaves float range is an error, not a garbage answer.
  FlatIndex<float> flat(std::size_t(d), Metric::inner_product, Storage::int8);
  flat.add(x);
  Matrix<float> huge = x.topRows(2);
  huge.row(1).setConstant(3e38f);  // finite; its rotation is not (Σ_j R_aj·3e38 > FLT_MAX)
  CHECK_THROWS_WITH_AS((void)flat.search(huge, 3), doctest::Contains("queries row 1"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS((void)flat.search(huge.row(1), 3), doctest::Contains("row 0"),
                       std::invalid_argument);
  IvfIndex<float> ivf(std::size_t(d), 4, Metric::l2, Storage::int8);
  ivf.train(x);
  ivf.add(x);
  CHECK_THROWS_AS((void)ivf.search(huge, 3), std::invalid_argument);
  CHECK(flat.search(x.topRows(1), 3).ids(0, 0) >= 0);  // ordinary queries still answer

  // int8 codes float values: a double index refuses to train on a value beyond float range
  // (before: ranges of ±inf, every stored row non-finite, a file its own parse rejects).
  const Matrix<double> xd = x.cast<double>();
  Matrix<double> bad = xd;
  bad.row(3) *= 1e300;
  FlatIndex<double> fd(std::size_t(d), Metric::l2, Storage::int8);
  CHECK_THROWS_WITH_AS(fd.add(bad), doctest::Contains("beyond float range"), std::invalid_argument);
  CHECK_FALSE(fd.is_trained());
  CHECK(fd.size() == 0);
  fd.add(xd);
  CHECK(fd.search(xd.topRows(1), 1).ids(0, 0) == 0);

  // A file with int8 rows but no codec parameters (flag 0) is rejected: its rows cannot be
  // decoded (before: vector() returned uninitialized memory).
  const std::size_t n = 4, cs = std::size_t(d + d / 8);
  std::vector<char> out;
  detail::write_index_start<float>(out, "MMRAGFLT", 2, Metric::l2, 3, std::uint64_t(d));
  detail::append(out, std::uint64_t(0));  // codec flag 0
  detail::append(out, std::uint64_t(n));
  for (std::size_t i = 0; i < n; ++i) detail::append(out, std::int64_t(i));
  for (std::size_t i = 0; i < n; ++i) detail::append(out, 1.0f);
  for (std::size_t i = 0; i < n; ++i) detail::append(out, std::uint8_t(0));
  out.resize((out.size() + 63) / 64 * 64, 0);
  for (std::size_t i = 0; i < n * cs; ++i) detail::append(out, std::uint8_t(200));
  out.resize((out.size() + 7) / 8 * 8, 0);
  detail::write_checksum(out);
  CHECK_THROWS_WITH_AS((void)FlatIndex<float>::parse(out), doctest::Contains("codec's parameters"),
                       std::runtime_error);
}
