#include "planner/summary.h"

#include <fmt/format.h>

#include "model/tensors.h"

namespace tpp::planner {

using model::Component;

std::string with_commas(std::int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (std::size_t k = 0; k < digits.size(); ++k) {
    if (k > 0 && (digits.size() - k) % 3 == 0) out += ',';
    out += digits[k];
  }
  return v < 0 ? "-" + out : out;
}

std::string gib(double bytes) { return fmt::format("{:.2f} GiB", bytes / 1073741824.0); }

namespace {

std::string describe(const model::Model& m) {
  std::string s = fmt::format("{} layers, hidden {}, {} attention", m.num_layers, m.hidden_size,
                              model::attention_kind_name(m.attention_kind()));
  if (!m.mla)
    s += fmt::format(" ({} heads, {} KV heads, head_dim {})", m.attention.num_heads,
                     m.attention.num_kv_heads, m.attention.head_dim);
  else
    s += fmt::format(" ({} heads, kv_lora_rank {})", m.attention.num_heads, m.mla->kv_lora_rank);
  if (m.moe)
    s += fmt::format(", MoE {} experts top-{}{} on {} of {} layers", m.moe->num_experts,
                     m.moe->experts_per_token,
                     m.moe->num_shared_experts ? fmt::format(" + {} shared",
                                                             m.moe->num_shared_experts)
                                               : "",
                     m.num_moe_layers(), m.num_layers);
  if (m.windowed_attention()) {
    // How many layers attend each way: "sliding window 128 on 12 of 24 layers".
    std::int64_t sliding = 0, chunked = 0, linear = 0;
    for (auto k : m.layer_attention) {
      sliding += k == model::LayerAttention::kSlidingWindow;
      chunked += k == model::LayerAttention::kChunkedLocal;
      linear += k == model::LayerAttention::kLinear;
    }
    if (sliding)
      s += fmt::format(", sliding window {} on {} of {} layers", m.sliding_window, sliding,
                       m.num_layers);
    if (chunked)
      s += fmt::format(", chunked attention ({}) on {} of {} layers", m.attention_chunk_size,
                       chunked, m.num_layers);
    if (linear)
      s += fmt::format(", linear attention (gated delta net) on {} of {} layers", linear,
                       m.num_layers);
  }
  if (m.indexer) s += fmt::format(", sparse attention (top {} tokens)", m.indexer->topk);
  if (m.vision) s += ", with its image encoder";
  s += fmt::format(", vocab {}", m.vocab_size);
  return s;
}

std::string weights_desc(const model::Model& m) {
  const auto& q = m.quant;
  if (q.method == model::QuantMethod::kNone) return model::dtype_name(m.dtype);
  std::string s = fmt::format("{} ({}", model::dtype_name(q.weight_dtype),
                              model::quant_method_name(q.method));
  if (q.block_rows > 0) s += fmt::format(", {}x{} block scales", q.block_rows, q.block_cols);
  if (q.group_size > 0) s += fmt::format(", group {}", q.group_size);
  if (q.group_size == -1) s += ", per-channel scales";
  return s + ")";
}

}  // namespace

nlohmann::json model_json(const model::Model& m) {
  auto params = model::param_totals(m, false);
  auto bytes = model::weight_byte_totals(m, false);
  nlohmann::json j;
  j["name"] = m.name;
  j["source"] = m.source;
  j["architecture"] = m.architecture;
  j["params_total"] = params.total;
  j["weight_bytes"] = bytes.total;
  nlohmann::json pc = nlohmann::json::object(), bc = nlohmann::json::object();
  for (int c = 0; c < model::kNumComponents; ++c) {
    if (c == static_cast<int>(Component::kMtp)) continue;
    pc[model::component_name(static_cast<Component>(c))] = params.by_component[c];
    bc[model::component_name(static_cast<Component>(c))] = bytes.by_component[c];
  }
  j["params_by_component"] = pc;
  j["weight_bytes_by_component"] = bc;
  j["mtp_layers"] = m.mtp_layers;
  j["params_total_with_mtp"] = model::param_totals(m, true).total;
  j["weight_bytes_with_mtp"] = model::weight_byte_totals(m, true).total;
  j["hidden_size"] = m.hidden_size;
  j["num_layers"] = m.num_layers;
  j["num_moe_layers"] = m.num_moe_layers();
  j["vocab_size"] = m.vocab_size;
  j["max_position_embeddings"] = m.max_position_embeddings;
  j["attention"] = {{"kind", model::attention_kind_name(m.attention_kind())},
                    {"num_heads", m.attention.num_heads},
                    {"num_kv_heads", m.attention.num_kv_heads},
                    {"head_dim", m.attention.head_dim}};
  if (m.windowed_attention()) {
    nlohmann::json kinds = nlohmann::json::object();
    for (auto k : m.layer_attention) {
      auto& n = kinds[model::layer_attention_name(k)];
      n = n.is_null() ? 1 : n.get<int>() + 1;
    }
    j["attention"]["layers_by_kind"] = kinds;
    if (m.sliding_window > 0) j["attention"]["sliding_window"] = m.sliding_window;
    if (m.attention_chunk_size > 0) j["attention"]["attention_chunk_size"] = m.attention_chunk_size;
  }
  if (m.indexer) j["attention"]["index_topk"] = m.indexer->topk;
  if (m.moe)
    j["moe"] = {{"num_experts", m.moe->num_experts},
                {"experts_per_token", m.moe->experts_per_token},
                {"num_shared_experts", m.moe->num_shared_experts}};
  j["dtype"] = model::dtype_name(m.dtype);
  j["quantization"] = model::quant_method_name(m.quant.method);
  j["weight_dtype"] = model::dtype_name(m.quant.weight_dtype);
  j["kv_cache_dtype"] = model::kv_cache_dtype_name(m.kv_cache_dtype);
  return j;
}

nlohmann::json cluster_json(const hw::Cluster& c) {
  const hw::Gpu& g = c.gpu;
  nlohmann::json j;
  j["name"] = c.name;
  j["source"] = c.file;
  j["nodes"] = c.nodes;
  j["gpus_per_node"] = c.gpus_per_node;
  j["gpus_per_host"] = c.host_gpus();
  if (c.gpu.vendor != hw::Vendor::kNvidia) j["vendor"] = hw::vendor_name(c.gpu.vendor);
  j["total_gpus"] = c.total_gpus();
  auto fig = [](const hw::Figure& f) {
    return nlohmann::json{{"value", f.value}, {"source", f.source}};
  };
  j["gpu"] = {{"name", g.name},
              {"memory_bytes", g.memory_driver_bytes()},
              {"memory_marketed_GB", g.memory_marketed_GB.value},
              {"memory_driver_GiB", fig(g.memory_driver_GiB)},
              {"hbm_bandwidth_GBps", fig(g.hbm_bandwidth_GBps)},
              {"bf16_dense_tflops", fig(g.bf16_dense_tflops)},
              {"fp8_dense_tflops", fig(g.fp8_dense_tflops)},
              {"has_fp8", g.has_fp8}};
  j["memory_bytes_total"] = g.memory_driver_bytes() * c.total_gpus();
  j["intra_node"] = {{"kind", hw::link_kind_name(c.intra_node.kind)},
                     {"bandwidth_GBps", fig(c.intra_node.bandwidth_GBps)},
                     {"latency_us", fig(c.intra_node.latency_us)}};
  if (c.inter_node)
    j["inter_node"] = {{"kind", c.inter_node->kind},
                       {"nics_per_node", c.inter_node->nics_per_node},
                       {"nic_bandwidth_Gbps", fig(c.inter_node->nic_bandwidth_Gbps)},
                       {"node_bandwidth_GBps", c.inter_node->node_bandwidth_GBps()},
                       {"latency_us", fig(c.inter_node->latency_us)}};
  else
    j["inter_node"] = nullptr;
  if (c.price_per_gpu_hour) j["price_per_gpu_hour"] = fig(*c.price_per_gpu_hour);
  j["collective_tables"] = c.collectives.size();
  return j;
}

std::string model_text(const model::Model& m) {
  auto params = model::param_totals(m, false);
  auto bytes = model::weight_byte_totals(m, false);
  std::string s = fmt::format("model    {}  ({}, read as {})\n", m.name, m.source, m.architecture);
  s += fmt::format("         {}\n", describe(m));
  s += fmt::format("         weights {}, KV cache {} by default\n", weights_desc(m),
                   model::kv_cache_dtype_name(m.kv_cache_dtype));
  s += fmt::format("  {:<16}{:>20}{:>16}\n", "component", "parameters", "weight bytes");
  for (int c = 0; c < model::kNumComponents; ++c) {
    if (c == static_cast<int>(Component::kMtp) || params.by_component[c] == 0) continue;
    s += fmt::format("  {:<16}{:>20}{:>16}\n", model::component_name(static_cast<Component>(c)),
                     with_commas(params.by_component[c]), gib(bytes.by_component[c]));
  }
  s += fmt::format("  {:<16}{:>20}{:>16}\n", "total", with_commas(params.total),
                   gib(bytes.total));
  if (m.mtp_layers > 0) {
    auto p2 = model::param_totals(m, true);
    auto b2 = model::weight_byte_totals(m, true);
    s += fmt::format("  {:<16}{:>20}{:>16}  (multi-token prediction; vLLM loads it only for "
                     "speculative decoding)\n",
                     "+ mtp", with_commas(p2.total - params.total), gib(b2.total - bytes.total));
  }
  return s;
}

std::string cluster_text(const hw::Cluster& c) {
  const hw::Gpu& g = c.gpu;
  std::string s = fmt::format("cluster  {}  ({})\n", c.name, c.file);
  s += fmt::format("         {} nodes x {} {} = {} GPUs{}\n", c.nodes, c.gpus_per_node, g.name,
                   c.total_gpus(),
                   c.host_gpus() != c.gpus_per_node
                       ? fmt::format(" ({} hosts of {}, one NVLink domain a node)", c.hosts(), c.host_gpus())
                       : std::string());
  s += fmt::format("  GPU memory   {:g} GB marketed, {:.2f} GiB as the driver reports it; {} in "
                   "all\n",
                   g.memory_marketed_GB.value, g.memory_driver_GiB.value,
                   gib(static_cast<double>(g.memory_driver_bytes()) * c.total_gpus()));
  s += fmt::format("  GPU compute  {:g} TFLOP/s bf16 dense, {}, {:g} GB/s HBM\n",
                   g.bf16_dense_tflops.value,
                   (g.has_fp8 ? fmt::format("{:g} TFLOP/s fp8", g.fp8_dense_tflops.value)
                              : std::string("no fp8")) +
                       (g.has_fp4() ? fmt::format(", {:g} TFLOP/s fp4", g.fp4_dense_tflops.value)
                                    : std::string()),
                   g.hbm_bandwidth_GBps.value);
  s += fmt::format("  intra-node   {}, {:g} GB/s per GPU per direction, {:g} us\n",
                   hw::link_kind_name(c.intra_node.kind), c.intra_node.bandwidth_GBps.value,
                   c.intra_node.latency_us.value);
  if (c.inter_node)
    s += fmt::format("  inter-node   {}, {} x {:g} Gb/s per node ({:g} GB/s), {:g} us\n",
                     c.inter_node->kind, c.inter_node->nics_per_node,
                     c.inter_node->nic_bandwidth_Gbps.value, c.inter_node->node_bandwidth_GBps(),
                     c.inter_node->latency_us.value);
  if (c.price_per_gpu_hour)
    s += fmt::format("  price        {:g} per GPU-hour\n", c.price_per_gpu_hour->value);
  if (!c.collectives.empty())
    s += fmt::format("  measured     {} collective tables\n", c.collectives.size());
  return s;
}

}  // namespace tpp::planner
