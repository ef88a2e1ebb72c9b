// The V1 scheduler and the serving simulation: scheduling rules on hand-made requests, and the
// properties a serving simulation must have (determinism, saturation, preemption).
#include <gtest/gtest.h>

#include <cmath>

#include "hardware_profiles/hardware.h"
#include "planner/memory_report.h"
#include "simulator/scheduler.h"
#include "simulator/serving.h"
#include "test_util.h"

namespace tpp {
namespace {

using sim::Request;
using sim::Scheduler;
using sim::SchedulerConfig;

Request req(std::int64_t id, std::int64_t in, std::int64_t out, double at = 0) {
  return Request{id, at, in, out};
}

TEST(Scheduler, TokenBudgetChunksLongPrompts) {
  Scheduler s(SchedulerConfig{4, 100, 16, 1000, 0});
  s.add(req(0, 250, 2), 0);
  sim::Batch b = s.schedule();
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].new_tokens, 100);  // chunked prefill: the budget
  s.complete(b, 1, nullptr);
  b = s.schedule();
  EXPECT_EQ(b.items[0].new_tokens, 100);
  EXPECT_EQ(b.items[0].context, 100);
  s.complete(b, 2, nullptr);
  b = s.schedule();
  EXPECT_EQ(b.items[0].new_tokens, 50);
  s.complete(b, 3, nullptr);  // prompt done: first token
  EXPECT_EQ(s.seqs()[0].generated, 1);
  EXPECT_DOUBLE_EQ(s.seqs()[0].first_token_s, 3);
  b = s.schedule();
  EXPECT_EQ(b.items[0].new_tokens, 1);  // decode
  EXPECT_EQ(s.complete(b, 4, nullptr), 1);
  EXPECT_EQ(s.used_blocks(), 0);  // finished: blocks back to the pool
  EXPECT_FALSE(s.has_work());
}

TEST(Scheduler, MaxNumSeqsAndRunningFirst) {
  Scheduler s(SchedulerConfig{2, 1000, 16, 1000, 0});
  for (int k = 0; k < 3; ++k) s.add(req(k, 10, 5), 0);
  sim::Batch b = s.schedule();
  EXPECT_EQ(b.items.size(), 2u);  // max_num_seqs
  s.complete(b, 1, nullptr);
  b = s.schedule();
  ASSERT_EQ(b.items.size(), 2u);  // the two running decode; the third still waits
  EXPECT_EQ(b.items[0].seq, 0);
  EXPECT_EQ(b.items[1].seq, 1);
}

// vLLM V1's prefix caching: a preempted request's full blocks stay in the free queue, and when it
// is scheduled again only what was evicted (here nothing) is recomputed. Without it, the whole
// prompt and the generated token are computed again.
TEST(Scheduler, PrefixCachingKeepsAPreemptedRequestsBlocks) {
  for (bool caching : {true, false}) {
    // 6 blocks of 16: A (48 + 2 tokens) and B (32 + 10) prefill into 5 of them; A's next token
    // takes the sixth, B's has none left and B (admitted last) is preempted; A then finishes.
    Scheduler s(SchedulerConfig{8, 1000, 16, 6, 0, caching});
    s.add(req(0, 48, 2), 0);
    s.add(req(1, 32, 10), 0);
    sim::Batch b = s.schedule();
    ASSERT_EQ(b.items.size(), 2u);
    s.complete(b, 1, nullptr);
    b = s.schedule();
    EXPECT_EQ(s.preemptions(), 1);
    ASSERT_EQ(b.items.size(), 1u);
    EXPECT_EQ(b.items[0].seq, 0);
    EXPECT_EQ(s.complete(b, 2, nullptr), 1);  // A is done
    b = s.schedule();
    ASSERT_EQ(b.items.size(), 1u);
    EXPECT_EQ(b.items[0].seq, 1);
    EXPECT_EQ(b.items[0].context, caching ? 32 : 0) << caching;
    EXPECT_EQ(b.items[0].new_tokens, caching ? 1 : 33) << caching;
    s.complete(b, 3, nullptr);
    EXPECT_EQ(s.seqs()[1].generated, 2) << caching;  // its second token, either way
  }
}

