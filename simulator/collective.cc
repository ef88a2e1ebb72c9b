#include "simulator/collective.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace tpp::sim {

std::optional<Collective> collective_from_name(std::string_view name) {
  std::string s;
  for (char ch : name)
    if (ch != '_' && ch != '-') s += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (s.size() > 4 && s.compare(s.size() - 4, 4, "perf") == 0) s.resize(s.size() - 4);
  if (s == "allreduce") return Collective::kAllReduce;
  if (s == "allgather") return Collective::kAllGather;
  if (s == "reducescatter") return Collective::kReduceScatter;
  if (s == "alltoall") return Collective::kAllToAll;
  if (s == "sendrecv") return Collective::kSendRecv;
  return std::nullopt;
}

const char* collective_name(Collective c) {
  switch (c) {
    case Collective::kAllReduce: return "all_reduce";
    case Collective::kAllGather: return "all_gather";
    case Collective::kReduceScatter: return "reduce_scatter";
    case Collective::kAllToAll: return "all_to_all";
    case Collective::kSendRecv: return "send_recv";
  }
  return "?";
}

double bus_factor(Collective c, std::int64_t ranks) {
  const double n = static_cast<double>(std::max<std::int64_t>(1, ranks));
  switch (c) {
    case Collective::kAllReduce: return 2 * (n - 1) / n;
    case Collective::kAllGather:
    case Collective::kReduceScatter:
    case Collective::kAllToAll: return (n - 1) / n;
    case Collective::kSendRecv: return 1;
  }
  return 1;
}

double CollectiveModel::table_seconds(const hw::CollectiveTable& t, double bytes) {
  const auto& pts = t.points;
  if (bytes <= static_cast<double>(pts.front().bytes)) return pts.front().time_us * 1e-6;
  for (std::size_t k = 1; k < pts.size(); ++k) {
    const double b0 = static_cast<double>(pts[k - 1].bytes), b1 = static_cast<double>(pts[k].bytes);
    if (bytes <= b1)
      return (pts[k - 1].time_us + (pts[k].time_us - pts[k - 1].time_us) * (bytes - b0) / (b1 - b0)) * 1e-6;
  }
  const auto& last = pts.back();
  return last.time_us * 1e-6 * bytes / static_cast<double>(last.bytes);
}

const hw::CollectiveTable* CollectiveModel::table(Collective c, std::int64_t ranks,
                                                  const CollectiveConditions& cond) const {
  const bool intra = ranks <= c_.gpus_per_node;
  const char* library = c_.transport == "rccl" ? "rccl" : "nccl";
  const std::int64_t want = c == Collective::kSendRecv ? 2 : ranks;
  const hw::CollectiveTable* best = nullptr;
  int best_score = -1;
  using K = hw::CollectiveTable::Known;
  for (const auto& t : c_.collectives) {
    if (t.op != collective_name(c) || t.ranks != want || (t.scope == "intra_node") != intra || t.library != library)
      continue;
    // A table measured as asked beats one measured otherwise; an unstated condition is between.
    auto score = [](K k, bool w) { return k == K::kUnknown ? 1 : ((k == K::kYes) == w ? 2 : 0); };
    const int s = 3 * score(t.cuda_graph, cond.cuda_graph) + score(t.in_place, cond.in_place);
    if (s > best_score) best = &t, best_score = s;
  }
  return best;
}

CollectiveTime CollectiveModel::time(Collective c, double bytes, std::int64_t ranks,
                                     const CollectiveConditions& cond) const {
  if (const hw::CollectiveTable* t = table(c, ranks, cond))
    return {table_seconds(*t, bytes), "table: " + t->source};
  return model(c, bytes, ranks, cond);
}

