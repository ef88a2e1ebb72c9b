// Memory plans as text and JSON. JSON field names are a contract (scripts read them):
// plans[] with tp, pp, dp, fits, and memory { total_bytes, weights_bytes,
// activation_peak_bytes, non_torch_bytes, cuda_graph_bytes, kv_cache_bytes, kv_bytes_per_token,
// gpu_blocks, block_size, kv_cache_tokens, max_concurrency, stages[] }. The memory figures of a
// plan are those of its binding PP stage (the one with the fewest blocks, which the engine's
// minimum takes); stages[] has every stage's.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "simulator/memory.h"
#include "simulator/serving.h"

#include <optional>

namespace tpp::planner {

nlohmann::json serving_json(const sim::ResolvedOptions& o);
nlohmann::json plan_json(const sim::MemoryPlan& p);
// One row per plan; with `stages`, a row per PP stage under each plan.
std::string memory_table(const std::vector<sim::MemoryPlan>& plans, bool stages);
std::string serving_text(const sim::ResolvedOptions& o);
// One line: where the step model's kernel times come from (the engine's measured operator
// table, or the step model's own curves).
std::string kernel_times_text(const sim::ResolvedOptions& o, const std::string& gpu);

}  // namespace tpp::planner

namespace tpp::planner {

// plans[].performance: throughput_requests_per_s, output_tokens_per_s, total_tokens_per_s,
// ttft_ms, tpot_ms, itl_ms, e2e_ms ({p50, p90, p99, mean}), breakdown[] per stage (seconds of
// compute, tp_comm, ep_comm, pp_comm, bubble), and counts.
nlohmann::json performance_json(const sim::ServingResult& r);
// A row per plan that was simulated; with `stages`, the time breakdown per stage.
std::string performance_table(const std::vector<sim::MemoryPlan>& plans,
                              const std::vector<std::optional<sim::ServingResult>>& perf,
                              bool stages);

}  // namespace tpp::planner
