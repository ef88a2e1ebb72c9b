#!/usr/bin/env bash
# The GPU backend checked on one GPU (H100 or H200, CUDA 13, PyTorch, no network), in at most
# 8 minutes once built (docs/gpu.md):
#
#   scripts/gpu-check.sh [BUILD_DIR] [OUT_DIR]
#
# BUILD_DIR: a build tree made beforehand (on a CPU machine; docs/gpu.md, "Carrying a build
# tree") holding tools/tpp-run, tools/tpp-plan, tools/tpp-profile and tests/tpp_kernel_tests;
# without it, configures and builds only those targets in build-gpu/ with -j16 first.
# OUT_DIR (default gpu-check-out): at most 8 files, listed in `results` below.
#
# Steps, each under `timeout`; a failed step is shown (its last lines) and the next runs:
#   a  kernel-tests   every kernel test (gtest, XML)
#   b  profile        tpp-profile --backend cuda: this GPU measured into a cluster profile
#   c  8b-b1, 8b-b64  Llama-3.1-8B planned (tp 1, pp 1) on that profile (else the catalog
#                     H100/H200), run by tpp-run --backend cuda with 64 requests: one at a time
#                     (decode batch 1), then 64 at once (batch 64); 512-token prompts
#   d  r1, 70b        DeepSeek-R1 at tp 8 x pp 2 on 2 x 8 GPUs and Llama-3.1-70B at tp 8 on 8,
#                     rank 0 replayed alone (--replay-rank 0)
#   e  torch          scripts/torch_decode_ref.py: the same 8B decode step in PyTorch
# then one summary table with the issue's targets marked PASS or FAIL. Exit 0 when every step
# ran and every target passed; 1 otherwise.
#
# GPU_CHECK_DRY_RUN=1 prints the steps' commands without running anything (the CTest
# gpu_check_dry_run runs it, without a GPU).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-}
OUT=${2:-gpu-check-out}
DRY=${GPU_CHECK_DRY_RUN:-0}
START=$SECONDS
FAILED=()
STEPS=0

mkdir -p "$OUT" || { echo "gpu-check: error: cannot create $OUT" >&2; exit 1; }
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# results (at most 8 files in OUT_DIR)
XML=$OUT/kernel-tests.xml
PROFILE=$OUT/profile.yaml
PROFILE_JSON=$OUT/profile.json
M8B1=$OUT/measured-8b-b1.json
M8B64=$OUT/measured-8b-b64.json
R1=$OUT/replay-r1.json
R70=$OUT/replay-70b.json
SUMMARY=$OUT/summary.json
rm -f "$XML" "$PROFILE" "$PROFILE_JSON" "$M8B1" "$M8B64" "$R1" "$R70" "$SUMMARY"

# step NAME LIMIT_S COMMAND...: runs it under timeout, its output in $WORK/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  STEPS=$((STEPS + 1))
  if [[ $DRY == 1 ]]; then
    printf '[%s] timeout %ss' "$name" "$limit"
    printf ' %q' "$@"
    printf '\n'
    return 0
  fi
  local t0=$SECONDS rc=0
  printf '== %-14s (limit %ss) ... ' "$name" "$limit"
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  if [[ $rc == 0 ]]; then
    printf 'ok, %ss\n' "$((SECONDS - t0))"
  else
    FAILED+=("$name")
    printf 'FAILED: exit %s after %ss%s; its last lines:\n' "$rc" "$((SECONDS - t0))" \
      "$([[ $rc == 124 || $rc == 137 ]] && echo ' (timed out)')"
    tail -n 15 "$WORK/$name.log" | sed 's/^/    /'
  fi
  return $rc
}

# ---- the build ------------------------------------------------------------------------------
TARGETS=(tpp-run tpp-plan tpp-profile tpp_kernel_tests)
if [[ -z $BUILD ]]; then
  BUILD=$ROOT/build-gpu
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  step configure 300 cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DTPP_BUILD_BENCHMARKS=OFF
  step build 1200 cmake --build "$BUILD" -j16 --target "${TARGETS[@]}"
  START=$SECONDS  # the 8 minutes count from here
fi
BUILD=$(cd "$BUILD" 2>/dev/null && pwd || echo "$BUILD")
RUN=$BUILD/tools/tpp-run
PLAN=$BUILD/tools/tpp-plan
PROF=$BUILD/tools/tpp-profile
KT=$BUILD/tests/tpp_kernel_tests
if [[ $DRY != 1 ]]; then
  for b in "$RUN" "$PLAN" "$PROF" "$KT"; do
    [[ -x $b ]] || { echo "gpu-check: error: $b is missing (build ${TARGETS[*]} in $BUILD)" >&2; exit 1; }
  done
