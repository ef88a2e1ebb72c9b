#include "simulator/serving.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "simulator/scheduler.h"

namespace tpp::sim {
namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();

struct InFlight {
  Batch batch;
  double done_at;
};

// One DP replica: a scheduler and its pipeline of stages.
struct Replica {
  Scheduler sched;
  std::vector<double> stage_free;  // when each stage can take the next batch
  std::vector<StageTime> time;       // host time (stage 0's); the rest is in kind_time
  std::vector<StageTime> kind_time;  // by the stage's kind (StepCostModel::stage_kind)
  std::deque<InFlight> in_flight;  // in launch order
};

struct Loop {
  const StepCostModel& cost;
  const MemoryPlan& plan;
  std::size_t max_in_flight;
  std::vector<Replica> engines;
  std::vector<double> itl;
  std::int64_t steps = 0;
  std::size_t max_in_flight_seen = 0;
  std::vector<double> step_ms, decode_step_ms;  // launch to done, every step / decode-only
  double kv_area = 0, kv_max = 0, last_t = 0;
  // The pipeline's picture: record_steps consecutive steps of replica 0, stage by stage, from
  // the first launched once half of the requests have arrived (`recording`); and the KV series,
  // thinned by doubling its stride whenever it fills.
  std::vector<ServingResult::Interval> intervals;
  bool recording = false;
  std::int64_t record_steps = 6, r0_recorded = 0;
  std::vector<std::pair<double, double>> kv_series;
  std::size_t kv_stride = 1, kv_seen = 0;
  std::int64_t r0_steps = 0;  // replica 0's steps launched
  // Each stage's kind (StepCostModel::stage_kind), the kinds, and this step's cost and busy
  // time of each kind.
  std::vector<std::size_t> stage_kind, kinds;
  std::vector<StepCost> kind_cost;
  std::vector<double> kind_busy;

  // Starts `b` on engine `e` at `t`: each stage starts when the batch arrives from the previous
  // stage and the stage is free; its send to the next stage delays the arrival there.
  void launch(Replica& e, Batch b, double t) {
    double arrive = t;
    const double host = cost.host_s(b.shape);
    if (stage_kind.empty()) {
      for (std::size_t s = 0; s < e.stage_free.size(); ++s) {
        stage_kind.push_back(cost.stage_kind(s));
        if (stage_kind.back() == s) kinds.push_back(s);
      }
      kind_cost.resize(stage_kind.size());
      kind_busy.resize(stage_kind.size());
    }
    // Each kind of stage once; its times once (stages of a kind add the same: fill_result
    // spreads them).
    for (std::size_t k : kinds) {
      const StepCost& c = kind_cost[k] = cost.cost(k, b.shape);
      // The send to the next stage is on the stage's stream: its next step waits for it.
      kind_busy[k] = c.compute() + c.tp_comm + c.ep_comm + c.pp_comm;
      e.kind_time[k].compute += c.compute();
      e.kind_time[k].tp_comm += c.tp_comm;
      e.kind_time[k].ep_comm += c.ep_comm;
      e.kind_time[k].pp_comm += c.pp_comm;
    }
    const bool record = &e == &engines.front() && recording && r0_recorded < record_steps;
    for (std::size_t s = 0; s < e.stage_free.size(); ++s) {
      const std::size_t k = stage_kind[s];
      double start = std::max(arrive, e.stage_free[s]);
      double busy = kind_busy[k];
      double host_wait = 0;  // the engine's host time this stage waits before its GPU work
      if (s == 0) {
        // The engine's host prepares the step before the GPU runs it, or (overlapped) while the
        // GPU runs the one before, which then waits only for what is left of it.
        const double wait = cost.host_overlapped()
                                ? std::max(0.0, host - busy) + cost.host_gap_s()
                                : host;
        e.time[s].host += wait;
        if (cost.host_overlapped()) busy += wait;
        else start += wait;
        host_wait = wait;
      }
      if (record) {
        const StepCost& c = kind_cost[k];
        intervals.push_back({r0_steps, static_cast<std::int64_t>(s),
                             cost.host_overlapped() ? start : start - host_wait, host_wait,
                             c.compute(), c.tp_comm + c.ep_comm, c.pp_comm});
      }
      e.stage_free[s] = start + busy;
      arrive = start + busy;
    }
    if (&e == &engines.front()) {
      if (recording && r0_recorded < record_steps) ++r0_recorded;
      ++r0_steps;
    }
    step_ms.push_back((arrive - t) * 1e3);
    if (b.shape.prefill_tokens == 0) decode_step_ms.push_back((arrive - t) * 1e3);
    e.in_flight.push_back({std::move(b), arrive});
    max_in_flight_seen = std::max(max_in_flight_seen, e.in_flight.size());
    ++steps;
  }

