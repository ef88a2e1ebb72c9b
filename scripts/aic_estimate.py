#!/usr/bin/env python3
"""NVIDIA aiconfigurator's own estimate of every published case in bench/validation/published.json,
written to bench/validation/aiconfigurator.json, so tpp's error and aiconfigurator's can be set side
by side. Development only: not part of the build or the tests, and nothing in tpp reads its output.

    python3 -m venv /tmp/aicvenv
    /tmp/aicvenv/bin/pip install aiconfigurator==0.12.0      # or the two downloaded wheels
    /tmp/aicvenv/bin/python scripts/aic_estimate.py [--out PATH] [--print-only]

API: aiconfigurator.cli.api.cli_estimate, the SDK's single-point estimate ("predict this given
config", the programmatic form of `aiconfigurator cli estimate`), never its search for the best
config (cli_default / recommend). mode="agg" is its in-flight-batching (IFB) worker estimate
(InferenceSession.run_agg); mode="static" its static-batch estimate (run_static). The choices made
for each kind of case are written into the output's "about" (ABOUT below) and each entry's
"details". Nothing here is fitted to the measured values: they are read only to print the errors.
"""
import argparse
import datetime
import json
import logging
import math
import os
import re
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = os.path.join(ROOT, "bench", "validation", "published.json")
OUT = os.path.join(ROOT, "bench", "validation", "aiconfigurator.json")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import validate  # noqa: E402  (trtllm_bench_limits, measured: the same rules tpp's validation uses)

SYSTEMS = {"H100": "h100_sxm", "H200": "h200_sxm", "A100": "a100_sxm"}
BACKENDS = {"tensorrt-llm": "trtllm", "vllm": "vllm", "sglang": "sglang"}
GPU_PROFILES = {"H100": "H100-SXM5-80GB.yaml", "H200": "H200-SXM-141GB.yaml", "A100": "A100-SXM4-80GB.yaml"}

# Qwen2.5-72B-Instruct's config.json (huggingface.co/Qwen/Qwen2.5-72B-Instruct), the shapes of tpp's
# model/examples/qwen2.5-72b.yaml: aiconfigurator 0.12.0 ships no Qwen2.5 config, and reads a local
# directory's config.json (Qwen2ForCausalLM is in its architecture table, as the LLAMA family).
QWEN25_72B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 8192,
    "intermediate_size": 29568, "num_hidden_layers": 80, "num_attention_heads": 64,
    "num_key_value_heads": 8, "vocab_size": 152064, "max_position_embeddings": 32768,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
    "hidden_act": "silu", "torch_dtype": "bfloat16"}

# hf_quant_config.json of NVIDIA's ModelOpt FP8 Llama checkpoints (the one aiconfigurator ships for
# nvidia/Llama-3.1-70B-Instruct-FP8): FP8 weights with per-tensor static scales, FP8 KV cache.
MODELOPT_FP8 = {"producer": {"name": "modelopt"},
                "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8",
                                 "exclude_modules": ["lm_head"]}}