namespace {

// NCCL's tuning model, NCCL 2.30.7 (NVIDIA/nccl 5067397, src/graph/tuning.cc; transcribed in
// docs/collectives.md): microseconds and GB/s.
enum Algo { kTree, kRing, kNvls, kNvlsTree, kAlgos };
enum Proto { kLL, kLL128, kSimple, kProtos };
const char* const kAlgoName[kAlgos] = {"tree", "ring", "nvls", "nvls_tree"};
const char* const kProtoName[kProtos] = {"LL", "LL128", "Simple"};
const char* const kProtoKey[kProtos] = {"ll", "ll128", "simple"};  // NCCL_PROTO's names
constexpr double kBaseLat[kAlgos][kProtos] = {{6.8, 14.0, 8.4}, {6.6, 14.0, 8.4}, {0, 0, 0}, {0, 0, 0}};  // :149
constexpr double kHwLatNvlink[kAlgos][kProtos] = {{0.6, 1.25, 4.0}, {0.6, 1.9, 3.4}, {0, 0, 25}, {0, 0, 25}};  // :156
constexpr double kHwLatPci[kAlgos][kProtos] = {{1.0, 1.9, 4.0}, {1.0, 2.5, 5.7}, {0, 0, 0}, {0, 0, 0}};
constexpr double kHwLatNet[kAlgos][kProtos] = {{5.0, 8.5, 14.0}, {2.7, 4.0, 14.0}, {0, 0, 18}, {0, 0, 20.9}};
// [compute capability: Volta, Ampere, Hopper, Blackwell][nodes: 1, 2, more]  (:177-211). One
// node: the GPU's row; more: the x86 Intel row for every GPU (:268-272), 39.0 and 20.4.
constexpr double kLlMaxBw[4][3] = {{39.0, 39.0, 20.4}, {87.7, 39.0, 20.4}, {141.0, 39.0, 20.4}, {282.0, 39.0, 20.4}};
constexpr double kPerChRingLL128[4] = {20, 20, 36.7, 40};
constexpr double kPerChTree[4][3] = {{26.5, 18.5, 10.0}, {24.0, 23.6, 17.8}, {38.7, 41.4, 36.0}, {70.0, 42.8, 24.0}};
constexpr double kPerChTreeLL128[4][3] = {{20, 20, 20}, {20, 20, 20}, {36.7, 36.7, 29.0}, {55.6, 31.67, 20.0}};
constexpr double kPerChNvlsTree[4][3] = {{26.5, 18.5, 10.0}, {24.0, 23.6, 17.8}, {0.0, 57.7, 45.5}, {0.0, 96.0, 80.0}};
constexpr double kNvlsEfficiency[4] = {0, 0, 0.85, 0.74};  // :138
constexpr double kTreeCorrection[kProtos][24] = {  // [protocol][log2(bytes / 64)]  (:620)
    {1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0, 1.0, 1.0},
    {1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9, 1.0, 1.0, 1.0},
    {.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9, .9, .9}};
constexpr double kNetOverheadUs = 1.0;  // getNetOverhead() on x86 Intel (:225)
// The graph search's per-channel speed ladders (src/graph/search.cc:1051-1067): the fastest a
// channel may be. Inside a node: speedArrayIntra's 40 (Volta, Ampere); sm90's 60 and sm100's 90
// halved by ncclTopoDupChannels (Hopper 30, Blackwell 45). Across nodes: speedArrayInter's and
// sm90SpeedArrayInter's 48, sm100's 96.
constexpr double kMaxChannelIntra[4] = {40, 40, 30, 45};
constexpr double kMaxChannelInter[4] = {48, 48, 48, 96};

// An InfiniBand network step's latency as the shipped cluster files give it (a100x16: HDR,
// 10.6 us, fit on mscclpp's NDmv4 figures): what NCCL's NET latencies already stand for.
constexpr double kInfinibandStepUs = 10.6;

int cc_index(double cc) { return cc >= 10 ? 3 : cc >= 9 ? 2 : cc >= 8 ? 1 : 0; }
int log2i(double x) { return x >= 1 ? static_cast<int>(std::floor(std::log2(x))) : -1; }

}  // namespace