  // Returns whether the scheduler had work but gave an empty batch: it may have preempted or
  // retracted requests doing so, and then another call can schedule without any event of this
  // replica's, so the loop asks it again at every event (as it asks every replica with DP 1).
  bool try_schedule(Replica& e, double t) {
    while (e.in_flight.size() < max_in_flight && e.stage_free[0] <= t) {
      if (!e.sched.can_schedule()) {
        e.sched.idle();
        return false;
      }
      Batch b = e.sched.schedule();
      if (b.empty()) {
        e.sched.recycle(std::move(b));
        return true;
      }
      launch(e, std::move(b), t);
    }
    return false;
  }

  // `used_blocks`: every replica's, summed.
  void track_kv(double t, std::int64_t used_blocks) {
    double used = static_cast<double>(used_blocks);
    used /= static_cast<double>(engines.size() * static_cast<std::size_t>(plan.gpu_blocks));
    kv_area += used * (t - last_t);
    kv_max = std::max(kv_max, used);
    last_t = t;
    if (kv_seen++ % kv_stride == 0) {
      kv_series.emplace_back(t, used);
      if (kv_series.size() >= 2 * ServingResult::kKvSeriesPoints) {
        std::size_t k = 0;
        for (std::size_t i = 0; i < kv_series.size(); i += 2) kv_series[k++] = kv_series[i];
        kv_series.resize(k);
        kv_stride *= 2;
      }
    }
  }
};

void fill_result(ServingResult& r, Loop& loop, const Slo& slo, bool closed) {
  std::vector<const std::vector<Seq>*> seqs;
  for (const Replica& e : loop.engines) {
    seqs.push_back(&e.sched.seqs());
    r.preemptions += e.sched.preemptions();
  }
  summarize_requests(seqs, loop.itl, loop.plan.parallel.gpus(), slo, closed, r);
  r.steps = loop.steps;
  r.max_batches_in_flight = static_cast<std::int64_t>(loop.max_in_flight_seen);
  r.step_ms = percentiles(loop.step_ms);
  r.decode_step_ms = percentiles(loop.decode_step_ms);
  r.kv_utilization_mean = loop.last_t > 0 ? loop.kv_area / loop.last_t : 0;
  r.kv_utilization_max = loop.kv_max;
  std::vector<std::vector<StageTime>> per_replica;
  for (const Replica& e : loop.engines) {
    std::vector<StageTime> t = e.time;
    for (std::size_t s = 0; s < t.size(); ++s) {
      const StageTime& k = e.kind_time[loop.cost.stage_kind(s)];
      t[s].compute = k.compute;
      t[s].tp_comm = k.tp_comm;
      t[s].ep_comm = k.ep_comm;
      t[s].pp_comm = k.pp_comm;
    }
    per_replica.push_back(std::move(t));
  }
  r.breakdown = average_breakdown(per_replica, r.makespan_s);
  r.timeline = std::move(loop.intervals);
  r.kv_series = std::move(loop.kv_series);
  if (r.kv_series.size() > ServingResult::kKvSeriesPoints) {
    std::vector<std::pair<double, double>> thin;
    const double stride = static_cast<double>(r.kv_series.size()) / ServingResult::kKvSeriesPoints;
    for (std::size_t k = 0; k < ServingResult::kKvSeriesPoints; ++k)
      thin.push_back(r.kv_series[static_cast<std::size_t>(static_cast<double>(k) * stride)]);
    r.kv_series = std::move(thin);
  }
}

// Backlogs and rates over the second half of the arrival window (serving.h, LoadCheck).
LoadCheck check_load(const std::vector<const std::vector<Seq>*>& replicas, bool closed) {
  LoadCheck c;
  double first = kNever, last = -kNever;
  for (const auto* seqs : replicas)
    for (const Seq& s : *seqs)
      if (!s.rejected) {
        first = std::min(first, s.req.arrival_s);
        last = std::max(last, s.req.arrival_s);
      }
  if (closed || !(last > first)) return c;
  const double mid = first + (last - first) / 2;
  double arrived = 0, served = 0;
  for (const auto* seqs : replicas)
    for (const Seq& s : *seqs) {
      if (s.rejected) continue;
      const double a = s.req.arrival_s, f = s.finished ? s.finish_s : kNever;
      if (a > mid) arrived += 1;
      if (f > mid && f <= last) served += 1;
      if (a <= mid && f > mid) c.backlog_mid += 1;
      if (a <= last && f > last) c.backlog_end += 1;
    }
  c.applies = true;
  c.window_s = last - mid;
  c.offered_requests_per_s = arrived / c.window_s;
  c.served_requests_per_s = served / c.window_s;
  const double growth = c.backlog_end - c.backlog_mid;
  c.sustained = !(c.served_requests_per_s < 0.95 * c.offered_requests_per_s &&
                  growth > 3 * std::sqrt(c.backlog_mid + c.backlog_end));
  return c;
}

}  // namespace

