// The planner's whole search: DeepSeek-R1 on 16 x 8 A100 with the default workload (chat,
// 1,000 requests simulated per split that fits), on every core.
//   ./build/bench/tpp_bench --benchmark_filter=Search --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "planner/search.h"

namespace {

void BM_SearchR1OnA100x16(benchmark::State& state) {
  auto m = tpp::model::load_model(std::string(TPP_EXAMPLES) + "/r1.yaml");
  auto c = tpp::hw::load_cluster("a100x16");
  auto w = tpp::sim::load_workload("chat");
  tpp::planner::MemoryRequest r;
  tpp::planner::SearchOptions o;
  o.progress = false;
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
BENCHMARK(BM_SearchR1OnA100x16)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
