// SGLang and TensorRT-LLM beside vLLM (tpp-plan --engine): their memory accounting, worked by
// hand from the engines' own formulas (simulator/memory.h names the files), their schedulers'
// admission, and the CLI that chooses among them.
#include <gtest/gtest.h>

#include <cmath>

#include "cli_util.h"
#include "hardware_profiles/hardware.h"
#include "planner/launch.h"
#include "simulator/memory.h"
#include "simulator/scheduler.h"
#include "test_util.h"

namespace tpp {
namespace {

using sim::Framework;
using sim::ParallelConfig;
using sim::Request;
using sim::Scheduler;
using sim::SchedulerConfig;

sim::MemoryPlan engine_plan(Framework f, ParallelConfig p, std::optional<double> fraction = {}) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  auto g = hw::load_gpu("H100-SXM5-80GB");
  EXPECT_TRUE(g);
  sim::ServingOptions o = sim::with_framework({}, f);
  o.memory_fraction = fraction;
  auto r = sim::resolve_options(m, *g, o);
  EXPECT_TRUE(r) << (r ? "" : r.error().str());
  return sim::simulate_memory(sim::as_loaded(m, o), *g, p, *r);
}

// SGLang 0.5.6 on one H100 (79.18 GiB = 81080 MiB): chunked_prefill_size 8192 and
// cuda_graph_max_bs 256 (under 90 GiB, TP < 4), so reserved = 512 + 8192 x 1.5 + 256 x 2 +
// 1/8 x 1024 = 13440 MiB and mem_fraction_static = round((81080.3 - 13440) / 81080.3, 3) = 0.834.
// The pool: (total - non-torch) x 0.834 - weights, in tokens of 32 layers x 8 KV heads x 128 x
// 2 (K and V) x 2 bytes = 128 KiB; max_running_requests = min(tokens / 2, 4096).
TEST(EngineMemory, SglangTokenPoolByHand) {
  const sim::MemoryPlan p = engine_plan(Framework::kSglang, {1, 1, 1});
  ASSERT_TRUE(p.fits) << p.why_not;
  EXPECT_DOUBLE_EQ(p.options.memory_fraction, 0.834);
  EXPECT_EQ(p.options.block_size, 1);
  EXPECT_EQ(p.options.max_num_batched_tokens, 8192);
  const auto& st = p.stages[0];
  const double total = 79.18 * 1073741824.0;
  const auto budget = static_cast<std::int64_t>(std::floor((std::llround(total) - st.non_torch_bytes) * 0.834));
  EXPECT_EQ(p.budget_bytes, budget);
  EXPECT_EQ(st.kv_bytes_per_token, 32 * 8 * 128 * 2 * 2);
  const std::int64_t tokens = (budget - st.weights_bytes) / st.kv_bytes_per_token;
  EXPECT_NEAR(static_cast<double>(p.kv_cache_tokens), static_cast<double>(tokens), 32);  // per-layer floor
  const std::int64_t reqs = std::min<std::int64_t>(
      std::max<std::int64_t>(static_cast<std::int64_t>(static_cast<double>(p.kv_cache_tokens) / 131072 * 512), 2048), 4096);
  EXPECT_EQ(p.options.max_num_seqs, std::min(p.kv_cache_tokens / 2, reqs));
  // TP4: cuda_graph_max_bs 512 and tp x pp / 8 x 1024 = 512: reserved 14336 MiB, 0.823.
  const sim::MemoryPlan tp4 = engine_plan(Framework::kSglang, {4, 1, 1});
  EXPECT_DOUBLE_EQ(tp4.options.memory_fraction, 0.823);
  // A fraction given is taken as it is.
  EXPECT_DOUBLE_EQ(engine_plan(Framework::kSglang, {1, 1, 1}, 0.7).options.memory_fraction, 0.7);
}

// TensorRT-LLM: (total - weights - activation peak - non-torch) x 0.9, in blocks of 32 tokens.
TEST(EngineMemory, TrtllmFreeFractionByHand) {
  const sim::MemoryPlan p = engine_plan(Framework::kTrtllm, {1, 1, 1});
  ASSERT_TRUE(p.fits) << p.why_not;
  const auto& st = p.stages[0];
  const std::int64_t left = p.total_bytes - st.weights_bytes - st.activation_peak_bytes - st.non_torch_bytes;
  EXPECT_EQ(st.kv_cache_bytes, static_cast<std::int64_t>(static_cast<double>(left) * 0.9));
  EXPECT_EQ(p.options.block_size, 32);
  EXPECT_EQ(p.gpu_blocks, st.kv_cache_bytes / (32 * st.kv_bytes_per_token / 32) / 32);
  EXPECT_EQ(p.options.max_num_seqs, 2048);
  EXPECT_EQ(p.options.max_num_batched_tokens, 8192);
  EXPECT_TRUE(p.options.reserve_whole_request);
  EXPECT_FALSE(p.options.chunked_prefill);
  // A fraction given is taken as it is.
  const sim::MemoryPlan half = engine_plan(Framework::kTrtllm, {1, 1, 1}, 0.5);
  EXPECT_EQ(half.stages[0].kv_cache_bytes, static_cast<std::int64_t>(static_cast<double>(left) * 0.5));
}

Request req(std::int64_t id, std::int64_t in, std::int64_t out) { return Request{id, 0, in, out}; }

SchedulerConfig sglang_config(std::int64_t tokens) {
  SchedulerConfig c{64, 100, 1, tokens, 0};
  c.sglang = true;
  c.max_prefill_tokens = 16384;
  return c;
}

// A step is a prefill batch or a decode of the running requests, never both; prompts go first.
TEST(SglangScheduler, PrefillOrDecodeNeverMixed) {
  Scheduler s(sglang_config(100000));
  s.add(req(0, 150, 3), 0);
  sim::Batch b = s.schedule();
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].new_tokens, 100);  // chunked at chunked_prefill_size
  s.complete(b, 1, nullptr);
  s.add(req(1, 30, 3), 1);
  b = s.schedule();  // the begun prompt first, then the new one: prefill only
  ASSERT_EQ(b.items.size(), 2u);
  EXPECT_EQ(b.items[0].new_tokens, 50);
  EXPECT_EQ(b.items[1].new_tokens, 30);
  s.complete(b, 2, nullptr);
  s.add(req(2, 20, 3), 2);
  b = s.schedule();  // a waiting prompt beats the decodes
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].seq, 2);
  s.complete(b, 3, nullptr);
  b = s.schedule();  // nothing to prefill: every running request decodes
  EXPECT_EQ(b.items.size(), 3u);
  for (const auto& it : b.items) EXPECT_EQ(it.new_tokens, 1);
}