void summarize_requests(const std::vector<const std::vector<Seq>*>& replicas,
                        std::vector<double>& itl_ms, std::int64_t gpus, const Slo& slo,
                        bool closed_loop, ServingResult& r) {
  std::vector<double> ttft, tpot, e2e;
  double first_arrival = kNever, last_finish = 0, out_tokens = 0, all_tokens = 0, good = 0;
  for (const auto* seqs : replicas) {
    for (const Seq& s : *seqs) {
      ++r.requests;
      if (s.rejected) {
        ++r.rejected;
        (s.rejection == Rejection::kOverMaxModelLen    ? r.rejected_over_max_model_len
         : s.rejection == Rejection::kOverBatchTokens ? r.rejected_over_batch_tokens
                                                      : r.rejected_over_kv_cache) += 1;
        const std::int64_t tokens = s.req.input_tokens + s.req.output_tokens;
        if (r.shortest_rejected_tokens == 0 || tokens < r.shortest_rejected_tokens)
          r.shortest_rejected_tokens = tokens;
        continue;
      }
      first_arrival = std::min(first_arrival, s.req.arrival_s);
      if (!s.finished) continue;
      ++r.finished;
      last_finish = std::max(last_finish, s.finish_s);
      const double t1 = (s.first_token_s - s.req.arrival_s) * 1e3;
      const double tp = s.generated > 1 ? (s.finish_s - s.first_token_s) * 1e3 /
                                              static_cast<double>(s.generated - 1) : 0;
      ttft.push_back(t1);
      if (s.generated > 1) tpot.push_back(tp);
      e2e.push_back((s.finish_s - s.req.arrival_s) * 1e3);
      out_tokens += static_cast<double>(s.generated);
      all_tokens += static_cast<double>(s.generated + s.req.input_tokens);
      good += (slo.ttft_ms <= 0 || t1 <= slo.ttft_ms) && (slo.tpot_ms <= 0 || tp <= slo.tpot_ms);
    }
  }
  r.makespan_s = r.finished > 0 ? last_finish - first_arrival : 0;
  const double span = r.makespan_s > 0 ? r.makespan_s : 1;
  const double g = static_cast<double>(gpus);
  r.throughput_requests_per_s = static_cast<double>(r.finished) / span;
  r.output_tokens_per_s = out_tokens / span;
  r.total_tokens_per_s = all_tokens / span;
  r.output_tokens_per_s_per_gpu = r.output_tokens_per_s / g;
  r.total_tokens_per_s_per_gpu = r.total_tokens_per_s / g;
  r.goodput_requests_per_s = good / span;
  r.ttft_ms = percentiles(ttft);
  r.tpot_ms = percentiles(tpot);
  r.itl_ms = percentiles(itl_ms);
  r.e2e_ms = percentiles(e2e);
  r.load = check_load(replicas, closed_loop);
}

std::vector<StageTime> average_breakdown(const std::vector<std::vector<StageTime>>& replicas,
                                         double makespan_s) {
  std::vector<StageTime> out(replicas.empty() ? 0 : replicas.front().size());
  const double n = static_cast<double>(replicas.size());
  for (const auto& stages : replicas)
    for (std::size_t s = 0; s < stages.size() && s < out.size(); ++s) {
      out[s].compute += stages[s].compute / n;
      out[s].tp_comm += stages[s].tp_comm / n;
      out[s].ep_comm += stages[s].ep_comm / n;
      out[s].pp_comm += stages[s].pp_comm / n;
      out[s].host += stages[s].host / n;
    }
  for (StageTime& o : out)  // the rest of the makespan: the parts add up to it
    o.bubble =
        std::max(0.0, makespan_s - o.compute - o.tp_comm - o.ep_comm - o.pp_comm - o.host);
  return out;
}

