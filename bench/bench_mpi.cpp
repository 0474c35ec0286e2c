// The global-batch losses over MPI ranks (mmrag/mpi.hpp) against the single-process tiled loss
// on the same global batch: time, per-rank peak memory, and the bytes each rank hands to MPI
// compared with the formulas stated in mpi.hpp.
//
//   baseline (one process, both cores):
//     OMP_NUM_THREADS=2 mpirun --allow-run-as-root -np 1 build/tests/mpi/bench_mpi
//   distributed (4 ranks on this machine's 2 cores: oversubscribed, time is indicative):
//     OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np 4 build/tests/mpi/bench_mpi
// With one rank the program runs the single-process baselines (loss::…); with more it runs the
// distributed losses (mpi::…), one fixed iteration each so that every rank runs the same
// collectives, timed as the slowest rank (manual time). Rank 0 reports.
// Counters: peak_MiB = the rank's peak resident memory during the call above what it held
// before (max over ranks; /proc/self/clear_refs resets the high-water mark), sent_MiB = bytes
// this rank handed to MPI for other ranks (counted by PMPI wrappers below, max over ranks),
// formula_MiB = the formula of mpi.hpp for the same rank.
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "bench_common.hpp"
#include "mmrag/losses.hpp"
#include "mmrag/mpi.hpp"

using namespace mmrag;

// ---- PMPI wrappers: count the payload each rank hands to MPI for the other ranks -------------
namespace {
double g_sent = 0;  // bytes
int type_size(MPI_Datatype t) {
  int s = 0;
  PMPI_Type_size(t, &s);
  return s;
}
int comm_size(MPI_Comm c) {
  int p = 1;
  PMPI_Comm_size(c, &p);
  return p;
}
int comm_rank(MPI_Comm c) {
  int r = 0;
  PMPI_Comm_rank(c, &r);
  return r;
}
}  // namespace

extern "C" {
int MPI_Allgather(const void* sb, int sc, MPI_Datatype st, void* rb, int rc, MPI_Datatype rt,
                  MPI_Comm comm) {
  g_sent += double(sc) * type_size(st) * (comm_size(comm) - 1);  // to each other rank
  return PMPI_Allgather(sb, sc, st, rb, rc, rt, comm);
}
int MPI_Allgatherv(const void* sb, int sc, MPI_Datatype st, void* rb, const int rc[],
                   const int displs[], MPI_Datatype rt, MPI_Comm comm) {
  g_sent += double(sc) * type_size(st) * (comm_size(comm) - 1);
  return PMPI_Allgatherv(sb, sc, st, rb, rc, displs, rt, comm);
}
int MPI_Reduce_scatter(const void* sb, void* rb, const int rc[], MPI_Datatype t, MPI_Op op,
                       MPI_Comm comm) {
  double others = 0;  // the contributions for the other ranks' parts
  for (int q = 0; q < comm_size(comm); ++q)
    if (q != comm_rank(comm)) others += rc[q];
  g_sent += others * type_size(t);
  return PMPI_Reduce_scatter(sb, rb, rc, t, op, comm);
}
int MPI_Allreduce(const void* sb, void* rb, int c, MPI_Datatype t, MPI_Op op, MPI_Comm comm) {
  g_sent += double(c) * type_size(t);
  return PMPI_Allreduce(sb, rb, c, t, op, comm);
}
int MPI_Reduce(const void* sb, void* rb, int c, MPI_Datatype t, MPI_Op op, int root,
               MPI_Comm comm) {
  if (comm_rank(comm) != root) g_sent += double(c) * type_size(t);
  return PMPI_Reduce(sb, rb, c, t, op, root, comm);
}
int MPI_Bcast(void* b, int c, MPI_Datatype t, int root, MPI_Comm comm) {
  if (comm_rank(comm) == root) g_sent += double(c) * type_size(t) * (comm_size(comm) - 1);
  return PMPI_Bcast(b, c, t, root, comm);
}
int MPI_Isend(const void* b, int c, MPI_Datatype t, int dest, int tag, MPI_Comm comm,
              MPI_Request* req) {
  g_sent += double(c) * type_size(t);
  return PMPI_Isend(b, c, t, dest, tag, comm, req);
}
int MPI_Sendrecv(const void* sb, int sc, MPI_Datatype st, int dest, int stag, void* rb, int rc,
                 MPI_Datatype rt, int src, int rtag, MPI_Comm comm, MPI_Status* status) {
  g_sent += double(sc) * type_size(st);
  return PMPI_Sendrecv(sb, sc, st, dest, stag, rb, rc, rt, src, rtag, comm, status);
}
}  // extern "C"

