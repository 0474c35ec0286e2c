#!/usr/bin/env bash
# The headers are warning-free for consumers: with g++ and clang++ at
#   -std=c++20 -Wall -Wextra -Wpedantic -Werror
# with Eigen and xsimd as system headers (-isystem, as CMake's imported targets and Meson's
# include_type : 'system' give them: Eigen 3.4.0's own AVX headers warn at -Wall, and they are
# not ours to fix) and mmrag on a plain -I path, so every warning in mmrag's headers shows,
#   1. every public header compiles on its own (self-contained, no warnings), and
#   2. whole programs that instantiate most of the API compile at -O2 -fopenmp -march=native
#      (AVX-512 here; the consumers in build.sh cover SSE2 and AVX2): GCC's middle-end warnings
#      (-Wmaybe-uninitialized, -Warray-bounds, ...) appear only when templates are
#      instantiated and inlined.
# Usage: consumers/check_headers.sh [compiler ...]   (default: g++ clang++)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
compilers=("$@")
[ ${#compilers[@]} -gt 0 ] || compilers=(g++ clang++)
deps=$(pkg-config --cflags eigen3 xsimd | sed 's/-I/-isystem /g')
flags="-std=c++20 -Wall -Wextra -Wpedantic -Werror -I$root/include $deps"
programs=(consumers/consumer.cpp docs/examples/getting_started.cpp docs/examples/cookbook.cpp)
status=0
for cxx in "${compilers[@]}"; do
  n=0
  while IFS= read -r h; do
    rel=${h#"$root/include/"}
    extra=""
    if [ "$rel" = mmrag/mpi.hpp ]; then  # the one header that needs <mpi.h>
      if ! pkg-config --exists mpi; then
        echo "$cxx: $rel skipped (no MPI: apt-get install libopenmpi-dev)"
        continue
      fi
      # as system headers (what CMake's MPI::MPI_CXX gives): Open MPI's own C++ bindings warn
      extra=$(pkg-config --cflags mpi | sed 's/-I/-isystem /g')
    fi
    printf '#include "%s"\nint main() { return 0; }\n' "$rel" >"$work/one.cpp"
    # shellcheck disable=SC2086
    if ! $cxx $flags $extra -fsyntax-only "$work/one.cpp" 2>"$work/log"; then
      echo "$cxx: $rel alone:"
      head -n 30 "$work/log"
      status=1
    fi
    n=$((n + 1))
  done < <(find "$root/include/mmrag" -name '*.hpp' -not -path '*/detail/*' | sort)
  echo "$cxx: $n public headers, each alone: done"
  for p in "${programs[@]}"; do
    # shellcheck disable=SC2086
    if ! $cxx $flags -O2 -fopenmp -march=native -c "$root/$p" -o "$work/p.o" 2>"$work/log"; then
      echo "$cxx: $p:"
      grep -E 'warning|error' "$work/log" | sort | uniq -c | sort -rn | head -n 10
      head -n 30 "$work/log"
      status=1
    fi
  done
  echo "$cxx: ${#programs[@]} programs at -O2 -fopenmp -march=native: done"
done
[ $status -eq 0 ] && echo "headers: no warnings"
exit $status
