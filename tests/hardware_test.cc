// GPU catalog and cluster files.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/data_path.h"
#include "hardware_profiles/hardware.h"
#include "test_util.h"

namespace tpp {
namespace {

TEST(GpuCatalog, EveryShippedGpuLoadsWithSources) {
  const char* names[] = {"A100-SXM4-40GB", "A100-SXM4-80GB", "A100-PCIe-80GB", "B200-SXM-180GB",
                         "B300-SXM-288GB", "GB200-186GB", "GB300-288GB", "H200-NVL-141GB", "H100-SXM5-80GB",
                         "H100-PCIe-80GB", "H200-SXM-141GB", "H20-96GB",       "H800-SXM5-80GB",
                         "L40S",           "A10",            "L4",             "RTX-4090",
                         "RTX-PRO-6000-96GB", "MI300X-192GB", "MI325X-256GB", "MI355X-288GB"};
  for (const char* n : names) {
    auto g = hw::load_gpu(n);
    ASSERT_TRUE(g) << g.error().str();
    EXPECT_EQ(g->name, n);
    for (const hw::Figure* f : {&g->memory_marketed_GB, &g->memory_driver_GiB,
                                &g->hbm_bandwidth_GBps, &g->bf16_dense_tflops,
                                &g->fp8_dense_tflops, &g->nvlink_unidir_GBps, &g->tdp_W})
      EXPECT_FALSE(f->source.empty()) << n;
    // The driver reports a little less than the marketed size (GB on the box = GiB here).
    EXPECT_LT(g->memory_driver_GiB.value, g->memory_marketed_GB.value) << n;
    EXPECT_GT(g->memory_driver_GiB.value, 0.9 * g->memory_marketed_GB.value) << n;
  }
  EXPECT_EQ(catalog_entries(Catalog::kGpus).size(), std::size(names));
}

// Every shipped GPU has its FP32 figure (--dtype float32), below its bf16 tensor-core one, and a
// measured MAMF never exceeds the peak it is measured against.
TEST(GpuCatalog, Fp32AndMamfFigures) {
  for (const auto& n : catalog_entries(Catalog::kGpus)) {
    auto g = hw::load_gpu(n);
    ASSERT_TRUE(g) << g.error().str();
    EXPECT_GT(g->fp32_tflops.value, 0) << n;
    EXPECT_LT(g->fp32_tflops.value, g->bf16_dense_tflops.value) << n;
    EXPECT_FALSE(g->fp32_tflops.source.empty()) << n;
    if (g->bf16_mamf_tflops.value > 0) {
      EXPECT_LE(g->bf16_mamf_tflops.value, g->bf16_dense_tflops.value) << n;
    }
  }
  EXPECT_EQ(hw::load_gpu("H100-SXM5-80GB")->fp8_mamf_tflops.value, 1402.6);
  EXPECT_EQ(hw::load_gpu("A100-SXM4-80GB")->bf16_mamf_tflops.value, 271.2);
}

// A shipped GPU file with one figure changed (`from` replaced by `to`), loaded from a copy named
// `copy`: the error it gives, or "" when it loads.
std::string edited_gpu_error(const std::string& gpu, const std::string& from, const std::string& to,
                             const std::string& copy) {
  std::ifstream in(std::string(TPP_EXAMPLES) + "/../../hardware_profiles/gpus/" + gpu + ".yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  const auto at = text.find(from);
  if (at == std::string::npos) return "no '" + from + "' in " + gpu;
  text.replace(at, from.size(), to);
  auto g = hw::load_gpu(test::write_temp(copy, text));
  return g ? "" : g.error().str();
}

// A MAMF above its peak is refused with the file, the line and the field.
TEST(GpuCatalog, MamfAbovePeakIsRefused) {
  const std::string e = edited_gpu_error("H100-SXM5-80GB", "bf16_mamf_tflops:     {value: 794.5,",
                                         "bf16_mamf_tflops:     {value: 1200,", "H100-bad.yaml");
  EXPECT_NE(e.find("bf16_mamf_tflops"), std::string::npos) << e;
  EXPECT_NE(e.find("H100-bad.yaml:"), std::string::npos) << e;
}

// FP4 tensor cores: Blackwell's; a rate below the FP8 one is refused with the file and field;
// the figure survives the plan file's JSON.
TEST(GpuCatalog, Fp4FromBlackwell) {
  EXPECT_FALSE(hw::load_gpu("H100-SXM5-80GB")->has_fp4());
  auto b = hw::load_gpu("B200-SXM-180GB");
  ASSERT_TRUE(b) << b.error().str();
  EXPECT_EQ(b->fp4_dense_tflops.value, 9000);
  EXPECT_GE(b->compute_capability.value, 10.0);
  const std::string e = edited_gpu_error("B200-SXM-180GB", "fp4_dense_tflops:     {value: 9000,",
                                         "fp4_dense_tflops:     {value: 900,", "B200-bad.yaml");
  EXPECT_NE(e.find("B200-bad.yaml:"), std::string::npos) << e;
  EXPECT_NE(e.find("fp4_dense_tflops"), std::string::npos) << e;
  auto c = hw::load_cluster("b200x1");
  ASSERT_TRUE(c) << c.error().str();
  auto back = hw::load_cluster(test::write_temp("b200-plan.json", hw::cluster_to_json(*c).dump()));
  ASSERT_TRUE(back) << back.error().str();
  EXPECT_EQ(back->gpu.fp4_dense_tflops.value, 9000);
  EXPECT_EQ(back->gpu.fp4_dense_tflops.source, c->gpu.fp4_dense_tflops.source);
}

TEST(GpuCatalog, Fp8OnlyFromHopperAndAda) {
  EXPECT_FALSE(hw::load_gpu("A100-SXM4-80GB")->has_fp8);
  EXPECT_FALSE(hw::load_gpu("A10")->has_fp8);
  EXPECT_TRUE(hw::load_gpu("H100-SXM5-80GB")->has_fp8);
  EXPECT_TRUE(hw::load_gpu("L40S")->has_fp8);
}

TEST(GpuCatalog, DriverBytes) {
  auto g = hw::load_gpu("H100-SXM5-80GB");
  ASSERT_TRUE(g);
  // 79.18 GiB, as torch.cuda.get_device_properties(0).total_memory reported on an H100 SXM.
  EXPECT_EQ(g->memory_driver_bytes(), 85'018'877'624);  // 79.18 x 2^30, rounded
}

// The catalog against the vendors' own tables, written out here: NVIDIA's A100 datasheet
// (SXM4 80GB: 312 TFLOP/s BF16 dense, 2,039 GB/s, NVLink 600 GB/s both ways, 108 SMs in the
// GA100 whitepaper) and H200 datasheet (989 TFLOP/s BF16 dense = 1,979 with sparsity / 2,
// 1,979 FP8 dense, 4.8 TB/s, 141 GB, NVLink 900 GB/s both ways).
TEST(GpuCatalog, FiguresAreTheDatasheets) {
  auto a = *hw::load_gpu("A100-SXM4-80GB");
  EXPECT_EQ(a.bf16_dense_tflops.value, 312);
  EXPECT_EQ(a.hbm_bandwidth_GBps.value, 2039);
  EXPECT_EQ(a.nvlink_unidir_GBps.value, 600 / 2);
  EXPECT_EQ(a.sm_count.value, 108);
  EXPECT_EQ(a.compute_capability.value, 8.0);
  auto h = *hw::load_gpu("H200-SXM-141GB");
  EXPECT_EQ(h.bf16_dense_tflops.value, 989);
  EXPECT_EQ(h.fp8_dense_tflops.value, 3958 / 2 + 0.0);
  EXPECT_EQ(h.hbm_bandwidth_GBps.value, 4800);
  EXPECT_EQ(h.memory_marketed_GB.value, 141);
  EXPECT_EQ(h.nvlink_unidir_GBps.value, 900 / 2);
}

TEST(Clusters, ShippedExamples) {
  auto c = hw::load_cluster("a100x16");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->nodes, 16);
  EXPECT_EQ(c->gpus_per_node, 8);
  EXPECT_EQ(c->total_gpus(), 128);
  EXPECT_EQ(c->gpu.name, "A100-SXM4-80GB");
  EXPECT_EQ(c->intra_node.kind, hw::LinkKind::kNvswitch);
  EXPECT_DOUBLE_EQ(c->intra_node.bandwidth_GBps.value, 300);  // from the GPU's NVLink figure
  ASSERT_TRUE(c->inter_node);
  EXPECT_DOUBLE_EQ(c->inter_node->node_bandwidth_GBps(), 200);  // 8 x 200 Gb/s
  for (const char* n : {"h100x2", "h20x2", "a100x1", "h100x1"}) {
    auto k = hw::load_cluster(n);
    EXPECT_TRUE(k) << (k ? "" : k.error().str());
  }
  EXPECT_FALSE(hw::load_cluster("a100x1")->inter_node);
}

// AMD GPUs: no CUDA compute capability but an ISA name, Infinity Fabric links in place of NVLink,
// and RCCL for their collectives (ROCm mi300.md: seven links, a fully connected 8-GPU system).
TEST(GpuCatalog, AmdGpusHaveGfxTargetsAndInfinityFabric) {
  auto g = hw::load_gpu("MI300X-192GB");
  ASSERT_TRUE(g) << g.error().str();
  EXPECT_EQ(g->vendor, hw::Vendor::kAmd);
  EXPECT_EQ(g->gfx_target, "gfx942");
  EXPECT_EQ(g->compute_capability.value, 0);
  EXPECT_EQ(g->xgmi_links, 7);
  EXPECT_EQ(g->bf16_dense_tflops.value, 1307.4);
  EXPECT_EQ(hw::load_gpu("MI355X-288GB")->gfx_target, "gfx950");
  EXPECT_TRUE(hw::load_gpu("MI355X-288GB")->has_fp4());
  EXPECT_FALSE(hw::load_gpu("MI325X-256GB")->has_fp4());
  EXPECT_EQ(hw::load_gpu("RTX-PRO-6000-96GB")->compute_capability.value, 12.0);
  EXPECT_EQ(hw::load_gpu("RTX-PRO-6000-96GB")->vendor, hw::Vendor::kNvidia);
  // A CUDA compute capability on an AMD GPU, an AMD field on an NVIDIA one: one line each.
  std::string e = edited_gpu_error("MI300X-192GB", "gfx_target: gfx942",
                                   "compute_capability: {value: 9.4, source: x}", "MI-bad.yaml");
  EXPECT_NE(e.find("MI-bad.yaml:"), std::string::npos) << e;
  EXPECT_NE(e.find("field 'compute_capability' in gpu is CUDA's"), std::string::npos) << e;
  e = edited_gpu_error("MI300X-192GB", "gfx_target: gfx942", "gfx_target: mi300", "MI-bad2.yaml");
  EXPECT_NE(e.find("must be an AMD ISA name such as gfx942, got 'mi300'"), std::string::npos) << e;
  e = edited_gpu_error("H100-SXM5-80GB", "name: H100-SXM5-80GB", "name: H100-SXM5-80GB\nxgmi_links: 7",
                       "H100-SXM5-80GB.yaml");
  EXPECT_NE(e.find("field 'xgmi_links' in gpu is AMD's"), std::string::npos) << e;
  e = edited_gpu_error("MI300X-192GB", "nvlink_unidir_GBps:   {value: 0,", "nvlink_unidir_GBps:   {value: 450,",
                       "MI-bad3.yaml");
  EXPECT_NE(e.find("must be 0 for an AMD GPU"), std::string::npos) << e;
}

TEST(Clusters, Mi300xNodeIsAnInfinityFabricMeshOnRccl) {
  auto c = hw::load_cluster("mi300x1");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->transport, "rccl");
  EXPECT_EQ(c->intra_node.kind, hw::LinkKind::kXgmi);
  EXPECT_DOUBLE_EQ(c->intra_node.bandwidth_GBps.value, 7 * 64);
  // A group of k GPUs uses k-1 links of each: 64 GB/s between two, all 448 among eight.
  EXPECT_DOUBLE_EQ(c->intra_node.group_GBps(2), 64);
  EXPECT_DOUBLE_EQ(c->intra_node.group_GBps(4), 192);
  EXPECT_DOUBLE_EQ(c->intra_node.group_GBps(8), 448);
  auto back = hw::load_cluster(test::write_temp("mi300x-plan.json", hw::cluster_to_json(*c).dump()));
  ASSERT_TRUE(back) << back.error().str();
  EXPECT_EQ(back->gpu.vendor, hw::Vendor::kAmd);
  EXPECT_EQ(back->gpu.gfx_target, "gfx942");
  EXPECT_EQ(back->gpu.xgmi_links, 7);
  EXPECT_EQ(back->transport, "rccl");
  EXPECT_DOUBLE_EQ(back->intra_node.group_GBps(2), 64);
}

// GB200 NVL72: one NVLink domain (the simulator's node) of 72 GPUs on 18 hosts of 4.
TEST(Clusters, Nvl72RackIsOneNodeOfEighteenHosts) {
  auto c = hw::load_cluster("gb200-nvl72");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->nodes, 1);
  EXPECT_EQ(c->gpus_per_node, 72);
  EXPECT_EQ(c->gpus_per_host, 4);
  EXPECT_EQ(c->hosts(), 18);
  EXPECT_EQ(c->transport, "nccl");
  auto back = hw::load_cluster(test::write_temp("nvl72-plan.json", hw::cluster_to_json(*c).dump()));
  ASSERT_TRUE(back) << back.error().str();
  EXPECT_EQ(back->gpus_per_host, 4);
  EXPECT_EQ(hw::load_cluster("b200x1")->host_gpus(), 8);  // default: a node is a host
}

TEST(Clusters, InlineGpuPlainNumbersAndCollectives) {
  auto path = test::write_temp("c.yaml", R"(name: lab
nodes: 1
gpus_per_node: 2
gpu:
  name: MyGPU
  memory_marketed_GB: 48
  memory_driver_GiB: 47.5
  hbm_bandwidth_GBps: 900
  bf16_dense_tflops: 200
  fp16_dense_tflops: 200
  fp8_dense_tflops: 0
  int8_dense_tops: 400
  has_fp8: false
  nvlink_unidir_GBps: 0
  pcie_unidir_GBps: 32
  tdp_W: 300
  sm_count: 100
  compute_capability: 8.9
intra_node: {kind: pcie, latency_us: 3}
price_per_gpu_hour: 1.25
collectives:
  - op: all_reduce
    scope: intra_node
    ranks: 2
    source: "nccl-tests all_reduce_perf -b 8 -e 8M -f 4 -g 2"
    points: [[8, 20.5], [1024, 21.0], [1048576, 80.25]]
)");
  auto c = hw::load_cluster(path);
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->gpu.name, "MyGPU");
  EXPECT_EQ(c->gpu.memory_driver_GiB.source, path + ":7");
  EXPECT_DOUBLE_EQ(c->intra_node.bandwidth_GBps.value, 32);  // the GPU's PCIe figure
  ASSERT_EQ(c->collectives.size(), 1u);
  EXPECT_EQ(c->collectives[0].points.size(), 3u);
  EXPECT_DOUBLE_EQ(c->collectives[0].points[2].time_us, 80.25);
  ASSERT_TRUE(c->price_per_gpu_hour);
  EXPECT_DOUBLE_EQ(c->price_per_gpu_hour->value, 1.25);
}

}  // namespace
}  // namespace tpp