ABOUT = [
    "NVIDIA aiconfigurator's own performance estimate of each case of published.json (same index), for",
    "comparison with tpp's (docs/validation.md). Written by scripts/aic_estimate.py; {date}; aiconfigurator",
    "{version} (aiconfigurator + aiconfigurator-core wheels from PyPI), database_mode SILICON (its measured",
    "kernel tables only). Nothing is fitted to the measured values.",
    "",
    "API: aiconfigurator.cli.api.cli_estimate, its single-point 'estimate a given config' call (the SDK form of",
    "`aiconfigurator cli estimate`), never its best-config search. mode='agg': InferenceSession.run_agg, its",
    "steady-state in-flight-batching model at a fixed batch (= concurrency) and a per-step context-token budget",
    "(ctx_tokens); mode='static': run_static, one static batch prefilled together then decoded together.",
    "System: H100 -> h100_sxm, H200 -> h200_sxm, A100 -> a100_sxm. Backend: tensorrt-llm -> trtllm, vllm, sglang.",
    "Version: the queryable database version (its current/previous/next slots; other data directories are",
    "rejected by its public API and on Hopper hold only comm/moe/mla fragments) closest to the case's; every",
    "case's version is older than, or unknown beside, what it has, so this is each slot's 'current':",
    "{versions}.",
    "Models: llama-3.1-8b/-405b fp8 -> its bundled meta-llama/Meta-Llama-3.1-8B/-405B config.json plus the",
    "ModelOpt FP8 hf_quant_config.json of the checkpoints that ran (nvidia/Llama-3.1-*-Instruct-FP8), so it infers",
    "the quantization as it does for its own bundled nvidia/Llama-3.1-70B-Instruct-FP8 (used for llama-3.1-70b",
    "fp8; Llama 3.3 70B has its shapes): GEMM fp8_static, KV fp8, FMHA fp8; qwen2.5-72b -> a local config.json",
    "of Qwen2.5-72B-Instruct (not bundled); qwen3-30b-a3b -> Qwen/Qwen3-30B-A3B; r1 -> deepseek-ai/DeepSeek-R1",
    "(its own fp8 block-scaled weights: GEMM and MoE fp8_block, inferred); mixtral-8x7b -> its bundled",
    "Mixtral-8x7B-v0.1 config.json (passed as a local directory: it is bundled but not in its default-model list);",
    "bf16 cases -> the bf16 configs. KV cache: the case's kv_cache_dtype (fp8 where given), else bfloat16 ('auto'",
    "on a bf16 or block-fp8 checkpoint), passed explicitly because aiconfigurator would infer fp8 for R1.",
    "Memory: free_gpu_memory_fraction = the case's gpu_memory_utilization for vLLM / SGLang (there it is, as",
    "in the engines, a share of the whole device); 0.95 for the trtllm-bench cases (below). It only decides",
    "whether a batch's KV cache fits (checked; no case here is near the limit except the max-throughput ones).",
    "Split: the case's TP and PP; MoE layers moe_tp = TP, moe_ep = 1 (no expert parallelism, as the cases ran).",
    "",
    "Loads:",
    "- concurrency N (closed loop): agg at batch_size N, ctx_tokens = ISL (cli_estimate's default: one prompt a",
    "  step). Lengths drawn uniformly in [int(L*range_ratio), L] (inferencex-870) are given as their means",
    "  (1024 -> 922): aiconfigurator takes fixed lengths only.",
    "- all requests at once, trtllm-bench throughput (the 60 trtllm-1.0 cases): agg at the batch trtllm-bench",
    "  would run. That batch is min(trtllm-bench's own max_batch_size, the largest batch whose KV cache",
    "  aiconfigurator says fits at free_gpu_memory_fraction 0.95 (the page's --kv_cache_free_gpu_mem_fraction)",
    "  with max_seq_len ISL+OSL, requests). trtllm-bench's max_batch_size and max_num_tokens are computed as",
    "  tensorrt_llm/bench/build/tuning.py does (scripts/validate.py trtllm_bench_limits, the rule tpp's own",
    "  validation uses; model size and KV bytes from the config, GPU memory from hardware_profiles/gpus).",
    "  ctx_tokens = trtllm-bench's max_num_tokens rounded down to whole prompts (no chunked prefill), at least one",
    "  prompt, at most batch-1 prompts (aiconfigurator's own feasibility guard). Why this and not aiconfigurator's",
    "  best point: the benchmark ran one given configuration and this is a prediction of it; with every request",
    "  queued at once the engine runs as many as its batch limit and KV cache admit. aiconfigurator's own choice",
    "  is also given, in details.alt_best: the highest output tokens/s over its default agg search grid (batch",
    "  1..1024 of its sweep schedule, its non-chunked ctx_tokens grid), memory-feasible at fraction 0.95; its",
    "  medians are printed beside the main ones.",
    "- Poisson at a rate (vllm-issue-12568, excluded): aiconfigurator has no arrival process or queue. Taken as the",
    "  steady state whose concurrency b satisfies Little's law, seq/s(b) = rate, b interpolated between batch sizes",
    "  up to min(256 (vLLM 0.7's max_num_seqs default), KV capacity at 0.90); if even the largest b serves less",
    "  than the rate the server saturates: throughput and TPOT are those at the largest b, and the median TTFT",
    "  (queueing that grows with the run) is not predicted.",
    "- 8 prompts in one llm.generate (vllm-perf-ci-9515 latency tests, excluded): static mode at batch 8, median",
    "  E2EL = its request latency.",
    "Metrics: *_ttft_ms = ttft, *_tpot_ms = tpot, *_e2el_ms = request_latency (its mean-field estimate serves for",
    "mean and median alike), request_throughput = seq/s, output_tokens_per_s = tokens/s (system), *_per_gpu = the",
    "system figure / (TP x PP), total tokens = tokens/s + seq/s x ISL. Note: aiconfigurator's tokens/s counts",
    "OSL-1 tokens a request (the first comes from the prefill), 0.1% or less at these lengths.",
    "Its own corrections stay in: e.g. its vLLM backend adds 0.8 ms a layer of prefill dispatch to TTFT and a",
    "queueing factor 1 + log2(b)/8; its agg model does not hold a mix step's context plus decode tokens to",
    "max_num_tokens (ctx_tokens is a context-only budget).",
    "Caveat for the comparison: tpp's step model times GEMMs and GQA attention from the same aiconfigurator",
    "kernel tables (hardware_profiles/operators, scripts/aic_convert.py), so the two are not independent there.",
]


