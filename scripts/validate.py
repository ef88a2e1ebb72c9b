#!/usr/bin/env python3
"""Predicts every published case of bench/validation/published.json with tpp-plan and sets the
prediction beside the measurement: the table of docs/validation.md (between its markers), with
the median and worst error per engine and metric.

    scripts/validate.py [--build build] [--write | --check] [--jobs N]

--write  rewrites the table in docs/validation.md
--check  exits 1 when docs/validation.md's table differs from what the cases give now (CTest)
Neither: prints the table. Needs python3 (the standard library only) and a built tpp-plan. The cases are validation data: nothing in tpp is fitted to them.

A case's fields (published.json):
  source, engine, version, gpu   where it comes from and what ran (shown in the table)
  cluster                        a tpp cluster: a name under hardware_profiles/clusters or a path
  model                          a catalog name (llama-3.1-8b, qwen2.5-72b, r1), or the path of a
                                 tpp YAML or HF config.json, relative to the repository root
  quantization, kv_cache_dtype   passed as --quantization / --kv-cache-dtype when present
  weights                        optional: the checkpoint's own quantization (mxfp4), shown in
                                 the table's quantization column; tpp reads it from the model
  tp, pp                         the split (dp is 1)
  expert_parallel                optional: true for whole experts over the TP ranks (EP = TP;
                                 tpp-plan --enable-expert-parallel)
  isl, osl                       input and output lengths, fixed unless range_ratio is given
  range_ratio                    optional: lengths drawn uniformly from [int(L * range_ratio), L]
                                 for L = isl and L = osl, as vLLM benchmark_serving's random
                                 dataset (and clients copied from it) draws them
  requests                       how many requests the benchmark sent
  load                           {"rate": "inf"} (the default: all at once), {"rate": 4.0}
                                 (Poisson arrivals, req/s), or {"concurrency": N} (closed loop)
  gpu_memory_utilization         default 0.95
  max_num_seqs, max_num_batched_tokens   optional, passed as flags
  batch_limits                   "trtllm-bench": max_num_seqs and max_num_batched_tokens as
                                 trtllm-bench computes them
  host_overhead                  optional: tpp-plan's --host-overhead; default by engine, version
                                 and the source's date (host_overhead())
  capacity_policy                optional: tpp-plan's --capacity-policy; default by engine:
                                 guaranteed-no-evict for tensorrt-llm (its default policy), vllm
  excluded                       optional: why the case is shown but left out of the medians and
                                 the error bands (a version outside what tpp models)
  metric, measured               one metric and its value, or measured: {metric: value, ...}; the
                                 metrics are METRICS' keys; *_per_gpu throughputs are the
                                 system's divided by the split's GPUs (tp * pp)
"""
import argparse
import concurrent.futures
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = os.path.join(ROOT, "bench", "validation", "published.json")
DOC = os.path.join(ROOT, "docs", "validation.md")
AIC = os.path.join(ROOT, "bench", "validation", "aiconfigurator.json")
BANDS = os.path.join(ROOT, "bench", "validation", "bands.json")
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


# A case's metric -> (field of tpp-plan's "performance", percentile or None).
METRICS = {
    "output_tokens_per_s": ("output_tokens_per_s", None),
    "total_tokens_per_s": ("total_tokens_per_s", None),
    "output_tokens_per_s_per_gpu": ("output_tokens_per_s_per_gpu", None),
    "total_tokens_per_s_per_gpu": ("total_tokens_per_s_per_gpu", None),
    "request_throughput": ("throughput_requests_per_s", None),
    "median_ttft_ms": ("ttft_ms", "p50"), "mean_ttft_ms": ("ttft_ms", "mean"),
    "median_tpot_ms": ("tpot_ms", "p50"), "mean_tpot_ms": ("tpot_ms", "mean"),
    "median_itl_ms": ("itl_ms", "p50"), "mean_itl_ms": ("itl_ms", "mean"),
    "median_e2el_ms": ("e2e_ms", "p50"), "mean_e2el_ms": ("e2e_ms", "mean"),
}
# A throughput's relative error is the same per GPU or for the whole system (the per-GPU figure
# is the system's over the split's GPUs): the error bands pool the two.
POOLED = {"output_tokens_per_s_per_gpu": "output_tokens_per_s",
          "total_tokens_per_s_per_gpu": "total_tokens_per_s"}
UNITS = {"output_tokens_per_s": "tok/s", "total_tokens_per_s": "tok/s",
         "output_tokens_per_s_per_gpu": "tok/s", "total_tokens_per_s_per_gpu": "tok/s",
         "request_throughput": "req/s"}
DIGITS = {"tok/s": 0, "req/s": 3, "ms": 1}  # decimals of a predicted figure


