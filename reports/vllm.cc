#include "reports/vllm.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <regex>
#include <sstream>

#include <fmt/format.h>

#include "executor/plan.h"
#include "simulator/memory.h"
#include "simulator/serving.h"
#include "simulator/step_cost.h"

namespace tpp::reports {
namespace {

using nlohmann::json;

double error_pct(double predicted, double measured) {
  return measured != 0 ? 100 * (predicted - measured) / measured : 0;
}

Expected<double> field(const json& j, const char* key, const std::string& file) {
  if (!j.contains(key)) return make_error(file, 0, 0, fmt::format("missing field '{}'", key));
  if (!j[key].is_number()) return make_error(file, 0, 0, fmt::format("field '{}' is not a number", key));
  return j[key].get<double>();
}

double gib(double bytes) { return bytes / (1024.0 * 1024 * 1024); }

// "443,456" -> 443456.
long digits(const std::string& s) {
  std::string d;
  for (char c : s)
    if (c >= '0' && c <= '9') d += c;
  return d.empty() ? -1 : std::stol(d);
}

}  // namespace

Expected<RunComparison> compare_vllm_bench(const std::string& plan_file, const json& bench,
                                           const std::string& file,
                                           std::vector<std::string>* notes) {
  if (!bench.is_object()) return make_error(file, 0, 0, "not a JSON object (vllm bench serve --save-result)");
  auto completed = field(bench, "completed", file);
  if (!completed) return completed.error();
  const auto n = static_cast<std::int64_t>(*completed);
  if (n < 1) return make_error(file, 0, 0, "field 'completed' is 0: no request finished");
  if (n > 10'000'000) return make_error(file, 0, 0, "field 'completed' is over 10,000,000 requests");
  // Lengths: per request when saved with --save-detailed, else the means.
  std::vector<std::int64_t> in(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n));
  const bool detailed = bench.contains("input_lens") && bench["input_lens"].is_array() &&
                        bench.contains("output_lens") && bench["output_lens"].is_array() &&
                        static_cast<std::int64_t>(bench["input_lens"].size()) >= n &&
                        static_cast<std::int64_t>(bench["output_lens"].size()) >= n;
  if (detailed) {
    for (std::int64_t k = 0; k < n; ++k) {
      const json& a = bench["input_lens"][static_cast<std::size_t>(k)];
      const json& b = bench["output_lens"][static_cast<std::size_t>(k)];
      if (!a.is_number_integer() || !b.is_number_integer())
        return make_error(file, 0, 0, fmt::format("field 'input_lens[{}]' / 'output_lens[{}]' is not an integer", k, k));
      in[static_cast<std::size_t>(k)] = std::max<std::int64_t>(1, a.get<std::int64_t>());
      out[static_cast<std::size_t>(k)] = std::max<std::int64_t>(1, b.get<std::int64_t>());
    }
  } else {
    auto ti = field(bench, "total_input_tokens", file), to = field(bench, "total_output_tokens", file);
    if (!ti) return ti.error();
    if (!to) return to.error();
    std::fill(in.begin(), in.end(), std::max<std::int64_t>(1, std::llround(*ti / static_cast<double>(n))));
    std::fill(out.begin(), out.end(), std::max<std::int64_t>(1, std::llround(*to / static_cast<double>(n))));
    if (notes) notes->push_back(file + ": no per-request lengths (saved without --save-detailed): every request "
                                "re-simulated at the mean lengths, " + std::to_string(in[0]) + " in / " +
                                std::to_string(out[0]) + " out");
  }
  // The load.
  double rate = 0;  // 0: all at once
  if (!bench.contains("request_rate")) return make_error(file, 0, 0, "missing field 'request_rate'");
  const json& rr = bench["request_rate"];
  if (rr.is_string()) {
    if (rr.get<std::string>() != "inf")
      return make_error(file, 0, 0, "field 'request_rate' is neither a number nor \"inf\"");
  } else if (rr.is_number() && rr.get<double>() > 0 && std::isfinite(rr.get<double>())) {
    rate = rr.get<double>();
  } else {
    return make_error(file, 0, 0, "field 'request_rate' is neither a positive number nor \"inf\"");
  }
  std::int64_t concurrency = 0;
  if (bench.contains("max_concurrency") && !bench["max_concurrency"].is_null()) {
    if (!bench["max_concurrency"].is_number_integer() || bench["max_concurrency"].get<std::int64_t>() < 1)
      return make_error(file, 0, 0, "field 'max_concurrency' is not a positive integer or null");
    concurrency = bench["max_concurrency"].get<std::int64_t>();
  }
  auto plan = exec::read_plan(plan_file);
  if (!plan) return plan.error();
  sim::Workload w;
  w.name = "vllm-bench";
  w.file = file;
  w.seed = 0;
  if (rate == 0 && concurrency > 0) {
    w.arrival = sim::ArrivalProcess::kClosedLoop;
    w.concurrency = concurrency;
  } else {
    w.arrival = sim::ArrivalProcess::kPoisson;
    w.rate_per_s = rate;
    if (rate > 0 && concurrency > 0 && notes)
      notes->push_back(file + ": the client capped its requests at " + std::to_string(concurrency) +
                       " in flight as well as sending them at " + fmt::format("{}", rate) +
                       " requests/s; re-simulated with the rate alone (tpp's arrivals are open or closed)");
    if (bench.value("burstiness", 1.0) != 1.0 && notes)
      notes->push_back(file + ": burstiness " + fmt::format("{}", bench.value("burstiness", 1.0)) +
                       " re-simulated as Poisson (burstiness 1)");
  }
  std::mt19937_64 rng(0);
  std::exponential_distribution<double> gap(rate > 0 ? rate : 1.0);
  double t = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    sim::Request q;
    q.id = k;
    if (rate > 0) t += gap(rng);
    q.arrival_s = w.arrival == sim::ArrivalProcess::kClosedLoop ? 0 : t;
    q.input_tokens = in[static_cast<std::size_t>(k)];
    q.output_tokens = out[static_cast<std::size_t>(k)];
    w.requests.push_back(q);
  }
  auto opts = sim::resolve_options(plan->model, plan->cluster.gpu, plan->serving);
  if (!opts) return make_error(plan_file, 0, 0, opts.error().message);
  const auto loaded = sim::as_loaded(plan->model, plan->serving);
  const auto mem = sim::simulate_memory(loaded, plan->cluster.gpu, plan->split, *opts);
  if (!mem.fits) return make_error(plan_file, 0, 0, "the plan's split does not fit: " + mem.why_not);
  sim::StepCostModel cost(loaded, plan->cluster, plan->split, *opts);
  const sim::ServingResult p = sim::simulate_serving(cost, mem, w, plan->slo);

  RunComparison rc;
  rc.name = file;
  auto add = [&](const std::string& name, const char* key, double predicted, const char* unit) {
    if (!bench.contains(key) || !bench[key].is_number()) return;
    const double m = bench[key].get<double>();
    rc.rows.push_back({name, unit, predicted, m, error_pct(predicted, m), true});
  };
  add("TTFT mean", "mean_ttft_ms", p.ttft_ms.mean, "ms");
  add("TTFT median", "median_ttft_ms", p.ttft_ms.p50, "ms");
  add("TTFT p99", "p99_ttft_ms", p.ttft_ms.p99, "ms");
  add("TPOT mean", "mean_tpot_ms", p.tpot_ms.mean, "ms");
  add("TPOT median", "median_tpot_ms", p.tpot_ms.p50, "ms");
  add("TPOT p99", "p99_tpot_ms", p.tpot_ms.p99, "ms");
  add("ITL median", "median_itl_ms", p.itl_ms.p50, "ms");
  add("ITL p99", "p99_itl_ms", p.itl_ms.p99, "ms");
  add("E2E median", "median_e2el_ms", p.e2e_ms.p50, "ms");
  add("request throughput", "request_throughput", p.throughput_requests_per_s, "req/s");
  add("output throughput", "output_throughput", p.output_tokens_per_s, "tok/s");
  if (rc.rows.empty())
    return make_error(file, 0, 0, "none of the fields mean_ttft_ms, median_tpot_ms, request_throughput, "
                                  "output_throughput, ... (not a vllm bench serve --save-result file)");
  for (const Row& r : rc.rows)
    if (std::fabs(r.error_pct) > std::fabs(rc.worst_error_pct)) {
      rc.worst_error_pct = r.error_pct;
      rc.worst_component = r.component;
    }
  return rc;
}

