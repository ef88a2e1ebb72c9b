// Hugging Face config.json reader. Field names and defaults follow the transformers config
// classes (LlamaConfig, Qwen2Config, MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig,
// DeepseekV2Config, DeepseekV3Config) and the vLLM model files that consume them.
#include <algorithm>
#include <filesystem>

#include "common/fields.h"
#include "model/load.h"
#include "model/validate.h"

namespace tpp::model {
namespace {

enum class Family { kLlama, kMistral, kQwen2, kQwen3, kMixtral, kQwen2Moe, kQwen3Moe, kDeepseekV2,
                    kDeepseekV3 };

const std::vector<std::pair<std::string, Family>>& families() {
  static const std::vector<std::pair<std::string, Family>> f = {
      {"LlamaForCausalLM", Family::kLlama},         {"MistralForCausalLM", Family::kMistral},
      {"Qwen2ForCausalLM", Family::kQwen2},         {"Qwen3ForCausalLM", Family::kQwen3},
      {"MixtralForCausalLM", Family::kMixtral},     {"Qwen2MoeForCausalLM", Family::kQwen2Moe},
      {"Qwen3MoeForCausalLM", Family::kQwen3Moe},   {"DeepseekV2ForCausalLM", Family::kDeepseekV2},
      {"DeepseekV3ForCausalLM", Family::kDeepseekV3}};
  return f;
}

// Keys of real configs that tpp does not read and that must never be taken for a typo of one
// it does (bos_token_id is one edit from eos_token_id, and so on).
const std::vector<std::string> kWellKnownKeys = {
    "_name_or_path", "architectures", "attention_dropout", "auto_map", "aux_loss_alpha",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "ep_size", "hidden_act",
    "hidden_activation", "initializer_range", "max_window_layers", "model_type", "n_group",
    "norm_topk_prob", "output_router_logits", "pretraining_tp", "rms_norm_eps", "rope_scaling",
    "rope_theta", "routed_scaling_factor", "router_aux_loss_coef", "scoring_func", "seq_aux",
    "sliding_window", "use_sliding_window", "topk_group", "transformers_version", "use_cache",
    "layer_types", "experts_per_token", "num_experts", "v_head_dim", "kv_lora_rank",
    "q_lora_rank", "head_dim", "torch_dtype", "dtype"};

std::string name_from_path(const std::string& file) {
  std::filesystem::path p(file);
  std::string stem = p.filename() == "config.json" ? p.parent_path().filename().string()
                                                   : p.stem().string();
  if (auto k = stem.find("--"); k != std::string::npos) stem.replace(k, 2, "/");  // hub cache
  return stem.empty() ? file : stem;
}

// Reads the weight format from quantization_config (vLLM's fp8, awq, gptq and
// compressed-tensors configs).
std::optional<Error> read_quant(const Doc& doc, const Node& node, Model& m) {
  Fields f(doc, node, "quantization_config", Strictness::kLenient);
  Quantization& q = m.quant;
  std::string method = f.string("quant_method");
  if (!f.ok()) return f.finish();
  if (method == "fp8") {
    q.method = QuantMethod::kFp8;
    q.weight_dtype = DType::kFP8E4M3;
    std::string fmt = f.string_or("fmt", "e4m3");
    if (fmt != "e4m3") f.fail("fmt", "fp8 format '" + fmt + "' is not supported (only e4m3)");
    auto block = f.int_list_or("weight_block_size", 1, kMaxHidden);
    if (f.ok() && !block.empty() && block.size() != 2)
      f.fail("weight_block_size", "field 'weight_block_size' needs two sizes [rows, cols]");
    if (block.size() == 2) { q.block_rows = block[0]; q.block_cols = block[1]; }
  } else if (method == "awq" || method == "gptq") {
    q.method = method == "awq" ? QuantMethod::kAwq : QuantMethod::kGptq;
    std::int64_t bits = f.integer_or("bits", f.integer_or("w_bit", 4, 2, 8), 2, 8);
    if (f.ok() && bits != 4 && bits != 8)
      f.fail("bits", "field 'bits' in quantization_config must be 4 or 8, got " +
                         std::to_string(bits));
    if (f.ok() && method == "awq" && bits != 4)
      f.fail("bits", "AWQ checkpoints are 4-bit in vLLM, got " + std::to_string(bits));
    q.weight_dtype = bits == 4 ? DType::kINT4 : DType::kINT8;
    q.group_size = f.integer_or("group_size", f.integer_or("q_group_size", 128, -1, kMaxHidden),
                                -1, kMaxHidden);
    if (f.ok() && q.group_size == 0) f.fail("group_size", "field 'group_size' must not be 0");
    q.zero_point = true;  // both store qzeros, symmetric or not
    q.g_idx = method == "gptq";
  } else if (method == "compressed-tensors") {
    q.method = QuantMethod::kCompressedTensors;
    const Node* groups = f.map_or_null("config_groups");
    if (f.ok() && (!groups || groups->fields.empty()))
      f.fail("config_groups", "compressed-tensors config needs config_groups");
    if (!f.ok()) return f.finish();
    const Node& g0 = groups->fields.front().second;
    Fields gf(doc, g0, "config_groups." + groups->fields.front().first, Strictness::kLenient);
    const Node* w = gf.map_or_null("weights");
    if (gf.ok() && !w) gf.missing("weights");
    if (auto e = gf.finish()) return e;
    Fields wf(doc, *w, "weights", Strictness::kLenient);
    std::int64_t bits = wf.integer("num_bits", 4, 8);
    std::string type = wf.choice_or("type", "int", {"int", "float"});
    std::string strategy = wf.choice_or("strategy", "tensor",
                                        {"tensor", "channel", "group", "block"});
    std::int64_t group = wf.integer_or("group_size", 0, 1, kMaxHidden);
    auto block = wf.int_list_or("block_structure", 1, kMaxHidden);
    bool symmetric = wf.boolean_or("symmetric", true);
    if (auto e = wf.finish()) return e;
    if (type == "float") {
      if (bits != 8) return make_error(doc.file, w->line, w->col, "float weights must be 8-bit");
      q.weight_dtype = DType::kFP8E4M3;
    } else {
      if (bits != 4 && bits != 8)
        return make_error(doc.file, w->line, w->col, "integer weights must be 4- or 8-bit");
      q.weight_dtype = bits == 4 ? DType::kINT4 : DType::kINT8;
      q.zero_point = !symmetric;
    }
    q.group_size = strategy == "group" ? group : (strategy == "channel" ? -1 : 0);
    if (strategy == "group" && group <= 0)
      return make_error(doc.file, w->line, w->col, "group strategy needs group_size");
    if (strategy == "tensor" && type == "int") q.group_size = -1;  // one scale ~ per channel
    if (strategy == "block" && block.size() == 2) { q.block_rows = block[0]; q.block_cols = block[1]; }
  } else {
    f.fail("quant_method", "quantization method '" + method +
                               "' is not supported (supported: fp8, awq, gptq, "
                               "compressed-tensors)");
  }
  return f.finish();
}

}  // namespace

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& [n, fam] : families()) v.push_back(n);
    return v;
  }();
  return names;
}

