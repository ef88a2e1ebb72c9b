// The search's output: a ranked table (text or markdown), the recommendation with its reasons
// and launch commands, the JSON of every candidate, and the plan file the executor reads.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "planner/launch.h"
#include "planner/search.h"

namespace tpp::planner {

std::string search_table(const SearchResult& r, std::size_t top, bool markdown);
std::string recommendation_text(const model::Model& m, const hw::Cluster& c,
                                const SearchResult& r);
// plans[]: plan_json + performance + rank, recommended, rejected_reason, pareto, gpus,
// launch.vllm, launch.sglang.
nlohmann::json candidates_json(const model::Model& m, const hw::Cluster& c,
                               const SearchResult& r);
// The search as the report draws it, one small entry a candidate that was simulated: split,
// rank, recommended, pareto, meets_slo, sustains_load, rejected_reason, the binding stage's
// memory by component (bytes) with the budget and the GPU's total, and the headline figures
// (ttft_ms_p50/p99, tpot_ms_p50/p99, output_tokens_per_s, output_tokens_per_s_per_gpu).
nlohmann::json candidates_summary_json(const SearchResult& r);

// The plan file's schema version; tpp-run refuses any other. 2: the model, cluster, serving
// options, split and workload requests written out (1 named them by path).
inline constexpr int kPlanVersion = 2;

// A chosen plan with everything the executor needs (-o plan.json): the search's recommendation,
// or the one split given with --tp/--pp/--dp (its performance when it was simulated).
nlohmann::json plan_file_json(const model::Model& m, const hw::Cluster& c,
                              const sim::Workload& w, const sim::MemoryPlan& plan,
                              const std::optional<sim::ServingResult>& perf,
                              const ChosenSlo& slo);

}  // namespace tpp::planner