TEST(Scheduler, PreemptsTheLastAdmittedWhenBlocksRunOut) {
  // 4 blocks of 16 tokens: two requests of 32-token prompts fill them; the first one's next
  // token needs a fifth block, so the second (admitted last) is preempted by recomputation.
  Scheduler s(SchedulerConfig{8, 1000, 16, 4, 0});
  s.add(req(0, 32, 10), 0);
  s.add(req(1, 32, 10), 0);
  sim::Batch b = s.schedule();
  ASSERT_EQ(b.items.size(), 2u);
  s.complete(b, 1, nullptr);
  EXPECT_EQ(s.used_blocks(), 4);
  b = s.schedule();  // both decode: token 33 of each needs a new block
  EXPECT_EQ(s.preemptions(), 1);
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].seq, 0);
  EXPECT_EQ(s.seqs()[1].computed, 0);
  EXPECT_EQ(s.seqs()[1].preemptions, 1);
}

// TensorRT-LLM's GUARANTEED_NO_EVICT: the same requests as above, but each is admitted only when
// the blocks of its whole prompt and output (42 tokens: 3 blocks) are free. The first takes 3 of
// the 4; the second waits until the first finishes, and nothing is ever preempted.
TEST(Scheduler, GuaranteedNoEvictAdmitsWholeRequestsAndNeverPreempts) {
  Scheduler s(SchedulerConfig{8, 1000, 16, 4, 0, false, true});
  s.add(req(0, 32, 10), 0);
  s.add(req(1, 32, 10), 0);
  sim::Batch b = s.schedule();
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].seq, 0);
  EXPECT_EQ(s.used_blocks(), 3);  // reserved for all 42 tokens at admission
  double t = 1;
  std::int64_t finished = 0;
  while (finished == 0) {
    finished += s.complete(b, t, nullptr);
    b = s.schedule();
    t += 1;
    if (finished == 0) {
      ASSERT_EQ(b.items.size(), 1u);  // the second still waits: 1 block free, 3 needed
      EXPECT_EQ(b.items[0].seq, 0);
    }
  }
  EXPECT_EQ(s.seqs()[0].generated, 10);
  ASSERT_EQ(b.items.size(), 1u);  // the first's blocks came back: the second is admitted
  EXPECT_EQ(b.items[0].seq, 1);
  EXPECT_EQ(s.preemptions(), 0);
}

TEST(Scheduler, RejectsWhatCanNeverFit) {
  Scheduler s(SchedulerConfig{8, 1000, 16, 4, 100});
  s.add(req(0, 90, 20), 0);  // 110 tokens > max_model_len 100
  s.add(req(1, 50, 30), 0);  // 80 tokens: 5 blocks > the pool's 4
  EXPECT_TRUE(s.seqs()[0].rejected);
  EXPECT_TRUE(s.seqs()[1].rejected);
  EXPECT_FALSE(s.has_work());
}

struct Deployment {
  model::Model m;
  hw::Cluster c;
  sim::MemoryPlan plan;
};

Deployment setup(const char* model, const char* cluster, std::int64_t tp, std::int64_t pp) {
  Deployment s{test::load_or_die(test::example(model)), *hw::load_cluster(cluster), {}};
  sim::ServingOptions o;
  o.max_model_len = 8192;
  auto r = sim::resolve_options(s.m, s.c.gpu, o);
  sim::ParallelConfig p;
  p.tp = tp;
  p.pp = pp;
  s.plan = sim::simulate_memory(s.m, s.c.gpu, p, *r);
  return s;
}

sim::Workload poisson(double rate, std::int64_t n, std::uint64_t seed = 1) {
  sim::Workload w;
  w.name = "test";
  w.rate_per_s = rate;
  w.seed = seed;
  std::uint64_t x = seed * 2654435761u + 1;
  double t = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const double u = static_cast<double>((x >> 11) + 1) / 9007199254740993.0;
    t += -std::log(u) / rate;
    w.requests.push_back(req(k, 200 + static_cast<std::int64_t>(x % 800), 50 + (x >> 40) % 200, t));
  }
  return w;
}

TEST(Serving, DeterministicByteForByte) {
  Deployment s = setup("llama-3.1-8b.yaml", "h100x1", 2, 2);
  sim::StepCostModel cost(s.m, s.c, s.plan.parallel, s.plan.options);
  sim::Workload w = poisson(20, 500);
  auto a = planner::performance_json(sim::simulate_serving(cost, s.plan, w)).dump();
  auto b = planner::performance_json(sim::simulate_serving(cost, s.plan, w)).dump();
  EXPECT_EQ(a, b);
  auto c = planner::performance_json(sim::simulate_serving(cost, s.plan, poisson(20, 500, 2))).dump();
  EXPECT_NE(a, c);
}