Expected<Model> model_from_hf_config(const Doc& doc) {
  Model m;
  m.source = doc.file;
  FieldPositions pos;
  pos.file = doc.file;
  ValidationHints hints;
  Fields f(doc, doc.root, "config", Strictness::kLenient);
  f.allow(kWellKnownKeys);

  auto archs = f.string_list_or("architectures");
  if (!f.ok()) return *f.finish();
  if (archs.empty()) f.missing("architectures");
  if (!f.ok()) return *f.finish();
  std::optional<Family> fam;
  for (const auto& a : archs) {
    for (const auto& [n, fm] : families())
      if (a == n && !fam) { fam = fm; m.architecture = n; }
  }
  if (!fam) {
    std::string list;
    for (const auto& n : supported_architectures()) list += (list.empty() ? "" : ", ") + n;
    f.fail("architectures", "architecture '" + archs.front() +
                                "' is not supported (supported: " + list + ")");
    return *f.finish();
  }
  const bool deepseek = *fam == Family::kDeepseekV2 || *fam == Family::kDeepseekV3;

  std::string nm = f.string_or("_name_or_path", "");
  m.name = nm.empty() || nm.front() == '/' || nm.front() == '.' ? name_from_path(doc.file) : nm;
  if (m.name.find('/') != std::string::npos) m.hf_repo = m.name;
  m.hidden_size = f.integer("hidden_size", 1, kMaxHidden);
  m.num_layers = f.integer("num_hidden_layers", 1, kMaxLayers);
  m.vocab_size = f.integer("vocab_size", 1, kMaxVocab);
  m.max_position_embeddings = f.integer("max_position_embeddings", 1, kMaxPositions);
  m.intermediate_size = f.integer("intermediate_size", 1, kMaxIntermediate);
  m.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  std::string dt = f.has("torch_dtype") ? f.choice("torch_dtype", {"bfloat16", "float16", "float32"})
                                        : f.choice_or("dtype", "bfloat16",
                                                      {"bfloat16", "float16", "float32"});
  m.dtype = *parse_dtype(dt);
  m.quant.weight_dtype = m.dtype;

  Attention& a = m.attention;
  a.num_heads = f.integer("num_attention_heads", 1, kMaxHeads);
  a.num_kv_heads = f.integer_or("num_key_value_heads", a.num_heads, 1, kMaxHeads);
  if (!deepseek) {
    hints.head_dim_explicit = f.has("head_dim");
    hints.head_dim_must_match_hidden =
        hints.head_dim_explicit && (*fam == Family::kQwen2 || *fam == Family::kQwen2Moe);
    a.head_dim = f.integer_or("head_dim", 0, 1, kMaxHeadDim);
  }
  bool attn_bias = f.boolean_or("attention_bias", false);
  switch (*fam) {
    case Family::kQwen2:
    case Family::kQwen2Moe: a.qkv_bias = true; break;  // Qwen2Attention: bias on q/k/v only
    case Family::kQwen3:
    case Family::kQwen3Moe: a.qk_norm = true; a.qkv_bias = a.o_bias = attn_bias; break;
    case Family::kLlama: a.qkv_bias = a.o_bias = attn_bias;
                         m.mlp_bias = f.boolean_or("mlp_bias", false); break;
    default: a.qkv_bias = a.o_bias = attn_bias; break;
  }

  if (*fam == Family::kMixtral) {
    Moe e;
    e.num_experts = f.integer("num_local_experts", 1, kMaxExperts);
    e.experts_per_token = f.integer("num_experts_per_tok", 1, kMaxExperts);
    e.expert_intermediate_size = m.intermediate_size;
    m.moe = e;
  } else if (*fam == Family::kQwen2Moe || *fam == Family::kQwen3Moe) {
    Moe e;
    e.num_experts = f.integer("num_experts", 1, kMaxExperts);
    e.experts_per_token = f.integer("num_experts_per_tok", 1, kMaxExperts);
    e.expert_intermediate_size = f.integer("moe_intermediate_size", 1, kMaxIntermediate);
    if (*fam == Family::kQwen2Moe) {
      e.shared_intermediate_size =
          f.integer_or("shared_expert_intermediate_size", 0, 0, kMaxIntermediate);
      e.num_shared_experts = e.shared_intermediate_size > 0 ? 1 : 0;
      e.shared_expert_gate = e.num_shared_experts > 0;
    }
    std::int64_t step = f.integer_or("decoder_sparse_step", 1, 1, kMaxLayers);
    e.dense_layers = f.int_list_or("mlp_only_layers", 0, kMaxLayers - 1);
    // Qwen2MoeDecoderLayer: MoE when not in mlp_only_layers and (layer + 1) % step == 0.
    for (std::int64_t l = 0; l < m.num_layers && f.ok(); ++l)
      if ((l + 1) % step != 0 &&
          std::find(e.dense_layers.begin(), e.dense_layers.end(), l) == e.dense_layers.end())
        e.dense_layers.push_back(l);
    m.moe = e;
  } else if (deepseek) {
    Mla x = read_mla_fields(f);
    m.mla = x;
    a.head_dim = x.qk_nope_head_dim + x.qk_rope_head_dim;
    hints.head_dim_explicit = true;
    if (f.has("n_routed_experts")) {
      Moe e;
      e.num_experts = f.integer("n_routed_experts", 1, kMaxExperts);
      e.experts_per_token = f.integer("num_experts_per_tok", 1, kMaxExperts);
      e.expert_intermediate_size = f.integer("moe_intermediate_size", 1, kMaxIntermediate);
      e.num_shared_experts = f.integer_or("n_shared_experts", 0, 0, kMaxExperts);
      e.shared_intermediate_size = e.num_shared_experts * e.expert_intermediate_size;
      e.first_k_dense = f.integer_or("first_k_dense_replace", 0, 0, kMaxLayers);
      std::int64_t freq = f.integer_or("moe_layer_freq", 1, 1, kMaxLayers);
      // DeepseekV2DecoderLayer: MoE when layer >= first_k_dense_replace and layer % freq == 0.
      for (std::int64_t l = e.first_k_dense; l < m.num_layers && f.ok(); ++l)
        if (l % freq != 0) e.dense_layers.push_back(l);
      std::string topk = f.string_or("topk_method",
                                     *fam == Family::kDeepseekV3 ? "noaux_tc" : "greedy");
      e.router_bias = topk == "noaux_tc";
      m.moe = e;
    }
    if (*fam == Family::kDeepseekV3)
      m.mtp_layers = f.integer_or("num_nextn_predict_layers", 0, 0, kMaxMtpLayers);
  }
  const Node* quant = f.map_or_null("quantization_config");
  pos.note_all(doc.root);
  pos.note(doc.root, "num_local_experts", "num_experts");
  pos.note(doc.root, "n_routed_experts", "num_experts");
  if (auto e = f.finish()) return *e;
  if (quant) {
    if (auto e = read_quant(doc, *quant, m)) return *e;
    pos.note(*quant, "group_size", "group_size");
    pos.note(*quant, "bits", "bits");
  }
  if (!hints.head_dim_explicit && m.hidden_size % a.num_heads == 0)
    a.head_dim = m.hidden_size / a.num_heads;
  if (auto e = validate_model(m, pos, hints)) return *e;
  return m;
}

Expected<Model> load_model(const std::string& path) {
  std::error_code ec;
  std::string file = path;
  bool json = std::filesystem::is_directory(path, ec);
  if (json) file = (std::filesystem::path(path) / "config.json").string();
  auto ext = std::filesystem::path(file).extension().string();
  if (ext == ".json") json = true;
  if (!json && ext != ".yaml" && ext != ".yml") {
    auto text = read_text_file(file, "model");
    if (!text) return text.error();
    json = text->find_first_not_of(" \t\r\n") != std::string::npos &&
           (*text)[text->find_first_not_of(" \t\r\n")] == '{';
  }
  auto doc = json ? load_json_file(file) : load_yaml_file(file);
  if (!doc) return doc.error();
  return json ? model_from_hf_config(*doc) : model_from_yaml(*doc);
}

}  // namespace tpp::model
