// The 2026 architectures (issue 15): their real config.json files read with exact parameter
// counts, and vLLM V1's hybrid KV-cache rules (kv_cache_utils.py) on hand-derived figures:
// KV-cache groups, blocks a request holds under sliding windows and chunked attention, the pool
// of a PP stage, maximum concurrency, and the scheduler and step model that use them.
//
// Independent counts: transformers 5.24 on the meta device (sum of model.parameters() of the
// class the config names, vision tower included). transformers keeps the routers'
// e_score_correction_bias as a buffer, not a parameter; tpp counts it (it is a checkpoint
// tensor), so those models add layers x experts to the transformers figure.
#include <gtest/gtest.h>

#include <algorithm>

#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "model/tensors.h"
#include "simulator/kv_groups.h"
#include "simulator/memory.h"
#include "simulator/scheduler.h"
#include "executor/plan.h"
#include "planner/search.h"
#include "simulator/workload.h"
#include "simulator/step_cost.h"
#include "cli_util.h"
#include "test_util.h"

namespace tpp {
namespace {

using model::LayerAttention;
using test::hf;
using test::load_or_die;

struct Case {
  const char* file;
  const char* arch;
  std::int64_t transformers;  // meta-device count
  std::int64_t buffers;       // router bias entries transformers keeps as buffers
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.file; }

class NewArchitectures : public ::testing::TestWithParam<Case> {};

TEST_P(NewArchitectures, ParameterCountMatchesTransformers) {
  model::Model m = load_or_die(hf(GetParam().file));
  EXPECT_EQ(m.architecture, GetParam().arch);
  EXPECT_EQ(model::param_totals(m, false).total, GetParam().transformers + GetParam().buffers);
}

// The plan file embeds the model in tpp's own schema; reading it back loses nothing.
TEST_P(NewArchitectures, RoundTripsThroughTheOwnSchema) {
  model::Model m = load_or_die(hf(GetParam().file));
  const std::string path = test::write_temp(std::string(GetParam().file) + ".yaml",
                                            model::model_to_json(m).dump());
  model::Model back = load_or_die(path);
  EXPECT_EQ(model::param_totals(back, true).by_component, model::param_totals(m, true).by_component);
  EXPECT_EQ(model::weight_byte_totals(back, true).total, model::weight_byte_totals(m, true).total);
  EXPECT_EQ(back.layer_attention, m.layer_attention);
  EXPECT_EQ(back.sliding_window, m.sliding_window);
  EXPECT_EQ(back.attention_chunk_size, m.attention_chunk_size);
  EXPECT_EQ(back.attention.rotary_dim, m.attention.rotary_dim);
}

INSTANTIATE_TEST_SUITE_P(
    RealConfigs, NewArchitectures,
    ::testing::Values(
        Case{"openai--gpt-oss-20b.json", "GptOssForCausalLM", 20'914'757'184, 0},
        Case{"openai--gpt-oss-120b.json", "GptOssForCausalLM", 116'829'156'672, 0},
        Case{"google--gemma-2-9b-it.json", "Gemma2ForCausalLM", 9'241'705'984, 0},
        Case{"google--gemma-2-27b-it.json", "Gemma2ForCausalLM", 27'227'128'320, 0},
        Case{"google--gemma-3-1b-it.json", "Gemma3ForCausalLM", 999'885'952, 0},
        Case{"google--gemma-3-12b-it.json", "Gemma3ForConditionalGeneration", 12'187'325'040, 0},
        Case{"google--gemma-3-27b-it.json", "Gemma3ForConditionalGeneration", 27'432'406'640, 0},
        Case{"meta-llama--Llama-4-Scout-17B-16E-Instruct.json", "Llama4ForConditionalGeneration",
             108'641'793'536, 0},
        Case{"meta-llama--Llama-4-Maverick-17B-128E-Instruct.json",
             "Llama4ForConditionalGeneration", 401'583'781'376, 0},
        Case{"zai-org--GLM-4.5-Air.json", "Glm4MoeForCausalLM", 106'852'245'504, 45 * 128},
        Case{"zai-org--GLM-4.5.json", "Glm4MoeForCausalLM", 352'797'814'784, 89 * 160},
        Case{"zai-org--GLM-4.6.json", "Glm4MoeForCausalLM", 352'797'814'784, 89 * 160},
        Case{"MiniMaxAI--MiniMax-M2.json", "MiniMaxM2ForCausalLM", 228'689'748'992, 62 * 256},
        Case{"Qwen--Qwen3-Next-80B-A3B-Instruct.json", "Qwen3NextForCausalLM", 79'674'391'296, 0},
        Case{"deepseek-ai--DeepSeek-V3.2.json", "DeepseekV32ForCausalLM", 671'877'929'216,
             58 * 256}),
    [](const auto& p) { return test::file_param_name(p.param.file); });

// The search runs on each: on two 8 x H100 nodes, the recommendation serves every request it can
// and keeps up, or the search says why nothing does.
TEST_P(NewArchitectures, SearchRunsOnIt) {
  model::Model m = load_or_die(hf(GetParam().file));
  auto w = sim::load_workload("chat");
  ASSERT_TRUE(w) << w.error().str();
  auto c = hw::load_cluster("h100x2");
  ASSERT_TRUE(c) << c.error().str();
  planner::SearchOptions o;
  o.progress = false;
  o.slo = planner::choose_slo(*w, {});
  auto r = planner::search(m, *c, {}, *w, o);
  ASSERT_TRUE(r) << r.error().str();
  if (!r->recommended) {
    EXPECT_NE(r->why_none, "");
    return;
  }
  const auto& best = r->candidates[*r->recommended];
  ASSERT_TRUE(best.perf);
  EXPECT_TRUE(best.perf->load.sustained);
  EXPECT_EQ(best.perf->finished + best.perf->rejected_over_max_model_len, best.perf->requests);
  EXPECT_GT(best.memory.gpu_blocks, 0);
}

// Published totals, to their published precision: gpt-oss model card (116.83B, 20.91B), Llama 4
// model card (109B, 400B with the vision encoder), GLM-4.5 README (355B with its MTP layer).
TEST(NewArchitectures, PublishedTotals) {
  auto total = [](const char* f, bool mtp) {
    return static_cast<double>(model::param_totals(load_or_die(hf(f)), mtp).total) / 1e9;
  };
  EXPECT_NEAR(total("openai--gpt-oss-120b.json", false), 116.83, 0.005);
  EXPECT_NEAR(total("openai--gpt-oss-20b.json", false), 20.91, 0.005);
  EXPECT_NEAR(total("meta-llama--Llama-4-Scout-17B-16E-Instruct.json", false), 109, 0.5);
  EXPECT_NEAR(total("meta-llama--Llama-4-Maverick-17B-128E-Instruct.json", false), 400, 2);
  EXPECT_NEAR(total("zai-org--GLM-4.5.json", true), 358.3, 0.05);  // 355B "class"; with MTP
  EXPECT_NEAR(total("MiniMaxAI--MiniMax-M2.json", false), 229, 1);
}

TEST(NewArchitectures, LayerPatterns) {
  model::Model oss = load_or_die(hf("openai--gpt-oss-20b.json"));
  ASSERT_EQ(oss.layer_attention.size(), 24u);
  EXPECT_EQ(oss.layer_attention[0], LayerAttention::kSlidingWindow);  // even layers slide
  EXPECT_EQ(oss.layer_attention[1], LayerAttention::kFull);
  EXPECT_EQ(oss.sliding_window, 128);
  EXPECT_TRUE(oss.attention.sinks);
  EXPECT_EQ(oss.quant.method, model::QuantMethod::kMxfp4);
  EXPECT_TRUE(oss.quant.experts_only);

  // Gemma 3: five local layers to one global (sliding_window_pattern 6 by default).
  model::Model g3 = load_or_die(hf("google--gemma-3-27b-it.json"));
  for (std::int64_t l = 0; l < g3.num_layers; ++l)
    EXPECT_EQ(g3.layer_attention_of(l) == LayerAttention::kFull, (l + 1) % 6 == 0) << l;
  EXPECT_EQ(g3.sliding_window, 1024);
  EXPECT_TRUE(g3.tie_word_embeddings);
  EXPECT_EQ(g3.vocab_size, 262208);  // Gemma3TextConfig's default: the text_config omits it

  // Gemma 2: even layers slide (Gemma2Config's default layer_types).
  model::Model g2 = load_or_die(hf("google--gemma-2-9b-it.json"));
  EXPECT_EQ(g2.layer_attention_of(0), LayerAttention::kSlidingWindow);
  EXPECT_EQ(g2.layer_attention_of(41), LayerAttention::kFull);

  // Llama 4: NoPE layers (every 4th, no_rope_layers empty) attend to everything; the others in
  // chunks of 8192. Maverick alternates dense and MoE layers.
  model::Model mav = load_or_die(hf("meta-llama--Llama-4-Maverick-17B-128E-Instruct.json"));
  EXPECT_EQ(mav.layer_attention_of(3), LayerAttention::kFull);
  EXPECT_EQ(mav.layer_attention_of(4), LayerAttention::kChunkedLocal);
  EXPECT_EQ(mav.attention_chunk_size, 8192);
  EXPECT_EQ(mav.num_moe_layers(), 24);
  EXPECT_FALSE(mav.is_moe_layer(0));
  EXPECT_TRUE(mav.is_moe_layer(1));
  EXPECT_EQ(mav.intermediate_size, 16384);  // intermediate_size_mlp

  model::Model glm = load_or_die(hf("zai-org--GLM-4.5.json"));
  EXPECT_EQ(glm.attention.rotary_dim, 64);  // partial_rotary_factor 0.5 of 128
  EXPECT_EQ(glm.mtp_layers, 1);
  EXPECT_EQ(glm.num_moe_layers(), 89);      // first_k_dense_replace 3
  model::Model mm = load_or_die(hf("MiniMaxAI--MiniMax-M2.json"));
  EXPECT_TRUE(mm.attention.qk_norm_all_heads);
  EXPECT_EQ(mm.attention.head_dim, 128);  // from head_dim, not 3072 / 48
}

// tpp-run's decoder runs none of the new layers: it names what it would get wrong.
TEST(NewArchitectures, ExecutorRefusesWhatItDoesNotRun) {
  EXPECT_EQ(exec::executor_unsupported(load_or_die(hf("meta-llama--Llama-3.1-8B-Instruct.json"))), "");
  EXPECT_EQ(exec::executor_unsupported(load_or_die(hf("openai--gpt-oss-20b.json"))),
            "sliding-window, chunked or linear attention layers");
  EXPECT_EQ(exec::executor_unsupported(load_or_die(hf("zai-org--GLM-4.5.json"))),
            "partial rotary embeddings");
  model::Model mm = load_or_die(hf("MiniMaxAI--MiniMax-M2.json"));
  mm.attention.rotary_dim = 0;
  EXPECT_EQ(exec::executor_unsupported(mm), "q/k norms over all heads");
  model::Model vis = load_or_die(hf("meta-llama--Llama-4-Scout-17B-16E-Instruct.json"));
  vis.layer_attention.clear();
  EXPECT_EQ(exec::executor_unsupported(vis), "an image encoder");
}

// nvidia/DeepSeek-R1-FP4 (tests/data/hf/nvfp4/README.md): NVFP4 routed and shared experts and
// dense MLPs, BF16 attention, MTP layer, embedding and head. Its safetensors hold
// 396,767,103,086 entries (each packed byte, each fp8 block scale and the two fp32 scalars of a
// tensor one entry): the hub's "396.8B params". The sum below counts them from tpp's tensors.
TEST(NewArchitectures, DeepSeekR1Fp4FromHfQuantConfig) {
  model::Model m = load_or_die(hf("nvfp4/DeepSeek-R1-FP4"));
  EXPECT_EQ(m.quant.method, model::QuantMethod::kNvfp4);
  EXPECT_EQ(m.quant.group_size, 16);
  std::int64_t entries = 0;
  auto add = [&](const std::vector<model::TensorSpec>& ts) {
    for (const auto& t : ts)
      entries += t.quantized ? t.params() / 2 + model::aux_elements(t, m) : t.params();
  };
  add(model::global_tensors(m));
  for (std::int64_t l = 0; l < m.num_layers + m.mtp_layers; ++l) {
    const auto ts = model::layer_tensors(m, l);
    for (const auto& t : ts) {  // attention and the MTP layer stay BF16
      if (t.component == model::Component::kAttention || l >= m.num_layers) {
        EXPECT_FALSE(t.quantized) << t.name;
      }
    }
    add(ts);
  }
  EXPECT_EQ(entries, 396'767'103'086);
  // Weight bytes: 4.5 bits a quantized weight and 8 bytes of scalars a tensor.
  const auto ts = model::layer_tensors(m, 3);
  const auto& experts = *std::find_if(ts.begin(), ts.end(), [](const model::TensorSpec& t) {
    return t.component == model::Component::kExperts;
  });
  EXPECT_EQ(model::storage_bytes(experts, m),
            experts.count * (experts.rows * (experts.cols / 2 + experts.cols / 16) + 8));
}

// A checkpoint calibrated for an NVFP4 KV cache says so (kv_cache_quant_algo "NVFP4"), and vLLM
// then runs it: the model's KV dtype is nvfp4. (The test checkpoint above has none: null.)
TEST(NewArchitectures, Nvfp4KvCacheFromHfQuantConfig) {
  const std::string dir = std::string(TPP_TEST_DATA) + "/hf/nvfp4/DeepSeek-R1-FP4/";
  std::string quant = test::slurp(dir + "hf_quant_config.json");
  const std::string null_kv = "\"kv_cache_quant_algo\": null";
  ASSERT_NE(quant.find(null_kv), std::string::npos);
  quant.replace(quant.find(null_kv), null_kv.size(), "\"kv_cache_quant_algo\": \"NVFP4\"");
  const std::string config = test::write_temp("ckpt/config.json", test::slurp(dir + "config.json"));
  test::write_temp("ckpt/hf_quant_config.json", quant);
  model::Model m = load_or_die(std::filesystem::path(config).parent_path().string());
  EXPECT_EQ(m.kv_cache_dtype, model::KvCacheDType::kNvfp4);
  EXPECT_EQ(load_or_die(hf("nvfp4/DeepSeek-R1-FP4")).kv_cache_dtype, model::KvCacheDType::kAuto);
  // Before Blackwell it is refused, naming the checkpoint (the flag overrides it).
  auto h100 = hw::load_gpu("H100-SXM5-80GB");
  ASSERT_TRUE(h100);
  auto refused = sim::resolve_options(m, *h100, {});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message.rfind("the checkpoint's NVFP4 KV cache (kv_cache_quant_algo; ", 0), 0u)
      << refused.error().message;
  sim::ServingOptions fp8;
  fp8.kv_cache_dtype = model::KvCacheDType::kFP8;
  EXPECT_TRUE(sim::resolve_options(m, *h100, fp8));
}

// The plan file carries the ignore list: the model read back stores the same bytes.
TEST(NewArchitectures, Nvfp4RoundTripsThroughTheOwnSchema) {
  model::Model m = load_or_die(hf("nvfp4/DeepSeek-R1-FP4"));
  model::Model back =
      load_or_die(test::write_temp("r1-fp4.yaml", model::model_to_json(m).dump()));
  EXPECT_EQ(back.quant.ignore, m.quant.ignore);
  EXPECT_EQ(model::weight_byte_totals(back, true).total, model::weight_byte_totals(m, true).total);
  EXPECT_EQ(exec::executor_unsupported(m), "NVFP4 weights");
}

// ---- KV-cache groups (kv_cache_utils._get_kv_cache_groups_uniform_page_size) ------------------

TEST(KvGroups, GroupSizesByHand) {
  // gpt-oss-20b: 12 full + 12 sliding: 12 < 1.5 x 12, so one group of each, 12 layers.
  auto oss = sim::kv_groups(load_or_die(hf("openai--gpt-oss-20b.json")), 16);
  EXPECT_EQ(oss.group_size, 12);
  EXPECT_EQ(oss.num_groups(), 2);
  // Gemma 3 27B: 10 full + 52 sliding: 52 >= 15, group size 10: 1 full + 6 sliding groups.
  auto g3 = sim::kv_groups(load_or_die(hf("google--gemma-3-27b-it.json")), 16);
  EXPECT_EQ(g3.group_size, 10);
  ASSERT_EQ(g3.kinds.size(), 2u);
  EXPECT_EQ(g3.kinds[0].kind, LayerAttention::kFull);
  EXPECT_EQ(g3.kinds[0].groups, 1);
  EXPECT_EQ(g3.kinds[1].groups, 6);
  // Strided: the first sliding group holds layers 0, 6, 12, ... (every 6th sliding layer).
  EXPECT_EQ(g3.layers_of_group[1][0], 0);
  EXPECT_EQ(g3.layers_of_group[1][1], 7);  // sliding layers are 0-4, 6-10, ...: the 7th is 7
  // Llama 4 Scout: 12 full + 36 chunked: group size 12, 1 + 3 groups.
  auto l4 = sim::kv_groups(load_or_die(hf("meta-llama--Llama-4-Scout-17B-16E-Instruct.json")), 16);
  EXPECT_EQ(l4.group_size, 12);
  EXPECT_EQ(l4.num_groups(), 4);
  // Every layer full attention: one group of all layers, as before hybrid models.
  auto dense = sim::kv_groups(load_or_die(hf("meta-llama--Llama-3.1-8B-Instruct.json")), 16);
  EXPECT_TRUE(dense.uniform_full());
  EXPECT_EQ(dense.group_size, 32);
}

TEST(KvGroups, BlocksARequestHolds) {
  auto g = sim::kv_groups(load_or_die(hf("openai--gpt-oss-20b.json")), 16);
  // 1000 tokens cached, one more: full attention cdiv(1001, 16) = 63; the 128-token window
  // frees blocks wholly before token 1000 - 128 + 1 = 873: 873 // 16 = 54, leaving 9.
  EXPECT_EQ(g.held(1000, 1), 63 + 9);
  EXPECT_EQ(g.held(0, 100), 7 + 7);  // a prefill from nothing: nothing skipped yet
  // The most a request of 131072 tokens holds with 8192-token chunks: 8192 full blocks;
  // sliding cdiv(min(127 + 8192, 131072), 16) + 1 = 521 (SlidingWindowSpec).
  EXPECT_EQ(g.peak(131072, 8192), 8192 + 521);
  auto l4 = sim::kv_groups(load_or_die(hf("meta-llama--Llama-4-Scout-17B-16E-Instruct.json")), 16);
  // Chunked (8192): at 20000 tokens the chunk began at 16384: 16384 // 16 = 1024 blocks freed
  // of cdiv(20001, 16) = 1251, in each of 3 chunked groups; the full group keeps all 1251.
  EXPECT_EQ(l4.held(20000, 1), 1251 + 3 * (1251 - 1024));
}

TEST(KvGroups, PoolOfAPipelineStage) {
  // gpt-oss-20b over 2 stages: each holds 6 full and 6 sliding layers: divisor 6.
  auto g = sim::kv_groups(load_or_die(hf("openai--gpt-oss-20b.json")), 16);
  EXPECT_EQ(g.stage_group_size(0, 12), 6);
  EXPECT_EQ(g.stage_group_size(12, 12), 6);
  EXPECT_EQ(g.stage_group_size(0, 24), 12);
}

hw::Gpu gpu(const char* name) {
  auto g = hw::load_gpu(name);
  EXPECT_TRUE(g) << (g ? "" : g.error().str());
  return g ? *g : hw::Gpu{};
}

TEST(HybridMemory, BlocksTokensAndConcurrencyByHand) {
  model::Model m = load_or_die(hf("openai--gpt-oss-20b.json"));
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  sim::ServingOptions so;
  auto o = sim::resolve_options(m, h100, so);
  ASSERT_TRUE(o) << o.error().str();
  sim::ParallelConfig p;
  auto plan = sim::simulate_memory(sim::as_loaded(m, so), h100, p, *o);
  ASSERT_TRUE(plan.fits) << plan.why_not;
  const auto& st = plan.stages[0];
  // page = 16 tokens x 2 x 8 KV heads x 64 x 2 bytes = 32768; 12 layers share each block id.
  EXPECT_EQ(st.kv_group_size, 12);
  EXPECT_EQ(plan.gpu_blocks, st.kv_cache_bytes / 32768 / 12);
  EXPECT_EQ(plan.kv_cache_tokens, plan.gpu_blocks / 2 * 16);  // blocks // groups x block_size
  EXPECT_DOUBLE_EQ(plan.max_concurrency, static_cast<double>(plan.gpu_blocks) / (8192 + 521));
  // Twice the blocks the same memory gives when every layer keeps every token.
  EXPECT_NEAR(static_cast<double>(plan.gpu_blocks),
              2.0 * static_cast<double>(st.kv_cache_bytes / 32768 / 24), 1.0);
}

// vLLM's log for gpt-oss-120b (alvarobartt/hf-mem#60): "Available KV cache memory: 5.38 GiB",
// "GPU KV cache size: 78,384 tokens". From the same available memory tpp's groups give the same
// tokens, within the log's rounding of the GiB figure (0.005 GiB = 73 tokens).
TEST(HybridMemory, GptOss120bTokensFromItsLog) {
  auto g = sim::kv_groups(load_or_die(hf("openai--gpt-oss-120b.json")), 16);
  const auto avail = static_cast<std::int64_t>(5.38 * 1073741824.0);
  const std::int64_t page = 16 * 2 * 8 * 64 * 2;
  const std::int64_t blocks = avail / page / g.group_size;
  EXPECT_NEAR(static_cast<double>(g.tokens(blocks)), 78384, 80);
}

// Qwen3-Next: 36 gated-delta-net layers (a state per sequence) and 12 of full attention. vLLM
// raises the attention block until its page holds one layer's state: at TP1 the state is
// conv 3 x 8192 + ssm 32 x 128 x 128 values of 2 bytes = 1,097,728 bytes, a token of attention
// 2 x 2 KV heads x 256 x 2 = 2048 bytes: 16 x cdiv(1097728, 16 x 2048) = 544 tokens. At TP4: conv
// 3 x 2048, ssm 8 x 128 x 128 = 274,432 bytes, a token 1024 bytes (one KV head): 272.
TEST(HybridMemory, Qwen3NextBlockSizeAndGroupsByHand) {
  model::Model m = load_or_die(hf("Qwen--Qwen3-Next-80B-A3B-Instruct.json"));
  EXPECT_EQ(m.layer_attention_of(3), LayerAttention::kFull);
  EXPECT_EQ(m.layer_attention_of(4), LayerAttention::kLinear);
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  auto o = sim::resolve_options(m, h100, {});
  ASSERT_TRUE(o);
  sim::ParallelConfig tp1, tp4;
  tp4.tp = 4;
  auto p1 = sim::simulate_memory(m, h100, tp1, *o);
  auto p4 = sim::simulate_memory(m, h100, tp4, *o);
  EXPECT_EQ(p1.options.block_size, 544);
  EXPECT_EQ(p4.options.block_size, 272);
  // 12 full and 36 linear layers: group size 12, one full group and three linear ones.
  EXPECT_EQ(p4.kv_groups.group_size, 12);
  EXPECT_EQ(p4.kv_groups.num_groups(), 4);
  EXPECT_EQ(p4.gpu_blocks, p4.stages[0].kv_cache_bytes / (272 * 1024) / 12);
  // A request holds its tokens' blocks in the full group and one state block in each other.
  EXPECT_EQ(p4.kv_groups.held(1000, 1), (1001 + 271) / 272 + 3);
  EXPECT_EQ(p4.kv_groups.peak(262144, 8192), 262144 / 272 + 1 + 3);
}

// DeepSeek-V3.2: the MLA cache and the indexer's K cache (128 fp8 values and one fp32 scale)
// form one group (uniform type): per token and layer 1152 + 132 bytes in bf16, 656 + 132 with
// an fp8 cache (fp8_ds_mla); FlashMLA's sparse kernels take blocks of 64.
TEST(HybridMemory, DeepSeekV32IndexerCacheByHand) {
  model::Model m = load_or_die(hf("deepseek-ai--DeepSeek-V3.2.json"));
  ASSERT_TRUE(m.indexer);
  EXPECT_EQ(m.indexer->topk, 2048);
  sim::ParallelConfig p;
  p.tp = 8;
  EXPECT_EQ(sim::kv_bytes_per_token_layer(m, p, 2), 1152 + 132);
  EXPECT_EQ(sim::kv_bytes_per_token_layer(m, p, 1), 656 + 132);
  hw::Gpu h100 = gpu("H100-SXM5-80GB");
  auto o = sim::resolve_options(m, h100, {});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->block_size, 64);
  p.pp = 2;  // layers 0-30 and 31-60
  auto plan = sim::simulate_memory(m, h100, p, *o);
  ASSERT_TRUE(plan.fits) << plan.why_not;
  EXPECT_TRUE(plan.kv_groups.uniform_full());
  const auto& st = plan.stages[plan.binding_stage];
  EXPECT_EQ(plan.gpu_blocks, st.kv_cache_bytes / (64 * 1284) / st.num_layers);
}

// ---- the scheduler on a hybrid pool -----------------------------------------------------------

TEST(HybridScheduler, SlidingBlocksGoBackToThePool) {
  auto groups = sim::kv_groups(load_or_die(hf("openai--gpt-oss-20b.json")), 16);
  sim::SchedulerConfig c{4, 8192, 16, 100000, 0};
  c.kv_groups = groups;
  sim::Scheduler s(c);
  s.add(sim::Request{0, 0, 1000, 200}, 0);
  sim::Batch b = s.schedule();
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.shape.window, 128);
  EXPECT_EQ(s.used_blocks(), 2 * 63);  // the prefill allocates every token in both groups
  double now = 1;
  s.complete(b, now, nullptr);
  for (int k = 0; k < 100; ++k) {
    b = s.schedule();
    s.complete(b, ++now, nullptr);
  }
  // 1100 tokens cached, the 101st decode pending: full cdiv(1100, 16) = 69 blocks; sliding keeps
  // cdiv(1100, 16) - (1099 - 127) // 16 = 69 - 60 = 9.
  EXPECT_EQ(s.used_blocks(), 69 + 9);
}

TEST(HybridScheduler, AdmitsWhatFitsWithinTheWindowedPeak) {
  auto groups = sim::kv_groups(load_or_die(hf("openai--gpt-oss-20b.json")), 16);
  // 8000 tokens a request: full 500 blocks, sliding at most cdiv(min(127 + 8192, 8000), 16) + 1
  // = 501. A pool of 1000 blocks cannot take it (1001); one of 1001 can.
  sim::SchedulerConfig c{4, 8192, 16, 1000, 0};
  c.kv_groups = groups;
  sim::Scheduler small(c);
  small.add(sim::Request{0, 0, 7000, 1000}, 0);
  EXPECT_TRUE(small.seqs()[0].rejected);
  c.num_blocks = 1001;
  sim::Scheduler fits(c);
  fits.add(sim::Request{0, 0, 7000, 1000}, 0);
  EXPECT_FALSE(fits.seqs()[0].rejected);
}

// Runs `requests` to the end and returns the tokens computed in all (recomputation included)
// and the preemptions.
std::pair<std::int64_t, std::int64_t> run_to_end(sim::SchedulerConfig c,
                                                 const std::vector<sim::Request>& requests) {
  sim::Scheduler s(c);
  for (const auto& r : requests) s.add(r, 0);
  std::int64_t computed = 0;
  double now = 0;
  for (int step = 0; s.has_work() && step < 100000; ++step) {
    sim::Batch b = s.schedule();
    if (b.empty()) break;
    for (const auto& item : b.items) computed += item.new_tokens;
    s.complete(b, ++now, nullptr);
  }
  EXPECT_EQ(s.unfinished(), 0);
  return {computed, s.preemptions()};
}

// run_to_end without the prefix cache, then with it.
std::pair<std::pair<std::int64_t, std::int64_t>, std::pair<std::int64_t, std::int64_t>>
without_and_with_cache(sim::SchedulerConfig c, const std::vector<sim::Request>& requests) {
  c.prefix_caching = false;
  const auto without = run_to_end(c, requests);
  c.prefix_caching = true;
  return {without, run_to_end(c, requests)};
}

// gpt-oss-20b's groups over a pool of 300 blocks of 16, 512 tokens a step: about one and a half
// 3000-token prompts.
sim::SchedulerConfig gpt_oss_small_pool() {
  sim::SchedulerConfig c{8, 512, 16, 300, 0};
  c.kv_groups = sim::kv_groups(load_or_die(hf("openai--gpt-oss-20b.json")), 16);
  return c;
}

// vLLM's prefix cache serves sliding-window groups too: a preempted gpt-oss request whose blocks
// nobody has taken yet comes back without recomputing its prompt. Here three 3000-token prompts
// share a pool that holds about one and a half of them, prefilled 512 tokens a step: they
// preempt each other, and with the cache only the prompts and outputs (9150 tokens) and the odd
// evicted run are computed.
TEST(HybridScheduler, PreemptedRequestsReuseTheirCachedPrefix) {
  const std::vector<sim::Request> rs{{0, 0, 3000, 50}, {1, 0, 3000, 50}, {2, 0, 3000, 50}};
  const auto [off, on] = without_and_with_cache(gpt_oss_small_pool(), rs);
  const auto [without, preempted_without] = off;
  const auto [with, preempted_with] = on;
  EXPECT_GT(preempted_without, 0);
  EXPECT_GT(preempted_with, 0);
  const std::int64_t minimum = 3 * (3000 + 50) - 3;  // each request's last output is not fed back
  EXPECT_GE(with, minimum);
  EXPECT_GE(without, minimum);
  // Every preemption without the cache recomputes at least a 512-token chunk of prompt.
  EXPECT_GE(without - minimum, 512 * preempted_without / 2);
  EXPECT_LT(with - minimum, (without - minimum) / 4);
}

// The hit itself: a preempted gpt-oss request whose run nobody took comes back with its
// computed tokens, rounded down to a block, as context (without the cache it starts again from
// its first chunk: this fails with prefix_caching off).
TEST(HybridScheduler, ReadmittedRequestStartsFromItsCachedBlocks) {
  sim::SchedulerConfig c = gpt_oss_small_pool();
  c.prefix_caching = true;
  sim::Scheduler s(c);
  s.add(sim::Request{0, 0, 3000, 50}, 0);
  s.add(sim::Request{1, 0, 3000, 50}, 0);
  double now = 0;
  std::int64_t computed_before = -1;  // request 1's cached tokens when it was last preempted
  bool checked = false;
  for (int step = 0; s.has_work() && step < 10000 && !checked; ++step) {
    const std::int64_t preempted = s.seqs()[1].preemptions;
    const std::int64_t was = s.seqs()[1].computed;
    sim::Batch b = s.schedule();
    if (s.seqs()[1].preemptions > preempted) computed_before = was;
    for (const auto& item : b.items)
      if (item.seq == 1 && computed_before > 0 && s.seqs()[1].preemptions > 0 &&
          item.context > 0 && !checked) {
        EXPECT_EQ(item.context, computed_before / 16 * 16);
        checked = true;
      }
    s.complete(b, ++now, nullptr);
  }
  EXPECT_TRUE(checked) << "request 1 was never preempted and re-admitted";
  EXPECT_GE(s.seqs()[1].preemptions, 1);
}

// Linear layers' states are not cached (mamba_cache_mode none): the cache changes nothing.
TEST(HybridScheduler, NoPrefixReuseWithLinearLayers) {
  auto groups = sim::kv_groups(load_or_die(hf("Qwen--Qwen3-Next-80B-A3B-Instruct.json")), 544);
  sim::SchedulerConfig c{8, 512, 544, 40, 0};
  c.kv_groups = groups;
  const std::vector<sim::Request> rs{{0, 0, 6000, 50}, {1, 0, 6000, 50}, {2, 0, 6000, 50}};
  const auto [without, with] = without_and_with_cache(c, rs);
  EXPECT_GT(without.second, 0);
  EXPECT_EQ(with, without);
}

// ---- the step model: windowed layers attend to their window -----------------------------------

TEST(HybridStepCost, WindowedShapes) {
  sim::BatchShape b;
  b.window = 128;
  b.add(1, 10000);  // a decode at 10000 tokens: 128 keys in a sliding layer
  b.add(256, 0);    // a prefill of 256: keys 1..128, then 128 each: 128 x 129 / 2 + 128 x 128
  EXPECT_DOUBLE_EQ(b.decode_context, 10001);
  EXPECT_DOUBLE_EQ(b.windowed_decode_context, 128);
  EXPECT_DOUBLE_EQ(b.windowed_prefill_pairs, 128.0 * 129 / 2 + 128.0 * 128);
  EXPECT_DOUBLE_EQ(b.prefill_pairs, 256.0 * 257 / 2);
  sim::BatchShape c;
  c.window = 8192;
  c.chunked = true;
  c.add(1, 20000);  // chunk began at 16384: 20000 - 16384 + 1 keys
  EXPECT_DOUBLE_EQ(c.windowed_decode_context, 3617);
  c.add(100, 8150);  // crosses a chunk edge at 8192: 42 queries see 8151..8192, 58 see 1..58
  EXPECT_DOUBLE_EQ(c.windowed_prefill_pairs,
                   (8151.0 + 8192) * 42 / 2 + 58.0 * 59 / 2);
}

// A gated-delta-net layer's decode reads its state, whatever the context; full attention reads
// the context.
TEST(HybridStepCost, LinearLayersDoNotGrowWithContext) {
  model::Model m = load_or_die(hf("Qwen--Qwen3-Next-80B-A3B-Instruct.json"));
  auto cluster = hw::load_cluster("h100x2");
  ASSERT_TRUE(cluster) << cluster.error().str();
  auto o = sim::resolve_options(m, cluster->gpu, {});
  ASSERT_TRUE(o);
  sim::ParallelConfig p;
  p.tp = 4;
  sim::StepCostModel cost(m, *cluster, p, *o);
  auto attention = [&](std::int64_t context) {
    sim::BatchShape b;
    for (int k = 0; k < 32; ++k) b.add(1, context);
    return cost.cost(0, b).attention;
  };
  const double short_ctx = attention(1000), long_ctx = attention(100000);
  // 36 of 48 layers keep a state: their part is the same at both lengths, so the growth is the
  // 12 full layers' alone, well under the 100x of the context.
  EXPECT_GT(long_ctx, short_ctx);
  sim::BatchShape b1, b2;
  for (int k = 0; k < 32; ++k) b1.add(1, 1000), b2.add(1, 100000);
  EXPECT_DOUBLE_EQ(cost.linear_attention_time(b1), cost.linear_attention_time(b2));
}

// DeepSeek-V3.2's queries read at most index_topk (2048) cached tokens; its indexer scores
// every one of them.
TEST(HybridStepCost, SparseAttentionReadsTopkTokens) {
  model::Model v32 = load_or_die(hf("deepseek-ai--DeepSeek-V3.2.json"));
  auto groups = sim::kv_groups(v32, 64);
  sim::SchedulerConfig c{4, 8192, 64, 100000, 0};
  c.kv_groups = groups;
  sim::Scheduler s(c);
  s.add(sim::Request{0, 0, 100, 2}, 0);
  EXPECT_EQ(s.schedule().shape.window, 2048);
}

// FP4 weights: on a GPU without FP4 tensor cores (Hopper) vLLM's Marlin kernels dequantise to
// bf16 and reach 0.54 of the bf16 peak on large batches (measured on an H20); with FP4 tensor
// cores vLLM's MXFP4 MoE runs bf16 activations at the bf16 GEMM's share of the peak. Decodes read
// the same 4.25-bit weights either way.
TEST(Fp4StepCost, Mxfp4IsWeightOnlyWithoutFp4TensorCores) {
  model::Model oss = load_or_die(hf("openai--gpt-oss-120b.json"));
  auto hopper = hw::load_cluster("h100x1");
  ASSERT_TRUE(hopper) << hopper.error().str();
  hw::Cluster fp4 = *hopper;
  fp4.gpu.fp4_dense_tflops = {2 * fp4.gpu.fp8_dense_tflops.value, "test"};
  sim::ServingOptions so;
  so.operator_tables = false;
  auto o = sim::resolve_options(oss, hopper->gpu, so);
  ASSERT_TRUE(o);
  sim::ParallelConfig p;
  const sim::StepCostModel marlin(oss, *hopper, p, *o), native(oss, fp4, p, *o);
  sim::BatchShape prefill, decode;
  for (int k = 0; k < 4; ++k) prefill.add(4096, 0);
  decode.add(1, 1000);
  const double ratio = marlin.cost(0, prefill).gemm / native.cost(0, prefill).gemm;
  // The experts (4.5 of the 5.1 billion active parameters) slow by 0.803 / 0.54 = 1.49; the
  // attention projections and the head do not.
  EXPECT_GT(ratio, 1.3);
  EXPECT_LT(ratio, (794.5 / 989) / (79.9 / 148) + 1e-9);
  EXPECT_DOUBLE_EQ(marlin.cost(0, decode).gemm, native.cost(0, decode).gemm);
}

// NVFP4 (W4A4) runs on FP4 tensor cores where the GPU has them: DeepSeek-R1-FP4's expert GEMMs
// on a B200 are three times faster than the same GPU would run them without (whole experts
// under EP; TP8's 256-row slices are bound by reading the activations either way).
TEST(Fp4StepCost, Nvfp4UsesFp4TensorCoresOnBlackwell) {
  model::Model r1 = load_or_die(hf("nvfp4/DeepSeek-R1-FP4/config.json"));
  auto b200 = hw::load_cluster("b200x1");
  ASSERT_TRUE(b200) << b200.error().str();
  EXPECT_TRUE(b200->gpu.has_fp4());
  hw::Cluster no_fp4 = *b200;
  no_fp4.gpu.fp4_dense_tflops = {};
  sim::ServingOptions so;
  so.operator_tables = false;
  auto o = sim::resolve_options(r1, b200->gpu, so);
  ASSERT_TRUE(o) << o.error().str();
  sim::ParallelConfig p;
  p.tp = 8;
  p.expert_parallel = true;
  const sim::StepCostModel native(r1, *b200, p, *o), marlin(r1, no_fp4, p, *o);
  sim::BatchShape prefill;
  for (int k = 0; k < 4; ++k) prefill.add(8192, 0);
  // Experts: 9000 x 0.776 x 0.53 = 3.7 PFLOP/s against 2250 x 0.54 = 1.2; the attention
  // projections (bf16, excluded from quantization) take the same time on both.
  EXPECT_GT(marlin.cost(0, prefill).gemm, 1.5 * native.cost(0, prefill).gemm);
}

// DeepSeek-V3.2's sparse attention as vLLM runs FlashMLA's sparse kernels: every query token
// over all 2048 top-k slots whatever its context, the rank's heads padded to 64 on Hopper, at
// 640 TFLOP/s, or its gathered rows at HBM speed. By hand, 8192 tokens at TP8 (16 heads, padded
// to 64): 2 x 8192 x 2048 x 64 x (576 + 512) = 2.336e12 FLOPs in 3.65 ms; the rows, with an fp8
// cache (656 bytes a token), 11.0 GB at 0.9 x 4.8 TB/s in 2.55 ms (bf16's 1152 bytes: 4.47 ms).
TEST(HybridStepCost, SparseMlaPaddedHeadsAndFixedTopk) {
  model::Model v32 = load_or_die(hf("deepseek-ai--DeepSeek-V3.2.json"));
  auto h200 = hw::load_cluster("h200x1");
  ASSERT_TRUE(h200) << h200.error().str();
  sim::ServingOptions so;
  so.kv_cache_dtype = model::KvCacheDType::kFP8;
  auto fp8 = sim::resolve_options(v32, h200->gpu, so);
  auto bf16 = sim::resolve_options(v32, h200->gpu, {});
  ASSERT_TRUE(fp8);
  ASSERT_TRUE(bf16);
  sim::ParallelConfig tp8, tp2;
  tp8.tp = 8;
  tp2.tp = 2;
  const sim::StepCostModel c8(v32, *h200, tp8, *fp8), c2(v32, *h200, tp2, *fp8),
      c8_bf16(v32, *h200, tp8, *bf16);
  sim::BatchShape prefill;
  for (int k = 0; k < 4; ++k) prefill.add(2048, 0);
  const double flops = 2.0 * 8192 * 2048 * 64 * (576 + 512);
  EXPECT_NEAR(c8.sparse_mla_time(prefill), flops / 640e12, 0.01 * flops / 640e12 + 30e-6);
  const double bf16_bytes = 8192.0 * 2048 * 1152;
  EXPECT_NEAR(c8_bf16.sparse_mla_time(prefill), bf16_bytes / (0.9 * 4.8e12),
              0.01 * bf16_bytes / (0.9 * 4.8e12) + 30e-6);
  // 16 heads a rank at TP8 do the work of TP2's 64.
  EXPECT_DOUBLE_EQ(c8.sparse_mla_time(prefill), c2.sparse_mla_time(prefill));
  sim::BatchShape short_ctx, long_ctx;
  for (int k = 0; k < 64; ++k) short_ctx.add(1, 100), long_ctx.add(1, 100000);
  EXPECT_DOUBLE_EQ(c8.sparse_mla_time(short_ctx), c8.sparse_mla_time(long_ctx));
  // The indexer still scores every cached token: it grows with the context.
  EXPECT_GT(c8.indexer_time(long_ctx), 10 * c8.indexer_time(short_ctx));
}

TEST(HybridStepCost, LongDecodesCostLessWithWindows) {
  model::Model oss = load_or_die(hf("openai--gpt-oss-20b.json"));
  auto cluster = hw::load_cluster("h100x2");
  ASSERT_TRUE(cluster) << cluster.error().str();
  auto o = sim::resolve_options(oss, cluster->gpu, {});
  ASSERT_TRUE(o);
  sim::ParallelConfig p;
  sim::StepCostModel cost(oss, *cluster, p, *o);
  sim::BatchShape full, windowed;
  windowed.window = 128;
  for (int k = 0; k < 64; ++k) {
    full.add(1, 60000);
    windowed.add(1, 60000);
  }
  const double a_full = cost.cost(0, full).attention, a_win = cost.cost(0, windowed).attention;
  // Half the layers read 128 tokens instead of 60001: attention a little over half.
  EXPECT_LT(a_win, 0.55 * a_full);
  EXPECT_GT(a_win, 0.45 * a_full);
}

}  // namespace
}  // namespace tpp
