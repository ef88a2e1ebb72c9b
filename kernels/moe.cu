// MoE routing, permutation and combination (cuda_ops.h); definitions: topk_softmax_ref,
// moe_permute_ref and moe_combine_ref in kernels/ops.h. All three are deterministic: no
// floating-point atomics, and the permutation's order does not depend on scheduling.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/cuda_ops.h"
#include "kernels/cuda_util.cuh"

namespace tpp::kernels {
namespace {

// ---- topk_softmax ----------------------------------------------------------------------------

constexpr int kRowsPerBlock = 4;  // one warp per row

// The reference's order: a before b when its logit is larger, or equal at a lower index.
__device__ __forceinline__ void take_better(float& v, int& i, float ov, int oi) {
  if (oi >= 0 && (i < 0 || ov > v || (ov == v && oi < i))) {
    v = ov;
    i = oi;
  }
}

// k rounds of a warp arg-max; round j takes the best expert that comes after round j - 1's pick
// in that order, so the picks are the reference's partial_sort, ties included. Lane 0 writes the
// exp(l - max) of each pick, then divides them by their sum (summed in the same order).
__global__ void topk_softmax_kernel(const float* __restrict__ logits, std::int64_t rows,
                                    int experts, int k, std::int32_t* __restrict__ ids,
                                    float* __restrict__ weights) {
  const std::int64_t r =
      static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (r >= rows) return;  // the whole warp
  const int lane = threadIdx.x & 31;
  const float* l = logits + r * experts;
  std::int32_t* id = ids + r * k;
  float* wt = weights + r * k;
  float prev_v = 0.f, mx = 0.f, sum = 0.f;
  int prev_i = -1;
  for (int j = 0; j < k; ++j) {
    float bv = 0.f;
    int bi = -1;
    for (int e = lane; e < experts; e += 32) {
      const float v = l[e];
      const bool after = prev_i < 0 || v < prev_v || (v == prev_v && e > prev_i);
      if (after && (bi < 0 || v > bv)) {  // ascending e: a strict > keeps the lower index
        bv = v;
        bi = e;
      }
    }
    for (int off = 16; off > 0; off >>= 1)
      take_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, off),
                  __shfl_xor_sync(0xffffffffu, bi, off));
    prev_v = bv;
    prev_i = bi;
    if (j == 0) mx = bv;
    if (lane == 0) {
      const float ex = expf(bv - mx);
      id[j] = bi;
      wt[j] = ex;
      sum += ex;
    }
  }
  if (lane == 0)
    for (int j = 0; j < k; ++j) wt[j] = wt[j] / sum;
}

// ---- moe_permute -----------------------------------------------------------------------------

constexpr int kSharedInts = 12 * 1024;  // 48 KiB of shared memory

// The warps of the one block a chunk takes, for `local` experts: a [warps][local] table of
// counts and the cursors must fit in shared memory.
int permute_warps(std::int64_t local) {
  if (local <= 0) return 32;
  return static_cast<int>(std::min<std::int64_t>(32, kSharedInts / local - 1));
}

// One block. Counts per local expert, their exclusive scan (offsets), then the pairs in chunks
// of blockDim.x in index order: a pair's place is its expert's cursor + the pairs of its expert
// in earlier warps of the chunk + those in earlier lanes of its warp (__match_any_sync). Index
// order is (row, slot) order, so each expert's pairs come by row, then slot: the reference's.
__global__ void moe_permute_kernel(const std::int32_t* __restrict__ ids, std::int64_t n,
                                   std::int64_t k, std::int64_t first, int local,
                                   std::int32_t* __restrict__ offsets,
                                   std::int32_t* __restrict__ src_row,
                                   std::int32_t* __restrict__ where) {
  extern __shared__ int smem[];
  int* cursor = smem;          // [local]: counts, then where the next pair of each expert goes
  int* wc = smem + local;      // [warps][local]: pairs of each expert in each warp of a chunk
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  for (int e = threadIdx.x; e < local; e += blockDim.x) cursor[e] = 0;
  for (int e = threadIdx.x; e < warps * local; e += blockDim.x) wc[e] = 0;
  __syncthreads();
  auto local_expert = [&](std::int64_t i) -> int {
    const std::int64_t le = static_cast<std::int64_t>(ids[i]) - first;
    return le >= 0 && le < local ? static_cast<int>(le) : -1;
  };
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const int le = local_expert(i);
    if (le >= 0) atomicAdd(&cursor[le], 1);  // integer counts: the same in any order
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int run = 0;
    for (int e = 0; e < local; ++e) {
      const int c = cursor[e];
      offsets[e] = run;
      cursor[e] = run;
      run += c;
    }
    offsets[local] = run;
  }
  __syncthreads();
  const unsigned lower = (1u << lane) - 1u;
  for (std::int64_t base = 0; base < n; base += blockDim.x) {
    const std::int64_t i = base + threadIdx.x;
    const int le = i < n ? local_expert(i) : -1;
    const unsigned peers = __match_any_sync(0xffffffffu, le);
    const int rank = __popc(peers & lower);
    if (le >= 0 && rank == 0) wc[warp * local + le] = __popc(peers);
    __syncthreads();
    if (le >= 0) {
      int at = cursor[le] + rank;
      for (int w = 0; w < warp; ++w) at += wc[w * local + le];
      where[i] = at;
      src_row[at] = static_cast<std::int32_t>(i / k);
    } else if (i < n) {
      where[i] = -1;
    }
    __syncthreads();
    // Advance the cursors past this chunk, and clear the table for the next.
    for (int e = threadIdx.x; e < local; e += blockDim.x) {
      int t = 0;
      for (int w = 0; w < warps; ++w) {
        t += wc[w * local + e];
        wc[w * local + e] = 0;
      }
      cursor[e] += t;
    }
    __syncthreads();
  }
}

