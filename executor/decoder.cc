#include "executor/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "executor/weights.h"
#include "model/tensors.h"

namespace tpp::exec {
namespace {

constexpr float kEps = 1e-6f;       // RMSNorm epsilon (DeepSeek's and Qwen's; Llama 3's is 1e-5)
constexpr float kRopeTheta = 1e4f;  // the models carry no rope_theta: Llama 2's base

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

std::string replace_tail(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.size() - from.size(), from.size(), to);
  return s;
}

// Where a checkpoint tensor's shard goes among vLLM's merged parameters: q/k/v into qkv_proj,
// gate/up into gate_up_proj, the experts' w1/w3 into w13_weight (rows [part x rows ..) of each
// expert's block), everything else as it is, under vLLM's `model.` prefix.
struct Placement {
  std::string buffer;
  std::int64_t part = 0;   // which of the merged parts (0 for unmerged)
};

// MLA's q_proj stays as it is (no k_proj or v_proj to merge with).
Placement placement(const std::string& name, bool mla) {
  const std::string full = name.rfind("lm_head", 0) == 0 ? name : "model." + name;
  if (mla && ends_with(full, "self_attn.q_proj.weight")) return {full, 0};
  for (auto [from, to, part] :
       {std::tuple{"self_attn.q_proj.weight", "self_attn.qkv_proj.weight", 0},
        {"self_attn.k_proj.weight", "self_attn.qkv_proj.weight", 1},
        {"self_attn.v_proj.weight", "self_attn.qkv_proj.weight", 2},
        {"self_attn.q_proj.bias", "self_attn.qkv_proj.bias", 0},
        {"self_attn.k_proj.bias", "self_attn.qkv_proj.bias", 1},
        {"self_attn.v_proj.bias", "self_attn.qkv_proj.bias", 2},
        {"gate_proj.weight", "gate_up_proj.weight", 0},
        {"up_proj.weight", "gate_up_proj.weight", 1},
        {"gate_proj.bias", "gate_up_proj.bias", 0},
        {"up_proj.bias", "gate_up_proj.bias", 1},
        {"experts.w1.weight", "experts.w13_weight", 0},
        {"experts.w3.weight", "experts.w13_weight", 1},
        {"experts.w2.weight", "experts.w2_weight", 0}})
    if (ends_with(full, from)) return {replace_tail(full, from, to), part};
  return {full, 0};
}

}  // namespace

std::int64_t Step::rows() const {
  std::int64_t n = 0;
  for (const auto& s : seqs) n += s.new_tokens;
  return n;
}

// A layer's parameters (pointers into the buffers) and its KV pool.
struct Decoder::Layer {
  std::int64_t index = 0;
  std::string prefix;  // "model.layers.3."
  bool moe = false;
  float *in_norm = nullptr, *post_norm = nullptr;
  // GQA
  float *qkv = nullptr, *qkv_bias = nullptr, *o = nullptr, *o_bias = nullptr;
  float *q_norm = nullptr, *k_norm = nullptr;
  float *k_pool = nullptr, *v_pool = nullptr;
  // MLA
  float *q = nullptr, *q_a = nullptr, *q_a_norm = nullptr, *q_b = nullptr;
  float *kv_a = nullptr, *kv_a_norm = nullptr, *kv_b = nullptr, *latent_pool = nullptr;
  std::vector<float> w_kT, w_v;  // absorbed: per local head, kv_b's K part transposed, V part
  // MLP / MoE
  float *gate_up = nullptr, *gate_up_bias = nullptr, *down = nullptr, *down_bias = nullptr;
  float *router = nullptr, *router_bias = nullptr, *w13 = nullptr, *w2 = nullptr;
  float *shared_gate_up = nullptr, *shared_down = nullptr, *shared_gate = nullptr;
};

