// tpp-run: runs a plan (`tpp-plan ... -o plan.json`) for real, one MPI rank per GPU of the
// split, and lays the measurement beside the prediction.
//
//   mpirun -np <tp*pp*dp> tpp-run --plan plan.json [--backend cpu] [--requests N] [-o measured.json]
//   tpp-run --launch --plan plan.json [--hosts h1:8,h2:8] ...     (starts mpirun itself)
//   tpp-run --check --plan plan.json                              (sharded == single rank)
//
// Exit codes: 0 success; 1 --check found a difference; 2 bad input, a wrong rank count, a
// missing backend, a plan that does not fit this host (one line on stderr, from rank 0).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <map>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "executor/backend.h"
#include "common/file.h"
#include "executor/checkpoint.h"
#include "executor/engine.h"
#include "executor/mpi_comm.h"
#include "executor/nccl_comm.h"
#include "executor/replay_comm.h"
#include "kernels/device.h"
#include "executor/plan.h"
#include "simulator/serving.h"
#include "simulator/step_cost.h"

namespace {

constexpr int kExitBadInput = 2;
constexpr int kExitMismatch = 1;

// This process's index among the job's ranks on its host (one GPU each), from the launcher's
// environment (OpenMPI, MPICH/Intel MPI, Slurm), else the world rank.
int local_rank(int world_rank) {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* e = std::getenv(v)) {
      char* end = nullptr;
      const long r = std::strtol(e, &end, 10);
      if (end != e && r >= 0) return static_cast<int>(r);
    }
  return world_rank;
}

// --replay-rank: the replayed stage's compute, step by step, beside the step model's compute
// for that stage on the same batches; the stand-in collectives' modelled time apart.
nlohmann::json replay_json(const tpp::exec::RunResult& r, const tpp::exec::Plan& plan,
                           const tpp::sim::StepCostModel& cost, const tpp::exec::ReplayComm& c,
                           int replay_rank, std::string& text) {
  std::map<std::int64_t, const tpp::sim::BatchShape*> shape_of;
  for (const auto& s : r.steps) shape_of[s.step] = &s.shape;
  std::vector<double> meas, pred, ratio, meas_d, pred_d, ratio_d, standin, coll;
  int pp = 0;
  for (const auto& s : r.stage_steps) {
    auto it = shape_of.find(s.step);
    if (it == shape_of.end()) continue;
    pp = s.pp;
    const auto sc = cost.cost(static_cast<std::size_t>(s.pp), *it->second);
    const double p = sc.compute() * 1e3;
    coll.push_back((sc.tp_comm + sc.ep_comm) * 1e3);
    const double m = s.compute_s * 1e3;
    meas.push_back(m);
    pred.push_back(p);
    standin.push_back(s.tp_comm_s * 1e3);
    if (m > 0) ratio.push_back(p / m);
    if (it->second->prefill_tokens == 0) {
      meas_d.push_back(m);
      pred_d.push_back(p);
      if (m > 0) ratio_d.push_back(p / m);
    }
  }
  const auto M = tpp::sim::percentiles(meas), P = tpp::sim::percentiles(pred);
  const auto R = tpp::sim::percentiles(ratio), MD = tpp::sim::percentiles(meas_d);
  const auto PD = tpp::sim::percentiles(pred_d), RD = tpp::sim::percentiles(ratio_d);
  const auto S = tpp::sim::percentiles(standin), C = tpp::sim::percentiles(coll);
  const auto steps = static_cast<double>(std::max<std::size_t>(1, meas.size()));
  const auto at = tpp::exec::place_of(replay_rank, plan.split);
  text = fmt::format(
      "replayed rank {} (dp {}, stage {}, tp {}) alone: stage compute p50 measured {:.3f} ms, "
      "predicted {:.3f} ms ({:+.1f}%); decode-only steps {:.3f} vs {:.3f} ms; median "
      "predicted/measured {:.3f} (all), {:.3f} (decode); the stage's collectives, stood in "
      "for, take {:.3f} ms a step by the cluster profile (p50)\n",
      replay_rank, at.dp, pp, at.tp, M.p50, P.p50, M.p50 > 0 ? (P.p50 / M.p50 - 1) * 100 : 0.0,
      MD.p50, PD.p50, R.p50, RD.p50, C.p50);
  return {{"rank", replay_rank}, {"dp", at.dp}, {"pp", pp}, {"tp", at.tp},
          {"steps", meas.size()}, {"decode_steps", meas_d.size()},
          {"stage_compute_measured_ms", M.p50}, {"stage_compute_predicted_ms", P.p50},
          {"decode_stage_compute_measured_ms", MD.p50},
          {"decode_stage_compute_predicted_ms", PD.p50},
          {"median_ratio_compute", R.p50}, {"median_ratio_compute_decode", RD.p50},
          // The step model's TP (and EP) collectives for the stage on each batch: what the
          // stand-ins stand for. Counted calls and their own time: eager and captured steps
          // only (a replayed CUDA graph runs its stand-ins' copies without calling them, and
          // their time is then inside the measured compute).
          {"collective_modeled_ms", C.p50},
          {"collectives_called", c.collectives},
          {"collective_called_modeled_ms_per_step", c.modeled_s * 1e3 / steps},
          {"collective_standin_ms_p50", S.p50}};
}

