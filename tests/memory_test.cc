// The memory simulator: hand-derived figures on the shipped models, and vLLM's own logs.
// Log data points (tests/data/vllm_logs.md lists each with its source) must be matched within
// 2% in blocks; hand derivations exactly.
#include <gtest/gtest.h>

#include <cmath>

#include "hardware_profiles/hardware.h"
#include "model/tensors.h"
#include "simulator/memory.h"
#include "test_util.h"

namespace tpp {
namespace {

using sim::Engine;
using sim::MemoryPlan;
using sim::ParallelConfig;
using sim::ServingOptions;

constexpr double kGiB = 1073741824.0;

hw::Gpu gpu(const char* name) {
  auto g = hw::load_gpu(name);
  EXPECT_TRUE(g) << (g ? "" : g.error().str());
  return g ? *g : hw::Gpu{};
}

MemoryPlan plan(const model::Model& m, const hw::Gpu& g, ParallelConfig p, ServingOptions o = {}) {
  auto r = sim::resolve_options(m, g, o);
  EXPECT_TRUE(r) << (r ? "" : r.error().str());
  EXPECT_FALSE(sim::check_parallel(m, p).has_value()) << *sim::check_parallel(m, p);
  return sim::simulate_memory(sim::as_loaded(m, o), g, p, *r);
}

using test::split;

void expect_within(double predicted, double logged, double tolerance, const char* what) {
  EXPECT_LE(std::fabs(predicted - logged) / logged, tolerance)
      << what << ": predicted " << predicted << ", logged " << logged;
}

// ---- get_pp_indices --------------------------------------------------------------------------

// vLLM refuses bfloat16 below compute capability 8.0 (a T4 is 7.5) and says to pass --dtype half;
// float16 is accepted there.
TEST(Options, Bf16NeedsComputeCapability8) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  hw::Gpu t4 = *hw::load_gpu("L4");
  t4.name = "Tesla T4";
  t4.compute_capability = {7.5, "test"};
  auto r = sim::resolve_options(m, t4, {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().str().find("Your Tesla T4 GPU has compute capability 7.5"), std::string::npos)
      << r.error().str();
  EXPECT_NE(r.error().str().find("--dtype half"), std::string::npos);
  ServingOptions half;
  half.dtype = model::DType::kF16;
  EXPECT_TRUE(sim::resolve_options(m, t4, half));
  EXPECT_TRUE(sim::resolve_options(m, *hw::load_gpu("A100-SXM4-80GB"), {}));
}

TEST(PpPartition, MatchesVllmGetPpIndices) {
  using V = std::vector<std::int64_t>;
  EXPECT_EQ(sim::pp_partition(61, 2, {}), (V{31, 30}));
  EXPECT_EQ(sim::pp_partition(61, 4, {}), (V{15, 15, 16, 15}));
  EXPECT_EQ(sim::pp_partition(61, 8, {}), (V{7, 7, 8, 8, 8, 8, 8, 7}));
  EXPECT_EQ(sim::pp_partition(80, 3, {}), (V{27, 27, 26}));
  EXPECT_EQ(sim::pp_partition(80, 6, {}), (V{13, 13, 13, 14, 14, 13}));
  EXPECT_EQ(sim::pp_partition(32, 3, {}), (V{11, 11, 10}));
  EXPECT_EQ(sim::pp_partition(94, 4, {}), (V{23, 24, 24, 23}));
  EXPECT_EQ(sim::pp_partition(126, 8, {}), (V{15, 16, 16, 16, 16, 16, 16, 15}));
  EXPECT_EQ(sim::pp_partition(61, 2, {40, 21}), (V{40, 21}));  // VLLM_PP_LAYER_PARTITION
}

// ---- Llama-3.1-8B by hand ---------------------------------------------------------------------

// Per-rank bytes of Llama-3.1-8B (bf16) at tensor-parallel size tp, all 32 layers, by hand:
// q/o [4096, 4096] and gate/up/down [14336, 4096] split by tp; k/v [1024, 4096] by KV head
// (8 heads, each replicated when tp > 8); embedding and LM head [128256, 4096] split by tp;
// norms whole; the rotary cos/sin cache [131072, 128].
std::int64_t llama8b_weights(std::int64_t tp) {
  const std::int64_t h = 4096, kv_rows = 128 * std::max<std::int64_t>(1, 8 / tp);
  const std::int64_t layer = 2 * h * h / tp + 2 * kv_rows * h + 3 * 14336 / tp * h + 2 * h;
  return 2 * (32 * layer + 2 * 128256 / tp * h + h + 131072 * 128);
}

TEST(MemoryLlama8B, WeightsAndKvPerTokenAtTp1Tp4Tp8Tp16) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  for (std::int64_t tp : {1, 4, 8, 16}) {
    MemoryPlan p = plan(m, h100, split(tp));
    ASSERT_EQ(p.stages.size(), 1u);
    EXPECT_EQ(p.stages[0].weights_bytes, llama8b_weights(tp)) << "tp=" << tp;
    // K and V of max(1, 8 / tp) heads of 128 in bf16, 32 layers: at TP16 each KV head is
    // replicated on two ranks, so a token costs as much as at TP8.
    EXPECT_EQ(p.stages[0].kv_bytes_per_token, 32 * 2 * std::max<std::int64_t>(1, 8 / tp) * 128 * 2)
        << "tp=" << tp;
  }
  EXPECT_EQ(llama8b_weights(1), 16'094'076'928);  // 14.99 GiB, vLLM's "Model loading took"
}

TEST(MemoryLlama8B, KvCacheBlocksByHand) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  ServingOptions o;
  o.max_model_len = 8192;
  MemoryPlan p = plan(m, h100, split(1), o);
  const auto& s = p.stages[0];
  const std::int64_t budget = static_cast<std::int64_t>(h100.memory_driver_bytes() * 0.9);
  EXPECT_EQ(p.budget_bytes, budget);
  EXPECT_EQ(s.kv_cache_bytes,
            budget - s.weights_bytes - s.activation_peak_bytes - s.non_torch_bytes);
  EXPECT_EQ(s.cuda_graph_bytes, static_cast<std::int64_t>(std::llround(1.04 * kGiB)));
  // V1: floor(floor(available / (16 tokens x 4096 B)) / 32 layers).
  EXPECT_EQ(p.gpu_blocks, s.kv_cache_bytes / (16 * 4096) / 32);
  EXPECT_EQ(p.kv_cache_tokens, p.gpu_blocks * 16);
  EXPECT_DOUBLE_EQ(p.max_concurrency, p.gpu_blocks / 512.0);  // cdiv(8192, 16) blocks each
  EXPECT_TRUE(p.fits);
  // The sampler sets the activation peak on H100 defaults (8192 tokens, 1024 sequences):
  // 1024 x 128256 x (2 + 12) + 132 x 128256 x 4 + 8192 x 4096 x 2 + 0.05 GiB.
  EXPECT_EQ(s.activation_peak_bytes,
            static_cast<std::int64_t>(1024.0 * 128256 * 14 + 132.0 * 128256 * 4 +
                                      8192.0 * 4096 * 2 + 0.05 * kGiB));
}

TEST(MemoryLlama8B, UnevenPipelineSplit) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  MemoryPlan p = plan(m, gpu("H100-SXM5-80GB"), split(1, 3));
  ASSERT_EQ(p.stages.size(), 3u);
  EXPECT_EQ(p.stages[0].num_layers, 11);
  EXPECT_EQ(p.stages[1].num_layers, 11);
  EXPECT_EQ(p.stages[2].num_layers, 10);  // the remainder goes to stage -2, then -3
  EXPECT_EQ(p.stages[2].first_layer, 22);
  const std::int64_t layer = 2 * (2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 14336 * 4096 + 8192);
  const std::int64_t vocab = 2LL * 128256 * 4096, rope = 2LL * 131072 * 128;
  EXPECT_EQ(p.stages[0].weights_bytes, 11 * layer + vocab + rope);
  EXPECT_EQ(p.stages[1].weights_bytes, 11 * layer + rope);
  EXPECT_EQ(p.stages[2].weights_bytes, 10 * layer + vocab + 2 * 4096 + rope);
  EXPECT_EQ(p.stages[1].kv_bytes_per_token, 11 * 4096);
  // Each stage sizes its own blocks from its own layers; the engine takes the fewest.
  std::int64_t fewest = INT64_MAX;
  for (const auto& s : p.stages) {
    EXPECT_EQ(s.gpu_blocks, s.kv_cache_bytes / (16 * 4096) / s.num_layers);
    fewest = std::min(fewest, s.gpu_blocks);
  }
  EXPECT_EQ(p.gpu_blocks, fewest);
  // Only the last stage runs the sampler; the middle one receives hidden states and residual.
  EXPECT_LT(p.stages[0].activation_peak_bytes, p.stages[2].activation_peak_bytes);
  EXPECT_EQ(p.stages[1].activation_peak_bytes - p.stages[0].activation_peak_bytes,
            2LL * 8192 * 4096 * 2);
}

