// The memory of every split: how long one split's evaluation takes (issue 3 asks for
// microseconds per split for DeepSeek-R1 on 16 x 8 GPUs).
//   ./build/bench/tpp_bench --benchmark_filter=Memory --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
// "per_split" is the time of one split's evaluation (the items-per-second counter inverted).
#include <benchmark/benchmark.h>

#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "simulator/memory.h"

namespace {

void BM_MemoryEverySplitR1OnA100x16(benchmark::State& state) {
  auto m = tpp::model::load_model(std::string(TPP_EXAMPLES) + "/r1.yaml");
  auto c = tpp::hw::load_cluster("a100x16");
  auto o = tpp::sim::resolve_options(*m, c->gpu, {});
  auto splits = tpp::sim::enumerate_splits(*m, c->total_gpus(), false);
  std::int64_t fits = 0;
  for (auto _ : state) {
    for (const auto& p : splits) {
      auto plan = tpp::sim::simulate_memory(*m, c->gpu, p, *o);
      fits += plan.fits;
      benchmark::DoNotOptimize(plan);
    }
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(splits.size()));
  state.counters["splits"] = static_cast<double>(splits.size());
  state.counters["per_split"] = benchmark::Counter(
      static_cast<double>(state.iterations() * static_cast<std::int64_t>(splits.size())),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_MemoryEverySplitR1OnA100x16)->Unit(benchmark::kMicrosecond);

void BM_EnumerateSplitsR1OnA100x16(benchmark::State& state) {
  auto m = tpp::model::load_model(std::string(TPP_EXAMPLES) + "/r1.yaml");
  for (auto _ : state) benchmark::DoNotOptimize(tpp::sim::enumerate_splits(*m, 128, false));
}
BENCHMARK(BM_EnumerateSplitsR1OnA100x16)->Unit(benchmark::kMicrosecond);

}  // namespace