Decoder::Decoder(const model::Model& loaded, const sim::ParallelConfig& p, const Place& at,
                 Backend& backend, std::int64_t num_blocks, std::int64_t block_size)
    : m_(loaded), p_(p), at_(at), b_(backend), blocks_(num_blocks), block_size_(block_size) {
  const auto parts = sim::pp_partition(m_.num_layers, p_.pp, p_.pp_layer_partition);
  for (int s = 0; s < at_.pp; ++s) layer0_ += parts[static_cast<std::size_t>(s)];
  layers_ = parts[static_cast<std::size_t>(at_.pp)];
  first_ = at_.pp == 0;
  last_ = at_.pp + 1 == p_.pp;

  // The buffers this rank holds, by vLLM's parameter names, shaped as its shards.
  std::map<std::string, std::vector<std::int64_t>> shapes;
  std::vector<std::string> order;
  auto take = [&](const model::TensorSpec& t) {
    const ShardMap sm = shard_map(t, m_, p_, at_.tp, ep_index(at_, p_));
    const Placement pl = placement(t.name, m_.mla.has_value());
    auto it = shapes.find(pl.buffer);
    const bool expert = t.split == model::Split::kExpertColumn ||
                        t.split == model::Split::kExpertRow;
    if (it == shapes.end()) {
      order.push_back(pl.buffer);
      shapes[pl.buffer] = expert ? std::vector<std::int64_t>{sm.count, sm.rows, sm.cols}
                                 : std::vector<std::int64_t>{sm.rows, sm.cols};
    } else {  // a further merged part: more rows
      (expert ? it->second[1] : it->second[0]) += sm.rows;
    }
  };
  auto globals = model::global_tensors(m_);
  if (first_ || (last_ && m_.tie_word_embeddings)) take(globals[0]);  // embed_tokens
  for (std::int64_t l = layer0_; l < layer0_ + layers_; ++l)
    for (const auto& t : model::layer_tensors(m_, l)) take(t);
  if (last_)
    for (std::size_t k = 1; k < globals.size(); ++k) take(globals[k]);
  for (const auto& name : order) {
    auto shape = shapes[name];
    if (shape.size() == 2 && shape[1] == 1) shape = {shape[0]};  // vectors
    add_buffer(name, shape);
  }

  // KV pools and per-layer pointers.
  const std::int64_t slots = blocks_ * block_size_;
  for (std::int64_t l = layer0_; l < layer0_ + layers_; ++l) {
    auto layer = std::make_unique<Layer>();
    Layer& L = *layer;
    L.index = l;
    L.prefix = "model.layers." + std::to_string(l) + ".";
    L.moe = m_.is_moe_layer(l);
    L.in_norm = weight(L.prefix + "input_layernorm.weight");
    L.post_norm = weight(L.prefix + "post_attention_layernorm.weight");
    if (m_.mla) {
      const auto& x = *m_.mla;
      L.q = weight(L.prefix + "self_attn.q_proj.weight");
      L.q_a = weight(L.prefix + "self_attn.q_a_proj.weight");
      L.q_a_norm = weight(L.prefix + "self_attn.q_a_layernorm.weight");
      L.q_b = weight(L.prefix + "self_attn.q_b_proj.weight");
      L.kv_a = weight(L.prefix + "self_attn.kv_a_proj_with_mqa.weight");
      L.kv_a_norm = weight(L.prefix + "self_attn.kv_a_layernorm.weight");
      L.kv_b = weight(L.prefix + "self_attn.kv_b_proj.weight");
      L.latent_pool = b_.alloc(static_cast<std::size_t>(slots * (x.kv_lora_rank + x.qk_rope_head_dim)));
      pool_bytes_ += slots * (x.kv_lora_rank + x.qk_rope_head_dim) * 4;
    } else {
      L.qkv = weight(L.prefix + "self_attn.qkv_proj.weight");
      L.qkv_bias = weight(L.prefix + "self_attn.qkv_proj.bias");
      L.q_norm = weight(L.prefix + "self_attn.q_norm.weight");
      L.k_norm = weight(L.prefix + "self_attn.k_norm.weight");
      const std::int64_t kv_local =
          std::max<std::int64_t>(1, m_.attention.num_kv_heads / p_.tp) * m_.attention.head_dim;
      L.k_pool = b_.alloc(static_cast<std::size_t>(slots * kv_local));
      L.v_pool = b_.alloc(static_cast<std::size_t>(slots * kv_local));
      pool_bytes_ += 2 * slots * kv_local * 4;
    }
    L.o = weight(L.prefix + "self_attn.o_proj.weight");
    L.o_bias = weight(L.prefix + "self_attn.o_proj.bias");
    L.gate_up = weight(L.prefix + "mlp.gate_up_proj.weight");
    L.gate_up_bias = weight(L.prefix + "mlp.gate_up_proj.bias");
    L.down = weight(L.prefix + "mlp.down_proj.weight");
    L.down_bias = weight(L.prefix + "mlp.down_proj.bias");
    L.router = weight(L.prefix + "mlp.gate.weight");
    L.router_bias = weight(L.prefix + "mlp.gate.e_score_correction_bias");
    L.w13 = weight(L.prefix + "mlp.experts.w13_weight");
    L.w2 = weight(L.prefix + "mlp.experts.w2_weight");
    L.shared_gate_up = weight(L.prefix + "mlp.shared_experts.gate_up_proj.weight");
    L.shared_down = weight(L.prefix + "mlp.shared_experts.down_proj.weight");
    L.shared_gate = weight(L.prefix + "mlp.shared_expert_gate.weight");
    layer_ptrs_.push_back(layer.get());
    layer_store_.push_back(std::move(layer));
  }
}

