#include "executor/mpi_comm.h"

#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <string>

#include "executor/layout.h"

namespace tpp::exec {
namespace {

// MPI's own words for an error code, with the call and where it was made.
Error mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return make_error("", 0, 0,
                    std::string(call) + " failed at " + file + ":" + std::to_string(line) +
                        ": " + std::string(text, static_cast<std::size_t>(len)));
}

#define TPP_MPI(call)                                                   \
  do {                                                                  \
    const int tpp_mpi_rc = (call);                                      \
    if (tpp_mpi_rc != MPI_SUCCESS)                                      \
      return mpi_error(tpp_mpi_rc, #call, __FILE__, __LINE__);          \
  } while (0)

void init_once(int* argc, char*** argv) {
  int ready = 0;
  MPI_Initialized(&ready);
  if (!ready) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    // Errors come back as codes, to be reported as one line naming the call.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
}

class MpiComm : public Comm {
 public:
  MpiComm(MPI_Comm tp, MPI_Comm ep, double start) : tp_(tp), ep_(ep), start_(start) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiComm() override {
    finish_sends();
    MPI_Comm_free(&tp_);
    MPI_Comm_free(&ep_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int group_size(Group g) const override {
    int n = 0;
    MPI_Comm_size(comm(g), &n);
    return n;
  }

  std::optional<Error> all_reduce_sum(float* data, std::size_t n, Group g) override {
    if (group_size(g) == 1) return std::nullopt;  // as vLLM: no collective in a group of one
    const double t0 = MPI_Wtime();
    TPP_MPI(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm(g)));
    times.tp += MPI_Wtime() - t0;
    return std::nullopt;
  }
  std::optional<Error> all_gather(const float* in, std::size_t n, float* out, Group g) override {
    if (group_size(g) == 1) {
      if (out != in) std::memcpy(out, in, n * sizeof(float));
      return std::nullopt;
    }
    const double t0 = MPI_Wtime();
    TPP_MPI(MPI_Allgather(in, static_cast<int>(n), MPI_FLOAT, out, static_cast<int>(n),
                          MPI_FLOAT, comm(g)));
    times.tp += MPI_Wtime() - t0;
    return std::nullopt;
  }
  std::optional<Error> all_gather_v(const float* in, std::size_t n, float* out,
                                    const std::vector<std::size_t>& counts, Group g) override {
    const double t0 = MPI_Wtime();
    std::vector<int> c(counts.size()), d(counts.size());
    int at = 0;
    for (std::size_t k = 0; k < counts.size(); ++k) {
      c[k] = static_cast<int>(counts[k]);
      d[k] = at;
      at += c[k];
    }
    TPP_MPI(MPI_Allgatherv(in, static_cast<int>(n), MPI_FLOAT, out, c.data(), d.data(),
                           MPI_FLOAT, comm(g)));
    times.tp += MPI_Wtime() - t0;
    return std::nullopt;
  }
  std::optional<Error> all_gather_sizes(std::size_t n, std::vector<std::size_t>& counts,
                                        Group g) override {
    const long long mine = static_cast<long long>(n);
    std::vector<long long> all(static_cast<std::size_t>(group_size(g)));
    TPP_MPI(MPI_Allgather(&mine, 1, MPI_LONG_LONG, all.data(), 1, MPI_LONG_LONG, comm(g)));
    counts.assign(all.begin(), all.end());
    return std::nullopt;
  }
  // A send does not wait for the receiver: the bytes are copied and go out while this rank
  // computes on (vLLM's stages send with isend, and its driver hands batches to the workers
  // through a queue). A blocking MPI_Send of more than the eager limit would hold the sender
  // until the receiver finished its own step and posted the receive, serialising the pipeline.
  std::optional<Error> send(const void* data, std::size_t bytes, int to, int tag) override {
    const double t0 = MPI_Wtime();
    if (auto e = reap()) return e;
    pending_.push_back({std::vector<std::uint8_t>(static_cast<const std::uint8_t*>(data),
                                                  static_cast<const std::uint8_t*>(data) + bytes),
                        MPI_REQUEST_NULL});
    auto& p = pending_.back();
    TPP_MPI(MPI_Isend(p.bytes.data(), static_cast<int>(bytes), MPI_BYTE, to, tag, MPI_COMM_WORLD,
                      &p.request));
    times.pp += MPI_Wtime() - t0;
    return std::nullopt;
  }
  std::optional<Error> recv(void* data, std::size_t bytes, int from, int tag) override {
    TPP_MPI(MPI_Recv(data, static_cast<int>(bytes), MPI_BYTE, from, tag, MPI_COMM_WORLD,
                     MPI_STATUS_IGNORE));
    return std::nullopt;
  }
  std::optional<std::size_t> probe(int from, int tag, bool block) override {
    MPI_Status st;
    int flag = 1;
    if (block)
      MPI_Probe(from, tag, MPI_COMM_WORLD, &st);
    else
      MPI_Iprobe(from, tag, MPI_COMM_WORLD, &flag, &st);
    if (!flag) return std::nullopt;
    int bytes = 0;
    MPI_Get_count(&st, MPI_BYTE, &bytes);
    return static_cast<std::size_t>(bytes);
  }
  std::optional<Error> barrier() override {
    if (auto e = finish_sends()) return e;
    TPP_MPI(MPI_Barrier(MPI_COMM_WORLD));
    return std::nullopt;
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }
  double now() const override { return MPI_Wtime() - start_; }

 private:
  struct Pending {
    std::vector<std::uint8_t> bytes;
    MPI_Request request;
  };
  // Frees the buffers of the sends that have completed.
  std::optional<Error> reap() {
    while (!pending_.empty()) {
      int done = 0;
      TPP_MPI(MPI_Test(&pending_.front().request, &done, MPI_STATUS_IGNORE));
      if (!done) break;
      pending_.pop_front();
    }
    return std::nullopt;
  }
  std::optional<Error> finish_sends() {
    for (auto& p : pending_) TPP_MPI(MPI_Wait(&p.request, MPI_STATUS_IGNORE));
    pending_.clear();
    return std::nullopt;
  }
  MPI_Comm comm(Group g) const {
    return g == Group::kTp ? tp_ : g == Group::kEp ? ep_ : MPI_COMM_WORLD;
  }
  std::deque<Pending> pending_;
  MPI_Comm tp_, ep_;
  double start_;
  int rank_ = 0, size_ = 1;
};

Expected<std::unique_ptr<Comm>> build(const sim::ParallelConfig& p) {
  int rank = 0, size = 0;
  TPP_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  TPP_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
  if (size != p.gpus())
    return make_error("", 0, 0,
                      "the plan's split tp=" + std::to_string(p.tp) + " x pp=" +
                          std::to_string(p.pp) + " x dp=" + std::to_string(p.dp) + " needs " +
                          std::to_string(p.gpus()) + " ranks, mpirun started " +
                          std::to_string(size) + " (mpirun -np " + std::to_string(p.gpus()) +
                          ", or tpp-run --launch)");
  const Place at = place_of(rank, p);
  MPI_Comm tp, ep;
  TPP_MPI(MPI_Comm_split(MPI_COMM_WORLD, at.dp * static_cast<int>(p.pp) + at.pp, at.tp, &tp));
  TPP_MPI(MPI_Comm_split(MPI_COMM_WORLD, at.pp, ep_index(at, p), &ep));
  // One timeline for every rank: rank 0's start, broadcast.
  TPP_MPI(MPI_Barrier(MPI_COMM_WORLD));
  double start = MPI_Wtime();
  TPP_MPI(MPI_Bcast(&start, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
  return std::unique_ptr<Comm>(new MpiComm(tp, ep, start));
}

}  // namespace

void mpi_world(int* argc, char*** argv, int* rank, int* size) {
  init_once(argc, argv);
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  MPI_Comm_size(MPI_COMM_WORLD, size);
}

Expected<std::unique_ptr<Comm>> make_mpi_comm(int* argc, char*** argv,
                                              const sim::ParallelConfig& p) {
  init_once(argc, argv);
  return build(p);
}

void mpi_finalize() {
  int ready = 0, done = 0;
  MPI_Initialized(&ready);
  MPI_Finalized(&done);
  if (ready && !done) MPI_Finalize();
}

}  // namespace tpp::exec
