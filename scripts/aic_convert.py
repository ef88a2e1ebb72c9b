#!/usr/bin/env python3
"""Convert NVIDIA aiconfigurator's measured operator tables into tpp's own operator tables.

Development-time only (needs pyarrow). aiconfigurator-core ships, per GPU kind and engine
version, parquet tables of measured kernel latencies (Apache-2.0). This script reads them
straight out of the wheel (or an unpacked copy of its systems/data folder) and writes one JSON
file per GPU and engine under hardware_profiles/operators/<tpp GPU name>/<engine>.json, in the
shape the step model interpolates in (simulator/operator_tables.h):

  gemm[dtype]              dense GEMM x[m,k] . W[k,n]: a full m x n x k grid of microseconds
  attention_decode[kv]     paged decode attention per (heads, kv_heads, head_dim): batch x context
  attention_prefill[kv]    prefill attention (no cached prefix), per (heads, kv_heads, head_dim):
                           batch x prompt length
  moe[dtype]               one fused MoE layer (routing, both grouped GEMMs, activation, sum) per
                           (hidden, inter, topk, experts, moe TP, moe EP, token distribution):
                           microseconds by tokens
  mla_decode[kv]           the bare MLA attention kernel (latent cache), per query heads on one GPU:
  mla_prefill[kv]          batch x context / prompt length
  mla_module               DeepSeek-V3's whole MLA attention module (its projections, the attention and
                           o_proj), decode by batch x context and prefill by batch x prompt
                           length, per heads on one GPU, KV dtype and GEMM dtype
  all_reduce               the engine's own TP all-reduce (vLLM's custom all-reduce under a CUDA
                           graph and eagerly; TensorRT-LLM's) per GPU count: microseconds by bytes

Usage (the wheel is on PyPI; `pip download aiconfigurator-core==0.12.0 --no-deps`):
  python3 scripts/aic_convert.py --source aiconfigurator_core-0.12.0-....whl
  python3 scripts/aic_convert.py --source path/to/aiconfigurator_core/systems/data --check

--check converts into memory and compares with the files in the tree (exit 1 on a difference).
"""
import argparse
import hashlib
import io
import json
import math
import os
import re
import sys
import zipfile

try:
    import pyarrow.parquet as pq
except ImportError:
    sys.exit("aic_convert.py: needs pyarrow (pip install pyarrow); it runs at development time only")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "hardware_profiles", "operators")

# aiconfigurator's system names -> tpp's GPU catalog names (hardware_profiles/gpus/*.yaml), with
# the device string its tables must carry (a check that the table is the GPU we think it is).
SYSTEMS = {
    "a100_sxm": ("A100-SXM4-80GB", "A100-SXM4-80GB"),
    "h100_sxm": ("H100-SXM5-80GB", "H100 80GB HBM3"),
    "h200_sxm": ("H200-SXM-141GB", "H200"),
    # PCIe, no NVLink, 350 W: its measured GEMMs run at the clocks it sustains, not its boost.
    # (a100_pcie, h100_pcie and l4 are estimate-only in 0.12.0: no measured data.)
    "l40s": ("L40S", "L40S"),
}
PCIE = ("l40s",)  # systems without NVLink
ENGINES = ("vllm", "trtllm", "sglang")
GEMM_DTYPES = ("bfloat16", "float16", "fp8", "fp8_block")


def version_key(v):
    parts = re.findall(r"\d+|[a-z]+", v)
    return [(0, int(p)) if p.isdigit() else (-1, p) for p in parts]