Decoder::~Decoder() = default;

void Decoder::add_buffer(const std::string& name, std::vector<std::int64_t> shape) {
  Buf b;
  b.name = name;
  b.shape = std::move(shape);
  b.size = 1;
  for (auto d : b.shape) b.size *= d;
  b.data = b_.alloc(static_cast<std::size_t>(b.size));
  bufs_.push_back(std::move(b));
}

Decoder::Buf* Decoder::find(const std::string& name) {
  for (auto& b : bufs_)
    if (b.name == name) return &b;
  return nullptr;
}

float* Decoder::weight(const std::string& name) {
  Buf* b = find(name);
  return b ? b->data : nullptr;
}

// Copies a checkpoint tensor's shard (row-major [count][rows][cols]) into its place among the
// merged parameters: part k of a merged buffer starts after the rows of parts 0..k-1.
bool Decoder::set_tensor(const std::string& name, const std::vector<float>& values) {
  const Placement pl = placement(name, m_.mla.has_value());
  Buf* b = find(pl.buffer);
  if (!b) return false;
  // The part's shard shape, from the checkpoint's own inventory.
  std::vector<model::TensorSpec> specs = model::global_tensors(m_);
  for (std::int64_t l = layer0_; l < layer0_ + layers_; ++l)
    for (auto& t : model::layer_tensors(m_, l)) specs.push_back(t);
  const model::TensorSpec* spec = nullptr;
  for (const auto& t : specs)
    if (t.name == name) spec = &t;
  if (!spec) return false;
  const ShardMap sm = shard_map(*spec, m_, p_, at_.tp, ep_index(at_, p_));
  if (static_cast<std::int64_t>(values.size()) != sm.count * sm.rows * sm.cols) return false;
  // Rows of the parts before this one (q before k before v; gate before up; w1 before w3): the
  // buffer's name includes its layer, so the same buffer means the same merged group.
  std::int64_t row_offset = 0;
  for (const auto& t : specs) {
    const Placement other = placement(t.name, m_.mla.has_value());
    if (other.buffer == pl.buffer && other.part < pl.part)
      row_offset += shard_map(t, m_, p_, at_.tp, ep_index(at_, p_)).rows;
  }
  const bool expert = b->shape.size() == 3;
  const std::int64_t buf_rows = expert ? b->shape[1] : b->shape[0];
  const std::int64_t cols = expert ? b->shape[2] : (b->shape.size() == 2 ? b->shape[1] : 1);
  if (cols != sm.cols) return false;
  for (std::int64_t e = 0; e < sm.count; ++e)
    std::memcpy(b->data + (e * buf_rows + row_offset) * cols,
                values.data() + e * sm.rows * sm.cols,
                static_cast<std::size_t>(sm.rows * sm.cols) * sizeof(float));
  b->set = true;
  return true;
}

