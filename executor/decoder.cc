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
  float *w_kT = nullptr, *w_v = nullptr;  // absorbed: per local head, kv_b's K part transposed, V part
  // MLP / MoE
  float *gate_up = nullptr, *gate_up_bias = nullptr, *down = nullptr, *down_bias = nullptr;
  float *router = nullptr, *router_bias = nullptr, *w13 = nullptr, *w2 = nullptr;
  float *shared_gate_up = nullptr, *shared_down = nullptr, *shared_gate = nullptr;
};

Decoder::Decoder(const model::Model& loaded, const sim::ParallelConfig& p, const Place& at,
                 Backend& backend, std::int64_t num_blocks, std::int64_t block_size,
                 std::int64_t max_rows)
    : m_(loaded), p_(p), at_(at), b_(backend), blocks_(num_blocks), block_size_(block_size) {
  const auto parts = sim::pp_partition(m_.num_layers, p_.pp, p_.pp_layer_partition);
  for (int s = 0; s < at_.pp; ++s) layer0_ += parts[static_cast<std::size_t>(s)];
  layers_ = parts[static_cast<std::size_t>(at_.pp)];
  first_ = at_.pp == 0;
  last_ = at_.pp + 1 == p_.pp;
  specs_ = exec::stage_tensors(m_, p_, at_.pp);

  // The buffers this rank holds, by vLLM's parameter names, shaped as its shards.
  std::map<std::string, std::vector<std::int64_t>> shapes;
  std::vector<std::string> order;
  for (const auto& t : specs_) {
    const ShardMap sm = shard_map(t, m_, p_, at_.tp, ep_index(at_, p_));
    const model::VllmParameter pl = model::vllm_parameter(t.name, m_.mla.has_value());
    auto it = shapes.find(pl.name);
    const bool expert = t.split == model::Split::kExpertColumn ||
                        t.split == model::Split::kExpertRow;
    if (it == shapes.end()) {
      order.push_back(pl.name);
      shapes[pl.name] = expert ? std::vector<std::int64_t>{sm.count, sm.rows, sm.cols}
                                 : std::vector<std::int64_t>{sm.rows, sm.cols};
    } else {  // a further merged part: more rows
      (expert ? it->second[1] : it->second[0]) += sm.rows;
    }
  }
  for (auto& [name, shape] : shapes)
    if (shape.size() == 2 && shape[1] == 1) shape = {shape[0]};  // vectors

  // What the backend will be asked for in all: matrices (and MLA's absorbed ones), the pool.
  const std::int64_t slots = blocks_ * block_size_;
  std::size_t weight_elems = 0, kv_elems = 0;
  for (const auto& [name, shape] : shapes)
    if (shape.size() > 1) {
      std::size_t n = 1;
      for (auto d : shape) n *= static_cast<std::size_t>(d);
      weight_elems += n;
    }
  const std::int64_t local_heads = m_.attention.num_heads / p_.tp;
  if (m_.mla) {
    const auto& x = *m_.mla;
    weight_elems += static_cast<std::size_t>(layers_ * local_heads * x.kv_lora_rank *
                                             (x.qk_nope_head_dim + x.v_head_dim));
    kv_elems = static_cast<std::size_t>(layers_ * slots * (x.kv_lora_rank + x.qk_rope_head_dim));
  } else {
    const std::int64_t kv_local =
        std::max<std::int64_t>(1, m_.attention.num_kv_heads / p_.tp) * m_.attention.head_dim;
    kv_elems = static_cast<std::size_t>(layers_ * 2 * slots * kv_local);
  }
  b_.reserve(weight_elems, kv_elems);
  for (const auto& name : order) add_buffer(name, shapes[name]);
  for (const auto& b : bufs_)
    if (b.shape.size() == 2 && b.name.size() > 16 &&
        b.name.compare(b.name.size() - 16, 16, "down_proj.weight") == 0)
      inter_max_ = std::max(inter_max_, b.shape[1]);

  // Rotary: Llama's NeoX pairs; DeepSeek's MLA rope as vLLM runs it (GPT-J's interleaved
  // pairs). The models carry no rope scaling, so the frequencies are plain (YaRN's table is
  // kernels::yarn_inv_freq).
  const std::int64_t rot = m_.mla ? m_.mla->qk_rope_head_dim : m_.attention.head_dim;
  rope_.inv_freq.resize(static_cast<std::size_t>(rot / 2));
  kernels::rope_inv_freq(kRopeTheta, rot, rope_.inv_freq.data());
  mla_rope_ = rope_;
  mla_rope_.neox = false;

  // KV pools and per-layer pointers.
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
      L.w_kT = b_.alloc_weight(static_cast<std::size_t>(local_heads * x.kv_lora_rank * x.qk_nope_head_dim));
      L.w_v = b_.alloc_weight(static_cast<std::size_t>(local_heads * x.v_head_dim * x.kv_lora_rank));
      const std::int64_t n = slots * (x.kv_lora_rank + x.qk_rope_head_dim);
      L.latent_pool = b_.alloc_kv(static_cast<std::size_t>(n));
      pool_bytes_ += n * b_.kv_bytes();
    } else {
      L.qkv = weight(L.prefix + "self_attn.qkv_proj.weight");
      L.qkv_bias = weight(L.prefix + "self_attn.qkv_proj.bias");
      L.q_norm = weight(L.prefix + "self_attn.q_norm.weight");
      L.k_norm = weight(L.prefix + "self_attn.k_norm.weight");
      const std::int64_t kv_local =
          std::max<std::int64_t>(1, m_.attention.num_kv_heads / p_.tp) * m_.attention.head_dim;
      L.k_pool = b_.alloc_kv(static_cast<std::size_t>(slots * kv_local));
      L.v_pool = b_.alloc_kv(static_cast<std::size_t>(slots * kv_local));
      pool_bytes_ += 2 * slots * kv_local * b_.kv_bytes();
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
  if (max_rows > 0) ensure_rows(max_rows + 8);  // a GPU backend's padding included
}

