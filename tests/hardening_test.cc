// What a new user or an adversary tried against tpp-plan, and what it must do: refuse special
// files and oversized inputs before reading them, refuse sizes vLLM refuses instead of taking
// them for defaults, never overflow, write the plan it was asked for, say why nothing can be
// recommended, and never print a file's contents or an unquoted name into a shell command.
// One test per case of the hardening issue; every refusal is one line and exit 2.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "cli_util.h"
#include "common/doc.h"
#include "model/load.h"
#include "planner/launch.h"
#include "simulator/serving.h"
#include "simulator/workload.h"

namespace tpp {
namespace {

using test::CliRun;
using test::expect_one_line_error;
using test::lines;
using test::tpp_plan;

namespace fs = std::filesystem;

std::string scratch() { return fs::path(test::write_temp("x", "")).parent_path().string(); }

// ---- Hangs and unbounded resources

TEST(Hardening, TraceThatIsAFifoOrADeviceIsRefusedBeforeReading) {
  const std::string dir = scratch();
  fs::remove(dir + "/pipe");
  ASSERT_EQ(mkfifo((dir + "/pipe").c_str(), 0600), 0);
  for (const char* trace : {"pipe", "/dev/zero", "/dev/urandom"}) {
    test::write_temp("w.yaml", std::string("name: w\ntrace: ") + trace + "\n");
    CliRun r = tpp_plan("--model llama-3.1-8b --cluster h100x1 --workload w.yaml");
    EXPECT_EQ(r.code, 2) << trace;
    EXPECT_EQ(lines(r.err), 1) << r.err;
    const std::string kind = std::string(trace) == "pipe" ? "is a FIFO (named pipe)"
                                                          : "is a character device";
    EXPECT_EQ(r.err, std::string("w.yaml:2:8: error: field 'trace' in workload names '") +
                         trace + "': " + kind + ", not a trace file\n");
  }
}

TEST(Hardening, OversizedModelFileIsRefusedByItsSizeAlone) {
  // A sparse 2 GiB file: refused from its size, so it is never read (or even paged in).
  std::string big = scratch() + "/big.yaml";
  ASSERT_EQ(truncate(test::write_temp("big.yaml", "x").c_str(), off_t{2} << 30), 0);
  expect_one_line_error(tpp_plan("--model big.yaml --cluster h100x1"),
                        "big.yaml: error: YAML file is larger than 4 MiB (2147483648 bytes)");
  auto m = model::load_model(big);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().message, "YAML file is larger than 4 MiB (2147483648 bytes)");
}

TEST(Hardening, SpecialFilesAsTheModelSayWhatTheyAre) {
  const std::string dir = scratch();
  for (const char* f : {"fifo.yaml", "loop-a", "loop-b", "dangling.yaml"}) fs::remove(dir + "/" + f);
  ASSERT_EQ(mkfifo((dir + "/fifo.yaml").c_str(), 0600), 0);
  fs::create_symlink("loop-b", dir + "/loop-a");
  fs::create_symlink("loop-a", dir + "/loop-b");
  fs::create_symlink("missing.yaml", dir + "/dangling.yaml");
  const std::string role = ", not a model file or a directory holding config.json";
  expect_one_line_error(tpp_plan("--model /dev/null --cluster h100x1"),
                        "/dev/null: error: is a character device" + role);
  expect_one_line_error(tpp_plan("--model fifo.yaml --cluster h100x1"),
                        "fifo.yaml: error: is a FIFO (named pipe)" + role);
  expect_one_line_error(tpp_plan("--model loop-a --cluster h100x1"),
                        "loop-a: error: is a symbolic link loop" + role);
  expect_one_line_error(tpp_plan("--model dangling.yaml --cluster h100x1"),
                        "dangling.yaml: error: is a symbolic link to 'missing.yaml', which does "
                        "not exist");
  expect_one_line_error(tpp_plan("--model llama-3.1-8b --cluster /dev/null"),
                        "/dev/null: error: is a character device, not a cluster file");
}

TEST(Hardening, DuplicateKeysAmongAHundredThousandAreFoundInBothFormats) {
  // Large enough that a quadratic check takes minutes (the ctest timeout catches it); the
  // speed itself is measured by bench/parse_bench (BM_YamlManyKeys, BM_JsonManyKeys).
  std::string yaml, json = "{";
  for (int k = 0; k < 100000; ++k) {
    yaml += "k" + std::to_string(k) + ": " + std::to_string(k) + "\n";
    json += "\"k" + std::to_string(k) + "\": " + std::to_string(k) + ",\n";
  }
  auto y = parse_yaml(yaml + "k7: 1\n", "m.yaml");
  ASSERT_FALSE(y);
  EXPECT_EQ(y.error().str(), "m.yaml:100001:1: error: duplicate key 'k7' (first at line 8)");
  auto j = parse_json(json + "\"k7\": 1}", "c.json");
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().str(), "c.json:100001:1: error: duplicate key 'k7' (first at line 8)");
  EXPECT_TRUE(parse_json(json + "\"last\": 1}", "c.json"));
}