LinkFigures link_figures(const hw::Cluster& c) {
  LinkFigures f;
  const bool hopper = c.gpu.compute_capability.value >= 9.0;
  switch (c.intra_node.kind) {
    case hw::LinkKind::kNvswitch:
      // Fit: ring busbw 368 GB/s of 450 at 8 GB, 8 x H100 all_reduce_perf (Together AI,
      // bench/collectives/published/all_reduce_h100x8_together_ring.txt); NCCL's own figure is
      // 18 NVLinks x 20.6 = 370.8. A100: busbw 231 GB/s of 300 at 8 GB, 8 x A100-SXM4-80GB
      // (Azure ND A100 v4; docs/reference/nccl-tests-published.md 3.1).
      f.intra_eff = hopper ? 368.0 / 450 : 231.0 / 300;
      break;
    case hw::LinkKind::kNvlink:  // assumption: NVLink bridges at 80% (no measurement)
    case hw::LinkKind::kPcie:    // assumption: PCIe at 80% of its unidirectional rate (none)
    case hw::LinkKind::kXgmi:    // (RCCL: CollectiveModel::rccl has its own)
      f.intra_eff = 0.80;
      break;
  }
  f.nvls_eff = kNvlsEfficiency[cc_index(c.gpu.compute_capability.value)];
  // NCCL's graph search: a channel over a 50 GB/s (400 Gb/s) NIC runs at 48 GB/s
  // (src/graph/search.cc, sm90SpeedArrayInter).
  f.net_eff = 0.96;
  // Fit: a thread launching 8 GPUs' all-reduces (nccl-tests -g 8) takes 35.0 us whatever the
  // size up to 256 KB (8 x H100, Together AI, all_reduce_h100x8_together_ring.txt): 4.4 us a
  // GPU. nccl-tests times iterations launched back to back (src/common.cu: the wall clock of
  // iters launches over iters), so the launch overlaps the device's collective and a step costs
  // the longer of the two; from a CUDA graph there is no launch to overlap.
  f.launch_per_gpu_us = 35.0 / 8;
  return f;
}

namespace {

// Bit p set: NCCL may run protocol p on this cluster. LL128 needs NVLink between the node's GPUs
// (tuning.cc: typeIntra <= PATH_NVB), so it is off on PCIe-only nodes; a fabric's stack may
// allow fewer (inter_node.nccl_proto, as NCCL_PROTO: AWS's plugin sets simple on p4d/p4de).
unsigned allowed_protocols(const hw::Cluster& c) {
  unsigned mask = 0;
  for (int p = 0; p < kProtos; ++p) {
    const auto& only = c.inter_node ? c.inter_node->nccl_proto : std::vector<std::string>{};
    if (!only.empty() && std::find(only.begin(), only.end(), kProtoKey[p]) == only.end()) continue;
    if (p == kLL128 && c.intra_node.kind == hw::LinkKind::kPcie) continue;
    mask |= 1u << p;
  }
  return mask;
}

}  // namespace

CollectiveModel::CollectiveModel(const hw::Cluster& cluster)
    : c_(cluster), fig_(link_figures(cluster)), protocols_(allowed_protocols(cluster)) {}

CollectiveTime CollectiveModel::model(Collective c, double bytes, std::int64_t ranks,
                                      const CollectiveConditions& cond) const {
  CollectiveTime t;
  t.seconds = evaluate(c, bytes, ranks, cond, &t.how, &t.nccl_tuning_seconds);
  return t;
}

double CollectiveModel::model_seconds(Collective c, double bytes, std::int64_t ranks,
                                      const CollectiveConditions& cond) const {
  return evaluate(c, bytes, ranks, cond, nullptr, nullptr);
}

