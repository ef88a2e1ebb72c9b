#!/usr/bin/env bash
# The main job, end to end: install, build, plan DeepSeek-R1 on 16 x 8 A100-80GB; the loop on
# this machine (plan tiny-llama on its measured profile, run it on MPI ranks, compare, draw it:
# loop-out/report/report.html); then the R1 plan scaled to this machine (tiny-deepseek, MLA + MoE
# as R1, at the chosen split's PP and as much of its TP as the cores allow) run on MPI ranks, and
# the R1 plan's report with that comparison (report-r1/report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build >/dev/null
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
echo "\$ tpp-plan --model r1.yaml --cluster a100x16.yaml -o r1-plan.json --report report-r1"
build/tools/tpp-plan --model r1.yaml --cluster a100x16.yaml -o r1-plan.json --report report-r1 | tee r1-plan.txt
echo
echo "\$ tpp-plan --model r1.yaml --cluster h100x2.yaml --workload chat.yaml --tp 8 --pp 2"
build/tools/tpp-plan --model r1.yaml --cluster h100x2.yaml --workload chat.yaml --tp 8 --pp 2
echo
echo "# The executor: tiny-llama planned on this machine's measured profile, run on MPI ranks,"
echo "# the measurement beside the prediction (docs/executor.md)"
bash scripts/loop.sh build loop-out 64
echo

# The chosen R1 split, scaled: PP as chosen (at most tiny-deepseek's 4 layers and the cores), TP
# the largest power of two that the remaining cores and tiny-deepseek's 8 heads allow.
read -r tp pp < <(sed -n 's/^recommended: TP\([0-9]*\) x PP\([0-9]*\) .*/\1 \2/p' r1-plan.txt)
cores=$(nproc)
pp_s=$(( pp < 4 ? pp : 4 )); pp_s=$(( pp_s < cores ? pp_s : cores )); [ "$pp_s" -ge 1 ] || pp_s=1
tp_s=1
while [ $(( tp_s * 2 )) -le "$tp" ] && [ $(( tp_s * 2 * pp_s )) -le "$cores" ] && [ $(( tp_s * 2 )) -le 8 ]; do
  tp_s=$(( tp_s * 2 ))
done
s=scaled-r1
mkdir -p "$s"
echo "# The R1 plan (TP$tp x PP$pp) scaled to this machine's $cores cores: tiny-deepseek at TP$tp_s x PP$pp_s"
echo "\$ tpp-profile -o $s/local-cpu.yaml --model tiny-deepseek --ranks $(( tp_s * pp_s > 1 ? tp_s * pp_s : 2 ))"
build/tools/tpp-profile -o "$s/local-cpu.yaml" --model tiny-deepseek --ranks $(( tp_s * pp_s > 1 ? tp_s * pp_s : 2 )) | tail -1
echo "\$ tpp-plan --model tiny-deepseek --cluster $s/local-cpu.yaml --tp $tp_s --pp $pp_s --workload workloads/loop.yaml --dtype float32 --enforce-eager -o $s/plan.json"
build/tools/tpp-plan --model tiny-deepseek --cluster "$s/local-cpu.yaml" --tp "$tp_s" --pp "$pp_s" \
  --workload workloads/loop.yaml --dtype float32 --enforce-eager -o "$s/plan.json" >/dev/null
echo "\$ tpp-run --launch --plan $s/plan.json --requests 64 -o $s/measured.json"
build/tools/tpp-run --launch --plan "$s/plan.json" --requests 64 -o "$s/measured.json" | tail -1
echo "\$ tpp-report --plan r1-plan.json --measured $s/measured.json -o report-r1"
build/tools/tpp-report --plan r1-plan.json --measured "$s/measured.json" -o report-r1
echo
echo "reports: report-r1/report.html (the R1 plan, and its scaled run here beside its prediction),"
echo "         loop-out/report/report.html (tiny-llama's three splits, prediction beside measurement)"
