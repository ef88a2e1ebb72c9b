#include "simulator/disagg.h"

#include <algorithm>

#include "simulator/collective.h"
#include "simulator/step_cost.h"

namespace tpp::sim {
namespace {

StepCostModel cost_of(const model::Model& loaded, const hw::Cluster& c, const MemoryPlan& plan) {
  ParallelConfig one = plan.parallel;
  one.dp = 1;
  return StepCostModel(loaded, c, one, plan.options);
}

}  // namespace

PrefillPass simulate_prefill_pool(const model::Model& loaded, const hw::Cluster& c, const MemoryPlan& prefill,
                                  const Workload& w, const Slo& slo) {
  Workload pw = w;
  for (auto& q : pw.requests) q.output_tokens = 1;
  const StepCostModel cost = cost_of(loaded, c, prefill);
  std::vector<std::vector<Seq>> seqs;
  PrefillPass pass;
  // The prefill pool answers for TTFT only; its TPOT is meaningless (one token).
  pass.result = simulate_serving(cost, prefill, pw, Slo{slo.ttft_ms, 0}, &seqs);
  pass.ready_s.assign(w.requests.size(), -1);
  const std::size_t dp = seqs.size();
  for (std::size_t d = 0; d < dp; ++d)
    for (std::size_t j = 0; j < seqs[d].size(); ++j) {
      const std::size_t k = d + j * dp;
      if (k < pass.ready_s.size() && seqs[d][j].finished) pass.ready_s[k] = seqs[d][j].first_token_s;
    }
  return pass;
}

DisaggResult simulate_decode_pool(const model::Model& loaded, const hw::Cluster& c, const MemoryPlan& prefill,
                                  const MemoryPlan& decode, const Workload& w, const Slo& slo,
                                  const PrefillPass& pass) {
  DisaggResult out;
  out.prefill = pass.result;
  const std::int64_t gpus = prefill.parallel.gpus() + decode.parallel.gpus();
  out.same_node = gpus <= c.gpus_per_node;
  // KV bytes a token on one decode rank (its stage's layers; the stage with the most), sent
  // over that GPU's link while the other ranks receive theirs.
  double per_token = 0;
  for (const auto& st : decode.stages) per_token = std::max(per_token, static_cast<double>(st.kv_bytes_per_token));
  const CollectiveModel coll(c);
  const std::int64_t ranks = out.same_node ? 2 : c.gpus_per_node + 1;
  const CollectiveConditions cond{true, false, "", 1};
  // The decode pass: requests whose prompts were prefilled, in the order their KV arrives.
  Workload dw = w;
  dw.requests.clear();
  std::vector<double> transfer_ms, original;
  std::vector<std::size_t> index;
  double bytes_sum = 0;
  for (std::size_t k = 0; k < w.requests.size(); ++k) {
    if (pass.ready_s[k] < 0) continue;
    Request q = w.requests[k];
    const double bytes = per_token * static_cast<double>(q.input_tokens);
    const double t = coll.time(Collective::kSendRecv, bytes, ranks, cond).seconds;
    transfer_ms.push_back(t * 1e3);
    bytes_sum += bytes;
    q.arrival_s = pass.ready_s[k] + t;
    q.cached_tokens = q.input_tokens - 1;
    dw.requests.push_back(q);
    original.push_back(w.requests[k].arrival_s);
    index.push_back(k);
  }
  // By arrival at the decode pool, as its router sees them.
  std::vector<std::size_t> order(dw.requests.size());
  for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return dw.requests[a].arrival_s < dw.requests[b].arrival_s; });
  Workload sorted = dw;
  std::vector<double> sorted_original(order.size());
  for (std::size_t k = 0; k < order.size(); ++k) {
    sorted.requests[k] = dw.requests[order[k]];
    sorted.requests[k].id = static_cast<std::int64_t>(k);
    sorted_original[k] = original[order[k]];
  }
  if (!sorted.requests.empty() && sorted.requests.back().arrival_s > 0)
    sorted.rate_per_s = static_cast<double>(sorted.requests.size()) / sorted.requests.back().arrival_s;
  const StepCostModel cost = cost_of(loaded, c, decode);
  std::vector<std::vector<Seq>> seqs;
  out.decode = simulate_serving(cost, decode, sorted, slo, &seqs);
  out.transfer_ms = percentiles(transfer_ms);
  out.kv_bytes_per_request = transfer_ms.empty() ? 0 : bytes_sum / static_cast<double>(transfer_ms.size());
  // The deployment's figures: each request timed from its original arrival; the requests the
  // prefill pool refused count as refused.
  const std::size_t dp = seqs.size();
  for (std::size_t d = 0; d < dp; ++d)
    for (std::size_t j = 0; j < seqs[d].size(); ++j) {
      const std::size_t k = d + j * dp;
      if (k < sorted_original.size()) seqs[d][j].req.arrival_s = sorted_original[k];
    }
  std::vector<Seq> refused;
  for (std::size_t k = 0; k < w.requests.size(); ++k)
    if (pass.ready_s[k] < 0) {
      Seq s;
      s.req = w.requests[k];
      s.rejected = true;
      s.rejection = Rejection::kOverKvCache;
      refused.push_back(s);
    }
  std::vector<const std::vector<Seq>*> all;
  for (const auto& v : seqs) all.push_back(&v);
  all.push_back(&refused);
  std::vector<double> itl;
  summarize_requests(all, itl, gpus, slo, w.arrival == ArrivalProcess::kClosedLoop, out.result);
  out.result.itl_ms = out.decode.itl_ms;
  out.result.preemptions = out.prefill.preemptions + out.decode.preemptions;
  out.result.steps = out.prefill.steps + out.decode.steps;
  out.result.step_ms = out.decode.step_ms;
  out.result.decode_step_ms = out.decode.decode_step_ms;
  out.result.breakdown = out.decode.breakdown;
  return out;
}

DisaggResult simulate_disaggregated(const model::Model& loaded, const hw::Cluster& c, const MemoryPlan& prefill,
                                    const MemoryPlan& decode, const Workload& w, const Slo& slo) {
  return simulate_decode_pool(loaded, c, prefill, decode, w, slo, simulate_prefill_pool(loaded, c, prefill, w, slo));
}

}  // namespace tpp::sim
