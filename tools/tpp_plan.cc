// tpp-plan: for a model on a cluster, search every TP/PP/DP split (or evaluate one, with
// --tp/--pp/--dp): memory, vLLM's KV-cache blocks, and the serving simulation of a workload;
// recommend the split that keeps up with the load within the SLOs, and write its plan.
// Exit codes: 0 success; 2 bad input, bad flags, a requested split that does not fit, or
// nothing to recommend (one line on stderr).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <new>
#include <sstream>

#include "common/data_path.h"
#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "planner/capacity.h"
#include "planner/deploy.h"
#include "planner/memory_report.h"
#include "planner/plan_memory.h"
#include "planner/search.h"
#include "planner/search_report.h"
#include "reports/report.h"
#include "planner/validation.h"
#include "planner/summary.h"

namespace {

constexpr int kExitBadInput = 2;

int fail(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  return kExitBadInput;
}

int fail(const tpp::Error& e) { return fail(e.file.empty() ? "tpp-plan: " + e.str() : e.str()); }

// "31,30" -> {31, 30}; false on a malformed list or a count outside [1, kMaxLayers].
bool parse_partition(const std::string& s, std::vector<std::int64_t>* out) {
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t used = 0;
      long long v = std::stoll(item, &used);
      if (used != item.size() || v < 1 || v > tpp::model::kMaxLayers) return false;
      out->push_back(v);
    } catch (...) {
      return false;
    }
    if (static_cast<std::int64_t>(out->size()) > tpp::model::kMaxLayers) return false;
  }
  return !out->empty() && s.back() != ',';
}

std::string fmt_rate(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", r);
  return buf;
}

std::string split_text(const tpp::sim::ParallelConfig& p) {
  return "tp=" + std::to_string(p.tp) + ", pp=" + std::to_string(p.pp) + " (" +
         std::to_string(p.tp * p.pp) + " GPUs)";
}

nlohmann::json workload_json(const tpp::sim::Workload& w) {
  return {{"name", w.name},
          {"source", w.file},
          {"requests", w.requests.size()},
          {"arrival", tpp::sim::arrival_name(w.arrival)},
          {"rate_per_s", w.rate_per_s},
          {"concurrency", w.concurrency},
          {"seed", w.seed}};
}

nlohmann::json slo_json(const tpp::planner::ChosenSlo& s) {
  return {{"ttft_ms", s.slo.ttft_ms}, {"tpot_ms", s.slo.tpot_ms}, {"source", s.source}};
}

int write_plan(const std::string& file, const nlohmann::json& plan) {
  std::ofstream out(file);
  out << plan.dump(2) << "\n";
  out.close();
  if (!out) return fail("tpp-plan: error: cannot write " + file);
  return 0;
}

struct Run {
  const tpp::model::Model& m;
  const tpp::hw::Cluster& c;
  const tpp::planner::MemoryRequest& req;
  const tpp::planner::ChosenSlo& slo;
  std::string format, output_file, report_dir;
};

// The chosen plan: written for the executor (-o), with its deployment files beside it, and
// drawn as a report (--report DIR).
int finish(const Run& run, const nlohmann::json& plan, const tpp::sim::MemoryPlan& chosen) {
  if (!run.output_file.empty()) {
    if (int rc = write_plan(run.output_file, plan)) return rc;
    const auto d = tpp::planner::deployment_files(run.m, run.c, chosen);
    for (auto [path, text] : {std::pair{tpp::planner::kubernetes_path(run.output_file), d.kubernetes},
                              std::pair{tpp::planner::slurm_path(run.output_file), d.slurm}}) {
      std::ofstream out(path);
      out << text;
      out.close();
      if (!out) return fail("tpp-plan: error: cannot write " + path);
    }
  }
  if (run.report_dir.empty()) return 0;
  tpp::reports::ReportOptions o;
  o.out_dir = run.report_dir;
  auto r = tpp::reports::write_report(plan, run.output_file.empty() ? "(tpp-plan)" : run.output_file,
                                      {}, {}, o);
  if (!r) return fail(r.error());
  if (run.format != "json") {
    std::cout << "report: " << run.report_dir << "/report.html (" << r->files.size() << " files)\n";
    for (const auto& l : r->left_out) std::cout << "  left out: " << l << "\n";
  }
  return 0;
}

