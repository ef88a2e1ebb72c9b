// tpp-profile's collective modes: the predicted time of a collective (one size or a sweep) in
// nccl-tests' columns or as JSON, nccl-tests output imported into a cluster file, and
// nccl-tests output laid beside the prediction. Each returns the exit code (0, or 2 with one
// line on stderr).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tpp::tools {

struct CollectiveArgs {
  std::string cluster, collective, bytes, sweep = "8:1G", format = "text", dtype = "float", algorithm;
  std::int64_t ranks = 0;
  int gpus_per_thread = 1;
  bool cuda_graph = false, in_place = false, model_only = false;
  bool vllm = false;  // an all-reduce as vLLM's TP group dispatches it: its custom all-reduce where it runs
};
int print_collective(const CollectiveArgs& a);

// Reads each file (nccl-tests output), adds its tables to the cluster's `collectives:` and
// writes the cluster file `output` (the cluster's own text, its comments kept, with the tables
// appended). `op`: the collective where neither the text nor the file name says.
int import_nccl_tests(const std::vector<std::string>& files, const std::string& cluster,
                      const std::string& output, const std::string& op);

// Each file's rows beside the model's prediction for the same collective, ranks and
// conditions, with the error and its median over 1 KB-1 GB.
int check_nccl_tests(const std::vector<std::string>& files, const std::string& cluster,
                     const std::string& op, const std::string& format, const std::string& algorithm);

}  // namespace tpp::tools
