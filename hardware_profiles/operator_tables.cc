#include "hardware_profiles/operator_tables.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/data_path.h"
#include "common/file.h"

namespace tpp::hw {
namespace {

using json = nlohmann::json;

// Where x falls on a sorted axis: the two neighbours and the weight of the upper one, linear in
// log x; clamped to the ends (both neighbours the end point).
struct Bracket {
  std::size_t lo = 0, hi = 0;
  double w = 0;
};

// The same on an axis whose logarithms `logs` are given.
Bracket bracket_log(const std::vector<double>& xs, const std::vector<double>& logs, double x) {
  Bracket b;
  if (x <= xs.front()) return b;
  if (x >= xs.back()) {
    b.lo = b.hi = xs.size() - 1;
    return b;
  }
  b.hi = static_cast<std::size_t>(std::upper_bound(xs.begin(), xs.end(), x) - xs.begin());
  b.lo = b.hi - 1;
  b.w = (std::log(x) - logs[b.lo]) / (logs[b.hi] - logs[b.lo]);
  return b;
}

std::vector<double> logs_of(const std::vector<double>& v) {
  std::vector<double> out(v.size());
  for (std::size_t k = 0; k < v.size(); ++k) out[k] = std::log(v[k]);
  return out;
}

Bracket bracket(const std::vector<double>& xs, double x) {
  Bracket b;
  if (x <= xs.front()) return b;
  if (x >= xs.back()) {
    b.lo = b.hi = xs.size() - 1;
    return b;
  }
  b.hi = static_cast<std::size_t>(std::upper_bound(xs.begin(), xs.end(), x) - xs.begin());
  b.lo = b.hi - 1;
  b.w = (std::log(x) - std::log(xs[b.lo])) / (std::log(xs[b.hi]) - std::log(xs[b.lo]));
  return b;
}

struct Reader {
  std::string file;
  std::optional<Error> error;

  bool fail(const std::string& field, const std::string& why) {
    if (!error) error = make_error(file, 1, 0, fmt::format("operator table field '{}': {}", field, why));
    return false;
  }
  // A sorted axis of positive numbers.
  bool axis(const json& j, const std::string& field, std::vector<double>& out) {
    if (!j.is_array() || j.size() < 2) return fail(field, "must be a list of at least 2 numbers");
    for (const auto& v : j) {
      if (!v.is_number() || !(v.get<double>() > 0)) return fail(field, "must hold positive numbers");
      out.push_back(v.get<double>());
      if (out.size() > 1 && !(out.back() > out[out.size() - 2]))
        return fail(field, "must be increasing");
    }
    return true;
  }
  // Nested lists of positive latencies, flattened; `dims` gives the expected sizes.
  bool grid(const json& j, const std::string& field, const std::vector<std::size_t>& dims,
            std::size_t depth, std::vector<double>& out) {
    if (!j.is_array() || j.size() != dims[depth])
      return fail(field, fmt::format("must be a list of {} at depth {}", dims[depth], depth + 1));
    for (const auto& v : j) {
      if (depth + 1 < dims.size()) {
        if (!grid(v, field, dims, depth + 1, out)) return false;
      } else if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>())) {
        return fail(field, "latencies must be positive numbers of microseconds");
      } else {
        out.push_back(v.get<double>());
      }
    }
    return true;
  }
  std::string text(const json& j, const std::string& field) {
    if (!j.contains(field) || !j[field].is_string()) {
      fail(field, "must be a string");
      return {};
    }
    return j[field].get<std::string>();
  }
  std::int64_t count(const json& j, const std::string& field, const std::string& prefix = "") {
    if (!j.contains(field) || !j[field].is_number_integer() || j[field].get<std::int64_t>() < 1) {
      fail(prefix + field, "must be a positive integer");
      return 0;
    }
    return j[field].get<std::int64_t>();
  }
};

// A map from a dtype key to a list of series objects at j[name]: `one` reads each series (its
// json, the field name to report, the key), returning false when the reader has failed. Errors
// name the field as `prefix` + name (the object j sits in: "mla_module.").
template <class One>
void for_each_series(Reader& r, const json& j, const std::string& name, const std::string& what,
                     One one, const std::string& prefix = "") {
  if (!j.contains(name)) return;
  if (!j[name].is_object()) {
    r.fail(prefix + name, "must be a map from " + what + " to a list of series");
    return;
  }
  for (const auto& [key, list] : j[name].items()) {
    const std::string f = prefix + name + "." + key;
    if (!list.is_array()) {
      r.fail(f, "must be a list of series");
      return;
    }
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string fi = fmt::format("{}[{}]", f, i);
      if (!list[i].is_object()) {
        r.fail(fi, "must be a map");
        return;
      }
      if (!one(list[i], fi, key)) return;
    }
  }
}

