// tpp-profile: measures this machine into a cluster profile the simulator reads, so that a plan
// made against it (tpp-plan --cluster local-cpu.yaml) predicts what tpp-run measures here.
//
//   tpp-profile -o local-cpu.yaml [--model tiny-llama] [--ranks 2] [--memory-gib 2]
//
// One rank's GEMM throughput by token count (on the model's own layer shapes when --model is
// given), copy bandwidth, the bandwidth of a weight-bound GEMM, the cost of one operator call;
// then, under mpirun with --ranks ranks, MPI all-reduce and send/recv by message size (printed
// in nccl-tests' columns) and the memory MPI holds. Exit 0, or 2 with one line.
//
//   tpp-profile --backend cuda -o local-gpu.yaml [--gpu H200-SXM-141GB] [--model llama-3.1-8b]
//               [--json measured.json]
//
// The GPU instead (executor/cuda_profile.cu): cuBLAS GEMMs (bf16; fp8 e4m3 on sm_89+), HBM
// bandwidth, launch costs (eager and in a CUDA graph), the element-wise and paged-attention
// kernels by the bytes they move, and NCCL collectives when several GPUs are visible; written
// as fractions of the datasheet figures of the catalog GPU (--gpu, else picked by the device's
// name).
//
//   tpp-profile --cluster C --collective all_reduce --ranks N [--bytes B | --sweep 8:1G] [--format json]
//   tpp-profile --cluster C --import-nccl-tests FILE... -o C2.yaml
//   tpp-profile --cluster C --check-nccl-tests FILE... [--algo ring]
//
// Collectives without measuring (tools/profile_collectives.cc, docs/collectives.md): the time tpp
// gives a collective, nccl-tests output read into a cluster's tables, or laid beside the model.
#include <CLI/CLI.hpp>
#include <unistd.h>
#include <chrono>
#include <fcntl.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "common/data_path.h"
#include "common/host.h"
#include <algorithm>
#include <array>
#include <optional>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "executor/backend.h"
#include "executor/cuda_profile.h"
#include "executor/mpi_comm.h"
#include "hardware_profiles/hardware.h"
#include "kernels/device.h"
#include "executor/profile.h"
#include "model/load.h"
#include "model/tensors.h"
#include "tools/profile_collectives.h"

namespace {

std::int64_t rss_bytes() { return tpp::process_status_bytes("VmRSS:"); }

std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "tpp-profile";
}

// The collective half, run as `mpirun -np N tpp-profile --collectives-to FILE`: rank 0 writes
// the tables and the memory MPI took as JSON lines.
int collectives(int argc, char** argv, const std::string& out,
                const std::optional<tpp::model::Model>& model) {
  const std::int64_t before = rss_bytes();
  int rank = 0, size = 1;
  tpp::exec::mpi_world(&argc, &argv, &rank, &size);
  tpp::sim::ParallelConfig all;
  all.tp = size;
  auto comm = tpp::exec::make_mpi_comm(&argc, &argv, all);
  if (!comm) {
    if (rank == 0) std::fprintf(stderr, "tpp-profile: error: %s\n", comm.error().message.c_str());
    tpp::exec::mpi_finalize();
    return 2;
  }
  float one = 1;
  (*comm)->all_reduce_sum(&one, 1, tpp::exec::Group::kTp);
  const std::int64_t after = rss_bytes();
  tpp::exec::Profile p;
  if (auto e = tpp::exec::profile_collectives(**comm, p)) {
    std::fprintf(stderr, "tpp-profile: error: rank %d: %s\n", rank, e->message.c_str());
    (*comm)->abort(2);
  }
  if (model)
    if (auto e = tpp::exec::profile_collective_wait(**comm, *model, p)) {
      std::fprintf(stderr, "tpp-profile: error: rank %d: %s\n", rank, e->message.c_str());
      (*comm)->abort(2);
    }
  if (rank == 0) {
    std::ofstream f(out);
    f << (after - before) << " " << p.collective_wait_us << "\n";
    for (const auto* t : {&p.all_reduce, &p.send_recv}) {
      f << t->size() << "\n";
      for (const auto& c : *t)
        f << c.bytes << " " << c.time_us << " " << c.algbw_GBps << " " << c.busbw_GBps << "\n";
    }
  }
  comm->reset();
  tpp::exec::mpi_finalize();
  return 0;
}

// A cold read of a 256 MiB file beside the profile: written, synced, dropped from the page
// cache (posix_fadvise DONTNEED; a tmpfs keeps it, and then this is memory speed), read back.
double storage_read_GBps(const std::string& near) {
  const std::string path = near + ".storage.tmp";
  const std::size_t chunk = std::size_t{8} << 20, total = std::size_t{256} << 20;
  std::vector<char> buf(chunk, 'x');
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0600);
  if (fd < 0) return 0;
  bool ok = true;
  for (std::size_t at = 0; at < total && ok; at += chunk)
    ok = ::write(fd, buf.data(), chunk) == static_cast<ssize_t>(chunk);
  ok = ok && ::fsync(fd) == 0;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  double seconds = 0;
  if (ok && (fd = ::open(path.c_str(), O_RDONLY)) >= 0) {
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t got = 0;
    for (ssize_t n; (n = ::read(fd, buf.data(), chunk)) > 0;) got += static_cast<std::size_t>(n);
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ::close(fd);
    ok = got == total;
  }
  std::remove(path.c_str());
  return ok && seconds > 0 ? static_cast<double>(total) / seconds / 1e9 : 0;
}


// ---- --backend cuda -------------------------------------------------------------------------

int cuda_fail(const std::string& why) {
  std::fprintf(stderr, "tpp-profile: error: --backend cuda: %s\n", why.c_str());
  return 2;
}