TEST(MemoryLlama8B, Fp8KvCacheDoublesTheBlocks) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  ServingOptions o;
  MemoryPlan bf16 = plan(m, h100, split(1), o);
  o.kv_cache_dtype = model::KvCacheDType::kFP8;
  MemoryPlan fp8 = plan(m, h100, split(1), o);
  EXPECT_EQ(fp8.stages[0].kv_bytes_per_token * 2, bf16.stages[0].kv_bytes_per_token);
  EXPECT_EQ(fp8.stages[0].kv_cache_bytes, bf16.stages[0].kv_cache_bytes);
  EXPECT_NEAR(static_cast<double>(fp8.gpu_blocks), 2.0 * bf16.gpu_blocks, 1.0);
}

// ---- DeepSeek-R1: MLA ---------------------------------------------------------------------------

TEST(MemoryR1, TpLeavesKvPerTokenUnchangedPpHalvesIt) {
  model::Model m = test::load_or_die(test::example("r1.yaml"));
  hw::Gpu h20 = gpu("H20-96GB");
  const std::int64_t latent = (512 + 64) * 2;  // kv_lora_rank + qk_rope_head_dim, bf16
  MemoryPlan tp8 = plan(m, h20, split(8, 2));
  MemoryPlan tp16 = plan(m, h20, split(16));
  EXPECT_EQ(tp16.stages[0].kv_bytes_per_token, 61 * latent);
  EXPECT_EQ(tp8.stages[0].kv_bytes_per_token, 31 * latent);  // [31, 30] layers
  EXPECT_EQ(tp8.stages[1].kv_bytes_per_token, 30 * latent);
  MemoryPlan tp4 = plan(m, h20, split(4, 4));
  MemoryPlan tp8p4 = plan(m, h20, split(8, 4));
  EXPECT_EQ(tp4.stages[2].kv_bytes_per_token, tp8p4.stages[2].kv_bytes_per_token);
}

