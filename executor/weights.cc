#include "executor/weights.h"

#include "kernels/seeded.h"

#include <cmath>
#include <cstring>

namespace tpp::exec {
namespace {

using kernels::splitmix64;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

std::uint64_t name_hash(const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a, then mixed
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return splitmix64(h);
}

float seeded_value(std::uint64_t name_hash, std::uint64_t index, float scale) {
  return kernels::seeded_value(name_hash, index, scale);
}

float seeded_scale(const model::TensorSpec& t) {
  const std::string& n = t.name;
  if (t.cols == 1) {  // vectors: norms are 1, biases small
    return ends_with(n, ".bias") || n.find("bias") != std::string::npos ? 0.02f : 0.0f;
  }
  if (t.component == model::Component::kEmbedding) return std::sqrt(3.0f);
  const float fan = std::sqrt(3.0f / static_cast<float>(t.cols));
  return t.component == model::Component::kLmHead ? 4 * fan : fan;
}

ShardMap shard_map(const model::TensorSpec& t, const model::Model& m, const sim::ParallelConfig& p,
                   int tp_rank, int ep_rank) {
  const sim::Shard sh = sim::shard_of(t, m, p);
  ShardMap s;
  s.rows = sh.rows;
  s.cols = sh.cols;
  s.count = sh.count;
  s.global_rows = t.rows;
  using model::Split;
  switch (t.split) {
    case Split::kReplicated: break;
    case Split::kColumn: s.row0 = tp_rank * sh.rows; break;
    case Split::kKvHeads: {
      // QKVParallelLinear: KV heads split over TP, or each replicated on tp / kv ranks.
      const std::int64_t kv = m.attention.num_kv_heads;
      s.kv_head_dim = t.rows / kv;
      const std::int64_t heads_here = sh.rows / s.kv_head_dim;
      const std::int64_t first = kv >= p.tp ? tp_rank * heads_here : tp_rank / (p.tp / kv);
      s.row0 = first * s.kv_head_dim;
      break;
    }
    case Split::kRow: s.col0 = tp_rank * sh.cols; break;
    case Split::kVocab: s.row0 = tp_rank * sh.rows; break;
    case Split::kExpertColumn:
    case Split::kExpertRow:
      if (p.expert_parallel) {
        const std::int64_t ep = p.ep(), e = t.count, base = e / ep, extra = e % ep;
        s.count = base + (ep_rank < extra ? 1 : 0);
        s.expert0 = ep_rank * base + std::min<std::int64_t>(ep_rank, extra);
      } else if (t.split == Split::kExpertColumn) {
        s.row0 = tp_rank * sh.rows;
      } else {
        s.col0 = tp_rank * sh.cols;
      }
      break;
  }
  return s;
}

std::vector<float> seeded_shard(const model::TensorSpec& t, const ShardMap& s) {
  std::vector<float> out(static_cast<std::size_t>(s.count * s.rows * s.cols));
  const std::uint64_t h = name_hash(t.name);
  const float scale = seeded_scale(t);
  const bool vector_of_ones = t.cols == 1 && scale == 0.0f;  // norm weights
  std::size_t k = 0;
  for (std::int64_t e = 0; e < s.count; ++e)
    for (std::int64_t r = 0; r < s.rows; ++r)
      for (std::int64_t c = 0; c < s.cols; ++c, ++k) {
        const std::int64_t gr = s.row0 + r, gc = s.col0 + c, ge = s.expert0 + e;
        if (gr >= s.global_rows) {  // vocabulary padding
          out[k] = 0;
          continue;
        }
        if (vector_of_ones) {
          out[k] = 1.0f;
          continue;
        }
        const std::uint64_t index = static_cast<std::uint64_t>((ge * t.rows + gr) * t.cols + gc);
        out[k] = seeded_value(h, index, scale);
      }
  return out;
}

std::vector<float> cut_shard(const model::TensorSpec& t, const ShardMap& s,
                             const std::function<const float*(std::int64_t)>& expert) {
  std::vector<float> out(static_cast<std::size_t>(s.count * s.rows * s.cols), 0.0f);
  std::size_t k = 0;
  for (std::int64_t e = 0; e < s.count; ++e) {
    const float* full = expert(s.expert0 + e);
    for (std::int64_t r = 0; r < s.rows; ++r) {
      const std::int64_t gr = s.row0 + r;
      if (gr >= s.global_rows) {  // vocabulary padding
        k += static_cast<std::size_t>(s.cols);
        continue;
      }
      std::memcpy(out.data() + k, full + gr * t.cols + s.col0, static_cast<std::size_t>(s.cols) * sizeof(float));
      k += static_cast<std::size_t>(s.cols);
    }
  }
  return out;
}

}  // namespace tpp::exec
