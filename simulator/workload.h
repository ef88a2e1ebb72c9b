// The workload the serving simulator replays: a list of requests (arrival time, prompt length,
// output length), generated from a YAML description or read from a CSV trace.
//
// Schema (strict: unknown keys are errors with a suggestion):
//
//   name: chat                 # required
//   num_requests: 1000         # required unless a trace is given (then: a cap on rows read)
//   seed: 42                   # default 0
//   arrival:                   # required unless trace
//     process: poisson         # poisson | fixed | closed
//     rate_per_s: 8.0          # poisson and fixed
//     concurrency: 64          # closed: requests kept in flight
//   input_tokens:  {distribution: lognormal, mean: 1024, stddev: 512, min: 16, max: 8192}
//   output_tokens: {distribution: normal, mean: 256, stddev: 64}
//   trace: some.csv            # instead of arrival/input_tokens/output_tokens
//   requests: [[0.0, 812, 214], [0.1, 1534, 96]]  # or written out: [arrival_s, input, output]
//                              # each, replayed at their times (or with arrival: closed, as a
//                              # closed loop); what a plan file embeds
//   slo: {ttft_ms: 2000, tpot_ms: 200}   # optional: the latency objectives it is served under
//                              # (p99; either may be left out), or `slo: none` for a batch job
//                              # with none; absent: the planner's defaults apply
//
// Distributions: fixed {value}, uniform {min, max} (inclusive), normal {mean, stddev, min, max},
// lognormal {mean, stddev, min, max} (mean and stddev of the token counts themselves). Samples
// are rounded to the nearest integer and clamped to [min, max] (defaults 1 and 1,048,576).
//
// Determinism: the same file and seed give the same requests on any machine. The generator is
// std::mt19937_64 (its sequence is fixed by the standard); the uniform, normal (Box-Muller) and
// exponential draws are written out here rather than taken from <random>, whose distributions
// are implementation-defined. Arrivals, input and output lengths draw from three separate
// streams, so changing one distribution leaves the others' samples unchanged. Poisson gaps are
// rounded to whole nanoseconds and lengths to whole tokens, which also absorbs any last-bit
// difference between math libraries' log/exp/cos.
//
// Arrival times: fixed rate puts request i at exactly i / rate; Poisson puts the first request
// at 0 and then draws exponential gaps with mean 1 / rate (as vLLM's benchmark_serving does);
// a closed loop has every arrival_s = 0 and keeps `concurrency` requests in flight.
//
// Trace CSV (at most kMaxTraceBytes): rows "arrival_s,input_tokens,output_tokens"; a first line naming those columns is
// allowed, as are blank lines and lines starting with '#'. Arrival times must be >= 0 and
// non-decreasing. A trace is replayed open loop at its own arrival times: `arrival` is kPoisson
// (the default) and `rate_per_s` is the trace's mean rate (0 when all rows arrive at once).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/doc.h"
#include "common/status.h"

namespace tpp::sim {

inline constexpr std::int64_t kMaxWorkloadRequests = 10'000'000;
inline constexpr std::int64_t kMaxRequestTokens = 1'048'576;
// A trace may be larger than a config (about 20 bytes a row: three million rows).
inline constexpr std::size_t kMaxTraceBytes = std::size_t{64} << 20;

enum class ArrivalProcess { kPoisson, kFixedRate, kClosedLoop };

struct Request {
  std::int64_t id = 0;
  double arrival_s = 0;           // seconds from the start; 0 for every request of a closed loop
  std::int64_t input_tokens = 0;  // >= 1
  std::int64_t output_tokens = 0; // >= 1
  // Prompt tokens whose KV arrives already computed (a disaggregated decode instance receives
  // them from the prefill instance); 0 for a request served whole.
  std::int64_t cached_tokens = 0;
};

// Latency objectives, met when the p99 is at most the figure (MLPerf's rule); 0: none.
struct Slo {
  double ttft_ms = 0;
  double tpot_ms = 0;
};

struct Workload {
  std::string name;
  std::string file;
  ArrivalProcess arrival = ArrivalProcess::kPoisson;
  double rate_per_s = 0;          // poisson and fixed (a trace: its mean rate)
  std::int64_t concurrency = 0;   // closed loop: requests kept in flight
  std::uint64_t seed = 0;
  std::vector<Request> requests;  // generated deterministically from the seed, or the trace's
  std::string trace;              // the trace file read, when there is one; else empty
  std::optional<Slo> slo;         // the file's `slo:`, when it has one (all zero: `slo: none`)
};

const char* arrival_name(ArrivalProcess a);  // "poisson", "fixed", "closed"

// name_or_path: a file, or a catalog name looked up with resolve_input(..., Catalog::kWorkloads).
Expected<Workload> load_workload(const std::string& name_or_path);
// A trace path is relative to doc.file's folder.
Expected<Workload> workload_from_doc(const Doc& doc);
// The workload with its requests written out (workload_from_doc reads it back to the same
// requests, in the same order, at the same times).
nlohmann::json workload_to_json(const Workload& w);

}  // namespace tpp::sim
