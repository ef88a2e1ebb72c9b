#include "planner/capacity.h"
#include "planner/parallel_for.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "planner/memory_report.h"
#include "planner/table.h"
#include "simulator/step_cost.h"

namespace tpp::planner {
namespace {

// Bisection stops when the bounds are this close (2%), and gives up this far out.
constexpr double kRateTolerance = 1.02;
constexpr int kMaxDoublings = 16;
// A routed simulation gives each replica as many requests as the workload has (its requests
// tiled, each copy after the last), as the even split's one replica gets, up to a total of
// kMaxTiledRequests: tails from fewer requests would flatter the router.
constexpr std::size_t kMaxTiledRequests = 20000;
// The most replicas plan_capacity serves behind one simulated router.
constexpr double kMaxReplicas = 512;
// The few best by the even-split estimate that fill_cluster serves again through the router.
constexpr std::size_t kRouted = 4;

// The workload at `rate` requests/s: the same requests, their arrival times scaled.
sim::Workload at_rate(const sim::Workload& w, double rate) {
  sim::Workload s = w;
  const double k = w.rate_per_s / rate;
  for (auto& q : s.requests) q.arrival_s *= k;
  s.rate_per_s = rate;
  return s;
}

sim::Workload at_concurrency(const sim::Workload& w, std::int64_t c) {
  sim::Workload s = w;
  s.arrival = sim::ArrivalProcess::kClosedLoop;
  s.concurrency = c;
  return s;
}

// The workload's requests for each replica: copies of them, each after the one before.
sim::Workload tiled(const sim::Workload& w, std::int64_t replicas) {
  const std::size_t want = std::min(kMaxTiledRequests, w.requests.size() * static_cast<std::size_t>(replicas));
  if (w.requests.empty() || w.requests.size() >= want) return w;
  sim::Workload s = w;
  const double span = w.requests.back().arrival_s + (w.rate_per_s > 0 ? 1 / w.rate_per_s : 0);
  for (std::size_t copy = 1; s.requests.size() < want; ++copy)
    for (std::size_t k = 0; k < w.requests.size() && s.requests.size() < want; ++k) {
      sim::Request q = w.requests[k];
      q.id = static_cast<std::int64_t>(s.requests.size());
      q.arrival_s += span * static_cast<double>(copy);
      s.requests.push_back(q);
    }
  return s;
}

// `w` served on `plan`: one replica with its even share, scaled to the deployment (routed
// false), or every replica behind the router (routed true).
LoadPoint serve(const model::Model& loaded, const hw::Cluster& c, const sim::MemoryPlan& plan,
                const sim::Workload& w, const sim::Slo& slo, double load, bool routed) {
  LoadPoint p;
  p.load = load;
  sim::MemoryPlan run = plan;
  sim::ParallelConfig one = plan.parallel;
  one.dp = 1;
  const sim::StepCostModel cost(loaded, c, one, plan.options);
  if (routed || plan.parallel.dp == 1) {
    p.result = sim::simulate_serving(cost, run, routed ? tiled(w, plan.parallel.dp) : w, slo);
  } else {
    run.parallel.dp = 1;
    p.result = sim::simulate_serving(cost, run, replica_share_of(w, plan.parallel.dp), slo);
    scale_replica_result(p.result, plan.parallel.dp);
  }
  const auto& r = p.result;
  p.miss = r.finished == 0           ? "serves no request"
           : !r.load.sustained       ? fmt::format("does not keep up ({:.2f} of {:.2f} requests/s served)",
                                                   r.load.served_requests_per_s, r.load.offered_requests_per_s)
                                     : slo_miss_text(r, slo);
  return p;
}

// The highest load within the SLOs by doubling from `start`, then bisection: `eval(load)`;
// `integer`: a concurrency. Returns the best point that passed (load 0: none) and the first
// that failed above it.
// `cap`: the most worth trying (a concurrency beyond the workload's requests changes nothing).
template <class Eval>
std::pair<LoadPoint, LoadPoint> highest(Eval eval, double start, bool integer,
                                        double cap = std::numeric_limits<double>::infinity()) {
  auto fix = [&](double x) { return integer ? std::max(1.0, std::floor(x)) : x; };
  LoadPoint lo, hi;
  LoadPoint p = eval(fix(start));
  if (p.miss.empty()) {
    lo = p;
    for (int k = 0; k < kMaxDoublings && lo.load < cap; ++k) {
      LoadPoint q = eval(fix(std::min(lo.load * 2, cap)));
      if (!q.miss.empty()) { hi = q; break; }
      lo = q;
    }
    if (hi.load == 0) return {lo, hi};
  } else {
    hi = p;
    for (int k = 0; k < kMaxDoublings && lo.load == 0; ++k) {
      if (integer && hi.load <= 1) return {lo, hi};
      LoadPoint q = eval(fix(hi.load / 2));
      if (q.miss.empty()) lo = q;
      else hi = q;
    }
    if (lo.load == 0) return {lo, hi};
  }
  while (hi.load / lo.load > kRateTolerance && !(integer && hi.load - lo.load <= 1)) {
    const double mid = integer ? std::floor((lo.load + hi.load) / 2) : std::sqrt(lo.load * hi.load);
    if (mid <= lo.load || mid >= hi.load) break;
    LoadPoint q = eval(mid);
    if (q.miss.empty()) lo = q;
    else hi = q;
  }
  return {lo, hi};
}

bool rate_workload(const sim::Workload& w) {
  return w.arrival != sim::ArrivalProcess::kClosedLoop && w.rate_per_s > 0 && !w.requests.empty();
}

std::string split_label(const sim::ParallelConfig& p) {
  return fmt::format("TP{} x PP{} x DP{}", p.tp, p.pp, p.dp);
}

int threads_for(const sim::Workload& w, const SearchOptions& o) {
  auto t = simulation_threads(w, o.threads > 0 ? o.threads
                                               : std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
  return t ? *t : 1;
}

// The pairs worth serving: at each TP, the shallowest pipeline that fits and the next deeper.
std::vector<sim::MemoryPlan> fitting_plans(const model::Model& loaded, const hw::Cluster& c, const MemoryRequest& r,
                                           const sim::ResolvedOptions& opts, bool cross_node_tp) {
  std::vector<sim::MemoryPlan> out;
  std::int64_t last_tp = 0, taken = 0;
  for (const auto& p : search_splits(loaded, c, r, cross_node_tp)) {
    if (p.tp != last_tp) last_tp = p.tp, taken = 0;
    if (taken >= 2) continue;
    sim::MemoryPlan m = sim::simulate_memory(loaded, c.gpu, p, opts);
    if (!m.fits) continue;
    out.push_back(std::move(m));
    ++taken;
  }
  return out;
}

}  // namespace

Expected<RateSweep> rate_sweep(const model::Model& loaded, const hw::Cluster& c, const sim::MemoryPlan& plan,
                               const sim::Workload& w, const sim::Slo& slo) {
  if (!rate_workload(w))
    return make_error(w.file, 0, 0, "a rate sweep needs a workload whose requests arrive at a rate "
                                    "(poisson, fixed, or a trace); " + w.name + " has none");
  auto eval = [&](double rate) { return serve(loaded, c, plan, at_rate(w, rate), slo, rate, true); };
  auto [lo, hi] = highest(eval, w.rate_per_s, false);
  RateSweep s;
  s.max_rate = lo.load;
  s.limit = hi.miss;
  if (lo.load <= 0) {
    s.points.push_back(hi);
    return s;
  }
  for (double f : {0.25, 0.5, 0.75, 0.9}) s.points.push_back(eval(lo.load * f));
  s.points.push_back(lo);
  if (hi.load > 0) s.points.push_back(hi);
  for (double f : {1.25, 1.5})
    if (hi.load == 0 || lo.load * f > hi.load) s.points.push_back(eval(lo.load * f));
  return s;
}

Expected<CapacityResult> plan_capacity(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                                       const sim::Workload& w, const SearchOptions& o, const CapacityTarget& t) {
  auto opts = sim::resolve_options(m, c.gpu, r.serving);
  if (!opts) return opts.error();
  const model::Model loaded = sim::as_loaded(m, r.serving);
  CapacityResult out;
  out.concurrency = t.concurrency.has_value();
  out.target = t.rate ? *t.rate : static_cast<double>(t.concurrency.value_or(0));
  if (!out.concurrency && !rate_workload(w))
    return make_error(w.file, 0, 0, "--target-rate needs a workload whose requests arrive at a rate "
                                    "(poisson, fixed, or a trace); " + w.name + " has none");
  // Any number of nodes of this cluster's kind: TP inside a node, PP and replicas beyond.
  // (A cluster without a network between nodes keeps a replica inside one node; replicas are
  // servers of their own and need none.)
  hw::Cluster big = c;
  if (c.inter_node) big.nodes = std::max<std::int64_t>(c.nodes, 64);
  std::vector<sim::MemoryPlan> plans = fitting_plans(loaded, big, r, *opts, o.allow_cross_node_tp);
  if (plans.empty()) return make_error("", 0, 0, m.name + " fits no split of " + c.gpu.name + " GPUs");
  out.rows.resize(plans.size());
  const sim::Slo slo = o.slo.slo;
  parallel_for(plans.size(), threads_for(w, o), [&](std::size_t k) {
    CapacityRow& row = out.rows[k];
    row.plan = plans[k];
    // One replica's most.
    if (out.concurrency) {
      auto eval = [&](double cc) {
        return serve(loaded, big, row.plan, at_concurrency(w, static_cast<std::int64_t>(cc)), slo, cc, false);
      };
      row.per_replica = highest(eval, std::min(out.target, 64.0), true,
                                static_cast<double>(w.requests.size())).first.load;
    } else {
      auto eval = [&](double rate) { return serve(loaded, big, row.plan, at_rate(w, rate), slo, rate, false); };
      row.per_replica = highest(eval, w.rate_per_s, false).first.load;
    }
    if (row.per_replica <= 0) {
      row.rejected = "one replica misses the SLOs at any load";
      return;
    }
    // The replicas that carry the target, checked with the router's split of the load; one
    // more while it misses (the even split is the estimate, the router the answer).
    const double need = std::ceil(out.target / row.per_replica - 1e-9);
    if (need > kMaxReplicas) {
      row.rejected = fmt::format("would need {:.0f} replicas (one carries {:.3g}); more than {} are not planned",
                                 need, row.per_replica, kMaxReplicas);
      return;
    }
    std::int64_t dp = static_cast<std::int64_t>(need);
    for (int tries = 0; tries < 3; ++tries, ++dp) {
      row.plan.parallel.dp = dp;
      const LoadPoint at = out.concurrency
          ? serve(loaded, big, row.plan, at_concurrency(w, static_cast<std::int64_t>(out.target)), slo, out.target, true)
          : serve(loaded, big, row.plan, at_rate(w, out.target), slo, out.target, true);
      row.at_target = at.result;
      if (at.miss.empty()) {
        row.rejected.clear();
        break;
      }
      row.rejected = fmt::format("{} replicas behind the router: {}", dp, at.miss);
    }
    if (!row.rejected.empty()) return;
    row.gpus = row.plan.parallel.gpus();
    row.margin = static_cast<double>(row.plan.parallel.dp) * row.per_replica / out.target - 1;
  });
  std::stable_sort(out.rows.begin(), out.rows.end(), [](const CapacityRow& a, const CapacityRow& b) {
    return std::make_tuple(!a.rejected.empty(), a.gpus, -a.margin) < std::make_tuple(!b.rejected.empty(), b.gpus, -b.margin);
  });
  if (!out.rows.empty() && out.rows.front().rejected.empty()) out.best = 0;
  return out;
}

Expected<FillResult> fill_cluster(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                                  const sim::Workload& w, const SearchOptions& o) {
  if (!rate_workload(w))
    return make_error(w.file, 0, 0, "--fill-cluster needs a workload whose requests arrive at a rate "
                                    "(poisson, fixed, or a trace); " + w.name + " has none");
  auto opts = sim::resolve_options(m, c.gpu, r.serving);
  if (!opts) return opts.error();
  const model::Model loaded = sim::as_loaded(m, r.serving);
  std::vector<sim::MemoryPlan> plans = fitting_plans(loaded, c, r, *opts, o.allow_cross_node_tp);
  FillResult out;
  const sim::Slo slo = o.slo.slo;
  const int threads = threads_for(w, o);
  std::vector<FillRow> rows(plans.size());
  parallel_for(plans.size(), threads, [&](std::size_t k) {
    FillRow& row = rows[k];
    row.plan = plans[k];
    row.plan.parallel.dp = c.total_gpus() / row.plan.parallel.gpus();
    sim::MemoryPlan one = plans[k];
    auto eval = [&](double rate) { return serve(loaded, c, one, at_rate(w, rate), slo, rate, false); };
    row.estimate = highest(eval, w.rate_per_s, false).first.load * static_cast<double>(row.plan.parallel.dp);
  });
  std::stable_sort(rows.begin(), rows.end(), [](const FillRow& a, const FillRow& b) { return a.estimate > b.estimate; });
  const std::size_t n = std::min(kRouted, rows.size());
  parallel_for(n, threads, [&](std::size_t k) {
    FillRow& row = rows[k];
    if (row.estimate <= 0) return;
    auto eval = [&](double rate) { return serve(loaded, c, row.plan, at_rate(w, rate), slo, rate, true); };
    row.routed = highest(eval, row.estimate, false).first.load;
  });
  std::stable_sort(rows.begin(), rows.end(), [](const FillRow& a, const FillRow& b) {
    const double x = a.routed.value_or(-1), y = b.routed.value_or(-1);
    return x != y ? x > y : a.estimate > b.estimate;
  });
  out.rows = std::move(rows);
  if (!out.rows.empty() && out.rows.front().routed.value_or(0) > 0) out.best = 0;
  return out;
}

std::string rate_sweep_text(const RateSweep& s, const sim::MemoryPlan& plan) {
  Table t({"requests/s", "TTFT p50/p99", "TPOT p50/p99", "tok/s", "tok/s/GPU", "note"},
          {"", "ms", "ms", "", "", ""});
  for (const auto& p : s.points) {
    const auto& r = p.result;
    t.add({fmt::format("{:.2f}", p.load), fmt::format("{:.0f}/{:.0f}", r.ttft_ms.p50, r.ttft_ms.p99),
           fmt::format("{:.1f}/{:.1f}", r.tpot_ms.p50, r.tpot_ms.p99), fmt::format("{:.0f}", r.output_tokens_per_s),
           fmt::format("{:.0f}", r.output_tokens_per_s_per_gpu),
           p.load == s.max_rate && s.max_rate > 0 ? "knee: the most within the SLOs" : p.miss});
  }
  std::string out = fmt::format("rate sweep of {} ({} replicas behind a round-robin router):\n",
                                split_label(plan.parallel), plan.parallel.dp) + t.str();
  if (s.max_rate > 0)
    out += fmt::format("highest rate within the SLOs: {:.2f} requests/s (to 2%); above it, {}\n", s.max_rate,
                       s.limit.empty() ? "the sweep found no limit" : "it " + s.limit);
  else
    out += "no rate meets the SLOs: " + s.limit + "\n";
  return out;
}

nlohmann::json rate_sweep_json(const RateSweep& s) {
  nlohmann::json pts = nlohmann::json::array();
  for (const auto& p : s.points)
    pts.push_back({{"requests_per_s", p.load}, {"ttft_ms_p99", p.result.ttft_ms.p99},
                   {"tpot_ms_p99", p.result.tpot_ms.p99}, {"output_tokens_per_s", p.result.output_tokens_per_s},
                   {"within_slo", p.miss.empty()}, {"miss", p.miss}});
  return {{"max_requests_per_s", s.max_rate}, {"limit", s.limit}, {"points", pts}};
}

std::string capacity_text(const CapacityResult& r, const hw::Cluster& c) {
  const char* unit = r.concurrency ? "concurrent requests" : "requests/s";
  Table t({"rank", "tp", "pp", "dp", "GPUs", "one replica", "margin", "TTFT p99", "TPOT p99", "note"},
          {"", "", "", "", "", r.concurrency ? "conc." : "req/s", "%", "ms", "ms", ""});
  int rank = 0;
  for (const auto& row : r.rows) {
    const auto& p = row.plan.parallel;
    const bool ok = row.rejected.empty();
    if (ok) ++rank;
    t.add({ok ? std::to_string(rank) + (rank == 1 ? "*" : "") : "-", std::to_string(p.tp), std::to_string(p.pp),
           ok ? std::to_string(p.dp) : "-", ok ? std::to_string(row.gpus) : "-",
           fmt::format("{:.2f}", row.per_replica), ok ? fmt::format("{:+.0f}", row.margin * 100) : "-",
           row.at_target ? fmt::format("{:.0f}", row.at_target->ttft_ms.p99) : "-",
           row.at_target ? fmt::format("{:.1f}", row.at_target->tpot_ms.p99) : "-", row.rejected});
  }
  std::string out = fmt::format("capacity for {:g} {} on {} GPUs ({} a node):\n", r.target, unit, c.gpu.name,
                                c.gpus_per_node) + t.str();
  if (!r.best) return out + "no split serves it within the SLOs\n";
  const auto& b = r.rows[*r.best];
  out += fmt::format("answer: {} GPU{}, {} ({} replica{} of {} GPU{}), with {:.0f}% margin: one replica carries "
                     "{:.2f} {} within the SLOs, {} carry {:.2f}; served the target behind the router, TTFT p99 "
                     "{:.0f} ms, TPOT p99 {:.1f} ms",
                     b.gpus, b.gpus == 1 ? "" : "s", split_label(b.plan.parallel), b.plan.parallel.dp,
                     b.plan.parallel.dp == 1 ? "" : "s", b.plan.parallel.tp * b.plan.parallel.pp,
                     b.plan.parallel.tp * b.plan.parallel.pp == 1 ? "" : "s", b.margin * 100, b.per_replica, unit, b.plan.parallel.dp,
                     b.per_replica * static_cast<double>(b.plan.parallel.dp), b.at_target->ttft_ms.p99,
                     b.at_target->tpot_ms.p99);
  out += b.gpus > c.total_gpus() ? fmt::format("; the cluster file's {} GPUs are too few\n", c.total_gpus())
                                 : fmt::format("; {} of the cluster's {} GPUs\n", b.gpus, c.total_gpus());
  return out;
}

nlohmann::json capacity_json(const CapacityResult& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : r.rows) {
    const auto& p = row.plan.parallel;
    nlohmann::json j = {{"tp", p.tp}, {"pp", p.pp}, {"dp", p.dp}, {"gpus", row.gpus},
                        {"per_replica", row.per_replica}, {"margin", row.margin}, {"rejected_reason", row.rejected}};
    if (row.at_target)
      j["at_target"] = {{"ttft_ms_p99", row.at_target->ttft_ms.p99}, {"tpot_ms_p99", row.at_target->tpot_ms.p99},
                        {"output_tokens_per_s", row.at_target->output_tokens_per_s}};
    rows.push_back(j);
  }
  return {{"target", r.target}, {"target_kind", r.concurrency ? "concurrency" : "requests_per_s"},
          {"rows", rows}, {"answer", r.best ? nlohmann::json(*r.best) : nlohmann::json(nullptr)}};
}

std::string fill_text(const FillResult& r, const hw::Cluster& c) {
  Table t({"rank", "tp", "pp", "dp", "GPUs", "estimate", "routed", "routed/GPU", "note"},
          {"", "", "", "", "", "req/s", "req/s", "req/s", ""});
  int rank = 0;
  for (const auto& row : r.rows) {
    const auto& p = row.plan.parallel;
    const bool ranked = row.routed.value_or(0) > 0;
    if (ranked) ++rank;
    t.add({ranked ? std::to_string(rank) + (rank == 1 ? "*" : "") : "-", std::to_string(p.tp),
           std::to_string(p.pp), std::to_string(p.dp), std::to_string(p.gpus()), fmt::format("{:.2f}", row.estimate),
           row.routed ? fmt::format("{:.2f}", *row.routed) : "-",
           row.routed ? fmt::format("{:.3f}", *row.routed / static_cast<double>(p.gpus())) : "-",
           row.routed ? "" : (row.estimate > 0 ? "not routed: below the best by the estimate" : "misses the SLOs at any rate")});
  }
  std::string out = fmt::format("the whole cluster, {} GPUs, filled with replicas of each split (estimate: "
                                "replicas x one replica's highest rate; routed: every replica behind a "
                                "round-robin router, simulated):\n",
                                c.total_gpus()) + t.str();
  if (!r.best) return out + "no split sustains any rate within the SLOs\n";
  const auto& b = r.rows[*r.best];
  return out + fmt::format("answer: {} on {} GPUs sustains {:.2f} requests/s within the SLOs\n",
                           split_label(b.plan.parallel), b.plan.parallel.gpus(), *b.routed);
}

nlohmann::json fill_json(const FillResult& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : r.rows) {
    const auto& p = row.plan.parallel;
    rows.push_back({{"tp", p.tp}, {"pp", p.pp}, {"dp", p.dp}, {"gpus", p.gpus()},
                    {"estimate_requests_per_s", row.estimate},
                    {"routed_requests_per_s", row.routed ? nlohmann::json(*row.routed) : nlohmann::json(nullptr)}});
  }
  return {{"rows", rows}, {"answer", r.best ? nlohmann::json(*r.best) : nlohmann::json(nullptr)}};
}

}  // namespace tpp::planner