namespace {

nlohmann::json pct(const Percentiles& p) {
  return {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"mean", p.mean}};
}

}  // namespace

nlohmann::json serving_json(const ServingResult& r) {
  nlohmann::json j;
  j["throughput_requests_per_s"] = r.throughput_requests_per_s;
  j["output_tokens_per_s"] = r.output_tokens_per_s;
  j["total_tokens_per_s"] = r.total_tokens_per_s;
  j["output_tokens_per_s_per_gpu"] = r.output_tokens_per_s_per_gpu;
  j["total_tokens_per_s_per_gpu"] = r.total_tokens_per_s_per_gpu;
  j["goodput_requests_per_s"] = r.goodput_requests_per_s;
  j["ttft_ms"] = pct(r.ttft_ms);
  j["tpot_ms"] = pct(r.tpot_ms);
  j["itl_ms"] = pct(r.itl_ms);
  j["e2e_ms"] = pct(r.e2e_ms);
  j["requests"] = r.requests;
  j["finished"] = r.finished;
  j["rejected"] = r.rejected;
  j["preemptions"] = r.preemptions;
  j["steps"] = r.steps;
  j["step_ms"] = pct(r.step_ms);
  j["decode_step_ms"] = pct(r.decode_step_ms);
  j["max_batches_in_flight"] = r.max_batches_in_flight;
  j["makespan_s"] = r.makespan_s;
  j["kv_utilization_mean"] = r.kv_utilization_mean;
  j["kv_utilization_max"] = r.kv_utilization_max;
  nlohmann::json b = nlohmann::json::array();
  for (std::size_t s = 0; s < r.breakdown.size(); ++s) {
    const auto& t = r.breakdown[s];
    b.push_back({{"stage", s}, {"compute", t.compute}, {"tp_comm", t.tp_comm},
                 {"ep_comm", t.ep_comm}, {"pp_comm", t.pp_comm}, {"host", t.host},
                 {"bubble", t.bubble}});
  }
  j["breakdown"] = b;
  if (!r.timeline.empty()) {
    nlohmann::json t = nlohmann::json::array();
    for (const auto& x : r.timeline)
      t.push_back({{"step", x.step}, {"dp", 0}, {"pp", x.pp}, {"tp", 0}, {"start_s", x.start_s},
                   {"host_s", x.host_s}, {"compute_s", x.compute_s}, {"tp_comm_s", x.tp_comm_s},
                   {"pp_comm_s", x.pp_comm_s}});
    j["timeline"] = {{"stages", t}};
  }
  if (!r.kv_series.empty()) {
    nlohmann::json k = nlohmann::json::array();
    for (const auto& [t, u] : r.kv_series) k.push_back({t, u});
    j["kv_usage"] = k;
  }
  j["rejected_over_max_model_len"] = r.rejected_over_max_model_len;
  j["rejected_over_kv_cache"] = r.rejected_over_kv_cache;
  if (r.load.applies)
    j["load"] = {{"offered_requests_per_s", r.load.offered_requests_per_s},
                 {"served_requests_per_s", r.load.served_requests_per_s},
                 {"window_s", r.load.window_s},
                 {"backlog_mid", r.load.backlog_mid},
                 {"backlog_end", r.load.backlog_end},
                 {"sustained", r.load.sustained}};
  return j;
}

TimeShares time_shares(const ServingResult& r) {
  TimeShares s;
  if (r.breakdown.empty() || r.makespan_s <= 0) return s;
  const double n = static_cast<double>(r.breakdown.size());
  for (const auto& b : r.breakdown) {
    s.tp_comm += 100 * b.tp_comm / r.makespan_s / n;
    s.pp_comm += 100 * b.pp_comm / r.makespan_s / n;
    s.bubble += 100 * b.bubble / r.makespan_s / n;
  }
  return s;
}

