// The planner's search: every TP x PP x DP the cluster can hold, each one's memory, the
// serving simulation of one workload (same requests and seed for all), a ranking by the
// objective, the Pareto front of throughput per GPU against TPOT, and a recommendation with its
// reasons beside the runner-up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "planner/plan_memory.h"
#include "simulator/serving.h"
#include "simulator/workload.h"

namespace tpp::planner {

enum class Objective { kThroughput, kLatency, kTtft, kGoodput, kCost };
const char* objective_name(Objective o);  // "throughput", "latency", "ttft", "goodput", "cost"
std::optional<Objective> parse_objective(const std::string& s);

struct SearchOptions {
  Objective objective = Objective::kThroughput;
  bool allow_cross_node_tp = false;
  sim::Slo slo;
  int threads = 0;  // 0: one per core
  bool progress = true;  // a progress line on stderr when the search takes over a second
};

struct Candidate {
  sim::MemoryPlan memory;
  std::optional<sim::ServingResult> perf;  // when it fits
  std::int64_t gpus = 0;                   // tp x pp x dp
  bool meets_slo = true;
  std::string rejected_reason;             // empty for a candidate that can be recommended
  double score = 0;                        // the objective; higher is better
  int rank = 0;                            // 1 = best; 0 for rejected
  bool pareto = false;
  bool recommended = false;
};

struct SearchResult {
  std::vector<Candidate> candidates;  // ranked first, then rejected (same order every run)
  std::optional<std::size_t> recommended, runner_up;
  std::string reasons;                // the recommendation in numbers, beside the runner-up
  std::int64_t simulated = 0;
  double seconds = 0;
};

// Errors: --objective cost without a price in the cluster file.
Expected<SearchResult> search(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                              const sim::Workload& w, const SearchOptions& o);

}  // namespace tpp::planner
