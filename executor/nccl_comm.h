// The GPU backend's communication: NCCL for the collectives over a rank's TP and EP groups
// (device pointers), one communicator per group, bootstrapped over MPI (ncclGetUniqueId on the
// group's first rank, broadcast); everything else (the scheduler's messages, stage hand-offs,
// barriers, the clock, abort) goes through the MPI communicator it wraps.
#pragma once

#include <memory>

#include "executor/comm.h"
#include "simulator/parallel.h"

namespace tpp::exec {

// `mpi` (from make_mpi_comm) must outlive the result. `device`: the CUDA device this rank uses
// (already current). An error (NCCL's message, file:line) when NCCL is missing or fails.
Expected<std::unique_ptr<Comm>> make_nccl_comm(Comm& mpi, const sim::ParallelConfig& p,
                                               int device);

}  // namespace tpp::exec
