// Reading a plan file (`tpp-plan ... -o plan.json`, schema version planner's kPlanVersion): the
// model, cluster, serving options, split, workload requests and SLOs written out in it, read
// back with the same strict readers as their own files, so that a plan copied to any node runs
// there. Paths in the file are provenance only and are never opened.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "simulator/memory.h"
#include "simulator/parallel.h"
#include "simulator/workload.h"

namespace tpp::exec {

inline constexpr int kSupportedPlanVersion = 2;

struct Plan {
  std::string file;
  model::Model model;             // as the checkpoint describes it (before --dtype)
  hw::Cluster cluster;
  sim::ServingOptions serving;    // every option explicit, as the plan resolved it
  sim::ParallelConfig split;
  sim::Workload workload;         // its requests, in order
  sim::Slo slo;
  nlohmann::json predicted;       // memory and (when simulated) performance
};

// Errors (one line, file:line:col where there is a position): not a plan file, a version other
// than kSupportedPlanVersion, any section missing or invalid (the section's own reader's message).
Expected<Plan> read_plan(const std::string& path);

// What of the model this executor's decoder does not run (empty: it runs all of it): the 2026
// architectures' sliding-window and chunked layers, attention sinks, output gates, partial
// rotary, all-head q/k norms, Gemma's sandwich norms, expert biases, MXFP4 experts and image
// encoders are planned by tpp-plan but not executed (docs/model-schema.md).
std::string executor_unsupported(const model::Model& m);

}  // namespace tpp::exec