void read_attention(Reader& r, const json& j, const std::string& name,
                    std::map<std::string, std::vector<OperatorTables::AttentionSeries>>& out,
                    const std::string& prefix = "") {
  for_each_series(r, j, name, "KV dtype", [&](const json& s, const std::string& fi,
                                              const std::string& kv) {
    OperatorTables::AttentionSeries a;
    a.head_dim = r.count(s, "head_dim");
    a.heads = r.count(s, "heads");
    a.kv_heads = r.count(s, "kv_heads");
    if (r.error) return false;
    if (!r.axis(s.value("batch", json()), fi + ".batch", a.batch) ||
        !r.axis(s.value("length", json()), fi + ".length", a.length) ||
        !r.grid(s.value("us", json()), fi + ".us", {a.batch.size(), a.length.size()}, 0, a.us))
      return false;
    a.log_batch = logs_of(a.batch);
    a.log_length = logs_of(a.length);
    a.log_us = logs_of(a.us);
    out[kv].push_back(std::move(a));
    return true;
  }, prefix);
}

void read_moe(Reader& r, const json& j, std::map<std::string, std::vector<OperatorTables::MoeSeries>>& out) {
  for_each_series(r, j, "moe", "expert dtype", [&](const json& s, const std::string& fi,
                                                  const std::string& dtype) {
    OperatorTables::MoeSeries m;
    m.hidden = r.count(s, "hidden");
    m.inter = r.count(s, "inter");
    m.topk = r.count(s, "topk");
    m.experts = r.count(s, "experts");
    m.tp = r.count(s, "tp");
    m.ep = r.count(s, "ep");
    m.distribution = r.text(s, "distribution");
    if (r.error) return false;
    if (!r.axis(s.value("tokens", json()), fi + ".tokens", m.tokens) ||
        !r.grid(s.value("us", json()), fi + ".us", {m.tokens.size()}, 0, m.us))
      return false;
    out[dtype].push_back(std::move(m));
    return true;
  });
}

void read_all_reduce(Reader& r, const json& j, std::vector<OperatorTables::AllReduceSeries>& out) {
  if (!j.contains("all_reduce")) return;
  const json& list = j["all_reduce"];
  if (!list.is_array()) {
    r.fail("all_reduce", "must be a list of series");
    return;
  }
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string fi = fmt::format("all_reduce[{}]", i);
    const json& s = list[i];
    if (!s.is_object()) {
      r.fail(fi, "must be a map");
      return;
    }
    OperatorTables::AllReduceSeries a;
    a.ranks = r.count(s, "ranks");
    a.mode = r.text(s, "mode");
    if (r.error) return;
    if (a.ranks < 2) {
      r.fail(fi + ".ranks", "must be at least 2");
      return;
    }
    if (s.contains("own_max_bytes")) {
      const json& v = s["own_max_bytes"];
      if (!v.is_number_integer() || v.get<std::int64_t>() < 0) {
        r.fail(fi + ".own_max_bytes", "must be a non-negative integer");
        return;
      }
      a.own_max_bytes = static_cast<double>(v.get<std::int64_t>());
    }
    if (!r.axis(s.value("bytes", json()), fi + ".bytes", a.bytes) ||
        !r.grid(s.value("us", json()), fi + ".us", {a.bytes.size()}, 0, a.us))
      return;
    out.push_back(std::move(a));
  }
}

}  // namespace

double OperatorTables::gemm_s(const std::string& dtype, double m, double n, double k,
                              const std::function<double(double, double, double)>& roofline) const {
  auto it = gemm.find(dtype);
  if (it == gemm.end() || m <= 0) return -1;
  const GemmGrid& g = it->second;
  const Bracket bm = bracket(g.m, m), bn = bracket(g.n, n), bk = bracket(g.k, k);
  double ratio = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 2; ++c) {
        const double w = (a ? bn.w : 1 - bn.w) * (b ? bk.w : 1 - bk.w) * (c ? bm.w : 1 - bm.w);
        if (w == 0) continue;
        const std::size_t in = a ? bn.hi : bn.lo, ik = b ? bk.hi : bk.lo, im = c ? bm.hi : bm.lo;
        ratio += w * g.at(in, ik, im) / roofline(g.m[im], g.n[in], g.k[ik]);
      }
  return ratio * roofline(m, n, k) * 1e-6;
}

