// Collective times: a cluster's measured tables where it has them, else a model of NCCL built
// from NCCL's own tuning model (src/graph/tuning.cc: algorithms Ring, Tree, NVLS, NVLSTree;
// protocols LL, LL128, Simple; a base latency per algorithm and protocol, a hardware latency
// per step and link kind, a bus bandwidth per algorithm and protocol; NCCL runs the pair with
// the least predicted time) and from measurements of the links, each figure with its source
// (docs/collectives.md).
//
// Sizes are nccl-tests' "size": the buffer of an all-reduce, the whole output of an all-gather,
// the whole input of a reduce-scatter, what one rank sends in an all-to-all, the message of a
// send/recv. busbw = algbw x bus_factor (nccl-tests' PERFORMANCE.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hardware_profiles/hardware.h"

namespace tpp::sim {

enum class Collective { kAllReduce, kAllGather, kReduceScatter, kAllToAll, kSendRecv };

// "all_reduce", "allreduce", "all_reduce_perf", "alltoall", "all_to_all", "sendrecv", ...
std::optional<Collective> collective_from_name(std::string_view name);
const char* collective_name(Collective c);  // the cluster file's op names (all_reduce, ...)
// nccl-tests' busbw / algbw: 2(n-1)/n for all-reduce, (n-1)/n for all-gather, reduce-scatter
// and all-to-all, 1 for send/recv.
double bus_factor(Collective c, std::int64_t ranks);

// How the collective is launched and laid out, as nccl-tests' flags say.
struct CollectiveConditions {
  bool cuda_graph = false;  // -G: launched from a CUDA graph (vLLM's decode) or eagerly
  bool in_place = false;    // the output buffer is the input (vLLM's all-reduce)
  std::string algorithm;    // NCCL_ALGO: ring, tree, nvls, nvls_tree; empty: NCCL's choice
  int gpus_per_thread = 1;  // nccl-tests -g: one host thread launching this many GPUs' kernels
};

// The measured figures the model runs on for a cluster (each fitted or taken where
// link_figures() says): the share of the link's bandwidth a ring reaches inside a node, NVLS's
// efficiency, the network's share across nodes, and a host thread's eager launch of one GPU's
// collective.
struct LinkFigures {
  double intra_eff = 0, nvls_eff = 0, net_eff = 0;
  double launch_per_gpu_us = 0;
};
LinkFigures link_figures(const hw::Cluster& c);

struct CollectiveTime {
  double seconds = 0;
  std::string how;  // "table: <its source>" or "model: ring/LL128 (2 nodes)" and the like
  // The model's: NCCL's own tuning-model time for the algorithm and protocol it picks, before
  // the NVLS pipeline's fill and the eager launch (0 for a table).
  double nccl_tuning_seconds = 0;
};

class CollectiveModel {
 public:
  explicit CollectiveModel(const hw::Cluster& cluster);

  // The time NCCL takes for `bytes` over `ranks` GPUs placed as vLLM places a TP group (a node
  // filled first): the cluster's measured table for the op, rank count and scope (the one
  // whose conditions match best; interpolated between sizes, extrapolated at the last point's
  // bandwidth), else the model.
  CollectiveTime time(Collective c, double bytes, std::int64_t ranks,
                      const CollectiveConditions& cond = {}) const;
  // The model alone, ignoring any table.
  CollectiveTime model(Collective c, double bytes, std::int64_t ranks,
                       const CollectiveConditions& cond = {}) const;
  // model()'s seconds alone, without building its description (the step model's hot path).
  double model_seconds(Collective c, double bytes, std::int64_t ranks,
                       const CollectiveConditions& cond = {}) const;
  // The measured table that time() would use, if any.
  const hw::CollectiveTable* table(Collective c, std::int64_t ranks,
                                   const CollectiveConditions& cond) const;

  // vLLM's custom all-reduce (csrc/custom_all_reduce.cuh; SGLang runs the same kernels) for a TP
  // group inside a node, where vLLM would use it: 2, 4, 6 or 8 GPUs of one node, fully
  // connected by NVSwitch (NVLink bridges and PCIe: 2 GPUs only), at most its 8 MiB buffer
  // (custom_all_reduce.py max_size). One stage for 2 GPUs and below 512 KiB (4) or 256 KiB (8),
  // two stages above; eagerly, the host's copy into the registered buffer on top. Nothing where
  // vLLM hands the message to NCCL. Its figures are fitted on vLLM's measured H100 kernels
  // (docs/collectives.md); the operator tables, where a GPU has them, win over it.
  std::optional<CollectiveTime> engine_all_reduce(double bytes, std::int64_t ranks, bool graph) const;

  // A measured table's time at `bytes` (seconds): log-log interpolation between points, the
  // first point's time below them, the last point's bandwidth beyond them.
  static double table_seconds(const hw::CollectiveTable& t, double bytes);

 private:
  double fabric_latency_us() const;
  // transport rccl (AMD): alpha-beta on the Infinity Fabric mesh (collective.cc).
  double rccl(Collective c, double bytes, std::int64_t ranks, const CollectiveConditions& cond,
              std::string* how, double* tuning_seconds) const;
  double evaluate(Collective c, double bytes, std::int64_t ranks, const CollectiveConditions& cond,
                  std::string* how, double* tuning_seconds) const;

  const hw::Cluster& c_;
  LinkFigures fig_;
  unsigned protocols_;  // bit p: NCCL may run protocol p (LL, LL128, Simple) on this cluster
};

}  // namespace tpp::sim