TEST(Hardening, DuplicateKeyInAHuggingFaceConfigIsRefused) {
  std::string text = test::slurp(test::hf("meta-llama--Llama-3.1-8B-Instruct.json"));
  text.insert(text.find('{') + 1, "\n  \"hidden_size\": 1,");
  std::string path = test::write_temp("config.json", text);
  auto m = model::load_model(path);
  ASSERT_FALSE(m);
  const auto second = text.find("\"hidden_size\": 4096");
  ASSERT_NE(second, std::string::npos);
  EXPECT_EQ(m.error().line, 1 + std::count(text.begin(), text.begin() + second, '\n'));
  EXPECT_EQ(m.error().message.rfind("duplicate key 'hidden_size' (first at line 2)", 0), 0u)
      << m.error().str();
}

TEST(Hardening, AWorkloadTooLargeForThisHostIsRefusedWithItsFigures) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space: ulimit -v cannot apply";
#else
  // Ten million requests (the schema's largest) under a 3 GB address-space limit: the
  // workload itself fits, simulating it (about 2.2 KB a request) does not.
  test::write_temp("w.yaml", "name: huge\nnum_requests: 10000000\nseed: 1\n"
                             "arrival: {process: poisson, rate_per_s: 100}\n"
                             "input_tokens: {distribution: fixed, value: 100}\n"
                             "output_tokens: {distribution: fixed, value: 250}\n");
  CliRun r = tpp_plan("--model llama-3.1-8b --cluster h100x1 --workload w.yaml",
                      "ulimit -v 3000000;");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_TRUE(std::regex_search(
      r.err, std::regex("^w.yaml: error: simulating the 10000000 requests of workload huge needs "
                        "about [0-9.]+ GiB, more than the [0-9.]+ GiB this machine has free; "
                        "use fewer requests \\(num_requests\\)\n$")))
      << r.err;
#endif
}

TEST(Hardening, SimulationMemoryEstimateCountsEveryGap) {
  sim::Workload w;
  w.requests.assign(1000, sim::Request{0, 0, 100, 250});
  // Per request at least the 250 inter-token gaps of 8 bytes and the request itself.
  EXPECT_GE(sim::simulation_bytes(w), 1000u * (250 * 8 + sizeof(sim::Request)));
  EXPECT_LE(sim::simulation_bytes(w), 1000u * (250 * 8 + 512));
}

// ---- Silent defaults and plans that lie