// The GPU backend's types for the plan's model: its weights as vLLM holds them (bf16, fp8 on
// Hopper and weight-only fp8 on Ampere, float32 for a float32 plan), the KV cache in the
// plan's element size. AWQ/GPTQ int4/int8 weights and an fp8 KV cache run as bf16 here (the
// executor has no int4 GEMM or fp8 attention kernels): their bytes differ from the plan's.
tpp::exec::CudaOptions cuda_options(const tpp::model::Model& loaded, const tpp::sim::ResolvedOptions& o) {
  using tpp::kernels::DType;
  tpp::exec::CudaOptions co;
  switch (loaded.dtype) {
    case tpp::model::DType::kF32: co.weights = DType::kF32; break;
    case tpp::model::DType::kFP8E4M3: co.weights = DType::kFP8; break;
    default: co.weights = DType::kBF16; break;
  }
  co.kv = o.kv_bytes_per_element >= 4 ? DType::kF32 : DType::kBF16;
  co.max_rows = o.max_num_batched_tokens + 8;
  return co;
}

int rank0_fail(int rank, const std::string& line) {
  if (rank == 0) std::fprintf(stderr, "%s\n", line.c_str());
  return kExitBadInput;
}

std::string self_exe() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "tpp-run";
}

// tpp-run --launch: mpirun with the rank count the plan needs, this program and its arguments
// (less --launch and --hosts); as root, with OpenMPI's allow-run-as-root switch.
int launch(int argc, char** argv, const tpp::exec::Plan& plan, const std::string& hosts) {
  std::vector<std::string> args = {"mpirun"};
  if (geteuid() == 0) args.push_back("--allow-run-as-root");
  args.insert(args.end(), {"-np", std::to_string(plan.split.gpus())});
  if (!hosts.empty()) {
    // Slots as mpirun counts them: host:N gives N, a bare host 1.
    std::int64_t slots = 0;
    std::stringstream in(hosts);
    for (std::string h; std::getline(in, h, ',');) {
      const auto colon = h.rfind(':');
      std::int64_t n = 1;
      if (colon != std::string::npos) {
        try {
          n = std::stoll(h.substr(colon + 1));
        } catch (const std::exception&) {
          n = -1;
        }
      }
      if (h.empty() || colon == 0 || n < 1) {
        std::fprintf(stderr, "tpp-run: error: --hosts entry '%s' is not host or host:slots\n",
                     h.c_str());
        return kExitBadInput;
      }
      slots += n;
    }
    if (slots < plan.split.gpus()) {
      std::fprintf(stderr, "tpp-run: error: --hosts %s has %lld slot%s in all, the plan's split "
                           "needs %lld ranks\n", hosts.c_str(), static_cast<long long>(slots),
                   slots == 1 ? "" : "s", static_cast<long long>(plan.split.gpus()));
      return kExitBadInput;
    }
    args.insert(args.end(), {"--host", hosts});
  } else if (plan.split.gpus() > static_cast<std::int64_t>(std::thread::hardware_concurrency())) {
    args.push_back("--oversubscribe");  // more ranks than this host's cores
  }
  args.push_back(self_exe());
  for (int k = 1; k < argc; ++k) {
    const std::string a = argv[k];
    if (a == "--launch") continue;
    if (a == "--hosts") {
      ++k;
      continue;
    }
    if (a.rfind("--hosts=", 0) == 0) continue;
    args.push_back(a);
  }
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  std::fflush(stdout);
  execvp("mpirun", cargs.data());
  std::fprintf(stderr, "tpp-run: error: cannot start mpirun: %s (install OpenMPI: "
                       "scripts/setup.sh)\n", std::strerror(errno));
  return kExitBadInput;
}

// The prediction for exactly the requests that ran: the plan's own simulation, re-run.
tpp::sim::ServingResult predict(const tpp::exec::Plan& plan, const tpp::sim::Workload& w) {
  auto opts = *tpp::sim::resolve_options(plan.model, plan.cluster.gpu, plan.serving);
  // The executor recomputes a preempted request whole (its KV pool keeps no freed blocks for
  // it): predict the run it makes, without V1's prefix caching.
  opts.prefix_caching = false;
  // Nor does it carry vLLM's host time: its own host work is in what it measures.
  opts.host_overhead = tpp::sim::HostOverhead::kNone;
  const auto loaded = tpp::sim::as_loaded(plan.model, plan.serving);
  const auto mem = tpp::sim::simulate_memory(loaded, plan.cluster.gpu, plan.split, opts);
  tpp::sim::StepCostModel cost(loaded, plan.cluster, plan.split, opts);
  return tpp::sim::simulate_serving(cost, mem, w, plan.slo);
}

double error_pct(double predicted, double measured) {
  return measured != 0 ? 100 * (predicted - measured) / measured : 0;
}

struct Comparison {
  std::string table, summary;
};

