#include "simulator/serving.h"

#include <algorithm>
#include <cmath>
#include <limits>

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
  std::vector<StageTime> time;
  std::vector<InFlight> in_flight;
};

struct Loop {
  const StepCostModel& cost;
  const MemoryPlan& plan;
  std::size_t max_in_flight;
  std::vector<Replica> engines;
  std::vector<double> itl;
  std::int64_t steps = 0;
  std::size_t max_in_flight_seen = 0;
  double kv_area = 0, kv_max = 0, last_t = 0;

  // Starts `b` on engine `e` at `t`: each stage starts when the batch arrives from the previous
  // stage and the stage is free; its send to the next stage delays the arrival there.
  void launch(Replica& e, Batch b, double t) {
    double arrive = t;
    for (std::size_t s = 0; s < e.stage_free.size(); ++s) {
      const StepCost c = cost.cost(s, b.shape);
      const double start = std::max(arrive, e.stage_free[s]);
      // The send to the next stage is on the stage's stream: its next step waits for it.
      const double busy = c.compute() + c.tp_comm + c.ep_comm + c.pp_comm;
      e.stage_free[s] = start + busy;
      arrive = start + busy;
      e.time[s].compute += c.compute();
      e.time[s].tp_comm += c.tp_comm;
      e.time[s].ep_comm += c.ep_comm;
      e.time[s].pp_comm += c.pp_comm;
    }
    e.in_flight.push_back({std::move(b), arrive});
    max_in_flight_seen = std::max(max_in_flight_seen, e.in_flight.size());
    ++steps;
  }

  void try_schedule(Replica& e, double t) {
    while (e.in_flight.size() < max_in_flight && e.stage_free[0] <= t) {
      Batch b = e.sched.schedule();
      if (b.empty()) return;
      launch(e, std::move(b), t);
    }
  }

  void track_kv(double t) {
    double used = 0;
    for (const Replica& e : engines) used += static_cast<double>(e.sched.used_blocks());
    used /= static_cast<double>(engines.size() * static_cast<std::size_t>(plan.gpu_blocks));
    kv_area += used * (t - last_t);
    kv_max = std::max(kv_max, used);
    last_t = t;
  }
};

std::size_t least_loaded(const std::vector<Replica>& engines) {
  std::size_t best = 0;
  for (std::size_t k = 1; k < engines.size(); ++k)
    if (engines[k].sched.unfinished() < engines[best].sched.unfinished()) best = k;
  return best;
}

