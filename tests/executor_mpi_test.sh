#!/usr/bin/env bash
# The executor with real MPI ranks, as a user runs it.
#   executor_mpi_test.sh BUILD check MODEL TP PP DP [ep]   sharded run == single-rank run
#   executor_mpi_test.sh BUILD errors                      bad runs: one line, exit 2
#   executor_mpi_test.sh BUILD checkpoints                 save, load both formats, --check
#   executor_mpi_test.sh BUILD killed                      a killed rank stops the job, leaves data
#   executor_mpi_test.sh BUILD replay                      --replay-rank beside the full run
#   executor_mpi_test.sh BUILD loop                        the loop, small: profile, plan, run
set -euo pipefail
build=$(cd "$1" && pwd)
what=$2
shift 2
src=$(cd "$(dirname "$0")/.." && pwd)
run="$build/tools/tpp-run"
plan="$build/tools/tpp-plan"
cluster="$src/tests/data/cpu4.yaml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# CI runs as root, with fewer cores than ranks.
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mpi() { local n=$1; shift; mpirun --oversubscribe -np "$n" "$@"; }
fail() { echo "FAIL: $*"; exit 1; }

make_plan() {  # model tp pp dp ep out
  local ep=""
  [ "$5" = ep ] && ep=--enable-expert-parallel
  "$plan" --model "$1" --cluster "$cluster" --tp "$2" --pp "$3" --dp "$4" $ep \
    --workload "$src/workloads/loop.yaml" --dtype float32 --enforce-eager -o "$6" >/dev/null
}

# Exit 2 and exactly one line on stderr containing $1; the command follows.
one_line_error() {
  local want=$1
  shift
  set +e
  "$@" >out.txt 2>err.txt
  local code=$?
  set -e
  [ "$code" = 2 ] || fail "exit $code, not 2: $* ($(cat err.txt))"
  [ "$(wc -l <err.txt)" = 1 ] || fail "not one line: $*: $(cat err.txt)"
  grep -qF -- "$want" err.txt || fail "'$want' not in: $(cat err.txt)"
  echo "ok: $(cat err.txt)"
}

