#include "planner/memory_report.h"

#include <fmt/format.h>

#include "planner/summary.h"

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
  j["kv_cache_tokens"] = s.gpu_blocks * p.options.block_size;
  j["max_concurrency"] = sim::max_concurrency(s.gpu_blocks, p.options);
  if (p.options.engine == sim::Engine::kV0) j["cpu_blocks"] = s.cpu_blocks;
  return j;
}

std::string g2(std::int64_t bytes) { return fmt::format("{:.2f}", bytes / 1073741824.0); }

}  // namespace

nlohmann::json serving_json(const sim::ResolvedOptions& o) {
  return {{"vllm_engine", engine_name(o.engine)},
          {"gpu_memory_utilization", o.gpu_memory_utilization},
          {"max_model_len", o.max_model_len},
          {"block_size", o.block_size},
          {"kv_cache_dtype", model::kv_cache_dtype_name(o.kv_cache_dtype)},
          {"max_num_seqs", o.max_num_seqs},
          {"max_num_batched_tokens", o.max_num_batched_tokens},
          {"enforce_eager", o.enforce_eager},
          {"count_cuda_graphs", o.count_cuda_graphs}};
}

nlohmann::json plan_json(const sim::MemoryPlan& p) {
  nlohmann::json j;
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
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& s : p.stages) stages.push_back(stage_json(s, p));
  m["stages"] = stages;
  j["memory"] = m;
  j["notes"] = p.notes;
  return j;
}

std::string serving_text(const sim::ResolvedOptions& o) {
  return fmt::format(
      "vLLM {} memory per GPU: gpu_memory_utilization {:.2f}, max_model_len {}, block_size {}, "
      "kv_cache_dtype {}, max_num_seqs {}, max_num_batched_tokens {}{}\n",
      o.engine == sim::Engine::kV1 ? "V1" : "V0", o.gpu_memory_utilization, o.max_model_len,
      o.block_size, model::kv_cache_dtype_name(o.kv_cache_dtype), o.max_num_seqs,
      o.max_num_batched_tokens,
      o.enforce_eager ? ", enforce_eager" : (o.count_cuda_graphs ? ", CUDA graphs counted" : ""));
}

std::string memory_table(const std::vector<sim::MemoryPlan>& plans, bool stages) {
  std::string s = fmt::format("{:>4}{:>4}{:>5}  {:>8}{:>8}{:>10}{:>8}{:>10}{:>10}{:>11}{:>12}{:>9}  {}\n",
                              "tp", "pp", "dp", "weights", "activ.", "non-torch", "graphs",
                              "KV cache", "KV/token", "blocks", "tokens", "conc.", "fits");
  s += fmt::format("{:>4}{:>4}{:>5}  {:>8}{:>8}{:>10}{:>8}{:>10}{:>10}{:>11}{:>12}{:>9}\n", "", "",
                   "", "GiB", "GiB", "GiB", "GiB", "GiB", "KiB", "", "", "x");
  for (const auto& p : plans) {
    auto row = [&](const sim::StageMemory& st, const std::string& lead, std::int64_t blocks,
                   std::int64_t tokens, const std::string& conc, const std::string& tail) {
      return fmt::format("{}  {:>8}{:>8}{:>10}{:>8}{:>10}{:>10.1f}{:>11}{:>12}{:>9}  {}\n", lead,
                         g2(st.weights_bytes), g2(st.activation_peak_bytes),
                         g2(st.non_torch_bytes), g2(st.cuda_graph_bytes), g2(st.kv_cache_bytes),
                         st.kv_bytes_per_token / 1024.0, with_commas(blocks),
                         with_commas(tokens), conc, tail);
    };
    const auto& b = p.stages[p.binding_stage];
    s += row(b, fmt::format("{:>4}{:>4}{:>5}", p.parallel.tp, p.parallel.pp, p.parallel.dp),
             p.gpu_blocks, p.kv_cache_tokens, fmt::format("{:.2f}", p.max_concurrency),
             p.fits ? "yes" : "no: " + p.why_not);
    if (stages && p.stages.size() > 1)
      for (const auto& st : p.stages)
        s += row(st, fmt::format("{:>13}", fmt::format("stage {}", st.pp_rank)), st.gpu_blocks,
                 st.gpu_blocks * p.options.block_size, "",
                 fmt::format("layers {}-{}{}", st.first_layer,
                             st.first_layer + st.num_layers - 1,
                             &st == &b ? ", fewest blocks" : ""));
    for (const auto& n : p.notes) s += "      note: " + n + "\n";
  }
  return s;
}

}  // namespace tpp::planner

