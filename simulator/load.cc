#include "simulator/load.h"

#include <algorithm>

#include "model/tensors.h"

namespace tpp::sim {

LoadPrediction predict_load(const model::Model& m, const ParallelConfig& p, const hw::Cluster& c) {
  LoadPrediction out;
  const auto parts = pp_partition(m.num_layers, p.pp, p.pp_layer_partition);
  const auto globals = model::global_tensors(m);
  std::int64_t layer0 = 0;
  for (std::int64_t s = 0; s < p.pp; ++s) {
    const bool first = s == 0, last = s + 1 == p.pp;
    std::vector<model::TensorSpec> specs;
    if (first || (last && m.tie_word_embeddings)) specs.push_back(globals[0]);
    for (std::int64_t l = layer0; l < layer0 + parts[static_cast<std::size_t>(s)]; ++l)
      for (auto& t : model::layer_tensors(m, l)) specs.push_back(t);
    if (last)
      for (std::size_t k = 1; k < globals.size(); ++k) specs.push_back(globals[k]);
    for (auto& t : model::vision_tensors(m)) specs.push_back(t);  // on every rank
    layer0 += parts[static_cast<std::size_t>(s)];
    double hf = 0, sharded = 0;
    for (const auto& t : specs) {
      const double whole = static_cast<double>(model::storage_bytes(t, m));
      const Shard sh = shard_of(t, m, p);
      const double experts = static_cast<double>(sh.count) / static_cast<double>(t.count);
      hf += whole * experts;  // whole tensors of the experts this rank holds
      sharded += whole * experts * static_cast<double>(sh.rows * sh.cols) /
                 static_cast<double>(t.rows * t.cols);
    }
    out.hf_bytes = std::max(out.hf_bytes, static_cast<std::int64_t>(hf));
    out.sharded_bytes = std::max(out.sharded_bytes, static_cast<std::int64_t>(sharded));
  }
  if (c.storage_read_GBps) {
    const double bw = c.storage_read_GBps->value * 1e9;
    out.hf_s = static_cast<double>(out.hf_bytes) / bw;
    out.sharded_s = static_cast<double>(out.sharded_bytes) / bw;
    out.source = c.storage_read_GBps->source;
  }
  return out;
}

}  // namespace tpp::sim