def quiet():
    logging.disable(logging.WARNING)
    import warnings
    warnings.filterwarnings("ignore")


def parse_yaml_value(path, key):
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*" + re.escape(key) + r":\s*\{\s*value:\s*([0-9.eE+-]+)", line)
            if m:
                return float(m.group(1))
    raise ValueError(f"{key} not in {path}")


def version_tuple(v):
    nums = re.findall(r"\d+", v)
    t = [int(x) for x in nums[:3]] + [0] * (3 - len(nums[:3]))
    return tuple(t) + ((1,) if "rc" not in v else (0, int(nums[3]) if len(nums) > 3 else 0))


def closest_version(system, backend, case_version):
    """The queryable slot version (current / previous / next) closest to the case's version; the
    'current' slot when the case's is unknown or several are equally close."""
    from aiconfigurator.sdk.perf_database import get_latest_database_version, get_version_slots
    current = get_latest_database_version(system=system, backend=backend)
    slots = get_version_slots(system, backend) or {}
    cands = [v for v in (current, slots.get("previous"), slots.get("next")) if v]
    if not re.match(r"^\d+\.\d+", str(case_version)):
        return current
    want = version_tuple(case_version)

    def dist(v):
        a, b = version_tuple(v), want
        return tuple(abs(x - y) for x, y in zip(a[:3], b[:3]))
    best = min(cands, key=lambda v: (dist(v), v != current))
    return best


class Models:
    """Model paths as aiconfigurator takes them (an HF id it bundles, or a local directory)."""

    def __init__(self, tmp):
        import aiconfigurator_core
        self.bundled = os.path.join(os.path.dirname(aiconfigurator_core.__file__), "model_configs")
        self.tmp = tmp

    def local(self, name, config, quant=None):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f)
        if quant:
            with open(os.path.join(d, "hf_quant_config.json"), "w") as f:
                json.dump(quant, f)
        return d

    def bundled_config(self, hf_id):
        with open(os.path.join(self.bundled, hf_id.replace("/", "--") + "_config.json")) as f:
            return json.load(f)

    def path(self, case):
        """(model path, HF config dict, note)."""
        m = case["model"]
        fp8 = case.get("quantization") == "fp8"
        if m.endswith("llama-3.1-405b/config.json"):
            m = "llama-3.1-405b"
        if m in ("llama-3.1-8b", "llama-3.1-405b", "llama-3.1-70b"):
            size = m.split("-")[-1].upper()
            base = f"meta-llama/Meta-Llama-3.1-{size}"
            cfg = self.bundled_config(base)
            if not fp8:
                return base, cfg, base
            if size == "70B":
                hf = "nvidia/Llama-3.1-70B-Instruct-FP8"
                return hf, self.bundled_config(hf), hf + " (bundled ModelOpt FP8)"
            d = self.local(f"Llama-3.1-{size}-Instruct-FP8", cfg, MODELOPT_FP8)
            return d, cfg, f"{base} config.json + ModelOpt FP8 hf_quant_config.json"
        if m == "qwen2.5-72b":
            if fp8:
                raise ValueError("no fp8 Qwen2.5-72B setup")
            return self.local("Qwen2.5-72B-Instruct", QWEN25_72B), QWEN25_72B, \
                "local Qwen2.5-72B-Instruct config.json"
        if m == "qwen3-30b-a3b":
            hf = "Qwen/Qwen3-30B-A3B-FP8" if fp8 else "Qwen/Qwen3-30B-A3B"
            return hf, self.bundled_config(hf), hf
        if m == "r1":
            if not fp8:
                raise ValueError("R1 is published in fp8 only")
            hf = "deepseek-ai/DeepSeek-R1"
            return hf, self.bundled_config(hf), hf + " (its fp8 block-scaled checkpoint)"
        if m == "mixtral-8x7b":
            hf = "mistralai/Mixtral-8x7B-v0.1"
            cfg = self.bundled_config(hf)
            return self.local("Mixtral-8x7B-v0.1", cfg), cfg, hf + " config.json (bundled), as a local directory"
        raise ValueError(f"no aiconfigurator model for {m}")


