// The time of one forward step of a batch on one PP stage, per rank: GEMMs with their sharded
// shapes (roofline: max of FLOPs over achievable FLOP/s and bytes over achievable bandwidth),
// attention (prefill FLOPs, decode KV bytes), element-wise kernels, kernel launches, TP
// all-reduces, the PP send to the next stage, and the EP all-to-all. Every constant names its
// source in step_cost.cc; docs/performance-model.md lists them.
#pragma once

#include <cstdint>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "simulator/collective.h"
#include "simulator/memory.h"
#include "simulator/parallel.h"

namespace tpp::sim {

// What a batch's cost depends on, accumulated one sequence at a time.
struct BatchShape {
  std::int64_t tokens = 0;          // new tokens: prefill chunks and decodes
  std::int64_t seqs = 0;            // sequences (rows of logits on the last stage)
  std::int64_t prefill_tokens = 0;
  std::int64_t prefill_seqs = 0;    // sequences with a prefill chunk
  std::int64_t decode_tokens = 0;
  double prefill_pairs = 0;         // causal query-key pairs of the prefill chunks
  double prefill_context = 0;       // cached tokens the prefill chunks attend to
  double decode_context = 0;        // tokens the decodes read from the KV cache (incl. their own)

  // The same sums as a model's windowed layers see them (sliding window or chunked local
  // attention, model::LayerAttention): keys within the window, or within the query's chunk.
  // Set window (and chunked) before the first add(); 0: no windowed sums.
  std::int64_t window = 0;
  bool chunked = false;
  double windowed_prefill_pairs = 0, windowed_prefill_context = 0, windowed_decode_context = 0;

  // A sequence with `context` tokens already cached computes `new_tokens` more.
  void add(std::int64_t new_tokens, std::int64_t context);
  // This batch as a windowed layer attends: the windowed sums in place of the full ones.
  BatchShape windowed() const;
  bool operator==(const BatchShape&) const = default;
};

// Seconds on one rank of one stage.
struct StepCost {
  double gemm = 0, attention = 0, elementwise = 0, launch = 0;  // compute, by kind
                                                                // (elementwise: the sampler's too)
  double tp_comm = 0;   // all-reduces (and the logits gather) inside the TP group
  double ep_comm = 0;   // expert-parallel all-to-all
  double pp_comm = 0;   // hidden states and residual to the next stage
  double compute() const { return gemm + attention + elementwise + launch; }
  double total() const { return compute() + tp_comm + ep_comm + pp_comm; }
};

// Achievable fractions of the datasheet peaks (documented defaults; a measured table may
// replace them later).
struct Efficiency {
  double compute = 0.80;  // dense GEMM: measured 798 of 989 TFLOP/s (H100, 8192^3 bf16) and
                          // MAMF 80.3% (H100) / 86.9% (A100), stas00/ml-engineering; a GPU
                          // file's bf16_mamf_tflops replaces it with that GPU's own share
  double memory = 0.90;   // HBM: a device-to-device copy moved 3.0 of 3.35 TB/s on an H100
  double link = 0.80;     // NCCL bus bandwidth as a fraction of the link's (assumption)
  // HBM bandwidth a GEMM achieves while it is bound by reading its weights (decode): cuBLAS bf16
  // [M x 8192] x [8192 x 8192] for M = 1..256 read a median 2.33 of 3.35 TB/s on an H100 SXM
  // (bench/gpu_probe.cu, driver 580.159, 2026-11-28, 3 runs x 7 sizes); a copy gets 0.89.
  // Other GPUs use the H100 figure until a cluster file's efficiency block gives their own.
  double gemm_memory = 0.70;
};

class StepCostModel {
 public:
  StepCostModel(const model::Model& loaded, const hw::Cluster& cluster, const ParallelConfig& p,
                const ResolvedOptions& o, Efficiency e = {});

  std::size_t num_stages() const { return stages_.size(); }
  StepCost cost(std::size_t stage, const BatchShape& b) const;
  // The first stage with the same layers, ends and sends as `stage`: its cost is the same for
  // any batch (a deep pipeline has a few kinds of stage, so a step need time only those).
  std::size_t stage_kind(std::size_t stage) const { return kind_of_[stage]; }

  // The engine's host (CPU) time for a step of `b` (ResolvedOptions::host_overhead), whether it
  // overlaps the GPU's step (async scheduling, TensorRT-LLM's overlap scheduler: the first stage
  // is busy for the longer of the two) or precedes it (vLLM V1 without async scheduling: the GPU
  // waits for it), and the gap between GPU steps that remains when it overlaps.
  double host_s(const BatchShape& b) const;
  bool host_overlapped() const {
    return o_.host_overhead == HostOverhead::kVllm || o_.host_overhead == HostOverhead::kTrtllm;
  }
  double host_gap_s() const;

  // Prefill attention's share of the bf16 peak at `length` key tokens a sequence: the published
  // kernel measurements step_cost.cc names (used where the cluster has no measured attention
  // figures).
  static double prefill_attention_fraction(double length);

