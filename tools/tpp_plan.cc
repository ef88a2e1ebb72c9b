// tpp-plan: for a model on a cluster, the memory of every TP/PP split (or of one, with
// --tp/--pp): weights, activations, KV-cache blocks, as vLLM would allocate them.
// Exit codes: 0 success; 2 bad input, bad flags, or a requested split that does not fit
// (one line on stderr).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/data_path.h"
#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "planner/memory_report.h"
#include "planner/plan_memory.h"
#include "planner/search.h"
#include "planner/search_report.h"
#include "planner/summary.h"

namespace {

constexpr int kExitBadInput = 2;

int fail(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  return kExitBadInput;
}

int fail(const tpp::Error& e) { return fail(e.file.empty() ? "tpp-plan: " + e.str() : e.str()); }

// "31,30" -> {31, 30}; empty on a malformed list (reported by the caller).
bool parse_partition(const std::string& s, std::vector<std::int64_t>* out) {
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      std::size_t used = 0;
      long long v = std::stoll(item, &used);
      if (used != item.size()) return false;
      out->push_back(v);
    } catch (...) {
      return false;
    }
  }
  return !out->empty();
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

// Prints the search's result; exit 2 when nothing can be recommended.
int report_search(const tpp::model::Model& m, const tpp::hw::Cluster& c,
                  const tpp::sim::Workload& w, const tpp::planner::SearchResult& r,
                  const std::string& format, std::size_t top, const std::string& output_file,
                  const tpp::planner::MemoryRequest& req) {
  if (format == "json") {
    nlohmann::json j;
    j["tpp_version"] = TPP_VERSION;
    j["model"] = tpp::planner::model_json(m);
    j["cluster"] = tpp::planner::cluster_json(c);
    if (!r.candidates.empty())
      j["serving"] = tpp::planner::serving_json(r.candidates.front().memory.options);
    j["workload"] = {{"name", w.name}, {"source", w.file}, {"requests", w.requests.size()},
                     {"seed", w.seed}};
    j["search"] = {{"candidates", r.candidates.size()}, {"simulated", r.simulated},
                   {"seconds", r.seconds}};
    j["plans"] = tpp::planner::candidates_json(m, c, r);
    j["reasons"] = r.reasons;
    std::cout << j.dump(2) << "\n";
  } else {
    const bool md = format == "markdown";
    if (!md) std::cout << tpp::planner::model_text(m) << "\n" << tpp::planner::cluster_text(c) << "\n";
    std::cout << "searched " << r.candidates.size() << " splits, simulated " << r.simulated
              << " with workload " << w.name << " (" << w.requests.size() << " requests, seed "
              << w.seed << "), in " << fmt_rate(std::round(r.seconds * 100) / 100) << " s\n"
              << tpp::planner::search_table(r, top, md) << "\n"
              << tpp::planner::recommendation_text(m, c, r);
  }
  if (!r.recommended) {
    // The smallest cluster of this GPU that would hold the model.
    auto opts = tpp::sim::resolve_options(m, c.gpu, req.serving);
    std::string need = "no number of these GPUs up to 1024 holds it";
    if (opts) {
      auto p = tpp::sim::smallest_fitting_split(tpp::sim::as_loaded(m, req.serving), c.gpu, 1024,
                                                c.gpus_per_node, *opts, req.expert_parallel);
      if (p)
        need = "it needs at least " + std::to_string(p->tp * p->pp) + " " + c.gpu.name +
               " GPUs (tp=" + std::to_string(p->tp) + ", pp=" + std::to_string(p->pp) + ")";
    }
    bool any_fit = false;
    for (const auto& cand : r.candidates) any_fit = any_fit || cand.memory.fits;
    return fail("tpp-plan: error: " + m.name +
                (any_fit ? " fits, but no split meets the SLOs on " + c.name
                         : " does not fit on any split of " + c.name) +
                "; " + need);
  }
  if (!output_file.empty()) {
    std::ofstream out(output_file);
    out << tpp::planner::plan_file_json(m, c, w, r.candidates[*r.recommended]).dump(2) << "\n";
    if (!out) return fail("tpp-plan: error: cannot write " + output_file);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tpp-plan: which TP/PP split to run a model with on a cluster, and the memory "
               "and vLLM KV-cache blocks each GPU gets",
               "tpp-plan"};
  std::string model_arg, cluster_arg, format = "text", engine = "v1", kv_dtype, quant, partition;
  std::string workload_arg, objective = "throughput", output_file;
  tpp::sim::Slo slo;
  bool cross_node_tp = false;
  std::size_t top = 10;
  tpp::planner::MemoryRequest req;
  std::int64_t tp = 0, pp = 0, dp = 0;
  auto& so = req.serving;
  app.add_option("--model", model_arg,
                 "model: tpp YAML, a Hugging Face config.json (or its directory), or a catalog "
                 "name such as r1")
      ->required();
  app.add_option("--cluster", cluster_arg, "cluster YAML, or a catalog name such as a100x16")
      ->required();
  app.add_option("--format", format, "output format (text and table are the same)")
      ->check(CLI::IsMember({"text", "table", "json", "markdown"}));
  app.add_option("--objective", objective,
                 "what the search maximises: throughput (output tokens/s per GPU), latency "
                 "(TPOT p50), ttft (TTFT p50), goodput (requests/s per GPU within the SLOs), "
                 "cost (output tokens per dollar)")
      ->check(CLI::IsMember({"throughput", "latency", "ttft", "goodput", "cost"}));
  app.add_flag("--allow-cross-node-tp", cross_node_tp, "let TP groups span nodes");
  app.add_option("--top", top, "ranked splits to show (0: all)")->capture_default_str();
  app.add_option("-o,--output", output_file, "write the recommended plan (JSON) for the executor");
  app.add_option("--tp,--tensor-parallel-size", tp, "evaluate this tensor-parallel size only");
  app.add_option("--pp,--pipeline-parallel-size", pp, "evaluate this pipeline-parallel size only");
  app.add_option("--dp,--data-parallel-size", dp, "data-parallel replicas (with --tp/--pp)");
  app.add_flag("--enable-expert-parallel", req.expert_parallel,
               "split whole experts over tp x dp ranks instead of each expert over tp");
  app.add_option("--pp-layer-partition", partition,
                 "layers per PP stage, e.g. 31,30 (vLLM's VLLM_PP_LAYER_PARTITION, also read "
                 "from the environment)");
  app.add_option("--gpu-memory-utilization", so.gpu_memory_utilization,
                 "fraction of GPU memory vLLM may use")
      ->capture_default_str();
  app.add_option("--max-model-len", so.max_model_len, "default: the model's context length");
  app.add_option("--block-size", so.block_size, "KV-cache block in tokens (default 16)");
  app.add_option("--kv-cache-dtype", kv_dtype, "auto, bfloat16, float16, fp8, fp8_e4m3, fp8_e5m2")
      ->check(CLI::IsMember({"auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2"}));
  app.add_option("--max-num-seqs", so.max_num_seqs, "default: vLLM's for the GPU and engine");
  app.add_option("--max-num-batched-tokens", so.max_num_batched_tokens,
                 "default: vLLM's for the GPU and engine");
  app.add_flag("--enforce-eager", so.enforce_eager, "no CUDA graphs");
  app.add_flag("--count-cuda-graphs", so.count_cuda_graphs,
               "deduct CUDA-graph memory from the KV cache "
               "(vLLM's VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1)");
  app.add_option("--quantization", quant, "fp8 on an unquantized checkpoint, or the checkpoint's")
      ->check(CLI::IsMember({"fp8", "awq", "gptq", "compressed-tensors"}));
  app.add_option("--swap-space", so.swap_space_gib, "V0 CPU swap space per GPU, GiB")
      ->capture_default_str();
  app.add_option("--workload", workload_arg,
                 "serve this workload on every split that fits and predict TTFT, TPOT, "
                 "throughput (YAML, or a catalog name such as chat)");
  app.add_option("--slo-ttft-ms", slo.ttft_ms, "TTFT objective for goodput, ms");
  app.add_option("--slo-tpot-ms", slo.tpot_ms, "TPOT objective for goodput, ms");
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
  if (app.count("--tp")) req.tp = tp;
  if (app.count("--pp")) req.pp = pp;
  if (app.count("--dp")) req.dp = dp;
  so.engine = engine == "v0" ? tpp::sim::Engine::kV0 : tpp::sim::Engine::kV1;
  if (!kv_dtype.empty()) so.kv_cache_dtype = tpp::model::parse_kv_cache_dtype(kv_dtype);
  if (!quant.empty())
    so.quantization = quant == "fp8"    ? tpp::model::QuantMethod::kFp8
                      : quant == "awq"  ? tpp::model::QuantMethod::kAwq
                      : quant == "gptq" ? tpp::model::QuantMethod::kGptq
                                        : tpp::model::QuantMethod::kCompressedTensors;
  if (partition.empty())
    if (const char* env = std::getenv("VLLM_PP_LAYER_PARTITION")) partition = env;
  if (!partition.empty() && !parse_partition(partition, &req.pp_layer_partition))
    return fail("tpp-plan: error: --pp-layer-partition must be comma-separated layer counts, "
                "got '" + partition + "'");

  auto model_path = tpp::resolve_input(model_arg, tpp::Catalog::kModels);
  if (!model_path) return fail(model_path.error());
  auto model = tpp::model::load_model(*model_path);
  if (!model) return fail(model.error());
  auto cluster = tpp::hw::load_cluster(cluster_arg);
  if (!cluster) return fail(cluster.error());
  if (app.count("--slo-ttft-ms") && !(slo.ttft_ms > 0))
    return fail("tpp-plan: error: --slo-ttft-ms must be positive");
  if (app.count("--slo-tpot-ms") && !(slo.tpot_ms > 0))
    return fail("tpp-plan: error: --slo-tpot-ms must be positive");
  std::optional<tpp::sim::Workload> workload;
  if (!workload_arg.empty()) {
    auto w = tpp::sim::load_workload(workload_arg);
    if (!w) return fail(w.error());
    workload = *w;
  }
  const bool search_mode = !req.tp && !req.pp && !req.dp;
  if (search_mode) {
    if (!workload) {  // the documented default workload of the search
      auto w = tpp::sim::load_workload("chat");
      if (!w) return fail(w.error());
      workload = *w;
    }
    if (so.engine == tpp::sim::Engine::kV0)
      return fail("tpp-plan: error: the search simulates vLLM's V1 engine; drop --vllm-engine v0");
    if (objective == "goodput" && slo.ttft_ms <= 0 && slo.tpot_ms <= 0)
      return fail("tpp-plan: error: --objective goodput needs --slo-ttft-ms or --slo-tpot-ms");
    tpp::planner::SearchOptions sopt;
    sopt.objective = *tpp::planner::parse_objective(objective);
    sopt.allow_cross_node_tp = cross_node_tp;
    sopt.slo = slo;
    auto found = tpp::planner::search(*model, *cluster, req, *workload, sopt);
    if (!found) return fail(found.error());
    return report_search(*model, *cluster, *workload, *found, format, top, output_file, req);
  }
  auto result = tpp::planner::plan_memory(*model, *cluster, req);
  if (!result) return fail(result.error());
  if (workload) {
    if (so.engine == tpp::sim::Engine::kV0)
      return fail("tpp-plan: error: --workload simulates vLLM's V1 engine; drop --vllm-engine v0");
    tpp::planner::simulate_performance(*model, *cluster, req, *workload, slo, &*result);
  }

  const auto& plans = result->plans;
  bool ok = false;
  for (const auto& p : plans) ok = ok || p.fits;
  if (format == "markdown") format = "text";
  if (format == "json") {
    nlohmann::json j;
    j["tpp_version"] = TPP_VERSION;
    j["model"] = tpp::planner::model_json(*model);
    j["cluster"] = tpp::planner::cluster_json(*cluster);
    j["serving"] = tpp::planner::serving_json(result->options);
    j["plans"] = nlohmann::json::array();
    for (std::size_t k = 0; k < plans.size(); ++k) {
      nlohmann::json pj = tpp::planner::plan_json(plans[k]);
      if (k < result->performance.size() && result->performance[k])
        pj["performance"] = tpp::planner::performance_json(*result->performance[k]);
      j["plans"].push_back(pj);
    }
    if (workload)
      j["workload"] = {{"name", workload->name},
                       {"source", workload->file},
                       {"requests", workload->requests.size()},
                       {"arrival", tpp::sim::arrival_name(workload->arrival)},
                       {"rate_per_s", workload->rate_per_s},
                       {"concurrency", workload->concurrency},
                       {"seed", workload->seed}};
    if (result->smallest_fit)
      j["smallest_fit"] = {{"tp", result->smallest_fit->tp}, {"pp", result->smallest_fit->pp}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << tpp::planner::model_text(*model) << "\n"
              << tpp::planner::cluster_text(*cluster) << "\n"
              << tpp::planner::serving_text(result->options)
              << tpp::planner::memory_table(plans, result->single);
    if (workload)
      std::cout << "\nserving " << workload->name << " (" << workload->requests.size()
                << " requests, " << tpp::sim::arrival_name(workload->arrival) << " arrivals"
                << (workload->arrival == tpp::sim::ArrivalProcess::kClosedLoop
                        ? ", concurrency " + std::to_string(workload->concurrency)
                        : ", " + fmt_rate(workload->rate_per_s) + " requests/s")
                << ", seed " << workload->seed << ") on vLLM V1, per split that fits:\n"
                << tpp::planner::performance_table(plans, result->performance, result->single);
  }
  if (ok) return 0;
  std::string smallest = result->smallest_fit
                             ? "smallest split that fits: " + split_text(*result->smallest_fit)
                             : "no split of the cluster's " +
                                   std::to_string(cluster->total_gpus()) + " GPUs fits";
  if (result->single) return fail("tpp-plan: error: " + plans.front().why_not + "; " + smallest);
  return fail("tpp-plan: error: no split of " + cluster->name + " fits " + model->name + " (" +
              plans.front().why_not + "); " + smallest);
}
