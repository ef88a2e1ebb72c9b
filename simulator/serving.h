// A discrete-event simulation of vLLM's V1 engine serving a workload on one plan: each DP
// replica runs the V1 scheduler (scheduler.h) with the plan's KV blocks; a batch passes the PP
// stages in order, each stage busy for the step cost model's time, with up to pp batches in
// flight (V1's batch queue); request k goes to replica k mod dp (a round-robin balancer, as the
// executor splits them), a closed loop keeping ceil(concurrency / dp) in flight on each.
// Deterministic: the same inputs give the same result, bit for bit.
//
// Metrics (docs/performance-model.md defines each): TTFT = first token - arrival; TPOT =
// (finish - first token) / (output tokens - 1); ITL = the gaps between a request's tokens;
// E2E = finish - arrival; throughput over the makespan (first arrival to last finish);
// goodput = requests per second that meet every SLO given.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "simulator/memory.h"
#include "simulator/scheduler.h"
#include "simulator/step_cost.h"
#include "simulator/workload.h"

namespace tpp::sim {

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0, mean = 0;
};

// One stage's time over the run, in seconds, averaged over DP replicas. The parts add up to the
// makespan: a stage computes, all-reduces in its TP group, exchanges tokens with the other
// experts (EP), sends its activations to the next stage (NCCL's send is stream-ordered, so the
// stage's next step waits for it), or is idle ("bubble": waiting for work, a pipeline bubble, or
// the drain at the end).
// `host`: the first stage waiting for the engine's host (StepCostModel::host_s): all of it where
// the host work precedes the step, what exceeds the GPU's step (and the gap) where it overlaps.
struct StageTime {
  double compute = 0, tp_comm = 0, ep_comm = 0, pp_comm = 0, host = 0, bubble = 0;
};

// Whether a deployment keeps up with an open-loop load (Poisson, fixed-rate or a trace spread
// over time), or whether its backlog (requests arrived and not yet finished) grows through the
// run. Measured over the second half of the arrival window, [t_mid, t_last]: a deployment that
// keeps up finishes requests there as fast as they arrive, and its backlog at t_last equals its
// backlog at t_mid up to the arrivals' Poisson noise. It does not keep up when it serves less
// than 95% of the offered rate there AND its backlog grows by more than three standard
// deviations of that noise (3 sqrt(backlog_mid + backlog_end)); either alone is too easily
// tripped by chance on a workload of a thousand requests.
struct LoadCheck {
  bool applies = false;               // false: a closed loop, or every request at once
  double window_s = 0;                // t_last - t_mid
  double offered_requests_per_s = 0;  // arrivals in the window / its length
  double served_requests_per_s = 0;   // finishes in the window / its length
  double backlog_mid = 0, backlog_end = 0;
  bool sustained = true;
};

// Every figure is the whole deployment's: requests and tokens over all DP replicas, in the time
// the deployment takes (the makespan), per GPU over all of its GPUs.
struct ServingResult {
  std::int64_t requests = 0, finished = 0, rejected = 0, preemptions = 0, steps = 0;
  // Why requests were refused on arrival, and the shortest refused one (prompt + output).
  std::int64_t rejected_over_max_model_len = 0, rejected_over_kv_cache = 0;
  std::int64_t rejected_over_batch_tokens = 0;  // TensorRT-LLM without chunked prefill
  std::int64_t shortest_rejected_tokens = 0;
  std::int64_t max_batches_in_flight = 0;  // in one replica's pipeline at once (at most pp)
  // A step's time from its launch to its last stage's end: every step, and those without a
  // prefill token (decode steps).
  Percentiles step_ms, decode_step_ms;
  LoadCheck load;
  double makespan_s = 0;
  double throughput_requests_per_s = 0, output_tokens_per_s = 0, total_tokens_per_s = 0;
  double output_tokens_per_s_per_gpu = 0, total_tokens_per_s_per_gpu = 0;
  double goodput_requests_per_s = 0;  // meeting the SLOs; equals throughput without SLOs
  Percentiles ttft_ms, tpot_ms, itl_ms, e2e_ms;
  std::vector<StageTime> breakdown;   // per PP stage
  double kv_utilization_mean = 0, kv_utilization_max = 0;
  // A few consecutive steps of replica 0 from the middle of the run, stage by stage: when each
  // stage started the step and what it spent (the schema of tpp-run's measured timeline), for
  // drawing the pipeline. Empty where nothing recorded it (the executor writes its own).
  struct Interval {
    std::int64_t step = 0, pp = 0;
    double start_s = 0, host_s = 0, compute_s = 0, tp_comm_s = 0, pp_comm_s = 0;
  };
  std::vector<Interval> timeline;
  // The KV cache's use over the run, (seconds, fraction of the blocks in use), thinned to at
  // most kKvSeriesPoints points.
  std::vector<std::pair<double, double>> kv_series;
  static constexpr std::size_t kKvSeriesPoints = 256;
  // Where the simulation stopped as soon as the SLOs were certainly missed (simulate_serving's
  // stop_at_slo_miss): what was missed, in numbers; the figures above are then partial.
  std::string stopped;
};

// Each stage's share of the makespan, in percent, averaged over the stages.
struct TimeShares {
  double tp_comm = 0, pp_comm = 0, bubble = 0;
};
TimeShares time_shares(const ServingResult& r);

// `stop_at_slo_miss`: end the run once more requests have finished over an SLO than its p99
// allows of every request the workload has (the p99 is over it whatever the others do), and say
// so in ServingResult::stopped (a search needs no more of a split that misses).
// `seqs`: where given, every replica's requests as its scheduler left them (replica d serves
// requests d, d + dp, ...), for a caller that follows requests further (disaggregation).
ServingResult simulate_serving(const StepCostModel& cost, const MemoryPlan& plan,
                               const Workload& workload, const Slo& slo = {},
                               std::vector<std::vector<Seq>>* seqs = nullptr,
                               bool stop_at_slo_miss = false);

// The request figures of a run (counts, TTFT, TPOT, ITL, E2E, throughputs, goodput, load) from
// its replicas' sequences as their schedulers recorded them: one definition for the simulation
// and the executor's measurement. `itl_ms` is reordered.
void summarize_requests(const std::vector<const std::vector<Seq>*>& replicas,
                        std::vector<double>& itl_ms, std::int64_t gpus, const Slo& slo,
                        bool closed_loop, ServingResult& r);
// The figures as JSON, the schema a plan's prediction and the executor's measurement share:
// throughput_requests_per_s, output_tokens_per_s, ..., ttft_ms/tpot_ms/itl_ms/e2e_ms
// ({p50, p90, p99, mean}), counts, step_ms, decode_step_ms, breakdown[] per stage, load.
nlohmann::json serving_json(const ServingResult& r);

// Each stage's time averaged over the replicas, idle the rest of the makespan.
std::vector<StageTime> average_breakdown(const std::vector<std::vector<StageTime>>& replicas,
                                         double makespan_s);

// Bytes one simulation of `w` holds at its peak on the host running tpp: per request, its copy,
// the scheduler's state and queue entries, three latency samples, and one inter-token gap per
// output token (the ITL percentiles are exact, so every gap is kept).
std::uint64_t simulation_bytes(const Workload& w);

// Nearest-rank percentiles of `v` (reordered in place).
Percentiles percentiles(std::vector<double>& v);

}  // namespace tpp::sim
