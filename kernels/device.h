// Which accelerators this process can use.
#pragma once

namespace tpp::kernels {

// Number of CUDA devices visible; 0 when built without CUDA, without a driver, or without a GPU.
int device_count();
// True when tpp was compiled with its CUDA kernels.
bool built_with_cuda();

}  // namespace tpp::kernels
