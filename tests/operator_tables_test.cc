// The measured operator tables (hardware_profiles/operators): the shipped files load and name
// their source, lookups return the measurement on the grid and stay between neighbours off it,
// malformed files are refused with the file and the field, and the step model uses a table only
// for the engine, dtypes and shapes it covers (GEMMs, attention, fused MoE layers, MLA modules
// or kernels, the TP all-reduce below the engine's own limit).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "common/data_path.h"
#include "hardware_profiles/hardware.h"
#include "hardware_profiles/operator_tables.h"
#include "simulator/memory.h"
#include "simulator/step_cost.h"
#include "cli_util.h"
#include "test_util.h"

namespace tpp {
namespace {

using hw::OperatorTables;

std::shared_ptr<const OperatorTables> shipped(const std::string& gpu, const std::string& engine) {
  auto t = hw::find_operator_tables(gpu, engine);
  if (!t) ADD_FAILURE() << t.error().str();
  return t ? *t : nullptr;
}

// Any consistent roofline: the lookup's ratio cancels it on grid points.
double flops_roof(double m, double n, double k) { return 2 * m * n * k / 989e12 + 1e-9; }

TEST(OperatorTables, ShippedFilesLoadAndNameTheirSource) {
  int files = 0;
  for (const char* gpu : {"A100-SXM4-80GB", "H100-SXM5-80GB", "H200-SXM-141GB"})
    for (const char* engine : {"vllm", "trtllm", "sglang"}) {
      auto t = shipped(gpu, engine);
      ASSERT_TRUE(t) << gpu << " " << engine;
      ++files;
      EXPECT_EQ(t->gpu, gpu);
      EXPECT_EQ(t->engine, engine);
      EXPECT_FALSE(t->engine_version.empty());
      EXPECT_NE(t->source.find("Apache-2.0"), std::string::npos) << t->source;
      EXPECT_NE(t->source.find("aiconfigurator"), std::string::npos) << t->source;
      EXPECT_TRUE(t->gemm.count("bfloat16"));
      EXPECT_FALSE(t->attention_decode.empty());
      EXPECT_FALSE(t->attention_prefill.empty());
      EXPECT_TRUE(hw::load_gpu(gpu)) << "the table's GPU is in the catalog";
      EXPECT_TRUE(t->moe.count("bfloat16")) << gpu << " " << engine;
      for (std::int64_t n : {2, 4, 8}) EXPECT_TRUE(t->all_reduce_series(n, "graph")) << n;
    }
  EXPECT_EQ(files, 9);
  // Hopper: vLLM and TensorRT-LLM measured DeepSeek-V3's whole MLA module; SGLang and
  // TensorRT-LLM the bare MLA kernel.
  EXPECT_TRUE(shipped("H200-SXM-141GB", "vllm")->mla_module);
  EXPECT_TRUE(shipped("H200-SXM-141GB", "trtllm")->mla_module);
  EXPECT_FALSE(shipped("H200-SXM-141GB", "sglang")->mla_module);
  EXPECT_TRUE(shipped("H200-SXM-141GB", "sglang")->mla_decode.count("bfloat16"));
  EXPECT_FALSE(shipped("A100-SXM4-80GB", "vllm")->mla_module);
  // L40S (PCIe, no NVLink): vLLM and SGLang turn their custom all-reduce off beyond 2 GPUs, so
  // there every size is NCCL's (own_max_bytes 0).
  for (const char* engine : {"vllm", "sglang"}) {
    auto t = shipped("L40S", engine);
    ASSERT_TRUE(t) << engine;
    EXPECT_GT(t->all_reduce_series(2, "graph")->own_max_bytes, 0) << engine;
    EXPECT_EQ(t->all_reduce_series(4, "graph")->own_max_bytes, 0) << engine;
    EXPECT_EQ(t->all_reduce_series(8, "graph")->own_max_bytes, 0) << engine;
  }
  EXPECT_GT(shipped("L40S", "trtllm")->all_reduce_series(8, "graph")->own_max_bytes, 0);
}

TEST(OperatorTables, SeriesLookup) {
  const std::vector<double> xs = {1, 4, 16}, us = {10, 20, 80};
  EXPECT_DOUBLE_EQ(OperatorTables::series_s(xs, us, 4), 20e-6) << "a point is its measurement";
  EXPECT_DOUBLE_EQ(OperatorTables::series_s(xs, us, 0.5), 10e-6) << "below: the kernel's latency";
  EXPECT_NEAR(OperatorTables::series_s(xs, us, 2), std::sqrt(10.0 * 20) * 1e-6, 1e-12)
      << "linear in log x and log time";
  EXPECT_DOUBLE_EQ(OperatorTables::series_s(xs, us, 32), 160e-6) << "beyond: in proportion";
  EXPECT_EQ(OperatorTables::series_s(xs, us, 0), 0);
}

TEST(OperatorTables, EngineAllReduceBelowItsOwnLimitThenNccl) {
  model::Model m = test::load_or_die(test::example("llama-3.1-70b.yaml"));
  auto c = hw::load_cluster("h100x1");
  ASSERT_TRUE(c) << c.error().str();
  sim::ServingOptions o;
  auto r = sim::resolve_options(m, c->gpu, o);
  ASSERT_TRUE(r && r->operator_tables) << (r ? "" : r.error().str());
  sim::StepCostModel with(m, *c, test::split(8), *r);
  o.operator_tables = false;
  sim::StepCostModel without(m, *c, test::split(8), *sim::resolve_options(m, c->gpu, o));
  const auto* graph = r->operator_tables->all_reduce_series(8, "graph");
  const auto* eager = r->operator_tables->all_reduce_series(8, "eager");
  ASSERT_TRUE(graph && eager);
  EXPECT_EQ(graph->own_max_bytes, 8 * 1024 * 1024) << "vLLM's CustomAllreduce max_size";
  // A decode step's message (16 tokens of 8192 bf16): vLLM's custom all-reduce under a graph,
  // where it beats the cluster's measured NCCL table (h100x1's nccl-tests, 8 GPUs).
  const double small = 16 * 8192 * 2;
  const double own = OperatorTables::series_s(graph->bytes, graph->us, small);
  EXPECT_LT(own, without.nccl_all_reduce_s(small, 8));
  // Without the tables, CollectiveModel's model of the same kernel (fitted on these tables).
  EXPECT_NEAR(without.all_reduce_s(small, 8) / own, 1.0, 0.10);
  EXPECT_DOUBLE_EQ(with.all_reduce_s(small, 8), own);
  EXPECT_DOUBLE_EQ(with.all_reduce_s(small, 8, false),
                   std::min(OperatorTables::series_s(eager->bytes, eager->us, small),
                            without.nccl_all_reduce_s(small, 8)));
  // Above the custom all-reduce's limit vLLM hands over to NCCL: the cluster's measured table.
  const double big = 64.0 * 1024 * 1024;
  EXPECT_DOUBLE_EQ(with.all_reduce_s(big, 8), without.nccl_all_reduce_s(big, 8));
  // A cluster without a measured NCCL table (h200x1): NCCL as the operator table measured it on
  // an 8-GPU H200 node, not the alpha-beta model.
  auto h200 = hw::load_cluster("h200x1");
  ASSERT_TRUE(h200) << h200.error().str();
  auto r200 = sim::resolve_options(m, h200->gpu, sim::ServingOptions{});
  ASSERT_TRUE(r200 && r200->operator_tables);
  const auto* g200 = r200->operator_tables->all_reduce_series(8, "graph");
  ASSERT_TRUE(g200);
  sim::StepCostModel on200(m, *h200, test::split(8), *r200);
  EXPECT_DOUBLE_EQ(on200.all_reduce_s(big, 8), OperatorTables::series_s(g200->bytes, g200->us, big));
  // The converter's units: a message size in elements, 2 bytes each; at 128 MiB the measured
  // dispatch (NCCL there) is within 10% of h100x1's nccl-tests figure.
  const double huge = 128.0 * 1024 * 1024;
  EXPECT_NEAR(OperatorTables::series_s(graph->bytes, graph->us, huge) /
                  without.nccl_all_reduce_s(huge, 8), 1.0, 0.1);
}

TEST(OperatorTables, FusedMoeLayerFromTheTable) {
  model::Model m = test::load_or_die(test::example("qwen3-30b-a3b.yaml"));
  auto c = hw::load_cluster("a100x1");
  ASSERT_TRUE(c) << c.error().str();
  auto r = sim::resolve_options(m, c->gpu, sim::ServingOptions{});
  ASSERT_TRUE(r && r->operator_tables) << (r ? "" : r.error().str());
  const auto* s = r->operator_tables->moe_series("bfloat16", 2048, 768, 8, 128, 1, 1, "power_law_1.2");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->distribution, "power_law_1.2");
  // The same table with that layer's times doubled: the step's GEMM time grows by exactly the
  // measured layer time x 48 layers (the routed experts are that one call, nothing else).
  auto doubled = std::make_shared<OperatorTables>(*r->operator_tables);
  for (auto& x : doubled->moe["bfloat16"])
    if (x.hidden == 2048 && x.inter == 768 && x.tp == 1 && x.ep == 1)
      for (double& v : x.us) v *= 2;
  sim::ResolvedOptions r2 = *r;
  r2.operator_tables = doubled;
  sim::StepCostModel a(m, *c, test::split(1), *r), b(m, *c, test::split(1), r2);
  sim::BatchShape batch;
  for (int i = 0; i < 24; ++i) batch.add(1, 1000);
  EXPECT_NEAR(b.cost(0, batch).gemm - a.cost(0, batch).gemm,
              48 * OperatorTables::series_s(s->tokens, s->us, 24), 1e-9);
}

TEST(OperatorTables, MlaModuleOrKernelFromTheEngineTable) {
  model::Model m = test::load_or_die(test::example("r1.yaml"));
  auto c = hw::load_cluster("h200x1");
  ASSERT_TRUE(c) << c.error().str();
  sim::BatchShape decode;
  for (int i = 0; i < 32; ++i) decode.add(1, 1023);
  const double layers = static_cast<double>(m.num_layers);
  // vLLM: the whole module (projections included) for 128 / 8 = 16 heads, bf16 KV, fp8 blocks.
  sim::ServingOptions o;
  auto r = sim::resolve_options(m, c->gpu, o);
  ASSERT_TRUE(r && r->operator_tables) << (r ? "" : r.error().str());
  const auto& mm = *r->operator_tables->mla_module;
  const hw::OperatorTables::AttentionSeries* s = nullptr;
  for (const auto& x : mm.decode.at("bfloat16/fp8_block"))
    if (x.heads == 16) s = &x;
  ASSERT_TRUE(s);
  sim::StepCostModel vllm(m, *c, test::split(8), *r);
  const auto a = vllm.cost(0, decode);
  EXPECT_NEAR(a.attention, layers * OperatorTables::attention_s(*s, true, 16, 1, 32, 1024), 1e-9);
  o.operator_tables = false;
  const auto curves = sim::StepCostModel(m, *c, test::split(8), *sim::resolve_options(m, c->gpu, o))
                          .cost(0, decode);
  EXPECT_LT(a.gemm, curves.gemm) << "the module stands for the attention projections";
  // SGLang: the bare kernel over the latent cache; the projections stay GEMMs.
  o.operator_tables = true;
  o.operator_tables_engine = "sglang";
  auto rs = sim::resolve_options(m, c->gpu, o);
  ASSERT_TRUE(rs && rs->operator_tables);
  EXPECT_EQ(rs->operator_tables->engine, "sglang");
  const hw::OperatorTables::AttentionSeries* k = nullptr;
  for (const auto& x : rs->operator_tables->mla_decode.at("bfloat16"))
    if (x.heads == 16 && x.head_dim == 512 + 64) k = &x;
  ASSERT_TRUE(k);
  const auto b = sim::StepCostModel(m, *c, test::split(8), *rs).cost(0, decode);
  EXPECT_NEAR(b.attention, layers * OperatorTables::attention_s(*k, true, 16, 1, 32, 1024), 1e-9);
  EXPECT_GT(b.gemm, a.gemm) << "SGLang's projections are GEMMs outside the kernel's time";
}

TEST(OperatorTables, VllmBlockScaledFp8IsLeftOutAsHostBound) {
  // scripts/aic_convert.py drops vLLM's fp8_block GEMMs (28-60 us at every small shape: host
  // time, not the kernel); TensorRT-LLM's are kept.
  EXPECT_FALSE(shipped("H100-SXM5-80GB", "vllm")->gemm.count("fp8_block"));
  EXPECT_TRUE(shipped("H100-SXM5-80GB", "vllm")->gemm.count("fp8"));
  EXPECT_TRUE(shipped("H100-SXM5-80GB", "trtllm")->gemm.count("fp8_block"));
}

TEST(OperatorTables, GemmOnTheGridIsTheMeasurement) {
  auto t = shipped("H100-SXM5-80GB", "vllm");
  const auto& g = t->gemm.at("bfloat16");
  for (std::size_t in : {std::size_t{0}, g.n.size() / 2, g.n.size() - 1})
    for (std::size_t ik : {std::size_t{0}, g.k.size() / 2, g.k.size() - 1})
      for (std::size_t im : {std::size_t{0}, g.m.size() / 3, g.m.size() - 1})
        EXPECT_NEAR(t->gemm_s("bfloat16", g.m[im], g.n[in], g.k[ik], flops_roof),
                    g.at(in, ik, im) * 1e-6, 1e-12);
  EXPECT_LT(t->gemm_s("int4", 1, 4096, 4096, flops_roof), 0) << "no such dtype";
}

TEST(OperatorTables, GemmBetweenGridPointsStaysBetweenItsNeighbours) {
  auto t = shipped("H100-SXM5-80GB", "vllm");
  const auto& g = t->gemm.at("bfloat16");
  auto on = [&](double m, double n, double k) { return t->gemm_s("bfloat16", m, n, k, flops_roof); };
  // Rows 3000 between the grid's 2817 and 3072, at n = k = 8192: the time lies between theirs.
  const double lo = on(2817, 8192, 8192), hi = on(3072, 8192, 8192), mid = on(3000, 8192, 8192);
  EXPECT_GT(mid, std::min(lo, hi) * 0.99);
  EXPECT_LT(mid, std::max(lo, hi) * 1.01);
  // n = 9000 between 8192 and 10240 (a TP shard of no grid size): between, within the FLOP ratio.
  const double n_lo = on(4096, 8192, 8192), n_hi = on(4096, 10240, 8192), n_mid = on(4096, 9000, 8192);
  EXPECT_GT(n_mid, n_lo);
  EXPECT_LT(n_mid, n_hi);
  // Beyond the largest m the measured share of the roofline is held: twice the rows, twice
  // the (compute-bound) time.
  const double top = g.m.back();
  EXPECT_NEAR(on(2 * top, 8192, 8192) / on(top, 8192, 8192), 2.0, 0.01);
}

TEST(OperatorTables, AttentionSeriesAndLookups) {
  auto t = shipped("H100-SXM5-80GB", "vllm");
  // Llama-3.1-70B at TP8: 8 query heads and 1 KV head of 128 a GPU.
  const auto* s = t->attention_series(true, "bfloat16", 128, 8, 1);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->kv_heads, 1);
  EXPECT_EQ(s->heads, 8);
  EXPECT_EQ(t->attention_series(true, "bfloat16", 96, 8, 1), nullptr) << "no head size 96";
  EXPECT_EQ(t->attention_series(true, "int8", 128, 8, 1), nullptr) << "no such KV dtype";
  // On the grid: the measurement.
  EXPECT_NEAR(OperatorTables::attention_s(*s, true, 8, 1, s->batch[3], s->length[5]),
              s->at(3, 5) * 1e-6, 1e-9 * s->at(3, 5));
  // Beyond the longest context, decode time grows in proportion; prefill with the square.
  const double L = s->length.back(), b = s->batch.front();
  EXPECT_NEAR(OperatorTables::attention_s(*s, true, 8, 1, b, 2 * L) /
                  OperatorTables::attention_s(*s, true, 8, 1, b, L), 2.0, 1e-9);
  const auto* p = t->attention_series(false, "bfloat16", 128, 8, 1);
  ASSERT_TRUE(p);
  const double Lp = p->length.back();
  EXPECT_NEAR(OperatorTables::attention_s(*p, false, 8, 1, 1, 2 * Lp) /
                  OperatorTables::attention_s(*p, false, 8, 1, 1, Lp), 4.0, 1e-9);
  // More KV heads than the series has: decode reads that many times the bytes.
  const auto* s8 = t->attention_series(true, "bfloat16", 128, 64, 16);
  ASSERT_TRUE(s8);
  EXPECT_EQ(s8->kv_heads, 8) << "the largest KV head count measured";
  EXPECT_NEAR(OperatorTables::attention_s(*s8, true, 64, 16, 4, 1024) /
                  OperatorTables::attention_s(*s8, true, 64, 8, 4, 1024), 2.0, 1e-9);
}

