#!/usr/bin/env bash
# The loop on this machine: measure it (tpp-profile), plan tiny-llama on it for tp x pp in
# {1x1, 2x1, 1x2} (tpp-plan), run each plan on MPI ranks (tpp-run --launch) and print the
# prediction beside the measurement. Usage: scripts/loop.sh [build dir] [out dir] [requests]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$root/build}")
out=$(realpath -m "${2:-loop-out}")
requests=${3:-64}
cd "$root"
mkdir -p "$out"
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
echo "\$ tpp-profile -o $out/local-cpu.yaml --model tiny-llama --ranks 2"
"$build"/tools/tpp-profile -o "$out/local-cpu.yaml" --model tiny-llama --ranks 2 | tail -3
summary=()
for split in "1 1" "2 1" "1 2"; do
  set -- $split
  plan="$out/plan-tp$1-pp$2.json"
  echo
  echo "\$ tpp-plan --model tiny-llama --cluster $out/local-cpu.yaml --tp $1 --pp $2 --workload workloads/loop.yaml --dtype float32 --enforce-eager -o $plan"
  "$build"/tools/tpp-plan --model tiny-llama --cluster "$out/local-cpu.yaml" --tp "$1" --pp "$2" \
    --workload workloads/loop.yaml --dtype float32 --enforce-eager -o "$plan" >/dev/null
  echo "\$ tpp-run --launch --plan $plan --requests $requests -o $out/measured-tp$1-pp$2.json"
  "$build"/tools/tpp-run --launch --plan "$plan" --requests "$requests" \
    -o "$out/measured-tp$1-pp$2.json" | tee "$out/run-tp$1-pp$2.txt"
  summary+=("tp=$1 pp=$2  $(grep '^summary:' "$out/run-tp$1-pp$2.txt" | sed 's/^summary: //')")
done
echo
echo "the loop, prediction against measurement (error = (predicted - measured) / measured):"
printf '  %s\n' "${summary[@]}"
echo
report_runs=()
for split in "1 1" "2 1" "1 2"; do set -- $split; report_runs+=(--measured "$out/measured-tp$1-pp$2.json"); done
echo "\$ tpp-report --plan $out/plan-tp2-pp1.json ${report_runs[*]} -o $out/report"
"$build"/tools/tpp-report --plan "$out/plan-tp2-pp1.json" "${report_runs[@]}" -o "$out/report"
