#!/usr/bin/env bash
# Builds and runs the two consumer projects: mmrag as a Meson subproject, and mmrag installed
# and found through pkg-config, compiled with no -march flag (the default arch must work).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== consumer: Meson subproject"
cp -r "$root/consumers/subproject" "$work/sub"
cp "$root/consumers/consumer.cpp" "$work/"
mkdir -p "$work/sub/subprojects"
ln -s "$root" "$work/sub/subprojects/mmrag"
meson setup "$work/sub/build" "$work/sub" -Dmmrag:tests=false -Dmmrag:benchmarks=false \
  -Dmmrag:examples=false >/dev/null
meson test -C "$work/sub/build" --print-errorlogs

echo "== consumer: installed mmrag.pc, no -march flag"
meson setup "$work/self" "$root" --prefix "$work/prefix" -Dtests=false -Dbenchmarks=false \
  -Dexamples=false >/dev/null
meson install -C "$work/self" >/dev/null
export PKG_CONFIG_PATH=$(find "$work/prefix" -name mmrag.pc -printf '%h\n' | head -n1)
g++ -std=c++20 -O2 "$root/consumers/consumer.cpp" $(pkg-config --cflags mmrag) -o "$work/consumer_pc"
"$work/consumer_pc"
