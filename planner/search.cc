#include "planner/search.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

namespace tpp::planner {
namespace {

std::string split_name(const sim::ParallelConfig& p) {
  return fmt::format("TP{} x PP{} x DP{}", p.tp, p.pp, p.dp);
}

// Every TP (inside a node unless allowed across) x every PP vLLM accepts, with DP at both
// ends: as many replicas as the cluster holds (the rest idle), and one replica.
std::vector<sim::ParallelConfig> generate(const model::Model& m, const hw::Cluster& c,
                                          const MemoryRequest& r, bool cross_node_tp) {
  std::vector<sim::ParallelConfig> out;
  const std::int64_t n = c.total_gpus();
  for (std::int64_t tp = 1; tp <= n && (cross_node_tp || tp <= c.gpus_per_node); ++tp) {
    for (std::int64_t pp = 1; pp <= m.num_layers && tp * pp <= n; ++pp) {
      sim::ParallelConfig p;
      p.tp = tp;
      p.pp = pp;
      p.expert_parallel = r.expert_parallel;
      if (sim::check_parallel(m, p)) continue;
      const std::int64_t max_dp = n / (tp * pp);
      p.dp = max_dp;
      out.push_back(p);
      if (max_dp > 1) {
        p.dp = 1;
        out.push_back(p);
      }
    }
  }
  return out;
}

// One replica's share of the workload. DP replicas are identical and the balancer spreads
// requests evenly, so each sees the workload thinned by dp: for Poisson and fixed-rate
// arrivals, the same requests at 1/dp of the rate (arrival times x dp), which keeps every
// request in the simulation; for a closed loop, concurrency / dp (rounded up).
sim::Workload replica_share(const sim::Workload& w, std::int64_t dp) {
  sim::Workload s = w;
  if (dp <= 1) return s;
  if (w.arrival == sim::ArrivalProcess::kClosedLoop) {
    s.concurrency = (w.concurrency + dp - 1) / dp;
  } else {
    for (auto& q : s.requests) q.arrival_s *= static_cast<double>(dp);
    s.rate_per_s = w.rate_per_s / static_cast<double>(dp);
  }
  return s;
}

void scale_to_replicas(sim::ServingResult& r, std::int64_t dp) {
  const double d = static_cast<double>(dp);
  r.throughput_requests_per_s *= d;
  r.output_tokens_per_s *= d;
  r.total_tokens_per_s *= d;
  r.goodput_requests_per_s *= d;
}

double score(const Candidate& c, Objective o, double price) {
  const sim::ServingResult& r = *c.perf;
  switch (o) {
    case Objective::kThroughput: return r.output_tokens_per_s_per_gpu;
    case Objective::kLatency: return -r.tpot_ms.p50;
    case Objective::kTtft: return -r.ttft_ms.p50;
    case Objective::kGoodput: return r.goodput_requests_per_s / static_cast<double>(c.gpus);
    case Objective::kCost:  // output tokens per dollar
      return r.output_tokens_per_s * 3600 / (static_cast<double>(c.gpus) * price);
  }
  return 0;
}

std::string slo_miss(const sim::ServingResult& r, const sim::Slo& slo) {
  if (slo.ttft_ms > 0 && r.ttft_ms.p99 > slo.ttft_ms)
    return fmt::format("misses the TTFT SLO: p99 {:.1f} ms > {:g} ms", r.ttft_ms.p99, slo.ttft_ms);
  if (slo.tpot_ms > 0 && r.tpot_ms.p99 > slo.tpot_ms)
    return fmt::format("misses the TPOT SLO: p99 {:.2f} ms > {:g} ms", r.tpot_ms.p99, slo.tpot_ms);
  return "";
}

void mark_pareto(std::vector<Candidate>& cs) {
  for (auto& a : cs) {
    if (!a.perf) continue;
    a.pareto = true;
    for (const auto& b : cs) {
      if (!b.perf || &a == &b) continue;
      const double ax = a.perf->output_tokens_per_s_per_gpu, bx = b.perf->output_tokens_per_s_per_gpu;
      const double ay = a.perf->tpot_ms.p50, by = b.perf->tpot_ms.p50;
      if (bx >= ax && by <= ay && (bx > ax || by < ay)) {
        a.pareto = false;
        break;
      }
    }
  }
}

// Where the time goes, in shares of each stage's time and in milliseconds a step: a step's
// TP all-reduces (2 a layer and the embedding's, over every stage) and its PP sends.
std::string comm_shares(const sim::ServingResult& r, const sim::ParallelConfig& p,
                        std::int64_t layers, std::int64_t gpus_per_node) {
  double tp = 0, pp = 0;  // seconds over all stages: what one step's token path pays
  for (const auto& s : r.breakdown) {
    tp += s.tp_comm;
    pp += s.pp_comm;
  }
  const double steps = r.steps > 0 ? static_cast<double>(r.steps) : 1;
  const sim::TimeShares sh = sim::time_shares(r);
  std::string s = fmt::format("TP communication {:.0f}%, PP transfer {:.1f}%, bubbles {:.0f}% of "
                              "each stage's time",
                              sh.tp_comm, sh.pp_comm, sh.bubble);
  if (p.tp > 1)
    s += fmt::format(" ({} all-reduces a step{}, taking {:.2f} ms of it)", 2 * layers + 1,
                     p.tp > gpus_per_node ? " across nodes" : "", tp / steps * 1e3);
  if (p.pp > 1)
    s += fmt::format(" ({} send{} a step, {:.3f} ms)", p.pp - 1, p.pp > 2 ? "s" : "",
                     pp / steps * 1e3);
  return s;
}

std::string reasons(const Candidate& a, const Candidate* b, Objective o, std::int64_t layers,
                    std::int64_t gpus_per_node) {
  const sim::ServingResult& r = *a.perf;
  std::string s = fmt::format(
      "{} on {} GPU{}: {:.0f} output tokens/s per GPU, TPOT p50 {:.2f} ms, TTFT p50 {:.1f} ms; "
      "{}; KV cache of {} tokens a replica ({:.1f} requests of max_model_len).",
      split_name(a.memory.parallel), a.gpus, a.gpus == 1 ? "" : "s", r.output_tokens_per_s_per_gpu,
      r.tpot_ms.p50,
      r.ttft_ms.p50, comm_shares(r, a.memory.parallel, layers, gpus_per_node),
      a.memory.kv_cache_tokens, a.memory.max_concurrency);
  if (!b || !b->perf) return s + " No other split fits.";
  const sim::ServingResult& q = *b->perf;
  auto pct = [](double x, double y) { return y != 0 ? 100 * (x - y) / std::fabs(y) : 0; };
  s += fmt::format(
      "\nIt beats the runner-up {} on {}: {:.0f} against {:.0f} output tokens/s per GPU "
      "({:+.0f}%), TPOT p50 {:.2f} against {:.2f} ms, TTFT p50 {:.1f} against {:.1f} ms; the "
      "runner-up spends {}.",
      split_name(b->memory.parallel), objective_name(o), r.output_tokens_per_s_per_gpu,
      q.output_tokens_per_s_per_gpu,
      pct(r.output_tokens_per_s_per_gpu, q.output_tokens_per_s_per_gpu), r.tpot_ms.p50,
      q.tpot_ms.p50, r.ttft_ms.p50, q.ttft_ms.p50,
      comm_shares(q, b->memory.parallel, layers, gpus_per_node));
  return s;
}

bool before(const Candidate& a, const Candidate& b) {
  auto key = [](const Candidate& c) {
    const auto& p = c.memory.parallel;
    return std::make_tuple(c.rejected_reason.empty() ? 0 : (c.perf ? 1 : (c.memory.fits ? 2 : 3)),
                           -c.score, c.gpus, p.pp, p.tp, p.dp);
  };
  return key(a) < key(b);
}

}  // namespace

const char* objective_name(Objective o) {
  switch (o) {
    case Objective::kThroughput: return "throughput";
    case Objective::kLatency: return "latency";
    case Objective::kTtft: return "ttft";
    case Objective::kGoodput: return "goodput";
    case Objective::kCost: return "cost";
  }
  return "?";
}

std::optional<Objective> parse_objective(const std::string& s) {
  for (Objective o : {Objective::kThroughput, Objective::kLatency, Objective::kTtft,
                      Objective::kGoodput, Objective::kCost})
    if (s == objective_name(o)) return o;
  return std::nullopt;
}

Expected<SearchResult> search(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                              const sim::Workload& w, const SearchOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.objective == Objective::kCost && !c.price_per_gpu_hour)
    return make_error(c.file, 0, 0, "--objective cost needs price_per_gpu_hour in the cluster file");
  auto opts = sim::resolve_options(m, c.gpu, r.serving);
  if (!opts) return opts.error();
  const model::Model loaded = sim::as_loaded(m, r.serving);
  SearchResult out;
  // Memory of every candidate (microseconds each), then the serving simulation of those that
  // fit, in parallel.
  for (const auto& p : generate(loaded, c, r, o.allow_cross_node_tp)) {
    Candidate cand;
    cand.memory = sim::simulate_memory(loaded, c.gpu, p, *opts);
    cand.gpus = p.gpus();
    if (!cand.memory.fits) cand.rejected_reason = cand.memory.why_not;
    out.candidates.push_back(std::move(cand));
  }
  // Simulated: the splits that fit whose pipeline depth either tiles the cluster (pp divides
  // GPUs / tp) or is the shallowest that fits at that tp and dp; deeper pipelines in between
  // only trade latency for KV room the shallowest already has, and cost the most to simulate.
  std::vector<std::size_t> todo;
  const std::int64_t n = c.total_gpus();
  for (std::size_t k = 0; k < out.candidates.size(); ++k) {
    Candidate& cand = out.candidates[k];
    if (!cand.memory.fits) continue;
    const auto& p = cand.memory.parallel;
    bool shallowest = true;
    for (const auto& other : out.candidates)
      shallowest &= !(other.memory.fits && other.memory.parallel.tp == p.tp &&
                      (other.memory.parallel.dp == 1) == (p.dp == 1) &&
                      other.memory.parallel.pp < p.pp);
    if ((n / p.tp) % p.pp == 0 || shallowest) {
      todo.push_back(k);
    } else {
      cand.rejected_reason = fmt::format(
          "not simulated: pp={} neither tiles the cluster at tp={} nor is the shallowest "
          "pipeline that fits",
          p.pp, p.tp);
    }
  }
  std::atomic<std::size_t> next{0}, done{0};
  auto worker = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < todo.size();) {
      Candidate& cand = out.candidates[todo[i]];
      sim::MemoryPlan replica = cand.memory;
      replica.parallel.dp = 1;
      sim::StepCostModel cost(loaded, c, replica.parallel, *opts);
      cand.perf = sim::simulate_serving(cost, replica, replica_share(w, cand.memory.parallel.dp),
                                        o.slo);
      scale_to_replicas(*cand.perf, cand.memory.parallel.dp);
      ++done;
    }
  };
  const int threads = o.threads > 0 ? o.threads
                                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int k = 1; k < threads; ++k) pool.emplace_back(worker);
  std::thread progress;
  std::atomic<bool> finished{false};
  if (o.progress)
    progress = std::thread([&] {
      for (int tick = 1; !finished; ++tick) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (tick % 10 == 0 && !finished)
          std::fprintf(stderr, "tpp-plan: simulated %zu of %zu splits that fit...\n", done.load(),
                       todo.size());
      }
    });
  worker();
  for (auto& t : pool) t.join();
  finished = true;
  if (progress.joinable()) progress.join();
  out.simulated = static_cast<std::int64_t>(todo.size());

  const double price = c.price_per_gpu_hour ? c.price_per_gpu_hour->value : 0;
  for (auto& cand : out.candidates) {
    if (!cand.perf) continue;
    if (cand.perf->finished == 0) {
      cand.rejected_reason = "served no request of the workload";
      continue;
    }
    cand.score = score(cand, o.objective, price);
    cand.rejected_reason = slo_miss(*cand.perf, o.slo);
    cand.meets_slo = cand.rejected_reason.empty();
  }
  mark_pareto(out.candidates);
  std::stable_sort(out.candidates.begin(), out.candidates.end(), before);
  int rank = 0;
  for (std::size_t k = 0; k < out.candidates.size(); ++k) {
    Candidate& cand = out.candidates[k];
    if (!cand.rejected_reason.empty()) continue;
    cand.rank = ++rank;
    if (rank == 1) out.recommended = k;
    if (rank == 2) out.runner_up = k;
  }
  if (out.recommended) {
    out.candidates[*out.recommended].recommended = true;
    out.reasons = reasons(out.candidates[*out.recommended],
                          out.runner_up ? &out.candidates[*out.runner_up] : nullptr, o.objective,
                          m.num_layers, c.gpus_per_node);
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace tpp::planner
