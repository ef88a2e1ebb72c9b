// Element-wise and small operators (cuda_ops.h). Each is the kernel of its CPU reference in
// kernels/ops.h. The memory-bound ones (add_rmsnorm, silu_mul, add_bias, add_scaled) use 16-byte
// vector accesses when the row length and the pointers allow, scalar ones otherwise; products
// that the reference rounds separately use __fmul_rn / __fadd_rn so that no fused multiply-add
// changes the last bit.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/cuda_ops.h"
#include "kernels/cuda_util.cuh"

namespace tpp::kernels {
namespace {

constexpr std::int64_t kMaxBlocks = 1 << 16;


template <int W>
__device__ __forceinline__ Vec<W> load(const float* p) {
  return *reinterpret_cast<const Vec<W>*>(p);
}
template <int W>
__device__ __forceinline__ void store(float* p, const Vec<W>& v) {
  *reinterpret_cast<Vec<W>*>(p) = v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float warp_sums[32];
  __shared__ float total;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, warps = blockDim.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < warps ? warp_sums[lane] : 0.f;
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// ---- embedding -------------------------------------------------------------------------------

__device__ __forceinline__ float table_value(const void* table, DType t, std::int64_t i,
                                             float scale) {
  if (t == DType::kF32) return static_cast<const float*>(table)[i];
  if (t == DType::kBF16)
    return __uint_as_float(static_cast<unsigned>(static_cast<const bf16_t*>(table)[i]) << 16);
  const __half_raw h = __nv_cvt_fp8_to_halfraw(
      static_cast<__nv_fp8_storage_t>(static_cast<const fp8_t*>(table)[i]), __NV_E4M3);
  return __half2float(__half(h)) * scale;
}

// One block per token, threads along the row.
__global__ void embedding_kernel(const std::int64_t* __restrict__ tokens, const void* table,
                                 DType t, float scale, std::int64_t vocab0, std::int64_t rows,
                                 std::int64_t dim, float* __restrict__ out) {
  const std::int64_t k = blockIdx.x;
  const std::int64_t local = tokens[k] - vocab0;
  float* o = out + k * dim;
  if (local < 0 || local >= rows) {
    for (std::int64_t c = threadIdx.x; c < dim; c += blockDim.x) o[c] = 0.f;
    return;
  }
  for (std::int64_t c = threadIdx.x; c < dim; c += blockDim.x)
    o[c] = table_value(table, t, local * dim + c, scale);
}

// ---- add_rmsnorm -----------------------------------------------------------------------------

// One block per row. Each thread keeps its V vectors (of W floats) of residual + x in registers
// between the sum of squares and the output, so the row is read once and written once (twice
// with a residual). x may equal y, and nothing is read after another thread wrote it.
template <int W, int V>
__global__ void __launch_bounds__(1024)
    add_rmsnorm_kernel(const float* x, float* residual, const float* __restrict__ w, float* y,
                       std::int64_t cols, float eps) {
  const std::int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float* res = residual ? residual + row * cols : nullptr;
  float* yr = y + row * cols;
  const int nvec = static_cast<int>(cols / W);
  Vec<W> v[V];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < nvec) {
      v[j] = load<W>(xr + static_cast<std::int64_t>(i) * W);
      if (res) {
        const Vec<W> r = load<W>(res + static_cast<std::int64_t>(i) * W);
#pragma unroll
        for (int q = 0; q < W; ++q) v[j].v[q] = __fadd_rn(r.v[q], v[j].v[q]);
        store<W>(res + static_cast<std::int64_t>(i) * W, v[j]);
      }
#pragma unroll
      for (int q = 0; q < W; ++q) ss = fmaf(v[j].v[q], v[j].v[q], ss);
    }
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(cols) + eps);
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i < nvec) {
      const Vec<W> wv = load<W>(w + static_cast<std::int64_t>(i) * W);
      Vec<W> o;
#pragma unroll
      for (int q = 0; q < W; ++q) o.v[q] = __fmul_rn(__fmul_rn(v[j].v[q], inv), wv.v[q]);
      store<W>(yr + static_cast<std::int64_t>(i) * W, o);
    }
  }
}