// Admission reserves outputs: a request is admitted while prompt + output stays below the free
// tokens less the running requests' remaining output x new_token_ratio (0.7 at first).
TEST(SglangScheduler, AdmissionReservesFutureTokens) {
  Scheduler s(sglang_config(1000));
  s.add(req(0, 100, 600), 0);
  sim::Batch b = s.schedule();
  s.complete(b, 1, nullptr);  // prompt done, 1 of 600 out; 900 tokens free
  // Reserved for request 0: 599 x 0.7 = 419.3; left 900 - 419.3 = 480.7.
  s.add(req(1, 200, 281), 1);  // 481 >= 480.7: waits
  b = s.schedule();
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].seq, 0);  // the decode ran instead
  Scheduler t(sglang_config(1000));
  t.add(req(0, 100, 600), 0);
  b = t.schedule();
  t.complete(b, 1, nullptr);
  t.add(req(1, 200, 280), 1);  // 480 < 480.7: admitted
  b = t.schedule();
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].seq, 1);
}

// Out of tokens in a decode: the request with the fewest outputs goes back to the queue. After
// 600 decode steps new_token_ratio has fallen from 0.7 to 0.098, so request 1 is let in beside
// request 0 (350 < 390 free - 389 x 0.098), though the two need 1350 tokens of the 1000.
TEST(SglangScheduler, RetractsFewestOutputsFirst) {
  Scheduler s(sglang_config(1000));
  s.add(req(0, 10, 980), 0);
  double now = 1;
  for (int k = 0; k < 601; ++k) s.complete(s.schedule(), now++, nullptr);
  ASSERT_EQ(s.seqs()[0].generated, 601);
  s.add(req(1, 50, 300), now);
  sim::Batch b = s.schedule();
  ASSERT_EQ(b.items.size(), 1u);
  EXPECT_EQ(b.items[0].seq, 1);  // admitted
  s.complete(b, now++, nullptr);
  while (s.preemptions() == 0 && s.has_work()) s.complete(s.schedule(), now++, nullptr);
  ASSERT_EQ(s.preemptions(), 1);
  EXPECT_EQ(s.seqs()[1].preemptions, 1);  // fewer outputs than request 0
  EXPECT_EQ(s.seqs()[0].preemptions, 0);
  while (s.has_work() && now < 10000) s.complete(s.schedule(), now++, nullptr);
  EXPECT_TRUE(s.seqs()[0].finished && s.seqs()[1].finished);
  EXPECT_EQ(s.used_blocks(), 0);
}