TEST(MemoryR1, Fp8ExpertsAndBlockScalesPerRank) {
  model::Model m = test::load_or_die(test::example("r1.yaml"));
  // TP8: each of 256 experts keeps 2048/8 = 256 rows of w1 and w3 and 256 columns of w2, in
  // fp8, with fp32 scales per 128 x 128 block: 2 x (2 x 56) + 56 x 2 blocks an expert.
  ParallelConfig p = split(8, 2);
  const auto ts = model::layer_tensors(m, 3);
  std::int64_t experts = 0;
  for (const auto& t : ts) {
    if (t.component != model::Component::kExperts) continue;
    sim::Shard s = sim::shard_of(t, m, p);
    model::TensorSpec sh = t;
    sh.rows = s.rows;
    sh.cols = s.cols;
    experts += model::storage_bytes(sh, m);
  }
  EXPECT_EQ(experts, 256LL * (3 * 256 * 7168) + 256LL * 4 * (2 * 2 * 56 + 56 * 2));
}

TEST(MemoryR1, Tp32BreaksTheFp8Blocks) {
  model::Model m = test::load_or_die(test::example("r1.yaml"));
  auto why = sim::check_parallel(m, split(32));
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "layers.0.mlp.gate_proj.weight: 576 output rows per rank at tp=32 are not a multiple of "
                  "the fp8 block 128");
}

