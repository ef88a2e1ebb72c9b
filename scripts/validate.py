#!/usr/bin/env python3
"""Predicts every published case of bench/validation/published.json with tpp-plan and sets the
prediction beside the measurement: the table of docs/validation.md (between its markers), with
the median and worst error per engine and metric.

    scripts/validate.py [--build build] [--write | --check] [--jobs N]

--write  rewrites the table in docs/validation.md
--check  exits 1 when docs/validation.md's table differs from what the cases give now (CTest)
Neither: prints the table. Needs python3 (the standard library only) and a built tpp-plan. The cases are validation data: nothing in tpp is fitted to them.
"""
import argparse
import concurrent.futures
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = os.path.join(ROOT, "bench", "validation", "published.json")
DOC = os.path.join(ROOT, "docs", "validation.md")
BEGIN = "<!-- validation table: scripts/validate.py --write -->"
END = "<!-- end of the validation table -->"


def trtllm_bench_limits(model, gpu, case):
    """trtllm-bench's max batch size and max tokens a step for a case, as
    tensorrt_llm/bench/build/tuning.py computes them (calc_engine_setting, finetune_setting):
    the requests of ISL + OSL tokens that 95% of the memory left by the weights holds, rounded
    up "slightly optimistic"."""
    bpe = 1.0 if case.get("quantization") == "fp8" else 2.0
    kv_bpe = 1.0 if str(case.get("kv_cache_dtype", "auto")).startswith("fp8") else 2.0
    tp, pp = case["tp"], case.get("pp", 1)
    kv_heads = max(tp, model["attention"]["num_kv_heads"])
    per_token = 2 * model["num_layers"] * kv_heads * model["attention"]["head_dim"] * kv_bpe / 1024**3
    engine = model["params_total"] * bpe / 1024**3
    total = gpu["memory_driver_GiB"]["value"] * tp * pp
    requests = (total - engine) * 0.95 / (per_token * (case["isl"] + case["osl"]))
    raw_bs = min(requests, 4096) / pp
    raw_token = min(raw_bs * (1 + case["isl"] / case["osl"]), 32768)
    if raw_bs < 256:
        bs = max(64, 32 * math.ceil(raw_bs / 32))
    elif raw_bs < 1024:
        bs = 128 * math.ceil(raw_bs / 128)
    else:
        bs = 256 * math.ceil(raw_bs / 256)
    if raw_token < 4096:
        tokens = max(2048, 256 * math.ceil(raw_token / 256))
    elif raw_token < 8192:
        tokens = 512 * math.ceil(raw_token / 512)
    else:
        tokens = 1024 * math.ceil(raw_token / 1024)
    return bs, tokens


def workload(tmp, name, case, requests):
    """A workload file of the case's fixed lengths, `requests` of them all queued at once."""
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:  # JSON is YAML: tpp-plan reads it as a workload file
        json.dump({
            "name": name, "num_requests": requests, "seed": 1,
            "arrival": {"process": "closed", "concurrency": requests},
            "input_tokens": {"distribution": "fixed", "value": case["isl"]},
            "output_tokens": {"distribution": "fixed", "value": case["osl"]},
            "slo": "none"}, f)
    return path


def run_plan(cmd):
    """tpp-plan's JSON, or None and its last error line."""
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
    return json.loads(out.stdout), None


