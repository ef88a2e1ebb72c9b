#include "planner/search.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include <fmt/format.h>

#include "common/host.h"
#include "planner/parallel_for.h"

namespace tpp::planner {
namespace {

std::string split_name(const sim::ParallelConfig& p) {
  return fmt::format("TP{} x PP{} x DP{}", p.tp, p.pp, p.dp);
}

// One TP x PP pair and the DP sizes to try with it, smallest first: 1, 2, 4, ... and the most
// the cluster holds.
struct Group {
  sim::ParallelConfig base;  // dp = 1
  std::size_t engine = 0;    // index into the search's resolved options, one an engine
  std::vector<std::int64_t> dps;
  bool simulate = false;
  bool fits = false;           // at dp = 1 (with expert parallelism, memory depends on dp)
  std::vector<Candidate> out;  // filled by the worker that takes the group
};

std::vector<std::int64_t> dp_sizes(std::int64_t max_dp) {
  std::vector<std::int64_t> d;
  for (std::int64_t k = 1; k < max_dp; k *= 2) d.push_back(k);
  d.push_back(max_dp);
  return d;
}

// Every TP (inside a node unless allowed across) x every PP vLLM accepts; with a layer
// partition, only the PP it was written for.
std::vector<Group> generate(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                            bool cross_node_tp) {
  std::vector<Group> out;
  const std::int64_t n = c.total_gpus();
  const auto want_pp = static_cast<std::int64_t>(r.pp_layer_partition.size());
  for (std::int64_t tp = 1; tp <= n && (cross_node_tp || tp <= c.gpus_per_node); ++tp) {
    for (std::int64_t pp = 1; pp <= m.num_layers && tp * pp <= n; ++pp) {
      if (want_pp > 0 && pp != want_pp) continue;
      Group g;
      g.base.tp = tp;
      g.base.pp = pp;
      g.base.expert_parallel = r.expert_parallel;
      if (want_pp > 0) g.base.pp_layer_partition = r.pp_layer_partition;
      if (sim::check_parallel(m, g.base)) continue;
      g.dps = dp_sizes(n / (tp * pp));
      out.push_back(std::move(g));
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

// The replica served every request at 1/dp of the load, over dp times the deployment's time:
// turn its figures into the deployment's (serving.h: every figure is the deployment's). Counts
// stay (the deployment serves every request); rates multiply by dp; times divide by it.
void scale_to_replicas(sim::ServingResult& r, std::int64_t dp) {
  const double d = static_cast<double>(dp);
  r.throughput_requests_per_s *= d;
  r.output_tokens_per_s *= d;
  r.total_tokens_per_s *= d;
  r.goodput_requests_per_s *= d;
  r.makespan_s /= d;
  for (auto& st : r.breakdown) {
    st.compute /= d;
    st.tp_comm /= d;
    st.ep_comm /= d;
    st.pp_comm /= d;
    st.host /= d;
    st.bubble /= d;
  }
  r.load.window_s /= d;
  r.load.offered_requests_per_s *= d;
  r.load.served_requests_per_s *= d;
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

std::string lags(const sim::LoadCheck& l) {
  return fmt::format("does not keep up: serves {:.2f} of the {:.2f} requests/s offered, its "
                     "backlog growing from {:.0f} to {:.0f} requests",
                     l.served_requests_per_s, l.offered_requests_per_s, l.backlog_mid,
                     l.backlog_end);
}

std::string rejected_all(const sim::ServingResult& r, std::int64_t max_model_len) {
  if (r.rejected_over_max_model_len == r.requests)
    return fmt::format("rejects every request: all {} need more than max_model_len {} tokens "
                       "(prompt + output; the shortest needs {})",
                       r.requests, max_model_len, r.shortest_rejected_tokens);
  return fmt::format("rejects every request: {} need more than max_model_len {} tokens, {} more "
                     "KV blocks than the pool holds{}",
                     r.rejected_over_max_model_len, max_model_len, r.rejected_over_kv_cache,
                     r.rejected_over_batch_tokens > 0
                         ? fmt::format(", {} prompts more tokens than a step takes (no chunked "
                                       "prefill)", r.rejected_over_batch_tokens)
                         : std::string());
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
  const double dp = static_cast<double>(p.dp);  // the breakdown is per replica; steps are all
  const sim::TimeShares sh = sim::time_shares(r);
  std::string s = fmt::format("TP communication {:.0f}%, PP transfer {:.1f}%, bubbles {:.0f}% of "
                              "each stage's time",
                              sh.tp_comm, sh.pp_comm, sh.bubble);
  if (p.tp > 1)
    s += fmt::format(" ({} all-reduces a step{}, taking {:.2f} ms of it)", 2 * layers + 1,
                     p.tp > gpus_per_node ? " across nodes" : "", tp * dp / steps * 1e3);
  if (p.pp > 1)
    s += fmt::format(" ({} send{} a step, {:.3f} ms)", p.pp - 1, p.pp > 2 ? "s" : "",
                     pp * dp / steps * 1e3);
  return s;
}

std::string idle_text(const Candidate& a, std::int64_t cluster_gpus) {
  const auto& p = a.memory.parallel;
  if (a.gpus >= cluster_gpus) return fmt::format("Uses all {} GPUs.", cluster_gpus);
  const std::int64_t idle = cluster_gpus - a.gpus, more = idle / (p.tp * p.pp);
  std::string s = fmt::format("Uses {} of the {} GPUs; the other {} ", a.gpus, cluster_gpus, idle);
  if (more == 0) return s + "are too few for another replica.";
  return s + fmt::format("can hold {} more replica{} of TP{} x PP{} (for headroom, or other "
                         "work).",
                         more, more == 1 ? "" : "s", p.tp, p.pp);
}

std::string cost_text(const Candidate& a, double price) {
  if (price <= 0) return "";
  return fmt::format(" At ${:g} a GPU-hour: ${:.2f} per million output tokens.", price,
                     a.cost_per_mtok);
}

// The winner against the runner-up: the objective's own figure first, then the others of
// throughput per GPU, TPOT and TTFT.
std::string beside(const Candidate& a, const Candidate& b, Objective o) {
  const sim::ServingResult &r = *a.perf, &q = *b.perf;
  auto pct = [](double x, double y) { return y != 0 ? 100 * (x - y) / std::fabs(y) : 0; };
  const std::string tput = fmt::format(
      "{:.0f} against {:.0f} output tokens/s per GPU ({:+.0f}%)", r.output_tokens_per_s_per_gpu,
      q.output_tokens_per_s_per_gpu,
      pct(r.output_tokens_per_s_per_gpu, q.output_tokens_per_s_per_gpu));
  const std::string tpot = fmt::format("TPOT p50 {:.2f} against {:.2f} ms", r.tpot_ms.p50,
                                       q.tpot_ms.p50);
  const std::string ttft = fmt::format("TTFT p50 {:.1f} against {:.1f} ms", r.ttft_ms.p50,
                                       q.ttft_ms.p50);
  switch (o) {
    case Objective::kThroughput: return tput + ", with " + tpot + " and " + ttft;
    case Objective::kLatency: return tpot + ", with " + tput + " and " + ttft;
    case Objective::kTtft: return ttft + ", with " + tput + " and " + tpot;
    case Objective::kGoodput:
      return fmt::format("{:.3f} against {:.3f} requests/s per GPU within the SLOs, with {}, {} "
                         "and {}",
                         a.score, b.score, tput, tpot, ttft);
    case Objective::kCost:
      return fmt::format("${:.2f} against ${:.2f} per million output tokens, with {}, {} and {}",
                         a.cost_per_mtok, b.cost_per_mtok, tput, tpot, ttft);
  }
  return "";
}

// " on SGLang" where the search compared engines, else "".
std::string on_engine(const Candidate& c, const SearchOptions& o) {
  if (o.engines.size() < 2) return "";
  const sim::Framework f = c.memory.options.framework;
  return std::string(" on ") + (f == sim::Framework::kSglang ? "SGLang" : f == sim::Framework::kTrtllm ? "TensorRT-LLM" : "vLLM");
}

std::string reasons(const Candidate& a, const Candidate* b, const SearchOptions& o,
                    std::int64_t layers, const hw::Cluster& c, double price) {
  const sim::ServingResult& r = *a.perf;
  std::string s = fmt::format(
      "{} on {} GPU{}: {:.0f} output tokens/s per GPU, TPOT p50 {:.2f} ms, TTFT p50 {:.1f} ms; "
      "{}; KV cache of {} tokens a replica ({:.1f} requests of max_model_len).",
      split_name(a.memory.parallel) + on_engine(a, o), a.gpus, a.gpus == 1 ? "" : "s", r.output_tokens_per_s_per_gpu,
      r.tpot_ms.p50, r.ttft_ms.p50, comm_shares(r, a.memory.parallel, layers, c.gpus_per_node),
      a.memory.kv_cache_tokens, a.memory.max_concurrency);
  s += fmt::format("\nSLOs: {}; it has TTFT p99 {:.0f} ms and TPOT p99 {:.1f} ms", slo_text(o.slo),
                   r.ttft_ms.p99, r.tpot_ms.p99);
  if (r.load.applies)
    s += fmt::format(", and keeps up with the {:.2f} requests/s offered", r.load.offered_requests_per_s);
  s += ".\n";
  if (r.rejected > 0)  // the same requests on every split: they exceed max_model_len
    s += fmt::format("It rejects {} of the {} requests, as every split would: {} need more than "
                     "max_model_len {} tokens (prompt + output).\n",
                     r.rejected, r.requests, r.rejected_over_max_model_len,
                     a.memory.options.max_model_len);
  s += idle_text(a, c.total_gpus()) + cost_text(a, price);
  if (!b || !b->perf) return s + "\nNo other split keeps up within the SLOs.";
  s += fmt::format("\nIt beats the runner-up {} on {}: {}; the runner-up spends {}.",
                   split_name(b->memory.parallel) + on_engine(*b, o), objective_name(o.objective),
                   beside(a, *b, o.objective),
                   comm_shares(*b->perf, b->memory.parallel, layers, c.gpus_per_node));
  return s;
}

// Why nothing was recommended, when something fits: every request refused, no split keeping up
// with the load, or none within the SLOs (with the closest one and by how much it misses).
std::string why_none(const std::vector<Candidate>& cs, const sim::Workload& w,
                     const ChosenSlo& slo) {
  const Candidate* any = nullptr;
  const Candidate* fastest = nullptr;  // the most requests/s served, among those that lag
  const Candidate* closest = nullptr;  // the smallest SLO overshoot, among those that keep up
  double closest_over = 1e300;
  for (const auto& c : cs) {
    if (!c.perf || c.perf->finished == 0) continue;
    any = &c;
    if (!c.sustains) {
      if (!fastest || c.perf->load.served_requests_per_s > fastest->perf->load.served_requests_per_s)
        fastest = &c;
      continue;
    }
    const auto& r = *c.perf;
    double over = std::max(slo.slo.ttft_ms > 0 ? r.ttft_ms.p99 / slo.slo.ttft_ms : 0,
                           slo.slo.tpot_ms > 0 ? r.tpot_ms.p99 / slo.slo.tpot_ms : 0);
    if (over < closest_over) {
      closest_over = over;
      closest = &c;
    }
  }
  if (!any) {
    for (const auto& c : cs)
      if (c.perf) return "every split that fits " + c.rejected_reason;
    return "";
  }
  if (closest)
    return fmt::format("no split meets the SLOs ({}): the closest, {}, {}; relax them with "
                       "--slo-ttft-ms/--slo-tpot-ms or --no-slo",
                       slo_text(slo), split_name(closest->memory.parallel),
                       closest->rejected_reason);
  return fmt::format("no split keeps up with workload {} ({:.2f} requests/s offered): the "
                     "closest, {}, serves {:.2f}; a larger cluster or a lighter load would",
                     w.name, fastest->perf->load.offered_requests_per_s,
                     split_name(fastest->memory.parallel),
                     fastest->perf->load.served_requests_per_s);
}

bool before(const Candidate& a, const Candidate& b) {
  auto key = [](const Candidate& c) {
    const auto& p = c.memory.parallel;
    return std::make_tuple(c.rejected_reason.empty() ? 0 : c.perf ? 1 : c.stopped ? 2 : c.memory.fits ? 3 : 4,
                           -c.score, c.gpus, p.pp, p.tp, p.dp, static_cast<int>(c.memory.options.framework));
  };
  return key(a) < key(b);
}

// Simulated, serving some requests, keeping up with the load within the SLOs.
bool keeps_up(const Candidate& c) { return c.perf && c.sustains && c.meets_slo && c.perf->finished > 0; }

Candidate make_candidate(const model::Model& loaded, const hw::Cluster& c,
                         const sim::ParallelConfig& p, const sim::ResolvedOptions& opts) {
  Candidate cand;
  cand.memory = sim::simulate_memory(loaded, c.gpu, p, opts);
  cand.gpus = p.gpus();
  if (!cand.memory.fits) cand.rejected_reason = cand.memory.why_not;
  return cand;
}

// Serves the workload on `cand`'s split: one replica with its share, scaled to all replicas.
// With `stop_at_slo_miss`, a run that certainly misses the SLOs ends there: the candidate keeps
// the verdict (Candidate::stopped) and no figures.
void simulate(Candidate& cand, const model::Model& loaded, const hw::Cluster& c,
              const sim::Workload& w, const sim::Slo& slo, bool stop_at_slo_miss = false) {
  sim::MemoryPlan replica = cand.memory;
  replica.parallel.dp = 1;
  sim::StepCostModel cost(loaded, c, replica.parallel, replica.options);
  cand.perf = sim::simulate_serving(cost, replica, replica_share(w, cand.memory.parallel.dp), slo, nullptr,
                                    stop_at_slo_miss);
  if (!cand.perf->stopped.empty()) {
    cand.stopped = true;
    cand.rejected_reason = cand.perf->stopped;
    cand.perf.reset();
    cand.meets_slo = false;  // (whether it keeps up with the load is not known)
    return;
  }
  cand.stopped = false;
  scale_to_replicas(*cand.perf, cand.memory.parallel.dp);
  cand.sustains = cand.perf->load.sustained;
  cand.meets_slo = slo_miss(*cand.perf, slo).empty();
}

// A group's candidates. A replica with more of them sees the same requests at a lower rate,
// so its latency is no higher: whether a DP size keeps up within the SLOs is taken to be
// monotone in it (as the rate sweep takes it in the rate). The largest size the cluster holds
// (the lowest latency) is simulated first. If it misses, every smaller size would too, and
// none is simulated. Otherwise the smallest size that keeps up is found by bisection over
// 1, 2, 4, ... (with the largest, where per-GPU objectives rank: the same load over more GPUs
// scores lower, so only the smallest that keeps up can win); by latency or TTFT the largest
// alone is simulated: it is the group's lowest. A group that is not simulated keeps its two
// ends, for the table.
void run_group(Group& g, const model::Model& loaded, const hw::Cluster& c, const sim::Workload& w,
               const sim::ResolvedOptions& opts, const sim::Slo& slo, Objective objective) {
  const std::size_t n = g.dps.size(), last = n - 1;
  std::vector<Candidate> cands(n);
  std::vector<int> state(n, 0);  // 0: not simulated, 1: keeps up within the SLOs, -1: does not
  for (std::size_t k = 0; k < n; ++k) {
    sim::ParallelConfig p = g.base;
    p.dp = g.dps[k];
    cands[k] = make_candidate(loaded, c, p, opts);
  }
  auto run = [&](std::size_t k) {
    Candidate& cand = cands[k];
    if (cand.memory.fits) simulate(cand, loaded, c, w, slo, true);
    state[k] = keeps_up(cand) ? 1 : -1;
    return state[k] > 0;
  };
  const bool every_dp = g.simulate && (g.fits || g.base.expert_parallel);
  std::size_t smallest = n;  // the smallest size known to keep up within the SLOs
  if (g.simulate && run(last)) {
    smallest = last;
    const bool per_gpu = objective != Objective::kLatency && objective != Objective::kTtft;
    if (every_dp && per_gpu) {
      std::size_t lo = 0, hi = last;  // hi keeps up; the answer is in [lo, hi]
      while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (run(mid)) hi = mid;
        else lo = mid + 1;
      }
      smallest = hi;
    }
  }
  for (std::size_t k = 0; k < n; ++k) {
    Candidate& cand = cands[k];
    const bool end = k == 0 || k == last;
    if (!every_dp && !end) continue;
    if (state[k] == 0 && cand.memory.fits && g.simulate) {
      std::int64_t missed = 0;  // a simulated larger size that misses
      for (std::size_t j = k + 1; j < n && missed == 0; ++j)
        if (state[j] < 0) missed = g.dps[j];
      if (smallest == n)
        cand.rejected_reason = fmt::format(
            "not simulated: dp={} (its replicas' lightest load) already misses, and fewer replicas "
            "carry more load each", g.dps[last]);
      else if (k > smallest)
        cand.rejected_reason = fmt::format(
            "not simulated: dp={} already keeps up within the SLOs; {} replicas spread the same load "
            "over more GPUs ({})", g.dps[smallest], g.dps[k],
            objective == Objective::kCost      ? "fewer output tokens per dollar"
            : objective == Objective::kGoodput ? "less goodput per GPU"
                                               : "fewer output tokens/s per GPU");
      else if (missed > 0 || objective == Objective::kLatency || objective == Objective::kTtft)
        cand.rejected_reason = missed > 0
            ? fmt::format("not simulated: dp={} already misses, and fewer replicas carry more load each", missed)
            : fmt::format("not simulated: by {} the largest DP size, dp={}, is this pair's best",
                          objective_name(objective), g.dps[last]);
    }
    g.out.push_back(std::move(cand));
  }
}

double score_of(const sim::ServingResult& r, std::int64_t gpus, Objective o, double price) {
  Candidate c;
  c.perf = r;
  c.gpus = gpus;
  return score(c, o, price);
}

std::string pools_name(const DisaggCandidate& d) {
  const auto &p = d.prefill.parallel, &q = d.decode.parallel;
  return fmt::format("{}P{}D (prefill TP{} x PP{} x {}, decode TP{} x PP{} x {})", p.dp, q.dp, p.tp, p.pp, p.dp,
                     q.tp, q.pp, q.dp);
}

// Disaggregated pools within the cluster, each PP 1: prefill and decode each at the two
// smallest TPs that fit; the prefill instances the fewest (doubling) that keep up with the
// prompts with TTFT p99 within 60% of its SLO (the transfer and the decode's first step have
// the rest), the decode instances the fewest (doubling) that keep the whole deployment within
// the SLOs. The best by the objective is set beside the aggregated recommendation.
void search_disaggregated(const model::Model& loaded, const hw::Cluster& c, const MemoryRequest& r,
                          const sim::Workload& w, const SearchOptions& o, const sim::ResolvedOptions& opts,
                          int threads, SearchResult& out) {
  if (w.arrival == sim::ArrivalProcess::kClosedLoop || w.rate_per_s <= 0) {
    out.disagg_verdict = "disaggregation not compared: it needs requests arriving at a rate (" + w.name +
                         " has none)";
    return;
  }
  // The two splits of fewest GPUs that fit (TP inside a node unless allowed across).
  std::vector<sim::ParallelConfig> splits;
  for (const Group& g : generate(loaded, c, r, o.allow_cross_node_tp))
    if (sim::simulate_memory(loaded, c.gpu, g.base, opts).fits) splits.push_back(g.base);
  std::stable_sort(splits.begin(), splits.end(), [](const sim::ParallelConfig& a, const sim::ParallelConfig& b) {
    return std::make_tuple(a.gpus(), a.pp) < std::make_tuple(b.gpus(), b.pp);
  });
  if (splits.size() > 2) splits.resize(2);
  const std::int64_t n = c.total_gpus();
  const sim::Slo slo = o.slo.slo;
  const double price = c.price_per_gpu_hour ? c.price_per_gpu_hour->value : 0;
  auto plan_of = [&](sim::ParallelConfig p, std::int64_t dp) {
    p.dp = dp;
    return sim::simulate_memory(loaded, c.gpu, p, opts);
  };
  // The prefill pools first (a few short passes), then each (prefill, decode) pair's decode
  // pools on the search's threads: the pairs are independent, and their results are kept in
  // the pairs' order, so the answer does not depend on the threads.
  struct Chain {
    std::size_t prefill = 0;
    sim::ParallelConfig dtp;
    DisaggCandidate best;
  };
  std::vector<std::int64_t> xs(splits.size(), 0);
  std::vector<sim::PrefillPass> passes(splits.size());
  std::vector<Chain> chains;
  for (std::size_t i = 0; i < splits.size(); ++i) {
    const sim::ParallelConfig& ptp = splits[i];
    std::int64_t x = 1;
    for (; x * ptp.gpus() < n; x *= 2) {
      passes[i] = sim::simulate_prefill_pool(loaded, c, plan_of(ptp, x), w, slo);
      const auto& pr = passes[i].result;
      if (pr.load.sustained && pr.finished > 0 && (slo.ttft_ms <= 0 || pr.ttft_ms.p99 <= 0.6 * slo.ttft_ms)) break;
    }
    if (x * ptp.gpus() >= n) continue;
    xs[i] = x;
    for (const sim::ParallelConfig& dtp : splits) chains.push_back({i, dtp, {}});
  }
  auto run_chain = [&](Chain& ch) {
    const sim::ParallelConfig& ptp = splits[ch.prefill];
    const std::int64_t x = xs[ch.prefill];
    for (std::int64_t y = 1; x * ptp.gpus() + y * ch.dtp.gpus() <= n; y *= 2) {
      DisaggCandidate d;
      d.prefill = plan_of(ptp, x);
      d.decode = plan_of(ch.dtp, y);
      d.perf = sim::simulate_decode_pool(loaded, c, d.prefill, d.decode, w, slo, passes[ch.prefill]);
      d.gpus = x * ptp.gpus() + y * ch.dtp.gpus();
      const auto& res = d.perf.result;
      d.rejected_reason = res.finished == 0     ? "serves no request"
                          : !res.load.sustained ? lags(res.load)
                                                : slo_miss(res, slo);
      if (res.finished > 0) d.score = score_of(res, d.gpus, o.objective, price);
      ch.best = d;
      if (d.rejected_reason.empty()) break;
    }
  };
  parallel_for(chains.size(), threads, [&](std::size_t k) { run_chain(chains[k]); });
  for (Chain& ch : chains)
    if (ch.best.gpus > 0) out.disagg.push_back(std::move(ch.best));
  std::stable_sort(out.disagg.begin(), out.disagg.end(), [](const DisaggCandidate& a, const DisaggCandidate& b) {
    return std::make_tuple(!a.rejected_reason.empty(), -a.score, a.gpus) <
           std::make_tuple(!b.rejected_reason.empty(), -b.score, b.gpus);
  });
  if (out.disagg.empty() || !out.disagg.front().rejected_reason.empty()) {
    out.disagg_verdict = out.disagg.empty()
        ? "disaggregation: no prefill and decode pools fit in the cluster"
        : "disaggregation: no pools keep up within the SLOs; the closest, " + pools_name(out.disagg.front()) +
              ", " + out.disagg.front().rejected_reason;
    return;
  }
  const DisaggCandidate& d = out.disagg.front();
  const auto& dr = d.perf.result;
  std::string s = fmt::format(
      "disaggregated: {} on {} GPUs: {:.0f} output tokens/s per GPU, TTFT p99 {:.0f} ms, TPOT p99 {:.1f} ms; "
      "each prompt's KV ({:.1f} MiB into a decode GPU) moves over {} in {:.2f} ms (p50).",
      pools_name(d), d.gpus, dr.output_tokens_per_s_per_gpu, dr.ttft_ms.p99, dr.tpot_ms.p99,
      d.perf.kv_bytes_per_request / 1048576.0,
      !d.perf.same_node ? std::string("the network")
      : c.intra_node.kind == hw::LinkKind::kXgmi ? std::string("Infinity Fabric inside the node")
      : c.intra_node.kind == hw::LinkKind::kPcie ? std::string("PCIe inside the node")
                                                 : std::string("NVLink inside the node"),
      d.perf.transfer_ms.p50);
  if (!out.recommended) {
    out.disagg_verdict = s + " No aggregated split keeps up within the SLOs: disaggregation wins.";
    return;
  }
  const Candidate& a = out.candidates[*out.recommended];
  const auto& ar = *a.perf;
  const bool wins = d.score > a.score;
  s += fmt::format(
      " Aggregated {}: {:.0f} per GPU, TTFT p99 {:.0f} ms, TPOT p99 {:.1f} ms on {} GPUs. {} wins on {}",
      split_name(a.memory.parallel), ar.output_tokens_per_s_per_gpu, ar.ttft_ms.p99, ar.tpot_ms.p99, a.gpus,
      wins ? "Disaggregation" : "The aggregated split", objective_name(o.objective));
  auto figure = [&](const sim::ServingResult& x, std::int64_t g) {
    switch (o.objective) {
      case Objective::kLatency: return fmt::format("TPOT p50 {:.1f} ms", x.tpot_ms.p50);
      case Objective::kTtft: return fmt::format("TTFT p50 {:.0f} ms", x.ttft_ms.p50);
      case Objective::kGoodput:
        return fmt::format("{:.3f} requests/s per GPU within the SLOs", x.goodput_requests_per_s / static_cast<double>(g));
      case Objective::kCost: return fmt::format("{:.0f} output tokens per dollar", score_of(x, g, o.objective, price));
      case Objective::kThroughput: break;
    }
    return fmt::format("{:.0f} output tokens/s per GPU", x.output_tokens_per_s_per_gpu);
  };
  // Why: decode steps that never wait for prompts, against GPUs kept for each phase.
  s += fmt::format(": {} against {}. Disaggregated, decode steps never carry a prompt: TPOT p99 {:.1f} against "
                   "{:.1f} ms; a prompt pays the transfer and a second queue: TTFT p99 {:.0f} against {:.0f} ms; "
                   "on {} GPUs against {}.",
                   wins ? figure(dr, d.gpus) : figure(ar, a.gpus), wins ? figure(ar, a.gpus) : figure(dr, d.gpus),
                   dr.tpot_ms.p99, ar.tpot_ms.p99, dr.ttft_ms.p99, ar.ttft_ms.p99, d.gpus, a.gpus);
  out.disagg_verdict = s;
}

}  // namespace

Expected<int> simulation_threads(const sim::Workload& w, int wanted) {
  // Plus 64 MiB for everything else a simulation holds (step-cost tables, the thread's stack,
  // the allocator's slack): an allowance, not a measurement.
  const std::uint64_t need = sim::simulation_bytes(w) + 64 * (std::uint64_t{1} << 20);
  const auto avail = available_memory_bytes();
  if (!avail) return wanted;
  const auto fit = static_cast<int>(std::min<std::uint64_t>(*avail / need, 1 << 16));
  if (fit < 1)
    return make_error(w.file, 0, 0,
                      fmt::format("simulating the {} requests of workload {} needs about {:.1f} "
                                  "GiB, more than the {:.1f} GiB this machine has free; use "
                                  "fewer requests (num_requests)",
                                  w.requests.size(), w.name, need / 1073741824.0,
                                  *avail / 1073741824.0));
  return std::min(wanted, fit);
}

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

ChosenSlo choose_slo(const sim::Workload& w, const SloRequest& r) {
  ChosenSlo c{{kDefaultSloTtftMs, kDefaultSloTpotMs}, kDefaultSloSource};
  if (w.slo) c = {*w.slo, "workload " + w.name};
  if (r.none) c = {{}, "--no-slo"};
  if (r.ttft_ms || r.tpot_ms) {
    if (r.ttft_ms) c.slo.ttft_ms = *r.ttft_ms;
    if (r.tpot_ms) c.slo.tpot_ms = *r.tpot_ms;
    c.source = "given" + (r.ttft_ms && r.tpot_ms ? std::string() : ", and " + c.source);
  }
  return c;
}

std::string slo_text(const ChosenSlo& s) {
  std::string t;
  if (s.slo.ttft_ms > 0) t = fmt::format("TTFT p99 <= {:g} ms", s.slo.ttft_ms);
  if (s.slo.tpot_ms > 0) t += fmt::format("{}TPOT p99 <= {:g} ms", t.empty() ? "" : ", ", s.slo.tpot_ms);
  return (t.empty() ? "none" : t) + " (" + s.source + ")";
}

sim::Workload replica_share_of(const sim::Workload& w, std::int64_t dp) { return replica_share(w, dp); }
void scale_replica_result(sim::ServingResult& r, std::int64_t dp) { scale_to_replicas(r, dp); }
std::string slo_miss_text(const sim::ServingResult& r, const sim::Slo& slo) { return slo_miss(r, slo); }
std::vector<sim::ParallelConfig> search_splits(const model::Model& m, const hw::Cluster& c,
                                               const MemoryRequest& r, bool cross_node_tp) {
  std::vector<sim::ParallelConfig> out;
  for (const Group& g : generate(m, c, r, cross_node_tp)) out.push_back(g.base);
  return out;
}

double cost_per_million_tokens(const sim::ServingResult& r, std::int64_t gpus, double price) {
  if (r.output_tokens_per_s <= 0) return 0;
  return static_cast<double>(gpus) * price / (r.output_tokens_per_s * 3600) * 1e6;
}

Expected<SearchResult> search(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                              const sim::Workload& w, const SearchOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.objective == Objective::kCost && !c.price_per_gpu_hour)
    return make_error(c.file, 0, 0, "--objective cost needs price_per_gpu_hour in the cluster file");
  // One set of options an engine searched (--engine all: each engine with its own defaults).
  SearchResult out;
  std::vector<sim::ResolvedOptions> engine_opts;
  if (o.engines.empty()) {
    auto opts = sim::resolve_options(m, c.gpu, r.serving);
    if (!opts) return opts.error();
    engine_opts.push_back(*opts);
  } else {
    for (sim::Framework f : o.engines) {
      auto opts = sim::resolve_options(m, c.gpu, sim::with_framework(r.serving, f));
      if (opts) engine_opts.push_back(*opts);
      else if (o.engines.size() == 1) return opts.error();
      else out.notes.push_back(fmt::format("{} not searched: {}", sim::framework_name(f), opts.error().message));
    }
    if (engine_opts.empty()) return make_error("", 0, 0, "no engine can serve this model (see the notes)");
  }
  const sim::ResolvedOptions* opts = &engine_opts.front();
  const model::Model loaded = sim::as_loaded(m, r.serving);
  const auto stages = static_cast<std::int64_t>(r.pp_layer_partition.size());
  if (stages > 0)
    if (auto why = sim::check_partition(loaded, r.pp_layer_partition, stages))
      return make_error("", 0, 0, *why);
  if (!r.pp_layer_partition.empty())
    out.notes.push_back(fmt::format("the PP layer partition has {} stages: only pp={} was "
                                    "searched (vLLM refuses it with any other)",
                                    r.pp_layer_partition.size(), r.pp_layer_partition.size()));
  std::vector<Group> groups;
  {
    const std::vector<Group> splits = generate(loaded, c, r, o.allow_cross_node_tp);
    for (std::size_t e = 0; e < engine_opts.size(); ++e)
      for (Group g : splits) {
        g.engine = e;
        groups.push_back(std::move(g));
      }
  }
  // Simulated: the pairs that fit whose pipeline depth either tiles the cluster (pp divides
  // GPUs / tp) or is the shallowest that fits at that tp; deeper pipelines in between only
  // trade latency for KV room the shallowest already has, and cost the most to simulate.
  const std::int64_t n = c.total_gpus();
  std::vector<bool> fits(groups.size());
  for (std::size_t k = 0; k < groups.size(); ++k)
    groups[k].fits = fits[k] = sim::simulate_memory(loaded, c.gpu, groups[k].base, engine_opts[groups[k].engine]).fits;
  std::vector<std::size_t> todo(groups.size());
  for (std::size_t k = 0; k < groups.size(); ++k) {
    todo[k] = k;
    Group& g = groups[k];
    bool shallowest = true;
    for (std::size_t j = 0; j < groups.size() && shallowest; ++j)
      shallowest = !(fits[j] && groups[j].engine == g.engine && groups[j].base.tp == g.base.tp &&
                     groups[j].base.pp < g.base.pp);
    g.simulate = (n / g.base.tp) % g.base.pp == 0 || shallowest;
  }
  auto threads = simulation_threads(
      w, o.threads > 0 ? o.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
  if (!threads) return threads.error();
  std::atomic<std::size_t> done{0};
  std::thread progress;
  std::atomic<bool> finished{false};
  if (o.progress)
    progress = std::thread([&] {
      for (int tick = 1; !finished; ++tick) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (tick % 50 == 0 && !finished)
          std::fprintf(stderr, "tpp-plan: searched %zu of %zu TP x PP pairs...\n", done.load(),
                       todo.size());
      }
    });
  parallel_for(todo.size(), *threads, [&](std::size_t i) {
    run_group(groups[todo[i]], loaded, c, w, engine_opts[groups[todo[i]].engine], o.slo.slo, o.objective);
    ++done;
  });
  finished = true;
  if (progress.joinable()) progress.join();

  // Where nothing keeps up within the SLOs, the runs stopped at a certain miss are run to the
  // end: the answer then shows how close each split came.
  {
    std::vector<Candidate*> stopped;
    bool any = false;
    for (auto& g : groups)
      for (auto& cand : g.out) {
        any = any || keeps_up(cand);
        if (cand.stopped) stopped.push_back(&cand);
      }
    if (!any && !stopped.empty()) {
      parallel_for(stopped.size(), *threads, [&](std::size_t i) {
        stopped[i]->rejected_reason.clear();
        simulate(*stopped[i], loaded, c, w, o.slo.slo);
      });
    }
  }
  const double price = c.price_per_gpu_hour ? c.price_per_gpu_hour->value : 0;
  for (auto& g : groups)
    for (auto& cand : g.out) {
      if (cand.perf || cand.stopped) ++out.simulated;
      if (!cand.perf && cand.memory.fits && cand.rejected_reason.empty())
        cand.rejected_reason = fmt::format(
            "not simulated: pp={} neither tiles the cluster at tp={} nor is the shallowest "
            "pipeline that fits",
            cand.memory.parallel.pp, cand.memory.parallel.tp);
      if (cand.perf) {
        const auto& perf = *cand.perf;
        if (perf.finished == 0)
          cand.rejected_reason = rejected_all(perf, opts->max_model_len);
        else if (!cand.sustains)
          cand.rejected_reason = lags(perf.load);
        else
          cand.rejected_reason = slo_miss(perf, o.slo.slo);
        if (perf.finished > 0) cand.score = score(cand, o.objective, price);
        cand.cost_per_mtok = cost_per_million_tokens(perf, cand.gpus, price);
      }
      out.candidates.push_back(std::move(cand));
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
                          out.runner_up ? &out.candidates[*out.runner_up] : nullptr, o,
                          m.num_layers, c, price);
  } else {
    out.why_none = why_none(out.candidates, w, o.slo);
  }
  // The pools run the recommended split's engine (with --engine all, the one that won).
  if (o.disaggregation)
    search_disaggregated(loaded, c, r, w, o,
                         out.recommended ? out.candidates[*out.recommended].memory.options : engine_opts.front(),
                         *threads, out);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace tpp::planner
