#include "model/tensors.h"

#include <fnmatch.h>

#include <string>
#include <tuple>

namespace tpp::model {

std::int64_t int_pack_factor(const Quantization& q) {
  if (q.method == QuantMethod::kNone || q.method == QuantMethod::kFp8) return 1;
  if (q.weight_dtype == DType::kINT4) return 8;
  if (q.weight_dtype == DType::kINT8) return 4;
  return 1;
}

namespace {

using C = Component;
using S = Split;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

struct Builder {
  std::vector<TensorSpec>* out;
  std::string prefix;
  C override_component = C::kCount;  // kMtp for everything inside an MTP module

  void add(const std::string& name, C c, S s, std::int64_t rows, std::int64_t cols,
           bool quantized, std::int64_t count = 1) {
    C comp = override_component == C::kCount ? c : override_component;
    out->push_back(TensorSpec{prefix + name, comp, s, rows, cols, count, quantized});
  }
  void vec(const std::string& name, C c, S s, std::int64_t n) { add(name, c, s, n, 1, false); }
};

void add_attention(const Model& m, Builder& b) {
  const std::int64_t h = m.hidden_size;
  const auto& a = m.attention;
  if (m.mla) {
    const Mla& x = *m.mla;
    const std::int64_t qk = x.qk_nope_head_dim + x.qk_rope_head_dim;
    if (x.q_lora_rank > 0) {
      b.add("self_attn.q_a_proj.weight", C::kAttention, S::kReplicated, x.q_lora_rank, h, true);
      b.vec("self_attn.q_a_layernorm.weight", C::kAttention, S::kReplicated, x.q_lora_rank);
      b.add("self_attn.q_b_proj.weight", C::kAttention, S::kColumn, a.num_heads * qk,
            x.q_lora_rank, true);
    } else {
      b.add("self_attn.q_proj.weight", C::kAttention, S::kColumn, a.num_heads * qk, h, true);
    }
    b.add("self_attn.kv_a_proj_with_mqa.weight", C::kAttention, S::kReplicated,
          x.kv_lora_rank + x.qk_rope_head_dim, h, true);
    b.vec("self_attn.kv_a_layernorm.weight", C::kAttention, S::kReplicated, x.kv_lora_rank);
    b.add("self_attn.kv_b_proj.weight", C::kAttention, S::kColumn,
          a.num_heads * (x.qk_nope_head_dim + x.v_head_dim), x.kv_lora_rank, true);
    b.add("self_attn.o_proj.weight", C::kAttention, S::kRow, h, a.num_heads * x.v_head_dim, true);
    if (m.indexer) {
      // DeepSeek-V3.2's Indexer, replicated on every rank: wq_b and wk quantized like the other
      // linears, k_norm a LayerNorm (weight and bias), weights_proj unquantized.
      const SparseIndexer& ix = *m.indexer;
      b.add("self_attn.indexer.wq_b.weight", C::kAttention, S::kReplicated,
            ix.num_heads * ix.head_dim, x.q_lora_rank, true);
      b.add("self_attn.indexer.wk.weight", C::kAttention, S::kReplicated, ix.head_dim, h, true);
      b.vec("self_attn.indexer.k_norm.weight", C::kAttention, S::kReplicated, ix.head_dim);
      b.vec("self_attn.indexer.k_norm.bias", C::kAttention, S::kReplicated, ix.head_dim);
      b.add("self_attn.indexer.weights_proj.weight", C::kAttention, S::kReplicated, ix.num_heads,
            h, false);
    }
    return;
  }
  const std::int64_t q = a.num_heads * a.head_dim, kv = a.num_kv_heads * a.head_dim;
  // Qwen3-Next's gated attention: q_proj yields the query and a gate of the same size, per head.
  b.add("self_attn.q_proj.weight", C::kAttention, S::kColumn, a.output_gate ? 2 * q : q, h,
        true);
  b.add("self_attn.k_proj.weight", C::kAttention, S::kKvHeads, kv, h, true);
  b.add("self_attn.v_proj.weight", C::kAttention, S::kKvHeads, kv, h, true);
  if (a.qkv_bias) {
    b.vec("self_attn.q_proj.bias", C::kAttention, S::kColumn, a.output_gate ? 2 * q : q);
    b.vec("self_attn.k_proj.bias", C::kAttention, S::kKvHeads, kv);
    b.vec("self_attn.v_proj.bias", C::kAttention, S::kKvHeads, kv);
  }
  b.add("self_attn.o_proj.weight", C::kAttention, S::kRow, h, q, true);
  if (a.o_bias) b.vec("self_attn.o_proj.bias", C::kAttention, S::kReplicated, h);
  if (a.qk_norm && a.qk_norm_all_heads) {
    // MiniMaxText01RMSNormTP: one norm over every head, its weight split like the heads.
    b.vec("self_attn.q_norm.weight", C::kAttention, S::kColumn, q);
    b.vec("self_attn.k_norm.weight", C::kAttention, S::kKvHeads, kv);
  } else if (a.qk_norm) {
    b.vec("self_attn.q_norm.weight", C::kAttention, S::kReplicated, a.head_dim);
    b.vec("self_attn.k_norm.weight", C::kAttention, S::kReplicated, a.head_dim);
  }
  // gpt-oss's sinks: one logit per head, each rank keeping its heads' (OAIAttention).
  if (a.sinks) b.vec("self_attn.sinks", C::kAttention, S::kColumn, a.num_heads);
}

// Qwen3NextGatedDeltaNet: in_proj_qkvz and in_proj_ba (column), the depthwise conv over q, k
// and v ([conv_dim, 1, kernel], split by channel: one vector here, so that it is no GEMM), A_log
// and dt_bias per value head (split), the gated RMSNorm over value_head_dim, out_proj (row).
void add_linear_attention(const Model& m, Builder& b) {
  const LinearAttention& x = *m.linear_attention;
  const std::int64_t h = m.hidden_size;
  b.add("linear_attn.in_proj_qkvz.weight", C::kAttention, S::kColumn,
        2 * x.key_dim() + 2 * x.value_dim(), h, true);
  b.add("linear_attn.in_proj_ba.weight", C::kAttention, S::kColumn, 2 * x.num_value_heads, h,
        true);
  b.vec("linear_attn.conv1d.weight", C::kAttention, S::kColumn, x.conv_dim() * x.conv_kernel);
  b.vec("linear_attn.A_log", C::kAttention, S::kColumn, x.num_value_heads);
  b.vec("linear_attn.dt_bias", C::kAttention, S::kColumn, x.num_value_heads);
  b.vec("linear_attn.norm.weight", C::kAttention, S::kReplicated, x.value_head_dim);
  b.add("linear_attn.out_proj.weight", C::kAttention, S::kRow, h, x.value_dim(), true);
}

void add_gated_mlp(Builder& b, const std::string& p, C c, std::int64_t hidden,
                   std::int64_t inter, bool bias) {
  b.add(p + "gate_proj.weight", c, S::kColumn, inter, hidden, true);
  b.add(p + "up_proj.weight", c, S::kColumn, inter, hidden, true);
  b.add(p + "down_proj.weight", c, S::kRow, hidden, inter, true);
  if (bias) {
    b.vec(p + "gate_proj.bias", c, S::kColumn, inter);
    b.vec(p + "up_proj.bias", c, S::kColumn, inter);
    b.vec(p + "down_proj.bias", c, S::kReplicated, hidden);
  }
}

void add_moe(const Model& m, Builder& b) {
  const Moe& e = *m.moe;
  const std::int64_t h = m.hidden_size, n = e.num_experts, w = e.expert_intermediate_size;
  b.add("mlp.gate.weight", C::kRouter, S::kReplicated, n, h, false);
  if (e.router_bias) b.vec("mlp.gate.e_score_correction_bias", C::kRouter, S::kReplicated, n);
  b.add("mlp.experts.w1.weight", C::kExperts, S::kExpertColumn, w, h, true, n);
  b.add("mlp.experts.w3.weight", C::kExperts, S::kExpertColumn, w, h, true, n);
  b.add("mlp.experts.w2.weight", C::kExperts, S::kExpertRow, h, w, true, n);
  if (e.expert_bias) {  // gpt-oss: gate_up_proj_bias [E, 2I] and down_proj_bias [E, H]
    b.add("mlp.experts.w1.bias", C::kExperts, S::kExpertColumn, w, 1, false, n);
    b.add("mlp.experts.w3.bias", C::kExperts, S::kExpertColumn, w, 1, false, n);
    b.add("mlp.experts.w2.bias", C::kExperts, S::kReplicated, h, 1, false, n);
  }
  if (e.num_shared_experts > 0)
    add_gated_mlp(b, "mlp.shared_experts.", C::kSharedExperts, h, e.shared_intermediate_size,
                  false);
  if (e.shared_expert_gate)
    b.add("mlp.shared_expert_gate.weight", C::kSharedExperts, S::kReplicated, 1, h, false);
}

void add_decoder_layer(const Model& m, std::int64_t layer, Builder& b) {
  b.vec("input_layernorm.weight", C::kNorms, S::kReplicated, m.hidden_size);
  if (layer < m.num_layers && m.layer_attention_of(layer) == LayerAttention::kLinear)
    add_linear_attention(m, b);
  else
    add_attention(m, b);
  b.vec("post_attention_layernorm.weight", C::kNorms, S::kReplicated, m.hidden_size);
  if (m.sandwich_norms) {  // Gemma 2/3
    b.vec("pre_feedforward_layernorm.weight", C::kNorms, S::kReplicated, m.hidden_size);
    b.vec("post_feedforward_layernorm.weight", C::kNorms, S::kReplicated, m.hidden_size);
  }
  if (m.is_moe_layer(layer)) add_moe(m, b);
  else add_gated_mlp(b, "mlp.", C::kMlp, m.hidden_size, m.intermediate_size, m.mlp_bias);
}

// One pre-norm ViT block with biases everywhere (LayerNorm weight and bias, q/k/v/o, fc1/fc2).
void add_vit_block(Builder& b, std::int64_t hv, std::int64_t iv) {
  b.vec("layer_norm1.weight", C::kVision, S::kReplicated, hv);
  b.vec("layer_norm1.bias", C::kVision, S::kReplicated, hv);
  for (const char* x : {"q_proj", "k_proj", "v_proj"}) {
    b.add(std::string("self_attn.") + x + ".weight", C::kVision, S::kColumn, hv, hv, false);
    b.vec(std::string("self_attn.") + x + ".bias", C::kVision, S::kColumn, hv);
  }
  b.add("self_attn.out_proj.weight", C::kVision, S::kRow, hv, hv, false);
  b.vec("self_attn.out_proj.bias", C::kVision, S::kReplicated, hv);
  b.vec("layer_norm2.weight", C::kVision, S::kReplicated, hv);
  b.vec("layer_norm2.bias", C::kVision, S::kReplicated, hv);
  b.add("mlp.fc1.weight", C::kVision, S::kColumn, iv, hv, false);
  b.vec("mlp.fc1.bias", C::kVision, S::kColumn, iv);
  b.add("mlp.fc2.weight", C::kVision, S::kRow, hv, iv, false);
  b.vec("mlp.fc2.bias", C::kVision, S::kReplicated, hv);
}

// DeepSeek-V3's MTP module as its checkpoint stores it (model.layers.61.*): its own copy of
// the embedding and the head, two norms, the [hidden, 2 hidden] projection, one MoE layer.
void add_mtp_module(const Model& m, std::int64_t layer, Builder& b) {
  const std::int64_t h = m.hidden_size;
  b.add("embed_tokens.weight", C::kMtp, S::kVocab, m.vocab_size, h, false);
  b.vec("enorm.weight", C::kMtp, S::kReplicated, h);
  b.vec("hnorm.weight", C::kMtp, S::kReplicated, h);
  b.add("eh_proj.weight", C::kMtp, S::kReplicated, h, 2 * h, false);
  add_decoder_layer(m, layer, b);
  b.vec("shared_head.norm.weight", C::kMtp, S::kReplicated, h);
  b.add("shared_head.head.weight", C::kMtp, S::kVocab, m.vocab_size, h, false);
}

// vLLM's is_layer_excluded (quantization/modelopt.py): the module (the tensor's name without
// its .weight / .bias) equals an entry, contains it, or matches it as a glob.
bool ignored(const Quantization& q, std::string name) {
  for (const char* tail : {".weight", ".bias"})
    if (name.size() > std::string(tail).size() &&
        name.compare(name.size() - std::string(tail).size(), std::string::npos, tail) == 0)
      name.resize(name.size() - std::string(tail).size());
  for (const auto& e : q.ignore)
    if (name == e || name.find(e) != std::string::npos ||
        fnmatch(e.c_str(), name.c_str(), 0) == 0)
      return true;
  return false;
}

}  // namespace

const char* component_name(Component c) {
  switch (c) {
    case C::kEmbedding: return "embedding";
    case C::kAttention: return "attention";
    case C::kMlp: return "mlp";
    case C::kRouter: return "router";
    case C::kExperts: return "experts";
    case C::kSharedExperts: return "shared_experts";
    case C::kNorms: return "norms";
    case C::kLmHead: return "lm_head";
    case C::kMtp: return "mtp";
    case C::kVision: return "vision";
    case C::kCount: break;
  }
  return "?";
}

std::vector<TensorSpec> layer_tensors(const Model& m, std::int64_t layer) {
  std::vector<TensorSpec> out;
  Builder b{&out, "layers." + std::to_string(layer) + "."};
  if (layer >= m.num_layers) {
    b.override_component = C::kMtp;
    add_mtp_module(m, layer, b);
  } else {
    add_decoder_layer(m, layer, b);
  }
  if (m.quant.experts_only)
    for (auto& t : out) t.quantized = t.quantized && t.component == C::kExperts;
  if (!m.quant.ignore.empty())
    for (auto& t : out)
      if (t.quantized && ignored(m.quant, "model." + t.name)) t.quantized = false;
  return out;
}

std::vector<TensorSpec> global_tensors(const Model& m) {
  std::vector<TensorSpec> out;
  Builder b{&out, ""};
  b.add("embed_tokens.weight", C::kEmbedding, S::kVocab, m.vocab_size, m.hidden_size, false);
  b.vec("norm.weight", C::kNorms, S::kReplicated, m.hidden_size);
  if (!m.tie_word_embeddings)
    b.add("lm_head.weight", C::kLmHead, S::kVocab, m.vocab_size, m.hidden_size, false);
  return out;
}

std::vector<TensorSpec> vision_tensors(const Model& m) {
  std::vector<TensorSpec> out;
  if (!m.vision) return out;
  const VisionTower& v = *m.vision;
  const std::int64_t hv = v.hidden_size, iv = v.intermediate_size, p = v.patch_size;
  const std::int64_t patches = (v.image_size / p) * (v.image_size / p);
  Builder b{&out, "vision."};
  if (v.kind == VisionKind::kSiglip) {
    // SiglipVisionEmbeddings: a patch convolution with bias and learned positions; no head.
    b.add("embeddings.patch_embedding.weight", C::kVision, S::kReplicated, hv,
          v.num_channels * p * p, false);
    b.vec("embeddings.patch_embedding.bias", C::kVision, S::kReplicated, hv);
    b.add("embeddings.position_embedding.weight", C::kVision, S::kReplicated, patches, hv, false);
    for (std::int64_t l = 0; l < v.num_layers; ++l) {
      Builder lb{&out, "vision.encoder.layers." + std::to_string(l) + "."};
      add_vit_block(lb, hv, iv);
    }
    b.vec("post_layernorm.weight", C::kVision, S::kReplicated, hv);
    b.vec("post_layernorm.bias", C::kVision, S::kReplicated, hv);
    // Gemma3MultiModalProjector: mm_input_projection_weight [vision, text] and its RMSNorm.
    b.add("projector.mm_input_projection_weight", C::kVision, S::kReplicated, hv,
          m.hidden_size, false);
    b.vec("projector.mm_soft_emb_norm.weight", C::kVision, S::kReplicated, hv);
  } else {
    // Llama4VisionModel: unbiased patch projection, a class token, positions incl. it.
    b.add("patch_embedding.linear.weight", C::kVision, S::kColumn, hv, v.num_channels * p * p,
          false);
    b.vec("class_embedding", C::kVision, S::kReplicated, hv);
    b.add("positional_embedding_vlm", C::kVision, S::kReplicated, patches + 1, hv, false);
    for (const char* n : {"layernorm_pre", "layernorm_post"}) {
      b.vec(std::string(n) + ".weight", C::kVision, S::kReplicated, hv);
      b.vec(std::string(n) + ".bias", C::kVision, S::kReplicated, hv);
    }
    for (std::int64_t l = 0; l < v.num_layers; ++l) {
      Builder lb{&out, "vision.model.layers." + std::to_string(l) + "."};
      add_vit_block(lb, hv, iv);
    }
    // Llama4VisionPixelShuffleMLP's Llama4VisionMLP2: fc1 [projector_input_dim,
    // intermediate_size], fc2 [projector_output_dim, projector_output_dim], no biases.
    b.add("vision_adapter.mlp.fc1.weight", C::kVision, S::kColumn, v.projector_input_dim, iv,
          false);
    b.add("vision_adapter.mlp.fc2.weight", C::kVision, S::kRow, v.projector_output_dim,
          v.projector_output_dim, false);
    b.add("projector.linear_1.weight", C::kVision, S::kReplicated, m.hidden_size, v.output_dim,
          false);
  }
  return out;
}

std::int64_t aux_elements(const TensorSpec& t, const Model& m) {
  const Quantization& q = m.quant;
  if (!t.quantized || q.method == QuantMethod::kNone) return 0;
  if (q.method == QuantMethod::kMxfp4) return t.count * t.rows * ceil_div(t.cols, 32);
  if (q.method == QuantMethod::kNvfp4)  // fp8 block scales, weight_scale_2 and input_scale
    return t.count * (t.rows * ceil_div(t.cols, 16) + 2);
  const std::int64_t groups = q.group_size > 0 ? ceil_div(t.cols, q.group_size) : 1;
  if (q.weight_dtype == DType::kFP8E4M3) {
    if (q.block_rows > 0)
      return t.count * ceil_div(t.rows, q.block_rows) * ceil_div(t.cols, q.block_cols);
    return t.count * (q.group_size == -1 ? t.rows : 1);  // per channel, or per tensor
  }
  const std::int64_t per_int32 = q.weight_dtype == DType::kINT4 ? 8 : 4;
  std::int64_t n = t.count * groups * t.rows;                                    // scales
  if (q.zero_point) n += t.count * groups * ceil_div(t.rows, per_int32);         // qzeros
  if (q.g_idx) n += t.count * t.cols;                                            // g_idx
  return n;
}

std::int64_t storage_bytes(const TensorSpec& t, const Model& m) {
  const Quantization& q = m.quant;
  const std::int64_t elems = t.params();
  const std::int64_t act = static_cast<std::int64_t>(dtype_bytes(m.dtype));
  if (!t.quantized || q.method == QuantMethod::kNone) return elems * act;
  if (q.method == QuantMethod::kMxfp4)  // two e2m1 values a byte, one E8M0 byte per 32
    return t.count * t.rows * (ceil_div(t.cols, 2) + ceil_div(t.cols, 32));
  if (q.method == QuantMethod::kNvfp4)  // two e2m1 a byte, an fp8 scale per 16, two fp32 scalars
    return t.count * (t.rows * (ceil_div(t.cols, 2) + ceil_div(t.cols, 16)) + 8);
  if (q.weight_dtype == DType::kFP8E4M3) return elems + 4 * aux_elements(t, m);  // fp32 scales
  const bool int4 = q.weight_dtype == DType::kINT4;
  const std::int64_t per_int32 = int4 ? 8 : 4;
  const std::int64_t groups = q.group_size > 0 ? ceil_div(t.cols, q.group_size) : 1;
  std::int64_t bytes = int4 ? t.count * ceil_div(t.rows * t.cols, 8) * 4 : elems;
  // Group scales are kept in the model dtype (AWQ/GPTQ params_dtype); per-channel int8 scales
  // (compressed-tensors "channel" strategy) are fp32.
  bytes += t.count * groups * t.rows * (q.group_size == -1 && !int4 ? 4 : act);
  if (q.zero_point) bytes += t.count * groups * ceil_div(t.rows, per_int32) * 4;
  if (q.g_idx) bytes += t.count * t.cols * 4;
  return bytes;
}

namespace {
template <class F>
Totals sum_tensors(const Model& m, bool include_mtp, F value) {
  Totals t;
  auto add = [&](const std::vector<TensorSpec>& ts) {
    for (const auto& x : ts) {
      std::int64_t v = value(x);
      t.by_component[static_cast<int>(x.component)] += v;
      t.total += v;
    }
  };
  add(global_tensors(m));
  add(vision_tensors(m));
  const std::int64_t layers = m.num_layers + (include_mtp ? m.mtp_layers : 0);
  for (std::int64_t l = 0; l < layers; ++l) add(layer_tensors(m, l));
  return t;
}
}  // namespace

Totals param_totals(const Model& m, bool include_mtp) {
  return sum_tensors(m, include_mtp, [](const TensorSpec& t) { return t.params(); });
}

Totals weight_byte_totals(const Model& m, bool include_mtp) {
  return sum_tensors(m, include_mtp, [&](const TensorSpec& t) { return storage_bytes(t, m); });
}

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string replace_tail(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.size() - from.size(), from.size(), to);
  return s;
}

}  // namespace

