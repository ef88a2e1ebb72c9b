// Mutation fuzzing of both loaders: mutated YAML and JSON must give a model or an Error, never
// a crash, a hang or a sanitizer report. Deterministic (fixed seeds) and bounded in count and
// time; the CI sanitizer build runs it under AddressSanitizer and UBSan. Set
// TPP_FUZZ_ITERATIONS to run longer locally.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "common/doc.h"
#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "test_util.h"

namespace tpp {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int iterations() {
  const char* env = std::getenv("TPP_FUZZ_ITERATIONS");
  return env ? std::atoi(env) : 20000;
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

template <class Load>
void fuzz(const std::vector<std::string>& seeds, const std::string& name, unsigned seed,
          Load load) {
  std::mt19937 rng(seed);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int loaded = 0, rejected = 0;
  for (int it = 0; it < iterations() && std::chrono::steady_clock::now() < deadline; ++it) {
    std::string text = mutate(seeds[it % seeds.size()], rng);
    std::string path = test::write_temp(name, text);
    auto t0 = std::chrono::steady_clock::now();
    bool ok = load(path);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t0).count();
    ASSERT_LT(ms, 2000) << "slow input (possible hang) at iteration " << it << ":\n" << text;
    (ok ? loaded : rejected) += 1;
  }
  // Both outcomes must occur, or the mutations are not exercising the loaders.
  EXPECT_GT(loaded, 0);
  EXPECT_GT(rejected, 0);
}

bool load_model_ok(const std::string& path) {
  auto m = model::load_model(path);
  if (!m) {
    EXPECT_FALSE(m.error().message.empty());
  }
  return m.ok();
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
    return c.ok();
  });
}

}  // namespace
}  // namespace tpp
