#include "planner/memory_report.h"

#include <fmt/format.h>

#include "planner/summary.h"
#include "planner/table.h"

namespace tpp::planner {
namespace {

const char* engine_name(sim::Engine e) { return e == sim::Engine::kV1 ? "v1" : "v0"; }

nlohmann::json stage_json(const sim::StageMemory& s, const sim::MemoryPlan& p) {
  nlohmann::json j;
  j["pp_rank"] = s.pp_rank;
  j["first_layer"] = s.first_layer;
  j["num_layers"] = s.num_layers;
  j["total_bytes"] = p.total_bytes;
  j["weights_bytes"] = s.weights_bytes;
  j["activation_peak_bytes"] = s.activation_peak_bytes;
  j["non_torch_bytes"] = s.non_torch_bytes;
  j["cuda_graph_bytes"] = s.cuda_graph_bytes;
  j["kv_cache_bytes"] = s.kv_cache_bytes;
  j["kv_bytes_per_token"] = s.kv_bytes_per_token;
  j["gpu_blocks"] = s.gpu_blocks;
  j["block_size"] = p.options.block_size;
  j["kv_cache_tokens"] = p.options.engine == sim::Engine::kV1
                             ? p.kv_groups.tokens(s.gpu_blocks)
                             : s.gpu_blocks * p.options.block_size;
  j["max_concurrency"] = sim::max_concurrency(s.gpu_blocks, p.options, p.kv_groups);
  if (p.options.engine == sim::Engine::kV0) j["cpu_blocks"] = s.cpu_blocks;
  return j;
}

std::string g2(std::int64_t bytes) { return fmt::format("{:.2f}", bytes / 1073741824.0); }

// " (all 20 longer than max_model_len 4096 tokens, prompt + output)", or "".
std::string rejection_text(const sim::ServingResult& r, const sim::ResolvedOptions& o) {
  if (r.rejected == 0) return "";
  std::string s = " (";
  if (r.rejected_over_max_model_len > 0)
    s += fmt::format("{} longer than max_model_len {} tokens, prompt + output",
                     r.rejected_over_max_model_len, o.max_model_len);
  if (r.rejected_over_kv_cache > 0)
    s += fmt::format("{}{} needing more KV blocks than the pool holds",
                     r.rejected_over_max_model_len > 0 ? "; " : "", r.rejected_over_kv_cache);
  if (r.rejected_over_batch_tokens > 0)
    s += fmt::format("{}{} prompts longer than max_num_tokens {} (no chunked prefill)",
                     r.rejected_over_max_model_len + r.rejected_over_kv_cache > 0 ? "; " : "",
                     r.rejected_over_batch_tokens, o.max_num_batched_tokens);
  return s + ")";
}

}  // namespace

nlohmann::json serving_json(const sim::ResolvedOptions& o) {
  nlohmann::json j = {{"engine", sim::framework_name(o.framework)},
          {"vllm_engine", engine_name(o.engine)},
          {"dtype", model::dtype_name(o.dtype)},
          {"gpu_memory_utilization", o.gpu_memory_utilization},
          {"max_model_len", o.max_model_len},
          {"block_size", o.block_size},
          {"kv_cache_dtype", model::kv_cache_dtype_name(o.kv_cache_dtype)},
          {"max_num_seqs", o.max_num_seqs},
          {"max_num_batched_tokens", o.max_num_batched_tokens},
          {"enforce_eager", o.enforce_eager},
          {"count_cuda_graphs", o.count_cuda_graphs},
          {"swap_space_gib", o.swap_space_gib},
          {"host_overhead", sim::host_overhead_name(o.host_overhead)},
          {"capacity_policy", sim::capacity_policy_name(o.reserve_whole_request)},
          {"operator_tables", o.operator_tables ? o.operator_tables->gpu + "/" + o.operator_tables->engine
                                                : std::string("off")},
          {"quantization", o.quantization ? nlohmann::json(model::quant_method_name(*o.quantization))
                                          : nlohmann::json(nullptr)}};
  if (o.framework == sim::Framework::kSglang) {
    j["mem_fraction_static"] = o.memory_fraction;
    j["max_prefill_tokens"] = o.max_prefill_tokens;
  }
  if (o.framework == sim::Framework::kTrtllm) j["kv_cache_free_gpu_memory_fraction"] = o.memory_fraction;
  j["chunked_prefill"] = o.chunked_prefill;
  return j;
}

nlohmann::json plan_json(const sim::MemoryPlan& p) {
  nlohmann::json j;
  j["engine"] = sim::framework_name(p.options.framework);
  j["tp"] = p.parallel.tp;
  j["pp"] = p.parallel.pp;
  j["dp"] = p.parallel.dp;
  j["expert_parallel"] = p.parallel.expert_parallel;
  j["fits"] = p.fits;
  j["why_not"] = p.why_not;
  const sim::StageMemory& b = p.stages[p.binding_stage];
  nlohmann::json m = stage_json(b, p);
  m.erase("pp_rank");
  m.erase("first_layer");
  m.erase("num_layers");
  m.erase("cpu_blocks");
  m["binding_pp_rank"] = b.pp_rank;
  m["budget_bytes"] = p.budget_bytes;
  m["gpu_blocks"] = p.gpu_blocks;
  m["kv_cache_tokens"] = p.kv_cache_tokens;
  m["max_concurrency"] = p.max_concurrency;
  m["max_model_len_that_fits"] = p.max_model_len_that_fits;
  if (p.options.engine == sim::Engine::kV0) m["cpu_blocks"] = b.cpu_blocks;
  if (p.options.engine == sim::Engine::kV1 && !p.kv_groups.uniform_full()) {
    // vLLM's KV-cache groups of a model whose layers attend differently.
    nlohmann::json groups = nlohmann::json::array();
    for (const auto& k : p.kv_groups.kinds)
      groups.push_back({{"attention", model::layer_attention_name(k.kind)},
                        {"window", k.window},
                        {"layers", k.layers},
                        {"groups", k.groups}});
    m["kv_cache_groups"] = groups;
    m["kv_group_size"] = p.kv_groups.group_size;
  }
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& s : p.stages) stages.push_back(stage_json(s, p));
  m["stages"] = stages;
  j["memory"] = m;
  j["notes"] = p.notes;
  return j;
}