  // Collective times in seconds for `bytes` per rank over `ranks` GPUs (nccl-tests terms:
  // busbw = algbw x 2(n-1)/n for all-reduce, (n-1)/n for all-gather), from the cluster's
  // measured table when it has one for the op and ranks, else NCCL's model (CollectiveModel:
  // the ranks placed a node first, launched from a CUDA graph or eagerly as `graph` says), or
  // alpha-beta on the measured link where the ranks talk through MPI (transport mpi).
  // all_reduce_s is what the engine's TP group pays inside a node: its own all-reduce from the
  // operator table (measured under a CUDA graph, or eagerly where `graph` is false), else a
  // cluster's `library: vllm` table, else vLLM's custom all-reduce as modelled, else NCCL's.
  double all_reduce_s(double bytes, std::int64_t ranks, bool graph = true) const;
  double nccl_all_reduce_s(double bytes, std::int64_t ranks, bool graph = true) const;
  double all_gather_s(double bytes, std::int64_t ranks, bool graph = true) const;
  double send_s(double bytes, bool cross_node, bool graph = true) const;

  // The fraction of the GEMM peak a GEMM of `tokens` rows on a `weight_bytes` matrix reaches
  // (the cluster's measured tables, relative to the peak the model already scales by), and the
  // bandwidth element-wise passes of `bytes_per_token` (a token and layer) get.
  double compute_efficiency(double tokens, double weight_bytes) const;
  // The bytes of one activation element (the model's dtype), as the collectives above count them.
  double activation_bytes() const { return act_bytes_; }
  double elementwise_bw(double tokens, double bytes_per_token) const;

  // A gated-delta-net layer (Qwen3-Next): its recurrent state read and written by each decode,
  // and the chunked delta rule over each prefill (flash-linear-attention's chunk_gated_delta_rule,
  // chunks of 64, which vLLM's qwen3_next.py runs).
  // One layer, seconds.
  double linear_attention_time(const BatchShape& b) const;
  // DeepSeek-V3.2's indexer: fp8 scores of every cached token for each query (its own heads),
  // over a K cache of head_dim fp8 values and a scale (DeepGEMM fp8_mqa_logits).
  double indexer_time(const BatchShape& b) const;
  // DeepSeek-V3.2's sparse MLA attention over the indexer's topk slots (FlashMLA's sparse
  // kernels as vLLM pads their heads), one layer.
  double sparse_mla_time(const BatchShape& b) const;
 private:
  struct Gemm {
    double rows, cols, weight_bytes;  // one rank's shard
    double flops_per_s;               // achievable for its dtype
    bool expert;                      // per routed expert (count = experts on the rank)
    double count;
    // The operator table's dtype for it ("bfloat16", "fp8", "fp8_block"); nullptr: none applies
    // (float32, int4/int8 weights, fp8 weight-only on a GPU without fp8 tensor cores).
    const char* table_dtype = nullptr;
    bool attention = false;  // an attention projection (q/k/v/o, MLA's)
  };
  struct Stage {
    std::int64_t dense_layers = 0, moe_layers = 0;
    std::int64_t windowed_layers = 0;  // of them, sliding-window, chunked or sparse attention
    std::int64_t linear_dense = 0, linear_moe = 0;  // of them, linear attention (gated delta net)
    bool first = false, last = false, send_cross_node = false;
    bool operator==(const Stage&) const = default;
  };
  double gemm_time(const Gemm& g, double tokens) const;
  double engine_all_reduce_s(double bytes, std::int64_t n, bool graph) const;  // all_reduce_s's
  // The compute efficiency at M tokens: the cluster's measured table (interpolated, clamped at
  // its ends) when it has one, else Efficiency::compute.
  double tile_rows() const;
  // Achievable bytes/s of one GPU's share of its node's NICs, and of its NVLink/PCIe link.
  double net_bw_per_gpu() const;
  double intra_bw() const;
  const hw::CollectiveTable* nccl_table(Collective op, std::int64_t ranks, bool graph) const;
  double nccl_model_s(Collective op, double bytes, std::int64_t ranks, bool graph) const;
  double layer_gemms(const std::vector<Gemm>& gs, std::int64_t tokens) const;
  // GEMM time of one layer depends on the token count alone: memoised per count (the serving
  // simulation asks for the same few counts thousands of times).
  double cached_gemms(const std::vector<Gemm>& gs, std::vector<double>& cache,
                      std::int64_t tokens) const;
  double attention_time(const BatchShape& b) const;
  // The engine's measured kernel time from ResolvedOptions::operator_tables. table_gemm_s is
  // negative where the table has no such dtype (then the curves above); table_attention_s needs
  // the series (table_decode_ / table_prefill_). The table's GEMMs, by shape and dtype, take
  // precedence over a cluster file's one-shape GEMM curve; a cluster's own measured attention
  // multipliers (tpp-profile) take precedence over the table's.
  double table_gemm_s(const Gemm& g, double tokens) const;
  double table_attention_s(const BatchShape& b, bool decode) const;
  // Whether the cluster is timed by the published GPU kernels' figures (attention curves and
  // latencies, the fused-MoE fixed time) rather than its own measured attention multipliers
  // (tpp-profile's CPU runs, which time their own operators).
  bool published_kernels() const { return attn_decode_ <= 0 && attn_prefill_ <= 0; }
  template <class Roof>
  double attention_decode_time(const BatchShape& b, double heads, Roof roof) const;
  template <class Roof>
  double attention_prefill_time(const BatchShape& b, double heads, Roof roof) const;
  double elementwise_time(const BatchShape& b, bool moe) const;
  // f(key) memoised in `cache` (a flat table by token or sequence count, -1: not yet computed;
  // keys past 65536 are computed each time). A step's GEMMs, element-wise passes and
  // collectives depend on its token count (or, on the last stage, its sequences) alone, and a
  // simulation asks for the same few counts thousands of times.
  template <class F>
  double by_count(std::vector<double>& cache, std::int64_t key, F f) const;

