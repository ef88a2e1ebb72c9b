// GPU and cluster descriptions: data with a source. Every figure a simulator may use carries
// where it came from (a datasheet, a public measurement, a tpp-profile run, or the line of the
// user's cluster file that set it). Loaders are strict, like the model loader.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/doc.h"
#include "common/status.h"

namespace tpp::hw {

struct Figure {
  double value = 0;
  std::string source;  // never empty once loaded
};

// Who makes the GPU: what its collectives run on (NCCL or RCCL), what it has in place of CUDA's
// compute capability, and what its links between GPUs are called.
enum class Vendor { kNvidia, kAmd };
const char* vendor_name(Vendor v);

struct Gpu {
  std::string name;
  std::string file;                // where it was read from
  Vendor vendor = Vendor::kNvidia;
  std::string gfx_target;          // AMD's ISA (gfx942: MI300X, MI325X; gfx950: MI355X)
  Figure memory_marketed_GB;       // the size on the box
  Figure memory_driver_GiB;        // total as the driver reports it (what vLLM multiplies by
                                   // gpu_memory_utilization), a little below the marketed size
  Figure hbm_bandwidth_GBps;
  Figure bf16_dense_tflops;
  Figure fp16_dense_tflops;
  Figure fp8_dense_tflops;         // 0 when there is no FP8 tensor core
  Figure fp32_tflops;              // FP32 without tensor cores (--dtype float32: PyTorch's
                                   // float32 matmuls do not use TF32 by default); 0: not given
  Figure int8_dense_tops;
  // FP4 tensor cores (NVFP4 / MXFP4 operands; Blackwell, compute capability 10.0 and above):
  // dense TFLOP/s; 0 where there are none (Hopper and older run FP4 weights with weight-only
  // kernels that dequantise to bf16).
  Figure fp4_dense_tflops;
  Figure nvlink_unidir_GBps;       // per GPU, one direction; 0 without NVLink
  // AMD Infinity Fabric (xGMI): the GPU's links to its peers in a fully connected mesh (MI300X:
  // 7, one to each other GPU of 8), and one link's bandwidth, one direction. 0: none.
  std::int64_t xgmi_links = 0;
  Figure xgmi_link_unidir_GBps;
  Figure pcie_unidir_GBps;
  Figure tdp_W;
  Figure sm_count;                 // streaming multiprocessors
  Figure compute_capability;       // 8.0 (A100), 8.6, 8.9 (Ada), 9.0 (Hopper), 10.0 (B200),
                                   // 12.0 (RTX PRO 6000); 0 on AMD (see gfx_target)
  bool has_fp8 = false;
  std::string has_fp8_source;
  // Maximum achievable matmul FLOPS (the best GEMM shape found by a sweep, as
  // stas00/ml-engineering's mamf-finder measures it), bf16 and fp8; 0 when not given. The step
  // model takes an fp8 GEMM to reach this share of its peak relative to bf16's
  // (fp8_mamf / fp8_dense) / (bf16_mamf / bf16_dense): an fp8 GEMM reaches a smaller share of
  // its peak than a bf16 one does.
  Figure bf16_mamf_tflops;
  Figure fp8_mamf_tflops;
  bool has_fp4() const { return fp4_dense_tflops.value > 0; }
  // Memory the serving runtime holds beside the weights, activations and KV cache, measured on
  // this kind (tpp-profile); absent: the simulator's H100 figures (docs/memory-model.md).
  struct RuntimeMemory {
    double non_torch_GiB = 0;     // one rank alone
    double non_torch_tp_GiB = 0;  // a rank of a TP group (its communication buffers)
    double cuda_graph_GiB = 0;    // captured graphs (0 where there are none)
    std::string source;
  };
  std::optional<RuntimeMemory> runtime_memory;