std::string serving_text(const sim::ResolvedOptions& o) {
  if (o.framework == sim::Framework::kSglang)
    return fmt::format(
        "SGLang memory per GPU: mem_fraction_static {}, context_length {}, page_size {}, "
        "kv_cache_dtype {}, max_running_requests {}, chunked_prefill_size {}, max_prefill_tokens "
        "{}\n",
        o.memory_fraction > 0 ? fmt::format("{:.3f}", o.memory_fraction) : "SGLang's for each split",
        o.max_model_len, o.block_size, model::kv_cache_dtype_name(o.kv_cache_dtype),
        o.derive_max_num_seqs ? "from the token pool" : std::to_string(o.max_num_seqs),
        o.max_num_batched_tokens, o.max_prefill_tokens);
  if (o.framework == sim::Framework::kTrtllm)
    return fmt::format(
        "TensorRT-LLM memory per GPU: kv_cache_free_gpu_memory_fraction {:.2f}, max_seq_len {}, "
        "tokens_per_block {}, kv_cache_dtype {}, max_batch_size {}, max_num_tokens {}, chunked "
        "prefill off, guaranteed-no-evict\n",
        o.memory_fraction, o.max_model_len, o.block_size,
        model::kv_cache_dtype_name(o.kv_cache_dtype), o.max_num_seqs, o.max_num_batched_tokens);
  return fmt::format(
      "vLLM {} memory per GPU: gpu_memory_utilization {:.2f}, max_model_len {}, block_size {}, "
      "kv_cache_dtype {}, max_num_seqs {}, max_num_batched_tokens {}{}\n",
      o.engine == sim::Engine::kV1 ? "V1" : "V0", o.gpu_memory_utilization, o.max_model_len,
      o.block_size, model::kv_cache_dtype_name(o.kv_cache_dtype), o.max_num_seqs,
      o.max_num_batched_tokens,
      o.enforce_eager ? ", enforce_eager" : (o.count_cuda_graphs ? ", CUDA graphs counted" : ""));
}

std::string kernel_times_text(const sim::ResolvedOptions& o, const std::string& gpu) {
  if (const auto& t = o.operator_tables) {
    std::string dtypes;
    for (const auto& [d, g] : t->gemm) dtypes += (dtypes.empty() ? "" : ", ") + d;
    std::string more;
    if (!t->moe.empty()) more += ", fused MoE layers of the shapes it measured";
    if (t->mla_module) more += ", DeepSeek-V3-shaped MLA modules";
    else if (!t->mla_decode.empty()) more += ", MLA attention";
    if (!t->all_reduce.empty()) more += ", its TP all-reduce inside a node";
    return fmt::format("kernel times: {} {}'s kernels measured on {} (hardware_profiles/operators/"
                       "{}/{}.json, from {}) for GEMMs ({}), GQA/MHA attention{}; other shapes "
                       "and dtypes by the step model's own curves\n",
                       t->engine, t->engine_version, t->device, t->gpu, t->engine, t->from,
                       dtypes.empty() ? "no dtype" : dtypes, more);
  }
  return fmt::format("kernel times: the step model's own curves (docs/performance-model.md): "
                     "no measured operator table for {} under --host-overhead {} (or --operator-tables off)\n",
                     gpu, sim::host_overhead_name(o.host_overhead));
}

