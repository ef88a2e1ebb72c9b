#include "executor/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>

#include "executor/safetensors.h"
#include "executor/weights.h"

namespace tpp::exec {
namespace fs = std::filesystem;
namespace {

// A checkpoint tensor's name in a Hugging Face checkpoint; expert e of a stacked one.
std::string hf_name(const model::TensorSpec& t, std::int64_t expert = -1) {
  std::string n = t.name.rfind("lm_head", 0) == 0 ? t.name : "model." + t.name;
  if (expert >= 0) {
    const auto at = n.find("experts.");
    if (at != std::string::npos) n.insert(at + 8, std::to_string(expert) + ".");
  }
  return n;
}

Error dir_error(const std::string& dir, const std::string& msg) { return make_error(dir, 0, 0, msg); }

// Every *.safetensors file of a directory, read once (headers checked), tensors by name.
struct Index {
  std::vector<StFile> files;
  std::map<std::string, std::pair<std::size_t, const StTensor*>> where;
};

Expected<std::unique_ptr<Index>> index_dir(const std::string& dir, const std::string& prefix) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return dir_error(dir, "is not a directory (--model-dir names the checkpoint's directory)");
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0 &&
        name.rfind(prefix, 0) == 0)
      paths.push_back(e.path().string());
  }
  if (ec) return dir_error(dir, "cannot be listed: " + ec.message());
  std::sort(paths.begin(), paths.end());
  auto idx = std::make_unique<Index>();
  idx->files.reserve(paths.size());
  for (const auto& p : paths) {
    auto f = read_safetensors(p);
    if (!f) return f.error();
    idx->files.push_back(std::move(*f));
  }
  for (std::size_t k = 0; k < idx->files.size(); ++k)
    for (const auto& t : idx->files[k].tensors) {
      auto [it, fresh] = idx->where.emplace(t.name, std::pair{k, &t});
      if (!fresh)
        return make_error(idx->files[k].path, 0, 0,
                          "tensor '" + clip(t.name) + "' is also in " + idx->files[it->second.first].path);
    }
  return idx;
}

std::int64_t product(const std::vector<std::int64_t>& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t k = 0; k < s.size(); ++k) out += (k ? ", " : "") + std::to_string(s[k]);
  return out + "]";
}

}  // namespace

int checkpoint_rank(const Place& at, const sim::ParallelConfig& p) {
  return p.pp == 1 ? at.tp : at.pp * static_cast<int>(p.tp) + at.tp;
}

std::string sharded_file_name(int rank, int part) {
  return "model-rank-" + std::to_string(rank) + "-part-" + std::to_string(part) + ".safetensors";
}

Expected<LoadStats> save_sharded(const Decoder& d, const std::string& dir, int rank,
                                 std::int64_t max_part_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return dir_error(dir, "cannot be created: " + ec.message());
  LoadStats st;
  std::vector<StWrite> part;
  std::int64_t part_bytes = 0;
  auto flush = [&]() -> std::optional<Error> {
    if (part.empty()) return std::nullopt;
    const std::string path = (fs::path(dir) / sharded_file_name(rank, st.files)).string();
    if (auto e = write_safetensors(path, part, {{"format", "pt"}})) return e;
    ++st.files;
    part.clear();
    part_bytes = 0;
    return std::nullopt;
  };
  const auto tensors = d.tensors();  // host copies, alive until the last part is written
  for (const auto& t : tensors) {
    const std::int64_t bytes = product(t.shape) * 4;
    if (!part.empty() && part_bytes + bytes > max_part_bytes)
      if (auto e = flush()) return *e;
    part.push_back({t.name, t.shape, t.data});
    part_bytes += bytes;
    st.bytes_read += bytes;
  }
  if (auto e = flush()) return *e;
  return st;
}

Expected<LoadStats> load_sharded(Decoder& d, const std::string& dir, int rank) {
  auto idx = index_dir(dir, "model-rank-" + std::to_string(rank) + "-part-");
  if (!idx) return idx.error();
  if ((*idx)->files.empty())
    return dir_error(dir, "has no " + sharded_file_name(rank, 0) +
                              " (--load-format sharded_state reads the files tpp-run "
                              "--save-sharded wrote for this split)");
  LoadStats st;
  st.files = static_cast<int>((*idx)->files.size());
  for (const auto& f : (*idx)->files)
    for (const auto& t : f.tensors) {
      auto values = read_tensor(f, t);
      if (!values) return values.error();
      if (!d.set_buffer(t.name, *values))
        return make_error(f.path, 0, 0,
                          "tensor '" + clip(t.name) + "' of shape " + shape_text(t.shape) +
                              " is not one of this rank's parameters (saved for another split or model?)");
      st.bytes_read += static_cast<std::int64_t>(values->size() * 4);
    }
  if (auto missing = d.missing_tensor())
    return dir_error(dir, "tensor '" + *missing + "' is missing from rank " +
                              std::to_string(rank) + "'s files");
  d.finish_load();
  return st;
}

