// Seeded weights generated where they live (cuda_ops.h): the same values as the CPU generator of
// executor/weights.cc (seeded_shard), element by element, from kernels/seeded.h.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/cuda_ops.h"
#include "kernels/seeded.h"

namespace tpp::kernels {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = 1 << 16;

// The value of shard element (e, r, c), as seeded_shard computes it: padding rows (past the real
// tensor's rows) are 0, norm weights 1, everything else the seeded value of its global index.
__device__ __forceinline__ float shard_value(const SeedShard& sh, std::int64_t e, std::int64_t r,
                                             std::int64_t c) {
  const std::int64_t gr = sh.row0 + r, gc = sh.col0 + c, ge = sh.expert0 + e;
  if (gr >= sh.global_rows) return 0.f;
  if (sh.ones) return 1.f;
  const auto index = static_cast<std::uint64_t>((ge * sh.tensor_rows + gr) * sh.tensor_cols + gc);
  return seeded_value(sh.name_hash, index, sh.scale);
}

template <DType T>
__global__ void seeded_kernel(SeedShard sh, void* dst, float fp8_scale) {
  const std::int64_t n = sh.count * sh.rows * sh.cols;
  const std::int64_t per_expert = sh.rows * sh.cols;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t e = k / per_expert, rc = k - e * per_expert;
    const std::int64_t r = rc / sh.cols, c = rc - r * sh.cols;
    const float v = shard_value(sh, e, r, c);
    if constexpr (T == DType::kF32) {
      static_cast<float*>(dst)[k] = v;
    } else if constexpr (T == DType::kBF16) {
      static_cast<bf16_t*>(dst)[k] = __bfloat16_as_ushort(__float2bfloat16_rn(v));
    } else {
      static_cast<fp8_t*>(dst)[k] =
          static_cast<fp8_t>(__nv_cvt_float_to_fp8(v / fp8_scale, __NV_SATFINITE, __NV_E4M3));
    }
  }
}

}  // namespace

KernelStatus seeded_fill_cuda(const SeedShard& sh, DType t, void* dst, float fp8_scale,
                              Stream s) {
  if (sh.count < 0 || sh.rows < 0 || sh.cols < 0)
    return KernelStatus::Fail(std::string(__FILE__) + ":" + std::to_string(__LINE__) +
                              ": seeded_fill_cuda: negative shard shape");
  const std::int64_t n = sh.count * sh.rows * sh.cols;
  if (n == 0) return KernelStatus::Ok();
  const auto blocks =
      static_cast<unsigned>(std::min<std::int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
  switch (t) {
    case DType::kF32:
      seeded_kernel<DType::kF32><<<blocks, kThreads, 0, s>>>(sh, dst, fp8_scale);
      break;
    case DType::kBF16:
      seeded_kernel<DType::kBF16><<<blocks, kThreads, 0, s>>>(sh, dst, fp8_scale);
      break;
    case DType::kFP8:
      seeded_kernel<DType::kFP8><<<blocks, kThreads, 0, s>>>(sh, dst, fp8_scale);
      break;
  }
  TPP_CUDA_CHECK(cudaGetLastError());
  return KernelStatus::Ok();
}

}  // namespace tpp::kernels
