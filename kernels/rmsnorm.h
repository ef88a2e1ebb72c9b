// RMSNorm, as in Llama/Qwen/DeepSeek: y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w.
// Row-major [rows, cols] float32. The CPU reference is the definition; the CUDA kernel is
// checked against it in tests/kernels_test.cc (skipped where no GPU is present).
#pragma once

#include <cstdint>

#include "kernels/check.h"

namespace tpp::kernels {

void rmsnorm_ref(const float* x, const float* w, float* y, std::int64_t rows, std::int64_t cols,
                 float eps);

// Device pointers. One block per row; a block-wide reduction of the sum of squares.
KernelStatus rmsnorm_cuda(const float* x, const float* w, float* y, std::int64_t rows,
                          std::int64_t cols, float eps);

// Host pointers: copies in, runs rmsnorm_cuda, copies out (for tests and benchmarks).
KernelStatus rmsnorm_cuda_host(const float* x, const float* w, float* y, std::int64_t rows,
                               std::int64_t cols, float eps);

}  // namespace tpp::kernels