// The catalog GPU a device name stands for ("NVIDIA H100 80GB HBM3" -> H100-SXM5-80GB); empty
// when it is not recognised.
std::string catalog_gpu(const std::string& device) {
  auto has = [&](const char* s) { return device.find(s) != std::string::npos; };
  if (has("H200")) return "H200-SXM-141GB";
  if (has("H100")) return has("PCIe") ? "H100-PCIe-80GB" : "H100-SXM5-80GB";
  if (has("H800")) return "H800-SXM5-80GB";
  if (has("H20")) return "H20-96GB";
  if (has("A100")) {
    if (has("PCIe")) return "A100-PCIe-80GB";
    return has("40GB") ? "A100-SXM4-40GB" : "A100-SXM4-80GB";
  }
  if (has("L40S")) return "L40S";
  if (has("L4")) return "L4";
  if (has("A10")) return "A10";
  if (has("4090")) return "RTX-4090";
  return "";
}

// A source string as it may stand inside double quotes in the YAML.
std::string quoted(std::string s) {
  std::replace(s.begin(), s.end(), '"', '\'');
  std::replace(s.begin(), s.end(), '\\', '/');
  return s;
}

double round_up(double x, double to) { return std::ceil(x / to) * to; }
constexpr double kTileRows = 16;  // the step model rounds a GEMM's rows up to this (tile_rows)

// The measurement as JSON (--json), and back (--from-json): the raw figures, then the figures
// against the datasheet the profile was written with.
nlohmann::json raw_json(const tpp::exec::CudaProfile& p) {
  auto gemms = [](const std::vector<tpp::exec::CudaGemmTiming>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& g : v) a.push_back({{"m", g.m}, {"n", g.n}, {"k", g.k}, {"seconds", g.seconds}});
    return a;
  };
  auto coll = [](const std::vector<tpp::exec::CollectivePoint>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& c : v)
      a.push_back({{"size", c.bytes}, {"count", c.bytes / 4}, {"type", "float"},
                   {"time_us", c.time_us}, {"algbw_GBps", c.algbw_GBps}, {"busbw_GBps", c.busbw_GBps}});
    return a;
  };
  nlohmann::json att = nlohmann::json::array();
  for (const auto& a : p.attention)
    att.push_back({{"seqs", a.seqs}, {"context", a.context}, {"kv_bytes", a.kv_bytes},
                   {"seconds", a.seconds}});
  return {{"device_name", p.device_name}, {"sm_count", p.sm_count},
          {"compute_capability", p.compute_capability}, {"devices", p.devices},
          {"memory_total_GiB", p.memory_total_GiB}, {"driver_version", p.driver_version},
          {"runtime_version", p.runtime_version}, {"gemm_shapes", p.gemm_shapes},
          {"gemm_bf16", gemms(p.gemm_bf16)}, {"gemm_fp8", gemms(p.gemm_fp8)},
          {"fp8_note", p.fp8_note}, {"copy_GBps", p.copy_GBps}, {"read_GBps", p.read_GBps},
          {"gemm_memory_GBps", p.gemm_memory_GBps}, {"launch_us", p.launch_us},
          {"launch_graph_us", p.launch_graph_us},
          {"rmsnorm", {{"rows", p.rmsnorm_rows}, {"cols", p.rmsnorm_cols}, {"GBps", p.rmsnorm_GBps}}},
          {"silu_mul", {{"rows", p.silu_rows}, {"inter", p.silu_inter}, {"GBps", p.silu_mul_GBps}}},
          {"attention_heads", {p.attention_q_heads, p.attention_kv_heads, p.attention_dim}},
          {"attention", att}, {"collective_ranks", p.collective_ranks},
          {"collectives_note", p.collectives_note}, {"nccl_version", p.nccl_version},
          {"all_reduce", coll(p.all_reduce)}, {"send_recv", coll(p.send_recv)}};
}

tpp::exec::CudaProfile from_raw_json(const nlohmann::json& j) {
  tpp::exec::CudaProfile p;
  p.device_name = j.at("device_name").get<std::string>();
  p.sm_count = j.at("sm_count").get<int>();
  p.compute_capability = j.at("compute_capability").get<double>();
  p.devices = j.at("devices").get<int>();
  p.memory_total_GiB = j.at("memory_total_GiB").get<double>();
  p.driver_version = j.at("driver_version").get<int>();
  p.runtime_version = j.at("runtime_version").get<int>();
  p.gemm_shapes = j.at("gemm_shapes").get<std::string>();
  for (auto [key, v] : {std::pair{"gemm_bf16", &p.gemm_bf16}, std::pair{"gemm_fp8", &p.gemm_fp8}})
    for (const auto& g : j.at(key))
      v->push_back({g.at("m").get<std::int64_t>(), g.at("n").get<std::int64_t>(),
                    g.at("k").get<std::int64_t>(), g.at("seconds").get<double>()});
  p.fp8_note = j.at("fp8_note").get<std::string>();
  p.copy_GBps = j.at("copy_GBps").get<double>();
  p.read_GBps = j.at("read_GBps").get<double>();
  p.gemm_memory_GBps = j.at("gemm_memory_GBps").get<double>();
  p.launch_us = j.at("launch_us").get<double>();
  p.launch_graph_us = j.at("launch_graph_us").get<double>();
  p.rmsnorm_rows = j.at("rmsnorm").at("rows").get<std::int64_t>();
  p.rmsnorm_cols = j.at("rmsnorm").at("cols").get<std::int64_t>();
  p.rmsnorm_GBps = j.at("rmsnorm").at("GBps").get<double>();
  p.silu_rows = j.at("silu_mul").at("rows").get<std::int64_t>();
  p.silu_inter = j.at("silu_mul").at("inter").get<std::int64_t>();
  p.silu_mul_GBps = j.at("silu_mul").at("GBps").get<double>();
  const auto& h = j.at("attention_heads");
  p.attention_q_heads = h.at(0).get<std::int64_t>();
  p.attention_kv_heads = h.at(1).get<std::int64_t>();
  p.attention_dim = h.at(2).get<std::int64_t>();
  for (const auto& a : j.at("attention"))
    p.attention.push_back({a.at("seqs").get<std::int64_t>(), a.at("context").get<std::int64_t>(),
                           a.at("kv_bytes").get<double>(), a.at("seconds").get<double>()});
  p.collective_ranks = j.at("collective_ranks").get<int>();
  p.collectives_note = j.at("collectives_note").get<std::string>();
  p.nccl_version = j.at("nccl_version").get<std::string>();
  for (auto [key, v] : {std::pair{"all_reduce", &p.all_reduce}, std::pair{"send_recv", &p.send_recv}})
    for (const auto& c : j.at(key))
      v->push_back({c.at("size").get<std::int64_t>(), c.at("time_us").get<double>(),
                    c.at("algbw_GBps").get<double>(), c.at("busbw_GBps").get<double>()});
  return p;
}

