// Seeded weights that need no checkpoint: every element is a pure function of (tensor name,
// global element index), a counter-based generator (splitmix64 of the name's hash and the
// index), so every sharding of one model holds the same logical weights and no rank ever builds
// a whole tensor: a rank computes its shard's elements from their global indices.
//
// Scale: linear weights uniform in +-sqrt(3 / fan_in) (unit variance out for unit variance in,
// as Kaiming's uniform rule with gain 1), norms 1, embeddings uniform with unit variance, biases
// 0.02 x uniform; the LM head at 4x its fan-in scale so that logits spread and greedy tokens
// change from step to step. Activations stay finite: every layer normalises its input (RMSNorm).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/tensors.h"
#include "simulator/parallel.h"

namespace tpp::exec {

// The value of element `index` of the unsharded tensor `name` (`fan_in` its input features).
float seeded_value(std::uint64_t name_hash, std::uint64_t index, float scale);
std::uint64_t name_hash(const std::string& name);
float seeded_scale(const model::TensorSpec& t);

// Which slice of an unsharded tensor a rank holds: its shard's rows, columns and experts as
// offsets into the global tensor. `tp_rank` in [0, tp); `ep_rank` in [0, ep) (expert
// parallelism: whole experts, vLLM's determine_expert_map: contiguous, the first E % ep ranks
// one more).
struct ShardMap {
  std::int64_t rows = 0, cols = 0, count = 0;        // the shard's shape
  std::int64_t row0 = 0, col0 = 0, expert0 = 0;      // where it starts in the global tensor
  std::int64_t kv_head_dim = 0;                      // kKvHeads: rows per KV head
  std::int64_t global_rows = 0;                      // rows of the unsharded tensor (vocab: the
                                                     // real vocabulary; padding rows are 0)
};
ShardMap shard_map(const model::TensorSpec& t, const model::Model& m, const sim::ParallelConfig& p,
                   int tp_rank, int ep_rank);

// The shard's elements, row-major [count][rows][cols], float32.
std::vector<float> seeded_shard(const model::TensorSpec& t, const ShardMap& s);
// The same shard cut from whole tensors (a checkpoint's): `expert(e)` gives global expert e's
// [rows][cols] (the tensor itself when count is 1). Vocabulary padding rows are 0.
std::vector<float> cut_shard(const model::TensorSpec& t, const ShardMap& s,
                             const std::function<const float*(std::int64_t)>& expert);

}  // namespace tpp::exec