// ---- moe_combine -----------------------------------------------------------------------------

// blockIdx.x covers (row, chunk of the row); each thread one vector of W columns, summing the
// row's pairs in slot order with separately rounded products, as the reference.
template <int W>
__global__ void moe_combine_kernel(const float* __restrict__ y,
                                   const std::int32_t* __restrict__ where,
                                   const float* __restrict__ weights, std::int64_t k,
                                   std::int64_t cols, float* __restrict__ out, unsigned chunks) {
  const std::int64_t r = blockIdx.x / chunks;
  const std::int64_t c =
      (static_cast<std::int64_t>(blockIdx.x % chunks) * blockDim.x + threadIdx.x) * W;
  if (c >= cols) return;
  Vec<W> acc;
#pragma unroll
  for (int q = 0; q < W; ++q) acc.v[q] = 0.f;
  for (std::int64_t j = 0; j < k; ++j) {
    const std::int32_t at = where[r * k + j];
    if (at < 0) continue;
    const float w = weights[r * k + j];
    const Vec<W> yv =
        *reinterpret_cast<const Vec<W>*>(y + static_cast<std::int64_t>(at) * cols + c);
#pragma unroll
    for (int q = 0; q < W; ++q) acc.v[q] = __fadd_rn(acc.v[q], __fmul_rn(w, yv.v[q]));
  }
  *reinterpret_cast<Vec<W>*>(out + r * cols + c) = acc;
}

}  // namespace

KernelStatus topk_softmax_cuda(const float* logits, std::int64_t rows, std::int64_t experts,
                               std::int64_t k, std::int32_t* ids, float* weights, Stream s) {
  if (rows <= 0) return KernelStatus::Ok();
  if (k <= 0 || k > experts || experts > 0x7fffffff)
    return fail(__FILE__, __LINE__, "topk_softmax_cuda: need 0 < k <= experts");
  const std::int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  topk_softmax_kernel<<<static_cast<unsigned>(blocks), 32 * kRowsPerBlock, 0, s>>>(
      logits, rows, static_cast<int>(experts), static_cast<int>(k), ids, weights);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus moe_permute_cuda(const std::int32_t* ids, std::int64_t rows, std::int64_t k,
                              std::int64_t first, std::int64_t local, std::int32_t* offsets,
                              std::int32_t* src_row, std::int32_t* where, Stream s) {
  if (local < 0 || rows < 0 || k < 0)
    return fail(__FILE__, __LINE__, "moe_permute_cuda: negative size");
  const int warps = permute_warps(local);
  if (warps < 1) return fail(__FILE__, __LINE__, "moe_permute_cuda: too many local experts");
  if (rows * k > 0x7fffffff) return fail(__FILE__, __LINE__, "moe_permute_cuda: too many pairs");
  const std::size_t shared = static_cast<std::size_t>((warps + 1) * local) * sizeof(int);
  moe_permute_kernel<<<1, 32 * warps, shared, s>>>(ids, rows * k, k, first, static_cast<int>(local),
                                                    offsets, src_row, where);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus moe_combine_cuda(const float* y, const std::int32_t* where, const float* weights,
                              std::int64_t rows, std::int64_t k, std::int64_t cols, float* out,
                              Stream s) {
  if (rows <= 0 || cols <= 0) return KernelStatus::Ok();
  constexpr unsigned kThreads = 256;
  const bool vec = cols % 4 == 0 && aligned16(y) && aligned16(out);
  const std::int64_t per_block = vec ? 4 * kThreads : kThreads;
  const auto chunks = static_cast<unsigned>((cols + per_block - 1) / per_block);
  const std::int64_t grid = rows * chunks;
  if (grid > 0x7fffffff) return fail(__FILE__, __LINE__, "moe_combine_cuda: too many rows");
  if (vec)
    moe_combine_kernel<4><<<static_cast<unsigned>(grid), kThreads, 0, s>>>(y, where, weights, k,
                                                                           cols, out, chunks);
  else
    moe_combine_kernel<1><<<static_cast<unsigned>(grid), kThreads, 0, s>>>(y, where, weights, k,
                                                                           cols, out, chunks);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

}  // namespace tpp::kernels