std::vector<model::TensorSpec> stage_tensors(const model::Model& m, const sim::ParallelConfig& p,
                                            int pp_rank) {
  const auto parts = sim::pp_partition(m.num_layers, p.pp, p.pp_layer_partition);
  std::int64_t layer0 = 0;
  for (int s = 0; s < pp_rank; ++s) layer0 += parts[static_cast<std::size_t>(s)];
  const bool first = pp_rank == 0, last = pp_rank + 1 == p.pp;
  std::vector<model::TensorSpec> specs;
  auto globals = model::global_tensors(m);
  if (first || (last && m.tie_word_embeddings)) specs.push_back(globals[0]);
  for (std::int64_t l = layer0; l < layer0 + parts[static_cast<std::size_t>(pp_rank)]; ++l)
    for (auto& t : model::layer_tensors(m, l)) specs.push_back(t);
  if (last)
    for (std::size_t k = 1; k < globals.size(); ++k) specs.push_back(globals[k]);
  return specs;
}

std::vector<model::TensorSpec> Decoder::stage_tensors() const {
  return exec::stage_tensors(m_, p_, at_.pp);
}

ShardMap Decoder::shard(const model::TensorSpec& t) const {
  return shard_map(t, m_, p_, at_.tp, ep_index(at_, p_));
}

std::int64_t Decoder::load_seeded() {
  std::int64_t bytes = 0;
  for (const auto& t : stage_tensors()) {
    auto values = seeded_shard(t, shard(t));
    bytes += static_cast<std::int64_t>(values.size() * sizeof(float));
    set_tensor(t.name, values);
  }
  finish_load();
  return bytes;
}

bool Decoder::set_buffer(const std::string& name, const std::vector<float>& values) {
  Buf* b = find(name);
  if (!b || static_cast<std::int64_t>(values.size()) != b->size) return false;
  std::memcpy(b->data, values.data(), values.size() * sizeof(float));
  b->set = true;
  return true;
}

void Decoder::finish_load() {
  // MLA with absorbed weights: per local head, kv_b's K part transposed and its V part.
  if (m_.mla)
    for (Layer* L : layer_ptrs_) {
      const auto& x = *m_.mla;
      const std::int64_t heads = m_.attention.num_heads / p_.tp, lora = x.kv_lora_rank;
      const std::int64_t nope = x.qk_nope_head_dim, v = x.v_head_dim;
      L->w_kT.assign(static_cast<std::size_t>(heads * lora * nope), 0);
      L->w_v.assign(static_cast<std::size_t>(heads * v * lora), 0);
      for (std::int64_t h = 0; h < heads; ++h) {
        const float* head = L->kv_b + h * (nope + v) * lora;
        for (std::int64_t i = 0; i < nope; ++i)
          for (std::int64_t j = 0; j < lora; ++j)
            L->w_kT[static_cast<std::size_t>((h * lora + j) * nope + i)] = head[i * lora + j];
        std::memcpy(L->w_v.data() + h * v * lora, head + nope * lora,
                    static_cast<std::size_t>(v * lora) * sizeof(float));
      }
    }
}

std::vector<Decoder::Tensor> Decoder::tensors() const {
  std::vector<Tensor> out;
  for (const auto& b : bufs_) out.push_back({b.name, b.shape, b.data});
  return out;
}

std::optional<std::string> Decoder::missing_tensor() const {
  for (const auto& b : bufs_)
    if (!b.set) return b.name;
  return std::nullopt;
}

namespace {

void add_bias(float* y, const float* bias, std::int64_t rows, std::int64_t cols) {
  if (!bias) return;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) y[r * cols + c] += bias[c];
}

}  // namespace