def arrival(case, requests):
    """The case's load as a tpp workload arrival: every request at once (an infinite rate, as
    trtllm-bench and `vllm bench serve --request-rate inf` send them), a closed loop of
    --max-concurrency, or Poisson arrivals at --request-rate (vllm bench serve's default
    burstiness 1)."""
    load = case.get("load", {"rate": "inf"})
    if "concurrency" in load and load.get("rate", "inf") == "inf":
        return {"process": "closed", "concurrency": min(int(load["concurrency"]), requests)}
    if load.get("rate", "inf") != "inf":
        return {"process": "poisson", "rate_per_s": float(load["rate"])}
    return {"process": "closed", "concurrency": requests}


def lengths(case, top):
    """A length distribution: `top` tokens, or with the case's range_ratio uniform in
    [int(top * range_ratio), top] (vLLM benchmark_serving's random dataset: np.random.randint(
    int(len * range_ratio), len + 1))."""
    if case.get("range_ratio") is None:
        return {"distribution": "fixed", "value": top}
    return {"distribution": "uniform", "min": max(1, int(top * case["range_ratio"])), "max": top}


def workload(tmp, name, case, requests):
    """A workload file of the case's lengths and load, `requests` of them."""
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:  # JSON is YAML: tpp-plan reads it as a workload file
        json.dump({
            "name": name, "num_requests": requests, "seed": 1,
            "arrival": arrival(case, requests),
            "input_tokens": lengths(case, case["isl"]),
            "output_tokens": lengths(case, case["osl"]),
            "slo": "none"}, f)
    return path


def measured(case):
    """{metric: value} of a case: one metric (`metric`, `measured`) or several (`measured`: {})."""
    m = case["measured"]
    return dict(m) if isinstance(m, dict) else {case["metric"]: m}


EXTRA_ARGS = []  # --plan-arg: appended to every tpp-plan command (comparison runs only)