// The figures the profile and the summary derive from a measurement and a datasheet.
struct Derived {
  std::vector<std::pair<double, double>> gemm;      // (rows, fraction of the bf16 peak)
  std::vector<std::array<double, 3>> gemm_by_size;  // (bf16 weight bytes, rows, fraction)
  std::vector<std::pair<double, double>> gemm_fp8;  // (rows, fraction of the fp8 peak)
  double memory = 0, gemm_memory = 0, elementwise = 0, attention_decode = 0;
  double rmsnorm = 0, silu_mul = 0, read = 0;       // of the datasheet HBM bandwidth
  double attention_hbm = 0;                         // 64 x 2048 decode, of the datasheet HBM
};

Derived derive(const tpp::exec::CudaProfile& p, const tpp::hw::Gpu& g) {
  Derived d;
  const double hbm = g.hbm_bandwidth_GBps.value, bf16 = g.bf16_dense_tflops.value * 1e12,
               fp8 = g.fp8_dense_tflops.value * 1e12;
  auto by_rows = [](const std::vector<tpp::exec::CudaGemmTiming>& v, double peak) {
    std::map<std::int64_t, std::pair<double, double>> sum;  // rows -> (flops, seconds)
    for (const auto& t : v) {
      sum[t.m].first += 2 * round_up(static_cast<double>(t.m), kTileRows) * static_cast<double>(t.n * t.k);
      sum[t.m].second += t.seconds;
    }
    std::vector<std::pair<double, double>> out;
    for (const auto& [m, fs] : sum)
      out.emplace_back(static_cast<double>(m), std::clamp(fs.first / fs.second / peak, 1e-4, 1.0));
    return out;
  };
  d.gemm = by_rows(p.gemm_bf16, bf16);
  if (fp8 > 0) d.gemm_fp8 = by_rows(p.gemm_fp8, fp8);
  std::map<std::pair<std::int64_t, std::int64_t>, std::vector<double>> sized;
  std::map<std::pair<std::int64_t, std::int64_t>, int> shapes;
  for (const auto& t : p.gemm_bf16) {
    shapes[{t.n, t.k}] = 1;
    sized[{t.n * t.k * 2, t.m}].push_back(std::clamp(
        2 * round_up(static_cast<double>(t.m), kTileRows) * static_cast<double>(t.n * t.k) /
            t.seconds / bf16, 1e-4, 1.0));
  }
  if (shapes.size() > 1)
    for (auto& [key, f] : sized) {
      std::sort(f.begin(), f.end());
      d.gemm_by_size.push_back({static_cast<double>(key.first), static_cast<double>(key.second), f[f.size() / 2]});
    }
  d.memory = std::clamp(p.copy_GBps / hbm, 0.01, 1.0);
  d.gemm_memory = std::clamp(p.gemm_memory_GBps / hbm, 0.01, 1.0);
  d.read = p.read_GBps / hbm;
  d.rmsnorm = p.rmsnorm_GBps / hbm;
  d.silu_mul = p.silu_mul_GBps / hbm;
  // The step model counts element-wise bytes at the model's activation width (bf16: 2 bytes);
  // the executor's kernels move float32 activations (kernels/cuda_ops.h): twice as many.
  d.elementwise = std::clamp(0.5 * (d.rmsnorm + d.silu_mul) / 2, 1e-6, 100.0);
  // Decode attention: the step model's roof is the KV bytes at the copy bandwidth (hbm x
  // memory); the multiplier is the kernel's rate over it, the median over the batches of at
  // least 32 MiB of KV (below, a kernel's fixed cost, which the model counts apart, dominates).
  std::vector<double> r;
  for (const auto& a : p.attention) {
    if (a.kv_bytes >= 32.0 * 1048576) r.push_back(a.GBps() / p.copy_GBps);
    if (a.seqs == 64 && a.context == 2048) d.attention_hbm = a.GBps() / hbm;
  }
  std::sort(r.begin(), r.end());
  d.attention_decode = r.empty() ? 0 : std::clamp(r[r.size() / 2], 1e-6, 100.0);
  return d;
}