std::optional<Error> Decoder::attention(Layer& L, const Step& step, const float* x, float* out) {
  const auto& a = m_.attention;
  const std::int64_t T = step.rows(), h = m_.hidden_size, hd = a.head_dim;
  const std::int64_t qh = a.num_heads / p_.tp;
  const std::int64_t kvh = std::max<std::int64_t>(1, a.num_kv_heads / p_.tp);
  const std::int64_t width = (qh + 2 * kvh) * hd;
  s1_.resize(static_cast<std::size_t>(T * width));
  b_.gemm(x, L.qkv, s1_.data(), T, width, h);
  add_bias(s1_.data(), L.qkv_bias, T, width);
  // q, k, v as contiguous [T, heads, hd] buffers.
  s2_.resize(static_cast<std::size_t>(T * qh * hd));
  s3_.resize(static_cast<std::size_t>(T * kvh * hd * 2));
  float* q = s2_.data();
  float* k = s3_.data();
  float* v = s3_.data() + T * kvh * hd;
  for (std::int64_t r = 0; r < T; ++r) {
    const float* row = s1_.data() + r * width;
    std::memcpy(q + r * qh * hd, row, static_cast<std::size_t>(qh * hd) * sizeof(float));
    std::memcpy(k + r * kvh * hd, row + qh * hd, static_cast<std::size_t>(kvh * hd) * sizeof(float));
    std::memcpy(v + r * kvh * hd, row + (qh + kvh) * hd,
                static_cast<std::size_t>(kvh * hd) * sizeof(float));
  }
  if (L.q_norm) {  // Qwen3: RMSNorm over each head of q and k
    b_.add_rmsnorm(q, nullptr, L.q_norm, q, T * qh, hd, kEps);
    b_.add_rmsnorm(k, nullptr, L.k_norm, k, T * kvh, hd, kEps);
  }
  b_.rope(q, positions_.data(), T, qh, hd, 0, hd, kRopeTheta);
  b_.rope(k, positions_.data(), T, kvh, hd, 0, hd, kRopeTheta);
  b_.kv_write(k, v, L.k_pool, L.v_pool, paged_.data(), static_cast<std::int64_t>(paged_.size()),
              kvh, hd, block_size_);
  s4_.resize(static_cast<std::size_t>(T * qh * hd));
  b_.paged_attention(q, L.k_pool, L.v_pool, paged_.data(), static_cast<std::int64_t>(paged_.size()),
                     qh, kvh, hd, block_size_, 1.0f / std::sqrt(static_cast<float>(hd)),
                     s4_.data());
  b_.gemm(s4_.data(), L.o, out, T, h, qh * hd);
  if (auto e = b_.comm().all_reduce_sum(out, static_cast<std::size_t>(T * h), Group::kTp))
    return e;
  add_bias(out, L.o_bias, T, h);
  return std::nullopt;
}

