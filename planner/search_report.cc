#include "planner/search_report.h"

#include <fmt/format.h>

#include "planner/memory_report.h"
#include "planner/summary.h"

namespace tpp::planner {
namespace {

std::string row(const Candidate& c, bool markdown) {
  const auto& p = c.memory.parallel;
  const auto& b = c.memory.stages[c.memory.binding_stage];
  std::string rank = c.rank > 0 ? std::to_string(c.rank) + (c.recommended ? "*" : "") : "-";
  std::vector<std::string> cells = {rank, std::to_string(p.tp), std::to_string(p.pp),
                                    std::to_string(p.dp), std::to_string(c.gpus),
                                    fmt::format("{:.1f}", b.weights_bytes / 1073741824.0),
                                    with_commas(c.memory.gpu_blocks),
                                    with_commas(c.memory.kv_cache_tokens),
                                    fmt::format("{:.1f}", c.memory.max_concurrency)};
  if (c.perf) {
    const auto& r = *c.perf;
    const sim::TimeShares s = sim::time_shares(r);
    cells.insert(cells.end(),
                 {fmt::format("{:.0f}/{:.0f}", r.ttft_ms.p50, r.ttft_ms.p99),
                  fmt::format("{:.1f}/{:.1f}", r.tpot_ms.p50, r.tpot_ms.p99),
                  fmt::format("{:.0f}", r.output_tokens_per_s_per_gpu),
                  fmt::format("{:.0f}", r.output_tokens_per_s), fmt::format("{:.0f}", s.tp_comm),
                  fmt::format("{:.1f}", s.pp_comm), fmt::format("{:.0f}", s.bubble)});
  } else {
    cells.insert(cells.end(), {"-", "-", "-", "-", "-", "-", "-"});
  }
  cells.push_back(c.rejected_reason.empty() ? (c.pareto ? "pareto" : "") : c.rejected_reason);
  if (markdown) {
    std::string s = "|";
    for (const auto& x : cells) s += " " + x + " |";
    return s + "\n";
  }
  return fmt::format("{:>5}{:>4}{:>4}{:>4}{:>6}{:>9}{:>11}{:>12}{:>7}{:>16}{:>14}{:>10}{:>11}"
                     "{:>5}{:>6}{:>8}  {}\n",
                     cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6],
                     cells[7], cells[8], cells[9], cells[10], cells[11], cells[12], cells[13],
                     cells[14], cells[15], cells[16]);
}

}  // namespace

std::string search_table(const SearchResult& r, std::size_t top, bool markdown) {
  static const std::vector<std::string> head = {
      "rank", "tp", "pp", "dp", "GPUs", "wt GiB", "KV blocks", "KV tokens", "conc.",
      "TTFT ms", "TPOT ms", "tok/s/GPU", "tok/s", "TP%", "PP%", "bubble%", "note"};
  std::string s;
  if (markdown) {
    s += "|";
    for (const auto& h : head) s += " " + h + " |";
    s += "\n|";
    for (std::size_t k = 0; k < head.size(); ++k) s += "---|";
    s += "\n";
  } else {
    s += fmt::format("{:>5}{:>4}{:>4}{:>4}{:>6}{:>9}{:>11}{:>12}{:>7}{:>16}{:>14}{:>10}{:>11}"
                     "{:>5}{:>6}{:>8}  {}\n",
                     head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
                     head[8], "TTFT p50/99", "TPOT p50/99", head[11], head[12], head[13],
                     head[14], head[15], head[16]);
  }
  std::size_t shown = 0, rejected = 0;
  for (const auto& c : r.candidates) {
    if (c.rank > 0) {
      if (top == 0 || shown < top) s += row(c, markdown);
      ++shown;
    } else {
      ++rejected;
    }
  }
  // The closest rejected splits say why the others were left out.
  std::size_t listed = 0;
  for (const auto& c : r.candidates)
    if (c.rank == 0 && listed < 5) {
      s += row(c, markdown);
      ++listed;
    }
  s += fmt::format("{}{} ranked{}, {} rejected{}\n", markdown ? "\n" : "", shown,
                   top > 0 && shown > top ? fmt::format(" (top {} shown)", top) : "", rejected,
                   rejected > listed ? fmt::format(" ({} shown)", listed) : "");
  return s;
}

std::string recommendation_text(const model::Model& m, const hw::Cluster& c,
                                const SearchResult& r) {
  if (!r.recommended) return "";
  const Candidate& best = r.candidates[*r.recommended];
  Launch l = launch_commands(m, c, best.memory);
  return fmt::format("recommended: {}\n\ndeploy with vLLM:\n{}\n\nor with SGLang:\n{}\n",
                     r.reasons, l.vllm, l.sglang);
}

nlohmann::json candidates_json(const model::Model& m, const hw::Cluster& c,
                               const SearchResult& r) {
  nlohmann::json plans = nlohmann::json::array();
  for (const auto& cand : r.candidates) {
    nlohmann::json j = plan_json(cand.memory);
    if (cand.perf) j["performance"] = performance_json(*cand.perf);
    j["gpus"] = cand.gpus;
    j["rank"] = cand.rank;
    j["recommended"] = cand.recommended;
    j["rejected_reason"] = cand.rejected_reason;
    j["pareto"] = cand.pareto;
    if (cand.rank > 0) {
      Launch l = launch_commands(m, c, cand.memory);
      j["launch"] = {{"vllm", l.vllm}, {"sglang", l.sglang}};
    }
    plans.push_back(j);
  }
  return plans;
}

nlohmann::json plan_file_json(const model::Model& m, const hw::Cluster& c,
                              const sim::Workload& w, const Candidate& chosen) {
  const auto& p = chosen.memory.parallel;
  Launch l = launch_commands(m, c, chosen.memory);
  nlohmann::json j;
  j["tpp_plan_version"] = 1;
  j["model"] = {{"name", m.name}, {"source", m.source}, {"hf_repo", m.hf_repo}};
  j["cluster"] = {{"name", c.name}, {"source", c.file}};
  j["split"] = {{"tp", p.tp}, {"pp", p.pp}, {"dp", p.dp}, {"expert_parallel", p.expert_parallel},
                {"pp_layer_partition", p.pp_layer_partition}};
  j["serving"] = serving_json(chosen.memory.options);
  j["workload"] = {{"name", w.name}, {"source", w.file}, {"seed", w.seed},
                   {"requests", w.requests.size()}};
  nlohmann::json predicted = plan_json(chosen.memory);
  if (chosen.perf) predicted["performance"] = performance_json(*chosen.perf);
  j["predicted"] = predicted;
  j["launch"] = {{"vllm", l.vllm}, {"sglang", l.sglang}};
  return j;
}

}  // namespace tpp::planner