// With a batch in flight (PP) a second prompt may be chunked beside the first; when neither can
// then finish in the blocks left, the newer gives its blocks back, instead of the scheduler
// returning empty batches forever.
TEST(SglangScheduler, TwoBegunPromptsNeverStall) {
  SchedulerConfig c = sglang_config(60);
  c.max_num_batched_tokens = 25;
  Scheduler s(c);
  s.add(req(0, 50, 1), 0);
  s.add(req(1, 33, 1), 0);
  const sim::Batch first = s.schedule();   // A: 25 of 50; the chunk ends the batch
  const sim::Batch second = s.schedule();  // A in flight: B (33 + 1 < 35 free) begins
  ASSERT_EQ(second.items.size(), 1u);
  EXPECT_EQ(second.items[0].seq, 1);
  s.complete(first, 1, nullptr);
  s.complete(second, 2, nullptr);
  const sim::Batch third = s.schedule();  // 10 free: A needs 25, B 8 more than it has room for
  ASSERT_FALSE(third.empty());
  EXPECT_EQ(third.items[0].seq, 0);
  EXPECT_EQ(s.seqs()[1].preemptions, 1);
  s.complete(third, 3, nullptr);
  double now = 4;
  while (s.has_work() && now < 100) s.complete(s.schedule(), now++, nullptr);
  EXPECT_FALSE(s.has_work());
}

// TensorRT-LLM without chunked prefill: a prompt runs whole in one step, or waits; one longer
// than a step's tokens is refused on arrival.
TEST(TrtllmScheduler, WholePromptsOnly) {
  SchedulerConfig c{8, 100, 32, 1000, 0};
  c.reserve_whole_request = true;
  c.chunked_prefill = false;
  Scheduler s(c);
  s.add(req(0, 60, 2), 0);
  s.add(req(1, 60, 2), 0);
  s.add(req(2, 101, 2), 0);
  EXPECT_EQ(s.seqs()[2].rejection, sim::Rejection::kOverBatchTokens);
  sim::Batch b = s.schedule();
  ASSERT_EQ(b.items.size(), 1u);  // 60 + 60 > 100: the second waits whole
  EXPECT_EQ(b.items[0].new_tokens, 60);
}

TEST(CliEngine, EachEngineItsMemoryLineAndLaunch) {
  auto r = test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --tp 1 --engine sglang");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("SGLang memory per GPU: mem_fraction_static 0.834"), std::string::npos) << r.out;
  r = test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --engine trtllm --top 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("deploy with TensorRT-LLM:\ntrtllm-serve meta-llama/Llama-3.1-8B-Instruct --tp_size"),
            std::string::npos) << r.out;
  r = test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --engine all --top 3 --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* e : {"\"engine\": \"vllm\"", "\"engine\": \"sglang\"", "\"engine\": \"trtllm\""})
    EXPECT_NE(r.out.find(e), std::string::npos) << e;
}

