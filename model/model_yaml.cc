// tpp's own model YAML (schema: docs/model-schema.md).
#include <algorithm>

#include "common/fields.h"
#include "model/load.h"
#include "model/validate.h"

namespace tpp::model {
namespace {

const std::vector<std::string> kDtypes = {"bf16", "fp16", "f32"};
const std::vector<std::string> kKvDtypes = {"auto", "bfloat16", "float16", "fp8", "fp8_e4m3",
                                            "fp8_e5m2"};
const std::vector<std::string> kMethods = {"none", "fp8", "awq", "gptq", "compressed-tensors"};
const std::vector<std::string> kWeightDtypes = {"fp8_e4m3", "int8", "int4"};

std::optional<Error> read_attention(const Doc& doc, const Node& node, Model& m,
                                    ValidationHints& hints) {
  Fields f(doc, node, "attention");
  Attention& a = m.attention;
  a.num_heads = f.integer("num_attention_heads", 1, kMaxHeads);
  a.num_kv_heads = f.integer_or("num_key_value_heads", a.num_heads, 1, kMaxHeads);
  hints.head_dim_explicit = f.has("head_dim");
  a.head_dim = f.integer_or("head_dim", 0, 1, kMaxHeadDim);
  a.qkv_bias = f.boolean_or("qkv_bias", false);
  a.o_bias = f.boolean_or("o_bias", false);
  a.qk_norm = f.boolean_or("qk_norm", false);
  return f.finish();
}

std::optional<Error> read_mla(const Doc& doc, const Node& node, Model& m) {
  Fields f(doc, node, "mla");
  m.mla = read_mla_fields(f);
  return f.finish();
}

std::optional<Error> read_moe(const Doc& doc, const Node& node, Model& m) {
  Fields f(doc, node, "moe");
  Moe e;
  e.num_experts = f.integer("num_experts", 1, kMaxExperts);
  e.experts_per_token = f.integer("num_experts_per_tok", 1, kMaxExperts);
  e.expert_intermediate_size = f.integer("moe_intermediate_size", 1, kMaxIntermediate);
  e.num_shared_experts = f.integer_or("n_shared_experts", 0, 0, kMaxExperts);
  e.shared_intermediate_size =
      f.integer_or("shared_expert_intermediate_size",
                   e.num_shared_experts * e.expert_intermediate_size, 1, kMaxIntermediate);
  e.shared_expert_gate = f.boolean_or("shared_expert_gate", false);
  e.router_bias = f.boolean_or("router_bias", false);
  e.first_k_dense = f.integer_or("first_k_dense_replace", 0, 0, kMaxLayers);
  e.dense_layers = f.int_list_or("mlp_only_layers", 0, kMaxLayers - 1);
  m.moe = e;
  return f.finish();
}

std::optional<Error> read_quantization(const Doc& doc, const Node& node, Model& m) {
  Fields f(doc, node, "quantization");
  Quantization& q = m.quant;
  std::string method = f.choice("method", kMethods);
  std::string fallback = method == "fp8"                    ? "fp8_e4m3"
                         : method == "compressed-tensors"   ? "int8"
                         : method == "none"                 ? ""
                                                            : "int4";
  std::string wd = f.has("weight_dtype") || fallback.empty()
                       ? f.choice_or("weight_dtype", "fp8_e4m3", kWeightDtypes)
                       : fallback;
  auto block = f.int_list_or("weight_block_size", 1, kMaxHidden);
  q.group_size = f.integer_or("group_size", 0, -1, kMaxHidden);
  q.zero_point = f.boolean_or("zero_point", method == "awq" || method == "gptq");
  q.g_idx = f.boolean_or("g_idx", method == "gptq");
  if (auto e = f.finish()) return e;
  if (method == "none") {
    if (node.fields.size() > 1)
      return make_error(doc.file, node.fields[1].second.line, node.fields[1].second.col,
                        "field '" + node.fields[1].first +
                            "' in quantization does not apply to method none");
    return std::nullopt;
  }
  q.method = method == "fp8"    ? QuantMethod::kFp8
             : method == "awq"  ? QuantMethod::kAwq
             : method == "gptq" ? QuantMethod::kGptq
                                : QuantMethod::kCompressedTensors;
  q.weight_dtype = *parse_dtype(wd);
  if (!block.empty()) {
    if (block.size() != 2)
      return make_error(doc.file, node.line, node.col,
                        "field 'weight_block_size' in quantization needs two sizes [rows, cols]");
    q.block_rows = block[0];
    q.block_cols = block[1];
  }
  return std::nullopt;
}

}  // namespace

Expected<Model> model_from_yaml(const Doc& doc) {
  Model m;
  m.architecture = "tpp-yaml";
  m.source = doc.file;
  FieldPositions pos;
  pos.file = doc.file;
  ValidationHints hints;
  Fields f(doc, doc.root, "model");
  m.name = f.string("name");
  m.hf_repo = f.string_or("hf_repo", "");
  // It is printed in launch commands (quoted for the shell there); a line break or another
  // control character is no part of a repository name or a path.
  if (f.ok() && std::any_of(m.hf_repo.begin(), m.hf_repo.end(),
                            [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
    f.fail("hf_repo", "field 'hf_repo' in model must not contain control characters");
  m.hidden_size = f.integer("hidden_size", 1, kMaxHidden);
  m.num_layers = f.integer("num_hidden_layers", 1, kMaxLayers);
  m.vocab_size = f.integer("vocab_size", 1, kMaxVocab);
  m.max_position_embeddings = f.integer("max_position_embeddings", 1, kMaxPositions);
  m.intermediate_size = f.integer_or("intermediate_size", 0, 1, kMaxIntermediate);
  m.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  m.mlp_bias = f.boolean_or("mlp_bias", false);
  m.dtype = *parse_dtype(f.choice_or("dtype", "bf16", kDtypes));
  m.kv_cache_dtype = *parse_kv_cache_dtype(f.choice_or("kv_cache_dtype", "auto", kKvDtypes));
  m.mtp_layers = f.integer_or("num_nextn_predict_layers", 0, 0, kMaxMtpLayers);
  const Node* attention = f.map_or_null("attention");
  const Node* mla = f.map_or_null("mla");
  const Node* moe = f.map_or_null("moe");
  const Node* quant = f.map_or_null("quantization");
  if (f.ok() && !attention) f.missing("attention");
  if (auto e = f.finish()) return *e;
  pos.note_all(doc.root);
  pos.note_all(*attention);
  if (auto e = read_attention(doc, *attention, m, hints)) return *e;
  if (mla) {
    pos.note_all(*mla);
    if (auto e = read_mla(doc, *mla, m)) return *e;
  }
  if (moe) {
    pos.note_all(*moe);
    if (auto e = read_moe(doc, *moe, m)) return *e;
  }
  m.quant.weight_dtype = m.dtype;
  if (quant) {
    pos.note_all(*quant);
    pos.note(*quant, "weight_dtype", "bits");
    if (auto e = read_quantization(doc, *quant, m)) return *e;
  }
  if (m.mla) {  // as the HF reader: the query/key head size of MLA
    m.attention.head_dim = m.mla->qk_nope_head_dim + m.mla->qk_rope_head_dim;
  } else if (!hints.head_dim_explicit && m.hidden_size % m.attention.num_heads == 0)
    m.attention.head_dim = m.hidden_size / m.attention.num_heads;
  if (auto e = validate_model(m, pos, hints)) return *e;
  return m;
}

}  // namespace tpp::model
