// Measured operator tables: kernel latencies of one GPU kind under one engine's kernels, by
// shape (GEMMs by m x n x k and dtype; paged decode attention by batch x context; prefill
// attention by batch x prompt length, each per heads / kv heads / head size and KV dtype; one
// fused MoE layer by tokens, per model shape, sharding and routing skew; the engine's TP
// all-reduce by bytes, per GPU count).
//
// The shipped tables (hardware_profiles/operators/<GPU>/<engine>.json) are converted by
// scripts/aic_convert.py from NVIDIA aiconfigurator's measured tables (Apache-2.0); each file
// names its source, engine version and licence. The step model interpolates in them
// (simulator/step_cost.cc); where a shape is off the grid it interpolates the measured time
// relative to the shape's own roofline time, so that a shape between grid points keeps its own
// FLOPs and bytes, and beyond the grid's ends that ratio is held.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace tpp::hw {

struct OperatorTables {
  // One GEMM dtype: latency_us[n][k][m] over the sorted axes.
  struct GemmGrid {
    std::vector<double> m, n, k;
    std::vector<double> us;  // n-major, then k, then m
    double at(std::size_t in, std::size_t ik, std::size_t im) const {
      return us[(in * k.size() + ik) * m.size() + im];
    }
  };
  // One attention configuration: latency_us[batch][length].
  struct AttentionSeries {
    std::int64_t head_dim = 0, heads = 0, kv_heads = 0;
    std::vector<double> batch, length;
    std::vector<double> us;  // batch-major
    double at(std::size_t ib, std::size_t il) const { return us[ib * length.size() + il]; }
    // The logarithms of the axes and times, taken once at load: the interpolation is linear in
    // them, and a simulation interpolates at every step.
    std::vector<double> log_batch, log_length, log_us;
  };

  // One fused MoE layer (routing, both grouped GEMMs, activation and the weighted sum) of a
  // model shape, sharded `tp` ways (the expert intermediate size) and `ep` ways (the experts),
  // with tokens routed by `distribution` ("power_law_1.01": alpha 1.01, ...): latency by the
  // tokens one rank's layer receives.
  struct MoeSeries {
    std::int64_t hidden = 0, inter = 0, topk = 0, experts = 0, tp = 1, ep = 1;
    std::string distribution;
    std::vector<double> tokens, us;
  };
  // The engine's TP all-reduce over `ranks` GPUs of one node, bf16 messages: latency by bytes.
  // mode: "graph" (captured in a CUDA graph), "eager", or "kernel" (one mode measured).
  struct AllReduceSeries {
    std::int64_t ranks = 0;
    std::string mode;
    // The largest message the engine reduces with its own kernels (negative: every size
    // measured; 0: none, NCCL at every size); above it the engine hands over to NCCL, which the
    // series then measured on the collection machine.
    double own_max_bytes = -1;
    std::vector<double> bytes, us;
  };

  std::string file;    // where it was read from
  std::string gpu, engine, engine_version;
  std::string device;  // as the measuring run's driver named it ("NVIDIA H100 80GB HBM3")
  std::string source;  // one line: what was measured, from where, under which licence
  std::string from;    // the short form: the package it was converted from
  std::map<std::string, GemmGrid> gemm;  // "bfloat16", "fp8", "fp8_block", ...
  // By KV-cache dtype ("bfloat16", "fp8").
  std::map<std::string, std::vector<AttentionSeries>> attention_decode, attention_prefill;
  std::map<std::string, std::vector<MoeSeries>> moe;  // by expert weight dtype
  std::vector<AllReduceSeries> all_reduce;
  // DeepSeek-V3's whole MLA attention module (q_a/kv_a, q_b, the absorbed attention or kv_b in
  // prefill, o_proj), one GPU's heads: series by "KV dtype/GEMM dtype" ("fp8/fp8_block"), each
  // with heads = query heads on the GPU, kv_heads = 1, head_dim = nope + rope. A model uses it
  // only where its shape is this one.
  struct MlaModule {
    std::int64_t hidden = 0, q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0,
                 qk_rope_head_dim = 0, v_head_dim = 0;
    std::map<std::string, std::vector<AttentionSeries>> decode, prefill;
  };
  std::optional<MlaModule> mla_module;
  // The bare MLA attention kernel over the latent cache, by KV dtype: heads = query heads on one
  // GPU, kv_heads = 1, head_dim = kv_lora_rank + rope (SGLang's and TensorRT-LLM's tables).
  std::map<std::string, std::vector<AttentionSeries>> mla_decode, mla_prefill;

  // Seconds for x[m,k] . W[k,n] in `dtype`; a negative value where the table has no such dtype.
  // `roofline(m, n, k)` is the shape's ideal time (any unit): the measured time is interpolated
  // as a multiple of it, trilinearly in log m, log n, log k.
  double gemm_s(const std::string& dtype, double m, double n, double k,
                const std::function<double(double, double, double)>& roofline) const;
  // The series for an attention kind (decode or prefill), KV dtype, head size, and the query and
  // KV heads on one GPU: the nearest kv_heads, then the nearest query heads a KV head (log
  // distance); nullptr where no series has this head size and KV dtype.
  const AttentionSeries* attention_series(bool decode, const std::string& kv_dtype,
                                          double head_dim, double heads, double kv_heads) const;
  // Seconds for one attention call of `batch` sequences at `length` (decode: the context each
  // sequence reads; prefill: the prompt length each attends over) in series `s`, bilinearly in
  // log batch and log length (log time); beyond the grid's largest batch or length the time
  // grows in proportion, below its smallest it stays (the kernel's latency); another head count
  // than the series' scales the time by the ratio (decode: KV heads, the bytes; prefill: query
  // heads, the FLOPs).
  static double attention_s(const AttentionSeries& s, bool decode, double heads, double kv_heads,
                            double batch, double length);
  // The MoE series of exactly this model shape, sharding and expert dtype, with distribution
  // `distribution` where there is one, else any; nullptr where the table has none.
  const MoeSeries* moe_series(const std::string& dtype, std::int64_t hidden, std::int64_t inter,
                              std::int64_t topk, std::int64_t experts, std::int64_t tp,
                              std::int64_t ep, const std::string& distribution) const;
  // The all-reduce series over `ranks` GPUs in `mode`, else the one mode measured ("kernel");
  // nullptr where there is none.
  const AllReduceSeries* all_reduce_series(std::int64_t ranks, const std::string& mode) const;
  // Seconds at x (tokens, bytes) on a series' axis: linear in log x and log time between points,
  // the first point's below them (the kernel's latency), in proportion to x beyond the last.
  static double series_s(const std::vector<double>& xs, const std::vector<double>& us, double x);
};

// The table for `gpu` (a GPU catalog name) under `engine` ("vllm", "trtllm"), looked up in the
// operators catalog (common/data_path.h: $TPP_DATA_DIR/operators/<gpu>/<engine>.json, the
// installed share/tpp/operators, the source tree). nullptr when there is none; an Error naming
// the file and the field when the file is there but malformed. Loaded once a process.
Expected<std::shared_ptr<const OperatorTables>> find_operator_tables(const std::string& gpu,
                                                                     const std::string& engine);
// Reads one file (tests, and find_operator_tables).
Expected<std::shared_ptr<const OperatorTables>> load_operator_tables(const std::string& path);

}  // namespace tpp::hw