double CollectiveModel::evaluate(Collective c, double bytes, std::int64_t ranks, const CollectiveConditions& cond,
                                 std::string* how, double* tuning_seconds) const {
  if (ranks <= 1 && c != Collective::kSendRecv) {
    if (how) *how = "model: one rank";
    return 0;
  }
  if (c_.transport == "rccl") return rccl(c, bytes, ranks, cond, how, tuning_seconds);
  const std::int64_t g = std::max<std::int64_t>(1, c_.gpus_per_node);
  const std::int64_t nodes = c == Collective::kSendRecv ? (ranks > g ? 2 : 1) : (ranks + g - 1) / g;
  const std::int64_t ppn = nodes > 1 ? g : std::min(ranks, g);
  const double n = static_cast<double>(c == Collective::kSendRecv ? 2 : ranks), N = static_cast<double>(nodes);
  const int ci = cc_index(c_.gpu.compute_capability.value), ni = nodes <= 2 ? static_cast<int>(nodes) - 1 : 2;
  const LinkFigures& fig = fig_;
  const bool pcie = c_.intra_node.kind == hw::LinkKind::kPcie;
  const auto& hw_intra = pcie ? kHwLatPci : kHwLatNvlink;
  // The graphs NCCL's search would find (docs/collectives.md): inside a node, channels of at
  // most kMaxChannelIntra GB/s filling the GPU's link as a ring measures it; across nodes, one
  // channel a NIC at the NIC's speed (at most kMaxChannelInter), never more than the node's link.
  const double intra_total = c_.intra_node.bandwidth_GBps.value * fig.intra_eff;  // GB/s
  double ring_ch, ring_bw;  // channels, GB/s each
  if (nodes == 1 || !c_.inter_node) {
    ring_ch = std::max(1.0, std::round(intra_total / kMaxChannelIntra[ci]));
    ring_bw = intra_total / ring_ch;
  } else {
    const double nic = c_.inter_node->nic_bandwidth_Gbps.value / 8 * fig.net_eff;
    const double nics = static_cast<double>(c_.inter_node->nics_per_node);
    ring_ch = std::min(32.0, nics * std::max(1.0, std::ceil(nic / kMaxChannelInter[ci])));
    ring_bw = std::min({nic * nics / ring_ch, kMaxChannelInter[ci], intra_total / ring_ch});
  }
  const double net_extra = nodes > 1 && c_.inter_node ? fabric_latency_us() : 0;
  const double nsteps = c == Collective::kAllReduce ? 2 * (n - 1) : n - 1;
  const bool nvls = c_.intra_node.kind == hw::LinkKind::kNvswitch && ci >= 2 && ppn >= 2;
  double best = std::numeric_limits<double>::infinity(), best_fill = 0;
  int best_a = -1, best_p = -1;
  auto consider = [&](Algo a, Proto p, double lat, double algbw, double fill_bytes = 0) {
    if (!cond.algorithm.empty() && cond.algorithm != kAlgoName[a]) return;
    if (!(protocols_ & (1u << p))) return;
    if (algbw <= 0) return;
    double bw = algbw;
    const int ls = log2i(bytes / 64);
    if (a == kTree && c == Collective::kAllReduce && ls >= 0 && ls < 23) bw *= kTreeCorrection[p][ls];
    if (a == kRing && p == kSimple && nodes > 1 && c == Collective::kAllReduce && bytes / (2 * ring_ch * n) >= 64)
      lat *= ci >= 1 ? 1.4 : 1.9;  // the ring's plateau (:645)
    // NCCL picks by its tuning model's time; the pipeline's fill is what the pick then costs.
    const double us = lat + bytes / (1000 * bw);
    if (us < best)
      best = us, best_fill = fill_bytes / (1000 * bw), best_a = a, best_p = p;
  };
  if (c == Collective::kAllReduce || c == Collective::kAllGather || c == Collective::kReduceScatter) {
    const double ratio_ring = n / nsteps;
    for (int pi = 0; pi < kProtos; ++pi) {
      const Proto p = static_cast<Proto>(pi);
      // Ring (:324-337, :376-382, :384-409)
      double bus = ring_ch * ring_bw;
      if (p == kLL) bus = std::min(kLlMaxBw[ci][ni], bus * 0.5);
      if (p == kLL128) bus = std::min(bus * 0.92, ring_ch * kPerChRingLL128[ci]);
      const double intra_lat0 = hw_intra[kRing][p];
      double lat = kBaseLat[kRing][p];
      if (nodes > 1) {
        const double inter = kHwLatNet[kRing][p] + net_extra * (p == kSimple ? 2 : 1);
        const double intra = std::max(intra_lat0, kNetOverheadUs * (p == kSimple ? 3 : 1));
        const double inter_steps = c == Collective::kAllReduce ? 2 * (N - 1) : N - 1;
        lat += (nsteps - inter_steps) * intra + inter_steps * inter;
      } else {
        lat += nsteps * intra_lat0;
      }
      consider(kRing, p, lat, bus * ratio_ring);
      // Tree, all-reduce only (:329-333; latency :410)
      if (c == Collective::kAllReduce) {
        // Up to 2 nodes NCCL costs the tree on its intra-node speed (:306); a node's network
        // still carries the whole buffer each way (each half of the double binary tree goes up
        // once and comes down once), which caps it below.
        const double intra_ch = std::max(1.0, std::round(intra_total / kMaxChannelIntra[ci]));
        double tbus = nodes <= 2 ? intra_total : ring_ch * ring_bw;
        const double tch = nodes <= 2 ? intra_ch : ring_ch;
        tbus = std::min(tbus * 0.92, tch * kPerChTree[ci][ni]);
        if (nodes > 1 && c_.inter_node)
          tbus = std::min(tbus, 2 * c_.inter_node->node_bandwidth_GBps() * fig.net_eff);
        if (p == kLL) tbus = std::min(tbus / 3.8, kLlMaxBw[ci][ni]);
        if (p == kLL128) tbus = std::min(tbus * (nodes == 1 ? 7.0 / 9.0 : 120.0 / 128.0), tch * kPerChTreeLL128[ci][ni]);
        const double inter = kHwLatNet[kTree][p] + net_extra * (p == kSimple ? 2 : 1);
        const double tlat = kBaseLat[kTree][p] +
                            2 * ((static_cast<double>(ppn) - 1) * hw_intra[kTree][p] + log2i(N) * (nodes > 1 ? inter : 0));
        consider(kTree, p, tlat, tbus * 0.5);
      }
    }
    // NVLS inside one NVSwitch node, NVLSTree across nodes (all-reduce): Simple only, 8
    // channels of the NVLS graph, whose intra-node speed is 8/9 of the ring's (40 against 45
    // GB/s a channel on H100: 9 x 40 <= 370.8, search.cc:410-443).
    if (nvls && (c == Collective::kAllReduce || nodes == 1)) {
      const double ch = 8, bw_intra = intra_total / 9;
      // The pipeline's fill: NCCL splits the buffer over nvlsChannels x nHeads (the NVLS graph's
      // 8 channels) operations at once, each in chunks it shrinks for smaller buffers
      // (enqueue.cc calcCollChunking, 2.30.7; nvls.cc ncclNvlsTuning); a chunk is reduced through
      // the switch, then broadcast back, so two chunk-steps of every operation pass before the
      // pipeline runs full. That costs 2 x chunk x operations more bytes at the same speed.
      const double nvls_channels = ci >= 3 ? (nodes > 1 ? 32 : 24) : 16;
      // Across nodes NCCL runs min(nvlsChannels, comm->nChannels) (enqueue.cc), and
      // comm->nChannels is twice the ring graph's channels (connect.cc).
      const double ops = (nodes > 1 ? std::min(nvls_channels, 2 * ring_ch) : nvls_channels) * ch;
      double chunk;
      if (nodes == 1) {
        chunk = 131072;
        if (bytes < 64 * ops * chunk) chunk = 65536;
        if (bytes < 8 * ops * chunk) chunk = 32768;
        if (bytes < 2 * ops * chunk) chunk = 16384;
      } else {
        chunk = nodes >= 4 ? 65536 : 131072;  // min(nvlsChunkSize, nvlsTreeMaxChunkSize)
        if (bytes < 4 * ops * chunk && chunk > 65536) chunk = 65536;
        if (bytes < 1 * ops * chunk && chunk > 32768) chunk = 32768;
      }
      const double fill = 2 * chunk * ops;
      double intra_bw = bw_intra * fig.nvls_eff * (ch - 1) / ch;
      if (c == Collective::kAllReduce) intra_bw *= 2;
      else intra_bw *= (static_cast<double>(ppn) - 1) / static_cast<double>(ppn);
      if (nodes == 1) {
        const double ratio = c == Collective::kAllReduce ? n / nsteps : 1.0;
        consider(kNvls, kSimple, hw_intra[kNvls][kSimple], ch * intra_bw * ratio, fill);
      } else {
        // The NVLS graph's 8 channels share the node's NICs, each at most a network channel's speed.
        const double node_net = c_.inter_node->node_bandwidth_GBps() * fig.net_eff;
        const double inter_bw = std::min(kMaxChannelInter[ci], node_net / ch) * (nodes <= 2 ? 2 : 1);
        const double bw = std::min({intra_bw, inter_bw, kPerChNvlsTree[ci][ni]});
        const double inter = kHwLatNet[kNvlsTree][kSimple] + 2 * net_extra;
        consider(kNvlsTree, kSimple, hw_intra[kNvlsTree][kSimple] + 2 * log2i(N) * inter, ch * bw * n / nsteps, fill);
      }
    }
  } else {
    // Point to point (NCCL has no cost model for it: docs/collectives.md): an all-to-all sends
    // (n-1)/n of its buffer, (ppn-1)/n over the node's link and the rest through its share of
    // the NICs, the two at once, a round of sends a peer; send/recv is one such hop.
    const double intra_GBps = intra_total, nic_GBps = c_.inter_node
        ? c_.inter_node->node_bandwidth_GBps() * fig.net_eff / static_cast<double>(g) : intra_total;
    const double share_intra = c == Collective::kSendRecv ? (nodes > 1 ? 0 : 1) : (static_cast<double>(ppn) - 1) / n;
    const double share_net = c == Collective::kSendRecv ? (nodes > 1 ? 1 : 0) : (n - static_cast<double>(ppn)) / n;
    const double t_bw = std::max(bytes * share_intra / (1000 * intra_GBps), bytes * share_net / (1000 * nic_GBps));
    const double peers = c == Collective::kSendRecv ? 1 : n - 1;
    const double hop = nodes > 1 ? kHwLatNet[kRing][kSimple] + net_extra : hw_intra[kRing][kSimple];
    // NCCL sends up to 8 peers' operations at once (NCCL_MAX_DEV_WORK_P2P_PER_BATCH).
    best = kBaseLat[kRing][kSimple] + std::ceil(peers / 8) * hop + t_bw;
    best_a = -2;  // point to point
  }
  if (!std::isfinite(best)) {
    if (how) *how = "model: " + cond.algorithm + " does not apply here";
    return std::numeric_limits<double>::infinity();
  }
  const double tuning = best;
  best += best_fill;
  // nccl-tests launches its iterations back to back: eagerly, a step takes the longer of the
  // device's time and the host's launches of every GPU the thread drives.
  if (!cond.cuda_graph) best = std::max(best, fig.launch_per_gpu_us * cond.gpus_per_thread);
  if (how) {
    *how = best_a == -2 ? (c == Collective::kSendRecv ? "model: p2p" : "model: p2p (8 peers a round)")
                        : fmt::format("model: {}/{}", kAlgoName[best_a], kProtoName[best_p]);
    if (nodes > 1) *how += fmt::format(" ({} nodes)", nodes);
  }
  if (tuning_seconds) *tuning_seconds = tuning * 1e-6;
  return best * 1e-6;
}

