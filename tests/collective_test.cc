// Collectives: nccl-tests output read (and refused with its line), the NCCL model against
// NCCL's own worked figures, measured tables winning over it, and tpp-profile's --collective,
// --import-nccl-tests and --check-nccl-tests as a user runs them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "common/data_path.h"
#include "hardware_profiles/hardware.h"
#include "hardware_profiles/nccl_tests.h"
#include "simulator/collective.h"
#include "test_util.h"

namespace tpp {
namespace {

const std::string kData = std::string(TPP_TEST_DATA) + "/nccl-tests/";

TEST(NcclTests, ReadsRanksNodesConditionsAndBothColumns) {
  auto run = hw::read_nccl_tests(kData + "all_reduce_perf_2x8_h100.txt");
  ASSERT_TRUE(run) << run.error().str();
  EXPECT_EQ(run->op, "all_reduce");
  EXPECT_EQ(run->program, "all_reduce_perf");
  EXPECT_EQ(run->ranks, 16);
  EXPECT_EQ(run->nodes, 2);
  EXPECT_EQ(run->processes, 16);
  EXPECT_EQ(run->gpus_per_thread, 1);
  EXPECT_FALSE(run->graph);
  EXPECT_EQ(run->dtype, "float");
  EXPECT_EQ(run->version, "nccl-tests 2.13.9");
  EXPECT_EQ(run->device, "NVIDIA H100 80GB HBM3");
  ASSERT_EQ(run->rows.size(), 28u);  // 8 B to 1 GiB
  EXPECT_EQ(run->rows.front().bytes, 8);
  EXPECT_DOUBLE_EQ(run->rows.front().out_of_place_us, 38.00);
  EXPECT_DOUBLE_EQ(run->rows.front().in_place_us, 37.24);
  EXPECT_EQ(run->rows.back().bytes, 1073741824);
  const auto tables = hw::nccl_tests_tables(*run, 8);
  ASSERT_EQ(tables.size(), 2u);
  EXPECT_EQ(tables[0].scope, "inter_node");
  EXPECT_EQ(tables[0].in_place, hw::CollectiveTable::Known::kNo);
  EXPECT_EQ(tables[1].in_place, hw::CollectiveTable::Known::kYes);
  EXPECT_EQ(tables[0].cuda_graph, hw::CollectiveTable::Known::kNo);
  EXPECT_NE(tables[0].conditions.find("16 processes"), std::string::npos) << tables[0].conditions;
}

TEST(NcclTests, OlderFormatOneProcessManyGpus) {
  // No graph field, no root column, an "error" column; the collective from the file name.
  auto run = hw::read_nccl_tests(kData + "alltoall_a100_g8.txt");
  ASSERT_TRUE(run) << run.error().str();
  EXPECT_EQ(run->op, "all_to_all");
  EXPECT_EQ(run->ranks, 8);
  EXPECT_EQ(run->nodes, 1);
  EXPECT_EQ(run->processes, 1);
  EXPECT_EQ(run->gpus_per_thread, 8);
  EXPECT_FALSE(run->graph);
  EXPECT_EQ(run->rows.size(), 10u);
  EXPECT_EQ(hw::nccl_tests_tables(*run, 8).at(0).scope, "intra_node");
}

TEST(NcclTests, BadOutputNamesTheLine) {
  const std::string head =
      "# nThread 1 nGpus 8 minBytes 8 maxBytes 64 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 "
      "validation: 1 graph: 0\n"
      "#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n";
  struct Case {
    std::string text, error;
  } cases[] = {
      {head + "  8  2  float  sum  -1  30.1  0.00  0.00  0  29.9  0.00  0.00  3\n",
       "ar.txt:3:0: error: field '#wrong' (in-place) is 3: the run gave wrong results; rerun it before importing"},
      {head + "  8  2  float  sum  -1  fast  0.00  0.00  0  29.9  0.00  0.00  0\n",
       "ar.txt:3:0: error: field 'time' (out-of-place) must be a positive number of microseconds, not 'fast'"},
      {head + "  16  4  float  sum  -1  30.1  0.00  0.00  0  29.9  0.00  0.00  0\n"
              "  8  2  float  sum  -1  30.1  0.00  0.00  0  29.9  0.00  0.00  0\n",
       "ar.txt:4:0: error: sizes must increase: 8 after 16"},
      {head + "  8  2  float  sum  -1  30.1\n",
       "ar.txt:3:0: error: a row of 6 columns where the header has 5 before the times and 4 a group (time algbw busbw #wrong)"},
      {"# nThread 1 nGpus 8 minBytes 8 maxBytes 64 step: 2(factor)\n  8  2  float  sum  -1  30.1  0 0 0\n",
       "ar.txt:2:0: error: a row of sizes before the column header '#  size  count  type ... time algbw busbw'"},
      {"hello\n", "ar.txt: error: not nccl-tests output: no '# nThread N nGpus N ...' parameter line"},
      {head, "ar.txt: error: no rows of sizes and times"},
  };
  for (const auto& c : cases) {
    const std::string path = test::write_temp("ar.txt", c.text);
    auto run = hw::read_nccl_tests(path, "all_reduce");
    ASSERT_FALSE(run) << c.text;
    EXPECT_EQ(test::relative_error(run.error(), path), c.error);
  }
  const std::string path = test::write_temp("results.txt", head + "  8  2  float  sum  -1  30.1  0 0 0  29.9  0 0 0\n");
  auto run = hw::read_nccl_tests(path);
  ASSERT_FALSE(run);
  EXPECT_NE(run.error().message.find("cannot tell which collective"), std::string::npos) << run.error().str();
  EXPECT_TRUE(hw::read_nccl_tests(path, "alltoall")) << "--op names it";
}

hw::Cluster cluster(const std::string& name) {
  auto path = resolve_input(name, Catalog::kClusters);
  EXPECT_TRUE(path);
  auto c = hw::load_cluster(*path);
  EXPECT_TRUE(c) << c.error().str();
  return *c;
}

// NCCL 2.30.7's own model evaluated on its derived 8 x H100 graphs (/work/notes' transcription,
// docs/collectives.md): all-reduce 1 MB 28 us (Ring/LL), 16 MB 87 us and 256 MB 1012 us (NVLS),
// from a CUDA graph (no launch term). tpp's graphs come from the cluster's measured ring
// bandwidth (368 against NCCL's 370.8 GB/s), so within 5%.
TEST(CollectiveModel, AgreesWithNcclsOwnFiguresOnEightH100s) {
  hw::Cluster c = cluster("h100x2");
  c.collectives.clear();
  const sim::CollectiveModel m(c);
  const sim::CollectiveConditions graph{true, false, "", 1};
  for (auto [bytes, us, how] : {std::tuple{1 << 20, 28.0, "ring/LL"}, std::tuple{16 << 20, 87.0, "nvls/Simple"},
                                std::tuple{256 << 20, 1012.0, "nvls/Simple"}}) {
    const auto t = m.model(sim::Collective::kAllReduce, bytes, 8, graph);
    EXPECT_NEAR(t.nccl_tuning_seconds * 1e6, us, 0.05 * us) << bytes;
    EXPECT_NE(t.how.find(how), std::string::npos) << bytes << " " << t.how;
  }
  // Two nodes: Tree/LL for small messages, NVLSTree for large (NCCL's choices, section 11).
  EXPECT_NE(m.model(sim::Collective::kAllReduce, 4096, 16, graph).how.find("tree/LL"), std::string::npos);
  EXPECT_NE(m.model(sim::Collective::kAllReduce, 1 << 30, 16, graph).how.find("nvls_tree/Simple"), std::string::npos);
}

// RCCL on 8 x MI300X: its bandwidth share is the one measured figure (all-reduce busbw 312.9
// GB/s at 4 GiB over 8 GPUs); the same run's 2 GPUs (47.7 GB/s over the one link between them)
// check the mesh rule that a group of k GPUs uses k-1 links (stas00/ml-engineering
// network/README.md). A switch would give the pair all 448 GB/s.
TEST(CollectiveModel, RcclOnTheInfinityFabricMesh) {
  const hw::Cluster c = cluster("mi300x1");
  const sim::CollectiveModel m(c);
  const sim::CollectiveConditions graph{true, false, "", 1};
  const double bytes = 4.0 * (1 << 30);
  auto busbw = [&](std::int64_t n) {
    const auto t = m.model(sim::Collective::kAllReduce, bytes, n, graph);
    EXPECT_NE(t.how.find("rccl"), std::string::npos) << t.how;
    return bytes * sim::bus_factor(sim::Collective::kAllReduce, n) / t.seconds / 1e9;
  };
  EXPECT_NEAR(busbw(8), 312.9, 0.01 * 312.9);
  EXPECT_NEAR(busbw(2), 47.7, 0.10 * 47.7);
  EXPECT_NEAR(busbw(4) / busbw(2), 3.0, 0.01);  // 3 links against 1
  // Small messages pay the latency: 2 x 7 ring steps at 0.6 us on top of 6.6 us.
  EXPECT_NEAR(m.model(sim::Collective::kAllReduce, 1024, 8, graph).seconds * 1e6, 6.6 + 14 * 0.6, 0.1);
  // vLLM's CUDA custom all-reduce is not what runs on ROCm.
  EXPECT_FALSE(m.engine_all_reduce(1 << 20, 8, true));
}

// NVLS's pipeline fill (enqueue.cc calcCollChunking): two chunk-steps of every one of the
// 16 channels x 8 heads, at the algorithm's own speed, with the chunk NCCL shrinks for smaller
// buffers: 16 KiB below 8 MiB, 32 KiB below 64 MiB, 64 KiB below 1 GiB, else 128 KiB. NCCL's pick
// is by its tuning model, so the fill never changes which algorithm runs; a ring has none.
TEST(CollectiveModel, NvlsPaysItsPipelineFillByNcclsChunkSize) {
  hw::Cluster c = cluster("h100x1");
  c.collectives.clear();
  const sim::CollectiveModel m(c);
  const sim::CollectiveConditions nvls{true, false, "nvls", 1};
  for (auto [bytes, chunk] : {std::pair{4.0 * (1 << 20), 16384.0}, std::pair{16.0 * (1 << 20), 32768.0},
                              std::pair{256.0 * (1 << 20), 65536.0}, std::pair{2.0 * (1 << 30), 131072.0}}) {
    const auto t = m.model(sim::Collective::kAllReduce, bytes, 8, nvls);
    const auto t2 = m.model(sim::Collective::kAllReduce, 2 * bytes, 8, nvls);
    const double us_per_byte = (t2.nccl_tuning_seconds - t.nccl_tuning_seconds) * 1e6 / bytes;
    EXPECT_NEAR((t.seconds - t.nccl_tuning_seconds) * 1e6, 2 * chunk * 128 * us_per_byte, 1e-6) << bytes;
  }
  const auto ring = m.model(sim::Collective::kAllReduce, 16 << 20, 8, {true, false, "ring", 1});
  EXPECT_DOUBLE_EQ(ring.seconds, ring.nccl_tuning_seconds);
}

// A fabric whose stack allows only some protocols (AWS's plugin: NCCL_PROTO=simple on p4de) is
// modelled with those alone; a protocol NCCL does not have is one line naming the file and field.
TEST(CollectiveModel, NcclProtoFromTheClusterLimitsTheProtocols) {
  const hw::Cluster c = cluster("p4dex2");
  ASSERT_EQ(c.inter_node->nccl_proto, std::vector<std::string>{"simple"});
  const sim::CollectiveModel m(c);
  for (double bytes = 8; bytes <= (1 << 30); bytes *= 16)
    EXPECT_NE(m.model(sim::Collective::kAllReduce, bytes, 16).how.find("/Simple"), std::string::npos) << bytes;
  hw::Cluster open_stack = c;
  open_stack.inter_node->nccl_proto.clear();
  EXPECT_NE(sim::CollectiveModel(open_stack).model(sim::Collective::kAllReduce, 1024, 16).how.find("/LL"),
            std::string::npos);
  std::string text;
  {
    std::ifstream in(*resolve_input("p4dex2", Catalog::kClusters));
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  text.replace(text.find("[simple]"), 8, "[simple, fast]");
  const std::string bad = test::write_temp("p4de-bad-proto.yaml", text);
  auto r = hw::load_cluster(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().str().find("p4de-bad-proto.yaml:"), std::string::npos) << r.error().str();
  EXPECT_NE(r.error().str().find("'fast' is not one of ll, ll128, simple"), std::string::npos) << r.error().str();
}

// vLLM's custom all-reduce, where vLLM runs it, against vLLM's own measured kernels (the
// operator tables: H100 fitted on, H200 and A100 not) under a CUDA graph, 1 KiB-8 MiB.
TEST(CollectiveModel, VllmCustomAllReduceAgainstItsMeasuredKernels) {
  for (auto [gpu_cluster, gpu_dir, bound] : {std::tuple{"h100x1", "H100-SXM5-80GB", 5.0},
                                             std::tuple{"h200x1", "H200-SXM-141GB", 6.0},
                                             std::tuple{"a100x1", "A100-SXM4-80GB", 25.0}}) {
    const hw::Cluster c = cluster(gpu_cluster);
    const sim::CollectiveModel m(c);
    std::ifstream in(std::string(TPP_TEST_DATA) + "/../../hardware_profiles/operators/" + gpu_dir + "/vllm.json");
    const auto j = nlohmann::json::parse(in);
    for (const auto& series : j.at("all_reduce")) {
      if (series.at("mode") != "graph") continue;
      const auto n = series.at("ranks").get<std::int64_t>();
      std::vector<double> err;
      const auto bytes = series.at("bytes").get<std::vector<double>>();
      const auto us = series.at("us").get<std::vector<double>>();
      for (std::size_t k = 0; k < bytes.size(); ++k) {
        if (bytes[k] < 1024 || bytes[k] > 8 << 20) continue;
        const auto t = m.engine_all_reduce(bytes[k], n, true);
        ASSERT_TRUE(t) << n << " " << bytes[k];
        err.push_back(std::abs(t->seconds * 1e6 / us[k] - 1) * 100);
      }
      std::sort(err.begin(), err.end());
      EXPECT_LT(err[err.size() / 2], bound) << gpu_dir << " " << n << " GPUs";
    }
  }
  const hw::Cluster c = cluster("h100x2");
  const sim::CollectiveModel m(c);
  EXPECT_FALSE(m.engine_all_reduce(16384, 16, true)) << "a group across nodes: NCCL";
  EXPECT_FALSE(m.engine_all_reduce(16384, 3, true)) << "not a size vLLM supports";
  EXPECT_FALSE(m.engine_all_reduce(9 << 20, 8, true)) << "beyond its 8 MiB buffer: NCCL";
  EXPECT_NE(m.engine_all_reduce(128 << 10, 8, true)->how.find("one stage"), std::string::npos);
  EXPECT_NE(m.engine_all_reduce(256 << 10, 8, true)->how.find("two stages"), std::string::npos);
  EXPECT_NE(m.engine_all_reduce(256 << 10, 4, true)->how.find("one stage"), std::string::npos);
  EXPECT_NEAR(m.engine_all_reduce(4096, 8, false)->seconds - m.engine_all_reduce(4096, 8, true)->seconds, 16.2e-6, 1e-12);
  hw::Cluster pcie = c;
  pcie.intra_node.kind = hw::LinkKind::kPcie;
  EXPECT_TRUE(sim::CollectiveModel(pcie).engine_all_reduce(4096, 2, true));
  EXPECT_FALSE(sim::CollectiveModel(pcie).engine_all_reduce(4096, 4, true)) << "more than 2 PCIe GPUs: off";
  // NCCL turns LL128 off where the node's GPUs talk over PCIe (tuning.cc, typeIntra > PATH_NVB).
  for (double bytes = 1024; bytes <= (1 << 30); bytes *= 4)
    for (std::int64_t n : {4, 8, 16})
      EXPECT_EQ(sim::CollectiveModel(pcie).model(sim::Collective::kAllReduce, bytes, n).how.find("LL128"),
                std::string::npos) << bytes << " " << n;
}

TEST(CollectiveModel, PhysicalBounds) {
  hw::Cluster c = cluster("h100x2");
  c.collectives.clear();
  const sim::CollectiveModel m(c);
  for (auto op : {sim::Collective::kAllReduce, sim::Collective::kAllGather, sim::Collective::kReduceScatter,
                  sim::Collective::kAllToAll, sim::Collective::kSendRecv})
    for (std::int64_t n : {2, 8, 16}) {
      double last = 0;
      for (double bytes = 1024; bytes <= (1 << 30); bytes *= 4) {
        const double eager = m.model(op, bytes, n).seconds, graph = m.model(op, bytes, n, {true, false, "", 1}).seconds;
        EXPECT_GT(eager, last) << sim::collective_name(op) << " grows with the size";
        EXPECT_GE(eager, graph) << "a graph launch is never slower";
        last = eager;
        // A ring's bus bandwidth never beats the GPU's NVLink.
        const auto ring = m.model(op, bytes, n, {true, false, "ring", 1});
        if (op != sim::Collective::kAllToAll && op != sim::Collective::kSendRecv) {
          EXPECT_LE(bytes * sim::bus_factor(op, n) / ring.seconds, 450e9) << n;
        }
      }
    }
  // Across nodes costs more than inside one, at every size.
  for (double bytes = 1024; bytes <= (1 << 30); bytes *= 8)
    EXPECT_GT(m.model(sim::Collective::kAllReduce, bytes, 16).seconds,
              m.model(sim::Collective::kAllReduce, bytes, 8).seconds);
  EXPECT_FALSE(std::isfinite(m.model(sim::Collective::kAllGather, 1 << 20, 16, {false, false, "nvls", 1}).seconds))
      << "NVLS all-gather needs SHARP across nodes";
}

TEST(CollectiveModel, MeasuredTablesWinAndConditionsPick) {
  hw::Cluster c = cluster("h100x2");
  const auto base = c.collectives;
  auto run = hw::read_nccl_tests(kData + "all_reduce_perf_2x8_h100.txt");
  ASSERT_TRUE(run);
  for (auto& t : hw::nccl_tests_tables(*run, 8)) c.collectives.push_back(t);
  const sim::CollectiveModel m(c);
  const auto oop = m.time(sim::Collective::kAllReduce, 8, 16);
  EXPECT_DOUBLE_EQ(oop.seconds, 38.00e-6);
  EXPECT_NE(oop.how.find("out-of-place"), std::string::npos) << oop.how;
  const auto ip = m.time(sim::Collective::kAllReduce, 8, 16, {false, true, "", 1});
  EXPECT_DOUBLE_EQ(ip.seconds, 37.24e-6);
  // Between two sizes: interpolated; beyond the last: its bandwidth.
  const double t16 = m.time(sim::Collective::kAllReduce, 16, 16).seconds, t32 = m.time(sim::Collective::kAllReduce, 32, 16).seconds;
  EXPECT_NEAR(m.time(sim::Collective::kAllReduce, 24, 16).seconds, (t16 + t32) / 2, 1e-12);
  const double t1g = m.time(sim::Collective::kAllReduce, 1 << 30, 16).seconds;
  EXPECT_NEAR(m.time(sim::Collective::kAllReduce, 2.0 * (1 << 30), 16).seconds, 2 * t1g, 1e-9);
  // No table for all-gather over 16: the model.
  EXPECT_EQ(m.time(sim::Collective::kAllGather, 1 << 20, 16).how.rfind("model: ", 0), 0u);
}

// ---- tpp-profile as a user runs it ----

test::CliRun profile(const std::string& args) {
  std::filesystem::path dir = std::filesystem::path(test::write_temp("x", "")).parent_path();
  std::string cmd = "cd '" + dir.string() + "' && '" + TPP_PROFILE + "' " + args + " >out.txt 2>err.txt";
  const int status = std::system(cmd.c_str());
  test::CliRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = test::slurp(dir / "out.txt");
  r.err = test::slurp(dir / "err.txt");
  return r;
}

TEST(CliCollective, SweepInNcclTestsColumnsAndJson) {
  auto text = profile("--cluster h100x2 --collective all_reduce --ranks 16 --sweep 1K:1M");
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("#       size         count      type        time     algbw     busbw  from"), std::string::npos)
      << text.out;
  EXPECT_EQ(test::lines(text.out), 3 + 11);  // the title, two header lines, 1 KB..1 MB
  auto js = profile("--cluster h100x2 --collective alltoall --ranks 8 --bytes 64M --format json");
  ASSERT_EQ(js.code, 0) << js.err;
  const auto j = nlohmann::json::parse(js.out);
  ASSERT_EQ(j["sizes"].size(), 1u);
  const auto& s = j["sizes"][0];
  EXPECT_EQ(s["bytes"], 64 << 20);
  EXPECT_EQ(j["collective"], "all_to_all");
  const double t = s["time_us"], alg = s["algbw_GBps"], bus = s["busbw_GBps"];
  EXPECT_NEAR(alg, (64 << 20) / (t * 1e3), 1e-9 * alg);
  EXPECT_NEAR(bus, alg * 7 / 8, 1e-9 * bus);
}

// --vllm: an all-reduce as vLLM's TP group pays it: its custom all-reduce inside a node up to
// 8 MiB, NCCL beyond it and across nodes; other collectives are refused.
TEST(CliCollective, VllmAllReduceIsItsCustomKernelWhereItRuns) {
  auto r = profile("--cluster h20x2 --collective all_reduce --ranks 8 --sweep 16K:16M --vllm --cuda-graph --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["sizes"].size(), 11u);
  EXPECT_EQ(j["sizes"][0]["how"], "model: vLLM custom all-reduce, one stage");
  EXPECT_EQ(j["sizes"][5]["how"], "model: vLLM custom all-reduce, two stages");  // 512 KiB
  EXPECT_EQ(j["sizes"][10]["how"].get<std::string>().find("model: nvls"), 0u);  // 16 MiB: NCCL
  auto across = profile("--cluster h20x2 --collective all_reduce --ranks 16 --bytes 16K --vllm --format json");
  ASSERT_EQ(across.code, 0) << across.err;
  EXPECT_EQ(nlohmann::json::parse(across.out)["sizes"][0]["how"].get<std::string>().find("model: tree"), 0u);
  test::expect_one_line_error(profile("--cluster h20x2 --collective all_gather --ranks 8 --vllm"),
                              "tpp-profile: error: --vllm is for all_reduce (vLLM's TP all-reduce), not all_gather");
}

TEST(CliCollective, BadArgumentsAreOneLine) {
  test::expect_one_line_error(profile("--cluster h100x2 --collective all_reduce"),
                              "tpp-profile: error: --collective needs --ranks N (the GPUs taking part)");
  test::expect_one_line_error(profile("--cluster h100x2 --collective allsum --ranks 8"),
                              "tpp-profile: error: --collective 'allsum' is not one of all_reduce, all_gather, "
                              "reduce_scatter, alltoall, sendrecv");
  test::expect_one_line_error(profile("--cluster h100x2 --collective all_reduce --ranks 64"),
                              "tpp-profile: error: --ranks 64 must be 2 to the cluster's 16 GPUs (h100x2)");
  test::expect_one_line_error(profile("--cluster h100x2 --collective all_reduce --ranks 8 --sweep 1G:8"),
                              "tpp-profile: error: --sweep '1G:8' must be MIN:MAX sizes, MIN <= MAX (8:1G)");
  test::expect_one_line_error(profile("--collective all_reduce --ranks 8"),
                              "tpp-profile: error: --cluster FILE is required with --collective, --import-nccl-tests "
                              "and --check-nccl-tests");
}

TEST(CliCollective, ImportWritesTheClusterWithItsCommentsAndTablesThatWin) {
  const std::string out = test::write_temp("h100x2-nccl.yaml", "");
  auto r = profile("--cluster h100x2 --import-nccl-tests '" + kData + "all_reduce_perf_2x8_h100.txt' -o '" + out + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string text = test::slurp(out);
  EXPECT_NE(text.find("# 2 DGX-H100-class nodes"), std::string::npos) << "the cluster's own comments are kept";
  auto c = hw::load_cluster(out);
  ASSERT_TRUE(c) << c.error().str();
  int imported = 0;
  for (const auto& t : c->collectives)
    if (t.conditions.find("all_reduce_perf") != std::string::npos) {
      ++imported;
      EXPECT_EQ(t.ranks, 16);
      EXPECT_EQ(t.scope, "inter_node");
      EXPECT_EQ(t.points.size(), 28u);
    }
  EXPECT_EQ(imported, 2);
  auto p = profile("--cluster '" + out + "' --collective all_reduce --ranks 16 --bytes 8 --format json");
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(p.out)["sizes"][0]["time_us"].get<double>(), 38.00);
  // Importing the same run again is refused: the tables would shadow each other.
  auto again = profile("--cluster '" + out + "' --import-nccl-tests '" + kData + "all_reduce_perf_2x8_h100.txt' -o '" +
                       out + ".2'");
  EXPECT_EQ(again.code, 2);
  EXPECT_EQ(test::lines(again.err), 1) << again.err;
  EXPECT_NE(again.err.find("already has a all_reduce table of 16 ranks"), std::string::npos) << again.err;
  // A malformed file: one line with its line number, nothing written.
  const std::string bad = test::write_temp("all_reduce_bad.txt",
                                           "# nThread 1 nGpus 8 minBytes 8 maxBytes 64 step: 2(factor) graph: 0\n"
                                           "#  size  count  type  redop  root  time  algbw  busbw  #wrong  time  algbw  busbw  #wrong\n"
                                           "  8  2  float  sum  -1  -4  0 0 0  4  0 0 0\n");
  auto b = profile("--cluster h100x2 --import-nccl-tests '" + bad + "' -o '" + out + ".3'");
  EXPECT_EQ(b.code, 2);
  EXPECT_EQ(test::lines(b.err), 1) << b.err;
  EXPECT_NE(b.err.find("all_reduce_bad.txt:3:0: error: field 'time'"), std::string::npos) << b.err;
  EXPECT_FALSE(std::filesystem::exists(out + ".3"));
}

TEST(CliCollective, CheckLaysTheRunBesideTheModel) {
  auto r = profile("--cluster h100x2 --check-nccl-tests '" + kData + "all_reduce_perf_2x8_h100.txt' --format json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["runs"].size(), 1u);
  const auto& run = j["runs"][0];
  EXPECT_EQ(run["ranks"], 16);
  for (const auto& s : run["sizes"]) {
    const double p = s["predicted_us"], m = s["measured_us"];
    EXPECT_NEAR(s["error_pct"].get<double>(), 100 * (p - m) / m, 1e-9);
  }
}

}  // namespace
}  // namespace tpp
