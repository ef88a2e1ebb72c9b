// tpp-plan end to end, as a user runs it: from another directory, with catalog names, text and
// JSON output, and bad input that must give exactly one line on stderr and exit code 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <sys/wait.h>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_util.h"

namespace tpp {
namespace {

using test::CliRun;
using test::expect_one_line_error;
using test::lines;
using test::tpp_plan;

TEST(Cli, HelpAndVersion) {
  CliRun h = tpp_plan("--help");
  EXPECT_EQ(h.code, 0);
  EXPECT_NE(h.out.find("--model"), std::string::npos);
  EXPECT_NE(h.out.find("--cluster"), std::string::npos);
  CliRun v = tpp_plan("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_EQ(v.out, "tpp-plan 0.1.0\n");
}

TEST(Cli, MainJobByCatalogNameFromAnyDirectory) {
  CliRun r = tpp_plan("--model r1.yaml --cluster a100x16.yaml");
  ASSERT_EQ(r.code, 0) << r.err;
  // stderr holds nothing but progress lines (a search over a second prints them, e.g. under
  // the sanitizers).
  std::stringstream err(r.err);
  for (std::string line; std::getline(err, line);)
    EXPECT_EQ(line.rfind("tpp-plan: searched ", 0), 0u) << line;
  EXPECT_NE(r.out.find("671,026,419,200"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("16 nodes x 8 A100-SXM4-80GB = 128 GPUs"), std::string::npos) << r.out;
}

TEST(Cli, JsonContract) {
  CliRun r = tpp_plan("--model r1 --cluster a100x16 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model"]["name"], "DeepSeek-R1");
  EXPECT_EQ(j["model"]["params_total"], 671'026'419'200);
  EXPECT_GT(j["model"]["weight_bytes"].get<std::int64_t>(), 671'026'419'200);  // fp8 + bf16 parts
  EXPECT_EQ(j["cluster"]["nodes"], 16);
  EXPECT_EQ(j["cluster"]["gpus_per_node"], 8);
  EXPECT_EQ(j["cluster"]["gpu"]["name"], "A100-SXM4-80GB");
  EXPECT_EQ(j["cluster"]["gpu"]["memory_bytes"], 84'986'665'370);  // 79.15 GiB
}

TEST(Cli, HuggingFaceConfigPath) {
  CliRun r = tpp_plan("--model '" + test::hf("Qwen--Qwen3-30B-A3B.json") +
                   "' --cluster h100x1 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model"]["params_total"], 30'532'122'624);
  EXPECT_EQ(j["model"]["architecture"], "Qwen3MoeForCausalLM");
}

TEST(Cli, BadInputIsOneLineAndExitTwo) {
  std::string bad = test::write_temp("bad.yaml", "name: x\nhiden_size: 4\n");
  CliRun r = tpp_plan("--model '" + bad + "' --cluster a100x16");
  expect_one_line_error(
      r, bad + ":2:1: error: unknown key 'hiden_size' in model (did you mean 'hidden_size'?)");

  CliRun missing = tpp_plan("--model r2 --cluster a100x16");
  EXPECT_EQ(missing.code, 2);
  EXPECT_EQ(lines(missing.err), 1);
  EXPECT_EQ(missing.err.rfind("r2: error: no such file, and no entry of that name in the models "
                              "catalog (available: ", 0),
            0u)
      << missing.err;

  CliRun cluster = tpp_plan("--model r1 --cluster '" + test::write_temp("c.yaml", "nodes: [") + "'");
  EXPECT_EQ(cluster.code, 2);
  EXPECT_EQ(lines(cluster.err), 1) << cluster.err;

  CliRun flag = tpp_plan("--model r1 --cluster a100x16 --tp");
  EXPECT_EQ(flag.code, 2);
  EXPECT_EQ(lines(flag.err), 1) << flag.err;

  CliRun nomodel = tpp_plan("--cluster a100x16");
  expect_one_line_error(nomodel, "tpp-plan: error: --model is required (see --help)");

  CliRun fmt = tpp_plan("--model r1 --cluster a100x16 --format xml");
  EXPECT_EQ(fmt.code, 2);
  EXPECT_EQ(lines(fmt.err), 1) << fmt.err;

  std::string binary = test::write_temp("b.json", std::string("{\0}", 3));
  expect_one_line_error(tpp_plan("--model '" + binary + "' --cluster a100x16"),
                        binary + ":1:2: error: JSON file is binary (NUL byte at offset 1)");
}

}  // namespace
}  // namespace tpp

namespace tpp {
namespace {

using test::CliRun;
using test::expect_one_line_error;
using test::lines;
using test::tpp_plan;

TEST(CliMemory, OneSplitJsonFields) {
  CliRun r = tpp_plan("--model r1 --cluster h20x2 --tp 8 --pp 2 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["plans"].size(), 1u);
  const auto& p = j["plans"][0];
  EXPECT_EQ(p["tp"], 8);
  EXPECT_EQ(p["pp"], 2);
  EXPECT_EQ(p["dp"], 1);
  EXPECT_EQ(p["fits"], true);
  for (const char* k : {"total_bytes", "weights_bytes", "activation_peak_bytes",
                        "non_torch_bytes", "cuda_graph_bytes", "kv_cache_bytes",
                        "kv_bytes_per_token", "gpu_blocks", "block_size", "kv_cache_tokens",
                        "max_concurrency"}) {
    EXPECT_TRUE(p["memory"].contains(k)) << k;
    EXPECT_TRUE(p["memory"]["stages"][0].contains(k)) << k;
  }
  EXPECT_EQ(p["memory"]["stages"].size(), 2u);
  EXPECT_EQ(p["memory"]["stages"][0]["kv_bytes_per_token"], 31 * 1152);
  EXPECT_EQ(p["memory"]["stages"][1]["kv_bytes_per_token"], 30 * 1152);
  EXPECT_EQ(p["memory"]["block_size"], 16);
  EXPECT_EQ(j["serving"]["max_model_len"], 163840);
}

TEST(CliMemory, EverySplitOfTheCluster) {
  CliRun r = tpp_plan("--model llama-3.1-8b --cluster h100x2 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["plans"].size(), 10u);
  int all = 0, one = 0;
  for (const auto& p : j["plans"]) {
    const int gpus = p["tp"].get<int>() * p["pp"].get<int>() * p["dp"].get<int>();
    EXPECT_LE(gpus, 16);
    EXPECT_LE(p["tp"].get<int>(), 8);  // TP stays inside a node by default
    all += 16 - gpus < p["tp"].get<int>() * p["pp"].get<int>();  // as many replicas as fit
    one += p["dp"].get<int>() == 1;
    EXPECT_TRUE(p["memory"].contains("gpu_blocks"));
  }
  EXPECT_GT(all, 0);
  EXPECT_GT(one, 0);
}

TEST(CliMemory, BadSplitsAndOptionsAreOneLine) {
  expect_one_line_error(tpp_plan("--model llama-3.1-8b --cluster h100x1 --tp 3"),
                        "tpp-plan: error: 32 attention heads are not divisible by tp=3");
  expect_one_line_error(tpp_plan("--model llama-3.1-8b --cluster h100x1 --pp 100"),
                        "tpp-plan: error: pp=100 exceeds the 32 layers");
  expect_one_line_error(tpp_plan("--model llama-3.1-8b --cluster h100x1 --tp 4 --pp 4"),
                        "tpp-plan: error: tp=4 x pp=4 x dp=1 needs 16 GPUs; the cluster h100x1 "
                        "has 8");
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1 --gpu-memory-utilization 1.5"),
      "tpp-plan: error: --gpu-memory-utilization must be in (0, 1], got 1.5");
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1 --pp 2 --pp-layer-partition 20,10"),
      "tpp-plan: error: the PP layer partition adds up to 30 layers, the model has 32");
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1 --pp 2 --pp-layer-partition 20,x"),
      "tpp-plan: error: --pp-layer-partition must be comma-separated layer counts from 1 to "
      "4096, got '20,x'");
}

TEST(CliMemory, TooLittleMemorySaysWhyAndWhatFits) {
  CliRun r = tpp_plan("--model r1 --cluster h100x1 --tp 8");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err,
            "tpp-plan: error: weights need 79.31 GiB per GPU at tp=8, pp=1; the GPU offers "
            "71.26 GiB at utilization 0.90; no split of the cluster's 8 GPUs fits\n");
  EXPECT_NE(r.out.find("no: weights need"), std::string::npos);  // the table still shows it
  CliRun l = tpp_plan("--model llama-3.1-70b --cluster h100x1 --tp 1 --max-model-len 8192");
  EXPECT_EQ(l.code, 2);
  EXPECT_EQ(lines(l.err), 1);
  EXPECT_NE(l.err.find("smallest split that fits: tp=2, pp=1 (2 GPUs)"), std::string::npos)
      << l.err;
}

}  // namespace
}  // namespace tpp

namespace tpp {
namespace {

using test::CliRun;
using test::expect_one_line_error;
using test::lines;
using test::tpp_plan;

TEST(CliPerformance, WorkloadOnOneSplitTextAndJson) {
  CliRun t = tpp_plan("--model r1.yaml --cluster h100x2.yaml --workload chat.yaml --tp 8 --pp 2");
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("TTFT p50/p99"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("stage 1: compute"), std::string::npos) << t.out;
  CliRun j = tpp_plan("--model r1 --cluster h100x2 --workload chat --tp 8 --pp 2 --format json");
  ASSERT_EQ(j.code, 0) << j.err;
  auto doc = nlohmann::json::parse(j.out);
  const auto& perf = doc["plans"][0]["performance"];
  for (const char* k : {"throughput_requests_per_s", "output_tokens_per_s", "total_tokens_per_s"})
    EXPECT_GT(perf[k].get<double>(), 0) << k;
  for (const char* k : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"})
    for (const char* q : {"p50", "p90", "p99"}) EXPECT_GT(perf[k][q].get<double>(), 0) << k << q;
  ASSERT_EQ(perf["breakdown"].size(), 2u);
  for (const char* k : {"compute", "tp_comm", "pp_comm", "bubble"})
    EXPECT_TRUE(perf["breakdown"][0].contains(k)) << k;
  EXPECT_GT(perf["breakdown"][0]["pp_comm"].get<double>(), 0);
  EXPECT_EQ(perf["breakdown"][1]["pp_comm"].get<double>(), 0);
  EXPECT_EQ(doc["workload"]["name"], "chat");
  // Deterministic: the same command prints the same bytes.
  EXPECT_EQ(tpp_plan("--model r1 --cluster h100x2 --workload chat --tp 8 --pp 2 --format json").out,
            j.out);
}

TEST(CliPerformance, BadWorkloadIsOneLine) {
  std::string bad = test::write_temp(
      "w.yaml",
      "name: w\nnum_requests: 0\narrival: {process: poisson, rate_per_s: 1}\n"
      "input_tokens: {distribution: fixed, value: 10}\n"
      "output_tokens: {distribution: fixed, value: 10}\n");
  CliRun r = tpp_plan("--model llama-3.1-8b --cluster h100x1 --workload '" + bad + "'");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_EQ(r.err.rfind(bad + ":2:1: error: ", 0), 0u) << r.err;
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1 --workload chat --slo-ttft-ms 0"),
      "tpp-plan: error: --slo-ttft-ms must be a positive number of ms");
}

}  // namespace
}  // namespace tpp

namespace tpp {
namespace {

using test::CliRun;
using test::expect_one_line_error;
using test::lines;
using test::tpp_plan;

TEST(CliSearch, RankedTableRecommendationAndLaunch) {
  CliRun r = tpp_plan("--model llama-3.1-8b --cluster h100x1 --top 3");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("recommended: "), std::string::npos);
  EXPECT_NE(r.out.find("vllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("python3 -m sglang.launch_server"), std::string::npos);
  EXPECT_NE(r.out.find("(top 3 shown)"), std::string::npos);
  CliRun md = tpp_plan("--model llama-3.1-8b --cluster h100x1 --format markdown --top 2");
  ASSERT_EQ(md.code, 0) << md.err;
  EXPECT_NE(md.out.find("| rank | tp | pp |"), std::string::npos) << md.out;
}

TEST(CliSearch, JsonAndPlanFile) {
  std::string plan = test::write_temp("plan.json", "");
  CliRun r = tpp_plan("--model r1 --cluster h100x2 --format json -o '" + plan + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  int recommended = 0;
  for (const auto& p : j["plans"]) {
    EXPECT_TRUE(p.contains("rank") && p.contains("rejected_reason") && p.contains("recommended"));
    if (p["recommended"].get<bool>()) {
      ++recommended;
      EXPECT_EQ(p["rank"], 1);
      EXPECT_TRUE(p["launch"].contains("vllm") && p["launch"].contains("sglang"));
      EXPECT_TRUE(p.contains("performance"));
    }
  }
  EXPECT_EQ(recommended, 1);
  std::ifstream in(plan);
  auto f = nlohmann::json::parse(in);
  EXPECT_EQ(f["model"]["name"], "DeepSeek-R1");
  EXPECT_LE(f["split"]["tp"].get<int>() * f["split"]["pp"].get<int>(), 16);
  EXPECT_TRUE(f["predicted"].contains("performance"));
  EXPECT_TRUE(f["serving"].contains("max_num_batched_tokens"));
  EXPECT_NE(f["launch"]["vllm"].get<std::string>().find("vllm serve deepseek-ai/DeepSeek-R1"),
            std::string::npos);
}

TEST(CliSearch, BadInputAndNothingFits) {
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1 --objective goodput --no-slo"),
      "tpp-plan: error: --objective goodput needs SLOs; drop --no-slo");
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1 --slo-tpot-ms 0"),
      "tpp-plan: error: --slo-tpot-ms must be a positive number of ms");
  CliRun big = tpp_plan("--model r1 --cluster h100x1");
  EXPECT_EQ(big.code, 2);
  EXPECT_EQ(big.err,
            "tpp-plan: error: DeepSeek-R1 does not fit on any split of h100x1; it needs at least "
            "11 H100-SXM5-80GB GPUs (tp=1, pp=11)\n");
}

}  // namespace
}  // namespace tpp

// tpp-profile's backend choice: --backend cuda where there is no GPU (CUDA_VISIBLE_DEVICES
// hides any, so this holds on a GPU machine too), a bad backend, and the CUDA profile's writer
// fed an earlier --json (--from-json: no device needed).
#include "hardware_profiles/hardware.h"

namespace tpp {
namespace {

using test::CliRun;
using test::lines;

CliRun tpp_profile(const std::string& args, const std::string& prefix = "") {
  std::filesystem::path dir = std::filesystem::path(test::write_temp("x", "")).parent_path();
  std::string cmd = "cd '" + dir.string() + "' && " + prefix + " '" + TPP_PROFILE + "' " + args +
                    " >out.txt 2>err.txt";
  int status = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = test::slurp(dir / "out.txt");
  r.err = test::slurp(dir / "err.txt");
  return r;
}

TEST(CliProfile, CudaBackendWithoutAGpuIsOneLine) {
  for (const std::string args : {"--backend cuda", "--backend cuda -o p.yaml --model tiny-llama"}) {
    CliRun r = tpp_profile(args, "CUDA_VISIBLE_DEVICES=");
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_EQ(r.out, "") << args;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_EQ(r.err.rfind("tpp-profile: error: --backend cuda: ", 0), 0u) << r.err;
    EXPECT_TRUE(r.err.find("no CUDA device visible") != std::string::npos ||
                r.err.find("built without CUDA") != std::string::npos)
        << r.err;
  }
}

TEST(CliProfile, BadBackendAndCudaOptionsOnCpuAreRefused) {
  CliRun bogus = tpp_profile("--backend bogus -o p.yaml");
  EXPECT_EQ(bogus.code, 2);
  EXPECT_EQ(bogus.out, "");
  EXPECT_EQ(lines(bogus.err), 1) << bogus.err;
  EXPECT_EQ(bogus.err.rfind("tpp-profile: error: --backend: ", 0), 0u) << bogus.err;
  EXPECT_NE(bogus.err.find("bogus"), std::string::npos) << bogus.err;
  test::expect_one_line_error(tpp_profile("--gpu H100-SXM5-80GB -o p.yaml"),
                              "tpp-profile: error: --gpu is for --backend cuda");
}

// A measurement as tpp-profile --json writes it (figures of the H100's order), rewritten into
// a cluster profile that the loader reads back with the efficiencies derived from it.
TEST(CliProfile, CudaProfileFromJsonLoadsAsACluster) {
  nlohmann::json gemm = nlohmann::json::array(), att = nlohmann::json::array();
  for (std::int64_t m : {1, 16, 256, 4096})
    for (std::int64_t n : {4096, 14336})
      gemm.push_back({{"m", m}, {"n", n}, {"k", 4096},
                      {"seconds", std::max(2.0 * n * 4096 / 2.4e12, 2.0 * m * n * 4096 / 7e14)}});
  for (auto [s, c] : {std::pair{1, 512}, std::pair{64, 2048}})
    att.push_back({{"seqs", s}, {"context", c}, {"kv_bytes", s * c * 4096.0},
                   {"seconds", s * c * 4096.0 / (s == 1 ? 4e11 : 2.4e12)}});
  auto ar = [](double us) {
    nlohmann::json a = nlohmann::json::array();
    for (std::int64_t b : {1024, 4096, 16384})
      a.push_back({{"size", b}, {"count", b / 4}, {"type", "float"}, {"time_us", us},
                   {"algbw_GBps", b / us / 1e3}, {"busbw_GBps", b / us / 1e3}});
    return a;
  };
  nlohmann::json raw = {
      {"device_name", "NVIDIA H100 80GB HBM3"}, {"sm_count", 132}, {"compute_capability", 9.0},
      {"devices", 2}, {"memory_total_GiB", 79.18}, {"driver_version", 13000},
      {"runtime_version", 13000}, {"gemm_shapes", "2 weight shapes"}, {"gemm_bf16", gemm},
      {"gemm_fp8", nlohmann::json::array()}, {"fp8_note", "not asked for"}, {"copy_GBps", 2980.0},
      {"read_GBps", 3100.0}, {"gemm_memory_GBps", 2340.0}, {"launch_us", 2.1},
      {"launch_graph_us", 0.8},
      {"rmsnorm", {{"rows", 4096}, {"cols", 4096}, {"GBps", 2800.0}}},
      {"silu_mul", {{"rows", 1024}, {"inter", 14336}, {"GBps", 2900.0}}},
      {"attention_heads", {32, 8, 128}}, {"attention", att}, {"collective_ranks", 2},
      {"collectives_note", ""}, {"nccl_version", "2.27.3"}, {"all_reduce", ar(9.5)},
      {"send_recv", ar(6.0)}};
  const std::string in = test::write_temp("raw.json", nlohmann::json{{"raw", raw}, {"host", "n1"}}.dump());
  const std::string dir = std::filesystem::path(in).parent_path().string();
  CliRun r = tpp_profile("--backend cuda --from-json '" + in + "' -o '" + dir +
                         "/gpu.yaml' --json '" + dir + "/gpu.json' --name lab");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("H100-SXM5-80GB"), std::string::npos) << r.out;  // picked by the name
  auto c = hw::load_cluster(dir + "/gpu.yaml");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->name, "lab");
  EXPECT_EQ(c->gpus_per_node, 2);
  EXPECT_EQ(c->gpu.name, "H100-SXM5-80GB");
  EXPECT_NEAR(c->gpu.memory_driver_GiB.value, 79.18, 1e-3);
  ASSERT_TRUE(c->efficiency);
  EXPECT_NEAR(c->efficiency->memory, 2980.0 / 3350, 1e-3);
  EXPECT_NEAR(c->efficiency->launch_graph_us, 0.8, 1e-6);
  EXPECT_EQ(c->efficiency->gemm.size(), 4u);
  EXPECT_EQ(c->efficiency->gemm_by_size.size(), 8u);  // two shapes: by size too
  EXPECT_NEAR(c->efficiency->attention_decode, 2400.0 / 2980, 1e-3);  // the 64 x 2048 batch
  ASSERT_EQ(c->collectives.size(), 2u);
  EXPECT_EQ(c->collectives[0].ranks, 2);
  auto j = nlohmann::json::parse(test::slurp(dir + "/gpu.json"));
  EXPECT_NEAR(j["of_datasheet_hbm"]["rmsnorm"].get<double>(), 2800.0 / 3350, 1e-6);
  EXPECT_NEAR(j["of_datasheet_hbm"]["attention_decode_64x2048"].get<double>(), 2400.0 / 3350, 1e-6);
  EXPECT_EQ(j["raw"], raw);
}

}  // namespace
}  // namespace tpp