const OperatorTables::AttentionSeries* OperatorTables::attention_series(
    bool decode, const std::string& kv_dtype, double head_dim, double heads,
    double kv_heads) const {
  const auto& tables = decode ? attention_decode : attention_prefill;
  auto it = tables.find(kv_dtype);
  if (it == tables.end() || heads <= 0 || kv_heads <= 0) return nullptr;
  const AttentionSeries* best = nullptr;
  double best_kv = 0, best_group = 0;
  for (const auto& s : it->second) {
    if (static_cast<double>(s.head_dim) != head_dim) continue;
    const double dkv = std::abs(std::log(static_cast<double>(s.kv_heads) / kv_heads));
    const double dgroup = std::abs(std::log(static_cast<double>(s.heads) / static_cast<double>(s.kv_heads) /
                                            (heads / kv_heads)));
    if (!best || dkv < best_kv || (dkv == best_kv && dgroup < best_group)) {
      best = &s;
      best_kv = dkv;
      best_group = dgroup;
    }
  }
  return best;
}

double OperatorTables::attention_s(const AttentionSeries& s, bool decode, double heads,
                                   double kv_heads, double batch, double length) {
  if (batch <= 0 || length <= 0) return 0;
  const Bracket bb = bracket_log(s.batch, s.log_batch, batch), bl = bracket_log(s.length, s.log_length, length);
  auto lg = [&](std::size_t ib, std::size_t il) { return s.log_us[ib * s.length.size() + il]; };
  const double t = std::exp((1 - bb.w) * (1 - bl.w) * lg(bb.lo, bl.lo) +
                            (1 - bb.w) * bl.w * lg(bb.lo, bl.hi) +
                            bb.w * (1 - bl.w) * lg(bb.hi, bl.lo) + bb.w * bl.w * lg(bb.hi, bl.hi));
  double scale = std::max(1.0, batch / s.batch.back());
  const double over = std::max(1.0, length / s.length.back());
  scale *= decode ? over : over * over;  // prefill: causal pairs grow with the square
  scale *= decode ? kv_heads / static_cast<double>(s.kv_heads) : heads / static_cast<double>(s.heads);
  return t * scale * 1e-6;
}

const OperatorTables::MoeSeries* OperatorTables::moe_series(
    const std::string& dtype, std::int64_t hidden, std::int64_t inter, std::int64_t topk,
    std::int64_t experts, std::int64_t tp, std::int64_t ep, const std::string& distribution) const {
  auto it = moe.find(dtype);
  if (it == moe.end()) return nullptr;
  const MoeSeries* any = nullptr;
  for (const auto& s : it->second) {
    if (s.hidden != hidden || s.inter != inter || s.topk != topk || s.experts != experts ||
        s.tp != tp || s.ep != ep)
      continue;
    if (s.distribution == distribution) return &s;
    if (!any) any = &s;
  }
  return any;
}

const OperatorTables::AllReduceSeries* OperatorTables::all_reduce_series(
    std::int64_t ranks, const std::string& mode) const {
  const AllReduceSeries* other = nullptr;
  for (const auto& s : all_reduce) {
    if (s.ranks != ranks) continue;
    if (s.mode == mode) return &s;
    if (s.mode == "kernel") other = &s;
  }
  return other;
}

double OperatorTables::series_s(const std::vector<double>& xs, const std::vector<double>& us,
                                double x) {
  if (x <= 0) return 0;
  if (x >= xs.back()) return us.back() * x / xs.back() * 1e-6;
  const Bracket b = bracket(xs, x);
  return std::exp((1 - b.w) * std::log(us[b.lo]) + b.w * std::log(us[b.hi])) * 1e-6;
}

