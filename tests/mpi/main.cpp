// doctest main for the MPI suites: every rank runs every test case in the same order (the
// cases are collective), and the program fails on every rank when any rank failed.
// Run: mpirun --allow-run-as-root --oversubscribe -np 4 ./mpi_tests
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <mpi.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  context.setOption("no-intro", true);
  context.setOption("order-by", "file");  // collective cases: the same order on every rank
  if (rank != 0) context.setOption("no-version", true);
  int failed = context.run() != 0 ? 1 : 0;
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return context.shouldExit() ? failed : any;
}
