#!/usr/bin/env bash
# The headers are warning-free for consumers: with g++ and clang++ at
#   -std=c++20 -Wall -Wextra -Wpedantic -Werror
# with Eigen and xsimd as system headers (-isystem, as CMake's imported targets and Meson's
# include_type : 'system' give them: Eigen 3.4.0's own AVX headers warn at -Wall, and they are
# not ours to fix) and mmrag on a plain -I path, so every warning in mmrag's headers shows,
#   1. every public header compiles on its own (self-contained, no warnings), and
#   2. whole programs that instantiate most of the API compile with g++ at -O2 -fopenmp
#      -march=native (AVX-512 here; the consumers in build.sh cover SSE2 and AVX2): GCC's
#      middle-end warnings (-Wmaybe-uninitialized, -Warray-bounds, ...) appear only when
#      templates are instantiated and inlined.
# Usage: consumers/check_headers.sh [compiler ...]   (default: g++ clang++)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
compilers=("$@")
[ ${#compilers[@]} -gt 0 ] || compilers=(g++ clang++)
deps=$(pkg-config --cflags eigen3 xsimd | sed 's/-I/-isystem /g')
flags="-std=c++20 -Wall -Wextra -Wpedantic -Werror -I$root/include $deps"
# consumers/consumer.cpp is built at -Werror by the three consumers of build.sh already.
programs=(docs/examples/getting_started.cpp docs/examples/cookbook.cpp)
# One compile per (compiler, header) and per (compiler, program), as many at once as there are
# cores; each prints its own diagnostics and fails alone.
one_header() {  # cxx header-path
  local cxx=$1 rel=${2#"$root/include/"} extra=""
  if [ "$rel" = mmrag/mpi.hpp ]; then  # the one header that needs <mpi.h>
    if ! pkg-config --exists mpi; then
      echo "$cxx: $rel skipped (no MPI: apt-get install libopenmpi-dev)"
      return 0
    fi
    # as system headers (what CMake's MPI::MPI_CXX gives): Open MPI's own C++ bindings warn
    extra=$(pkg-config --cflags mpi | sed 's/-I/-isystem /g')
  fi
  local src log
  src=$(mktemp --suffix=.cpp -p "$work") log=$(mktemp -p "$work")
  printf '#include "%s"\nint main() { return 0; }\n' "$rel" >"$src"
  # shellcheck disable=SC2086
  if ! $cxx $flags $extra -fsyntax-only "$src" 2>"$log"; then
    echo "$cxx: $rel alone:"
    head -n 30 "$log"
    return 1
  fi
}
one_program() {  # cxx program
  local cxx=$1 p=$2 log obj
  log=$(mktemp -p "$work") obj=$(mktemp --suffix=.o -p "$work")
  # shellcheck disable=SC2086
  if ! $cxx $flags -O2 -fopenmp -march=native -c "$root/$p" -o "$obj" 2>"$log"; then
    echo "$cxx: $p:"
    grep -E 'warning|error' "$log" | sort | uniq -c | sort -rn | head -n 10
    head -n 30 "$log"
    return 1
  fi
}
export -f one_header one_program
export root work flags
headers=$(find "$root/include/mmrag" -name '*.hpp' -not -path '*/detail/*' | sort)
status=0
{
  for cxx in "${compilers[@]}"; do
    # Programs with g++ only: its middle-end warnings are the ones that need instantiation and
    # inlining; clang's diagnostics all show on the headers alone.
    if [ "$cxx" = g++ ]; then
      for p in "${programs[@]}"; do echo "one_program $cxx $p"; done  # the long ones first
    fi
    for h in $headers; do echo "one_header $cxx $h"; done
  done
} | xargs -P "$(nproc)" -L 1 bash -c '"$@"' _ || status=1
for cxx in "${compilers[@]}"; do
  echo "$cxx: $(echo "$headers" | wc -l) public headers, each alone: done"
done
echo "g++: ${#programs[@]} programs at -O2 -fopenmp -march=native: done"
[ $status -eq 0 ] && echo "headers: no warnings"
exit $status