TEST(Serving, EveryRequestFinishesAndMetricsAreConsistent) {
  Deployment s = setup("llama-3.1-8b.yaml", "h100x1", 1, 1);
  sim::StepCostModel cost(s.m, s.c, s.plan.parallel, s.plan.options);
  sim::ServingResult r = sim::simulate_serving(cost, s.plan, poisson(10, 300));
  EXPECT_EQ(r.finished, 300);
  EXPECT_EQ(r.rejected, 0);
  EXPECT_LE(r.ttft_ms.p50, r.ttft_ms.p90);
  EXPECT_LE(r.ttft_ms.p90, r.ttft_ms.p99);
  EXPECT_LE(r.ttft_ms.p99, r.e2e_ms.p99);
  EXPECT_GT(r.tpot_ms.p50, 0);
  EXPECT_NEAR(r.throughput_requests_per_s * r.makespan_s, 300, 1e-6);
  EXPECT_DOUBLE_EQ(r.goodput_requests_per_s, r.throughput_requests_per_s);  // no SLOs
  sim::Slo slo;
  slo.ttft_ms = r.ttft_ms.p50;  // about half the requests meet it
  sim::ServingResult g = sim::simulate_serving(cost, s.plan, poisson(10, 300), slo);
  EXPECT_LT(g.goodput_requests_per_s, r.throughput_requests_per_s);
  EXPECT_GE(g.goodput_requests_per_s, 0.45 * r.throughput_requests_per_s);
}

TEST(Serving, DoublingTheRateNeverLowersTtftP99AtSaturation) {
  Deployment s = setup("llama-3.1-70b.yaml", "h100x1", 4, 1);
  sim::StepCostModel cost(s.m, s.c, s.plan.parallel, s.plan.options);
  double previous = 0;
  for (double rate : {20.0, 40.0, 80.0, 160.0}) {
    sim::ServingResult r = sim::simulate_serving(cost, s.plan, poisson(rate, 600));
    EXPECT_GE(r.ttft_ms.p99, previous) << rate;
    previous = r.ttft_ms.p99;
  }
}

TEST(Serving, PreemptionsWhenTheKvPoolIsTooSmall) {
  Deployment s = setup("llama-3.1-8b.yaml", "h100x1", 1, 1);
  sim::StepCostModel cost(s.m, s.c, s.plan.parallel, s.plan.options);
  sim::ServingResult roomy = sim::simulate_serving(cost, s.plan, poisson(50, 300));
  EXPECT_EQ(roomy.preemptions, 0);
  s.plan.gpu_blocks = 200;  // 3,200 tokens for dozens of concurrent requests
  sim::ServingResult tight = sim::simulate_serving(cost, s.plan, poisson(50, 300));
  EXPECT_GT(tight.preemptions, 0);
  EXPECT_EQ(tight.finished + tight.rejected, 300);
  EXPECT_GT(tight.e2e_ms.p50, roomy.e2e_ms.p50);
}

TEST(Serving, PipelineKeepsUpToPpBatchesInFlight) {
  Deployment s = setup("llama-3.1-8b.yaml", "h100x1", 1, 4);
  sim::StepCostModel cost(s.m, s.c, s.plan.parallel, s.plan.options);
  sim::ServingResult r = sim::simulate_serving(cost, s.plan, poisson(40, 400));
  ASSERT_EQ(r.breakdown.size(), 4u);
  for (const auto& st : r.breakdown) {
    EXPECT_GT(st.compute, 0);
    // The parts of a stage's time add up to the makespan (the send is on the stage's stream).
    EXPECT_NEAR(st.compute + st.tp_comm + st.ep_comm + st.pp_comm + st.host + st.bubble, r.makespan_s,
                1e-6 * r.makespan_s + 1e-9);
  }
  EXPECT_GT(r.breakdown[0].pp_comm, 0);
  EXPECT_EQ(r.breakdown[3].pp_comm, 0);
  // Counted: at 40 requests/s the four stages each hold a batch at some point, never five.
  EXPECT_EQ(r.max_batches_in_flight, 4);
  Deployment one = setup("llama-3.1-8b.yaml", "h100x1", 1, 1);
  sim::StepCostModel c1(one.m, one.c, one.plan.parallel, one.plan.options);
  EXPECT_EQ(sim::simulate_serving(c1, one.plan, poisson(40, 400)).max_batches_in_flight, 1);
}

