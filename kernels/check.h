// Kernel status and the CUDA check macro. Kernels are leaves (no project includes), so they
// carry their own small status: ok, or a message with file:line and CUDA's own error string.
#pragma once

#include <string>

namespace tpp::kernels {

struct KernelStatus {
  bool ok = true;
  std::string message;  // "file:line: cudaMalloc(...) failed: out of memory"
  static KernelStatus Ok() { return {}; }
  static KernelStatus Fail(std::string m) { return {false, std::move(m)}; }
};

}  // namespace tpp::kernels

// Returns a failed KernelStatus from the calling function when a CUDA call fails.
#define TPP_CUDA_CHECK(call)                                                              \
  do {                                                                                    \
    cudaError_t tpp_err_ = (call);                                                        \
    if (tpp_err_ != cudaSuccess)                                                          \
      return ::tpp::kernels::KernelStatus::Fail(std::string(__FILE__) + ":" +             \
                                                std::to_string(__LINE__) + ": " #call     \
                                                " failed: " + cudaGetErrorString(tpp_err_)); \
  } while (0)
