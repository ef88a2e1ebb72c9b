// tpp-run --replay-rank R: one rank of a plan run alone, on one GPU (or CPU). Every rank of a
// TP group does the same work on the same shapes, so rank R's compute is measured without its
// peers: its shard, its stage's layers, its KV pool as planned, its replica's share of the
// requests. Each collective becomes a local stand-in that moves the same bytes through the same
// buffers (an all-reduce reads and writes its buffer in place; an all-gather writes every
// member's slot from this rank's part), and its time is taken from the plan's cluster profile
// (the step model's collective formulas), kept apart from the measured compute.
#pragma once

#include <cstdint>
#include <functional>

#include "executor/comm.h"
#include "simulator/step_cost.h"

namespace tpp::exec {

class ReplayComm : public Comm {
 public:
  // `tp` and `ep`: the plan's group sizes rank R belongs to; `cost`: the plan's step model
  // (collective times, over its activation bytes).
  ReplayComm(std::int64_t tp, std::int64_t ep, const sim::StepCostModel& cost);
  // How the stand-ins move bytes in the backend's memory: dst[0..n) = src[0..n) (in place for
  // an all-reduce). Set once the backend exists.
  void set_mover(std::function<void(float* dst, const float* src, std::size_t n)> move) {
    move_ = std::move(move);
  }

  int rank() const override { return 0; }
  int size() const override { return 1; }
  int group_size(Group g) const override;
  std::optional<Error> all_reduce_sum(float* data, std::size_t n, Group g) override;
  std::optional<Error> all_gather(const float* in, std::size_t n, float* out, Group g) override;
  std::optional<Error> all_gather_v(const float* in, std::size_t n, float* out,
                                    const std::vector<std::size_t>& counts, Group g) override;
  std::optional<Error> all_gather_sizes(std::size_t n, std::vector<std::size_t>& counts,
                                        Group g) override;
  std::optional<Error> send(const void*, std::size_t, int, int) override;
  std::optional<Error> recv(void*, std::size_t, int, int) override;
  std::optional<std::size_t> probe(int, int, bool) override { return std::nullopt; }
  std::optional<Error> barrier() override { return std::nullopt; }
  [[noreturn]] void abort(int code) override;
  double now() const override;

  // The collectives' times from the cluster profile, over the run (seconds), and their count.
  double modeled_s = 0;
  std::int64_t collectives = 0;

 private:
  std::int64_t tp_, ep_;
  const sim::StepCostModel& cost_;
  double start_;
  std::function<void(float*, const float*, std::size_t)> move_;
};

}  // namespace tpp::exec
