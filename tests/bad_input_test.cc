// Every kind of bad input gets one error naming the file, the line, the column and the field,
// asserted verbatim. (The CLI prints Error::str() as its one line and exits 2: cli_test.sh.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "hardware_profiles/hardware.h"
#include "test_util.h"

namespace tpp {
namespace {

const char* kTinyLlama = R"(name: tiny
hidden_size: 256
num_hidden_layers: 4
vocab_size: 1024
max_position_embeddings: 2048
intermediate_size: 688
attention:
  num_attention_heads: 8
  num_key_value_heads: 2
)";

// Loads `text` saved as `name` and returns the error line with the temp directory cut off.
std::string model_error(const std::string& name, const std::string& text) {
  std::string path = test::write_temp(name, text);
  auto m = model::load_model(path);
  return m ? "(loaded)" : test::relative_error(m.error(), path);
}

TEST(BadModelYaml, ValidBaseLoads) { EXPECT_EQ(model_error("m.yaml", kTinyLlama), "(loaded)"); }

TEST(BadModelYaml, TypoedKeySuggestsNearest) {
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "hidden_size", "hiden_size")),
            "m.yaml:2:1: error: unknown key 'hiden_size' in model (did you mean 'hidden_size'?)");
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "  num_key_value_heads", "  num_kv_heads")),
            "m.yaml:9:3: error: unknown key 'num_kv_heads' in attention (did you mean "
            "'num_key_value_heads'?)");
  EXPECT_EQ(model_error("m.yaml", std::string(kTinyLlama) + "colour: blue\n"),
            "m.yaml:10:1: error: unknown key 'colour' in model (valid keys: name, hf_repo, hidden_size, "
            "num_hidden_layers, vocab_size, max_position_embeddings, intermediate_size, "
            "tie_word_embeddings, mlp_bias, dtype, kv_cache_dtype, num_nextn_predict_layers, "
            "sandwich_norms, sliding_window, attention_chunk_size, layer_types, vision, "
            "linear_attention, attention, mla, moe, quantization)");
}

TEST(BadModelYaml, MissingRequiredField) {
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "vocab_size: 1024\n", "")),
            "m.yaml:1:1: error: missing required field 'vocab_size' in model");
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "  num_attention_heads: 8\n", "")),
            "m.yaml:8:3: error: missing required field 'num_attention_heads' in attention");
}

TEST(BadModelYaml, WrongTypes) {
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "256", "abc")),
            "m.yaml:2:1: error: field 'hidden_size' in model must be an integer, got 'abc'");
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "256", "256.5")),
            "m.yaml:2:1: error: field 'hidden_size' in model must be an integer, got '256.5'");
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama,
                                          "attention:\n  num_attention_heads: 8\n"
                                          "  num_key_value_heads: 2\n",
                                          "attention: 3\n")),
            "m.yaml:7:1: error: field 'attention' in model must be a map, got '3'");
  EXPECT_EQ(model_error("m.yaml", "- a\n- b\n"),
            "m.yaml:1:1: error: model must be a map of fields, got a list (is this a model file?)");
}

TEST(BadModelYaml, NonPositiveAndTooLargeSizes) {
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "num_hidden_layers: 4", "num_hidden_layers: 0")),
            "m.yaml:3:1: error: field 'num_hidden_layers' in model must be at least 1, got 0");
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "256", "-256")),
            "m.yaml:2:1: error: field 'hidden_size' in model must be at least 1, got -256");
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "256", "99999999999999999999")),
            "m.yaml:2:1: error: field 'hidden_size' in model must be an integer, got "
            "'99999999999999999999'");
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "256", "100000")),
            "m.yaml:2:1: error: field 'hidden_size' in model must be at most 65536, got 100000");
}

