"""Benchmark guards for CI: run the key benchmarks and check *ratios* measured in the same run
against the floors in bench/guard_floors.json. Absolute times are never asserted (machines
differ); a ratio between two code paths on the same machine in the same run is stable.

    python3 bench/guard.py BUILD_DIR
"""
import json
import pathlib
import subprocess
import sys

build = pathlib.Path(sys.argv[1])
floors = json.loads((pathlib.Path(__file__).parent / "guard_floors.json").read_text())


def run(binary, pattern):
    out = subprocess.run(
        [str(build / "bench" / binary), f"--benchmark_filter={pattern}", "--benchmark_format=json",
         "--benchmark_min_time=0.2", "--benchmark_repetitions=3", "--benchmark_report_aggregates_only=true"],
        check=True, capture_output=True, text=True, env={"OMP_NUM_THREADS": "1"}).stdout
    rows = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            rows[b["run_name"]] = b
    return rows


failures = []


def check(name, value, floor, higher_is_better=True):
    ok = value >= floor if higher_is_better else value <= floor
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {value:.2f} ({'>=' if higher_is_better else '<='} {floor})")
    if not ok:
        failures.append(name)


sim = run("bench_similarity", "^dot/(mmrag|scalar)/768$")
check("dot d=768: SIMD speedup over the scalar loop",
      sim["dot/scalar/768"]["real_time"] / sim["dot/mmrag/768"]["real_time"], floors["simd_over_scalar_dot768"])

loss = run("bench_losses", "^guard/")
check("in_batch_info_nce B=2048: tiled time / direct time",
      loss["guard/in_batch_info_nce/1"]["real_time"] / loss["guard/in_batch_info_nce/0"]["real_time"],
      floors["tiled_over_direct_time_max"], higher_is_better=False)

search = run("bench_search", "^guard/")
flat, ivf = search["guard/search/0"], search["guard/search/1"]
check("IVF recall@10 (nprobe 16 of 128)", ivf["recall"], floors["ivf_recall_min"])
check("IVF QPS / flat QPS at that recall", ivf["QPS"] / flat["QPS"], floors["ivf_over_flat_qps"])

print(f"{len(failures)} guard(s) failed" if failures else "all guards passed")
sys.exit(1 if failures else 0)
