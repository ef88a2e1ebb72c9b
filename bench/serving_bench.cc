// The serving simulation is the planner's inner loop: 10,000 requests through one plan.
//   ./build/bench/tpp_bench --benchmark_filter=Serving --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
// Counters: simulated requests and scheduler steps per second of wall time.
#include <benchmark/benchmark.h>

#include "common/doc.h"
#include "hardware_profiles/hardware.h"
#include "model/load.h"
#include "simulator/memory.h"
#include "simulator/serving.h"
#include "simulator/workload.h"

namespace {

// The shipped chat workload's distributions, 10,000 requests.
tpp::sim::Workload chat_10k() {
  auto doc = tpp::parse_yaml(R"(name: chat-10k
num_requests: 10000
seed: 42
arrival: {process: poisson, rate_per_s: 20}
input_tokens: {distribution: lognormal, mean: 1024, stddev: 768, min: 4, max: 16384}
output_tokens: {distribution: lognormal, mean: 256, stddev: 192, min: 1, max: 4096}
)", "chat-10k.yaml");
  return *tpp::sim::workload_from_doc(*doc);
}

void run(benchmark::State& state, const char* model, const char* cluster, std::int64_t tp,
         std::int64_t pp) {
  auto m = tpp::model::load_model(std::string(TPP_EXAMPLES) + "/" + model);
  auto c = tpp::hw::load_cluster(cluster);
  tpp::sim::ServingOptions so;
  so.max_model_len = 32768;
  auto o = tpp::sim::resolve_options(*m, c->gpu, so);
  tpp::sim::ParallelConfig p;
  p.tp = tp;
  p.pp = pp;
  auto plan = tpp::sim::simulate_memory(*m, c->gpu, p, *o);
  tpp::sim::StepCostModel cost(*m, *c, p, *o);
  const auto w = chat_10k();
  std::int64_t steps = 0;
  for (auto _ : state) {
    auto r = tpp::sim::simulate_serving(cost, plan, w);
    steps += r.steps;
    benchmark::DoNotOptimize(r);
  }
  state.counters["requests_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 10000, benchmark::Counter::kIsRate);
  state.counters["steps_per_s"] =
      benchmark::Counter(static_cast<double>(steps), benchmark::Counter::kIsRate);
}

void BM_Serving10kChatLlama8B_H100_TP1(benchmark::State& s) {
  run(s, "llama-3.1-8b.yaml", "h100x1", 1, 1);
}
BENCHMARK(BM_Serving10kChatLlama8B_H100_TP1)->Unit(benchmark::kMillisecond);

void BM_Serving10kChatR1_H100x2_TP8PP2(benchmark::State& s) {
  run(s, "r1.yaml", "h100x2", 8, 2);
}
BENCHMARK(BM_Serving10kChatR1_H100x2_TP8PP2)->Unit(benchmark::kMillisecond);

}  // namespace