TEST(OperatorTables, MalformedFilesNameTheFileAndTheField) {
  const std::string head = R"({"gpu":"G","engine":"vllm","engine_version":"1","device":"D",)"
                           R"("source":{"what":"w","from":"f","licence":"l"},)";
  struct Case {
    std::string text, want;
  } cases[] = {
      {"{not json", "operator table is not valid JSON"},
      {R"({"engine":"vllm"})", "field 'gpu': must be a string"},
      {head + R"("gemm":{"bfloat16":{"m":[2,1],"n":[1,2],"k":[1,2],"us":[]}}})",
       "field 'gemm.bfloat16.m': must be increasing"},
      {head + R"("gemm":{"bfloat16":{"m":[1,2],"n":[1,2],"k":[1,2],"us":[[[1,1],[1,1]]]}}})",
       "field 'gemm.bfloat16.us': must be a list of 2 at depth 1"},
      {head + R"("gemm":{"bfloat16":{"m":[1,2],"n":[1,2],"k":[1,2],)"
              R"("us":[[[1,1],[1,-1]],[[1,1],[1,1]]]}}})",
       "field 'gemm.bfloat16.us': latencies must be positive numbers of microseconds"},
      {head + R"("attention_decode":{"bfloat16":[{"head_dim":128,"heads":8,"batch":[1,2],)"
              R"("length":[1,2],"us":[[1,1],[1,1]]}]}})",
       "field 'kv_heads': must be a positive integer"},
      {head + R"("moe":{"bfloat16":[{"hidden":8,"inter":8,"topk":2,"experts":8,"tp":1,"ep":1,)"
              R"("tokens":[1,2],"us":[1,2]}]}})",
       "field 'distribution': must be a string"},
      {head + R"("all_reduce":[{"ranks":1,"mode":"graph","bytes":[1,2],"us":[1,2]}]})",
       "field 'all_reduce[0].ranks': must be at least 2"},
      {head + R"("all_reduce":[{"ranks":2,"mode":"graph","bytes":[1,2],"us":[1]}]})",
       "field 'all_reduce[0].us': must be a list of 2 at depth 1"},
      {head + R"("all_reduce":[{"ranks":2,"mode":"graph","own_max_bytes":-1,"bytes":[1,2],"us":[1,2]}]})",
       "field 'all_reduce[0].own_max_bytes': must be a non-negative integer"},
      {head + R"("mla_module":{"hidden":7168,"q_lora_rank":1536,"qk_nope_head_dim":128,)"
              R"("qk_rope_head_dim":64,"v_head_dim":128}})",
       "field 'mla_module.kv_lora_rank': must be a positive integer"},
      {head + R"("mla_module":{"hidden":7168,"q_lora_rank":1536,"kv_lora_rank":512,)"
              R"("qk_nope_head_dim":128,"qk_rope_head_dim":64,"v_head_dim":128,"decode":[]}})",
       "field 'mla_module.decode': must be a map"},
  };
  for (const auto& c : cases) {
    const std::string path = test::write_temp("bad.json", c.text);
    auto t = hw::load_operator_tables(path);
    ASSERT_FALSE(t) << c.text;
    EXPECT_EQ(t.error().file, path);
    EXPECT_NE(t.error().str().find(c.want), std::string::npos) << t.error().str();
  }
}