fi
# Shared libraries carried beside the binaries (docs/gpu.md), and the catalogs by this
# checkout's path (a build tree made elsewhere looks for them where it was built).
[[ -d $BUILD/lib ]] && export LD_LIBRARY_PATH=$BUILD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$WORK/data"
ln -s "$ROOT/model/examples" "$WORK/data/models"
ln -s "$ROOT/hardware_profiles/gpus" "$WORK/data/gpus"
ln -s "$ROOT/hardware_profiles/clusters" "$WORK/data/clusters"
ln -s "$ROOT/workloads" "$WORK/data/workloads"
export TPP_DATA_DIR=$WORK/data
# One rank: under `mpirun -np 1` where there is one (MPI's singleton start without it is not
# everywhere).
MPI1=()
if command -v mpirun >/dev/null || [[ $DRY == 1 ]]; then
  MPI1=(mpirun -np 1)
  [[ $(id -u) == 0 ]] && MPI1+=(--allow-run-as-root)
fi
EX=$ROOT/model/examples
CL=$ROOT/hardware_profiles/clusters
for f in "$EX/llama-3.1-8b.yaml" "$EX/llama-3.1-70b.yaml" "$EX/r1.yaml" "$CL/h100x1.yaml" \
         "$CL/h100x2.yaml" "$ROOT/scripts/torch_decode_ref.py"; do
  [[ -f $f ]] || { echo "gpu-check: error: $f is missing" >&2; exit 1; }
done

# ---- the GPU ----------------------------------------------------------------------------------
if [[ $DRY == 1 ]]; then
  GPU_NAME="NVIDIA H100 80GB HBM3 (dry run)"
else
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
fi
case "$GPU_NAME" in
  *H200*) CATALOG=H200-SXM-141GB ;;
  *H100*PCIe*) CATALOG=H100-PCIe-80GB ;;
  *H100*) CATALOG=H100-SXM5-80GB ;;
  *) CATALOG="" ;;
esac
echo "gpu-check: ${GPU_NAME:-no GPU found by nvidia-smi} (${CATALOG:-not an H100 or H200}); build $BUILD; results in $OUT"

# Cluster files for the plans, from the shipped H100 ones (one node of 8, two of 8): the GPU
# replaced by this one's catalog entry and the efficiencies by the measured profile's when
# step b wrote one. make_cluster BASE NAME OUT
make_cluster() {
  python3 - "$1" "$2" "$3" "$PROFILE" "$CATALOG" <<'EOF'
import os, re, sys
base, name, out, profile, catalog = sys.argv[1:6]
def blocks(text):
    order, cur = [], None
    d = {}
    for line in text.splitlines(keepends=True):
        m = re.match(r"^([a-z_]+):", line)
        if m:
            cur = m.group(1)
            order.append(cur)
            d[cur] = ""
        if cur is None:
            continue
        d[cur] += line
    return order, d
order, b = blocks(open(base).read())
b["name"] = f"name: {name}\n"
if os.path.exists(profile):
    _, p = blocks(open(profile).read())
    b["gpu"] = p["gpu"]
    b["efficiency"] = p["efficiency"]
    if "efficiency" not in order:
        order.append("efficiency")
elif catalog:
    b["gpu"] = f"gpu: {catalog}\n"
with open(out, "w") as f:
    f.write(f"# {base} for this GPU (scripts/gpu-check.sh)\n" + "".join(b[k] for k in order))
EOF
}

# Workloads: closed loops of 512-token prompts (the PyTorch reference's context).
workload() {  # workload FILE CONCURRENCY OUTPUT_TOKENS
  cat >"$1" <<EOF
name: gpu-check-c$2
num_requests: 64
seed: 1
arrival: {process: closed, concurrency: $2}
input_tokens: {distribution: uniform, min: 512, max: 512}
output_tokens: {distribution: uniform, min: $3, max: $3}
slo: none
EOF
}
workload "$WORK/w1.yaml" 1 64
workload "$WORK/w64.yaml" 64 128
workload "$WORK/w32.yaml" 32 64

# ---- a: kernel tests --------------------------------------------------------------------------
step kernel-tests 60 "$KT" --gtest_output="xml:$XML" --gtest_brief=1

# ---- b: the profile ---------------------------------------------------------------------------
step profile 75 "$PROF" --backend cuda ${CATALOG:+--gpu "$ROOT/hardware_profiles/gpus/$CATALOG.yaml"} --model "$EX/llama-3.1-8b.yaml" \
  -o "$PROFILE" --json "$PROFILE_JSON"

