// tpp's own model YAML (schema: docs/model-schema.md).
#include <algorithm>

#include "common/fields.h"
#include "model/load.h"
#include "model/validate.h"

namespace tpp::model {
namespace {

const std::vector<std::string> kDtypes = {"bf16", "fp16", "f32"};
const std::vector<std::string> kKvDtypes = {"auto", "bfloat16", "float16", "fp8", "fp8_e4m3",
                                            "fp8_e5m2", "nvfp4", "fp4_e2m1"};
const std::vector<std::string> kMethods = {"none", "fp8", "awq", "gptq", "compressed-tensors",
                                           "mxfp4", "modelopt_fp4"};
const std::vector<std::string> kWeightDtypes = {"fp8_e4m3", "int8", "int4", "fp4_e2m1"};

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
  a.qk_norm_all_heads = f.boolean_or("qk_norm_all_heads", false);
  a.sinks = f.boolean_or("sinks", false);
  a.output_gate = f.boolean_or("output_gate", false);
  a.rotary_dim = f.integer_or("rotary_dim", 0, 1, kMaxHeadDim);
  return f.finish();
}

std::optional<Error> read_vision(const Doc& doc, const Node& node, Model& m) {
  Fields f(doc, node, "vision");
  VisionTower v;
  v.kind = f.choice("kind", {"siglip", "llama4"}) == "siglip" ? VisionKind::kSiglip
                                                             : VisionKind::kLlama4;
  v.hidden_size = f.integer("hidden_size", 1, kMaxHidden);
  v.intermediate_size = f.integer("intermediate_size", 1, kMaxIntermediate);
  v.num_layers = f.integer("num_hidden_layers", 1, kMaxLayers);
  v.image_size = f.integer("image_size", 1, 65536);
  v.patch_size = f.integer("patch_size", 1, 65536);
  v.num_channels = f.integer_or("num_channels", 3, 1, 64);
  const bool llama4 = v.kind == VisionKind::kLlama4;
  v.projector_input_dim = llama4 ? f.integer("projector_input_dim", 1, kMaxHidden) : 0;
  v.projector_output_dim = llama4 ? f.integer("projector_output_dim", 1, kMaxHidden) : 0;
  v.output_dim = llama4 ? f.integer("vision_output_dim", 1, kMaxHidden) : 0;
  if (f.ok() && v.patch_size > v.image_size)
    f.fail("patch_size", "patch_size exceeds image_size");
  m.vision = v;
  return f.finish();
}

std::optional<Error> read_mla(const Doc& doc, const Node& node, Model& m) {
  Fields f(doc, node, "mla");
  m.mla = read_mla_fields(f);
  if (const Node* ix = f.map_or_null("indexer")) {
    if (auto e = f.finish()) return e;
    Fields xf(doc, *ix, "indexer");
    SparseIndexer s;
    s.num_heads = xf.integer("index_n_heads", 1, kMaxHeads);
    s.head_dim = xf.integer("index_head_dim", 1, kMaxHeadDim);
    s.topk = xf.integer("index_topk", 1, kMaxPositions);
    if (auto e = xf.finish()) return e;
    m.indexer = s;
  }
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
  e.expert_bias = f.boolean_or("expert_bias", false);
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
                         : method == "mxfp4"                ? "fp4_e2m1"
                         : method == "modelopt_fp4"         ? "fp4_e2m1"
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
  q.ignore = f.string_list_or("ignore");
  if (auto e = f.finish()) return e;
  if (method == "none") {
    if (node.fields.size() > 1)
      return make_error(doc.file, node.fields[1].second.line, node.fields[1].second.col,
                        "field '" + node.fields[1].first +
                            "' in quantization does not apply to method none");
    return std::nullopt;
  }
  q.method = method == "fp8"     ? QuantMethod::kFp8
             : method == "awq"   ? QuantMethod::kAwq
             : method == "gptq"  ? QuantMethod::kGptq
             : method == "mxfp4" ? QuantMethod::kMxfp4
             : method == "modelopt_fp4" ? QuantMethod::kNvfp4
                                 : QuantMethod::kCompressedTensors;
  q.weight_dtype = *parse_dtype(wd);
  const bool fp4 = q.method == QuantMethod::kMxfp4 || q.method == QuantMethod::kNvfp4;
  if (fp4 != (q.weight_dtype == DType::kFP4E2M1))
    return make_error(doc.file, node.line, node.col,
                      "quantization methods mxfp4 and modelopt_fp4 go with weight_dtype fp4_e2m1, "
                      "and only they");
  if (q.method == QuantMethod::kNvfp4 && q.group_size == 0) q.group_size = 16;
  q.experts_only = q.method == QuantMethod::kMxfp4;
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
  m.sandwich_norms = f.boolean_or("sandwich_norms", false);
  m.sliding_window = f.integer_or("sliding_window", 0, 1, kMaxPositions);
  m.attention_chunk_size = f.integer_or("attention_chunk_size", 0, 1, kMaxPositions);
  for (const auto& t : f.string_list_or("layer_types")) {
    if (t == "full") m.layer_attention.push_back(LayerAttention::kFull);
    else if (t == "sliding") m.layer_attention.push_back(LayerAttention::kSlidingWindow);
    else if (t == "chunked") m.layer_attention.push_back(LayerAttention::kChunkedLocal);
    else if (t == "linear") m.layer_attention.push_back(LayerAttention::kLinear);
    else if (f.ok()) f.fail("layer_types", "field 'layer_types': layer type '" + t +
                                               "' is not one of full, sliding, chunked, linear");
  }
  const Node* vision = f.map_or_null("vision");
  const Node* linear = f.map_or_null("linear_attention");
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
  if (vision) {
    pos.note_all(*vision);
    if (auto e = read_vision(doc, *vision, m)) return *e;
  }
  if (linear) {
    pos.note_all(*linear);
    Fields lf(doc, *linear, "linear_attention");
    LinearAttention x;
    x.num_key_heads = lf.integer("num_key_heads", 1, kMaxHeads);
    x.num_value_heads = lf.integer("num_value_heads", 1, kMaxHeads);
    x.key_head_dim = lf.integer("key_head_dim", 1, kMaxHeadDim);
    x.value_head_dim = lf.integer("value_head_dim", 1, kMaxHeadDim);
    x.conv_kernel = lf.integer("conv_kernel", 1, 64);
    if (auto e = lf.finish()) return *e;
    m.linear_attention = x;
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
