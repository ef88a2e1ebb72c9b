#include "simulator/parallel.h"

#include <algorithm>
#include <numeric>

namespace tpp::sim {
namespace {

std::string s(std::int64_t v) { return std::to_string(v); }

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace

std::int64_t padded_vocab(std::int64_t vocab) { return ceil_div(vocab, 64) * 64; }

Shard shard_of(const model::TensorSpec& t, const model::Model& m, const ParallelConfig& p) {
  using model::Split;
  switch (t.split) {
    case Split::kReplicated: return {t.rows, t.cols, t.count};
    case Split::kColumn: return {t.rows / p.tp, t.cols, t.count};
    case Split::kKvHeads: {
      const std::int64_t kv = m.attention.num_kv_heads, d = t.rows / kv;
      return {d * std::max<std::int64_t>(1, kv / p.tp), t.cols, t.count};
    }
    case Split::kRow: return {t.rows, t.cols / p.tp, t.count};
    case Split::kVocab: return {padded_vocab(t.rows) / p.tp, t.cols, t.count};
    case Split::kExpertColumn:
      if (p.expert_parallel) return {t.rows, t.cols, ceil_div(t.count, p.ep())};
      return {t.rows / p.tp, t.cols, t.count};
    case Split::kExpertRow:
      if (p.expert_parallel) return {t.rows, t.cols, ceil_div(t.count, p.ep())};
      return {t.rows, t.cols / p.tp, t.count};
  }
  return {t.rows, t.cols, t.count};
}

std::vector<std::int64_t> pp_partition(std::int64_t num_layers, std::int64_t pp,
                                       const std::vector<std::int64_t>& override_partition) {
  if (!override_partition.empty()) return override_partition;
  std::vector<std::int64_t> parts(static_cast<std::size_t>(pp), num_layers / pp);
  const std::int64_t remaining = num_layers % pp;
  for (std::int64_t i = 2; i < remaining + 2; ++i) parts[parts.size() - i] += 1;
  return parts;
}

std::optional<std::string> check_partition(const model::Model& m,
                                           const std::vector<std::int64_t>& partition,
                                           std::int64_t pp) {
  if (static_cast<std::int64_t>(partition.size()) != pp)
    return "the PP layer partition has " + s(static_cast<std::int64_t>(partition.size())) +
           " stages but pp=" + s(pp);
  for (std::int64_t n : partition) {  // bounded first: the sum cannot overflow
    if (n < 1) return "every PP stage needs at least one layer";
    if (n > m.num_layers)
      return "a PP stage of " + s(n) + " layers exceeds the model's " + s(m.num_layers);
  }
  std::int64_t sum = std::accumulate(partition.begin(), partition.end(), std::int64_t{0});
  if (sum != m.num_layers)
    return "the PP layer partition adds up to " + s(sum) + " layers, the model has " +
           s(m.num_layers);
  return std::nullopt;
}

std::optional<std::string> check_parallel(const model::Model& m, const ParallelConfig& p) {
  if (p.tp < 1 || p.pp < 1 || p.dp < 1)
    return "tp, pp and dp must be at least 1 (got tp=" + s(p.tp) + ", pp=" + s(p.pp) +
           ", dp=" + s(p.dp) + ")";
  if (p.tp > kMaxParallel || p.pp > kMaxParallel || p.dp > kMaxParallel)
    return "tp, pp and dp must be at most " + s(kMaxParallel) + " (got tp=" + s(p.tp) +
           ", pp=" + s(p.pp) + ", dp=" + s(p.dp) + ")";
  const auto& a = m.attention;
  if (a.num_heads % p.tp != 0)
    return s(a.num_heads) + " attention heads are not divisible by tp=" + s(p.tp);
  if (!m.mla) {
    if (p.tp >= a.num_kv_heads && p.tp % a.num_kv_heads != 0)
      return "tp=" + s(p.tp) + " is not a multiple of the " + s(a.num_kv_heads) + " KV heads";
    if (p.tp < a.num_kv_heads && a.num_kv_heads % p.tp != 0)
      return s(a.num_kv_heads) + " KV heads are not divisible by tp=" + s(p.tp);
  }
  if (p.pp > m.num_layers)
    return "pp=" + s(p.pp) + " exceeds the " + s(m.num_layers) + " layers";
  if (!p.pp_layer_partition.empty())
    if (auto why = check_partition(m, p.pp_layer_partition, p.pp)) return why;
  const bool has_dense = !m.moe || m.moe->first_k_dense > 0 || !m.moe->dense_layers.empty();
  if (has_dense && m.intermediate_size % p.tp != 0)
    return "intermediate_size " + s(m.intermediate_size) + " is not divisible by tp=" + s(p.tp);
  if (m.moe && !p.expert_parallel && m.moe->expert_intermediate_size % p.tp != 0)
    return "moe_intermediate_size " + s(m.moe->expert_intermediate_size) +
           " is not divisible by tp=" + s(p.tp);
  if (m.moe && m.moe->num_shared_experts > 0 && m.moe->shared_intermediate_size % p.tp != 0)
    return "the shared experts' width " + s(m.moe->shared_intermediate_size) +
           " is not divisible by tp=" + s(p.tp);
  if (padded_vocab(m.vocab_size) % p.tp != 0)
    return "the padded vocabulary " + s(padded_vocab(m.vocab_size)) +
           " is not divisible by tp=" + s(p.tp);
  // Quantized shards must line up with the quantization blocks or groups (vLLM's fp8
  // validate_block_quant_shapes, and the AWQ/GPTQ input-size checks), once split.
  const auto& q = m.quant;
  if (p.tp > 1 && q.method != model::QuantMethod::kNone) {
    const std::int64_t layer = m.num_layers - 1;  // a MoE layer when there are any
    for (std::int64_t l : {std::int64_t{0}, layer}) {
      for (const auto& t : model::layer_tensors(m, l)) {
        if (!t.quantized) continue;
        Shard sh = shard_of(t, m, p);
        bool split_rows = sh.rows != t.rows, split_cols = sh.cols != t.cols;
        if (q.block_rows > 0 && split_rows && sh.rows % q.block_rows != 0)
          return t.name + ": " + s(sh.rows) + " output rows per rank at tp=" + s(p.tp) +
                 " are not a multiple of the fp8 block " + s(q.block_rows);
        if (q.block_cols > 0 && split_cols && sh.cols % q.block_cols != 0)
          return t.name + ": " + s(sh.cols) + " input columns per rank at tp=" + s(p.tp) +
                 " are not a multiple of the fp8 block " + s(q.block_cols);
        // vLLM's AWQ/GPTQ create_weights (and Marlin's, which falls back to them): the input
        // per partition a multiple of the group, the output a multiple of the int32 packing.
        if (q.group_size > 0 && sh.cols % q.group_size != 0)
          return t.name + ": " + s(sh.cols) + " input columns per rank at tp=" + s(p.tp) +
                 " are not a multiple of the quantization group " + s(q.group_size);
        const std::int64_t pack = model::int_pack_factor(q);
        if (pack > 1 && split_rows && sh.rows % pack != 0)
          return t.name + ": " + s(sh.rows) + " output rows per rank at tp=" + s(p.tp) +
                 " are not a multiple of the " + s(pack) + " values packed in an int32";
      }
    }
  }
  return std::nullopt;
}

}  // namespace tpp::sim
