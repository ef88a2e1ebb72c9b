// Disaggregated prefill and decode (simulator/disagg.h, tpp-plan --disagg): the two passes, the
// KV transfer's bytes by hand, and the search's comparison with the aggregated split.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "hardware_profiles/hardware.h"
#include "simulator/disagg.h"
#include "simulator/scheduler.h"
#include "test_util.h"

namespace tpp {
namespace {

// A request whose prompt arrives cached but its last token computes that token in its first
// step, samples the first output token, then decodes.
TEST(DisaggScheduler, CachedPromptNeedsOneStep) {
  sim::Scheduler s(sim::SchedulerConfig{8, 512, 16, 1000, 0});
  s.add(sim::Request{0, 0, 300, 3, 299}, 0);
  sim::Batch b = s.schedule();
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].new_tokens, 1);
  EXPECT_EQ(b.items[0].context, 299);
  EXPECT_EQ(s.used_blocks(), 19);  // ceil(300 / 16): the whole prompt's KV arrives with it
  s.complete(b, 1, nullptr);
  EXPECT_EQ(s.seqs()[0].generated, 1);
}

TEST(Disagg, TwoPassesAndTheTransferByHand) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  auto c = hw::load_cluster("h100x1");
  ASSERT_TRUE(c);
  auto w = sim::load_workload("chat");
  ASSERT_TRUE(w);
  w->requests.resize(200);
  auto o = sim::resolve_options(m, c->gpu, {});
  ASSERT_TRUE(o);
  sim::ParallelConfig p;
  const sim::MemoryPlan plan = sim::simulate_memory(m, c->gpu, p, *o);
  const sim::Slo slo{2000, 80};
  const sim::PrefillPass pass = sim::simulate_prefill_pool(m, *c, plan, *w, slo);
  const sim::DisaggResult d = sim::simulate_decode_pool(m, *c, plan, plan, *w, slo, pass);
  EXPECT_EQ(d.result.finished, 200);
  EXPECT_TRUE(d.same_node);
  // 32 layers x 8 KV heads x 128 x (K, V) x 2 bytes = 128 KiB a token, times the mean prompt.
  double prompt = 0;
  for (const auto& q : w->requests) prompt += static_cast<double>(q.input_tokens);
  EXPECT_NEAR(d.kv_bytes_per_request, 131072 * prompt / 200, 1);
  EXPECT_GT(d.transfer_ms.p50, 0);
  // A request's first token comes after its prompt's, the transfer and a decode step.
  EXPECT_GT(d.result.ttft_ms.p50, pass.result.ttft_ms.p50);
  EXPECT_EQ(d.result.output_tokens_per_s_per_gpu * 2, d.result.output_tokens_per_s);  // 2 GPUs
  // The decode pool computes one prompt token a request, never a whole prompt.
  EXPECT_LT(d.decode.step_ms.p99, pass.result.step_ms.p99);
}

TEST(CliDisagg, ComparesWithTheAggregatedSplit) {
  auto r = test::tpp_plan("--model llama-3.1-70b --cluster h100x1 --disagg");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\ndisaggregated: 1P1D (prefill TP4 x PP1 x 1, decode TP4 x PP1 x 1) on 8 GPUs"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wins on throughput"), std::string::npos);
  r = test::tpp_plan("--model llama-3.1-70b --cluster h100x1 --disagg --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("disaggregated"));
  EXPECT_FALSE(j["disaggregated"]["pools"].empty());
  EXPECT_GT(j["disaggregated"]["pools"][0]["kv_transfer_ms_p50"].get<double>(), 0);
  test::expect_one_line_error(test::tpp_plan("--model llama-3.1-70b --cluster h100x1 --disagg --tp 4"),
                              "tpp-plan: error: --disagg compares pools in the search; drop "
                              "--tp/--pp/--dp and the capacity flags");
  // Where no aggregated split meets the SLOs, the pools' verdict is still printed, before the
  // one error line that says why no split is recommended.
  r = test::tpp_plan("--model llama-3.1-70b --cluster h100x1 --disagg --slo-tpot-ms 15");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("\ndisaggregation: no pools keep up within the SLOs; the closest, 1P1D (prefill TP4 x "
                       "PP1 x 1, decode TP4 x PP1 x 1), misses the TPOT SLO: p99 "),
            std::string::npos) << r.out;
  EXPECT_EQ(r.err.rfind("tpp-plan: error: Llama-3.1-70B fits on h100x1, but no split meets the SLOs", 0), 0u) << r.err;
}

}  // namespace
}  // namespace tpp
