#include "tools/profile_collectives.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/data_path.h"
#include "common/file.h"
#include "hardware_profiles/hardware.h"
#include "hardware_profiles/nccl_tests.h"
#include "simulator/collective.h"

namespace tpp::tools {
namespace {

int fail(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  return 2;
}

// "8", "64K", "1M", "1G", "4GB": bytes, the suffixes binary as nccl-tests' -b/-e read them.
bool parse_size(std::string s, std::int64_t& out) {
  if (s.empty()) return false;
  if (s.size() > 1 && (s.back() == 'B' || s.back() == 'b') && !std::isdigit(static_cast<unsigned char>(s[s.size() - 2])))
    s.pop_back();
  std::int64_t mult = 1;
  switch (std::toupper(static_cast<unsigned char>(s.back()))) {
    case 'K': mult = 1LL << 10; s.pop_back(); break;
    case 'M': mult = 1LL << 20; s.pop_back(); break;
    case 'G': mult = 1LL << 30; s.pop_back(); break;
    case 'T': mult = 1LL << 40; s.pop_back(); break;
    default: break;
  }
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](unsigned char ch) { return std::isdigit(ch); }) || s.size() > 15)
    return false;
  out = std::stoll(s) * mult;
  return out > 0 && out <= (1LL << 42);
}

int type_bytes(const std::string& t) {
  if (t == "float" || t == "float32" || t == "int32" || t == "uint32") return 4;
  if (t == "half" || t == "float16" || t == "bfloat16") return 2;
  if (t == "double" || t == "float64" || t == "int64" || t == "uint64") return 8;
  if (t == "int8" || t == "uint8" || t == "fp8" || t == "f8e4m3" || t == "f8e5m2") return 1;
  return 0;
}

std::string cluster_line(const hw::Cluster& c) {
  return fmt::format("{} ({} node{} x {} {}; {} {:.0f} GB/s a GPU{})", c.name, c.nodes, c.nodes > 1 ? "s" : "",
                     c.gpus_per_node, c.gpu.name, hw::link_kind_name(c.intra_node.kind),
                     c.intra_node.bandwidth_GBps.value,
                     c.inter_node ? fmt::format("; {} {} x {:.0f} Gb/s a node", c.inter_node->kind,
                                                c.inter_node->nics_per_node, c.inter_node->nic_bandwidth_Gbps.value)
                                  : std::string());
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
}

Expected<hw::Cluster> load(const std::string& name) {
  auto path = resolve_input(name, Catalog::kClusters);
  if (!path) return path.error();
  return hw::load_cluster(*path);
}

}  // namespace

