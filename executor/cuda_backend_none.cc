// A build without CUDA: there is no GPU backend.
#include "executor/backend.h"

namespace tpp::exec {

std::unique_ptr<Backend> make_cuda_backend(Comm&, const CudaOptions&, std::string& why) {
  why = "this tpp-run was built without CUDA (no nvcc found at configure time): rebuild on a "
        "machine with the CUDA toolkit, or use --backend cpu";
  return nullptr;
}

}  // namespace tpp::exec