TEST(BadModelYaml, Inconsistencies) {
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "num_key_value_heads: 2",
                                          "num_key_value_heads: 3")),
            "m.yaml:9:3: error: field 'num_key_value_heads': 8 attention heads are not divisible "
            "by 3 KV heads");
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "num_key_value_heads: 2",
                                          "num_key_value_heads: 16")),
            "m.yaml:9:3: error: field 'num_key_value_heads': 16 KV heads are more than the 8 "
            "attention heads");
  EXPECT_EQ(model_error("m.yaml", test::replace(kTinyLlama, "256", "250")),
            "m.yaml:8:3: error: field 'num_attention_heads': hidden_size 250 is not divisible by "
            "8 attention heads (give head_dim explicitly)");
  std::string moe = std::string(kTinyLlama) +
                    "moe:\n  num_experts: 4\n  num_experts_per_tok: 6\n  moe_intermediate_size: 64\n";
  EXPECT_EQ(model_error("m.yaml", moe),
            "m.yaml:12:3: error: field 'num_experts_per_tok': 6 experts per token exceed the 4 "
            "routed experts");
  std::string dense = moe;
  dense = test::replace(dense, "num_experts_per_tok: 6", "num_experts_per_tok: 2\n  first_k_dense_replace: 9");
  EXPECT_EQ(model_error("m.yaml", dense),
            "m.yaml:13:3: error: field 'first_k_dense_replace': 9 dense layers exceed the 4 layers");
}

TEST(BadModelYaml, HybridFields) {
  EXPECT_EQ(model_error("m.yaml", std::string(kTinyLlama) +
                                      "layer_types: [full, sliding, full, sliding]\n"),
            "m.yaml:1:1: error: field 'sliding_window': sliding-window layers need a positive "
            "sliding_window");
  EXPECT_EQ(model_error("m.yaml", std::string(kTinyLlama) + "layer_types: [full, banded]\n"),
            "m.yaml:10:1: error: field 'layer_types': layer type 'banded' is not one of "
            "full, sliding, chunked, linear");
  EXPECT_EQ(model_error("m.yaml", std::string(kTinyLlama) +
                                      "sliding_window: 8\nlayer_types: [full, sliding]\n"),
            "m.yaml:11:1: error: field 'layer_types': lists 2 layers; the model has 4");
  EXPECT_EQ(model_error("m.yaml", std::string(kTinyLlama) +
                                      "quantization:\n  method: mxfp4\n  weight_dtype: int4\n"),
            "m.yaml:11:3: error: quantization methods mxfp4 and modelopt_fp4 go with weight_dtype "
            "fp4_e2m1, and only they");
}

TEST(BadModelYaml, Quantization) {
  EXPECT_EQ(model_error("m.yaml", std::string(kTinyLlama) + "quantization:\n  method: fp4\n"),
            "m.yaml:11:3: error: field 'method' in quantization is 'fp4', expected one of: none, "
            "fp8, awq, gptq, compressed-tensors, mxfp4, modelopt_fp4 (did you mean 'fp8'?)");
  EXPECT_EQ(model_error("m.yaml", std::string(kTinyLlama) +
                                      "quantization:\n  method: awq\n  group_size: 0\n"),
            "m.yaml:12:3: error: field 'group_size': integer weights need a group size (-1 for "
            "per channel)");
}

TEST(BadFiles, EmptyBinaryMissingAndSyntax) {
  EXPECT_EQ(model_error("m.yaml", ""), "m.yaml:1:1: error: YAML file is empty");
  EXPECT_EQ(model_error("m.yaml", "  \n\n"), "m.yaml:1:1: error: YAML file is empty");
  EXPECT_EQ(model_error("m.yaml", std::string("name: x\n\0\x01\x02", 11)),
            "m.yaml:2:1: error: YAML file is binary (NUL byte at offset 8)");
  EXPECT_EQ(model_error("c.json", std::string("\x89PNG\r\n\x1a\n\0\0", 10)),
            "c.json:3:1: error: JSON file is binary (NUL byte at offset 8)");
  auto m = model::load_model("/nonexistent/m.yaml");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().str(),
            "/nonexistent/m.yaml: error: cannot read YAML file: No such file or directory");
  EXPECT_EQ(model_error("m.yaml", "name: x\nhidden_size: [1, 2\n"),
            "m.yaml:3:1: error: YAML syntax: end of sequence flow not found");
  EXPECT_EQ(model_error("m.yaml", "name: x\n  bad: indent\n"),
            "m.yaml:2:6: error: YAML syntax: illegal map value");
  EXPECT_EQ(model_error("c.json", "{\n  \"hidden_size\": 1,\n  \"x\": }\n"),
            "c.json:3:8: error: JSON syntax: syntax error while parsing value - unexpected '}'; "
            "expected '[', '{', or a literal");
}