// RCCL on AMD GPUs. RCCL's own tuning model (a port of NCCL's with its own tables) is not
// transcribed here: this is alpha-beta on the link, with the mesh's one figure measured.
// - Bandwidth: inside a node each GPU of a group of k reaches the others over k-1 of its
//   Infinity Fabric links (IntraNodeLink::group_GBps), at kXgmiEff of their datasheet rate: 8 x
//   MI300X all-reduce busbw 312.9 GB/s of 7 x 64 = 448 at 4 GiB (stas00/ml-engineering
//   network/README.md @ 744d01e1, all_reduce_bench.py). The same run's 2 GPUs, 47.7 of one
//   64 GB/s link (0.745), check the k-1 links rule. Across nodes the ring also runs through the
//   GPU's share of the node's NICs, at NCCL's 0.96.
// - Latency: NCCL's ring LL figures (6.6 us + 0.6 us a step inside a node, 2.7 us a network
//   step plus what the fabric adds), assumed: no RCCL small-message figure was found.
constexpr double kXgmiEff = 312.9 / 448;

double CollectiveModel::rccl(Collective c, double bytes, std::int64_t ranks, const CollectiveConditions& cond,
                             std::string* how, double* tuning_seconds) const {
  const std::int64_t g = std::max<std::int64_t>(1, c_.gpus_per_node);
  const std::int64_t nodes = c == Collective::kSendRecv ? (ranks > g ? 2 : 1) : (ranks + g - 1) / g;
  const std::int64_t in_node = c == Collective::kSendRecv ? 2 : std::min(ranks, g);
  const double n = static_cast<double>(c == Collective::kSendRecv ? 2 : ranks);
  // Send/recv: one link to the peer; the collectives: the group's links.
  double bw = c_.intra_node.group_GBps(in_node) * kXgmiEff;
  if (c_.intra_node.kind != hw::LinkKind::kXgmi) bw = c_.intra_node.bandwidth_GBps.value * 0.80;
  if (nodes > 1 && c_.inter_node)
    bw = std::min(bw, c_.inter_node->node_bandwidth_GBps() * 0.96 / static_cast<double>(g));
  const double steps = c == Collective::kSendRecv  ? 1
                       : c == Collective::kAllReduce ? 2 * (n - 1)
                       : c == Collective::kAllToAll  ? std::ceil((n - 1) / 8)
                                                     : n - 1;
  const double step_us = nodes > 1 ? 2.7 + fabric_latency_us() : 0.6;
  const double us = 6.6 + steps * step_us + bytes * bus_factor(c, ranks) / (1000 * bw);
  if (how) *how = nodes > 1 ? fmt::format("model: rccl alpha-beta ({} nodes)", nodes) : "model: rccl alpha-beta";
  if (tuning_seconds) *tuning_seconds = us * 1e-6;
  (void)cond;
  return us * 1e-6;
}