class Source:
    """The systems/data tree of aiconfigurator-core: a wheel (zip) or a folder."""

    def __init__(self, path):
        self.path = path
        if zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
            prefix = next(n for n in names if "/systems/data/" in n)
            self.prefix = prefix[: prefix.index("/systems/data/") + len("/systems/data/")]
            self.names = [n[len(self.prefix):] for n in names if n.startswith(self.prefix)]
            with open(path, "rb") as f:
                self.sha256 = hashlib.sha256(f.read()).hexdigest()
            m = re.match(r"aiconfigurator_core-([^-]+)-", os.path.basename(path))
            self.label = "aiconfigurator-core " + (m.group(1) if m else "?") + " wheel"
        else:
            self.zip = None
            self.prefix = path.rstrip("/") + "/"
            self.names = []
            for d, _, files in os.walk(path):
                for f in files:
                    self.names.append(os.path.relpath(os.path.join(d, f), path))
            self.sha256 = None
            self.label = "aiconfigurator systems/data folder " + os.path.basename(path.rstrip("/"))

    def read(self, name):
        if self.zip:
            return self.zip.read(self.prefix + name)
        with open(self.prefix + name, "rb") as f:
            return f.read()

    def newest(self, system, kind, engine, table, prefer=None):
        """The engine version `prefer` where it carries `table` itself, else the newest that does
        (reuse.yaml only points back)."""
        pat = re.compile(rf"^{system}/{kind}/{engine}/([^/]+)/{table}\.parquet$")
        versions = [m.group(1) for n in self.names if (m := pat.match(n))]
        if not versions:
            return None
        v = prefer if prefer in versions else max(versions, key=version_key)
        return v, f"{system}/{kind}/{engine}/{v}/{table}.parquet"

    def rows(self, name):
        return pq.read_table(io.BytesIO(self.read(name))).to_pylist()


def fill_line(xs, ys, power):
    """Holes in a measured line: between measured points linear in log x; below the first,
    the first (a kernel's latency floor); beyond the last, the last scaled by (x / x_last)^power,
    the work's growth there (GEMM rows and decode context: 1; prefill length: 2). The collectors
    leave the largest shapes out where they would not fit in memory. None if the line is empty."""
    known = [(math.log(x), x, y) for x, y in zip(xs, ys) if y is not None]
    if not known:
        return None
    out = []
    for x, y in zip(xs, ys):
        if y is not None:
            out.append(y)
            continue
        lx = math.log(x)
        lo = [p for p in known if p[0] <= lx]
        hi = [p for p in known if p[0] >= lx]
        if lo and hi:
            a, b = lo[-1], hi[0]
            out.append(a[2] + (lx - a[0]) / (b[0] - a[0]) * (b[2] - a[2]) if b[0] != a[0] else a[2])
        elif lo:
            out.append(lo[-1][2] * (x / lo[-1][1]) ** power)
        else:
            out.append(hi[0][2])
    return out


def us(ms):
    """Milliseconds to microseconds at 4 significant digits (the collectors' run-to-run noise
    is larger than that)."""
    return float(f"{ms * 1000.0:.4g}")


def keep_min(pts, key, latency):
    """Where two kernels were timed for one point (vLLM dispatches fp8 block-scaled GEMMs to
    DeepGEMM, CUTLASS or FlashInfer by shape), the faster: the one the dispatcher is tuned to pick."""
    if key not in pts or latency < pts[key]:
        pts[key] = latency


def convert_gemm(rows):
    out, holes = {}, 0
    for dtype in GEMM_DTYPES:
        pts = {}
        for r in rows:
            if r["gemm_dtype"] == dtype:
                keep_min(pts, (r["m"], r["n"], r["k"]), r["latency"])
        if not pts:
            continue
        ms = sorted({p[0] for p in pts})
        ns = sorted({p[1] for p in pts})
        ks = sorted({p[2] for p in pts})
        # The collectors skip the largest n x k products (memory): drop the largest n or k value
        # while any (n, k) line is empty, so that the grid stays whole.
        def empty(n, k):
            return all((m, n, k) not in pts for m in ms)
        while any(empty(n, k) for n in ns for k in ks):
            drop_n = sum(empty(ns[-1], k) for k in ks) >= sum(empty(n, ks[-1]) for n in ns)
            (ns if drop_n else ks).pop()
        grid = []
        for n in ns:
            plane = []
            for k in ks:
                line = [pts.get((m, n, k)) for m in ms]
                holes += sum(v is None for v in line)
                line = fill_line(ms, line, 1)
                if line is None:
                    raise SystemExit(f"gemm {dtype}: no point at n={n} k={k}")
                plane.append([us(v) for v in line])
            grid.append(plane)
        out[dtype] = {"m": ms, "n": ns, "k": ks, "us": grid}
    return out, holes