// Rows too long for the registers: a second pass re-reads the row (the same thread's elements,
// so in-place updates stay ordered).
__global__ void __launch_bounds__(1024)
    add_rmsnorm_long_kernel(const float* x, float* residual, const float* __restrict__ w,
                            float* y, std::int64_t cols, float eps) {
  const std::int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float* res = residual ? residual + row * cols : nullptr;
  float* yr = y + row * cols;
  float ss = 0.f;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float v = xr[c];
    if (res) res[c] = v = __fadd_rn(res[c], v);
    ss = fmaf(v, v, ss);
  }
  const float inv = rsqrtf(block_sum(ss) / static_cast<float>(cols) + eps);
  const float* src = res ? res : xr;
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    yr[c] = __fmul_rn(__fmul_rn(src[c], inv), w[c]);
}

template <int W>
KernelStatus launch_add_rmsnorm(const float* x, float* residual, const float* w, float* y,
                                std::int64_t rows, std::int64_t cols, float eps, Stream s) {
  const std::int64_t nvec = cols / W;
  // About 4 vectors a thread, 32 .. 1024 threads; with few rows (fewer blocks than about two
  // per SM) one vector a thread, so that more loads are in flight.
  const std::int64_t target = rows < 256 ? 1 : 4;
  const std::int64_t threads =
      std::clamp<std::int64_t>(((nvec + target - 1) / target + 31) / 32 * 32, 32, 1024);
  const std::int64_t per = (nvec + threads - 1) / threads;
  const auto grid = static_cast<unsigned>(rows);
  const auto block = static_cast<unsigned>(threads);
  if (per <= 1)
    add_rmsnorm_kernel<W, 1><<<grid, block, 0, s>>>(x, residual, w, y, cols, eps);
  else if (per <= 2)
    add_rmsnorm_kernel<W, 2><<<grid, block, 0, s>>>(x, residual, w, y, cols, eps);
  else if (per <= 4)
    add_rmsnorm_kernel<W, 4><<<grid, block, 0, s>>>(x, residual, w, y, cols, eps);
  else if (per <= 8)
    add_rmsnorm_kernel<W, 8><<<grid, block, 0, s>>>(x, residual, w, y, cols, eps);
  else if constexpr (W == 1) {  // 16 floats a thread (16 vectors of 4 would spill)
    if (per <= 16)
      add_rmsnorm_kernel<W, 16><<<grid, block, 0, s>>>(x, residual, w, y, cols, eps);
    else
      add_rmsnorm_long_kernel<<<grid, 1024, 0, s>>>(x, residual, w, y, cols, eps);
  } else {
    add_rmsnorm_long_kernel<<<grid, 1024, 0, s>>>(x, residual, w, y, cols, eps);
  }
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

// ---- rope ------------------------------------------------------------------------------------

// One block per row: cos and sin of the row's position (in double, as the reference) into shared
// memory, then every (head, pair) of the row.
__global__ void rope_kernel(float* x, const std::int64_t* __restrict__ pos, std::int64_t heads,
                            std::int64_t head_stride, std::int64_t offset, std::int64_t half,
                            const float* __restrict__ inv_freq, float mscale, bool neox) {
  extern __shared__ float cs_sn[];  // cos[half], then sin[half]
  const std::int64_t r = blockIdx.x;
  const double p = static_cast<double>(pos[r]);
  for (std::int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    double sn, cs;
    sincos(p * static_cast<double>(inv_freq[i]), &sn, &cs);
    cs_sn[i] = __fmul_rn(static_cast<float>(cs), mscale);
    cs_sn[half + i] = __fmul_rn(static_cast<float>(sn), mscale);
  }
  __syncthreads();
  for (std::int64_t k = threadIdx.x; k < heads * half; k += blockDim.x) {
    const std::int64_t h = k / half, i = k - h * half;
    float* v = x + (r * heads + h) * head_stride + offset;
    const std::int64_t ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
    const float a = v[ia], b = v[ib], c = cs_sn[i], s = cs_sn[half + i];
    v[ia] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    v[ib] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
  }
}

// ---- silu_mul, add_bias, add_scaled, sigmoid_gate, gather_rows -------------------------------

// Row-wise kernels: blockIdx.x covers (row, chunk of the row); each thread one vector of W.
template <int W>
__global__ void silu_mul_kernel(const float* __restrict__ gate_up, float* __restrict__ out,
                                std::int64_t inter, unsigned chunks) {
  const std::int64_t r = blockIdx.x / chunks;
  const std::int64_t c =
      (static_cast<std::int64_t>(blockIdx.x % chunks) * blockDim.x + threadIdx.x) * W;
  if (c >= inter) return;
  const float* g = gate_up + r * 2 * inter + c;
  const Vec<W> gv = load<W>(g), uv = load<W>(g + inter);
  Vec<W> o;
#pragma unroll
  for (int q = 0; q < W; ++q) {
    const float x = gv.v[q];
    o.v[q] = __fmul_rn(__fdiv_rn(x, __fadd_rn(1.0f, expf(-x))), uv.v[q]);
  }
  store<W>(out + r * inter + c, o);
}

template <int W>
__global__ void add_bias_kernel(float* y, const float* __restrict__ bias, std::int64_t cols,
                                unsigned chunks) {
  const std::int64_t r = blockIdx.x / chunks;
  const std::int64_t c =
      (static_cast<std::int64_t>(blockIdx.x % chunks) * blockDim.x + threadIdx.x) * W;
  if (c >= cols) return;
  float* yr = y + r * cols + c;
  Vec<W> yv = load<W>(yr);
  const Vec<W> bv = load<W>(bias + c);
#pragma unroll
  for (int q = 0; q < W; ++q) yv.v[q] = __fadd_rn(yv.v[q], bv.v[q]);
  store<W>(yr, yv);
}

template <int W>
__global__ void add_scaled_kernel(float* y, const float* x, std::int64_t nvec, float a) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    Vec<W> yv = load<W>(y + i * W);
    const Vec<W> xv = load<W>(x + i * W);
#pragma unroll
    for (int q = 0; q < W; ++q) yv.v[q] = __fadd_rn(yv.v[q], __fmul_rn(a, xv.v[q]));
    store<W>(y + i * W, yv);
  }
}

