// tpp-profile: measures this machine into a cluster profile the simulator reads, so that a plan
// made against it (tpp-plan --cluster local-cpu.yaml) predicts what tpp-run measures here.
//
//   tpp-profile -o local-cpu.yaml [--model tiny-llama] [--ranks 2] [--memory-gib 2]
//
// One rank's GEMM throughput by token count (on the model's own layer shapes when --model is
// given), copy bandwidth, the bandwidth of a weight-bound GEMM, the cost of one operator call;
// then, under mpirun with --ranks ranks, MPI all-reduce and send/recv by message size (printed
// in nccl-tests' columns) and the memory MPI holds. Exit 0, or 2 with one line.
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
#include "executor/backend.h"
#include "executor/mpi_comm.h"
#include "executor/profile.h"
#include "model/load.h"

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
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tpp-profile: error: %s (see --help)\n", e.what());
    return 2;
  }
  std::optional<tpp::model::Model> model;
  if (!model_arg.empty()) {
    auto path = tpp::resolve_input(model_arg, tpp::Catalog::kModels);
    if (!path) return std::fprintf(stderr, "%s\n", path.error().str().c_str()), 2;
    auto m = tpp::model::load_model(*path);
    if (!m) return std::fprintf(stderr, "%s\n", m.error().str().c_str()), 2;
    model = *m;
  }
  if (!collectives_to.empty()) return collectives(argc, argv, collectives_to, model);
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