Decoder::~Decoder() = default;

void Decoder::add_buffer(const std::string& name, std::vector<std::int64_t> shape) {
  Buf b;
  b.name = name;
  b.shape = std::move(shape);
  b.size = 1;
  for (auto d : b.shape) b.size *= d;
  b.weight = b.shape.size() > 1;
  b.data = b.weight ? b_.alloc_weight(static_cast<std::size_t>(b.size))
                    : b_.alloc(static_cast<std::size_t>(b.size));
  bufs_.push_back(std::move(b));
}

// The activations of a step of `rows` rows (rounded up to a multiple of 8: a GPU backend pads
// decode batches to its graphs' sizes), allocated anew, larger, when a step needs more.
void Decoder::ensure_rows(std::int64_t rows) {
  if (rows <= cap_) return;
  cap_ = std::max<std::int64_t>(8, (rows + 7) / 8 * 8);
  const auto& at = m_.attention;
  const std::int64_t h = m_.hidden_size, T = cap_;
  auto take = [&](std::int64_t per_row) {
    return b_.alloc(static_cast<std::size_t>(T * std::max<std::int64_t>(1, per_row)));
  };
  hidden_ = take(h);
  residual_ = take(h);
  x_ = take(h);
  y_ = take(h);
  if (m_.mla) {
    const auto& a = *m_.mla;
    const std::int64_t heads = at.num_heads / p_.tp, qk = a.qk_nope_head_dim + a.qk_rope_head_dim;
    a_ = take(std::max(heads * qk, a.q_lora_rank));                // q (and q_a)
    b_q_ = take(a.kv_lora_rank + a.qk_rope_head_dim);                // the new latent
    b_kv_ = take(std::max(a.kv_lora_rank, heads * a.qk_rope_head_dim));  // c_kv to norm; q_pe
    c_ = take(heads * a.kv_lora_rank);                               // q_lat
    d_ = take(heads * a.kv_lora_rank);                               // o_lat
    e_ = take(heads * a.v_head_dim);                                 // o
  } else {
    const std::int64_t qh = at.num_heads / p_.tp;
    const std::int64_t kvh = std::max<std::int64_t>(1, at.num_kv_heads / p_.tp);
    a_ = take((qh + 2 * kvh) * at.head_dim);  // qkv
    b_q_ = take(qh * at.head_dim);            // q
    b_kv_ = take(2 * kvh * at.head_dim);      // k, v
    c_ = take(qh * at.head_dim);              // attention's output
  }
  std::int64_t inter = inter_max_;
  if (m_.moe) {
    const Buf* w13 = nullptr;
    for (const Layer* L : layer_ptrs_)
      if (L->moe) w13 = find(L->prefix + "mlp.experts.w13_weight");
    if (w13) inter = std::max(inter, w13->shape[1] / 2);
    gate_ = take(std::max<std::int64_t>(m_.moe->num_experts, 1));  // router logits, shared gate
    shared_ = take(h);
  }
  g_ = take(2 * inter);
  act_ = take(inter);
}