TEST(OperatorTables, FoundByGpuAndEngineOnly) {
  auto none = hw::find_operator_tables("RTX-4090", "vllm");
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, nullptr) << "no table shipped for it";
  auto engine = hw::find_operator_tables("H100-SXM5-80GB", "lmdeploy");
  ASSERT_TRUE(engine);
  EXPECT_EQ(*engine, nullptr);
}

TEST(OperatorTables, StepModelUsesTheEngineTableOnlyWhereItApplies) {
  model::Model m = test::load_or_die(test::example("llama-3.1-8b.yaml"));
  auto c = hw::load_cluster("h100x1");
  ASSERT_TRUE(c) << c.error().str();
  sim::ServingOptions on, off, none, f32;
  off.operator_tables = false;
  none.host_overhead = sim::HostOverhead::kNone;  // tpp-run's own kernels
  f32.dtype = model::DType::kF32;
  auto r_on = sim::resolve_options(m, c->gpu, on);
  ASSERT_TRUE(r_on) << r_on.error().str();
  ASSERT_TRUE(r_on->operator_tables);
  EXPECT_EQ(r_on->operator_tables->engine, "vllm");
  on.host_overhead = sim::HostOverhead::kTrtllm;
  EXPECT_EQ((*sim::resolve_options(m, c->gpu, on)).operator_tables->engine, "trtllm");
  EXPECT_FALSE((*sim::resolve_options(m, c->gpu, off)).operator_tables);
  EXPECT_FALSE((*sim::resolve_options(m, c->gpu, none)).operator_tables);
  model::Model m32 = sim::as_loaded(m, f32);
  EXPECT_FALSE((*sim::resolve_options(m32, c->gpu, f32)).operator_tables) << "tables are bf16/fp8";

  const sim::ParallelConfig p = test::split(1);
  sim::StepCostModel with(m, *c, p, *r_on), without(m, *c, p, *sim::resolve_options(m, c->gpu, off));
  sim::BatchShape decode;
  for (int i = 0; i < 64; ++i) decode.add(1, 2047);
  const auto a = with.cost(0, decode), b = without.cost(0, decode);
  EXPECT_NE(a.gemm, b.gemm);
  EXPECT_NE(a.attention, b.attention);
  // The table's decode attention for 64 sequences at 2048 tokens, 32 layers: the measurement.
  const auto* s = r_on->operator_tables->attention_series(true, "bfloat16", 128, 32, 8);
  ASSERT_TRUE(s);
  EXPECT_NEAR(a.attention, 32 * hw::OperatorTables::attention_s(*s, true, 32, 8, 64, 2048),
              1e-9);
  // Both are physical: within 3x of each other.
  EXPECT_LT(a.total() / b.total(), 3.0);
  EXPECT_GT(a.total() / b.total(), 1 / 3.0);
}

