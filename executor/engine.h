// Running a plan: every rank builds its stage's decoder with seeded weights and its KV pool; each
// DP replica's driver (its rank at pp 0, tp 0) runs the simulator's own Scheduler on the real
// clock: requests arrive at their times (replica d serves requests k with k mod dp = d, as the
// simulation splits them), the scheduler forms batches (continuous batching, chunked prefill,
// preemption, max_num_seqs, max_num_batched_tokens from the plan), and the driver sends each to
// the replica's ranks; up to pp batches are in flight, stage to stage, and the last stage's
// sampled tokens (greedy) come back to the driver, which completes the batch at that time.
// Measurement is a by-product of running: the scheduler records each request's times, and each
// rank how long it computed, reduced over its TP group and sent to the next stage.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "executor/backend.h"
#include "executor/comm.h"
#include "executor/layout.h"
#include "executor/plan.h"
#include "simulator/serving.h"

namespace tpp::exec {

struct RunResult;

struct RunOptions {
  std::int64_t requests = -1;  // the first N requests of the plan's workload (all when < 0)
  bool keep_logits = false;    // --check: keep every sampled row's logits
  bool single_rank = false;    // run the plan's model as tp = pp = dp = 1 on this rank alone
  // --replay-rank R: run the plan's rank R alone (its shard, stage, KV pool and replica's
  // requests) on a ReplayComm (replay_comm.h): collectives are local stand-ins, stages
  // before it are stood in for by fixed unit-variance hidden states, and each batch completes
  // when this stage has computed it. -1: a normal run.
  int replay_rank = -1;
  // Rank 0 hands what it has measured so far (its replica's requests, its own rank) to this
  // every `progress_every_s` seconds of the run (without the timeline), so that a job that dies leaves it behind.
  std::function<void(const RunResult&)> progress;
  double progress_every_s = 2.0;
  // Weights: seeded (vLLM's "dummy" format) without a model_dir; from model_dir as a Hugging
  // Face checkpoint ("auto") or per-rank files ("sharded_state"); saved per rank to
  // save_sharded when given (replica 0's ranks write; the others hold the same weights).
  std::string load_format = "auto";
  std::string model_dir, save_sharded;
  // Set when the job failed before running (every rank knows, none is waiting: no abort needed).
  bool* setup_failed = nullptr;
};

// What each rank reports at the end.
struct RankReport {
  int rank = 0;
  Place at;
  std::int64_t steps = 0;
  double compute_s = 0, tp_comm_s = 0, pp_comm_s = 0;  // over the run
  double load_s = 0;
  std::int64_t load_bytes = 0;  // read from checkpoint files (0: seeded)
  std::int64_t weight_bytes = 0, kv_pool_bytes = 0, kv_blocks = 0, peak_rss_bytes = 0;
};

// A sampled token with the logits it was chosen from (--check).
struct SampleRecord {
  std::int64_t request = 0, index = 0, token = 0;
  int rank = 0;
  std::vector<float> logits;
};

// One step as the driver saw it: the batch's shape and its time from launch to the tokens.
struct StepSample {
  std::int64_t step = 0;  // the replica's step number
  int dp = 0;             // the replica
  sim::BatchShape shape;
  double launched_s = 0;  // since the run began
  double ms = 0;
};

// One step as one rank computed it: compute, collectives and the send to the next stage, in
// seconds.
struct StageSample {
  std::int64_t step = 0;
  int dp = 0, pp = 0, tp = 0;
  double start_s = 0;  // since the run began (the driver's clock start, on this host's clock)
  double compute_s = 0, tp_comm_s = 0, pp_comm_s = 0;
};

struct RunResult {
  sim::ServingResult measured;  // the prediction's schema, from the schedulers' records
  std::vector<StepSample> steps;  // every step of every replica
  std::vector<StageSample> stage_steps;  // every step of every stage of every replica
  std::vector<RankReport> ranks;
  std::vector<SampleRecord> samples;  // every request's tokens, in (request, index) order
  double wall_s = 0;
  bool complete = true;  // false: a snapshot of rank 0's replica taken during the run
};

// The error every rank but the first failing one returns when a rank cannot set up (a
// checkpoint it cannot read, memory it does not have): the ranks agree on it, so none is left
// waiting and the job says it once.
inline constexpr const char* kOtherRankFailed = "another rank failed to set up";

// Runs the plan on this rank. Rank 0 gets the result (every rank's report gathered); the
// others get nullopt. Errors: a plan whose KV pool or weights do not fit this host's free
// memory, and any backend or communication failure (the caller aborts the job).
Expected<std::optional<RunResult>> run_plan(const Plan& plan, Comm& comm, Backend& backend,
                                            const RunOptions& o);

// The first n requests of the plan's workload (all when n < 0).
sim::Workload first_requests(const sim::Workload& w, std::int64_t n);

}  // namespace tpp::exec