TEST(MemoryR1, DoesNotFitOnOneH100NodeAndSaysWhy) {
  model::Model m = test::load_or_die(test::example("r1.yaml"));
  MemoryPlan p = plan(m, gpu("H100-SXM5-80GB"), split(8));
  EXPECT_FALSE(p.fits);
  EXPECT_EQ(p.why_not, "weights need 79.31 GiB per GPU at tp=8, pp=1; the GPU offers 71.26 GiB "
                       "at utilization 0.90");
}

TEST(MemoryR1, MaxModelLenLargerThanTheCacheReportsWhatFits) {
  model::Model m = test::load_or_die(test::example("llama-3.1-70b.yaml"));
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  MemoryPlan p = plan(m, h100, split(2));
  ASSERT_FALSE(p.fits) << p.gpu_blocks;
  EXPECT_EQ(p.max_model_len_that_fits, p.kv_cache_tokens);
  EXPECT_NE(p.why_not.find("the largest max_model_len that fits is " +
                           std::to_string(p.kv_cache_tokens)),
            std::string::npos)
      << p.why_not;
}

// ---- Against vLLM's logs (within 2%) ---------------------------------------------------------

ServingOptions at(double u, std::int64_t max_len) {
  ServingOptions o;
  o.gpu_memory_utilization = u;
  o.max_model_len = max_len;
  return o;
}

TEST(MemoryVsVllmLogs, Llama31_8B_H100_V1) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  // vLLM 0.19, u = 0.95: "GPU KV cache size: 476,016 tokens", 29,751 blocks; W 14.99, A 1.89,
  // N 0.25 GiB.
  MemoryPlan p = plan(m, h100, split(1), at(0.95, 8192));
  expect_within(p.gpu_blocks, 29751, 0.02, "blocks");
  expect_within(p.stages[0].weights_bytes / kGiB, 14.99, 0.005, "weights");
  expect_within(p.stages[0].activation_peak_bytes / kGiB, 1.89, 0.02, "activations");
  // --kv-cache-dtype fp8: 952,032 tokens.
  ServingOptions o = at(0.95, 8192);
  o.kv_cache_dtype = model::KvCacheDType::kFP8;
  expect_within(plan(m, h100, split(1), o).kv_cache_tokens, 952032, 0.02, "fp8 tokens");
  // --quantization fp8 (online, per-tensor scales): W 8.49 GiB, KV cache 64.61 GiB.
  o = at(0.95, 8192);
  o.quantization = model::QuantMethod::kFp8;
  MemoryPlan q = plan(m, h100, split(1), o);
  expect_within(q.stages[0].weights_bytes / kGiB, 8.49, 0.005, "fp8 weights");
  expect_within(q.stages[0].kv_cache_bytes / kGiB, 64.61, 0.02, "fp8 KV cache");
  // TP2: W 7.51, N 2.07, KV cache 63.76 GiB (derived from the logged parts).
  MemoryPlan t2 = plan(m, h100, split(2), at(0.95, 8192));
  expect_within(t2.stages[0].weights_bytes / kGiB, 7.51, 0.005, "TP2 weights");
  expect_within(t2.stages[0].kv_cache_bytes / kGiB, 63.76, 0.02, "TP2 KV cache");
  // PP2 rank 0 W 7.51; PP4 rank 0 W 4.26.
  expect_within(plan(m, h100, split(1, 2), at(0.95, 8192)).stages[0].weights_bytes / kGiB, 7.51,
                0.005, "PP2 weights");
  expect_within(plan(m, h100, split(1, 4), at(0.95, 8192)).stages[0].weights_bytes / kGiB, 4.26,
                0.005, "PP4 weights");
}