std::string memory_table(const std::vector<sim::MemoryPlan>& plans, bool stages) {
  Table t({"tp", "pp", "dp", "weights", "activ.", "non-torch", "graphs", "KV cache", "KV/token",
           "blocks", "tokens", "conc.", "fits"},
          {"", "", "", "GiB", "GiB", "GiB", "GiB", "GiB", "KiB", "", "", "x", ""});
  for (const auto& p : plans) {
    auto figures = [&](const sim::StageMemory& st, std::int64_t blocks, std::int64_t tokens) {
      return std::vector<std::string>{g2(st.weights_bytes), g2(st.activation_peak_bytes),
                                      g2(st.non_torch_bytes), g2(st.cuda_graph_bytes),
                                      g2(st.kv_cache_bytes),
                                      fmt::format("{:.1f}", st.kv_bytes_per_token / 1024.0),
                                      with_commas(blocks), with_commas(tokens)};
    };
    const auto& b = p.stages[p.binding_stage];
    std::vector<std::string> row = {std::to_string(p.parallel.tp), std::to_string(p.parallel.pp),
                                    std::to_string(p.parallel.dp)};
    for (auto& f : figures(b, p.gpu_blocks, p.kv_cache_tokens)) row.push_back(std::move(f));
    row.push_back(fmt::format("{:.2f}", p.max_concurrency));
    row.push_back(p.fits ? "yes" : "no: " + p.why_not);
    t.add(row);
    if (stages && p.stages.size() > 1)
      for (const auto& st : p.stages) {
        auto rest = figures(st, st.gpu_blocks,
                            p.options.engine == sim::Engine::kV1
                                ? p.kv_groups.tokens(st.gpu_blocks)
                                : st.gpu_blocks * p.options.block_size);
        rest.push_back("");
        rest.push_back(fmt::format("layers {}-{}{}", st.first_layer,
                                   st.first_layer + st.num_layers - 1,
                                   &st == &b ? ", fewest blocks" : ""));
        t.add_spanning(fmt::format("stage {}", st.pp_rank), 3, rest);
      }
    for (const auto& n : p.notes) t.add_text("      note: " + n);
  }
  return t.str();
}

}  // namespace tpp::planner

namespace tpp::planner {
nlohmann::json performance_json(const sim::ServingResult& r) { return sim::serving_json(r); }

std::string performance_table(const std::vector<sim::MemoryPlan>& plans,
                              const std::vector<std::optional<sim::ServingResult>>& perf,
                              bool stages) {
  Table t({"tp", "pp", "dp", "TTFT p50/p99", "TPOT p50/p99", "ITL p50", "E2E p50", "req/s",
           "out tok/s", "tok/s/GPU", "preempt"},
          {"", "", "", "ms", "ms", "ms", "s", "", "", "", ""}, false);
  for (std::size_t k = 0; k < plans.size() && k < perf.size(); ++k) {
    const auto& p = plans[k].parallel;
    if (!perf[k]) continue;
    const sim::ServingResult& r = *perf[k];
    t.add({std::to_string(p.tp), std::to_string(p.pp), std::to_string(p.dp),
           fmt::format("{:.1f} / {:.1f}", r.ttft_ms.p50, r.ttft_ms.p99),
           fmt::format("{:.2f} / {:.2f}", r.tpot_ms.p50, r.tpot_ms.p99),
           fmt::format("{:.1f}", r.itl_ms.p50), fmt::format("{:.2f}", r.e2e_ms.p50 / 1e3),
           fmt::format("{:.2f}", r.throughput_requests_per_s),
           fmt::format("{:.0f}", r.output_tokens_per_s),
           fmt::format("{:.0f}", r.output_tokens_per_s_per_gpu), std::to_string(r.preemptions)});
    if (!stages) continue;
    for (std::size_t st = 0; st < r.breakdown.size(); ++st) {
      const auto& b = r.breakdown[st];
      const double span = r.makespan_s > 0 ? r.makespan_s : 1;
      auto part = [&](const char* name, double sec) {
        return fmt::format("{} {:.2f} s ({:.0f}%)", name, sec, 100 * sec / span);
      };
      t.add_text(fmt::format("      stage {}: {} + {} + {} + {} + {} + {} = {:.2f} s", st,
                             part("compute", b.compute), part("TP comm", b.tp_comm),
                             part("EP comm", b.ep_comm), part("PP send", b.pp_comm),
                             part("host", b.host), part("idle", b.bubble), r.makespan_s));
    }
    t.add_text(fmt::format("      {} of {} requests finished, {} rejected{}; KV cache {:.0f}% used "
                           "on average, {:.0f}% at most; {} steps",
                           r.finished, r.requests, r.rejected, rejection_text(r, plans[k].options),
                           100 * r.kv_utilization_mean, 100 * r.kv_utilization_max, r.steps));
    if (r.load.applies)
      t.add_text(fmt::format("      load: {:.2f} requests/s offered, {:.2f} served over the second "
                             "half of the arrivals; backlog {:.0f} then {:.0f} requests: {}",
                             r.load.offered_requests_per_s, r.load.served_requests_per_s,
                             r.load.backlog_mid, r.load.backlog_end,
                             r.load.sustained ? "keeps up" : "does NOT keep up"));
  }
  return t.str();
}

}  // namespace tpp::planner