  model::Model m_;
  const hw::Cluster& c_;
  CollectiveModel coll_;  // NCCL, where the cluster measured no table (transport nccl)
  bool nccl_;             // the cluster's transport is NCCL (not tpp-profile's MPI ranks)
  struct CollKey {
    int op_graph;
    std::int64_t ranks;
    double bytes;
    bool operator==(const CollKey&) const = default;
  };
  struct CollKeyHash {
    std::size_t operator()(const CollKey& k) const {
      return std::hash<double>()(k.bytes) ^ (static_cast<std::size_t>(k.ranks) * 31 + static_cast<std::size_t>(k.op_graph)) * 0x9e3779b97f4a7c15ULL;
    }
  };
  mutable std::unordered_map<CollKey, double, CollKeyHash> coll_cache_;
  mutable std::vector<std::tuple<int, std::int64_t, const hw::CollectiveTable*>> table_cache_;
  ParallelConfig p_;
  ResolvedOptions o_;
  Efficiency e_;
  std::vector<Stage> stages_;
  // Every dense layer has the same sharded GEMMs, and so has every MoE layer, on every stage.
  std::vector<Gemm> dense_, moe_;
  std::vector<Gemm> linear_dense_, linear_moe_;  // layers with linear attention
  Gemm lm_head_{};  // the last stage's: logits for one row per sequence
  mutable std::vector<double> dense_cache_, moe_cache_, linear_dense_cache_, linear_moe_cache_;
  // By tokens: element-wise passes of a dense and a MoE layer, the TP all-reduce, the EP
  // all-gather, the PP send inside a node and across; by sequences: the LM head, the logits gather.
  mutable std::vector<double> elem_dense_cache_, elem_moe_cache_, ar_cache_, ep_cache_, send_cache_[2];
  mutable std::vector<double> lm_head_cache_, logits_cache_[2];  // logits: eager, graph
  std::vector<std::size_t> kind_of_;  // stage_kind
  // One layer's attention times for the last batch asked about: every stage of a step asks
  // for the same batch. [0] full, [1] windowed, [2] linear, [3] indexer, [4] sparse MLA
  // (-1: not yet computed for this batch).
  mutable BatchShape attn_shape_{};
  mutable double attn_[5] = {-1, -1, -1, -1, -1};
  template <class F>
  double layer_attention(int which, const BatchShape& b, F f) const;
  // cost() in two parts: the attention of the stage's layers, and everything else.
  double attention_of(const Stage& st, const BatchShape& b) const;
  StepCost without_attention(std::size_t stage, const BatchShape& b) const;
  // without_attention of decode-only batches, by stage kind and tokens (gemm < 0: not yet).
  mutable std::vector<std::vector<StepCost>> decode_cache_;  // by stage (kind)
  double bf16_flops_, mem_bw_, gemm_bw_, act_bytes_, kv_bytes_token_layer_;
  double launch_eager_s_ = 0, launch_graph_s_ = 0;
  double elem_bw_ = 0, attn_decode_ = 0, attn_prefill_ = 0;  // measured multipliers (0: none)
  double hbm_peak_ = 0, bf16_peak_ = 0;  // datasheet, bytes/s and FLOP/s
  // The operator table's attention series for this model's heads on one GPU (nullptr: none).
  const hw::OperatorTables::AttentionSeries *table_decode_ = nullptr, *table_prefill_ = nullptr;
  // The table's fused MoE layer for this model's shape, expert dtype and sharding (nullptr:
  // none; the routed experts' GEMMs then use the curves), and how many tokens one rank's layer
  // receives per token of a DP rank's batch (expert parallel over DP: all DP ranks' tokens).
  const hw::OperatorTables::MoeSeries* table_moe_ = nullptr;
  // table_decode_ / table_prefill_ are the MLA module's: they time the attention projections too.
  bool table_mla_module_ = false;
  double table_moe_tokens_ = 1;
  double table_heads_ = 0, table_kv_heads_ = 0;
};

}  // namespace tpp::sim