TEST(Hardening, PlanFileForAGivenSplit) {
  CliRun r = tpp_plan("--model llama-3.1-8b --cluster h100x1 --tp 2 -o plan.json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto f = nlohmann::json::parse(test::slurp(scratch() + "/plan.json"));
  EXPECT_EQ(f["split"]["tp"], 2);
  EXPECT_EQ(f["split"]["pp"], 1);
  EXPECT_EQ(f["workload"]["name"], "chat");  // a plan for the executor always has one
  EXPECT_TRUE(f["predicted"].contains("performance"));
  EXPECT_EQ(f["slo"]["tpot_ms"], 80);
  EXPECT_NE(f["launch"]["vllm"].get<std::string>().find("--tensor-parallel-size 2"),
            std::string::npos);
  // A split that does not fit writes nothing.
  CliRun big = tpp_plan("--model r1 --cluster h100x1 --tp 8 -o none.json");
  EXPECT_EQ(big.code, 2);
  EXPECT_FALSE(fs::exists(scratch() + "/none.json"));
}

TEST(Hardening, ZeroAndNegativeSizesAreRefusedNotDefaulted) {
  const std::string base = "--model llama-3.1-8b --cluster h100x1 --tp 1 ";
  for (auto [flag, value] : {std::pair{"--block-size", "0"}, {"--block-size", "-16"},
                             {"--max-model-len", "0"}, {"--max-model-len", "-1"},
                             {"--max-num-seqs", "0"}, {"--max-num-seqs", "-1"},
                             {"--max-num-batched-tokens", "0"}})
    expect_one_line_error(tpp_plan(base + flag + " " + value),
                          std::string("tpp-plan: error: ") + flag + " must be at least 1, got " +
                              value);
  expect_one_line_error(tpp_plan(base + "--block-size 24"),
                        "tpp-plan: error: --block-size must be one of 1, 8, 16, 32, 64, 128, got 24");
}

TEST(Hardening, SwapSpaceMustBeAFiniteNonNegativeSize) {
  const std::string base = "--model llama-3.1-8b --cluster h100x1 --tp 1 --vllm-engine v0 ";
  for (auto [value, shown] : {std::pair{"nan", "nan"}, {"-4", "-4"}, {"1e300", "1e+300"}})
    expect_one_line_error(tpp_plan(base + "--swap-space " + value),
                          std::string("tpp-plan: error: --swap-space must be between 0 and 4096 "
                                      "GiB, got ") + shown);
  CliRun ok = tpp_plan(base + "--swap-space 0 --format json");
  ASSERT_EQ(ok.code, 0) << ok.err;
  EXPECT_EQ(nlohmann::json::parse(ok.out)["plans"][0]["memory"]["cpu_blocks"], 0);
}

TEST(Hardening, ProductsOfUserNumbersCannotOverflow) {
  CliRun r = tpp_plan("--model llama-3.1-8b --cluster h100x1 --tp 8 --dp 1152921504606846976");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "tpp-plan: error: --dp: Value 1152921504606846976 not in range 1 to 1048576 "
                   "(see --help)\n");
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1 --pp 2 --pp-layer-partition "
               "9223372036854775807,9223372036854775807"),
      "tpp-plan: error: --pp-layer-partition must be comma-separated layer counts from 1 to "
      "4096, got '9223372036854775807,9223372036854775807'");
  // Within the per-stage bound, a partition whose stages exceed the model is refused before
  // it is added up.
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1 --pp 2 --pp-layer-partition 4000,4000"),
      "tpp-plan: error: a PP stage of 4000 layers exceeds the model's 32");
  sim::ParallelConfig p;
  p.tp = 8;
  p.dp = sim::kMaxParallel + 1;
  EXPECT_EQ(*sim::check_parallel(test::load_or_die(test::example("llama-3.1-8b.yaml")), p),
            "tp, pp and dp must be at most 1048576 (got tp=8, pp=1, dp=1048577)");
}

TEST(Hardening, LayerPartitionNarrowsTheSearchToItsStages) {
  CliRun r = tpp_plan("--model llama-3.1-8b --cluster h100x1 --pp-layer-partition 17,15 "
                      "--format json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_FALSE(j["plans"].empty());
  for (const auto& p : j["plans"]) {
    EXPECT_EQ(p["pp"], 2);
    EXPECT_EQ(p["memory"]["stages"][0]["num_layers"], 17);
    EXPECT_EQ(p["memory"]["stages"][1]["num_layers"], 15);
  }
  EXPECT_EQ(j["search"]["notes"][0],
            "the PP layer partition has 2 stages: only pp=2 was searched (vLLM refuses it with "
            "any other)");
  // The same from vLLM's own variable; its name is in the message when it is malformed.
  CliRun env = tpp_plan("--model llama-3.1-8b --cluster h100x1 --format json",
                        "VLLM_PP_LAYER_PARTITION=17,15");
  ASSERT_EQ(env.code, 0) << env.err;
  EXPECT_EQ(nlohmann::json::parse(env.out)["plans"][0]["pp"], 2);
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1", "VLLM_PP_LAYER_PARTITION=17,,15"),
      "tpp-plan: error: VLLM_PP_LAYER_PARTITION must be comma-separated layer counts from 1 to "
      "4096, got '17,,15'");
  expect_one_line_error(
      tpp_plan("--model llama-3.1-8b --cluster h100x1 --pp-layer-partition 20,10"),
      "tpp-plan: error: the PP layer partition adds up to 30 layers, the model has 32");
}

