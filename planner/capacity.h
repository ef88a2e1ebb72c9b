// Capacity planning: how much load a deployment carries within the SLOs, and how many GPUs a
// load needs.
// - rate_sweep: a chosen split's highest request rate within the SLOs (found by doubling, then
//   bisection to 2%), with latency and throughput at fractions of it around the knee.
// - plan_capacity: for a target rate (requests/s) or concurrency, the fewest GPUs of the
//   cluster's kind (its GPU and node shape, as many nodes as needed) that serve it within the
//   SLOs: per TP x PP, the replicas needed from one replica's highest rate (or concurrency),
//   then that deployment served the target with its replicas behind the router, simulated.
// - fill_cluster: every split with as many replicas as the cluster holds, ranked by the highest
//   rate the whole cluster sustains within the SLOs; the even-split estimate ranks them, and the
//   best few are served again with the router's split of the load simulated (request k to
//   replica k mod dp, simulator/serving.h), whose figure decides.
// A rate is the workload's arrival process at another rate: its request lengths, its arrival
// times scaled.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"
#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "planner/plan_memory.h"
#include "planner/search.h"
#include "simulator/serving.h"
#include "simulator/workload.h"

namespace tpp::planner {

struct LoadPoint {
  double load = 0;  // requests/s, or concurrency
  sim::ServingResult result;
  std::string miss;  // "" when it keeps up within the SLOs
};

struct RateSweep {
  double max_rate = 0;            // the highest within the SLOs (0: none)
  std::vector<LoadPoint> points;  // increasing load; the knee is the point at max_rate
  std::string limit;              // what fails just above it
};

// `plan`: a split that fits (dp replicas behind the round-robin router).
Expected<RateSweep> rate_sweep(const model::Model& loaded, const hw::Cluster& c, const sim::MemoryPlan& plan,
                               const sim::Workload& w, const sim::Slo& slo);

struct CapacityRow {
  sim::MemoryPlan plan;        // with its replicas (dp)
  double per_replica = 0;      // one replica's highest rate (or concurrency) within the SLOs
  std::int64_t gpus = 0;
  double margin = 0;           // replicas x per_replica / target - 1
  std::optional<sim::ServingResult> at_target;  // every replica behind the router, at the target
  std::string rejected;        // why it is not an answer
};

struct CapacityResult {
  bool concurrency = false;  // the target is a concurrency, not a rate
  double target = 0;
  std::vector<CapacityRow> rows;  // answers first, fewest GPUs first
  std::optional<std::size_t> best;
};

struct CapacityTarget {
  std::optional<double> rate;          // --target-rate
  std::optional<std::int64_t> concurrency;  // --target-concurrency
};

Expected<CapacityResult> plan_capacity(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                                       const sim::Workload& w, const SearchOptions& o, const CapacityTarget& t);

struct FillRow {
  sim::MemoryPlan plan;  // dp = the replicas the cluster holds
  double estimate = 0;   // even split: dp x one replica's highest rate
  std::optional<double> routed;  // with the router's split simulated (the best few only)
};

struct FillResult {
  std::vector<FillRow> rows;  // by routed rate (where simulated), then estimate
  std::optional<std::size_t> best;
};

Expected<FillResult> fill_cluster(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                                  const sim::Workload& w, const SearchOptions& o);

// Text (a table and the answer) and JSON of each.
std::string rate_sweep_text(const RateSweep& s, const sim::MemoryPlan& plan);
nlohmann::json rate_sweep_json(const RateSweep& s);
std::string capacity_text(const CapacityResult& r, const hw::Cluster& c);
nlohmann::json capacity_json(const CapacityResult& r);
std::string fill_text(const FillResult& r, const hw::Cluster& c);
nlohmann::json fill_json(const FillResult& r);

}  // namespace tpp::planner
