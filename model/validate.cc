#include "model/validate.h"

#include <algorithm>

#include "model/tensors.h"

namespace tpp::model {

void FieldPositions::note(const Node& map, const std::string& key, const std::string& field) {
  for (std::size_t k = 0; k < map.fields.size(); ++k) {
    if (map.fields[k].first == key) {
      at[field] = map.key_pos[k];
      written_as[field] = key;
      return;
    }
  }
}

void FieldPositions::note_all(const Node& map) {
  for (std::size_t k = 0; k < map.fields.size(); ++k) {
    const std::string& key = map.fields[k].first;
    at[key] = map.key_pos[k];
    written_as[key] = key;
  }
}

std::string FieldPositions::key(const std::string& field) const {
  auto it = written_as.find(field);
  return it == written_as.end() ? field : it->second;
}

Error FieldPositions::error(const std::string& field, const std::string& message) const {
  auto it = at.find(field);
  auto [l, c] = it == at.end() ? fallback : it->second;
  return make_error(file, l, c, "field '" + key(field) + "': " + message);
}

Mla read_mla_fields(Fields& f) {
  Mla x;
  x.q_lora_rank = f.integer_or("q_lora_rank", 0, 0, kMaxHidden);
  x.kv_lora_rank = f.integer("kv_lora_rank", 1, kMaxHidden);
  x.qk_nope_head_dim = f.integer("qk_nope_head_dim", 1, kMaxHeadDim);
  x.qk_rope_head_dim = f.integer("qk_rope_head_dim", 1, kMaxHeadDim);
  x.v_head_dim = f.integer("v_head_dim", 1, kMaxHeadDim);
  return x;
}

namespace {
std::string s(std::int64_t v) { return std::to_string(v); }
}  // namespace

std::optional<Error> validate_model(const Model& m, const FieldPositions& pos,
                                    const ValidationHints& hints) {
  const Attention& a = m.attention;
  if (!m.mla) {
    if (!hints.head_dim_explicit && m.hidden_size % a.num_heads != 0)
      return pos.error("num_attention_heads",
                       "hidden_size " + s(m.hidden_size) + " is not divisible by " +
                           s(a.num_heads) + " attention heads (give head_dim explicitly)");
    if (hints.head_dim_must_match_hidden && a.head_dim * a.num_heads != m.hidden_size)
      return pos.error("head_dim", "head_dim " + s(a.head_dim) + " x " + s(a.num_heads) +
                                       " heads = " + s(a.head_dim * a.num_heads) +
                                       " does not match hidden_size " + s(m.hidden_size) + " (" +
                                       m.architecture + " derives head_dim from hidden_size)");
    if (a.num_kv_heads > a.num_heads)
      return pos.error("num_key_value_heads", s(a.num_kv_heads) +
                                                  " KV heads are more than the " +
                                                  s(a.num_heads) + " attention heads");
    if (a.num_heads % a.num_kv_heads != 0)
      return pos.error("num_key_value_heads", s(a.num_heads) +
                                                  " attention heads are not divisible by " +
                                                  s(a.num_kv_heads) + " KV heads");
  }
  if (m.moe) {
    const Moe& e = *m.moe;
    if (e.experts_per_token > e.num_experts)
      return pos.error("num_experts_per_tok", s(e.experts_per_token) +
                                                  " experts per token exceed the " +
                                                  s(e.num_experts) + " routed experts");
    if (e.first_k_dense > m.num_layers)
      return pos.error("first_k_dense_replace", s(e.first_k_dense) +
                                                    " dense layers exceed the " +
                                                    s(m.num_layers) + " layers");
    for (std::int64_t l : e.dense_layers)
      if (l >= m.num_layers)
        return pos.error("mlp_only_layers", "layer " + s(l) + " does not exist (the model has " +
                                                s(m.num_layers) + " layers)");
    if (e.num_shared_experts > 0 && e.shared_intermediate_size <= 0)
      return pos.error("shared_expert_intermediate_size",
                       "shared experts need a positive intermediate size");
  }
  if (!m.layer_attention.empty() &&
      static_cast<std::int64_t>(m.layer_attention.size()) != m.num_layers)
    return pos.error("layer_types", "lists " + s(static_cast<std::int64_t>(m.layer_attention.size())) +
                                        " layers; the model has " + s(m.num_layers));
  for (LayerAttention k : m.layer_attention) {
    if (k == LayerAttention::kSlidingWindow && m.sliding_window <= 0)
      return pos.error("sliding_window", "sliding-window layers need a positive sliding_window");
    if (k == LayerAttention::kChunkedLocal && m.attention_chunk_size <= 0)
      return pos.error("attention_chunk_size",
                       "chunked-attention layers need a positive attention_chunk_size");
  }
  const bool linear = std::find(m.layer_attention.begin(), m.layer_attention.end(),
                                LayerAttention::kLinear) != m.layer_attention.end();
  if (linear && !m.linear_attention)
    return pos.error("linear_attention", "linear-attention layers need linear_attention's shape");
  if (m.linear_attention && m.linear_attention->num_value_heads % m.linear_attention->num_key_heads)
    return pos.error("linear_num_value_heads",
                     s(m.linear_attention->num_value_heads) + " value heads are not a multiple of " +
                         s(m.linear_attention->num_key_heads) + " key heads");
  if (m.indexer && (!m.mla || m.mla->q_lora_rank <= 0))
    return pos.error("index_n_heads", "the sparse-attention indexer needs MLA with q_lora_rank");
  if (a.rotary_dim > a.head_dim)
    return pos.error("rotary_dim", "rotary_dim " + s(a.rotary_dim) + " exceeds head_dim " +
                                       s(a.head_dim));
  if (m.mla && (a.sinks || a.output_gate || a.qk_norm_all_heads))
    return pos.error("attention", "sinks, output gates and all-head q/k norms are not modelled "
                                  "with MLA");
  bool needs_dense_mlp = !m.moe || m.moe->first_k_dense > 0 || !m.moe->dense_layers.empty();
  if (needs_dense_mlp && m.intermediate_size <= 0)
    return pos.error("intermediate_size", "dense MLP layers need a positive intermediate_size");
  if (m.mtp_layers > 0 && !m.moe)
    return pos.error("num_nextn_predict_layers",
                     "multi-token-prediction layers are only modelled for DeepSeek-style MoE "
                     "models");
  const Quantization& q = m.quant;
  if (q.method == QuantMethod::kNone) return std::nullopt;
  if ((q.block_rows > 0) != (q.block_cols > 0))
    return pos.error("weight_block_size", "needs two positive sizes [rows, cols]");
  if (q.block_rows > 0 && q.weight_dtype != DType::kFP8E4M3)
    return pos.error("weight_block_size", "block scales apply to fp8 weights only");
  if ((q.weight_dtype == DType::kINT4 || q.weight_dtype == DType::kINT8) && q.group_size == 0)
    return pos.error("group_size", "integer weights need a group size (-1 for per channel)");
  if (q.method == QuantMethod::kNvfp4) {
    for (const auto& t : layer_tensors(m, 0))
      if (t.quantized && t.cols % 16 != 0)
        return pos.error("group_size", "the " + s(t.cols) + " inputs of " + t.name +
                                           " are not whole blocks of 16 (NVFP4)");
    return std::nullopt;
  }
  if (q.method == QuantMethod::kMxfp4) {
    if (!m.moe) return pos.error("quant_method", "mxfp4 quantizes MoE experts; the model has none");
    if (m.hidden_size % 32 != 0 || m.moe->expert_intermediate_size % 32 != 0)
      return pos.error("quant_method", "mxfp4 needs expert inputs in whole blocks of 32");
    return std::nullopt;
  }
  if (q.weight_dtype == DType::kBF16 || q.weight_dtype == DType::kF16 ||
      q.weight_dtype == DType::kF32)
    return pos.error("weight_dtype", "quantization method '" +
                                         std::string(quant_method_name(q.method)) +
                                         "' needs fp8_e4m3, int8 or int4 weights");
  // A checkpoint vLLM cannot load on any split: a group that does not divide a quantized
  // layer's input, or output rows that do not fill the int32 packing (AWQ/GPTQ create_weights).
  // The same on each rank's shard is check_parallel's (simulator/parallel.h).
  const std::int64_t pack = int_pack_factor(q);
  for (std::int64_t l : {std::int64_t{0}, m.num_layers - 1}) {
    for (const auto& t : layer_tensors(m, l)) {
      if (!t.quantized) continue;
      if (q.group_size > 0 && t.cols % q.group_size != 0)
        return pos.error("group_size", "group_size " + s(q.group_size) + " does not divide the " +
                                           s(t.cols) + " inputs of " + t.name +
                                           " (vLLM refuses to load it)");
      if (pack > 1 && t.rows % pack != 0)
        return pos.error("bits", s(t.rows) + " output rows of " + t.name +
                                     " do not fill the int32 packing of " + s(pack) + " values");
    }
  }
  return std::nullopt;
}

}  // namespace tpp::model
