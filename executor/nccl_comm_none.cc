// A build without CUDA: there is no NCCL.
#include "executor/nccl_comm.h"

namespace tpp::exec {

Expected<std::unique_ptr<Comm>> make_nccl_comm(Comm&, const sim::ParallelConfig&, int) {
  return make_error("", 0, 0, "this tpp-run was built without CUDA, so without NCCL");
}

}  // namespace tpp::exec