Expected<LoadStats> load_hf(Decoder& d, const std::string& dir) {
  auto idx = index_dir(dir, "");
  if (!idx) return idx.error();
  if ((*idx)->files.empty()) return dir_error(dir, "has no *.safetensors files");
  LoadStats st;
  st.files = static_cast<int>((*idx)->files.size());
  for (const auto& t : d.stage_tensors()) {
    const ShardMap sm = d.shard(t);
    const bool stacked = t.count > 1;
    const std::vector<std::int64_t> want =
        t.cols == 1 ? std::vector<std::int64_t>{t.rows} : std::vector<std::int64_t>{t.rows, t.cols};
    std::map<std::int64_t, std::vector<float>> whole;  // by expert (-1: not stacked)
    std::optional<Error> err;
    auto expert = [&](std::int64_t e) -> const float* {
      const std::int64_t key = stacked ? e : -1;
      auto it = whole.find(key);
      if (it != whole.end()) return it->second.data();
      const std::string name = hf_name(t, key);
      auto at = (*idx)->where.find(name);
      if (at == (*idx)->where.end()) {
        if (!err) err = dir_error(dir, "tensor '" + name + "' is missing from the checkpoint");
        return nullptr;
      }
      const StFile& f = (*idx)->files[at->second.first];
      const StTensor& tt = *at->second.second;
      if (tt.shape != want) {
        if (!err)
          err = make_error(f.path, 0, 0, "tensor '" + name + "' has shape " + shape_text(tt.shape) +
                                             ", the model needs " + shape_text(want));
        return nullptr;
      }
      auto values = read_tensor(f, tt);
      if (!values) {
        if (!err) err = values.error();
        return nullptr;
      }
      st.bytes_read += static_cast<std::int64_t>(values->size() * 4);
      return whole.emplace(key, std::move(*values)).first->second.data();
    };
    // Read every expert this shard needs before cutting (a missing one stops here).
    for (std::int64_t e = 0; e < sm.count && !err; ++e) expert(sm.expert0 + e);
    if (err) return *err;
    if (!d.set_tensor(t.name, cut_shard(t, sm, expert)))
      return dir_error(dir, "tensor '" + hf_name(t) + "' does not fit this rank's parameters");
  }
  if (auto missing = d.missing_tensor())
    return dir_error(dir, "no checkpoint tensor fills parameter '" + *missing + "'");
  d.finish_load();
  return st;
}

std::optional<Error> write_hf_checkpoint(const model::Model& loaded, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return dir_error(dir, "cannot be created: " + ec.message());
  std::vector<model::TensorSpec> specs = model::global_tensors(loaded);
  for (std::int64_t l = 0; l < loaded.num_layers; ++l)
    for (auto& t : model::layer_tensors(loaded, l)) specs.push_back(t);
  std::vector<std::vector<float>> store;
  std::vector<StWrite> out;
  store.reserve(specs.size() * 8);
  for (const auto& t : specs) {
    ShardMap whole;  // the unsharded tensor: one expert at a time
    whole.rows = whole.global_rows = t.rows;
    whole.cols = t.cols;
    whole.count = 1;
    const std::vector<std::int64_t> shape =
        t.cols == 1 ? std::vector<std::int64_t>{t.rows} : std::vector<std::int64_t>{t.rows, t.cols};
    for (std::int64_t e = 0; e < t.count; ++e) {
      whole.expert0 = e;
      store.push_back(seeded_shard(t, whole));
      out.push_back({hf_name(t, t.count > 1 ? e : -1), shape, store.back().data()});
    }
  }
  return write_safetensors((fs::path(dir) / "model.safetensors").string(), out, {{"format", "pt"}});
}

std::int64_t sharded_load_bytes(const model::Model& loaded, const sim::ParallelConfig& p, const Place& at) {
  std::int64_t n = 0;
  for (const auto& t : stage_tensors(loaded, p, at.pp)) {
    const ShardMap sm = shard_map(t, loaded, p, at.tp, ep_index(at, p));
    n += sm.count * sm.rows * sm.cols * 4;
  }
  return n;
}

std::int64_t hf_load_bytes(const model::Model& loaded, const sim::ParallelConfig& p, const Place& at) {
  std::int64_t n = 0;
  for (const auto& t : stage_tensors(loaded, p, at.pp)) {
    const ShardMap sm = shard_map(t, loaded, p, at.tp, ep_index(at, p));
    n += sm.count * t.rows * t.cols * 4;  // whole tensors of the experts it holds
  }
  return n;
}

}  // namespace tpp::exec
