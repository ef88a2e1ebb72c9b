// Paged KV cache and attention kernels (cuda_ops.h); their definitions are the CPU references
// in ops.h (kv_write_ref, latent_write_ref, paged_attention_ref, mla_attention_ref).
//
// Pools hold float or bf16 (round to nearest even on write); everything is computed in float.
//
//  - kv_write / latent_write: one thread block per (row, head) / row; rows whose slot is -1 are
//    padding and are skipped.
//  - Decode (paged_attention_cuda with max_new == 1): flash-decoding. One block of 128 threads
//    per (sequence, KV head, query-head chunk, context split); the block serves every query head
//    of a GQA group (up to 8 at once) so K and V are read once per group. Keys are walked in
//    tiles of 256: scores by groups of 8 lanes per key (16-byte vector loads), an online softmax
//    per tile, then P.V with lanes spread over the head dim (16-byte loads) and the accumulator
//    in registers. When the batch alone does not fill the GPU the context is split and a second
//    kernel merges the splits' (max, sum, output) (workspace from cudaMallocAsync on the stream).
//  - Prefill / mixed batches (max_new > 1) and MLA (any new_tokens): one tiled flash-attention
//    kernel (FP32 SIMT). A block holds M query vectors ((token, head) pairs of one KV head's
//    group; MLA: of the single latent head) in shared memory, walks key tiles of BK keys loaded
//    through the block table into shared memory, and keeps each query's output in registers with
//    an online softmax. MLA reads V from the same tile as K (the latent's first `lora` columns).
//    MLA decode batches are split over the context like the decode kernel.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "kernels/cuda_ops.h"
#include "kernels/cuda_util.cuh"

