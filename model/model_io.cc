// The model as tpp's own schema (docs/model-schema.md), as JSON: what a plan file embeds so that
// it runs on a machine that has neither the YAML nor the config.json it came from. Read back
// with model_from_yaml() on the parsed document (the reader is format-neutral).
#include <nlohmann/json.hpp>

#include "model/load.h"

namespace tpp::model {

nlohmann::json model_to_json(const Model& m) {
  nlohmann::json j;
  j["name"] = m.name;
  if (!m.hf_repo.empty()) j["hf_repo"] = m.hf_repo;
  j["hidden_size"] = m.hidden_size;
  j["num_hidden_layers"] = m.num_layers;
  j["vocab_size"] = m.vocab_size;
  j["max_position_embeddings"] = m.max_position_embeddings;
  if (m.intermediate_size > 0) j["intermediate_size"] = m.intermediate_size;
  j["tie_word_embeddings"] = m.tie_word_embeddings;
  j["mlp_bias"] = m.mlp_bias;
  j["dtype"] = dtype_name(m.dtype);
  j["kv_cache_dtype"] = kv_cache_dtype_name(m.kv_cache_dtype);
  j["num_nextn_predict_layers"] = m.mtp_layers;
  if (m.sandwich_norms) j["sandwich_norms"] = true;
  if (!m.layer_attention.empty()) {
    nlohmann::json types = nlohmann::json::array();
    for (LayerAttention k : m.layer_attention) types.push_back(layer_attention_name(k));
    j["layer_types"] = types;
  }
  if (m.sliding_window > 0) j["sliding_window"] = m.sliding_window;
  if (m.attention_chunk_size > 0) j["attention_chunk_size"] = m.attention_chunk_size;
  if (const auto& x = m.linear_attention)
    j["linear_attention"] = {{"num_key_heads", x->num_key_heads},
                             {"num_value_heads", x->num_value_heads},
                             {"key_head_dim", x->key_head_dim},
                             {"value_head_dim", x->value_head_dim},
                             {"conv_kernel", x->conv_kernel}};
  const Attention& a = m.attention;
  j["attention"] = {{"num_attention_heads", a.num_heads},
                    {"num_key_value_heads", a.num_kv_heads},
                    {"qkv_bias", a.qkv_bias},
                    {"o_bias", a.o_bias},
                    {"qk_norm", a.qk_norm}};
  if (a.qk_norm_all_heads) j["attention"]["qk_norm_all_heads"] = true;
  if (a.sinks) j["attention"]["sinks"] = true;
  if (a.output_gate) j["attention"]["output_gate"] = true;
  if (a.rotary_dim > 0) j["attention"]["rotary_dim"] = a.rotary_dim;
  if (!m.mla) j["attention"]["head_dim"] = a.head_dim;
  if (m.mla)
    j["mla"] = {{"q_lora_rank", m.mla->q_lora_rank},
                {"kv_lora_rank", m.mla->kv_lora_rank},
                {"qk_nope_head_dim", m.mla->qk_nope_head_dim},
                {"qk_rope_head_dim", m.mla->qk_rope_head_dim},
                {"v_head_dim", m.mla->v_head_dim}};
  if (m.mla && m.indexer)
    j["mla"]["indexer"] = {{"index_n_heads", m.indexer->num_heads},
                           {"index_head_dim", m.indexer->head_dim},
                           {"index_topk", m.indexer->topk}};
  if (m.moe) {
    const Moe& e = *m.moe;
    j["moe"] = {{"num_experts", e.num_experts},
                {"num_experts_per_tok", e.experts_per_token},
                {"moe_intermediate_size", e.expert_intermediate_size},
                {"n_shared_experts", e.num_shared_experts},
                {"shared_expert_gate", e.shared_expert_gate},
                {"router_bias", e.router_bias},
                {"first_k_dense_replace", e.first_k_dense},
                {"mlp_only_layers", e.dense_layers}};
    if (e.shared_intermediate_size > 0)
      j["moe"]["shared_expert_intermediate_size"] = e.shared_intermediate_size;
    if (e.expert_bias) j["moe"]["expert_bias"] = true;
  }
  if (m.vision) {
    const VisionTower& v = *m.vision;
    j["vision"] = {{"kind", v.kind == VisionKind::kSiglip ? "siglip" : "llama4"},
                   {"hidden_size", v.hidden_size},
                   {"intermediate_size", v.intermediate_size},
                   {"num_hidden_layers", v.num_layers},
                   {"image_size", v.image_size},
                   {"patch_size", v.patch_size},
                   {"num_channels", v.num_channels}};
    if (v.kind == VisionKind::kLlama4) {
      j["vision"]["projector_input_dim"] = v.projector_input_dim;
      j["vision"]["projector_output_dim"] = v.projector_output_dim;
      j["vision"]["vision_output_dim"] = v.output_dim;
    }
  }
  const Quantization& q = m.quant;
  if (q.method != QuantMethod::kNone) {
    nlohmann::json jq = {{"method", quant_method_name(q.method)},
                         {"weight_dtype", dtype_name(q.weight_dtype)},
                         {"group_size", q.group_size},
                         {"zero_point", q.zero_point},
                         {"g_idx", q.g_idx}};
    if (q.block_rows > 0) jq["weight_block_size"] = {q.block_rows, q.block_cols};
    if (!q.ignore.empty()) jq["ignore"] = q.ignore;
    j["quantization"] = jq;
  }
  return j;
}

}  // namespace tpp::model
