#include "planner/search_report.h"

#include <fmt/format.h>

#include "model/load.h"
#include "planner/memory_report.h"
#include "planner/summary.h"
#include "planner/table.h"
#include "planner/validation.h"
#include "simulator/load.h"

namespace tpp::planner {
namespace {

std::vector<std::string> cells(const Candidate& c, bool priced, bool engines) {
  const auto& p = c.memory.parallel;
  const auto& b = c.memory.stages[c.memory.binding_stage];
  std::string rank = c.rank > 0 ? std::to_string(c.rank) + (c.recommended ? "*" : "") : "-";
  std::vector<std::string> out = {rank};
  if (engines) out.push_back(sim::framework_name(c.memory.options.framework));
  out.insert(out.end(), {std::to_string(p.tp), std::to_string(p.pp),
                                  std::to_string(p.dp), std::to_string(c.gpus),
                                  fmt::format("{:.1f}", b.weights_bytes / 1073741824.0),
                                  with_commas(c.memory.gpu_blocks),
                                  with_commas(c.memory.kv_cache_tokens),
                                  fmt::format("{:.1f}", c.memory.max_concurrency)});
  if (c.perf) {
    const auto& r = *c.perf;
    const sim::TimeShares s = sim::time_shares(r);
    out.insert(out.end(), {fmt::format("{:.0f}/{:.0f}", r.ttft_ms.p50, r.ttft_ms.p99),
                           fmt::format("{:.1f}/{:.1f}", r.tpot_ms.p50, r.tpot_ms.p99),
                           fmt::format("{:.0f}", r.output_tokens_per_s_per_gpu),
                           fmt::format("{:.0f}", r.output_tokens_per_s)});
    if (priced) out.push_back(fmt::format("{:.2f}", c.cost_per_mtok));
    out.insert(out.end(), {fmt::format("{:.0f}", s.tp_comm), fmt::format("{:.1f}", s.pp_comm),
                           fmt::format("{:.0f}", s.bubble)});
  } else {
    out.insert(out.end(), priced ? 8 : 7, "-");
  }
  out.push_back(c.rejected_reason.empty() ? (c.pareto ? "pareto" : "") : c.rejected_reason);
  return out;
}

}  // namespace

std::string search_table(const SearchResult& r, std::size_t top, bool markdown) {
  bool priced = false, engines = false;
  for (const auto& c : r.candidates) {
    priced = priced || c.cost_per_mtok > 0;
    engines = engines || c.memory.options.framework != r.candidates.front().memory.options.framework;
  }
  std::vector<std::string> head = {"rank", "tp", "pp", "dp", "GPUs", "weights", "KV blocks",
                                   "KV tokens", "conc.", "TTFT p50/p99", "TPOT p50/p99",
                                   "tok/s/GPU", "tok/s"};
  std::vector<std::string> units = {"", "", "", "", "", "GiB", "", "", "x", "ms", "ms", "", ""};
  if (engines) {
    head.insert(head.begin() + 1, "engine");
    units.insert(units.begin() + 1, "");
  }
  if (priced) {
    head.push_back("cost");
    units.push_back("$/Mtok");
  }
  head.insert(head.end(), {"TP", "PP", "bubble", "note"});
  units.insert(units.end(), {"%", "%", "%", ""});
  Table t(head, units);
  std::size_t shown = 0, rejected = 0;
  for (const auto& c : r.candidates) {
    if (c.rank > 0) {
      if (top == 0 || shown < top) t.add(cells(c, priced, engines));
      ++shown;
    } else {
      ++rejected;
    }
  }
  // The closest rejected splits say why the others were left out.
  std::size_t listed = 0;
  for (const auto& c : r.candidates)
    if (c.rank == 0 && listed < 5) {
      t.add(cells(c, priced, engines));
      ++listed;
    }
  return (markdown ? t.markdown() + "\n" : t.str()) +
         fmt::format("{} ranked{}, {} rejected{}\n", shown,
                     top > 0 && shown > top ? fmt::format(" (top {} shown)", top) : "", rejected,
                     rejected > listed ? fmt::format(" ({} shown)", listed) : "");
}

std::string recommendation_text(const model::Model& m, const hw::Cluster& c,
                                const SearchResult& r) {
  // Without an aggregated recommendation, the disaggregated pools' verdict still stands (the
  // command then ends with why none of the splits does).
  if (!r.recommended) return r.disagg_verdict.empty() ? "" : r.disagg_verdict + "\n";
  const Candidate& best = r.candidates[*r.recommended];
  Launch l = launch_commands(m, c, best.memory);
  const sim::Framework f = best.memory.options.framework;
  const std::string deploy =
      f == sim::Framework::kVllm
          ? fmt::format("deploy with vLLM:\n{}\n\nor with SGLang:\n{}\n", l.vllm, l.sglang)
          : fmt::format("deploy with {}:\n{}\n", engine_title(f), l.primary(f));
  return fmt::format("recommended: {}\n{}{}\n{}\n{}", r.reasons,
                     kernel_times_text(best.memory.options, c.gpu.name),
                     headline_bands_text(m.moe.has_value(), best.memory.parallel.tp,
                                        validation_engine(best.memory.options.framework)),
                     r.disagg_verdict.empty() ? "" : "\n" + r.disagg_verdict + "\n", deploy);
}

nlohmann::json candidates_json(const model::Model& m, const hw::Cluster& c,
                               const SearchResult& r) {
  nlohmann::json plans = nlohmann::json::array();
  for (const auto& cand : r.candidates) {
    nlohmann::json j = plan_json(cand.memory);
    if (cand.perf) {
      j["performance"] = performance_json(*cand.perf);
      j["error_bands"] = headline_bands_json(m.moe.has_value(), cand.memory.parallel.tp,
                                             validation_engine(cand.memory.options.framework));
    }
    j["gpus"] = cand.gpus;
    j["rank"] = cand.rank;
    j["recommended"] = cand.recommended;
    j["rejected_reason"] = cand.rejected_reason;
    j["pareto"] = cand.pareto;
    // (A run stopped at a certain SLO miss does not say whether it keeps up: null.)
    j["sustains_load"] = cand.stopped ? nlohmann::json(nullptr) : nlohmann::json(cand.sustains);
    j["meets_slo"] = cand.meets_slo;
    if (cand.stopped) j["simulation_stopped"] = true;
    if (cand.cost_per_mtok > 0) j["cost_per_million_output_tokens"] = cand.cost_per_mtok;
    if (cand.rank > 0) {
      Launch l = launch_commands(m, c, cand.memory);
      j["launch"] = {{"vllm", l.vllm}, {"sglang", l.sglang}, {"trtllm", l.trtllm}};
    }
    plans.push_back(j);
  }
  return plans;
}

nlohmann::json candidates_summary_json(const SearchResult& r) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& cand : r.candidates) {
    if (!cand.perf || !cand.memory.fits) continue;
    const auto& m = cand.memory;
    const auto& st = m.stages[m.binding_stage];
    const auto& p = *cand.perf;
    out.push_back({{"tp", m.parallel.tp}, {"pp", m.parallel.pp}, {"dp", m.parallel.dp},
                   {"gpus", cand.gpus}, {"rank", cand.rank}, {"recommended", cand.recommended},
                   {"pareto", cand.pareto}, {"meets_slo", cand.meets_slo},
                   {"sustains_load", cand.sustains}, {"rejected_reason", cand.rejected_reason},
                   {"memory", {{"weights_bytes", st.weights_bytes},
                               {"activation_peak_bytes", st.activation_peak_bytes},
                               {"non_torch_bytes", st.non_torch_bytes},
                               {"cuda_graph_bytes", st.cuda_graph_bytes},
                               {"kv_cache_bytes", std::max<std::int64_t>(0, st.kv_cache_bytes)},
                               {"budget_bytes", m.budget_bytes}, {"total_bytes", m.total_bytes},
                               {"gpu_blocks", m.gpu_blocks}}},
                   {"ttft_ms_p50", p.ttft_ms.p50}, {"ttft_ms_p99", p.ttft_ms.p99},
                   {"tpot_ms_p50", p.tpot_ms.p50}, {"tpot_ms_p99", p.tpot_ms.p99},
                   {"output_tokens_per_s", p.output_tokens_per_s},
                   {"output_tokens_per_s_per_gpu", p.output_tokens_per_s_per_gpu}});
  }
  return out;
}

