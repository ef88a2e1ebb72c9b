// Parameter counts and weight bytes of the shipped examples, pinned to published totals
// (tests/data/hf/SOURCES.md) and to an independent count with Hugging Face transformers on the
// meta device (transformers 5.24: sum(p.numel() for p in model.parameters()), plus DeepSeek's
// e_score_correction_bias buffer, which the checkpoint stores as a tensor).
#include <gtest/gtest.h>

#include "model/tensors.h"
#include "test_util.h"

namespace tpp {
namespace {

using model::Component;
using test::example;
using test::load_or_die;

std::int64_t params(const std::string& file, bool mtp = false) {
  return model::param_totals(load_or_die(example(file)), mtp).total;
}

TEST(ModelParams, PublishedTotalsOfShippedExamples) {
  EXPECT_EQ(params("llama-3.1-8b.yaml"), 8'030'261'248);
  EXPECT_EQ(params("llama-3.1-70b.yaml"), 70'553'706'496);
  EXPECT_EQ(params("qwen2.5-72b.yaml"), 72'706'203'648);
  EXPECT_EQ(params("mixtral-8x7b.yaml"), 46'702'792'704);
  EXPECT_EQ(params("qwen3-30b-a3b.yaml"), 30'532'122'624);
  EXPECT_EQ(params("r1.yaml"), 671'026'419'200);
}

TEST(ModelParams, DeepSeekR1WithMultiTokenPrediction) {
  // Layer 61 of the checkpoint: one MoE decoder layer, enorm, hnorm, eh_proj [7168, 14336],
  // shared_head (norm + head) and its own embed_tokens.
  EXPECT_EQ(params("r1.yaml", true), 684'489'845'504);
  EXPECT_EQ(params("r1.yaml", true) - params("r1.yaml"), 13'463'426'304);
}

TEST(ModelParams, R1SafetensorsEntriesIncludeFp8BlockScales) {
  // The checkpoint holds 684,531,386,000 tensor entries: parameters plus one fp32
  // weight_scale_inv per 128 x 128 block of every fp8 weight (eh_proj is bf16).
  model::Model m = load_or_die(example("r1.yaml"));
  std::int64_t scales = 0;
  for (std::int64_t l = 0; l < m.num_layers + m.mtp_layers; ++l)
    for (const auto& t : model::layer_tensors(m, l)) scales += model::aux_elements(t, m);
  EXPECT_EQ(scales, 40'838'232 + 702'264);
  EXPECT_EQ(model::param_totals(m, true).total + scales, 684'531'386'000);
}

TEST(ModelParams, R1BreakdownByComponent) {
  auto t = model::param_totals(load_or_die(example("r1.yaml")), false);
  EXPECT_EQ(t.get(Component::kEmbedding), 926'679'040);
  EXPECT_EQ(t.get(Component::kLmHead), 926'679'040);
  EXPECT_EQ(t.get(Component::kAttention), 11'413'547'008);  // 61 x 187,107,328
  EXPECT_EQ(t.get(Component::kMlp), 1'189'085'184);         // 3 x 396,361,728
  EXPECT_EQ(t.get(Component::kRouter), 106'430'464 + 14'848);
  EXPECT_EQ(t.get(Component::kExperts), 653'908'770'816);
  EXPECT_EQ(t.get(Component::kSharedExperts), 2'554'331'136);
  EXPECT_EQ(t.get(Component::kNorms), 881'664);
  EXPECT_EQ(t.get(Component::kMtp), 0);
}

TEST(ModelParams, TinyModelsMatchTransformers) {
  EXPECT_EQ(params("tiny-llama.yaml"), 3'295'488);
  EXPECT_EQ(params("tiny-mixtral.yaml"), 7'477'504);
  EXPECT_EQ(params("tiny-deepseek.yaml"), 4'121'216 + 24);  // + 3 x 8 router bias entries
}

TEST(ModelParams, TinyLlamaByHand) {
  // hidden 256, 4 layers, 8 heads of 32, 2 KV heads, intermediate 688, vocab 1024, untied.
  const std::int64_t attn = 256 * 256 + 2 * 256 * 64 + 256 * 256;  // q, k, v, o
  const std::int64_t mlp = 3 * 256 * 688;
  const std::int64_t norms = 2 * 256;
  EXPECT_EQ(params("tiny-llama.yaml"), 4 * (attn + mlp + norms) + 2 * 1024 * 256 + 256);
}

TEST(ModelBytes, UnquantizedIsTwoBytesPerParameter) {
  for (const char* f : {"llama-3.1-8b.yaml", "mixtral-8x7b.yaml", "qwen3-30b-a3b.yaml"}) {
    model::Model m = load_or_die(example(f));
    EXPECT_EQ(model::weight_byte_totals(m, false).total, 2 * model::param_totals(m, false).total)
        << f;
  }
}

TEST(ModelBytes, R1Fp8WeightsWithBlockScales) {
  model::Model m = load_or_die(example("r1.yaml"));
  auto p = model::param_totals(m, false);
  auto b = model::weight_byte_totals(m, false);
  // Unquantized at 2 bytes: embedding, lm_head, norms, router (incl. bias), the small
  // replicated layernorms inside attention. Everything else 1 byte + 4 bytes per block scale.
  std::int64_t expect = 0;
  for (const auto& t : model::global_tensors(m)) expect += 2 * t.params();
  for (std::int64_t l = 0; l < m.num_layers; ++l)
    for (const auto& t : model::layer_tensors(m, l))
      expect += t.quantized ? t.params() + 4 * model::aux_elements(t, m) : 2 * t.params();
  EXPECT_EQ(b.total, expect);
  EXPECT_EQ(b.get(Component::kExperts),
            p.get(Component::kExperts) + 4 * (58LL * 256 * 3 * 16 * 56));  // 2048/128 x 7168/128
  EXPECT_EQ(b.get(Component::kEmbedding), 2 * p.get(Component::kEmbedding));
}

TEST(ModelShape, LayerKinds) {
  model::Model r1 = load_or_die(example("r1.yaml"));
  EXPECT_EQ(r1.attention_kind(), model::AttentionKind::kMLA);
  EXPECT_EQ(r1.num_moe_layers(), 58);
  EXPECT_FALSE(r1.is_moe_layer(2));
  EXPECT_TRUE(r1.is_moe_layer(3));
  EXPECT_EQ(load_or_die(example("llama-3.1-8b.yaml")).attention_kind(), model::AttentionKind::kGQA);
  EXPECT_EQ(load_or_die(example("tiny-mla.yaml")).attention_kind(), model::AttentionKind::kMLA);
}

TEST(ModelShape, TiedEmbeddingsHaveNoLmHead) {
  model::Model m = load_or_die(example("tiny-llama.yaml"));
  auto untied = model::param_totals(m, false);
  m.tie_word_embeddings = true;
  auto tied = model::param_totals(m, false);
  EXPECT_EQ(tied.get(Component::kLmHead), 0);
  EXPECT_EQ(untied.total - tied.total, 1024 * 256);
}

// int4 AWQ: qweight packs 8 per int32, fp16 scales and packed qzeros per group of 128 inputs.
TEST(ModelBytes, Int4GroupQuantization) {
  model::Model m = load_or_die(example("tiny-llama.yaml"));
  m.quant.method = model::QuantMethod::kAwq;
  m.quant.weight_dtype = model::DType::kINT4;
  m.quant.group_size = 128;
  m.quant.zero_point = true;
  model::TensorSpec down{"down", Component::kMlp, model::Split::kRow, 256, 688, 1, true};
  // 256 x 688 / 2 bytes + ceil(688/128)=6 groups x 256 rows x 2 bytes + 6 x 256/8 x 4 bytes.
  EXPECT_EQ(model::storage_bytes(down, m), 256 * 688 / 2 + 6 * 256 * 2 + 6 * 32 * 4);
  m.quant.g_idx = true;  // GPTQ adds an int32 group index per input channel
  EXPECT_EQ(model::storage_bytes(down, m), 256 * 688 / 2 + 6 * 256 * 2 + 6 * 32 * 4 + 688 * 4);
}

}  // namespace
}  // namespace tpp
