// vLLM V1's KV-cache groups: how a model whose layers attend differently (full attention,
// sliding windows, chunked local attention) shares one block pool. Source: vllm/v1/core/
// kv_cache_utils.py (_get_kv_cache_groups_uniform_page_size, get_kv_cache_configs,
// get_max_concurrency_for_kv_cache_config, _report_kv_cache_config) and the managers in
// vllm/v1/core/single_type_kv_cache_manager.py; docs/memory-model.md, "Hybrid models".
//
//   Layers of one spec (kind and window) are dealt into cdiv(layers, group_size) groups,
//   group_size the fewest layers of any spec (the most, when that is under 1.5 x the fewest);
//   a group short of group_size layers leaves tensor slots unused. Every group draws blocks from one pool; a worker's pool is
//   available // page_size // (its layers in the largest group), the engine's the least of them.
//   A request holds, in each group, the blocks of the tokens its layers still attend to.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"

namespace tpp::sim {

// Groups of one spec, all alike.
struct KvGroupKind {
  model::LayerAttention kind = model::LayerAttention::kFull;
  std::int64_t window = 0;   // sliding window or chunk size (tokens); 0 for full attention
  std::int64_t groups = 0;   // how many groups of this spec
  std::int64_t layers = 0;   // the model's layers of this spec
};

struct KvGroups {
  std::int64_t block_size = 16;
  std::int64_t group_size = 0;       // layers a group holds (its tensors: one per slot)
  std::vector<KvGroupKind> kinds;    // full attention first, when there is any
  std::vector<std::vector<std::int64_t>> layers_of_group;  // each group's main layers
  // DeepSeek-V3.2: the cached tokens each query reads at most (index_topk). No KV rule (every
  // token stays cached), but the step model times the attention over this window.
  std::int64_t sparse_topk = 0;

  std::int64_t num_groups() const;
  // One group of full attention: the classic pool of vLLM before hybrid models (each block
  // holds block_size tokens of every layer).
  bool uniform_full() const;
  // Blocks a request holds over every group once `computed` tokens are cached and `n` more are
  // being computed: full attention cdiv(computed + n, block_size); a sliding window frees the
  // blocks wholly before computed - window + 1 (SlidingWindowManager.remove_skipped_blocks),
  // a chunked layer those before its current chunk (ChunkedLocalAttentionManager); a linear
  // layer's state is one block (MambaManager, mamba_cache_mode "none": no speculative tokens).
  std::int64_t held(std::int64_t computed, std::int64_t n) const;
  // The most blocks one request of `tokens` (prompt and output) holds, prefilled in chunks of at
  // most `chunk` tokens: the spec's max_memory_usage_bytes / page_size_bytes at that length
  // (a sliding window's counts one block more than its window spans, as vLLM's does).
  std::int64_t peak(std::int64_t tokens, std::int64_t chunk) const;
  // Layers of the largest group among `first`..`first + count` (a PP stage's layers): the
  // divisor of its pool.
  std::int64_t stage_group_size(std::int64_t first, std::int64_t count) const;
  // The tokens vLLM logs as its KV cache size: blocks // groups x block_size.
  std::int64_t tokens(std::int64_t blocks) const;
};

// The groups of model `m`'s main layers, as vLLM forms them.
KvGroups kv_groups(const model::Model& m, std::int64_t block_size);

}  // namespace tpp::sim