# ---- c: Llama-3.1-8B, one GPU -----------------------------------------------------------------
if [[ $DRY != 1 ]]; then
  make_cluster "$CL/h100x1.yaml" gpu-check-x8 "$WORK/x8.yaml"
  make_cluster "$CL/h100x2.yaml" gpu-check-2x8 "$WORK/2x8.yaml"
fi
if [[ -f $PROFILE || $DRY == 1 ]]; then ONE=$PROFILE; else ONE=$WORK/x8.yaml; fi
for b in 1 64; do
  out=$M8B1
  [[ $b == 64 ]] && out=$M8B64
  step "plan-8b-b$b" 15 "$PLAN" --model "$EX/llama-3.1-8b.yaml" --cluster "$ONE" --tp 1 --pp 1 \
    --workload "$WORK/w$b.yaml" -o "$WORK/plan-8b-b$b.json" &&
    step "8b-b$b" 50 ${MPI1[@]+"${MPI1[@]}"} "$RUN" --plan "$WORK/plan-8b-b$b.json" --backend cuda --requests 64 -o "$out"
done

# ---- d: replays of rank 0 ---------------------------------------------------------------------
step plan-r1 15 "$PLAN" --model "$EX/r1.yaml" --cluster "$WORK/2x8.yaml" --tp 8 --pp 2 \
  --workload "$WORK/w32.yaml" -o "$WORK/r1.json" &&
  step r1 70 ${MPI1[@]+"${MPI1[@]}"} "$RUN" --plan "$WORK/r1.json" --backend cuda --replay-rank 0 --requests 32 -o "$R1"
step plan-70b 15 "$PLAN" --model "$EX/llama-3.1-70b.yaml" --cluster "$WORK/x8.yaml" --tp 8 --pp 1 \
  --workload "$WORK/w32.yaml" -o "$WORK/70b.json" &&
  step 70b 40 ${MPI1[@]+"${MPI1[@]}"} "$RUN" --plan "$WORK/70b.json" --backend cuda --replay-rank 0 --requests 32 -o "$R70"

# ---- e: PyTorch -------------------------------------------------------------------------------
step torch 70 python3 "$ROOT/scripts/torch_decode_ref.py" --context 512 --batches 1 64 \
  --replays 50 -o "$WORK/torch.json"

if [[ $DRY == 1 ]]; then
  echo "dry run: $STEPS steps printed, nothing run"
  exit 0
fi

# ---- the summary --------------------------------------------------------------------------------
python3 - "$OUT" "$WORK/torch.json" "$SUMMARY" "$((SECONDS - START))" "${FAILED[*]:-}" "$ONE" <<'EOF'
import json, os, sys
import xml.etree.ElementTree as ET
out, torch_file, summary_file, elapsed, failed, cluster = sys.argv[1:7]
def load(name):
    path = name if os.path.isabs(name) else os.path.join(out, name)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
def get(j, *path):
    for k in path:
        if isinstance(j, dict) and k in j:
            j = j[k]
        elif isinstance(j, list) and isinstance(k, int) and k < len(j):
            j = j[k]
        else:
            return None
    if isinstance(j, dict):  # a percentile object: its median
        j = j.get("p50", j.get("median"))
    return j if isinstance(j, (int, float)) else None
def fmt(x, unit=""):
    return "-" if x is None else f"{x:.3f}{unit}"
def err(pred, meas):  # tpp-run's convention: (predicted - measured) / measured
    return None if pred is None or not meas else (pred - meas) / meas

tests = {"passed": 0, "failed": 0, "skipped": 0}
try:
    for tc in ET.parse(os.path.join(out, "kernel-tests.xml")).getroot().iter("testcase"):
        if tc.find("failure") is not None or tc.find("error") is not None:
            tests["failed"] += 1
        elif tc.get("result") == "skipped" or tc.find("skipped") is not None or tc.get("status") == "notrun":
            tests["skipped"] += 1
        else:
            tests["passed"] += 1
except (OSError, ET.ParseError):
    tests = None
prof, torch = load("profile.json"), load(torch_file)
m = {b: load(f"measured-8b-b{b}.json") for b in (1, 64)}
rep = {"R1": load("replay-r1.json"), "70B": load("replay-70b.json")}
hbm = get(prof, "datasheet", "hbm_GBps") or get(torch, "hbm_GBps")
rows, targets = [], []
def row(name, *cells):
    rows.append((name,) + cells)
def target(name, ok, value):
    targets.append({"target": name, "result": "PASS" if ok else "FAIL", "value": value})