std::optional<Error> Decoder::mla(Layer& L, const Step& step, const float* x, float* out) {
  const auto& a = *m_.mla;
  const std::int64_t T = step.rows(), h = m_.hidden_size;
  const std::int64_t heads = m_.attention.num_heads / p_.tp;
  const std::int64_t nope = a.qk_nope_head_dim, rope = a.qk_rope_head_dim, lora = a.kv_lora_rank;
  const std::int64_t qk = nope + rope, width = lora + rope;
  // Queries: [T, heads, nope + rope], directly or through the compressed q_a (DeepSeek-V3).
  s1_.resize(static_cast<std::size_t>(T * heads * qk));
  if (L.q_a) {
    std::vector<float> qa(static_cast<std::size_t>(T * a.q_lora_rank));
    b_.gemm(x, L.q_a, qa.data(), T, a.q_lora_rank, h);
    b_.add_rmsnorm(qa.data(), nullptr, L.q_a_norm, qa.data(), T, a.q_lora_rank, kEps);
    b_.gemm(qa.data(), L.q_b, s1_.data(), T, heads * qk, a.q_lora_rank);
  } else {
    b_.gemm(x, L.q, s1_.data(), T, heads * qk, h);
  }
  b_.rope(s1_.data(), positions_.data(), T, heads, qk, nope, rope, kRopeTheta);
  // The latent of the new tokens: normalised c_kv, then the rotated shared k_pe.
  s2_.resize(static_cast<std::size_t>(T * width));
  b_.gemm(x, L.kv_a, s2_.data(), T, width, h);
  for (std::int64_t r = 0; r < T; ++r)
    b_.add_rmsnorm(s2_.data() + r * width, nullptr, L.kv_a_norm, s2_.data() + r * width, 1, lora,
                   kEps);
  b_.rope(s2_.data(), positions_.data(), T, 1, width, lora, rope, kRopeTheta);
  b_.latent_write(s2_.data(), L.latent_pool, paged_.data(),
                  static_cast<std::int64_t>(paged_.size()), width, block_size_);
  // Absorbed: q_lat = q_nope . W_k per head; attention over the latent; o = W_v . o_lat.
  std::vector<float> qn(static_cast<std::size_t>(T * nope)), ql(static_cast<std::size_t>(T * lora));
  s3_.resize(static_cast<std::size_t>(T * heads * lora));
  std::vector<float> qpe(static_cast<std::size_t>(T * heads * rope));
  for (std::int64_t hh = 0; hh < heads; ++hh) {
    for (std::int64_t r = 0; r < T; ++r) {
      const float* src = s1_.data() + (r * heads + hh) * qk;
      std::memcpy(qn.data() + r * nope, src, static_cast<std::size_t>(nope) * sizeof(float));
      std::memcpy(qpe.data() + (r * heads + hh) * rope, src + nope,
                  static_cast<std::size_t>(rope) * sizeof(float));
    }
    b_.gemm(qn.data(), L.w_kT.data() + hh * lora * nope, ql.data(), T, lora, nope);
    for (std::int64_t r = 0; r < T; ++r)
      std::memcpy(s3_.data() + (r * heads + hh) * lora, ql.data() + r * lora,
                  static_cast<std::size_t>(lora) * sizeof(float));
  }
  s4_.resize(static_cast<std::size_t>(T * heads * lora));
  b_.mla_attention(s3_.data(), qpe.data(), L.latent_pool, paged_.data(),
                   static_cast<std::int64_t>(paged_.size()), heads, lora, rope, block_size_,
                   1.0f / std::sqrt(static_cast<float>(qk)), s4_.data());
  const std::int64_t v = a.v_head_dim;
  std::vector<float> o(static_cast<std::size_t>(T * heads * v)), ol(static_cast<std::size_t>(T * lora)),
      oh(static_cast<std::size_t>(T * v));
  for (std::int64_t hh = 0; hh < heads; ++hh) {
    for (std::int64_t r = 0; r < T; ++r)
      std::memcpy(ol.data() + r * lora, s4_.data() + (r * heads + hh) * lora,
                  static_cast<std::size_t>(lora) * sizeof(float));
    b_.gemm(ol.data(), L.w_v.data() + hh * v * lora, oh.data(), T, v, lora);
    for (std::int64_t r = 0; r < T; ++r)
      std::memcpy(o.data() + (r * heads + hh) * v, oh.data() + r * v,
                  static_cast<std::size_t>(v) * sizeof(float));
  }
  b_.gemm(o.data(), L.o, out, T, h, heads * v);
  return b_.comm().all_reduce_sum(out, static_cast<std::size_t>(T * h), Group::kTp);
}

void Decoder::dense_mlp(const std::string& prefix, const float* x, std::int64_t rows,
                        float* out, bool bias) {
  float* gu = weight(prefix + "gate_up_proj.weight");
  float* down = weight(prefix + "down_proj.weight");
  const std::int64_t h = m_.hidden_size;
  const std::int64_t inter = find(prefix + "down_proj.weight")->shape[1];
  std::vector<float> g(static_cast<std::size_t>(rows * 2 * inter)), act(static_cast<std::size_t>(rows * inter));
  b_.gemm(x, gu, g.data(), rows, 2 * inter, h);
  if (bias) add_bias(g.data(), weight(prefix + "gate_up_proj.bias"), rows, 2 * inter);
  b_.silu_mul(g.data(), act.data(), rows, inter);
  b_.gemm(act.data(), down, out, rows, h, inter);
}

std::optional<Error> Decoder::mlp(Layer& L, const float* x, std::int64_t rows, float* out) {
  dense_mlp(L.prefix + "mlp.", x, rows, out, L.gate_up_bias != nullptr);
  if (auto e = b_.comm().all_reduce_sum(out, static_cast<std::size_t>(rows * m_.hidden_size),
                                        Group::kTp))
    return e;
  add_bias(out, L.down_bias, rows, m_.hidden_size);
  return std::nullopt;
}