__global__ void sigmoid_gate_kernel(float* y, const float* __restrict__ gate, std::int64_t cols,
                                    unsigned chunks) {
  const std::int64_t r = blockIdx.x / chunks;
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x % chunks) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const float s = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-gate[r])));
  y[r * cols + c] = __fmul_rn(y[r * cols + c], s);
}

__global__ void gather_rows_kernel(const float* __restrict__ src,
                                   const std::int32_t* __restrict__ index, std::int64_t cols,
                                   float* __restrict__ dst, unsigned chunks) {
  const std::int64_t i = blockIdx.x / chunks;
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x % chunks) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  dst[i * cols + c] = src[static_cast<std::int64_t>(index[i]) * cols + c];
}

// ---- argmax ----------------------------------------------------------------------------------

// (value, index) b replaces a when larger, or equal at a smaller index: the first index of the
// maximum wins, whatever the order of the reduction.
__device__ __forceinline__ void take_better(float& v, std::int64_t& i, float ov, std::int64_t oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

// One block per row. Every thread starts from (x[0], 0), as the reference does, and scans its
// columns in ascending order with a strict >: so a NaN at 0 gives 0, like the reference, and
// NaNs elsewhere are never chosen.
template <int W>
__global__ void __launch_bounds__(1024)
    argmax_kernel(const float* __restrict__ x, std::int64_t cols, std::int64_t* __restrict__ out) {
  const float* xr = x + static_cast<std::int64_t>(blockIdx.x) * cols;
  float bv = xr[0];
  std::int64_t bi = 0;
  const std::int64_t nvec = cols / W;
  for (std::int64_t j = threadIdx.x; j < nvec; j += blockDim.x) {
    const Vec<W> v = load<W>(xr + j * W);
#pragma unroll
    for (int q = 0; q < W; ++q)
      if (v.v[q] > bv) {
        bv = v.v[q];
        bi = j * W + q;
      }
  }
  for (int off = 16; off > 0; off >>= 1)
    take_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, off),
                __shfl_xor_sync(0xffffffffu, bi, off));
  __shared__ float wv[32];
  __shared__ std::int64_t wi[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, warps = blockDim.x / 32;
  if (lane == 0) {
    wv[warp] = bv;
    wi[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    bv = lane < warps ? wv[lane] : wv[0];
    bi = lane < warps ? wi[lane] : wi[0];
    for (int off = 16; off > 0; off >>= 1)
      take_better(bv, bi, __shfl_xor_sync(0xffffffffu, bv, off),
                  __shfl_xor_sync(0xffffffffu, bi, off));
    if (lane == 0) out[blockIdx.x] = bi;
  }
}

unsigned row_threads(std::int64_t n) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((n + 31) / 32 * 32, 32, 256));
}

}  // namespace