namespace tpp::kernels {
namespace {

using i64 = std::int64_t;
using i32 = std::int32_t;
using bf16 = __nv_bfloat16;

constexpr unsigned kFull = 0xffffffffu;

// ---- Element access -----------------------------------------------------------------------

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void store_elem(float* p, float x) { *p = x; }
__device__ __forceinline__ void store_elem(bf16* p, float x) { *p = __float2bfloat16_rn(x); }

// The widest vector (16 bytes) of T, in elements.
template <typename T>
__host__ __device__ constexpr int vec_of() {
  return std::is_same<T, float>::value ? 4 : 8;
}

// Loads VEC consecutive elements at p (aligned to VEC elements) as floats.
template <typename T, int VEC>
__device__ __forceinline__ void load_vec(const T* __restrict__ p, float* x) {
  if constexpr (VEC == 1) {
    x[0] = to_f(*p);
  } else if constexpr (std::is_same<T, float>::value) {
    static_assert(VEC == 4, "float vectors are float4");
    const float4 v = *reinterpret_cast<const float4*>(p);
    x[0] = v.x;
    x[1] = v.y;
    x[2] = v.z;
    x[3] = v.w;
  } else {
    static_assert(VEC == 8, "bf16 vectors are 8 wide");
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {  // element 2k is the low half (little endian)
      x[2 * k] = __uint_as_float(w[k] << 16);
      x[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
  }
}

// ---- Device properties (cached per device) ------------------------------------------------

constexpr int kMaxDevices = 64;

KernelStatus device_attr(cudaDeviceAttr attr, std::atomic<int>* cache, int* out) {
  int dev = 0;
  TPP_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev >= 0 && dev < kMaxDevices) {
    const int v = cache[dev].load(std::memory_order_relaxed);
    if (v > 0) {
      *out = v;
      return KernelStatus::Ok();
    }
  }
  int v = 0;
  TPP_CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
  if (dev >= 0 && dev < kMaxDevices) cache[dev].store(v, std::memory_order_relaxed);
  *out = v;
  return KernelStatus::Ok();
}

std::atomic<int> g_sms[kMaxDevices];
std::atomic<int> g_smem_optin[kMaxDevices];

KernelStatus sm_count(int* n) {
  return device_attr(cudaDevAttrMultiProcessorCount, g_sms, n);
}
KernelStatus smem_optin(int* n) {
  return device_attr(cudaDevAttrMaxSharedMemoryPerBlockOptin, g_smem_optin, n);
}

i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }
__host__ __device__ __forceinline__ i64 imin(i64 a, i64 b) { return a < b ? a : b; }

// How many context splits a launch of `blocks` blocks gets: enough for about 4 blocks per SM,
// each split at least `min_len` keys.
KernelStatus choose_splits(i64 blocks, i64 max_context, i64 min_len, i64* splits, i64* len) {
  int sms = 0;
  KernelStatus st = sm_count(&sms);
  if (!st.ok) return st;
  const i64 ctx = std::max<i64>(max_context, 1);
  const i64 max_splits = std::max<i64>(1, ceil_div(ctx, min_len));
  i64 s = 1;
  const i64 target = 4 * static_cast<i64>(std::max(sms, 1));
  if (blocks < target) s = std::min(max_splits, ceil_div(target, std::max<i64>(blocks, 1)));
  s = std::min<i64>(s, 65535);
  i64 l = ceil_div(ctx, s);
  l = ceil_div(l, min_len) * min_len;  // a multiple of the tile
  *len = l;
  *splits = ceil_div(ctx, l);
  return KernelStatus::Ok();
}

// ---- KV and latent writes -----------------------------------------------------------------

// Block (row, head): copies the row's K and V for that head to the pool (float -> T).
template <typename T>
__global__ void kv_write_kernel(const float* __restrict__ k, const float* __restrict__ v,
                                T* __restrict__ k_pool, T* __restrict__ v_pool,
                                const i64* __restrict__ slot_mapping, i64 heads, i64 dim,
                                i64 block_size) {
  const i64 row = blockIdx.x, h = blockIdx.y;
  const i64 slot = slot_mapping[row];
  if (slot < 0) return;  // padding
  const i64 block = slot / block_size, off = slot % block_size;
  const i64 dst = ((block * heads + h) * block_size + off) * dim;  // kv_offset
  const i64 src = (row * heads + h) * dim;
  for (i64 d = threadIdx.x; d < dim; d += blockDim.x) {
    store_elem(k_pool + dst + d, k[src + d]);
    store_elem(v_pool + dst + d, v[src + d]);
  }
}

template <typename T>
__global__ void latent_write_kernel(const float* __restrict__ latent, T* __restrict__ pool,
                                    const i64* __restrict__ slot_mapping, i64 width) {
  const i64 row = blockIdx.x;
  const i64 slot = slot_mapping[row];
  if (slot < 0) return;
  for (i64 c = threadIdx.x; c < width; c += blockDim.x)
    store_elem(pool + slot * width + c, latent[row * width + c]);
}

// ---- Split merge --------------------------------------------------------------------------

// Merges the context splits of a decode batch: block (sequence, head). part_o holds each split's
// normalised output [seq][head][split][dv], part_ml its (max, sum) [seq][head][split][2]; a
// split with sum 0 saw no key.
__global__ void merge_splits_kernel(const float* __restrict__ part_o,
                                    const float* __restrict__ part_ml,
                                    const i32* __restrict__ row0, const i32* __restrict__ new_tokens,
                                    i64 heads, i64 dv, i64 splits, float* __restrict__ out) {
  const i64 j = blockIdx.x, h = blockIdx.y;
  if (new_tokens[j] <= 0) return;
  const i64 row = row0[j] + new_tokens[j] - 1;  // decode: the only row
  const i64 base = (j * heads + h) * splits;
  float mx = -INFINITY;
  for (i64 s = 0; s < splits; ++s)
    if (part_ml[(base + s) * 2 + 1] > 0.f) mx = fmaxf(mx, part_ml[(base + s) * 2]);
  for (i64 d = threadIdx.x; d < dv; d += blockDim.x) {
    float num = 0.f, den = 0.f;
    for (i64 s = 0; s < splits; ++s) {
      const float l = part_ml[(base + s) * 2 + 1];
      if (!(l > 0.f)) continue;
      const float w = expf(part_ml[(base + s) * 2] - mx) * l;
      num += w * part_o[(base + s) * dv + d];
      den += w;
    }
    out[(row * heads + h) * dv + d] = den > 0.f ? num / den : 0.f;
  }
}

// ---- Decode (flash-decoding) --------------------------------------------------------------

constexpr int kDecThreads = 128;
constexpr int kDecWarps = kDecThreads / 32;
constexpr int kDecTile = 256;    // keys per tile
constexpr int kDecGroup = 8;     // lanes per key when scoring
constexpr int kDecMaxDim = 256;  // the largest head dim

struct DecodeArgs {
  const float* q;
  const void* k_pool;
  const void* v_pool;
  const i32* block_tables;
  const i32* row0;
  const i32* new_tokens;
  const i32* context;
  i64 max_blocks, q_heads, kv_heads, dim, block_size;
  i64 group;    // q_heads / kv_heads
  i64 gchunks;  // blocks per KV head (query heads in chunks of GMAX)
  float scale;
  i64 split_len, splits;
  float* out;      // splits == 1
  float* part_o;   // splits > 1
  float* part_ml;  // splits > 1
};

// Block (sequence, KV head x head chunk, split). T: pool element; VEC: elements per vector load
// (16 bytes, or 1 where dim is not a multiple); GMAX: query heads served per block; DMAX: the
// largest head dim served (registers are sized by it).
template <typename T, int VEC, int GMAX, int DMAX>
__global__ void __launch_bounds__(kDecThreads) decode_kernel(const DecodeArgs a) {
  constexpr int kCpl1 = (DMAX / VEC + kDecGroup - 1) / kDecGroup;  // score chunks a lane
  constexpr int kCpl3 = (DMAX / VEC + 31) / 32;                    // P.V chunks a lane
  __shared__ float q_s[GMAX][DMAX];
  __shared__ float buf[GMAX][kDecTile > DMAX ? kDecTile : DMAX];  // scores; then the sums
  __shared__ float m_s[GMAX], l_s[GMAX], alpha_s[GMAX];

  const i64 j = blockIdx.x;
  const i64 kvh = blockIdx.y / a.gchunks, gc = blockIdx.y % a.gchunks;
  const i64 split = blockIdx.z;
  const i64 n = a.new_tokens[j];
  if (n <= 0) return;
  const i64 row = a.row0[j] + n - 1;
  const i64 len = static_cast<i64>(a.context[j]) + n;  // keys 0 .. len - 1
  const i64 k_begin = split * a.split_len;
  const i64 k_end = split == a.splits - 1 ? len : imin(len, k_begin + a.split_len);
  const i64 h0 = kvh * a.group + gc * GMAX;
  const int G = static_cast<int>(imin(GMAX, a.group - gc * GMAX));
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const i64 dim = a.dim;
  const int nc = static_cast<int>(dim / VEC);  // vectors per head row

  if (k_begin >= k_end) {  // this split has no key (only with splits > 1)
    if (tid < G) {
      const i64 at = ((j * a.q_heads + h0 + tid) * a.splits + split);
      a.part_ml[at * 2] = -INFINITY;
      a.part_ml[at * 2 + 1] = 0.f;
    }
    return;
  }

  for (i64 e = tid; e < G * dim; e += kDecThreads) {
    const i64 g = e / dim, d = e % dim;
    q_s[g][d] = a.q[(row * a.q_heads + h0 + g) * dim + d];
  }
  if (tid < GMAX) {
    m_s[tid] = -INFINITY;
    l_s[tid] = 0.f;
  }
  __syncthreads();

  const T* __restrict__ kp = static_cast<const T*>(a.k_pool);
  const T* __restrict__ vp = static_cast<const T*>(a.v_pool);
  const i32* __restrict__ bt = a.block_tables + j * a.max_blocks;
  const i64 bs = a.block_size;
  auto offset = [&](i64 t) {  // kv_offset(block of t, kvh, t % bs)
    return ((static_cast<i64>(bt[t / bs]) * a.kv_heads + kvh) * bs + t % bs) * dim;
  };

  // P.V layout: lane owns vector chunks c0 + 32k; S keys per warp at once when a row is narrower
  // than a warp (lanes sub = lane / nc).
  const int S = nc >= 32 ? 1 : 32 / nc;
  const int sub = nc >= 32 ? 0 : lane / nc;
  const int c0 = nc >= 32 ? lane : lane % nc;
  const bool pv_lane = sub < S;
  float acc[GMAX][kCpl3][VEC];
#pragma unroll
  for (int g = 0; g < GMAX; ++g)
#pragma unroll
    for (int k = 0; k < kCpl3; ++k)
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc[g][k][e] = 0.f;

  const int grp = tid / kDecGroup, gl = tid % kDecGroup;
  constexpr int kKeysAtOnce = kDecThreads / kDecGroup;

  for (i64 t0 = k_begin; t0 < k_end; t0 += kDecTile) {
    const int tn = static_cast<int>(imin(kDecTile, k_end - t0));
    // 1. Scores: 8 lanes per key, each a partial dot over its chunks for every head.
    for (int ib = 0; ib < tn; ib += kKeysAtOnce) {
      const int i = ib + grp;
      const bool valid = i < tn;
      float part[GMAX];
#pragma unroll
      for (int g = 0; g < GMAX; ++g) part[g] = 0.f;
      if (valid) {
        const T* kr = kp + offset(t0 + i);
        float kv[kCpl1][VEC];
#pragma unroll
        for (int c = 0; c < kCpl1; ++c) {
          const int ch = gl + c * kDecGroup;
          if (ch < nc) load_vec<T, VEC>(kr + ch * VEC, kv[c]);
        }
#pragma unroll
        for (int c = 0; c < kCpl1; ++c) {
          const int ch = gl + c * kDecGroup;
          if (ch < nc) {
#pragma unroll
            for (int g = 0; g < GMAX; ++g) {
              if (g < G) {
                const float* qq = &q_s[g][ch * VEC];
#pragma unroll
                for (int e = 0; e < VEC; ++e) part[g] += qq[e] * kv[c][e];
              }
            }
          }
        }
      }
#pragma unroll
      for (int g = 0; g < GMAX; ++g)
#pragma unroll
        for (int off = kDecGroup / 2; off > 0; off >>= 1)
          part[g] += __shfl_xor_sync(kFull, part[g], off);
      if (valid && gl == 0) {
#pragma unroll
        for (int g = 0; g < GMAX; ++g)
          if (g < G) buf[g][i] = part[g] * a.scale;
      }
    }
    __syncthreads();
    // 2. Online softmax over the tile, a warp per head.
    for (int g = warp; g < G; g += kDecWarps) {
      float mx = -INFINITY;
      for (int i = lane; i < tn; i += 32) mx = fmaxf(mx, buf[g][i]);
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(kFull, mx, off));
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, mx);
      float sum = 0.f;
      for (int i = lane; i < tn; i += 32) {
        const float p = m_new == -INFINITY ? 0.f : expf(buf[g][i] - m_new);
        buf[g][i] = p;
        sum += p;
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(kFull, sum, off);
      if (lane == 0) {
        const float alpha = m_old == -INFINITY ? 0.f : expf(m_old - m_new);
        alpha_s[g] = alpha;
        l_s[g] = l_s[g] * alpha + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    // 3. acc = acc x alpha + P.V, lanes across the head dim.
#pragma unroll
    for (int g = 0; g < GMAX; ++g) {
      if (g < G) {
        const float al = alpha_s[g];
#pragma unroll
        for (int k = 0; k < kCpl3; ++k)
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc[g][k][e] *= al;
      }
    }
    if (pv_lane) {
      for (int i = warp * S + sub; i < tn; i += kDecWarps * S) {
        const T* vr = vp + offset(t0 + i);
        float vv[kCpl3][VEC];
#pragma unroll
        for (int k = 0; k < kCpl3; ++k) {
          const int ch = c0 + 32 * k;
          if (ch < nc) load_vec<T, VEC>(vr + ch * VEC, vv[k]);
        }
#pragma unroll
        for (int g = 0; g < GMAX; ++g) {
          if (g < G) {
            const float p = buf[g][i];
#pragma unroll
            for (int k = 0; k < kCpl3; ++k) {
              const int ch = c0 + 32 * k;
              if (ch < nc) {
#pragma unroll
                for (int e = 0; e < VEC; ++e) acc[g][k][e] += p * vv[k][e];
              }
            }
          }
        }
      }
    }
    __syncthreads();  // buf and alpha_s are rewritten by the next tile
  }

  // Sum the S key lanes of each warp (all lanes take part in the shuffles) ...
  if (S > 1) {
    if (S * nc == 32) {
      for (int off = nc; off < 32; off <<= 1)
#pragma unroll
        for (int g = 0; g < GMAX; ++g)
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc[g][0][e] += __shfl_xor_sync(kFull, acc[g][0][e], off);
    } else {
      for (int s = 1; s < S; ++s) {
        const int src = (lane + s * nc) & 31;  // meaningful for sub == 0
#pragma unroll
        for (int g = 0; g < GMAX; ++g)
#pragma unroll
          for (int e = 0; e < VEC; ++e) {
            const float v = __shfl_sync(kFull, acc[g][0][e], src);
            if (sub == 0) acc[g][0][e] += v;
          }
      }
    }
  }
  // ... then the warps, one after the other, into buf (now free).
  for (int w = 0; w < kDecWarps; ++w) {
    if (warp == w && sub == 0) {
#pragma unroll
      for (int k = 0; k < kCpl3; ++k) {
        const int ch = c0 + 32 * k;
        if (ch < nc) {
#pragma unroll
          for (int g = 0; g < GMAX; ++g) {
            if (g < G) {
#pragma unroll
              for (int e = 0; e < VEC; ++e) {
                float* dst = &buf[g][ch * VEC + e];
                *dst = (w == 0 ? 0.f : *dst) + acc[g][k][e];
              }
            }
          }
        }
      }
    }
    __syncthreads();
  }

  if (a.splits == 1) {
    for (i64 e = tid; e < G * dim; e += kDecThreads) {
      const i64 g = e / dim, d = e % dim;
      a.out[(row * a.q_heads + h0 + g) * dim + d] = buf[g][d] / l_s[g];
    }
  } else {
    for (i64 e = tid; e < G * dim; e += kDecThreads) {
      const i64 g = e / dim, d = e % dim;
      const i64 at = (j * a.q_heads + h0 + g) * a.splits + split;
      a.part_o[at * dim + d] = buf[g][d] / l_s[g];
    }
    if (tid < G) {
      const i64 at = (j * a.q_heads + h0 + tid) * a.splits + split;
      a.part_ml[at * 2] = m_s[tid];
      a.part_ml[at * 2 + 1] = l_s[tid];
    }
  }
}

template <typename T, int VEC, int GMAX>
KernelStatus launch_decode(const DecodeArgs& a, i64 num_seqs, Stream s) {
  const dim3 grid(static_cast<unsigned>(num_seqs), static_cast<unsigned>(a.kv_heads * a.gchunks),
                  static_cast<unsigned>(a.splits));
  bool narrow = false;  // head dims up to 128 (the usual): fewer registers, more blocks an SM
  if constexpr (VEC > 1) {
    if (a.dim <= 128) {
      narrow = true;
      decode_kernel<T, VEC, GMAX, 128><<<grid, kDecThreads, 0, s>>>(a);
    }
  }
  if (!narrow) decode_kernel<T, VEC, GMAX, kDecMaxDim><<<grid, kDecThreads, 0, s>>>(a);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

template <typename T, int VEC>
KernelStatus launch_decode_g(DecodeArgs a, i64 num_seqs, Stream s) {
  const i64 g = a.group;
  a.gchunks = g <= 4 ? 1 : ceil_div(g, 8);
  if (g <= 1) return launch_decode<T, VEC, 1>(a, num_seqs, s);
  if (g <= 2) return launch_decode<T, VEC, 2>(a, num_seqs, s);
  if (g <= 4) return launch_decode<T, VEC, 4>(a, num_seqs, s);
  return launch_decode<T, VEC, 8>(a, num_seqs, s);
}

// ---- Tiled flash attention (prefill, mixed batches, MLA) ----------------------------------

struct FlashArgs {
  const float* q;      // paged: [rows, q_heads, dim]; MLA: q_lat [rows, heads, lora]
  const float* q_pe;   // MLA: [rows, heads, rope]
  const void* k_pool;  // MLA: the latent pool
  const void* v_pool;  // paged only
  const i32* block_tables;
  const i32* row0;
  const i32* new_tokens;
  const i32* context;
  i64 max_blocks, q_heads, kv_heads, block_size;
  i64 dqk, dv;   // paged: dim, dim; MLA: lora + rope, lora
  i64 lora;      // MLA: where q_pe starts in a query
  i64 group;     // query heads per KV head (MLA: all heads)
  i64 gh;        // query heads of a block (<= M)
  i64 gchunks;   // blocks per KV head
  i64 tpt;       // tokens of a block: M / gh
  i64 qtiles;    // blocks per sequence: ceil(max_new / tpt)
  float scale;
  bool vec_ok;   // dqk a multiple of the vector width
  i64 split_len, splits;  // MLA decode: context splits
  float* out;
  float* part_o;
  float* part_ml;
};

// Block (sequence x query tile, KV head x head chunk, split): M query vectors, TPR threads each;
// BK keys a tile. A thread of row r owns keys tr + TPR m of a tile and output dims tr + TPR k.
template <typename T, int M, int TPR, int BK, int DVCAP, bool MLA>
__global__ void __launch_bounds__(M* TPR) flash_kernel(const FlashArgs a) {
  constexpr int NT = M * TPR;
  constexpr int KPT = BK / TPR;     // keys a thread scores
  constexpr int DPT = DVCAP / TPR;  // output dims a thread owns
  constexpr int VEC = vec_of<T>();
  extern __shared__ __align__(16) unsigned char smem_raw[];
  i64* koff = reinterpret_cast<i64*>(smem_raw);  // [BK] pool offset of each key, -1: none
  float* qs = reinterpret_cast<float*>(koff + BK);
  const i64 qstride = a.dqk | 1;  // odd strides: rows fall in different banks
  const i64 kstride = a.dqk | 1;
  float* ks = qs + M * qstride;
  float* ps = ks + BK * kstride;  // [M][BK + 1]
  constexpr int pstride = BK + 1;

  const i64 j = blockIdx.x / a.qtiles, qt = blockIdx.x % a.qtiles;
  const i64 n = a.new_tokens[j];
  if (qt * a.tpt >= n) return;
  const i64 kvh = blockIdx.y / a.gchunks, gc = blockIdx.y % a.gchunks;
  const i64 split = blockIdx.z;
  const i64 ctx = a.context[j];
  const i64 hb = kvh * a.group + gc * a.gh;  // first query head of the block
  const i64 G = imin(a.gh, a.group - gc * a.gh);
  const int tid = threadIdx.x;
  const int r = tid / TPR, tr = tid % TPR;

  // This thread's row: token ti of the tile, head g.
  const i64 ti = r / a.gh, g = r % a.gh;
  const i64 tok = qt * a.tpt + ti;
  const bool active = ti < a.tpt && g < G && tok < n;
  const i64 qrow = a.row0[j] + tok;
  const i64 qhead = hb + g;
  const i64 qpos = active ? ctx + tok : -1;

  // The block's keys: up to its last token's position, within its split.
  const i64 last_tok = imin(n, (qt + 1) * a.tpt) - 1;
  const i64 kend_all = ctx + last_tok + 1;
  const i64 k_begin = split * a.split_len;
  const i64 k_stop = split == a.splits - 1 ? kend_all : imin(kend_all, k_begin + a.split_len);

  // Queries into shared memory (inactive rows: zeros).
  for (i64 e = tid; e < M * a.dqk; e += NT) {
    const i64 rr = e / a.dqk, d = e % a.dqk;
    const i64 rti = rr / a.gh, rg = rr % a.gh, rtok = qt * a.tpt + rti;
    float v = 0.f;
    if (rti < a.tpt && rg < G && rtok < n) {
      const i64 rrow = a.row0[j] + rtok, rh = hb + rg;
      if (MLA)
        v = d < a.lora ? a.q[(rrow * a.q_heads + rh) * a.lora + d]
                       : a.q_pe[(rrow * a.q_heads + rh) * (a.dqk - a.lora) + (d - a.lora)];
      else
        v = a.q[(rrow * a.q_heads + rh) * a.dqk + d];
    }
    qs[rr * qstride + d] = v;
  }

  float o[DPT];
#pragma unroll
  for (int k = 0; k < DPT; ++k) o[k] = 0.f;
  float m_run = -INFINITY, l_run = 0.f;

  const T* __restrict__ kp = static_cast<const T*>(a.k_pool);
  const T* __restrict__ vp = static_cast<const T*>(a.v_pool);
  const i32* __restrict__ bt = a.block_tables + j * a.max_blocks;
  const i64 bs = a.block_size;

  // Loads the BK rows at koff from pool p into ks as floats (zeros where koff < 0).
  auto load_tile = [&](const T* __restrict__ p) {
    if (a.vec_ok) {
      const i64 nv = a.dqk / VEC;
      for (i64 e = tid; e < BK * nv; e += NT) {
        const i64 jj = e / nv, c = e % nv;
        float x[VEC];
        if (koff[jj] >= 0) {
          load_vec<T, VEC>(p + koff[jj] + c * VEC, x);
        } else {
#pragma unroll
          for (int u = 0; u < VEC; ++u) x[u] = 0.f;
        }
#pragma unroll
        for (int u = 0; u < VEC; ++u) ks[jj * kstride + c * VEC + u] = x[u];
      }
    } else {
      for (i64 e = tid; e < BK * a.dqk; e += NT) {
        const i64 jj = e / a.dqk, d = e % a.dqk;
        ks[jj * kstride + d] = koff[jj] >= 0 ? to_f(p[koff[jj] + d]) : 0.f;
      }
    }
  };

  for (i64 kt0 = k_begin; kt0 < k_stop; kt0 += BK) {
    __syncthreads();  // the previous tile's ks (and the queries, first time) are done with
    if (tid < BK) {
      const i64 pos = kt0 + tid;
      i64 off = -1;
      if (pos < k_stop) {
        const i64 blk = bt[pos / bs], sl = pos % bs;
        off = MLA ? (blk * bs + sl) * a.dqk : ((blk * a.kv_heads + kvh) * bs + sl) * a.dqk;
      }
      koff[tid] = off;
    }
    __syncthreads();
    load_tile(kp);
    __syncthreads();

    // Scores of this thread's keys.
    float sc[KPT];
#pragma unroll
    for (int m = 0; m < KPT; ++m) sc[m] = 0.f;
    const float* qr = qs + r * qstride;
    i64 d = 0;
    for (; d + 4 <= a.dqk; d += 4) {
      const float q0 = qr[d], q1 = qr[d + 1], q2 = qr[d + 2], q3 = qr[d + 3];
#pragma unroll
      for (int m = 0; m < KPT; ++m) {
        const float* kr = ks + (tr + TPR * m) * kstride + d;
        sc[m] += q0 * kr[0] + q1 * kr[1] + q2 * kr[2] + q3 * kr[3];
      }
    }
    for (; d < a.dqk; ++d) {
      const float qv = qr[d];
#pragma unroll
      for (int m = 0; m < KPT; ++m) sc[m] += qv * ks[(tr + TPR * m) * kstride + d];
    }
    float tmax = -INFINITY;
#pragma unroll
    for (int m = 0; m < KPT; ++m) {
      const i64 pos = kt0 + tr + TPR * m;
      sc[m] = (pos < k_stop && pos <= qpos) ? sc[m] * a.scale : -INFINITY;
      tmax = fmaxf(tmax, sc[m]);
    }
#pragma unroll
    for (int off = TPR / 2; off > 0; off >>= 1)
      tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, off));
    const float m_new = fmaxf(m_run, tmax);
    float alpha = 1.f, rsum = 0.f;
    if (m_new != -INFINITY) {
      alpha = m_run == -INFINITY ? 0.f : expf(m_run - m_new);
#pragma unroll
      for (int m = 0; m < KPT; ++m) {
        sc[m] = sc[m] == -INFINITY ? 0.f : expf(sc[m] - m_new);
        rsum += sc[m];
      }
    } else {
#pragma unroll
      for (int m = 0; m < KPT; ++m) sc[m] = 0.f;
    }
#pragma unroll
    for (int off = TPR / 2; off > 0; off >>= 1) rsum += __shfl_xor_sync(kFull, rsum, off);
    l_run = l_run * alpha + rsum;
    m_run = m_new;
#pragma unroll
    for (int m = 0; m < KPT; ++m) ps[r * pstride + tr + TPR * m] = sc[m];

    if (!MLA) {  // V replaces K in the tile
      __syncthreads();
      load_tile(vp);
      __syncthreads();
    } else {
      __syncwarp();  // a row's probabilities come from lanes of the same warp
    }

    // o = o x alpha + P.V (MLA: V is the latent's first lora columns of the tile).
#pragma unroll
    for (int k = 0; k < DPT; ++k) o[k] *= alpha;
    const float* pr = ps + r * pstride;
    for (int jj = 0; jj < BK; ++jj) {
      const float p = pr[jj];
      const float* vr = ks + jj * kstride + tr;
#pragma unroll
      for (int k = 0; k < DPT; ++k)
        if (tr + TPR * k < a.dv) o[k] += p * vr[TPR * k];
    }
  }

  if (!active) return;
  if (a.splits == 1) {
    float* dst = a.out + (qrow * a.q_heads + qhead) * a.dv;
    const float inv = l_run > 0.f ? 1.f / l_run : 0.f;
#pragma unroll
    for (int k = 0; k < DPT; ++k)
      if (tr + TPR * k < a.dv) dst[tr + TPR * k] = o[k] * inv;
  } else {  // decode split: one token per sequence
    const i64 at = (j * a.q_heads + qhead) * a.splits + split;
    const float inv = l_run > 0.f ? 1.f / l_run : 0.f;
#pragma unroll
    for (int k = 0; k < DPT; ++k)
      if (tr + TPR * k < a.dv) a.part_o[at * a.dv + tr + TPR * k] = o[k] * inv;
    if (tr == 0) {
      a.part_ml[at * 2] = m_run;
      a.part_ml[at * 2 + 1] = l_run;
    }
  }
}

template <int M, int BK>
std::size_t flash_smem(i64 dqk) {
  const i64 stride = dqk | 1;
  return static_cast<std::size_t>(BK) * sizeof(i64) +
         sizeof(float) * static_cast<std::size_t>(M * stride + BK * stride + M * (BK + 1));
}

template <typename T, int M, int TPR, int BK, int DVCAP, bool MLA>
KernelStatus launch_flash(const FlashArgs& a, i64 num_seqs, Stream s) {
  const std::size_t smem = flash_smem<M, BK>(a.dqk);
  auto kernel = flash_kernel<T, M, TPR, BK, DVCAP, MLA>;
  if (smem > 48 * 1024) {
    int optin = 0;
    KernelStatus st = smem_optin(&optin);
    if (!st.ok) return st;
    if (smem > static_cast<std::size_t>(optin))
      return KernelStatus::Fail("attention: head dim " + std::to_string(a.dqk) + " needs " +
                                std::to_string(smem) + " bytes of shared memory, the device has " +
                                std::to_string(optin));
    TPP_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
  }
  const i64 gx = num_seqs * a.qtiles;
  const i64 gy = a.kv_heads * a.gchunks;
  if (gx > 0x7fffffff || gy > 65535 || a.splits > 65535)
    return KernelStatus::Fail("attention: batch too large for one launch");
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy),
                  static_cast<unsigned>(a.splits));
  kernel<<<grid, M * TPR, smem, s>>>(a);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

// The workspace of a split launch: stream-ordered, freed after the merge.
struct SplitWork {
  float* part_o = nullptr;
  float* part_ml = nullptr;
  void* base = nullptr;
};

KernelStatus split_alloc(SplitWork* w, i64 num_seqs, i64 heads, i64 splits, i64 dv, Stream s) {
  const std::size_t no = static_cast<std::size_t>(num_seqs * heads * splits * dv);
  const std::size_t nml = static_cast<std::size_t>(num_seqs * heads * splits * 2);
  TPP_CUDA_CHECK(cudaMallocAsync(&w->base, (no + nml) * sizeof(float), s));
  w->part_o = static_cast<float*>(w->base);
  w->part_ml = w->part_o + no;
  return KernelStatus::Ok();
}

// Merges and frees (the free is queued even when the launch failed).
KernelStatus split_merge(SplitWork* w, KernelStatus launched, const PagedBatch& b, i64 heads,
                         i64 dv, i64 splits, float* out, Stream s) {
  if (launched.ok) {
    const dim3 grid(static_cast<unsigned>(b.num_seqs), static_cast<unsigned>(heads));
    merge_splits_kernel<<<grid, 128, 0, s>>>(w->part_o, w->part_ml, b.row0, b.new_tokens, heads,
                                             dv, splits, out);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
      launched = KernelStatus::Fail(std::string(__FILE__) + ":" + std::to_string(__LINE__) +
                                    ": merge_splits_kernel failed: " + cudaGetErrorString(e));
  }
  const cudaError_t f = cudaFreeAsync(w->base, s);
  if (launched.ok && f != cudaSuccess)
    return KernelStatus::Fail(std::string(__FILE__) + ":" + std::to_string(__LINE__) +
                              ": cudaFreeAsync failed: " + cudaGetErrorString(f));
  return launched;
}

// Paged attention, prefill / mixed batches: M = 32 query vectors of 4 threads, 32-key tiles.
template <typename T>
KernelStatus paged_flash(FlashArgs a, const PagedBatch& b, Stream s) {
  constexpr int M = 32, TPR = 4, BK = 32;
  a.gh = std::min<i64>(a.group, M);
  a.gchunks = ceil_div(a.group, a.gh);
  a.tpt = M / a.gh;
  a.qtiles = ceil_div(b.max_new, a.tpt);
  // 16-byte loads need every row 16-byte aligned: a width of whole vectors and aligned pools.
  a.vec_ok = a.dqk % vec_of<T>() == 0 && aligned16(a.k_pool) && aligned16(a.v_pool);
  a.splits = 1;
  a.split_len = std::max<i64>(b.max_context, 1);
  if (a.dv <= 64) return launch_flash<T, M, TPR, BK, 64, false>(a, b.num_seqs, s);
  if (a.dv <= 128) return launch_flash<T, M, TPR, BK, 128, false>(a, b.num_seqs, s);
  return launch_flash<T, M, TPR, BK, 256, false>(a, b.num_seqs, s);
}

template <typename T>
KernelStatus paged_decode(DecodeArgs a, const PagedBatch& b, Stream s) {
  const i64 gchunks = a.group <= 4 ? 1 : ceil_div(a.group, 8);
  i64 splits = 1, len = 0;
  KernelStatus st = choose_splits(b.num_seqs * a.kv_heads * gchunks, b.max_context, kDecTile,
                                  &splits, &len);
  if (!st.ok) return st;
  if (splits > 65535 || b.num_seqs > 0x7fffffff || a.kv_heads * gchunks > 65535 ||
      a.q_heads > 65535)  // the merge's grid is (sequences, query heads)
    return KernelStatus::Fail("paged_attention_cuda: batch too large for one launch");
  a.splits = splits;
  a.split_len = len;
  SplitWork w;
  if (splits > 1) {
    st = split_alloc(&w, b.num_seqs, a.q_heads, splits, a.dim, s);
    if (!st.ok) return st;
    a.part_o = w.part_o;
    a.part_ml = w.part_ml;
  }
  constexpr int V = vec_of<T>();
  const bool vec = a.dim % V == 0 && aligned16(a.k_pool) && aligned16(a.v_pool);
  st = vec ? launch_decode_g<T, V>(a, b.num_seqs, s) : launch_decode_g<T, 1>(a, b.num_seqs, s);
  if (splits == 1) return st;
  return split_merge(&w, st, b, a.q_heads, a.dim, splits, a.out, s);
}

template <typename T>
KernelStatus mla_run(FlashArgs a, const PagedBatch& b, Stream s) {
  constexpr int M = 16, TPR = 8, BK = 16;
  a.gh = std::min<i64>(a.group, M);
  a.gchunks = ceil_div(a.group, a.gh);
  a.tpt = M / a.gh;
  a.qtiles = ceil_div(b.max_new, a.tpt);
  // 16-byte loads need every row 16-byte aligned: a width of whole vectors and aligned pools.
  a.vec_ok = a.dqk % vec_of<T>() == 0 && aligned16(a.k_pool) && aligned16(a.v_pool);
  a.splits = 1;
  a.split_len = std::max<i64>(b.max_context, 1);
  // Decode: split the context when the batch does not fill the GPU (the merge's grid is
  // (sequences, heads): no split past 65535 heads).
  if (b.max_new == 1 && a.q_heads <= 65535) {
    KernelStatus st =
        choose_splits(b.num_seqs * a.gchunks, b.max_context, 256, &a.splits, &a.split_len);
    if (!st.ok) return st;
  }
  SplitWork w;
  if (a.splits > 1) {
    KernelStatus st = split_alloc(&w, b.num_seqs, a.q_heads, a.splits, a.dv, s);
    if (!st.ok) return st;
    a.part_o = w.part_o;
    a.part_ml = w.part_ml;
  }
  KernelStatus st = a.dv <= 128 ? launch_flash<T, M, TPR, BK, 128, true>(a, b.num_seqs, s)
                                : launch_flash<T, M, TPR, BK, 512, true>(a, b.num_seqs, s);
  if (a.splits == 1) return st;
  return split_merge(&w, st, b, a.q_heads, a.dv, a.splits, a.out, s);
}

// The fields every attention launch (DecodeArgs, FlashArgs) takes from its call and its batch.
template <typename Args>
void set_common(Args& a, const float* q, const void* k_pool, const void* v_pool,
                const PagedBatch& b, i64 q_heads, i64 kv_heads, i64 block_size, float scale,
                float* out) {
  a.q = q;
  a.k_pool = k_pool;
  a.v_pool = v_pool;
  a.block_tables = b.block_tables;
  a.row0 = b.row0;
  a.new_tokens = b.new_tokens;
  a.context = b.context;
  a.max_blocks = b.max_blocks;
  a.q_heads = q_heads;
  a.kv_heads = kv_heads;
  a.block_size = block_size;
  a.group = q_heads / kv_heads;
  a.scale = scale;
  a.out = out;
}

}  // namespace