void fill_result(ServingResult& r, Loop& loop, const Slo& slo) {
  const ParallelConfig& p = loop.plan.parallel;
  std::vector<double> ttft, tpot, e2e;
  double first_arrival = kNever, last_finish = 0, out_tokens = 0, all_tokens = 0, good = 0;
  for (const Replica& e : loop.engines) {
    for (const Seq& s : e.sched.seqs()) {
      ++r.requests;
      if (s.rejected) {
        ++r.rejected;
        (s.rejection == Rejection::kOverMaxModelLen ? r.rejected_over_max_model_len
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
    r.preemptions += e.sched.preemptions();
  }
  r.makespan_s = r.finished > 0 ? last_finish - first_arrival : 0;
  const double span = r.makespan_s > 0 ? r.makespan_s : 1;
  const double gpus = static_cast<double>(p.tp * p.pp * p.dp);
  r.throughput_requests_per_s = static_cast<double>(r.finished) / span;
  r.output_tokens_per_s = out_tokens / span;
  r.total_tokens_per_s = all_tokens / span;
  r.output_tokens_per_s_per_gpu = r.output_tokens_per_s / gpus;
  r.total_tokens_per_s_per_gpu = r.total_tokens_per_s / gpus;
  r.goodput_requests_per_s = good / span;
  r.ttft_ms = percentiles(ttft);
  r.tpot_ms = percentiles(tpot);
  r.itl_ms = percentiles(loop.itl);
  r.e2e_ms = percentiles(e2e);
  r.steps = loop.steps;
  r.max_batches_in_flight = static_cast<std::int64_t>(loop.max_in_flight_seen);
  r.kv_utilization_mean = loop.last_t > 0 ? loop.kv_area / loop.last_t : 0;
  r.kv_utilization_max = loop.kv_max;
  const std::size_t stages = loop.engines.front().time.size();
  r.breakdown.assign(stages, StageTime{});
  const double n = static_cast<double>(loop.engines.size());
  for (const Replica& e : loop.engines)
    for (std::size_t s = 0; s < stages; ++s) {
      const StageTime& t = e.time[s];
      StageTime& o = r.breakdown[s];
      o.compute += t.compute / n;
      o.tp_comm += t.tp_comm / n;
      o.ep_comm += t.ep_comm / n;
      o.pp_comm += t.pp_comm / n;
    }
  for (StageTime& o : r.breakdown)  // the rest of the makespan: the parts add up to it
    o.bubble = std::max(0.0, r.makespan_s - o.compute - o.tp_comm - o.ep_comm - o.pp_comm);
}

// Backlogs and rates over the second half of the arrival window (serving.h, LoadCheck).
LoadCheck check_load(const std::vector<Replica>& engines, bool closed) {
  LoadCheck c;
  double first = kNever, last = -kNever;
  for (const Replica& e : engines)
    for (const Seq& s : e.sched.seqs())
      if (!s.rejected) {
        first = std::min(first, s.req.arrival_s);
        last = std::max(last, s.req.arrival_s);
      }
  if (closed || !(last > first)) return c;
  const double mid = first + (last - first) / 2;
  double arrived = 0, served = 0;
  for (const Replica& e : engines)
    for (const Seq& s : e.sched.seqs()) {
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
  auto rank = [&](double q) {
    std::size_t k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    k = std::min(v.size() - 1, k == 0 ? 0 : k - 1);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
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

ServingResult simulate_serving(const StepCostModel& cost, const MemoryPlan& plan,
                               const Workload& w, const Slo& slo) {
  const ParallelConfig& p = plan.parallel;
  const ResolvedOptions& o = plan.options;
  SchedulerConfig sc{o.max_num_seqs, o.max_num_batched_tokens, o.block_size, plan.gpu_blocks,
                     o.max_model_len};
  Loop loop{cost, plan, static_cast<std::size_t>(p.pp), {}, {}, 0, 0, 0, 0, 0};
  for (std::int64_t d = 0; d < p.dp; ++d)
    loop.engines.push_back(Replica{Scheduler(sc), std::vector<double>(cost.num_stages(), 0.0),
                                  std::vector<StageTime>(cost.num_stages()), {}});
  const auto& reqs = w.requests;
  std::size_t gaps = 0;  // reserved whole: no doubling of the largest vector at its peak
  for (const Request& q : reqs) gaps += static_cast<std::size_t>(q.output_tokens - 1);
  loop.itl.reserve(gaps);
  for (Replica& e : loop.engines) e.sched.reserve(reqs.size() / loop.engines.size() + 1);
  const bool closed = w.arrival == ArrivalProcess::kClosedLoop;
  std::size_t next = 0;
  std::int64_t releasable = closed ? w.concurrency : 0;  // closed loop: free slots
  double t = 0;
  while (true) {
    // Arrivals up to t (a closed loop releases one request per free slot, at t).
    while (next < reqs.size() && (closed ? releasable > 0 : reqs[next].arrival_s <= t)) {
      Replica& e = loop.engines[least_loaded(loop.engines)];
      e.sched.add(reqs[next], closed ? t : reqs[next].arrival_s);
      if (closed && e.sched.seqs().back().rejected) ++releasable;
      --releasable;
      ++next;
    }
    for (Replica& e : loop.engines) loop.try_schedule(e, t);
    // The next event: an arrival, a batch finishing, or a stage freeing for queued work.
    double next_t = (!closed && next < reqs.size()) ? reqs[next].arrival_s : kNever;
    for (const Replica& e : loop.engines) {
      for (const InFlight& f : e.in_flight) next_t = std::min(next_t, f.done_at);
      if (e.sched.has_work() && e.in_flight.size() < loop.max_in_flight && e.stage_free[0] > t)
        next_t = std::min(next_t, e.stage_free[0]);
    }
    if (next_t == kNever) break;
    loop.track_kv(next_t);
    t = next_t;
    for (Replica& e : loop.engines) {
      // Batches finish in launch order; complete every one done by t.
      while (!e.in_flight.empty() && e.in_flight.front().done_at <= t) {
        std::int64_t done = e.sched.complete(e.in_flight.front().batch, t, &loop.itl);
        if (closed) releasable += done;
        e.in_flight.erase(e.in_flight.begin());
      }
    }
  }
  ServingResult r;
  fill_result(r, loop, slo);
  r.load = check_load(loop.engines, closed);
  return r;
}

}  // namespace tpp::sim