std::string cuda_yaml(const tpp::exec::CudaProfile& p, const Derived& d, const tpp::hw::Gpu& g,
                      const std::string& name, const std::string& host, const std::string& date) {
  const std::string where =
      quoted(fmt::format("tpp-profile --backend cuda on {} ({}, sm_{:.0f}, CUDA driver {}.{}, "
                         "runtime {}.{}), {}",
                         host, p.device_name, p.compute_capability * 10, p.driver_version / 1000,
                         p.driver_version % 1000 / 10, p.runtime_version / 1000,
                         p.runtime_version % 1000 / 10, date));
  std::string y = fmt::format(
      "# {} measured by tpp-profile --backend cuda: the catalog's datasheet figures for {}, the\n"
      "# efficiencies this device reached against them (docs/gpu.md).\n"
      "name: {}\nnodes: 1\ngpus_per_node: {}\ngpu:\n  name: {}\n",
      p.device_name, g.name, name, std::max(1, p.devices), g.name);
  auto fig = [&](const char* key, const tpp::hw::Figure& f) {
    y += fmt::format("  {}: {{value: {:.6g}, source: \"{}\"}}\n", key, f.value, quoted(f.source));
  };
  fig("memory_marketed_GB", g.memory_marketed_GB);
  y += fmt::format("  memory_driver_GiB: {{value: {:.4f}, source: \"{}: cudaMemGetInfo total\"}}\n",
                   p.memory_total_GiB, where);
  fig("hbm_bandwidth_GBps", g.hbm_bandwidth_GBps);
  fig("bf16_dense_tflops", g.bf16_dense_tflops);
  fig("fp16_dense_tflops", g.fp16_dense_tflops);
  fig("fp8_dense_tflops", g.fp8_dense_tflops);
  fig("int8_dense_tops", g.int8_dense_tops);
  y += fmt::format("  has_fp8: {{value: {}, source: \"{}\"}}\n", g.has_fp8 ? "true" : "false",
                   quoted(g.has_fp8_source));
  fig("nvlink_unidir_GBps", g.nvlink_unidir_GBps);
  fig("pcie_unidir_GBps", g.pcie_unidir_GBps);
  fig("tdp_W", g.tdp_W);
  y += fmt::format("  sm_count: {{value: {}, source: \"{}: cudaDeviceProp.multiProcessorCount\"}}\n",
                   p.sm_count, where);
  y += fmt::format("  compute_capability: {{value: {:.1f}, source: \"{}: cudaDeviceProp major.minor\"}}\n",
                   p.compute_capability, where);
  if (g.runtime_memory)
    y += fmt::format("  runtime_memory: {{non_torch_GiB: {:.4f}, non_torch_tp_GiB: {:.4f}, "
                     "cuda_graph_GiB: {:.4f}, source: \"{}\"}}\n",
                     g.runtime_memory->non_torch_GiB, g.runtime_memory->non_torch_tp_GiB,
                     g.runtime_memory->cuda_graph_GiB, quoted(g.runtime_memory->source));
  const bool coll = p.collective_ranks >= 2 && !p.send_recv.empty();
  if (coll)
    y += fmt::format("intra_node: {{kind: {}, latency_us: {{value: {:.4g}, source: \"{}: NCCL "
                     "send/recv of 1 KiB between devices 0 and 1, one way\"}}}}\n",
                     g.nvlink_unidir_GBps.value > 0 ? "nvswitch" : "pcie",
                     p.send_recv.front().time_us, where);
  else
    y += fmt::format("intra_node: {{kind: {}, latency_us: {{value: 1, source: \"not measured: {} "
                     "(unused by a plan on one GPU)\"}}}}\n",
                     g.nvlink_unidir_GBps.value > 0 ? "nvswitch" : "pcie", quoted(p.collectives_note));
  y += fmt::format("efficiency:\n  source: \"{}; GEMMs: cuBLAS bf16 {}, median of 21 (CUDA events)\"\n",
                   where, quoted(p.gemm_shapes));
  y += fmt::format("  memory: {:.4f}  # a 1 GiB device copy: {:.0f} GB/s (read + write) of {:.0f}\n",
                   d.memory, p.copy_GBps, g.hbm_bandwidth_GBps.value);
  y += fmt::format("  gemm_memory: {:.4f}  # bf16 weight-bound GEMMs (m <= 16): {:.0f} GB/s\n",
                   d.gemm_memory, p.gemm_memory_GBps);
  y += fmt::format("  tile_rows: {:.0f}\n  launch_us: {:.4f}\n  launch_graph_us: {:.4f}\n", kTileRows,
                   p.launch_us, p.launch_graph_us);
  y += fmt::format("  elementwise: {:.4f}  # add_rmsnorm {:.0f} GB/s, silu_mul {:.0f} GB/s, float32: "
                   "half the rate at the step model's bf16 bytes\n",
                   d.elementwise, p.rmsnorm_GBps, p.silu_mul_GBps);
  if (d.attention_decode > 0)
    y += fmt::format("  attention_decode: {:.4f}  # paged decode attention over a bf16 KV pool, of "
                     "the copy bandwidth\n", d.attention_decode);
  y += fmt::format("  gemm: [");
  for (std::size_t k = 0; k < d.gemm.size(); ++k)
    y += fmt::format("{}[{}, {:.4f}]", k ? ", " : "", d.gemm[k].first, d.gemm[k].second);
  y += fmt::format("]  # of {:g} TFLOP/s bf16\n", g.bf16_dense_tflops.value);
  if (!d.gemm_by_size.empty()) {
    y += "  # by weight matrix (bf16 bytes) and rows: [bytes, tokens, fraction]\n  gemm_by_size: [";
    for (std::size_t k = 0; k < d.gemm_by_size.size(); ++k)
      y += fmt::format("{}[{}, {}, {:.4f}]", k ? ", " : "", d.gemm_by_size[k][0],
                       d.gemm_by_size[k][1], d.gemm_by_size[k][2]);
    y += "]\n";
  }
  if (!d.gemm_fp8.empty()) {
    y += "  # fp8 e4m3 GEMMs (cuBLASLt), of the fp8 peak; not read by the step model, which\n"
         "  # applies the bf16 fractions to the fp8 peak: [tokens, fraction]\n  # gemm_fp8: [";
    for (std::size_t k = 0; k < d.gemm_fp8.size(); ++k)
      y += fmt::format("{}[{}, {:.4f}]", k ? ", " : "", d.gemm_fp8[k].first, d.gemm_fp8[k].second);
    y += "]\n";
  }
  if (coll) {
    y += "collectives:\n";
    auto table = [&](const char* op, const std::vector<tpp::exec::CollectivePoint>& pts, int ranks) {
      y += fmt::format("  - op: {}\n    scope: intra_node\n    ranks: {}\n    source: \"{}: NCCL "
                       "{} in one process (ncclCommInitAll), float, median of 5\"\n    points: [",
                       op, ranks, where, p.nccl_version);
      for (std::size_t k = 0; k < pts.size(); ++k)
        y += fmt::format("{}[{}, {:.4f}]", k ? ", " : "", pts[k].bytes, pts[k].time_us);
      y += "]\n";
    };
    table("all_reduce", p.all_reduce, p.collective_ranks);
    table("send_recv", p.send_recv, 2);
  }
  return y;
}

