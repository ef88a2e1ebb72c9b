// What tpp-plan asks of the memory simulator: one split (--tp/--pp given) or every split of
// the cluster, with vLLM's serving options.
#pragma once

#include <optional>
#include <vector>

#include "common/status.h"
#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "simulator/memory.h"
#include "simulator/serving.h"
#include "simulator/workload.h"

namespace tpp::planner {

struct MemoryRequest {
  std::optional<std::int64_t> tp, pp, dp;  // any given: evaluate that one split
  bool expert_parallel = false;
  std::vector<std::int64_t> pp_layer_partition;
  sim::ServingOptions serving;
};

struct MemoryResult {
  sim::ResolvedOptions options;
  std::vector<sim::MemoryPlan> plans;
  bool single = false;                           // one split was asked for
  std::optional<sim::ParallelConfig> smallest_fit;  // when a plan does not fit
  std::vector<std::optional<sim::ServingResult>> performance;  // per plan, when simulated
};

// Errors (exit 2 in the CLI): options vLLM rejects, a split vLLM rejects ("128 attention heads
// are not divisible by tp=3"), a split larger than the cluster.
Expected<MemoryResult> plan_memory(const model::Model& m, const hw::Cluster& c,
                                   const MemoryRequest& r);

// Serves `w` on every plan that fits (the same workload and seed for each).
void simulate_performance(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                          const sim::Workload& w, const sim::Slo& slo, MemoryResult* result);

}  // namespace tpp::planner