VllmParameter vllm_parameter(const std::string& checkpoint_name, bool mla) {
  const std::string full =
      checkpoint_name.rfind("lm_head", 0) == 0 ? checkpoint_name : "model." + checkpoint_name;
  if (mla && ends_with(full, "self_attn.q_proj.weight")) return {full, 0};
  for (auto [from, to, part] :
       {std::tuple{"self_attn.q_proj.weight", "self_attn.qkv_proj.weight", 0},
        {"self_attn.k_proj.weight", "self_attn.qkv_proj.weight", 1},
        {"self_attn.v_proj.weight", "self_attn.qkv_proj.weight", 2},
        {"self_attn.q_proj.bias", "self_attn.qkv_proj.bias", 0},
        {"self_attn.k_proj.bias", "self_attn.qkv_proj.bias", 1},
        {"self_attn.v_proj.bias", "self_attn.qkv_proj.bias", 2},
        {"gate_proj.weight", "gate_up_proj.weight", 0},
        {"up_proj.weight", "gate_up_proj.weight", 1},
        {"gate_proj.bias", "gate_up_proj.bias", 0},
        {"up_proj.bias", "gate_up_proj.bias", 1},
        {"experts.w1.weight", "experts.w13_weight", 0},
        {"experts.w3.weight", "experts.w13_weight", 1},
        {"experts.w2.weight", "experts.w2_weight", 0}})
    if (ends_with(full, from)) return {replace_tail(full, from, to), part};
  return {full, 0};
}

}  // namespace tpp::model