Expected<VllmLog> parse_vllm_log(const std::string& text, const std::string& file) {
  VllmLog log;
  static const std::regex ansi("\x1b\\[[0-9;]*m");
  static const std::regex engine(R"(Initializing (?:a (V[01]) |an )LLM engine \(v([^)]+)\))");
  static const std::regex tp(R"(tensor_parallel_size=(\d+))"), pp(R"(pipeline_parallel_size=(\d+))"),
      len(R"(max_seq_len=(\d+))");
  static const std::regex weights(R"((?:Model loading took|Loading model weights took) ([0-9.]+) Gi?B)");
  static const std::regex kv_mem(R"(Available KV cache memory: ([0-9.]+) GiB)");
  static const std::regex kv_v0(R"(the rest of the memory reserved for KV Cache is ([0-9.]+) ?GiB)");
  static const std::regex kv_tokens(R"(GPU KV cache size: ([0-9,]+) tokens)");
  static const std::regex blocks(R"(# (?:GPU|cuda) blocks: ([0-9]+))");
  static const std::regex conc(R"(Maximum concurrency for ([0-9,]+) tokens per request: ([0-9.]+)x)");
  static const std::regex graphs(R"(Graph capturing finished in [0-9.]+ secs?, took ([0-9.]+) GiB)");
  std::stringstream ss(text);
  std::string raw;
  int lines = 0;
  while (std::getline(ss, raw)) {
    if (++lines > 5'000'000) break;
    const std::string line = std::regex_replace(raw, ansi, "");
    std::smatch m;
    if (log.engine.empty() && std::regex_search(line, m, engine)) {
      log.engine = m[1].matched ? m[1].str() : "V0";
      log.version = m[2];
      if (std::regex_search(line, m, tp)) log.tp = std::stol(m[1]);
      if (std::regex_search(line, m, pp)) log.pp = std::stol(m[1]);
      if (std::regex_search(line, m, len)) log.max_model_len = std::stol(m[1]);
    }
    // Each worker logs its own; the first is rank 0's (the first stage's weights), and the
    // smallest KV cache is the engine's (vLLM takes the minimum over workers).
    if (log.weights_gib < 0 && std::regex_search(line, m, weights)) log.weights_gib = std::stod(m[1]);
    if (std::regex_search(line, m, kv_mem) || std::regex_search(line, m, kv_v0)) {
      const double v = std::stod(m[1]);
      log.kv_cache_gib = log.kv_cache_gib < 0 ? v : std::min(log.kv_cache_gib, v);
    }
    if (std::regex_search(line, m, kv_tokens)) log.kv_cache_tokens = digits(m[1]);
    if (std::regex_search(line, m, blocks)) log.gpu_blocks = std::stol(m[1]);
    if (std::regex_search(line, m, conc)) log.max_concurrency = std::stod(m[2]);
    if (log.cuda_graph_gib < 0 && std::regex_search(line, m, graphs)) log.cuda_graph_gib = std::stod(m[1]);
  }
  if (log.kv_cache_tokens < 0 && log.gpu_blocks < 0 && log.kv_cache_gib < 0)
    return make_error(file, 0, 0,
                      "no vLLM start-up figures found: expected 'GPU KV cache size: N tokens' or "
                      "'Available KV cache memory' (V1), or '# GPU blocks: N' (V0)");
  return log;
}