def run_plan(cmd):
    """tpp-plan's JSON, or None and its last error line."""
    out = subprocess.run(cmd + EXTRA_ARGS, capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
    return json.loads(out.stdout), None


# vLLM turned async scheduling on by default in vllm-project/vllm PR #27614 ("[Core] Enable async
# scheduling by default", opened 2025-10-27); before it the flag was experimental and off (PR
# #19970, 2025-06-23). A run published before that date ran without it, whatever its version.
ASYNC_SCHEDULING_DEFAULT_SINCE = "2025-10-27"


def source_date(data, case):
    """The date its source names (the first YYYY-MM-DD of published.json's sources entry), or
    None."""
    m = re.search(r"\d{4}-\d{2}-\d{2}", data.get("sources", {}).get(case.get("source", ""), ""))
    return m.group(0) if m else None


def host_overhead(case, date=None):
    """The engine's host model (tpp-plan --host-overhead): TensorRT-LLM's overlap scheduler;
    vLLM V1 with async scheduling (its default from the Q4 2025 roadmap on, so for any version
    from 0.13 on, or unstated and published since ASYNC_SCHEDULING_DEFAULT_SINCE or undated) or
    without it (older versions, and unstated ones published before that date); SGLang's overlap
    scheduler, taken as vLLM's async one (tpp has no SGLang figures; both prepare step n+1 while
    the GPU runs n)."""
    if case.get("host_overhead"):
        return case["host_overhead"]
    if case["engine"] == "tensorrt-llm":
        return "trtllm"
    if case["engine"] == "vllm":
        v = case.get("version", "unknown")
        parts = v.split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            if (int(parts[0]), int(parts[1])) < (0, 13):
                return "vllm-sync"
        elif date and date < ASYNC_SCHEDULING_DEFAULT_SINCE:
            return "vllm-sync"
    return "vllm"


def capacity_policy(case):
    """The scheduler's admission (tpp-plan --capacity-policy): TensorRT-LLM's default
    GUARANTEED_NO_EVICT, else vLLM's (SGLang's is taken as vLLM's)."""
    if case.get("capacity_policy"):
        return case["capacity_policy"]
    return "guaranteed-no-evict" if case["engine"] == "tensorrt-llm" else "vllm"


def predict(plan, case, tmp, index, date=None):
    """tpp-plan's prediction for one case, {metric: value}: the case's load, fixed lengths,
    the case's split."""
    name = f"{index}-{os.path.basename(case['model'])}-{case['gpu']}-tp{case['tp']}-{case['isl']}-{case['osl']}"
    cmd = [plan, "--model", model_path(case["model"]), "--cluster", cluster_path(case["cluster"]),
           "--tp", str(case["tp"]), "--pp", str(case.get("pp", 1)), "--dp", "1",
           "--gpu-memory-utilization", str(case.get("gpu_memory_utilization", 0.95)),
           "--format", "json", "--host-overhead", host_overhead(case, date),
           "--capacity-policy", capacity_policy(case),
           "--max-model-len", str(case["isl"] + case["osl"])]
    if case["engine"] == "sglang" and "--operator-tables" not in EXTRA_ARGS:
        cmd += ["--operator-tables", "sglang"]  # SGLang's own measured kernels
    if case.get("quantization"):
        cmd += ["--quantization", case["quantization"]]
    if case.get("kv_cache_dtype"):
        cmd += ["--kv-cache-dtype", case["kv_cache_dtype"]]
    if case.get("expert_parallel"):
        cmd += ["--enable-expert-parallel"]
    for flag in ("max_num_seqs", "max_num_batched_tokens"):
        if case.get(flag):
            cmd += ["--" + flag.replace("_", "-"), str(case[flag])]
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
    out = {}
    for metric in measured(case):
        field, pct = METRICS[metric]
        v = perf.get(field)
        out[metric] = v.get(pct) if isinstance(v, dict) and pct else v
    moe = bool(j["model"].get("moe"))
    return (out, moe), None


def model_path(name):
    """A catalog name as it is; a path relative to the repository root made absolute."""
    p = os.path.join(ROOT, name)
    return p if os.sep in name and os.path.exists(p) else name


def model_name(name):
    """What the table shows: a catalog name, or a config.json's directory name."""
    if os.path.basename(name) == "config.json":
        return os.path.basename(os.path.dirname(name))
    return os.path.basename(name)


def cluster_path(name):
    p = os.path.join(ROOT, "hardware_profiles", "clusters", name + ".yaml")
    return p if os.path.exists(p) else name


def load_text(case):
    load = case.get("load", {"rate": "inf"})
    if "concurrency" in load:
        return f"conc. {load['concurrency']}"
    return "all at once" if load.get("rate", "inf") == "inf" else f"{load['rate']} req/s"


def lengths_text(case):
    """ISL/OSL as the table shows them: 1024/128, or 819-1024/819-1024 when drawn uniformly."""
    if case.get("range_ratio") is None:
        return f"{case['isl']}/{case['osl']}"
    return "/".join(f"{d['min']}-{d['max']}" for d in (lengths(case, case["isl"]),
                                                        lengths(case, case["osl"])))


def table(build, jobs):
    """The markdown table and the error bands ({engine, metric, moe, tp, cases, ...})."""
    with open(CASES) as f:
        data = json.load(f)
    plan = os.path.join(build, "tools", "tpp-plan")
    cases = data["cases"]
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda ic: predict(plan, ic[1], tmp, ic[0], source_date(data, ic[1])),
                                enumerate(cases)))
    lines = ["| engine | version | GPU | model | quant | KV | TP | ISL/OSL | requests | load | "
             "metric | measured | predicted | error |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    errors = {}
    pairs = {}  # (engine, metric) -> [(tpp's error, aiconfigurator's error)] on the same cases
    aic = aic_predictions()
    for i, (c, (pred, why)) in enumerate(zip(cases, results)):
        for metric, value in measured(c).items():
            unit = UNITS.get(metric, "ms")
            p = None if pred is None else pred[0].get(metric)
            if p is None:
                shown, err = f"not predicted: {why or 'no figure'}", "n/a"
            else:
                e = (p - value) / value
                if not c.get("excluded"):
                    pooled = POOLED.get(metric, metric)
                    errors.setdefault((c["engine"], pooled, pred[1], c["tp"]), []).append(e)
                    if aic.get((i, metric)) is not None:
                        pairs.setdefault((c["engine"], metric), []).append(
                            (e, (aic[(i, metric)] - value) / value))
                shown, err = f"{p:,.{DIGITS[unit]}f}", f"{e * 100:+.1f}%"
                if c.get("excluded"):
                    err += " (excluded\\*)"
            lines.append(f"| {c['engine']} | {c['version']} | {c['gpu']} | "
                         f"{model_name(c['model'])} | "
                         f"{c.get('quantization', c.get('weights', 'none'))} | {c.get('kv_cache_dtype', 'auto')} | "
                         f"{c['tp']} | {lengths_text(c)} | {c['requests']} | {load_text(c)} | "
                         f"{metric} | {value:,} {unit} | {shown} | {err} |")
    lines += ["", "| engine | metric | model | TP | cases | median error | median \\|error\\| | worst |",
              "|---|---|---|---|---|---|---|---|"]
    bands, by_engine, tps = [], {}, {}
    for (engine, metric, moe, tp), es in sorted(errors.items()):
        by_engine.setdefault((engine, metric, moe), []).extend(es)
        tps.setdefault((engine, metric, moe), set()).add(tp)
        bands.append(band(engine, metric, moe, tp, es, [tp]))
    for (engine, metric, moe), es in sorted(by_engine.items()):
        bands.append(band(engine, metric, moe, 0, es, sorted(tps[(engine, metric, moe)])))
    bands.sort(key=lambda b: (b["engine"], b["metric"], b["moe"], b["tp"] == 0, b["tp"]))
    for b in bands:
        lines.append(f"| {b['engine']} | {b['metric']} | {'MoE' if b['moe'] else 'dense'} | "
                     f"{b['tp'] or 'all'} | {b['cases']} | {b['median_error_pct']:+.1f}% | "
                     f"{b['median_abs_error_pct']:.1f}% | {b['worst_error_pct']:+.1f}% |")
    # Per engine, every figure of every kind (the issue's "median and worst error per engine").
    lines += ["", "| engine | figures (all metrics, models, TP sizes) | median error | "
              "median \\|error\\| | worst |", "|---|---|---|---|---|"]
    per_engine = {}
    for (engine, _, _, _), es in errors.items():
        per_engine.setdefault(engine, []).extend(es)
    for engine, es in sorted(per_engine.items()):
        worst = max(es, key=abs)
        lines.append(f"| {engine} | {len(es)} | {statistics.median(es) * 100:+.1f}% | "
                     f"{statistics.median([abs(e) for e in es]) * 100:.1f}% | {worst * 100:+.1f}% |")
    lines += ["", "Side by side with NVIDIA aiconfigurator's own estimates of the same cases "
              "(bench/validation/aiconfigurator.json, scripts/aic_estimate.py):", "",
              "| engine | metric | cases | tpp median error | tpp median \\|error\\| | "
              "aiconfigurator median error | aiconfigurator median \\|error\\| |",
              "|---|---|---|---|---|---|---|"]
    by_engine_pairs = {}
    for (engine, metric), ps in sorted(pairs.items()):
        by_engine_pairs.setdefault(engine, []).extend(ps)
        lines.append(side_by_side(engine, metric, ps))
    for engine, ps in sorted(by_engine_pairs.items()):
        lines.append(side_by_side(engine, "all metrics", ps))
    return "\n".join(lines) + "\n", bands


def aic_predictions():
    """aiconfigurator's prediction of each (case index, metric), where it gave one."""
    if not os.path.exists(AIC):
        return {}
    with open(AIC) as f:
        return {(e["index"], e["metric"]): e.get("predicted") for e in json.load(f)["cases"]}


def side_by_side(engine, metric, ps):
    def med(xs):
        return statistics.median(xs) * 100
    t, a = [p[0] for p in ps], [p[1] for p in ps]
    return (f"| {engine} | {metric} | {len(ps)} | {med(t):+.1f}% | {med([abs(x) for x in t]):.1f}% | "
            f"{med(a):+.1f}% | {med([abs(x) for x in a]):.1f}% |")


def band(engine, metric, moe, tp, es, tp_sizes):
    """The error band of a kind of case: its count, median signed and absolute error, worst, and
    the TP sizes its cases ran with (tp 0: every size of that kind)."""
    worst = max(es, key=abs)
    return {"engine": engine, "metric": metric, "moe": moe, "tp": tp, "tp_sizes": tp_sizes,
            "cases": len(es),
            "median_error_pct": round(statistics.median(es) * 100, 1),
            "median_abs_error_pct": round(statistics.median(abs(e) for e in es) * 100, 1),
            "worst_error_pct": round(worst * 100, 1)}


def bands_json(bands):
    return json.dumps({
        "about": "Error bands of tpp's predictions against published results (docs/validation.md), "
                 "written by scripts/validate.py --write and compiled into tpp-plan, which prints "
                 "them beside its headline figures. tp 0: every TP size of that kind.",
        "bands": bands}, indent=1) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--plan-arg", action="append", default=[],
                    help="an argument appended to every tpp-plan run, for a comparison table "
                         "(--plan-arg=--operator-tables --plan-arg=off); not with --write/--check")
    a = ap.parse_args()
    if a.plan_arg and (a.write or a.check):
        print("validate.py: error: --plan-arg makes a comparison table; it cannot be written or "
              "checked", file=sys.stderr)
        return 2
    EXTRA_ARGS.extend(a.plan_arg)
    t, bands = table(a.build, a.jobs)
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
        old_bands = open(BANDS).read() if os.path.exists(BANDS) else ""
        if old.strip() != t.strip() or old_bands != bands_json(bands):
            print(f"{DOC}: the validation table or {BANDS} is not what the cases give now: run "
                  f"scripts/validate.py --write", file=sys.stderr)
            return 1
        print(f"ok: {DOC}'s table and the error bands are what the cases give now")
        return 0
    with open(DOC, "w") as f:
        f.write(head + BEGIN + "\n" + t + END + tail)
    with open(BANDS, "w") as f:
        f.write(bands_json(bands))
    print(f"wrote the table into {DOC} and the error bands into {BANDS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