// The prediction beside the measurement, row by row, and a summary line: the errors of the
// decode step, TTFT and TPOT medians, their median magnitude, and the worst component of the
// breakdown among those that are at least 2% of their stage's step (or of the makespan, for a
// stage's idle time): a 6 us send off by 3 us is not a finding.
Comparison comparison(const tpp::sim::ServingResult& p, const tpp::sim::ServingResult& m, double dp) {
  Comparison c;
  std::string& s = c.table;
  s = fmt::format("{:<28}{:>14}{:>14}{:>10}\n", "component", "predicted", "measured", "error");
  auto row = [&](const std::string& name, double a, double b, const char* unit) {
    s += fmt::format("{:<28}{:>14}{:>14}{:>9.1f}%\n", name, fmt::format("{:.3f} {}", a, unit),
                     fmt::format("{:.3f} {}", b, unit), error_pct(a, b));
  };
  row("decode step p50", p.decode_step_ms.p50, m.decode_step_ms.p50, "ms");
  row("step p50", p.step_ms.p50, m.step_ms.p50, "ms");
  row("TTFT p50", p.ttft_ms.p50, m.ttft_ms.p50, "ms");
  row("TTFT p99", p.ttft_ms.p99, m.ttft_ms.p99, "ms");
  row("TPOT p50", p.tpot_ms.p50, m.tpot_ms.p50, "ms");
  row("TPOT p99", p.tpot_ms.p99, m.tpot_ms.p99, "ms");
  row("ITL p50", p.itl_ms.p50, m.itl_ms.p50, "ms");
  row("E2E p50", p.e2e_ms.p50, m.e2e_ms.p50, "ms");
  row("output tokens/s", p.output_tokens_per_s, m.output_tokens_per_s, "");
  row("makespan", p.makespan_s, m.makespan_s, "s");
  std::string worst = "none";
  double worst_err = 0;
  auto consider = [&](const std::string& name, double a, double b, double scale_a, double scale_b) {
    if (std::max(a / std::max(scale_a, 1e-12), b / std::max(scale_b, 1e-12)) < 0.02) return;
    const double e = error_pct(a, b);
    if (std::fabs(e) > std::fabs(worst_err)) {
      worst_err = e;
      worst = name;
    }
  };
  for (std::size_t st = 0; st < p.breakdown.size() && st < m.breakdown.size(); ++st) {
    const auto &a = p.breakdown[st], &b = m.breakdown[st];
    // The breakdown is a replica's; the steps are every replica's.
    const double ps = p.steps > 0 ? static_cast<double>(p.steps) / dp : 1;
    const double ms = m.steps > 0 ? static_cast<double>(m.steps) / dp : 1;
    const double pa = (a.compute + a.tp_comm + a.ep_comm + a.pp_comm) / ps * 1e3;
    const double mb = (b.compute + b.tp_comm + b.ep_comm + b.pp_comm) / ms * 1e3;
    const std::string stage = fmt::format("stage {} ", st);
    const double v[][2] = {{a.compute / ps * 1e3, b.compute / ms * 1e3},
                           {a.tp_comm / ps * 1e3, b.tp_comm / ms * 1e3},
                           {a.pp_comm / ps * 1e3, b.pp_comm / ms * 1e3}};
    const char* names[] = {"compute / step", "TP comm / step", "PP send / step"};
    for (int k = 0; k < 3; ++k) {
      row(stage + names[k], v[k][0], v[k][1], "ms");
      consider(stage + names[k], v[k][0], v[k][1], pa, mb);
    }
    row(stage + "idle", a.bubble, b.bubble, "s");
    consider(stage + "idle", a.bubble, b.bubble, p.makespan_s, m.makespan_s);
  }
  const double e[] = {error_pct(p.decode_step_ms.p50, m.decode_step_ms.p50),
                      error_pct(p.ttft_ms.p50, m.ttft_ms.p50), error_pct(p.tpot_ms.p50, m.tpot_ms.p50)};
  double mag[] = {std::fabs(e[0]), std::fabs(e[1]), std::fabs(e[2])};
  std::sort(mag, mag + 3);
  c.summary = fmt::format(
      "summary: decode step p50 {:+.1f}%, TTFT p50 {:+.1f}%, TPOT p50 {:+.1f}%: median |error| "
      "{:.1f}%; worst component {} {:+.1f}%\n",
      e[0], e[1], e[2], mag[1], worst, worst_err);
  return c;
}

// The step model on the very batches that ran: each step's predicted time (every stage's
// compute, collectives and send, in turn) beside its measured time, so that the step model's
// error is seen apart from the queueing it drives.
struct SameBatches {
  std::string text;
  nlohmann::json json;
};

