// The Hugging Face config.json reader, on the real configs in tests/data/hf/ (copied from
// ../shared/reference/hf-configs, sources in SOURCES.md). Expected totals: published figures
// and an independent count with transformers 5.24 on the meta device.
#include <gtest/gtest.h>

#include <filesystem>

#include "model/tensors.h"
#include "test_util.h"

namespace tpp {
namespace {

using test::hf;
using test::load_or_die;

struct Case {
  const char* file;
  const char* arch;
  std::int64_t params;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.file; }

class HfTotals : public ::testing::TestWithParam<Case> {};

TEST_P(HfTotals, MatchesIndependentCount) {
  model::Model m = load_or_die(hf(GetParam().file));
  EXPECT_EQ(m.architecture, GetParam().arch);
  EXPECT_EQ(model::param_totals(m, false).total, GetParam().params);
}

INSTANTIATE_TEST_SUITE_P(
    RealConfigs, HfTotals,
    ::testing::Values(
        Case{"meta-llama--Llama-3.1-8B-Instruct.json", "LlamaForCausalLM", 8'030'261'248},
        Case{"meta-llama--Llama-3.1-70B-Instruct.json", "LlamaForCausalLM", 70'553'706'496},
        Case{"meta-llama--Llama-2-7b-hf.json", "LlamaForCausalLM", 6'738'415'616},
        Case{"codellama--CodeLlama-7b-hf.json", "LlamaForCausalLM", 6'738'546'688},
        Case{"Qwen--Qwen2.5-72B-Instruct.json", "Qwen2ForCausalLM", 72'706'203'648},
        Case{"Qwen--Qwen2.5-7B-Instruct.json", "Qwen2ForCausalLM", 7'615'616'512},
        Case{"Qwen--Qwen3-8B.json", "Qwen3ForCausalLM", 8'190'735'360},
        Case{"Qwen--Qwen3-30B-A3B.json", "Qwen3MoeForCausalLM", 30'532'122'624},
        Case{"Qwen--Qwen3-235B-A22B-FP8.json", "Qwen3MoeForCausalLM", 235'093'634'560},
        Case{"mistralai--Mixtral-8x7B-Instruct-v0.1.json", "MixtralForCausalLM", 46'702'792'704},
        Case{"deepseek-ai--DeepSeek-V2-Lite-Chat.json", "DeepseekV2ForCausalLM", 15'706'484'224},
        Case{"deepseek-ai--DeepSeek-R1.json", "DeepseekV3ForCausalLM", 671'026'419'200}),
    [](const auto& p) { return test::file_param_name(p.param.file); });

// The shipped YAML examples and the published configs describe the same models.
TEST(HfConfig, YamlExamplesAgreeWithConfigs) {
  const std::pair<const char*, const char*> pairs[] = {
      {"r1.yaml", "deepseek-ai--DeepSeek-R1.json"},
      {"llama-3.1-8b.yaml", "meta-llama--Llama-3.1-8B-Instruct.json"},
      {"llama-3.1-70b.yaml", "meta-llama--Llama-3.1-70B-Instruct.json"},
      {"qwen2.5-72b.yaml", "Qwen--Qwen2.5-72B-Instruct.json"},
      {"mixtral-8x7b.yaml", "mistralai--Mixtral-8x7B-Instruct-v0.1.json"},
      {"qwen3-30b-a3b.yaml", "Qwen--Qwen3-30B-A3B.json"}};
  for (const auto& [yaml, json] : pairs) {
    model::Model a = load_or_die(test::example(yaml));
    model::Model b = load_or_die(hf(json));
    EXPECT_EQ(model::param_totals(a, true).by_component, model::param_totals(b, true).by_component)
        << yaml;
    EXPECT_EQ(model::weight_byte_totals(a, true).total, model::weight_byte_totals(b, true).total)
        << yaml;
    EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings) << yaml;
    EXPECT_EQ(a.attention.head_dim, b.attention.head_dim) << yaml;
    EXPECT_EQ(a.attention.num_kv_heads, b.attention.num_kv_heads) << yaml;
  }
}

TEST(HfConfig, DeepSeekFields) {
  model::Model r1 = load_or_die(hf("deepseek-ai--DeepSeek-R1.json"));
  EXPECT_EQ(r1.name, "deepseek-ai/DeepSeek-R1");  // from the hub-cache file name
  ASSERT_TRUE(r1.mla && r1.moe);
  EXPECT_EQ(r1.mla->kv_lora_rank, 512);
  EXPECT_EQ(r1.mla->q_lora_rank, 1536);
  EXPECT_EQ(r1.moe->first_k_dense, 3);
  EXPECT_TRUE(r1.moe->router_bias);
  EXPECT_EQ(r1.mtp_layers, 1);
  EXPECT_EQ(r1.quant.method, model::QuantMethod::kFp8);
  EXPECT_EQ(r1.quant.block_rows, 128);
  EXPECT_EQ(r1.quant.block_cols, 128);

  model::Model lite = load_or_die(hf("deepseek-ai--DeepSeek-V2-Lite-Chat.json"));
  ASSERT_TRUE(lite.mla && lite.moe);
  EXPECT_EQ(lite.mla->q_lora_rank, 0);  // null in the config: q_proj without compression
  EXPECT_FALSE(lite.moe->router_bias);  // topk_method greedy
  EXPECT_EQ(lite.mtp_layers, 0);
}

TEST(HfConfig, QwenFields) {
  model::Model q2 = load_or_die(hf("Qwen--Qwen2.5-7B-Instruct.json"));
  EXPECT_TRUE(q2.attention.qkv_bias);
  EXPECT_FALSE(q2.attention.o_bias);
  model::Model q3 = load_or_die(hf("Qwen--Qwen3-235B-A22B-FP8.json"));
  EXPECT_TRUE(q3.attention.qk_norm);
  EXPECT_EQ(q3.quant.method, model::QuantMethod::kFp8);
  EXPECT_EQ(q3.quant.weight_dtype, model::DType::kFP8E4M3);
  EXPECT_EQ(q3.num_moe_layers(), 94);
}

TEST(HfConfig, DirectoryHoldingConfigJson) {
  std::string cfg = test::write_temp(
      "Some-Model/config.json",
      R"({"architectures": ["MistralForCausalLM"], "hidden_size": 256, "num_hidden_layers": 2,
          "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000,
          "intermediate_size": 512, "max_position_embeddings": 4096})");
  auto m = model::load_model(std::filesystem::path(cfg).parent_path().string());
  ASSERT_TRUE(m) << m.error().str();
  EXPECT_EQ(m->name, "Some-Model");
  EXPECT_EQ(m->architecture, "MistralForCausalLM");
  EXPECT_EQ(m->attention.head_dim, 32);
}

std::string with_quant(const std::string& quant) {
  return R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "num_hidden_layers": 2,
  "num_attention_heads": 8, "vocab_size": 1000, "intermediate_size": 512,
  "max_position_embeddings": 4096, "torch_dtype": "float16", "quantization_config": )" +
         quant + "}";
}

TEST(HfConfig, AwqGptqAndCompressedTensors) {
  auto awq = model::load_model(test::write_temp(
      "awq.json", with_quant(R"({"quant_method": "awq", "bits": 4, "group_size": 128,
                                 "zero_point": true, "version": "gemm"})")));
  ASSERT_TRUE(awq) << awq.error().str();
  EXPECT_EQ(awq->quant.method, model::QuantMethod::kAwq);
  EXPECT_EQ(awq->quant.weight_dtype, model::DType::kINT4);
  EXPECT_EQ(awq->quant.group_size, 128);
  EXPECT_TRUE(awq->quant.zero_point);
  EXPECT_FALSE(awq->quant.g_idx);

  auto gptq = model::load_model(test::write_temp(
      "gptq.json", with_quant(R"({"quant_method": "gptq", "bits": 8, "group_size": -1,
                                  "desc_act": false, "sym": true})")));
  ASSERT_TRUE(gptq) << gptq.error().str();
  EXPECT_EQ(gptq->quant.weight_dtype, model::DType::kINT8);
  EXPECT_EQ(gptq->quant.group_size, -1);
  EXPECT_TRUE(gptq->quant.g_idx);

  auto w8a8 = model::load_model(test::write_temp(
      "w8a8.json",
      with_quant(R"({"quant_method": "compressed-tensors", "format": "int-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"],
          "weights": {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": true},
          "input_activations": {"num_bits": 8, "type": "int", "strategy": "token",
                                "dynamic": true}}},
        "ignore": ["lm_head"]})")));
  ASSERT_TRUE(w8a8) << w8a8.error().str();
  EXPECT_EQ(w8a8->quant.method, model::QuantMethod::kCompressedTensors);
  EXPECT_EQ(w8a8->quant.weight_dtype, model::DType::kINT8);
  EXPECT_EQ(w8a8->quant.group_size, -1);
  // int8 weights + one fp32 scale per output channel; unquantized parts at fp16.
  model::TensorSpec q{"q", model::Component::kAttention, model::Split::kColumn, 256, 256, 1, true};
  EXPECT_EQ(model::storage_bytes(q, *w8a8), 256 * 256 + 256 * 4);
}

}  // namespace
}  // namespace tpp
