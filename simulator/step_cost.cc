#include "simulator/step_cost.h"

#include "simulator/collective.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string_view>

#include "model/tensors.h"

namespace tpp::sim {
namespace {

// Tensor-core GEMMs work on tiles of 16 rows (the m16n8k16 MMA shape of Ampere and Hopper):
// a GEMM of M tokens costs the FLOPs of M rounded up to 16. This is the shape dependence of the
// achievable rate at small batches; large shapes run at the efficiency of Efficiency::compute.
constexpr double kTileRows = 16;
// Kernels a layer launches (vLLM Llama layer: 2 norms, qkv, rope, attention, o, all-reduce,
// gate_up, act, down, all-reduce, residual adds; a MoE layer adds router, top-k, align,
// 2 grouped GEMMs, the combine and the shared expert). Counted from the model code.
constexpr double kKernelsDense = 12;
constexpr double kKernelsMoe = 20;
// Cost per kernel launch, eager and replayed from a CUDA graph: bench/gpu_probe.cu on an H100
// SXM (driver 580.159, 2026-11-28), 1000 empty kernels back to back, median of 3 runs of 21:
// 3.74 us eager (3.50-4.16), 0.79 us from a graph (0.785-0.790).
constexpr double kLaunchEagerS = 3.74e-6;
constexpr double kLaunchGraphS = 0.79e-6;
// vLLM captures CUDA graphs for batches of up to 512 tokens (CompilationConfig
// max_capture_size default); larger batches run eagerly.
constexpr std::int64_t kMaxCaptureTokens = 512;
// Bytes an element-wise pass moves per token, in units of hidden and intermediate activations:
// 2 RMSNorms (read + write), 2 residual adds (2 reads + 1 write), rope on q and k, and the
// SiLU-and-mul (read 2 I, write I): about 10 h + 3 I.
constexpr double kElemHidden = 10;
constexpr double kElemInter = 3;

// Paged decode attention: a fixed latency per call (a layer's, for the whole batch) and then the
// KV cache streamed below copy bandwidth. FlashAttention-2 paged decode on an H100 SXM, 64
// sequences, 64 query / 8 KV heads, head dim 128, page 256, bf16 (nvbench in microsoft/onnxruntime
// PR #21414, 2024-08-29): 28.780 us at 128 tokens a sequence (33.5 MB of K and V) and 43.563 us
// at 256 (67.1 MB): the line through the two streams 2.27 TB/s, 67.8% of the datasheet's
// 3.35 TB/s, and takes 14.0 us at zero bytes. The same kernel family at one sequence of 1024 tokens: 12.3-14.8 us
// (vllm-project/flash-attention PR #63, H100). FlashAttention-3 with pages of 8 tokens and 16
// sequences streamed less (1.85 TB/s at 4000 tokens; Dao-AILab/flash-attention issue #1572): the
// GQA batch's figure is the one that matches serving batches. Other GPUs take the same share of
// their own peak until measured.
constexpr double kDecodeKvBytes128 = 33554432.0;  // 64 x 128 tokens x 8 heads x 128 x 2 x 2 B
constexpr double kDecodeStreamBps = kDecodeKvBytes128 / (43.563e-6 - 28.780e-6);
constexpr double kAttentionLatencyS = 28.780e-6 - kDecodeKvBytes128 / kDecodeStreamBps;
constexpr double kDecodeAttentionShare = kDecodeStreamBps / 3.35e12;
// Prefill attention's share of the bf16 peak by key tokens a sequence: FlashAttention-3 forward,
// bf16, head dim 128, H100 SXM: 430.3, 517.1, 565.5, 590.2, 614.2, 620.7 TFLOP/s at 512 ... 16384
// tokens (pytorch/benchmark commit ff65cb67, PR #2391), of 989. Flat beyond the ends.
constexpr std::pair<double, double> kPrefillAttentionShare[] = {
    {512, 430.32 / 989}, {1024, 517.10 / 989}, {2048, 565.54 / 989},
    {4096, 590.23 / 989}, {8192, 614.23 / 989}, {16384, 620.73 / 989}};
// A fused MoE layer (vLLM's Triton fused_experts: align, the two grouped GEMMs, the activation
// and the sum, timed together by benchmarks/kernels/benchmark_moe.py) takes a fixed time beyond
// reading the experts' weights, which is most of it at small batches. Its time at batch 1 less
// the weights the top-k experts read at the step model's weight-read bandwidth (0.70 of peak):
// - Hopper: Qwen3-235B-A22B fp8 TP8 on an H200 (E=128, N=192; 8 experts x 3 x 192 x 4096 bytes
//   = 18.9 MB): 31.70 us (sgl-project/sglang PR #11730, untuned), 31.70 - 18.9 MB / 3.36 TB/s
//   = 26.1 us; Qwen3-Next-80B fp8 TP4 on an H100 (E=512, N=128, top-10, hidden 2048: 7.9 MB):
//   29.45 us (vllm-project/vllm PR #44830), 29.45 - 7.9 MB / 2.35 TB/s = 26.1 us;
// - Ampere: Qwen3-30B-A3B bf16 on an A100 PCIe 40GB (E=128, N=768, top-8, hidden 2048:
//   75.5 MB): 109.21 us (vllm-project/vllm PR #19049, default config), 109.21 - 75.5 MB /
//   (1.555 TB/s, the 40 GB PCIe part's datasheet bandwidth, x 0.70) = 39.85 us.
// GPUs of compute capability 9.0 and above take the Hopper figure, those below the Ampere one
// (Ada included), until measured.
constexpr double kMoeLatencyHopperS =
    31.70e-6 - 8 * 3 * 192 * 4096.0 / (4.8e12 * Efficiency{}.gemm_memory);
constexpr double kMoeLatencyAmpereS =
    109.21e-6 - 8 * 3 * 768 * 2048 * 2.0 / (1.555e12 * Efficiency{}.gemm_memory);
// The sampler's passes over the logits of each sequence on the last stage, in bytes a vocabulary
// entry: vLLM V1 (vllm/v1/sample/sampler.py) casts the bf16 logits to fp32 (read 2, write 4) and
// takes the greedy argmax or the softmax over them (read 4).
constexpr double kSamplerBytesPerLogit = 10;
// Host time of an engine step, by engine:
// - vLLM V1: 5-6 ms between two decode steps at 256 sequences (Llama-2-7B, CUDA graphs, before
//   async scheduling; vllm-project/vllm issue #10634, 2024-11-25): 5.5 ms / 256 = 21.5 us a
//   sequence; and the input preparation alone about 10% of a 2.73 ms TPOT at small batch
//   (Llama 3.2 1B, vllm-project/vllm PR #17866): 0.25 ms a step. With async scheduling the gap
//   between GPU steps fell to 150-170 us at 256 sequences (PR #11133): 0.16 ms a step.
// - TensorRT-LLM (PyTorch backend): 45.11 ms of host work an iteration at about 1536 requests a
//   rank (GPT-OSS-120B on GB200, ADP2, max_batch_size 1536; NVIDIA/TensorRT-LLM PR #10273,
//   2025-12-24): 29.4 us a request, overlapped with the GPU by its overlap scheduler.
constexpr double kVllmHostStepS = 0.25e-3;
constexpr double kVllmHostSeqS = 5.5e-3 / 256;
constexpr double kVllmAsyncGapS = 0.16e-3;
constexpr double kTrtllmHostSeqS = 45.11e-3 / 1536;

// DeepSeek-V3.2's sparse attention as vLLM runs it (FLASHMLA_SPARSE,
// vllm/v1/attention/backends/mla/flashmla_sparse.py): MQA over the latent cache (scores over
// kv_lora_rank + rope, values over kv_lora_rank) for every query token, over the indexer's
// index_topk slots whatever the context (FlashMLA's sparse kernels compute over the whole
// [s_q, h_q, topk] index set, invalid slots masked: deepseek-ai/FlashMLA README), with the query
// heads a rank holds padded up to the kernel's: `self.padding = 128 if
// current_platform.is_device_capability(100) else 64`. The kernel's rate: "up to 640 TFlops
// during prefilling" on an H800 SXM5 (deepseek-ai/FlashMLA README, 2025-09-29), of its 989
// bf16 dense: 0.65 of the bf16 peak.
constexpr double kSparseMlaShare = 640.0 / 989;

double round_up(double x, double to) { return std::ceil(x / to) * to; }

// An fp8 GEMM's share of its peak relative to a bf16 GEMM's (Gpu::fp8_mamf_tflops): 1 when the
// GPU file does not give both.
double fp8_share(const hw::Gpu& g) {
  if (g.fp8_mamf_tflops.value <= 0 || g.bf16_mamf_tflops.value <= 0) return 1.0;
  return (g.fp8_mamf_tflops.value / g.fp8_dense_tflops.value) /
         (g.bf16_mamf_tflops.value / g.bf16_dense_tflops.value);
}

// FP4 weights (MXFP4, NVFP4) where the GPU has no FP4 tensor cores run vLLM's weight-only
// Marlin kernels, which dequantise to bf16 inside the GEMM (vllm/model_executor/layers/
// quantization/mxfp4.py: Marlin is the SM90 default of 0.10.2 and 0.11.0 without OpenAI's
// triton_kernels; utils/marlin_utils_fp4.py for NVFP4). Their compute, measured: vLLM's MXFP4
// Marlin MoE on an H20 (Mixtral's experts, E 8, hidden 4096, intermediate 14336, top-2, bf16
// activations; flagos-ai/FlagGems PR #4483, 2026-07-02, its vLLM column) ran 16384 tokens in
// 144.58 ms, 2 x 16384 x 2 x 3 x 4096 x 14336 FLOPs = 79.9 TFLOP/s, 0.54 of the H20's 148
// TFLOP/s bf16 dense (hardware_profiles/gpus/H20-96GB.yaml). The H20's tensor cores are a
// seventh of an H100's and its dequantisation is no cheaper, so on an H100 this is an upper
// bound. Their weight reads keep the step model's share (Efficiency::gemm_memory): the same
// H20 run's single token (187 MB in 0.144 ms, 0.33 of its HBM) is not carried over, because
// on H100 it made the InferenceX gpt-oss Marlin decode runs (docs/validation.md) 40-90% slow.
constexpr double kFp4WeightOnlyCompute = 79.9 / 148;
// NVFP4 on FP4 tensor cores (W4A4), relative to a bf16 GEMM's share of its peak, as fp8_share()
// is: vLLM's CUTLASS NVFP4 GEMM with its activation quantisation ran 3039 TFLOP/s at
// M 16384, N 6144, K 4096, and torch's bf16 GEMM 1421 at M 8192 (its best) in the same table
// (vllm-project/vllm PR #20646, 2025-07-08, the "Before" table, untuned; a B200-class GPU, the
// kernel needs SM100): (3039 / 9000) / (1421 / 2250) = 0.53. cuBLASLt's MXF4 GEMM at 8192^3 on
// a B200 reached 5239 of 9000 (deepseek-ai/DeepGEMM PR #348): the library's ceiling, not what
// vLLM runs.
constexpr double kFp4RelativeShare = (3039.0 / 9000) / (1421.0 / 2250);

bool fp4_weight_only(const hw::Gpu& g, const model::Model& m, bool quantized) {
  return quantized && m.quant.weight_dtype == model::DType::kFP4E2M1 && !g.has_fp4();
}

// NVFP4 on FP4 tensor cores: weights and activations in FP4 (W4A4, ModelOpt's CUTLASS and
// FlashInfer kernels). vLLM's MXFP4 MoE on Blackwell keeps its activations bf16 (FlashInfer's
// TRT-LLM MXFP4 x bf16 kernel, mxfp4.py's default; MXFP8 activations are opt-in), so it
// computes at the bf16 rate and reads 4.25-bit weights.
bool fp4_tensor_cores(const hw::Gpu& g, const model::Model& m, bool quantized) {
  return quantized && m.quant.weight_dtype == model::DType::kFP4E2M1 && g.has_fp4() &&
         m.quant.method == model::QuantMethod::kNvfp4;
}

double peak_flops(const hw::Gpu& g, const model::Model& m, bool quantized) {
  // float32 math runs on the FP32 units where the GPU file gives them (a file without the figure,
  // such as tpp-profile's CPU files, has one compute figure: its bf16 one).
  const double bf16 = (m.dtype == model::DType::kF16 ? g.fp16_dense_tflops.value
                       : m.dtype == model::DType::kF32 && g.fp32_tflops.value > 0
                           ? g.fp32_tflops.value
                           : g.bf16_dense_tflops.value) * 1e12;
  if (!quantized) return bf16;
  const auto w = m.quant.weight_dtype;
  // fp8 weights run fp8 GEMMs where the GPU has them (w8a8 with dynamic activation scales);
  // on A100 vLLM's weight-only fp8 kernels (Marlin) read 1 byte and compute in bf16.
  if (w == model::DType::kFP8E4M3 && g.has_fp8)
    return g.fp8_dense_tflops.value * 1e12 * fp8_share(g);
  // compressed-tensors int8 w8a8 runs int8 GEMMs; AWQ/GPTQ are weight-only (bf16/fp16 math).
  if (w == model::DType::kINT8 && m.quant.method == model::QuantMethod::kCompressedTensors)
    return g.int8_dense_tops.value * 1e12;
  if (fp4_tensor_cores(g, m, quantized)) return g.fp4_dense_tflops.value * 1e12;
  return bf16;
}

// The operator table's GEMM dtype for a weight (OperatorTables::gemm keys), as peak_flops
// picks the math: bf16/fp16 tensor cores ("bfloat16": fp16 runs at the same rate), fp8 with one
// scale a tensor ("fp8") or DeepSeek's 128x128 block scales ("fp8_block").
const char* table_dtype(const hw::Gpu& g, const model::Model& m, bool quantized) {
  // `quantized`: a weight the checkpoint's quantization applies to; without one it is the
  // model's dtype like any other.
  if (!quantized || m.quant.method == model::QuantMethod::kNone)
    return m.dtype == model::DType::kBF16 || m.dtype == model::DType::kF16 ? "bfloat16" : nullptr;
  if (m.quant.weight_dtype == model::DType::kFP8E4M3 && g.has_fp8)
    return m.quant.block_rows > 0 ? "fp8_block" : "fp8";
  return nullptr;
}

// The series of `key` measured at exactly `heads` query heads on a GPU (and `head_dim`, where
// it is not 0): MLA's tables are taken only at the shape they were measured for.
const hw::OperatorTables::AttentionSeries* exact_series(
    const std::map<std::string, std::vector<hw::OperatorTables::AttentionSeries>>& m,
    const std::string& key, double heads, double head_dim) {
  auto it = m.find(key);
  if (it == m.end()) return nullptr;
  for (const auto& s : it->second)
    if (static_cast<double>(s.heads) == heads &&
        (head_dim == 0 || static_cast<double>(s.head_dim) == head_dim))
      return &s;
  return nullptr;
}

}  // namespace

namespace {

// Keys the queries at positions [0, n) attend to in all, each seeing `window` keys at most
// (sliding: min(x + 1, W)) or those of its own chunk so far (chunked: x mod C + 1).
double windowed_keys(double n, double window, bool chunked) {
  if (chunked) {
    const double whole = std::floor(n / window), r = n - whole * window;
    return whole * window * (window + 1) / 2 + r * (r + 1) / 2;
  }
  if (n <= window) return n * (n + 1) / 2;
  return window * (window + 1) / 2 + (n - window) * window;
}

}  // namespace

void BatchShape::add(std::int64_t new_tokens, std::int64_t context) {
  tokens += new_tokens;
  seqs += 1;
  const double q = static_cast<double>(new_tokens), c = static_cast<double>(context);
  const double w = static_cast<double>(window);
  if (new_tokens == 1 && context > 0) {
    decode_tokens += 1;
    decode_context += c + 1;
    if (window > 0)
      windowed_decode_context += chunked ? std::fmod(c, w) + 1 : std::min(c + 1, w);
  } else {
    prefill_tokens += new_tokens;
    prefill_seqs += 1;
    prefill_pairs += q * c + q * (q + 1) / 2;
    prefill_context += c;
    if (window > 0) {
      windowed_prefill_pairs += windowed_keys(c + q, w, chunked) - windowed_keys(c, w, chunked);
      windowed_prefill_context += chunked ? std::fmod(c, w) : std::min(c, w - 1);
    }
  }
}

BatchShape BatchShape::windowed() const {
  BatchShape b = *this;
  if (window <= 0) return b;
  b.prefill_pairs = windowed_prefill_pairs;
  b.prefill_context = windowed_prefill_context;
  b.decode_context = windowed_decode_context;
  return b;
}

StepCostModel::StepCostModel(const model::Model& loaded, const hw::Cluster& cluster,
                             const ParallelConfig& p, const ResolvedOptions& o, Efficiency e)
    : m_(loaded), c_(cluster), coll_(cluster), nccl_(cluster.transport == "nccl" || cluster.transport == "rccl"), p_(p), o_(o), e_(e) {
  const hw::Gpu& g = c_.gpu;
  act_bytes_ = model::dtype_bytes(m_.dtype);
  // The GPU file's measured MAMF replaces the default share of the bf16 peak a GEMM reaches
  // (a caller's own Efficiency, and a cluster's measured GEMM table, still win).
  if (g.bf16_mamf_tflops.value > 0 && e_.compute == Efficiency{}.compute)
    e_.compute = g.bf16_mamf_tflops.value / g.bf16_dense_tflops.value;
  bf16_flops_ = peak_flops(g, m_, false) * e_.compute;
  // Measured memory efficiencies in the cluster file replace the defaults.
  if (c_.efficiency && c_.efficiency->memory > 0) e_.memory = c_.efficiency->memory;
  if (c_.efficiency && c_.efficiency->gemm_memory > 0) e_.gemm_memory = c_.efficiency->gemm_memory;
  // A measured launch cost (tpp-profile, bench/gpu_probe) replaces the H100 figures.
  launch_eager_s_ = c_.efficiency && c_.efficiency->launch_us > 0 ? c_.efficiency->launch_us * 1e-6
                                                                  : kLaunchEagerS;
  launch_graph_s_ = c_.efficiency && c_.efficiency->launch_graph_us > 0
                        ? c_.efficiency->launch_graph_us * 1e-6
                        : kLaunchGraphS;
  mem_bw_ = g.hbm_bandwidth_GBps.value * 1e9 * e_.memory;
  elem_bw_ = c_.efficiency && c_.efficiency->elementwise > 0
                 ? g.hbm_bandwidth_GBps.value * 1e9 * c_.efficiency->elementwise
                 : mem_bw_;
  // Measured attention multipliers (tpp-profile) replace the published kernel curves.
  attn_decode_ = c_.efficiency ? c_.efficiency->attention_decode : 0.0;
  attn_prefill_ = c_.efficiency ? c_.efficiency->attention_prefill : 0.0;
  hbm_peak_ = g.hbm_bandwidth_GBps.value * 1e9;
  bf16_peak_ = peak_flops(g, m_, false);
  gemm_bw_ = g.hbm_bandwidth_GBps.value * 1e9 * e_.gemm_memory;
  kv_bytes_token_layer_ =
      static_cast<double>(kv_bytes_per_token_layer(m_, p_, o_.kv_bytes_per_element));
  // The engines the operator tables time run each of vLLM's merged parameters as one GEMM
  // (model::vllm_parameter: q, k and v in QKVParallelLinear, gate and up in
  // MergedColumnParallelLinear): one measured call each, not three or two.
  const bool merge = o_.operator_tables != nullptr;
  auto gemms_of = [&](std::int64_t layer) {
    std::vector<Gemm> out;
    std::string last;  // the vLLM parameter the last GEMM belongs to
    for (const auto& t : model::layer_tensors(m_, layer)) {
      if (t.cols <= 1) continue;  // norms and biases: element-wise
      Shard s = shard_of(t, m_, p_);
      model::TensorSpec sh = t;
      sh.rows = s.rows;
      sh.cols = s.cols;
      sh.count = s.count;
      const bool expert = t.split == model::Split::kExpertColumn ||
                          t.split == model::Split::kExpertRow;
      const double share = fp4_weight_only(g, m_, t.quantized)    ? kFp4WeightOnlyCompute
                           : fp4_tensor_cores(g, m_, t.quantized) ? e_.compute * kFp4RelativeShare
                                                                  : e_.compute;
      Gemm gm{static_cast<double>(s.rows), static_cast<double>(s.cols),
              static_cast<double>(model::storage_bytes(sh, m_)),
              peak_flops(g, m_, t.quantized) * share, expert,
              static_cast<double>(s.count), table_dtype(g, m_, t.quantized),
              t.component == model::Component::kAttention};
      const model::VllmParameter param = model::vllm_parameter(t.name, m_.mla.has_value());
      if (merge && !expert && param.part > 0 && param.name == last && out.back().cols == gm.cols &&
          out.back().table_dtype == gm.table_dtype) {
        out.back().rows += gm.rows;
        out.back().weight_bytes += gm.weight_bytes;
        continue;
      }
      out.push_back(gm);
      last = param.name;
    }
    return out;
  };
  for (std::int64_t l = 0; l < m_.num_layers; ++l) {
    const bool linear = m_.layer_attention_of(l) == model::LayerAttention::kLinear;
    auto& slot = m_.is_moe_layer(l) ? (linear ? linear_moe_ : moe_)
                                    : (linear ? linear_dense_ : dense_);
    if (slot.empty()) slot = gemms_of(l);
  }
  // The engine's measured attention kernels (a cluster's measured attention figures win): for
  // GQA/MHA the series with this head size and KV dtype; for MLA the whole attention module
  // measured for DeepSeek-V3's shape (projections, attention, o_proj), where the model has that
  // shape and the table this GPU's head count, KV dtype and the projections' GEMM dtype (it then
  // stands for the attention GEMMs too), else the bare MLA kernel over the latent cache (SGLang's,
  // TensorRT-LLM's tables; the projections stay GEMMs).
  if (const auto& t = o_.operator_tables; t && published_kernels()) {
    const double tp = static_cast<double>(p_.tp);
    // (An FP4 KV cache has no measured series: the curves time it, reading its bytes.)
    const char* kv = o_.kv_bytes_per_element == 1 ? "fp8" : "bfloat16";
    if (o_.kv_cache_dtype == model::KvCacheDType::kNvfp4) {
    } else if (!m_.mla) {
      table_heads_ = static_cast<double>(m_.attention.num_heads) / tp;
      // KV heads are replicated where the TP size exceeds them (vLLM: one a rank at least).
      table_kv_heads_ = std::max(1.0, static_cast<double>(m_.attention.num_kv_heads) / tp);
      const double d = static_cast<double>(m_.attention.head_dim);
      table_decode_ = t->attention_series(true, kv, d, table_heads_, table_kv_heads_);
      table_prefill_ = t->attention_series(false, kv, d, table_heads_, table_kv_heads_);
    } else if (m_.attention.num_heads % p_.tp == 0 && !m_.indexer) {  // (sparse: sparse_mla_time)
      const auto& x = *m_.mla;
      const double heads = static_cast<double>(m_.attention.num_heads / p_.tp);
      const hw::OperatorTables::AttentionSeries *dec = nullptr, *pre = nullptr;
      // The projections' GEMM dtype: that of the layer's first attention GEMM.
      const auto& layer = dense_.empty() ? moe_ : dense_;
      const auto proj = std::find_if(layer.begin(), layer.end(), [](const Gemm& y) { return y.attention; });
      if (const auto& mm = t->mla_module;
          mm && proj != layer.end() && proj->table_dtype && mm->hidden == m_.hidden_size &&
          mm->q_lora_rank == x.q_lora_rank && mm->kv_lora_rank == x.kv_lora_rank &&
          mm->qk_nope_head_dim == x.qk_nope_head_dim &&
          mm->qk_rope_head_dim == x.qk_rope_head_dim && mm->v_head_dim == x.v_head_dim) {
        const std::string key = std::string(kv) + "/" + proj->table_dtype;
        dec = exact_series(mm->decode, key, heads, 0);
        pre = exact_series(mm->prefill, key, heads, 0);
        table_mla_module_ = dec && pre;
      }
      if (!table_mla_module_) {
        const double latent = static_cast<double>(x.kv_lora_rank + x.qk_rope_head_dim);
        dec = exact_series(t->mla_decode, kv, heads, latent);
        pre = exact_series(t->mla_prefill, kv, heads, latent);
      }
      if (dec && pre) {
        table_decode_ = dec;
        table_prefill_ = pre;
        table_heads_ = heads;
        table_kv_heads_ = 1;
      }
    }
  }
  // The engine's measured fused MoE layer for exactly this model shape, expert dtype and
  // sharding. Its tokens are routed by a power law, not uniformly: the busiest expert sets the
  // time (alpha as aiconfigurator's own models pick it: 1.01 for the DeepSeek family,
  // sdk/models/deepseek.py; 1.2 for other MoE models, sdk/models/moe.py).
  if (const auto& t = o_.operator_tables; t && m_.moe) {
    const auto expert = std::find_if(moe_.begin(), moe_.end(), [](const Gemm& x) { return x.expert; });
    if (expert != moe_.end() && expert->table_dtype) {
      const auto& moe = *m_.moe;
      const std::int64_t tp = p_.expert_parallel ? 1 : p_.tp, ep = p_.ep();
      table_moe_ = t->moe_series(expert->table_dtype, m_.hidden_size, moe.expert_intermediate_size,
                                 moe.experts_per_token, moe.num_experts, tp, ep,
                                 m_.mla ? "power_law_1.01" : "power_law_1.2");
      table_moe_tokens_ = p_.expert_parallel ? static_cast<double>(p_.dp) : 1.0;
    }
  }
  // ParallelLMHead [padded vocab / tp, hidden], unquantized.
  const double vocab_rows = static_cast<double>(padded_vocab(m_.vocab_size) / p_.tp);
  const double h = static_cast<double>(m_.hidden_size);
  lm_head_ = Gemm{vocab_rows, h, vocab_rows * h * act_bytes_, bf16_flops_, false, 1,
                  table_dtype(g, m_, false)};
  const auto parts = pp_partition(m_.num_layers, p_.pp, p_.pp_layer_partition);
  std::int64_t layer = 0;
  for (std::size_t s = 0; s < parts.size(); ++s) {
    Stage st;
    for (std::int64_t l = layer; l < layer + parts[s]; ++l) {
      const bool moe = m_.is_moe_layer(l);
      (moe ? st.moe_layers : st.dense_layers) += 1;
      const auto kind = m_.layer_attention_of(l);
      if (kind == model::LayerAttention::kLinear) (moe ? st.linear_moe : st.linear_dense) += 1;
      // DeepSeek-V3.2's layers read index_topk tokens at most: timed as a window of that many.
      else if (kind != model::LayerAttention::kFull || m_.indexer) st.windowed_layers += 1;
    }
    layer += parts[s];
    st.first = s == 0;
    st.last = s + 1 == parts.size();
    // Layout DP x PP x TP with TP innermost (vLLM): does any rank of this stage send to a
    // rank of the next stage on another node?
    const std::int64_t gpn = c_.gpus_per_node, tp = p_.tp, si = static_cast<std::int64_t>(s);
    for (std::int64_t t = 0; t < tp && !st.last; ++t)
      st.send_cross_node |= (si * tp + t) / gpn != ((si + 1) * tp + t) / gpn;
    stages_.push_back(std::move(st));
  }
  for (std::size_t s = 0; s < stages_.size(); ++s)
    kind_of_.push_back(static_cast<std::size_t>(std::find(stages_.begin(), stages_.end(), stages_[s]) - stages_.begin()));
  decode_cache_.resize(stages_.size());
}

namespace {

// Linear between the points (x increasing), flat beyond the ends.
template <class It, class X, class Y>
double interpolate(It first, It last, double x, X xs, Y ys) {
  if (x <= xs(*first)) return ys(*first);
  for (It a = first, b = std::next(first); b != last; ++a, ++b)
    if (x <= xs(*b)) return ys(*a) + (x - xs(*a)) / (xs(*b) - xs(*a)) * (ys(*b) - ys(*a));
  return ys(*std::prev(last));
}

// A (bytes, tokens) table: the curve over tokens of each measured size, then linear in
// log(bytes) between the two sizes around this one (flat beyond).
double by_size(const std::vector<hw::MeasuredEfficiency::SizedPoint>& t, double bytes, double tokens) {
  using P = hw::MeasuredEfficiency::SizedPoint;
  std::vector<std::pair<double, double>> curves;  // (log bytes, value at `tokens`)
  for (auto a = t.begin(); a != t.end();) {
    auto b = a;
    while (b != t.end() && b->weight_bytes == a->weight_bytes) ++b;
    curves.emplace_back(std::log(a->weight_bytes),
                        interpolate(a, b, tokens, [](const P& p) { return p.tokens; },
                                    [](const P& p) { return p.fraction; }));
    a = b;
  }
  return interpolate(curves.begin(), curves.end(), std::log(std::max(1.0, bytes)),
                     [](const auto& c) { return c.first; }, [](const auto& c) { return c.second; });
}

}  // namespace

double StepCostModel::compute_efficiency(double tokens, double weight_bytes) const {
  if (!c_.efficiency) return 1.0;  // already in flops_per_s
  const auto& e = *c_.efficiency;
  double eff;
  if (!e.gemm_by_size.empty()) {
    eff = by_size(e.gemm_by_size, weight_bytes, tokens);
  } else if (!e.gemm.empty()) {
    eff = interpolate(e.gemm.begin(), e.gemm.end(), tokens, [](const auto& p) { return p.first; },
                      [](const auto& p) { return p.second; });
  } else {
    return 1.0;
  }
  return eff / e_.compute;  // flops_per_s carries e_.compute; replace it by the measured one
}

double StepCostModel::tile_rows() const {
  return c_.efficiency && c_.efficiency->tile_rows > 0 ? c_.efficiency->tile_rows : kTileRows;
}

double StepCostModel::table_gemm_s(const Gemm& g, double tokens) const {
  // The table times each shape and dtype; a cluster file's measured GEMM curve (bench/gpu_probe:
  // one shape over M; tpp-profile's CPU sweep) applies where the table has no such dtype.
  const auto& t = o_.operator_tables;
  if (!t || !g.table_dtype) return -1;
  // The shape's roofline on the datasheet peaks: the measured time is interpolated as a multiple
  // of it between grid shapes (OperatorTables::gemm_s).
  const double peak = g.flops_per_s / e_.compute, w = g.weight_bytes / (g.rows * g.cols);
  return t->gemm_s(g.table_dtype, tokens, g.rows, g.cols, [&](double m, double n, double k) {
    return std::max(2 * m * n * k / peak, (n * k * w + m * (n + k) * act_bytes_) / hbm_peak_);
  });
}

double StepCostModel::gemm_time(const Gemm& g, double tokens) const {
  if (tokens <= 0) return 0;
  double s = table_gemm_s(g, tokens);
  if (s < 0) {
    const double flops = 2 * round_up(tokens, tile_rows()) * g.rows * g.cols;
    const double bytes = g.weight_bytes + tokens * (g.rows + g.cols) * act_bytes_;
    s = std::max(flops / (g.flops_per_s * compute_efficiency(tokens, g.weight_bytes)), bytes / gemm_bw_);
  }
  return s;
}

double StepCostModel::cached_gemms(const std::vector<Gemm>& gs, std::vector<double>& cache,
                                   std::int64_t tokens) const {
  const std::size_t t = static_cast<std::size_t>(tokens);
  if (t >= cache.size()) {
    if (t > 65536) return layer_gemms(gs, tokens);
    cache.resize(t + 1, -1.0);
  }
  if (cache[t] < 0) cache[t] = layer_gemms(gs, tokens);
  return cache[t];
}

template <class F>
double StepCostModel::by_count(std::vector<double>& cache, std::int64_t key, F f) const {
  const auto k = static_cast<std::size_t>(key);
  if (k >= cache.size()) {
    if (k > 65536) return f();
    cache.resize(k + 1, -1.0);
  }
  if (cache[k] < 0) cache[k] = f();
  return cache[k];
}

template <class F>
double StepCostModel::layer_attention(int which, const BatchShape& b, F f) const {
  if (!(b == attn_shape_)) {
    attn_shape_ = b;
    for (double& a : attn_) a = -1;
  }
  if (attn_[which] < 0) attn_[which] = f();
  return attn_[which];
}

double StepCostModel::layer_gemms(const std::vector<Gemm>& gs, std::int64_t tokens) const {
  const double T = static_cast<double>(tokens);
  double t = 0;
  bool moe_layer_timed = false;
  for (const Gemm& g : gs) {
    if (g.attention && table_mla_module_) continue;  // in the measured MLA module
    if (!g.expert) {
      t += gemm_time(g, T);
      continue;
    }
    if (table_moe_) {  // one measured call for the whole routed-expert layer
      if (!moe_layer_timed)
        t += hw::OperatorTables::series_s(table_moe_->tokens, table_moe_->us, T * table_moe_tokens_);
      moe_layer_timed = true;
      continue;
    }
    // Routed experts: T x k token-expert pairs spread uniformly over the E experts; a rank
    // holding `count` of them receives count / E of the pairs and reads the weights of the
    // experts the batch touches: E_local x (1 - (1 - k/E)^T) of them on average.
    const double E = static_cast<double>(m_.moe->num_experts);
    const double k = static_cast<double>(m_.moe->experts_per_token);
    double routed = T * k * g.count / E;
    const double touched = g.count * (1 - std::pow(1 - k / E, T));
    if (touched <= 0) continue;
    // Spread over n expert-parallel ranks, the pairs do not split evenly, and the busiest rank
    // sets the step: m pairs thrown uniformly into n bins fill the fullest with about
    // m/n + sqrt(2 (m/n) ln n) (Raab and Steger, "Balls into Bins - A Simple and Tight
    // Analysis", RANDOM 1998, Theorem 1, m >= n log n). Routers are less even than uniform;
    // this is the least imbalance there is.
    const double ranks = E / g.count;
    if (ranks > 1) routed = std::min(T * k, routed + std::sqrt(2 * routed * std::log(ranks)));
    const double per_expert = routed / touched;
    const double flops = 2 * touched * round_up(per_expert, tile_rows()) * g.rows * g.cols;
    const double bytes = touched * g.weight_bytes / g.count + routed * (g.rows + g.cols) * act_bytes_;
    t += std::max(flops / g.flops_per_s, bytes / gemm_bw_);
  }
  return t;
}

double StepCostModel::prefill_attention_fraction(double length) {
  return interpolate(std::begin(kPrefillAttentionShare), std::end(kPrefillAttentionShare), length,
                     [](const auto& p) { return p.first; }, [](const auto& p) { return p.second; });
}

double StepCostModel::table_attention_s(const BatchShape& b, bool decode) const {
  if (decode) {
    const double n = static_cast<double>(b.decode_tokens);
    return hw::OperatorTables::attention_s(*table_decode_, true, table_heads_, table_kv_heads_, n,
                                           b.decode_context / n);
  }
  // A chunk after a cached prefix: the prompt length whose causal pairs equal the chunk's, so
  // that the table's work matches (prefill_pairs counts q*c + q(q+1)/2 a sequence).
  const double n = static_cast<double>(b.prefill_seqs);
  return hw::OperatorTables::attention_s(*table_prefill_, false, table_heads_, table_kv_heads_, n,
                                         std::sqrt(2 * b.prefill_pairs / n));
}

double StepCostModel::attention_time(const BatchShape& b) const {
  const double heads = static_cast<double>(m_.attention.num_heads / p_.tp);
  auto roof = [&](double flops, double bytes) {
    return std::max(flops / bf16_flops_, bytes / mem_bw_);
  };
  // The engine's measured kernels where its table covers every kind of work in the batch (their
  // times include the kernels' latency).
  const bool decodes = b.decode_tokens > 0, prefills = b.prefill_tokens > 0;
  if ((!decodes || table_decode_) && (!prefills || table_prefill_) && (decodes || prefills))
    return (decodes ? table_attention_s(b, true) : 0.0) + (prefills ? table_attention_s(b, false) : 0.0);
  double decode = 0, prefill = 0;
  if (decodes) {
    if (attn_decode_ > 0) {
      decode = attention_decode_time(b, heads, roof) / attn_decode_;
    } else if (m_.mla) {
      // FlashMLA's dense decode reaches 3000 GB/s on an H800 SXM5 (3.35 TB/s, 90%;
      // deepseek-ai/FlashMLA README): the copy bandwidth.
      decode = attention_decode_time(b, heads, roof);
    } else {
      const double bw = hbm_peak_ * kDecodeAttentionShare;
      decode = attention_decode_time(
          b, heads, [&](double f, double by) { return std::max(f / bf16_flops_, by / bw); });
    }
  }
  if (prefills) {
    if (attn_prefill_ > 0) {
      prefill = attention_prefill_time(b, heads, roof) / attn_prefill_;
    } else {
      const double length = (b.prefill_context + static_cast<double>(b.prefill_tokens)) /
                            static_cast<double>(std::max<std::int64_t>(1, b.prefill_seqs));
      const double flops = bf16_peak_ * prefill_attention_fraction(length);
      prefill = attention_prefill_time(
          b, heads, [&](double f, double by) { return std::max(f / flops, by / mem_bw_); });
    }
  }
  // A GPU kernel's latency, where the attention figures are the published GPU kernels'.
  return decode + prefill + (published_kernels() ? kAttentionLatencyS : 0.0);
}

double StepCostModel::linear_attention_time(const BatchShape& b) const {
  const auto& x = *m_.linear_attention;
  const double hv = static_cast<double>(x.num_value_heads / p_.tp);
  const double dk = static_cast<double>(x.key_head_dim), dv = static_cast<double>(x.value_head_dim);
  const double state = hv * dv * dk * act_bytes_;  // the temporal state of one sequence
  const double conv = static_cast<double>((x.conv_kernel - 1) * (x.conv_dim() / p_.tp)) * act_bytes_;
  const double seqs = static_cast<double>(b.decode_tokens + b.prefill_seqs);
  // Each sequence reads and writes its state (and conv state) once a step.
  double bytes = 2 * seqs * (state + conv);
  // Per token and value head: the state update and readout (about 4 dk dv multiply-adds), and
  // within a chunk of 64 the intra-chunk attention over q, k and v (2 x 64 x (dk + dv)).
  const double dec = static_cast<double>(b.decode_tokens), pre = static_cast<double>(b.prefill_tokens);
  double flops = 2 * hv * (dec * 4 * dk * dv + pre * (4 * dk * dv + 2 * 64 * (dk + dv)));
  // q, k, v, z, a, b in and the output out, once each (the projections' GEMMs write them).
  bytes += (dec + pre) * (static_cast<double>(x.conv_dim() + x.value_dim()) / p_.tp) * 2 * act_bytes_;
  return std::max(flops / bf16_flops_, bytes / mem_bw_) +
         (published_kernels() ? kAttentionLatencyS : 0.0);
}

double StepCostModel::indexer_time(const BatchShape& b) const {
  const auto& ix = *m_.indexer;
  const double per_key = 2 * static_cast<double>(ix.num_heads * ix.head_dim);  // fp8 MACs x 2
  const double key_bytes = static_cast<double>(ix.head_dim + ix.head_dim / 128 * 4);
  const double flops = per_key * (b.decode_context + b.prefill_pairs);
  const double bytes = key_bytes * (b.decode_context + b.prefill_context + static_cast<double>(b.prefill_tokens));
  const hw::Gpu& g = c_.gpu;
  const double fp8 = (g.has_fp8 ? g.fp8_dense_tflops.value : g.bf16_dense_tflops.value) * 1e12 * e_.compute;
  return std::max(flops / fp8, bytes / mem_bw_) + (published_kernels() ? kAttentionLatencyS : 0.0);
}

double StepCostModel::sparse_mla_time(const BatchShape& b) const {
  const auto& x = *m_.mla;
  const double padding = c_.gpu.compute_capability.value >= 10 ? 128 : 64;
  const double heads = std::max(static_cast<double>(m_.attention.num_heads / p_.tp), padding);
  const double topk = static_cast<double>(m_.indexer->topk);
  const double latent = static_cast<double>(x.kv_lora_rank + x.qk_rope_head_dim);
  const double slots = static_cast<double>(b.tokens) * topk;
  const double flops = 2 * slots * heads * (latent + static_cast<double>(x.kv_lora_rank));
  // Each query token gathers its topk latent rows once for all its heads (the indexer's K cache,
  // stored beside them, is not read here), every one from HBM: an upper bound, as neighbouring
  // queries share most of their top-k.
  const double bytes =
      slots * (kv_bytes_token_layer_ - static_cast<double>(indexer_kv_bytes_per_token(m_)));
  return std::max(flops / (bf16_peak_ * kSparseMlaShare), bytes / mem_bw_) +
         (published_kernels() ? kAttentionLatencyS : 0.0);
}

template <class Roof>
double StepCostModel::attention_decode_time(const BatchShape& b, double heads, Roof roof) const {
  if (m_.mla) {
    const auto& x = *m_.mla;
    const double latent = static_cast<double>(x.kv_lora_rank + x.qk_rope_head_dim);
    // Decode with weight absorption (vLLM MLA decode): MQA over the latent cache, scores over
    // kv_lora + rope and values over kv_lora.
    return roof(2 * heads * b.decode_context * (latent + x.kv_lora_rank),
                b.decode_context * kv_bytes_token_layer_);
  }
  const double d = static_cast<double>(m_.attention.head_dim);
  return roof(4 * heads * d * b.decode_context, b.decode_context * kv_bytes_token_layer_);
}

template <class Roof>
double StepCostModel::attention_prefill_time(const BatchShape& b, double heads, Roof roof) const {
  if (m_.mla) {
    const auto& x = *m_.mla;
    // Prefill without absorption: decompress the cached context through kv_b_proj, then
    // attention with qk head size nope + rope and v head size v.
    const double decompress = 2 * b.prefill_context * x.kv_lora_rank * heads *
                              (x.qk_nope_head_dim + x.v_head_dim);
    return roof(decompress + 2 * heads * b.prefill_pairs *
                                 (x.qk_nope_head_dim + x.qk_rope_head_dim + x.v_head_dim),
                (b.prefill_context + b.prefill_tokens) * kv_bytes_token_layer_);
  }
  const double d = static_cast<double>(m_.attention.head_dim);
  // QK^T and PV: 2 FLOPs a multiply-add, d per pair each, per head.
  return roof(4 * heads * d * b.prefill_pairs,
              (b.prefill_context + b.prefill_tokens) * kv_bytes_token_layer_ +
                  2 * b.prefill_tokens * heads * d * act_bytes_);
}

double StepCostModel::elementwise_time(const BatchShape& b, bool moe) const {
  const double T = static_cast<double>(b.tokens);
  double inter = 0;
  if (moe) {
    const auto& e = *m_.moe;
    const double w = static_cast<double>(e.expert_intermediate_size) / (p_.expert_parallel ? 1 : p_.tp);
    // The table's fused MoE layer includes its activation.
    inter = (table_moe_ ? 0.0 : static_cast<double>(e.experts_per_token) * w) +
            static_cast<double>(e.shared_intermediate_size) / p_.tp;
  } else {
    inter = static_cast<double>(m_.intermediate_size) / p_.tp;
  }
  const double per_token = act_bytes_ * (kElemHidden * static_cast<double>(m_.hidden_size) + kElemInter * inter);
  return T * per_token / elementwise_bw(T, per_token);
}

double StepCostModel::elementwise_bw(double tokens, double bytes_per_token) const {
  if (c_.efficiency && !c_.efficiency->elementwise_by_size.empty())
    return c_.gpu.hbm_bandwidth_GBps.value * 1e9 *
           by_size(c_.efficiency->elementwise_by_size, bytes_per_token, tokens);
  return elem_bw_;
}

StepCost StepCostModel::cost(std::size_t stage, const BatchShape& b) const {
  StepCost c;
  if (b.tokens == 0) return c;
  // Everything but attention depends on the stage's kind and the batch's tokens and sequences
  // alone: for a decode-only batch (a token a sequence), kept by token count.
  // (Batches of up to 4096 sequences, SGLang's largest max_running_requests: a bound on the
  // table's size, not physics; larger decode batches are computed each time.)
  if (b.tokens == b.seqs && b.tokens <= 4096) {
    auto& cache = decode_cache_[kind_of_[stage]];
    const auto k = static_cast<std::size_t>(b.tokens);
    if (k >= cache.size()) cache.resize(k + 1, StepCost{-1, 0, 0, 0, 0, 0, 0});
    if (cache[k].gemm < 0) {
      cache[k] = without_attention(kind_of_[stage], b);
      cache[k].attention = 0;
    }
    c = cache[k];
  } else {
    c = without_attention(stage, b);
  }
  c.attention = attention_of(stages_[stage], b);
  return c;
}

double StepCostModel::attention_of(const Stage& st, const BatchShape& b) const {
  const double dl = static_cast<double>(st.dense_layers), ml = static_cast<double>(st.moe_layers);
  const double layers = dl + ml;
  const double ldl = static_cast<double>(st.linear_dense), lml = static_cast<double>(st.linear_moe);
  const double windowed = b.window > 0 ? static_cast<double>(st.windowed_layers) : 0.0;
  const double linear = ldl + lml;
  if (m_.indexer && m_.mla)  // DeepSeek-V3.2: every layer sparse, its indexer beside it
    return layers * (layer_attention(4, b, [&] { return sparse_mla_time(b); }) +
                     layer_attention(3, b, [&] { return indexer_time(b); }));
  return (layers - windowed - linear) * layer_attention(0, b, [&] { return attention_time(b); }) +
         (windowed > 0 ? windowed * layer_attention(1, b, [&] { return attention_time(b.windowed()); }) : 0.0) +
         (linear > 0 ? linear * layer_attention(2, b, [&] { return linear_attention_time(b); }) : 0.0) +
         (m_.indexer ? layers * layer_attention(3, b, [&] { return indexer_time(b); }) : 0.0);
}

StepCost StepCostModel::without_attention(std::size_t stage, const BatchShape& b) const {
  const Stage& st = stages_[stage];
  StepCost c;
  const double dl = static_cast<double>(st.dense_layers), ml = static_cast<double>(st.moe_layers);
  const double layers = dl + ml;
  const double ldl = static_cast<double>(st.linear_dense), lml = static_cast<double>(st.linear_moe);
  c.gemm = (dl > ldl ? (dl - ldl) * cached_gemms(dense_, dense_cache_, b.tokens) : 0) +
           (ml > lml ? (ml - lml) * cached_gemms(moe_, moe_cache_, b.tokens) : 0) +
           (ldl > 0 ? ldl * cached_gemms(linear_dense_, linear_dense_cache_, b.tokens) : 0) +
           (lml > 0 ? lml * cached_gemms(linear_moe_, linear_moe_cache_, b.tokens) : 0);
  // (Attention: attention_of. Windowed layers (sliding, chunked, sparse) attend to their window
  // only, when the batch says what that is; otherwise they are timed as full attention. Linear
  // layers keep a state.)
  c.elementwise = dl * by_count(elem_dense_cache_, b.tokens, [&] { return elementwise_time(b, false); }) +
                  ml * by_count(elem_moe_cache_, b.tokens, [&] { return elementwise_time(b, true); });
  // The first stage gathers one embedding row per token; the last computes logits for the last
  // token of each sequence only (vLLM's logits_indices).
  if (st.first)
    c.elementwise += static_cast<double>(b.tokens) * static_cast<double>(m_.hidden_size) *
                     act_bytes_ * 2 / elem_bw_;
  if (st.last) {
    c.gemm += by_count(lm_head_cache_, b.seqs, [&] { return gemm_time(lm_head_, static_cast<double>(b.seqs)); });
    c.elementwise += static_cast<double>(b.seqs) * static_cast<double>(padded_vocab(m_.vocab_size)) *
                     kSamplerBytesPerLogit / elem_bw_;
  }
  // The fused MoE kernels' fixed time a layer, where the figures are the published GPU kernels'.
  if (ml > 0 && published_kernels() && !table_moe_)
    c.gemm += ml * (c_.gpu.compute_capability.value >= 9.0 || c_.gpu.vendor == hw::Vendor::kAmd
                        ? kMoeLatencyHopperS  // AMD: Hopper's, assumed (no AMD figure)
                        : kMoeLatencyAmpereS);
  const bool graph = !o_.enforce_eager && b.tokens <= kMaxCaptureTokens;
  c.launch = (dl * kKernelsDense + ml * kKernelsMoe) * (graph ? launch_graph_s_ : launch_eager_s_);

  const double h = static_cast<double>(m_.hidden_size);
  const double hidden_bytes = static_cast<double>(b.tokens) * h * act_bytes_;
  if (p_.tp > 1) {
    // Two all-reduces of [tokens, hidden] per layer (after o_proj and after the MLP or MoE),
    // the vocab-parallel embedding's all-reduce on the first stage, and the logits gather on
    // the last (one row per sequence, the vocabulary split over TP).
    const double ar = by_count(ar_cache_, b.tokens, [&] { return all_reduce_s(hidden_bytes, p_.tp, graph); });
    c.tp_comm = 2 * layers * ar;
    if (st.first) c.tp_comm += ar;
    if (st.last)
      c.tp_comm += by_count(logits_cache_[graph ? 1 : 0], b.seqs, [&] {
        return all_gather_s(static_cast<double>(b.seqs) * static_cast<double>(padded_vocab(m_.vocab_size)) * act_bytes_,
                            p_.tp, graph);
      });
    // Each collective also waits for the last rank to arrive (measured, where it was).
    if (c_.efficiency && c_.efficiency->collective_wait_us > 0)
      c.tp_comm += (2 * layers + (st.first ? 1 : 0) + (st.last ? 1 : 0)) *
                   c_.efficiency->collective_wait_us * 1e-6;
  }
  if (m_.moe && p_.expert_parallel && p_.dp > 1 && p_.ep() > 1) {
    // Dispatch and combine: each token's hidden state to and from its k experts' ranks.
    const double n = static_cast<double>(p_.ep());
    const double bytes = hidden_bytes * static_cast<double>(m_.moe->experts_per_token) * (n - 1) / n;
    c.ep_comm = ml * 2 * by_count(ep_cache_, b.tokens, [&] { return all_gather_s(bytes * n / (n - 1), p_.ep(), graph); });
  }
  // IntermediateTensors (hidden_states and residual) to the next stage.
  // vLLM sends them from the worker after the forward, outside any CUDA graph.
  if (!st.last)
    c.pp_comm = by_count(send_cache_[st.send_cross_node ? 1 : 0], b.tokens,
                         [&] { return send_s(2 * hidden_bytes, st.send_cross_node, false); });
  return c;
}

namespace {

// The cluster's measured `library: vllm` all-reduce over `ranks` inside a node, if any (its NCCL
// tables are CollectiveModel::table's to pick).
const hw::CollectiveTable* vllm_table(const hw::Cluster& c, std::int64_t ranks) {
  for (const auto& t : c.collectives)
    if (t.op == "all_reduce" && t.ranks == ranks && t.scope == "intra_node" && t.library == "vllm")
      return &t;
  return nullptr;
}

// A measured table's time at `bytes` (CollectiveModel's interpolation).
double table_s(const hw::CollectiveTable& t, double bytes) { return CollectiveModel::table_seconds(t, bytes); }

}  // namespace

double StepCostModel::net_bw_per_gpu() const {
  return c_.inter_node->node_bandwidth_GBps() * 1e9 / static_cast<double>(c_.gpus_per_node) *
         e_.link;
}

double StepCostModel::intra_bw() const {
  return c_.intra_node.bandwidth_GBps.value * 1e9 * e_.link;
}

double StepCostModel::all_reduce_s(double bytes, std::int64_t n, bool graph) const {
  // A TP group inside a node runs the engine's own all-reduce: vLLM's custom all-reduce or
  // symmetric memory, as its dispatch picks by size, handing larger messages to NCCL
  // (vllm/distributed/device_communicators/cuda_communicator.py, all_reduce); TensorRT-LLM's
  // own one-shot/two-shot kernels below its workspace, else NCCL
  // (cpp/tensorrt_llm/common/customAllReduceUtils.h). The operator table times that whole
  // dispatch on NVIDIA's collection machines (aiconfigurator's
  // collector/network/collect_all_reduce.py calls each engine's tensor_model_parallel_all_reduce
  // / AllReduce op), 256 B-1 GiB of bf16. At large messages both
  // engines hand over to NCCL (the table's `own_max_bytes`: 8 MiB for vLLM's custom
  // all-reduce, 16 MB / 8 MB for TensorRT-LLM's at 2 / more GPUs, none for vLLM and SGLang on
  // more than 2 PCIe-only GPUs). Up to that size: the engine's measured kernels, or this
  // cluster's measured NCCL table where that is faster (never the alpha-beta model, no
  // measurement and far too fast for small messages). Above it NCCL: this cluster's measured
  // table where it has one (its own interconnect), else the table's, NCCL as measured on a
  // standard node of this GPU (8 H100s at 128 MiB: 577 us, where h100x1's nccl-tests table gives
  // 573 us). Without a table, a cluster's `library: vllm` table covers vLLM's dispatch up to its
  // largest size. Groups that span nodes use NCCL.
  // Memoised (as nccl_model_s): the steps ask for the same few sizes over and over.
  const CollKey key{1000 + (graph ? 1 : 0), n, bytes};
  if (auto it = coll_cache_.find(key); it != coll_cache_.end()) return it->second;
  const double s = engine_all_reduce_s(bytes, n, graph);
  coll_cache_.emplace(key, s);
  return s;
}

double StepCostModel::engine_all_reduce_s(double bytes, std::int64_t n, bool graph) const {
  if (n > 1 && n <= c_.gpus_per_node) {
    if (const auto& ot = o_.operator_tables) {
      if (const auto* s = ot->all_reduce_series(n, graph ? "graph" : "eager")) {
        const double engine = hw::OperatorTables::series_s(s->bytes, s->us, bytes);
        const hw::CollectiveTable* nccl = nccl_table(Collective::kAllReduce, n, graph);
        if (s->own_max_bytes < 0 || bytes <= s->own_max_bytes)
          return nccl ? std::min(engine, table_s(*nccl, bytes)) : engine;
        return nccl ? table_s(*nccl, bytes) : engine;
      }
    }
    const hw::CollectiveTable* t = vllm_table(c_, n);
    if (t && bytes <= static_cast<double>(t->points.back().bytes)) return table_s(*t, bytes);
    // No measurement of the engine's own path on this GPU: vLLM's custom all-reduce as
    // CollectiveModel models it, where vLLM would run it (an engine's step; tpp-run's own
    // kernels, host overhead none, all-reduce through NCCL). SGLang runs the same kernels;
    // TensorRT-LLM's one- and two-shot kernels are taken to cost the same (approximation).
    if (nccl_ && o_.host_overhead != HostOverhead::kNone)
      if (auto e = coll_.engine_all_reduce(bytes, n, graph)) return e->seconds;
  }
  return nccl_all_reduce_s(bytes, n, graph);
}

const hw::CollectiveTable* StepCostModel::nccl_table(Collective op, std::int64_t n, bool graph) const {
  // The one measured under the step's conditions where there are several (CollectiveModel::
  // table): from a CUDA graph or eagerly, out of place (vLLM's pynccl all-reduce).
  // Memoised: the step asks for the same few (op, ranks) at every step.
  const int op_graph = static_cast<int>(op) * 2 + (graph ? 1 : 0);
  for (const auto& [k, ranks, t] : table_cache_)
    if (k == op_graph && ranks == n) return t;
  CollectiveConditions cond;
  cond.cuda_graph = graph;
  const hw::CollectiveTable* t = coll_.table(op, n, cond);
  table_cache_.emplace_back(op_graph, n, t);
  return t;
}

double StepCostModel::nccl_model_s(Collective op, double bytes, std::int64_t n, bool graph) const {
  // What NCCL takes where the cluster measured nothing for this op and rank count: its own
  // tuning model on the cluster's links (docs/collectives.md; checked against published
  // nccl-tests sweeps by scripts/collectives_check.py). vLLM's pynccl all-reduce is out of place.
  // Memoised: the serving simulation asks for the same few messages thousands of times.
  const CollKey key{static_cast<int>(op) * 2 + (graph ? 1 : 0), n, bytes};
  if (auto it = coll_cache_.find(key); it != coll_cache_.end()) return it->second;
  CollectiveConditions cond;
  cond.cuda_graph = graph;
  const double s = coll_.model_seconds(op, bytes, n, cond);
  coll_cache_.emplace(key, s);
  return s;
}

double StepCostModel::nccl_all_reduce_s(double bytes, std::int64_t n, bool graph) const {
  if (n <= 1) return 0;
  const std::int64_t g = c_.gpus_per_node;
  if (const hw::CollectiveTable* t = nccl_table(Collective::kAllReduce, n, graph))
    return table_s(*t, bytes);
  if (nccl_) return nccl_model_s(Collective::kAllReduce, bytes, n, graph);
  const double intra_a = c_.intra_node.latency_us.value * 1e-6;
  // nccl-tests: busbw = algbw x factor, so time = bytes x factor / busbw, plus one link
  // latency for each of the ring's steps.
  auto ring = [](double bytes_, double factor, double bw, double alpha, double steps) {
    return bytes_ * factor / bw + steps * alpha;
  };
  const double nd = static_cast<double>(n);
  if (n <= g || !c_.inter_node)
    return ring(bytes, 2 * (nd - 1) / nd, intra_bw(), intra_a, 2 * (nd - 1));
  // Spanning nodes: reduce-scatter inside each node, all-reduce of the 1/g shards across the
  // nodes over each GPU's share of the network, all-gather inside the node. The two phases
  // inside the node move what one all-reduce over the node's g GPUs moves (2(g-1)/g x bytes in
  // 2(g-1) steps), so they cost that all-reduce: the node's measured table where the cluster
  // has one, else the ring above.
  const double gd = static_cast<double>(g), nodes = nd / gd;
  const double net_a = c_.inter_node->latency_us.value * 1e-6;
  return nccl_all_reduce_s(bytes, g, graph) +
         ring(bytes / gd, 2 * (nodes - 1) / nodes, net_bw_per_gpu(), net_a, 2 * (nodes - 1));
}

double StepCostModel::all_gather_s(double bytes, std::int64_t n, bool graph) const {
  if (n <= 1) return 0;
  const std::int64_t g = c_.gpus_per_node;
  if (const hw::CollectiveTable* t = nccl_table(Collective::kAllGather, n, graph))
    return table_s(*t, bytes);
  if (nccl_) return nccl_model_s(Collective::kAllGather, bytes, n, graph);
  const double nd = static_cast<double>(n);
  const bool intra = n <= g || !c_.inter_node;
  const double bw = intra ? intra_bw() : net_bw_per_gpu();
  const double alpha = (intra ? c_.intra_node.latency_us.value : c_.inter_node->latency_us.value) * 1e-6;
  return bytes * (nd - 1) / nd / bw + (nd - 1) * alpha;
}

double StepCostModel::send_s(double bytes, bool cross_node, bool graph) const {
  // Two ranks on one node, or one rank on each of two (CollectiveModel's send/recv placement).
  const std::int64_t ranks = cross_node ? c_.gpus_per_node + 1 : 2;
  if (const hw::CollectiveTable* t = nccl_table(Collective::kSendRecv, ranks, graph))
    return table_s(*t, bytes);
  if (nccl_ && (!cross_node || c_.inter_node)) return nccl_model_s(Collective::kSendRecv, bytes, ranks, graph);
  if (cross_node && c_.inter_node)
    return bytes / net_bw_per_gpu() + c_.inter_node->latency_us.value * 1e-6;
  return bytes / intra_bw() + c_.intra_node.latency_us.value * 1e-6;
}

double StepCostModel::host_s(const BatchShape& b) const {
  const double seqs = static_cast<double>(b.seqs);
  switch (o_.host_overhead) {
    case HostOverhead::kVllm:
    case HostOverhead::kVllmSync: return kVllmHostStepS + kVllmHostSeqS * seqs;
    case HostOverhead::kTrtllm: return kTrtllmHostSeqS * seqs;
    case HostOverhead::kNone: return 0;
  }
  return 0;
}

double StepCostModel::host_gap_s() const {
  return o_.host_overhead == HostOverhead::kVllm ? kVllmAsyncGapS : 0.0;
}

}  // namespace tpp::sim
