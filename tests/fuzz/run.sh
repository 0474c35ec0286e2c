#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time,
# as many at once as there are cores (compiles and fuzzing runs alike).
#   tests/fuzz/run.sh [seconds per target, default 60]
# Needs: clang, libclang-rt-14-dev (the fuzzer runtime), libeigen3-dev, libxsimd-dev.
# Crashes land in build-fuzz/crash-* (oom-*, timeout-*); turn each into a regression test in
# tests/.
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/build-fuzz"
mkdir -p "$out"
jobs=$(nproc)
flags="-std=c++20 -O1 -g -fno-omit-frame-pointer -I$root/include -isystem /usr/include/eigen3"
targets=(index_load:ivf npy:npy vecs:vecs hnsw_load:hnsw ivf_pq_load:ivfpq)

# Every compile is independent: the seed writers and the five fuzz targets.
compile() {  # name source extra-flags...
  local name=$1 src=$2
  shift 2
  # shellcheck disable=SC2086
  clang++ $flags "$@" -o "$out/$name" "$root/tests/fuzz/$src" 2>"$out/$name.log" ||
    { echo "compile of $name failed:"; cat "$out/$name.log"; return 1; }
}
export -f compile
export flags out root
{
  echo "make_seeds make_seeds.cpp"
  echo "make_hnsw_seeds fuzz_hnsw_load.cpp -DMMRAG_FUZZ_WRITE_SEEDS"
  echo "make_ivf_pq_seeds fuzz_ivf_pq_load.cpp -DMMRAG_FUZZ_WRITE_SEEDS"
  for target in "${targets[@]}"; do
    name=${target%%:*}
    echo "fuzz_$name fuzz_$name.cpp -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
  done
} | xargs -P "$jobs" -L 1 bash -c 'compile "$@"' _
"$out/make_seeds" "$out/seeds"
"$out/make_hnsw_seeds" "$out/seeds/hnsw"
"$out/make_ivf_pq_seeds" "$out/seeds/ivfpq"

fuzz() {  # name:seed-folder
  local name=${1%%:*} seeds=${1##*:}
  mkdir -p "$out/corpus_$name"
  if (cd "$out" && ASAN_OPTIONS=detect_leaks=1 ./fuzz_$name -max_total_time="$seconds" \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "corpus_$name" "seeds/$seeds" \
        >"fuzz_$name.out" 2>&1); then
    echo "== fuzz_$name for ${seconds}s: no finding"
    tail -n 6 "$out/fuzz_$name.out"
  else
    echo "== fuzz_$name for ${seconds}s: FOUND A FAULT"
    grep -v '^0x' "$out/fuzz_$name.out" | tail -n 60
    return 1
  fi
}
export -f fuzz
export seconds
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -L 1 bash -c 'fuzz "$1"' _