// A quantized Qwen2.5-72B: 29,568 MLP columns are 3,696 a rank at TP8, not a multiple of 128.
std::string qwen72_quantized(const std::string& quant) {
  auto cfg = nlohmann::json::parse(test::slurp(test::hf("Qwen--Qwen2.5-72B-Instruct.json")));
  cfg["quantization_config"] = nlohmann::json::parse(quant);
  return test::write_temp("config.json", cfg.dump(2));
}

TEST(Hardening, GroupSizeThatDoesNotDivideTheShardIsRefusedAsVllmRefusesIt) {
  qwen72_quantized(R"({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true})");
  expect_one_line_error(tpp_plan("--model config.json --cluster h100x1 --tp 8"),
                        "tpp-plan: error: layers.0.mlp.down_proj.weight: 3696 input columns per "
                        "rank at tp=8 are not a multiple of the quantization group 128");
  CliRun tp4 = tpp_plan("--model config.json --cluster h100x1 --tp 4");
  EXPECT_EQ(tp4.code, 2);  // 7,392 is not a multiple of 128 either
  CliRun search = tpp_plan("--model config.json --cluster h100x1 --format json");
  ASSERT_EQ(search.code, 0) << search.err;
  const auto plans = nlohmann::json::parse(search.out)["plans"];
  for (const auto& p : plans)
    EXPECT_LT(p["tp"].get<int>(), 2) << "vLLM refuses to load this checkpoint at tp=" << p["tp"];
  // A group that divides no input at all: refused when the model is read, on any split.
  std::string bad = qwen72_quantized(
      R"({"quant_method": "gptq", "bits": 4, "group_size": 100, "desc_act": false})");
  auto m = model::load_model(bad);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().message,
            "field 'group_size': group_size 100 does not divide the 8192 inputs of "
            "layers.0.self_attn.q_proj.weight (vLLM refuses to load it)");
}

TEST(Hardening, EveryRequestLongerThanMaxModelLenSaysSo) {
  test::write_temp("long.yaml", "name: long\nnum_requests: 20\narrival: {process: poisson, "
                                "rate_per_s: 1}\ninput_tokens: {distribution: fixed, value: 600}\n"
                                "output_tokens: {distribution: fixed, value: 100}\n");
  const std::string base = "--model llama-3.1-8b --cluster h100x1 --workload long.yaml "
                           "--max-model-len 512";
  CliRun search = tpp_plan(base);
  EXPECT_EQ(search.code, 2);
  EXPECT_EQ(search.err,
            "tpp-plan: error: Llama-3.1-8B fits on h100x1, but every split that fits rejects "
            "every request: all 20 need more than max_model_len 512 tokens (prompt + output; "
            "the shortest needs 700)\n");
  CliRun one = tpp_plan(base + " --tp 1 --format json");
  EXPECT_EQ(one.code, 2);  // the JSON still shows what happened: 20 requests, 20 rejected
  EXPECT_EQ(nlohmann::json::parse(one.out)["plans"][0]["performance"]["rejected_over_max_model_len"],
            20);
  EXPECT_EQ(one.err,
            "tpp-plan: error: every request of workload long was rejected: each needs more than "
            "max_model_len 512 tokens (prompt + output; the shortest needs 700); raise "
            "--max-model-len or shorten the requests\n");
  CliRun some = tpp_plan("--model llama-3.1-8b --cluster h100x1 --workload chat --tp 1 "
                         "--max-model-len 2048");
  ASSERT_EQ(some.code, 0) << some.err;
  EXPECT_TRUE(std::regex_search(some.out, std::regex("finished, [0-9]+ rejected \\([0-9]+ longer "
                                                     "than max_model_len 2048 tokens, prompt \\+ "
                                                     "output\\)")))
      << some.out;
}

