#include <cmath>

#include "kernels/rmsnorm.h"

namespace tpp::kernels {

void rmsnorm_ref(const float* x, const float* w, float* y, std::int64_t rows, std::int64_t cols,
                 float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    double ss = 0;
    for (std::int64_t c = 0; c < cols; ++c) ss += static_cast<double>(xr[c]) * xr[c];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(cols) + eps));
    for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] = xr[c] * inv * w[c];
  }
}

#ifndef TPP_HAVE_CUDA
KernelStatus rmsnorm_cuda(const float*, const float*, float*, std::int64_t, std::int64_t, float) {
  return KernelStatus::Fail("tpp was built without CUDA");
}
KernelStatus rmsnorm_cuda_host(const float*, const float*, float*, std::int64_t, std::int64_t,
                               float) {
  return KernelStatus::Fail("tpp was built without CUDA");
}
#endif

}  // namespace tpp::kernels