TEST(CliEngine, BadCombinationsAreOneLine) {
  test::expect_one_line_error(test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --mem-fraction-static 0.8"),
                              "tpp-plan: error: --mem-fraction-static is SGLang's: add --engine sglang");
  test::expect_one_line_error(
      test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --engine all --tp 1"),
      "tpp-plan: error: --engine all compares the engines in the search; give one engine with "
      "--tp/--pp/--dp");
  test::expect_one_line_error(
      test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --engine sglang --gpu-memory-utilization 0.8"),
      "tpp-plan: error: --gpu-memory-utilization is vLLM's; SGLang takes --mem-fraction-static");
  test::expect_one_line_error(
      test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --engine trtllm --tp 1 "
                     "--kv-cache-free-gpu-memory-fraction 1.5"),
      "tpp-plan: error: --kv-cache-free-gpu-memory-fraction must be in (0, 1], got 1.5");
  const auto hybrid = test::tpp_plan("--model " + std::string(TPP_TEST_DATA) +
                                     "/hf/openai--gpt-oss-120b.json --cluster h100x1 --tp 1 --engine sglang");
  EXPECT_EQ(hybrid.code, 2);
  EXPECT_NE(hybrid.err.find("has sliding-window, chunked or linear-attention layers"), std::string::npos)
      << hybrid.err;
}

// An FP4 KV cache (NVFP4: E2M1 values and an fp8 scale a block of 16): 0.5625 bytes a value, so
// Llama-3.1-70B's 160 KiB a token at TP2 in bfloat16 (80 layers x 4 KV heads x 128 x 2 x 2 bytes)
// is 45 KiB, and a B200 holds 2 / 0.5625 = 3.56 times the tokens of its bfloat16 cache.
TEST(Fp4KvCache, BytesTokensAndWhereItRuns) {
  model::Model m = test::load_or_die(test::example("llama-3.1-70b.yaml"));
  model::Model r1 = test::load_or_die(test::example("r1.yaml"));
  auto b200 = hw::load_gpu("B200-SXM-180GB");
  auto h100 = hw::load_gpu("H100-SXM5-80GB");
  auto rtx = hw::load_gpu("RTX-PRO-6000-96GB");
  ASSERT_TRUE(b200 && h100 && rtx);
  auto plan = [&](const model::Model& mm, const hw::Gpu& g, Framework f, model::KvCacheDType kv,
                  ParallelConfig p) -> Expected<sim::MemoryPlan> {
    sim::ServingOptions o = sim::with_framework({}, f);
    o.kv_cache_dtype = kv;
    auto r = sim::resolve_options(mm, g, o);
    if (!r) return r.error();
    return sim::simulate_memory(sim::as_loaded(mm, o), g, p, *r);
  };
  auto bf16 = plan(m, *b200, Framework::kVllm, model::KvCacheDType::kBF16, {2, 1, 1});
  auto fp4 = plan(m, *b200, Framework::kVllm, model::KvCacheDType::kNvfp4, {2, 1, 1});
  ASSERT_TRUE(bf16 && fp4);
  EXPECT_EQ(bf16->stages[0].kv_bytes_per_token, 80 * 4 * 128 * 2 * 2);
  EXPECT_EQ(fp4->stages[0].kv_bytes_per_token, 80 * 4 * (128 / 2 + 128 / 16) * 2);
  EXPECT_NEAR(static_cast<double>(fp4->gpu_blocks) / static_cast<double>(bf16->gpu_blocks), 2 / 0.5625, 0.01);
  // Where it runs: Blackwell's FP4 tensor cores; vLLM's on SM100/SM103 only; MLA on SGLang only.
  auto refused = [](const Expected<sim::MemoryPlan>& e, const std::string& why) {
    ASSERT_FALSE(e);
    EXPECT_NE(e.error().message.find(why), std::string::npos) << e.error().message;
  };
  refused(plan(m, *h100, Framework::kVllm, model::KvCacheDType::kNvfp4, {2, 1, 1}),
          "--kv-cache-dtype nvfp4: an FP4 KV cache needs FP4 tensor cores");
  refused(plan(m, *h100, Framework::kSglang, model::KvCacheDType::kNvfp4, {2, 1, 1}), "needs FP4 tensor cores");
  refused(plan(m, *rtx, Framework::kVllm, model::KvCacheDType::kNvfp4, {2, 1, 1}), "vllm-project/vllm issue #49011");
  EXPECT_TRUE(plan(m, *rtx, Framework::kSglang, model::KvCacheDType::kNvfp4, {2, 1, 1}));
  refused(plan(r1, *b200, Framework::kVllm, model::KvCacheDType::kNvfp4, {8, 1, 1}), "SGLang has (--engine sglang)");
  refused(plan(r1, *b200, Framework::kTrtllm, model::KvCacheDType::kNvfp4, {8, 1, 1}), "TensorRT-LLM has no FP4 KV");
  auto r1_fp4 = plan(r1, *b200, Framework::kSglang, model::KvCacheDType::kNvfp4, {8, 1, 1});
  ASSERT_TRUE(r1_fp4) << r1_fp4.error().message;
  EXPECT_EQ(r1_fp4->stages[0].kv_bytes_per_token, 61 * (512 + 64) * 9 / 16);  // the latent and rope values
}