// Mixtral-style routing: softmax over the experts, top k renormalised. Each rank computes the
// experts it holds (their TP shards, or whole experts with expert parallelism) for the tokens
// routed to them; the TP (or EP) all-reduce sums the experts' and the shared experts' parts.
std::optional<Error> Decoder::moe(Layer& L, const float* x, std::int64_t rows, float* out) {
  const auto& e = *m_.moe;
  const std::int64_t h = m_.hidden_size, E = e.num_experts, k = e.experts_per_token;
  std::vector<float> logits(static_cast<std::size_t>(rows * E)), wts(static_cast<std::size_t>(rows * k));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(rows * k));
  b_.gemm(x, L.router, logits.data(), rows, E, h);
  b_.topk_softmax(logits.data(), rows, E, k, ids.data(), wts.data());
  const Buf* w13 = find(L.prefix + "mlp.experts.w13_weight");
  const std::int64_t local = w13->shape[0], inter = w13->shape[1] / 2;
  // The first expert this rank holds (expert parallelism: a contiguous range).
  std::int64_t first = 0;
  if (p_.expert_parallel) {
    const std::int64_t ep = p_.ep(), base = E / ep, extra = E % ep, r = ep_index(at_, p_);
    first = r * base + std::min<std::int64_t>(r, extra);
  }
  std::fill(out, out + rows * h, 0.0f);
  std::vector<float> xe, g, act, y;
  std::vector<std::int64_t> which;
  std::vector<float> weight_of;
  for (std::int64_t le = 0; le < local; ++le) {
    const std::int64_t expert = first + le;
    which.clear();
    weight_of.clear();
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < k; ++j)
        if (ids[static_cast<std::size_t>(r * k + j)] == expert) {
          which.push_back(r);
          weight_of.push_back(wts[static_cast<std::size_t>(r * k + j)]);
        }
    const auto n = static_cast<std::int64_t>(which.size());
    if (n == 0) continue;
    xe.resize(static_cast<std::size_t>(n * h));
    for (std::int64_t i = 0; i < n; ++i)
      std::memcpy(xe.data() + i * h, x + which[i] * h, static_cast<std::size_t>(h) * sizeof(float));
    g.resize(static_cast<std::size_t>(n * 2 * inter));
    act.resize(static_cast<std::size_t>(n * inter));
    y.resize(static_cast<std::size_t>(n * h));
    b_.gemm(xe.data(), L.w13 + le * 2 * inter * h, g.data(), n, 2 * inter, h);
    b_.silu_mul(g.data(), act.data(), n, inter);
    b_.gemm(act.data(), L.w2 + le * h * inter, y.data(), n, h, inter);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < h; ++c) out[which[i] * h + c] += weight_of[i] * y[i * h + c];
  }
  if (L.shared_gate_up) {
    std::vector<float> shared(static_cast<std::size_t>(rows * h));
    dense_mlp(L.prefix + "mlp.shared_experts.", x, rows, shared.data(), false);
    if (L.shared_gate) {  // Qwen2-MoE: sigmoid(x . g) scales the shared expert
      std::vector<float> gate(static_cast<std::size_t>(rows));
      b_.gemm(x, L.shared_gate, gate.data(), rows, 1, h);
      for (std::int64_t r = 0; r < rows; ++r) {
        const float s = 1.0f / (1.0f + std::exp(-gate[static_cast<std::size_t>(r)]));
        for (std::int64_t c = 0; c < h; ++c) shared[static_cast<std::size_t>(r * h + c)] *= s;
      }
    }
    for (std::int64_t i = 0; i < rows * h; ++i) out[i] += shared[static_cast<std::size_t>(i)];
  }
  return b_.comm().all_reduce_sum(out, static_cast<std::size_t>(rows * h), Group::kTp);
}

