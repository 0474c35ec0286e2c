#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time.
#   tests/fuzz/run.sh [seconds per target, default 60]
# Needs: clang, libclang-rt-14-dev (the fuzzer runtime), libeigen3-dev, libxsimd-dev.
# Crashes land in build-fuzz/crash-*; turn each into a regression test in tests/.
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/build-fuzz"
mkdir -p "$out"
flags="-std=c++20 -O1 -g -fno-omit-frame-pointer -I$root/include -isystem /usr/include/eigen3"
clang++ $flags -o "$out/make_seeds" "$root/tests/fuzz/make_seeds.cpp"
"$out/make_seeds" "$out/seeds"
clang++ $flags -DMMRAG_FUZZ_WRITE_SEEDS -o "$out/make_hnsw_seeds" "$root/tests/fuzz/fuzz_hnsw_load.cpp"
"$out/make_hnsw_seeds" "$out/seeds/hnsw"
clang++ $flags -DMMRAG_FUZZ_WRITE_SEEDS -o "$out/make_ivf_pq_seeds" "$root/tests/fuzz/fuzz_ivf_pq_load.cpp"
"$out/make_ivf_pq_seeds" "$out/seeds/ivfpq"
status=0
for target in index_load:ivf npy:npy vecs:vecs hnsw_load:hnsw ivf_pq_load:ivfpq; do
  name=${target%%:*}
  seeds=${target##*:}
  clang++ $flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -o "$out/fuzz_$name" "$root/tests/fuzz/fuzz_$name.cpp"
  mkdir -p "$out/corpus_$name"
  echo "== fuzz_$name for ${seconds}s"
  if ! (cd "$out" && ASAN_OPTIONS=detect_leaks=1 ./fuzz_$name -max_total_time="$seconds" -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 "corpus_$name" "seeds/$seeds" 2>&1 | tail -n 12); then
    status=1
  fi
done
exit $status