SameBatches same_batches(const tpp::exec::Plan& plan, const std::vector<tpp::exec::StepSample>& steps,
                         const std::vector<tpp::exec::StageSample>& stage_steps) {
  auto opts = *tpp::sim::resolve_options(plan.model, plan.cluster.gpu, plan.serving);
  const auto loaded = tpp::sim::as_loaded(plan.model, plan.serving);
  tpp::sim::StepCostModel cost(loaded, plan.cluster, plan.split, opts);
  std::vector<double> pd, md, pa, ma, ratio_d, ratio_a, ratio_p;
  for (const auto& s : steps) {
    double t = 0;
    for (std::size_t st = 0; st < cost.num_stages(); ++st) t += cost.cost(st, s.shape).total();
    pa.push_back(t * 1e3);
    ma.push_back(s.ms);
    ratio_a.push_back(t * 1e3 / s.ms);
    if (s.shape.prefill_tokens == 0) {
      pd.push_back(t * 1e3);
      md.push_back(s.ms);
      ratio_d.push_back(t * 1e3 / s.ms);
    } else {
      ratio_p.push_back(t * 1e3 / s.ms);
    }
  }
  const auto RP = tpp::sim::percentiles(ratio_p);
  const auto P = tpp::sim::percentiles(pd), M = tpp::sim::percentiles(md);
  const auto PA = tpp::sim::percentiles(pa), MA = tpp::sim::percentiles(ma);
  const auto RD = tpp::sim::percentiles(ratio_d), RA = tpp::sim::percentiles(ratio_a);
  // Stage by stage: each stage's compute and collectives on the batches it computed.
  std::map<std::pair<int, std::int64_t>, const tpp::sim::BatchShape*> shape_of;
  for (const auto& s : steps) shape_of[{s.dp, s.step}] = &s.shape;
  const std::size_t stages = cost.num_stages();
  std::vector<std::vector<double>> rc(stages), rt(stages), pc(stages), mc(stages), rcp(stages),
      rtp(stages);
  for (const auto& s : stage_steps) {
    if (s.tp != 0) continue;
    auto it = shape_of.find({s.dp, s.step});
    if (it == shape_of.end() || s.pp < 0 || static_cast<std::size_t>(s.pp) >= stages) continue;
    const auto c = cost.cost(static_cast<std::size_t>(s.pp), *it->second);
    pc[static_cast<std::size_t>(s.pp)].push_back(c.compute() * 1e3);
    mc[static_cast<std::size_t>(s.pp)].push_back(s.compute_s * 1e3);
    const bool prefill = it->second->prefill_tokens > 0;
    if (s.compute_s > 0)
      (prefill ? rcp : rc)[static_cast<std::size_t>(s.pp)].push_back(c.compute() / s.compute_s);
    if (s.tp_comm_s > 0)
      (prefill ? rtp : rt)[static_cast<std::size_t>(s.pp)].push_back(c.tp_comm / s.tp_comm_s);
  }
  nlohmann::json stage_json = nlohmann::json::array();
  std::string stage_text;
  for (std::size_t st = 0; st < stages; ++st) {
    const auto C = tpp::sim::percentiles(rc[st]), T = tpp::sim::percentiles(rt[st]);
    const auto CP = tpp::sim::percentiles(rcp[st]), TP = tpp::sim::percentiles(rtp[st]);
    const auto PC = tpp::sim::percentiles(pc[st]), MC = tpp::sim::percentiles(mc[st]);
    stage_json.push_back({{"stage", st},
                          {"compute_ms", {{"predicted_p50", PC.p50}, {"measured_p50", MC.p50}}},
                          {"median_ratio_compute", C.p50},
                          {"median_ratio_tp_comm", rt[st].empty() ? 0.0 : T.p50},
                          {"median_ratio_compute_prefill", CP.p50},
                          {"median_ratio_tp_comm_prefill", rtp[st].empty() ? 0.0 : TP.p50}});
    stage_text += fmt::format("  stage {}: compute p50 predicted {:.3f} ms, measured {:.3f} ms; "
                              "median predicted/measured: compute {:.3f} decode, {:.3f} with "
                              "prefill{}\n",
                              st, PC.p50, MC.p50, C.p50, CP.p50,
                              rt[st].empty() ? std::string()
                                             : fmt::format("; TP collectives {:.3f} decode, {:.3f} "
                                                           "with prefill", T.p50, TP.p50));
  }
  SameBatches out;
  out.text = fmt::format(
      "the step model on the {} batches that ran ({} decode-only): decode step p50 predicted "
      "{:.3f} ms, measured {:.3f} ms; median predicted/measured {:.3f} (decode), {:.3f} (with "
      "prefill), {:.3f} (all steps)\n",
      steps.size(), pd.size(), P.p50, M.p50, RD.p50, RP.p50, RA.p50) + stage_text;
  out.json = {{"steps", steps.size()},
              {"decode_steps", pd.size()},
              {"decode_step_ms", {{"predicted_p50", P.p50}, {"measured_p50", M.p50}}},
              {"step_ms", {{"predicted_p50", PA.p50}, {"measured_p50", MA.p50}}},
              {"median_ratio_decode", RD.p50},
              {"median_ratio_prefill", RP.p50},
              {"median_ratio_all", RA.p50},
              {"stages", stage_json}};
  return out;
}

nlohmann::json ranks_json(const std::vector<tpp::exec::RankReport>& ranks) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& r : ranks)
    a.push_back({{"rank", r.rank}, {"dp", r.at.dp}, {"pp", r.at.pp}, {"tp", r.at.tp},
                 {"steps", r.steps}, {"compute_s", r.compute_s}, {"tp_comm_s", r.tp_comm_s},
                 {"pp_comm_s", r.pp_comm_s}, {"load_s", r.load_s}, {"load_bytes", r.load_bytes},
                 {"weight_bytes", r.weight_bytes}, {"kv_blocks", r.kv_blocks},
                 {"kv_pool_bytes", r.kv_pool_bytes}, {"peak_memory_bytes", r.peak_rss_bytes}});
  return a;
}