// Each engine's name for it in the launch command (and SGLang's for a bfloat16 cache).
TEST(Fp4KvCache, EachEngineNamesItInItsLaunch) {
  model::Model m = test::load_or_die(test::example("llama-3.1-70b.yaml"));
  auto c = hw::load_cluster("b200x1");
  ASSERT_TRUE(c);
  for (auto [kv, vllm, sglang, trtllm] :
       {std::tuple{model::KvCacheDType::kNvfp4, " --kv-cache-dtype nvfp4", " --kv-cache-dtype fp4_e2m1", "dtype: nvfp4"},
        std::tuple{model::KvCacheDType::kBF16, " --kv-cache-dtype bfloat16", " --kv-cache-dtype bfloat16", ""},
        std::tuple{model::KvCacheDType::kFP8E5M2, " --kv-cache-dtype fp8_e5m2", " --kv-cache-dtype fp8_e5m2", "dtype: fp8"}}) {
    sim::ServingOptions o;
    o.kv_cache_dtype = kv;
    auto r = sim::resolve_options(m, c->gpu, o);
    ASSERT_TRUE(r);
    const auto l = planner::launch_commands(m, *c, sim::simulate_memory(sim::as_loaded(m, o), c->gpu, {2, 1, 1}, *r));
    EXPECT_NE(l.vllm.find(vllm), std::string::npos) << l.vllm;
    EXPECT_NE(l.sglang.find(sglang), std::string::npos) << l.sglang;
    if (*trtllm) EXPECT_NE(l.trtllm_setup.find(trtllm), std::string::npos) << l.trtllm_setup;
    else EXPECT_TRUE(l.trtllm_setup.empty()) << l.trtllm_setup;
  }
  auto cli = test::tpp_plan("--model llama-3.1-70b --cluster b200x1 --tp 2 --kv-cache-dtype fp4_e2m1 --engine sglang");
  ASSERT_EQ(cli.code, 0) << cli.err;
  EXPECT_NE(cli.out.find("kv_cache_dtype nvfp4"), std::string::npos) << cli.out;
  test::expect_one_line_error(
      test::tpp_plan("--model llama-3.1-70b --cluster h100x1 --kv-cache-dtype nvfp4"),
      "tpp-plan: error: --kv-cache-dtype nvfp4: an FP4 KV cache needs FP4 tensor cores (NVIDIA Blackwell, "
      "compute capability 10.0 or later); H100-SXM5-80GB has none for it");
}

}  // namespace
}  // namespace tpp
