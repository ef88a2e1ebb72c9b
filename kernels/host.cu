// Host helpers for tests and benchmarks (cuda_ops.h): device memory and blocking copies, each
// returning a KernelStatus with file:line and CUDA's message on failure.
#include <cuda_runtime.h>

#include <string>

#include "kernels/cuda_ops.h"

// TPP_CUDA_CHECK, and a failed call's error is also cleared (cudaGetLastError), so that the next
// kernel's launch check does not report it again (a failed cudaMalloc is not sticky).
#define TPP_HOST_CHECK(call)                                                                 \
  do {                                                                                       \
    cudaError_t tpp_host_err_ = (call);                                                      \
    if (tpp_host_err_ != cudaSuccess) {                                                      \
      cudaGetLastError();                                                                    \
      return ::tpp::kernels::KernelStatus::Fail(std::string(__FILE__) + ":" +                \
                                                std::to_string(__LINE__) + ": " #call        \
                                                " failed: " + cudaGetErrorString(tpp_host_err_)); \
    }                                                                                        \
  } while (0)

namespace tpp::kernels {

KernelStatus device_alloc(void** p, std::size_t bytes) {
  *p = nullptr;
  if (bytes == 0) return KernelStatus::Ok();
  TPP_HOST_CHECK(cudaMalloc(p, bytes));
  return KernelStatus::Ok();
}

void device_free(void* p) {
  if (p != nullptr && cudaFree(p) != cudaSuccess) cudaGetLastError();  // nothing to report to
}

KernelStatus to_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return KernelStatus::Ok();
  TPP_HOST_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return KernelStatus::Ok();
}

KernelStatus to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return KernelStatus::Ok();
  TPP_HOST_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return KernelStatus::Ok();
}

KernelStatus device_sync() {
  TPP_HOST_CHECK(cudaDeviceSynchronize());
  return KernelStatus::Ok();
}

}  // namespace tpp::kernels
