// Loading and summing models: what every tpp-plan run pays before it plans.
//   ./build/bench/tpp_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include "model/load.h"
#include "model/tensors.h"

namespace {

void BM_LoadModelYaml(benchmark::State& state) {
  for (auto _ : state) {
    auto m = tpp::model::load_model(std::string(TPP_EXAMPLES) + "/r1.yaml");
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_LoadModelYaml)->Unit(benchmark::kMicrosecond);

void BM_ParamAndByteTotalsR1(benchmark::State& state) {
  auto m = tpp::model::load_model(std::string(TPP_EXAMPLES) + "/r1.yaml");
  for (auto _ : state) {
    auto p = tpp::model::param_totals(*m, true);
    auto b = tpp::model::weight_byte_totals(*m, true);
    benchmark::DoNotOptimize(p);
    benchmark::DoNotOptimize(b);
  }
}
BENCHMARK(BM_ParamAndByteTotalsR1)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
