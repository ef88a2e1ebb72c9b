#include "executor/layout.h"

namespace tpp::exec {

Place place_of(int rank, const sim::ParallelConfig& p) {
  const int tp = static_cast<int>(p.tp), pp = static_cast<int>(p.pp);
  return Place{rank / (tp * pp), (rank / tp) % pp, rank % tp};
}

int rank_of(const Place& at, const sim::ParallelConfig& p) {
  return (at.dp * static_cast<int>(p.pp) + at.pp) * static_cast<int>(p.tp) + at.tp;
}

std::vector<int> tp_group(const Place& at, const sim::ParallelConfig& p) {
  std::vector<int> g;
  for (int t = 0; t < p.tp; ++t) g.push_back(rank_of({at.dp, at.pp, t}, p));
  return g;
}

std::vector<int> ep_group(const Place& at, const sim::ParallelConfig& p) {
  std::vector<int> g;
  for (int d = 0; d < p.dp; ++d)
    for (int t = 0; t < p.tp; ++t) g.push_back(rank_of({d, at.pp, t}, p));
  return g;
}

int ep_index(const Place& at, const sim::ParallelConfig& p) {
  return at.dp * static_cast<int>(p.tp) + at.tp;
}

}  // namespace tpp::exec