void Decoder::ensure_samples(std::int64_t samples) {
  if (samples <= cap_s_) return;
  cap_s_ = std::max<std::int64_t>(8, (samples + 7) / 8 * 8);
  const std::int64_t h = m_.hidden_size;
  const Buf* head = m_.tie_word_embeddings ? find("model.embed_tokens.weight") : find("lm_head.weight");
  const std::int64_t vl = head ? head->shape[0] : 1;
  hs_ = b_.alloc(static_cast<std::size_t>(cap_s_ * h));
  rs_ = b_.alloc(static_cast<std::size_t>(cap_s_ * h));
  ns_ = b_.alloc(static_cast<std::size_t>(cap_s_ * h));
  local_ = b_.alloc(static_cast<std::size_t>(cap_s_ * vl));
  gathered_ = b_.alloc(static_cast<std::size_t>(cap_s_ * vl * p_.tp));
  logits_ = b_.alloc(static_cast<std::size_t>(cap_s_ * std::max(m_.vocab_size, vl * p_.tp)));
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

// Part k of a merged buffer starts after the rows of parts 0..k-1 (q before k before v; gate
// before up; w1 before w3): the buffer's name includes its layer, so the same buffer means the
// same merged group.
std::optional<Decoder::Site> Decoder::locate(const std::string& name) {
  const model::VllmParameter pl = model::vllm_parameter(name, m_.mla.has_value());
  Site s;
  s.buf = find(pl.name);
  if (!s.buf) return std::nullopt;
  for (const auto& t : specs_)
    if (t.name == name) s.spec = &t;
  if (!s.spec) return std::nullopt;
  s.sm = shard_map(*s.spec, m_, p_, at_.tp, ep_index(at_, p_));
  for (const auto& t : specs_) {
    const model::VllmParameter other = model::vllm_parameter(t.name, m_.mla.has_value());
    if (other.name == pl.name && other.part < pl.part)
      s.row_offset += shard_map(t, m_, p_, at_.tp, ep_index(at_, p_)).rows;
  }
  const auto& shape = s.buf->shape;
  const bool expert = shape.size() == 3;
  s.buf_rows = expert ? shape[1] : shape[0];
  s.cols = expert ? shape[2] : (shape.size() == 2 ? shape[1] : 1);
  if (s.cols != s.sm.cols) return std::nullopt;
  return s;
}

// Copies a checkpoint tensor's shard (row-major [count][rows][cols]) into its place among the
// merged parameters.
bool Decoder::set_tensor(const std::string& name, const std::vector<float>& values) {
  auto s = locate(name);
  if (!s || static_cast<std::int64_t>(values.size()) != s->sm.count * s->sm.rows * s->sm.cols)
    return false;
  for (std::int64_t e = 0; e < s->sm.count; ++e)
    b_.upload(s->buf->data + (e * s->buf_rows + s->row_offset) * s->cols,
              values.data() + e * s->sm.rows * s->sm.cols,
              static_cast<std::size_t>(s->sm.rows * s->sm.cols), s->buf->weight);
  s->buf->set = true;
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

std::vector<model::TensorSpec> Decoder::stage_tensors() const { return specs_; }

ShardMap Decoder::shard(const model::TensorSpec& t) const {
  return shard_map(t, m_, p_, at_.tp, ep_index(at_, p_));
}

// Each expert's part is generated where it lies (on a GPU, on the device); a backend that
// cannot generate gets the host generator's values.
std::int64_t Decoder::load_seeded() {
  std::int64_t bytes = 0;
  for (const auto& t : specs_) {
    auto s = locate(t.name);
    if (!s) continue;
    const float scale = seeded_scale(t);
    std::vector<float> host;
    for (std::int64_t e = 0; e < s->sm.count; ++e) {
      kernels::SeedShard sh;
      sh.name_hash = name_hash(t.name);
      sh.scale = scale;
      sh.ones = t.cols == 1 && scale == 0.0f;
      sh.count = 1;
      sh.rows = s->sm.rows;
      sh.cols = s->sm.cols;
      sh.row0 = s->sm.row0;
      sh.col0 = s->sm.col0;
      sh.expert0 = s->sm.expert0 + e;
      sh.global_rows = s->sm.global_rows;
      sh.tensor_rows = t.rows;
      sh.tensor_cols = t.cols;
      float* dst = s->buf->data + (e * s->buf_rows + s->row_offset) * s->cols;
      const auto n = static_cast<std::size_t>(sh.rows * sh.cols);
      if (!b_.seed(dst, sh, s->buf->weight)) {
        if (host.empty()) host = seeded_shard(t, s->sm);
        b_.upload(dst, host.data() + static_cast<std::size_t>(e) * n, n, s->buf->weight);
      }
      bytes += static_cast<std::int64_t>(n) * (s->buf->weight ? b_.weight_bytes() : 4);
    }
    s->buf->set = true;
  }
  finish_load();
  return bytes;
}

bool Decoder::set_buffer(const std::string& name, const std::vector<float>& values) {
  Buf* b = find(name);
  if (!b || static_cast<std::int64_t>(values.size()) != b->size) return false;
  b_.upload(b->data, values.data(), values.size(), b->weight);
  b->set = true;
  return true;
}

void Decoder::finish_load() {
  // MLA with absorbed weights: per local head, kv_b's K part transposed and its V part
  // (computed on the host from the loaded kv_b, then stored as weights).
  if (m_.mla)
    for (Layer* L : layer_ptrs_) {
      const auto& x = *m_.mla;
      const std::int64_t heads = m_.attention.num_heads / p_.tp, lora = x.kv_lora_rank;
      const std::int64_t nope = x.qk_nope_head_dim, v = x.v_head_dim;
      std::vector<float> kv_b(static_cast<std::size_t>(heads * (nope + v) * lora));
      b_.download(kv_b.data(), L->kv_b, kv_b.size(), true);
      std::vector<float> w_kT(static_cast<std::size_t>(heads * lora * nope));
      std::vector<float> w_v(static_cast<std::size_t>(heads * v * lora));
      for (std::int64_t h = 0; h < heads; ++h) {
        const float* head = kv_b.data() + h * (nope + v) * lora;
        for (std::int64_t i = 0; i < nope; ++i)
          for (std::int64_t j = 0; j < lora; ++j)
            w_kT[static_cast<std::size_t>((h * lora + j) * nope + i)] = head[i * lora + j];
        std::memcpy(w_v.data() + h * v * lora, head + nope * lora,
                    static_cast<std::size_t>(v * lora) * sizeof(float));
      }
      b_.upload(L->w_kT, w_kT.data(), w_kT.size(), true);
      b_.upload(L->w_v, w_v.data(), w_v.size(), true);
    }
}

std::vector<Decoder::Tensor> Decoder::tensors() const {
  std::vector<Tensor> out;
  out.reserve(bufs_.size());
  for (const auto& b : bufs_) {
    Tensor t{b.name, b.shape, std::vector<float>(static_cast<std::size_t>(b.size)), nullptr};
    b_.download(t.values.data(), b.data, t.values.size(), b.weight);
    t.data = t.values.data();
    out.push_back(std::move(t));
  }
  return out;
}

std::int64_t Decoder::weight_bytes() const {
  std::int64_t n = 0;
  for (const auto& b : bufs_) n += b.size * (b.weight ? b_.weight_bytes() : 4);
  return n;
}

std::optional<std::string> Decoder::missing_tensor() const {
  for (const auto& b : bufs_)
    if (!b.set) return b.name;
  return std::nullopt;
}

std::optional<Error> Decoder::attention(Layer& L, const Step&, const float* x, float* out) {
  const auto& a = m_.attention;
  const std::int64_t T = meta_rows_, h = m_.hidden_size, hd = a.head_dim;
  const std::int64_t qh = a.num_heads / p_.tp;
  const std::int64_t kvh = std::max<std::int64_t>(1, a.num_kv_heads / p_.tp);
  const std::int64_t width = (qh + 2 * kvh) * hd;
  b_.gemm(x, L.qkv, a_, T, width, h);
  if (L.qkv_bias) b_.add_bias(a_, L.qkv_bias, T, width);
  // q, k, v as contiguous [T, heads, hd] buffers.
  float* q = b_q_;
  float* k = b_kv_;
  float* v = b_kv_ + T * kvh * hd;
  b_.copy2d(q, qh * hd, a_, width, T, qh * hd);
  b_.copy2d(k, kvh * hd, a_ + qh * hd, width, T, kvh * hd);
  b_.copy2d(v, kvh * hd, a_ + (qh + kvh) * hd, width, T, kvh * hd);
  if (L.q_norm) {  // Qwen3: RMSNorm over each head of q and k
    b_.add_rmsnorm(q, nullptr, L.q_norm, q, T * qh, hd, kEps);
    b_.add_rmsnorm(k, nullptr, L.k_norm, k, T * kvh, hd, kEps);
  }
  b_.rope(q, T, qh, hd, 0, hd, rope_);
  b_.rope(k, T, kvh, hd, 0, hd, rope_);
  b_.kv_write(k, v, L.k_pool, L.v_pool, kvh, hd);
  b_.paged_attention(q, L.k_pool, L.v_pool, qh, kvh, hd, 1.0f / std::sqrt(static_cast<float>(hd)),
                     c_);
  b_.gemm(c_, L.o, out, T, h, qh * hd);
  if (auto e = b_.comm().all_reduce_sum(out, static_cast<std::size_t>(T * h), Group::kTp))
    return e;
  if (L.o_bias) b_.add_bias(out, L.o_bias, T, h);
  return std::nullopt;
}

std::optional<Error> Decoder::mla(Layer& L, const Step&, const float* x, float* out) {
  const auto& a = *m_.mla;
  const std::int64_t T = meta_rows_, h = m_.hidden_size;
  const std::int64_t heads = m_.attention.num_heads / p_.tp;
  const std::int64_t nope = a.qk_nope_head_dim, rope = a.qk_rope_head_dim, lora = a.kv_lora_rank;
  const std::int64_t qk = nope + rope, width = lora + rope, v = a.v_head_dim;
  // Queries: [T, heads, nope + rope], directly or through the compressed q_a (DeepSeek-V3);
  // q_a goes through e_ (free until the output projection).
  if (L.q_a) {
    b_.gemm(x, L.q_a, e_, T, a.q_lora_rank, h);
    b_.add_rmsnorm(e_, nullptr, L.q_a_norm, e_, T, a.q_lora_rank, kEps);
    b_.gemm(e_, L.q_b, a_, T, heads * qk, a.q_lora_rank);
  } else {
    b_.gemm(x, L.q, a_, T, heads * qk, h);
  }
  b_.rope(a_, T, heads, qk, nope, rope, mla_rope_);
  // The latent of the new tokens: normalised c_kv, then the rotated shared k_pe.
  float* latent = b_q_;
  b_.gemm(x, L.kv_a, latent, T, width, h);
  b_.copy2d(b_kv_, lora, latent, width, T, lora);
  b_.add_rmsnorm(b_kv_, nullptr, L.kv_a_norm, b_kv_, T, lora, kEps);
  b_.copy2d(latent, width, b_kv_, lora, T, lora);
  b_.rope(latent, T, 1, width, lora, rope, mla_rope_);
  b_.latent_write(latent, L.latent_pool, width);
  // Absorbed: q_lat = q_nope . W_k per head; attention over the latent; o = W_v . o_lat.
  b_.gemm_batched(a_, heads * qk, qk, L.w_kT, lora * nope, c_, heads * lora, lora, T, lora, nope,
                  heads);
  float* q_pe = b_kv_;
  b_.copy2d(q_pe, rope, a_ + nope, qk, T * heads, rope);
  b_.mla_attention(c_, q_pe, L.latent_pool, heads, lora, rope,
                   1.0f / std::sqrt(static_cast<float>(qk)), d_);
  b_.gemm_batched(d_, heads * lora, lora, L.w_v, v * lora, e_, heads * v, v, T, v, lora, heads);
  b_.gemm(e_, L.o, out, T, h, heads * v);
  return b_.comm().all_reduce_sum(out, static_cast<std::size_t>(T * h), Group::kTp);
}

void Decoder::dense_mlp(const std::string& prefix, const float* x, std::int64_t rows,
                        float* out, bool bias) {
  float* gu = weight(prefix + "gate_up_proj.weight");
  float* down = weight(prefix + "down_proj.weight");
  const std::int64_t h = m_.hidden_size;
  const std::int64_t inter = find(prefix + "down_proj.weight")->shape[1];
  b_.gemm(x, gu, g_, rows, 2 * inter, h);
  if (bias) b_.add_bias(g_, weight(prefix + "gate_up_proj.bias"), rows, 2 * inter);
  b_.silu_mul(g_, act_, rows, inter);
  b_.gemm(act_, down, out, rows, h, inter);
}

std::optional<Error> Decoder::mlp(Layer& L, const float* x, std::int64_t rows, float* out) {
  dense_mlp(L.prefix + "mlp.", x, rows, out, L.gate_up_bias != nullptr);
  if (auto e = b_.comm().all_reduce_sum(out, static_cast<std::size_t>(rows * m_.hidden_size),
                                        Group::kTp))
    return e;
  if (L.down_bias) b_.add_bias(out, L.down_bias, rows, m_.hidden_size);
  return std::nullopt;
}

// Mixtral-style routing: softmax over the experts, top k renormalised. Each rank computes the
// experts it holds (their TP shards, or whole experts with expert parallelism) for the tokens
// routed to them; the TP (or EP) all-reduce sums the experts' and the shared experts' parts.
std::optional<Error> Decoder::moe(Layer& L, const float* x, std::int64_t rows, float* out) {
  const auto& e = *m_.moe;
  const std::int64_t h = m_.hidden_size, E = e.num_experts, k = e.experts_per_token;
  b_.gemm(x, L.router, gate_, rows, E, h);
  const Buf* w13 = find(L.prefix + "mlp.experts.w13_weight");
  const std::int64_t local = w13->shape[0], inter = w13->shape[1] / 2;
  // The first expert this rank holds (expert parallelism: a contiguous range).
  std::int64_t first = 0;
  if (p_.expert_parallel) {
    const std::int64_t ep = p_.ep(), base = E / ep, extra = E % ep, r = ep_index(at_, p_);
    first = r * base + std::min<std::int64_t>(r, extra);
  }
  b_.moe(x, gate_, rows, h, E, k, L.w13, L.w2, first, local, inter, out);
  if (L.shared_gate_up) {
    dense_mlp(L.prefix + "mlp.shared_experts.", x, rows, shared_, false);
    if (L.shared_gate) {  // Qwen2-MoE: sigmoid(x . g) scales the shared expert
      b_.gemm(x, L.shared_gate, gate_, rows, 1, h);
      b_.sigmoid_gate(shared_, gate_, rows, h);
    }
    b_.add_scaled(out, shared_, static_cast<std::size_t>(rows * h), 1.0f);
  }
  return b_.comm().all_reduce_sum(out, static_cast<std::size_t>(rows * h), Group::kTp);
}

std::optional<Error> Decoder::forward(const Step& step, const StageOut* in, StageOut& out,
                                      bool keep_logits) {
  const std::int64_t rows = step.rows(), h = m_.hidden_size;
  // The batch as the backend needs it: tokens, positions, slots, block tables, sample rows.
  meta_.rows = rows;
  meta_.block_size = block_size_;
  meta_.tokens.clear();
  meta_.positions.clear();
  meta_.slots.clear();
  meta_.seqs.clear();
  meta_.sample_rows.clear();
  meta_.max_blocks = 0;
  std::int64_t row = 0;
  for (const auto& s : step.seqs) {
    if (first_) meta_.tokens.insert(meta_.tokens.end(), s.tokens.begin(), s.tokens.end());
    for (std::int64_t i = 0; i < s.new_tokens; ++i) {
      const std::int64_t pos = s.context + i;
      meta_.positions.push_back(pos);
      meta_.slots.push_back(static_cast<std::int64_t>(s.blocks[static_cast<std::size_t>(pos / block_size_)]) *
                                block_size_ + pos % block_size_);
    }
    meta_.seqs.push_back({row, s.new_tokens, s.context, s.blocks.data()});
    meta_.max_blocks = std::max<std::int64_t>(meta_.max_blocks, static_cast<std::int64_t>(s.blocks.size()));
    row += s.new_tokens;
    if (s.samples) meta_.sample_rows.push_back(static_cast<std::int32_t>(row - 1));
  }
  ensure_rows(rows + 8);  // room for a GPU backend's padding to its graph sizes
  const std::int64_t T = b_.begin_step(meta_);
  if (T > cap_)
    return Error{{}, 0, 0, "step of " + std::to_string(T) + " rows past the decoder's " +
                               std::to_string(cap_) + " (max_num_batched_tokens)"};
  meta_rows_ = T;
  if (first_) {
    const Buf* emb = find("model.embed_tokens.weight");
    b_.embedding(emb->data, at_.tp * emb->shape[0], emb->shape[0], h, hidden_);
    if (auto e = b_.comm().all_reduce_sum(hidden_, static_cast<std::size_t>(T * h), Group::kTp))
      return e;
    b_.fill(residual_, 0.0f, static_cast<std::size_t>(T * h));
  } else {
    if (in) {
      b_.upload(hidden_, in->hidden.data(), static_cast<std::size_t>(rows * h), false);
      b_.upload(residual_, in->residual.data(), static_cast<std::size_t>(rows * h), false);
    }
    if (T > rows) {
      b_.fill(hidden_ + rows * h, 0.0f, static_cast<std::size_t>((T - rows) * h));
      b_.fill(residual_ + rows * h, 0.0f, static_cast<std::size_t>((T - rows) * h));
    }
  }
  // The layers: replayed from a captured CUDA graph, or issued (and perhaps captured).
  if (!b_.replay_layers()) {
    b_.capture_begin();
    const bool hooks = hook_ && !b_.capturing();
    for (Layer* L : layer_ptrs_) {
      b_.add_rmsnorm(hidden_, residual_, L->in_norm, x_, T, h, kEps);
      auto err = m_.mla ? mla(*L, step, x_, y_) : attention(*L, step, x_, y_);
      if (!err && hooks) err = hook_();
      if (!err) {
        b_.add_rmsnorm(y_, residual_, L->post_norm, x_, T, h, kEps);
        err = L->moe ? moe(*L, x_, T, hidden_) : mlp(*L, x_, T, hidden_);
        if (!err && hooks) err = hook_();
      }
      if (err) {
        b_.capture_end();  // a capture is closed before the error goes up (the job ends)
        return err;
      }
    }
    b_.capture_end();
    if (hook_ && !hooks)
      if (auto err = hook_()) return err;
  } else if (hook_) {
    if (auto err = hook_()) return err;
  }
  if (!last_ && handoff_) return std::nullopt;
  if (!last_) {
    out.hidden.resize(static_cast<std::size_t>(rows * h));
    out.residual.resize(static_cast<std::size_t>(rows * h));
    b_.download(out.hidden.data(), hidden_, out.hidden.size(), false);
    b_.download(out.residual.data(), residual_, out.residual.size(), false);
    return std::nullopt;
  }
  // The final norm and LM head on the rows that sample: each sampling sequence's last row.
  const auto S = static_cast<std::int64_t>(meta_.sample_rows.size());
  out.tokens.clear();
  out.logits.clear();
  if (S == 0) {
    b_.sync();
    return std::nullopt;
  }
  ensure_samples(S);
  b_.gather_samples(hidden_, h, hs_);
  b_.gather_samples(residual_, h, rs_);
  b_.add_rmsnorm(hs_, rs_, weight("model.norm.weight"), ns_, S, h, kEps);
  const Buf* head = m_.tie_word_embeddings ? find("model.embed_tokens.weight") : find("lm_head.weight");
  const std::int64_t vl = head->shape[0];
  b_.gemm(ns_, head->data, local_, S, vl, h);
  if (auto e = b_.comm().all_gather(local_, static_cast<std::size_t>(S * vl), gathered_, Group::kTp))
    return e;
  // [tp][S][vl] -> [S][vocab] (the padding rows past the vocabulary dropped).
  const std::int64_t V = m_.vocab_size;
  for (std::int64_t t = 0; t < p_.tp; ++t) {
    const std::int64_t cols = std::min(vl, V - t * vl);
    if (cols > 0) b_.copy2d(logits_ + t * vl, V, gathered_ + t * S * vl, vl, S, cols);
  }
  out.tokens.resize(static_cast<std::size_t>(S));
  b_.argmax(logits_, S, V, out.tokens.data());
  if (keep_logits) {
    out.logits.resize(static_cast<std::size_t>(S * V));
    b_.download(out.logits.data(), logits_, out.logits.size(), false);
  }
  return std::nullopt;
}

}  // namespace tpp::exec
