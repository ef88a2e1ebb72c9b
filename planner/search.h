// The planner's search: every TP x PP x DP the cluster can hold, each one's memory, the
// serving simulation of one workload (same requests and seed for all), a ranking by the
// objective among the splits that keep up with the load within the SLOs, the Pareto front of
// throughput per GPU against TPOT, and a recommendation with its reasons beside the runner-up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "planner/plan_memory.h"
#include "simulator/disagg.h"
#include "simulator/serving.h"
#include "simulator/workload.h"

namespace tpp::planner {

enum class Objective { kThroughput, kLatency, kTtft, kGoodput, kCost };
const char* objective_name(Objective o);  // "throughput", "latency", "ttft", "goodput", "cost"
std::optional<Objective> parse_objective(const std::string& s);

// The latency objectives a search applies unless the user or the workload gives others:
// MLPerf Inference's server scenario for DeepSeek-R1, TTFT p99 at most 2 s and TPOT p99 at most
// 80 ms (mlcommons/inference loadgen/mlperf.conf: `deepseek-r1.Server.ttft_latency = 2000`,
// `tpot_latency = 80`, `*.Server.target_latency_percentile = 99`). gpt-oss-120b's server
// scenario asks the same TPOT; the older Llama-2-70B one allowed 200 ms.
inline constexpr double kDefaultSloTtftMs = 2000;
inline constexpr double kDefaultSloTpotMs = 80;
inline constexpr const char* kDefaultSloSource = "MLPerf Inference's server scenario for DeepSeek-R1";

// What the user asked of the SLOs on the command line.
struct SloRequest {
  std::optional<double> ttft_ms, tpot_ms;  // --slo-ttft-ms, --slo-tpot-ms
  bool none = false;                       // --no-slo
};
struct ChosenSlo {
  sim::Slo slo;        // 0: no objective on that metric
  std::string source;  // where the figures come from
};
// Flags first (each replaces its own metric), then --no-slo, then the workload's `slo:`, then
// the defaults above.
ChosenSlo choose_slo(const sim::Workload& w, const SloRequest& r);
// "TTFT p99 <= 2000 ms, TPOT p99 <= 200 ms (source)", or "none (source)".
std::string slo_text(const ChosenSlo& s);

struct SearchOptions {
  Objective objective = Objective::kThroughput;
  bool allow_cross_node_tp = false;
  ChosenSlo slo{{kDefaultSloTtftMs, kDefaultSloTpotMs}, kDefaultSloSource};  // choose_slo()'s
  int threads = 0;  // 0: one per core
  // The engines to search, each with its own defaults (sim::with_framework); empty: the one
  // MemoryRequest::serving names, as given. An engine that cannot serve the model is left out
  // with a note when there are several.
  std::vector<sim::Framework> engines;
  // Also search disaggregated prefill/decode pools (xPyD) and compare the best with the
  // aggregated recommendation (planner/search.cc, search_disaggregated).
  bool disaggregation = false;
  bool progress = true;  // a progress line on stderr when the search takes over a second
};

struct Candidate {
  sim::MemoryPlan memory;
  std::optional<sim::ServingResult> perf;  // when it fits
  std::int64_t gpus = 0;                   // tp x pp x dp
  bool meets_slo = true;
  bool sustains = true;                    // keeps up with the offered load (LoadCheck)
  std::string rejected_reason;             // empty for a candidate that can be recommended
  double score = 0;                        // the objective; higher is better
  double cost_per_mtok = 0;                // $ per million output tokens (with a price)
  int rank = 0;                            // 1 = best; 0 for rejected
  bool pareto = false;
  bool recommended = false;
  // Its simulation stopped once the SLOs were certainly missed (rejected_reason says how); it
  // has no figures.
  bool stopped = false;
};

// A disaggregated deployment: x prefill instances and y decode instances.
struct DisaggCandidate {
  sim::MemoryPlan prefill, decode;  // dp: the instances
  sim::DisaggResult perf;
  std::int64_t gpus = 0;
  std::string rejected_reason;      // empty: keeps up within the SLOs
  double score = 0;
};

struct SearchResult {
  std::vector<Candidate> candidates;  // ranked first, then rejected (same order every run)
  std::optional<std::size_t> recommended, runner_up;
  std::string reasons;                // the recommendation in numbers, beside the runner-up
  std::string why_none;               // no recommendation: what stood in the way, in numbers
  std::vector<std::string> notes;     // how the search was narrowed (a PP layer partition)
  std::int64_t simulated = 0;
  double seconds = 0;
  // With SearchOptions::disaggregation: the pools tried, the best first, and which deployment
  // wins and why, in numbers.
  std::vector<DisaggCandidate> disagg;
  std::string disagg_verdict;
};

// How many simulations of `w` this host's free memory holds at once, at most `wanted`; an error
// (one line, with the figures) when it cannot hold one (sim::simulation_bytes).
Expected<int> simulation_threads(const sim::Workload& w, int wanted);

// One DP replica's share of a workload (the same requests at 1/dp of the rate; a closed loop's
// concurrency / dp), and a replica's result turned into the deployment's (rates x dp, times /
// dp): the search's even split of the load between replicas.
sim::Workload replica_share_of(const sim::Workload& w, std::int64_t dp);
void scale_replica_result(sim::ServingResult& r, std::int64_t dp);
// "" when `r` meets the SLOs, else what it misses, in numbers.
std::string slo_miss_text(const sim::ServingResult& r, const sim::Slo& slo);
// The candidate TP x PP pairs (DP 1) the search would consider.
std::vector<sim::ParallelConfig> search_splits(const model::Model& m, const hw::Cluster& c,
                                               const MemoryRequest& r, bool cross_node_tp);

// Dollars per million output tokens at `price` per GPU-hour; 0 when nothing was served.
double cost_per_million_tokens(const sim::ServingResult& r, std::int64_t gpus, double price);

// Candidates: every TP (inside a node unless allowed) and PP that vLLM accepts, with DP at 1, at
// the most the cluster holds, and doubling from 1 until the split keeps up within the SLOs.
// With a PP layer partition, only pp equal to its stages (vLLM refuses the others).
// Errors: --objective cost without a price in the cluster file.
Expected<SearchResult> search(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                              const sim::Workload& w, const SearchOptions& o);

}  // namespace tpp::planner
