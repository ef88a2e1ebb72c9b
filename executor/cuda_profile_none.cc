// A build without CUDA: nothing to measure.
#include "executor/cuda_profile.h"

namespace tpp::exec {

namespace {
Error no_cuda() {
  return make_error("", 0, 0,
                    "built without CUDA (no nvcc found at configure time): rebuild on a machine "
                    "with the CUDA toolkit");
}
}  // namespace

Expected<std::string> cuda_device_name(int) { return no_cuda(); }
Expected<CudaProfile> profile_cuda(const CudaProfileOptions&) { return no_cuda(); }

}  // namespace tpp::exec