def host_bound(gemm):
    """Quantised GEMM dtypes whose one-row times are not kernel times: an fp8 GEMM reads half a
    bf16 one's bytes, so at one row (pure weight reads) it cannot take much longer than the bf16
    GEMM of the same shape. vLLM's fp8_block table takes 28-60 us for every small shape (4-6x
    bf16's), the floor of eager dispatch and activation quantisation on the host, which CUDA
    graphs remove in serving. Such a dtype is dropped (the step model's own curve applies):
    {dtype: median ratio}."""
    bf = gemm.get("bfloat16")
    out = {}
    if not bf:
        return out
    for dtype, g in gemm.items():
        if dtype == "bfloat16" or g["m"][0] != 1 or bf["m"][0] != 1:
            continue
        ratios = sorted(g["us"][g["n"].index(n)][g["k"].index(k)][0] /
                        bf["us"][bf["n"].index(n)][bf["k"].index(k)][0]
                        for n in g["n"] if n in bf["n"] for k in g["k"] if k in bf["k"])
        median = ratios[len(ratios) // 2]
        if median > 2.5:
            out[dtype] = round(median, 2)
    return out


def grids(series, decode):
    """{(key, head_dim, heads, kv_heads): {(batch, length): latency}} -> {key: [series]}, each a
    whole batch x length grid of microseconds (holes filled by fill_line: in proportion to the
    context beyond the last point in decode, with its square in prefill); a series with a
    batch line that has no point at all, or fewer than 2 batches or lengths, is left out."""
    out, holes = {}, 0
    for (key, hd, h, kvh), pts in sorted(series.items()):
        bs = sorted({p[0] for p in pts})
        ls = sorted({p[1] for p in pts})
        grid = []
        for b in bs:
            line = [pts.get((b, l)) for l in ls]
            holes += sum(v is None for v in line)
            line = fill_line(ls, line, 1 if decode else 2)
            if line is None:
                break
            grid.append([us(v) for v in line])
        if len(grid) != len(bs) or len(bs) < 2 or len(ls) < 2:
            continue
        out.setdefault(key, []).append({"head_dim": hd, "heads": h, "kv_heads": kvh, "batch": bs,
                                        "length": ls, "us": grid})
    return out, holes


def convert_attention(rows, decode):
    """Series per (kv dtype, head_dim, heads, kv_heads): a batch x length grid of microseconds."""
    series = {}
    for r in rows:
        if r.get("window_size", 0) != 0 or r.get("beam_width", 1) != 1:
            continue
        length = r["isl"] + r["step"] if decode else r["isl"]
        key = (r["kv_cache_dtype"], r["head_dim"], r["num_heads"], r["num_key_value_heads"])
        keep_min(series.setdefault(key, {}), (r["batch_size"], length), r["latency"])
    return grids(series, decode)


# The fused-MoE kernels tpp's step model stands for: gated (SwiGLU) experts. TensorRT-LLM's
# non-gated flow (Nemotron-H's squared-ReLU experts) is another layer and is left out.
MOE_SKIP_KERNELS = ("nongated",)
# The token distributions kept: the two power laws aiconfigurator's own models pick (alpha 1.01
# for the DeepSeek family, sdk/models/deepseek.py; 1.2 for other MoE models, sdk/models/moe.py).
# "balanced" (every expert the same load) is the ideal no router reaches.
MOE_DISTRIBUTIONS = ("power_law_1.01", "power_law_1.2")


def convert_moe(rows):
    """Series per (dtype, hidden, inter, topk, experts, moe_tp, moe_ep, distribution): tokens ->
    microseconds. `inter` is the model's whole expert intermediate size; moe_tp shards it, moe_ep
    the experts. Where two kernels were timed for a point, the faster (keep_min)."""
    series, holes = {}, 0
    for r in rows:
        if (any(k in r["kernel_source"] for k in MOE_SKIP_KERNELS)
                or r["distribution"] not in MOE_DISTRIBUTIONS or r["moe_dtype"] not in GEMM_DTYPES):
            continue
        key = (r["moe_dtype"], r["hidden_size"], r["inter_size"], r["topk"], r["num_experts"],
               r["moe_tp_size"], r["moe_ep_size"], r["distribution"])
        keep_min(series.setdefault(key, {}), r["num_tokens"], r["latency"])
    out = {}
    for (dt, h, i, k, e, tp, ep, dist), pts in sorted(series.items()):
        ts = sorted(pts)
        if len(ts) < 2:
            continue
        out.setdefault(dt, []).append({"hidden": h, "inter": i, "topk": k, "experts": e, "tp": tp,
                                       "ep": ep, "distribution": dist, "tokens": ts,
                                       "us": [us(pts[t]) for t in ts]})
    return out, holes


def moe_host_bound(moe):
    """As host_bound for GEMMs: a quantised MoE dtype whose one-token times are over 2.5x the
    bf16 layer's of the same shape (median over shapes) times host dispatch, not kernels
    (vLLM 0.24's per-tensor fp8 FlashInfer-CUTLASS MoE on Hopper: 114 us at one token where
    bf16 takes 41 us and block-scaled fp8 35 us). {dtype: median ratio}."""
    def first(s):
        return s["us"][0] if s["tokens"][0] == 1 else None
    bf = {tuple(s[f] for f in ("hidden", "inter", "topk", "experts", "tp", "ep", "distribution")):
          first(s) for s in moe.get("bfloat16", [])}
    out = {}
    for dt, ss in moe.items():
        if dt == "bfloat16":
            continue
        ratios = sorted(first(s) / b for s in ss
                        if first(s) and (b := bf.get(tuple(s[f] for f in (
                            "hidden", "inter", "topk", "experts", "tp", "ep", "distribution")))))
        if ratios and ratios[len(ratios) // 2] > 2.5:
            out[dt] = round(ratios[len(ratios) // 2], 2)
    return out


# The largest message each engine all-reduces with its own kernels; larger ones go to NCCL
# (or, in newer vLLM on Hopper, torch symmetric memory), whose speed is the cluster's, not the
# engine's: the step model times them with the cluster's NCCL figures.
# - vLLM: CustomAllreduce(max_size=8192 * 1024), should_custom_ar: inp_size < max_size
#   (vllm/distributed/device_communicators/custom_all_reduce.py).
# - TensorRT-LLM: getMaxRequiredWorkspaceSize: 16 * 1000 * 1000 bytes at 2 GPUs, 8 * 1000 * 1000
#   beyond; SelectImplementation picks NCCL above it (cpp/tensorrt_llm/common/customAllReduceUtils.h).
# - SGLang: its copy of vLLM's CustomAllreduce (max_size=8192 * 1024) also caps at TensorRT-LLM's
#   workspace (should_custom_ar: inp_size < max_size and < 16e6 at 2 GPUs, 8e6 beyond;
#   python/sglang/srt/distributed/device_communicators/custom_all_reduce.py).
# On PCIe-only GPUs (no NVLink) vLLM and SGLang disable their custom all-reduce beyond 2 GPUs
# ("not supported on more than two PCIe-only GPUs"): every size is NCCL's (own_max_bytes 0).
def engine_max_bytes(engine, ranks):
    if engine == "vllm":
        return 8192 * 1024
    if engine == "trtllm":
        return 16 * 1000 * 1000 if ranks <= 2 else 8 * 1000 * 1000
    if engine == "sglang":
        return min(8192 * 1024, 16 * 1000 * 1000 if ranks <= 2 else 8 * 1000 * 1000)
    return None


def convert_all_reduce(rows, engine, pcie):
    """Series per GPU count and mode: bytes -> microseconds (bf16 messages). vLLM's collector
    times its custom all-reduce inside a CUDA graph ("graph") and eagerly ("eager");
    TensorRT-LLM's one mode ("kernel"). `own_max_bytes`: engine_max_bytes. The collectors'
    `message_size` is an element count, not bytes (collector/network/collect_all_reduce.py
    builds a [size / 4096, 4096] tensor; aiconfigurator's query multiplies tokens by hidden,
    operators/communication.rs): bf16 elements are 2 bytes each."""
    series = {}
    for r in rows:
        if r["allreduce_dtype"] != "bfloat16":
            continue
        b = r.get("backend") or r.get("implementation") or ""
        mode = "graph" if b.endswith("graph") else "eager" if b.endswith("eager") else "kernel"
        keep_min(series.setdefault((r["num_gpus"], mode), {}), 2 * r["message_size"], r["latency"])
    out = []
    for (n, mode), pts in sorted(series.items()):
        if len(pts) < 2:
            continue
        s = {"ranks": n, "mode": mode}
        if (top := engine_max_bytes(engine, n)) is not None:
            s["own_max_bytes"] = 0 if pcie and n > 2 and engine in ("vllm", "sglang") else top
        out.append(dict(s, bytes=sorted(pts), us=[us(pts[b]) for b in sorted(pts)]))
    return out, 0


# The model aiconfigurator's MLA module collectors build (collector/vllm/collect_mla_module.py,
# collector/trtllm/collect_mla_module.py: one DeepseekV2MLAAttention from DeepSeek-V3's
# config.json, heads reduced to the per-GPU count): its shape, which a model must match.
MLA_MODEL = {"model": "deepseek-ai/DeepSeek-V3", "hidden": 7168, "q_lora_rank": 1536,
             "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
             "v_head_dim": 128}


def convert_mla_module(rows, decode):
    """Series per "KV dtype/GEMM dtype" and heads on one GPU: a batch x length grid of
    microseconds (decode: the context each sequence reads, isl + step; prefill: the prompt).
    head_dim: the query/key head size (nope + rope)."""
    series = {}
    for r in rows:
        if (r["model"] != MLA_MODEL["model"] or r["mla_dtype"] != "bfloat16" or r["tp_size"] != 1
                or (decode and r["isl"] != 1) or (not decode and r["step"] != 0)):
            continue
        length = r["isl"] + r["step"] if decode else r["isl"]
        key = (r["kv_cache_dtype"] + "/" + r["gemm_type"],
               MLA_MODEL["qk_nope_head_dim"] + MLA_MODEL["qk_rope_head_dim"], r["num_heads"], 1)
        keep_min(series.setdefault(key, {}), (r["batch_size"], length), r["latency"])
    return grids(series, decode)


def convert_mla_kernel(rows, decode):
    """The bare MLA attention kernel (SGLang's and TensorRT-LLM's collectors), series per KV
    dtype and query heads on one GPU (`num_heads`; tp_size only names how the collector got
    there): batch x length. head_dim: the latent cache's width (kv_lora_rank + rope)."""
    series = {}
    for r in rows:
        if r["mla_dtype"] != "bfloat16" or (decode and r["isl"] != 1) or (not decode and r["step"] != 0):
            continue
        length = r["isl"] + r["step"] if decode else r["isl"]
        key = (r["kv_cache_dtype"], MLA_MODEL["kv_lora_rank"] + MLA_MODEL["qk_rope_head_dim"],
               r["num_heads"], 1)
        keep_min(series.setdefault(key, {}), (r["batch_size"], length), r["latency"])
    return grids(series, decode)


def convert(src, system, engine):
    gpu, device_hint = SYSTEMS[system]
    doc = {"gpu": gpu, "engine": engine, "engine_version": "", "device": ""}
    tables = {}
    versions = {}
    devices = set()
    dropped = {}
    holes = {}
    prefer = None  # the GEMM table's engine version: every other table of it where there is one
    for kind, table, name in (("gemm", "gemm_perf", "gemm"),
                              ("attention", "generation_attention_perf", "attention_decode"),
                              ("attention", "context_attention_perf", "attention_prefill"),
                              ("moe", "moe_perf", "moe"),
                              ("mla", "generation_mla_perf", "mla_decode"),
                              ("mla", "context_mla_perf", "mla_prefill"),
                              ("mla", "mla_generation_module_perf", "mla_module_decode"),
                              ("mla", "mla_context_module_perf", "mla_module_prefill"),
                              ("comm", "custom_allreduce_perf", "all_reduce")):
        found = src.newest(system, kind, engine, table, prefer)
        if not found:
            continue
        version, path = found
        prefer = prefer or version
        rows = src.rows(path)
        devices |= {r["device"] for r in rows}
        if name == "gemm":
            tables[name], holes[name] = convert_gemm(rows)
            for dtype, r in host_bound(tables[name]).items():
                del tables[name][dtype]
                dropped[dtype] = f"one-row time {r}x the bf16 GEMM's (median over shapes)"
        elif name == "moe":
            tables[name], holes[name] = convert_moe(rows)
            for dtype, r in moe_host_bound(tables[name]).items():
                del tables[name][dtype]
                dropped["moe " + dtype] = f"one-token time {r}x the bf16 MoE layer's (median over shapes)"
        elif name in ("mla_decode", "mla_prefill"):
            tables[name], holes[name] = convert_mla_kernel(rows, name == "mla_decode")
        elif name.startswith("mla_module"):
            tables[name], holes[name] = convert_mla_module(rows, name == "mla_module_decode")
        elif name == "all_reduce":
            tables[name], holes[name] = convert_all_reduce(rows, engine, system in PCIE)
        else:
            tables[name], holes[name] = convert_attention(rows, name == "attention_decode")
        versions[name] = {"engine_version": version, "file": "systems/data/" + path,
                          "kernel": sorted({r["kernel_source"] for r in rows})}
    if not tables:
        return None
    for d in devices:
        if device_hint not in d:
            raise SystemExit(f"{system}: table device '{d}' is not {gpu}")
    first = next(iter(versions.values()))
    doc["engine_version"] = first["engine_version"]
    doc["device"] = ", ".join(sorted(devices))
    doc["source"] = {
        "what": "kernel latencies measured by NVIDIA aiconfigurator's collectors on "
                + ", ".join(sorted(devices)) + " (microseconds, CUDA events, one kernel call)",
        "from": src.label + (f" (sha256 {src.sha256})" if src.sha256 else ""),
        "project": "https://github.com/ai-dynamo/aiconfigurator",
        "licence": "Apache-2.0; Copyright (c) NVIDIA CORPORATION & AFFILIATES",
        "converted_by": "scripts/aic_convert.py",
        "tables": versions,
        "holes_filled": {k: v for k, v in holes.items() if v},
        "dropped_host_bound": dropped,
    }
    if "mla_module_decode" in tables or "mla_module_prefill" in tables:
        doc["mla_module"] = dict(MLA_MODEL, decode=tables.pop("mla_module_decode", {}),
                                 prefill=tables.pop("mla_module_prefill", {}))
    doc.update(tables)
    return doc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True, help="aiconfigurator_core wheel or systems/data folder")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="aiconfigurator system names")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--check", action="store_true", help="compare with the files in the tree")
    a = ap.parse_args()
    src = Source(a.source)
    bad = 0
    for system in a.systems.split(","):
        for engine in a.engines.split(","):
            doc = convert(src, system, engine)
            if doc is None:
                continue
            path = os.path.join(OUT, doc["gpu"], engine + ".json")
            text = json.dumps(doc, separators=(",", ":")) + "\n"
            if a.check:
                same = os.path.exists(path) and open(path).read() == text
                print(("same " if same else "DIFFERS ") + os.path.relpath(path, ROOT))
                bad += not same
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            print(f"{os.path.relpath(path, ROOT)}: {len(text) / 1024:.0f} KiB, "
                  + ", ".join(f"{k} {v['engine_version']}" for k, v in doc["source"]["tables"].items()))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
