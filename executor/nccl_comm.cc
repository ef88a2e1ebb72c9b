// NCCL communicators for a rank's TP and EP groups, bootstrapped over the MPI communicator that
// this one wraps; everything that is not a collective over device memory goes to that MPI comm.
//
// Streams. Collectives are issued on the CUDA backend's stream (cuda_backend_stream(), defined
// in executor/cuda_backend.cu: the stream of the most recent CUDA backend of this process), so
// that they are ordered with the operators around them and are recorded into the backend's CUDA
// graphs when it captures. The stream is looked up at every call: the communicator is built
// before the backend (the backend is built with it).
//
// Timing. A collective is only enqueued here, never waited for (the decoder synchronises at the
// end of its stage); `times.tp` gets the host time of issuing it. Calls delegated to MPI add the
// time MPI's own comm measured.
//
// Errors. Every NCCL and CUDA failure comes back as an Error naming the call, file:line and
// NCCL's own words (ncclGetErrorString, and ncclGetLastError's detail). Asynchronous NCCL
// errors (a peer or the network failing while kernels run) are polled before each collective,
// and by the CUDA backend while it waits on its stream (nccl_async_error() below). abort()
// aborts every NCCL communicator (so that no kernel of this rank waits on a peer forever) and
// then ends the job through MPI.
#include "executor/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "executor/layout.h"