def predict(plan, case, tmp):
    """tpp-plan's prediction for one case: a closed loop as large as the request count (every
    request queued at once, as an infinite request rate), fixed lengths, the case's split."""
    name = f"{case['model']}-{case['gpu']}-tp{case['tp']}-{case['isl']}-{case['osl']}"
    cmd = [plan, "--model", case["model"], "--cluster", cluster_path(case["cluster"]),
           "--tp", str(case["tp"]), "--pp", str(case.get("pp", 1)), "--dp", "1",
           "--gpu-memory-utilization", "0.95", "--format", "json",
           "--max-model-len", str(case["isl"] + case["osl"])]
    if case.get("quantization"):
        cmd += ["--quantization", case["quantization"]]
    if case.get("kv_cache_dtype"):
        cmd += ["--kv-cache-dtype", case["kv_cache_dtype"]]
    if case.get("batch_limits") == "trtllm-bench":
        # The model's and GPU's figures (one request is enough to print them), then the limits.
        j, why = run_plan(cmd + ["--workload", workload(tmp, name + "-facts", case, 1)])
        if j is None:
            return None, why
        bs, tokens = trtllm_bench_limits(j["model"], j["cluster"]["gpu"], case)
        cmd += ["--max-num-seqs", str(bs), "--max-num-batched-tokens", str(tokens)]
    j, why = run_plan(cmd + ["--workload", workload(tmp, name, case, case["requests"])])
    if j is None:
        return None, why
    perf = j["plans"][0].get("performance") or {}
    return perf.get(case["metric"]), None


def cluster_path(name):
    p = os.path.join(ROOT, "hardware_profiles", "clusters", name + ".yaml")
    return p if os.path.exists(p) else name


def table(build, jobs):
    with open(CASES) as f:
        data = json.load(f)
    plan = os.path.join(build, "tools", "tpp-plan")
    cases = data["cases"]
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda c: predict(plan, c, tmp), cases))
    lines = ["| engine | version | GPU | model | quant | KV | TP | ISL/OSL | requests | measured | "
             "predicted | error |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    errors = {}
    for c, (pred, why) in zip(cases, results):
        unit = "tok/s" if c["metric"] == "output_tokens_per_s" else c["metric"]
        if pred is None:
            shown, err = f"not predicted: {why}", "n/a"
        else:
            e = (pred - c["measured"]) / c["measured"]
            errors.setdefault((c["engine"], c["metric"], c["tp"]), []).append(e)
            shown, err = f"{pred:,.0f}", f"{e * 100:+.1f}%"
        lines.append(f"| {c['engine']} | {c['version']} | {c['gpu']} | {c['model']} | "
                     f"{c.get('quantization', 'none')} | {c.get('kv_cache_dtype', 'auto')} | "
                     f"{c['tp']} | {c['isl']}/{c['osl']} | "
                     f"{c['requests']} | {c['measured']:,} {unit} | {shown} | {err} |")
    lines += ["", "| engine | metric | TP | cases | median error | median \\|error\\| | worst |",
              "|---|---|---|---|---|---|---|"]
    by_engine = {}
    for (engine, metric, tp), es in sorted(errors.items()):
        by_engine.setdefault((engine, metric), []).extend(es)
        lines.append(summary_row(engine, metric, str(tp), es))
    for (engine, metric), es in sorted(by_engine.items()):
        lines.append(summary_row(engine, metric, "all", es))
    return "\n".join(lines) + "\n"


def summary_row(engine, metric, tp, es):
    worst = max(es, key=abs)
    return (f"| {engine} | {metric} | {tp} | {len(es)} | {statistics.median(es) * 100:+.1f}% | "
            f"{statistics.median(abs(e) for e in es) * 100:.1f}% | {worst * 100:+.1f}% |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    t = table(a.build, a.jobs)
    if not (a.write or a.check):
        sys.stdout.write(t)
        return 0
    with open(DOC) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        print(f"{DOC}: error: the markers {BEGIN!r} and {END!r} are missing", file=sys.stderr)
        return 2
    head, rest = doc.split(BEGIN, 1)
    old, tail = rest.split(END, 1)
    if a.check:
        if old.strip() != t.strip():
            print(f"{DOC}: the validation table is not what the cases give now: run "
                  f"scripts/validate.py --write", file=sys.stderr)
            return 1
        print(f"ok: {DOC}'s table is what the cases give now")
        return 0
    with open(DOC, "w") as f:
        f.write(head + BEGIN + "\n" + t + END + tail)
    print(f"wrote the table into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