def is_moe(cfg):
    return bool(cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts"))


def trtllm_facts(cfg, case):
    """The model and GPU facts scripts/validate.py trtllm_bench_limits reads, from a Llama-family
    HF config (params: embeddings, lm_head, attention, MLP, norms) and tpp's GPU profile."""
    h, L, V, I = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nh
    per_layer = h * nh * hd + 2 * h * nkv * hd + nh * hd * h + 3 * h * I + 2 * h
    params = V * h * (1 if cfg.get("tie_word_embeddings") else 2) + L * per_layer + h
    model = {"params_total": params, "num_layers": L,
             "attention": {"num_kv_heads": nkv, "head_dim": hd}}
    gpu = {"memory_driver_GiB": {"value": parse_yaml_value(
        os.path.join(ROOT, "hardware_profiles", "gpus", GPU_PROFILES[case["gpu"]]), "memory_driver_GiB")}}
    return model, gpu


class Estimator:
    def __init__(self, case, models):
        from aiconfigurator.cli.api import cli_estimate
        self.cli_estimate = cli_estimate
        self.case = case
        self.system = SYSTEMS[case["gpu"]]
        self.backend = BACKENDS[case["engine"]]
        self.version = closest_version(self.system, self.backend, case.get("version", "unknown"))
        self.model, self.cfg, self.model_note = models.path(case)
        self.moe = is_moe(self.cfg)
        kv = str(case.get("kv_cache_dtype", "auto"))
        self.kv = "fp8" if kv.startswith("fp8") else "bfloat16"
        self.ngpu = case["tp"] * case.get("pp", 1)

    def kwargs(self, **over):
        k = dict(backend_name=self.backend, backend_version=self.version, database_mode="SILICON",
                 tp_size=self.case["tp"], pp_size=self.case.get("pp", 1),
                 kvcache_quant_mode=self.kv)
        if self.moe:
            k.update(moe_tp_size=self.case["tp"], moe_ep_size=1)
        k.update(over)
        return k

    def engine_memory_fraction(self):
        """The case's gpu_memory_utilization (vLLM) / mem_fraction_static (SGLang): aiconfigurator's
        free_gpu_memory_fraction for those backends is that fraction of the whole device; None (its
        default) for TensorRT-LLM, whose fraction is of the memory left after the weights."""
        if self.backend == "trtllm":
            return None
        return self.case.get("gpu_memory_utilization")

    def run(self, **over):
        return self.cli_estimate(self.model, self.system, **self.kwargs(**over))

    def fits(self, isl, osl, b, frac, ctx=None):
        """Whether batch b fits, KV cache included (no OOM error, no KV-cache warning)."""
        try:
            r = self.run(mode="agg", isl=isl, osl=osl, batch_size=b, ctx_tokens=ctx or isl,
                         free_gpu_memory_fraction=frac)
        except RuntimeError as e:
            if "OOM" in str(e):
                return False
            raise
        return r.kv_cache_warning is None

    def kv_capacity(self, isl, osl, frac, hi):
        """The largest batch <= hi that fits (0 if none)."""
        if not self.fits(isl, osl, 1, frac):
            return 0
        lo = 1
        if self.fits(isl, osl, hi, frac):
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.fits(isl, osl, mid, frac):
                lo = mid
            else:
                hi = mid
        return lo

    def figures(self, r, isl):
        d = r.raw
        out_tps = d["tokens/s"]
        seqs = d["seq/s"]
        tot = out_tps + seqs * isl
        return {
            "output_tokens_per_s": out_tps, "output_tokens_per_s_per_gpu": out_tps / self.ngpu,
            "total_tokens_per_s": tot, "total_tokens_per_s_per_gpu": tot / self.ngpu,
            "request_throughput": seqs,
            "mean_ttft_ms": r.ttft, "median_ttft_ms": r.ttft,
            "mean_tpot_ms": r.tpot, "median_tpot_ms": r.tpot,
            "mean_e2el_ms": d["request_latency"], "median_e2el_ms": d["request_latency"],
        }

    def describe(self, r):
        d = r.raw
        return {"batch_size": int(d.get("bs", r.batch_size)), "ctx_tokens": r.ctx_tokens,
                "gemm": d.get("gemm"), "kvcache": d.get("kvcache"), "fmha": d.get("fmha"), "moe": d.get("moe"),
                "memory_GB": round(d.get("memory", 0.0), 2), "ttft_ms": round(r.ttft, 2),
                "tpot_ms": round(r.tpot, 3), "seq_per_s": round(d["seq/s"], 4),
                "output_tokens_per_s": round(d["tokens/s"], 1)}


def lengths(case):
    """Fixed ISL/OSL; uniform [int(L*r), L] given as its mean, rounded."""
    r = case.get("range_ratio")
    if r is None:
        return case["isl"], case["osl"]
    return tuple(int(round((int(L * r) + L) / 2)) for L in (case["isl"], case["osl"]))


def predict_trtllm_bench(est, case):
    isl, osl = lengths(case)
    model_facts, gpu_facts = trtllm_facts(est.cfg, case)
    bs_limit, tokens_limit = validate.trtllm_bench_limits(model_facts, gpu_facts, case)
    frac = 0.95
    cap = est.kv_capacity(isl, osl, frac, min(max(bs_limit, 1024), case["requests"]))
    if cap == 0:
        raise RuntimeError("aiconfigurator: the model and one request's KV cache do not fit")
    b = min(bs_limit, cap, case["requests"])
    ctx = max(isl, (tokens_limit // isl) * isl)
    if b > 1:
        ctx = min(ctx, (b - 1) * isl)
    else:
        ctx = isl
    r = est.run(mode="agg", isl=isl, osl=osl, batch_size=b, ctx_tokens=ctx, free_gpu_memory_fraction=frac)
    det = est.describe(r)
    det.update({"trtllm_bench_max_batch_size": bs_limit, "trtllm_bench_max_num_tokens": tokens_limit,
                "aic_kv_capacity_at_0.95": cap, "free_gpu_memory_fraction": frac})
    # aiconfigurator's own best point over its agg search grid (for reference).
    from aiconfigurator.sdk.sweep import _DEFAULT_AGG_BATCH_SCHEDULE, _agg_ctx_tokens_list
    best = None
    for bb in [x for x in _DEFAULT_AGG_BATCH_SCHEDULE if x <= min(cap, case["requests"])]:
        for c in _agg_ctx_tokens_list(isl, 512, False):
            if bb - math.ceil(c / isl) < 0 or (bb > 1 and bb - math.ceil(c / isl) < 1):
                break
            try:
                rr = est.run(mode="agg", isl=isl, osl=osl, batch_size=bb, ctx_tokens=c,
                             free_gpu_memory_fraction=frac)
            except RuntimeError:
                break
            if rr.kv_cache_warning is not None:
                break
            if best is None or rr.raw["tokens/s"] > best.raw["tokens/s"]:
                best = rr
    alt = None
    if best is not None:
        alt = est.describe(best)
        alt["figures"] = {m: est.figures(best, isl)[m] for m in validate.measured(case)}
    det["alt_best"] = alt
    return est.figures(r, isl), det, {}


def predict_concurrency(est, case):
    isl, osl = lengths(case)
    n = min(int(case["load"]["concurrency"]), case["requests"])
    frac = est.engine_memory_fraction()
    r = est.run(mode="agg", isl=isl, osl=osl, batch_size=n, ctx_tokens=isl, free_gpu_memory_fraction=frac)
    det = est.describe(r)
    det["lengths_used"] = [isl, osl]
    det["free_gpu_memory_fraction"] = frac
    if r.kv_cache_warning:
        det["kv_cache_warning"] = r.kv_cache_warning
    return est.figures(r, isl), det, {}


def predict_rate(est, case):
    isl, osl = lengths(case)
    rate = float(case["load"]["rate"])
    frac = case.get("gpu_memory_utilization", 0.9)
    cap = est.kv_capacity(isl, osl, frac, min(256, case["requests"]))
    if cap == 0:
        raise RuntimeError("aiconfigurator: the model and one request's KV cache do not fit")
    pts = []
    prev = None
    for b in range(1, cap + 1):
        r = est.run(mode="agg", isl=isl, osl=osl, batch_size=b, ctx_tokens=isl, free_gpu_memory_fraction=frac)
        f = est.figures(r, isl)
        pts.append((b, f, r))
        if f["request_throughput"] >= rate:
            break
    b, f, r = pts[-1]
    missing = {}
    det = {"max_batch_considered": cap, "free_gpu_memory_fraction": frac}
    if f["request_throughput"] >= rate and len(pts) > 1:
        b0, f0, _ = pts[-2]
        w = (rate - f0["request_throughput"]) / (f["request_throughput"] - f0["request_throughput"])
        f = {k: f0[k] + w * (f[k] - f0[k]) for k in f}
        det["little_law_concurrency"] = round(b0 + w, 3)
        det["saturated"] = False
    elif f["request_throughput"] >= rate:
        det["little_law_concurrency"] = 1
        det["saturated"] = False
    else:
        det["saturated"] = True
        det["saturated_seq_per_s"] = round(f["request_throughput"], 4)
        for m in ("median_ttft_ms", "mean_ttft_ms", "median_e2el_ms", "mean_e2el_ms"):
            missing[m] = ("aiconfigurator predicts the server saturated below the offered rate "
                          f"({f['request_throughput']:.2f} < {rate} req/s at batch {b}); it has no queue "
                          "model, and the queueing time that dominates this figure grows with the run")
    det.update(est.describe(r))
    return f, det, missing


def predict_static(est, case):
    isl, osl = lengths(case)
    n = case["requests"]
    frac = est.engine_memory_fraction()
    r = est.run(mode="static", isl=isl, osl=osl, batch_size=n, free_gpu_memory_fraction=frac)
    det = est.describe(r)
    det["free_gpu_memory_fraction"] = frac
    det["mode"] = "static"
    return est.figures(r, isl), det, {}


def predict(case, models):
    est = Estimator(case, models)
    load = case.get("load", {"rate": "inf"})
    if "concurrency" in load:
        kind, fn = "concurrency", predict_concurrency
    elif load.get("rate", "inf") != "inf":
        kind, fn = "poisson rate", predict_rate
    elif case.get("batch_limits") == "trtllm-bench":
        kind, fn = "trtllm-bench max throughput", predict_trtllm_bench
    else:
        kind, fn = "one static batch", predict_static
    figs, det, missing = fn(est, case)
    det = {"load_model": kind, "system": est.system, "backend": est.backend, "version": est.version,
           "model": est.model_note, **det}
    return figs, det, missing


def median_table(entries, key="predicted", label=""):
    by = {}
    for e in entries:
        if e.get("excluded") or e.get(key) is None:
            continue
        err = (e[key] - e["measured"]) / e["measured"]
        by.setdefault(e["engine"], []).append(err)
        by.setdefault((e["engine"], e["metric"]), []).append(err)
    lines = []
    for k in sorted(by, key=lambda k: (k if isinstance(k, str) else k[0], isinstance(k, tuple), str(k))):
        errs = by[k]
        name = k if isinstance(k, str) else f"  {k[0]} {k[1]}"
        lines.append(f"{label}{name:<48} n={len(errs):>3}  median {statistics.median(errs):+7.1%}  "
                     f"median |err| {statistics.median(abs(x) for x in errs):6.1%}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--print-only", action="store_true", help="print the medians, write nothing")
    args = ap.parse_args()
    quiet()
    import importlib.metadata
    aic_version = importlib.metadata.version("aiconfigurator")
    with open(CASES) as f:
        cases = json.load(f)["cases"]
    entries = []
    versions = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = Models(tmp)
        for i, case in enumerate(cases):
            meas = validate.measured(case)
            try:
                figs, det, missing = predict(case, models)
                versions[(det["system"], det["backend"])] = det["version"]
                why = None
            except Exception as e:  # a case aiconfigurator cannot model: say why, no number
                figs, det, missing = {}, None, {}
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:400]}"
            for metric, value in meas.items():
                e = {"index": i, "source": case["source"], "engine": case["engine"], "metric": metric,
                     "measured": value, "predicted": None, "why_missing": None}
                if case.get("excluded"):
                    e["excluded"] = case["excluded"]
                if why:
                    e["why_missing"] = why
                elif metric in missing:
                    e["why_missing"] = missing[metric]
                elif metric not in figs:
                    e["why_missing"] = f"aiconfigurator gives no figure for {metric}"
                else:
                    e["predicted"] = round(figs[metric], 4)
                    e["error"] = round((figs[metric] - value) / value, 4)
                if det is not None:
                    if det.get("alt_best") and metric in det["alt_best"].get("figures", {}):
                        alt = dict(det["alt_best"])
                        v = alt.pop("figures")[metric]
                        e["alt_best_predicted"] = round(v, 4)
                        e["alt_best_error"] = round((v - value) / value, 4)
                        e["details"] = {**{k: v for k, v in det.items() if k != "alt_best"}, "alt_best": alt}
                    else:
                        e["details"] = det
                entries.append(e)
            status = why or ", ".join(f"{m} {figs.get(m, float('nan')):.4g} (meas {v})" for m, v in meas.items())
            print(f"[{i:2d}] {case['engine']:<12} {case['model'][-20:]:<20} {case['gpu']} tp{case['tp']} "
                  f"{case['isl']}/{case['osl']}: {status}", file=sys.stderr)
    vers = "; ".join(f"{s} {b} {v}" for (s, b), v in sorted(versions.items()))
    about = [line.format(date=datetime.date.today().isoformat(), version=aic_version, versions=vers)
             for line in ABOUT]
    lines = median_table(entries) + [""] + median_table(entries, "alt_best_predicted", "alt_best ")
    print("Median error of aiconfigurator's predictions, (predicted - measured) / measured, excluded cases left out:")
    print("\n".join(lines))
    if not args.print_only:
        with open(args.out, "w") as f:
            json.dump({"about": about, "medians": lines, "cases": entries}, f, indent=1)
            f.write("\n")
        print(f"wrote {os.path.relpath(args.out, ROOT)} ({len(entries)} entries)")


if __name__ == "__main__":
    main()
