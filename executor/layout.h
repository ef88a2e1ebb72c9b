// Where a rank sits in a plan's split, as vLLM lays ranks out: TP innermost, then PP, then DP
// (rank = (dp x pp_size + pp) x tp_size + tp; vllm/distributed/parallel_state.py builds its
// groups from the same arrangement).
#pragma once

#include <vector>

#include "simulator/parallel.h"

namespace tpp::exec {

struct Place {
  int dp = 0, pp = 0, tp = 0;
};

Place place_of(int rank, const sim::ParallelConfig& p);
int rank_of(const Place& at, const sim::ParallelConfig& p);
// The world ranks of `at`'s TP group (same dp and pp), in TP order.
std::vector<int> tp_group(const Place& at, const sim::ParallelConfig& p);
// The world ranks of `at`'s expert-parallel group: every TP rank of every DP replica at `at`'s
// pipeline stage (vLLM's EP group is TP x DP), in (dp, tp) order.
std::vector<int> ep_group(const Place& at, const sim::ParallelConfig& p);
// `at`'s index in its EP group.
int ep_index(const Place& at, const sim::ParallelConfig& p);

}  // namespace tpp::exec
