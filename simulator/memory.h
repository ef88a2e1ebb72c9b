// Per-GPU memory of a vLLM deployment and the KV-cache blocks it gets, for any TP/PP split,
// without a GPU. The accounting is vLLM's own (see docs/memory-model.md for every formula and
// the vLLM file and function it comes from):
//
//   available = total_gpu_memory x gpu_memory_utilization - (weights + activation peak + non-torch)
//   V1: blocks = floor(floor(available / page_bytes) / layers_on_rank), page = block_size x
//       kv bytes per token per layer; the engine takes the minimum over ranks.
//   V0: blocks = floor(available / (block_size x layers_on_rank x kv bytes per token per layer)).
//
// V1 follows vLLM 0.9.1-0.19 (the engine of `vllm serve` today, gpu_memory_utilization 0.9,
// CUDA graphs outside the budget unless counted); V0 follows vLLM 0.6.5-0.10.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "hardware_profiles/hardware.h"
#include "hardware_profiles/operator_tables.h"
#include "model/model.h"
#include "simulator/kv_groups.h"
#include "simulator/parallel.h"

namespace tpp::sim {

enum class Engine { kV1, kV0 };

// The serving engine a plan is for (tpp-plan --engine): its memory accounting, its scheduler's
// admission, its defaults per GPU, its host model and its launch command.
// - vllm: vLLM V1 (everything below ServingOptions is vLLM's unless said otherwise).
// - sglang: SGLang 0.5.6 (sgl-project/sglang v0.5.6): the KV token pool is
//   mem_fraction_static x the memory free before the weights load, less the weights
//   (model_runner.py profile_max_num_token); the default fraction leaves room for activations
//   and CUDA graphs (server_args.py _handle_gpu_memory_settings); pages of one token; admission
//   reserves the running requests' future tokens at new_token_ratio (schedule_policy.py
//   PrefillAdder) and a step is either prefill or decode.
// - trtllm: TensorRT-LLM's PyTorch backend: the KV cache is kv_cache_free_gpu_memory_fraction
//   (0.9) of what is free after the weights and a dummy run's activation peak (_util.py
//   KvCacheCreator._cal_max_memory), blocks of 32 tokens, GUARANTEED_NO_EVICT admission,
//   no chunked prefill, max_batch_size 2048, max_num_tokens 8192.
enum class Framework { kVllm, kSglang, kTrtllm };
const std::vector<std::string>& framework_names();  // "vllm", "sglang", "trtllm"
const char* framework_name(Framework f);
std::optional<Framework> parse_framework(const std::string& s);

// Whose host (CPU) work each engine step carries (StepCostModel::host_s): vLLM V1's (scheduling,
// input preparation and output processing in Python) with async scheduling, its default since
// the Q4 2025 roadmap (vllm-project/vllm issue #27679, PR #27614: the host prepares step n+1
// while the GPU runs step n, so only host time beyond the GPU's shows, plus a small gap), or
// without it (`vllm-sync`: --no-async-scheduling and older V1, serial with the GPU step);
// TensorRT-LLM's (its overlap scheduler, on by default); or none (tpp's own executor, whose host
// time its measurements carry, and the step model alone).
enum class HostOverhead { kVllm, kVllmSync, kTrtllm, kNone };
// Their names, in HostOverhead's order: "vllm", "vllm-sync", "trtllm", "none" (the CLI's and the
// plan file's spellings).
const std::vector<std::string>& host_overhead_names();
const char* host_overhead_name(HostOverhead h);
// nullopt for a name not in host_overhead_names().
std::optional<HostOverhead> parse_host_overhead(const std::string& s);
// The scheduler's admission by name: "vllm" (reserve_whole_request false) or
// "guaranteed-no-evict" (true).
const std::vector<std::string>& capacity_policy_names();
const char* capacity_policy_name(bool reserve_whole_request);

// vLLM's serving options, by vLLM's names. nullopt = vLLM's default for this GPU and engine; a
// value given is checked as vLLM checks it (a 0 or negative size is refused, never taken for
// "default").
struct ServingOptions {
  Engine engine = Engine::kV1;
  Framework framework = Framework::kVllm;
  // SGLang's --mem-fraction-static or TensorRT-LLM's kv_cache_free_gpu_memory_fraction;
  // nullopt: the engine's default (SGLang's by GPU and split; TensorRT-LLM's 0.9).
  std::optional<double> memory_fraction;
  double gpu_memory_utilization = 0.9;
  std::optional<std::int64_t> max_model_len;   // default: the model's max_position_embeddings
  std::optional<std::int64_t> block_size;      // default 16 (MLA backends may force 64)
  std::optional<model::KvCacheDType> kv_cache_dtype;  // default: the model's
  std::optional<std::int64_t> max_num_seqs;    // default: 1024 or 256 (V1, by GPU); 256 (V0)
  std::optional<std::int64_t> max_num_batched_tokens;  // default: 8192 or 2048 (V1);
                                                       // max(len, 2048) (V0)
  bool enforce_eager = false;               // no CUDA graphs
  bool count_cuda_graphs = false;           // VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1
  std::optional<model::QuantMethod> quantization;  // --quantization (fp8 on a bf16 checkpoint)
  double swap_space_gib = 4;                // V0 CPU swap space per GPU, [0, 4096] GiB
  std::optional<model::DType> dtype;        // --dtype: activations and unquantized weights;
                                            // default: the model's
  HostOverhead host_overhead = HostOverhead::kVllm;
  bool reserve_whole_request = false;       // see ResolvedOptions
  // Time GEMMs and attention from the engine's measured operator table for this GPU where there
  // is one (hardware_profiles/operator_tables.h; tpp-plan --operator-tables on|off|ENGINE).
  bool operator_tables = true;
  // Whose tables: empty for the host model's engine (vllm, vllm-sync: vLLM's; trtllm:
  // TensorRT-LLM's), or an engine's name ("sglang") whose kernels the deployment runs.
  std::string operator_tables_engine;
};

// Bounds on the options tpp accepts (vLLM's own are looser or absent; these keep every product
// of them inside int64 and every simulation finite).
inline constexpr std::int64_t kMaxNumSeqs = 1 << 20;
inline constexpr std::int64_t kMaxBatchedTokens = 1 << 24;
inline constexpr double kMaxSwapSpaceGiB = 4096;

// The options an engine runs with by default beside vLLM's: its host model (TensorRT-LLM's
// overlap scheduler; SGLang's overlap scheduler taken as vLLM's async scheduling), its
// admission (TensorRT-LLM: guaranteed-no-evict) and its measured kernels (operator tables).
ServingOptions with_framework(ServingOptions o, Framework f);

// SGLang's default mem_fraction_static for this GPU and split (server_args.py).
double sglang_mem_fraction_static(const hw::Gpu& g, const ParallelConfig& p, std::int64_t chunked_prefill);

// The options with every default resolved, as the engine would run.
struct ResolvedOptions {
  Engine engine;
  Framework framework = Framework::kVllm;
  // SGLang: mem_fraction_static as given (0: its default, set per split by simulate_memory,
  // which writes the value into the plan's options); TensorRT-LLM: the free-memory fraction.
  double memory_fraction = 0;
  // Whether a prompt may be split over steps (vLLM and SGLang: yes; TensorRT-LLM: off by default,
  // a prompt is one step's and may not exceed max_num_batched_tokens).
  bool chunked_prefill = true;
  // SGLang: new prompt tokens a step at most (max_prefill_tokens, 16384), beside the chunk size
  // (max_num_batched_tokens here).
  std::int64_t max_prefill_tokens = 0;
  bool derive_max_num_seqs = false;  // SGLang: max_running_requests from the token pool
  model::DType dtype;  // the model's, or --dtype
  double gpu_memory_utilization;
  std::int64_t max_model_len, block_size, max_num_seqs, max_num_batched_tokens;
  model::KvCacheDType kv_cache_dtype;
  double kv_bytes_per_element;
  bool enforce_eager, count_cuda_graphs;
  double swap_space_gib;
  std::optional<model::QuantMethod> quantization;  // --quantization as given
  // Automatic prefix caching (V1's default; V0's is off): the scheduler keeps a preempted
  // request's cached blocks until they are evicted (simulator/scheduler.h).
  bool prefix_caching = false;
  HostOverhead host_overhead = HostOverhead::kVllm;
  // The scheduler's admission: vLLM's (admit while the first chunk's blocks are free, preempt
  // when a running request needs a block), or TensorRT-LLM's GUARANTEED_NO_EVICT (admit when the
  // whole request's blocks are free; never preempt). SchedulerConfig::reserve_whole_request.
  bool reserve_whole_request = false;
  // The measured kernel latencies on this GPU of ServingOptions::operator_tables_engine, else of
  // the engine the host overhead names (vllm, trtllm), when ServingOptions::operator_tables is
  // on and the catalog has them; else nullptr and the step model's own curves. Never for host
  // overhead `none` without an engine named (tpp-run's own kernels) or float32 (the tables are
  // bf16 and fp8).
  std::shared_ptr<const hw::OperatorTables> operator_tables;
};

// One PP stage; every TP rank of a stage holds the same (the vocabulary is padded so that it
// splits evenly).
struct StageMemory {
  std::int64_t pp_rank = 0;
  std::int64_t first_layer = 0, num_layers = 0;
  std::int64_t weights_bytes = 0;
  std::int64_t activation_peak_bytes = 0;
  std::int64_t non_torch_bytes = 0;
  std::int64_t cuda_graph_bytes = 0;        // reported; deducted only when counted
  std::int64_t kv_cache_bytes = 0;          // available for the KV cache (negative: no room)
  std::int64_t kv_bytes_per_token = 0;      // one token over this stage's layers
  std::int64_t kv_group_size = 0;           // the pool's divisor: layers in its largest group
  std::int64_t gpu_blocks = 0;
  std::int64_t cpu_blocks = 0;              // V0 swap blocks
};

struct MemoryPlan {
  ParallelConfig parallel;
  ResolvedOptions options;
  std::int64_t total_bytes = 0;             // the driver's total per GPU
  std::int64_t budget_bytes = 0;            // total x utilization
  std::vector<StageMemory> stages;
  KvGroups kv_groups;                       // how the layers share the block pool (V1)
  std::size_t binding_stage = 0;            // the stage with the fewest blocks
  std::int64_t gpu_blocks = 0;              // the engine's: min over ranks
  std::int64_t kv_cache_tokens = 0;         // as vLLM logs it: blocks // groups x block_size
  double max_concurrency = 0;               // requests of max_model_len at once
  std::int64_t max_model_len_that_fits = 0; // largest length one request can have
  bool fits = false;
  std::string why_not;                      // empty when it fits
  std::vector<std::string> notes;
};

// Resolves vLLM's defaults for this model, GPU and options; an error for options vLLM rejects
// (utilization outside (0, 1], a size below 1, max_model_len above the model's, a block size
// vLLM does not offer, fewer batched tokens than sequences, swap space that is negative, not a
// number or beyond kMaxSwapSpaceGiB, a quantization the checkpoint does not allow).
Expected<ResolvedOptions> resolve_options(const model::Model& m, const hw::Gpu& gpu,
                                          const ServingOptions& o);

// The model as the engine loads it: --dtype sets the activation and unquantized weight dtype
// (vLLM casts the checkpoint on load); --quantization fp8 on an unquantized checkpoint stores the
// linear weights as fp8 with one scale per tensor (vLLM's online Fp8LinearMethod).
model::Model as_loaded(const model::Model& m, const ServingOptions& o);

// Memory of one split. The split must pass check_parallel(); a split that does not fit is a
// plan with fits = false and why_not saying which term broke it and by how much.
MemoryPlan simulate_memory(const model::Model& loaded, const hw::Gpu& gpu,
                           const ParallelConfig& p, const ResolvedOptions& o);

// Bytes of one token of DeepSeek-V3.2's indexer K cache in one layer (head_dim fp8 values and an
// fp32 scale per 128; DeepseekV32IndexerCache); 0 for a model without an indexer.
std::int64_t indexer_kv_bytes_per_token(const model::Model& m);

// Bytes of one token's K and V (or MLA latent) in one layer on one rank (the indexer's K cache
// included).
std::int64_t kv_bytes_per_token_layer(const model::Model& m, const ParallelConfig& p,
                                      double element_bytes);

// Requests of max_model_len the KV cache holds at once: V1 blocks / cdiv(max_model_len,
// block_size) (get_max_concurrency_for_kv_cache_config); V0 blocks x block_size / max_model_len.
double max_concurrency(std::int64_t blocks, const ResolvedOptions& o);
// The same for a model whose layers form `groups` (V1 only): blocks / the blocks one request of
// max_model_len may hold over every group (its layers' max_memory_usage_bytes).
double max_concurrency(std::int64_t blocks, const ResolvedOptions& o, const KvGroups& groups);

// Every split of `gpus` GPUs: tp x pp x dp = gpus, tp and pp as vLLM accepts them for this
// model (check_parallel), pp at most the layers.
std::vector<ParallelConfig> enumerate_splits(const model::Model& m, std::int64_t gpus,
                                             bool expert_parallel);

// The split with the fewest GPUs per replica (at most `max_gpus`) that fits, preferring TP
// inside a node (`gpus_per_node`) and then fewer pipeline stages; nullopt when none does.
std::optional<ParallelConfig> smallest_fitting_split(const model::Model& loaded,
                                                     const hw::Gpu& gpu, std::int64_t max_gpus,
                                                     std::int64_t gpus_per_node,
                                                     const ResolvedOptions& o,
                                                     bool expert_parallel);

}  // namespace tpp::sim