std::optional<CollectiveTime> CollectiveModel::engine_all_reduce(double bytes, std::int64_t n,
                                                                 bool graph) const {
  // Where vLLM's CustomAllreduce runs (custom_all_reduce.py: _SUPPORTED_WORLD_SIZES 2, 4, 6, 8;
  // off for more than two GPUs that are not fully connected; max_size 8 MiB).
  // On AMD GPUs vLLM runs ROCm's custom and quick all-reduce, not modelled: RCCL's time stands
  // for it (an upper bound).
  if (c_.transport == "rccl") return std::nullopt;
  const bool full = c_.intra_node.kind == hw::LinkKind::kNvswitch;
  if (!(n == 2 || n == 4 || n == 6 || n == 8) || n > c_.gpus_per_node || (!full && n > 2) ||
      bytes > 8.0 * 1024 * 1024)
    return std::nullopt;
  // The kernel's choice (custom_all_reduce.cuh, REDUCE_CASE): one stage reads every peer's whole
  // buffer ((n-1) x bytes over the GPU's link); two stages reduce-scatter then all-gather
  // (2(n-1)/n x bytes) behind a second barrier.
  const bool one_stage = n == 2 || (n <= 4 && bytes < 512 * 1024) || (n <= 8 && bytes < 256 * 1024);
  const double nd = static_cast<double>(n), link = c_.intra_node.bandwidth_GBps.value * 1e3;  // bytes/us
  // Fit (least squares on relative error): vLLM's graph-mode all-reduce on 8 x H100 SXM, 2, 4
  // and 8 GPUs, 1 KiB-8 MiB (hardware_profiles/operators/H100-SXM5-80GB/vllm.json, aiconfigurator's
  // collector): one stage 4.47 us + its bytes at 56% of the link, two stages 8.95 us + its bytes
  // at 72%. Checked on H200 (median 2-5%), A100 (11-21%, slower barriers) and 2 x L40S over PCIe
  // (10%). Eager: +16.2 us, the median of the eager less the graph figure up to 16 KiB on H100.
  double us = one_stage ? 4.47 + (nd - 1) * bytes / (0.56 * link)
                        : 8.95 + 2 * (nd - 1) / nd * bytes / (0.72 * link);
  if (!graph) us += 16.2;
  return CollectiveTime{us * 1e-6, one_stage ? "model: vLLM custom all-reduce, one stage"
                                             : "model: vLLM custom all-reduce, two stages"};
}

double CollectiveModel::fabric_latency_us() const {
  // The cluster's `latency_us` is a network step's one-way latency; NCCL's NET latencies
  // (kHwLatNet) are InfiniBand's own, so only what a fabric adds beyond InfiniBand's 2 us or so
  // (its `latency_us` less InfiniBand's) is added to each network step.
  if (!c_.inter_node) return 0;
  return std::max(0.0, c_.inter_node->latency_us.value - kInfinibandStepUs);
}

}  // namespace tpp::sim
