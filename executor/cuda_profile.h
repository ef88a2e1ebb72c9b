// Measuring a GPU for tpp-profile --backend cuda: cuBLAS GEMMs over shapes (bf16, and fp8 e4m3
// through cuBLASLt on sm_89 and later), HBM bandwidth (a device-to-device copy and a read
// kernel), the cost of a kernel launch (eager and replayed from a CUDA graph), the element-wise
// kernels (kernels/cuda_ops.h: add_rmsnorm, silu_mul) and paged decode attention by the bytes
// they move, and, when several GPUs are visible, NCCL all-reduce and send/recv by message size
// in one process (ncclCommInitAll; nccl-tests' columns). Every time is the median of repeated
// runs after warm-ups, taken with CUDA events (the collectives: the host clock around a batch
// of calls on every device, as nccl-tests does).
//
// Raw figures only: the fractions of the datasheet's peaks are tools/tpp_profile.cc's, which
// reads the GPU from the catalog. executor/cuda_profile_none.cc, in builds without CUDA, fails
// with "built without CUDA".
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "executor/profile.h"

namespace tpp::exec {

struct CudaProfileOptions {
  int device = 0;
  // GEMM weight shapes (n, k): y[m, n] = x[m, k] W[n, k]^T; empty: one 8192 x 8192.
  std::vector<std::pair<std::int64_t, std::int64_t>> shapes;
  std::vector<std::int64_t> rows = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};
  bool fp8 = true;          // also fp8 e4m3 GEMMs where the device has them (sm_89+)
  bool collectives = true;  // NCCL over every visible device when there are two or more
  int max_devices = 8;      // the most devices the collectives use
};

struct CudaGemmTiming {
  std::int64_t m = 0, n = 0, k = 0;
  double seconds = 0;  // median of one call
};

struct CudaAttentionPoint {
  std::int64_t seqs = 0, context = 0;
  double kv_bytes = 0;  // K and V read: seqs x context x kv_heads x dim x 2 x 2 bytes (bf16)
  double seconds = 0;
  double GBps() const { return kv_bytes / seconds / 1e9; }
};

struct CudaProfile {
  std::string device_name;
  int sm_count = 0;
  double compute_capability = 0;  // 9.0
  int devices = 0;                // visible
  double memory_total_GiB = 0;    // cudaMemGetInfo's total: what vLLM multiplies
  int driver_version = 0, runtime_version = 0;
  std::string gemm_shapes;        // what the GEMM set was
  std::vector<CudaGemmTiming> gemm_bf16, gemm_fp8;  // fp8 empty: not run (fp8_note says why)
  std::string fp8_note;
  double copy_GBps = 0;           // cudaMemcpyAsync device to device, 1 GiB: read + write bytes
  double read_GBps = 0;           // a kernel reading 1 GiB (float4 loads, a sum)
  double gemm_memory_GBps = 0;    // bf16 weight-bound GEMMs (m <= 16, largest shape): bytes / s
  double launch_us = 0;           // an empty kernel, launched one by one
  double launch_graph_us = 0;     // the same replayed from a CUDA graph
  // add_rmsnorm_cuda on [rows, hidden] float32 (x and residual read, residual and y written);
  // silu_mul_cuda on [rows, 2 inter] -> [rows, inter]: bytes moved / s.
  std::int64_t rmsnorm_rows = 0, rmsnorm_cols = 0, silu_rows = 0, silu_inter = 0;
  double rmsnorm_GBps = 0, silu_mul_GBps = 0;
  // paged_attention_cuda, decode (one new token a sequence), Llama-3.1-8B's heads (32 query,
  // 8 KV, dim 128), a bf16 KV pool of 16-token blocks.
  std::int64_t attention_q_heads = 32, attention_kv_heads = 8, attention_dim = 128;
  std::vector<CudaAttentionPoint> attention;
  // NCCL in one process over `collective_ranks` devices (0: not measured; why in
  // collectives_note).
  int collective_ranks = 0;
  std::string collectives_note, nccl_version;
  std::vector<CollectivePoint> all_reduce, send_recv;
};

// The name of device `device` as CUDA reports it ("NVIDIA H200"), or why there is none.
Expected<std::string> cuda_device_name(int device);

// Measures device `o.device`. An error (one line) when this build has no CUDA, no device is
// visible, or a CUDA, cuBLAS or NCCL call fails.
Expected<CudaProfile> profile_cuda(const CudaProfileOptions& o);

}  // namespace tpp::exec
