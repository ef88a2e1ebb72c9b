// How the ranks of one plan talk: collectives over a rank's TP group and EP group, and
// point-to-point messages between any two ranks (PP stages, the scheduler's batches). The
// decoder and the engine know only this interface; MpiComm (mpi_comm.h) is the CPU backend's,
// LocalComm a job of one rank (the single-rank reference of --check, and unit tests).
// Every call returns an Error with the library's message rather than aborting; time spent in
// collectives and sends is accumulated for the measurement.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace tpp::exec {

enum class Group { kTp, kEp, kWorld };  // kWorld: every rank of the job

struct CommTimes {  // seconds
  double tp = 0;    // collectives over the TP (and EP) group
  double pp = 0;    // point-to-point sends of activations
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;  // world rank
  virtual int size() const = 0;
  virtual int group_size(Group g) const = 0;
  // Sum over the group, in place.
  virtual std::optional<Error> all_reduce_sum(float* data, std::size_t n, Group g) = 0;
  // out[k * n .. (k+1) * n) = member k's `in` (n floats each).
  virtual std::optional<Error> all_gather(const float* in, std::size_t n, float* out,
                                          Group g) = 0;
  // Variable sizes: counts[k] floats from member k, concatenated in member order.
  virtual std::optional<Error> all_gather_v(const float* in, std::size_t n, float* out,
                                            const std::vector<std::size_t>& counts, Group g) = 0;
  virtual std::optional<Error> all_gather_sizes(std::size_t n, std::vector<std::size_t>& counts,
                                                Group g) = 0;
  virtual std::optional<Error> send(const void* data, std::size_t bytes, int to, int tag) = 0;
  virtual std::optional<Error> recv(void* data, std::size_t bytes, int from, int tag) = 0;
  // The size in bytes of a message waiting from `from` with `tag`, without receiving it.
  virtual std::optional<std::size_t> probe(int from, int tag, bool block) = 0;
  // Every rank of the job reaches this point before any leaves it.
  virtual std::optional<Error> barrier() = 0;
  // Ends the whole job now, every rank (a rank that fails must not leave the others waiting).
  [[noreturn]] virtual void abort(int code) = 0;
  // Seconds since the job's common start (rank 0's clock: every rank reports on one timeline).
  virtual double now() const = 0;

  CommTimes times;
};

// A job of one rank: every group has one member, collectives copy, messages are refused.
class LocalComm : public Comm {
 public:
  LocalComm();
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int group_size(Group) const override { return 1; }
  std::optional<Error> all_reduce_sum(float*, std::size_t, Group) override { return {}; }
  std::optional<Error> all_gather(const float* in, std::size_t n, float* out, Group) override;
  std::optional<Error> all_gather_v(const float* in, std::size_t n, float* out,
                                    const std::vector<std::size_t>&, Group) override;
  std::optional<Error> all_gather_sizes(std::size_t n, std::vector<std::size_t>& counts,
                                        Group) override;
  std::optional<Error> send(const void*, std::size_t, int, int) override;
  std::optional<Error> recv(void*, std::size_t, int, int) override;
  std::optional<std::size_t> probe(int, int, bool) override { return std::nullopt; }
  std::optional<Error> barrier() override { return std::nullopt; }
  [[noreturn]] void abort(int code) override;
  double now() const override;

 private:
  double start_;
};

double monotonic_seconds();

}  // namespace tpp::exec