const char* kHfLlama = R"({
  "architectures": ["LlamaForCausalLM"],
  "hidden_size": 256,
  "intermediate_size": 688,
  "max_position_embeddings": 2048,
  "num_attention_heads": 8,
  "num_hidden_layers": 4,
  "num_key_value_heads": 2,
  "vocab_size": 1024
}
)";

TEST(BadHfConfig, ValidBaseLoads) { EXPECT_EQ(model_error("c.json", kHfLlama), "(loaded)"); }

// The 2026 architectures' own fields: windows, layer types, MXFP4, text_config.
TEST(BadHfConfig, HybridModelFields) {
  const std::string gemma2 = test::replace(kHfLlama, "LlamaForCausalLM", "Gemma2ForCausalLM");
  EXPECT_EQ(model_error("c.json", gemma2),
            "c.json:1:1: error: missing required field 'sliding_window' in config");
  EXPECT_EQ(model_error("c.json", test::replace(gemma2, "\"vocab_size\": 1024",
                                               "\"vocab_size\": 1024, \"sliding_window\": 0")),
            "c.json:9:23: error: field 'sliding_window' in config must be at least 1, got 0");
  EXPECT_EQ(model_error("c.json",
                        test::replace(gemma2, "\"vocab_size\": 1024",
                                      "\"vocab_size\": 1024, \"sliding_window\": 64, "
                                      "\"layer_types\": [\"full_attention\"]")),
            "c.json:9:45: error: field 'layer_types' lists 1 layers; num_hidden_layers is 4");
  EXPECT_EQ(model_error("c.json",
                        test::replace(gemma2, "\"vocab_size\": 1024",
                                      "\"vocab_size\": 1024, \"sliding_window\": 64, "
                                      "\"layer_types\": [\"full_attention\", \"x\", \"a\", \"b\"]")),
            "c.json:9:45: error: field 'layer_types': layer type 'x' is not supported (supported: sliding_attention, "
            "full_attention)");
  EXPECT_EQ(model_error("c.json", test::replace(kHfLlama, "\"vocab_size\": 1024",
                                               "\"vocab_size\": 1024, \"quantization_config\": "
                                               "{\"quant_method\": \"mxfp4\"}")),
            "c.json:9:47: error: mxfp4 quantizes MoE experts; this model has none");
  EXPECT_EQ(model_error("c.json", test::replace(kHfLlama, "LlamaForCausalLM",
                                               "Gemma3ForConditionalGeneration")),
            "c.json:1:1: error: missing required field 'text_config' in config");
  // A no_rope_layers of the wrong length is refused.
  const std::string llama4 =
      R"({"architectures": ["Llama4ForCausalLM"], "hidden_size": 256, "num_hidden_layers": 4,
  "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000, "head_dim": 32,
  "intermediate_size": 128, "intermediate_size_mlp": 512, "num_local_experts": 4,
  "max_position_embeddings": 4096, "attention_chunk_size": 64, "no_rope_layers": [1, 0]})";
  EXPECT_EQ(model_error("c.json", llama4),
            "c.json:4:64: error: field 'no_rope_layers' lists 2 layers; num_hidden_layers is 4");
}

