"""Python-side timings of the mmrag module (issue 15), each against its C++ baseline in the same
binary (mmrag._time_search runs the C++ search in a C++ loop on the same arrays):

  1. single-query overhead: one `index.search(q, 10)` call from Python minus the C++ call;
  2. batch search from Python vs C++ (ratio);
  3. two Python threads searching one index vs one thread (throughput ratio; GIL released).

Usage (from the build directory that holds the module):
  OMP_NUM_THREADS=1 PYTHONPATH=build/python /usr/bin/python3 bench/bench_python.py [--quick]
Prints one line per measurement; medians of several rounds.
"""
import argparse
import os
import statistics
import threading
import time

import numpy as np

import mmrag


def median_of(rounds, f):
    return statistics.median(f() for _ in range(rounds))


def interleaved(rounds, f, g):
    """Medians of f and g measured alternately (a loaded machine drifts between phases) and the
    median of the per-round ratios f / g."""
    fs, gs = [], []
    for _ in range(rounds):
        fs.append(f())
        gs.append(g())
    return statistics.median(fs), statistics.median(gs), statistics.median(a / b for a, b in zip(fs, gs))


def per_call_python(index, q, k, repeats):
    search = index.search
    start = time.perf_counter()
    for _ in range(repeats):
        search(q, k)
    return (time.perf_counter() - start) / repeats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds = 3 if args.quick else 7
    rng = np.random.default_rng(0)
    print(f"mmrag {mmrag.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")

    # 1. single query, small flat index (a few µs of C++ work: overhead dominates)
    d, n, k = 64, 1000, 10
    x = rng.standard_normal((n, d), dtype=np.float32)
    q1 = rng.standard_normal((1, d), dtype=np.float32)
    flat = mmrag.FlatIndex(d, "l2")
    flat.add(x)
    reps = 2000 if args.quick else 20000
    per_call_python(flat, q1, k, 200)  # warm up
    py_t, cpp_t, _ = interleaved(rounds, lambda: per_call_python(flat, q1, k, reps),
                                 lambda: mmrag._time_search(flat, q1, k, reps))
    print(f"single query  n={n} d={d} k={k}: C++ {cpp_t * 1e6:8.2f} us  Python {py_t * 1e6:8.2f} us"
          f"  overhead {(py_t - cpp_t) * 1e6:6.2f} us/call")

    # 2. batch search
    n, nq = 20000, 1000
    x = rng.standard_normal((n, d), dtype=np.float32)
    qb = rng.standard_normal((nq, d), dtype=np.float32)
    flat = mmrag.FlatIndex(d, "l2")
    flat.add(x)
    reps = 3 if args.quick else 10
    py_b, cpp_b, ratio = interleaved(rounds, lambda: per_call_python(flat, qb, k, reps),
                                     lambda: mmrag._time_search(flat, qb, k, reps))
    print(f"batch nq={nq} n={n} d={d} k={k}: C++ {cpp_b * 1e3:8.2f} ms  Python {py_b * 1e3:8.2f} ms"
          f"  Python/C++ {ratio:.4f} (median of per-round ratios)")

    # 3. threads: queries of 16 rows against n = 20000 (about 1 ms of work per call)
    qs = rng.standard_normal((16, d), dtype=np.float32)
    calls = 100 if args.quick else 400

    def run(threads):
        def work():
            for _ in range(calls // threads):
                flat.search(qs, k)
        ts = [threading.Thread(target=work) for _ in range(threads)]
        start = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return calls / (time.perf_counter() - start)

    run(1)
    two, one, speedup = interleaved(rounds, lambda: run(2), lambda: run(1))
    print(f"threads (16-query calls): 1 thread {one:8.1f} calls/s  2 threads {two:8.1f} calls/s"
          f"  speedup {speedup:.2f}x")


if __name__ == "__main__":
    main()
