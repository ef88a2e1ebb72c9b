// Measuring a machine into a cluster profile the simulator reads (tpp-profile): the GEMM
// throughput of one rank over a grid of token counts (on a model's own layer shapes when one is
// given), memory bandwidth (a large copy) and the bandwidth a weight-bound GEMM reaches, the
// cost of one operator call (the "launch"), all-reduce and send/recv by message size over the
// job's ranks (nccl-tests' columns), and the memory the communication runtime holds. Every
// figure goes into the profile with the measurement as its source.
#pragma once

#include <array>
#include <map>
#include <cstdint>
#include <string>
#include <vector>

#include "executor/backend.h"
#include "model/model.h"

namespace tpp::exec {

struct GemmPoint {
  std::int64_t m = 0;
  double seconds = 0;      // the median of the repeats, for every GEMM of the set at m rows
  double flops = 0;        // 2 m n k summed over the set
  double flops_per_s = 0;  // flops / seconds
};

struct CollectivePoint {
  std::int64_t bytes = 0;
  double time_us = 0;       // the median of the repeats (send/recv: one way)
  double algbw_GBps = 0;    // bytes / time
  double busbw_GBps = 0;    // algbw x 2(n-1)/n for all-reduce, 1 for send/recv (nccl-tests)
};
// A point in nccl-tests' terms: `seconds` a call, busbw = algbw x `bus_factor` (2(n-1)/n for an
// all-reduce over n ranks, 1 for send/recv; nccl-tests doc/PERFORMANCE.md).
CollectivePoint collective_point(std::int64_t bytes, double seconds, double bus_factor);

struct Profile {
  std::string host;
  int cores = 0, ranks = 0;
  std::vector<GemmPoint> gemm;
  double peak_flops_per_s = 0;         // the best GEMM rate seen
  double copy_GBps = 0;                // read + write bytes of a large copy per second
  double gemm_memory_fraction = 0;     // a weight-bound GEMM's bytes/s over copy_GBps
  double launch_us = 0;                // one operator call at the smallest sizes
  std::vector<CollectivePoint> all_reduce, send_recv;  // all_reduce over `ranks`
  std::vector<std::pair<int, std::vector<CollectivePoint>>> all_reduce_smaller;  // fewer ranks
  double runtime_memory_GiB = 0;       // resident growth from the communication runtime
  std::string gemm_shapes;             // what the GEMM set was
  // The operators of a forward pass of the model (profile_model): the step model's figure for
  // each over the time it took, on decode and prefill batches of every size in the grid.
  struct ForwardPoint {
    std::int64_t tokens = 0;
    int tp = 1;                      // the split whose rank-0 share was timed
    double elem_bytes_per_token = 0; // the step model's element-wise bytes, a token and layer
    bool decode = false;
    double gemm_s = 0, attention_s = 0, rest_s = 0;               // measured
    double model_gemm_s = 0, model_attention_s = 0, model_elem_s = 0;  // at efficiency 1
  };
  std::vector<ForwardPoint> forward;
  std::vector<std::pair<double, double>> gemm_efficiency;  // (tokens, fraction of peak)
  // Per GEMM of the forward, by its weight matrix's bytes and its rows: (bytes, tokens, fraction).
  std::vector<std::array<double, 3>> gemm_by_size;
  std::map<std::pair<std::int64_t, std::int64_t>, std::vector<double>> gemm_samples;  // (bytes, rows)
  // The element-wise rest by its bytes a token and layer and the tokens: (bytes, tokens, fraction).
  std::vector<std::array<double, 3>> elementwise_by_size;
  double attention_decode = 0, attention_prefill = 0, elementwise = 0;
  std::string forward_model;  // the model whose forward was measured
  double collective_wait_us = 0;  // per TP collective inside a forward (profile_collective_wait)
  double storage_read_GBps = 0;   // a cold read of a file where the profile is written; 0: none
};

// Rank 0's compute figures (single thread); the model's tp = 1 layer GEMMs when `m` is given.
void profile_compute(Backend& b, const model::Model* m, Profile& p);
// A single-rank forward pass of `m` on decode batches (1 to 64 sequences of 128 tokens) and on
// prefills (128 to 2,048 tokens): GEMM, attention and everything else timed apart, beside the
// step model's figure for each at efficiency 1 on this machine's peak and bandwidth. Gives the
// GEMM efficiency by token count (in the forward's own cache state), the attention
// multipliers, and, from a straight-line fit of the rest against its modelled bytes, the
// element-wise bandwidth and the cost of a kernel ("launch"). Needs profile_compute first.
// `tp` > 1: TP rank 0's share of the forward of that split, timed alone (its collectives
// skipped), so that the operators are measured at the shapes a rank of the split computes.
void profile_model(Backend& b, const model::Model& m, Profile& p, int tp = 1);
// From every forward measured: the GEMM efficiency by tokens (tp = 1) and by weight size and
// tokens (all), the attention multipliers, the element-wise efficiency and kernel cost (a line
// through tp = 1's points) and the element-wise efficiency by bytes a token and tokens (all).
void fit_forward(const model::Model& m, Profile& p);

// Every rank takes part; rank 0's figures are the result. Ranks < 2: nothing measured.
std::optional<Error> profile_collectives(Comm& comm, Profile& p);

// Every rank runs a TP forward of `m` over all the ranks (decode batches of 1 to 64 sequences)
// and times each collective inside it; the mean over ranks of the median excess of a call over
// the tight-loop time of its size (p.all_reduce, measured first) is the wait a collective pays
// for the ranks that arrive later. Ranks < 2: nothing measured.
std::optional<Error> profile_collective_wait(Comm& comm, const model::Model& m, Profile& p);

// The profile as a cluster YAML: one node of `ranks` "GPUs" (one rank each), memory_GiB each.
std::string profile_yaml(const Profile& p, const std::string& name, double memory_GiB,
                         const std::string& date);
// nccl-tests' table: size count type time algbw busbw, one row a size.
std::string collective_table(const std::vector<CollectivePoint>& pts, const std::string& op,
                             int ranks);

}  // namespace tpp::exec