// Read with nlohmann-json directly rather than through common/doc.h's position-keeping tree:
// for the 1.3 MB H100 TensorRT-LLM table the tree alone takes 110-140 ms, this whole load
// 43-49 ms (-O2, this VM, 3 runs each), and every search on an H100 or H200 pays it once. The
// files are single-line JSON written by scripts/aic_convert.py, so errors name the field.
Expected<std::shared_ptr<const OperatorTables>> load_operator_tables(const std::string& path) {
  auto text = read_text_file(path, "operator table", 64u << 20);
  if (!text) return text.error();
  json j;
  try {
    j = json::parse(*text);
  } catch (const json::parse_error& e) {
    const std::size_t at = std::min<std::size_t>(e.byte, text->size());
    const int line = 1 + static_cast<int>(std::count(text->begin(), text->begin() + static_cast<std::ptrdiff_t>(at), '\n'));
    return make_error(path, line, 0, "operator table is not valid JSON");
  }
  Reader r{path, std::nullopt};
  auto t = std::make_shared<OperatorTables>();
  t->file = path;
  if (!j.is_object()) return make_error(path, 1, 0, "operator table must be a JSON object");
  t->gpu = r.text(j, "gpu");
  t->engine = r.text(j, "engine");
  t->engine_version = r.text(j, "engine_version");
  t->device = r.text(j, "device");
  if (!j.contains("source") || !j["source"].is_object()) {
    r.fail("source", "must be a map naming where the figures come from");
  } else {
    const json& s = j["source"];
    t->from = r.text(s, "from");
    t->source = fmt::format("{}; {}; licence {}", r.text(s, "what"), t->from, r.text(s, "licence"));
    t->from = t->from.substr(0, t->from.find(" ("));
  }
  if (r.error) return *r.error;
  if (j.contains("gemm")) {
    if (!j["gemm"].is_object()) return make_error(path, 1, 0, "operator table field 'gemm': must be a map from dtype to a grid");
    for (const auto& [dtype, g] : j["gemm"].items()) {
      const std::string f = "gemm." + dtype;
      OperatorTables::GemmGrid grid;
      if (!g.is_object()) return make_error(path, 1, 0, "operator table field '" + f + "': must be a map");
      if (!r.axis(g.value("m", json()), f + ".m", grid.m) ||
          !r.axis(g.value("n", json()), f + ".n", grid.n) ||
          !r.axis(g.value("k", json()), f + ".k", grid.k) ||
          !r.grid(g.value("us", json()), f + ".us", {grid.n.size(), grid.k.size(), grid.m.size()}, 0,
                  grid.us))
        return *r.error;
      t->gemm.emplace(dtype, std::move(grid));
    }
  }
  read_attention(r, j, "attention_decode", t->attention_decode);
  read_attention(r, j, "attention_prefill", t->attention_prefill);
  read_moe(r, j, t->moe);
  read_attention(r, j, "mla_decode", t->mla_decode);
  read_attention(r, j, "mla_prefill", t->mla_prefill);
  if (j.contains("mla_module")) {
    const json& m = j["mla_module"];
    if (!m.is_object()) return make_error(path, 1, 0, "operator table field 'mla_module': must be a map");
    OperatorTables::MlaModule mla;
    mla.hidden = r.count(m, "hidden", "mla_module.");
    mla.q_lora_rank = r.count(m, "q_lora_rank", "mla_module.");
    mla.kv_lora_rank = r.count(m, "kv_lora_rank", "mla_module.");
    mla.qk_nope_head_dim = r.count(m, "qk_nope_head_dim", "mla_module.");
    mla.qk_rope_head_dim = r.count(m, "qk_rope_head_dim", "mla_module.");
    mla.v_head_dim = r.count(m, "v_head_dim", "mla_module.");
    read_attention(r, m, "decode", mla.decode, "mla_module.");
    read_attention(r, m, "prefill", mla.prefill, "mla_module.");
    if (r.error) return *r.error;
    t->mla_module = std::move(mla);
  }
  read_all_reduce(r, j, t->all_reduce);
  if (r.error) return *r.error;
  return std::shared_ptr<const OperatorTables>(std::move(t));
}

Expected<std::shared_ptr<const OperatorTables>> find_operator_tables(const std::string& gpu,
                                                                     const std::string& engine) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const OperatorTables>> cache;
  std::error_code ec;
  for (const auto& dir : catalog_dirs(Catalog::kOperators)) {
    const auto p = (std::filesystem::path(dir) / gpu / (engine + ".json")).string();
    if (!std::filesystem::is_regular_file(p, ec)) continue;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = cache.find(p); it != cache.end()) return it->second;
    auto t = load_operator_tables(p);
    if (!t) return t.error();
    cache.emplace(p, *t);
    return *t;
  }
  return std::shared_ptr<const OperatorTables>();
}

}  // namespace tpp::hw