Expected<RunComparison> compare_vllm_log(const json& plan, const std::string& plan_file,
                                         const VllmLog& log, const std::string& file) {
  if (!plan.contains("split") || !plan.contains("predicted") || !plan["predicted"].contains("memory"))
    return make_error(plan_file, 0, 0, "missing field 'predicted.memory'");
  const long tp = plan["split"].value("tp", 1L), pp = plan["split"].value("pp", 1L);
  if ((log.tp > 0 && log.tp != tp) || (log.pp > 0 && log.pp != pp))
    return make_error(file, 0, 0, fmt::format("tensor_parallel_size={}, pipeline_parallel_size={} is not "
                                              "the plan's split (TP{} x PP{} in {})",
                                              log.tp, log.pp, tp, pp, plan_file));
  const json& mem = plan["predicted"]["memory"];
  const json& stages = mem["stages"];
  RunComparison rc;
  rc.name = file;
  auto add = [&](const std::string& name, double predicted, double measured, const char* unit) {
    if (measured < 0) return;
    rc.rows.push_back({name, unit, predicted, measured, error_pct(predicted, measured), true});
  };
  if (stages.is_array() && !stages.empty())
    add("weights per GPU (rank 0)", gib(stages[0].value("weights_bytes", 0.0)), log.weights_gib, "GiB");
  add("KV cache memory per GPU", gib(mem.value("kv_cache_bytes", 0.0)), log.kv_cache_gib, "GiB");
  add("KV cache tokens", mem.value("kv_cache_tokens", 0.0),
      log.kv_cache_tokens >= 0 ? static_cast<double>(log.kv_cache_tokens) : -1, "tokens");
  add("GPU blocks", mem.value("gpu_blocks", 0.0), log.gpu_blocks >= 0 ? static_cast<double>(log.gpu_blocks) : -1,
      "blocks");
  add("maximum concurrency", mem.value("max_concurrency", 0.0), log.max_concurrency, "x");
  if (stages.is_array() && !stages.empty())
    add("CUDA graphs", gib(stages[0].value("cuda_graph_bytes", 0.0)), log.cuda_graph_gib, "GiB");
  for (const Row& r : rc.rows)
    if (std::fabs(r.error_pct) > std::fabs(rc.worst_error_pct)) {
      rc.worst_error_pct = r.error_pct;
      rc.worst_component = r.component;
    }
  return rc;
}

}  // namespace tpp::reports
