#!/usr/bin/env python3
"""tpp's collective model beside the published nccl-tests sweeps in bench/collectives/published
(manifest.tsv: each file's cluster, forced algorithm, and whether it was fitted on or only
checked), as a markdown table: the median |error| over 1 KB-1 GB of each sweep, then by use and
by fabric. A sweep that is not steady (a bigger message finishing in under half the time of a
smaller one: the network or a GPU was disturbed during the run) is shown but kept out of the
medians by use and fabric. Standard library only. Usage: scripts/collectives_check.py [--build build]"""
import argparse, json, os, statistics, subprocess, sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--build", default=os.path.join(root, "build"))
args = ap.parse_args()
pub = os.path.join(root, "bench", "collectives", "published")
profile = os.path.join(args.build, "tools", "tpp-profile")
rows, by_use, by_fabric = [], {}, {}
for line in open(os.path.join(pub, "manifest.tsv")):
    if line.startswith("#") or not line.strip():
        continue
    f, cluster, algo, use, fabric, what = (line.rstrip("\n").split("\t") + [""])[:6]
    cmd = [profile, "--cluster", cluster, "--check-nccl-tests", os.path.join(pub, f), "--format", "json"]
    if algo != "-":
        cmd += ["--algo", algo]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{f}: tpp-profile failed: {p.stderr.strip()}")
    run = json.loads(p.stdout)["runs"][0]
    errs = [abs(s["error_pct"]) for s in run["sizes"] if s["counted"]]
    if not errs:
        sys.exit(f"{f}: no size of 1 KB-1 GB")
    med = statistics.median(errs)
    signed = statistics.median([s["error_pct"] for s in run["sizes"] if s["counted"]])
    times = [s["measured_us"] for s in run["sizes"]]
    steady = all(times[j] >= 0.5 * times[i] for i in range(len(times)) for j in range(i + 1, len(times)))
    if not steady:
        use = use + " (not steady)"
    rows.append((f, cluster, algo, use, fabric, run["collective"], run["ranks"], len(errs), med, signed, what))
    if not steady:
        continue
    by_use.setdefault(use, []).extend(errs)
    if use == "check":
        by_fabric.setdefault(fabric, []).extend(errs)
print("| sweep | cluster | NCCL_ALGO | use | fabric | collective | ranks | sizes | median abs error | median error | note |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]} | {r[8]:.1f}% | {r[9]:+.1f}% | {r[10]} |")
print()
for use, errs in sorted(by_use.items()):
    print(f"- {use}: median |error| {statistics.median(errs):.1f}% over {len(errs)} sizes")
for fabric, errs in sorted(by_fabric.items()):
    print(f"- check, {fabric}: median |error| {statistics.median(errs):.1f}% over {len(errs)} sizes")