TEST(Hardening, ModelNamesAreQuotedForTheShell) {
  std::string yaml = test::slurp(test::example("tiny-llama.yaml"));
  yaml += "hf_repo: \"x; rm -rf ~ #\"\n";
  test::write_temp("m.yaml", yaml);
  CliRun r = tpp_plan("--model m.yaml --cluster h100x1 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  const std::string cmd = j["plans"][0]["launch"]["vllm"];
  EXPECT_EQ(cmd.rfind("vllm serve 'x; rm -rf ~ #' --tensor-parallel-size", 0), 0u) << cmd;
  // The shell itself is the judge: the quoted word comes back as the one argument it was.
  for (const std::string s : {"x; rm -rf ~ #", "it's", "a b", "$(id)", "`id`", "plain/name-1.0"}) {
    std::string cmdline = "printf %s " + planner::shell_quote(s) + " > " + scratch() + "/q.txt";
    ASSERT_EQ(std::system(cmdline.c_str()), 0) << cmdline;
    EXPECT_EQ(test::slurp(scratch() + "/q.txt"), s);
  }
  EXPECT_EQ(planner::shell_quote("deepseek-ai/DeepSeek-R1"), "deepseek-ai/DeepSeek-R1");
  const std::string tiny = test::slurp(test::example("tiny-llama.yaml"));
  test::write_temp("n.yaml", tiny + "hf_repo: \"a\\nb\"\n");
  expect_one_line_error(tpp_plan("--model n.yaml --cluster h100x1"),
                        "n.yaml:" + std::to_string(1 + test::lines(tiny)) +
                            ":1: error: field 'hf_repo' in model must not contain control "
                            "characters");
}

TEST(Hardening, ErrorsNameTheFileNotItsContents) {
  test::write_temp("secret.txt", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/sh\n");
  test::write_temp("c.yaml", "name: c\nnodes: 1\ngpus_per_node: 8\ngpu: secret.txt\n"
                             "intra_node: {kind: nvswitch, latency_us: 1}\n");
  test::write_temp("sub/c.yaml", "name: c\nnodes: 1\ngpus_per_node: 8\ngpu: ../secret.txt\n"
                                 "intra_node: {kind: nvswitch, latency_us: 1}\n");
  for (const char* cluster : {"c.yaml", "sub/c.yaml"}) {
    CliRun r = tpp_plan(std::string("--model llama-3.1-8b --cluster ") + cluster);
    EXPECT_EQ(r.code, 2);
    EXPECT_EQ(lines(r.err), 1) << r.err;
    EXPECT_EQ(r.err.find("root:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("gpu must be a map of fields, got a string (is this a gpu file?)"),
              std::string::npos)
        << r.err;
  }
  test::write_temp("m.json", "root:x:0:0:root:/root:/bin/bash\n");
  expect_one_line_error(tpp_plan("--model m.json --cluster h100x1"),
                        "m.json:1:1: error: JSON syntax: syntax error while parsing value - "
                        "invalid literal");
}

TEST(Hardening, CostIsPrintedAndAPriceOfZeroRefused) {
  std::string cluster = test::slurp(std::string(TPP_EXAMPLES) +
                                    "/../../hardware_profiles/clusters/h100x1.yaml");
  test::write_temp("priced.yaml", cluster + "price_per_gpu_hour: 2.5\n");
  test::write_temp("free.yaml", cluster + "price_per_gpu_hour: 0\n");
  CliRun r = tpp_plan("--model llama-3.1-8b --cluster priced.yaml --objective cost");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("$/Mtok"), std::string::npos) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("At \\$2\\.5 a GPU-hour: \\$[0-9.]+ per "
                                                  "million output tokens")))
      << r.out;
  EXPECT_NE(r.out.find("on cost: $"), std::string::npos) << r.out;
  CliRun free = tpp_plan("--model llama-3.1-8b --cluster free.yaml");
  EXPECT_EQ(free.code, 2);
  EXPECT_TRUE(std::regex_search(free.err, std::regex("^free\\.yaml:[0-9]+:1: error: field "
                                                     "'price_per_gpu_hour' in cluster must be a "
                                                     "positive number of dollars, got 0\n$")))
      << free.err;
}

}  // namespace
}  // namespace tpp
