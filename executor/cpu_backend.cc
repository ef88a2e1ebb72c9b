#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "executor/backend.h"

namespace tpp::exec {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(Comm& comm) : Backend(comm) {}
  std::string name() const override { return "cpu"; }

  float* alloc(std::size_t n) override {
    blocks_.emplace_back(new float[n]);  // uninitialised: untouched pages are never resident
    return blocks_.back().get();
  }
  float* alloc_weight(std::size_t n) override { return alloc(n); }
  float* alloc_kv(std::size_t n) override { return alloc(n); }
  int weight_bytes() const override { return 4; }
  int kv_bytes() const override { return 4; }
  void upload(float* dst, const float* host, std::size_t n, bool) override {
    if (n) std::memcpy(dst, host, n * sizeof(float));
  }
  void download(float* host, const float* src, std::size_t n, bool) override {
    if (n) std::memcpy(host, src, n * sizeof(float));
  }
  void copy2d(float* dst, std::int64_t dst_ld, const float* src, std::int64_t src_ld,
              std::int64_t rows, std::int64_t cols) override {
    for (std::int64_t r = 0; r < rows; ++r)
      std::memmove(dst + r * dst_ld, src + r * src_ld, static_cast<std::size_t>(cols) * sizeof(float));
  }
  void fill(float* dst, float value, std::size_t n) override { std::fill(dst, dst + n, value); }

  std::int64_t begin_step(const StepMeta& m) override {
    step_ = &m;
    return m.rows;
  }