case "$what" in
  check)
    make_plan "$1" "$2" "$3" "$4" "${5:-}" plan.json
    n=$(($2 * $3 * $4))
    mpi "$n" "$run" --plan plan.json --check --requests 8 | tee out.txt
    grep -q '^OK: ' out.txt || fail "no OK"
    ;;
  errors)
    make_plan tiny-llama 2 1 1 "" tp2.json
    make_plan tiny-llama 1 1 1 "" tp1.json
    make_plan tiny-mixtral 1 1 2 ep ep-dp2.json
    one_line_error "needs 2 ranks, this job has 1" "$run" --plan tp2.json
    if ! nvidia-smi -L >/dev/null 2>&1; then  # no GPU here: said in one line, exit 2
      one_line_error "tpp-run: error: --backend cuda: " "$run" --plan tp1.json --backend cuda
      one_line_error "tpp-run: error: --backend cuda: " "$run" --plan tp2.json --backend cuda \
        --replay-rank 1
    fi
    one_line_error "--replay-rank 2: the plan's split tp=2 x pp=1 x dp=1 has ranks 0..1" \
      "$run" --plan tp2.json --replay-rank 2
    one_line_error "--replay-rank runs one rank alone: it takes no --check" \
      "$run" --plan tp2.json --replay-rank 0 --check
    set +e  # under mpirun: said once (by rank 0), exit 2, mpirun's own notice aside
    mpi 2 "$run" --plan tp2.json --replay-rank 0 >out.txt 2>err.txt
    code=$?
    set -e
    [ "$code" = 2 ] || fail "replay under mpirun: exit $code"
    [ "$(grep -c 'tpp-run: error' err.txt)" = 1 ] || fail "not one error line: $(cat err.txt)"
    grep -q -- "--replay-rank runs one process, this job has 2" err.txt || fail "$(cat err.txt)"
    echo "ok: $(grep 'tpp-run: error' err.txt)"
    one_line_error "expert parallel over dp=2 replicas" "$run" --plan ep-dp2.json
    one_line_error "needs --model-dir" "$run" --plan tp1.json --load-format sharded_state
    one_line_error "nothing.json" "$run" --plan nothing.json
    one_line_error "--hosts a:1 has 1 slot in all, the plan's split needs 2 ranks" \
      "$run" --launch --plan tp2.json --hosts a:1
    one_line_error "--hosts entry 'b:x' is not host or host:slots" \
      "$run" --launch --plan tp2.json --hosts a:1,b:x
    sed 's/"tpp_plan_version": 2/"tpp_plan_version": 7/' tp1.json >v7.json
    one_line_error "plan version 7 is not supported" "$run" --plan v7.json
    mkdir -p empty
    one_line_error "has no *.safetensors files" "$run" --plan tp1.json --model-dir empty
    # A plan whose KV pool this host cannot hold: a "GPU" of 5000 GiB.
    sed -e 's/memory_driver_GiB: {value: 1,/memory_driver_GiB: {value: 5000,/' \
        -e 's/memory_marketed_GB: {value: 2,/memory_marketed_GB: {value: 5400,/' "$cluster" >huge.yaml
    "$plan" --model tiny-llama --cluster huge.yaml --tp 1 --workload "$src/workloads/loop.yaml" \
      --dtype float32 -o huge.json >/dev/null
    one_line_error "this host has free: plan against a smaller memory profile" "$run" --plan huge.json
    # A 2026 architecture tpp-plan plans but the decoder does not run: refused, not run wrongly.
    "$plan" --model "$src/tests/data/hf/openai--gpt-oss-20b.json" --cluster huge.yaml --tp 1 \
      --workload "$src/workloads/loop.yaml" --dtype float32 -o oss.json >/dev/null
    one_line_error "has sliding-window, chunked or linear attention layers, which tpp-plan plans"  \
      "$run" --plan oss.json
    ;;
  checkpoints)
    make_plan tiny-mixtral 2 2 1 "" plan.json
    "$run" --plan plan.json --save-hf hf >/dev/null
    mpi 4 "$run" --plan plan.json --requests 2 --save-sharded sharded >/dev/null
    for r in 0 1 2 3; do [ -f "sharded/model-rank-$r-part-0.safetensors" ] || fail "no rank $r file"; done
    mpi 4 "$run" --plan plan.json --requests 8 --check --load-format sharded_state \
      --model-dir sharded -o m1.json | tee out1.txt
    grep -q '^OK: ' out1.txt || fail "sharded_state load differs"
    grep -q '^load (sharded_state)' out1.txt || fail "no load time reported"
    mpi 4 "$run" --plan plan.json --requests 8 --check --model-dir hf | tee out2.txt
    grep -q '^OK: ' out2.txt || fail "Hugging Face load differs"
    # A truncated file: the rank that reads it says so, once; nobody hangs.
    cp -r hf cut && truncate -s -64 cut/model.safetensors
    set +e
    mpi 4 "$run" --plan plan.json --model-dir cut >out3.txt 2>err3.txt
    code=$?
    set -e
    [ "$code" = 2 ] || fail "truncated checkpoint: exit $code"
    [ "$(grep -c 'tpp-run: error' err3.txt)" = 1 ] || fail "not one error line: $(cat err3.txt)"
    grep -q "model.safetensors: error: tensor '.*': data_offsets .* run past the data" err3.txt || fail "$(cat err3.txt)"
    echo "ok: $(grep 'tpp-run: error' err3.txt)"
    ;;
  killed)
    p=killed-$$.json  # a name no other test's ranks have
    # The loop workload's 64 requests can end within a second of the first snapshot (written
    # two seconds in), before the kill: then the final, complete file is what the test reads.
    # 5000 requests cannot end first; the kill stops the job seconds in.
    sed 's/^num_requests: .*/num_requests: 5000/' "$src/workloads/loop.yaml" >killed-wl-$$.yaml
    "$plan" --model tiny-llama --cluster "$cluster" --tp 2 --pp 1 --dp 1 \
      --workload killed-wl-$$.yaml --dtype float32 --enforce-eager -o "$p" >/dev/null
    set +e
    "$run" --launch --plan "$p" -o measured.json >out.txt 2>err.txt &
    job=$!
    set -e
    for _ in $(seq 100); do  # until rank 0 has written its first snapshot
      [ -f measured.json ] && break
      sleep 0.1
    done
    [ -f measured.json ] || fail "no snapshot after 10 s"
    victim=$(pgrep -f "tpp-run --plan $p" | sort -n | tail -1)
    kill -9 "$victim"
    start=$(date +%s)
    set +e
    wait "$job"
    code=$?
    set -e
    took=$(($(date +%s) - start))
    [ "$code" != 0 ] || fail "the job exited 0 after a rank was killed"
    [ "$took" -le 30 ] || fail "the job took $took s to stop"
    if pgrep -f "tpp-run --plan $p" >/dev/null; then fail "ranks left running"; fi
    grep -q "rank 1 .*exited on signal 9" err.txt || fail "the killed rank is not named: $(cat err.txt)"
    grep -q '"complete": false' measured.json || fail "the snapshot is not marked incomplete"
    grep -q '"finished": [0-9]' measured.json || fail "the snapshot has no requests"
    echo "ok: snapshot, $(grep -m1 '"finished"' measured.json | tr -d ' ,')"
    echo "ok: stopped in $took s with exit $code"
    ;;
  replay)
    # Rank R of a tp=2 x pp=2 plan run alone, for the first and the last stage, beside the
    # same plan run on its four ranks: the replayed stage's compute is that of the real run's
    # stage (within a factor: this machine is shared and oversubscribed), and the stand-in
    # collectives are counted and timed by the plan's cluster profile.
    make_plan tiny-llama 2 2 1 "" plan.json
    mpi 4 "$run" --plan plan.json --requests 16 -o full.json >full.txt
    for r in 0 3; do
      "$run" --plan plan.json --replay-rank $r --requests 16 -o replay$r.json | tee replay$r.txt
      grep -q "^replayed rank $r " replay$r.txt || fail "rank $r: no replay line"
    done
    python3 - full.json replay0.json replay3.json <<'PY'
