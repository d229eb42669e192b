#!/usr/bin/env python3
"""The data-lifecycle figures of docs/benchmarks.md, against a seeded service
(loadtest/bench.sh lifecycle runs it). Standard library only.

  lifecycle.py live    --target URL --out FILE   # facets, a patch, a bulk update, two snapshots, the answers
  lifecycle.py compare --target URL --out FILE   # after a restore: the same answers?

Timings are medians of sequential requests (one client), so the ratios
compare the work of one request, not a saturated machine.
"""
import argparse
import json
import statistics
import time
import urllib.error
import urllib.request


def call(target, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(target + path, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            text = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        text, status = err.read(), err.code
    elapsed = time.perf_counter() - started
    try:
        answer = json.loads(text)
    except ValueError:
        answer = text.decode(errors="replace")
    return status, answer, elapsed


def ok(target, method, path, body=None, want=200):
    status, answer, elapsed = call(target, method, path, body)
    if status != want:
        raise SystemExit(f"{method} {path}: {status} {answer}")
    return answer, elapsed


def median_ms(samples):
    return round(statistics.median(samples) * 1000, 2)


def metric(target, series):
    with urllib.request.urlopen(target + "/metrics", timeout=60) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return 0.0


def embeds(target):
    return metric(target, "lakehouse_embed_cache_hits_total") + metric(
        target, "lakehouse_embed_cache_misses_total"
    )


ROLES = ["Forklift Operator", "Welder", "CDL Driver", "Electrician", "Picker/Packer"]


def answers(target):
    """Reads whose answers a restore must give back."""
    out = {"matrix": [], "vectors": [], "counts": []}
    for role in ROLES:
        for query in [f"{role.lower()} night shift", f"experienced {role.lower()}"]:
            found, _ = ok(target, "POST", "/v1/matrix/search",
                          {"query": query, "k": 10, "role": role, "use_playbook": True, "mode": "semantic"})
            out["matrix"].append([[h["worker_id"], h["distance"]] for h in found["hits"]])
    for text in ["forklift", "welder with TIG", "CDL class A", "HVAC", "picker packer"]:
        found, _ = ok(target, "POST", "/v1/vectors/index/workers/search", {"text": text, "k": 10})
        out["vectors"].append([[h["id"], h["distance"]] for h in found["hits"]])
    for body in [{}, {"role": "Welder"}, {"state": "IL", "facets": ["role"]}]:
        counted, _ = ok(target, "POST", "/v1/matrix/workers/count", body)
        out["counts"].append(counted)
    for index in ["workers", "playbook_memory"]:
        info, _ = ok(target, "GET", f"/v1/vectors/index/{index}")
        out["counts"].append({"index": index, "count": info["count"], "lance_version": info["lance_version"]})
    return out


def live(args):
    target, report = args.target, {}
    search = {"text": "forklift operator", "k": 10, "filter": {"state": "IL"}}
    whole = {"text": "forklift operator", "k": 10}
    facets = ["role", "city", "shift"]
    for _ in range(5):
        ok(target, "POST", "/v1/vectors/index/workers/search", search)
    timings = {"filtered": [], "filtered_facets": [], "whole": [], "whole_facets": [], "count_facets": []}
    for _ in range(args.rounds):
        timings["filtered"].append(ok(target, "POST", "/v1/vectors/index/workers/search", search)[1])
        timings["filtered_facets"].append(
            ok(target, "POST", "/v1/vectors/index/workers/search", {**search, "facets": facets})[1])
        timings["whole"].append(ok(target, "POST", "/v1/vectors/index/workers/search", whole)[1])
        timings["whole_facets"].append(
            ok(target, "POST", "/v1/vectors/index/workers/search", {**whole, "facets": facets})[1])
        timings["count_facets"].append(
            ok(target, "POST", "/v1/matrix/workers/count", {"facets": facets})[1])
    medians = {name: median_ms(samples) for name, samples in timings.items()}
    report["facets_ms"] = medians
    report["facets_ratio"] = {
        "filtered_IL": round(medians["filtered_facets"] / medians["filtered"], 2),
        "whole_100k": round(medians["whole_facets"] / medians["whole"], 2),
    }
    print("facets (median ms):", medians, "ratios:", report["facets_ratio"])

    query = {"query": "forklift operator night shift", "k": 10, "role": "Forklift Operator", "mode": "semantic"}
    found, _ = ok(target, "POST", "/v1/matrix/search", query)
    first = found["hits"][0]["worker_id"]
    before = embeds(target)
    changed, patch_s = ok(target, "PATCH", f"/v1/matrix/workers/{first}", {"metadata": {"status": "do_not_use"}})
    embedded = embeds(target) - before
    again, _ = ok(target, "POST", "/v1/matrix/search", query)
    excluded = all(h["worker_id"] != first for h in again["hits"])
    report["patch"] = {"worker": first, "ms": round(patch_s * 1000, 1), "embeds_during": embedded,
                       "excluded_next_search": excluded, "excluded_statuses": again.get("excluded_statuses"),
                       "changed": changed["changed"]}
    print("patch:", report["patch"])

    updated, update_s = ok(target, "POST", "/v1/vectors/index/workers/items/update",
                           {"filter": {"state": "IL"}, "set": {"region": "midwest"}, "allow_large": True})
    report["bulk_update"] = {"matched": updated["matched"], "changed": updated["changed"],
                             "seconds": round(update_s, 2),
                             "items_per_s": round(updated["changed"] / max(update_s, 1e-9))}
    print("bulk update by filter:", report["bulk_update"])

    # A few placements, so the playbook is in the snapshot too.
    for role in ROLES:
        found, _ = ok(target, "POST", "/v1/matrix/search",
                      {"query": f"{role.lower()} night shift", "k": 5, "role": role, "mode": "semantic"})
        ok(target, "POST", "/v1/matrix/playbooks/record",
           {"query": f"{role.lower()} night shift", "role": role,
            "worker_ids": [found["hits"][2]["worker_id"]], "score": 1.0, "outcome": "placed"})
    first_snapshot, first_s = ok(target, "POST", "/v1/admin/snapshots", want=201)
    for i in range(100):
        ok(target, "PATCH", f"/v1/matrix/workers/W{i + 1:07d}", {"metadata": {"note": f"call back {i}"}})
    second_snapshot, second_s = ok(target, "POST", "/v1/admin/snapshots", want=201)
    report["snapshots"] = [
        {key: shot[key] for key in ["id", "bytes", "copied_bytes", "copied_files", "elapsed_ms"]}
        | {"files": len(shot["files"]), "wall_s": round(wall, 2)}
        for shot, wall in [(first_snapshot, first_s), (second_snapshot, second_s)]
    ]
    report["restore_id"] = second_snapshot["id"]
    search = {"query": "forklift operator night shift", "k": 10, "role": "Forklift Operator", "mode": "semantic"}
    status_timings = {"default": [], "all_statuses": []}
    for _ in range(args.rounds):
        status_timings["default"].append(ok(target, "POST", "/v1/matrix/search", search)[1])
        status_timings["all_statuses"].append(ok(target, "POST", "/v1/matrix/search", {
            **search, "status_any": ["active", "on_assignment", "placed", "do_not_use"]})[1])
    report["status_exclusion_ms"] = {k: median_ms(v) for k, v in status_timings.items()}
    print("matrix search, default status exclusion vs none (median ms):", report["status_exclusion_ms"])
    print("snapshots:", report["snapshots"])
    report["answers"] = answers(target)
    with open(args.out, "w") as out:
        json.dump(report, out, indent=1)


def compare(args):
    with open(args.out) as source:
        report = json.load(source)
    now = answers(args.target)
    same = {part: sum(a == b for a, b in zip(report["answers"][part], now[part])) for part in now}
    total = {part: len(now[part]) for part in now}
    report["restored"] = {"same": same, "of": total, "identical": now == report["answers"]}
    print("restored answers:", report["restored"])
    with open(args.out, "w") as out:
        json.dump(report, out, indent=1)
    if now != report["answers"]:
        raise SystemExit("the restored service answers differently")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["live", "compare"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    (live if args.mode == "live" else compare)(args)


if __name__ == "__main__":
    main()
