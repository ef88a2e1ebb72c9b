#include "hardware_profiles/hardware.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/data_path.h"
#include "common/fields.h"

namespace tpp::hw {
namespace {

constexpr double kMaxFigure = 1e9;

// A figure is written {value: X, source: "..."}, or, where sources are optional (the user's
// own cluster file), as a plain number whose source is the file and line that set it.
std::optional<Figure> read_figure(Fields& f, const std::string& key, double min, double max,
                                  bool require_source, bool required) {
  const Node* n = f.raw(key);
  if (!f.ok()) return std::nullopt;
  if (!n) {
    if (required) f.missing(key);
    return std::nullopt;
  }
  if (n->kind == Node::Kind::Map) {
    Fields sub(f.doc(), *n, f.section() + "." + key);
    Figure fig;
    fig.value = sub.number("value", min, max);
    fig.source = sub.string("source");
    if (auto e = sub.finish()) {
      f.adopt(*e);
      return std::nullopt;
    }
    return fig;
  }
  if (require_source) {
    f.fail(key, "field '" + key + "' in " + f.section() +
                    " must be {value: ..., source: \"...\"} (catalog figures need a source)");
    return std::nullopt;
  }
  double v = f.number(key, min, max);
  if (!f.ok()) return std::nullopt;
  return Figure{v, f.doc().file + ":" + std::to_string(n->line)};
}

Figure need(Fields& f, const std::string& key, double min, double max, bool require_source) {
  return read_figure(f, key, min, max, require_source, true).value_or(Figure{});
}

void read_has_fp8(Fields& f, bool require_source, Gpu& g) {
  const Node* n = f.raw("has_fp8");
  if (!f.ok()) return;
  if (!n) return f.missing("has_fp8");
  if (n->kind == Node::Kind::Map) {
    Fields sub(f.doc(), *n, f.section() + ".has_fp8");
    if (!sub.has("value")) sub.missing("value");
    g.has_fp8 = sub.boolean_or("value", false);
    g.has_fp8_source = sub.string("source");
    if (auto e = sub.finish()) f.adopt(*e);
    return;
  }
  if (require_source)
    return f.fail("has_fp8", "field 'has_fp8' in " + f.section() +
                                 " must be {value: ..., source: \"...\"} (catalog figures need a "
                                 "source)");
  g.has_fp8 = f.boolean_or("has_fp8", false);
  g.has_fp8_source = f.doc().file + ":" + std::to_string(n->line);
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void check_gpu(Fields& f, const Gpu& g) {
  if (!f.ok()) return;
  if (g.has_fp8 != (g.fp8_dense_tflops.value > 0))
    f.fail("has_fp8", "field 'has_fp8' in " + f.section() + " is " +
                          (g.has_fp8 ? "true" : "false") + " but fp8_dense_tflops is " +
                          num(g.fp8_dense_tflops.value));
  else if (g.bf16_dense_tflops.value <= 0)
    f.fail("bf16_dense_tflops", "field 'bf16_dense_tflops' in " + f.section() +
                                    " must be positive");
  else if (g.bf16_mamf_tflops.value > g.bf16_dense_tflops.value)
    f.fail("bf16_mamf_tflops", "field 'bf16_mamf_tflops' in " + f.section() + " (" +
                                   num(g.bf16_mamf_tflops.value) + ") exceeds bf16_dense_tflops (" +
                                   num(g.bf16_dense_tflops.value) + ")");
  else if (g.fp8_mamf_tflops.value > g.fp8_dense_tflops.value)
    f.fail("fp8_mamf_tflops", "field 'fp8_mamf_tflops' in " + f.section() + " (" +
                                  num(g.fp8_mamf_tflops.value) + ") exceeds fp8_dense_tflops (" +
                                  num(g.fp8_dense_tflops.value) + ")");
  else if (g.fp4_dense_tflops.value > 0 && g.fp4_dense_tflops.value < g.fp8_dense_tflops.value)
    f.fail("fp4_dense_tflops", "field 'fp4_dense_tflops' in " + f.section() + " (" +
                                   num(g.fp4_dense_tflops.value) + ") is below fp8_dense_tflops (" +
                                   num(g.fp8_dense_tflops.value) + "): FP4 tensor cores run at "
                                   "least at the FP8 rate");
  else if (g.memory_driver_GiB.value > g.memory_marketed_GB.value)
    f.fail("memory_driver_GiB", "field 'memory_driver_GiB' in " + f.section() + " (" +
                                    num(g.memory_driver_GiB.value) +
                                    ") exceeds the marketed memory (" +
                                    num(g.memory_marketed_GB.value) + " GB)");
}

}  // namespace

std::int64_t Gpu::memory_driver_bytes() const {
  return static_cast<std::int64_t>(std::llround(memory_driver_GiB.value * 1073741824.0));
}

const char* link_kind_name(LinkKind k) {
  switch (k) {
    case LinkKind::kNvlink: return "nvlink";
    case LinkKind::kNvswitch: return "nvswitch";
    case LinkKind::kPcie: return "pcie";
    case LinkKind::kXgmi: return "xgmi";
  }
  return "?";
}

const char* vendor_name(Vendor v) { return v == Vendor::kAmd ? "amd" : "nvidia"; }

double IntraNodeLink::group_GBps(std::int64_t ranks) const {
  if (kind != LinkKind::kXgmi || mesh_links <= 0) return bandwidth_GBps.value;
  const std::int64_t used = std::clamp<std::int64_t>(ranks - 1, 1, mesh_links);
  return bandwidth_GBps.value * static_cast<double>(used) / static_cast<double>(mesh_links);
}

double Network::node_bandwidth_GBps() const {
  return static_cast<double>(nics_per_node) * nic_bandwidth_Gbps.value / 8.0;
}

Expected<Gpu> gpu_from_doc(const Doc& doc, const Node& node, bool require_sources) {
  Fields f(doc, node, "gpu");
  const bool rs = require_sources;
  Gpu g;
  g.file = doc.file;
  g.name = f.string("name");
  g.vendor = f.choice_or("vendor", "nvidia", {"nvidia", "amd"}) == "amd" ? Vendor::kAmd : Vendor::kNvidia;
  g.memory_marketed_GB = need(f, "memory_marketed_GB", 1, 100000, rs);
  g.memory_driver_GiB = need(f, "memory_driver_GiB", 1, 100000, rs);
  g.hbm_bandwidth_GBps = need(f, "hbm_bandwidth_GBps", 1, kMaxFigure, rs);
  g.bf16_dense_tflops = need(f, "bf16_dense_tflops", 0, kMaxFigure, rs);
  g.fp16_dense_tflops = need(f, "fp16_dense_tflops", 0, kMaxFigure, rs);
  g.fp8_dense_tflops = need(f, "fp8_dense_tflops", 0, kMaxFigure, rs);
  g.int8_dense_tops = need(f, "int8_dense_tops", 0, kMaxFigure, rs);
  g.nvlink_unidir_GBps = need(f, "nvlink_unidir_GBps", 0, kMaxFigure, rs);
  g.pcie_unidir_GBps = need(f, "pcie_unidir_GBps", 1, kMaxFigure, rs);
  g.tdp_W = need(f, "tdp_W", 1, kMaxFigure, rs);
  g.sm_count = need(f, "sm_count", 1, 100000, rs);
  // CUDA's compute capability for NVIDIA; AMD's GPUs have an ISA name instead, and 8 (or 7)
  // Infinity Fabric links to their peers where NVIDIA's have NVLink.
  if (g.vendor == Vendor::kNvidia) {
    g.compute_capability = need(f, "compute_capability", 1, 100, rs);
    for (const char* k : {"gfx_target", "xgmi_links", "xgmi_link_unidir_GBps"})
      if (f.ok() && f.has(k))
        f.fail(k, std::string("field '") + k + "' in gpu is AMD's: give vendor: amd, or drop it");
  } else {
    if (f.ok() && f.has("compute_capability"))
      f.fail("compute_capability", "field 'compute_capability' in gpu is CUDA's; an AMD GPU "
                                   "(vendor: amd) gives gfx_target instead");
    g.gfx_target = f.string("gfx_target");
    if (f.ok() && g.gfx_target.rfind("gfx", 0) != 0)
      f.fail("gfx_target", "field 'gfx_target' in gpu must be an AMD ISA name such as gfx942, "
                           "got '" + g.gfx_target + "'");
    g.xgmi_links = f.integer_or("xgmi_links", 0, 0, 64);
    if (g.xgmi_links > 0) g.xgmi_link_unidir_GBps = need(f, "xgmi_link_unidir_GBps", 0.001, kMaxFigure, rs);
    if (f.ok() && g.xgmi_links == 0 && f.has("xgmi_link_unidir_GBps"))
      f.fail("xgmi_link_unidir_GBps", "field 'xgmi_link_unidir_GBps' in gpu needs xgmi_links");
    if (f.ok() && g.nvlink_unidir_GBps.value > 0)
      f.fail("nvlink_unidir_GBps", "field 'nvlink_unidir_GBps' in gpu must be 0 for an AMD GPU: "
                                   "its links are xgmi_links");
  }
  read_has_fp8(f, rs, g);
  if (f.has("fp32_tflops")) g.fp32_tflops = need(f, "fp32_tflops", 1, kMaxFigure, rs);
  if (f.has("bf16_mamf_tflops")) g.bf16_mamf_tflops = need(f, "bf16_mamf_tflops", 1, kMaxFigure, rs);
  if (f.has("fp8_mamf_tflops")) g.fp8_mamf_tflops = need(f, "fp8_mamf_tflops", 1, kMaxFigure, rs);
  if (f.has("fp4_dense_tflops")) g.fp4_dense_tflops = need(f, "fp4_dense_tflops", 1, kMaxFigure, rs);
  if (const Node* rm = f.map_or_null("runtime_memory")) {
    Fields r(f.doc(), *rm, "runtime_memory");
    Gpu::RuntimeMemory m;
    m.non_torch_GiB = r.number("non_torch_GiB", 0, 1e4);
    m.non_torch_tp_GiB = r.number("non_torch_tp_GiB", 0, 1e4);
    m.cuda_graph_GiB = r.number_or("cuda_graph_GiB", 0, 0, 1e4);
    m.source = r.string("source");
    if (auto e = r.finish()) f.adopt(*e);
    g.runtime_memory = m;
  }
  check_gpu(f, g);
  if (auto e = f.finish()) return *e;
  return g;
}

Expected<Gpu> load_gpu(const std::string& name_or_path) {
  auto path = resolve_input(name_or_path, Catalog::kGpus);
  if (!path) return path.error();
  auto doc = load_yaml_file(*path);
  if (!doc) return doc.error();
  auto g = gpu_from_doc(*doc, doc->root, true);
  // Catalog entries are found by file name, so the name inside must be the same.
  std::string stem = std::filesystem::path(*path).stem().string();
  if (g && g->name != stem) {
    const Node* n = doc->root.find("name");
    return make_error(*path, n ? n->line : 1, n ? n->col : 1,
                      "field 'name' in gpu is '" + g->name + "' but the file is named '" + stem +
                          ".yaml'");
  }
  return g;
}

namespace {

std::optional<Error> read_intra(const Doc& doc, const Node& node, Cluster& c) {
  Fields f(doc, node, "intra_node");
  std::string kind = f.choice("kind", {"nvswitch", "nvlink", "pcie", "xgmi"});
  c.intra_node.kind = kind == "pcie"     ? LinkKind::kPcie
                      : kind == "nvlink" ? LinkKind::kNvlink
                      : kind == "xgmi"   ? LinkKind::kXgmi
                                         : LinkKind::kNvswitch;
  const bool amd = c.gpu.vendor == Vendor::kAmd;
  if (f.ok() && amd && (c.intra_node.kind == LinkKind::kNvswitch || c.intra_node.kind == LinkKind::kNvlink))
    f.fail("kind", "intra_node kind '" + kind + "' but GPU " + c.gpu.name +
                       " is AMD's: use xgmi (Infinity Fabric) or pcie");
  if (f.ok() && !amd && c.intra_node.kind == LinkKind::kXgmi)
    f.fail("kind", "intra_node kind 'xgmi' is AMD's Infinity Fabric but GPU " + c.gpu.name +
                       " is NVIDIA's");
  // Bandwidth defaults to the GPU's own link figure, with that figure's source.
  Figure gpu_link = c.intra_node.kind == LinkKind::kPcie ? c.gpu.pcie_unidir_GBps
                                                         : c.gpu.nvlink_unidir_GBps;
  if (c.intra_node.kind == LinkKind::kXgmi) {
    c.intra_node.mesh_links = c.gpu.xgmi_links;
    gpu_link = {static_cast<double>(c.gpu.xgmi_links) * c.gpu.xgmi_link_unidir_GBps.value,
                std::to_string(c.gpu.xgmi_links) + " links x xgmi_link_unidir_GBps (" +
                    c.gpu.xgmi_link_unidir_GBps.source + ")"};
    if (f.ok() && c.gpus_per_node > c.gpu.xgmi_links + 1)
      f.fail("kind", "intra_node kind 'xgmi' joins each GPU to its peers with one link each, but "
                     "GPU " + c.gpu.name + " has " + std::to_string(c.gpu.xgmi_links) +
                         " links and the node " + std::to_string(c.gpus_per_node) + " GPUs");
  }
  auto bw = read_figure(f, "bandwidth_GBps", 0.001, kMaxFigure, false, false);
  c.intra_node.bandwidth_GBps = bw ? *bw : gpu_link;
  if (f.ok() && !bw && gpu_link.value <= 0)
    f.fail("kind", "intra_node kind '" + kind + "' but GPU " + c.gpu.name +
                       (c.intra_node.kind == LinkKind::kXgmi ? " has no xgmi_links"
                                                             : " has no NVLink") +
                       ": use pcie or give bandwidth_GBps");
  c.intra_node.latency_us = need(f, "latency_us", 0, 1e6, false);
  if (auto e = f.finish()) return e;
  return std::nullopt;
}

std::optional<Error> read_inter(const Doc& doc, const Node& node, Cluster& c) {
  Fields f(doc, node, "inter_node");
  Network n;
  n.kind = f.choice("kind", {"infiniband", "roce", "efa", "tcpxo", "tcp", "ethernet"});
  n.nics_per_node = f.integer("nics_per_node", 1, 576);
  n.nic_bandwidth_Gbps = need(f, "nic_bandwidth_Gbps", 0.001, 1e6, false);
  n.latency_us = need(f, "latency_us", 0, 1e6, false);
  n.nccl_proto = f.string_list_or("nccl_proto");
  for (const auto& p : n.nccl_proto)
    if (f.ok() && p != "ll" && p != "ll128" && p != "simple")
      f.fail("nccl_proto", "field 'nccl_proto' in inter_node: '" + p + "' is not one of ll, ll128, simple");
  if (auto e = f.finish()) return e;
  c.inter_node = n;
  return std::nullopt;
}

std::optional<Error> read_collective(const Doc& doc, const Node& node, Cluster& c,
                                     std::int64_t max_ranks) {
  Fields f(doc, node, "collective");
  CollectiveTable t;
  t.op = f.choice("op", {"all_reduce", "all_gather", "reduce_scatter", "all_to_all",
                         "send_recv"});
  t.scope = f.choice("scope", {"intra_node", "inter_node"});
  t.ranks = f.integer("ranks", 2, std::max<std::int64_t>(2, max_ranks));
  t.source = f.string("source");
  t.library = f.choice_or("library", c.transport == "rccl" ? "rccl" : "nccl", {"nccl", "rccl", "vllm"});
  for (auto [key, field] : {std::pair{"in_place", &t.in_place}, std::pair{"cuda_graph", &t.cuda_graph}})
    if (f.has(key)) *field = f.boolean_or(key, false) ? CollectiveTable::Known::kYes : CollectiveTable::Known::kNo;
  t.conditions = f.string_or("conditions", "");
  if (f.ok() && t.library == "vllm" && (t.op != "all_reduce" || t.scope != "intra_node"))
    f.fail("library", "library 'vllm' in collective is vLLM's TP all-reduce: it needs "
                      "op all_reduce and scope intra_node");
  const Node* pts = f.raw("points");
  if (f.ok() && (!pts || pts->kind != Node::Kind::Seq || pts->items.empty()))
    f.fail("points", "field 'points' in collective must be a non-empty list of "
                     "[bytes, time_us] pairs");
  if (auto e = f.finish()) return e;
  for (const Node& p : pts->items) {
    bool ok = p.kind == Node::Kind::Seq && p.items.size() == 2 &&
              p.items[0].kind == Node::Kind::Int && p.items[0].i > 0 &&
              (p.items[1].kind == Node::Kind::Int || p.items[1].kind == Node::Kind::Float) &&
              p.items[1].f > 0;
    if (!ok)
      return make_error(doc.file, p.line, p.col,
                        "each point of a collective must be [bytes > 0, time_us > 0]");
    if (!t.points.empty() && p.items[0].i <= t.points.back().bytes)
      return make_error(doc.file, p.line, p.col,
                        "collective points must have strictly increasing sizes");
    t.points.push_back({p.items[0].i, p.items[1].f});
  }
  c.collectives.push_back(std::move(t));
  return std::nullopt;
}

std::optional<Error> read_efficiency(const Doc& doc, const Node& node, Cluster& c) {
  Fields f(doc, node, "efficiency");
  MeasuredEfficiency e;
  e.source = f.string("source");
  e.memory = f.number_or("memory", 0, 0.01, 1);
  e.gemm_memory = f.number_or("gemm_memory", 0, 0.01, 1);
  e.tile_rows = f.number_or("tile_rows", 0, 1, 1024);
  e.launch_us = f.number_or("launch_us", 0, 0, 1e6);
  e.launch_graph_us = f.number_or("launch_graph_us", 0, 0, 1e6);
  e.elementwise = f.number_or("elementwise", 0, 1e-6, 100);
  e.attention_decode = f.number_or("attention_decode", 0, 1e-6, 100);
  e.attention_prefill = f.number_or("attention_prefill", 0, 1e-6, 100);
  e.collective_wait_us = f.number_or("collective_wait_us", 0, 0, 1e6);
  const Node* g = f.raw("gemm");
  if (f.ok() && g && g->kind != Node::Kind::Seq)
    f.fail("gemm", "field 'gemm' in efficiency must be a list of [tokens, fraction] pairs");
  const Node* gs = f.raw("gemm_by_size");
  const Node* es = f.raw("elementwise_by_size");
  for (auto [list_node, key] : {std::pair{gs, "gemm_by_size"}, std::pair{es, "elementwise_by_size"}})
    if (f.ok() && list_node && list_node->kind != Node::Kind::Seq)
      f.fail(key, std::string("field '") + key + "' in efficiency must be a list of [bytes, "
                  "tokens, fraction] triples");
  if (auto err = f.finish()) return err;
  auto number = [](const Node& n) { return n.kind == Node::Kind::Int || n.kind == Node::Kind::Float; };
  auto triples = [&](const Node* list, const char* key,
                     std::vector<MeasuredEfficiency::SizedPoint>& out) -> std::optional<Error> {
    for (const Node& p : list ? list->items : std::vector<Node>{}) {
      const bool ok = p.kind == Node::Kind::Seq && p.items.size() == 3 && number(p.items[0]) &&
                      number(p.items[1]) && number(p.items[2]) && p.items[0].f >= 1 &&
                      p.items[1].f >= 1 && p.items[2].f > 0 && p.items[2].f <= 1;
      if (!ok)
        return make_error(doc.file, p.line, p.col,
                          std::string("each ") + key + " point must be [bytes >= 1, tokens >= 1, "
                          "fraction in (0, 1]]");
      const MeasuredEfficiency::SizedPoint pt{p.items[0].f, p.items[1].f, p.items[2].f};
      if (!out.empty()) {
        const auto& b = out.back();
        if (pt.weight_bytes < b.weight_bytes ||
            (pt.weight_bytes == b.weight_bytes && pt.tokens <= b.tokens))
          return make_error(doc.file, p.line, p.col,
                            std::string(key) + " points must be sorted by bytes, then by tokens");
      }
      out.push_back(pt);
    }
    return std::nullopt;
  };
  if (auto err = triples(gs, "gemm_by_size", e.gemm_by_size)) return err;
  if (auto err = triples(es, "elementwise_by_size", e.elementwise_by_size)) return err;
  for (const Node& p : g ? g->items : std::vector<Node>{}) {
    bool ok = p.kind == Node::Kind::Seq && p.items.size() == 2 &&
              (p.items[0].kind == Node::Kind::Int || p.items[0].kind == Node::Kind::Float) &&
              (p.items[1].kind == Node::Kind::Int || p.items[1].kind == Node::Kind::Float) &&
              p.items[0].f >= 1 && p.items[1].f > 0 && p.items[1].f <= 1;
    if (!ok)
      return make_error(doc.file, p.line, p.col,
                        "each gemm efficiency must be [tokens >= 1, fraction in (0, 1]]");
    if (!e.gemm.empty() && p.items[0].f <= e.gemm.back().first)
      return make_error(doc.file, p.line, p.col, "gemm efficiencies must have increasing tokens");
    e.gemm.emplace_back(p.items[0].f, p.items[1].f);
  }
  c.efficiency = e;
  return std::nullopt;
}

}  // namespace

Expected<Cluster> cluster_from_doc(const Doc& doc) {
  Cluster c;
  c.file = doc.file;
  Fields f(doc, doc.root, "cluster");
  c.name = f.string("name");
  c.nodes = f.integer("nodes", 1, 100000);
  c.gpus_per_node = f.integer("gpus_per_node", 1, 576);
  c.gpus_per_host = f.integer_or("gpus_per_host", c.gpus_per_node, 1, 64);
  if (f.ok() && c.gpus_per_node % c.gpus_per_host != 0)
    f.fail("gpus_per_host", "field 'gpus_per_host' in cluster (" + std::to_string(c.gpus_per_host) +
                                ") must divide gpus_per_node (" + std::to_string(c.gpus_per_node) +
                                "): a node is whole hosts joined by one NVLink domain");
  if (f.ok() && c.gpus_per_node > 64 && !f.has("gpus_per_host"))
    f.fail("gpus_per_node", "field 'gpus_per_node' in cluster is " + std::to_string(c.gpus_per_node) +
                                ": a node of more than 64 GPUs spans hosts (an NVL72 rack); give "
                                "gpus_per_host");
  const Node* gpu = f.raw("gpu");
  const Node* intra = f.map_or_null("intra_node");
  const Node* inter = f.map_or_null("inter_node");
  c.price_per_gpu_hour = read_figure(f, "price_per_gpu_hour", 0, 1e6, false, false);
  if (f.ok() && c.price_per_gpu_hour && !(c.price_per_gpu_hour->value > 0))
    f.fail("price_per_gpu_hour", "field 'price_per_gpu_hour' in cluster must be a positive "
                                 "number of dollars, got 0");
  c.storage_read_GBps = read_figure(f, "storage_read_GBps", 1e-6, kMaxFigure, false, false);
  const bool transport_given = f.has("transport");
  c.transport = f.choice_or("transport", "nccl", {"nccl", "rccl", "mpi"});
  const Node* coll = f.raw("collectives");
  const Node* eff = f.map_or_null("efficiency");
  if (f.ok() && !gpu) f.missing("gpu");
  if (f.ok() && !intra) f.missing("intra_node");
  if (f.ok() && c.nodes > 1 && !inter)
    f.fail("inter_node", "missing field 'inter_node' in cluster: a cluster of " +
                             std::to_string(c.nodes) + " nodes needs the network between them");
  if (f.ok() && coll && coll->kind != Node::Kind::Seq)
    f.fail("collectives", "field 'collectives' in cluster must be a list");
  if (auto e = f.finish()) return *e;

  if (gpu->kind == Node::Kind::Map) {
    auto g = gpu_from_doc(doc, *gpu, false);
    if (!g) return g.error();
    c.gpu = *g;
  } else {
    // A path is relative to the cluster file, like a workload's trace; a bare name is a
    // catalog entry.
    std::string name = gpu->text;
    if (name.find('/') != std::string::npos && name.front() != '/')
      name = (std::filesystem::path(doc.file).parent_path() / name).string();
    auto g = load_gpu(name);
    if (!g)
      return make_error(doc.file, gpu->line, gpu->col,
                        "field 'gpu': GPU '" + gpu->text + "': " + g.error().message);
    c.gpu = *g;
  }
  // AMD GPUs talk through RCCL, NVIDIA's through NCCL (tpp-profile's CPU ranks through MPI).
  const bool amd = c.gpu.vendor == Vendor::kAmd;
  if (!transport_given && amd) c.transport = "rccl";
  if (const Node* t = doc.root.find("transport");
      t && ((amd && c.transport == "nccl") || (!amd && c.transport == "rccl")))
    return make_error(doc.file, t->line, t->col,
                      "field 'transport' in cluster is '" + c.transport + "' but GPU " + c.gpu.name +
                          " is " + (amd ? "AMD's (rccl)" : "NVIDIA's (nccl)"));
  if (auto e = read_intra(doc, *intra, c)) return *e;
  if (inter)
    if (auto e = read_inter(doc, *inter, c)) return *e;
  if (eff)
    if (auto e = read_efficiency(doc, *eff, c)) return *e;
  if (coll)
    for (const Node& item : coll->items)
      if (auto e = read_collective(doc, item, c, c.total_gpus())) return *e;
  return c;
}

Expected<Cluster> load_cluster(const std::string& name_or_path) {
  auto path = resolve_input(name_or_path, Catalog::kClusters);
  if (!path) return path.error();
  auto doc = load_yaml_file(*path);
  if (!doc) return doc.error();
  return cluster_from_doc(*doc);
}

namespace {

nlohmann::json figure_json(const Figure& f) { return {{"value", f.value}, {"source", f.source}}; }

}  // namespace

nlohmann::json cluster_to_json(const Cluster& c) {
  const Gpu& g = c.gpu;
  nlohmann::json gpu = {{"name", g.name},
                        {"memory_marketed_GB", figure_json(g.memory_marketed_GB)},
                        {"memory_driver_GiB", figure_json(g.memory_driver_GiB)},
                        {"hbm_bandwidth_GBps", figure_json(g.hbm_bandwidth_GBps)},
                        {"bf16_dense_tflops", figure_json(g.bf16_dense_tflops)},
                        {"fp16_dense_tflops", figure_json(g.fp16_dense_tflops)},
                        {"fp8_dense_tflops", figure_json(g.fp8_dense_tflops)},
                        {"int8_dense_tops", figure_json(g.int8_dense_tops)},
                        {"has_fp8", {{"value", g.has_fp8}, {"source", g.has_fp8_source}}},
                        {"nvlink_unidir_GBps", figure_json(g.nvlink_unidir_GBps)},
                        {"pcie_unidir_GBps", figure_json(g.pcie_unidir_GBps)},
                        {"tdp_W", figure_json(g.tdp_W)},
                        {"sm_count", figure_json(g.sm_count)},
                        };
  if (g.vendor == Vendor::kAmd) {
    gpu["vendor"] = vendor_name(g.vendor);
    gpu["gfx_target"] = g.gfx_target;
    if (g.xgmi_links > 0) {
      gpu["xgmi_links"] = g.xgmi_links;
      gpu["xgmi_link_unidir_GBps"] = figure_json(g.xgmi_link_unidir_GBps);
    }
  } else {
    gpu["compute_capability"] = figure_json(g.compute_capability);
  }
  if (g.fp32_tflops.value > 0) gpu["fp32_tflops"] = figure_json(g.fp32_tflops);
  if (g.bf16_mamf_tflops.value > 0) gpu["bf16_mamf_tflops"] = figure_json(g.bf16_mamf_tflops);
  if (g.fp8_mamf_tflops.value > 0) gpu["fp8_mamf_tflops"] = figure_json(g.fp8_mamf_tflops);
  if (g.fp4_dense_tflops.value > 0) gpu["fp4_dense_tflops"] = figure_json(g.fp4_dense_tflops);
  if (g.runtime_memory)
    gpu["runtime_memory"] = {{"non_torch_GiB", g.runtime_memory->non_torch_GiB},
                             {"non_torch_tp_GiB", g.runtime_memory->non_torch_tp_GiB},
                             {"cuda_graph_GiB", g.runtime_memory->cuda_graph_GiB},
                             {"source", g.runtime_memory->source}};
  nlohmann::json j = {{"name", c.name},
                      {"nodes", c.nodes},
                      {"gpus_per_node", c.gpus_per_node},
                      {"gpus_per_host", c.host_gpus()},
                      {"gpu", gpu},
                      {"intra_node",
                       {{"kind", link_kind_name(c.intra_node.kind)},
                        {"bandwidth_GBps", figure_json(c.intra_node.bandwidth_GBps)},
                        {"latency_us", figure_json(c.intra_node.latency_us)}}}};
  if (c.inter_node)
    j["inter_node"] = {{"kind", c.inter_node->kind},
                       {"nics_per_node", c.inter_node->nics_per_node},
                       {"nic_bandwidth_Gbps", figure_json(c.inter_node->nic_bandwidth_Gbps)},
                       {"latency_us", figure_json(c.inter_node->latency_us)}};
  if (c.inter_node && !c.inter_node->nccl_proto.empty()) j["inter_node"]["nccl_proto"] = c.inter_node->nccl_proto;
  if (c.price_per_gpu_hour) j["price_per_gpu_hour"] = figure_json(*c.price_per_gpu_hour);
  if (c.storage_read_GBps) j["storage_read_GBps"] = figure_json(*c.storage_read_GBps);
  if (c.transport != "nccl") j["transport"] = c.transport;
  if (c.efficiency) {
    nlohmann::json e = {{"source", c.efficiency->source}};
    if (c.efficiency->memory > 0) e["memory"] = c.efficiency->memory;
    if (c.efficiency->gemm_memory > 0) e["gemm_memory"] = c.efficiency->gemm_memory;
    if (c.efficiency->tile_rows > 0) e["tile_rows"] = c.efficiency->tile_rows;
    if (c.efficiency->launch_us > 0) e["launch_us"] = c.efficiency->launch_us;
    if (c.efficiency->launch_graph_us > 0) e["launch_graph_us"] = c.efficiency->launch_graph_us;
    if (c.efficiency->elementwise > 0) e["elementwise"] = c.efficiency->elementwise;
    if (c.efficiency->attention_decode > 0) e["attention_decode"] = c.efficiency->attention_decode;
    if (c.efficiency->attention_prefill > 0)
      e["attention_prefill"] = c.efficiency->attention_prefill;
    if (c.efficiency->collective_wait_us > 0)
      e["collective_wait_us"] = c.efficiency->collective_wait_us;
    nlohmann::json gemm = nlohmann::json::array();
    for (const auto& [m, f] : c.efficiency->gemm) gemm.push_back({m, f});
    if (!gemm.empty()) e["gemm"] = gemm;
    nlohmann::json sized = nlohmann::json::array();
    for (const auto& p : c.efficiency->gemm_by_size) sized.push_back({p.weight_bytes, p.tokens, p.fraction});
    if (!sized.empty()) e["gemm_by_size"] = sized;
    nlohmann::json elem = nlohmann::json::array();
    for (const auto& p : c.efficiency->elementwise_by_size) elem.push_back({p.weight_bytes, p.tokens, p.fraction});
    if (!elem.empty()) e["elementwise_by_size"] = elem;
    j["efficiency"] = e;
  }
  if (!c.collectives.empty()) {
    nlohmann::json cs = nlohmann::json::array();
    for (const auto& t : c.collectives) {
      nlohmann::json pts = nlohmann::json::array();
      for (const auto& p : t.points) pts.push_back({p.bytes, p.time_us});
      nlohmann::json item = {{"op", t.op}, {"scope", t.scope}, {"ranks", t.ranks}, {"source", t.source},
                             {"library", t.library}, {"points", pts}};
      if (t.in_place != CollectiveTable::Known::kUnknown) item["in_place"] = t.in_place == CollectiveTable::Known::kYes;
      if (t.cuda_graph != CollectiveTable::Known::kUnknown) item["cuda_graph"] = t.cuda_graph == CollectiveTable::Known::kYes;
      if (!t.conditions.empty()) item["conditions"] = t.conditions;
      cs.push_back(item);
    }
    j["collectives"] = cs;
  }
  return j;
}

}  // namespace tpp::hw
