// The user's own vLLM as the measurement: a `vllm bench serve --save-result` (or the older
// benchmarks/benchmark_serving.py --save-result) JSON, re-simulated on the plan with the same
// load, and a vLLM server log's start-up figures beside the plan's memory prediction.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "reports/report.h"

namespace tpp::reports {

// Re-simulates the load `bench` describes (its request count; its per-request lengths when it
// was saved with --save-detailed, else its mean lengths; its request rate, Poisson, or all at
// once when "inf"; its max_concurrency as a closed loop) on the plan in `plan_file` and sets the
// simulation beside the benchmark's TTFT, TPOT, ITL, E2E and throughputs. `notes` receives what
// the re-simulation had to approximate. Errors name the file and the field.
Expected<RunComparison> compare_vllm_bench(const std::string& plan_file,
                                           const nlohmann::json& bench,
                                           const std::string& bench_file,
                                           std::vector<std::string>* notes);

// What a vLLM server log says of its memory (V1: 0.8 on; V0: 0.6 to 0.10).
struct VllmLog {
  std::string engine, version;              // "V1" / "V0", "0.11.0"
  long tp = 0, pp = 0, max_model_len = 0;   // 0: not found
  double weights_gib = -1, kv_cache_gib = -1, cuda_graph_gib = -1, max_concurrency = -1;
  long kv_cache_tokens = -1, gpu_blocks = -1;
};

// Errors: a file with none of the start-up lines (names what was looked for).
Expected<VllmLog> parse_vllm_log(const std::string& text, const std::string& file);

// The log's figures beside the plan's memory prediction (the split must be the plan's).
Expected<RunComparison> compare_vllm_log(const nlohmann::json& plan, const std::string& plan_file,
                                         const VllmLog& log, const std::string& log_file);

}  // namespace tpp::reports