void print_cuda(const tpp::exec::CudaProfile& p, const Derived& d, const tpp::hw::Gpu& g) {
  std::printf("# %s (%s): %d SMs, sm_%.0f, %.2f GiB, %d visible\n", p.device_name.c_str(),
              g.name.c_str(), p.sm_count, p.compute_capability * 10, p.memory_total_GiB, p.devices);
  std::printf("launch: %.3f us a kernel eager, %.3f us from a CUDA graph\n", p.launch_us,
              p.launch_graph_us);
  const double hbm = g.hbm_bandwidth_GBps.value;
  std::printf("HBM (datasheet %.0f GB/s): copy %.0f GB/s (%.1f%%), read kernel %.0f GB/s (%.1f%%), "
              "weight-bound GEMM %.0f GB/s (%.1f%%)\n",
              hbm, p.copy_GBps, 100 * p.copy_GBps / hbm, p.read_GBps, 100 * d.read,
              p.gemm_memory_GBps, 100 * p.gemm_memory_GBps / hbm);
  std::printf("add_rmsnorm [%lld x %lld] %.0f GB/s (%.1f%%); silu_mul [%lld x %lld] %.0f GB/s (%.1f%%)\n",
              static_cast<long long>(p.rmsnorm_rows), static_cast<long long>(p.rmsnorm_cols),
              p.rmsnorm_GBps, 100 * d.rmsnorm, static_cast<long long>(p.silu_rows),
              static_cast<long long>(p.silu_inter), p.silu_mul_GBps, 100 * d.silu_mul);
  std::printf("# paged decode attention, %lld query / %lld KV heads of %lld, bf16 KV\n%8s%10s%14s%12s%10s%10s\n",
              static_cast<long long>(p.attention_q_heads), static_cast<long long>(p.attention_kv_heads),
              static_cast<long long>(p.attention_dim), "seqs", "context", "KV bytes", "time(us)",
              "GB/s", "of HBM");
  for (const auto& a : p.attention)
    std::printf("%8lld%10lld%14.0f%12.2f%10.0f%10.3f\n", static_cast<long long>(a.seqs),
                static_cast<long long>(a.context), a.kv_bytes, a.seconds * 1e6, a.GBps(),
                a.GBps() / hbm);
  auto gemm_table = [&](const char* kind, const std::vector<tpp::exec::CudaGemmTiming>& v, double peak) {
    std::printf("# GEMM %s (%s), of %.0f TFLOP/s\n%8s%8s%8s%12s%10s%10s\n", kind, p.gemm_shapes.c_str(),
                peak, "m", "n", "k", "time(us)", "TFLOP/s", "of peak");
    for (const auto& t : v) {
      const double tf = 2.0 * static_cast<double>(t.m * t.n * t.k) / t.seconds / 1e12;
      std::printf("%8lld%8lld%8lld%12.2f%10.1f%10.3f\n", static_cast<long long>(t.m),
                  static_cast<long long>(t.n), static_cast<long long>(t.k), t.seconds * 1e6, tf,
                  tf / peak);
    }
  };
  gemm_table("bf16", p.gemm_bf16, g.bf16_dense_tflops.value);
  if (!p.gemm_fp8.empty()) gemm_table("fp8 e4m3", p.gemm_fp8, g.fp8_dense_tflops.value);
  if (!p.fp8_note.empty()) std::printf("fp8: %s\n", p.fp8_note.c_str());
  if (p.collective_ranks >= 2) {
    std::printf("%s", tpp::exec::collective_table(p.all_reduce, "all_reduce", p.collective_ranks).c_str());
    std::printf("%s", tpp::exec::collective_table(p.send_recv, "sendrecv", 2).c_str());
  } else {
    std::printf("collectives: %s\n", p.collectives_note.c_str());
  }
}