  std::int64_t memory_driver_bytes() const;  // memory_driver_GiB x 2^30, rounded
};

// nvswitch: every GPU reaches every other at its whole NVLink bandwidth (HGX, and NVL72 racks
// whose NVLink switch trays join 72 GPUs); nvlink: bridges between pairs; pcie; xgmi: AMD's
// Infinity Fabric mesh, one link to each peer, so a group of k GPUs uses k-1 of each GPU's links.
enum class LinkKind { kNvlink, kNvswitch, kPcie, kXgmi };
const char* link_kind_name(LinkKind k);

struct IntraNodeLink {
  LinkKind kind = LinkKind::kNvswitch;
  Figure bandwidth_GBps;  // per GPU, one direction (xgmi: all its links together)
  Figure latency_us;
  std::int64_t mesh_links = 0;  // xgmi: the GPU's links, one a peer (0: switched or bridged)
  // The bandwidth one GPU has to the others of a group of `ranks` GPUs inside the node, one
  // direction: all of it through a switch; (ranks-1) of its mesh_links on a mesh.
  double group_GBps(std::int64_t ranks) const;
};

struct Network {
  std::string kind;  // infiniband | roce | efa (AWS) | tcpxo (GCP GPUDirect-TCPXO) | tcp | ethernet
  std::int64_t nics_per_node = 0;
  Figure nic_bandwidth_Gbps;  // per NIC, one direction, in gigabits as marketed
  Figure latency_us;
  // The NCCL protocols the fabric's stack allows (NCCL_PROTO), empty for all of them: AWS's
  // plugin sets NCCL_PROTO=simple on p4d/p4de. Any of "ll", "ll128", "simple".
  std::vector<std::string> nccl_proto;
  double node_bandwidth_GBps() const;  // nics x Gb/s / 8
};

// A measured collective: nccl-tests style rows (message bytes -> time in microseconds).
struct CollectivePoint {
  std::int64_t bytes = 0;
  double time_us = 0;
};
struct CollectiveTable {
  std::string op;     // all_reduce | all_gather | reduce_scatter | all_to_all | send_recv
  std::string scope;  // intra_node | inter_node
  std::int64_t ranks = 0;
  std::string source;
  std::vector<CollectivePoint> points;  // bytes strictly increasing
  // nccl (nccl-tests, or NCCL under any harness) | vllm (vLLM's own TP all-reduce inside a
  // node: custom all-reduce or symmetric memory, whichever its dispatch picks at each size)
  std::string library = "nccl";
  // The conditions it was measured under, where known: in place (the output buffer is the
  // input, as vLLM's all-reduce runs) or out of place (nccl-tests' first columns); timed as
  // CUDA graph launches or eagerly; and free text (the harness, its flags, versions).
  enum class Known { kUnknown, kNo, kYes };
  Known in_place = Known::kUnknown;
  Known cuda_graph = Known::kUnknown;
  std::string conditions = {};
};

// Measured efficiencies of this cluster's GPUs (tpp-profile, or bench/gpu_probe): the fraction
// of the datasheet peak a GEMM of M tokens achieves, and of HBM bandwidth a large copy achieves.
struct MeasuredEfficiency {
  std::string source;
  std::vector<std::pair<double, double>> gemm;  // (tokens M, fraction of peak), M increasing
  double memory = 0;                            // 0: not measured
  double gemm_memory = 0;  // of HBM bandwidth, a weight-bound (small M) GEMM; 0: not measured
  double tile_rows = 0;    // rows a GEMM is rounded up to (16 for tensor cores); 0: default
  double launch_us = 0;    // one kernel (one operator call) eager; 0: not measured
  double launch_graph_us = 0;  // replayed from a CUDA graph; 0: not measured
  // Multipliers on the step model's rooflines, measured as its figure over the time the
  // operators took (tpp-profile --model); 0: not measured (1 for attention; `memory` for
  // element-wise kernels).
  double elementwise = 0;       // of HBM bandwidth, the norms, rotary, activations, copies
  double attention_decode = 0;  // decode attention over the KV cache
  double attention_prefill = 0;
  // A TP collective's wait for the other ranks inside a forward pass, per call: the time a
  // collective took between layers beyond the same collective timed in a tight loop (ranks
  // never arrive together after compute; tpp-profile --model under --ranks); 0: not measured.
  double collective_wait_us = 0;
  // The same by the size of the weight matrix too, where the GEMM's speed depends on it (a CPU,
  // whose caches hold a small matrix and not a large one): (weight bytes, tokens M, fraction),
  // sorted by bytes, then M. Where present it replaces `gemm`.
  struct SizedPoint {
    double weight_bytes, tokens, fraction;
  };
  std::vector<SizedPoint> gemm_by_size;
  // The element-wise rest likewise, keyed by the step model's element-wise bytes a token and
  // layer (which TP shrinks): (bytes, tokens, fraction of hbm bandwidth). Replaces `elementwise`.
  std::vector<SizedPoint> elementwise_by_size;
};

struct Cluster {
  std::string name;
  std::string file;
  // A node is what the simulator treats as one: the GPUs its intra_node link joins. That is
  // a server, except where NVLink spans servers: a GB200 NVL72 rack is one node of 72 GPUs on
  // 18 hosts (compute trays) of 4. Launch commands and deployment files count hosts.
  std::int64_t nodes = 0;
  std::int64_t gpus_per_node = 0;
  std::int64_t gpus_per_host = 0;  // what one server holds; 0: a node's (host_gpus())
  Gpu gpu;
  IntraNodeLink intra_node;
  std::optional<Network> inter_node;  // required when nodes > 1
  std::optional<Figure> price_per_gpu_hour;
  // What one node reads from the storage its checkpoints live on, GB/s (tpp-profile measures
  // a cold read); absent: model loading time is not predicted.
  std::optional<Figure> storage_read_GBps;
  std::vector<CollectiveTable> collectives;
  std::optional<MeasuredEfficiency> efficiency;
  // What the ranks' collectives run on: "nccl" (NVIDIA GPUs; modelled as NCCL where no table
  // covers them), "rccl" (AMD GPUs: alpha-beta on the link, simulator/collective.cc) or "mpi"
  // (tpp-profile's CPU ranks: alpha-beta on their measured link).
  std::string transport = "nccl";

  std::int64_t total_gpus() const { return nodes * gpus_per_node; }
  std::int64_t host_gpus() const { return gpus_per_host > 0 ? gpus_per_host : gpus_per_node; }
  std::int64_t hosts() const { return total_gpus() / std::max<std::int64_t>(1, host_gpus()); }
};

// `name_or_path`: a file, or a catalog name (see common/data_path.h).
Expected<Gpu> load_gpu(const std::string& name_or_path);
Expected<Cluster> load_cluster(const std::string& name_or_path);
// The cluster with its GPU inline and every figure with its source, as JSON (what a plan file
// embeds); cluster_from_doc() on the parsed JSON reads it back to an equal Cluster.
nlohmann::json cluster_to_json(const Cluster& c);

// On parsed documents (the fuzz test uses these). A catalog GPU must give every figure as
// {value, source}; an inline GPU in a cluster file may give plain numbers.
Expected<Gpu> gpu_from_doc(const Doc& doc, const Node& node, bool require_sources);
Expected<Cluster> cluster_from_doc(const Doc& doc);

}  // namespace tpp::hw