TEST(Serving, ClosedLoopAndDataParallelReplicas) {
  Deployment s = setup("llama-3.1-8b.yaml", "h100x1", 1, 1);
  s.plan.parallel.dp = 4;
  sim::StepCostModel cost(s.m, s.c, s.plan.parallel, s.plan.options);
  sim::Workload w = poisson(1, 400);
  w.arrival = sim::ArrivalProcess::kClosedLoop;
  w.concurrency = 32;
  for (auto& r : w.requests) r.arrival_s = 0;
  sim::ServingResult r = sim::simulate_serving(cost, s.plan, w);
  EXPECT_EQ(r.finished, 400);
  s.plan.parallel.dp = 1;
  sim::StepCostModel one(s.m, s.c, s.plan.parallel, s.plan.options);
  sim::ServingResult single = sim::simulate_serving(one, s.plan, w);
  EXPECT_GT(single.makespan_s, r.makespan_s);  // four replicas share the 32 slots' work
}

}  // namespace
}  // namespace tpp

namespace tpp {
namespace {

// One request at a time (max_num_seqs 1), each a single 16-token prefill that samples its only
// token: the engine is a single server with a fixed service time S, and Poisson arrivals make it
// an M/D/1 queue. Queueing theory, not the simulator, gives the expected figures.
Deployment tiny() {
  Deployment s{test::load_or_die(test::example("tiny-llama.yaml")), *hw::load_cluster("h100x1"),
               {}};
  auto r = sim::resolve_options(s.m, s.c.gpu, {});
  EXPECT_TRUE(r);
  s.plan = sim::simulate_memory(s.m, s.c.gpu, test::split(1), *r);
  return s;
}

struct SingleServer {
  Deployment d = tiny();
  SingleServer() { d.plan.options.max_num_seqs = 1; }
  sim::ServingResult serve(double rate, std::int64_t n, std::uint64_t seed = 3) const {
    sim::StepCostModel cost(d.m, d.c, d.plan.parallel, d.plan.options);
    sim::Workload w = poisson(rate, n, seed);
    for (auto& q : w.requests) {
      q.input_tokens = 16;
      q.output_tokens = 1;
    }
    return sim::simulate_serving(cost, d.plan, w);
  }
  double service_s() const {  // one request alone: its TTFT is the service time
    return serve(1e-3, 1).ttft_ms.mean / 1e3;
  }
};

TEST(ServingQueueing, MeanWaitMatchesPollaczekKhinchine) {
  SingleServer q;
  const double s = q.service_s();
  ASSERT_GT(s, 0);
  for (double rho : {0.5, 0.8}) {
    sim::ServingResult r = q.serve(rho / s, 20000);
    // M/D/1: Wq = rho S / (2 (1 - rho)); the first token comes S after service starts.
    const double expected_ms = (rho * s / (2 * (1 - rho)) + s) * 1e3;
    EXPECT_NEAR(r.ttft_ms.mean, expected_ms, 0.05 * expected_ms) << "rho " << rho;
    EXPECT_TRUE(r.load.applies);
    EXPECT_TRUE(r.load.sustained) << "rho " << rho;
  }
}

TEST(ServingQueueing, AnOverloadedServerIsFlaggedAndServesAtItsCapacity) {
  SingleServer q;
  const double s = q.service_s();
  sim::ServingResult r = q.serve(1.25 / s, 4000);
  EXPECT_FALSE(r.load.sustained);
  // Over the second half of the arrivals it finishes 1/S requests a second, not 1.25/S.
  EXPECT_NEAR(r.load.served_requests_per_s, 1 / s, 0.02 / s);
  EXPECT_NEAR(r.load.offered_requests_per_s, 1.25 / s, 0.1 / s);
  // Its backlog grows by the arrivals it cannot serve: (1 - 1/1.25) of the 2,000 in the window.
  EXPECT_NEAR(r.load.backlog_end - r.load.backlog_mid, 0.2 * 2000, 0.05 * 2000);
  // A closed loop cannot be overloaded: there is no offered rate to fall behind.
  Deployment d = tiny();
  sim::StepCostModel cost(d.m, d.c, d.plan.parallel, d.plan.options);
  sim::Workload w = poisson(1, 50);
  w.arrival = sim::ArrivalProcess::kClosedLoop;
  w.concurrency = 8;
  EXPECT_FALSE(sim::simulate_serving(cost, d.plan, w).load.applies);
}

}  // namespace
}  // namespace tpp