decode = {}
for b in (1, 64):
    meas = get(m[b], "performance", "decode_step_ms")
    pred = get(m[b], "predicted", "performance", "decode_step_ms")
    ref = get(torch, "decode_step_ms", str(b))
    decode[b] = (meas, pred, ref)
    row(f"decode step, batch {b} (ms)", fmt(meas), fmt(pred), fmt(ref))
bound = get(torch, "weight_bound_ms")
if torch and hbm and torch.get("weight_bytes"):
    bound = torch["weight_bytes"] / (hbm * 1e9) * 1e3
of_bound = bound / decode[1][0] if bound and decode[1][0] else None
row("weight-bytes bound, batch 1 (ms)", fmt(bound), "", "")
for b in (1, 64):
    meas = get(m[b], "performance", "tpot_ms")
    pred = get(m[b], "predicted", "performance", "tpot_ms")
    row(f"TPOT p50, batch {b} (ms)", fmt(meas), fmt(pred), "")
    decode[f"tpot{b}"] = (meas, pred)
for name, r in rep.items():
    meas, pred = get(r, "replay", "stage_compute_measured_ms"), get(r, "replay", "stage_compute_predicted_ms")
    row(f"{name} rank 0 stage compute (ms)", fmt(meas), fmt(pred), "")
    decode[name] = (meas, pred)

target("decode step, batch 1 >= 75% of the weight-bytes/HBM bound", of_bound is not None and of_bound >= 0.75, of_bound)
for b in (1, 64):
    meas, _, ref = decode[b]
    target(f"decode step, batch {b}: no slower than PyTorch", meas is not None and ref is not None and meas <= ref,
           None if meas is None or not ref else meas / ref)
for key, label in (("rmsnorm", "RMSNorm"), ("silu_mul", "SiLU-and-mul")):
    f = get(prof, "of_datasheet_hbm", key)
    target(f"{label} >= 80% of HBM bandwidth", f is not None and f >= 0.8, f)
f = get(prof, "of_datasheet_hbm", "attention_decode_64x2048")
target("paged decode attention (64 x 2048) >= 60% of HBM bandwidth", f is not None and f >= 0.6, f)
for b in (1, 64):
    meas, pred, _ = decode[b]
    e = err(pred, meas)
    target(f"decode step p50, batch {b}, within 10% of prediction", e is not None and abs(e) <= 0.10, e)
    meas, pred = decode[f"tpot{b}"]
    e = err(pred, meas)
    target(f"TPOT p50, batch {b}, within 10% of prediction", e is not None and abs(e) <= 0.10, e)
for name in rep:
    meas, pred = decode[name]
    e = err(pred, meas)
    target(f"{name} replayed stage compute within 15% of prediction", e is not None and abs(e) <= 0.15, e)

print()
print(f"gpu-check summary ({elapsed} s; plans against {os.path.basename(cluster)})")
if tests:
    print(f"kernel tests: {tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped")
else:
    print("kernel tests: no XML (the step failed)")
if of_bound is not None:
    print(f"batch 1 decode step at {100 * of_bound:.1f}% of the weight-bytes bound "
          f"({torch['weight_bytes'] / 1e9:.2f} GB at {hbm:.0f} GB/s)")
print(f"{'':36}{'measured':>12}{'predicted':>12}{'PyTorch':>12}")
for r in rows:
    print(f"{r[0]:36}" + "".join(f"{c:>12}" for c in r[1:]))
print()
for t in targets:
    v = t["value"]
    if v is None:
        note = "  (not measured)"
    elif "within" in t["target"]:
        note = f"  (error {100 * v:+.1f}%)"
    elif "PyTorch" in t["target"]:
        note = f"  ({v:.3f} x PyTorch's time)"
    else:
        note = f"  ({100 * v:.1f}%)"
    print(f"{t['result']:5} {t['target']}{note}")
steps_failed = [s for s in failed.split() if s]
if steps_failed:
    print("steps failed: " + ", ".join(steps_failed))
with open(summary_file, "w") as f:
    json.dump({"elapsed_s": int(elapsed), "cluster": cluster, "kernel_tests": tests,
               "table": [{"row": r[0], "measured": r[1], "predicted": r[2], "pytorch": r[3]} for r in rows],
               "weight_bound_fraction_batch1": of_bound, "targets": targets, "torch": torch,
               "steps_failed": steps_failed}, f, indent=1)
sys.exit(1 if steps_failed or any(t["result"] == "FAIL" for t in targets) else 0)
EOF
rc=$?
echo "gpu-check: results in $OUT"
exit $rc
