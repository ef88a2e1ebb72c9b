#include "simulator/kv_groups.h"

#include <algorithm>

namespace tpp::sim {
namespace {

std::int64_t cdiv(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

std::int64_t window_of(const model::Model& m, model::LayerAttention k) {
  switch (k) {
    case model::LayerAttention::kSlidingWindow: return m.sliding_window;
    case model::LayerAttention::kChunkedLocal: return m.attention_chunk_size;
    case model::LayerAttention::kFull:
    case model::LayerAttention::kLinear: break;
  }
  return 0;
}

// Blocks wholly behind what a layer of this kind still attends to, `computed` tokens in.
std::int64_t skipped(const KvGroupKind& g, std::int64_t computed, std::int64_t bs) {
  switch (g.kind) {
    case model::LayerAttention::kSlidingWindow:
      return std::max<std::int64_t>(0, computed - g.window + 1) / bs;
    case model::LayerAttention::kChunkedLocal:
      return computed / g.window * g.window / bs;
    case model::LayerAttention::kFull:
    case model::LayerAttention::kLinear: break;
  }
  return 0;
}

}  // namespace

KvGroups kv_groups(const model::Model& m, std::int64_t block_size) {
  KvGroups g;
  g.block_size = block_size;
  if (m.indexer) g.sparse_topk = m.indexer->topk;
  // Layers by spec, in the order the specs first appear, full attention first.
  std::vector<std::pair<KvGroupKind, std::vector<std::int64_t>>> by_spec;
  for (std::int64_t l = 0; l < m.num_layers; ++l) {
    KvGroupKind k{m.layer_attention_of(l), window_of(m, m.layer_attention_of(l)), 0, 0};
    auto it = std::find_if(by_spec.begin(), by_spec.end(), [&](const auto& s) {
      return s.first.kind == k.kind && s.first.window == k.window;
    });
    if (it == by_spec.end()) {
      by_spec.push_back({k, {}});
      it = std::prev(by_spec.end());
    }
    it->second.push_back(l);
  }
  std::stable_sort(by_spec.begin(), by_spec.end(), [](const auto& a, const auto& b) {
    return a.first.kind == model::LayerAttention::kFull && b.first.kind != a.first.kind;
  });
  if (by_spec.size() == 1) {
    // _get_kv_cache_groups_uniform_type: one group of every layer.
    g.group_size = m.num_layers;
  } else {
    std::int64_t lo = INT64_MAX, hi = 0;
    for (const auto& [k, layers] : by_spec) {
      lo = std::min<std::int64_t>(lo, static_cast<std::int64_t>(layers.size()));
      hi = std::max<std::int64_t>(hi, static_cast<std::int64_t>(layers.size()));
    }
    // _get_kv_cache_groups_uniform_page_size: the fewest layers of a spec, or the most when
    // that is under 1.5 x the fewest (fewer padding layers; 1.25 from vLLM PR #29303, 1.5 since
    // PR #36684, March 2026).
    g.group_size = 2 * hi < 3 * lo ? hi : lo;
  }
  for (auto& [k, layers] : by_spec) {
    const std::int64_t n = static_cast<std::int64_t>(layers.size());
    k.layers = n;
    k.groups = cdiv(n, g.group_size);
    // Strided, layers[i::groups], so that every PP stage gets a share of each group.
    for (std::int64_t i = 0; i < k.groups; ++i) {
      std::vector<std::int64_t> group;
      for (std::int64_t j = i; j < n; j += k.groups) group.push_back(layers[j]);
      g.layers_of_group.push_back(std::move(group));
    }
    g.kinds.push_back(k);
  }
  return g;
}

std::int64_t KvGroups::num_groups() const {
  std::int64_t n = 0;
  for (const auto& k : kinds) n += k.groups;
  return n;
}

bool KvGroups::uniform_full() const {
  return kinds.size() == 1 && kinds[0].kind == model::LayerAttention::kFull;
}

std::int64_t KvGroups::held(std::int64_t computed, std::int64_t n) const {
  const std::int64_t all = cdiv(computed + n, block_size);
  std::int64_t b = 0;
  for (const auto& k : kinds)  // a linear layer's state: one block a request (MambaManager)
    b += k.groups * (k.kind == model::LayerAttention::kLinear
                         ? 1
                         : all - skipped(k, computed, block_size));
  return b;
}

std::int64_t KvGroups::peak(std::int64_t tokens, std::int64_t chunk) const {
  std::int64_t b = 0;
  for (const auto& k : kinds) {
    std::int64_t per = cdiv(tokens, block_size);
    if (k.kind == model::LayerAttention::kSlidingWindow)  // SlidingWindowSpec
      per = cdiv(std::min(k.window - 1 + chunk, tokens), block_size) + 1;
    else if (k.kind == model::LayerAttention::kChunkedLocal)  // ChunkedLocalAttentionSpec
      per = cdiv(std::min(k.window + chunk, tokens), block_size);
    else if (k.kind == model::LayerAttention::kLinear)  // MambaSpec, mamba_cache_mode none
      per = 1;
    b += k.groups * per;
  }
  return b;
}

std::int64_t KvGroups::stage_group_size(std::int64_t first, std::int64_t count) const {
  std::int64_t most = 0;
  for (const auto& layers : layers_of_group) {
    const auto n = std::count_if(layers.begin(), layers.end(), [&](std::int64_t l) {
      return l >= first && l < first + count;
    });
    most = std::max<std::int64_t>(most, n);
  }
  return most;
}

std::int64_t KvGroups::tokens(std::int64_t blocks) const {
  const std::int64_t n = std::max<std::int64_t>(1, num_groups());
  return blocks / n * block_size;
}

}  // namespace tpp::sim