std::optional<Error> Decoder::forward(const Step& step, const StageOut* in, StageOut& out,
                                      bool keep_logits) {
  const std::int64_t T = step.rows(), h = m_.hidden_size;
  // Positions and the paged view of the batch.
  positions_.clear();
  paged_.clear();
  std::int64_t row = 0;
  for (const auto& s : step.seqs) {
    for (std::int64_t i = 0; i < s.new_tokens; ++i) positions_.push_back(s.context + i);
    paged_.push_back({row, s.new_tokens, s.context, s.blocks.data()});
    row += s.new_tokens;
  }
  std::vector<float> hidden(static_cast<std::size_t>(T * h)), residual(static_cast<std::size_t>(T * h), 0.0f);
  if (first_) {
    std::vector<std::int64_t> tokens;
    for (const auto& s : step.seqs) tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
    const Buf* emb = find("model.embed_tokens.weight");
    b_.embedding(tokens.data(), T, emb->data, at_.tp * emb->shape[0], emb->shape[0], h,
                 hidden.data());
    if (auto e = b_.comm().all_reduce_sum(hidden.data(), hidden.size(), Group::kTp)) return e;
  } else {
    hidden = in->hidden;
    residual = in->residual;
  }
  std::vector<float> x(static_cast<std::size_t>(T * h)), y(static_cast<std::size_t>(T * h));
  for (Layer* L : layer_ptrs_) {
    b_.add_rmsnorm(hidden.data(), residual.data(), L->in_norm, x.data(), T, h, kEps);
    auto err = m_.mla ? mla(*L, step, x.data(), y.data()) : attention(*L, step, x.data(), y.data());
    if (!err && hook_) err = hook_();
    if (err) return err;
    b_.add_rmsnorm(y.data(), residual.data(), L->post_norm, x.data(), T, h, kEps);
    err = L->moe ? moe(*L, x.data(), T, hidden.data()) : mlp(*L, x.data(), T, hidden.data());
    if (!err && hook_) err = hook_();
    if (err) return err;
  }
  if (!last_) {
    out.hidden = std::move(hidden);
    out.residual = std::move(residual);
    return std::nullopt;
  }
  // The final norm and LM head on the rows that sample: each sampling sequence's last row.
  std::vector<std::int64_t> sample_rows;
  row = 0;
  for (const auto& s : step.seqs) {
    row += s.new_tokens;
    if (s.samples) sample_rows.push_back(row - 1);
  }
  const auto S = static_cast<std::int64_t>(sample_rows.size());
  out.tokens.clear();
  out.logits.clear();
  if (S == 0) return std::nullopt;
  std::vector<float> hs(static_cast<std::size_t>(S * h)), rs(static_cast<std::size_t>(S * h)), ns(static_cast<std::size_t>(S * h));
  for (std::int64_t i = 0; i < S; ++i) {
    std::memcpy(hs.data() + i * h, hidden.data() + sample_rows[i] * h, static_cast<std::size_t>(h) * sizeof(float));
    std::memcpy(rs.data() + i * h, residual.data() + sample_rows[i] * h, static_cast<std::size_t>(h) * sizeof(float));
  }
  b_.add_rmsnorm(hs.data(), rs.data(), weight("model.norm.weight"), ns.data(), S, h, kEps);
  const Buf* head = m_.tie_word_embeddings ? find("model.embed_tokens.weight") : find("lm_head.weight");
  const std::int64_t vl = head->shape[0];
  std::vector<float> local(static_cast<std::size_t>(S * vl)), gathered(static_cast<std::size_t>(S * vl * p_.tp));
  b_.gemm(ns.data(), head->data, local.data(), S, vl, h);
  if (auto e = b_.comm().all_gather(local.data(), local.size(), gathered.data(), Group::kTp)) return e;
  // [tp][S][vl] -> [S][vocab] (the padding rows past the vocabulary dropped).
  const std::int64_t V = m_.vocab_size;
  std::vector<float> logits(static_cast<std::size_t>(S * V));
  for (std::int64_t t = 0; t < p_.tp; ++t)
    for (std::int64_t i = 0; i < S; ++i)
      for (std::int64_t c = 0; c < vl; ++c) {
        const std::int64_t col = t * vl + c;
        if (col < V) logits[static_cast<std::size_t>(i * V + col)] = gathered[static_cast<std::size_t>((t * S + i) * vl + c)];
      }
  out.tokens.resize(static_cast<std::size_t>(S));
  b_.argmax(logits.data(), S, V, out.tokens.data());
  if (keep_logits) out.logits = std::move(logits);
  return std::nullopt;
}

}  // namespace tpp::exec
