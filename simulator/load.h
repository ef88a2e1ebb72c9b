// Model loading time: the bytes one rank reads from the checkpoint, over what one node reads
// from its storage (the cluster profile's storage_read_GBps, which tpp-profile measures as a
// cold read). Two formats, as vLLM loads them: a Hugging Face checkpoint, where every rank
// reads the whole tensors of its stage and keeps its shard (the default loader), and
// sharded_state, where each rank reads only its own shard's files (ShardedStateLoader).
// The bytes are the checkpoint's storage format (model/tensors.h storage_bytes); the slowest
// rank sets the time. What it leaves out: the page cache, and ranks of one node sharing its
// storage bandwidth.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "simulator/parallel.h"

namespace tpp::sim {

struct LoadPrediction {
  std::int64_t hf_bytes = 0;       // the largest rank's, a Hugging Face checkpoint
  std::int64_t sharded_bytes = 0;  // the largest rank's, sharded_state
  std::optional<double> hf_s, sharded_s;  // absent without storage_read_GBps
  std::string source;              // where the bandwidth comes from
};

LoadPrediction predict_load(const model::Model& loaded, const ParallelConfig& p,
                            const hw::Cluster& c);

}  // namespace tpp::sim
