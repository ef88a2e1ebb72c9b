#include "planner/plan_memory.h"

#include <fmt/format.h>

namespace tpp::planner {

Expected<MemoryResult> plan_memory(const model::Model& m, const hw::Cluster& c,
                                   const MemoryRequest& r) {
  auto opts = sim::resolve_options(m, c.gpu, r.serving);
  if (!opts) return opts.error();
  const model::Model loaded = sim::as_loaded(m, r.serving);
  MemoryResult out;
  out.options = *opts;
  std::vector<sim::ParallelConfig> splits;
  if (r.tp || r.pp || r.dp) {
    sim::ParallelConfig p;
    p.tp = r.tp.value_or(1);
    p.pp = r.pp.value_or(1);
    p.dp = r.dp.value_or(1);
    p.expert_parallel = r.expert_parallel;
    p.pp_layer_partition = r.pp_layer_partition;
    if (auto why = sim::check_parallel(loaded, p)) return make_error("", 0, 0, *why);
    if (p.gpus() > c.total_gpus())
      return make_error("", 0, 0,
                        fmt::format("tp={} x pp={} x dp={} needs {} GPUs; the cluster {} has {}",
                                    p.tp, p.pp, p.dp, p.gpus(), c.name, c.total_gpus()));
    splits.push_back(p);
    out.single = true;
  } else {
    if (!r.pp_layer_partition.empty())
      return make_error("", 0, 0, "--pp-layer-partition needs --pp");
    splits = sim::enumerate_splits(loaded, c.total_gpus(), r.expert_parallel);
    if (splits.empty())
      return make_error("", 0, 0,
                        fmt::format("no split of the {} GPUs of {} is valid for {} (its {} "
                                    "attention heads and {} layers)",
                                    c.total_gpus(), c.name, m.name, m.attention.num_heads,
                                    m.num_layers));
  }
  bool any_fits = false;
  for (const auto& p : splits) {
    out.plans.push_back(sim::simulate_memory(loaded, c.gpu, p, *opts));
    any_fits = any_fits || out.plans.back().fits;
  }
  if (!out.single ? !any_fits : !out.plans.front().fits)
    out.smallest_fit = sim::smallest_fitting_split(loaded, c.gpu, c.total_gpus(),
                                                   c.gpus_per_node, *opts, r.expert_parallel);
  return out;
}

void simulate_performance(const model::Model& m, const hw::Cluster& c, const MemoryRequest& r,
                          const sim::Workload& w, const sim::Slo& slo, MemoryResult* result) {
  const model::Model loaded = sim::as_loaded(m, r.serving);
  result->performance.clear();
  for (const auto& plan : result->plans) {
    if (!plan.fits) {
      result->performance.emplace_back();
      continue;
    }
    sim::StepCostModel cost(loaded, c, plan.parallel, plan.options);
    result->performance.push_back(sim::simulate_serving(cost, plan, w, slo));
  }
}

}  // namespace tpp::planner