// ---- Entry points -------------------------------------------------------------------------

KernelStatus kv_write_cuda(const float* k, const float* v, void* k_pool, void* v_pool, DType kv,
                           const std::int64_t* slot_mapping, std::int64_t rows,
                           std::int64_t heads, std::int64_t dim, std::int64_t block_size,
                           Stream s) {
  if (rows <= 0 || heads <= 0 || dim <= 0) return KernelStatus::Ok();
  if (heads > 65535 || rows > 0x7fffffff)
    return KernelStatus::Fail("kv_write_cuda: too many rows or heads for one launch");
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(heads));
  const int threads = static_cast<int>(std::min<i64>(256, ceil_div(dim, 32) * 32));
  if (kv == DType::kF32)
    kv_write_kernel<float><<<grid, threads, 0, s>>>(k, v, static_cast<float*>(k_pool),
                                                    static_cast<float*>(v_pool), slot_mapping,
                                                    heads, dim, block_size);
  else if (kv == DType::kBF16)
    kv_write_kernel<bf16><<<grid, threads, 0, s>>>(k, v, static_cast<bf16*>(k_pool),
                                                   static_cast<bf16*>(v_pool), slot_mapping,
                                                   heads, dim, block_size);
  else
    return KernelStatus::Fail("kv_write_cuda: the KV pool must be f32 or bf16");
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus latent_write_cuda(const float* latent, void* pool, DType kv,
                               const std::int64_t* slot_mapping, std::int64_t rows,
                               std::int64_t width, Stream s) {
  if (rows <= 0 || width <= 0) return KernelStatus::Ok();
  if (rows > 0x7fffffff) return KernelStatus::Fail("latent_write_cuda: too many rows");
  const int threads = static_cast<int>(std::min<i64>(256, ceil_div(width, 32) * 32));
  const unsigned grid = static_cast<unsigned>(rows);
  if (kv == DType::kF32)
    latent_write_kernel<float><<<grid, threads, 0, s>>>(latent, static_cast<float*>(pool),
                                                        slot_mapping, width);
  else if (kv == DType::kBF16)
    latent_write_kernel<bf16><<<grid, threads, 0, s>>>(latent, static_cast<bf16*>(pool),
                                                       slot_mapping, width);
  else
    return KernelStatus::Fail("latent_write_cuda: the latent pool must be f32 or bf16");
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus paged_attention_cuda(const float* q, const void* k_pool, const void* v_pool,
                                  DType kv, const PagedBatch& b, std::int64_t q_heads,
                                  std::int64_t kv_heads, std::int64_t dim,
                                  std::int64_t block_size, float scale, float* out, Stream s) {
  if (b.num_seqs <= 0 || b.max_new <= 0 || q_heads <= 0) return KernelStatus::Ok();
  if (kv_heads <= 0 || q_heads % kv_heads != 0)
    return KernelStatus::Fail("paged_attention_cuda: q_heads must be a multiple of kv_heads");
  if (dim <= 0 || dim > kDecMaxDim)
    return KernelStatus::Fail("paged_attention_cuda: head dim " + std::to_string(dim) +
                              " outside 1.." + std::to_string(kDecMaxDim));
  if (block_size <= 0) return KernelStatus::Fail("paged_attention_cuda: block_size must be > 0");
  if (kv != DType::kF32 && kv != DType::kBF16)
    return KernelStatus::Fail("paged_attention_cuda: the KV pool must be f32 or bf16");
  const bool f32 = kv == DType::kF32;
  if (b.max_new == 1) {
    DecodeArgs a{};
    set_common(a, q, k_pool, v_pool, b, q_heads, kv_heads, block_size, scale, out);
    a.dim = dim;
    return f32 ? paged_decode<float>(a, b, s) : paged_decode<bf16>(a, b, s);
  }
  FlashArgs a{};
  set_common(a, q, k_pool, v_pool, b, q_heads, kv_heads, block_size, scale, out);
  a.dqk = dim;
  a.dv = dim;
  return f32 ? paged_flash<float>(a, b, s) : paged_flash<bf16>(a, b, s);
}

KernelStatus mla_attention_cuda(const float* q_lat, const float* q_pe, const void* pool,
                                DType kv, const PagedBatch& b, std::int64_t heads,
                                std::int64_t lora, std::int64_t rope, std::int64_t block_size,
                                float scale, float* out, Stream s) {
  if (b.num_seqs <= 0 || b.max_new <= 0 || heads <= 0) return KernelStatus::Ok();
  if (lora <= 0 || lora > 512 || rope < 0)
    return KernelStatus::Fail("mla_attention_cuda: lora must be 1..512 and rope >= 0");
  if (block_size <= 0) return KernelStatus::Fail("mla_attention_cuda: block_size must be > 0");
  if (kv != DType::kF32 && kv != DType::kBF16)
    return KernelStatus::Fail("mla_attention_cuda: the latent pool must be f32 or bf16");
  FlashArgs a{};
  set_common(a, q_lat, pool, pool, b, heads, 1, block_size, scale, out);  // one latent "KV head"
  a.q_pe = q_pe;
  a.dqk = lora + rope;
  a.dv = lora;
  a.lora = lora;
  return kv == DType::kF32 ? mla_run<float>(a, b, s) : mla_run<bf16>(a, b, s);
}

}  // namespace tpp::kernels
