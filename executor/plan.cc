#include "executor/plan.h"

#include "common/doc.h"
#include "common/fields.h"
#include "model/load.h"

namespace tpp::exec {
namespace {

// A section of the plan as a document of its own: same file, same positions.
Doc section(const Doc& plan, const Node& node) { return Doc{plan.file, node}; }

std::optional<Error> read_serving(const Doc& doc, const Node& node, sim::ServingOptions& o) {
  Fields f(doc, node, "serving");
  if (f.has("engine"))
    o.framework = sim::parse_framework(f.choice("engine", sim::framework_names())).value_or(sim::Framework::kVllm);
  if (f.has("mem_fraction_static")) o.memory_fraction = f.number("mem_fraction_static", 1e-6, 1);
  if (f.has("kv_cache_free_gpu_memory_fraction"))
    o.memory_fraction = f.number("kv_cache_free_gpu_memory_fraction", 1e-6, 1);
  f.boolean_or("chunked_prefill", true);           // the engine's (resolve_options)
  f.integer_or("max_prefill_tokens", 0, 0, sim::kMaxBatchedTokens);  // likewise
  const std::string engine = f.choice("vllm_engine", {"v1", "v0"});
  o.engine = engine == "v0" ? sim::Engine::kV0 : sim::Engine::kV1;
  o.dtype = model::parse_dtype(f.choice("dtype", {"f32", "bf16", "fp16"}));
  o.gpu_memory_utilization = f.number("gpu_memory_utilization", 1e-6, 1);
  o.max_model_len = f.integer("max_model_len", 1, model::kMaxPositions);
  o.block_size = f.integer("block_size", 1, 128);
  o.kv_cache_dtype = model::parse_kv_cache_dtype(
      f.choice("kv_cache_dtype", {"auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "nvfp4"}));
  if (o.kv_cache_dtype == model::KvCacheDType::kNvfp4)
    f.fail("kv_cache_dtype", "an FP4 KV cache (nvfp4) is planned, not run: tpp-run keeps bfloat16, float16 or fp8 caches");
  o.max_num_seqs = f.integer("max_num_seqs", 1, sim::kMaxNumSeqs);
  o.max_num_batched_tokens = f.integer("max_num_batched_tokens", 1, sim::kMaxBatchedTokens);
  o.enforce_eager = f.boolean_or("enforce_eager", false);
  o.count_cuda_graphs = f.boolean_or("count_cuda_graphs", false);
  o.swap_space_gib = f.number_or("swap_space_gib", 4, 0, sim::kMaxSwapSpaceGiB);
  if (f.has("host_overhead"))
    o.host_overhead = sim::parse_host_overhead(f.choice("host_overhead", sim::host_overhead_names()))
                          .value_or(sim::HostOverhead::kVllm);
  if (f.has("capacity_policy"))
    o.reserve_whole_request = f.choice("capacity_policy", sim::capacity_policy_names()) ==
                              sim::capacity_policy_name(true);
  // "off", or the "<GPU>/<engine>" table the plan was made with (looked up again by name).
  const std::string tables = f.string_or("operator_tables", "off");
  o.operator_tables = tables != "off";
  if (const auto slash = tables.rfind('/'); o.operator_tables && slash != std::string::npos)
    o.operator_tables_engine = tables.substr(slash + 1);
  const std::string q = f.string_or("quantization", "");
  if (!q.empty()) {
    const std::vector<std::string> known = {"fp8", "awq", "gptq", "compressed-tensors"};
    f.choice("quantization", known);
    o.quantization = q == "fp8"    ? model::QuantMethod::kFp8
                     : q == "awq"  ? model::QuantMethod::kAwq
                     : q == "gptq" ? model::QuantMethod::kGptq
                                   : model::QuantMethod::kCompressedTensors;
  }
  return f.finish();
}

std::optional<Error> read_split(const Doc& doc, const Node& node, sim::ParallelConfig& p) {
  Fields f(doc, node, "split");
  p.tp = f.integer("tp", 1, sim::kMaxParallel);
  p.pp = f.integer("pp", 1, sim::kMaxParallel);
  p.dp = f.integer("dp", 1, sim::kMaxParallel);
  p.expert_parallel = f.boolean_or("expert_parallel", false);
  p.pp_layer_partition = f.int_list_or("pp_layer_partition", 1, model::kMaxLayers);
  return f.finish();
}

std::optional<Error> read_slo(const Doc& doc, const Node& node, sim::Slo& s) {
  Fields f(doc, node, "slo");
  s.ttft_ms = f.number("ttft_ms", 0, 1e9);
  s.tpot_ms = f.number("tpot_ms", 0, 1e9);
  f.string_or("source", "");
  return f.finish();
}

}  // namespace

Expected<Plan> read_plan(const std::string& path) {
  auto doc = load_json_file(path);
  if (!doc) return doc.error();
  Plan plan;
  plan.file = path;
  Fields f(*doc, doc->root, "plan", Strictness::kLenient);
  f.allow({"provenance", "launch"});
  const Node* version = f.raw("tpp_plan_version");
  if (f.ok() && !version) f.missing("tpp_plan_version");
  if (f.ok() && (version->kind != Node::Kind::Int || version->i != kSupportedPlanVersion))
    f.fail("tpp_plan_version",
           "plan version " + clip(version->text) + " is not supported: this tpp-run reads "
           "version " + std::to_string(kSupportedPlanVersion) +
           " (write the plan again with this tpp-plan)");
  const Node* m = f.map_or_null("model");
  const Node* c = f.map_or_null("cluster");
  const Node* s = f.map_or_null("serving");
  const Node* sp = f.map_or_null("split");
  const Node* w = f.map_or_null("workload");
  const Node* slo = f.map_or_null("slo");
  const Node* pred = f.map_or_null("predicted");
  for (auto [key, node] : {std::pair{"model", m}, {"cluster", c}, {"serving", s}, {"split", sp},
                           {"workload", w}, {"slo", slo}, {"predicted", pred}})
    if (f.ok() && !node) f.missing(key);
  if (auto e = f.finish()) return *e;

  auto model = model::model_from_yaml(section(*doc, *m));
  if (!model) return model.error();
  plan.model = *model;
  auto cluster = hw::cluster_from_doc(section(*doc, *c));
  if (!cluster) return cluster.error();
  plan.cluster = *cluster;
  if (auto e = read_serving(*doc, *s, plan.serving)) return *e;
  if (auto e = read_split(*doc, *sp, plan.split)) return *e;
  auto workload = sim::workload_from_doc(section(*doc, *w));
  if (!workload) return workload.error();
  plan.workload = *workload;
  if (auto e = read_slo(*doc, *slo, plan.slo)) return *e;
  // The prediction is kept as written, to be laid beside the measurement.
  auto text = read_text_file(path, "JSON");
  if (!text) return text.error();
  plan.predicted = nlohmann::json::parse(*text, nullptr, false)["predicted"];
  return plan;
}

std::string executor_unsupported(const model::Model& m) {
  const auto& a = m.attention;
  if (m.windowed_attention()) return "sliding-window, chunked or linear attention layers";
  if (a.sinks) return "attention sinks";
  if (a.output_gate) return "gated attention output";
  if (a.rotary_dim > 0 && a.rotary_dim != a.head_dim) return "partial rotary embeddings";
  if (a.qk_norm_all_heads) return "q/k norms over all heads";
  if (m.sandwich_norms) return "pre/post-feedforward norms (Gemma)";
  if (m.moe && m.moe->expert_bias) return "expert biases";
  if (m.quant.method == model::QuantMethod::kMxfp4) return "MXFP4 experts";
  if (m.quant.method == model::QuantMethod::kNvfp4) return "NVFP4 weights";
  if (m.vision) return "an image encoder";
  return "";
}

}  // namespace tpp::exec
