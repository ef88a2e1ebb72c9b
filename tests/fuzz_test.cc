// Mutation fuzzing of every input: model YAML, Hugging Face JSON, cluster YAML, workload YAML,
// CSV traces, and tpp-plan's command line. Each mutated input must give a value or an Error
// (the command line: exit 0, or exit 2 with one line), never a crash, a hang or a sanitizer
// report. Deterministic (fixed seeds) and bounded in count and time; each run prints how many
// iterations it made and whether the time bound cut it short. The CI sanitizer build runs them
// under AddressSanitizer and UBSan. Set TPP_FUZZ_ITERATIONS to run longer locally.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "cli_util.h"
#include "common/doc.h"
#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "simulator/workload.h"
#include "test_util.h"

namespace tpp {
namespace {

using test::slurp;

int iterations(int fallback = 20000) {
  const char* env = std::getenv("TPP_FUZZ_ITERATIONS");
  return env ? std::atoi(env) : fallback;
}

// What a fuzz run did, printed so that a run cut short by its time bound is never silent.
void report(const std::string& name, int done, int wanted, int loaded, int rejected,
            int skipped = 0) {
  std::printf("fuzz %s: %d of %d iterations (%d loaded, %d rejected%s)%s\n", name.c_str(), done,
              wanted, loaded, rejected,
              skipped ? (", " + std::to_string(skipped) + " skipped").c_str() : "",
              done < wanted ? "; stopped by the 60 s time bound" : "");
  ::testing::Test::RecordProperty("iterations", done);
}

// Byte flips, insertions of syntax characters, deletions, duplicated and truncated spans,
// and swapped numbers: the mutations that reach the interesting error paths.
std::string mutate(std::string s, std::mt19937& rng) {
  static const char* tokens[] = {"[", "]", "{", "}", ":", ",", "-", "\"", "'", "\n", " ", "\t",
                                 "&a", "*a", "!!", "null", "1e999", "-1", "0", "9999999999999",
                                 "true", "\\u0000", "#", "? ", "|", ">", "...", "---"};
  int n = 1 + static_cast<int>(rng() % 4);
  for (int k = 0; k < n && !s.empty(); ++k) {
    std::size_t pos = rng() % s.size();
    switch (rng() % 6) {
      case 0: s[pos] = static_cast<char>(rng() % 256); break;
      case 1: s.insert(pos, tokens[rng() % std::size(tokens)]); break;
      case 2: s.erase(pos, 1 + rng() % 8); break;
      case 3: s.insert(pos, s.substr(rng() % s.size(), rng() % 64)); break;
      case 4: s.resize(pos); break;
      case 5: {
        std::size_t d = s.find_first_of("0123456789", pos);
        if (d != std::string::npos) s.replace(d, 1, std::to_string(rng() % 100000));
        break;
      }
    }
  }
  return s;
}

enum class Outcome { kLoaded, kRejected, kSkipped };

// `load` reads the mutated file and says what happened; kSkipped for an input the harness
// chooses not to run (a workload of millions of requests is valid and merely slow).
template <class Load>
void fuzz(const std::vector<std::string>& seeds, const std::string& name, unsigned seed,
          Load load, int wanted = iterations()) {
  std::mt19937 rng(seed);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int loaded = 0, rejected = 0, skipped = 0, it = 0;
  for (; it < wanted && std::chrono::steady_clock::now() < deadline; ++it) {
    std::string text = mutate(seeds[it % seeds.size()], rng);
    std::string path = test::write_temp(name, text);
    auto t0 = std::chrono::steady_clock::now();
    Outcome o = load(path);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t0).count();
    ASSERT_LT(ms, 5000) << "slow input (possible hang) at iteration " << it << ":\n" << text;
    (o == Outcome::kLoaded ? loaded : o == Outcome::kRejected ? rejected : skipped) += 1;
  }
  report(name, it, wanted, loaded, rejected, skipped);
  // Both outcomes must occur, or the mutations are not exercising the loaders.
  EXPECT_GT(loaded, 0);
  EXPECT_GT(rejected, 0);
}

Outcome load_model_ok(const std::string& path) {
  auto m = model::load_model(path);
  if (!m) {
    EXPECT_FALSE(m.error().message.empty());
  }
  return m.ok() ? Outcome::kLoaded : Outcome::kRejected;
}

TEST(Fuzz, ModelYaml) {
  std::vector<std::string> seeds;
  for (const char* f : {"r1.yaml", "tiny-llama.yaml", "tiny-deepseek.yaml", "qwen2.5-72b.yaml"})
    seeds.push_back(slurp(test::example(f)));
  fuzz(seeds, "m.yaml", 1, load_model_ok);
}

TEST(Fuzz, HfConfigJson) {
  std::vector<std::string> seeds;
  for (const char* f : {"deepseek-ai--DeepSeek-R1.json", "Qwen--Qwen3-30B-A3B.json",
                        "meta-llama--Llama-3.1-8B-Instruct.json",
                        "Qwen--Qwen2.5-7B-Instruct.json"})
    seeds.push_back(slurp(test::hf(f)));
  fuzz(seeds, "config.json", 2, load_model_ok);
}

TEST(Fuzz, ClusterYaml) {
  std::vector<std::string> seeds = {
      slurp(std::string(TPP_EXAMPLES) + "/../../hardware_profiles/clusters/a100x16.yaml"),
      "name: x\nnodes: 1\ngpus_per_node: 2\ngpu: {name: G, memory_marketed_GB: 24, "
      "memory_driver_GiB: 23, hbm_bandwidth_GBps: 900, bf16_dense_tflops: 100, "
      "fp16_dense_tflops: 100, fp8_dense_tflops: 0, int8_dense_tops: 200, has_fp8: false, "
      "nvlink_unidir_GBps: 0, pcie_unidir_GBps: 32, tdp_W: 300, sm_count: 80, "
      "compute_capability: 8.9}\n"
      "intra_node: {kind: pcie, latency_us: 2}\n"
      "collectives:\n  - {op: all_reduce, scope: intra_node, ranks: 2, source: s, "
      "points: [[8, 10.5], [1024, 12]]}\n"};
  fuzz(seeds, "c.yaml", 3, [](const std::string& p) {
    auto c = hw::load_cluster(p);
    return c.ok() ? Outcome::kLoaded : Outcome::kRejected;
  });
}

// A workload is generated once it parses: keep the mutated ones small enough to generate in
// a moment (a valid 10-million-request workload only takes time, which is not what this finds).
Outcome load_workload_bounded(const std::string& path) {
  auto doc = load_yaml_file(path);
  if (doc && doc->root.is_map())
    if (const Node* n = doc->root.find("num_requests");
        n && n->kind == Node::Kind::Int && n->i > 100000)
      return Outcome::kSkipped;
  auto w = sim::load_workload(path);
  if (!w) {
    EXPECT_FALSE(w.error().message.empty());
  }
  return w ? Outcome::kLoaded : Outcome::kRejected;
}

TEST(Fuzz, WorkloadYaml) {
  std::vector<std::string> seeds;
  for (const char* f : {"chat.yaml", "offline-batch.yaml", "long-context.yaml", "single-user.yaml"})
    seeds.push_back(slurp(std::string(TPP_EXAMPLES) + "/../../workloads/" + f));
  seeds.push_back("name: s\nnum_requests: 20\nslo: {ttft_ms: 500, tpot_ms: 50}\n"
                  "arrival: {process: fixed, rate_per_s: 2}\n"
                  "input_tokens: {distribution: normal, mean: 100, stddev: 20, min: 1, max: 400}\n"
                  "output_tokens: {distribution: fixed, value: 7}\n");
  fuzz(seeds, "w.yaml", 4, load_workload_bounded);
}

TEST(Fuzz, TraceCsv) {
  // The workload file stays valid; the trace it names is mutated.
  test::write_temp("w.yaml", "name: t\ntrace: t.csv\n");
  const std::string yaml = std::filesystem::path(test::write_temp("t.csv", "")).parent_path() /
                           "w.yaml";
  std::vector<std::string> seeds = {
      slurp(std::string(TPP_EXAMPLES) + "/../../workloads/trace-example.csv"),
      "# a comment\n\n0,1,1\n0.5, 20, 30\n1e1,4,5\r\n"};
  fuzz(seeds, "t.csv", 5, [&](const std::string&) {
    auto w = sim::load_workload(yaml);
    if (!w) {
      EXPECT_FALSE(w.error().message.empty());
    }
    return w ? Outcome::kLoaded : Outcome::kRejected;
  });
}

// tpp-plan's command line: flags with values from the edges of their domains, in any order.
// Every run exits 0, or 2 with exactly one line on stderr; never a signal, never a hang (the
// shell's timeout). Each run is a process, so there are hundreds, not thousands.
TEST(Fuzz, CommandLine) {
  static const char* flags[] = {
      "--tp", "--pp", "--dp", "--block-size", "--max-model-len", "--max-num-seqs",
      "--max-num-batched-tokens", "--gpu-memory-utilization", "--swap-space", "--slo-ttft-ms",
      "--slo-tpot-ms", "--top", "--pp-layer-partition", "--kv-cache-dtype", "--objective",
      "--format", "--workload", "--quantization", "--vllm-engine", "--no-slo",
      "--enforce-eager", "--enable-expert-parallel", "--allow-cross-node-tp"};
  static const char* values[] = {
      "0", "-1", "1", "2", "3", "4", "8", "16", "1e300", "nan", "inf", "-0", "0.5", "1.5",
      "9223372036854775807", "18446744073709551616", "''", "x", "2,2", "1,,1", "fp8", "json",
      "markdown", "latency", "cost", "goodput", "v0", "single-user", "offline-batch", "chat"};
  static const char* models[] = {"tiny-llama", "tiny-mixtral", "tiny-mla", "llama-3.1-8b"};
  std::mt19937 rng(6);
  const int wanted = iterations(300);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int ok = 0, refused = 0, it = 0;
  for (; it < wanted && std::chrono::steady_clock::now() < deadline; ++it) {
    std::string args = std::string("--model ") + models[rng() % std::size(models)] +
                       " --cluster h100x1";
    for (int k = 0, n = static_cast<int>(rng() % 4); k < n; ++k) {
      args += std::string(" ") + flags[rng() % std::size(flags)];
      if (rng() % 5) args += std::string(" ") + values[rng() % std::size(values)];
    }
    test::CliRun r = test::tpp_plan(args + " --workload single-user", "timeout 30");
    ASSERT_TRUE(r.code == 0 || r.code == 2) << "exit " << r.code << ": " << args << "\n" << r.err;
    if (r.code == 2) {
      EXPECT_EQ(test::lines(r.err), 1) << args << "\n" << r.err;
      ++refused;
    } else {
      ++ok;
    }
  }
  report("command line", it, wanted, ok, refused);
  EXPECT_GT(ok, 0);
  EXPECT_GT(refused, 0);
}

// Inputs large enough to expose super-linear parsing: a 1 MB model YAML and config.json of
// 100,000 keys (the HF reader must look at each), a workload with 100,000 requests and a trace
// of 200,000 rows. Each loads (or is refused) within the test's timeout; bench/parse_bench
// measures how fast.
TEST(Fuzz, LargeInputsParseInLinearTime) {
  std::string keys_yaml, keys_json;
  for (int k = 0; k < 100000; ++k) {
    keys_yaml += "extra_" + std::to_string(k) + ": " + std::to_string(k) + "\n";
    keys_json += ",\n  \"extra_" + std::to_string(k) + "\": " + std::to_string(k);
  }
  auto y = model::load_model(test::write_temp("m.yaml", slurp(test::example("tiny-llama.yaml")) +
                                                            keys_yaml));
  ASSERT_FALSE(y);  // tpp's YAML is strict: the first unknown key is named
  EXPECT_EQ(y.error().message.rfind("unknown key 'extra_0' in model", 0), 0u) << y.error().str();
  std::string cfg = slurp(test::hf("meta-llama--Llama-3.1-8B-Instruct.json"));
  cfg.insert(cfg.rfind('}'), keys_json);
  auto j = model::load_model(test::write_temp("config.json", cfg));
  EXPECT_TRUE(j) << j.error().str();  // a config's unknown keys are allowed
  std::string rows = "arrival_s,input_tokens,output_tokens\n";
  for (int k = 0; k < 200000; ++k) rows += std::to_string(k * 0.01) + ",100,10\n";
  test::write_temp("big.csv", rows);
  auto t = sim::load_workload(test::write_temp("t.yaml", "name: t\ntrace: big.csv\n"));
  ASSERT_TRUE(t) << t.error().str();
  EXPECT_EQ(t->requests.size(), 200000u);
}

}  // namespace
}  // namespace tpp