TEST(MemoryVsVllmLogs, Llama31_8B_Float32_H100_V1) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  m.dtype = model::DType::kF32;  // --dtype float32
  m.quant.weight_dtype = model::DType::kF32;
  // vLLM 0.19, u = 0.95: W 29.98 GiB, KV cache 42.80 GiB, 175,296 tokens.
  MemoryPlan p = plan(m, gpu("H100-SXM5-80GB"), split(1), at(0.95, 8192));
  expect_within(p.stages[0].weights_bytes / kGiB, 29.98, 0.005, "weights");
  expect_within(p.kv_cache_tokens, 175296, 0.02, "tokens");
}

TEST(MemoryVsVllmLogs, Qwen25_7B_H100_V1) {
  model::Model m = test::load_or_die(test::hf("Qwen--Qwen2.5-7B-Instruct.json"));
  // vLLM 0.19, u = 0.95: KV cache 58.53 GiB, 68,500 blocks; activation peak 2.21 GiB.
  MemoryPlan p = plan(m, gpu("H100-SXM5-80GB"), split(1), at(0.95, 8192));
  expect_within(p.gpu_blocks, 68500, 0.02, "blocks");
  expect_within(p.stages[0].activation_peak_bytes / kGiB, 2.21, 0.02, "activations");
}

TEST(MemoryVsVllmLogs, DeepSeekV2Lite_H100_V1) {
  model::Model m = test::load_or_die(test::hf("deepseek-ai--DeepSeek-V2-Lite-Chat.json"));
  // Weights 29.30 GiB (vLLM PR #4650 log); activation peak 1.93 GiB (vLLM 0.19).
  MemoryPlan p = plan(m, gpu("H100-SXM5-80GB"), split(1), at(0.95, 8192));
  expect_within(p.stages[0].weights_bytes / kGiB, 29.30, 0.005, "weights");
  expect_within(p.stages[0].activation_peak_bytes / kGiB, 1.93, 0.03, "activations");
}

hw::Gpu rtx3090() {
  // Inline, as a user would describe a GPU that is not in the catalog. Driver total 23.58 GiB
  // from the log itself (vllm issue #10517); the rest does not enter the memory model.
  hw::Gpu g = gpu("RTX-4090");
  g.name = "RTX-3090";
  g.memory_driver_GiB.value = 23.58;
  g.compute_capability.value = 8.6;
  return g;
}

TEST(MemoryVsVllmLogs, Llama31_8B_Rtx3090_V0) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  // vLLM ~0.6.4 (V0), u = 0.9, no chunked prefill: max_model_len 20000 -> "# GPU blocks: 1952";
  // max_model_len 29000 -> 1478 blocks (and the error: 23,648 tokens < 29,000).
  ServingOptions o = at(0.9, 20000);
  o.engine = Engine::kV0;
  MemoryPlan p = plan(m, rtx3090(), split(1), o);
  expect_within(p.gpu_blocks, 1952, 0.02, "blocks at 20000");
  EXPECT_EQ(p.stages[0].cpu_blocks, 2048);  // 4 GiB of 2 MiB blocks
  EXPECT_TRUE(p.fits);
  o.max_model_len = 29000;
  MemoryPlan q = plan(m, rtx3090(), split(1), o);
  expect_within(q.gpu_blocks, 1478, 0.02, "blocks at 29000");
  EXPECT_FALSE(q.fits);
  EXPECT_EQ(q.max_model_len_that_fits, q.gpu_blocks * 16);
}

// ---- Options vLLM rejects ----------------------------------------------------------------------

TEST(MemoryOptions, Rejected) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  auto err = [&](ServingOptions o) {
    auto r = sim::resolve_options(m, h100, o);
    return r ? std::string("(ok)") : r.error().message;
  };
  ServingOptions o;
  o.gpu_memory_utilization = 1.5;
  EXPECT_EQ(err(o), "--gpu-memory-utilization must be in (0, 1], got 1.5");
  o.gpu_memory_utilization = 0;
  EXPECT_EQ(err(o), "--gpu-memory-utilization must be in (0, 1], got 0");
  o = {};
  o.max_model_len = 200000;
  EXPECT_EQ(err(o), "--max-model-len 200000 exceeds the model's max_position_embeddings 131072");
  o = {};
  o.block_size = 24;
  EXPECT_EQ(err(o), "--block-size must be one of 1, 8, 16, 32, 64, 128, got 24");
  o = {};
  o.quantization = model::QuantMethod::kAwq;
  EXPECT_EQ(err(o), "--quantization awq does not match the checkpoint, which is none; only fp8 "
                    "can be applied to an unquantized checkpoint");
  EXPECT_EQ(*sim::check_parallel(m, split(3)), "32 attention heads are not divisible by tp=3");
  EXPECT_EQ(*sim::check_parallel(m, split(1, 33)), "pp=33 exceeds the 32 layers");
}

