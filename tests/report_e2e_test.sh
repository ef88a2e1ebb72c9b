#!/usr/bin/env bash
# tpp-report as a user runs it: plan tiny-llama (tpp-plan --report), run it on 2 MPI ranks
# (tpp-run), report the run (tpp-report); every SVG parses as XML, every figure the HTML embeds
# exists, the HTML reaches nothing on the network, the comparison table's numbers are
# measured.json's, --fail-above sets the exit code, and bad input gets one line and exit 2.
#   report_e2e_test.sh BUILD
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=1
fail() { echo "FAIL: $*"; exit 1; }

"$build/tools/tpp-plan" --model tiny-llama --cluster "$src/tests/data/cpu4.yaml" --tp 2 \
  --workload "$src/workloads/loop.yaml" --dtype float32 --enforce-eager -o plan.json \
  --report plan-report > plan.txt
grep -q "^report: plan-report/report.html" plan.txt || fail "tpp-plan --report: $(cat plan.txt)"
"$build/tools/tpp-plan" --model tiny-llama --cluster "$src/tests/data/cpu4.yaml" \
  --workload "$src/workloads/loop.yaml" --dtype float32 --enforce-eager -o search.json \
  --report search-report > search.txt || fail "tpp-plan search --report: $(cat search.txt)"
# In the sanitizer build the ranks' leak check is off: OpenMPI's own allocations are not
# leak-clean (scripts/test.sh keeps the mpi_* runs out of that build for the same reason).
ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" \
  "$build/tools/tpp-run" --launch --plan plan.json --requests 16 -o measured.json > run.txt
"$build/tools/tpp-report" --plan plan.json --measured measured.json -o report --fail-above 100000 \
  > report.txt || fail "tpp-report: $(cat report.txt)"
set +e
"$build/tools/tpp-report" --plan plan.json --measured measured.json -o report0 --fail-above 0 > r0.txt
rc=$?
set -e
[ $rc = 1 ] || fail "--fail-above 0 exits $rc, not 1"
grep -q "components\? missed the 0.0% limit" r0.txt || fail "verdict: $(cat r0.txt)"

python3 - "$work" <<'PY'
import json, os, re, sys, xml.etree.ElementTree as ET
work = sys.argv[1]
for d in ("plan-report", "search-report", "report"):
    path = os.path.join(work, d)
    html = open(os.path.join(path, "report.html")).read()
    svgs = [f for f in os.listdir(path) if f.endswith(".svg")]
    assert svgs, f"{d}: no SVG drawn (gnuplot and Graphviz are installed by scripts/setup.sh)"
    for f in svgs:
        root = ET.parse(os.path.join(path, f)).getroot()  # raises on malformed XML
        assert root.tag.endswith("svg"), (f, root.tag)
    for f in re.findall(r'data-source="([^"]+)"', html):
        assert os.path.exists(os.path.join(path, f)), f"{d}: the HTML embeds {f}, which is missing"
    for f in re.findall(r'!\[[^]]*\]\(([^)]+)\)', open(os.path.join(path, "report.md")).read()):
        assert os.path.exists(os.path.join(path, f)), f"{d}: report.md shows {f}, which is missing"
    external = [u for u in re.findall(r'(?:src|href)="(https?://[^"]+)"', html)]
    assert not external, f"{d}: the HTML loads {external}"
    assert "data-source=\"placement.svg\"" in html and "data-source=\"memory.svg\"" in html, d
m = json.load(open(os.path.join(work, "measured.json")))
md = open(os.path.join(work, "report", "report.md")).read()
for name, key in (("TTFT p50", "ttft_ms"), ("TPOT p50", "tpot_ms"), ("decode step p50", "decode_step_ms")):
    p, q = m["predicted"]["performance"][key]["p50"], m["performance"][key]["p50"]
    row = f"| {name} | {p:.3f} ms | {q:.3f} ms | {100 * (p - q) / q:+.1f}% |"
    assert row in md, f"missing row: {row}"
# The search's tables and charts are plan.json's candidates.
plan = json.load(open(os.path.join(work, "search.json")))
md = open(os.path.join(work, "search-report", "report.md")).read()
ranked = [c for c in plan["candidates"] if c["rank"] > 0]
assert len(ranked) >= 3, "the search ranked fewer than 3 splits"
for c in ranked:
    row = (f"| {c['rank']}{'*' if c['recommended'] else ''} | TP{c['tp']} x PP{c['pp']} x DP{c['dp']} | {c['gpus']} | "
           f"{c['ttft_ms_p50']:.1f} / {c['ttft_ms_p99']:.1f} | {c['tpot_ms_p50']:.2f} / {c['tpot_ms_p99']:.2f} | "
           f"{c['output_tokens_per_s_per_gpu']:.1f} | {c['output_tokens_per_s']:.0f} | {'yes' if c['pareto'] else ''} |")
    assert row in md, f"missing candidate row: {row}"
bars = {}
for line in open(os.path.join(work, "search-report", "memory_candidates.dat")):
    if line.startswith("#"): continue
    label, rest = line.rsplit('"', 1)[0].lstrip('"'), line.rsplit('"', 1)[1].split()
    bars[label.split()[0]] = [float(x) for x in rest]
gib = 1024 ** 3
for c in plan["candidates"]:
    b = bars.get(f"TP{c['tp']}xPP{c['pp']}")
    assert b is not None, f"TP{c['tp']}xPP{c['pp']} has no memory bar"
    m = c["memory"]
    want = [m["weights_bytes"], m["activation_peak_bytes"], m["non_torch_bytes"], m["cuda_graph_bytes"], m["kv_cache_bytes"]]
    assert all(abs(x - w / gib) <= 0.006 for x, w in zip(b, want)), (c["tp"], c["pp"], b, want)
print("report_e2e: SVGs parse, figures exist, numbers match measured.json and the search's candidates")
PY

echo '{"tpp_plan_version": 2,' > broken.json
set +e
"$build/tools/tpp-report" --plan broken.json -o bad > out.txt 2> err.txt
rc=$?
set -e
[ $rc = 2 ] || fail "broken plan exits $rc"
[ "$(wc -l < err.txt)" = 1 ] || fail "broken plan: $(cat err.txt)"
grep -q "^broken.json:2:1: error: not valid JSON (plan)" err.txt || fail "broken plan: $(cat err.txt)"
echo '{"tpp_plan_version": 2}' > partial.json
set +e
"$build/tools/tpp-report" --plan partial.json -o bad 2> err.txt
rc=$?
set -e
[ $rc = 2 ] && grep -q "^partial.json: error: missing field 'model'" err.txt || fail "partial plan: $(cat err.txt)"
set +e
"$build/tools/tpp-report" --plan plan.json --vllm-log plan.json -o bad 2> err.txt
rc=$?
set -e
[ $rc = 2 ] && grep -q "^plan.json: error: no vLLM start-up figures found" err.txt || fail "not a log: $(cat err.txt)"
echo "report_e2e: ok"