int run_cuda(const std::string& output, std::string name, bool named, const std::string& gpu_arg,
             int device, const std::string& json_out, const std::string& from_json,
             const std::optional<tpp::model::Model>& model) {
  tpp::exec::CudaProfile p;
  std::string device_name;
  if (from_json.empty()) {
    if (!tpp::kernels::built_with_cuda())
      return cuda_fail("built without CUDA (no nvcc found at configure time): rebuild on a "
                       "machine with the CUDA toolkit");
    if (tpp::kernels::device_count() == 0)
      return cuda_fail("no CUDA device visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES "
                       "hides them)");
    auto dn = tpp::exec::cuda_device_name(device);
    if (!dn) return cuda_fail(dn.error().message);
    device_name = *dn;
  }
  if (output.empty()) return cuda_fail("-o FILE is required (the profile to write)");
  std::string host = "this host";
  if (!from_json.empty()) {
    std::ifstream f(from_json);
    nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
    if (!f || j.is_discarded()) return cuda_fail("cannot read " + from_json + " as JSON");
    try {
      p = from_raw_json(j.contains("raw") ? j.at("raw") : j);
      host = j.value("host", host);
    } catch (const nlohmann::json::exception& e) {
      return cuda_fail(from_json + ": not an earlier --json (" + e.what() + ")");
    }
    device_name = p.device_name;
  }
  std::string gpu_name = gpu_arg;
  if (gpu_name.empty()) {
    gpu_name = catalog_gpu(device_name);
    if (gpu_name.empty())
      return cuda_fail("no catalog GPU is known for '" + device_name +
                       "': pass --gpu NAME (hardware_profiles/gpus) or a GPU YAML file");
  }
  auto gpu = tpp::hw::load_gpu(gpu_name);
  if (!gpu) return cuda_fail(gpu.error().str());
  if (from_json.empty()) {
    tpp::exec::CudaProfileOptions o;
    o.device = device;
    if (model) {
      std::int64_t dense = 0;
      while (dense < model->num_layers && model->is_moe_layer(dense)) ++dense;
      for (const auto& t : tpp::model::layer_tensors(*model, std::min(dense, model->num_layers - 1)))
        if (t.cols > 1 && t.count == 1 &&
            std::find(o.shapes.begin(), o.shapes.end(), std::pair{t.rows, t.cols}) == o.shapes.end())
          o.shapes.emplace_back(t.rows, t.cols);
    }
    std::printf("measuring %s as %s (about a minute)...\n", device_name.c_str(), gpu->name.c_str());
    std::fflush(stdout);
    auto measured = tpp::exec::profile_cuda(o);
    if (!measured) return cuda_fail(measured.error().message);
    p = *measured;
    if (model)
      p.gemm_shapes = fmt::format("the {} GEMM shapes of a {} layer at tp=1", o.shapes.size(), model->name);
    char h[256] = "this host";
    gethostname(h, sizeof h);
    host = h;
  }
  if (!named) name = "local-gpu";
  const Derived d = derive(p, *gpu);
  print_cuda(p, d, *gpu);
  char date[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&t));
  const std::string yaml = cuda_yaml(p, d, *gpu, name, host, date);
  std::ofstream out(output);
  out << yaml;
  out.close();
  if (!out) return cuda_fail("cannot write " + output);
  if (auto back = tpp::hw::load_cluster(output); !back)  // what tpp-plan will read
    return cuda_fail("the profile written does not load: " + back.error().str());
  if (!json_out.empty()) {
    nlohmann::json j;
    j["tpp_cuda_profile_version"] = 1;
    j["host"] = host;
    j["gpu"] = gpu->name;
    j["datasheet"] = {{"hbm_GBps", gpu->hbm_bandwidth_GBps.value},
                      {"bf16_tflops", gpu->bf16_dense_tflops.value},
                      {"fp8_tflops", gpu->fp8_dense_tflops.value}};
    j["of_datasheet_hbm"] = {{"copy", p.copy_GBps / gpu->hbm_bandwidth_GBps.value},
                             {"read", d.read},
                             {"rmsnorm", d.rmsnorm},
                             {"silu_mul", d.silu_mul},
                             {"attention_decode_64x2048", d.attention_hbm}};
    j["profile"] = {{"memory", d.memory}, {"gemm_memory", d.gemm_memory},
                    {"elementwise", d.elementwise}, {"attention_decode", d.attention_decode},
                    {"launch_us", p.launch_us}, {"launch_graph_us", p.launch_graph_us}};
    j["gemm_bf16_of_peak"] = d.gemm;
    j["gemm_fp8_of_peak"] = d.gemm_fp8;
    j["raw"] = raw_json(p);
    std::ofstream jf(json_out);
    jf << j.dump(2) << "\n";
    jf.close();
    if (!jf) return cuda_fail("cannot write " + json_out);
    std::printf("wrote %s\n", json_out.c_str());
  }
  std::printf("wrote %s\n", output.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tpp-profile: measure this machine into a cluster profile", "tpp-profile"};
  std::string output, name = "local-cpu", model_arg, collectives_to;
  int ranks = 2;
  double memory_gib = 2.0;
  app.add_option("-o,--output", output, "the cluster profile to write (YAML)");
  app.add_option("--name", name, "the profile's cluster and GPU name")->capture_default_str();
  app.add_option("--model", model_arg, "measure GEMMs on this model's layer shapes");
  app.add_option("--ranks", ranks, "MPI ranks for the collectives (one a core; 1: none)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--memory-gib", memory_gib, "the memory each rank may use, as a GPU's total")
      ->check(CLI::Range(0.05, 1e6))
      ->capture_default_str();
  app.add_option("--collectives-to", collectives_to)->group("");  // the mpirun half
  std::string backend_arg = "cpu", gpu_arg, json_out, from_json, algo_arg;
  int device = 0;
  app.add_option("--backend", backend_arg, "cpu (this machine's cores) or cuda (one GPU, and NCCL "
                 "over every visible GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--gpu", gpu_arg, "cuda: the catalog GPU (or GPU YAML) whose datasheet the "
                 "efficiencies are fractions of (default: picked by the device's name)");
  app.add_option("--device", device, "cuda: the device to measure")
      ->check(CLI::Range(0, 1023))
      ->capture_default_str();
  app.add_option("--json", json_out, "cuda: also write every measurement as JSON");
  app.add_option("--from-json", from_json, "cuda: write the profile from an earlier --json "
                 "instead of measuring (e.g. against another --gpu)");
  // Collectives without measuring: the prediction, nccl-tests output imported or checked.
  tpp::tools::CollectiveArgs ca;
  std::vector<std::string> import_files, check_files;
  std::string op_hint;
  app.add_option("--cluster", ca.cluster, "the cluster (file or catalog name) for --collective, "
                 "--import-nccl-tests and --check-nccl-tests");
  app.add_option("--collective", ca.collective, "print the predicted time of all_reduce, all_gather, "
                 "reduce_scatter, alltoall or sendrecv over --ranks GPUs, in nccl-tests' columns");
  app.add_option("--bytes", ca.bytes, "--collective: one size (8, 64K, 1M, 1G)");
  app.add_option("--sweep", ca.sweep, "--collective: sizes MIN:MAX, doubling")->capture_default_str();
  app.add_option("--format", ca.format, "--collective, --check-nccl-tests: text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--dtype", ca.dtype, "--collective: the element type nccl-tests' count is in")
      ->capture_default_str();
  app.add_flag("--cuda-graph", ca.cuda_graph, "--collective: launched from a CUDA graph (nccl-tests -G; "
               "vLLM's decode) instead of eagerly");
  app.add_option("--gpus-per-thread", ca.gpus_per_thread, "--collective: GPUs one host thread launches "
                 "(nccl-tests -g)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_flag("--in-place", ca.in_place, "--collective: in place (nccl-tests' second columns)");
  app.add_option("--algo", algo_arg, "--collective, --check-nccl-tests: the algorithm NCCL_ALGO forces (ring, tree, nvls, "
                 "nvls_tree); default NCCL's choice")
      ->check(CLI::IsMember({"ring", "tree", "nvls", "nvls_tree"}));
  app.add_flag("--model-only", ca.model_only, "--collective: the model even where the cluster has a "
               "measured table");
  app.add_flag("--vllm", ca.vllm, "--collective all_reduce: as vLLM's TP group pays it, its custom "
               "all-reduce where vLLM runs it (inside a node, up to 8 MiB), else NCCL");
  app.add_option("--import-nccl-tests", import_files, "read nccl-tests output files into the "
                 "cluster's collectives tables, written to -o");
  app.add_option("--check-nccl-tests", check_files, "lay nccl-tests output files beside the model's "
                 "prediction on --cluster, with the error");
  app.add_option("--op", op_hint, "--import-nccl-tests, --check-nccl-tests: the collective, where "
                 "neither the output nor its file name says");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tpp-profile: error: %s (see --help)\n", e.what());
    return 2;
  }
  {
    const int modes = (app.count("--collective") > 0) + !import_files.empty() + !check_files.empty();
    if (modes > 1) {
      std::fprintf(stderr, "tpp-profile: error: --collective, --import-nccl-tests and --check-nccl-tests "
                           "are separate modes: give one\n");
      return 2;
    }
    if (modes == 1) {
      if (ca.cluster.empty()) {
        std::fprintf(stderr, "tpp-profile: error: --cluster FILE is required with --collective, "
                             "--import-nccl-tests and --check-nccl-tests\n");
        return 2;
      }
      if (app.count("--collective") > 0) {
        if (app.count("--ranks") == 0) {
          std::fprintf(stderr, "tpp-profile: error: --collective needs --ranks N (the GPUs taking part)\n");
          return 2;
        }
        if (app.count("--bytes") > 0 && app.count("--sweep") > 0) {
          std::fprintf(stderr, "tpp-profile: error: give --bytes or --sweep, not both\n");
          return 2;
        }
        ca.ranks = ranks;
        ca.algorithm = algo_arg;
        return tpp::tools::print_collective(ca);
      }
      if (!import_files.empty()) {
        if (output.empty()) {
          std::fprintf(stderr, "tpp-profile: error: --import-nccl-tests needs -o FILE (the cluster to write)\n");
          return 2;
        }
        return tpp::tools::import_nccl_tests(import_files, ca.cluster, output, op_hint);
      }
      return tpp::tools::check_nccl_tests(check_files, ca.cluster, op_hint, ca.format, algo_arg);
    }
  }
  if (backend_arg == "cpu")
    for (const char* opt : {"--gpu", "--device", "--json", "--from-json"})
      if (app.count(opt) > 0) {
        std::fprintf(stderr, "tpp-profile: error: %s is for --backend cuda\n", opt);
        return 2;
      }
  if (backend_arg == "cuda" && from_json.empty() &&
      (!tpp::kernels::built_with_cuda() || tpp::kernels::device_count() == 0))
    return run_cuda(output, name, false, gpu_arg, device, json_out, from_json, std::nullopt);
  std::optional<tpp::model::Model> model;
  if (!model_arg.empty()) {
    auto path = tpp::resolve_input(model_arg, tpp::Catalog::kModels);
    if (!path) return std::fprintf(stderr, "%s\n", path.error().str().c_str()), 2;
    auto m = tpp::model::load_model(*path);
    if (!m) return std::fprintf(stderr, "%s\n", m.error().str().c_str()), 2;
    model = *m;
  }
  if (!collectives_to.empty()) return collectives(argc, argv, collectives_to, model);
  if (backend_arg == "cuda")
    return run_cuda(output, name, app.count("--name") > 0, gpu_arg, device, json_out, from_json, model);
  if (output.empty()) {
    std::fprintf(stderr, "tpp-profile: error: -o FILE is required (the profile to write)\n");
    return 2;
  }
  tpp::exec::Profile p;
  char host[256] = "this host";
  gethostname(host, sizeof host);
  p.host = host;
  p.cores = static_cast<int>(std::thread::hardware_concurrency());
  tpp::exec::LocalComm local;
  auto backend = tpp::exec::make_cpu_backend(local);
  tpp::exec::profile_compute(*backend, model ? &*model : nullptr, p);
  std::printf("# GEMM, one rank (%s), float32\n%8s%14s%14s%12s\n", p.gemm_shapes.c_str(), "m",
              "time(us)", "GFLOP/s", "of peak");
  for (const auto& g : p.gemm)
    std::printf("%8lld%14.2f%14.2f%12.3f\n", static_cast<long long>(g.m), g.seconds * 1e6,
                g.flops_per_s / 1e9, g.flops_per_s / p.peak_flops_per_s);
  std::printf("peak %.2f GFLOP/s; copy %.2f GB/s; weight-bound GEMM %.0f%% of it; one operator "
              "call %.3f us\n",
              p.peak_flops_per_s / 1e9, p.copy_GBps, 100 * p.gemm_memory_fraction, p.launch_us);
  if (model) {
    // tp = 1, and rank 0's share of tp = 2 (the shapes differ, and so do their speeds).
    tpp::exec::profile_model(*backend, *model, p, 1);
    tpp::exec::profile_model(*backend, *model, p, 2);
    tpp::exec::fit_forward(*model, p);
    std::printf("# a forward of %s (tp 1, and rank 0's share of tp 2): measured time apart, and "
                "the step model's at efficiency 1\n%4s%8s%8s%12s%12s%12s%12s%12s%12s\n",
                model->name.c_str(), "tp", "tokens", "kind", "gemm(us)", "model", "attn(us)",
                "model", "rest(us)", "elem.model");
    for (const auto& f : p.forward)
      std::printf("%4d%8lld%8s%12.1f%12.1f%12.1f%12.1f%12.1f%12.1f\n", f.tp,
                  static_cast<long long>(f.tokens), f.decode ? "decode" : "prefill",
                  f.gemm_s * 1e6, f.model_gemm_s * 1e6, f.attention_s * 1e6,
                  f.model_attention_s * 1e6, f.rest_s * 1e6, f.model_elem_s * 1e6);
    std::printf("attention multipliers %.3f (decode) %.3f (prefill); element-wise %.3f of the "
                "copy bandwidth; %.3f us a kernel\n",
                p.attention_decode, p.attention_prefill, p.elementwise, p.launch_us);
  }
  p.ranks = 1;
  // The collectives by rank count: 2, 4, 8, ... up to --ranks, and --ranks itself, one mpirun
  // each (send/recv and the wait inside a forward from the largest).
  std::vector<int> counts;
  for (int n = 2; n < ranks; n *= 2) counts.push_back(n);
  if (ranks >= 2) counts.push_back(ranks);
  for (int n : counts) {
    const std::string tmp = output + ".collectives.tmp";
    std::string cmd = "mpirun ";
    if (geteuid() == 0) cmd += "--allow-run-as-root ";
    if (n > p.cores) cmd += "--oversubscribe ";
    cmd += fmt::format("-np {} '{}' --collectives-to '{}'", n, self_exe(), tmp);
    if (model && n == ranks) cmd += fmt::format(" --model '{}'", model_arg);
    if (std::system(cmd.c_str()) != 0) {
      std::fprintf(stderr, "tpp-profile: error: the collectives under mpirun failed: %s\n",
                   cmd.c_str());
      return 2;
    }
    std::ifstream f(tmp);
    std::int64_t mem = 0;
    double wait = 0;
    f >> mem >> wait;
    std::vector<tpp::exec::CollectivePoint> all_reduce, send_recv;
    for (auto* t : {&all_reduce, &send_recv}) {
      std::size_t k = 0;
      f >> k;
      t->resize(k);
      for (auto& c : *t) f >> c.bytes >> c.time_us >> c.algbw_GBps >> c.busbw_GBps;
    }
    std::remove(tmp.c_str());
    std::printf("%s", tpp::exec::collective_table(all_reduce, "all_reduce", n).c_str());
    if (n < ranks) {
      p.all_reduce_smaller.emplace_back(n, std::move(all_reduce));
      continue;
    }
    p.collective_wait_us = wait;
    p.runtime_memory_GiB = std::max<std::int64_t>(0, mem) / 1073741824.0;
    p.all_reduce = std::move(all_reduce);
    p.send_recv = std::move(send_recv);
    p.ranks = ranks;
    std::printf("%s", tpp::exec::collective_table(p.send_recv, "sendrecv", 2).c_str());
    if (model)
      std::printf("a collective inside a %d-rank forward of %s waits %.2f us beyond its "
                  "tight-loop time (mean over ranks of the median)\n",
                  ranks, model->name.c_str(), p.collective_wait_us);
  }
  p.storage_read_GBps = storage_read_GBps(output);
  if (p.storage_read_GBps > 0)
    std::printf("storage: a cold read of 256 MiB beside %s at %.2f GB/s\n", output.c_str(),
                p.storage_read_GBps);
  char date[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&t));
  std::ofstream out(output);
  out << tpp::exec::profile_yaml(p, name, memory_gib, date);
  out.close();
  if (!out) return std::fprintf(stderr, "tpp-profile: error: cannot write %s\n", output.c_str()), 2;
  std::printf("wrote %s\n", output.c_str());
  return 0;
}
