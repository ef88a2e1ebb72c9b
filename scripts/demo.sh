#!/usr/bin/env bash
# The main job, end to end: install, build, plan DeepSeek-R1 on 16 x 8 A100-80GB and draw its
# report (report-r1/report.html); then the loop on this machine: plan tiny-llama on its measured
# profile, run it on MPI ranks, compare, and draw that comparison (loop-out/report/report.html).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build >/dev/null
echo "\$ tpp-plan --model r1.yaml --cluster a100x16.yaml --report report-r1"
build/tools/tpp-plan --model r1.yaml --cluster a100x16.yaml --report report-r1
echo
echo "\$ tpp-plan --model r1.yaml --cluster h100x2.yaml --workload chat.yaml --tp 8 --pp 2"
build/tools/tpp-plan --model r1.yaml --cluster h100x2.yaml --workload chat.yaml --tp 8 --pp 2
echo
echo "# The executor: tiny-llama planned on this machine's measured profile, run on MPI ranks,"
echo "# the measurement beside the prediction (docs/executor.md)"
bash scripts/loop.sh build loop-out 64
echo
echo "reports: report-r1/report.html (the plan), loop-out/report/report.html (prediction beside measurement)"