TEST(OperatorTables, TppPlanFlagAndLine) {
  auto on = test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --tp 1 --workload single-user");
  ASSERT_EQ(on.code, 0) << on.err;
  EXPECT_NE(on.out.find("kernel times: vllm "), std::string::npos) << on.out;
  EXPECT_NE(on.out.find("hardware_profiles/operators/H100-SXM5-80GB/vllm.json"), std::string::npos);
  auto off = test::tpp_plan(
      "--model llama-3.1-8b --cluster h100x1 --tp 1 --workload single-user --operator-tables off");
  ASSERT_EQ(off.code, 0) << off.err;
  EXPECT_NE(off.out.find("kernel times: the step model's own curves"), std::string::npos);
  auto bad = test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --operator-tables maybe");
  EXPECT_EQ(bad.code, 2);
  auto sglang = test::tpp_plan(
      "--model llama-3.1-8b --cluster h100x1 --tp 1 --workload single-user --operator-tables sglang");
  ASSERT_EQ(sglang.code, 0) << sglang.err;
  EXPECT_NE(sglang.out.find("kernel times: sglang "), std::string::npos) << sglang.out;
}

TEST(OperatorTables, ABrokenTableInTheCatalogIsAnErrorNotAGuess) {
  // TPP_DATA_DIR comes first in the catalog: a malformed table there is refused with its name.
  const std::string dir = std::filesystem::path(test::write_temp(
                              "operators/H100-SXM5-80GB/vllm.json", "{\"gpu\": 1}")).parent_path()
                              .parent_path().parent_path().string();
  auto r = test::tpp_plan("--model llama-3.1-8b --cluster h100x1 --tp 1 --workload single-user",
                          "TPP_DATA_DIR=" + dir + " ");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("operators/H100-SXM5-80GB/vllm.json"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("field 'gpu'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tpp
