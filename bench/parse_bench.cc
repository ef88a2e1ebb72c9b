// Parsing inputs that are large for their kind: a YAML map and a JSON object of 100,000 keys
// (about 1 MB; the duplicate-key check and the key positions must stay linear), and a Hugging
// Face config.json padded with unknown keys to 3.8 MB, just under the 4 MiB cap (the lenient
// reader looks at every key for a near miss). Before the hardening issue these took 12-16 s
// and over a minute.
//   ./build/bench/tpp_bench --benchmark_filter=Parse --benchmark_repetitions=5
//     --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>

#include "common/doc.h"
#include "model/load.h"

namespace {

std::string many_keys_yaml() {
  std::string s;
  for (int k = 0; k < 100000; ++k) s += "k" + std::to_string(k) + ": " + std::to_string(k) + "\n";
  return s;
}

std::string many_keys_json() {
  std::string s = "{";
  for (int k = 0; k < 100000; ++k)
    s += (k ? ",\n\"k" : "\n\"k") + std::to_string(k) + "\": " + std::to_string(k);
  return s + "}";
}

void BM_ParseYamlManyKeys(benchmark::State& state) {
  const std::string text = many_keys_yaml();
  for (auto _ : state) benchmark::DoNotOptimize(tpp::parse_yaml(text, "m.yaml"));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParseYamlManyKeys)->Unit(benchmark::kMillisecond);

void BM_ParseJsonManyKeys(benchmark::State& state) {
  const std::string text = many_keys_json();
  for (auto _ : state) benchmark::DoNotOptimize(tpp::parse_json(text, "c.json"));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParseJsonManyKeys)->Unit(benchmark::kMillisecond);

// A real config (Llama-3.1-8B's keys) plus unknown keys up to 3.8 MB, read as a model.
void BM_LoadHfConfig3_8MB(benchmark::State& state) {
  std::ifstream in(std::string(TPP_EXAMPLES) +
                   "/../../tests/data/hf/meta-llama--Llama-3.1-8B-Instruct.json");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string cfg = ss.str(), extra;
  for (int k = 0; extra.size() + cfg.size() < 3'800'000; ++k)
    extra += ",\n  \"unread_setting_" + std::to_string(k) + "\": " + std::to_string(k);
  cfg.insert(cfg.rfind('}'), extra);
  const std::string path = "/tmp/tpp_bench_config.json";
  std::ofstream(path) << cfg;
  for (auto _ : state) {
    auto m = tpp::model::load_model(path);
    if (!m) state.SkipWithError(m.error().str().c_str());
    benchmark::DoNotOptimize(m);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * cfg.size()));
}
BENCHMARK(BM_LoadHfConfig3_8MB)->Unit(benchmark::kMillisecond);

}  // namespace
