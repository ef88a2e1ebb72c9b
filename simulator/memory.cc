#include "simulator/memory.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include <fmt/format.h>

#include "model/tensors.h"

namespace tpp::sim {

const std::vector<std::string>& host_overhead_names() {
  static const std::vector<std::string> names = {"vllm", "vllm-sync", "trtllm", "none"};
  return names;
}

const char* host_overhead_name(HostOverhead h) {
  return host_overhead_names()[static_cast<std::size_t>(h)].c_str();
}

std::optional<HostOverhead> parse_host_overhead(const std::string& s) {
  const auto& names = host_overhead_names();
  const auto it = std::find(names.begin(), names.end(), s);
  if (it == names.end()) return std::nullopt;
  return static_cast<HostOverhead>(it - names.begin());
}

const std::vector<std::string>& capacity_policy_names() {
  static const std::vector<std::string> names = {"vllm", "guaranteed-no-evict"};
  return names;
}

const char* capacity_policy_name(bool reserve_whole_request) {
  return capacity_policy_names()[reserve_whole_request ? 1 : 0].c_str();
}

const std::vector<std::string>& framework_names() {
  static const std::vector<std::string> names = {"vllm", "sglang", "trtllm"};
  return names;
}

const char* framework_name(Framework f) { return framework_names()[static_cast<std::size_t>(f)].c_str(); }

ServingOptions with_framework(ServingOptions o, Framework f) {
  o.framework = f;
  o.host_overhead = f == Framework::kTrtllm ? HostOverhead::kTrtllm : HostOverhead::kVllm;
  o.reserve_whole_request = f == Framework::kTrtllm;
  o.operator_tables_engine = f == Framework::kSglang ? "sglang" : "";
  return o;
}

std::optional<Framework> parse_framework(const std::string& s) {
  const auto& n = framework_names();
  for (std::size_t i = 0; i < n.size(); ++i)
    if (n[i] == s) return static_cast<Framework>(i);
  return std::nullopt;
}

namespace {

constexpr double kGiB = 1073741824.0;
std::int64_t gib_bytes(double g) { return static_cast<std::int64_t>(std::llround(g * kGiB)); }
std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
std::string gib(std::int64_t bytes) { return fmt::format("{:.2f} GiB", bytes / kGiB); }

// ---- Measured constants (each with its source) --------------------------------------------
// Non-torch memory per GPU: NCCL communicators, custom all-reduce buffers, cuBLAS workspace
// (vLLM memory_profiling's non_torch_increase). Logged by vLLM 0.19 on H100 SXM (llm-d-planner
// accuracy campaign, accuracy/results/v0.19.0): 0.24-0.27 GiB at TP1 over 19 models, 0.07 GiB
// at TP1 with PP, 2.06-2.21 GiB at TP2/TP4 (NCCL state; vLLM's own buffers are 8-128 MiB).
constexpr double kNonTorchTp1GiB = 0.25;
constexpr double kNonTorchTp1PpGiB = 0.07;
constexpr double kNonTorchTpGiB = 2.1;
// V0 counts a little more as non-torch: 0.35 GiB at TP1 (vLLM 0.6.4, RTX 3090, issue #10517,
// where the accounting includes part of the CUDA context) against V1's 0.25.
constexpr double kNonTorchV0ExtraGiB = 0.10;
// CUDA graph pool: 0.51-1.85 GiB, mean 1.04 GiB, over 58 vLLM 0.19 runs on H100 (same source;
// Llama-3.1-8B: 0.91 GiB). vLLM captures graphs after sizing the KV cache, so they are counted
// only with VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1 (default from vLLM 0.20).
constexpr double kCudaGraphGiB = 1.04;
// The CUDA context sits outside total x utilization from vLLM 0.9.1 (0.51 GiB on H100, 0.19):
// CUDA graphs that are not counted must fit beside it in total x (1 - utilization).
constexpr double kCudaContextGiB = 0.51;
// Sampler peak per logit element, fitted on logged activation peaks (docs/memory-model.md):
// V1 >= 0.17 (Triton top-k/top-p): the logits in the model dtype plus three fp32 copies
// (float logits, probs, exponential q); V0 (torch sort path): 38 bytes.
constexpr double kSamplerFp32Copies = 3;
constexpr double kSamplerSortBytes = 38;
constexpr double kSamplerSlackGiB = 0.05;  // fit intercept, same source
// Forward peak of one dense layer, in units of hidden and intermediate activations of T tokens:
// fitted on vLLM 0.19 (compiled, CodeLlama-7B; checked on Granite-3.1-8B) and V0 (eager,
// RTX 3090 Llama-3.1-8B at T = 20000 and 29000): see docs/memory-model.md.
constexpr double kFwdIntermediate = 3.0;
constexpr double kFwdHiddenV1 = 4.25;
constexpr double kFwdHiddenV0 = 3.0;

// ---- Defaults vLLM picks --------------------------------------------------------------------

// EngineArgs._set_default_args (vLLM 0.9-0.28): `vllm serve` on a GPU of at least 70 GiB that
// is not an A100 gets 8192 batched tokens and 1024 sequences; any other GPU 2048 and 256.
bool large_gpu(const hw::Gpu& g) {
  std::string n = g.name;
  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
  return g.memory_driver_GiB.value >= 70 && n.find("a100") == std::string::npos;
}

// ---- SGLang's and TensorRT-LLM's defaults ---------------------------------------------------
// SGLang v0.5.6 (sgl-project/sglang, python/sglang/srt/server_args.py, model_runner.py,
// tp_worker.py, schedule_policy.py; read from the v0.5.6 wheel).
constexpr std::int64_t kSglangPageSize = 1;              // page_size: "self.page_size = 1"
constexpr std::int64_t kSglangMaxPrefillTokens = 16384;  // max_prefill_tokens: int = 16384
constexpr std::int64_t kSglangMaxRequests = 4096;        // init_memory_pool: max_num_reqs <= 4096
// TensorRT-LLM (NVIDIA/TensorRT-LLM, PyTorch backend): KvCacheConfig free_gpu_memory_fraction
// default 0.9 and tokens_per_block 32 (tensorrt_llm/llmapi/llm_args.py); BuildConfig
// max_batch_size 2048 and max_num_tokens 8192 (tensorrt_llm/builder.py @ 008b2b8d).
constexpr double kTrtllmFreeFraction = 0.9;
constexpr std::int64_t kTrtllmTokensPerBlock = 32;
constexpr std::int64_t kTrtllmMaxBatchSize = 2048;
constexpr std::int64_t kTrtllmMaxNumTokens = 8192;

// SGLang's GPU memory in MiB (get_device_memory_capacity: nvidia-smi's memory.total; tpp has
// the driver's total as PyTorch reports it, some 600-700 MiB less: the thresholds below are
// tens of GiB apart).
double sglang_gpu_mem_mib(const hw::Gpu& g) { return g.memory_driver_GiB.value * 1024; }

// _handle_gpu_memory_settings: chunked_prefill_size and cuda_graph_max_bs by GPU memory.
std::int64_t sglang_chunked_prefill_size(const hw::Gpu& g) {
  const double mem = sglang_gpu_mem_mib(g);
  return mem < 20 * 1024 ? 2048 : mem < 35 * 1024 ? 2048 : mem < 60 * 1024 ? 4096
         : mem < 160 * 1024 ? 8192 : 16384;
}
double sglang_cuda_graph_max_bs(const hw::Gpu& g, std::int64_t tp) {
  const double mem = sglang_gpu_mem_mib(g);
  if (mem < 20 * 1024) return 8;
  if (mem < 35 * 1024) return tp < 4 ? 24 : 80;
  if (mem < 60 * 1024) return tp < 4 ? 32 : 160;
  if (mem < 160 * 1024) return tp < 4 ? 256 : 512;
  return 512;
}

}  // namespace

double sglang_mem_fraction_static(const hw::Gpu& g, const ParallelConfig& p, std::int64_t chunked_prefill) {
  // reserved_mem = 512 + max(chunked_prefill_size, 2048) x 1.5 + cuda_graph_max_bs x 2
  //   + tp x pp / 8 x 1024, at least 10 GiB on a GPU over 60 GiB;
  // mem_fraction_static = round((gpu_mem - reserved_mem) / gpu_mem, 3)  (MiB).
  const double mem = sglang_gpu_mem_mib(g);
  double reserved = 512 + static_cast<double>(std::max<std::int64_t>(chunked_prefill, 2048)) * 1.5 +
                    sglang_cuda_graph_max_bs(g, p.tp) * 2 + static_cast<double>(p.tp * p.pp) / 8 * 1024;
  if (mem > 60 * 1024) reserved = std::max(reserved, 10.0 * 1024);
  return std::round((mem - reserved) / mem * 1000) / 1000;
}

namespace {

bool is_fp8_kv(model::KvCacheDType d) {
  return d == model::KvCacheDType::kFP8 || d == model::KvCacheDType::kFP8E4M3 ||
         d == model::KvCacheDType::kFP8E5M2;
}

// Where an FP4 KV cache runs: FP4 tensor cores (NVIDIA Blackwell, compute capability 10 and up);
// vLLM's nvfp4 cache on SM100/SM103 only (its SM120 path is not wired: vllm-project/vllm issue
// #49011, v0.25.1); for MLA models SGLang's (its MLA FP4 cache: sgl-project/sglang PR #10078);
// no AMD engine offers one.
std::optional<std::string> fp4_kv_refusal(const model::Model& m, const hw::Gpu& gpu, Framework f) {
  const double cc = gpu.compute_capability.value;
  if (gpu.vendor != hw::Vendor::kNvidia || cc < 10)
    return fmt::format("an FP4 KV cache needs FP4 tensor cores (NVIDIA Blackwell, compute capability "
                       "10.0 or later); {} has none for it", gpu.name);
  if (f == Framework::kVllm && cc >= 12)
    return fmt::format("vLLM's nvfp4 KV cache runs on SM100/SM103 (B200, B300, GB200, GB300), not on "
                       "compute capability {:.1f} ({}): vllm-project/vllm issue #49011",
                       cc, gpu.name);
  if (m.mla && f != Framework::kSglang)
    return fmt::format("{} has no FP4 KV cache for MLA models that tpp knows of ({} is one); SGLang "
                       "has (--engine sglang)",
                       f == Framework::kVllm ? "vLLM" : "TensorRT-LLM", m.name);
  return std::nullopt;
}

double kv_element_bytes(model::KvCacheDType d, model::DType model_dtype) {
  switch (d) {
    case model::KvCacheDType::kAuto: return model::dtype_bytes(model_dtype);
    case model::KvCacheDType::kBF16:
    case model::KvCacheDType::kF16: return 2;
    // Half a byte a value and one fp8 scale a block of 16: vLLM packs head_size / 2 + head_size /
    // 16 bytes a head (the layout taco-project/FlexKV PR #204 mirrors for vLLM 0.23+); SGLang's
    // fp4_e2m1 scales blocks of 16 with 8 bits, "3.56x more tokens than BF16"
    // (docs/advanced_features/quantized_kv_cache.md); TensorRT-LLM's nvfp4 is NVFP4's.
    case model::KvCacheDType::kNvfp4: return 0.5 + 1.0 / 16;
    default: return 1;
  }
}

}  // namespace

Expected<ResolvedOptions> resolve_options(const model::Model& m, const hw::Gpu& gpu,
                                          const ServingOptions& o) {
  ResolvedOptions r{};
  r.engine = o.engine;
  r.framework = o.framework;
  const bool sglang = o.framework == Framework::kSglang, trtllm = o.framework == Framework::kTrtllm;
  if (o.framework != Framework::kVllm && o.engine != Engine::kV1)
    return make_error("", 0, 0, "--vllm-engine v0 is vLLM's; drop it with --engine " +
                                    std::string(framework_name(o.framework)));
  if (trtllm && gpu.vendor != hw::Vendor::kNvidia)
    return make_error("", 0, 0, "--engine trtllm: TensorRT-LLM runs on NVIDIA GPUs only, and " +
                                    gpu.name + " is AMD's");
  if (o.memory_fraction && o.framework == Framework::kVllm)
    return make_error("", 0, 0, "--mem-fraction-static is SGLang's and "
                                "--kv-cache-free-gpu-memory-fraction TensorRT-LLM's; vLLM takes "
                                "--gpu-memory-utilization");
  if (o.memory_fraction && !(*o.memory_fraction > 0 && *o.memory_fraction <= 1))
    return make_error("", 0, 0, fmt::format("{} must be in (0, 1], got {}",
                                            sglang ? "--mem-fraction-static"
                                                   : "--kv-cache-free-gpu-memory-fraction",
                                            *o.memory_fraction));
  r.memory_fraction = o.memory_fraction.value_or(trtllm ? kTrtllmFreeFraction : 0);
  // SGLang keeps finished prompts in its radix cache but frees a retracted request's tokens
  // without inserting them (schedule_batch.py retract_decode: release_kv_cache(is_insert=False));
  // TensorRT-LLM never evicts under GUARANTEED_NO_EVICT. Neither reuses a preempted prefix.
  r.prefix_caching = o.engine == Engine::kV1 && o.framework == Framework::kVllm;
  r.chunked_prefill = !trtllm;
  r.host_overhead = o.host_overhead;
  r.reserve_whole_request = o.reserve_whole_request;
  r.enforce_eager = o.enforce_eager;
  r.count_cuda_graphs = o.count_cuda_graphs && !o.enforce_eager;
  r.swap_space_gib = o.swap_space_gib;
  r.quantization = o.quantization;
  if (!(o.swap_space_gib >= 0 && o.swap_space_gib <= kMaxSwapSpaceGiB))  // also NaN
    return make_error("", 0, 0, fmt::format("--swap-space must be between 0 and {:g} GiB, got {}",
                                            kMaxSwapSpaceGiB, o.swap_space_gib));
  // A size given as 0 or below is refused, as vLLM refuses it, never read as "the default".
  for (auto [flag, v, max] : {std::tuple{"--max-model-len", o.max_model_len, model::kMaxPositions},
                              std::tuple{"--block-size", o.block_size, std::int64_t{128}},
                              std::tuple{"--max-num-seqs", o.max_num_seqs, kMaxNumSeqs},
                              std::tuple{"--max-num-batched-tokens", o.max_num_batched_tokens,
                                         kMaxBatchedTokens}}) {
    if (v && *v < 1)
      return make_error("", 0, 0, fmt::format("{} must be at least 1, got {}", flag, *v));
    if (v && *v > max)
      return make_error("", 0, 0, fmt::format("{} must be at most {}, got {}", flag, max, *v));
  }
  if (!(o.gpu_memory_utilization > 0 && o.gpu_memory_utilization <= 1))
    return make_error("", 0, 0, fmt::format("--gpu-memory-utilization must be in (0, 1], got {}",
                                            o.gpu_memory_utilization));
  r.gpu_memory_utilization = o.gpu_memory_utilization;
  r.max_model_len = o.max_model_len.value_or(m.max_position_embeddings);
  if (r.max_model_len > m.max_position_embeddings)
    return make_error("", 0, 0,
                      fmt::format("--max-model-len {} exceeds the model's "
                                  "max_position_embeddings {}",
                                  r.max_model_len, m.max_position_embeddings));
  r.dtype = o.dtype.value_or(m.dtype);
  // vLLM refuses bfloat16 below compute capability 8.0 (T4, V100) with this message
  // (vllm/platforms/cuda.py, _check_if_gpu_supports_dtype in older versions).
  if (r.dtype == model::DType::kBF16 && gpu.vendor == hw::Vendor::kNvidia &&
      gpu.compute_capability.value < 8.0)
    return make_error("", 0, 0,
                      fmt::format("Bfloat16 is only supported on GPUs with compute capability of "
                                  "at least 8.0. Your {} GPU has compute capability {:.1f}. You "
                                  "can use float16 instead: --dtype half",
                                  gpu.name, gpu.compute_capability.value));
  r.kv_cache_dtype = o.kv_cache_dtype.value_or(m.kv_cache_dtype);
  r.kv_bytes_per_element = kv_element_bytes(r.kv_cache_dtype, r.dtype);
  if (r.kv_cache_dtype == model::KvCacheDType::kNvfp4)
    if (auto why = fp4_kv_refusal(m, gpu, o.framework))
      return make_error("", 0, 0,
                        (o.kv_cache_dtype ? std::string("--kv-cache-dtype nvfp4: ")
                                          : "the checkpoint's NVFP4 KV cache (kv_cache_quant_algo; "
                                            "--kv-cache-dtype auto or fp8 overrides it): ") + *why);

  // Block size: 16 on CUDA (CacheConfig). MLA on Hopper with an fp8 KV cache runs FlashMLA,
  // which only takes 64 (vLLM 0.18+: Platform.update_block_size_for_backend; FLASH_ATTN_MLA,
  // chosen first for a bf16 cache, takes any multiple of 16).
  const bool hopper = gpu.compute_capability.value >= 9.0 && gpu.compute_capability.value < 10;
  // DeepSeek-V3.2's sparse attention runs FLASHMLA_SPARSE, which takes 64 only, whatever the
  // cache dtype (vllm/v1/attention/backends/mla/flashmla_sparse.py).
  r.block_size = o.block_size.value_or(
      sglang   ? kSglangPageSize
      : trtllm ? kTrtllmTokensPerBlock
      : (m.mla && ((hopper && is_fp8_kv(r.kv_cache_dtype)) || m.indexer)) ? 64 : 16);
  if (o.framework != Framework::kVllm && !kv_groups(m, r.block_size).uniform_full())
    return make_error("", 0, 0,
                      fmt::format("--engine {}: tpp models {}'s KV pool for models whose every "
                                  "layer attends to the whole context; {} has sliding-window, "
                                  "chunked or linear-attention layers (plan it with --engine vllm)",
                                  framework_name(o.framework),
                                  sglang ? "SGLang" : "TensorRT-LLM", m.name));
  static const std::int64_t kBlockSizes[] = {1, 8, 16, 32, 64, 128};
  if (std::find(std::begin(kBlockSizes), std::end(kBlockSizes), r.block_size) ==
      std::end(kBlockSizes))
    return make_error("", 0, 0, fmt::format("--block-size must be one of 1, 8, 16, 32, 64, 128, "
                                            "got {}", r.block_size));

  if (sglang) {
    // server_args.py: chunked_prefill_size by the GPU's memory; max_running_requests from the
    // token pool (simulate_memory), capped here by req_to_token_pool's most, 4096.
    r.max_num_batched_tokens = o.max_num_batched_tokens.value_or(sglang_chunked_prefill_size(gpu));
    r.max_num_seqs = o.max_num_seqs.value_or(kSglangMaxRequests);
    r.derive_max_num_seqs = !o.max_num_seqs;
    r.max_prefill_tokens = kSglangMaxPrefillTokens;
  } else if (trtllm) {
    // BuildConfig's defaults (tensorrt_llm/builder.py): max_batch_size 2048, max_num_tokens 8192.
    r.max_num_seqs = o.max_num_seqs.value_or(kTrtllmMaxBatchSize);
    r.max_num_batched_tokens = o.max_num_batched_tokens.value_or(kTrtllmMaxNumTokens);
  } else if (o.engine == Engine::kV1) {
    r.max_num_seqs = o.max_num_seqs.value_or(large_gpu(gpu) ? 1024 : 256);
    r.max_num_batched_tokens = o.max_num_batched_tokens.value_or(large_gpu(gpu) ? 8192 : 2048);
  } else {
    // V0 (<= 0.6): no chunked prefill unless max_model_len > 32768 (then 512 tokens a step).
    r.max_num_seqs = o.max_num_seqs.value_or(256);
    const bool chunked = r.max_model_len > 32768;
    r.max_num_batched_tokens = o.max_num_batched_tokens.value_or(
        chunked ? 512 : std::max<std::int64_t>(r.max_model_len, 2048));
    if (!chunked && r.max_num_batched_tokens < r.max_model_len)
      return make_error("", 0, 0,
                        fmt::format("--max-num-batched-tokens {} is smaller than --max-model-len "
                                    "{} (V0 without chunked prefill needs a whole prompt a step)",
                                    r.max_num_batched_tokens, r.max_model_len));
  }
  if (r.max_num_batched_tokens < r.max_num_seqs && o.framework == Framework::kVllm)
    return make_error("", 0, 0, fmt::format("--max-num-batched-tokens {} must be at least "
                                            "--max-num-seqs {}",
                                            r.max_num_batched_tokens, r.max_num_seqs));
  if (o.quantization && *o.quantization != m.quant.method &&
      !(*o.quantization == model::QuantMethod::kFp8 &&
        m.quant.method == model::QuantMethod::kNone))
    return make_error("", 0, 0,
                      fmt::format("--quantization {} does not match the checkpoint, which is {}; "
                                  "only fp8 can be applied to an unquantized checkpoint",
                                  model::quant_method_name(*o.quantization),
                                  model::quant_method_name(m.quant.method)));
  const char* engine = !o.operator_tables_engine.empty()         ? o.operator_tables_engine.c_str()
                       : o.host_overhead == HostOverhead::kTrtllm ? "trtllm"
                       : o.host_overhead == HostOverhead::kNone   ? nullptr
                                                                  : "vllm";
  if (o.operator_tables && engine && r.dtype != model::DType::kF32) {
    auto t = hw::find_operator_tables(gpu.name, engine);
    if (!t) return t.error();
    r.operator_tables = *t;
  }
  return r;
}

model::Model as_loaded(const model::Model& m, const ServingOptions& o) {
  model::Model out = m;
  if (o.dtype) {
    out.dtype = *o.dtype;
    if (out.quant.method == model::QuantMethod::kNone) out.quant.weight_dtype = *o.dtype;
  }
  if (o.quantization == model::QuantMethod::kFp8 && m.quant.method == model::QuantMethod::kNone) {
    // vLLM's online fp8 (Fp8LinearMethod, not serialized): fp8 weights, one scale a tensor.
    out.quant = model::Quantization{};
    out.quant.method = model::QuantMethod::kFp8;
    out.quant.weight_dtype = model::DType::kFP8E4M3;
  }
  return out;
}

namespace {

struct LayerKinds {
  std::int64_t dense_bytes = 0, moe_bytes = 0, vision_bytes = 0;
};

std::int64_t shard_bytes(const std::vector<model::TensorSpec>& ts, const model::Model& m,
                         const ParallelConfig& p) {
  std::int64_t sum = 0;
  for (const auto& t : ts) {
    Shard s = shard_of(t, m, p);
    model::TensorSpec shard = t;
    shard.rows = s.rows;
    shard.cols = s.cols;
    shard.count = s.count;
    std::int64_t bytes = model::storage_bytes(shard, m);
    // vLLM's MXFP4 MoE pads the experts' hidden dimension for its kernels (Mxfp4MoEMethod.
    // create_weights): gpt-oss's 2880 loads as 3072, a multiple of 256. Measured on one H100:
    // gpt-oss-120b's weights take 64.38 GiB (vllm-project/vllm#33155, v0.14.1), gpt-oss-20b's
    // 13.47 GiB (v0.11.0), 6.7% above their unpadded MXFP4 bytes (60.4 and 12.6 GiB).
    if (m.quant.method == model::QuantMethod::kMxfp4 && t.quantized)
      bytes = bytes / m.hidden_size * ceil_div(m.hidden_size, 256) * 256;
    sum += bytes;
  }
  return sum;
}

// Every dense layer is alike, and so is every MoE layer: one of each is enough.
LayerKinds layer_kinds(const model::Model& m, const ParallelConfig& p) {
  std::int64_t dense_at = -1, moe_at = -1;
  for (std::int64_t l = 0; l < m.num_layers && (dense_at < 0 || moe_at < 0); ++l) {
    std::int64_t& at = m.is_moe_layer(l) ? moe_at : dense_at;
    if (at < 0) at = l;
  }
  LayerKinds k;
  if (dense_at >= 0) k.dense_bytes = shard_bytes(model::layer_tensors(m, dense_at), m, p);
  if (moe_at >= 0) k.moe_bytes = shard_bytes(model::layer_tensors(m, moe_at), m, p);
  if (m.vision) k.vision_bytes = shard_bytes(model::vision_tensors(m), m, p);
  return k;
}

// The activation peak of vLLM's profiling run on one rank (docs/memory-model.md):
// V1 GPUModelRunner.profile_run runs max_num_batched_tokens tokens as min(max_num_seqs, T)
// dummy requests without attention, then the sampler on one row per request, on the last PP
// rank only; fused-MoE workspaces persist through it. V0 profiles with attention run and the
// torch sort sampler.
std::int64_t activation_peak(const model::Model& m, const hw::Gpu& gpu, const ParallelConfig& p,
                             const ResolvedOptions& o, bool first, bool last, bool has_dense,
                             bool has_moe) {
  const double b = model::dtype_bytes(m.dtype);
  const double T = static_cast<double>(o.max_num_batched_tokens);
  const double R = static_cast<double>(std::min(o.max_num_seqs, o.max_num_batched_tokens));
  const double h = static_cast<double>(m.hidden_size);
  const double V = static_cast<double>(padded_vocab(m.vocab_size));
  const double inter = has_dense ? static_cast<double>(m.intermediate_size) / p.tp : 0;
  const bool v1 = o.engine == Engine::kV1;
  double fwd = T * b * (kFwdIntermediate * inter + (v1 ? kFwdHiddenV1 : kFwdHiddenV0) * h);
  if (!first) fwd += 2 * T * h * b;  // IntermediateTensors: hidden_states and residual
  double sampler = 0;
  if (last) {
    sampler = v1 ? R * V * (b + 4 * kSamplerFp32Copies) +
                       std::min(R, gpu.sm_count.value) * V * 4  // Triton top-k/top-p buffer
                 : R * V * kSamplerSortBytes;
    sampler += T * h * b + kSamplerSlackGiB * kGiB;
  }
  double moe = 0;
  if (has_moe) {
    const double w = static_cast<double>(m.moe->expert_intermediate_size) /
                     (p.expert_parallel ? 1 : p.tp);
    moe = T * m.moe->experts_per_token * (std::max(2 * w, h) + w) * b;
  }
  return static_cast<std::int64_t>(std::max(fwd, sampler) + moe);
}

std::int64_t non_torch(const ParallelConfig& p, Engine e, const hw::Gpu& gpu) {
  if (const auto& rm = gpu.runtime_memory)  // measured on this kind (tpp-profile)
    return gib_bytes(p.tp > 1 ? rm->non_torch_tp_GiB : rm->non_torch_GiB);
  double g = p.tp > 1 ? kNonTorchTpGiB : (p.pp > 1 ? kNonTorchTp1PpGiB : kNonTorchTp1GiB);
  return gib_bytes(g + (e == Engine::kV0 ? kNonTorchV0ExtraGiB : 0));
}

std::string split_name(const ParallelConfig& p) {
  return fmt::format("tp={}, pp={}", p.tp, p.pp);
}

}  // namespace

namespace {

std::int64_t mamba_page_bytes(const model::Model& m, const ParallelConfig& p) {
  if (!m.linear_attention) return 0;
  // MambaStateShapeCalculator.gated_delta_net_state_shape: conv state (kernel - 1) x conv_dim/tp,
  // temporal state value_heads/tp x value_head_dim x key_head_dim, both in the model dtype
  // (mamba_cache_dtype and mamba_ssm_cache_dtype "auto").
  const auto& x = *m.linear_attention;
  const double b = model::dtype_bytes(m.dtype);
  const double conv = static_cast<double>((x.conv_kernel - 1) * (x.conv_dim() / p.tp));
  const double ssm = static_cast<double>(x.num_value_heads / p.tp * x.value_head_dim *
                                         x.key_head_dim);
  return static_cast<std::int64_t>((conv + ssm) * b);
}

}  // namespace

MemoryPlan simulate_memory(const model::Model& m, const hw::Gpu& gpu, const ParallelConfig& p,
                           const ResolvedOptions& resolved) {
  MemoryPlan plan;
  plan.parallel = p;
  ResolvedOptions o = resolved;
  if (m.linear_attention && o.engine == Engine::kV1) {
    // HybridAttentionMambaModelConfig.verify_and_update_config: the attention block grows (in
    // steps of 16 tokens) until its page holds a mamba state, and the mamba page is padded to it,
    // so that every group's page is the same size.
    const std::int64_t one = kv_bytes_per_token_layer(m, p, o.kv_bytes_per_element);
    o.block_size = std::max(o.block_size, 16 * ceil_div(mamba_page_bytes(m, p), 16 * one));
  }
  plan.total_bytes = gpu.memory_driver_bytes();
  if (o.framework == Framework::kSglang) {
    if (o.memory_fraction <= 0) o.memory_fraction = sglang_mem_fraction_static(gpu, p, o.max_num_batched_tokens);
    // What is free before the weights load: the total less the CUDA context and communicators.
    plan.budget_bytes = static_cast<std::int64_t>(std::floor(
        static_cast<double>(plan.total_bytes - non_torch(p, o.engine, gpu)) * o.memory_fraction));
  } else if (o.framework == Framework::kTrtllm) {
    plan.budget_bytes = plan.total_bytes;
  } else {
    plan.budget_bytes = static_cast<std::int64_t>(
        std::floor(static_cast<double>(plan.total_bytes) * o.gpu_memory_utilization));
  }
  plan.options = o;

  const LayerKinds kinds = layer_kinds(m, p);
  const double b = model::dtype_bytes(m.dtype);
  const std::int64_t vocab_shard = static_cast<std::int64_t>(
      static_cast<double>(padded_vocab(m.vocab_size) / p.tp * m.hidden_size) * b);
  // get_rope's cos_sin_cache [max_position, rotary_dim] in the model dtype, one per rank
  // (rotary_embedding.py; _ROPE_DICT shares it across layers). MLA rotates qk_rope_head_dim.
  // Partial rotary (GLM, MiniMax-M2) rotates rotary_dim of each head.
  const std::int64_t rotary_dim = m.mla                     ? m.mla->qk_rope_head_dim
                                  : m.attention.rotary_dim > 0 ? m.attention.rotary_dim
                                                               : m.attention.head_dim;
  const std::int64_t rope_cache =
      static_cast<std::int64_t>(static_cast<double>(m.max_position_embeddings * rotary_dim) * b);
  const std::int64_t kv_layer = kv_bytes_per_token_layer(m, p, o.kv_bytes_per_element);
  const std::int64_t graphs =
      o.enforce_eager ? 0
                      : gib_bytes(gpu.runtime_memory ? gpu.runtime_memory->cuda_graph_GiB
                                                     : kCudaGraphGiB);

  const auto parts = pp_partition(m.num_layers, p.pp, p.pp_layer_partition);
  plan.kv_groups = kv_groups(m, o.block_size);
  // V0 knows no hybrid pool: it keeps every layer's tokens (and is not run on hybrid models).
  const bool grouped = o.engine == Engine::kV1 && !plan.kv_groups.uniform_full();
  std::int64_t first_layer = 0;
  plan.gpu_blocks = INT64_MAX;
  for (std::size_t s = 0; s < parts.size(); ++s) {
    StageMemory st;
    st.pp_rank = static_cast<std::int64_t>(s);
    st.first_layer = first_layer;
    st.num_layers = parts[s];
    const bool first = s == 0, last = s + 1 == parts.size();
    std::int64_t dense = 0, moe = 0;
    for (std::int64_t l = first_layer; l < first_layer + parts[s]; ++l)
      (m.is_moe_layer(l) ? moe : dense) += 1;
    st.kv_group_size = grouped ? plan.kv_groups.stage_group_size(first_layer, parts[s])
                               : parts[s];
    first_layer += parts[s];

    // A multimodal model's image encoder is built on every PP rank (gemma3_mm.py, mllama4.py
    // construct it outside the language model's PP layers), sharded like its own layers.
    st.weights_bytes = dense * kinds.dense_bytes + moe * kinds.moe_bytes + rope_cache +
                       kinds.vision_bytes;
    if (first) st.weights_bytes += vocab_shard;  // embed_tokens
    // lm_head on the last stage (with PP and tied embeddings, a copy of embed_tokens).
    if (last && !(m.tie_word_embeddings && p.pp == 1)) st.weights_bytes += vocab_shard;
    if (last) st.weights_bytes += static_cast<std::int64_t>(m.hidden_size * b);  // final norm
    st.activation_peak_bytes = activation_peak(m, gpu, p, o, first, last, dense > 0, moe > 0);
    st.non_torch_bytes = non_torch(p, o.engine, gpu);
    st.cuda_graph_bytes = graphs;
    if (o.framework == Framework::kSglang) {
      // model_runner.py profile_max_num_token: rest = free after the weights - free before
      // them x (1 - mem_fraction_static) = (total - non-torch) x fraction - weights; the
      // activations and CUDA graphs live in the rest.
      st.kv_cache_bytes = plan.budget_bytes - st.weights_bytes;
    } else if (o.framework == Framework::kTrtllm) {
      // KvCacheCreator._cal_max_memory: (total - peak of the dummy run, weights and
      // activations, - memory outside torch) x free_gpu_memory_fraction.
      st.kv_cache_bytes = static_cast<std::int64_t>(
          static_cast<double>(plan.total_bytes - st.weights_bytes - st.activation_peak_bytes -
                              st.non_torch_bytes) * o.memory_fraction);
    } else {
      st.kv_cache_bytes = plan.budget_bytes - st.weights_bytes - st.activation_peak_bytes -
                          st.non_torch_bytes - (o.count_cuda_graphs ? graphs : 0);
    }
    st.kv_bytes_per_token = kv_layer * st.num_layers;
    const std::int64_t avail = std::max<std::int64_t>(0, st.kv_cache_bytes);
    if (o.engine == Engine::kV1) {
      // kv_cache_utils.get_num_blocks: available // page_size // num_layers, the layers of the
      // stage's largest KV-cache group when they form several (get_kv_cache_configs).
      st.gpu_blocks = avail / (o.block_size * kv_layer) / st.kv_group_size;
    } else {
      // CacheEngine.get_cache_block_size: one block spans every layer of the rank.
      const std::int64_t block = o.block_size * st.kv_bytes_per_token;
      st.gpu_blocks = avail / block;
      st.cpu_blocks = gib_bytes(o.swap_space_gib) / block;
    }
    if (st.gpu_blocks < plan.gpu_blocks) {
      plan.gpu_blocks = st.gpu_blocks;
      plan.binding_stage = s;
    }
    plan.stages.push_back(st);
  }

  plan.kv_cache_tokens = grouped ? plan.kv_groups.tokens(plan.gpu_blocks)
                                 : plan.gpu_blocks * o.block_size;
  plan.max_concurrency = grouped ? max_concurrency(plan.gpu_blocks, o, plan.kv_groups)
                                 : max_concurrency(plan.gpu_blocks, o);
  if (grouped) {
    // The longest request whose blocks over every group the pool holds (windows bound some).
    std::int64_t lo = 0, hi = model::kMaxPositions;
    while (lo < hi) {
      const std::int64_t mid = lo + (hi - lo + 1) / 2;
      if (plan.kv_groups.peak(mid, o.max_num_batched_tokens) <= plan.gpu_blocks) lo = mid;
      else hi = mid - 1;
    }
    plan.max_model_len_that_fits = lo;
  } else if (o.engine == Engine::kV1) {
    plan.max_model_len_that_fits = plan.kv_cache_tokens;
  } else {
    // V0: each of the pp virtual engines holds blocks // pp, and one request must fit in one
    // (raise_if_cache_size_invalid).
    plan.max_model_len_that_fits = plan.gpu_blocks / p.pp * o.block_size;
    if (p.pp > 1)
      plan.notes.push_back(fmt::format("V0 splits the blocks over {} virtual engines: {} each",
                                       p.pp, plan.gpu_blocks / p.pp));
  }

  if (o.framework == Framework::kSglang && o.derive_max_num_seqs) {
    // tp_worker.py: max_running_requests = min(max_total_num_tokens // 2, req_to_token_pool's
    // size), the pool min(max(tokens / context_len x 512, 2048), 4096) (init_memory_pool).
    const std::int64_t tokens = plan.kv_cache_tokens;
    const std::int64_t reqs = std::min<std::int64_t>(
        std::max<std::int64_t>(static_cast<std::int64_t>(static_cast<double>(tokens) /
                                                         static_cast<double>(o.max_model_len) * 512),
                               2048),
        kSglangMaxRequests);
    plan.options.max_num_seqs = std::max<std::int64_t>(1, std::min(tokens / 2, reqs));
  }
  const StageMemory& bind = plan.stages[plan.binding_stage];
  const std::string where =
      split_name(p) + (p.pp > 1 ? fmt::format(" (PP stage {})", bind.pp_rank) : "");
  const std::string offer =
      o.framework == Framework::kSglang
          ? fmt::format("SGLang offers {} at mem_fraction_static {:.3f}", gib(plan.budget_bytes), o.memory_fraction)
      : o.framework == Framework::kTrtllm
          ? fmt::format("TensorRT-LLM takes {:.2f} of what is left", o.memory_fraction)
          : fmt::format("the GPU offers {} at utilization {:.2f}", gib(plan.budget_bytes),
                        o.gpu_memory_utilization);
  if (bind.weights_bytes > plan.budget_bytes) {
    plan.why_not = fmt::format("weights need {} per GPU at {}; {}", gib(bind.weights_bytes),
                               where, offer);
  } else if (bind.kv_cache_bytes <= 0 || plan.gpu_blocks == 0) {
    plan.why_not = fmt::format(
        "weights {} + activations {} + non-torch {}{} leave no room for the KV cache at {}; {} "
        "({} short)",
        gib(bind.weights_bytes), gib(bind.activation_peak_bytes), gib(bind.non_torch_bytes),
        o.count_cuda_graphs ? " + CUDA graphs " + gib(bind.cuda_graph_bytes) : "", where, offer,
        gib(std::max<std::int64_t>(0, -bind.kv_cache_bytes)));
  } else if (plan.max_model_len_that_fits < o.max_model_len) {
    plan.why_not = fmt::format(
        "the KV cache holds {} tokens at {}, fewer than one request of max_model_len {}; the "
        "largest max_model_len that fits is {}",
        plan.kv_cache_tokens, where, o.max_model_len, plan.max_model_len_that_fits);
  }
  plan.fits = plan.why_not.empty();
  if (!o.count_cuda_graphs && graphs > 0 &&
      graphs > static_cast<std::int64_t>(static_cast<double>(plan.total_bytes) *
                                         (1 - o.gpu_memory_utilization)) -
                   gib_bytes(kCudaContextGiB))
    plan.notes.push_back(fmt::format(
        "CUDA graphs (about {}) may not fit beside the CUDA context in the {} outside the "
        "budget; lower --gpu-memory-utilization or use --enforce-eager",
        gib(graphs),
        gib(static_cast<std::int64_t>(static_cast<double>(plan.total_bytes) *
                                      (1 - o.gpu_memory_utilization)))));
  return plan;
}

// Bytes of one token's K and V (or MLA latent) in one layer on one rank:
// vLLM AttentionSpec.page_size_bytes / block_size = 2 x kv heads on the rank x head size x
// dtype, kv heads = max(1, total / tp) (ModelConfig.get_num_kv_heads); MLAAttentionSpec:
// 1 x (kv_lora_rank + qk_rope_head_dim) x dtype, the same on every TP rank.
std::int64_t indexer_kv_bytes_per_token(const model::Model& m) {
  return m.indexer ? m.indexer->head_dim + m.indexer->head_dim / 128 * 4 : 0;
}

std::int64_t kv_bytes_per_token_layer(const model::Model& m, const ParallelConfig& p,
                                      double element_bytes) {
  if (m.mla && m.indexer) {
    // DeepSeek-V3.2: an fp8 cache is fp8_ds_mla, 656 bytes a token (512 fp8 latent values,
    // 4 fp32 scales, 64 bf16 rope values); beside it, in the same uniform-type group, the
    // indexer's K cache of head_dim fp8 values and an fp32 scale per 128 (DeepseekV32IndexerCache).
    const std::int64_t mla = element_bytes == 1
                                 ? m.mla->kv_lora_rank + m.mla->kv_lora_rank / 128 * 4 +
                                       2 * m.mla->qk_rope_head_dim
                                 : static_cast<std::int64_t>((m.mla->kv_lora_rank +
                                                              m.mla->qk_rope_head_dim) *
                                                             element_bytes);
    return mla + indexer_kv_bytes_per_token(m);
  }
  if (m.mla)
    return static_cast<std::int64_t>((m.mla->kv_lora_rank + m.mla->qk_rope_head_dim) *
                                     element_bytes);
  const std::int64_t heads = std::max<std::int64_t>(1, m.attention.num_kv_heads / p.tp);
  return static_cast<std::int64_t>(2 * heads * m.attention.head_dim * element_bytes);
}

double max_concurrency(std::int64_t blocks, const ResolvedOptions& o) {
  if (o.engine == Engine::kV1)
    return static_cast<double>(blocks) /
           static_cast<double>(ceil_div(o.max_model_len, o.block_size));
  return static_cast<double>(blocks * o.block_size) / static_cast<double>(o.max_model_len);
}

double max_concurrency(std::int64_t blocks, const ResolvedOptions& o, const KvGroups& groups) {
  if (o.engine != Engine::kV1 || groups.uniform_full()) return max_concurrency(blocks, o);
  return static_cast<double>(blocks) /
         static_cast<double>(groups.peak(o.max_model_len, o.max_num_batched_tokens));
}

std::vector<ParallelConfig> enumerate_splits(const model::Model& m, std::int64_t gpus,
                                             bool expert_parallel) {
  std::vector<ParallelConfig> out;
  for (std::int64_t tp = 1; tp <= gpus; ++tp) {
    if (gpus % tp != 0) continue;
    for (std::int64_t pp = 1; pp <= gpus / tp && pp <= m.num_layers; ++pp) {
      if ((gpus / tp) % pp != 0) continue;
      ParallelConfig p;
      p.tp = tp;
      p.pp = pp;
      p.dp = gpus / (tp * pp);
      p.expert_parallel = expert_parallel;
      if (!check_parallel(m, p)) out.push_back(p);
    }
  }
  return out;
}

std::optional<ParallelConfig> smallest_fitting_split(const model::Model& m, const hw::Gpu& gpu,
                                                     std::int64_t max_gpus,
                                                     std::int64_t gpus_per_node,
                                                     const ResolvedOptions& o,
                                                     bool expert_parallel) {
  std::vector<ParallelConfig> cands;
  for (std::int64_t tp = 1; tp <= max_gpus; ++tp)
    for (std::int64_t pp = 1; tp * pp <= max_gpus && pp <= m.num_layers; ++pp) {
      ParallelConfig p;
      p.tp = tp;
      p.pp = pp;
      p.expert_parallel = expert_parallel;
      if (!check_parallel(m, p)) cands.push_back(p);
    }
  std::sort(cands.begin(), cands.end(), [&](const ParallelConfig& a, const ParallelConfig& c) {
    auto key = [&](const ParallelConfig& x) {
      return std::make_tuple(x.tp * x.pp, x.tp > gpus_per_node, x.pp);
    };
    return key(a) < key(c);
  });
  for (const auto& p : cands)
    if (simulate_memory(m, gpu, p, o).fits) return p;
  return std::nullopt;
}

}  // namespace tpp::sim