nlohmann::json plan_file_json(const model::Model& m, const hw::Cluster& c,
                              const sim::Workload& w, const sim::MemoryPlan& plan,
                              const std::optional<sim::ServingResult>& perf,
                              const ChosenSlo& slo) {
  const auto& p = plan.parallel;
  Launch l = launch_commands(m, c, plan);
  nlohmann::json j;
  j["tpp_plan_version"] = kPlanVersion;
  // Everything the executor needs, written out: a plan copied to any node runs there.
  j["model"] = model::model_to_json(m);
  j["cluster"] = hw::cluster_to_json(c);
  j["serving"] = serving_json(plan.options);
  j["split"] = {{"tp", p.tp}, {"pp", p.pp}, {"dp", p.dp}, {"expert_parallel", p.expert_parallel},
                {"pp_layer_partition", p.pp_layer_partition}};
  j["workload"] = sim::workload_to_json(w);
  j["slo"] = {{"ttft_ms", slo.slo.ttft_ms}, {"tpot_ms", slo.slo.tpot_ms}, {"source", slo.source}};
  // Where the inputs were read from: provenance only, never read back.
  j["provenance"] = {{"model", m.source},     {"model_architecture", m.architecture},
                     {"cluster", c.file},     {"workload", w.file},
                     {"workload_arrival", sim::arrival_name(w.arrival)},
                     {"workload_rate_per_s", w.rate_per_s}};
  nlohmann::json predicted = plan_json(plan);
  if (perf) {
    predicted["performance"] = performance_json(*perf);
    predicted["error_bands"] = headline_bands_json(m.moe.has_value(), p.tp,
                                                  validation_engine(plan.options.framework));
  }
  // Loading the weights: bytes the largest rank reads, and seconds where the cluster profile
  // says how fast its storage reads (simulator/load.h).
  // The checkpoint is taken to be in the dtype the model runs in (tpp-run's own checkpoints
  // are; a bf16 checkpoint served with --dtype float32 reads half these bytes).
  model::Model stored = m;
  if (stored.quant.method == model::QuantMethod::kNone) {
    stored.dtype = plan.options.dtype;
    stored.quant.weight_dtype = plan.options.dtype;
  }
  const sim::LoadPrediction load = sim::predict_load(stored, p, c);
  nlohmann::json lj = {{"hf_bytes_per_rank", load.hf_bytes},
                       {"sharded_state_bytes_per_rank", load.sharded_bytes}};
  if (load.hf_s) {
    lj["hf_s"] = *load.hf_s;
    lj["sharded_state_s"] = *load.sharded_s;
    lj["storage_read_GBps_source"] = load.source;
  } else {
    lj["note"] = "no storage_read_GBps in the cluster profile: times not predicted";
  }
  predicted["load"] = lj;
  j["predicted"] = predicted;
  j["launch"] = {{"vllm", l.vllm}, {"sglang", l.sglang}, {"trtllm", l.trtllm}};
  return j;
}

}  // namespace tpp::planner