Percentiles percentiles(std::vector<double>& v) {
  Percentiles p;
  if (v.empty()) return p;
  // Nearest rank: the ceil(q n)-th smallest. nth_element is linear; the ITL samples run to
  // millions, where a full sort would dominate the whole simulation.
  // Each higher rank lies in the part above the previous one: select within that part only.
  std::size_t from = 0;
  auto rank = [&](double q) {
    std::size_t k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    k = std::max(from, std::min(v.size() - 1, k == 0 ? 0 : k - 1));
    std::nth_element(v.begin() + static_cast<std::ptrdiff_t>(from),
                     v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    from = k;
    return v[k];
  };
  p.p50 = rank(0.50);
  p.p90 = rank(0.90);
  p.p99 = rank(0.99);
  double sum = 0;
  for (double x : v) sum += x;
  p.mean = sum / static_cast<double>(v.size());
  return p;
}

std::uint64_t simulation_bytes(const Workload& w) {
  std::uint64_t bytes = 0;
  for (const Request& r : w.requests)
    bytes += sizeof(Request) + sizeof(Seq) + 2 * sizeof(std::int32_t) + 3 * sizeof(double) +
             static_cast<std::uint64_t>(r.output_tokens) * sizeof(double);
  return bytes;
}

namespace {

// The fewest samples over a limit that put the p99 of n samples (percentiles()'s nearest rank)
// over it, for every n up to n_max: the ceil(0.99 n)-th smallest is over the limit once n less
// that rank, plus one, samples are.
std::int64_t p99_miss_count(std::size_t n_max) {
  std::int64_t most = 1;
  for (std::size_t n = 1; n <= n_max; ++n) {
    std::size_t k = static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(n)));
    k = std::min(n - 1, k == 0 ? 0 : k - 1);
    most = std::max(most, static_cast<std::int64_t>(n - k));
  }
  return most;
}

}  // namespace

