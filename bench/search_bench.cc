// The planner's whole search: DeepSeek-R1 on 16 x 8 A100 with the default workload (chat,
// 1,000 requests simulated per split that fits), on every core.
//   ./build/bench/tpp_bench --benchmark_filter=Search --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "planner/search.h"

namespace {

// DeepSeek-R1 on 16 x 8 A100 with the default workload: vLLM alone, and (issue 16) the three
// engines with the disaggregated pools, which it asks within 1 s on 2 cores.
void search_r1(benchmark::State& state, bool engines_and_disagg) {
  auto m = tpp::model::load_model(std::string(TPP_EXAMPLES) + "/r1.yaml");
  auto c = tpp::hw::load_cluster("a100x16");
  auto w = tpp::sim::load_workload("chat");
  tpp::planner::MemoryRequest r;
  tpp::planner::SearchOptions o;
  o.progress = false;
  if (engines_and_disagg) {
    o.engines = {tpp::sim::Framework::kVllm, tpp::sim::Framework::kSglang, tpp::sim::Framework::kTrtllm};
    o.disaggregation = true;
  }
  std::int64_t candidates = 0, simulated = 0;
  for (auto _ : state) {
    auto res = tpp::planner::search(*m, *c, r, *w, o);
    candidates = static_cast<std::int64_t>(res->candidates.size());
    simulated = res->simulated;
    benchmark::DoNotOptimize(res);
  }
  state.counters["candidates"] = static_cast<double>(candidates);
  state.counters["simulated"] = static_cast<double>(simulated);
}
void BM_SearchR1OnA100x16(benchmark::State& s) { search_r1(s, false); }
void BM_SearchR1EnginesDisaggOnA100x16(benchmark::State& s) { search_r1(s, true); }
BENCHMARK(BM_SearchR1OnA100x16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SearchR1EnginesDisaggOnA100x16)->Unit(benchmark::kMillisecond)->UseRealTime();

// The hybrid models (issue 15): their KV-cache groups, windowed attention and linear layers on
// two 8 x H100 nodes, from their config.json.
void search_config(benchmark::State& state, const char* file) {
  auto m = tpp::model::load_model(std::string(TPP_TEST_DATA) + "/hf/" + file);
  auto c = tpp::hw::load_cluster("h100x2");
  auto w = tpp::sim::load_workload("chat");
  tpp::planner::SearchOptions o;
  o.progress = false;
  for (auto _ : state) {
    auto res = tpp::planner::search(*m, *c, {}, *w, o);
    benchmark::DoNotOptimize(res);
  }
}
void BM_SearchGptOss120bOnH100x2(benchmark::State& s) { search_config(s, "openai--gpt-oss-120b.json"); }
void BM_SearchGemma3_27bOnH100x2(benchmark::State& s) { search_config(s, "google--gemma-3-27b-it.json"); }
void BM_SearchQwen3NextOnH100x2(benchmark::State& s) {
  search_config(s, "Qwen--Qwen3-Next-80B-A3B-Instruct.json");
}
void BM_SearchDeepSeekV32OnH100x2(benchmark::State& s) { search_config(s, "deepseek-ai--DeepSeek-V3.2.json"); }
BENCHMARK(BM_SearchGptOss120bOnH100x2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SearchGemma3_27bOnH100x2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SearchQwen3NextOnH100x2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SearchDeepSeekV32OnH100x2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