// measured.json: the prediction's `performance` schema, every rank's figures, the timeline.
// `complete` is false in the snapshots rank 0 writes during the run (its replica only).
nlohmann::json measured_json(const tpp::exec::RunResult& r, const std::string& plan_file,
                             const std::string& backend, int ranks, std::size_t requests) {
  nlohmann::json j;
  j["tpp_measured_version"] = 1;
  j["complete"] = r.complete;
  if (!r.complete)
    j["note"] = "a snapshot taken during the run, of rank 0's replica: the job did not finish";
  j["plan"] = plan_file;
  j["backend"] = backend;
  j["ranks_total"] = ranks;
  j["requests"] = requests;
  j["wall_s"] = r.wall_s;
  j["performance"] = tpp::sim::serving_json(r.measured);
  j["ranks"] = ranks_json(r.ranks);
  // The timeline: each step's launch and shape, each stage's start and times (seconds).
  nlohmann::json steps = nlohmann::json::array(), stage_steps = nlohmann::json::array();
  for (const auto& s : r.steps)
    steps.push_back({{"dp", s.dp}, {"step", s.step}, {"launched_s", s.launched_s}, {"ms", s.ms},
                     {"tokens", s.shape.tokens}, {"seqs", s.shape.seqs},
                     {"prefill_tokens", s.shape.prefill_tokens},
                     {"decode_context", s.shape.decode_context}});
  for (const auto& s : r.stage_steps)
    stage_steps.push_back({{"dp", s.dp}, {"pp", s.pp}, {"tp", s.tp}, {"step", s.step},
                           {"start_s", s.start_s}, {"compute_s", s.compute_s},
                           {"tp_comm_s", s.tp_comm_s}, {"pp_comm_s", s.pp_comm_s}});
  j["timeline"] = {{"steps", steps}, {"stages", stage_steps}};
  return j;
}

