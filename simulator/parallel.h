// How a model is split over GPUs, checked the way vLLM checks it when the engine is built.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/tensors.h"

namespace tpp::sim {

// Each of tp, pp and dp is at most this, so that their product (and every product of it with a
// size) stays inside int64.
inline constexpr std::int64_t kMaxParallel = std::int64_t{1} << 20;

struct ParallelConfig {
  std::int64_t tp = 1;  // tensor parallel: ranks that split every layer
  std::int64_t pp = 1;  // pipeline parallel: stages of consecutive layers
  std::int64_t dp = 1;  // data parallel: independent replicas
  bool expert_parallel = false;  // --enable-expert-parallel: whole experts over tp x dp ranks
  std::vector<std::int64_t> pp_layer_partition;  // VLLM_PP_LAYER_PARTITION; empty = default

  std::int64_t gpus() const { return tp * pp * dp; }
  std::int64_t ep() const { return expert_parallel ? tp * dp : 1; }
};

// Why vLLM would refuse this split for this model ("128 attention heads are not divisible by
// tp=3"), or nullopt. Sizes outside [1, kMaxParallel] and partitions with a stage outside
// [1, layers] are refused before anything is multiplied or added. Checks vLLM's own rules: heads divisible by tp (ModelConfig.
// verify_with_parallel_config), KV heads divisible by tp or tp by KV heads (QKVParallelLinear),
// layers per stage, MLP and expert widths divisible by tp (MergedColumnParallelLinear,
// FusedMoE), and quantized shard alignment (fp8 block_n/block_k, int group size).
std::optional<std::string> check_parallel(const model::Model& m, const ParallelConfig& p);

// Why vLLM would refuse VLLM_PP_LAYER_PARTITION for this model and pp (get_pp_indices), or
// nullopt: as many stages as pp, each of 1 to the model's layers, adding up to its layers.
std::optional<std::string> check_partition(const model::Model& m,
                                           const std::vector<std::int64_t>& partition,
                                           std::int64_t pp);

// Layers of each PP stage, as vllm/distributed/utils.py get_pp_indices splits them:
// VLLM_PP_LAYER_PARTITION when given; else layers / pp each, with the remainder added one layer
// at a time to stages [-2], [-3], ... (the last stage also holds the norm and LM head).
std::vector<std::int64_t> pp_partition(std::int64_t num_layers, std::int64_t pp,
                                       const std::vector<std::int64_t>& override_partition);

// vLLM pads the vocabulary to a multiple of 64 before splitting it (vocab_parallel_embedding.py
// DEFAULT_VOCAB_PADDING_SIZE, pad_vocab_size).
std::int64_t padded_vocab(std::int64_t vocab);

// One rank's shard of a tensor: [rows, cols] x count. With expert parallelism the count is the
// experts of the rank holding the most (vLLM's determine_expert_map gives the first E % ep ranks
// one more).
struct Shard {
  std::int64_t rows, cols, count;
};
Shard shard_of(const model::TensorSpec& t, const model::Model& m, const ParallelConfig& p);

}  // namespace tpp::sim
