// Conversions between float32 and the weight types (cuda_ops.h): grid-stride element-wise
// kernels, and a max |x| reduction for a dynamic per-tensor fp8 scale.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/cuda_ops.h"

namespace tpp::kernels {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = 1 << 16;  // grid-stride past this: enough to fill any GPU

unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
}

__device__ __forceinline__ std::int64_t first_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_stride() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ float fp8_value(fp8_t b) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(b), __NV_E4M3);
  return __half2float(__half(h));
}

__global__ void f32_to_bf16_kernel(const float* __restrict__ x, bf16_t* __restrict__ y,
                                   std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
}

__global__ void bf16_to_f32_kernel(const bf16_t* __restrict__ x, float* __restrict__ y,
                                   std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = __uint_as_float(static_cast<unsigned>(x[i]) << 16);
}

// e4m3, saturating at its largest finite value (448, OCP FP8) rather than overflowing.
__device__ __forceinline__ fp8_t to_fp8(float v) {
  return static_cast<fp8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

__global__ void f32_to_fp8_kernel(const float* __restrict__ x, fp8_t* __restrict__ y,
                                  std::int64_t n, float scale) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = to_fp8(x[i] / scale);
}

__global__ void fp8_to_bf16_kernel(const fp8_t* __restrict__ x, bf16_t* __restrict__ y,
                                   std::int64_t n, float scale) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride())
    y[i] = __bfloat16_as_ushort(__float2bfloat16_rn(fp8_value(x[i]) * scale));
}

__global__ void fp8_to_f32_kernel(const fp8_t* __restrict__ x, float* __restrict__ y,
                                  std::int64_t n, float scale) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = fp8_value(x[i]) * scale;
}

// |x| of a float is ordered like its bits as an unsigned integer (NaN above inf), so an atomic
// integer max over the bits is the float max, whatever the order of the blocks.
__global__ void absmax_kernel(const float* __restrict__ x, std::int64_t n, unsigned* out) {
  float m = 0.f;
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    const float a = fabsf(x[i]);
    m = (a > m || a != a) ? a : m;
  }
  unsigned bits = __float_as_uint(m);
  for (int off = 16; off > 0; off >>= 1) bits = max(bits, __shfl_xor_sync(0xffffffffu, bits, off));
  __shared__ unsigned warp_max[kThreads / 32];
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x / 32] = bits;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned b = 0;
    for (int w = 0; w < kThreads / 32; ++w) b = max(b, warp_max[w]);
    atomicMax(out, b);
  }
}

__global__ void quantize_fp8_dynamic_kernel(const float* __restrict__ x, std::int64_t n,
                                            const float* __restrict__ amax, fp8_t* __restrict__ y,
                                            float* __restrict__ scale_out) {
  const float a = *amax;  // the largest |x| maps to e4m3's largest finite value, 448
  const float s = a > 0.0f && a < INFINITY ? a / 448.0f : 1.0f;
  if (blockIdx.x == 0 && threadIdx.x == 0) *scale_out = s;
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = to_fp8(x[i] / s);
}

__global__ void fill_kernel(float* __restrict__ y, std::int64_t n, float v) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = v;
}

}  // namespace

KernelStatus quantize_fp8_dynamic_cuda(const float* x, std::int64_t n, const float* amax,
                                       fp8_t* y, float* scale_out, Stream s) {
  // At least one block: the scale is written even for an empty tensor.
  quantize_fp8_dynamic_kernel<<<std::max(1u, blocks_for(n)), kThreads, 0, s>>>(x, n, amax, y,
                                                                             scale_out);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus fill_cuda(float* y, std::int64_t n, float v, Stream s) {
  if (n <= 0) return KernelStatus::Ok();
  fill_kernel<<<blocks_for(n), kThreads, 0, s>>>(y, n, v);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus f32_to_bf16_cuda(const float* x, bf16_t* y, std::int64_t n, Stream s) {
  if (n <= 0) return KernelStatus::Ok();
  f32_to_bf16_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus bf16_to_f32_cuda(const bf16_t* x, float* y, std::int64_t n, Stream s) {
  if (n <= 0) return KernelStatus::Ok();
  bf16_to_f32_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus f32_to_fp8_cuda(const float* x, fp8_t* y, std::int64_t n, float scale, Stream s) {
  if (n <= 0) return KernelStatus::Ok();
  f32_to_fp8_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n, scale);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus fp8_to_bf16_cuda(const fp8_t* x, bf16_t* y, std::int64_t n, float scale, Stream s) {
  if (n <= 0) return KernelStatus::Ok();
  fp8_to_bf16_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n, scale);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus fp8_to_f32_cuda(const fp8_t* x, float* y, std::int64_t n, float scale, Stream s) {
  if (n <= 0) return KernelStatus::Ok();
  fp8_to_f32_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n, scale);
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

KernelStatus absmax_cuda(const float* x, std::int64_t n, float* out, Stream s) {
  TPP_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), s));  // n == 0: max of nothing is 0
  if (n <= 0) return KernelStatus::Ok();
  absmax_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, n, reinterpret_cast<unsigned*>(out));
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

}  // namespace tpp::kernels