TEST(MemoryOptions, VllmDefaultsByGpu) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  auto h100 = sim::resolve_options(m, gpu("H100-SXM5-80GB"), {});
  auto a100 = sim::resolve_options(m, gpu("A100-SXM4-80GB"), {});
  ASSERT_TRUE(h100 && a100);
  EXPECT_EQ(h100->max_num_batched_tokens, 8192);
  EXPECT_EQ(h100->max_num_seqs, 1024);
  EXPECT_EQ(a100->max_num_batched_tokens, 2048);  // A100s are excluded by name
  EXPECT_EQ(a100->max_num_seqs, 256);
  EXPECT_EQ(h100->max_model_len, 131072);
  model::Model r1 = test::load_or_die(test::example("r1.yaml"));
  ServingOptions fp8;
  fp8.kv_cache_dtype = model::KvCacheDType::kFP8;
  EXPECT_EQ(sim::resolve_options(r1, gpu("H100-SXM5-80GB"), fp8)->block_size, 64);  // FlashMLA
  EXPECT_EQ(sim::resolve_options(r1, gpu("H100-SXM5-80GB"), {})->block_size, 16);
  EXPECT_EQ(sim::resolve_options(r1, gpu("A100-SXM4-80GB"), fp8)->block_size, 16);
}

TEST(MemorySplits, EnumerationAndSmallestFit) {
  model::Model m = test::load_or_die(test::example("llama-3.1-70b.yaml"));
  auto splits = sim::enumerate_splits(m, 8, false);
  // tp in {1, 2, 4, 8} (64 heads, 8 KV heads) x pp dividing the rest.
  EXPECT_EQ(splits.size(), 10u);
  for (const auto& p : splits) EXPECT_EQ(p.tp * p.pp * p.dp, 8);
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  auto r = sim::resolve_options(m, h100, at(0.9, 8192));
  auto best = sim::smallest_fitting_split(m, h100, 8, 8, *r, false);
  ASSERT_TRUE(best);
  EXPECT_EQ(best->tp, 2);  // 131 GiB of weights: two GPUs, TP before PP
  EXPECT_EQ(best->pp, 1);
}

}  // namespace
}  // namespace tpp

namespace tpp {
namespace {

TEST(MemoryR1, ExpertParallelHoldsWholeExperts) {
  model::Model m = test::load_or_die(test::example("r1.yaml"));
  hw::Gpu h20 = gpu("H20-96GB");
  ParallelConfig tp8 = split(8, 2);
  ParallelConfig ep = tp8;
  ep.expert_parallel = true;  // ep = tp x dp = 8: 32 whole experts a rank, same bytes
  EXPECT_EQ(plan(m, h20, tp8).stages[1].weights_bytes, plan(m, h20, ep).stages[1].weights_bytes);
  ep.dp = 2;  // ep = 16: 16 experts a rank
  const std::int64_t per_layer_experts_tp8 =
      256LL * (3 * 256 * 7168) + 256LL * 4 * (2 * 2 * 56 + 56 * 2);
  EXPECT_EQ(plan(m, h20, tp8).stages[1].weights_bytes -
                plan(m, h20, ep).stages[1].weights_bytes,
            30 * per_layer_experts_tp8 / 2);  // stage 1: 30 MoE layers
  // The fused-MoE workspace is sized by whole experts under EP.
  EXPECT_GT(plan(m, h20, ep).stages[1].activation_peak_bytes,
            plan(m, h20, tp8).stages[1].activation_peak_bytes);
}

}  // namespace
}  // namespace tpp