KernelStatus embedding_cuda(const std::int64_t* tokens, std::int64_t n, const void* table,
                            DType t, float table_scale, std::int64_t vocab0, std::int64_t rows,
                            std::int64_t dim, float* out, Stream s) {
  if (n <= 0 || dim <= 0) return KernelStatus::Ok();
  embedding_kernel<<<static_cast<unsigned>(n), row_threads(dim), 0, s>>>(
      tokens, table, t, table_scale, vocab0, rows, dim, out);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus add_rmsnorm_cuda(const float* x, float* residual, const float* w, float* y,
                              std::int64_t rows, std::int64_t cols, float eps, Stream s) {
  if (rows <= 0 || cols <= 0) return KernelStatus::Ok();
  const bool vec = cols % 4 == 0 && aligned16(x) && aligned16(w) && aligned16(y) &&
                   (residual == nullptr || aligned16(residual));
  return vec ? launch_add_rmsnorm<4>(x, residual, w, y, rows, cols, eps, s)
             : launch_add_rmsnorm<1>(x, residual, w, y, rows, cols, eps, s);
}

KernelStatus rope_cuda(float* x, const std::int64_t* pos, std::int64_t rows, std::int64_t heads,
                       std::int64_t head_stride, std::int64_t offset, std::int64_t rot,
                       const float* inv_freq, float mscale, bool neox, Stream s) {
  const std::int64_t half = rot / 2;
  if (rows <= 0 || heads <= 0 || half <= 0) return KernelStatus::Ok();
  const std::size_t shared = static_cast<std::size_t>(2 * half) * sizeof(float);
  if (shared > 48 * 1024) return fail(__FILE__, __LINE__, "rope_cuda: rot too large");
  rope_kernel<<<static_cast<unsigned>(rows), row_threads(heads * half), shared, s>>>(
      x, pos, heads, head_stride, offset, half, inv_freq, mscale, neox);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus silu_mul_cuda(const float* gate_up, float* out, std::int64_t rows,
                           std::int64_t inter, Stream s) {
  if (rows <= 0 || inter <= 0) return KernelStatus::Ok();
  constexpr unsigned kThreads = 256;
  const bool vec = inter % 4 == 0 && aligned16(gate_up) && aligned16(out);
  const std::int64_t per_block = vec ? 4 * kThreads : kThreads;
  const auto chunks = static_cast<unsigned>((inter + per_block - 1) / per_block);
  const std::int64_t grid = rows * chunks;
  if (grid > 0x7fffffff) return fail(__FILE__, __LINE__, "silu_mul_cuda: too many rows");
  if (vec)
    silu_mul_kernel<4><<<static_cast<unsigned>(grid), kThreads, 0, s>>>(gate_up, out, inter,
                                                                        chunks);
  else
    silu_mul_kernel<1><<<static_cast<unsigned>(grid), kThreads, 0, s>>>(gate_up, out, inter,
                                                                        chunks);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus add_bias_cuda(float* y, const float* bias, std::int64_t rows, std::int64_t cols,
                           Stream s) {
  if (rows <= 0 || cols <= 0) return KernelStatus::Ok();
  constexpr unsigned kThreads = 256;
  const bool vec = cols % 4 == 0 && aligned16(y) && aligned16(bias);
  const std::int64_t per_block = vec ? 4 * kThreads : kThreads;
  const auto chunks = static_cast<unsigned>((cols + per_block - 1) / per_block);
  const std::int64_t grid = rows * chunks;
  if (grid > 0x7fffffff) return fail(__FILE__, __LINE__, "add_bias_cuda: too many rows");
  if (vec)
    add_bias_kernel<4><<<static_cast<unsigned>(grid), kThreads, 0, s>>>(y, bias, cols, chunks);
  else
    add_bias_kernel<1><<<static_cast<unsigned>(grid), kThreads, 0, s>>>(y, bias, cols, chunks);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus add_scaled_cuda(float* y, const float* x, std::int64_t n, float a, Stream s) {
  if (n <= 0) return KernelStatus::Ok();
  constexpr unsigned kThreads = 256;
  const bool vec = n % 4 == 0 && aligned16(y) && aligned16(x);
  const std::int64_t nvec = vec ? n / 4 : n;
  const auto blocks =
      static_cast<unsigned>(std::min<std::int64_t>((nvec + kThreads - 1) / kThreads, kMaxBlocks));
  if (vec)
    add_scaled_kernel<4><<<blocks, kThreads, 0, s>>>(y, x, nvec, a);
  else
    add_scaled_kernel<1><<<blocks, kThreads, 0, s>>>(y, x, nvec, a);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus sigmoid_gate_cuda(float* y, const float* gate, std::int64_t rows, std::int64_t cols,
                               Stream s) {
  if (rows <= 0 || cols <= 0) return KernelStatus::Ok();
  constexpr unsigned kThreads = 256;
  const auto chunks = static_cast<unsigned>((cols + kThreads - 1) / kThreads);
  const std::int64_t grid = rows * chunks;
  if (grid > 0x7fffffff) return fail(__FILE__, __LINE__, "sigmoid_gate_cuda: too many rows");
  sigmoid_gate_kernel<<<static_cast<unsigned>(grid), kThreads, 0, s>>>(y, gate, cols, chunks);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus gather_rows_cuda(const float* src, const std::int32_t* index, std::int64_t n,
                              std::int64_t cols, float* dst, Stream s) {
  if (n <= 0 || cols <= 0) return KernelStatus::Ok();
  constexpr unsigned kThreads = 256;
  const auto chunks = static_cast<unsigned>((cols + kThreads - 1) / kThreads);
  const std::int64_t grid = n * chunks;
  if (grid > 0x7fffffff) return fail(__FILE__, __LINE__, "gather_rows_cuda: too many rows");
  gather_rows_kernel<<<static_cast<unsigned>(grid), kThreads, 0, s>>>(src, index, cols, dst,
                                                                      chunks);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus argmax_cuda(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t* out,
                         Stream s) {
  if (rows <= 0) return KernelStatus::Ok();
  if (cols <= 0) return fail(__FILE__, __LINE__, "argmax_cuda: empty rows");
  const bool vec = cols % 4 == 0 && aligned16(x);
  const std::int64_t nvec = vec ? cols / 4 : cols;
  const auto threads =
      static_cast<unsigned>(std::clamp<std::int64_t>((nvec + 31) / 32 * 32, 32, 1024));
  if (vec)
    argmax_kernel<4><<<static_cast<unsigned>(rows), threads, 0, s>>>(x, cols, out);
  else
    argmax_kernel<1><<<static_cast<unsigned>(rows), threads, 0, s>>>(x, cols, out);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

}  // namespace tpp::kernels
