// Hugging Face config.json reader. Field names and defaults follow the transformers config
// classes (LlamaConfig, Qwen2Config, MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig,
// DeepseekV2Config, DeepseekV3Config, GptOssConfig, Gemma2Config, Gemma3TextConfig,
// Llama4TextConfig, Glm4MoeConfig, MiniMaxM2Config) and the vLLM model files that consume them
// (vllm/model_executor/models/<family>.py; docs/model-schema.md lists what each contributes).
#include <algorithm>
#include <filesystem>

#include "common/fields.h"
#include "model/load.h"
#include "model/validate.h"

namespace tpp::model {
namespace {

enum class Family { kLlama, kMistral, kQwen2, kQwen3, kMixtral, kQwen2Moe, kQwen3Moe, kDeepseekV2,
                    kDeepseekV3, kGptOss, kGemma2, kGemma3, kGemma3Mm, kLlama4, kLlama4Mm,
                    kGlm4Moe, kMiniMaxM2, kQwen3Next, kDeepseekV32 };

const std::vector<std::pair<std::string, Family>>& families() {
  static const std::vector<std::pair<std::string, Family>> f = {
      {"LlamaForCausalLM", Family::kLlama},         {"MistralForCausalLM", Family::kMistral},
      {"Qwen2ForCausalLM", Family::kQwen2},         {"Qwen3ForCausalLM", Family::kQwen3},
      {"MixtralForCausalLM", Family::kMixtral},     {"Qwen2MoeForCausalLM", Family::kQwen2Moe},
      {"Qwen3MoeForCausalLM", Family::kQwen3Moe},   {"DeepseekV2ForCausalLM", Family::kDeepseekV2},
      {"DeepseekV3ForCausalLM", Family::kDeepseekV3}, {"GptOssForCausalLM", Family::kGptOss},
      {"Gemma2ForCausalLM", Family::kGemma2},       {"Gemma3ForCausalLM", Family::kGemma3},
      {"Gemma3ForConditionalGeneration", Family::kGemma3Mm},
      {"Llama4ForCausalLM", Family::kLlama4},
      {"Llama4ForConditionalGeneration", Family::kLlama4Mm},
      {"Glm4MoeForCausalLM", Family::kGlm4Moe},     {"MiniMaxM2ForCausalLM", Family::kMiniMaxM2},
      {"Qwen3NextForCausalLM", Family::kQwen3Next},
      {"DeepseekV32ForCausalLM", Family::kDeepseekV32}};
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
    "q_lora_rank", "head_dim", "torch_dtype", "dtype", "query_pre_attn_scalar",
    "attn_logit_softcapping", "final_logit_softcapping", "cache_implementation",
    "rope_local_base_freq", "swiglu_limit", "initial_context_length", "router_jitter_noise",
    "for_llm_compressor", "attn_temperature_tuning", "floor_scale", "attn_scale", "moe_layers",
    "num_mtp_modules", "mtp_transformer_layers", "use_mtp", "qk_norm_type", "sliding_window_size",
    "shared_intermediate_size", "boi_token_index", "eoi_token_index", "image_token_index",
    "mm_tokens_per_image", "sliding_window_pattern", "no_rope_layer_interval",
    "interleave_moe_layer_step", "intermediate_size_mlp", "attention_chunk_size", "use_qk_norm",
    "partial_rotary_factor", "rotary_dim", "use_routing_bias", "no_rope_layers",
    "_attn_implementation", "_attn_implementation_autoset", "rope_parameters",
    "full_attention_interval", "linear_conv_kernel_dim", "linear_key_head_dim",
    "linear_num_key_heads", "linear_num_value_heads", "linear_value_head_dim",
    "attn_output_gate", "index_head_dim", "index_n_heads", "index_topk"};

// How each layer attends, from layer_types ("sliding_attention" / "full_attention", as
// transformers writes them) or, without it, the family's default pattern.
std::optional<Error> read_layer_types(Fields& c, Model& m, const std::vector<bool>& sliding) {
  auto types = c.string_list_or("layer_types");
  if (!c.ok()) return c.finish();
  if (types.empty()) {
    m.layer_attention.assign(static_cast<std::size_t>(m.num_layers), LayerAttention::kFull);
    for (std::size_t l = 0; l < sliding.size() && l < m.layer_attention.size(); ++l)
      if (sliding[l]) m.layer_attention[l] = LayerAttention::kSlidingWindow;
    return std::nullopt;
  }
  if (static_cast<std::int64_t>(types.size()) != m.num_layers) {
    c.fail("layer_types", "field 'layer_types' lists " + std::to_string(types.size()) +
                              " layers; num_hidden_layers is " + std::to_string(m.num_layers));
    return c.finish();
  }
  for (const auto& t : types) {
    if (t == "sliding_attention") m.layer_attention.push_back(LayerAttention::kSlidingWindow);
    else if (t == "full_attention") m.layer_attention.push_back(LayerAttention::kFull);
    else if (t == "linear_attention" && m.linear_attention)
      m.layer_attention.push_back(LayerAttention::kLinear);
    else {
      c.fail("layer_types", "field 'layer_types': layer type '" + t +
                                "' is not supported (supported: " +
                                (m.linear_attention ? "full_attention, linear_attention)"
                                                    : "sliding_attention, full_attention)"));
      return c.finish();
    }
  }
  return std::nullopt;
}

std::optional<Error> read_vision(const Doc& doc, const Node& node, Model& m, VisionKind kind) {
  Fields v(doc, node, "vision_config", Strictness::kLenient);
  VisionTower t;
  t.kind = kind;
  const bool siglip = kind == VisionKind::kSiglip;  // SiglipVisionConfig / Llama4VisionConfig
  t.hidden_size = v.integer_or("hidden_size", siglip ? 768 : 768, 1, kMaxHidden);
  t.intermediate_size = v.integer_or("intermediate_size", siglip ? 3072 : 5632, 1,
                                     kMaxIntermediate);
  t.num_layers = v.integer_or("num_hidden_layers", siglip ? 12 : 34, 1, kMaxLayers);
  t.image_size = v.integer_or("image_size", siglip ? 224 : 448, 1, 65536);
  t.patch_size = v.integer_or("patch_size", siglip ? 16 : 14, 1, 65536);
  t.num_channels = v.integer_or("num_channels", 3, 1, 64);
  if (!siglip) {
    t.projector_input_dim = v.integer_or("projector_input_dim", 4096, 1, kMaxHidden);
    t.projector_output_dim = v.integer_or("projector_output_dim", 4096, 1, kMaxHidden);
    t.output_dim = v.integer_or("vision_output_dim", 7680, 1, kMaxHidden);
  }
  if (v.ok() && t.patch_size > t.image_size)
    v.fail("patch_size", "patch_size " + std::to_string(t.patch_size) + " exceeds image_size " +
                             std::to_string(t.image_size));
  if (auto e = v.finish()) return e;
  m.vision = t;
  return std::nullopt;
}

std::string name_from_path(const std::string& file) {
  std::filesystem::path p(file);
  std::string stem = p.filename() == "config.json" ? p.parent_path().filename().string()
                                                   : p.stem().string();
  if (auto k = stem.find("--"); k != std::string::npos) stem.replace(k, 2, "/");  // hub cache
  return stem.empty() ? file : stem;
}

// NVIDIA ModelOpt's NVFP4, as config.json's quantization_config (quant_method modelopt,
// quant_algo, ignore, config_groups, kv_cache_scheme) or hf_quant_config.json's `quantization`
// (quant_algo, group_size, exclude_modules, kv_cache_quant_algo): vLLM's ModelOptNvFp4Config.
void read_modelopt(const Doc& doc, Fields& f, Model& m) {
  Quantization& q = m.quant;
  const std::string algo = f.string("quant_algo");
  if (f.ok() && algo != "NVFP4") {
    f.fail("quant_algo", "ModelOpt quant_algo '" + algo + "' is not supported (supported: NVFP4)");
    return;
  }
  q.method = QuantMethod::kNvfp4;
  q.weight_dtype = DType::kFP4E2M1;
  std::int64_t group = f.integer_or("group_size", 0, 1, kMaxHidden);
  if (const Node* groups = f.map_or_null("config_groups"); groups && !groups->fields.empty()) {
    Fields gf(doc, groups->fields.front().second, "config_groups", Strictness::kLenient);
    if (const Node* w = gf.map_or_null("weights")) {
      Fields wf(doc, *w, "weights", Strictness::kLenient);
      group = wf.integer_or("group_size", group, 1, kMaxHidden);
      if (auto e = wf.finish()) f.adopt(*e);
    }
    if (auto e = gf.finish()) f.adopt(*e);
  }
  q.group_size = group > 0 ? group : 16;
  if (f.ok() && q.group_size != 16)
    f.fail("group_size", "NVFP4 scales blocks of 16 values, got group_size " +
                             std::to_string(q.group_size));
  q.ignore = f.has("ignore") ? f.string_list_or("ignore") : f.string_list_or("exclude_modules");
  // An fp8 KV cache the checkpoint was calibrated for (vLLM then runs it).
  if (f.string_or("kv_cache_quant_algo", "") == "FP8") m.kv_cache_dtype = KvCacheDType::kFP8;
  // ModelOpt's NVFP4 KV cache (hf_quant_config.json kv_cache_quant_algo "NVFP4").
  if (f.string_or("kv_cache_quant_algo", "") == "NVFP4") m.kv_cache_dtype = KvCacheDType::kNvfp4;
  if (const Node* kv = f.map_or_null("kv_cache_scheme")) {
    Fields kf(doc, *kv, "kv_cache_scheme", Strictness::kLenient);
    if (kf.integer_or("num_bits", 0, 0, 64) == 8) m.kv_cache_dtype = KvCacheDType::kFP8;
    if (auto e = kf.finish()) f.adopt(*e);
  }
}

// Reads the weight format from quantization_config (vLLM's fp8, awq, gptq,
// compressed-tensors, mxfp4 and modelopt configs).
std::optional<Error> read_quant(const Doc& doc, const Node& node, Model& m) {
  Fields f(doc, node, "quantization_config", Strictness::kLenient);
  Quantization& q = m.quant;
  std::string method = f.string("quant_method");
  if (!f.ok()) return f.finish();
  if (method == "fp8") {
    q.method = QuantMethod::kFp8;
    q.weight_dtype = DType::kFP8E4M3;
    std::string fmt = f.string_or("fmt", "e4m3");
    if (fmt != "e4m3" && fmt != "float8_e4m3fn")
      f.fail("fmt", "fp8 format '" + fmt + "' is not supported (only e4m3)");
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
  } else if (method == "modelopt") {
    read_modelopt(doc, f, m);
  } else if (method == "mxfp4") {
    // Mxfp4Config: the MoE experts only, fp4 e2m1 in blocks of 32 with E8M0 scales.
    q.method = QuantMethod::kMxfp4;
    q.weight_dtype = DType::kFP4E2M1;
    q.experts_only = true;
    if (f.ok() && !m.moe)
      f.fail("quant_method", "mxfp4 quantizes MoE experts; this model has none");
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
                               "compressed-tensors, mxfp4, modelopt)");
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
  const bool deepseek = *fam == Family::kDeepseekV2 || *fam == Family::kDeepseekV3 ||
                        *fam == Family::kDeepseekV32;
  const bool deepseek_v3 = *fam == Family::kDeepseekV3 || *fam == Family::kDeepseekV32;
  const bool gemma3 = *fam == Family::kGemma3 || *fam == Family::kGemma3Mm;
  const bool gemma = gemma3 || *fam == Family::kGemma2;
  const bool llama4 = *fam == Family::kLlama4 || *fam == Family::kLlama4Mm;
  const bool multimodal = *fam == Family::kGemma3Mm || *fam == Family::kLlama4Mm;

  std::string nm = f.string_or("_name_or_path", "");
  m.name = nm.empty() || nm.front() == '/' || nm.front() == '.' ? name_from_path(doc.file) : nm;
  if (m.name.find('/') != std::string::npos) m.hf_repo = m.name;
  std::string dt = f.has("torch_dtype") ? f.choice("torch_dtype", {"bfloat16", "float16", "float32"})
                                        : f.choice_or("dtype", "bfloat16",
                                                      {"bfloat16", "float16", "float32"});
  // A multimodal checkpoint keeps its language model's fields in text_config (and its image
  // encoder's in vision_config).
  const Node* text = multimodal ? f.map_or_null("text_config") : nullptr;
  const Node* vision = multimodal ? f.map_or_null("vision_config") : nullptr;
  if (multimodal && f.ok() && !text) f.missing("text_config");
  if (!f.ok()) return *f.finish();
  Fields tf(doc, text ? *text : doc.root, "text_config", Strictness::kLenient);
  tf.allow(kWellKnownKeys);
  Fields& c = text ? tf : f;
  if (text && tf.has("torch_dtype")) dt = tf.choice("torch_dtype", {"bfloat16", "float16", "float32"});

  // Gemma3TextConfig's defaults stand in for what a Gemma 3 text_config leaves out.
  m.hidden_size = gemma3 ? c.integer_or("hidden_size", 2304, 1, kMaxHidden)
                         : c.integer("hidden_size", 1, kMaxHidden);
  m.num_layers = gemma3 ? c.integer_or("num_hidden_layers", 26, 1, kMaxLayers)
                        : c.integer("num_hidden_layers", 1, kMaxLayers);
  m.vocab_size = gemma3 ? c.integer_or("vocab_size", 262208, 1, kMaxVocab)
                        : c.integer("vocab_size", 1, kMaxVocab);
  m.max_position_embeddings =
      gemma3 ? c.integer_or("max_position_embeddings", 131072, 1, kMaxPositions)
             : c.integer("max_position_embeddings", 1, kMaxPositions);
  m.intermediate_size = gemma3 ? c.integer_or("intermediate_size", 9216, 1, kMaxIntermediate)
                               : c.integer("intermediate_size", 1, kMaxIntermediate);
  // Gemma ties its head to the embedding (vLLM asserts it); the others default to untied.
  m.tie_word_embeddings = c.boolean_or("tie_word_embeddings", gemma);
  m.dtype = *parse_dtype(dt);
  m.quant.weight_dtype = m.dtype;

  Attention& a = m.attention;
  a.num_heads = gemma3 ? c.integer_or("num_attention_heads", 8, 1, kMaxHeads)
                       : c.integer("num_attention_heads", 1, kMaxHeads);
  a.num_kv_heads = c.integer_or("num_key_value_heads", gemma3 ? 4 : a.num_heads, 1, kMaxHeads);
  if (!deepseek) {
    hints.head_dim_explicit = c.has("head_dim") || gemma3;
    hints.head_dim_must_match_hidden =
        c.has("head_dim") && (*fam == Family::kQwen2 || *fam == Family::kQwen2Moe);
    a.head_dim = c.integer_or("head_dim", gemma3 ? 256 : 0, 1, kMaxHeadDim);
  }
  bool attn_bias = c.boolean_or("attention_bias", *fam == Family::kGptOss);
  switch (*fam) {
    case Family::kQwen2:
    case Family::kQwen2Moe: a.qkv_bias = true; break;  // Qwen2Attention: bias on q/k/v only
    case Family::kQwen3:
    case Family::kQwen3Moe: a.qk_norm = true; a.qkv_bias = a.o_bias = attn_bias; break;
    // Qwen3NextAttention: q/k norms, a sigmoid output gate from q_proj (attn_output_gate,
    // default true), q/k/v biases only with qkv_bias (default false).
    case Family::kQwen3Next: a.qk_norm = true; a.qkv_bias = c.boolean_or("qkv_bias", false);
                             a.output_gate = c.boolean_or("attn_output_gate", true); break;
    case Family::kLlama: a.qkv_bias = a.o_bias = attn_bias;
                         m.mlp_bias = c.boolean_or("mlp_bias", false); break;
    // Glm4MoeAttention: bias on q/k/v when attention_bias, never on o_proj; q/k norms per head.
    case Family::kGlm4Moe: a.qkv_bias = attn_bias; a.qk_norm = c.boolean_or("use_qk_norm", false);
                           break;
    // Llama4Attention: no biases; its qk norm (use_qk_norm) has no weight.
    case Family::kLlama4:
    case Family::kLlama4Mm: break;
    case Family::kMiniMaxM2: a.qkv_bias = attn_bias;
                             a.qk_norm = a.qk_norm_all_heads = c.boolean_or("use_qk_norm", true);
                             break;
    default: a.qkv_bias = a.o_bias = attn_bias; break;
  }
  if (gemma3) a.qk_norm = true;
  if (gemma) m.sandwich_norms = true;
  if (*fam == Family::kGptOss) a.sinks = true;

  // Partial rotary embeddings: GLM's partial_rotary_factor (default 0.5 in vLLM's glm4_moe.py),
  // MiniMax-M2's rotary_dim.
  if ((*fam == Family::kGlm4Moe || *fam == Family::kQwen3Next) && f.ok()) {
    const double factor = c.number_or("partial_rotary_factor",
                                      *fam == Family::kGlm4Moe ? 0.5 : 0.25, 0.0, 1.0);
    a.rotary_dim = static_cast<std::int64_t>(static_cast<double>(a.head_dim) * factor);
  }
  if (*fam == Family::kMiniMaxM2) a.rotary_dim = c.integer_or("rotary_dim", 0, 1, kMaxHeadDim);

  if (*fam == Family::kMixtral) {
    Moe e;
    e.num_experts = c.integer("num_local_experts", 1, kMaxExperts);
    e.experts_per_token = c.integer("num_experts_per_tok", 1, kMaxExperts);
    e.expert_intermediate_size = m.intermediate_size;
    m.moe = e;
  } else if (*fam == Family::kGptOss || *fam == Family::kMiniMaxM2) {
    // Every layer MoE; experts intermediate_size wide. gpt-oss: router and experts biased.
    Moe e;
    e.num_experts = c.integer("num_local_experts", 1, kMaxExperts);
    e.experts_per_token =
        c.has("num_experts_per_tok") ? c.integer("num_experts_per_tok", 1, kMaxExperts)
                                     : c.integer("experts_per_token", 1, kMaxExperts);
    e.expert_intermediate_size = m.intermediate_size;
    e.router_bias = *fam == Family::kGptOss || c.boolean_or("use_routing_bias", false);
    e.expert_bias = *fam == Family::kGptOss;
    m.moe = e;
  } else if (llama4) {
    // Llama4TextConfig: experts and the shared expert intermediate_size wide, dense layers
    // intermediate_size_mlp; MoE every interleave_moe_layer_step-th layer (vLLM llama4.py reads
    // the step, not moe_layers).
    Moe e;
    e.num_experts = c.integer("num_local_experts", 1, kMaxExperts);
    e.experts_per_token = c.integer_or("num_experts_per_tok", 1, 1, kMaxExperts);
    e.expert_intermediate_size = m.intermediate_size;
    e.num_shared_experts = 1;
    e.shared_intermediate_size = m.intermediate_size;
    m.intermediate_size = c.integer_or("intermediate_size_mlp", 16384, 1, kMaxIntermediate);
    const std::int64_t step = c.integer_or("interleave_moe_layer_step", 1, 1, kMaxLayers);
    for (std::int64_t l = 0; l < m.num_layers && c.ok(); ++l)
      if ((l + 1) % step != 0) e.dense_layers.push_back(l);
    m.moe = e;
  } else if (*fam == Family::kGlm4Moe) {
    Moe e;
    e.num_experts = c.integer("n_routed_experts", 1, kMaxExperts);
    e.experts_per_token = c.integer("num_experts_per_tok", 1, kMaxExperts);
    e.expert_intermediate_size = c.integer("moe_intermediate_size", 1, kMaxIntermediate);
    e.num_shared_experts = c.integer_or("n_shared_experts", 1, 0, kMaxExperts);
    e.shared_intermediate_size = e.num_shared_experts * e.expert_intermediate_size;
    e.first_k_dense = c.integer_or("first_k_dense_replace", 1, 0, kMaxLayers);
    e.router_bias = true;  // Glm4MoE's gate always has e_score_correction_bias
    m.moe = e;
    m.mtp_layers = c.integer_or("num_nextn_predict_layers", 0, 0, kMaxMtpLayers);
  } else if (*fam == Family::kQwen2Moe || *fam == Family::kQwen3Moe ||
             *fam == Family::kQwen3Next) {
    Moe e;
    e.num_experts = c.integer("num_experts", 1, kMaxExperts);
    e.experts_per_token = c.integer("num_experts_per_tok", 1, kMaxExperts);
    e.expert_intermediate_size = c.integer("moe_intermediate_size", 1, kMaxIntermediate);
    if (*fam == Family::kQwen2Moe || *fam == Family::kQwen3Next) {
      e.shared_intermediate_size =
          c.integer_or("shared_expert_intermediate_size", 0, 0, kMaxIntermediate);
      e.num_shared_experts = e.shared_intermediate_size > 0 ? 1 : 0;
      e.shared_expert_gate = e.num_shared_experts > 0;
    }
    std::int64_t step = c.integer_or("decoder_sparse_step", 1, 1, kMaxLayers);
    e.dense_layers = c.int_list_or("mlp_only_layers", 0, kMaxLayers - 1);
    // Qwen2MoeDecoderLayer: MoE when not in mlp_only_layers and (layer + 1) % step == 0.
    for (std::int64_t l = 0; l < m.num_layers && c.ok(); ++l)
      if ((l + 1) % step != 0 &&
          std::find(e.dense_layers.begin(), e.dense_layers.end(), l) == e.dense_layers.end())
        e.dense_layers.push_back(l);
    m.moe = e;
  } else if (deepseek) {
    Mla x = read_mla_fields(c);
    m.mla = x;
    a.head_dim = x.qk_nope_head_dim + x.qk_rope_head_dim;
    hints.head_dim_explicit = true;
    if (c.has("n_routed_experts")) {
      Moe e;
      e.num_experts = c.integer("n_routed_experts", 1, kMaxExperts);
      e.experts_per_token = c.integer("num_experts_per_tok", 1, kMaxExperts);
      e.expert_intermediate_size = c.integer("moe_intermediate_size", 1, kMaxIntermediate);
      e.num_shared_experts = c.integer_or("n_shared_experts", 0, 0, kMaxExperts);
      e.shared_intermediate_size = e.num_shared_experts * e.expert_intermediate_size;
      e.first_k_dense = c.integer_or("first_k_dense_replace", 0, 0, kMaxLayers);
      std::int64_t freq = c.integer_or("moe_layer_freq", 1, 1, kMaxLayers);
      // DeepseekV2DecoderLayer: MoE when layer >= first_k_dense_replace and layer % freq == 0.
      for (std::int64_t l = e.first_k_dense; l < m.num_layers && c.ok(); ++l)
        if (l % freq != 0) e.dense_layers.push_back(l);
      std::string topk = c.string_or("topk_method", deepseek_v3 ? "noaux_tc" : "greedy");
      e.router_bias = topk == "noaux_tc";
      m.moe = e;
    }
    if (deepseek_v3) m.mtp_layers = c.integer_or("num_nextn_predict_layers", 0, 0, kMaxMtpLayers);
    if (*fam == Family::kDeepseekV32) {
      SparseIndexer ix;  // deepseek_v2.py Indexer: all three required for V3.2
      ix.num_heads = c.integer("index_n_heads", 1, kMaxHeads);
      ix.head_dim = c.integer("index_head_dim", 1, kMaxHeadDim);
      ix.topk = c.integer("index_topk", 1, kMaxPositions);
      m.indexer = ix;
    }
  }

  // Which layers attend to a window (vLLM's per-layer KV-cache spec).
  if (f.ok() && c.ok()) {
    if (*fam == Family::kGptOss || gemma) {
      m.sliding_window = gemma3 ? c.integer_or("sliding_window", 4096, 1, kMaxPositions)
                                : c.integer("sliding_window", 1, kMaxPositions);
      // Defaults without layer_types: gpt-oss and Gemma 2 slide on even layers (gpt_oss.py
      // layer_idx % 2 == 0; Gemma2Config); Gemma 3 on all but every sliding_window_pattern-th.
      const std::int64_t pattern =
          gemma3 ? c.integer_or("sliding_window_pattern", 6, 1, kMaxLayers) : 2;
      std::vector<bool> sliding(static_cast<std::size_t>(m.num_layers));
      for (std::int64_t l = 0; l < m.num_layers; ++l)
        sliding[static_cast<std::size_t>(l)] = (l + 1) % pattern != 0;
      if (auto e = read_layer_types(c, m, sliding)) return *e;
    } else if (*fam == Family::kQwen3Next) {
      LinearAttention x;
      x.num_key_heads = c.integer("linear_num_key_heads", 1, kMaxHeads);
      x.num_value_heads = c.integer("linear_num_value_heads", 1, kMaxHeads);
      x.key_head_dim = c.integer("linear_key_head_dim", 1, kMaxHeadDim);
      x.value_head_dim = c.integer("linear_value_head_dim", 1, kMaxHeadDim);
      x.conv_kernel = c.integer("linear_conv_kernel_dim", 1, 64);
      m.linear_attention = x;
      // Qwen3NextConfig: full attention on every full_attention_interval-th layer (4), gated
      // delta net on the rest, unless layer_types says otherwise.
      const std::int64_t interval = c.integer_or("full_attention_interval", 4, 1, kMaxLayers);
      m.layer_attention.clear();
      auto types = c.string_list_or("layer_types");
      if (c.ok() && types.empty())
        for (std::int64_t l = 0; l < m.num_layers; ++l)
          m.layer_attention.push_back((l + 1) % interval == 0 ? LayerAttention::kFull
                                                              : LayerAttention::kLinear);
      else if (auto e = read_layer_types(c, m, {}))
        return *e;
    } else if (*fam == Family::kMistral && c.has("sliding_window")) {
      // A model-wide window (Mistral-7B-v0.1) applies to every layer (vLLM's
      // cache_config.sliding_window for a non-interleaved config).
      m.sliding_window = c.integer("sliding_window", 1, kMaxPositions);
      m.layer_attention.assign(static_cast<std::size_t>(m.num_layers),
                               LayerAttention::kSlidingWindow);
    } else if (llama4) {
      // Llama4Attention: RoPE layers attend in chunks of attention_chunk_size, NoPE layers
      // (no_rope_layers[i] == 0; by default every no_rope_layer_interval-th) to everything.
      m.attention_chunk_size = c.integer_or("attention_chunk_size", 0, 1, kMaxPositions);
      auto nope = c.int_list_or("no_rope_layers", 0, 1);
      const std::int64_t interval = c.integer_or("no_rope_layer_interval", 4, 1, kMaxLayers);
      if (c.ok() && !nope.empty() && static_cast<std::int64_t>(nope.size()) != m.num_layers)
        c.fail("no_rope_layers", "field 'no_rope_layers' lists " + std::to_string(nope.size()) +
                                     " layers; num_hidden_layers is " +
                                     std::to_string(m.num_layers));
      if (c.ok() && m.attention_chunk_size > 0)
        for (std::int64_t l = 0; l < m.num_layers; ++l) {
          const bool rope = nope.empty() ? (l + 1) % interval != 0
                                         : nope[static_cast<std::size_t>(l)] != 0;
          m.layer_attention.push_back(rope ? LayerAttention::kChunkedLocal
                                           : LayerAttention::kFull);
        }
    }
  }
  if (vision && f.ok() && c.ok())
    if (auto e = read_vision(doc, *vision, m, llama4 ? VisionKind::kLlama4 : VisionKind::kSiglip))
      return *e;

  const Node* quant = f.map_or_null("quantization_config");
  if (!quant && text) quant = tf.map_or_null("quantization_config");
  pos.note_all(doc.root);
  if (text) pos.note_all(*text);
  pos.note(text ? *text : doc.root, "num_local_experts", "num_experts");
  pos.note(doc.root, "n_routed_experts", "num_experts");
  if (auto e = f.finish()) return *e;
  if (text)
    if (auto e = tf.finish()) return *e;
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
  if (!json) return model_from_yaml(*doc);
  auto m = model_from_hf_config(*doc);
  // ModelOpt checkpoints (nvidia/DeepSeek-R1-FP4, ...) may describe their weights in
  // hf_quant_config.json beside config.json, which vLLM reads first.
  const auto side = std::filesystem::path(file).parent_path() / "hf_quant_config.json";
  if (!m || m->quant.method != QuantMethod::kNone || !std::filesystem::exists(side, ec)) return m;
  auto qdoc = load_json_file(side.string());
  if (!qdoc) return qdoc.error();
  Fields top(*qdoc, qdoc->root, "hf_quant_config", Strictness::kLenient);
  const Node* section = top.map_or_null("quantization");
  if (top.ok() && !section) top.missing("quantization");
  if (auto e = top.finish()) return *e;
  Fields f(*qdoc, *section, "quantization", Strictness::kLenient);
  read_modelopt(*qdoc, f, *m);
  if (auto e = f.finish()) return *e;
  FieldPositions pos;
  pos.file = side.string();
  pos.note_all(*section);
  if (auto e = validate_model(*m, pos, ValidationHints{true, false})) return *e;
  return m;
}

}  // namespace tpp::model