// Prints the search's result; exit 2 when nothing can be recommended.
int report_search(const Run& run, const tpp::sim::Workload& w,
                  const tpp::planner::SearchResult& r, std::size_t top) {
  const auto& m = run.m;
  const auto& c = run.c;
  if (run.format == "json") {
    nlohmann::json j;
    j["tpp_version"] = TPP_VERSION;
    j["model"] = tpp::planner::model_json(m);
    j["cluster"] = tpp::planner::cluster_json(c);
    if (!r.candidates.empty())
      j["serving"] = tpp::planner::serving_json(r.candidates.front().memory.options);
    j["workload"] = workload_json(w);
    j["slo"] = slo_json(run.slo);
    j["search"] = {{"candidates", r.candidates.size()}, {"simulated", r.simulated},
                   {"seconds", r.seconds}, {"notes", r.notes}};
    j["plans"] = tpp::planner::candidates_json(m, c, r);
    j["reasons"] = r.reasons;
    if (!r.recommended) j["why_none"] = r.why_none;
    if (!r.disagg_verdict.empty()) {
      nlohmann::json pools = nlohmann::json::array();
      for (const auto& d : r.disagg)
        pools.push_back({{"prefill", {{"tp", d.prefill.parallel.tp}, {"instances", d.prefill.parallel.dp}}},
                         {"decode", {{"tp", d.decode.parallel.tp}, {"instances", d.decode.parallel.dp}}},
                         {"gpus", d.gpus}, {"rejected_reason", d.rejected_reason},
                         {"performance", tpp::sim::serving_json(d.perf.result)},
                         {"kv_transfer_ms_p50", d.perf.transfer_ms.p50},
                         {"kv_transfer_ms_p99", d.perf.transfer_ms.p99},
                         {"kv_bytes_per_request", d.perf.kv_bytes_per_request},
                         {"same_node", d.perf.same_node}});
      j["disaggregated"] = {{"pools", pools}, {"verdict", r.disagg_verdict}};
    }
    std::cout << j.dump(2) << "\n";
  } else {
    const bool md = run.format == "markdown";
    if (!md) std::cout << tpp::planner::model_text(m) << "\n" << tpp::planner::cluster_text(c) << "\n";
    std::cout << "searched " << r.candidates.size() << " splits, simulated " << r.simulated
              << " with workload " << w.name << " (" << w.requests.size() << " requests, seed "
              << w.seed << "), in " << fmt_rate(std::round(r.seconds * 100) / 100) << " s\n";
    for (const auto& n : r.notes) std::cout << "note: " << n << "\n";
    std::cout << tpp::planner::search_table(r, top, md) << "\n"
              << tpp::planner::recommendation_text(m, c, r);
  }
  if (!r.recommended) {
    bool any_fit = false;
    for (const auto& cand : r.candidates) any_fit = any_fit || cand.memory.fits;
    if (any_fit)
      return fail("tpp-plan: error: " + m.name + " fits on " + c.name + ", but " + r.why_none);
    // The smallest cluster of this GPU that would hold the model.
    auto opts = tpp::sim::resolve_options(m, c.gpu, run.req.serving);
    std::string need = "no number of these GPUs up to 1024 holds it";
    if (opts) {
      auto p = tpp::sim::smallest_fitting_split(tpp::sim::as_loaded(m, run.req.serving), c.gpu,
                                                1024, c.gpus_per_node, *opts,
                                                run.req.expert_parallel);
      if (p)
        need = "it needs at least " + std::to_string(p->tp * p->pp) + " " + c.gpu.name +
               (p->tp * p->pp == 1 ? " GPU" : " GPUs") + " (tp=" + std::to_string(p->tp) +
               ", pp=" + std::to_string(p->pp) + ")";
    }
    return fail("tpp-plan: error: " + m.name + " does not fit on any split of " + c.name + "; " +
                need);
  }
  if (run.output_file.empty() && run.report_dir.empty()) return 0;
  const auto& best = r.candidates[*r.recommended];
  auto plan = tpp::planner::plan_file_json(m, c, w, best.memory, best.perf, run.slo);
  // The search beside the plan, for tpp-report's charts (never read by the executor).
  plan["candidates"] = tpp::planner::candidates_summary_json(r);
  plan["reasons"] = r.reasons;
  return finish(run, plan, best.memory);
}