namespace tpp::planner {
namespace {

nlohmann::json pct(const sim::Percentiles& p) {
  return {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"mean", p.mean}};
}

}  // namespace

nlohmann::json performance_json(const sim::ServingResult& r) {
  nlohmann::json j;
  j["throughput_requests_per_s"] = r.throughput_requests_per_s;
  j["output_tokens_per_s"] = r.output_tokens_per_s;
  j["total_tokens_per_s"] = r.total_tokens_per_s;
  j["output_tokens_per_s_per_gpu"] = r.output_tokens_per_s_per_gpu;
  j["total_tokens_per_s_per_gpu"] = r.total_tokens_per_s_per_gpu;
  j["goodput_requests_per_s"] = r.goodput_requests_per_s;
  j["ttft_ms"] = pct(r.ttft_ms);
  j["tpot_ms"] = pct(r.tpot_ms);
  j["itl_ms"] = pct(r.itl_ms);
  j["e2e_ms"] = pct(r.e2e_ms);
  j["requests"] = r.requests;
  j["finished"] = r.finished;
  j["rejected"] = r.rejected;
  j["preemptions"] = r.preemptions;
  j["steps"] = r.steps;
  j["makespan_s"] = r.makespan_s;
  j["kv_utilization_mean"] = r.kv_utilization_mean;
  j["kv_utilization_max"] = r.kv_utilization_max;
  nlohmann::json b = nlohmann::json::array();
  for (std::size_t s = 0; s < r.breakdown.size(); ++s) {
    const auto& t = r.breakdown[s];
    b.push_back({{"stage", s}, {"compute", t.compute}, {"tp_comm", t.tp_comm},
                 {"ep_comm", t.ep_comm}, {"pp_comm", t.pp_comm}, {"bubble", t.bubble}});
  }
  j["breakdown"] = b;
  return j;
}

std::string performance_table(const std::vector<sim::MemoryPlan>& plans,
                              const std::vector<std::optional<sim::ServingResult>>& perf,
                              bool stages) {
  std::string s = fmt::format("{:>4}{:>4}{:>5}  {:>17}{:>17}{:>9}{:>10}{:>9}{:>11}{:>10}{:>8}\n",
                              "tp", "pp", "dp", "TTFT p50/p99", "TPOT p50/p99", "ITL p50",
                              "E2E p50", "req/s", "out tok/s", "tok/s/GPU", "preempt");
  s += fmt::format("{:>4}{:>4}{:>5}  {:>17}{:>17}{:>9}{:>10}\n", "", "", "", "ms", "ms", "ms", "s");
  for (std::size_t k = 0; k < plans.size() && k < perf.size(); ++k) {
    const auto& p = plans[k].parallel;
    if (!perf[k]) continue;
    const sim::ServingResult& r = *perf[k];
    s += fmt::format("{:>4}{:>4}{:>5}  {:>17}{:>17}{:>9.1f}{:>10.2f}{:>9.2f}{:>11.0f}{:>10.0f}{:>8}\n",
                     p.tp, p.pp, p.dp,
                     fmt::format("{:.1f} / {:.1f}", r.ttft_ms.p50, r.ttft_ms.p99),
                     fmt::format("{:.2f} / {:.2f}", r.tpot_ms.p50, r.tpot_ms.p99), r.itl_ms.p50,
                     r.e2e_ms.p50 / 1e3, r.throughput_requests_per_s, r.output_tokens_per_s,
                     r.output_tokens_per_s_per_gpu, r.preemptions);
    if (!stages) continue;
    for (std::size_t st = 0; st < r.breakdown.size(); ++st) {
      const auto& t = r.breakdown[st];
      const double span = r.makespan_s > 0 ? r.makespan_s : 1;
      s += fmt::format("      stage {}: compute {:.2f} s ({:.0f}%), TP comm {:.2f} s ({:.0f}%), "
                       "PP transfer {:.3f} s, EP comm {:.2f} s, bubble/idle {:.2f} s ({:.0f}%) "
                       "of {:.2f} s\n",
                       st, t.compute, 100 * t.compute / span, t.tp_comm, 100 * t.tp_comm / span,
                       t.pp_comm, t.ep_comm, t.bubble, 100 * t.bubble / span, r.makespan_s);
    }
    s += fmt::format("      {} of {} requests finished, {} rejected; KV cache {:.0f}% used on "
                     "average, {:.0f}% at most; {} steps\n",
                     r.finished, r.requests, r.rejected, 100 * r.kv_utilization_mean,
                     100 * r.kv_utilization_max, r.steps);
  }
  return s;
}

}  // namespace tpp::planner