int print_collective(const CollectiveArgs& a) {
  const auto op = sim::collective_from_name(a.collective);
  if (!op)
    return fail("tpp-profile: error: --collective '" + clip(a.collective) +
                "' is not one of all_reduce, all_gather, reduce_scatter, alltoall, sendrecv");
  auto cluster = load(a.cluster);
  if (!cluster) return fail(cluster.error().str());
  const std::int64_t total = cluster->total_gpus();
  if (a.ranks < 2 || a.ranks > total)
    return fail(fmt::format("tpp-profile: error: --ranks {} must be 2 to the cluster's {} GPUs ({})", a.ranks,
                            total, cluster->name));
  const int tb = type_bytes(a.dtype);
  if (tb == 0) return fail("tpp-profile: error: --dtype '" + clip(a.dtype) + "' is not a type nccl-tests knows");
  std::vector<std::int64_t> sizes;
  if (!a.bytes.empty()) {
    std::int64_t b = 0;
    if (!parse_size(a.bytes, b)) return fail("tpp-profile: error: --bytes '" + clip(a.bytes) + "' is not a size (8, 64K, 1M, 1G)");
    sizes.push_back(b);
  } else {
    const auto colon = a.sweep.find(':');
    std::int64_t lo = 0, hi = 0;
    if (colon == std::string::npos || !parse_size(a.sweep.substr(0, colon), lo) ||
        !parse_size(a.sweep.substr(colon + 1), hi) || hi < lo)
      return fail("tpp-profile: error: --sweep '" + clip(a.sweep) + "' must be MIN:MAX sizes, MIN <= MAX (8:1G)");
    for (std::int64_t b = lo; b <= hi; b *= 2) sizes.push_back(b);
  }
  if (a.vllm && *op != sim::Collective::kAllReduce)
    return fail("tpp-profile: error: --vllm is for all_reduce (vLLM's TP all-reduce), not " +
                std::string(sim::collective_name(*op)));
  const sim::CollectiveModel m(*cluster);
  sim::CollectiveConditions cond{a.cuda_graph, a.in_place, a.algorithm, 1};
  cond.gpus_per_thread = a.gpus_per_thread;
  nlohmann::json rows = nlohmann::json::array();
  const std::int64_t g = cluster->gpus_per_node;
  const std::int64_t nodes = (a.ranks + g - 1) / g;
  for (std::int64_t b : sizes) {
    std::optional<sim::CollectiveTime> own;
    if (a.vllm) own = m.engine_all_reduce(static_cast<double>(b), a.ranks, a.cuda_graph);
    const auto t = own ? *own
                 : a.model_only ? m.model(*op, static_cast<double>(b), a.ranks, cond)
                                : m.time(*op, static_cast<double>(b), a.ranks, cond);
    const double us = t.seconds * 1e6;
    const double algbw = static_cast<double>(b) / (t.seconds * 1e9);
    rows.push_back({{"bytes", b}, {"count", b / tb}, {"type", a.dtype}, {"time_us", us}, {"algbw_GBps", algbw},
                    {"busbw_GBps", algbw * sim::bus_factor(*op, a.ranks)}, {"how", t.how}});
  }
  if (a.format == "json") {
    nlohmann::json j = {{"cluster", cluster->name},
                        {"collective", sim::collective_name(*op)},
                        {"ranks", a.ranks},
                        {"nodes", nodes},
                        {"gpus_per_node", g},
                        {"cuda_graph", a.cuda_graph},
                        {"in_place", a.in_place},
                        {"sizes", rows}};
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("# tpp-profile: %s over %lld GPUs of %s, placed a node first (%lld node%s), %s, %s: predicted\n",
              sim::collective_name(*op), static_cast<long long>(a.ranks), cluster_line(*cluster).c_str(),
              static_cast<long long>(nodes), nodes > 1 ? "s" : "", a.in_place ? "in place" : "out of place",
              a.cuda_graph ? "CUDA graph" : "no CUDA graph");
  std::printf("#%11s  %12s  %8s  %10s  %8s  %8s  %s\n", "size", "count", "type", "time", "algbw", "busbw", "from");
  std::printf("#%11s  %12s  %8s  %10s  %8s  %8s\n", "(B)", "(elements)", "", "(us)", "(GB/s)", "(GB/s)");
  for (const auto& r : rows)
    std::printf("%12lld  %12lld  %8s  %10.2f  %8.2f  %8.2f  %s\n", r["bytes"].get<long long>(),
                r["count"].get<long long>(), a.dtype.c_str(), r["time_us"].get<double>(), r["algbw_GBps"].get<double>(),
                r["busbw_GBps"].get<double>(), r["how"].get<std::string>().c_str());
  return 0;
}

int import_nccl_tests(const std::vector<std::string>& files, const std::string& cluster_name,
                      const std::string& output, const std::string& op) {
  auto path = resolve_input(cluster_name, Catalog::kClusters);
  if (!path) return fail(path.error().str());
  auto cluster = hw::load_cluster(*path);
  if (!cluster) return fail(cluster.error().str());
  auto text = read_text_file(*path, "cluster");
  if (!text) return fail(text.error().str());
  std::vector<hw::CollectiveTable> tables;
  for (const auto& f : files) {
    auto run = hw::read_nccl_tests(f, op);
    if (!run) return fail(run.error().str());
    if (run->ranks > cluster->total_gpus())
      return fail(make_error(f, 0, 0, fmt::format("a run over {} GPUs, more than {}'s {}", run->ranks, cluster->name,
                                                  cluster->total_gpus())).str());
    if (run->nodes > 1 && (run->ranks + run->nodes - 1) / run->nodes > cluster->gpus_per_node)
      return fail(make_error(f, 0, 0, fmt::format("{} GPUs a node in the run, {} in {}", run->ranks / run->nodes,
                                                  cluster->gpus_per_node, cluster->name)).str());
    for (auto& t : hw::nccl_tests_tables(*run, cluster->gpus_per_node)) {
      auto same = [&](const hw::CollectiveTable& o) {
        return o.op == t.op && o.scope == t.scope && o.ranks == t.ranks && o.library == t.library &&
               o.in_place == t.in_place && o.cuda_graph == t.cuda_graph;
      };
      if (std::any_of(cluster->collectives.begin(), cluster->collectives.end(), same) ||
          std::any_of(tables.begin(), tables.end(), same))
        return fail(make_error(f, 0, 0, fmt::format("{} already has a {} table of {} ranks ({}, {}, {}); remove it or "
                                                    "import into a copy without it", *path, t.op, t.ranks, t.scope,
                                                    t.in_place == hw::CollectiveTable::Known::kYes ? "in place" : "out of place",
                                                    t.cuda_graph == hw::CollectiveTable::Known::kYes ? "CUDA graph" : "no CUDA graph")).str());
      tables.push_back(std::move(t));
    }
  }
  // The cluster's own text, its comments kept: the tables go at the end of its `collectives:`
  // list, or into a new one at the end of the file.
  std::vector<std::string> lines;
  {
    std::istringstream in(*text);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  const std::regex key(R"(^collectives:\s*(\[\s*\])?\s*(#.*)?$)");
  std::size_t at = lines.size(), insert = lines.size();
  std::string indent = "  ";
  for (std::size_t k = 0; k < lines.size(); ++k)
    if (std::regex_match(lines[k], key)) {
      at = k;
      break;
    }
  if (at < lines.size()) {
    lines[at] = "collectives:";
    bool found_item = false;
    insert = at + 1;
    for (std::size_t k = at + 1; k < lines.size(); ++k) {
      const std::string& l = lines[k];
      const auto first = l.find_first_not_of(' ');
      if (first == std::string::npos || l[first] == '#') continue;
      if (first == 0 && l[0] != '-') break;  // the next top-level key
      if (!found_item && l[first] == '-') indent = l.substr(0, first), found_item = true;
      insert = k + 1;
    }
  } else {
    lines.push_back("collectives:");
    insert = lines.size();
  }
  std::string added = fmt::format("{}# imported by tpp-profile --import-nccl-tests\n", indent);
  for (const auto& t : tables) added += hw::collective_table_yaml(t, indent);
  if (!added.empty() && added.back() == '\n') added.pop_back();
  lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(insert), added);
  std::string out_text;
  for (const auto& l : lines) out_text += l + "\n";
  {
    std::ofstream out(output);
    out << out_text;
    if (!out) return fail("tpp-profile: error: cannot write " + output);
  }
  auto check = hw::load_cluster(output);
  if (!check) {
    std::remove(output.c_str());
    return fail("tpp-profile: error: the cluster with the imported tables does not read back: " + check.error().str());
  }
  for (const auto& t : tables)
    std::printf("%s: %s, %lld ranks (%s), %s, %s: %zu sizes, %lld B to %lld B\n", t.source.c_str(), t.op.c_str(),
                static_cast<long long>(t.ranks), t.scope.c_str(),
                t.in_place == hw::CollectiveTable::Known::kYes ? "in place" : "out of place",
                t.cuda_graph == hw::CollectiveTable::Known::kYes ? "CUDA graph" : "no CUDA graph", t.points.size(),
                static_cast<long long>(t.points.front().bytes), static_cast<long long>(t.points.back().bytes));
  std::printf("wrote %s (%s with %zu imported table%s)\n", output.c_str(), path->c_str(), tables.size(),
              tables.size() == 1 ? "" : "s");
  return 0;
}

int check_nccl_tests(const std::vector<std::string>& files, const std::string& cluster_name,
                     const std::string& op, const std::string& format, const std::string& algorithm) {
  auto cluster = load(cluster_name);
  if (!cluster) return fail(cluster.error().str());
  const sim::CollectiveModel m(*cluster);
  nlohmann::json all = nlohmann::json::array();
  std::vector<double> every;
  for (const auto& f : files) {
    auto run = hw::read_nccl_tests(f, op);
    if (!run) return fail(run.error().str());
    const auto c = sim::collective_from_name(run->op);
    if (run->ranks > cluster->total_gpus())
      return fail(make_error(f, 0, 0, fmt::format("a run over {} GPUs, more than {}'s {}", run->ranks, cluster->name,
                                                  cluster->total_gpus())).str());
    // The out-of-place columns, or the in-place ones where only those were published.
    const bool in_place = std::none_of(run->rows.begin(), run->rows.end(),
                                       [](const hw::NcclTestsRow& r) { return r.out_of_place_us > 0; });
    sim::CollectiveConditions cond{run->graph, in_place, algorithm, 1};
    cond.gpus_per_thread = static_cast<int>(run->gpus_per_thread);
    nlohmann::json rows = nlohmann::json::array();
    std::vector<double> errs;
    for (const auto& r : run->rows) {
      const double measured = in_place ? r.in_place_us : r.out_of_place_us;
      if (measured <= 0) continue;
      const auto t = m.model(*c, static_cast<double>(r.bytes), run->ranks, cond);
      const double pred = t.seconds * 1e6, err = 100 * (pred - measured) / measured;
      const bool counted = r.bytes >= 1024 && r.bytes <= (1LL << 30);
      if (counted) errs.push_back(std::fabs(err));
      rows.push_back({{"bytes", r.bytes}, {"measured_us", measured}, {"predicted_us", pred},
                      {"error_pct", err}, {"counted", counted}, {"how", t.how}});
    }
    const double median = median_of(errs);
    every.insert(every.end(), errs.begin(), errs.end());
    all.push_back({{"file", f}, {"collective", run->op}, {"ranks", run->ranks}, {"nodes", run->nodes},
                   {"cuda_graph", run->graph}, {"in_place", in_place}, {"median_abs_error_pct", median}, {"sizes", rows}});
    if (format == "json") continue;
    std::printf("# %s: %s over %lld ranks%s, %s, %s; tpp's model on %s\n", f.c_str(), run->program.c_str(),
                static_cast<long long>(run->ranks),
                run->nodes > 0 ? fmt::format(" on {} node{}", run->nodes, run->nodes > 1 ? "s" : "").c_str() : "",
                run->graph ? "CUDA graph" : "no CUDA graph", in_place ? "in place" : "out of place",
                cluster_line(*cluster).c_str());
    std::printf("#%11s  %10s  %10s  %8s  %s\n", "size", "measured", "predicted", "error", "model");
    std::printf("#%11s  %10s  %10s  %8s\n", "(B)", "(us)", "(us)", "(%)");
    for (const auto& r : rows)
      std::printf("%12lld  %10.2f  %10.2f  %+7.1f%s  %s\n", r["bytes"].get<long long>(), r["measured_us"].get<double>(),
                  r["predicted_us"].get<double>(), r["error_pct"].get<double>(), r["counted"].get<bool>() ? " " : "*",
                  r["how"].get<std::string>().c_str());
    std::printf("median |error| over 1 KB-1 GB: %.1f%% (%zu sizes; * outside that range, not counted)\n\n", median,
                errs.size());
  }
  const double median = median_of(every);
  if (format == "json") {
    std::printf("%s\n", nlohmann::json({{"cluster", cluster->name}, {"runs", all}, {"median_abs_error_pct", median}})
                            .dump(2)
                            .c_str());
  } else if (files.size() > 1) {
    std::printf("all %zu files: median |error| %.1f%% over %zu sizes of 1 KB-1 GB\n", files.size(), median, every.size());
  }
  return 0;
}

}  // namespace tpp::tools