ServingResult simulate_serving(const StepCostModel& cost, const MemoryPlan& plan,
                               const Workload& w, const Slo& slo, std::vector<std::vector<Seq>>* seqs,
                               bool stop_at_slo_miss) {
  const ParallelConfig& p = plan.parallel;
  const ResolvedOptions& o = plan.options;
  SchedulerConfig sc{o.max_num_seqs, o.max_num_batched_tokens, o.block_size, plan.gpu_blocks,
                     o.max_model_len, o.prefix_caching, o.reserve_whole_request,
                     o.chunked_prefill, o.framework == Framework::kSglang, o.max_prefill_tokens,
                     o.engine == Engine::kV1 ? plan.kv_groups : KvGroups{}};
  Loop loop{cost, plan, static_cast<std::size_t>(p.pp), {}, {}, 0, 0, {}, {}, 0, 0, 0, {}, false, 6, 0, {}, 1, 0, 0, {}, {}, {}, {}};
  for (std::int64_t d = 0; d < p.dp; ++d)
    loop.engines.push_back(Replica{Scheduler(sc), std::vector<double>(cost.num_stages(), 0.0),
                                  std::vector<StageTime>(cost.num_stages()),
                                  std::vector<StageTime>(cost.num_stages()), {}});
  const auto& reqs = w.requests;
  std::size_t gaps = 0;  // reserved whole: no doubling of the largest vector at its peak
  for (const Request& q : reqs) gaps += static_cast<std::size_t>(q.output_tokens - 1);
  loop.itl.reserve(gaps);
  for (Replica& e : loop.engines) e.sched.reserve(reqs.size() / loop.engines.size() + 1);
  const bool closed = w.arrival == ArrivalProcess::kClosedLoop;
  loop.record_steps = std::max<std::int64_t>(6, 3 * p.pp);
  std::size_t added = 0;
  // Request k goes to replica k mod dp (a round-robin balancer, as the executor splits them);
  // a closed loop keeps ceil(concurrency / dp) of each replica's requests in flight.
  const std::size_t dp = loop.engines.size();
  std::vector<std::size_t> next(dp);
  for (std::size_t d = 0; d < dp; ++d) next[d] = d;
  std::vector<std::int64_t> releasable(
      dp, closed ? (w.concurrency + static_cast<std::int64_t>(dp) - 1) / static_cast<std::int64_t>(dp)
                 : 0);
  // Each replica's next event: an arrival, a batch finishing, or a stage freeing for queued
  // work. The replicas are independent (the balancer's split is fixed), so at each time only
  // those with an event there are visited, in replica order, and those whose scheduler stalled
  // (try_schedule); the others' next events stand.
  std::vector<double> next_event(dp, 0.0);
  std::vector<char> stalled(dp, 0);  // try_schedule's answer at the replica's last visit
  std::vector<std::size_t> active;
  for (std::size_t d = 0; d < dp; ++d) active.push_back(d);
  std::int64_t used_blocks = 0;  // over the replicas, for the KV series
  // stop_at_slo_miss: finished requests over each SLO, and how many put its p99 over it (the
  // samples are at most every request; TPOT's those with two tokens or more).
  std::int64_t ttft_over = 0, tpot_over = 0, ttft_limit = 0, tpot_limit = 0;
  std::string stopped;
  if (stop_at_slo_miss) {
    std::size_t two_tokens = 0;
    for (const Request& q : reqs) two_tokens += q.output_tokens > 1 ? 1 : 0;
    ttft_limit = p99_miss_count(reqs.size());
    tpot_limit = p99_miss_count(two_tokens);
  }
  double t = 0;
  while (stopped.empty()) {
    for (std::size_t d : active) used_blocks -= loop.engines[d].sched.used_blocks();
    // Arrivals up to t (a closed loop releases one request per free slot, at t).
    for (std::size_t d : active) {
      Replica& e = loop.engines[d];
      while (next[d] < reqs.size() &&
             (closed ? releasable[d] > 0 : reqs[next[d]].arrival_s <= t)) {
        e.sched.add(reqs[next[d]], closed ? t : reqs[next[d]].arrival_s);
        if (2 * ++added >= reqs.size()) loop.recording = true;
        if (closed && e.sched.seqs().back().rejected) ++releasable[d];
        --releasable[d];
        next[d] += dp;
      }
    }
    for (std::size_t d : active) stalled[d] = loop.try_schedule(loop.engines[d], t);
    for (std::size_t d : active) {
      const Replica& e = loop.engines[d];
      double ev = kNever;
      if (!closed && next[d] < reqs.size()) ev = reqs[next[d]].arrival_s;
      // Batches finish in launch order (each stage takes them first come, first served).
      if (!e.in_flight.empty()) ev = std::min(ev, e.in_flight.front().done_at);
      if (e.sched.has_work() && e.in_flight.size() < loop.max_in_flight && e.stage_free[0] > t)
        ev = std::min(ev, e.stage_free[0]);
      next_event[d] = ev;
      used_blocks += e.sched.used_blocks();
    }
    const double next_t = *std::min_element(next_event.begin(), next_event.end());
    if (next_t == kNever) break;
    loop.track_kv(next_t, used_blocks);
    t = next_t;
    active.clear();
    for (std::size_t d = 0; d < dp; ++d)
      if (next_event[d] <= t || stalled[d]) active.push_back(d);
    for (std::size_t d : active) used_blocks -= loop.engines[d].sched.used_blocks();
    for (std::size_t d : active) {
      Replica& e = loop.engines[d];
      // Batches finish in launch order; complete every one done by t.
      while (!e.in_flight.empty() && e.in_flight.front().done_at <= t) {
        std::int64_t done = e.sched.complete(e.in_flight.front().batch, t, &loop.itl);
        if (closed) releasable[d] += done;
        if (stop_at_slo_miss && done > 0)
          for (const ScheduledSeq& item : e.in_flight.front().batch.items) {
            const Seq& q = e.sched.seqs()[static_cast<std::size_t>(item.seq)];
            if (!q.finished || q.finish_s != t) continue;
            // As summarize_requests times them.
            if (slo.ttft_ms > 0 && (q.first_token_s - q.req.arrival_s) * 1e3 > slo.ttft_ms) ++ttft_over;
            if (slo.tpot_ms > 0 && q.generated > 1 &&
                (q.finish_s - q.first_token_s) * 1e3 / static_cast<double>(q.generated - 1) > slo.tpot_ms)
              ++tpot_over;
          }
        e.sched.recycle(std::move(e.in_flight.front().batch));
        e.in_flight.pop_front();
      }
    }
    for (std::size_t d : active) used_blocks += loop.engines[d].sched.used_blocks();
    if (stop_at_slo_miss && (ttft_over >= ttft_limit || tpot_over >= tpot_limit)) {
      const bool ttft = ttft_over >= ttft_limit;
      std::size_t waiting = 0;
      for (const Replica& e : loop.engines) waiting += e.sched.waiting();
      stopped = fmt::format(
          "misses the {} SLO: {} requests took over {:g} ms {}, enough to put its p99 over "
          "(simulation stopped at {:.1f} s{})",
          ttft ? "TTFT" : "TPOT", ttft ? ttft_over : tpot_over, ttft ? slo.ttft_ms : slo.tpot_ms,
          ttft ? "to their first token" : "a token", t,
          ttft ? fmt::format(", {} request{} waiting", waiting, waiting == 1 ? "" : "s") : "");
    }
  }
  ServingResult r;
  fill_result(r, loop, slo, closed);
  r.stopped = stopped;
  if (seqs)
    for (const Replica& e : loop.engines) seqs->push_back(e.sched.seqs());
  return r;
}

}  // namespace tpp::sim