namespace tpp::exec {

// Defined in executor/cuda_backend.cu (same signature there): the stream of the most recently
// created CUDA backend of this process, or null (the legacy default stream) when none exists.
cudaStream_t cuda_backend_stream();
// Defined here, declared in executor/cuda_backend.cu: an asynchronous NCCL error of this
// process's communicators as one line, or empty.
std::string nccl_async_error();

namespace {

constexpr int kTagIdTp = 0x7E50;  // the NCCL unique id of a TP group, from its first rank
constexpr int kTagIdEp = 0x7E51;  // of an EP group
constexpr int kTagIdPp = 0x7E52;  // of a pipeline (the same dp and tp rank at every stage)

std::string where(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line);
}

Error nccl_error(ncclResult_t rc, ncclComm_t comm, const char* call, const char* file, int line) {
  std::string m = std::string(call) + " failed at " + where(file, line) + ": " +
                  ncclGetErrorString(rc);
  const char* last = ncclGetLastError(comm);
  if (last && *last) m += " (" + std::string(last) + ")";
  return make_error("", 0, 0, m);
}

Error cuda_error(cudaError_t rc, const char* call, const char* file, int line) {
  return make_error("", 0, 0,
                    std::string(call) + " failed at " + where(file, line) + ": " +
                        cudaGetErrorString(rc));
}

#define TPP_NCCL(comm, call)                                                    \
  do {                                                                          \
    const ncclResult_t tpp_nccl_rc = (call);                                    \
    if (tpp_nccl_rc != ncclSuccess && tpp_nccl_rc != ncclInProgress)            \
      return nccl_error(tpp_nccl_rc, (comm), #call, __FILE__, __LINE__);        \
  } while (0)

#define TPP_CUDART(call)                                                        \
  do {                                                                          \
    const cudaError_t tpp_cuda_rc = (call);                                     \
    if (tpp_cuda_rc != cudaSuccess)                                             \
      return cuda_error(tpp_cuda_rc, #call, __FILE__, __LINE__);                \
  } while (0)

class NcclComm;
std::atomic<NcclComm*> g_live{nullptr};  // the process's communicator, for nccl_async_error

// The NCCL data of one group: its communicator (null for a group of one, or one not built),
// this rank's index and the group's size.
struct NcclGroup {
  ncclComm_t comm = nullptr;
  int index = 0, size = 1;
  bool shared = false;  // the EP group is the TP group's communicator (dp = 1)
};

class NcclComm : public Comm {
 public:
  NcclComm(Comm& mpi, int device) : mpi_(mpi), device_(device) {}
  ~NcclComm() override {
    NcclComm* self = this;
    g_live.compare_exchange_strong(self, nullptr);
    for (NcclGroup* g : {&tp_, &ep_, &pp_})
      if (g->comm && !g->shared) ncclCommDestroy(g->comm);
  }

  // Builds the groups' communicators: every rank calls this in the same order (TP, then EP),
  // and ncclCommInitRank waits for the group's other members.
  std::optional<Error> init(const sim::ParallelConfig& p) {
    TPP_CUDART(cudaSetDevice(device_));
    p_ = p;
    const Place at = place_of(mpi_.rank(), p);
    if (auto e = build(tp_group(at, p), at.tp, kTagIdTp, tp_)) return e;
    if (p.pp > 1) {  // stage hand-offs: this rank's pipeline, one member per stage
      std::vector<int> members;
      for (int s = 0; s < p.pp; ++s) members.push_back(rank_of({at.dp, s, at.tp}, p));
      if (auto e = build(members, at.pp, kTagIdPp, pp_)) return e;
    }
    if (p.expert_parallel) {
      if (p.dp == 1) {  // the EP group is the TP group (same ranks, same order)
        ep_ = tp_;
        ep_.shared = true;
      } else if (auto e = build(ep_group(at, p), ep_index(at, p), kTagIdEp, ep_)) {
        return e;
      }
    }
    g_live.store(this);
    return std::nullopt;
  }

  int rank() const override { return mpi_.rank(); }
  int size() const override { return mpi_.size(); }
  int group_size(Group g) const override { return mpi_.group_size(g); }

  std::optional<Error> all_reduce_sum(float* data, std::size_t n, Group g) override {
    if (group_size(g) == 1 || n == 0) return std::nullopt;
    if (g == Group::kWorld || !on_device(data)) {
      Delta d(*this);
      return mpi_.all_reduce_sum(data, n, g);
    }
    const NcclGroup* grp = nullptr;
    if (auto e = group(g, grp)) return e;
    const double t0 = monotonic_seconds();
    TPP_NCCL(grp->comm, ncclAllReduce(data, data, n, ncclFloat32, ncclSum, grp->comm, stream()));
    times.tp += monotonic_seconds() - t0;
    return std::nullopt;
  }

  std::optional<Error> all_gather(const float* in, std::size_t n, float* out, Group g) override {
    if (g == Group::kWorld || !on_device(out)) {
      Delta d(*this);
      return mpi_.all_gather(in, n, out, g);
    }
    if (group_size(g) == 1) {
      if (out != in && n > 0)
        TPP_CUDART(cudaMemcpyAsync(out, in, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                   stream()));
      return std::nullopt;
    }
    if (n == 0) return std::nullopt;
    const NcclGroup* grp = nullptr;
    if (auto e = group(g, grp)) return e;
    const double t0 = monotonic_seconds();
    TPP_NCCL(grp->comm, ncclAllGather(in, out, n, ncclFloat32, grp->comm, stream()));
    times.tp += monotonic_seconds() - t0;
    return std::nullopt;
  }

  // One broadcast per member, rooted at it, into its place in `out`, in one NCCL group call
  // (vLLM's all_gather of uneven sizes). Every member knows every count, so every rank skips
  // the same empty members.
  std::optional<Error> all_gather_v(const float* in, std::size_t n, float* out,
                                    const std::vector<std::size_t>& counts, Group g) override {
    if (g == Group::kWorld || !on_device(out)) {
      Delta d(*this);
      return mpi_.all_gather_v(in, n, out, counts, g);
    }
    const int members = group_size(g);
    if (static_cast<int>(counts.size()) != members)
      return make_error("", 0, 0,
                        "all_gather_v: " + std::to_string(counts.size()) +
                            " counts for a group of " + std::to_string(members) + " ranks");
    if (members == 1) {
      if (out != in && n > 0)
        TPP_CUDART(cudaMemcpyAsync(out, in, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                   stream()));
      return std::nullopt;
    }
    const NcclGroup* grp = nullptr;
    if (auto e = group(g, grp)) return e;
    if (counts[static_cast<std::size_t>(grp->index)] != n)
      return make_error("", 0, 0,
                        "all_gather_v: this rank sends " + std::to_string(n) +
                            " floats, its count says " +
                            std::to_string(counts[static_cast<std::size_t>(grp->index)]));
    const double t0 = monotonic_seconds();
    cudaStream_t s = stream();
    TPP_NCCL(grp->comm, ncclGroupStart());
    std::size_t at = 0;
    std::optional<Error> failed;
    for (int k = 0; k < members; ++k) {
      const std::size_t c = counts[static_cast<std::size_t>(k)];
      if (c > 0 && !failed) {
        const ncclResult_t rc = ncclBroadcast(k == grp->index ? static_cast<const void*>(in)
                                                              : static_cast<const void*>(out + at),
                                              out + at, c, ncclFloat32, k, grp->comm, s);
        if (rc != ncclSuccess && rc != ncclInProgress)
          failed = nccl_error(rc, grp->comm, "ncclBroadcast(...)", __FILE__, __LINE__);
      }
      at += c;
    }
    // The group is closed even after a failed member call (NCCL requires the pairing).
    const ncclResult_t end = ncclGroupEnd();
    if (failed) return failed;
    if (end != ncclSuccess && end != ncclInProgress)
      return nccl_error(end, grp->comm, "ncclGroupEnd()", __FILE__, __LINE__);
    times.tp += monotonic_seconds() - t0;
    return std::nullopt;
  }

  std::optional<Error> all_gather_sizes(std::size_t n, std::vector<std::size_t>& counts,
                                        Group g) override {
    Delta d(*this);
    return mpi_.all_gather_sizes(n, counts, g);
  }
  // Device memory to or from another stage of this rank's pipeline: NCCL send/recv on the
  // backend's stream (ordered after the kernels that wrote it, before those that read it; no
  // tags: a pipeline's peers exchange only the stage hand-offs, in order). Everything else:
  // MPI (host memory, the scheduler's messages).
  std::optional<Error> send(const void* data, std::size_t bytes, int to, int tag) override {
    int peer = -1;
    if (pp_.comm && pipeline_peer(to, peer) && on_device(data)) {
      const double t0 = monotonic_seconds();
      if (auto e = check_async()) return e;
      TPP_NCCL(pp_.comm, ncclSend(data, bytes, ncclUint8, peer, pp_.comm, stream()));
      times.pp += monotonic_seconds() - t0;
      return std::nullopt;
    }
    Delta d(*this);
    return mpi_.send(data, bytes, to, tag);
  }
  std::optional<Error> recv(void* data, std::size_t bytes, int from, int tag) override {
    int peer = -1;
    if (pp_.comm && pipeline_peer(from, peer) && on_device(data)) {
      const double t0 = monotonic_seconds();
      if (auto e = check_async()) return e;
      TPP_NCCL(pp_.comm, ncclRecv(data, bytes, ncclUint8, peer, pp_.comm, stream()));
      times.pp += monotonic_seconds() - t0;
      return std::nullopt;
    }
    Delta d(*this);
    return mpi_.recv(data, bytes, from, tag);
  }
  std::optional<std::size_t> probe(int from, int tag, bool block) override {
    return mpi_.probe(from, tag, block);
  }
  std::optional<Error> barrier() override { return mpi_.barrier(); }
  [[noreturn]] void abort(int code) override {
    // Every NCCL communicator first: kernels waiting on peers are stopped, and no peer is left
    // waiting on this rank's; then MPI ends the whole job.
    for (NcclGroup* g : {&tp_, &ep_, &pp_}) {
      if (g->comm && !g->shared) ncclCommAbort(g->comm);
      g->comm = nullptr;
    }
    mpi_.abort(code);
    std::_Exit(code);  // not reached: Comm::abort does not return
  }
  double now() const override { return mpi_.now(); }

  // An asynchronous error of one of the communicators, as one line; empty when none.
  std::string async_error() const {
    for (const NcclGroup* g : {&tp_, &ep_, &pp_}) {
      if (!g->comm) continue;
      ncclResult_t state = ncclSuccess;
      const ncclResult_t rc = ncclCommGetAsyncError(g->comm, &state);
      if (rc != ncclSuccess)
        return nccl_error(rc, g->comm, "ncclCommGetAsyncError", __FILE__, __LINE__).message;
      if (state != ncclSuccess && state != ncclInProgress)
        return nccl_error(state, g->comm, g == &tp_   ? "NCCL (TP group, asynchronous)"
                                          : g == &ep_ ? "NCCL (EP group, asynchronous)"
                                                      : "NCCL (pipeline, asynchronous)",
                          __FILE__, __LINE__)
            .message;
    }
    return {};
  }

 private:
  // Adds to this comm's times what MPI's comm measured during one delegated call.
  struct Delta {
    explicit Delta(NcclComm& c) : c_(c), t_(c.mpi_.times) {}
    ~Delta() {
      c_.times.tp += c_.mpi_.times.tp - t_.tp;
      c_.times.pp += c_.mpi_.times.pp - t_.pp;
    }
    NcclComm& c_;
    CommTimes t_;
  };

  static cudaStream_t stream() { return cuda_backend_stream(); }

  // Device memory goes through NCCL; host memory (a caller's vector) through MPI. While the
  // stream is being captured every pointer is the backend's device memory.
  static bool on_device(const void* p) {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream(), &cs) == cudaSuccess && cs != cudaStreamCaptureStatusNone)
      return true;
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
      (void)cudaGetLastError();  // not sticky: clear it
      return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
  }

  std::optional<Error> group(Group g, const NcclGroup*& out) const {
    const NcclGroup& grp = g == Group::kTp ? tp_ : ep_;
    if (!grp.comm)
      return make_error("", 0, 0,
                        std::string("no NCCL communicator for the ") +
                            (g == Group::kTp ? "TP" : "EP") + " group of " +
                            std::to_string(group_size(g)) + " ranks" +
                            (g == Group::kEp ? " (the plan has no expert parallelism)" : ""));
    const std::string async = async_error();
    if (!async.empty()) return make_error("", 0, 0, async);
    out = &grp;
    return std::nullopt;
  }

  // The group's first rank makes the unique id and sends it to the others over MPI; then every
  // member joins the communicator.
  std::optional<Error> build(const std::vector<int>& members, int index, int tag, NcclGroup& g) {
    g.index = index;
    g.size = static_cast<int>(members.size());
    if (g.size <= 1) return std::nullopt;
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (index == 0) {
      TPP_NCCL(nullptr, ncclGetUniqueId(&id));
      for (std::size_t k = 1; k < members.size(); ++k)
        if (auto e = mpi_.send(&id, sizeof id, members[k], tag)) return e;
    } else {
      if (auto e = mpi_.recv(&id, sizeof id, members[0], tag)) return e;
    }
    TPP_NCCL(nullptr, ncclCommInitRank(&g.comm, g.size, id, index));
    return std::nullopt;
  }

  // `world` is a stage of this rank's pipeline (same dp replica, same TP rank): its index there.
  bool pipeline_peer(int world, int& peer) const {
    if (world < 0 || world >= mpi_.size()) return false;
    const Place me = place_of(mpi_.rank(), p_), them = place_of(world, p_);
    if (me.dp != them.dp || me.tp != them.tp || me.pp == them.pp) return false;
    peer = them.pp;
    return true;
  }
  std::optional<Error> check_async() const {
    const std::string async = async_error();
    if (!async.empty()) return make_error("", 0, 0, async);
    return std::nullopt;
  }

  Comm& mpi_;
  int device_;
  sim::ParallelConfig p_;
  NcclGroup tp_, ep_, pp_;
};

}  // namespace

std::string nccl_async_error() {
  const NcclComm* c = g_live.load();
  return c ? c->async_error() : std::string();
}

Expected<std::unique_ptr<Comm>> make_nccl_comm(Comm& mpi, const sim::ParallelConfig& p,
                                               int device) {
  auto c = std::make_unique<NcclComm>(mpi, device);
  if (auto e = c->init(p)) return *e;
  return std::unique_ptr<Comm>(std::move(c));
}

}  // namespace tpp::exec
