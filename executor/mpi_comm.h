// The CPU backend's communication: MPI (Debian's OpenMPI), one rank per simulated GPU. TP and EP
// groups are MPI communicators split from the world by the plan's layout (layout.h).
#pragma once

#include <memory>

#include "executor/comm.h"
#include "simulator/parallel.h"

namespace tpp::exec {

// Initialises MPI (once per process) and builds the groups; an error when the world's size is
// not tp x pp x dp. Errors from MPI carry the call, file:line and MPI's own message.
Expected<std::unique_ptr<Comm>> make_mpi_comm(int* argc, char*** argv,
                                              const sim::ParallelConfig& p);
// MPI's world rank and size before a plan is read (0 and 1 outside mpirun).
void mpi_world(int* argc, char*** argv, int* rank, int* size);
void mpi_finalize();

}  // namespace tpp::exec