import json, sys
full = json.load(open(sys.argv[1]))
for path, stage in ((sys.argv[2], 0), (sys.argv[3], 1)):
    r = json.load(open(path))["replay"]
    assert r["pp"] == stage, (path, r)
    assert r["steps"] > 0 and r["collectives_called"] > 0, r
    assert r["collective_modeled_ms"] > 0 and r["collective_called_modeled_ms_per_step"] > 0, r
    m, p = r["stage_compute_measured_ms"], r["stage_compute_predicted_ms"]
    real = full["same_batches"]["stages"][stage]["compute_ms"]["measured_p50"]
    assert m > 0 and p > 0, r
    assert real / 3 < m < real * 3, (path, m, real)
    print(f"ok: stage {stage} replayed {m:.3f} ms, in the full run {real:.3f} ms, predicted {p:.3f} ms")
PY
    ;;
  loop)
    bash "$src/scripts/loop.sh" "$build" loop-out "${1:-16}" | tee out.txt
    n=${1:-16}
    for s in tp1-pp1 tp2-pp1 tp1-pp2; do
      f=loop-out/measured-$s.json
      grep -q '"complete": true' "$f" || fail "$f incomplete"
      # Every request finished: performance.finished and the prediction's, both n.
      [ "$(grep -c "\"finished\": $n," "$f")" = 2 ] || fail "$f: not $n finished"
      grep -q '^summary: ' "loop-out/run-$s.txt" || fail "$s: no summary"
      echo "ok: $f, $n requests finished"
    done
    grep -q '^the loop, prediction against measurement' out.txt || fail "no summary"
    ;;
  *) fail "unknown case $what" ;;
esac
