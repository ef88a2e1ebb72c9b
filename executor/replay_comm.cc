#include "executor/replay_comm.h"

#include <cstdlib>
#include <cstring>

namespace tpp::exec {

ReplayComm::ReplayComm(std::int64_t tp, std::int64_t ep, const sim::StepCostModel& cost)
    : tp_(tp), ep_(ep), cost_(cost), start_(monotonic_seconds()) {
  move_ = [](float* dst, const float* src, std::size_t n) {
    if (n && dst != src) std::memmove(dst, src, n * sizeof(float));
  };
}

int ReplayComm::group_size(Group g) const {
  switch (g) {
    case Group::kTp: return static_cast<int>(tp_);
    case Group::kEp: return static_cast<int>(ep_);
    case Group::kWorld: return 1;
  }
  return 1;
}

// The stand-in's own time counts as collective time (not compute); the modelled time is kept
// apart. Job-wide (kWorld) calls are the engine's bookkeeping, not the model's collectives.
std::optional<Error> ReplayComm::all_reduce_sum(float* data, std::size_t n, Group g) {
  if (g == Group::kWorld || group_size(g) <= 1) return std::nullopt;
  const double t0 = monotonic_seconds();
  move_(data, data, n);
  times.tp += monotonic_seconds() - t0;
  modeled_s += cost_.all_reduce_s(static_cast<double>(n) * cost_.activation_bytes(), group_size(g));
  ++collectives;
  return std::nullopt;
}

std::optional<Error> ReplayComm::all_gather(const float* in, std::size_t n, float* out,
                                            Group g) {
  const int members = group_size(g);
  const double t0 = monotonic_seconds();
  for (int k = 0; k < members; ++k) move_(out + static_cast<std::size_t>(k) * n, in, n);
  if (g == Group::kWorld || members <= 1) return std::nullopt;
  times.tp += monotonic_seconds() - t0;
  modeled_s += cost_.all_gather_s(static_cast<double>(n) * cost_.activation_bytes(), members);
  ++collectives;
  return std::nullopt;
}

std::optional<Error> ReplayComm::all_gather_v(const float* in, std::size_t n, float* out,
                                              const std::vector<std::size_t>& counts, Group g) {
  std::size_t at = 0;
  const double t0 = monotonic_seconds();
  for (std::size_t c : counts) {
    move_(out + at, in, std::min(c, n));
    at += c;
  }
  if (g == Group::kWorld || counts.size() <= 1) return std::nullopt;
  times.tp += monotonic_seconds() - t0;
  modeled_s += cost_.all_gather_s(static_cast<double>(n) * cost_.activation_bytes(),
                                  static_cast<std::int64_t>(counts.size()));
  ++collectives;
  return std::nullopt;
}

std::optional<Error> ReplayComm::all_gather_sizes(std::size_t n, std::vector<std::size_t>& counts,
                                                  Group g) {
  counts.assign(static_cast<std::size_t>(group_size(g)), n);
  return std::nullopt;
}

std::optional<Error> ReplayComm::send(const void*, std::size_t, int, int) {
  return Error{{}, 0, 0, "a replayed rank sends nothing (--replay-rank runs one rank alone)"};
}

std::optional<Error> ReplayComm::recv(void*, std::size_t, int, int) {
  return Error{{}, 0, 0, "a replayed rank receives nothing (--replay-rank runs one rank alone)"};
}

void ReplayComm::abort(int code) { std::_Exit(code); }

double ReplayComm::now() const { return monotonic_seconds() - start_; }

}  // namespace tpp::exec