TEST(BadHfConfig, Errors) {
  EXPECT_EQ(model_error("c.json", test::replace(kHfLlama, "LlamaForCausalLM", "Phi3ForCausalLM")),
            "c.json:2:3: error: architecture 'Phi3ForCausalLM' is not supported (supported: "
            "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
            "MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, "
            "DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, GptOssForCausalLM, "
            "Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration, "
            "Llama4ForCausalLM, Llama4ForConditionalGeneration, Glm4MoeForCausalLM, "
            "MiniMaxM2ForCausalLM, Qwen3NextForCausalLM, DeepseekV32ForCausalLM)");
  EXPECT_EQ(model_error("c.json", test::replace(kHfLlama, "\"hidden_size\"", "\"hiden_size\"")),
            "c.json:3:3: error: unknown key 'hiden_size' in config (did you mean 'hidden_size'?)");
  EXPECT_EQ(model_error("c.json", test::replace(kHfLlama, "\"num_key_value_heads\"",
                                          "\"num_key_value_head\"")),
            "c.json:8:3: error: unknown key 'num_key_value_head' in config (did you mean "
            "'num_key_value_heads'?)");
  EXPECT_EQ(model_error("c.json", test::replace(kHfLlama, "\"vocab_size\": 1024", "\"vocab_size\": \"1024\"")),
            "c.json:9:3: error: field 'vocab_size' in config must be an integer, got '1024'");
  EXPECT_EQ(model_error("c.json", test::replace(kHfLlama, "\"num_key_value_heads\": 2",
                                          "\"num_key_value_heads\": 3")),
            "c.json:8:3: error: field 'num_key_value_heads': 8 attention heads are not divisible "
            "by 3 KV heads");
  std::string qwen = test::replace(kHfLlama, "LlamaForCausalLM", "Qwen2ForCausalLM");
  qwen = test::replace(qwen, "\"vocab_size\": 1024", "\"vocab_size\": 1024,\n  \"head_dim\": 64");
  EXPECT_EQ(model_error("c.json", qwen),
            "c.json:10:3: error: field 'head_dim': head_dim 64 x 8 heads = 512 does not match "
            "hidden_size 256 (Qwen2ForCausalLM derives head_dim from hidden_size)");
  EXPECT_EQ(model_error("c.json", test::replace(kHfLlama, "\"vocab_size\": 1024",
                                          "\"vocab_size\": 1024, \"quantization_config\": "
                                          "{\"quant_method\": \"bitsandbytes\"}")),
            "c.json:9:47: error: quantization method 'bitsandbytes' is not supported "
            "(supported: fp8, awq, gptq, compressed-tensors, mxfp4, modelopt)");
  EXPECT_EQ(model_error("c.json", "[1, 2]"),
            "c.json:1:1: error: config must be a map of fields, got a list (is this a config file?)");
}

std::string cluster_error(const std::string& text) {
  std::string path = test::write_temp("c.yaml", text);
  auto c = hw::load_cluster(path);
  return c ? "(loaded)" : test::relative_error(c.error(), path);
}

const char* kCluster = R"(name: two
nodes: 2
gpus_per_node: 8
gpu: H100-SXM5-80GB
intra_node: {kind: nvswitch, latency_us: 1}
inter_node: {kind: infiniband, nics_per_node: 8, nic_bandwidth_Gbps: 400, latency_us: 5}
)";

