#!/usr/bin/env bash
# Builds and runs the three consumer projects, each as a user would set it up, each with
# -Wall -Wextra -Werror and a different SIMD width:
#   1. mmrag as a Meson subproject                     (-march=native: AVX-512 here)
#   2. mmrag installed, found through pkg-config        (no -march flag: SSE2)
#   3. mmrag installed, found through its CMake package (-march=x86-64-v3: AVX2 + FMA)
# then checks the headers at -Wpedantic with g++ and clang++ (consumers/check_headers.sh).
# Needs: g++, clang, meson, ninja, pkg-config, cmake, libeigen3-dev, libxsimd-dev.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
warn="-Wall -Wextra -Werror"

echo "== consumer 1: Meson subproject, -march=native"
cp -r "$root/consumers/subproject" "$work/sub"
cp "$root/consumers/consumer.cpp" "$work/"
mkdir -p "$work/sub/subprojects"
ln -s "$root" "$work/sub/subprojects/mmrag"
meson setup "$work/sub/build" "$work/sub" -Dmmrag:tests=false -Dmmrag:benchmarks=false \
  -Dmmrag:examples=false >/dev/null
meson test -C "$work/sub/build" --print-errorlogs

echo "== installing mmrag into $work/prefix: the README's install recipe"
prefix="$work/prefix"
meson setup "$work/self" "$root" --prefix "$prefix" --libdir lib -Dtests=false -Dbenchmarks=false \
  -Dexamples=false -Dpython=disabled >/dev/null
meson install -C "$work/self" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export CMAKE_PREFIX_PATH="$prefix${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"

echo "== consumer 2: installed mmrag.pc, no -march flag"
echo "pkg-config --cflags --libs mmrag: $(pkg-config --cflags --libs mmrag)"
pkg-config --cflags mmrag | grep -q -- -fopenmp || {
  echo "mmrag.pc lacks -fopenmp although this build found OpenMP"
  exit 1
}
# shellcheck disable=SC2046
g++ -std=c++20 -O2 $warn "$root/consumers/consumer.cpp" $(pkg-config --cflags --libs mmrag) \
  -o "$work/consumer_pc"
"$work/consumer_pc"

echo "== consumer 3: installed CMake package, find_package(mmrag CONFIG), -march=x86-64-v3"
cmake -S "$root/consumers/cmake" -B "$work/cmake" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="$warn -march=x86-64-v3" | grep mmrag
cmake --build "$work/cmake"
(cd "$work/cmake" && ctest --output-on-failure)

echo "== headers at -Wall -Wextra -Wpedantic -Werror, g++ and clang++"
bash "$root/consumers/check_headers.sh"