// One split (--tp/--pp/--dp): its memory stage by stage, and with a workload its serving.
int report_split(const Run& run, const std::optional<tpp::sim::Workload>& workload) {
  const auto& m = run.m;
  const auto& c = run.c;
  auto result = tpp::planner::plan_memory(m, c, run.req);
  if (!result) return fail(result.error());
  if (workload) {
    if (run.req.serving.engine == tpp::sim::Engine::kV0)
      return fail("tpp-plan: error: --workload simulates vLLM's V1 engine; drop --vllm-engine v0");
    if (auto t = tpp::planner::simulation_threads(*workload, 1); !t) return fail(t.error());
    tpp::planner::simulate_performance(m, c, run.req, *workload, run.slo.slo, &*result);
  }
  const auto& plans = result->plans;
  const auto& plan = plans.front();
  const auto& perf = result->performance.empty() ? std::nullopt : result->performance.front();
  if (run.format == "json") {
    nlohmann::json j;
    j["tpp_version"] = TPP_VERSION;
    j["model"] = tpp::planner::model_json(m);
    j["cluster"] = tpp::planner::cluster_json(c);
    j["serving"] = tpp::planner::serving_json(result->options);
    nlohmann::json pj = tpp::planner::plan_json(plan);
    if (perf) {
      pj["performance"] = tpp::planner::performance_json(*perf);
      pj["error_bands"] = tpp::planner::headline_bands_json(
          m.moe.has_value(), plan.parallel.tp, tpp::planner::validation_engine(plan.options.framework));
    }
    j["plans"] = nlohmann::json::array({pj});
    if (workload) {
      j["workload"] = workload_json(*workload);
      j["slo"] = slo_json(run.slo);
    }
    if (result->smallest_fit)
      j["smallest_fit"] = {{"tp", result->smallest_fit->tp}, {"pp", result->smallest_fit->pp}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << tpp::planner::model_text(m) << "\n" << tpp::planner::cluster_text(c) << "\n"
              << tpp::planner::serving_text(result->single ? result->plans.front().options : result->options)
              << tpp::planner::memory_table(plans, true);
    if (workload)
      std::cout << "\nserving " << workload->name << " (" << workload->requests.size()
                << " requests, " << tpp::sim::arrival_name(workload->arrival) << " arrivals"
                << (workload->arrival == tpp::sim::ArrivalProcess::kClosedLoop
                        ? ", concurrency " + std::to_string(workload->concurrency)
                        : ", " + fmt_rate(workload->rate_per_s) + " requests/s")
                << ", seed " << workload->seed << ") on "
                << [&] {
                     const auto f = result->plans.front().options.framework;
                     return f == tpp::sim::Framework::kVllm ? std::string("vLLM V1")
                                                            : std::string(tpp::planner::engine_title(f));
                   }()
                << "; SLOs "
                << tpp::planner::slo_text(run.slo) << ":\n"
                << tpp::planner::performance_table(plans, result->performance, true);
    if (perf)
      std::cout << tpp::planner::kernel_times_text(result->options, c.gpu.name)
                << tpp::planner::headline_bands_text(m.moe.has_value(), plan.parallel.tp,
                                                     tpp::planner::validation_engine(plan.options.framework))
                << "\n";
  }
  if (!plan.fits) {
    std::string smallest = result->smallest_fit
                               ? "smallest split that fits: " + split_text(*result->smallest_fit)
                               : "no split of the cluster's " + std::to_string(c.total_gpus()) +
                                     " GPUs fits";
    return fail("tpp-plan: error: " + plan.why_not + "; " + smallest);
  }
  if (perf && perf->finished == 0)
    return fail("tpp-plan: error: every request of workload " + workload->name +
                " was rejected: " +
                (perf->rejected_over_max_model_len == perf->requests
                     ? "each needs more than max_model_len " +
                           std::to_string(result->options.max_model_len) +
                           " tokens (prompt + output; the shortest needs " +
                           std::to_string(perf->shortest_rejected_tokens) +
                           "); raise --max-model-len or shorten the requests"
                     : std::to_string(perf->rejected_over_max_model_len) +
                           " need more than max_model_len, " +
                           std::to_string(perf->rejected_over_kv_cache) +
                           " more KV blocks than the pool holds"));
  if (run.output_file.empty() && run.report_dir.empty()) return 0;
  return finish(run, tpp::planner::plan_file_json(m, c, *workload, plan, perf, run.slo), plan);
}

int run_main(int argc, char** argv) {
  CLI::App app{"tpp-plan: which TP/PP split to run a model with on a cluster, and the memory, "
               "vLLM KV-cache blocks, latency and throughput each gets",
               "tpp-plan"};
  std::string model_arg, cluster_arg, format = "text", engine = "v1", kv_dtype, quant, partition;
  std::string workload_arg, objective = "throughput", output_file, report_dir;
  tpp::planner::SloRequest slo_req;
  bool cross_node_tp = false;
  std::size_t top = 10;
  tpp::planner::MemoryRequest req;
  auto& so = req.serving;
  const auto parallel_range = CLI::Range(std::int64_t{1}, tpp::sim::kMaxParallel);
  app.add_option("--model", model_arg,
                 "model: tpp YAML, a Hugging Face config.json (or its directory), or a catalog "
                 "name such as r1")
      ->required();
  app.add_option("--cluster", cluster_arg, "cluster YAML, or a catalog name such as a100x16")
      ->required();
  app.add_option("--format", format, "output format (text and table are the same)")
      ->check(CLI::IsMember({"text", "table", "json", "markdown"}));
  app.add_option("--objective", objective,
                 "what the search ranks by, among the splits that keep up with the load within "
                 "the SLOs: throughput (output tokens/s per GPU: the fewest GPUs that serve it), "
                 "latency (TPOT p50), ttft (TTFT p50), goodput (requests/s per GPU within the "
                 "SLOs), cost (output tokens per dollar)")
      ->check(CLI::IsMember({"throughput", "latency", "ttft", "goodput", "cost"}));
  app.add_flag("--allow-cross-node-tp", cross_node_tp, "let TP groups span nodes");
  app.add_option("--top", top, "ranked splits to show (0: all)")->capture_default_str();
  app.add_option("-o,--output", output_file,
                 "write the plan (JSON) for the executor: the recommended split, or the one given "
                 "with --tp/--pp/--dp");
  app.add_option("--report", report_dir,
                 "also write the plan's report into this directory (report.html, report.md, "
                 "charts, placement; tpp-report adds measured runs)");
  app.add_option("--tp,--tensor-parallel-size", req.tp, "evaluate this tensor-parallel size only")
      ->check(parallel_range);
  app.add_option("--pp,--pipeline-parallel-size", req.pp,
                 "evaluate this pipeline-parallel size only")
      ->check(parallel_range);
  app.add_option("--dp,--data-parallel-size", req.dp, "data-parallel replicas (with --tp/--pp)")
      ->check(parallel_range);
  app.add_flag("--enable-expert-parallel", req.expert_parallel,
               "split whole experts over tp x dp ranks instead of each expert over tp");
  app.add_option("--pp-layer-partition", partition,
                 "layers per PP stage, e.g. 31,30 (vLLM's VLLM_PP_LAYER_PARTITION, also read "
                 "from the environment); the search then tries only that many stages");
  app.add_option("--gpu-memory-utilization", so.gpu_memory_utilization,
                 "fraction of GPU memory vLLM may use")
      ->capture_default_str();
  app.add_option("--max-model-len", so.max_model_len, "default: the model's context length");
  app.add_option("--block-size", so.block_size, "KV-cache block in tokens (default 16)");
  std::string dtype = "auto";
  app.add_option("--dtype", dtype,
                 "activations and unquantized weights: auto (the model's), bfloat16, float16, "
                 "float32 (vLLM's --dtype; float32 for CPU runs)")
      ->check(CLI::IsMember({"auto", "bfloat16", "bf16", "float16", "half", "fp16", "float32",
                             "float", "fp32"}));
  app.add_option("--kv-cache-dtype", kv_dtype,
                 "auto, bfloat16, float16, fp8, fp8_e4m3, fp8_e5m2, nvfp4 (fp4_e2m1: SGLang's name; "
                 "4-bit values with an fp8 scale a block of 16, on Blackwell)")
      ->check(CLI::IsMember({"auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2", "nvfp4", "fp4_e2m1"}));
  app.add_option("--max-num-seqs", so.max_num_seqs, "default: vLLM's for the GPU and engine");
  app.add_option("--max-num-batched-tokens", so.max_num_batched_tokens,
                 "default: vLLM's for the GPU and engine");
  app.add_flag("--enforce-eager", so.enforce_eager, "no CUDA graphs");
  // A flag that takes one of `names`, its default shown in --help.
  auto choice = [&app](const char* flag, std::string& value, const std::vector<std::string>& names,
                       const std::string& help) {
    app.add_option(flag, value, help)->check(CLI::IsMember(names))->capture_default_str();
  };
  std::string engine_arg = "vllm";
  std::vector<std::string> engine_names = tpp::sim::framework_names();
  engine_names.push_back("all");
  choice("--engine", engine_arg, engine_names,
         "the serving engine: vllm, sglang (SGLang 0.5.6: its token pool, mem_fraction_static and "
         "scheduler), trtllm (TensorRT-LLM: its KV fraction, 32-token blocks and "
         "guaranteed-no-evict admission), or all (the search compares the three)");
  std::optional<double> mem_fraction_static, trtllm_fraction;
  app.add_option("--mem-fraction-static", mem_fraction_static,
                 "SGLang: the fraction of GPU memory for weights and the KV pool (default: "
                 "SGLang's for the GPU and split)");
  app.add_option("--kv-cache-free-gpu-memory-fraction", trtllm_fraction,
                 "TensorRT-LLM: the fraction of the memory left after the weights and "
                 "activations that the KV cache takes (default 0.9)");
  std::string capacity_policy = "vllm";
  choice("--capacity-policy", capacity_policy, tpp::sim::capacity_policy_names(),
         "admission: vllm (admit while the first chunk fits; preempt when full), or "
         "guaranteed-no-evict (TensorRT-LLM's: admit when the whole request fits; never "
         "preempt)");
  std::string host_overhead = "vllm";
  choice("--host-overhead", host_overhead, tpp::sim::host_overhead_names(),
         "whose host time a step carries: vllm (V1 with async scheduling, overlapped), "
         "vllm-sync (V1 without it, serial with the GPU), trtllm (its overlap "
         "scheduler), none (docs/performance-model.md)");
  std::string operator_tables = "on";
  choice("--operator-tables", operator_tables, {"on", "off", "vllm", "trtllm", "sglang"},
         "time GEMMs, attention, fused MoE layers and the TP all-reduce from the engine's "
         "measured kernel tables for this GPU where there are some (hardware_profiles/operators): "
         "on: vllm's or trtllm's, by --host-overhead; an engine's name: that engine's kernels; "
         "off: the step model's own curves");
  app.add_flag("--count-cuda-graphs", so.count_cuda_graphs,
               "deduct CUDA-graph memory from the KV cache "
               "(vLLM's VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1)");
  app.add_option("--quantization", quant, "fp8 on an unquantized checkpoint, or the checkpoint's")
      ->check(CLI::IsMember({"fp8", "awq", "gptq", "compressed-tensors"}));
  app.add_option("--swap-space", so.swap_space_gib, "V0 CPU swap space per GPU, GiB")
      ->capture_default_str();
  app.add_option("--workload", workload_arg,
                 "serve this workload on every split that fits and predict TTFT, TPOT, "
                 "throughput (YAML, or a catalog name such as chat; the search's default: chat)");
  app.add_option("--slo-ttft-ms", slo_req.ttft_ms,
                 "TTFT p99 objective, ms (default: the workload's, else 2000: MLPerf's server "
                 "scenario)");
  app.add_option("--slo-tpot-ms", slo_req.tpot_ms,
                 "TPOT p99 objective, ms (default: the workload's, else 200: MLPerf's server "
                 "scenario)");
  app.add_flag("--no-slo", slo_req.none, "no latency objectives (only the load must be kept up)");
  std::optional<double> target_rate;
  std::optional<std::int64_t> target_concurrency;
  bool fill = false, sweep = false;
  app.add_option("--target-rate", target_rate,
                 "capacity: the fewest GPUs of this cluster's kind, the split and the replicas that "
                 "serve this many requests/s (the workload's requests at this rate) within the SLOs");
  app.add_option("--target-concurrency", target_concurrency,
                 "capacity: the same for this many requests kept in flight (a closed loop)");
  app.add_flag("--fill-cluster", fill,
               "fill the whole cluster with replicas of each split and rank by the highest request "
               "rate it sustains within the SLOs, the router's split of the load simulated");
  bool disagg = false;
  app.add_flag("--disagg", disagg,
               "also search disaggregated prefill and decode pools (xPyD, the KV sent between "
               "them) and say whether they beat the aggregated recommendation, and why");
  app.add_flag("--rate-sweep", sweep,
               "with --tp/--pp/--dp: the highest request rate the split sustains within the SLOs, "
               "and latency around that knee");
  app.add_option("--vllm-engine", engine, "v1 (default) or v0")
      ->check(CLI::IsMember({"v1", "v0"}));
  app.set_version_flag("--version", std::string("tpp-plan ") + TPP_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(std::string("tpp-plan: error: ") + e.what() + " (see --help)");
  }
  for (auto [flag, v] : {std::pair{"--slo-ttft-ms", slo_req.ttft_ms},
                         std::pair{"--slo-tpot-ms", slo_req.tpot_ms}})
    if (v && !(std::isfinite(*v) && *v > 0))
      return fail(std::string("tpp-plan: error: ") + flag + " must be a positive number of ms");
  if (slo_req.none && (slo_req.ttft_ms || slo_req.tpot_ms))
    return fail("tpp-plan: error: --no-slo cannot be given with --slo-ttft-ms or --slo-tpot-ms");
  so.engine = engine == "v0" ? tpp::sim::Engine::kV0 : tpp::sim::Engine::kV1;
  if (!kv_dtype.empty()) so.kv_cache_dtype = tpp::model::parse_kv_cache_dtype(kv_dtype);
  if (dtype != "auto") so.dtype = tpp::model::parse_dtype(dtype);
  // An engine brings its own host model, admission and kernel tables; the flags that name
  // them one by one still win where given.
  const bool all_engines = engine_arg == "all";
  if (!all_engines) so = tpp::sim::with_framework(so, *tpp::sim::parse_framework(engine_arg));
  if (all_engines)
    for (const char* flag : {"--host-overhead", "--capacity-policy", "--operator-tables",
                             "--mem-fraction-static", "--kv-cache-free-gpu-memory-fraction"})
      if (app.count(flag))
        return fail(std::string("tpp-plan: error: ") + flag +
                    " is one engine's; --engine all uses each engine's own defaults");
  if (mem_fraction_static && trtllm_fraction)
    return fail("tpp-plan: error: --mem-fraction-static is SGLang's and "
                "--kv-cache-free-gpu-memory-fraction TensorRT-LLM's: give one");
  if (mem_fraction_static && so.framework != tpp::sim::Framework::kSglang)
    return fail("tpp-plan: error: --mem-fraction-static is SGLang's: add --engine sglang");
  if (trtllm_fraction && so.framework != tpp::sim::Framework::kTrtllm)
    return fail("tpp-plan: error: --kv-cache-free-gpu-memory-fraction is TensorRT-LLM's: add "
                "--engine trtllm");
  so.memory_fraction = mem_fraction_static ? mem_fraction_static : trtllm_fraction;
  if (so.framework != tpp::sim::Framework::kVllm && app.count("--gpu-memory-utilization"))
    return fail(std::string("tpp-plan: error: --gpu-memory-utilization is vLLM's; ") +
                (so.framework == tpp::sim::Framework::kSglang ? "SGLang takes --mem-fraction-static"
                                                              : "TensorRT-LLM takes "
                                                                "--kv-cache-free-gpu-memory-fraction"));
  if (app.count("--host-overhead")) so.host_overhead = *tpp::sim::parse_host_overhead(host_overhead);
  if (app.count("--capacity-policy"))
    so.reserve_whole_request = capacity_policy == tpp::sim::capacity_policy_name(true);
  so.operator_tables = operator_tables != "off";
  if (operator_tables != "on" && operator_tables != "off") so.operator_tables_engine = operator_tables;
  if (!quant.empty())
    so.quantization = quant == "fp8"    ? tpp::model::QuantMethod::kFp8
                      : quant == "awq"  ? tpp::model::QuantMethod::kAwq
                      : quant == "gptq" ? tpp::model::QuantMethod::kGptq
                                        : tpp::model::QuantMethod::kCompressedTensors;
  std::string partition_from = "--pp-layer-partition";
  if (partition.empty())
    if (const char* env = std::getenv("VLLM_PP_LAYER_PARTITION"); env && *env) {
      partition = env;
      partition_from = "VLLM_PP_LAYER_PARTITION";
    }
  if (!partition.empty() && !parse_partition(partition, &req.pp_layer_partition))
    return fail("tpp-plan: error: " + partition_from +
                " must be comma-separated layer counts from 1 to " +
                std::to_string(tpp::model::kMaxLayers) + ", got '" + tpp::clip(partition) + "'");

  auto model_path = tpp::resolve_input(model_arg, tpp::Catalog::kModels);
  if (!model_path) return fail(model_path.error());
  auto model = tpp::model::load_model(*model_path);
  if (!model) return fail(model.error());
  auto cluster = tpp::hw::load_cluster(cluster_arg);
  if (!cluster) return fail(cluster.error());
  const bool search_mode = !req.tp && !req.pp && !req.dp;
  std::optional<tpp::sim::Workload> workload;
  // The search always serves a workload, and so does a plan written for the executor.
  if (workload_arg.empty() && (search_mode || sweep || !output_file.empty() || !report_dir.empty()))
    workload_arg = "chat";
  if (!workload_arg.empty()) {
    auto w = tpp::sim::load_workload(workload_arg);
    if (!w) return fail(w.error());
    workload = std::move(*w);
  }
  const tpp::planner::ChosenSlo slo =
      workload ? tpp::planner::choose_slo(*workload, slo_req) : tpp::planner::ChosenSlo{};
  const Run run{*model, *cluster, req, slo, format == "markdown" && !search_mode ? "text" : format,
                output_file, report_dir};
  {
    const int modes = (target_rate ? 1 : 0) + (target_concurrency ? 1 : 0) + (fill ? 1 : 0) + (sweep ? 1 : 0);
    if (modes > 1)
      return fail("tpp-plan: error: give one of --target-rate, --target-concurrency, --fill-cluster, "
                  "--rate-sweep");
    if (target_rate && !(std::isfinite(*target_rate) && *target_rate > 0))
      return fail("tpp-plan: error: --target-rate must be a positive number of requests/s");
    if (target_concurrency && *target_concurrency < 1)
      return fail("tpp-plan: error: --target-concurrency must be at least 1");
    if (sweep && search_mode) return fail("tpp-plan: error: --rate-sweep needs a split: add --tp/--pp/--dp");
    if (disagg && (!search_mode || modes > 0))
      return fail("tpp-plan: error: --disagg compares pools in the search; drop --tp/--pp/--dp and the "
                  "capacity flags");
    if (modes > 0 && !sweep && !search_mode)
      return fail("tpp-plan: error: --target-rate, --target-concurrency and --fill-cluster search the "
                  "splits; drop --tp/--pp/--dp");
    if (modes > 0 && all_engines)
      return fail("tpp-plan: error: capacity planning takes one engine; drop --engine all");
    if (modes > 0 && !output_file.empty())
      return fail("tpp-plan: error: -o writes a plan from the search or a split; capacity planning "
                  "prints its answer (use --format json)");
    if (modes > 0) {
      tpp::planner::SearchOptions co;
      co.allow_cross_node_tp = cross_node_tp;
      co.slo = slo;
      const bool json = format == "json";
      if (sweep) {
        auto mem = tpp::planner::plan_memory(*model, *cluster, req);
        if (!mem) return fail(mem.error());
        const auto& plan = mem->plans.front();
        if (!plan.fits) return fail("tpp-plan: error: " + plan.why_not);
        auto r = tpp::planner::rate_sweep(tpp::sim::as_loaded(*model, req.serving), *cluster, plan, *workload, slo.slo);
        if (!r) return fail(r.error());
        if (json) std::cout << tpp::planner::rate_sweep_json(*r).dump(2) << "\n";
        else std::cout << tpp::planner::rate_sweep_text(*r, plan);
        return 0;
      }
      if (fill) {
        auto r = tpp::planner::fill_cluster(*model, *cluster, req, *workload, co);
        if (!r) return fail(r.error());
        if (json) std::cout << tpp::planner::fill_json(*r).dump(2) << "\n";
        else std::cout << tpp::planner::fill_text(*r, *cluster);
        return r->best ? 0 : 2;
      }
      auto r = tpp::planner::plan_capacity(*model, *cluster, req, *workload, co,
                                           {target_rate, target_concurrency});
      if (!r) return fail(r.error());
      if (json) std::cout << tpp::planner::capacity_json(*r).dump(2) << "\n";
      else std::cout << tpp::planner::capacity_text(*r, *cluster);
      return r->best ? 0 : 2;
    }
  }
  if (!search_mode) {
    for (const char* flag : {"--objective", "--top"})
      if (app.count(flag))
        return fail(std::string("tpp-plan: error: ") + flag +
                    " applies to the search; it does nothing with --tp/--pp/--dp");
    if (all_engines)
      return fail("tpp-plan: error: --engine all compares the engines in the search; give one "
                  "engine with --tp/--pp/--dp");
    return report_split(run, workload);
  }
  if (so.engine == tpp::sim::Engine::kV0)
    return fail("tpp-plan: error: the search simulates vLLM's V1 engine; drop --vllm-engine v0");
  tpp::planner::SearchOptions sopt;
  sopt.objective = *tpp::planner::parse_objective(objective);
  if (sopt.objective == tpp::planner::Objective::kGoodput && slo.slo.ttft_ms <= 0 &&
      slo.slo.tpot_ms <= 0)
    return fail("tpp-plan: error: --objective goodput needs SLOs; drop --no-slo");
  sopt.allow_cross_node_tp = cross_node_tp;
  sopt.disaggregation = disagg;
  if (all_engines)
    sopt.engines = {tpp::sim::Framework::kVllm, tpp::sim::Framework::kSglang, tpp::sim::Framework::kTrtllm};
  sopt.slo = slo;
  auto found = tpp::planner::search(*model, *cluster, req, *workload, sopt);
  if (!found) return fail(found.error());
  return report_search(run, *workload, *found, top);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_main(argc, argv);
  } catch (const std::bad_alloc&) {
    // The workload check refuses what this host cannot hold; this is the last line of defence.
    return fail("tpp-plan: error: out of memory (a smaller workload, num_requests, would fit)");
  } catch (const std::exception& e) {  // a bug, reported as one line rather than an abort
    return fail(std::string("tpp-plan: error: internal error: ") + e.what());
  }
}
