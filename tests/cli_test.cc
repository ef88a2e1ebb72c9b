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

#include "test_util.h"

namespace tpp {
namespace {

struct CliRun {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs tpp-plan with `args` in a scratch working directory (not the source tree).
CliRun tpp_plan(const std::string& args) {
  std::filesystem::path dir = std::filesystem::path(test::write_temp("x", "")).parent_path();
  std::string cmd = "cd '" + dir.string() + "' && '" + TPP_PLAN + "' " + args + " >out.txt 2>err.txt";
  int status = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(dir / "out.txt");
  r.err = slurp(dir / "err.txt");
  return r;
}

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

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
  EXPECT_EQ(r.err, "");
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

void expect_one_line_error(const CliRun& r, const std::string& expected) {
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_EQ(r.err, expected + "\n");
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
