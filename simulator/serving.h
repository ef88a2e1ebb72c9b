// A discrete-event simulation of vLLM's V1 engine serving a workload on one plan: each DP
// replica runs the V1 scheduler (scheduler.h) with the plan's KV blocks; a batch passes the PP
// stages in order, each stage busy for the step cost model's time, with up to pp batches in
// flight (V1's batch queue); requests go to the replica with the fewest unfinished requests.
// Deterministic: the same inputs give the same result, bit for bit.
//
// Metrics (docs/performance-model.md defines each): TTFT = first token - arrival; TPOT =
// (finish - first token) / (output tokens - 1); ITL = the gaps between a request's tokens;
// E2E = finish - arrival; throughput over the makespan (first arrival to last finish);
// goodput = requests per second that meet every SLO given.
#pragma once

#include <cstdint>
#include <vector>

#include "simulator/memory.h"
#include "simulator/step_cost.h"
#include "simulator/workload.h"

namespace tpp::sim {

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, mean = 0;
};

struct StageTime {  // seconds, averaged over DP replicas
  double compute = 0, tp_comm = 0, ep_comm = 0, pp_comm = 0, bubble = 0;
};

struct Slo {
  double ttft_ms = 0;  // 0: no SLO
  double tpot_ms = 0;
};

struct ServingResult {
  std::int64_t requests = 0, finished = 0, rejected = 0, preemptions = 0, steps = 0;
  double makespan_s = 0;
  double throughput_requests_per_s = 0, output_tokens_per_s = 0, total_tokens_per_s = 0;
  double output_tokens_per_s_per_gpu = 0, total_tokens_per_s_per_gpu = 0;
  double goodput_requests_per_s = 0;  // meeting the SLOs; equals throughput without SLOs
  Percentiles ttft_ms, tpot_ms, itl_ms, e2e_ms;
  std::vector<StageTime> breakdown;   // per PP stage
  double kv_utilization_mean = 0, kv_utilization_max = 0;
};

// Each stage's share of the makespan, in percent, averaged over the stages.
struct TimeShares {
  double tp_comm = 0, pp_comm = 0, bubble = 0;
};
TimeShares time_shares(const ServingResult& r);

ServingResult simulate_serving(const StepCostModel& cost, const MemoryPlan& plan,
                               const Workload& workload, const Slo& slo = {});

// Nearest-rank percentiles of `v` (reordered in place).
Percentiles percentiles(std::vector<double>& v);

}  // namespace tpp::sim
