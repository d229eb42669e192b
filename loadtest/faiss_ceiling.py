#!/usr/bin/env python3
"""The in-process faiss ceiling for the vector benchmark, measured in the same
run as Lakehouse: the same corpus, the same HNSW parameters, no HTTP.

  python3 loadtest/faiss_ceiling.py --dataset DIR [--m 32 --ef-construction 40
      --ef-search 80 --clients 50 --seconds 20] [--json OUT]

Needs numpy and faiss-cpu (pip install numpy faiss-cpu). faiss-cpu picks its
SIMD level at run time (AVX-512 on a CPU that has it); Lakehouse's faiss is
built for AVX2, so loadtest/bench.sh pins the ceiling to the same level with
FAISS_SIMD_LEVEL=AVX2 (the report names the level used). Reports build time,
recall@10, single-thread latency and queries/s with N threads each searching
one query at a time (faiss releases the GIL inside search), like N clients.
"""
import argparse
import json
import threading
import time

import faiss
import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--ef-search", type=int, default=80)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--json")
    a = p.parse_args()

    base = np.load(f"{a.dataset}/base.npy")
    queries = np.load(f"{a.dataset}/queries.npy")
    truth = np.load(f"{a.dataset}/gt_ids.npy")[:, :10]
    n, d = base.shape

    index = faiss.IndexHNSWFlat(d, a.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = a.ef_construction
    started = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - started
    index.hnsw.efSearch = a.ef_search

    # One query per call, as a server handles requests.
    faiss.omp_set_num_threads(1)
    lat = []
    found = 0
    for i in range(len(queries)):
        t = time.perf_counter()
        _, ids = index.search(queries[i : i + 1], 10)
        lat.append(time.perf_counter() - t)
        found += len(set(ids[0]) & set(truth[i]))
    recall = found / (len(queries) * 10)

    stop = threading.Event()
    counts = [0] * a.clients
    lats = [[] for _ in range(a.clients)]

    def worker(c):
        i = c * 7919 % len(queries)
        while not stop.is_set():
            t = time.perf_counter()
            index.search(queries[i : i + 1], 10)
            lats[c].append(time.perf_counter() - t)
            counts[c] += 1
            i = (i + 1) % len(queries)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(a.clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    all_lat = np.array([x for l in lats for x in l]) * 1000

    report = {
        "engine": f"faiss {faiss.__version__} in-process (python, HNSW{a.m},Flat IP)",
        "simd_level": simd_level(),
        "vectors": n,
        "build_seconds": round(build, 1),
        "recall_at_10": round(recall, 4),
        "single_p50_ms": round(float(np.percentile(np.array(lat) * 1000, 50)), 3),
        "single_p99_ms": round(float(np.percentile(np.array(lat) * 1000, 99)), 3),
        "clients": a.clients,
        "queries_per_second": round(sum(counts) / elapsed),
        "concurrent_p50_ms": round(float(np.percentile(all_lat, 50)), 3),
        "concurrent_p99_ms": round(float(np.percentile(all_lat, 99)), 3),
    }
    print(json.dumps(report, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


def simd_level():
    """The SIMD level faiss runs at (faiss >= 1.13 dispatches at run time)."""
    try:
        return faiss.SIMDConfig.get_level_name()
    except AttributeError:
        return faiss.get_compile_options()


if __name__ == "__main__":
    main()