namespace {

int rank_of() {
  return comm_rank(MPI_COMM_WORLD);
}
int ranks() {
  return comm_size(MPI_COMM_WORLD);
}

/// kB field of /proc/self/status ("VmHWM", "VmRSS") in MiB.
double status_mib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(line.find(':') + 1)) / 1024.0;
  return 0;
}
void reset_peak() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

double max_over_ranks(double v) {
  PMPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return v;
}

constexpr double kMiB = 1024.0 * 1024.0;

/// Global batch B (range 0), d (range 1), loss (range 2: 0 = in_batch_info_nce, 1 = sigmoid).
/// One rank: the single-process tiled loss on the whole batch. Several: the distributed loss,
/// B / P rows per rank.
void BM_loss(benchmark::State& state) {
  const Eigen::Index B = state.range(0), d = state.range(1);
  const bool siglip = state.range(2) == 1;
  const int P = ranks(), me = rank_of();
  const Eigen::Index local = B / P;  // the benchmark sizes divide evenly
  const Matrix<float> a = bench::random_matrix<float>(local, d, 1 + std::uint64_t(me)),
                      b = bench::random_matrix<float>(local, d, 100 + std::uint64_t(me));
  double peak = 0, sent = 0;
  for (auto _ : state) {
    const double before = status_mib("VmRSS:");
    reset_peak();
    g_sent = 0;
    PMPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    loss::PairLoss<float> r;
    if (P == 1)
      r = siglip ? loss::sigmoid_pairwise(a, b) : loss::in_batch_info_nce(a, b);
    else
      r = siglip ? mpi::sigmoid_pairwise(MPI_COMM_WORLD, a, b)
                 : mpi::in_batch_info_nce(MPI_COMM_WORLD, a, b);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(r.grad_a.data());
    sent = g_sent;
    peak = std::max(peak, status_mib("VmHWM:") - before);
    state.SetIterationTime(max_over_ranks(secs));
  }
  const double s = sizeof(float);
  // mpi.hpp's formulas (rank 0; equal blocks): in_batch_info_nce (P−1)·B_r·d·s + (B−B_r)·d·s
  // (+ O(B) column LSE), sigmoid_pairwise (2B − B_{r+1})·d·s.
  const double formula = P == 1 ? 0
                         : siglip
                             ? (2.0 * double(B) - double(local)) * double(d) * s
                             : (double(P - 1) * double(local) + double(B - local)) * double(d) * s;
  state.counters["peak_MiB"] = max_over_ranks(peak);
  state.counters["sent_MiB"] = max_over_ranks(sent) / kMiB;
  state.counters["formula_MiB"] = formula / kMiB;
  state.counters["BxB_float_MiB"] = double(B) * double(B) * s / kMiB;
  state.counters["GFLOP/s"] =
      benchmark::Counter((siglip ? 3.0 : 4.0) * 2.0 * double(B) * double(B) * double(d) * 1e-9 *
                             double(state.iterations()),
                         benchmark::Counter::kIsIterationInvariantRate);
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(B));
  state.SetLabel(std::string(P == 1 ? "single process, " : "mpi, ") + std::to_string(P) +
                 " rank(s), " + (siglip ? "sigmoid_pairwise" : "in_batch_info_nce"));
}

void sizes(benchmark::internal::Benchmark* b) {
  for (long B : {1024, 16384, 32768})  // 1024: the smoke run of `meson test --benchmark`
    for (long loss : {0, 1}) b->Args({B, 512, loss});
  b->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_loss)->Name("global_batch_loss")->Apply(sizes);

/// Swallows the reports of ranks other than 0.
class Silent : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  benchmark::Initialize(&argc, argv);
  if (rank_of() == 0) {
    benchmark::RunSpecifiedBenchmarks();
  } else {
    Silent silent;
    benchmark::RunSpecifiedBenchmarks(&silent);
  }
  benchmark::Shutdown();
  MPI_Finalize();
  return 0;
}
