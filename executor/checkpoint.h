// Checkpoints on disk, the two ways vLLM loads them:
//  - sharded_state (vLLM's ShardedStateLoader): one set of safetensors files per rank,
//    model-rank-{rank}-part-{part}.safetensors, holding that rank's parameters under vLLM's own
//    names (merged qkv_proj, gate_up_proj, w13_weight), ready to copy in. vLLM numbers the files
//    by TP rank; with pp > 1 stages would collide, so tpp numbers them pp x tp + tp (with
//    pp = 1, vLLM's numbering). DP replicas hold the same weights and read replica 0's files.
//  - an ordinary Hugging Face checkpoint (vLLM's default loader): every *.safetensors file in the
//    directory, whole tensors under the checkpoint's names (q_proj, k_proj, ...; routed experts
//    one tensor each, mlp.experts.{e}.w1.weight); each rank reads the tensors its stage needs
//    and cuts its shard, as the sharded parameters' weight_loader does.
// Both give the same bits as the seeded weights they were written from.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "executor/decoder.h"
#include "model/model.h"
#include "simulator/parallel.h"

namespace tpp::exec {

int checkpoint_rank(const Place& at, const sim::ParallelConfig& p);
std::string sharded_file_name(int rank, int part);

struct LoadStats {
  std::int64_t bytes_read = 0;  // tensor bytes read from files
  int files = 0;
};

// Writes this rank's parameters; parts of at most `max_part_bytes` (vLLM's max_size).
Expected<LoadStats> save_sharded(const Decoder& d, const std::string& dir, int rank,
                                 std::int64_t max_part_bytes = std::int64_t{5} << 30);
Expected<LoadStats> load_sharded(Decoder& d, const std::string& dir, int rank);
Expected<LoadStats> load_hf(Decoder& d, const std::string& dir);

// The whole model's seeded weights as a Hugging Face checkpoint (model.safetensors; routed
// experts one tensor each), for tests and for comparing the two loaders.
std::optional<Error> write_hf_checkpoint(const model::Model& loaded, const std::string& dir);

// Bytes a rank reads at load: its shard (sharded_state), or the whole tensors of its stage
// (a Hugging Face checkpoint), at 4 bytes a value as this executor stores them.
std::int64_t sharded_load_bytes(const model::Model& loaded, const sim::ParallelConfig& p, const Place& at);
std::int64_t hf_load_bytes(const model::Model& loaded, const sim::ParallelConfig& p, const Place& at);

}  // namespace tpp::exec