  void gemm(const float* x, const float* w, float* y, std::int64_t m, std::int64_t n,
            std::int64_t k, bool accumulate) override {
    ConstMap X(x, m, k), W(w, n, k);
    Map Y(y, m, n);
    if (accumulate)
      Y.noalias() += X * W.transpose();
    else
      Y.noalias() = X * W.transpose();
  }
  void gemm_batched(const float* x, std::int64_t ldx, std::int64_t sx, const float* w,
                    std::int64_t sw, float* y, std::int64_t ldy, std::int64_t sy, std::int64_t m,
                    std::int64_t n, std::int64_t k, std::int64_t batch) override {
    using Stride = Eigen::OuterStride<>;
    for (std::int64_t b = 0; b < batch; ++b) {
      Eigen::Map<const RowMajor, 0, Stride> X(x + b * sx, m, k, Stride(ldx));
      ConstMap W(w + b * sw, n, k);
      Eigen::Map<RowMajor, 0, Stride> Y(y + b * sy, m, n, Stride(ldy));
      Y.noalias() = X * W.transpose();
    }
  }
  // RMSNorm with the fused residual add, vectorised (sums in float; the reference sums in
  // double: they agree to about 1e-7 relative).
  void add_rmsnorm(const float* x, float* residual, const float* w, float* y, std::int64_t rows,
                   std::int64_t cols, float eps) override {
    Eigen::Map<const Eigen::ArrayXf> W(w, cols);
    for (std::int64_t r = 0; r < rows; ++r) {
      Eigen::Map<const Eigen::ArrayXf> X(x + r * cols, cols);
      Eigen::Map<Eigen::ArrayXf> Y(y + r * cols, cols);
      if (residual) {
        Eigen::Map<Eigen::ArrayXf> R(residual + r * cols, cols);
        R += X;
        Y = R * (1.0f / std::sqrt(R.square().sum() / static_cast<float>(cols) + eps)) * W;
      } else {
        const float inv = 1.0f / std::sqrt(X.square().sum() / static_cast<float>(cols) + eps);
        Y = X * inv * W;
      }
    }
  }
  // Rotary with the cos/sin of each position computed once and kept (positions recur every
  // step); the same angles as kernels::rope_ref.
  void rope(float* x, std::int64_t rows, std::int64_t heads, std::int64_t head_stride,
            std::int64_t offset, std::int64_t rot, const Rope& rp) override {
    const std::int64_t half = rot / 2;
    const std::int64_t* pos = step_->positions.data();
    Table& t = table(rp);
    for (std::int64_t r = 0; r < rows; ++r) {
      grow(t, rp, pos[r]);
      const float* cs = t.cos.data() + pos[r] * half;
      const float* sn = t.sin.data() + pos[r] * half;
      for (std::int64_t h = 0; h < heads; ++h) {
        float* v = x + (r * heads + h) * head_stride + offset;
        for (std::int64_t i = 0; i < half; ++i) {
          const std::int64_t ia = rp.neox ? i : 2 * i, ib = rp.neox ? i + half : 2 * i + 1;
          const float a = v[ia], b = v[ib];
          v[ia] = a * cs[i] - b * sn[i];
          v[ib] = b * cs[i] + a * sn[i];
        }
      }
    }
  }
  void silu_mul(const float* gate_up, float* out, std::int64_t rows,
                std::int64_t inter) override {
    for (std::int64_t r = 0; r < rows; ++r) {
      Eigen::Map<const Eigen::ArrayXf> G(gate_up + r * 2 * inter, inter);
      Eigen::Map<const Eigen::ArrayXf> U(gate_up + r * 2 * inter + inter, inter);
      Eigen::Map<Eigen::ArrayXf>(out + r * inter, inter) = G / (1.0f + (-G).exp()) * U;
    }
  }
  void embedding(const float* table, std::int64_t vocab0, std::int64_t rows, std::int64_t dim,
                 float* out) override {
    kernels::embedding_ref(step_->tokens.data(), step_->rows, table, vocab0, rows, dim, out);
  }
  void kv_write(const float* k, const float* v, float* k_pool, float* v_pool, std::int64_t heads,
                std::int64_t dim) override {
    kernels::kv_write_ref(k, v, k_pool, v_pool, step_->seqs.data(),
                          static_cast<std::int64_t>(step_->seqs.size()), heads, dim,
                          step_->block_size);
  }
  // The reference's arithmetic, vectorised: for each sequence and KV head, its cached K and V
  // gathered once (a block's rows of one head are contiguous in the pool), then per chunk of
  // query tokens one matrix product for the scores of the heads that share the KV head over
  // the positions the chunk may see, a softmax over each row's own positions, and one product
  // for the values.
  void paged_attention(const float* q, const float* k_pool, const float* v_pool,
                       std::int64_t q_heads, std::int64_t kv_heads, std::int64_t dim,
                       float scale, float* out) override {
    constexpr std::int64_t kChunk = 64;  // query tokens at a time: scores stay in cache
    const std::int64_t group = q_heads / kv_heads, block_size = step_->block_size;
    for (const kernels::PagedSeq& sq : step_->seqs) {
      const std::int64_t total = sq.context + sq.new_tokens;
      const std::int64_t nblocks = (total + block_size - 1) / block_size;
      K_.resize(nblocks * block_size, dim);
      V_.resize(nblocks * block_size, dim);
      for (std::int64_t kvh = 0; kvh < kv_heads; ++kvh) {
        for (std::int64_t b = 0; b < nblocks; ++b) {
          const std::int64_t at =
              kernels::kv_offset(sq.block_table[b], kvh, 0, kv_heads, dim, block_size);
          const auto bytes = static_cast<std::size_t>(block_size * dim) * sizeof(float);
          std::memcpy(K_.row(b * block_size).data(), k_pool + at, bytes);
          std::memcpy(V_.row(b * block_size).data(), v_pool + at, bytes);
        }
        for (std::int64_t i0 = 0; i0 < sq.new_tokens; i0 += kChunk) {
          const std::int64_t n = std::min(kChunk, sq.new_tokens - i0);
          const std::int64_t seen = sq.context + i0 + n;  // the chunk's last row sees 0..seen-1
          Q_.resize(n * group, dim);
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t g = 0; g < group; ++g)
              std::memcpy(Q_.row(i * group + g).data(),
                          q + ((sq.row0 + i0 + i) * q_heads + kvh * group + g) * dim,
                          static_cast<std::size_t>(dim) * sizeof(float));
          S_.noalias() = (Q_ * K_.topRows(seen).transpose()) * scale;
          for (std::int64_t r = 0; r < n * group; ++r) {
            const std::int64_t last = sq.context + i0 + r / group;  // causal: 0..last
            // A softmax over the positions the row may see; the rest weigh 0 (an exp of -inf
            // would be exact too, but takes a slow path twenty times the cost).
            auto row = S_.row(r).head(last + 1);
            row = (row.array() - row.maxCoeff()).exp();
            row /= row.sum();
            if (last + 1 < seen) S_.row(r).tail(seen - last - 1).setZero();
          }
          O_.noalias() = S_ * V_.topRows(seen);
          for (std::int64_t i = 0; i < n; ++i)
            for (std::int64_t g = 0; g < group; ++g)
              std::memcpy(out + ((sq.row0 + i0 + i) * q_heads + kvh * group + g) * dim,
                          O_.row(i * group + g).data(),
                          static_cast<std::size_t>(dim) * sizeof(float));
        }
      }
    }
  }
  void latent_write(const float* latent, float* pool, std::int64_t width) override {
    kernels::latent_write_ref(latent, pool, step_->seqs.data(),
                              static_cast<std::int64_t>(step_->seqs.size()), width,
                              step_->block_size);
  }
  void mla_attention(const float* q_lat, const float* q_pe, const float* pool,
                     std::int64_t heads, std::int64_t lora, std::int64_t rope, float scale,
                     float* out) override {
    kernels::mla_attention_ref(q_lat, q_pe, pool, step_->seqs.data(),
                               static_cast<std::int64_t>(step_->seqs.size()), heads, lora, rope,
                               step_->block_size, scale, out);
  }
  // Routing, the permutation into per-expert groups, two GEMMs a local expert, and the
  // weighted combination: the same steps as the GPU backend, with the kernels' references.
  void moe(const float* x, const float* router_logits, std::int64_t rows, std::int64_t h,
           std::int64_t experts, std::int64_t k, const float* w13, const float* w2,
           std::int64_t first, std::int64_t local, std::int64_t inter, float* out) override {
    const auto pairs = static_cast<std::size_t>(rows * k);
    ids_.resize(pairs);
    wts_.resize(pairs);
    where_.resize(pairs);
    src_.resize(pairs);
    offsets_.resize(static_cast<std::size_t>(local + 1));
    kernels::topk_softmax_ref(router_logits, rows, experts, k, ids_.data(), wts_.data());
    kernels::moe_permute_ref(ids_.data(), rows, k, first, local, offsets_.data(), src_.data(),
                             where_.data());
    const std::int64_t n = offsets_[static_cast<std::size_t>(local)];
    xe_.resize(static_cast<std::size_t>(n * h));
    g_.resize(static_cast<std::size_t>(n * 2 * inter));
    act_.resize(static_cast<std::size_t>(n * inter));
    ye_.resize(static_cast<std::size_t>(n * h));
    kernels::gather_rows_ref(x, src_.data(), n, h, xe_.data());
    for (std::int64_t e = 0; e < local; ++e) {
      const std::int64_t a = offsets_[static_cast<std::size_t>(e)];
      const std::int64_t c = offsets_[static_cast<std::size_t>(e + 1)] - a;
      if (c == 0) continue;
      gemm(xe_.data() + a * h, w13 + e * 2 * inter * h, g_.data() + a * 2 * inter, c, 2 * inter,
           h, false);
      silu_mul(g_.data() + a * 2 * inter, act_.data() + a * inter, c, inter);
      gemm(act_.data() + a * inter, w2 + e * h * inter, ye_.data() + a * h, c, h, inter, false);
    }
    kernels::moe_combine_ref(ye_.data(), where_.data(), wts_.data(), rows, k, h, out);
  }
  void add_bias(float* y, const float* bias, std::int64_t rows, std::int64_t cols) override {
    kernels::add_bias_ref(y, bias, rows, cols);
  }
  void add_scaled(float* y, const float* x, std::size_t n, float a) override {
    kernels::add_scaled_ref(y, x, static_cast<std::int64_t>(n), a);
  }
  void sigmoid_gate(float* y, const float* gate, std::int64_t rows, std::int64_t cols) override {
    kernels::sigmoid_gate_ref(y, gate, rows, cols);
  }
  void gather_samples(const float* src, std::int64_t cols, float* dst) override {
    kernels::gather_rows_ref(src, step_->sample_rows.data(),
                             static_cast<std::int64_t>(step_->sample_rows.size()), cols, dst);
  }
  void argmax(const float* x, std::int64_t rows, std::int64_t cols, std::int64_t* out) override {
    kernels::argmax_ref(x, rows, cols, out);
  }

 private:
  struct Table {
    const Rope* rope = nullptr;
    std::vector<float> inv_freq;  // what cos and sin were computed from
    float mscale = 1;
    std::vector<float> cos, sin;  // [position][half]
  };
  // Kept by the Rope's address and checked by value: a later decoder's Rope may sit where an
  // earlier one did.
  Table& table(const Rope& r) {
    for (auto& t : tables_)
      if (t.rope == &r) {
        if (t.inv_freq != r.inv_freq || t.mscale != r.mscale) t = {&r, r.inv_freq, r.mscale, {}, {}};
        return t;
      }
    tables_.push_back({&r, r.inv_freq, r.mscale, {}, {}});
    return tables_.back();
  }
  static void grow(Table& t, const Rope& r, std::int64_t pos) {
    const auto half = static_cast<std::int64_t>(r.inv_freq.size());
    const auto have = static_cast<std::int64_t>(t.cos.size()) / std::max<std::int64_t>(1, half);
    if (pos < have) return;
    const std::int64_t want = std::max<std::int64_t>(pos + 1, 2 * have);
    t.cos.resize(static_cast<std::size_t>(want * half));
    t.sin.resize(static_cast<std::size_t>(want * half));
    for (std::int64_t p = have; p < want; ++p)
      for (std::int64_t i = 0; i < half; ++i) {  // as kernels::rope_ref computes them
        const double a = static_cast<double>(p) * r.inv_freq[static_cast<std::size_t>(i)];
        t.cos[static_cast<std::size_t>(p * half + i)] = static_cast<float>(std::cos(a)) * r.mscale;
        t.sin[static_cast<std::size_t>(p * half + i)] = static_cast<float>(std::sin(a)) * r.mscale;
      }
  }

  const StepMeta* step_ = nullptr;
  std::vector<std::unique_ptr<float[]>> blocks_;
  std::deque<Table> tables_;
  RowMajor K_, V_, Q_, S_, O_;  // attention scratch
  std::vector<std::int32_t> ids_, where_, src_, offsets_;  // MoE scratch
  std::vector<float> wts_, xe_, g_, act_, ye_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(Comm& comm) {
  // One thread a rank: mpirun places one rank per core, and a second Eigen thread would only
  // contend with the next rank.
  Eigen::setNbThreads(1);
  return std::make_unique<CpuBackend>(comm);
}

}  // namespace tpp::exec