TEST(BadCluster, Errors) {
  EXPECT_EQ(cluster_error(kCluster), "(loaded)");
  EXPECT_EQ(cluster_error(test::replace(kCluster, "gpus_per_node", "gpus_per_nod")),
            "c.yaml:3:1: error: unknown key 'gpus_per_nod' in cluster (did you mean "
            "'gpus_per_node'?)");
  EXPECT_EQ(cluster_error(test::replace(kCluster, "H100-SXM5-80GB", "H100-SXM")),
            "c.yaml:4:6: error: field 'gpu': GPU 'H100-SXM': no such file, and no entry of that "
            "name in the gpus catalog (available: A10, A100-PCIe-80GB, A100-SXM4-40GB, "
            "A100-SXM4-80GB, B200-SXM-180GB, B300-SXM-288GB, GB200-186GB, GB300-288GB, "
            "H100-PCIe-80GB, H100-SXM5-80GB, H20-96GB, H200-NVL-141GB, H200-SXM-141GB, "
            "H800-SXM5-80GB, L4, L40S, MI300X-192GB, MI325X-256GB, MI355X-288GB, RTX-4090, "
            "RTX-PRO-6000-96GB)");
  EXPECT_EQ(cluster_error(test::replace(kCluster, "inter_node: {kind: infiniband, nics_per_node: 8, "
                                            "nic_bandwidth_Gbps: 400, latency_us: 5}\n", "")),
            "c.yaml:1:1: error: missing field 'inter_node' in cluster: a cluster of 2 nodes "
            "needs the network between them");
  EXPECT_EQ(cluster_error(test::replace(kCluster, "nodes: 2", "nodes: 0")),
            "c.yaml:2:1: error: field 'nodes' in cluster must be at least 1, got 0");
  EXPECT_EQ(cluster_error(test::replace(kCluster, "kind: nvswitch", "kind: nvlnk")),
            "c.yaml:5:14: error: field 'kind' in intra_node is 'nvlnk', expected one of: "
            "nvswitch, nvlink, pcie, xgmi (did you mean 'nvlink'?)");
  // AMD: Infinity Fabric only with an AMD GPU, and RCCL; hosts make whole nodes.
  EXPECT_EQ(cluster_error(test::replace(kCluster, "kind: nvswitch", "kind: xgmi")),
            "c.yaml:5:14: error: intra_node kind 'xgmi' is AMD's Infinity Fabric but GPU "
            "H100-SXM5-80GB is NVIDIA's");
  const std::string mi = test::replace(test::replace(kCluster, "H100-SXM5-80GB", "MI300X-192GB"),
                                       "kind: nvswitch", "kind: xgmi");
  EXPECT_EQ(cluster_error(mi), "(loaded)");
  EXPECT_EQ(cluster_error(test::replace(mi, "kind: xgmi", "kind: nvswitch")),
            "c.yaml:5:14: error: intra_node kind 'nvswitch' but GPU MI300X-192GB is AMD's: use "
            "xgmi (Infinity Fabric) or pcie");
  EXPECT_EQ(cluster_error(test::replace(mi, "gpus_per_node: 8", "gpus_per_node: 16")),
            "c.yaml:5:14: error: intra_node kind 'xgmi' joins each GPU to its peers with one link "
            "each, but GPU MI300X-192GB has 7 links and the node 16 GPUs");
  EXPECT_EQ(cluster_error(mi + "transport: nccl\n"),
            "c.yaml:7:12: error: field 'transport' in cluster is 'nccl' but GPU MI300X-192GB is "
            "AMD's (rccl)");
  EXPECT_EQ(cluster_error(test::replace(kCluster, "gpus_per_node: 8", "gpus_per_node: 8\ngpus_per_host: 3")),
            "c.yaml:4:1: error: field 'gpus_per_host' in cluster (3) must divide gpus_per_node "
            "(8): a node is whole hosts joined by one NVLink domain");
  EXPECT_EQ(cluster_error(test::replace(kCluster, "gpus_per_node: 8", "gpus_per_node: 72")),
            "c.yaml:3:1: error: field 'gpus_per_node' in cluster is 72: a node of more than 64 "
            "GPUs spans hosts (an NVL72 rack); give gpus_per_host");
  const std::string coll = std::string(kCluster) +
                           "collectives:\n"
                           "  - {op: all_reduce, scope: intra_node, ranks: 8, library: vllm,\n"
                           "     source: probe, points: [[1024, 5], [65536, 9]]}\n";
  EXPECT_EQ(cluster_error(coll), "(loaded)");
  EXPECT_EQ(cluster_error(test::replace(coll, "library: vllm", "library: vlm")),
            "c.yaml:8:51: error: field 'library' in collective is 'vlm', expected one of: nccl, "
            "rccl, vllm (did you mean 'vllm'?)");
  EXPECT_EQ(cluster_error(test::replace(coll, "scope: intra_node", "scope: inter_node")),
            "c.yaml:8:51: error: library 'vllm' in collective is vLLM's TP all-reduce: it needs "
            "op all_reduce and scope intra_node");
  EXPECT_EQ(cluster_error(test::replace(coll, "[65536, 9]", "[512, 9]")),
            "c.yaml:9:41: error: collective points must have strictly increasing sizes");
}

TEST(BadGpuCatalogEntry, FigureWithoutSource) {
  std::string path = test::write_temp("g.yaml", "name: X\nmemory_marketed_GB: 80\n");
  auto doc = load_yaml_file(path);
  ASSERT_TRUE(doc);
  auto g = hw::gpu_from_doc(*doc, doc->root, true);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message,
            "field 'memory_marketed_GB' in gpu must be {value: ..., source: \"...\"} (catalog "
            "figures need a source)");
  EXPECT_EQ(g.error().line, 2);
}

}  // namespace
}  // namespace tpp

namespace tpp {
namespace {

TEST(BadGpuCatalogEntry, NameMustMatchFileName) {
  std::ifstream in(std::string(TPP_EXAMPLES) + "/../../hardware_profiles/gpus/A10.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  text.replace(text.find("name: A10"), 9, "name: A11");
  std::string path = test::write_temp("A10.yaml", text);
  auto g = hw::load_gpu(path);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().message, "field 'name' in gpu is 'A11' but the file is named 'A10.yaml'");
}

}  // namespace
}  // namespace tpp