// Written beside and renamed into place: a reader never sees half a file.
bool write_atomically(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// --check: every sampled token and its logits against the single-rank run of the same plan.
int check(const tpp::exec::RunResult& sharded, const tpp::exec::Plan& plan,
          const tpp::exec::RunOptions& o, const tpp::exec::CudaOptions* cuda) {
  tpp::exec::LocalComm local;
  // The reference runs on the sharded run's backend kind: on a GPU, rank 0's device in the
  // same types, so that only the sharding (and its order of summation) differs.
  std::unique_ptr<tpp::exec::Backend> backend;
  if (cuda) {
    std::string why;
    backend = tpp::exec::make_cuda_backend(local, *cuda, why);
    if (!backend) {
      std::fprintf(stderr, "tpp-run: error: the single-rank reference: %s\n", why.c_str());
      return kExitBadInput;
    }
  } else {
    backend = tpp::exec::make_cpu_backend(local);
  }
  // float32 on the CPU agrees to rounding; bf16 or fp8 weights on a GPU sum their shards'
  // products in another order, so logits agree to about the type's precision.
  const double limit = !cuda || cuda->weights == tpp::kernels::DType::kF32 ? 1e-4 : 2e-2;
  tpp::exec::RunOptions ro = o;
  ro.single_rank = true;
  ro.progress = nullptr;
  ro.save_sharded.clear();
  // sharded_state files belong to the split that wrote them: the reference is seeded (what
  // --save-sharded saved); a Hugging Face checkpoint the reference reads too.
  if (ro.load_format == "sharded_state") ro.model_dir.clear();
  auto ref = tpp::exec::run_plan(plan, local, *backend, ro);
  if (!ref) {
    std::fprintf(stderr, "tpp-run: error: the single-rank reference failed: %s\n",
                 ref.error().str().c_str());
    return kExitBadInput;
  }
  const auto& a = sharded.samples;
  const auto& b = (*ref)->samples;
  double worst = 0;
  for (std::size_t k = 0; k < std::max(a.size(), b.size()); ++k) {
    if (k >= a.size() || k >= b.size() || a[k].request != b[k].request || a[k].index != b[k].index) {
      std::printf("FAILED: the sharded run sampled %zu tokens, the single rank %zu\n", a.size(),
                  b.size());
      return kExitMismatch;
    }
    double diff = 0, scale = 0;
    for (std::size_t c = 0; c < b[k].logits.size(); ++c) {
      diff = std::max(diff, static_cast<double>(std::fabs(a[k].logits[c] - b[k].logits[c])));
      scale = std::max(scale, static_cast<double>(std::fabs(b[k].logits[c])));
    }
    const double rel = scale > 0 ? diff / scale : diff;
    worst = std::max(worst, rel);
    if (rel > limit || a[k].token != b[k].token) {
      std::printf("FAILED: the %s differ%s at request %lld, output token %lld (that request's "
                  "step %lld), sampled on rank %d: relative logit difference %.3g, token %lld "
                  "against the single rank's %lld\n",
                  a[k].token != b[k].token ? "sampled tokens" : "logits",
                  a[k].token != b[k].token ? "" : "",
                  static_cast<long long>(a[k].request), static_cast<long long>(a[k].index),
                  static_cast<long long>(a[k].index + 1), a[k].rank, rel,
                  static_cast<long long>(a[k].token), static_cast<long long>(b[k].token));
      return kExitMismatch;
    }
  }
  std::printf("OK: tp=%lld pp=%lld dp=%lld%s matches the single-rank run: %zu tokens identical, "
              "logits within %.2g relative (limit %.0e)\n",
              static_cast<long long>(plan.split.tp), static_cast<long long>(plan.split.pp),
              static_cast<long long>(plan.split.dp),
              plan.split.expert_parallel ? " (expert parallel)" : "", a.size(), worst, limit);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rank = 0, size = 1;
  const bool launching = [&] {
    for (int k = 1; k < argc; ++k)
      if (std::string(argv[k]) == "--launch") return true;
    return false;
  }();
  if (!launching) tpp::exec::mpi_world(&argc, &argv, &rank, &size);
  CLI::App app{"tpp-run: run a plan for real and lay the measurement beside the prediction",
               "tpp-run"};
  std::string plan_file, backend = "cpu", output, hosts;
  std::int64_t requests = -1;
  bool do_launch = false, do_check = false;
  app.add_option("--plan", plan_file, "the plan (tpp-plan ... -o plan.json)")->required();
  app.add_option("--backend", backend, "cpu (Eigen + MPI) or cuda (CUDA, cuBLAS, NCCL)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--requests", requests, "run the first N requests of the plan's workload")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{10'000'000}));
  app.add_option("-o,--output", output, "write the measurement (JSON, the prediction's schema)");
  app.add_flag("--launch", do_launch, "start mpirun with the rank count the plan needs");
  app.add_option("--hosts", hosts, "with --launch: hosts and their slots, e.g. h1:8,h2:8");
  app.add_flag("--check", do_check,
               "compare every sampled token and its logits with the single-rank run");
  std::string model_dir, load_format, save_dir;
  app.add_option("--model-dir", model_dir,
                 "load the weights from this checkpoint directory (safetensors) instead of "
                 "seeding them");
  app.add_option("--load-format", load_format,
                 "auto (a Hugging Face checkpoint: every rank reads whole tensors and cuts its "
                 "shard), sharded_state (the files --save-sharded wrote, one set per rank), or "
                 "dummy (seeded weights; the default without --model-dir)")
      ->check(CLI::IsMember({"auto", "sharded_state", "dummy"}));
  int replay_rank = -1;
  app.add_option("--replay-rank", replay_rank,
                 "run the plan's rank R alone (one GPU, or this CPU): its shard, its stage's "
                 "layers, its KV pool, its replica's requests; collectives become local "
                 "stand-ins timed by the plan's cluster profile, reported apart")
      ->check(CLI::NonNegativeNumber);
  bool enforce_eager = false;
  app.add_flag("--enforce-eager", enforce_eager,
               "--backend cuda: no CUDA graphs for decode steps (vLLM's --enforce-eager)");
  std::string save_hf;
  app.add_option("--save-hf", save_hf,
                 "write the plan's model with its seeded weights as an ordinary Hugging Face "
                 "checkpoint (DIR/model.safetensors, whole tensors) and exit; no MPI");
  app.add_option("--save-sharded", save_dir,
                 "write each rank's weights to this directory as vLLM's sharded_state files "
                 "(model-rank-{rank}-part-{part}.safetensors)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return rank == 0 ? app.exit(e) : 0;
  } catch (const CLI::ParseError& e) {
    tpp::exec::mpi_finalize();
    return rank0_fail(rank, std::string("tpp-run: error: ") + e.what() + " (see --help)");
  }
  auto plan = tpp::exec::read_plan(plan_file);
  if (!plan) {
    tpp::exec::mpi_finalize();
    return rank0_fail(rank, plan.error().str());
  }
  if (auto what = tpp::exec::executor_unsupported(plan->model); !what.empty()) {
    tpp::exec::mpi_finalize();
    return rank0_fail(rank, fmt::format(
        "{}: error: field 'model': {} has {}, which tpp-plan plans for but this executor does "
        "not run (its decoder covers the Llama, Qwen, Mixtral and DeepSeek layers)",
        plan_file, plan->model.name, what));
  }
  if (plan->split.expert_parallel && plan->split.dp > 1) {
    tpp::exec::mpi_finalize();
    return rank0_fail(rank, fmt::format(
        "{}: error: field 'split': expert parallel over dp={} replicas (EP = tp x dp, vLLM's "
        "DP+EP, where idle replicas step with dummy batches) is not run by this executor, only "
        "EP within one replica's TP group: plan with --dp 1, or without --enable-expert-parallel",
        plan_file, plan->split.dp));
  }
  if (!save_hf.empty()) {
    tpp::exec::mpi_finalize();
    if (rank != 0) return 0;
    if (auto e = tpp::exec::write_hf_checkpoint(tpp::sim::as_loaded(plan->model, plan->serving), save_hf)) {
      std::fprintf(stderr, "%s\n", e->str().c_str());
      return kExitBadInput;
    }
    std::printf("wrote %s/model.safetensors: %s with its seeded weights, whole tensors\n",
                save_hf.c_str(), plan->model.name.c_str());
    return 0;
  }
  if (replay_rank >= 0) {
    const char* clash = do_launch ? "--launch" : do_check ? "--check" : !save_dir.empty() ? "--save-sharded" : nullptr;
    if (clash) {
      tpp::exec::mpi_finalize();
      return rank0_fail(rank, std::string("tpp-run: error: --replay-rank runs one rank alone: it "
                                          "takes no ") + clash);
    }
    if (replay_rank >= plan->split.gpus()) {
      tpp::exec::mpi_finalize();
      return rank0_fail(rank, fmt::format(
          "tpp-run: error: --replay-rank {}: the plan's split tp={} x pp={} x dp={} has ranks "
          "0..{}", replay_rank, plan->split.tp, plan->split.pp, plan->split.dp,
          plan->split.gpus() - 1));
    }
    if (size != 1) {
      tpp::exec::mpi_finalize();
      return rank0_fail(rank, fmt::format("tpp-run: error: --replay-rank runs one process, this "
                                          "job has {} (run it without mpirun)", size));
    }
  }
  if (do_launch) return launch(argc, argv, *plan, hosts);
  if (do_check && requests < 0) requests = 16;
  if (load_format.empty()) load_format = model_dir.empty() ? "dummy" : "auto";
  if (load_format == "dummy" && !model_dir.empty()) {
    tpp::exec::mpi_finalize();
    return rank0_fail(rank, "tpp-run: error: --load-format dummy seeds the weights: it takes no "
                            "--model-dir (use auto or sharded_state to load " + model_dir + ")");
  }
  if (load_format != "dummy" && model_dir.empty()) {
    tpp::exec::mpi_finalize();
    return rank0_fail(rank, "tpp-run: error: --load-format " + load_format +
                                " needs --model-dir DIR (the checkpoint's directory)");
  }
  if (!model_dir.empty() && tpp::inspect_path(model_dir).kind != tpp::PathKind::kDirectory) {
    tpp::exec::mpi_finalize();
    return rank0_fail(rank, "tpp-run: error: --model-dir " + model_dir + " is not a directory");
  }
  if (replay_rank < 0 && size != plan->split.gpus()) {
    tpp::exec::mpi_finalize();
    return rank0_fail(rank, fmt::format(
        "tpp-run: error: the plan's split tp={} x pp={} x dp={} needs {} ranks, this job has {} "
        "(mpirun -np {} tpp-run ..., or tpp-run --launch)",
        plan->split.tp, plan->split.pp, plan->split.dp, plan->split.gpus(), size,
        plan->split.gpus()));
  }
  // The communicator: MPI's (with NCCL's for the GPU's collectives), or, for --replay-rank,
  // local stand-ins timed by the plan's step model.
  const auto loaded = tpp::sim::as_loaded(plan->model, plan->serving);
  const auto opts = tpp::sim::resolve_options(plan->model, plan->cluster.gpu, plan->serving);
  if (!opts) {
    tpp::exec::mpi_finalize();
    return rank0_fail(rank, opts.error().str());
  }
  const tpp::sim::StepCostModel cost(loaded, plan->cluster, plan->split, *opts);
  std::unique_ptr<tpp::exec::Comm> mpi, nccl;
  std::unique_ptr<tpp::exec::ReplayComm> replay;
  tpp::exec::Comm* comm = nullptr;
  int device = -1;
  if (backend == "cuda") {
    const int devices = tpp::kernels::device_count();
    if (devices == 0) {
      tpp::exec::mpi_finalize();
      return rank0_fail(rank, tpp::kernels::built_with_cuda()
                                  ? "tpp-run: error: --backend cuda: no CUDA device present"
                                  : "tpp-run: error: --backend cuda: this tpp-run was built "
                                    "without CUDA (rebuild where nvcc is found, or use "
                                    "--backend cpu)");
    }
    device = local_rank(rank) % devices;
  }
  if (replay_rank >= 0) {
    const auto ep = plan->split.expert_parallel ? plan->split.ep() : 1;
    replay = std::make_unique<tpp::exec::ReplayComm>(plan->split.tp, ep, cost);
    comm = replay.get();
  } else {
    auto made = tpp::exec::make_mpi_comm(&argc, &argv, plan->split);
    if (!made) {
      tpp::exec::mpi_finalize();
      return rank0_fail(rank, "tpp-run: error: " + made.error().message);
    }
    mpi = std::move(*made);
    comm = mpi.get();
    if (backend == "cuda") {
      auto n = tpp::exec::make_nccl_comm(*mpi, plan->split, device);
      if (!n) {
        std::fprintf(stderr, "tpp-run: error: rank %d: %s\n", rank, n.error().str().c_str());
        mpi->abort(kExitBadInput);
      }
      nccl = std::move(*n);
      comm = nccl.get();
    }
  }
  std::unique_ptr<tpp::exec::Backend> engine_backend;
  tpp::exec::CudaOptions co = cuda_options(loaded, *opts);  // also the --check reference's
  co.device = device;
  co.enforce_eager = enforce_eager;
  if (backend == "cuda") {
    std::string why;
    engine_backend = tpp::exec::make_cuda_backend(*comm, co, why);
    if (!engine_backend) {
      std::fprintf(stderr, "tpp-run: error: rank %d: --backend cuda: %s\n", rank, why.c_str());
      if (replay) return kExitBadInput;
      comm->abort(kExitBadInput);
    }
  } else {
    engine_backend = tpp::exec::make_cpu_backend(*comm);
  }
  if (replay) {  // in-place stand-ins copy through a buffer of the largest all-reduce
    float* scratch = engine_backend->alloc(static_cast<std::size_t>(
        (opts->max_num_batched_tokens + 8) * std::max(loaded.hidden_size, std::int64_t{1})));
    tpp::exec::Backend* b = engine_backend.get();
    replay->set_mover([b, scratch](float* dst, const float* src, std::size_t n) {
      const auto len = static_cast<std::int64_t>(n);
      if (dst == src) {
        b->copy2d(scratch, len, src, len, 1, len);
        b->copy2d(dst, len, scratch, len, 1, len);
      } else {
        b->copy2d(dst, len, src, len, 1, len);
      }
    });
  }
  tpp::exec::RunOptions o;
  o.replay_rank = replay_rank;
  o.requests = requests;
  o.keep_logits = do_check;
  o.load_format = load_format;
  if (load_format != "dummy") o.model_dir = model_dir;
  o.save_sharded = save_dir;
  if (!output.empty())  // a job that dies leaves what rank 0 had measured two seconds before
    o.progress = [&](const tpp::exec::RunResult& partial) {
      write_atomically(output, measured_json(partial, plan_file, backend, size,
                                             tpp::exec::first_requests(plan->workload, requests)
                                                 .requests.size()));
    };
  bool setup_failed = false;
  o.setup_failed = &setup_failed;
  auto result = tpp::exec::run_plan(*plan, *comm, *engine_backend, o);
  if (!result) {
    if (result.error().message != tpp::exec::kOtherRankFailed)
      std::fprintf(stderr, "tpp-run: error: rank %d: %s\n", replay ? replay_rank : rank,
                   result.error().str().c_str());
    if (replay) return kExitBadInput;
    if (!setup_failed) comm->abort(kExitBadInput);  // no rank is left waiting for this one
    engine_backend.reset();
    nccl.reset();
    mpi.reset();
    tpp::exec::mpi_finalize();
    return kExitBadInput;
  }
  int code = 0;
  if (*result) {
    const auto& r = **result;
    const auto w = tpp::exec::first_requests(plan->workload, requests);
    const auto predicted = predict(*plan, w);
    std::printf("ran %s: tp=%lld x pp=%lld x dp=%lld on %d ranks (%s backend), %lld requests "
                "of workload %s in %.2f s\n",
                plan_file.c_str(), static_cast<long long>(plan->split.tp),
                static_cast<long long>(plan->split.pp), static_cast<long long>(plan->split.dp),
                size, backend.c_str(), static_cast<long long>(w.requests.size()),
                plan->workload.name.c_str(), r.wall_s);
    // A replayed rank's serving figures are one stage's alone: only its compute is compared.
    const Comparison cmp = comparison(predicted, r.measured, static_cast<double>(plan->split.dp));
    const SameBatches same = same_batches(*plan, r.steps, r.stage_steps);
    nlohmann::json replay_cmp;
    if (replay) {
      std::string text;
      replay_cmp = replay_json(r, *plan, cost, *replay, replay_rank, text);
      std::printf("%s", text.c_str());
    } else {
      std::printf("%s%s%s", cmp.table.c_str(), same.text.c_str(), cmp.summary.c_str());
    }
    nlohmann::json load_cmp;
    if (load_format != "dummy") {  // loading: the plan's prediction beside the slowest rank
      double secs = 0;
      std::int64_t bytes = 0;
      for (const auto& k : r.ranks) {
        secs = std::max(secs, k.load_s);
        bytes = std::max(bytes, k.load_bytes);
      }
      const bool sharded = load_format == "sharded_state";
      const auto pl = plan->predicted.value("load", nlohmann::json::object());
      const auto pbytes = pl.value(sharded ? "sharded_state_bytes_per_rank" : "hf_bytes_per_rank",
                                   std::int64_t{0});
      load_cmp = {{"format", load_format}, {"measured_s", secs}, {"measured_bytes_per_rank", bytes},
                  {"predicted_bytes_per_rank", pbytes}};
      std::string pred = "not predicted (no storage_read_GBps in the plan's cluster)";
      if (pl.contains(sharded ? "sharded_state_s" : "hf_s")) {
        const double ps = pl[sharded ? "sharded_state_s" : "hf_s"].get<double>();
        load_cmp["predicted_s"] = ps;
        pred = fmt::format("predicted {:.3f} s ({:+.1f}%)", ps, error_pct(ps, secs));
      }
      std::printf("load (%s): slowest rank read %.2f MB in %.3f s; %s; the plan's bytes a rank "
                  "%.2f MB\n",
                  load_format.c_str(), bytes / 1e6, secs, pred.c_str(), pbytes / 1e6);
    }
    if (!output.empty()) {
      nlohmann::json j = measured_json(r, plan_file, backend, size, w.requests.size());
      j["same_batches"] = same.json;
      if (!load_cmp.is_null()) j["load"] = load_cmp;
      if (!replay_cmp.is_null()) j["replay"] = replay_cmp;
      j["predicted"] = {{"performance", tpp::sim::serving_json(predicted)},
                        {"memory", plan->predicted.value("memory", nlohmann::json::object())}};
      if (!write_atomically(output, j))
        std::fprintf(stderr, "tpp-run: error: cannot write %s\n", output.c_str());
    }
    if (do_check) code = check(r, *plan, o, backend == "cuda" ? &co : nullptr);
  }
  engine_backend.reset();
  nccl.reset();
  mpi.reset();
  tpp::exec::mpi_finalize();
  return code;
}
