// nccl-tests output (all_reduce_perf, all_gather_perf, reduce_scatter_perf, alltoall_perf,
// sendrecv_perf) read into a cluster's `collectives:` tables, with the conditions it ran under.
// The format is the one nccl-tests' src/common.cu prints: a header naming nThread, nGpus and
// (from 2.10) "graph: G", one "Rank" line per GPU (host and device), the column header, then a
// row per size with the out-of-place and in-place time, algbw, busbw and #wrong (or "error" in
// versions before 2.11).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "hardware_profiles/hardware.h"

namespace tpp::hw {

struct NcclTestsRow {
  std::int64_t bytes = 0, count = 0;
  double out_of_place_us = 0;  // 0: not given ("N/A")
  double in_place_us = 0;
  int line = 0;
};

struct NcclTestsRun {
  std::string file;
  std::string op;         // CollectiveTable's names: all_reduce | all_gather | ... | send_recv
  std::string program;    // all_reduce_perf, ...
  std::int64_t ranks = 0;  // GPUs taking part
  std::int64_t nodes = 0;  // distinct hosts among the Rank lines; 0: not printed
  std::int64_t threads = 1, gpus_per_thread = 1, processes = 1;
  bool graph = false;     // -G > 0: timed as CUDA graph launches
  std::string dtype;      // the rows' type column (float, half, bfloat16, ...)
  std::string version;    // "nccl-tests 2.13.9, NCCL 2.21.5" where the header says
  std::string device;     // rank 0's device name where printed
  std::vector<NcclTestsRow> rows;  // sizes strictly increasing, zero-count rows dropped
};

// `op` names the collective when the text does not ("# Collective test starting:" line) and
// the file name does not either (all_reduce, allreduce, all_gather, ...); empty: required from
// the text. Errors name the file and the line.
Expected<NcclTestsRun> parse_nccl_tests(const std::string& text, const std::string& file,
                                        const std::string& op = "");
Expected<NcclTestsRun> read_nccl_tests(const std::string& path, const std::string& op = "");

// The run's tables for a cluster of `gpus_per_node` GPUs a node: out-of-place, and in-place
// where the run has it, each with its conditions and `source` naming the file.
std::vector<CollectiveTable> nccl_tests_tables(const NcclTestsRun& run, std::int64_t gpus_per_node);

// A collective table as the lines of one item of a cluster file's `collectives:` list, each
// line starting with `indent` ("- op: ..." first).
std::string collective_table_yaml(const CollectiveTable& t, const std::string& indent);

}  // namespace tpp::hw
